# fabrikam.net (examples/fabrikam.toml) loses its Dublin Edge pool, which carries its SIP
# federation with contoso.com; Redmond's Edge pool takes federation over. Seed 002,
# "Fail over the Edge pool used for Skype for Business Server federation", with fabrikam's
# names. Steps 1-5 (Topology Builder's checkboxes, published):
Disable-CsEdgePoolFederation -Identity edge-dub.fabrikam.net
Enable-CsEdgePoolFederation -Identity edge-red.fabrikam.net
# Step 6 (Run Again on the Edge server that takes federation over):
Invoke-CsServerSetup -ComputerName edge-red-a.fabrikam.net
# Partners find fabrikam's Access Edge through _sipfederationtls._tcp -> sip.fabrikam.net:
# point that name at Redmond's Access Edge (its external address).
Set-DnsServerResourceRecord -ZoneName fabrikam.net -Name sip -RRType A -IPv4Address 127.0.5.42
Get-DnsServerResourceRecord -ZoneName fabrikam.net -Name sip
# The partners fabrikam federates with, as its Access Edge checks them:
Get-CsAllowedDomain
