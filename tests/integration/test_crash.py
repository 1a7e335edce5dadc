"""Durability: "250" after DATA means on stable storage (RFC 5321 4.1.1.4, 6.1).

Twenty connections inject mail; the daemon is killed with SIGKILL at a random moment; it is
restarted on the same spool; every message that got 250 must then be in Maildir exactly once and
byte-identical. Several rounds on the same spool. Prints acknowledged/lost/duplicated counts.
"""
import os
import random
import smtplib
import threading
import time

from harness import Daemon, Results

USERS = ["u%d" % i for i in range(8)]
CLIENTS = 20
ROUNDS = int(os.environ.get("CRASH_ROUNDS", "4"))


def body_for(mid):
    rnd = random.Random(mid)
    lines = [b"Subject: crash %s" % mid.encode(), b"Message-ID: <%s@crash.test>" % mid.encode(), b""]
    # One in ten is large: its body reaches the spool in BODY records while it still arrives.
    for _ in range(rnd.randint(1, 60) if rnd.random() < 0.9 else rnd.randint(300, 4000)):
        line = bytes(rnd.choice(b"abcdefghij .") for _ in range(rnd.randint(0, 90)))
        lines.append(line)
    lines.append(b"id=" + mid.encode())
    return b"\r\n".join(lines) + b"\r\n"


def rcpts_for(mid):
    rnd = random.Random("r" + mid)
    return sorted(set(rnd.choice(USERS) for _ in range(rnd.randint(1, 2))))


def client(port, tag, acked, stop):
    seq = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                s.ehlo("crash.example")
                while not stop.is_set():
                    mid = "%s-%d" % (tag, seq)
                    seq += 1
                    s.sendmail("c@example.org", ["%s@localhost" % u for u in rcpts_for(mid)],
                               body_for(mid))
                    acked.append(mid)   # only after the 250 to the final dot
        except (OSError, smtplib.SMTPException):
            time.sleep(0.01)


def stored_messages(d):
    found = {}
    for u in USERS:
        for path in d.mailbox_files(u):
            with open(path, "rb") as f:
                data = f.read()
            mid = data.rsplit(b"id=", 1)[1].strip().decode()
            found.setdefault((mid, u), []).append(data)
    return found


def strip_added(data):
    lines = data.split(b"\r\n")
    assert lines[0].startswith(b"Return-Path: <c@example.org>")
    i = 2
    while lines[i].startswith(b"\t"):
        i += 1
    return b"\r\n".join(lines[i:])


def crash_rounds():
    d = Daemon(shards=2, users=USERS)
    totals = {"acknowledged": 0, "lost": 0, "duplicated": 0, "corrupt": 0}
    try:
        all_acked = []
        for rnd in range(ROUNDS):
            d.start()
            acked, stop = [], threading.Event()
            threads = [threading.Thread(target=client, args=(d.port, "r%dc%d" % (rnd, i), acked, stop))
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.5, 2.5))
            d.kill()
            stop.set()
            for t in threads:
                t.join(10)
            all_acked += acked
            print("round %d: %d acknowledged before SIGKILL" % (rnd, len(acked)), flush=True)
        d.start()   # recovery delivers whatever was acknowledged but not yet in Maildir
        expected = {(mid, u) for mid in all_acked for u in rcpts_for(mid)}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = stored_messages(d)
            if expected <= set(found):
                break
            time.sleep(0.2)
        found = stored_messages(d)
        totals["acknowledged"] = len(all_acked)
        for key in expected:
            copies = found.get(key, [])
            if not copies:
                totals["lost"] += 1
            elif len(copies) > 1:
                totals["duplicated"] += 1
            elif strip_added(copies[0]) != body_for(key[0]):
                totals["corrupt"] += 1
        dup_unacked = sum(1 for k, v in found.items() if len(v) > 1 and k not in expected)
        totals["duplicated"] += dup_unacked
        print("crash test: %(acknowledged)d acknowledged, %(lost)d lost, %(duplicated)d duplicated,"
              " %(corrupt)d corrupt" % totals, flush=True)
        assert d.stop() == 0
        assert totals["acknowledged"] > 0, "no message was acknowledged at all"
        assert totals["lost"] == 0 and totals["duplicated"] == 0 and totals["corrupt"] == 0, totals
    finally:
        d.cleanup()


def main():
    res = Results()
    res.run("kill_9_under_load_loses_nothing_acknowledged", crash_rounds)
    res.finish()


if __name__ == "__main__":
    main()
