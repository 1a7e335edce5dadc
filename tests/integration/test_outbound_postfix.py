"""Outbound delivery with real Postfix instances (issue 10, "What it must show" 1): private
Postfix configurations on 127.0.0.1 (perf/postfix/*.cf.in, as perf/compare runs them), never the
system instance. Needs root; installs Debian's postfix when it is missing, as perf/compare does.

1. ringmta -> Postfix: two messages relayed to a Postfix that delivers to Maildir; a recipient
   Postfix does not know is refused at RCPT and ringmta's DSN, with Postfix's reply, reaches the
   local sender.
2. Postfix -> ringmta -> Postfix: a message injected into one Postfix that routes the domain to
   ringmta, which routes it to the second Postfix, arrives in its Maildir once.
Both hops of the chain run STARTTLS (issue 11): the receiving Postfix offers TLS with a
self-signed certificate and ringmta (smtp_tls_security_level = may) uses it, the delivery line
naming TLS 1.3 and the cipher, Postfix's Received: saying so too; the forwarding Postfix sends to
ringmta with smtp_tls_security_level = encrypt, so that hop is TLS or nothing.
"""
import importlib.machinery
import importlib.util
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Daemon, Results, free_port  # noqa

loader = importlib.machinery.SourceFileLoader("compare", os.path.join(ROOT, "perf", "compare"))
spec = importlib.util.spec_from_loader("compare", loader)
compare = importlib.util.module_from_spec(spec)
loader.exec_module(compare)


def make_cert(d, cn):
    crt, key = os.path.join(d, cn + ".pem"), os.path.join(d, cn + ".key")
    subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days",
                    "3", "-subj", "/CN=" + cn], check=True, capture_output=True)
    os.chmod(key, 0o644)   # read by Postfix's smtpd(8) and tlsmgr(8)
    return crt, key


def add_tlsmgr(conf):
    """Postfix's TLS needs its tlsmgr(8) (the PRNG and the session cache)."""
    master = compare.read(os.path.join(conf, "master.cf"))
    compare.write(os.path.join(conf, "master.cf"), master +
                  "tlsmgr         unix  -       -       n       1000?   1       tlsmgr\n")


class Receiver(compare.Postfix):
    """Postfix delivering user0..user9@localhost to Maildir, offering STARTTLS."""

    def render(self, rundir):
        conf = super().render(rundir)
        crt, key = make_cert(conf, "receiver.localhost")
        main = compare.read(os.path.join(conf, "main.cf"))
        compare.write(os.path.join(conf, "main.cf"), main +
                      "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = %s\n"
                      "smtpd_tls_key_file = %s\nsmtpd_tls_received_header = yes\n" % (crt, key))
        add_tlsmgr(conf)
        return conf


class Forwarder(compare.Postfix):
    """Postfix that sends mail for localhost to ringmta (transport_maps) over smtp(8)."""

    def __init__(self, port, to_port):
        super().__init__(port, 10)
        self.to_port = to_port

    def render(self, rundir):
        conf = super().render(rundir)
        compare.write(os.path.join(conf, "transport"),
                      "localhost smtp:[127.0.0.1]:%d\n" % self.to_port)
        compare.run(["postmap", "-c", conf, os.path.join(conf, "transport")])
        main = compare.read(os.path.join(conf, "main.cf"))
        compare.write(os.path.join(conf, "main.cf"), main + "transport_maps = hash:%s/transport\n"
                      "smtp_tls_security_level = encrypt\n" % conf)
        master = compare.read(os.path.join(conf, "master.cf"))
        compare.write(os.path.join(conf, "master.cf"), master +
                      "smtp           unix  -       -       n       -       -       smtp\n")
        add_tlsmgr(conf)
        return conf


def maillog(pf):
    """The end of a private Postfix's log, for failure messages."""
    path = os.path.join(os.path.dirname(pf.mail), "data", "maillog")
    return compare.read(path, "")[-3000:]


