"""The real daemon over loopback: delivery, policy, limits, pipelining, BDAT, shutdown.

Run by `make test` (meson test suite 'integration'); argument: the build directory.
"""
import os
import re
import smtplib
import socket
import subprocess
import time

import harness
from harness import Daemon, Results, smtp_dialog

BODY = (b"From: a@example.org\r\nTo: b@localhost\r\nSubject: hello\r\n\r\n"
        b"line one\r\n.dot at start\r\n..two dots\r\n.\r\n")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def headers_stripped(data):
    """The message as sent: without the Return-Path: and Received: lines the MTA added."""
    assert data.startswith(b"Return-Path: <"), data[:60]
    rest = data.split(b"\r\n", 1)[1]
    assert rest.startswith(b"Received: from "), rest[:60]
    # The Received: header is folded; its continuation lines start with a tab.
    lines = rest.split(b"\r\n")
    i = 1
    while lines[i].startswith(b"\t"):
        i += 1
    return b"\r\n".join(lines[i:])


def test_three_local_users(d):
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("client.example.org")
        s.sendmail("sender@example.org", ["alice@localhost", "bob@localhost", "carol@example.test"],
                   b"Subject: three\r\n\r\nbody\r\n")
    for user in ("alice", "bob", "carol"):
        files = d.wait_for_files(user, 1)
        assert len(files) == 1, (user, files)
        data = read(files[0])
        assert data.startswith(b"Return-Path: <sender@example.org>\r\nReceived: from client.example.org"), data[:120]
        assert data.count(b"Return-Path:") == 1
        assert data.endswith(b"Subject: three\r\n\r\nbody\r\n"), data


def test_dot_heavy_body_exact_bytes(d):
    # RFC 5321 4.5.2: the client doubles leading dots; the stored message has them once.
    original = b"Subject: dots\r\n\r\n" + b"".join(
        b"." * (i % 5) + b"line %d\r\n" % i for i in range(200)) + b".\r\n..\r\n...\r\n"
    stuffed = b"\r\n".join(b"." + l if l.startswith(b".") else l
                           for l in original.split(b"\r\n"))
    raw = (b"EHLO c.example\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<dots@localhost>\r\nDATA\r\n")
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.recv(4096)
        s.sendall(raw)
        buf = b""
        while b"354" not in buf:
            buf += s.recv(4096)
        s.sendall(stuffed + b".\r\n")
        while b"250 2.0.0" not in buf.split(b"354", 1)[1]:
            buf += s.recv(4096)
        s.sendall(b"QUIT\r\n")
    files = d.wait_for_files("dots", 1)
    assert len(files) == 1
    assert headers_stripped(read(files[0])) == original


