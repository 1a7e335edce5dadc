"""Spool segments at run time: past SPOOL_SEGMENT_SIZE (64 MiB) the spool rolls over to a new
segment, and once every message of the old one is final it is deleted while the daemon runs
(no restart needed); the new segment belongs to mail_owner like the first.
"""
import os
import pwd
import smtplib
import threading
import time

from harness import Daemon, Results

SEGMENT_SIZE = 64 << 20        # queue/spool.h SPOOL_SEGMENT_SIZE
BODY = 256 * 1024
MESSAGES = (SEGMENT_SIZE // BODY) * 5 // 4     # a quarter of a segment past the first
CLIENTS = 4


def body_for(i):
    line = (b"%07d " % i) + b"s" * 68 + b"\r\n"
    return b"Subject: seg %d\r\n\r\n" % i + line * (BODY // len(line)) + b"id=%d\r\n" % i


def segments(d):
    path = os.path.join(d.spool, "0")
    return sorted(n for n in os.listdir(path) if n.endswith(".log"))


def send_share(port, ids, errors):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("seg.example")
            for i in ids:
                s.sendmail("g@example.org", ["seg@localhost"], body_for(i))
    except Exception as e:  # reported by the assertion below
        errors.append(e)


def test_rollover_and_runtime_reclaim():
    d = Daemon(shards=1, users=["seg"])
    try:
        d.start()
        assert segments(d) == ["0000000000000000.log"], segments(d)
        errors, seen = [], set()
        threads = [threading.Thread(target=send_share,
                                    args=(d.port, range(c, MESSAGES, CLIENTS), errors))
                   for c in range(CLIENTS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            seen.update(segments(d))
            time.sleep(0.05)
        assert not errors, errors[:3]
        assert "0000000000000001.log" in seen, seen
        files = d.wait_for_files("seg", MESSAGES, timeout=60)
        assert len(files) == MESSAGES, len(files)
        deadline = time.monotonic() + 10
        while segments(d) != ["0000000000000001.log"] and time.monotonic() < deadline:
            time.sleep(0.05)
        left = segments(d)
        print("     %d messages of %d KB: segments seen %s, left %s" % (
            MESSAGES, BODY >> 10, sorted(seen), left))
        assert left == ["0000000000000001.log"], "the old segment was not reclaimed: %s" % left
        if os.geteuid() == 0:
            owner = pwd.getpwnam(d.options.get("mail_owner", "ringmta")).pw_uid
            st = os.stat(os.path.join(d.spool, "0", left[0]))
            assert st.st_uid == owner, "the new segment belongs to uid %d" % st.st_uid
        ids = []
        for path in files:
            with open(path, "rb") as f:
                ids.append(int(f.read().rsplit(b"id=", 1)[1]))
        ids.sort()
        assert ids == list(range(MESSAGES)), "each message exactly once"
        assert d.stop() == 0
    finally:
        d.cleanup()


def main():
    res = Results()
    res.run("test_rollover_and_runtime_reclaim", test_rollover_and_runtime_reclaim)
    res.finish()


if __name__ == "__main__":
    main()
