"""One schedule for every recipient: deferred with back-off, durable across restarts, expiring.

A mailbox that cannot be written (a full private tmpfs mounted on it: ENOSPC, a temporary
failure, even for root) defers its recipient; the DEFERRED record keeps the next attempt over a
restart; the intervals grow (Postfix's minimal_backoff_time doubling up to maximal_backoff_time);
once the mailbox is writable again the message is delivered exactly once. A recipient in a
remote domain whose next hop refuses connections is deferred, logged, retried and kept queued.
Needs root to mount the tmpfs; skipped (77) otherwise.
"""
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time

from harness import Daemon, Results, free_port, mount_full_mailbox

SKIP = 77
LINE = re.compile(r"^(\S+) event=delivery qid=(\S+) to=<([^>]*)> status=(\S+) delay=(\S+) "
                  r"dsn=(\S+) detail=\"([^\"]*)\"")


def parse_time(stamp):
    # 2026-12-01T20:30:26.571Z
    t = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(t) - time.timezone + int(stamp[20:23]) / 1000.0


def deliveries(d, to=None):
    out = []
    for line in d.read_log().splitlines():
        m = LINE.match(line)
        if m and (to is None or m.group(3) == to):
            out.append({"t": parse_time(m.group(1)), "qid": m.group(2), "to": m.group(3),
                        "status": m.group(4), "dsn": m.group(6), "detail": m.group(7)})
    return out


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def send(port, to, body=b"Subject: t\r\n\r\nhello\r\n", sender="s@example.org"):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("sched.example")
        s.sendmail(sender, to, body)


def test_deferred_survives_restart_with_growing_intervals():
    d = Daemon(shards=1, extra={"minimal_backoff_time": "1s", "maximal_backoff_time": "8s",
                                "queue_lifetime": "1h"})
    box = None
    try:
        d.start()
        box = mount_full_mailbox(d, "alice")
        if box is None:
            print("skip: cannot mount a tmpfs here")
            sys.exit(SKIP)
        send(d.port, ["alice@localhost"])
        to = "alice@localhost"
        wait_for(lambda: len(deliveries(d, to)) >= 3, 15, "three deferrals")
        before = deliveries(d, to)
        assert all(x["status"] == "deferred" for x in before), before
        assert before[0]["dsn"].startswith("4."), before
        assert d.stop() == 0
        # The next attempt was written down: after a restart it comes when it is due, not at
        # once, and the intervals go on growing from where they were.
        last = before[-1]["t"]
        d.start()
        wait_for(lambda: len(deliveries(d, to)) >= 5, 30, "two more deferrals after restart")
        times = [x["t"] for x in deliveries(d, to)]
        gaps = [b - a for a, b in zip(times, times[1:])]
        print("     attempts %d, gaps %s" % (len(times), ["%.2f" % g for g in gaps]))
        assert times[len(before)] - last >= 0.8, "retried at once after the restart"
        assert gaps[-1] > gaps[0] * 1.5, gaps   # 1s, 1s, 2s, 4s: growing
        subprocess.run(["umount", box], check=True)
        box = None
        files = d.wait_for_files("alice", 1, timeout=20)
        assert len(files) == 1, files
        wait_for(lambda: deliveries(d, to)[-1]["status"] == "delivered", 5, "delivered line")
        time.sleep(1.5)
        assert len(d.mailbox_files("alice")) == 1
        assert d.stop() == 0
    finally:
        if box is not None:
            subprocess.run(["umount", box])
        d.cleanup()


def test_remote_recipient_is_kept_and_logged():
    d = Daemon(shards=1, extra={"relay_networks": "127.0.0.0/8", "minimal_backoff_time": "1s",
                                "maximal_backoff_time": "2s"})
    closed_port = free_port()   # nothing listens there: the connection is refused
    transport = os.path.join(d.dir, "transport")
    with open(transport, "w") as f:
        f.write("remote.example [127.0.0.1]:%d\n" % closed_port)
    d.options["transport_maps"] = transport
    try:
        d.start()
        send(d.port, ["far@remote.example", "bob@localhost"])
        x = wait_for(lambda: deliveries(d, "far@remote.example"), 10, "the remote deferral")
        assert x[0]["status"] == "deferred" and "Connection refused" in x[0]["detail"], x
        assert len(d.wait_for_files("bob", 1)) == 1
        wait_for(lambda: len(deliveries(d, "far@remote.example")) >= 2, 10, "a second attempt")
        assert d.stop() == 0
        assert "queued=1" in d.read_log(), "the remote recipient must stay queued"
        d.start()
        assert d.stop() == 0
        stats = [l for l in d.read_log().splitlines() if " event=stats " in l]
        assert stats and "queued=1" in stats[-1], stats
        assert len(d.mailbox_files("bob")) == 1
    finally:
        d.cleanup()


def test_a_file_a_reader_moved_to_cur_is_not_delivered_again():
    """A crash between the rename into new/ and the DELIVERED record, after a reader moved the
    file to cur/ (name plus ":2,S"): the retry finds it there and writes no second copy. The
    crash is made by putting back the spool as it was before the delivery."""
    d = Daemon(shards=1, extra={"minimal_backoff_time": "1s", "maximal_backoff_time": "1s"})
    box = mount_full_mailbox(d, "alice")
    if box is None:
        print("skip: cannot mount a tmpfs here")
        sys.exit(SKIP)
    mounted = True
    try:
        d.start()
        send(d.port, ["alice@localhost"])
        wait_for(lambda: [x for x in deliveries(d, "alice@localhost")
                          if x["status"] == "deferred"], 10, "the first deferral")
        assert d.stop() == 0
        snapshot = os.path.join(d.dir, "spool-before")
        shutil.copytree(d.spool, snapshot)
        subprocess.run(["umount", box], check=True)
        mounted = False
        d.start()
        files = d.wait_for_files("alice", 1)
        assert len(files) == 1, d.read_log()
        assert d.stop() == 0
        cur = os.path.join(d.maildir, "alice", "cur")
        os.rename(files[0], os.path.join(cur, os.path.basename(files[0]) + ":2,S"))
        shutil.rmtree(d.spool)
        shutil.copytree(snapshot, d.spool)   # the DELIVERED record never was
        d.start()
        wait_for(lambda: len([x for x in deliveries(d, "alice@localhost")
                              if x["status"] == "delivered"]) >= 2, 10, "the retry's outcome")
        time.sleep(1.5)
        assert d.mailbox_files("alice") == [] and len(os.listdir(cur)) == 1, \
            (d.mailbox_files("alice"), os.listdir(cur))
        assert d.stop() == 0
    finally:
        if mounted:
            subprocess.run(["umount", box])
        d.cleanup()


def main():
    res = Results()
    res.run("test_deferred_survives_restart_with_growing_intervals",
            test_deferred_survives_restart_with_growing_intervals)
    res.run("test_remote_recipient_is_kept_and_logged", test_remote_recipient_is_kept_and_logged)
    res.run("test_a_file_a_reader_moved_to_cur_is_not_delivered_again",
            test_a_file_a_reader_moved_to_cur_is_not_delivered_again)
    res.finish()


if __name__ == "__main__":
    main()
