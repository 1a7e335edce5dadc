"""Queue control (issue 10, "Queue control"): `ringmta queue` against the real daemon over its
real control sockets, with mail routed through a real DNS server (NSD behind Unbound) to
scripted receivers on 127.0.0.x (test_outbound.py's world).

Covered: list (text and --json, parsed here: id, arrival, size, sender, every recipient with its
state, next attempt and last reply), summary (text and --json: counts by domain and age bucket),
flush of one message, of one domain and of everything (deferred mail delivered now, not at its
back-off), hold (never delivered while held, surviving kill -9 and restart), release, delete
(surviving kill -9 and restart, never delivered), bounce (a DSN to the local sender, as at
queue_lifetime), the errors (no such message, held twice, a bad id, a request over the limit, a
daemon that is not running, also after kill -9 left the socket file), the sockets' mode 0600,
one log line per action with the queue id, and both shards' queues in every answer.
"""
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_outbound as ob  # noqa: E402  (its DNS world, receivers and helpers)
from dnsharness import need  # noqa: E402
from harness import Daemon, Results, build_dir  # noqa: E402

HOUR = "1h"   # back-off: a deferred recipient is not tried again within a test unless flushed


class Switch:
    """A receiver's RCPT answer the test can change: 451 until opened."""

    def __init__(self):
        self.open = False

    def __call__(self, addr, n):
        return "250 2.1.5 ok" if self.open else "451 4.7.1 greylisted, try later"


def queue(d, *args, check=True):
    argv = [os.path.join(build_dir(), "ringmta"), "queue"]
    for k, v in d.options.items():
        argv += ["-o", "%s=%s" % (k, v)]
    p = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def listing(d):
    return json.loads(queue(d, "list", "--json").stdout)


def by_id(d, qid):
    for m in listing(d):
        if m["id"] == qid:
            return m
    return None


def qid_of(d, to):
    """The queue id of the (last) message to `to`, from its deferred log line."""
    x = ob.deliveries(d, to)
    assert x, d.read_log()[-2000:]
    return x[-1]["qid"]


def deferred(d, to):
    ob.wait_status(d, to, "deferred")
    return qid_of(d, to)


def daemon(extra=None):
    """Daemon.start returns once one shard serves SMTP; these tests want every shard serving."""
    opts = {"minimal_backoff_time": HOUR, "maximal_backoff_time": "2h"}
    opts.update(extra or {})
    d = ob.W.daemon(opts)
    d.starts = 0
    real = d.start

    def start(timeout=10.0):
        d.starts += 1
        real(timeout)
        deadline = time.monotonic() + timeout
        while d.read_log().count("event=started") < d.starts and time.monotonic() < deadline:
            time.sleep(0.02)
        return d
    d.start = start
    return d


def test_daemon_not_running():
    d = Daemon()
    try:
        p = queue(d, "list", check=False)
        assert p.returncode == 3, (p.returncode, p.stderr)
        assert "not running" in p.stderr and d.spool in p.stderr, p.stderr
        d.start()
        assert queue(d, "list").stdout.strip() == "Mail queue is empty"
        mailq = os.path.join(d.dir, "mailq")   # mailq (src/sendmail) runs `ringmta queue list`
        os.symlink(os.path.abspath(os.path.join(build_dir(), "ringmta")), mailq)
        conf = os.path.join(d.dir, "ringmta.conf")
        with open(conf, "w") as f:
            f.write("".join("%s = %s\n" % kv for kv in d.options.items()))
        p = subprocess.run([mailq, "-C", conf], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == "Mail queue is empty", p
        d.kill()   # kill -9: the socket file stays, nobody listens on it
        assert os.path.exists(os.path.join(d.spool, "control"))
        p = queue(d, "hold", "6B03E9C700000000", check=False)
        assert p.returncode == 3 and "not running" in p.stderr, (p.returncode, p.stderr)
        d.start()
        assert d.stop() == 0
        assert not os.path.exists(os.path.join(d.spool, "control")), "removed at a clean stop"
    finally:
        d.cleanup()


def test_sockets_are_private():
    d = Daemon(shards=2)
    d.options["control_socket"] = os.path.join(d.dir, "ctl")
    try:
        d.start()
        for path in (os.path.join(d.dir, "ctl"), os.path.join(d.dir, "ctl.1")):
            deadline = time.monotonic() + 10
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.02)   # shard 1 may still be starting
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode), path
            assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert not os.path.exists(os.path.join(d.spool, "control"))
        assert queue(d, "list").stdout.strip() == "Mail queue is empty"
    finally:
        d.cleanup()


