# Edge pool 1 is back. Seed 002, "Fail back the Edge pool used for Skype for Business
# Server federation or XMPP federation", step 1 (its services run again) and step 2.
Get-CsWindowsService -ComputerName edgeserver1.contoso.com
Disable-CsEdgePoolFederation -Identity edgepool2.contoso.com
Enable-CsEdgePoolFederation -Identity edgepool1.contoso.com
Invoke-CsServerSetup -ComputerName edgeserver1.contoso.com
Set-DnsServerResourceRecord -ZoneName contoso.com -Name sip -RRType A -IPv4Address 127.0.1.22
# Step 4: pool1 uses its own site's Edge pool for media again.
Set-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com -EdgePoolFqdn edgepool1.contoso.com
Get-CsPoolEdgeAssociation -PoolFqdn pool1.contoso.com
