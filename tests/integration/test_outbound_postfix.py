"""Outbound delivery with real Postfix instances (issue 10, "What it must show" 1): private
Postfix configurations on 127.0.0.1 (perf/postfix/*.cf.in, as perf/compare runs them), never the
system instance. Needs root; installs Debian's postfix when it is missing, as perf/compare does.

1. ringmta -> Postfix: two messages relayed to a Postfix that delivers to Maildir; a recipient
   Postfix does not know is refused at RCPT and ringmta's DSN, with Postfix's reply, reaches the
   local sender.
2. Postfix -> ringmta -> Postfix: a message injected into one Postfix that routes the domain to
   ringmta, which routes it to the second Postfix, arrives in its Maildir once.
"""
import importlib.machinery
import importlib.util
import os
import shutil
import smtplib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Daemon, Results, free_port  # noqa

loader = importlib.machinery.SourceFileLoader("compare", os.path.join(ROOT, "perf", "compare"))
spec = importlib.util.spec_from_loader("compare", loader)
compare = importlib.util.module_from_spec(spec)
loader.exec_module(compare)


class Receiver(compare.Postfix):
    """Postfix delivering user0..user9@localhost to Maildir."""


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
                      % conf)
        master = compare.read(os.path.join(conf, "master.cf"))
        compare.write(os.path.join(conf, "master.cf"), master +
                      "smtp           unix  -       -       n       -       -       smtp\n")
        return conf


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
    assert len(files) == 1, files
    with open(os.path.join(w["receiver"].mail, "user3", "new", files[0]), "rb") as f:
        text = f.read()
    assert b"through ringmta" in text and b"(ringmta)" in text, text[:800]
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
