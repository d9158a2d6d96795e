# Edge pool 1, which carries XMPP federation, is lost; Edge pool 2 takes it over.
# Seed 002, "To fail over the Edge pool used for XMPP federation".
# Step 2: stop the services on each Edge server of the pool that takes XMPP over.
Stop-CsWindowsService -ComputerName edgeserver2.contoso.com
# Step 3: the XMPP federation route goes through Edge pool 2.
Set-CsSite Site2 -XmppExternalFederationRoute EdgeServer2.contoso.com
# Step 4: the external DNS A record for XMPP federation points at EdgeServer2.
Set-DnsServerResourceRecord -ZoneName contoso.com -Name xmpp -RRType A -IPv4Address 127.0.2.22
# Step 5: an SRV record for XMPP federation that resolves to Edge pool 2 (port 5269).
Add-DnsServerResourceRecord -Srv -ZoneName contoso.com -Name _xmpp-server._tcp -DomainName edgeserver2-ext.contoso.com -Priority 10 -Weight 0 -Port 5269
Get-DnsServerResourceRecord -ZoneName contoso.com -Name _xmpp-server._tcp -RRType SRV
# Step 7: start the services on the Edge servers of Edge pool 2, and apply the new route
# there (the Deployment Wizard's Run Again).
Start-CsWindowsService -ComputerName edgeserver2.contoso.com
Invoke-CsServerSetup -ComputerName edgeserver2.contoso.com
# Step 6: port 5269 is open on Edge pool 2 (checked once its services run: tandem's
# listener is real, so the port opens when RTCXMPPTGWPX starts).
Test-NetConnection -ComputerName edgeserver2-ext.contoso.com -Port 5269
