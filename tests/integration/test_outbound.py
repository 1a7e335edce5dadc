"""Outbound delivery (issue 10, "What it must show" 1): ringmta relays to receivers on 127.0.0.x
found through a real DNS server (NSD behind Unbound, as in test_dns.py), with remote_smtp_port
set to the receivers' port. The receivers are small scripted servers (smtpfake.py), so that each
behaviour is exact; test_outbound_postfix.py has the runs with a real Postfix.

Covered: MX preference and failover (refused connection, 421 greeting), equal preferences both
used, implicit MX, AAAA over ::1, null MX and NXDOMAIN bounces, SERVFAIL deferral then delivery,
4xx at RCPT and after DATA retried and delivered exactly once, 5xx bounced with a well-formed DSN
delivered to a local sender, mixed per-recipient results, recipient grouping, connection reuse
with the concurrency limit never exceeded (measured at the receiver), SIZE and SMTPUTF8 refusals
bounced without sending data, DSN parameters passed on, no bounce for <>, expiry, deferred mail
surviving kill -9, relayhost and transport_maps, a dead destination suspended, a large body
spooled in parts relayed intact.
"""
import email
import email.policy
import os
import re
import shutil
import smtplib
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnsharness import Nsd, Unbound, make_workdir, need  # noqa
from harness import Daemon, Results, free_port  # noqa
from smtpfake import FakeSmtp  # noqa

PORT = free_port()      # every receiver listens on this port, each on its own address
ZONE = """
a1 A 127.0.0.11
a2 A 127.0.0.12
a3 A 127.0.0.13
failover MX 10 a1
failover MX 20 a2
failover MX 30 a3
e1 A 127.0.0.21
e2 A 127.0.0.22
equal MX 10 e1
equal MX 10 e2
implicit A 127.0.0.31
six AAAA ::1
nullmx MX 0 .
""" + "".join("h%d A 127.0.0.%d\nd%d MX 10 h%d\n" % (i, 40 + i, i, i) for i in range(1, 20)) \
    + "flaky MX 10 h19\n"

W = None


class FlakyProxy:
    """A UDP DNS proxy in front of Unbound that answers SERVFAIL for names with "flaky" until
    healed."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.healed = False
        self.servfails = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            threading.Thread(target=self.one, args=(data, peer), daemon=True).start()

    def one(self, data, peer):
        if b"\x05flaky" in data and not self.healed:
            flags = struct.unpack(">H", data[2:4])[0] | 0x8000 | 0x0080 | 2
            self.servfails += 1
            self.sock.sendto(data[:2] + struct.pack(">H", flags) + data[4:], peer)
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(3)
            try:
                u.sendto(data, ("127.0.0.1", self.upstream))
                self.sock.sendto(u.recv(4096), peer)
            except OSError:
                pass


class World:
    def __init__(self):
        self.dir = make_workdir()
        self.nsd = Nsd(self.dir, {"out.test": ZONE})
        self.unbound = Unbound(self.dir, self.nsd.port, ["test."], [])
        self.proxy = FlakyProxy(self.unbound.port)
        self.fakes = []

    def fake(self, host, **kw):
        f = FakeSmtp(host, PORT, **kw)
        self.fakes.append(f)
        return f

    def daemon(self, extra=None, files=None):
        opts = {"dns_servers": "127.0.0.1:%d" % self.proxy.port, "dns_timeout": "2",
                "dns_attempts": "1", "remote_smtp_port": str(PORT),
                "relay_networks": "127.0.0.0/8", "minimal_backoff_time": "1s",
                "maximal_backoff_time": "2s", "connection_idle_time": "1"}
        opts.update(extra or {})
        d = Daemon(shards=2, extra=opts)
        for key, text in (files or {}).items():
            path = os.path.join(d.dir, key)
            with open(path, "w") as f:
                f.write(text)
            d.options[key] = path
        return d

    def stop(self):
        for f in self.fakes:
            f.stop()
        self.unbound.stop()
        self.nsd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


LINE = re.compile(r"event=delivery qid=(\S+) to=<([^>]*)> status=(\S+) delay=\S+ dsn=(\S+) "
                  r"detail=\"([^\"]*)\"(?: relay=(\S+))?")


def log_escape(text):
    """As base/log.c writes values from the network: octets outside printable ASCII as \\xHH."""
    return "".join(chr(b) if 0x20 < b < 0x7f and b not in (0x22, 0x5c) else "\\x%02x" % b
                   for b in text.encode())


def deliveries(d, to):
    out = []
    for line in d.read_log().splitlines():
        m = LINE.search(line)
        if m and m.group(2) == log_escape(to):
            out.append({"qid": m.group(1), "status": m.group(3), "dsn": m.group(4),
                        "detail": m.group(5), "relay": m.group(6)})
    return out


def wait_status(d, to, status, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        x = deliveries(d, to)
        if x and x[-1]["status"] == status:
            return x
        time.sleep(0.05)
    raise AssertionError("no %s line for %s: %s\n%s" % (status, to, deliveries(d, to),
                                                       d.read_log()[-3000:]))


def send(d, to, sender="alice@localhost", body="Subject: t\r\n\r\nhello\r\n", mail_opts=(),
         rcpt_opts=()):
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("client.test")
        refused = s.sendmail(sender, to, body.encode() if isinstance(body, str) else body,
                             mail_options=list(mail_opts), rcpt_options=list(rcpt_opts))
        assert not refused, refused


def dsns(d, user="alice", count=1, timeout=10.0):
    files = d.wait_for_files(user, count, timeout=timeout)
    out = []
    for path in files:
        with open(path, "rb") as f:
            out.append(email.message_from_binary_file(f, policy=email.policy.compat32))
    return out


def status_fields(msg):
    """The per-recipient fields of a DSN's message/delivery-status part."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            return [dict(b.items()) for b in blocks[1:]]
    return []


