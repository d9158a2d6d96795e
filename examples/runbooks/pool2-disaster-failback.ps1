# pool2 is back (seed 000, "Fail back a pool").
Invoke-CsPoolFailback -PoolFQDN pool2.contoso.com -Verbose
Invoke-CsBackupServiceSync -PoolFqdn pool1.contoso.com -BackupModule ConfServices.DataConf
Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool2.contoso.com
Get-CsDisasterRecoveryOperation
