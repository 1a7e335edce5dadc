"""A Maildir sync that fails: the recipients are not delivered. A delivery counts only once the
sync that covers it has returned 0 (docs/ARCHITECTURE.md, "Durability"); when it fails with
EIO, every delivery it covered is deferred (status=deferred, 4.3.0, the error in the log),
retried after the back-off, and delivered exactly once, intact (the retry writes the same name
in new/, so the file of the failed attempt is replaced, never doubled).

No file system here fails a sync on demand. For maildir_sync=syncfs the daemon runs with
tests/tools/failsync preloaded: the first FAILSYNC_SYNCFS_COUNT syncfs calls return EIO (the
helper thread calls syncfs through libc). For maildir_sync=fsync the syncs are ring requests,
which no preloaded library sees: the Maildir lives on lossyfs (tests/powercut/), told to fail the
first fdatasyncs of files (--fail-fsync) or the first fsyncs of new/ (--fail-fsyncdir).
"""
import os
import re
import shutil
import smtplib
import tempfile
import time

from harness import Daemon, Results, build_dir
from test_powercut import LossyFs, fuse_usable

FAILURES = 2
MESSAGES = 4
USER = "sync"
BACKOFF = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s"}


def body(i):
    return b"Subject: sync %d\r\n\r\n" % i + b"".join(
        b"message %d line %d\r\n" % (i, n) for n in range(50))


def delivered_lines(log):
    return [l for l in log.splitlines() if "event=delivery" in l and "status=delivered" in l]


def deferred_then_delivered_once(d):
    """Sends MESSAGES messages to USER while the first syncs fail; checks the log and new/."""
    d.start()
    with smtplib.SMTP("127.0.0.1", d.port) as s:
        s.ehlo("client.example.org")
        for i in range(MESSAGES):
            s.sendmail("sender@example.org", ["%s@localhost" % USER], body(i))
    d.wait_for_log(r"status=deferred .*Input/output error", timeout=10)
    deadline = time.monotonic() + 15
    while len(delivered_lines(d.read_log())) < MESSAGES and time.monotonic() < deadline:
        time.sleep(0.05)
    log = d.read_log()
    # Each message is delivered exactly once; what a failed sync covered was deferred first
    # (the first message at least: the first sync covered it).
    qids = [re.search(r"qid=(\S+)", l).group(1) for l in delivered_lines(log)]
    assert len(qids) == MESSAGES and len(set(qids)) == MESSAGES, log
    deferred = [l for l in log.splitlines() if "status=deferred" in l]
    assert deferred, log
    assert all('dsn=4.3.0' in l and 'Input/output error' in l for l in deferred), deferred
    first = [l for l in log.splitlines() if "event=delivery" in l][0]
    assert "status=deferred" in first, first
    for l in deferred:
        assert re.search(r"qid=(\S+)", l).group(1) in qids, l
    files = d.mailbox_files(USER)
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
    # The DELIVERED marks are durable: a restart (without the failures) delivers nothing again.
    assert d.stop() == 0
    d.env = None
    d.start()
    time.sleep(2.5)
    assert len(d.mailbox_files(USER)) == MESSAGES, d.mailbox_files(USER)
    assert d.stop() == 0
    assert len(delivered_lines(d.read_log())) == MESSAGES


def test_syncfs_error_defers_then_delivers_once():
    shim = os.path.join(build_dir(), "tests", "tools", "libfailsync.so")
    fd, hits = tempfile.mkstemp(prefix="ringmta-failsync-")
    os.close(fd)
    os.chmod(hits, 0o666)   # the daemon writes it after it gave root up
    d = Daemon(shards=1, users=[USER], extra=dict(BACKOFF, maildir_sync="syncfs"),
               env={"LD_PRELOAD": shim, "FAILSYNC_SYNCFS_COUNT": str(FAILURES),
                    "FAILSYNC_SYNCFS_LOG": hits})
    try:
        deferred_then_delivered_once(d)
        with open(hits) as f:
            assert len(f.read()) == FAILURES, "the shim failed fewer syncfs than asked"
    finally:
        d.cleanup()
        os.unlink(hits)


def fsync_error(option, counter):
    """maildir_sync=fsync with the Maildir on lossyfs, mounted with option."""
    why = fuse_usable()
    if why is not None:
        print("     skip: %s" % why)
        return
    base = tempfile.mkdtemp(prefix="ringmta-syncerr-")
    fs = LossyFs(base)
    os.makedirs(os.path.join(base, "daemon"))
    d = None
    try:
        fs.mount(options=option)
        root = os.path.join(fs.mnt, "mail")
        d = Daemon(shards=1, users=[USER], keep_dir=os.path.join(base, "daemon"),
                   extra=dict(BACKOFF, maildir_sync="fsync", maildir_root=root))
        d.maildir = root
        deferred_then_delivered_once(d)
        stats = fs.unmount()
        assert stats.get(counter) == str(FAILURES), stats
    finally:
        if d is not None:
            d.kill()
        fs.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_file_fdatasync_error_defers_then_delivers_once():
    fsync_error(["--fail-fsync=%d" % FAILURES], "failed_fsync")


def test_new_dir_fsync_error_defers_then_delivers_once():
    fsync_error(["--fail-fsyncdir=%d" % FAILURES, "--fail-path=/mail/%s/new" % USER],
                "failed_fsyncdir")


def main():
    res = Results()
    res.run("test_syncfs_error_defers_then_delivers_once",
            test_syncfs_error_defers_then_delivers_once)
    res.run("test_file_fdatasync_error_defers_then_delivers_once",
            test_file_fdatasync_error_defers_then_delivers_once)
    res.run("test_new_dir_fsync_error_defers_then_delivers_once",
            test_new_dir_fsync_error_defers_then_delivers_once)
    res.finish()


if __name__ == "__main__":
    main()