# ---- the tests ----

def test_mx_preference_and_failover(d):
    W.fake("127.0.0.12", greeting="421 4.3.2 busy, try another")
    good = W.fake("127.0.0.13")
    send(d, "bob@failover.out.test")
    x = wait_status(d, "bob@failover.out.test", "delivered")
    assert "a3.out.test[127.0.0.13]" in x[-1]["relay"], x
    assert len(good.accepted()) == 1


def test_equal_preferences_both_used(d):
    e1, e2 = W.fake("127.0.0.21"), W.fake("127.0.0.22")
    for i in range(8):
        send(d, "u%d@equal.out.test" % i)
    for i in range(8):
        wait_status(d, "u%d@equal.out.test" % i, "delivered")
    assert len(e1.accepted()) > 0 and len(e2.accepted()) > 0, (len(e1.accepted()),
                                                                 len(e2.accepted()))


def test_implicit_mx(d):
    f = W.fake("127.0.0.31")
    send(d, "bob@implicit.out.test")
    wait_status(d, "bob@implicit.out.test", "delivered")
    assert len(f.accepted()) == 1


def test_aaaa_over_ipv6_loopback(d):
    f = W.fake("::1")
    send(d, "bob@six.out.test")
    x = wait_status(d, "bob@six.out.test", "delivered")
    assert "[::1]" in x[-1]["relay"], x
    assert len(f.accepted()) == 1


def test_null_mx_and_nxdomain_bounce(d):
    send(d, "bob@nullmx.out.test", sender="nm@localhost")
    x = wait_status(d, "bob@nullmx.out.test", "bounced")
    assert x[-1]["dsn"] == "5.1.10", x
    send(d, "bob@nowhere.out.test", sender="nx@localhost")
    x = wait_status(d, "bob@nowhere.out.test", "bounced")
    assert x[-1]["dsn"].startswith("5."), x
    assert len(d.wait_for_files("nm", 1)) == 1 and len(d.wait_for_files("nx", 1)) == 1


def test_servfail_deferred_then_delivered(d):
    f = W.fake("127.0.0.59")
    send(d, "bob@flaky.out.test")
    x = wait_status(d, "bob@flaky.out.test", "deferred")
    assert x[-1]["dsn"].startswith("4."), x
    W.proxy.healed = True
    wait_status(d, "bob@flaky.out.test", "delivered", timeout=20)
    assert len(f.accepted()) == 1 and W.proxy.servfails >= 1


def test_4xx_at_rcpt_and_after_data_retried_delivered_once(d):
    f = W.fake("127.0.0.41", rcpt=lambda a, n: "451 4.2.0 later" if n == 1 else "250 ok")
    send(d, "bob@d1.out.test")
    wait_status(d, "bob@d1.out.test", "deferred")
    wait_status(d, "bob@d1.out.test", "delivered", timeout=20)
    g = W.fake("127.0.0.42", end=lambda n: "451 4.3.0 disk full" if n == 1 else "250 ok")
    send(d, "bob@d2.out.test")
    wait_status(d, "bob@d2.out.test", "delivered", timeout=20)
    time.sleep(2.5)   # past another back-off: a repeat would show now
    assert len(f.accepted()) == 1 and len(g.accepted()) == 1
    assert [x["status"] for x in deliveries(d, "bob@d2.out.test")] == ["deferred", "delivered"]


