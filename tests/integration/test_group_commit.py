"""Group commit: 1000 messages over 20 concurrent connections need far fewer than 1000 spool
fdatasyncs (docs/ARCHITECTURE.md "Durability"), and no body octet is copied in user space between
the socket buffers and the disk: a message that arrives within one loop turn is written to the
spool straight from the receive buffers (the zero-copy DATA path).

The spool's fdatasyncs go through io_uring, which strace cannot see; the daemon counts what it
submits (its exit "stats" line), and, where perf can read the io_uring tracepoints, the kernel's
own count of IORING_OP_FSYNC requests is printed beside it.
"""
import re
import shutil
import smtplib
import subprocess
import threading
import time

from harness import Daemon, Results

MESSAGES = 1000
CLIENTS = 20


def send_share(port, n, errors):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("gc.example")
            for i in range(n):
                s.sendmail("gc@example.org", ["gc@localhost"], b"Subject: gc\r\n\r\n" + b"x" * 900 + b"\r\n")
    except Exception as e:  # counted, reported by the assertion below
        errors.append(e)


def perf_counter(pid):
    """Starts perf counting IORING_OP_FSYNC (opcode 3) submissions of pid, or returns None."""
    if shutil.which("perf") is None:
        return None
    p = subprocess.Popen(["perf", "stat", "-x,", "-e", "io_uring:io_uring_submit_req",
                          "--filter", "opcode == 3", "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    return p if p.poll() is None else None


def test_group_commit():
    d = Daemon(shards=2)
    try:
        d.start()
        perf = perf_counter(d.proc.pid)
        errors = []
        threads = [threading.Thread(target=send_share, args=(d.port, MESSAGES // CLIENTS, errors))
                   for _ in range(CLIENTS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - t0
        assert not errors, errors[:3]
        assert len(d.wait_for_files("gc", MESSAGES, timeout=30)) == MESSAGES
        assert d.stop() == 0
        kernel_fsyncs = None
        if perf is not None:
            perf.send_signal(2)
            err = perf.communicate(timeout=10)[1].decode()
            m = re.search(r"^(\d+),,io_uring:io_uring_submit_req", err, re.M)
            kernel_fsyncs = int(m.group(1)) if m else None
        stats = [dict(kv.split("=", 1) for kv in l.split() if "=" in kv)
                 for l in d.read_log().splitlines() if "event=stats " in l]
        assert stats, "no stats line at exit"
        total = lambda key: sum(int(s[key]) for s in stats)
        committed, spool_syncs = total("messages"), total("fdatasyncs")
        copied, body = total("body_copied"), total("body_bytes")
        print("     %d messages in %.2fs over %d connections, 2 shards" % (committed, elapsed, CLIENTS))
        print("     spool fdatasyncs: %d (%.3f per message)" % (spool_syncs, spool_syncs / committed))
        print("     user-space copies of body octets between socket and disk: %.3f per octet "
              "(%d of %d)" % (copied / body, copied, body))
        if kernel_fsyncs is not None:
            print("     kernel count of IORING_OP_FSYNC requests: %d (Maildir uses syncfs per batch)"
                  % kernel_fsyncs)
        assert committed == MESSAGES
        assert spool_syncs < MESSAGES / 2, "group commit is not grouping"
        # A body split over two loop turns has its small first part copied aside: allow a few.
        assert copied <= body * 0.05, "the body is copied on its way to the spool"
    finally:
        d.cleanup()


def main():
    res = Results()
    res.run("test_group_commit", test_group_commit)
    res.finish()


if __name__ == "__main__":
    main()
