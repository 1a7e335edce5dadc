"""Real DNS servers for the resolver's tests, and the dnsq driver that runs the resolver.

Nsd: NSD, authoritative for the zones a test writes, on 127.0.0.1 and a free port.
Unbound: a validating recursive resolver in front of it (stub zones to NSD, one signed zone with
its trust anchor, one zone with a trust anchor that cannot match, so that it answers SERVFAIL),
logging every query it gets (log-queries), so that tests can count what the resolver sent.
Dnsq: build/tests/tools/dnsq, one JSON line per result.
Only loopback addresses are used.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    if len(sys.argv) > 1 and os.path.isdir(sys.argv[1]):
        return sys.argv[1]
    return os.path.join(ROOT, "build")


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def probe(port, name="probe.test", timeout=0.3):
    """True if a DNS server answers a query for name on 127.0.0.1:port."""
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    msg = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(msg, ("127.0.0.1", port))
            data = s.recv(4096)
            return data[:2] == b"\x42\x42"
        except OSError:
            return False


def wait_up(port, proc, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %d" % (what, proc.returncode))
        if probe(port):
            return
        time.sleep(0.05)
    raise RuntimeError("%s does not answer on port %d" % (what, port))


def need(*programs):
    for p in programs:
        if shutil.which(p) is None and not os.path.exists(p):
            print("SKIP: %s is not installed" % p)
            sys.exit(77)


SHORT_TTL = 3   # seconds: the SOA minimum of the test zones, and their short-lived records
SOA = "@ %d IN SOA ns.test. hostmaster.test. 1 3600 600 86400 %d\n" % (SHORT_TTL, SHORT_TTL)


class Nsd:
    """NSD serving zones {name: text} (text without SOA/NS: they are added)."""

    def __init__(self, workdir, zones, cpu=None):
        self.dir = os.path.join(workdir, "nsd")
        os.makedirs(self.dir)
        self.port = free_port()
        conf = ["server:", "  ip-address: 127.0.0.1@%d" % self.port, "  port: %d" % self.port,
                '  username: ""', '  chroot: ""', "  zonesdir: %s" % self.dir,
                "  pidfile: %s/nsd.pid" % self.dir, "  xfrdfile: %s/xfrd.state" % self.dir,
                "  zonelistfile: %s/zone.list" % self.dir, '  database: ""',
                "  logfile: %s/nsd.log" % self.dir, "  do-ip6: no", "  server-count: 1",
                "  verbosity: 1", "  tcp-timeout: 30", "  rrl-ratelimit: 0",
                "  rrl-whitelist-ratelimit: 0", "remote-control:",
                "  control-enable: no"]
        for name, text in zones.items():
            path = os.path.join(self.dir, name + ".zone")
            with open(path, "w") as f:
                f.write("$ORIGIN %s.\n$TTL 300\n" % name)
                if "SOA" not in text:
                    f.write(SOA + "@ IN NS ns.test.\n")
                f.write(text)
            conf += ["zone:", "  name: %s" % name, "  zonefile: %s" % path]
        self.conf = os.path.join(self.dir, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.proc = subprocess.Popen(pin + ["nsd", "-d", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_up(self.port, self.proc, "nsd")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Unbound:
    """Unbound on 127.0.0.1:port, resolving the stub zones through NSD at nsd_port."""

    def __init__(self, workdir, nsd_port, stubs, anchors):
        self.dir = os.path.join(workdir, "unbound")
        os.makedirs(self.dir)
        self.port = free_port()
        self.log = os.path.join(self.dir, "unbound.log")
        conf = ["server:", "  interface: 127.0.0.1", "  port: %d" % self.port,
                "  do-ip6: no", '  username: ""', '  chroot: ""',
                "  directory: %s" % self.dir, "  pidfile: %s/unbound.pid" % self.dir,
                "  use-syslog: no", "  logfile: %s" % self.log, "  log-queries: yes",
                "  verbosity: 1", "  num-threads: 1", "  do-not-query-localhost: no",
                "  access-control: 127.0.0.0/8 allow", "  qname-minimisation: no",
                '  module-config: "validator iterator"', "  val-log-level: 2",
                '  local-zone: "test." nodefault', '  local-zone: "127.in-addr.arpa." nodefault',
                "  so-reuseport: no", "  edns-buffer-size: 1232",
                "  harden-below-nxdomain: no"]
        for a in anchors:
            conf.append('  trust-anchor: "%s"' % a)
        conf.append("remote-control:")
        conf.append("  control-enable: no")
        for s in stubs:
            conf += ["stub-zone:", '  name: "%s"' % s, "  stub-addr: 127.0.0.1@%d" % nsd_port]
        self.conf = os.path.join(self.dir, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.proc = subprocess.Popen(["unbound", "-d", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_up(self.port, self.proc, "unbound")

    def queries(self, name, qtype, at_least=0, timeout=3.0):
        """How many queries for (name, qtype) unbound has logged; waits (up to timeout) until
        there are at_least, then a little longer for any further line, since unbound may
        write its log after it answers."""
        want = " %s. %s IN" % (name, qtype)
        deadline = time.monotonic() + timeout

        def count():
            with open(self.log) as f:
                return sum(1 for line in f if "info: " in line and want in line)
        n = count()
        while n < at_least and time.monotonic() < deadline:
            time.sleep(0.02)
            n = count()
        time.sleep(0.1)
        return count()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SilentServer:
    """A UDP and TCP port on 127.0.0.1 that takes queries and never answers."""

    def __init__(self):
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)

    def received(self):
        """Datagrams waiting (each a query the resolver sent)."""
        n = 0
        self.udp.setblocking(False)
        while True:
            try:
                self.udp.recv(4096)
                n += 1
            except BlockingIOError:
                return n

    def stop(self):
        self.udp.close()
        self.tcp.close()


class Dnsq:
    """The resolver in its own ring loop: lookup() waits for one result; start()/wait()."""

    def __init__(self, options, resolv_conf=None):
        argv = [os.path.join(build_dir(), "tests", "tools", "dnsq")]
        if resolv_conf:
            argv += ["-r", resolv_conf]
        for k, v in options.items():
            argv += ["-o", "%s=%s" % (k, v)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        assert self.readline() == "ready"
        self.results = {}

    def readline(self, timeout=30.0):
        line = self.proc.stdout.readline()
        if line == "":
            raise RuntimeError("dnsq exited with %s" % self.proc.wait())
        return line.strip()

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _read_until(self, pred):
        while True:
            line = self.readline()
            if line.startswith("{"):
                obj = json.loads(line)
                if "stats" in obj:
                    if pred(obj):
                        return obj
                    continue
                self.results[obj["id"]] = obj
                if pred(obj):
                    return obj
            elif pred(line):
                return line

    def start(self, kind, name):
        self.send("%s %s" % (kind, name))
        line = self._read_until(lambda x: isinstance(x, str) and
                                (x.startswith("started") or x.startswith("error")))
        if line.startswith("error"):
            raise RuntimeError("%s %s: %s" % (kind, name, line))
        return int(line.split()[1])

    def wait(self, ident):
        if ident in self.results:
            return self.results.pop(ident)
        self._read_until(lambda x: isinstance(x, dict) and x.get("id") == ident)
        return self.results.pop(ident)

    def start_many(self, kind, names, count=1):
        """Lookups of names (a list, or one name count times) written at once, so that dnsq
        reads them in one loop turn."""
        if isinstance(names, str):
            names = [names] * count
        count = len(names)
        self.proc.stdin.write("".join("%s %s\n" % (kind, n) for n in names))
        self.proc.stdin.flush()
        ids = []
        while len(ids) < count:
            line = self._read_until(lambda x: isinstance(x, str) and
                                    (x.startswith("started") or x.startswith("error")))
            if line.startswith("error"):
                raise RuntimeError(line)
            ids.append(int(line.split()[1]))
        return ids

    def lookup(self, kind, name):
        return self.wait(self.start(kind, name))

    def cancel(self, ident):
        self.send("cancel %d" % ident)
        self._read_until(lambda x: isinstance(x, str) and x == "cancelled %d" % ident)

    def stats(self):
        self.send("stats")
        return self._read_until(lambda x: isinstance(x, dict) and "stats" in x)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def make_workdir():
    return tempfile.mkdtemp(prefix="ringmta-dns-")
