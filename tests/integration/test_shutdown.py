"""Shutdown with a backlog: SIGTERM while thousands of acknowledged messages wait for delivery
exits 0 within the grace period, and the next start delivers the rest, each exactly once.
(The 421 4.3.2 of a connection accepted while the shard stops: tests/unit/smtpd_test.c.)
"""
import os
import signal
import socket
import subprocess
import threading
import time

from harness import Daemon, Results

CLIENTS = 20
PER_CLIENT = 200               # pipelined transactions per connection: 4000 messages
SIGTERM_AFTER = 1000           # acknowledged messages
GROUP = 10                     # transactions per write
USERS = ["s%d" % i for i in range(4)]   # every message to all four: deliveries lag
STOP_GRACE_S = 10              # src/main.c MAIN_STOP_GRACE_MS
GRACE_S = STOP_GRACE_S + 5     # and time to exit


def body_for(mid):
    return (b"Subject: backlog %s\r\n\r\n" % mid.encode() + b"b" * 4000 + b"\r\n"
            + b"id=" + mid.encode() + b"\r\n")


def restart_and_check(d, acked):
    """Starts d again: every acknowledged (message, user) is delivered, and nothing twice."""
    d.start()
    deadline = time.monotonic() + 60
    while len(stored(d)) < len(acked) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    found = stored(d)
    lost = [k for k in acked if k not in found]
    dup = [k for k, n in found.items() if n > 1]
    print("     after the restart: %d deliveries, %d lost, %d duplicated"
          % (len(found), len(lost), len(dup)))
    assert not lost, lost[:5]
    assert not dup, dup[:5]
    assert d.stop() == 0


class Load:
    """Connections that pipeline GROUP transactions per write (bodies ahead of their 354, so
    no more than the daemon keeps while a commit is under way) and count the 250s."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []
        self.errors = []

    def group(self, ids, first):
        out = b"EHLO backlog.example\r\n" if first else b""
        rcpts = b"".join(b"RCPT TO:<%s@localhost>\r\n" % u.encode() for u in USERS)
        for mid in ids:
            out += (b"MAIL FROM:<b@example.org>\r\n" + rcpts + b"DATA\r\n" + body_for(mid)
                    + b".\r\n")
        return out

    def inject(self, port, tag):
        ids = ["%s-%d" % (tag, i) for i in range(PER_CLIENT)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.recv(512)
                for g in range(0, PER_CLIENT, GROUP):
                    s.sendall(self.group(ids[g:g + GROUP], g == 0))
                    buf = b""
                    # Replies come in order: the n-th "250 2.0.0" answers the n-th message.
                    while buf.count(b"250 2.0.0 Ok: queued as ") < len(ids[g:g + GROUP]):
                        chunk = s.recv(65536)
                        if not chunk or b"421 " in chunk:
                            buf += chunk
                            break
                        buf += chunk
                    n = buf.count(b"250 2.0.0 Ok: queued as ")
                    with self.lock:
                        self.acked.extend(ids[g:g + n])
                    if n < len(ids[g:g + GROUP]):
                        return   # the daemon stops: 421
        except (ConnectionResetError, BrokenPipeError):
            pass   # the daemon exited with our bytes unread, as a stop does
        except OSError as e:
            with self.lock:
                self.errors.append(e)


def stored(d):
    """(message id, user) -> how many files."""
    found = {}
    for u in USERS:
        for path in d.mailbox_files(u):
            with open(path, "rb") as f:
                mid = f.read().rsplit(b"id=", 1)[1].strip().decode()
            found[(mid, u)] = found.get((mid, u), 0) + 1
    return found


def test_sigterm_with_a_backlog_exits_0_and_resumes():
    d = Daemon(shards=2, users=USERS)
    try:
        d.start()
        load = Load()
        threads = [threading.Thread(target=load.inject, args=(d.port, "c%d" % i))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(load.acked) < SIGTERM_AFTER and time.monotonic() < deadline:
            time.sleep(0.001)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)        # mid-stream: many still to be delivered
        rc = d.proc.wait(GRACE_S)
        took = time.monotonic() - t0
        d.proc = None
        d.log.close()
        for t in threads:
            t.join(30)
        acked = [(mid, u) for mid in load.acked for u in USERS]
        at_exit = len(stored(d))
        print("     SIGTERM after %d messages acknowledged: %d in all, %d of their %d deliveries "
              "done at exit (%.2fs), exit %d" % (SIGTERM_AFTER, len(load.acked), at_exit,
                                                 len(acked), took, rc))
        assert rc == 0, d.read_log()[-3000:]
        assert not load.errors, load.errors[:3]
        assert at_exit < len(acked), "no backlog left at exit: the restart was not tested"
        restart_and_check(d, acked)
    finally:
        d.cleanup()


def sh(*argv):
    return subprocess.run(argv, capture_output=True).returncode == 0


def test_sigterm_with_deliveries_stuck_past_the_grace_period():
    """The Maildir file system is frozen (fsfreeze): deliveries in flight cannot finish, so the
    shard gives up after the grace period; the process exits 0 once the kernel lets its stuck
    threads go, and the restart delivers every message exactly once."""
    d = Daemon(shards=1, users=USERS)
    image = os.path.join(d.dir, "maildir.img")
    mounted = frozen = False
    try:
        os.makedirs(d.maildir)
        if (os.geteuid() != 0 or not sh("truncate", "-s", "256M", image)
                or not sh("mkfs.ext4", "-q", "-F", image)
                or not sh("mount", "-o", "loop", image, d.maildir)):
            print("     skipped: no loop-mounted ext4 here")
            return
        mounted = True
        d.start()
        load = Load()
        threads = [threading.Thread(target=load.inject, args=(d.port, "f%d" % i))
                   for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(load.acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.001)
        frozen = sh("fsfreeze", "-f", d.maildir)
        assert frozen, "fsfreeze failed"
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(STOP_GRACE_S + 2)
        stuck = d.proc.poll() is None      # its blocked requests keep the process
        log = d.read_log()
        assert " event=stop_unfinished shard=0 grace_ms=10000" in log, log[-2000:]
        sh("fsfreeze", "-u", d.maildir)
        frozen = False
        rc = d.proc.wait(10)
        d.proc = None
        d.log.close()
        for t in threads:       # their connections ended with the process
            t.join(30)
        acked = [(mid, u) for mid in load.acked for u in USERS]
        print("     %d messages acknowledged; frozen past the grace period; exit %d%s"
              % (len(load.acked), rc, " once thawed" if stuck else ""))
        assert rc == 0, log[-3000:]
        restart_and_check(d, acked)
    finally:
        if frozen:
            sh("fsfreeze", "-u", d.maildir)
        d.kill()
        if mounted:
            sh("umount", d.maildir)
        d.cleanup()


def main():
    res = Results()
    res.run("test_sigterm_with_a_backlog_exits_0_and_resumes",
            test_sigterm_with_a_backlog_exits_0_and_resumes)
    res.run("test_sigterm_with_deliveries_stuck_past_the_grace_period",
            test_sigterm_with_deliveries_stuck_past_the_grace_period)
    res.finish()


if __name__ == "__main__":
    main()