def wait_files(path, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = os.listdir(path) if os.path.isdir(path) else []
        if len(files) >= n:
            return files
        time.sleep(0.05)
    return os.listdir(path) if os.path.isdir(path) else []


def send(port, sender, to, body):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(sender, to, body)


def test_ringmta_to_postfix(w):
    d = w["ringmta"]
    send(d.port, "alice@ringmta.test", ["user1@localhost", "user2@localhost"],
         b"Subject: to postfix\r\n\r\nhello postfix\r\n")
    for u in ("user1", "user2"):
        files = wait_files(os.path.join(w["receiver"].mail, u, "new"), 1)
        assert len(files) == 1, (u, files)
        with open(os.path.join(w["receiver"].mail, u, "new", files[0]), "rb") as f:
            text = f.read()
        assert b"hello postfix" in text and b"by mx.example.test (ringmta)" in text, text[:500]
        # Postfix's own Received: for the hop from ringmta names the TLS it saw.
        assert re.search(rb"\(using TLSv1\.3 with cipher [A-Z0-9_-]+", text), \
            (text[:800], maillog(w["receiver"]))
    deadline = time.monotonic() + 10
    while True:   # shards write their log lines in batches
        log = d.read_log()
        lines = [l for l in log.splitlines() if "event=delivery" in l and "user1@localhost" in l]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines and re.search(r'status=delivered .* tls="TLSv1\.3 with cipher TLS_', lines[0]), log
    send(d.port, "alice@ringmta.test", ["nosuch@localhost"], b"Subject: x\r\n\r\nx\r\n")
    dsn = d.wait_for_files("alice", 1, timeout=20)
    assert len(dsn) == 1, d.read_log()[-2000:]
    with open(dsn[0], "rb") as f:
        text = f.read().decode("utf-8", "replace")
    assert "Diagnostic-Code: smtp; 550 5.1.1" in text, text
    assert "Remote-MTA: dns; 127.0.0.1" in text, text


def test_postfix_to_ringmta_to_postfix(w):
    send(w["forwarder"].port, "carol@example.org", ["user3@localhost"],
         b"Subject: chain\r\n\r\nthrough ringmta\r\n")
    files = wait_files(os.path.join(w["receiver"].mail, "user3", "new"), 1)
    assert len(files) == 1, (files, maillog(w["forwarder"]), w["ringmta"].read_log()[-2000:])
    with open(os.path.join(w["receiver"].mail, "user3", "new", files[0]), "rb") as f:
        text = f.read()
    assert b"through ringmta" in text and b"(ringmta)" in text, text[:800]
    # The forwarder insisted on TLS (encrypt): ringmta's Received: says ESMTPS and the cipher.
    assert re.search(rb"\(using TLSv1\.3 with cipher TLS_[A-Z0-9_]+ .*\r?\n?.*with ESMTPS",
                     text), text[:1200]
    time.sleep(1)
    assert len(os.listdir(os.path.join(w["receiver"].mail, "user3", "new"))) == 1


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (Postfix's master)")
        sys.exit(77)
    compare.postfix_ensure()
    tmp = tempfile.mkdtemp(prefix="ringmta-pf-", dir="/var/tmp")
    os.chmod(tmp, 0o755)
    res = Results()
    w = {}
    started = []
    try:
        rport, fport = free_port(), free_port()
        w["receiver"] = Receiver(free_port(), 10)
        d = Daemon(shards=2, extra={"local_domains": "ringmta.test",
                                    "relay_networks": "127.0.0.0/8"})
        crt, key = make_cert(d.dir, "mx.example.test")
        d.options.update({"tls_cert_file": crt, "tls_key_file": key})
        transport = os.path.join(d.dir, "transport")
        with open(transport, "w") as f:
            f.write("localhost [127.0.0.1]:%d\n" % w["receiver"].port)
        d.options["transport_maps"] = transport
        d.options["listen"] = "127.0.0.1:%d" % rport
        d.port = rport
        w["ringmta"] = d
        w["forwarder"] = Forwarder(fport, rport)
        for name in ("receiver", "forwarder"):
            sub = os.path.join(tmp, name)
            os.makedirs(sub)
            os.chmod(sub, 0o755)
            w[name].start(sub)
            started.append(w[name])
        d.start()
        res.run("test_ringmta_to_postfix", test_ringmta_to_postfix, w)
        res.run("test_postfix_to_ringmta_to_postfix", test_postfix_to_ringmta_to_postfix, w)
        assert d.stop() == 0
    finally:
        if "ringmta" in w:
            w["ringmta"].cleanup()
        for p in started:
            p.stop()
        compare.CLEANUP.all()
        shutil.rmtree(tmp, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
