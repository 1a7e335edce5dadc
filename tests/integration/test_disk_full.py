"""A full disk: the spool write fails and the client gets 452 4.3.1 (RFC 3463 4.3.1, "mail
system full"), never 250; what was acknowledged before stays deliverable after a restart.

Needs root to mount a small private tmpfs for the spool; skipped (77) otherwise.
"""
import os
import smtplib
import subprocess
import sys
import tempfile

from harness import Daemon, Results

SKIP = 77


def mount_small_tmpfs(path, size):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                          capture_output=True).returncode == 0


def test_disk_full_gets_452():
    spool = tempfile.mkdtemp(prefix="ringmta-full-")
    if os.geteuid() != 0 or not mount_small_tmpfs(spool, "2m"):
        print("skip: cannot mount a tmpfs here")
        sys.exit(SKIP)
    d = Daemon(shards=1, extra={"spool_dir": spool})
    try:
        d.start()
        codes = []
        with smtplib.SMTP("127.0.0.1", d.port) as s:
            s.ehlo("full.example")
            for i in range(12):
                s.mail("f@example.org")
                s.rcpt("full@localhost")
                code, msg = s.data(b"Subject: %d\r\n\r\n" % i + (b"z" * 998 + b"\r\n") * 300)
                codes.append((code, msg[:5]))
        accepted = sum(1 for c, _ in codes if c == 250)
        print("     replies on a 2 MB spool:", codes)
        assert (452, b"4.3.1") in codes, codes
        assert all(c in (250, 452) for c, _ in codes), codes
        assert len(d.wait_for_files("full", accepted)) == accepted
        assert d.stop() == 0
    finally:
        d.cleanup()
        subprocess.run(["umount", spool])
        os.rmdir(spool)


def main():
    res = Results()
    res.run("test_disk_full_gets_452", test_disk_full_gets_452)
    res.finish()


if __name__ == "__main__":
    main()
