# Edge pool 1 is down while pool1 survives: pool1 uses Edge pool 2 for media until Edge
# pool 1 is repaired. Seed 002, "Change the Edge pool associated with a Front End pool".
Set-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com -EdgePoolFqdn edgepool2.contoso.com
# The check: pool1's media relays are Edge pool 2's now. Users' next requests for relay
# credentials (GET /users/v1/media-relay, `tandem client media`) get them.
Get-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com
Get-CsService -Registrar -PoolFqdn pool1.contoso.com
