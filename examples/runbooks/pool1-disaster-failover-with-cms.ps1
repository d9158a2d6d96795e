# pool1 is lost, and the Central Management store lived on it (its standby is in pool2).
# Seeds 000 and 001, "To fail over a pool in a disaster" (reference A.1), run from a Front
# End of pool2, the pool that will host the store.
# Step 1: which pool hosts the Central Management store now.
Invoke-CsManagementServerFailover -WhatIf
# Step 2: which pool backs pool1 up.
Get-CsPoolBackupRelationship -PoolFQDN pool1.contoso.com
# Step 3: empty ActiveMasterFqdn and ActiveFileTransferAgents: the store is down.
Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus
# Step 5: the store was paired. Which Back End of pool2 holds the principal copy.
Get-CsDatabaseMirrorState -DatabaseType Centralmgmt -PoolFqdn pool2.contoso.com
# The primary is principal: fail the store over to it.
Invoke-CSManagementServerFailover -BackupSQLServerFqdn pool2-be.contoso.com -BackupSQLInstanceName rtc
# Verify: the master and the File Transfer Agent are in pool2, the replicas up to date.
Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus
Get-CsManagementStoreReplicationStatus
# Step 0, which the failover asks for next: Edge pool 1 survives and uses pool1 as its next
# hop; point it at pool2 (another site).
Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com
# Step 7.
Invoke-CsPoolFailover -PoolFQDN pool1.contoso.com -DisasterMode -Verbose
Get-CsPoolFailoverState -PoolFqdn pool1.contoso.com
