"""Limits and hostile clients through the real daemon: max_connections and its 421, bad_cmd_max,
over-long command lines, relay acceptance from relay_networks, log escaping of what clients
send, and a client that never reads (the daemon's memory stays bounded, others are served).
"""
import re
import smtplib
import socket
import threading
import time

from harness import Daemon, Results, smtp_dialog, timed_sessions


def replies(out):
    """The final lines (code + space) of the replies in out, as bytes."""
    return [l for l in out.split(b"\r\n") if l[:3].isdigit() and l[3:4] == b" "]


def recv_line(s, timeout=5.0):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = s.recv(512)
        if not chunk:
            break
        buf += chunk
    return buf


def test_max_connections_answers_421_and_frees_the_slot():
    d = Daemon(shards=1, extra={"max_connections": "5"})
    socks = []
    try:
        d.start()
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            socks.append(s)
            assert recv_line(s).startswith(b"220 "), "one of the 5 allowed was not greeted"
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        assert recv_line(extra) == b"421 4.7.0 Too many connections, try again later\r\n"
        assert extra.recv(512) == b"", "closed after the 421"
        extra.close()
        socks.pop().close()   # a slot comes free
        deadline = time.monotonic() + 5
        greeted = False
        while not greeted and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
                greeted = recv_line(s).startswith(b"220 ")
            time.sleep(0.05)
        assert greeted, "the freed slot was not given to a new client"
        for s in socks:   # the five are still served
            s.sendall(b"NOOP\r\n")
            assert recv_line(s).startswith(b"250 "), "an existing session stopped answering"
        assert d.stop() == 0
    finally:
        for s in socks:
            s.close()
        d.cleanup()


def test_bad_cmd_max_closes_with_421():
    d = Daemon(shards=1, extra={"bad_cmd_max": "3"})
    try:
        d.start()
        out = smtp_dialog(d.port, b"EHLO c\r\nXYZZY\r\nFOO\r\nNOOP\r\nBAR\r\nNOOP\r\n")
        codes = [l[:9] for l in replies(out)]
        # The third bad command is answered, then the session ends: the NOOP after it is not.
        assert codes == [b"250 DSN", b"500 5.5.2", b"500 5.5.2", b"250 2.0.0", b"500 5.5.2",
                         b"421 4.7.0"], out
        out = smtp_dialog(d.port, b"EHLO c\r\nXYZZY\r\nFOO\r\nNOOP\r\nQUIT\r\n")
        assert replies(out)[-1].startswith(b"221 "), "two bad commands are allowed"
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_over_long_lines_are_refused_and_the_session_stays_in_step():
    d = Daemon(shards=1)
    try:
        d.start()
        long_mail = b"MAIL FROM:<" + b"a" * 3000 + b"@example.org>\r\n"
        huge = b"X" * 200000 + b"\r\n"          # more than the receive buffers hold at once
        at_limit = b"NOOP " + b"n" * (2048 - len(b"NOOP \r\n")) + b"\r\n"   # exactly 2048
        out = smtp_dialog(d.port, b"EHLO c\r\n" + long_mail + b"NOOP\r\n" + huge + at_limit
                          + b"MAIL FROM:<ok@example.org>\r\nQUIT\r\n")
        codes = [l[:9] for l in replies(out)]
        assert codes == [b"250 DSN", b"500 5.5.2", b"250 2.0.0", b"500 5.5.2", b"250 2.0.0",
                         b"250 2.1.0", b"221 2.0.0"], out
        assert b"500 5.5.2 line too long" in out
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_relay_networks_may_relay_and_no_one_else():
    d = Daemon(shards=1, extra={"relay_networks": "127.0.0.0/8"})
    try:
        d.start()
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("relay.example")
            s.mail("a@example.org")
            code, msg = s.rcpt("far@remote.example")
            assert code == 250, (code, msg)
            code, msg = s.data(b"Subject: relayed\r\n\r\nonward\r\n")
            assert code == 250, (code, msg)
        with smtplib.SMTP("::1", d.port) as s:           # ::1 is not in 127.0.0.0/8
            s.ehlo("relay.example")
            s.mail("a@example.org")
            code, msg = s.rcpt("far@remote.example")
            assert code == 554 and msg.startswith(b"5.7.1"), (code, msg)
            code, _ = s.rcpt("postmaster@localhost")
            assert code == 250, "local mail is taken from anyone"
        log = d.wait_for_log(r"client=::1 relay=no")
        assert "client=127.0.0.1 relay=yes" in log and "client=::1 relay=no" in log, log
        assert d.stop() == 0
    finally:
        d.cleanup()


