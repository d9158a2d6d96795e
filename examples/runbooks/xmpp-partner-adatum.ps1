# A new XMPP partner, adatum.com, whose server has no certificate the Edge trusts: it
# proves its domain with Server Dialback (XEP-0220) over TLS, and is refused until it is
# allowed here.
New-CsXmppAllowedPartner -Identity adatum.com -TlsNegotiation Optional -SaslNegotiation NotSupported -SupportDialbackNegotiation $true
Get-CsXmppAllowedPartner -Identity adatum.com
Add-DnsServerPrimaryZone -Name adatum.com
Add-DnsServerResourceRecordA -ZoneName adatum.com -Name xmpp -IPv4Address 127.0.77.11
Add-DnsServerResourceRecord -Srv -ZoneName adatum.com -Name _xmpp-server._tcp -DomainName xmpp.adatum.com -Priority 10 -Weight 0 -Port 5269
