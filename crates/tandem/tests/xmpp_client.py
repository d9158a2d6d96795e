#!/usr/bin/python3
"""A tiny XMPP client for the federation tests (run it with /usr/bin/python3: it needs
Debian's python3-slixmpp).

It logs in to one XMPP server (Prosody in the tests) as one user and then

  send     --to JID --text TEXT [--text TEXT ...]
           sends one <message type='chat'> per --text, then makes one round trip to the
           server (an iq ping to its own domain), so that on exit 0 the server has read and
           routed every message; exit 0. With --linger S it stays S more seconds and exits
           4 if a message bounced (type='error') meanwhile: delivery to another server
           happens after the round trip, and so do its bounces.
  receive  --from JID --count N [--timeout S] [--echo]
           announces itself available (initial presence, so chat messages are routed to
           it; once the server has it, stderr gets the line 'xmpp_client: online as
           FULLJID'), prints each received chat/normal message with a body from JID (a bare JID:
           any resource matches; '*' takes any sender) as one line FROM<TAB>BODY (FROM is
           the sender's bare JID; a newline in a body is printed as \\n) and exits 0 once N
           were received, 1 when S seconds pass first. With --echo each message is sent
           back to its sender as it arrives.
  exchange --to JID --text TEXT ... --from JID --count N [--timeout S]
           both in one login: becomes available, sends, then waits as receive does
           (messages that arrive while sending count too).

Connection options (before the command):
  --jid alice@jabber.example --password secret --server 127.0.77.10:5222
  --tls none      (the default) no STARTTLS; SCRAM-SHA-1 over plain TCP (Prosody's
                  internal_plain/hashed auth offers it; PLAIN is allowed too)
  --tls starttls --ca FILE   STARTTLS required, the server's certificate checked against
                  FILE for the JID's domain
  --resource R    (default 'test')
  --connect-timeout S  (default 10) how long login may take

Exit codes: 0 done; 1 timed out waiting for messages (stderr says how many arrived);
2 bad arguments; 3 could not connect or log in (stderr says why); 4 a sent message
bounced with an error (stderr has the error) or the round trip failed.
Diagnostics go to stderr, one line each, prefixed 'xmpp_client: '.
"""

import argparse
import asyncio
import logging
import sys

try:
    import slixmpp
    from slixmpp.exceptions import IqError, IqTimeout
except ImportError as e:  # pragma: no cover
    print(f"xmpp_client: cannot import slixmpp ({e}); run with /usr/bin/python3 "
          "and install python3-slixmpp", file=sys.stderr)
    sys.exit(2)


def say(msg):
    print(f"xmpp_client: {msg}", file=sys.stderr, flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(f"{args.jid}/{args.resource}", args.password)
        self.args = args
        self.received = []
        self.errors = []
        self.want_from = None
        if getattr(args, "sender", None) and args.sender != "*":
            self.want_from = slixmpp.JID(args.sender).bare
        self.enough = asyncio.Event()
        self.session_ok = asyncio.Event()
        self.failed = None
        self.register_plugin("xep_0199")  # XMPP Ping, for the round trip
        # Plain TCP is the default in the tests: allow SASL PLAIN there too.
        self["feature_mechanisms"].unencrypted_plain = True
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("ssl_invalid_chain", self.on_bad_cert)

    def on_failed_auth(self, _event):
        self.fail("authentication failed (wrong --jid/--password?)")

    def on_connection_failed(self, event):
        self.fail(f"connection failed: {event}")

    def on_bad_cert(self, err):
        self.fail(f"TLS: the server's certificate was not accepted: {err}")

    def on_stream_error(self, event):
        self.fail(f"stream error from server: {event['condition']} {event['text']}".rstrip())

    def on_disconnected(self, reason):
        if not self.session_ok.is_set():
            self.fail(f"disconnected before the session started ({reason or 'no reason given'})")

    def fail(self, why):
        if self.failed is None:
            self.failed = why
        self.session_ok.set()  # wake the waiter
        self.enough.set()

    async def on_session_start(self, _event):
        if self.args.command in ("receive", "exchange"):
            self.send_presence()
            # A round trip, so that the server has taken the presence when we say so.
            try:
                await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=self.args.connect_timeout)
            except (IqError, IqTimeout) as e:
                self.fail(f"round trip to the server after the initial presence failed: {e!r}")
                return
            say(f"online as {self.boundjid.full}")
        self.session_ok.set()

    def on_message(self, msg):
        if msg["type"] == "error":
            err = msg["error"]
            line = f"message to {msg['from']} bounced: {err['type']} {err['condition']} {err['text']}".rstrip()
            self.errors.append(line)
            say(line)
            self.enough.set()  # a bounce ends the wait: exit 4
            return
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        sender = msg["from"].bare
        body = msg["body"].replace("\\", "\\\\").replace("\n", "\\n")
        if self.want_from is not None and sender != self.want_from:
            say(f"ignoring a message from {sender}: {body}")
            return
        self.received.append((sender, body))
        print(f"{sender}\t{body}", flush=True)
        if getattr(self.args, "echo", False):
            self.send_message(mto=msg["from"].bare, mbody=msg["body"], mtype="chat")
        if len(self.received) >= self.args.count:
            self.enough.set()