def test_list_and_summary(_w):
    sw = Switch()
    ob.W.fake("127.0.0.41", rcpt=sw)
    ob.W.fake("127.0.0.42", rcpt=sw)
    d = daemon()
    try:
        d.start()
        before = time.time()
        # Six messages over six connections, more if SO_REUSEPORT gave every one to one shard
        # (1 in 32): both shards must hold some.
        n, shards = 0, set()
        while n < 6 or (len(shards) < 2 and n < 40):
            ob.send(d, ["u%d@d1.out.test" % n, "v%d@d2.out.test" % n], sender="bob@localhost")
            deferred(d, "v%d@d2.out.test" % n)
            shards.add(queue_shard(deferred(d, "u%d@d1.out.test" % n)))
            n += 1
        msgs = listing(d)
        assert len(msgs) == n, msgs
        assert len({queue_shard(m["id"]) for m in msgs}) == 2, "both shards' queues listed"
        for m in msgs:
            assert re.fullmatch(r"[0-9A-F]{16}", m["id"]), m
            assert m["sender"] == "bob@localhost"
            assert m["held"] is False and m["bouncing"] is False
            assert abs(m["arrival_ms"] / 1000 - before) < 60, m
            assert m["size"] > len("Subject: t\r\n\r\nhello\r\n"), m   # with our Received:
            assert len(m["recipients"]) == 2
            for r in m["recipients"]:
                assert r["state"] == "deferred", r
                assert r["next_attempt_ms"] > time.time() * 1000 + 1800 * 1000, r
                assert r["last_reply"] == "451 4.7.1", r
                assert r["last_reply_text"] == "451 4.7.1 greylisted, try later", r
        text = queue(d, "list").stdout
        assert text.count("deferred next=") == 2 * n, text
        assert text.count(' reply="451 4.7.1 greylisted, try later"') == 2 * n, text
        assert msgs[0]["id"] in text and "<bob@localhost>" in text, text
        assert text.rstrip().endswith("-- %d messages" % n), text
        s = json.loads(queue(d, "summary", "--json").stdout)
        assert s["bucket_minutes"][:3] == [5, 10, 20] and s["bucket_minutes"][-1] is None, s
        assert s["total"]["total"] == 2 * n and s["total"]["counts"][0] == 2 * n, s
        rows = {r["domain"]: r for r in s["domains"]}
        assert rows["d1.out.test"]["total"] == n and rows["d2.out.test"]["total"] == n, rows
        text = queue(d, "summary").stdout
        assert re.search(r"TOTAL\s+%d\s+%d\s" % (2 * n, 2 * n), text), text
        assert re.search(r"d1\.out\.test\s+%d\s+%d\s" % (n, n), text), text
        log = d.read_log()
        assert len(re.findall(r"event=queue_control action=list shard=\d result=ok", log)) >= 4
    finally:
        d.cleanup()


def queue_shard(qid):
    return (int(qid, 16) >> 26) & 63


def test_flush(_w):
    sw = Switch()
    f3 = ob.W.fake("127.0.0.43", rcpt=sw)
    f4 = ob.W.fake("127.0.0.44", rcpt=sw)
    f5 = ob.W.fake("127.0.0.45", rcpt=sw)
    d = daemon()
    try:
        d.start()
        ob.send(d, "a@d3.out.test")
        ob.send(d, "b@d4.out.test")
        ob.send(d, "c@d5.out.test")
        a = deferred(d, "a@d3.out.test")
        deferred(d, "b@d4.out.test")
        deferred(d, "c@d5.out.test")
        sw.open = True
        time.sleep(1.5)
        assert not f3.accepted(), "a deferred message waits for its back-off (an hour)"
        assert "flushed: 1 message" in queue(d, "flush", a).stdout
        assert len(f3.wait_accepted(1, timeout=10)) == 1, "flush ID: delivered now"
        ob.wait_status(d, "a@d3.out.test", "delivered")
        assert "flushed: 1 message" in queue(d, "flush", "D4.out.test").stdout
        assert len(f4.wait_accepted(1, timeout=10)) == 1, "flush DOMAIN: delivered now"
        time.sleep(1)
        assert not f5.accepted(), "another domain's mail stays deferred"
        assert "flushed: 1 message" in queue(d, "flush").stdout
        assert len(f5.wait_accepted(1, timeout=10)) == 1, "flush: everything due now"
        ob.wait_status(d, "c@d5.out.test", "delivered")
        assert queue(d, "list").stdout.strip() == "Mail queue is empty"
        assert re.search(r"event=queue_control action=flush qid=%s shard=\d result=ok" % a,
                         d.read_log())
    finally:
        d.cleanup()


