"""The zero-copy DATA path: large bodies go to the spool as they arrive, memory stays bounded.

Bodies of every size around the spool's thresholds (a BODY record holds at least 4096 octets,
a message holding 256 KiB writes it at once) are delivered byte for byte, through DATA (dot-
stuffed by the client) and through BDAT. Then 100 connections each stop in the middle of a
large message: the daemon's resident memory stays under 128 MB (the issue's bound for 100 x
20 MB; here MEMORY_MB each, see perf/ for the full size), every message is then finished and
delivered intact, and the exit stats show that almost no body octet was copied in user space.
"""
import hashlib
import os
import random
import smtplib
import socket
import threading
import time

from harness import Daemon, Results

SIZES = [0, 1, 4095, 4096, 4097, 16383, 16384, 16385, 100000, 262143, 262145, 1 << 20, 5 << 20]
CONNS = 100
MEMORY_MB = int(os.environ.get("LARGE_MEMORY_MB", "4"))
RSS_MAX_KB = 128 * 1024


def body_of(size, seed):
    rnd = random.Random(seed)
    out = bytearray(b"Subject: large %d\r\n\r\n" % size)
    while len(out) < size:
        line = bytes(rnd.choice(b"abcdefghij .") for _ in range(rnd.randint(0, 200)))
        if rnd.random() < 0.1:
            line = b"." + line
        out += line + b"\r\n"
    out = out[:size] if size >= len(b"Subject: ") else out
    if out.endswith(b"\r"):
        out[-1:] = b"x"   # a cut between CR and LF would be a bare CR (refused: 5.6.0)
    return bytes(out)


def fix_end(b):
    """What the server stores: DATA makes the body end with CRLF."""
    return b if b.endswith(b"\r\n") else b + b"\r\n"


def stored_body(path):
    with open(path, "rb") as f:
        data = f.read()
    # Return-Path: and Received: come first; the Received: field ends at its date line.
    head_end = data.index(b"\r\n", data.index(b"Received: "))
    while data[head_end + 2:head_end + 3] in (b"\t", b" "):
        head_end = data.index(b"\r\n", head_end + 2)
    return data[head_end + 2:]


def bdat(port, to, body, chunk):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO large.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"MAIL FROM:<l@example.org>\r\nRCPT TO:<%s>\r\n" % to.encode())
        assert f.readline().startswith(b"250") and f.readline().startswith(b"250")
        for off in range(0, max(len(body), 1), chunk):
            part = body[off:off + chunk]
            last = off + chunk >= len(body)
            s.sendall(b"BDAT %d%s\r\n" % (len(part), b" LAST" if last else b"") + part)
            reply = f.readline()
            assert reply.startswith(b"250"), reply


def test_every_size_is_delivered_intact_by_data_and_bdat(d):
    for i, size in enumerate(SIZES):
        b = body_of(size, i)
        with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
            s.sendmail("l@example.org", ["data%d@localhost" % i], b)
        bdat(d.port, "bdat%d@localhost" % i, b, 65536 if size < (1 << 20) else 700000)
    for i, size in enumerate(SIZES):
        b = body_of(size, i)
        for kind, want in (("data", fix_end(b)), ("bdat", b)):
            files = d.wait_for_files("%s%d" % (kind, i), 1, timeout=30)
            assert len(files) == 1, (kind, size)
            got = stored_body(files[0])
            assert got == want, "%s body of %d octets differs (%d stored)" % (kind, size, len(got))


def client_mid_message(port, idx, size, ready, go, errors):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=120)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO mem.example\r\nMAIL FROM:<m@example.org>\r\nRCPT TO:<mem%d@localhost>\r\n"
                  b"DATA\r\n" % idx)
        while not f.readline().startswith(b"354"):
            pass
        line = (b"%06d " % idx) + b"x" * 70 + b"\r\n"
        block = line * (65536 // len(line))
        sent = 0
        while sent < size:
            s.sendall(block)
            sent += len(block)
        ready.release()
        go.wait(300)
        s.sendall(b".\r\n")
        reply = f.readline()
        assert reply.startswith(b"250"), reply
        s.sendall(b"QUIT\r\n")
        s.close()
    except Exception as e:  # reported by the caller
        errors.append(e)
        ready.release()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_memory_stays_bounded_with_100_connections_mid_message(d):
    size = MEMORY_MB << 20
    ready = threading.Semaphore(0)
    go = threading.Event()
    errors = []
    threads = [threading.Thread(target=client_mid_message, args=(d.port, i, size, ready, go, errors))
               for i in range(CONNS)]
    for t in threads:
        t.start()
    peak = 0
    for _ in range(CONNS):
        while not ready.acquire(timeout=0.2):
            peak = max(peak, rss_kb(d.proc.pid))
    time.sleep(0.5)
    mid = rss_kb(d.proc.pid)
    peak = max(peak, mid)
    go.set()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    print("     %d connections x %d MB in the middle of DATA: rss %.1f MB, peak seen %.1f MB"
          % (CONNS, MEMORY_MB, mid / 1024.0, peak / 1024.0))
    assert peak < RSS_MAX_KB, "resident memory %d kB" % peak
    line_len = 79   # "%06d " + 70 x + CRLF
    for i in range(CONNS):
        files = d.wait_for_files("mem%d" % i, 1, timeout=60)
        assert len(files) == 1, i
        got = stored_body(files[0])
        assert len(got) % line_len == 0 and got[:6] == b"%06d" % i, (i, len(got))


def test_the_stats_show_almost_no_copy(d):
    assert d.stop() == 0
    stats = [dict(kv.split("=", 1) for kv in l.split() if "=" in kv)
             for l in d.read_log().splitlines() if "event=stats " in l]
    body = sum(int(s["body_bytes"]) for s in stats)
    held = sum(int(s["body_held"]) for s in stats)
    copied = sum(int(s["body_copied"]) for s in stats)
    print("     body octets %d: written from the receive buffers %d (%.4f), copied %d (%.4f)"
          % (body, held, held / body, copied, copied / body))
    assert copied < body * 0.01, "more than 1% of the body was copied in user space"


def main():
    d = Daemon(shards=2, extra={"max_message_size": "64m"}, keep_dir=os.environ.get("KEEP_DIR"))
    res = Results()
    try:
        d.start()
        res.run("test_every_size_is_delivered_intact_by_data_and_bdat",
                test_every_size_is_delivered_intact_by_data_and_bdat, d)
        res.run("test_memory_stays_bounded_with_100_connections_mid_message",
                test_memory_stays_bounded_with_100_connections_mid_message, d)
        res.run("test_the_stats_show_almost_no_copy", test_the_stats_show_almost_no_copy, d)
    finally:
        d.cleanup()
    res.finish()


if __name__ == "__main__":
    main()