def test_pipelined_transactions(d):
    # RFC 2920: a whole group in one write; replies come in order.
    out = smtp_dialog(d.port, b"EHLO c.example\r\n"
                      b"MAIL FROM:<p@example.org>\r\nRCPT TO:<pipe@localhost>\r\nDATA\r\n"
                      b"Subject: p1\r\n\r\none\r\n.\r\n"
                      b"MAIL FROM:<p@example.org>\r\nRCPT TO:<pipe@localhost>\r\nDATA\r\n"
                      b"Subject: p2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
    codes = [l[:3] for l in out.split(b"\r\n") if l[:3].isdigit() and l[3:4] == b" "]
    assert codes == [b"250", b"250", b"250", b"354", b"250", b"250", b"250", b"354", b"250",
                     b"221"], out
    assert len(d.wait_for_files("pipe", 2)) == 2


def test_bdat(d):
    # RFC 3030: exact octet counts, no dot handling, LAST ends the message.
    chunk1 = b"Subject: bdat\r\n\r\n.not stuffed\r\n"
    chunk2 = b"last line\r\n"
    out = smtp_dialog(d.port, b"EHLO c.example\r\nMAIL FROM:<b@example.org>\r\n"
                      b"RCPT TO:<bdat@localhost>\r\n"
                      + b"BDAT %d\r\n" % len(chunk1) + chunk1
                      + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2 + b"QUIT\r\n")
    assert b"250 2.0.0 Ok: queued as" in out, out
    files = d.wait_for_files("bdat", 1)
    assert len(files) == 1
    assert headers_stripped(read(files[0])) == chunk1 + chunk2


def test_thousand_transactions_one_connection(d):
    n = 1000
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("c.example")
        for i in range(n):
            s.sendmail("t@example.org", ["many@localhost"], b"Subject: %d\r\n\r\nn=%d\r\n" % (i, i))
    files = d.wait_for_files("many", n, timeout=30)
    assert len(files) == n, len(files)
    seen = sorted(int(read(f).rsplit(b"n=", 1)[1]) for f in files)
    assert seen == list(range(n)), "each message exactly once"


def test_duplicate_recipients_one_delivery(d):
    # Issue 13: 1000 x RCPT TO:<alice@...> must write one file; the local part of a local domain
    # compares as its mailbox does (case-folded), the domain in any case.
    variants = [b"dup@localhost", b"DUP@localhost", b"Dup@LOCALHOST", b"dUp@LocalHost"]
    rcpts = b"".join(b"RCPT TO:<%s>\r\n" % variants[i % len(variants)] for i in range(1000))
    body = b"Subject: dup\r\n\r\n" + (b"d" * 70 + b"\r\n") * 100
    out = smtp_dialog(d.port, b"EHLO c.example\r\nMAIL FROM:<x@example.org>\r\n" + rcpts
                      + b"DATA\r\n" + body + b".\r\nQUIT\r\n")
    assert out.count(b"250 2.1.5") == 1000, out[-300:]
    assert b"250 2.0.0 Ok: queued as " in out, out[-300:]
    qid = out.split(b"queued as ", 1)[1][:16].decode()
    deadline = time.monotonic() + 10
    while "qid=%s to=" % qid not in d.read_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)   # room for a second delivery to show up, if there were one
    files = d.mailbox_files("dup")
    assert len(files) == 1, "%d files for one recipient" % len(files)
    assert read(files[0]).endswith(body), read(files[0])[-100:]
    lines = [l for l in d.read_log().splitlines() if "qid=%s " % qid in l]
    assert any("event=accepted" in l and " nrcpt=1 " in l for l in lines), lines
    assert sum(1 for l in lines if "event=delivery" in l) == 1, lines


def test_unknown_user_550(d):
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("c.example")
        s.mail("x@example.org")
        code, msg = s.rcpt("nobody@localhost")
        assert code == 550 and msg.startswith(b"5.1.1"), (code, msg)
        code, _ = s.rcpt("postmaster@localhost")
        assert code == 250
        code, _ = s.docmd("RCPT TO:<Postmaster>")   # RFC 5321 4.5.1: no domain, any case
        assert code == 250


def test_relay_refused(d):
    # No open relay: 127.0.0.1 is not trusted by default; RFC 2505 tricks never relay.
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("c.example")
        s.mail("x@example.org")
        for rcpt in ("victim@remote.example", "user%remote.example@localhost",
                     "@localhost:victim@remote.example", "remote.example!user@localhost",
                     '"victim@remote.example"@localhost'):
            code, msg = s.docmd("RCPT TO:<%s>" % rcpt)
            assert code in (550, 554), (rcpt, code, msg)
        code, msg = s.docmd("RCPT TO:<victim@remote.example>")
        assert code == 554 and msg.startswith(b"5.7.1"), (code, msg)


def test_size_over_limit(d):
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("c.example")
        assert int(s.esmtp_features["size"]) == 100000
        code, msg = s.docmd("MAIL FROM:<x@example.org> SIZE=200000")
        assert code == 552, (code, msg)
        s.mail("x@example.org")
        s.rcpt("big@localhost")
        code, msg = s.data(b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 2000)
        assert code == 552 and msg.startswith(b"5.3.4"), (code, msg)
        # RFC 1870: the session stays usable.
        s.sendmail("x@example.org", ["big@localhost"], b"Subject: small\r\n\r\nok\r\n")
    assert len(d.wait_for_files("big", 1)) == 1


