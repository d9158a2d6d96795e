# Edge pool 1, which carries SIP federation, is lost; Edge pool 2 takes federation over.
# Seed 002, "Fail over the Edge pool used for Skype for Business Server federation".
# Steps 1-4 (Topology Builder: clear "Enable federation" on Edge pool 1, select it on Edge
# pool 2) and step 5 (publish):
Disable-CsEdgePoolFederation -Identity edgepool1.contoso.com
Enable-CsEdgePoolFederation -Identity edgepool2.contoso.com
# Step 6 (Deployment Wizard, Run Again on the Edge server): what it now applies.
Invoke-CsServerSetup -ComputerName edgeserver2.contoso.com
# Partners find the Access Edge through _sipfederationtls._tcp -> sip.contoso.com: point
# that name at Edge pool 2's Access Edge (its external address).
Set-DnsServerResourceRecord -ZoneName contoso.com -Name sip -RRType A -IPv4Address 127.0.2.22
Get-DnsServerResourceRecord -ZoneName contoso.com -Name sip
# Step 7: pool1 survives, so it uses Edge pool 2 for media (Web Conferencing, A/V).
Set-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com -EdgePoolFqdn edgepool2.contoso.com
# Its check: pool1's media relays (and its users' relay credentials) are Edge pool 2's.
Get-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com
