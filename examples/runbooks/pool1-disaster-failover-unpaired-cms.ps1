# pool1 is lost, and the Central Management store lived on it without a standby (seed 001
# step 6: the store was not paired). Before the disaster the administrator saved
# Export-CsConfiguration -FileName c:\CsConfigurationFile.zip and
# Export-CsLisConfiguration -FileName c:\CsLisConfigurationFile.zip. Run from a Front End
# of pool2, the backup pool.
Invoke-CsManagementServerFailover -WhatIf
Get-CsPoolBackupRelationship -PoolFQDN pool1.contoso.com
Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus
# Step 6: a new, empty store in pool2's Back End, then the move onto it.
Install-CsDatabase -CentralManagementDatabase -Clean -SqlServerFqdn pool2-be.contoso.com -SqlInstanceName rtc
Move-CsManagementServer -ConfigurationFileName c:\CsConfigurationFile.zip -LisConfigurationFileName c:\CsLisConfigurationFile.zip -Force
# Verify as in step 5.
Get-CsManagementStoreReplicationStatus -CentralManagementStoreStatus
Get-CsManagementStoreReplicationStatus
# Then Bootstrapper /Setup on the other Front End of pool2 (pool2-fe2), and step 0 and 7:
Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com
Invoke-CsPoolFailover -PoolFQDN pool1.contoso.com -DisasterMode -Verbose