def test_5xx_bounced_with_wellformed_dsn_to_local_sender(d):
    W.fake("127.0.0.43", rcpt=lambda a, n: "550 5.1.1 <%s>: no such user" % a)
    send(d, "nobody@d3.out.test", sender="carol@localhost")
    x = wait_status(d, "nobody@d3.out.test", "bounced")
    assert x[-1]["dsn"] == "5.1.1", x
    [msg] = dsns(d, "carol")
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    [f] = status_fields(msg)
    assert f["Action"] == "failed" and f["Status"] == "5.1.1", f
    assert f["Diagnostic-Code"].startswith("smtp; 550 5.1.1"), f
    assert f["Remote-MTA"] == "dns; h3.out.test", f


def test_mixed_per_recipient_results(d):
    def rcpt(addr, n):
        return {"ok": "250 ok", "no": "550 5.1.1 unknown", "later": "450 4.2.1 busy"}[
            addr.split("@")[0]]
    f = W.fake("127.0.0.44", rcpt=rcpt)
    send(d, ["ok@d4.out.test", "no@d4.out.test", "later@d4.out.test"], sender="dave@localhost")
    wait_status(d, "ok@d4.out.test", "delivered")
    wait_status(d, "no@d4.out.test", "bounced")
    wait_status(d, "later@d4.out.test", "deferred")
    assert len(f.accepted()) == 1 and len(f.accepted()[0]["rcpts"]) == 1


def test_recipients_of_one_domain_in_one_transaction(d):
    f = W.fake("127.0.0.45")
    to = ["r%d@d5.out.test" % i for i in range(5)]
    send(d, to)
    m = f.wait_accepted(1)
    assert len(m) == 1 and len(m[0]["rcpts"]) == 5, m


