# Edge pool 1 is repaired: pool1 uses it for media again.
Set-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com -EdgePoolFqdn edgepool1.contoso.com
Get-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com
Get-CsService -Registrar -PoolFqdn pool1.contoso.com
