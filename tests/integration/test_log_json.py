"""log_format = json: every line the daemon writes is one JSON object, whatever a client sends.

A client with a HELO full of octets that need escaping (quotes, a backslash, non-ASCII) sends a
message; every line of the log must parse with json.loads, the accepted line must carry the queue
id of the 250 reply, and its delivery line the same id with status delivered.
"""
import json
import re
import socket

from harness import Daemon, Results


def test_every_line_is_json():
    d = Daemon(shards=2, extra={"log_format": "json"})
    try:
        d.start()
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b'EHLO "q\\\\x\xc3\xa9\r\n')
            f.flush()
            while not f.readline().startswith(b"250 "):
                pass
            for cmd in (b"MAIL FROM:<s@example.org>", b"RCPT TO:<alice@localhost>", b"DATA"):
                f.write(cmd + b"\r\n")
                f.flush()
                f.readline()
            f.write(b"Subject: json\r\n\r\nbody\r\n.\r\n")
            f.flush()
            reply = f.readline().decode()
            f.write(b"QUIT\r\n")
            f.flush()
        qid = re.search(r"queued as ([0-9A-F]{16})", reply).group(1)
        assert len(d.wait_for_files("alice", 1)) == 1
        assert d.stop() == 0
        events = [json.loads(line) for line in d.read_log().splitlines()]
        kinds = {e["event"] for e in events}
        assert {"started", "connect", "accepted", "delivery", "stats"} <= kinds, kinds
        acc = [e for e in events if e["event"] == "accepted"]
        assert acc[0]["qid"] == qid and acc[0]["helo"] == '"q\\\\x\u00c3\u00a9', acc
        dl = [e for e in events if e["event"] == "delivery"]
        assert dl[0]["qid"] == qid and dl[0]["status"] == "delivered", dl
        assert isinstance(dl[0]["delay"], float) and dl[0]["to"] == "alice@localhost", dl
        stats = [e for e in events if e["event"] == "stats"]
        assert len(stats) == 2 and isinstance(stats[0]["messages"], int), stats
    finally:
        d.cleanup()


if __name__ == "__main__":
    res = Results()
    res.run("every_line_is_json", test_every_line_is_json)
    res.finish()