async def run(args):
    host, _, port = args.server.rpartition(":")
    if not host or not port.isdigit():
        say(f"--server must be HOST:PORT, not {args.server!r}")
        return 2
    xmpp = Client(args)
    if args.tls == "starttls":
        if args.ca:
            xmpp.ca_certs = args.ca
        xmpp.connect((host, int(port)), force_starttls=True, disable_starttls=False)
    else:
        xmpp.connect((host, int(port)), force_starttls=False, disable_starttls=True)

    try:
        await asyncio.wait_for(xmpp.session_ok.wait(), args.connect_timeout)
    except asyncio.TimeoutError:
        say(f"no session with {args.server} as {args.jid} within {args.connect_timeout}s")
        xmpp.abort()
        return 3
    if xmpp.failed:
        say(xmpp.failed)
        xmpp.abort()
        return 3

    code = 0
    if args.command in ("send", "exchange"):
        for text in args.text:
            xmpp.send_message(mto=args.to, mbody=text, mtype="chat")
        # A round trip to our own server: it answers only after it read (and routed) what
        # came before on the same stream.
        try:
            await xmpp["xep_0199"].ping(jid=slixmpp.JID(args.jid).domain, timeout=args.connect_timeout)
        except (IqError, IqTimeout) as e:
            say(f"round trip to the server after sending failed: {e!r}")
            code = 4
        if code == 0:
            say(f"sent {len(args.text)} message(s) to {args.to}")
        linger = getattr(args, "linger", 0) or 0
        if code == 0 and linger > 0:
            # Delivery to another server happens after the round trip: stay to hear bounces,
            # and go as soon as one comes (a bounce or a failure sets `enough`).
            try:
                await asyncio.wait_for(xmpp.enough.wait(), linger)
            except asyncio.TimeoutError:
                pass

    if code == 0 and args.command in ("receive", "exchange"):
        try:
            await asyncio.wait_for(xmpp.enough.wait(), args.timeout)
        except asyncio.TimeoutError:
            pass
        if xmpp.failed:
            say(xmpp.failed)
            code = 3
        elif xmpp.errors:
            code = 4
        elif len(xmpp.received) < args.count:
            say(f"timed out after {args.timeout}s: received {len(xmpp.received)} of {args.count} "
                f"message(s) from {args.sender}")
            code = 1

    if code == 0 and xmpp.errors:
        code = 4
    if code == 0 and xmpp.failed:
        say(xmpp.failed)
        code = 3
    try:
        await asyncio.wait_for(xmpp.disconnect(wait=2.0), 5)
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - exiting anyway
        xmpp.abort()
    return code


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--server", required=True, help="HOST:PORT of the c2s listener")
    p.add_argument("--resource", default="test")
    p.add_argument("--tls", choices=["none", "starttls"], default="none")
    p.add_argument("--ca", help="CA file to check the server certificate with (--tls starttls)")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--debug", action="store_true", help="slixmpp debug log on stderr")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send")
    s.add_argument("--to", required=True)
    s.add_argument("--text", required=True, action="append")
    s.add_argument("--linger", type=float, default=0.0,
                   help="stay this many seconds after sending; exit 4 if an error bounced")
    r = sub.add_parser("receive")
    r.add_argument("--from", dest="sender", required=True)
    r.add_argument("--count", type=int, default=1)
    r.add_argument("--timeout", type=float, default=20.0)
    r.add_argument("--echo", action="store_true",
                   help="send each message received back to its sender (for latency round trips)")
    e = sub.add_parser("exchange")
    e.add_argument("--to", required=True)
    e.add_argument("--text", required=True, action="append")
    e.add_argument("--from", dest="sender", required=True)
    e.add_argument("--count", type=int, default=1)
    e.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()  # exits 2 on bad arguments

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL,
                        format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(run(args))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
