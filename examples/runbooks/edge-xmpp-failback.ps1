# Edge pool 1 is back; XMPP federation returns to it. Seed 002, "Fail back ...", step 3
# (the seed's A record step names EdgeServer2; the restored EdgeServer1 is meant).
Start-CsWindowsService -ComputerName edgeserver1.contoso.com
Set-CsSite Site1 -XmppExternalFederationRoute EdgeServer1.contoso.com
Set-DnsServerResourceRecord -ZoneName contoso.com -Name xmpp -RRType A -IPv4Address 127.0.1.22
Remove-DnsServerResourceRecord -ZoneName contoso.com -Name _xmpp-server._tcp -RRType SRV -RecordData edgeserver2-ext.contoso.com
Invoke-CsServerSetup -ComputerName edgeserver1.contoso.com
Test-NetConnection -ComputerName edgeserver1-ext.contoso.com -Port 5269
