"""Fewer shards than the spool was written with: no mail is stranded.

Mail waits in both shards' spools of a 2-shard daemon (a local mailbox on a full private tmpfs,
and a remote domain with no outbound transport). Restarted with shards = 1, the daemon adopts
spool/1 into spool/0 (logged), removes spool/1, and once the mailbox works again every waiting
message is delivered exactly once and intact; the remote ones stay queued. Needs root (tmpfs);
skipped (77) otherwise.
"""
import os
import smtplib
import subprocess
import sys
import time

from harness import Daemon, Results, mount_full_mailbox

SKIP = 77
LOCAL = 40
REMOTE = 10


def body(i):
    big = i % 5 == 0   # some bodies come in parts (BODY records)
    return b"Subject: shard %d\r\n\r\n" % i + (b"y" * 900 + b"\r\n") * (300 if big else 1) + \
        b"id=%d\r\n" % i


def test_fewer_shards_adopt_the_rest():
    d = Daemon(shards=2, extra={"relay_networks": "127.0.0.0/8", "minimal_backoff_time": "1s",
                                "maximal_backoff_time": "2s"})
    box = mount_full_mailbox(d, "alice")
    if box is None:
        print("skip: cannot mount a tmpfs here")
        sys.exit(SKIP)
    mounted = True
    try:
        d.start()
        for i in range(LOCAL + REMOTE):
            to = "alice@localhost" if i < LOCAL else "r%d@remote.example" % i
            with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
                s.sendmail("s@example.org", [to], body(i))
        time.sleep(1.0)
        assert d.stop() == 0
        assert os.path.isdir(os.path.join(d.spool, "1"))
        d.options["shards"] = "1"
        d.start()
        log = d.read_log()
        adopted = [l for l in log.splitlines() if " event=adopted " in l]
        print("     " + (adopted[0] if adopted else "no adopted line"))
        assert adopted and " from=1 " in adopted[0], log[-2000:]
        assert not os.path.exists(os.path.join(d.spool, "1")), "spool/1 is still there"
        subprocess.run(["umount", box], check=True)
        mounted = False
        files = d.wait_for_files("alice", LOCAL, timeout=30)
        time.sleep(1.0)
        files = d.mailbox_files("alice")
        seen = {}
        for f in files:
            with open(f, "rb") as fh:
                data = fh.read()
            i = int(data.rsplit(b"id=", 1)[1])
            assert data.endswith(body(i)), "message %d damaged" % i
            seen[i] = seen.get(i, 0) + 1
        assert sorted(seen) == list(range(LOCAL)), sorted(seen)
        assert all(n == 1 for n in seen.values()), seen
        assert d.stop() == 0
        stats = [l for l in d.read_log().splitlines() if " event=stats " in l]
        assert "queued=%d" % REMOTE in stats[-1], stats[-1]
    finally:
        if mounted:
            subprocess.run(["umount", box])
        d.cleanup()


def main():
    res = Results()
    res.run("test_fewer_shards_adopt_the_rest", test_fewer_shards_adopt_the_rest)
    res.finish()


if __name__ == "__main__":
    main()
