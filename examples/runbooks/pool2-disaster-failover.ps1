# pool2 is lost; the Central Management store lives on pool1 and is still up.
# Seed 000, "To fail over a pool in a disaster" (reference A.1), run from a Front End of pool1.
# Step 0: Edge pool 2 survives and uses pool2 as its next hop: use pool1 (another site).
Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool1.contoso.com
# Step 2: which pool backs pool2 up.
Get-CsPoolBackupRelationship -PoolFqdn pool2.contoso.com
# Step 3: the CMS is up and not on the failed pool, so steps 4-6 are skipped.
Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus
# Step 7.
Invoke-CsPoolFailover -PoolFQDN pool2.contoso.com -DisasterMode -Verbose
Get-CsPoolFailoverState -PoolFqdn pool2.contoso.com
Get-CsDisasterRecoveryOperation
