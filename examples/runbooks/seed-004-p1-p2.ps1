# Seed 004: every user homed on P1 (pool1) is failed over to P2 (pool2); the administrator
# wants P1 to serve everyone. -PoolFqdn is always the pool the users are homed on.
# Before each failover, no Edge pool may use the pool being failed over as its next hop.
Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool2.contoso.com
Invoke-CsPoolFailOver -PoolFqdn pool1.contoso.com
# 1. Fail back the users homed on P1, from P2 to P1.
Invoke-CsPoolFailBack -PoolFqdn pool1.contoso.com
# 2. Fail over the users homed on P2 to P1 (both Edge pools now use P1 as next hop).
Set-CsEdgeServer -Identity EdgeServer:edgepool1.contoso.com -Registrar Registrar:pool1.contoso.com
Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool1.contoso.com
Invoke-CsPoolFailOver -PoolFqdn pool2.contoso.com
Get-CsPoolFailoverState
# 3. Later, fail those P2 users back to P2.
Invoke-CsPoolFailBack -PoolFqdn pool2.contoso.com
Set-CsEdgeServer -Identity EdgeServer:edgepool2.contoso.com -Registrar Registrar:pool2.contoso.com
