# contoso.com's XMPP partner litwareinc.com (examples/contoso.toml allows it) runs its own
# XMPP server. Its public DNS is, in the lab, a zone of the lab's DNS server: the XMPP
# gateway finds litwareinc.com's server through _xmpp-server._tcp, as on the Internet.
Get-CsXmppAllowedPartner -Identity litwareinc.com
Add-DnsServerPrimaryZone -Name litwareinc.com
Add-DnsServerResourceRecordA -ZoneName litwareinc.com -Name xmpp -IPv4Address 127.0.77.10
Add-DnsServerResourceRecord -Srv -ZoneName litwareinc.com -Name _xmpp-server._tcp -DomainName xmpp.litwareinc.com -Priority 10 -Weight 0 -Port 5269
Get-DnsServerResourceRecord -ZoneName litwareinc.com -Name _xmpp-server._tcp -RRType SRV