def test_reuse_and_concurrency_limit_at_the_receiver(d):
    f = W.fake("127.0.0.46", delay=0.01)
    n = 60
    threads = [threading.Thread(target=send, args=(d, "u%d@d6.out.test" % i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = f.wait_accepted(n, timeout=30)
    assert len(got) == n, len(got)
    print("     d6: %d messages over %d connections, at most %d at once" % (
        n, f.connections, f.open_max))
    assert f.open_max <= 3, f.open_max     # destination_policy_file: concurrency=3
    assert f.connections <= 12, f.connections


def test_size_and_smtputf8_refusals_bounce_without_data(d):
    f = W.fake("127.0.0.47", ehlo=["PIPELINING", "SIZE 2000"])
    send(d, "big@d7.out.test", body="Subject: big\r\n\r\n" + "x" * 70 * 60 + "\r\n")
    x = wait_status(d, "big@d7.out.test", "bounced")
    assert x[-1]["dsn"] == "5.3.4", x
    send(d, "j\u00f6rg@d7.out.test".encode().decode(), mail_opts=["SMTPUTF8"])
    x = wait_status(d, "j\u00f6rg@d7.out.test", "bounced")
    assert x[-1]["dsn"] == "5.6.7", x
    assert not any(c.upper().startswith(("MAIL", "DATA", "BDAT")) for c in f.commands), f.commands


def test_dsn_parameters_passed_on(d):
    f = W.fake("127.0.0.48")
    send(d, "bob@d8.out.test", sender="frank@localhost", mail_opts=["RET=HDRS", "ENVID=abc+2Bdef"],
         rcpt_opts=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@d8.out.test"])
    [m] = f.wait_accepted(1)
    assert "RET=HDRS" in m["mail"] and "ENVID=abc+2Bdef" in m["mail"], m["mail"]
    assert "NOTIFY=SUCCESS,FAILURE" in m["rcpts"][0], m["rcpts"]
    assert "ORCPT=rfc822;bob@d8.out.test" in m["rcpts"][0], m["rcpts"]
    wait_status(d, "bob@d8.out.test", "delivered")
    time.sleep(0.5)
    assert d.mailbox_files("frank") == [], "the receiver took DSN: no relayed notice"


def test_no_bounce_for_null_sender(d):
    W.fake("127.0.0.49", rcpt=lambda a, n: "550 5.1.1 no")
    send(d, "bob@d9.out.test", sender="")
    wait_status(d, "bob@d9.out.test", "bounced")
    time.sleep(0.5)
    assert "event=dsn" not in "".join(l for l in d.read_log().splitlines()
                                      if "d9.out.test" in l)


def test_dead_destination_suspended(d):
    """Nothing listens on h10: its connections fail; after the cohort, recipients are deferred
    without connecting (the log says so with the destination's last error)."""
    for i in range(8):
        send(d, "u%d@d10.out.test" % i)
    details = []
    for i in range(8):
        x = wait_status(d, "u%d@d10.out.test" % i, "deferred")
        assert "refused" in x[-1]["detail"], x
        details += [y["detail"] for y in x]
    time.sleep(2)
    details += [y["detail"] for i in range(8) for y in deliveries(d, "u%d@d10.out.test" % i)]
    assert any(t.startswith("destination suspended") for t in details), details


def test_expiry_bounces(_d):
    W.fake("127.0.0.51", rcpt=lambda a, n: "451 4.2.0 never")
    d = W.daemon({"queue_lifetime": "3s"})
    try:
        d.start()
        send(d, "bob@d11.out.test", sender="erin@localhost")
        x = wait_status(d, "bob@d11.out.test", "expired", timeout=20)
        assert x[-1]["dsn"] == "4.4.7", x
        assert len(d.wait_for_files("erin", 1)) == 1
    finally:
        d.cleanup()


def test_deferred_survives_kill_9(_d):
    state = {"up": False}
    f = W.fake("127.0.0.52", rcpt=lambda a, n: "250 ok" if state["up"] else "451 4.2.0 not yet")
    d = W.daemon({"minimal_backoff_time": "2s", "maximal_backoff_time": "3s"})
    try:
        d.start()
        send(d, "bob@d12.out.test")
        wait_status(d, "bob@d12.out.test", "deferred")
        d.kill()
        state["up"] = True
        d.start()
        wait_status(d, "bob@d12.out.test", "delivered", timeout=20)
        time.sleep(3)
        assert len(f.accepted()) == 1
    finally:
        d.cleanup()


def test_relayhost_and_transport_maps(_d):
    relay = W.fake("127.0.0.53")
    routed = W.fake("127.0.0.54")
    d = W.daemon({"relayhost": "[127.0.0.53]"},
                 files={"transport_maps": "routed.example [127.0.0.54]:%d\n"
                        ".sub.example [127.0.0.54]\n" % PORT})
    try:
        d.start()
        send(d, "a@anywhere.example")
        send(d, "b@routed.example")
        send(d, "c@x.sub.example")
        assert len(relay.wait_accepted(1)) == 1
        assert len(routed.wait_accepted(2)) == 2
        assert "<a@anywhere.example>" in relay.accepted()[0]["rcpts"][0]
    finally:
        d.cleanup()


def test_large_body_in_parts_relayed_intact(d):
    """A body that arrives over many loop turns is spooled in parts (BODY records, then a PARTS
    record); the session reads it back part by part from the spool and sends it whole, with
    its lines that begin with a dot stuffed again (RFC 5321 4.5.2)."""
    rx = W.fake("127.0.0.57")
    lines = [b".dot line %d " % i + b"x" * 900 if i % 7 == 0 else b"line %d " % i + b"y" * 900
             for i in range(1600)]
    body = b"Subject: large\r\n\r\n" + b"\r\n".join(lines) + b"\r\nend\r\n"
    send(d, "big@d17.out.test", body=body)
    wait_status(d, "big@d17.out.test", "delivered", timeout=30)
    got = rx.wait_accepted(1)
    assert len(got) == 1, len(got)
    data = got[0]["data"]
    assert data.endswith(body), (len(data), len(body))


def test_idle_connection_gives_way_at_the_connection_limit(_d):
    """One outbound connection for the shard: a destination with work takes the place of one
    that only idles (connection_idle_time is long), instead of waiting for it."""
    a, b = W.fake("127.0.0.55"), W.fake("127.0.0.56")
    d = W.daemon({"outbound_connection_limit": "1", "connection_idle_time": "60"})
    d.options["shards"] = "1"
    try:
        d.start()
        send(d, "x@d15.out.test")
        wait_status(d, "x@d15.out.test", "delivered")
        t = time.monotonic()
        send(d, "y@d16.out.test")
        wait_status(d, "y@d16.out.test", "delivered", timeout=10)
        assert time.monotonic() - t < 5, time.monotonic() - t
        assert len(a.accepted()) == 1 and len(b.accepted()) == 1
        assert "QUIT" in a.commands, a.commands
    finally:
        d.cleanup()


def main():
    need("nsd", "unbound")
    global W
    W = World()
    policy = "d6.out.test concurrency=3 messages_per_connection=100\n" \
             "equal.out.test messages_per_connection=1\n"
    d = W.daemon(files={"destination_policy_file": policy})
    res = Results()
    try:
        d.start()
        only = os.environ.get("OUTBOUND_TEST_ONLY", "")
        for name, fn in sorted(globals().items()):
            if name.startswith("test_") and callable(fn) and only in name:
                res.run(name, fn, d)
        assert d.stop() == 0, "clean stop"
    finally:
        d.cleanup()
        W.stop()
    res.finish()


if __name__ == "__main__":
    main()