def test_flush_revives_a_dead_destination(_w):
    """Every connection refused: the destination is suspended until its next retry (an hour).
    A flush (as Postfix's) revives it: the receiver, up again, gets the mail at once. (One
    connection at most: one failure is the whole cohort.)"""
    d = daemon({"destination_concurrency_limit": "1"})
    try:
        d.start()
        ob.send(d, "z@d10.out.test")
        qid = deferred(d, "z@d10.out.test")
        f = ob.W.fake("127.0.0.50")
        queue(d, "flush", qid)
        assert len(f.wait_accepted(1, timeout=10)) == 1, d.read_log()[-1500:]
        ob.wait_status(d, "z@d10.out.test", "delivered")
    finally:
        d.cleanup()


def test_hold_survives_kill_and_release_delivers(_w):
    sw = Switch()
    f = ob.W.fake("127.0.0.46", rcpt=sw)
    # A short back-off: after the restart the held message is due again within the test, so
    # only the hold keeps it (not just the schedule it left).
    d = daemon({"minimal_backoff_time": "2s", "maximal_backoff_time": "2s"})
    try:
        d.start()
        ob.send(d, "h@d6.out.test")
        qid = deferred(d, "h@d6.out.test")
        assert queue(d, "hold", qid).stdout.strip() == "%s: held" % qid
        p = queue(d, "hold", qid, check=False)
        assert p.returncode == 1 and "held already" in p.stderr, (p.returncode, p.stderr)
        assert by_id(d, qid)["held"] is True
        assert "%s " % qid in queue(d, "list").stdout and " held" in queue(d, "list").stdout
        sw.open = True
        queue(d, "flush", qid)
        queue(d, "flush")
        time.sleep(2)
        assert not f.accepted(), "held mail is never delivered"
        d.kill()   # kill -9: the HOLD record is what remains
        d.start()
        m = by_id(d, qid)
        assert m is not None and m["held"] is True, m
        queue(d, "flush")
        time.sleep(4)
        assert not f.accepted(), "still held after the restart, past its next attempt"
        assert queue(d, "release", qid).stdout.strip() == "%s: released" % qid
        p = queue(d, "release", qid, check=False)
        assert p.returncode == 1 and ("not held" in p.stderr or "no such" in p.stderr), p.stderr
        # The flushes while it was held made it due: released, it goes at once.
        assert len(f.wait_accepted(1, timeout=10)) == 1, "released: delivered"
        log = d.read_log()
        assert re.search(r"action=hold qid=%s shard=\d result=ok" % qid, log), log[-2000:]
        assert re.search(r"action=release qid=%s shard=\d result=ok" % qid, log)
    finally:
        d.cleanup()


def test_hold_survives_copy_forward(_w):
    """A held message in a segment that empties is copied forward (queue/spool): the COPY record
    carries the hold, the old segment goes, and after kill -9 the message is still held."""
    sw = Switch()
    f = ob.W.fake("127.0.0.49", rcpt=sw)
    d = daemon({"minimal_backoff_time": "2s", "maximal_backoff_time": "2s"})
    d.options["shards"] = "1"
    try:
        d.start()
        ob.send(d, "k@d9.out.test")
        qid = deferred(d, "k@d9.out.test")
        queue(d, "hold", qid)
        body = "Subject: bulk\r\n\r\n" + ("x" * 998 + "\r\n") * 200   # 200 KB
        seg0 = os.path.join(d.spool, "0", "%016x.log" % 0)
        deadline = time.monotonic() + 120
        n = 0
        while os.path.exists(seg0) and time.monotonic() < deadline:
            ob.send(d, "bulk@localhost", body=body)
            n += 1
        assert not os.path.exists(seg0), "segment 0 never went (%d messages)" % n
        assert by_id(d, qid)["held"] is True
        d.kill()
        d.start()
        m = by_id(d, qid)
        assert m is not None and m["held"] is True, m
        sw.open = True
        time.sleep(3)
        assert not f.accepted(), "held after its copy forward and a restart"
        queue(d, "release", qid)
        assert len(f.wait_accepted(1, timeout=10)) == 1
    finally:
        d.cleanup()