def test_disconnect_mid_data_delivers_nothing(d):
    for tail in (b"Subject: cut\r\n\r\nhalf", b"Subject: cut\r\n\r\nbody\r\n.\r"):
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            s.recv(4096)
            s.sendall(b"EHLO c\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<cut@localhost>\r\nDATA\r\n")
            buf = b""
            while b"354" not in buf:
                buf += s.recv(4096)
            s.sendall(tail)
    time.sleep(0.5)
    assert d.mailbox_files("cut") == []


def test_smuggling_bare_lf_refused(d):
    # CVE-2023-51764: LF.LF / LF.CRLF are not end of data; such a body is refused after CRLF.CRLF.
    out = smtp_dialog(d.port, b"EHLO c\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<smug@localhost>\r\n"
                      b"DATA\r\nSubject: s\r\n\r\nbody\n.\nMAIL FROM:<y@example.org>\r\n.\r\nQUIT\r\n")
    assert b"550 5.6.0" in out, out
    time.sleep(0.3)
    assert d.mailbox_files("smug") == []


def test_swaks_interop(d):
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--to",
                        "swaks@localhost", "--from", "s@example.org", "--helo", "swaks.example",
                        "--pipeline"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--to",
                        "nobody@localhost", "--from", "s@example.org"], capture_output=True,
                       timeout=30)
    assert r.returncode != 0 and b"550 5.1.1" in r.stdout, r.stdout
    assert len(d.wait_for_files("swaks", 1)) == 1


def test_ipv6_listener(d):
    with smtplib.SMTP("::1", d.port) as s:
        s.sendmail("v6@example.org", ["v6@localhost"], b"Subject: v6\r\n\r\nover ::1\r\n")
    files = d.wait_for_files("v6", 1)
    assert len(files) == 1
    assert b"([IPv6:::1])" in read(files[0]), read(files[0])[:200]   # RFC 5321 4.1.3


def test_logs_one_line_per_event(d):
    # Its own message, whatever ran before: one accepted and one delivery line, by queue id.
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("logs.example")
        s.mail("l@example.org")
        s.rcpt("alice@localhost")
        code, msg = s.data(b"Subject: log\r\n\r\nlogged\r\n")
    assert code == 250, (code, msg)
    qid = msg.rsplit(b" ", 1)[1].decode()
    deadline = time.monotonic() + 10
    while "qid=%s to=" % qid not in d.read_log() and time.monotonic() < deadline:
        time.sleep(0.02)
    log = d.read_log()
    mine = [l for l in log.splitlines() if "qid=%s " % qid in l]
    accepted = [l for l in mine if " event=accepted " in l]
    delivered = [l for l in mine if " event=delivery " in l and " status=delivered " in l]
    assert len(accepted) == 1 and len(delivered) == 1 and len(mine) == 2, mine
    assert " to=<alice@localhost> " in delivered[0], delivered
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z event=\w+ ")
    assert all(stamp.match(l) for l in log.splitlines()), "a line that is not one event"


def test_check_config():
    r = subprocess.run([os.path.join(harness.build_dir(), "ringmta"), "--check-config"],
                       capture_output=True, timeout=10)
    assert r.returncode == 0 and b"listen = 127.0.0.1:2525" in r.stdout, r.stdout
    r = subprocess.run([os.path.join(harness.build_dir(), "ringmta"), "-o", "max_recipients=0",
                        "--check-config"], capture_output=True, timeout=10)
    assert r.returncode != 0 and b"max_recipients" in r.stderr, r.stderr


def main():
    res = Results()
    d = Daemon(users=["alice", "bob", "carol", "dots", "pipe", "bdat", "many", "big", "cut",
                      "smug", "swaks", "v6", "dup"], extra={"max_message_size": "100000"})
    try:
        d.start()
        for name, fn in [(n, f) for n, f in globals().items()
                         if n.startswith("test_") and n != "test_check_config"]:
            res.run(name, fn, d)
        res.run("sigterm_exits_0", lambda: None if d.stop() == 0 else (_ for _ in ()).throw(
            AssertionError("exit code not 0")))
        res.run("test_check_config", test_check_config)
    finally:
        d.cleanup()
    res.finish()


if __name__ == "__main__":
    main()
