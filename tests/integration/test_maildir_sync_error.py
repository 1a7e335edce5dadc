"""A Maildir sync that fails: the recipients are not delivered. A delivery counts only once the
syncfs(2) that covers it has returned 0 (docs/ARCHITECTURE.md, "Durability"); when it fails
with EIO, every delivery it covered is deferred (status=deferred, 4.3.0, the error in the log),
retried after the back-off, and delivered exactly once, intact (the retry writes the same name
in new/, so the file of the failed attempt is replaced, never doubled).

No file system here fails syncfs on demand, so the daemon runs with tests/tools/failsync
preloaded: the first FAILSYNC_SYNCFS_COUNT syncfs calls return EIO.
"""
import os
import re
import smtplib
import tempfile
import time

from harness import Daemon, Results, build_dir

FAILURES = 2
MESSAGES = 4


def body(i):
    return b"Subject: sync %d\r\n\r\n" % i + b"".join(
        b"message %d line %d\r\n" % (i, n) for n in range(50))


def delivered_lines(log):
    return [l for l in log.splitlines() if "event=delivery" in l and "status=delivered" in l]


def test_syncfs_error_defers_then_delivers_once():
    shim = os.path.join(build_dir(), "tests", "tools", "libfailsync.so")
    fd, hits = tempfile.mkstemp(prefix="ringmta-failsync-")
    os.close(fd)
    os.chmod(hits, 0o666)   # the daemon writes it after it gave root up
    d = Daemon(shards=1, users=["sync"], extra={
        "maildir_sync": "syncfs", "minimal_backoff_time": "1s", "maximal_backoff_time": "1s"},
        env={"LD_PRELOAD": shim, "FAILSYNC_SYNCFS_COUNT": str(FAILURES),
             "FAILSYNC_SYNCFS_LOG": hits})
    try:
        d.mailbox_dir("sync")
        d.start()
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("client.example.org")
            for i in range(MESSAGES):
                s.sendmail("sender@example.org", ["sync@localhost"], body(i))
        log = d.wait_for_log(r"status=deferred .*Input/output error", timeout=10)
        deferred = [l for l in log.splitlines() if "status=deferred" in l]
        assert deferred, log
        assert all('dsn=4.3.0' in l and 'Input/output error' in l for l in deferred), deferred
        deadline = time.monotonic() + 15
        while len(delivered_lines(d.read_log())) < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        log = d.read_log()
        with open(hits) as f:
            assert len(f.read()) == FAILURES, "the shim failed fewer syncfs than asked"
        # Each message is delivered exactly once; what a failed sync covered was deferred first
        # (the first message at least: the first sync covered it).
        qids = [re.search(r"qid=(\S+)", l).group(1) for l in delivered_lines(log)]
        assert len(qids) == MESSAGES and len(set(qids)) == MESSAGES, log
        deferred = [l for l in log.splitlines() if "status=deferred" in l]
        assert all('dsn=4.3.0' in l and 'Input/output error' in l for l in deferred), deferred
        first = [l for l in log.splitlines() if "event=delivery" in l][0]
        assert "status=deferred" in first, first
        for l in deferred:
            assert re.search(r"qid=(\S+)", l).group(1) in qids, l
        files = d.mailbox_files("sync")
        assert len(files) == MESSAGES, files
        seen = []
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            assert data.startswith(b"Return-Path: <sender@example.org>\r\n"), data[:80]
            match = [i for i in range(MESSAGES) if data.endswith(b"\r\n" + body(i))]
            assert len(match) == 1, data[-200:]
            seen += match
        assert sorted(seen) == list(range(MESSAGES)), seen
        # The DELIVERED marks are durable: a restart (without the shim) delivers nothing again.
        assert d.stop() == 0
        d.env = None
        d.start()
        time.sleep(2.5)
        assert len(d.mailbox_files("sync")) == MESSAGES, d.mailbox_files("sync")
        assert d.stop() == 0
        assert len(delivered_lines(d.read_log())) == MESSAGES
    finally:
        d.cleanup()
        os.unlink(hits)


def main():
    res = Results()
    res.run("test_syncfs_error_defers_then_delivers_once",
            test_syncfs_error_defers_then_delivers_once)
    res.finish()


if __name__ == "__main__":
    main()
