"""Many clients at once: 512 simultaneous connections are all greeted within 5 s, and clients
that dribble one byte per second do not delay normal sessions."""
import resource
import socket
import threading
import time

from harness import Daemon, Results, timed_sessions


def test_512_connections_greeted(d):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    start = time.monotonic()
    socks = []
    try:
        for _ in range(512):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            socks.append(s)
        greeted = 0
        for s in socks:
            s.settimeout(max(0.1, 5 - (time.monotonic() - start)))
            data = s.recv(512)
            if data.startswith(b"220 "):
                greeted += 1
        elapsed = time.monotonic() - start
        assert greeted == 512, "%d of 512 greeted" % greeted
        assert elapsed < 5.0, "took %.2fs" % elapsed
        print("     512 connections greeted in %.2fs" % elapsed)
        # They still work: QUIT on all of them.
        for s in socks:
            s.sendall(b"QUIT\r\n")
        for s in socks:
            s.settimeout(5)
            assert s.recv(512).startswith(b"221"), "QUIT not answered"
    finally:
        for s in socks:
            s.close()


def dribble(port, stop, progressed):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.recv(512)
        cmd = b"EHLO slow.example\r\nMAIL FROM:<slow@example.org>\r\n"
        for b in cmd:
            if stop.is_set():
                return
            s.sendall(bytes([b]))
            progressed.append(1)
            time.sleep(1.0)


def test_dribblers_do_not_delay_others(d):
    stop = threading.Event()
    progressed = []
    slow = [threading.Thread(target=dribble, args=(d.port, stop, progressed)) for _ in range(20)]
    for t in slow:
        t.start()
    time.sleep(1.5)
    try:
        worst = timed_sessions(d.port, "fast", 30)
        print("     30 sessions beside 20 dribblers: slowest %.3fs" % worst)
        assert worst < 1.0, "a normal session took %.2fs" % worst
        assert len(progressed) >= 20, "the dribblers were not being served"
    finally:
        stop.set()
        for t in slow:
            t.join(5)
    assert len(d.wait_for_files("fast", 30)) == 30


def test_idle_timeout_gets_421():
    # RFC 5321 4.5.3.2: the server gives up on a silent client; here after cmd_timeout = 1 s.
    d = Daemon(shards=1, extra={"cmd_timeout": "1", "data_timeout": "2"})
    try:
        d.start()
        for prelude, wait in ((b"", 1.0), (b"EHLO t\r\nMAIL FROM:<a@b.example>\r\n"
                                           b"RCPT TO:<t@localhost>\r\nDATA\r\npartial", 2.0)):
            with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
                s.recv(512)
                s.sendall(prelude)
                t0 = time.monotonic()
                buf = b""
                while not buf.endswith(b"\r\n") or b"421" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                waited = time.monotonic() - t0
                assert b"421 4.4.2" in buf, buf
                assert wait - 0.2 <= waited < wait + 2.0, waited
                assert s.recv(512) == b"", "closed after the 421"
        assert d.mailbox_files("t") == [], "a timed-out DATA delivered nothing"
        assert d.stop() == 0
    finally:
        d.cleanup()


def main():
    res = Results()
    d = Daemon(shards=2)
    try:
        d.start()
        res.run("test_512_connections_greeted", test_512_connections_greeted, d)
        res.run("test_dribblers_do_not_delay_others", test_dribblers_do_not_delay_others, d)
        res.run("sigterm_with_idle_sessions_exits_0", lambda: d.stop() == 0 or 1 / 0)
    finally:
        d.cleanup()
    res.run("test_idle_timeout_gets_421", test_idle_timeout_gets_421)
    res.finish()


if __name__ == "__main__":
    main()