HOSTILE_HELO = b'ev"il\\\xc3\xa9)relay=yes'   # what a HELO name may hold: no blank, no control


def test_hostile_helo_and_addresses_are_escaped_in_the_log():
    d = Daemon(shards=1, users=["esc"])
    try:
        d.start()
        sender = b'<"a b\\"c=\\\\d"@example.org>'
        out = smtp_dialog(d.port, b"EHLO " + HOSTILE_HELO + b"\r\nMAIL FROM:" + sender
                          + b"\r\nRCPT TO:<esc@localhost>\r\nDATA\r\nSubject: e\r\n\r\nx\r\n.\r\n"
                          + b"QUIT\r\n")
        assert b"250 2.0.0 Ok: queued as" in out, out
        assert len(d.wait_for_files("esc", 1)) == 1
        qid = out.split(b"queued as ", 1)[1][:16].decode()
        deadline = time.monotonic() + 5
        while "qid=%s to=" % qid not in d.read_log() and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(d.log_path, "rb") as f:
            raw = f.read()
        assert all(c == 0x0a or 0x20 <= c < 0x7f for c in raw), "a raw byte reached the log"
        lines = raw.decode().splitlines()
        accepted = [l for l in lines if " event=accepted qid=%s " % qid in l]
        assert len(accepted) == 1, lines[-10:]
        line = accepted[0]
        print("     " + line.split(" ", 2)[2])
        assert ' helo=ev\\x22il\\x5c\\xc3\\xa9)relay=yes' in line, line
        assert ' from=<\\x22a\\x20b\\x5c\\x22c=\\x5c\\x5cd\\x22@example.org>' in line, line
        fields = re.findall(r" (\w+)=", line)
        assert fields.count("relay") == 0 and fields.count("helo") == 1, fields
        assert sum(1 for l in lines if "qid=%s " % qid in l) == 2   # accepted, delivered
        assert d.stop() == 0
    finally:
        d.cleanup()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([l for l in f if l.startswith("VmRSS:")][0].split()[1])


NEVER_READERS = 20
NEVER_READER_BYTES = 8 << 20    # offered by each; most never leave its socket buffer
RSS_GROWTH_MAX_KB = 48 << 10


def never_read(port, sent, stop):
    """Pipelines NOOPs and never reads a reply: the daemon's output to it cannot drain."""
    line = b"NOOP\r\n" * 1000
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setblocking(False)
        total = 0
        while total < NEVER_READER_BYTES and not stop.is_set():
            try:
                total += s.send(line)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break   # the daemon gave up on us: allowed
        sent.append(total)
        stop.wait(30)


def test_clients_that_never_read_cost_bounded_memory():
    d = Daemon(shards=2, users=["fast"])
    stop = threading.Event()
    sent = []
    try:
        d.start()
        base = rss_kb(d.proc.pid)
        threads = [threading.Thread(target=never_read, args=(d.port, sent, stop))
                   for _ in range(NEVER_READERS)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        grown = rss_kb(d.proc.pid) - base
        worst = timed_sessions(d.port, "fast", 10)
        stop.set()
        for t in threads:
            t.join(10)
        print("     %d clients that never read, %d MB offered: RSS grew %d KB; slowest other "
              "session %.3fs" % (NEVER_READERS, sum(sent) >> 20, grown, worst))
        assert grown < RSS_GROWTH_MAX_KB, "%d KB" % grown
        assert worst < 1.0, worst
        assert len(d.wait_for_files("fast", 10)) == 10
        assert d.stop() == 0
    finally:
        stop.set()
        d.cleanup()


def main():
    res = Results()
    for name, fn in [(n, f) for n, f in globals().items() if n.startswith("test_")]:
        res.run(name, fn)
    res.finish()


if __name__ == "__main__":
    main()
