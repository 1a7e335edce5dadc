"""The metrics endpoint (metrics_listen): Debian's real Prometheus scrapes it, and its HTTP replies.

The Prometheus test starts /usr/bin/prometheus on loopback with a private TSDB directory and a
scrape config for the daemon's endpoint (scrape_interval 1s), sends mail, and checks through
Prometheus's HTTP API (/api/v1/query) that the received and delivered counters moved by what was
sent. The other checks talk HTTP to the endpoint directly: the exposition text, the queue gauge
of a deferred message, 404/405/400/414/431/505, HEAD, persistent and pipelined requests.
The prometheus package is in the Makefile's list (`make deps` installs it).
"""
import json
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from harness import Daemon, Results, free_port, read_until_quiet, sample, scrape

PROMETHEUS = "/usr/bin/prometheus"
MESSAGES = 5


def http(port, raw, timeout=5.0):
    """Sends raw request bytes, returns everything until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return read_until_quiet(s)


def send(port, to, n=1):
    for i in range(n):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("s@example.org", [to], b"Subject: m %d\r\n\r\nbody %d\r\n" % (i, i))


def metrics_daemon(**extra):
    mport = free_port()
    opts = {"metrics_listen": "127.0.0.1:%d" % mport}
    opts.update(extra)
    d = Daemon(shards=2, extra=opts)
    d.mport = mport
    return d


class Prometheus:
    def __init__(self, target_port):
        self.dir = tempfile.mkdtemp(prefix="ringmta-prom-")
        self.port = free_port()
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: ringmta\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % target_port)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + conf,
             "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=self.log)

    def query(self, q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port,
                                                       urllib.parse.urlencode({"query": q}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return [float(x["value"][1]) for x in doc["data"]["result"]]

    def wait(self, q, pred, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.query(q)
                if last and pred(last[0]):
                    return last[0]
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError("%s: last %r after %.0fs" % (q, last, timeout))

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_sees_the_counters_move():
    d = metrics_daemon()
    prom = None
    try:
        d.start()
        prom = Prometheus(d.mport)
        prom.wait('up{job="ringmta"}', lambda v: v == 1, 30)
        before = prom.wait("ringmta_messages_received_total", lambda v: v >= 0, 10)
        delivered = prom.wait('ringmta_deliveries_total{status="delivered"}', lambda v: v >= 0, 5)
        send(d.port, "alice@localhost", MESSAGES)
        assert len(d.wait_for_files("alice", MESSAGES)) == MESSAGES
        got = prom.wait("ringmta_messages_received_total", lambda v: v >= before + MESSAGES, 15)
        assert got == before + MESSAGES, got
        prom.wait('ringmta_deliveries_total{status="delivered"}',
                  lambda v: v == delivered + MESSAGES, 15)
        prom.wait("ringmta_fdatasyncs_total", lambda v: v >= 1, 5)
        print("     received %d -> %d through Prometheus's API" % (before, got))
    finally:
        if prom is not None:
            prom.close()
        d.cleanup()


def test_exposition_counts_what_happened():
    # The relay host is a loopback port nobody listens on: the remote message is deferred.
    d = metrics_daemon(relay_networks="127.0.0.0/8", relayhost="[127.0.0.1]:%d" % free_port())
    try:
        d.start()
        send(d.port, "alice@localhost", 3)
        send(d.port, "r@remote.example")
        assert len(d.wait_for_files("alice", 3)) == 3
        deadline = time.monotonic() + 10
        while True:
            text = scrape(d.mport)
            # Each shard publishes once a second: wait for a publication after the deferral.
            if (sample(text, 'ringmta_deliveries_total{status="deferred"}') >= 1
                    and sample(text, 'ringmta_loop_turns_total{shard="1"}') > 0) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sample(text, "ringmta_messages_received_total") == 4
        assert sample(text, 'ringmta_deliveries_total{status="delivered"}') == 3
        assert sample(text, 'ringmta_deliveries_total{status="deferred"}') >= 1
        assert sample(text, 'ringmta_queue_messages{state="deferred",age="0-5m"}') == 1
        assert sample(text, 'ringmta_destination_deliveries_total{destination="localhost",'
                            'status="delivered"}') == 3
        assert sample(text, 'ringmta_destination_deliveries_total{destination="remote.example",'
                            'status="deferred"}') >= 1
        accepted = sample(text, 'ringmta_connections_accepted_total{listener="127.0.0.1:%d"}'
                          % d.port)
        assert accepted >= 5, accepted   # 4 messages, and the harness's start-up probe
        syncs = sample(text, "ringmta_fdatasyncs_total")
        assert syncs >= 1
        assert 1 <= sample(text, "ringmta_fdatasync_seconds_count") <= syncs
        assert sample(text, 'ringmta_delivery_seconds_bucket{le="+Inf"}') == 3
        assert sample(text, "ringmta_spool_bytes") > 0
        assert sample(text, 'ringmta_loop_turns_total{shard="1"}') > 0
        assert "# TYPE ringmta_fdatasync_seconds histogram" in text
    finally:
        d.cleanup()


def status(reply):
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else reply


def test_http_replies():
    d = metrics_daemon()
    try:
        d.start()
        p = d.mport
        host = b"Host: 127.0.0.1\r\n"
        assert status(http(p, b"GET /nothing HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")) == 404
        r = http(p, b"POST /metrics HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        assert status(r) == 405 and b"\r\nAllow: GET, HEAD\r\n" in r, r
        # RFC 9112 2.2, 3.2: a bare LF, a missing Host: 400, and the connection closes.
        assert status(http(p, b"GET /metrics HTTP/1.1\n" + host + b"\r\n")) == 400
        assert status(http(p, b"GET /metrics HTTP/1.1\r\n\r\n")) == 400
        # A body is never read, so never accepted.
        assert status(http(p, b"GET /metrics HTTP/1.1\r\n" + host
                           + b"Content-Length: 3\r\n\r\nabc")) == 400
        assert status(http(p, b"GET /metrics HTTP/2.0\r\n" + host + b"\r\n")) == 505
        # Limits: RFC 9112 3 (414), RFC 6585 5 (431).
        assert status(http(p, b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n" + host + b"\r\n")) == 414
        assert status(http(p, b"GET /metrics HTTP/1.1\r\n" + host + b"X: " + b"v" * 9000
                           + b"\r\n\r\n")) == 431
        # HEAD: the fields of a GET, no body.
        r = http(p, b"HEAD /metrics HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        assert status(r) == 200 and r.endswith(b"\r\n\r\n"), r[-200:]
        # Persistent and pipelined: two answers on one connection, in order.
        r = http(p, b"GET /metrics HTTP/1.1\r\n" + host + b"\r\nGET /x HTTP/1.1\r\n" + host
                 + b"\r\n")
        assert r.count(b"HTTP/1.1 200 OK\r\n") == 1 and r.count(b"HTTP/1.1 404 ") == 1, r[:300]
        assert r.index(b"HTTP/1.1 200") < r.index(b"HTTP/1.1 404")
        # The SMTP side still works.
        send(d.port, "alice@localhost")
        assert len(d.wait_for_files("alice", 1)) == 1
    finally:
        d.cleanup()


def test_metrics_listen_on_an_smtp_address_is_refused():
    d = Daemon(shards=1)
    d.options["metrics_listen"] = "127.0.0.1:%d" % d.port
    r = subprocess.run(d.argv(), capture_output=True, timeout=10)
    d.cleanup()
    assert r.returncode == 2 and b"two lists" in r.stderr, r


if __name__ == "__main__":
    res = Results()
    res.run("prometheus_sees_the_counters_move", test_prometheus_sees_the_counters_move)
    res.run("exposition_counts_what_happened", test_exposition_counts_what_happened)
    res.run("http_replies", test_http_replies)
    res.run("metrics_listen_on_an_smtp_address_is_refused",
            test_metrics_listen_on_an_smtp_address_is_refused)
    res.finish()
