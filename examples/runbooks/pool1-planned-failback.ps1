# Fail pool1 back once its maintenance is done (seed 000 "Fail back a pool").
Invoke-CsPoolFailback -PoolFQDN pool1.contoso.com -Verbose
# Seed 000 / reference 2.2: push conference content back to the home pool.
Invoke-CsBackupServiceSync -PoolFqdn pool2.contoso.com -BackupModule ConfServices.DataConf
# Give Edge pool 1 its own site's next hop again.
Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool1.contoso.com
Get-CsPoolFailoverState -PoolFqdn pool1.contoso.com