def test_delete_survives_kill(_w):
    sw = Switch()
    f = ob.W.fake("127.0.0.47", rcpt=sw)
    d = daemon()
    try:
        d.start()
        ob.send(d, "x@d7.out.test")
        ob.send(d, "y@d7.out.test")
        x = deferred(d, "x@d7.out.test")
        y = deferred(d, "y@d7.out.test")
        assert queue(d, "delete", x).stdout.strip() == "%s: deleted" % x
        assert by_id(d, x) is None and by_id(d, y) is not None
        p = queue(d, "delete", x, check=False)
        assert p.returncode == 1 and "no such message" in p.stderr, p.stderr
        d.kill()
        d.start()
        assert by_id(d, x) is None, "deleted stays gone after kill -9"
        assert by_id(d, y) is not None
        # A DEFERRED record that was not yet durable at the kill is lost: y is then tried again
        # at once (and deferred again). Flush only once y is not in flight, or the flush finds
        # nothing to do and y waits its hour.
        deadline = time.monotonic() + 10
        while by_id(d, y)["recipients"][0]["state"] != "deferred":
            assert time.monotonic() < deadline, by_id(d, y)
            time.sleep(0.05)
        sw.open = True
        queue(d, "flush")
        assert len(f.wait_accepted(1, timeout=10)) == 1, d.read_log()[-3000:]
        time.sleep(1)
        assert [m["rcpts"] for m in f.accepted()] == [["RCPT TO:<y@d7.out.test>"]], f.accepted()
        assert re.search(r"action=delete qid=%s shard=\d result=ok" % x, d.read_log())
        assert queue(d, "list").stdout.strip() == "Mail queue is empty"
    finally:
        d.cleanup()


def test_bounce_sends_a_dsn(_w):
    sw = Switch()
    ob.W.fake("127.0.0.48", rcpt=sw)
    d = daemon()
    try:
        d.start()
        ob.send(d, ["p@d8.out.test", "q@d8.out.test"], sender="alice@localhost")
        qid = deferred(d, "p@d8.out.test")
        assert queue(d, "bounce", qid).stdout.strip() == "%s: bounced" % qid
        [dsn] = ob.dsns(d, "alice", 1)
        text = dsn.as_string()
        assert "Action: failed" in text and "Status: 4.4.7" in text, text
        assert "p@d8.out.test" in text and "q@d8.out.test" in text, text
        assert "MAILER-DAEMON@" in dsn["From"], dsn["From"]
        ob.wait_status(d, "p@d8.out.test", "expired")
        deadline = time.monotonic() + 10
        while by_id(d, qid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert by_id(d, qid) is None, "bounced: gone from the queue"
        assert re.search(r"action=bounce qid=%s shard=\d result=ok" % qid, d.read_log())
    finally:
        d.cleanup()


def test_errors(_w):
    d = daemon()
    try:
        d.start()
        p = queue(d, "hold", "6B03E9C700000000", check=False)
        assert p.returncode == 1 and "no such message" in p.stderr, (p.returncode, p.stderr)
        p = queue(d, "hold", "xyz", check=False)
        assert p.returncode == 2 and "not a queue id" in p.stderr, (p.returncode, p.stderr)
        p = queue(d, "frob", check=False)
        assert p.returncode == 2 and "unknown command" in p.stderr, p.stderr
        p = queue(d, check=False)
        assert p.returncode == 2 and "usage" in p.stderr, p.stderr
        path = os.path.join(d.spool, "control")
        with socket.socket(socket.AF_UNIX) as s:   # the daemon's own limit and reply
            s.connect(path)
            s.sendall(b"list" + b" " * 600)
            s.settimeout(5)
            got = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        assert got.startswith(b"ringmta-queue 1 shard=0 shards=2\n"), got
        assert got.endswith(b"error request longer than 512 octets\n"), got
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(b"hold \xff\r\n")
            s.settimeout(5)
            got = s.recv(4096)
            while not got.endswith(b"\n") or got.count(b"\n") < 2:
                got += s.recv(4096)
        assert b"error hold: not a queue id" in got, got
        # CONTROL_SESSIONS_MAX (4) commands at once per shard; the fifth is told so at once.
        idle = [socket.socket(socket.AF_UNIX) for _ in range(4)]
        for s in idle:
            s.connect(path)
            assert s.recv(4096).startswith(b"ringmta-queue 1 shard=0 ")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.settimeout(5)
            got = b""
            while got.count(b"\n") < 2:
                got += s.recv(4096)
        assert b"error busy: 4 queue commands at once already" in got, got
        for s in idle:
            s.close()
        deadline = time.monotonic() + 5
        while queue(d, "list", check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue(d, "list").returncode == 0, "still serving"
    finally:
        d.cleanup()


def main():
    need("nsd", "unbound")
    ob.W = ob.World()
    res = Results()
    try:
        res.run("test_daemon_not_running", test_daemon_not_running)
        res.run("test_sockets_are_private", test_sockets_are_private)
        only = os.environ.get("QUEUE_TEST_ONLY", "")
        for name, fn in sorted(globals().items()):
            if name.startswith("test_") and callable(fn) and only in name \
                    and fn.__code__.co_argcount == 1:
                res.run(name, fn, ob.W)
    finally:
        ob.W.stop()
    res.finish()


if __name__ == "__main__":
    main()
