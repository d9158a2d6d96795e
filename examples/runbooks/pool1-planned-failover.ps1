# Planned failover of pool1 (maintenance): seed 000 "before failing over" and seed 003.
# The Edge pool in Site1 uses pool1 as its next hop; point it at pool2 first, or the
# failover is refused with the documented next-hop error.
Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com
Get-CsPoolBackupRelationship -PoolFqdn pool1.contoso.com
Get-CsBackupServiceStatus -PoolFqdn pool1.contoso.com
Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com -FlushStorageService -WaitTime 00:01:00 -Verbose
Get-CsPoolFailoverState -PoolFqdn pool1.contoso.com
