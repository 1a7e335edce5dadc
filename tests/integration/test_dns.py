"""The resolver (dns/) against real DNS servers: NSD authoritative for zones written here, Unbound
validating in front of it. The resolver runs in build/tests/tools/dnsq, a ring loop of its own
(the same dns_resolver the shards use), one JSON line per result.

Covered (issue 9, "What it must show" 1): MX sorting and shuffling, implicit MX, null MX,
NXDOMAIN, NODATA, CNAME chains (in the answer, and by asking again), A and AAAA with
inet_protocols, TXT, TLSA with the AD bit, a truncated answer asked again over TCP (with the
connection reused), failover when the first server does not answer, SERVFAIL, REFUSED, cache
hits and TTL expiry, negative caching, coalescing (queries counted in Unbound's query log),
cancellation without leaks, and one libcrypto in the process (/proc/PID/maps).
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnsharness import SHORT_TTL, Dnsq, Nsd, SilentServer, Unbound, build_dir, make_workdir, need  # noqa
from harness import Daemon, Results  # noqa

TXT_BIG_COUNT = 12      # 12 TXT records of 200 octets: far past a 1232-octet datagram
TLSA_HEX = "aa" * 32

EXAMPLE = """
sorted MX 20 d.example.test.
sorted MX 10 a.example.test.
sorted MX 10 b.example.test.
sorted MX 10 c.example.test.
sorted MX 5 e.example.test.
a A 127.0.1.1
b A 127.0.1.2
c A 127.0.1.3
d A 127.0.1.4
e A 127.0.1.5
e AAAA fd00::15
implicit A 127.0.2.1
implicit AAAA fd00::21
nullmx MX 0 .
nomail TXT "no mail here"
both A 127.0.3.1
both AAAA fd00::31
alias CNAME alias2
alias2 CNAME both
cnamemx MX 10 mxalias.example.test.
mxalias CNAME a.example.test.
literalmx MX 10 127.0.4.4.
halfmx MX 10 a.example.test.
halfmx MX 20 nowhere.example.test.
txt TXT "v=spf1 " "-all"
short %d A 127.0.5.1
new MX 10 a.example.test.
new MX 20 b.example.test.
crossalias CNAME target.other.test.
_25._tcp.a TLSA 3 1 1 %s
shared A 127.0.9.1
""" % (SHORT_TTL, TLSA_HEX) + "".join('big TXT "%03d%s"\n' % (i, "x" * 197) for i in range(TXT_BIG_COUNT)) \
    + "".join("co%d MX 10 shared.example.test.\n" % i for i in range(50))

OTHER = "target A 127.0.6.1\n"
DNSSEC = "mx A 127.0.7.1\n_25._tcp.mx TLSA 3 1 1 %s\n" % TLSA_HEX
BOGUS = "host A 127.0.8.1\n"
REVERSE = "10 PTR ptr-target.example.test.\n"
BOGUS_ANCHOR = "bogus.test. DS 4242 13 2 " + "00" * 32


class World:
    """NSD with the zones, Unbound in front; one set for the whole file."""

    def __init__(self):
        self.dir = make_workdir()
        zones = {"example.test": EXAMPLE, "other.test": OTHER, "bogus.test": BOGUS,
                 "0.0.127.in-addr.arpa": REVERSE}
        anchor = self.sign_dnssec_zone(zones)
        self.nsd = Nsd(self.dir, zones)
        self.unbound = Unbound(self.dir, self.nsd.port, ["test.", "0.0.127.in-addr.arpa."],
                               [anchor, BOGUS_ANCHOR])

    def sign_dnssec_zone(self, zones):
        """Signs dnssec.test with a new key; returns its DS as Unbound's trust anchor."""
        keydir = os.path.join(self.dir, "keys")
        os.makedirs(keydir)
        base = subprocess.check_output(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k",
                                        "dnssec.test"], cwd=keydir, text=True).strip()
        zone = os.path.join(keydir, "dnssec.test")
        with open(zone, "w") as f:
            f.write("$ORIGIN dnssec.test.\n$TTL 300\n"
                    "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 %d\n@ IN NS ns.test.\n"
                    % SHORT_TTL)
            f.write(DNSSEC)
            with open(os.path.join(keydir, base + ".key")) as k:
                f.write(k.read())
        subprocess.check_call(["ldns-signzone", zone, base], cwd=keydir)
        with open(zone + ".signed") as f:
            zones["dnssec.test"] = f.read()
        with open(os.path.join(keydir, base + ".ds")) as f:
            return " ".join(f.read().split())

    def dnsq(self, **options):
        opts = {"dns_servers": "127.0.0.1:%d" % self.unbound.port, "dns_timeout": "2",
                "dns_attempts": "2"}
        opts.update({k: str(v) for k, v in options.items()})
        return Dnsq(opts)

    def stop(self):
        self.unbound.stop()
        self.nsd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


W = None


def one(kind, name, **options):
    q = W.dnsq(**options)
    try:
        return q.lookup(kind, name)
    finally:
        q.close()


def expect(r, status, reason=None):
    assert r["status"] == status, r
    if reason is not None:
        assert r["reason"] == reason, r


def test_mx_sorted_by_preference_equal_ones_shuffled():
    q = W.dnsq()
    try:
        orders = set()
        for _ in range(30):
            r = q.lookup("mx", "sorted.example.test")
            expect(r, "OK")
            prefs = [h["pref"] for h in r["hosts"]]
            assert prefs == [5, 10, 10, 10, 20], r
            names = [h["name"] for h in r["hosts"]]
            assert names[0] == "e.example.test" and names[4] == "d.example.test", names
            assert sorted(names[1:4]) == ["a.example.test", "b.example.test", "c.example.test"]
            orders.add(tuple(names[1:4]))
            assert r["hosts"][0]["addrs"] == ["fd00::15", "127.0.1.5"], "IPv6 first"
        assert len(orders) >= 2, "equal preferences never shuffled: %s" % orders
        print("     %d distinct orders of the three preference-10 hosts in 30 lookups"
              % len(orders))
    finally:
        q.close()


def test_implicit_mx_when_the_domain_has_only_addresses():
    r = one("mx", "implicit.example.test")
    expect(r, "OK")
    assert len(r["hosts"]) == 1, r
    h = r["hosts"][0]
    assert h["name"] == "implicit.example.test" and h["pref"] == 0, h
    assert "implicit" in h["flags"].split(), h
    assert h["addrs"] == ["fd00::21", "127.0.2.1"], h


def test_null_mx_is_permanent_5_1_10():
    r = one("mx", "nullmx.example.test")
    expect(r, "PERM", "NULL_MX")
    assert r["enhanced"] == "5.1.10", r
    assert "RFC 7505" in r["text"], r


def test_nxdomain_is_permanent_and_names_the_domain():
    r = one("mx", "nope.example.test")
    expect(r, "PERM", "NXDOMAIN")
    assert r["enhanced"] == "5.4.4", r
    assert r["text"].startswith("name=nope.example.test type=MX:"), r


def test_nodata_txt_and_mx_without_address():
    expect(one("txt", "a.example.test"), "PERM", "NODATA")
    r = one("mx", "nomail.example.test")
    expect(r, "PERM", "NO_ADDRESS")
    assert r["unresolved"] == 1, r


def test_mx_host_without_address_is_left_out():
    r = one("mx", "halfmx.example.test")
    expect(r, "OK")
    assert [h["name"] for h in r["hosts"]] == ["a.example.test"], r
    assert r["unresolved"] == 1, r


def test_a_and_aaaa_follow_inet_protocols():
    assert one("addr", "both.example.test")["hosts"][0]["addrs"] == ["fd00::31", "127.0.3.1"]
    assert one("addr", "both.example.test", inet_protocols="ipv4")["hosts"][0]["addrs"] == \
        ["127.0.3.1"]
    assert one("addr", "both.example.test", inet_protocols="ipv6")["hosts"][0]["addrs"] == \
        ["fd00::31"]


def test_cname_chain_in_the_answer():
    r = one("addr", "alias.example.test")
    expect(r, "OK")
    assert r["hosts"][0]["addrs"] == ["fd00::31", "127.0.3.1"], r
    assert "cname" in r["hosts"][0]["flags"].split(), r


def test_cname_chain_by_asking_again():
    # NSD is authoritative and does not chase an alias into another zone: the resolver asks for
    # the chain's end itself.
    r = one("addr", "crossalias.example.test", dns_servers="127.0.0.1:%d" % W.nsd.port,
            inet_protocols="ipv4")
    expect(r, "OK")
    assert r["hosts"][0]["addrs"] == ["127.0.6.1"], r
    assert "cname" in r["hosts"][0]["flags"].split(), r


def test_mx_target_cname_and_ip_literal_tolerated():
    r = one("mx", "cnamemx.example.test")
    expect(r, "OK")
    h = r["hosts"][0]
    assert h["name"] == "mxalias.example.test" and "cname" in h["flags"].split(), h
    assert h["addrs"] == ["127.0.1.1"], h
    r = one("mx", "literalmx.example.test")
    expect(r, "OK")
    h = r["hosts"][0]
    assert h["name"] == "127.0.4.4" and "literal" in h["flags"].split(), h
    assert h["addrs"] == ["127.0.4.4"], h


def test_txt_strings_joined():
    r = one("txt", "txt.example.test")
    expect(r, "OK")
    assert [x["data"] for x in r["records"]] == ["v=spf1 -all"], r
    assert r["ad"] is False


def test_tlsa_with_and_without_ad():
    r = one("tlsa", "_25._tcp.mx.dnssec.test")
    expect(r, "OK")
    assert r["ad"] is True, "validated by unbound: %s" % r
    rec = r["records"][0]
    assert (rec["usage"], rec["selector"], rec["mtype"], rec["hex"]) == (3, 1, 1, TLSA_HEX), rec
    r = one("tlsa", "_25._tcp.a.example.test")
    expect(r, "OK")
    assert r["ad"] is False, "an unsigned zone: %s" % r


def test_truncated_answer_retried_over_tcp_with_reuse():
    q = W.dnsq()
    try:
        r = q.lookup("txt", "big.example.test")
        expect(r, "OK")
        assert len(r["records"]) == TXT_BIG_COUNT, len(r["records"])
        assert sorted(x["data"][:3] for x in r["records"]) == \
            ["%03d" % i for i in range(TXT_BIG_COUNT)]
        r = q.lookup("txt", "big.example.test")   # cached: no query at all
        q.send("txt BIG.example.test.")           # same name: cached too
        st = q.stats()
        assert st["attempts_tcp"] == 1 and st["tcp_connects"] == 1, st
    finally:
        q.close()
    # Two different large answers on one connection (and no cache): one connect.
    q = W.dnsq(dns_cache_max=0)
    try:
        a, b = q.start("txt", "big.example.test"), q.start("txt", "big.example.test")
        expect(q.wait(a), "OK")
        expect(q.wait(b), "OK")
        expect(q.lookup("txt", "big.example.test"), "OK")
        st = q.stats()
        assert st["attempts_tcp"] == 2, st
        assert st["tcp_connects"] == 1, "the connection was not reused: %s" % st
    finally:
        q.close()


def test_failover_when_the_first_server_does_not_answer():
    silent = SilentServer()
    try:
        t0 = time.monotonic()
        q = W.dnsq(dns_servers="127.0.0.1:%d, 127.0.0.1:%d" % (silent.port, W.unbound.port),
                   dns_timeout=1, dns_attempts=1)
        try:
            r = q.lookup("addr", "a.example.test")
            elapsed = time.monotonic() - t0
            expect(r, "OK")
            assert r["hosts"][0]["addrs"] == ["127.0.1.1"], r
            st = q.stats()
            assert st["timeouts"] >= 1, st
            assert silent.received() >= 1, "the first server was not tried"
            assert 0.9 <= elapsed < 5, elapsed
        finally:
            q.close()
        # No server answers at all: a temporary failure, within attempts x servers x timeout.
        r = one("mx", "example.test", dns_servers="127.0.0.1:%d" % silent.port, dns_timeout=1,
                dns_attempts=2)
        expect(r, "TEMP", "TIMEOUT")
        assert r["enhanced"] == "4.4.3", r
        # A port nobody listens on: ICMP port unreachable, the next server at once.
        closed = SilentServer()
        closed_port = closed.port
        closed.stop()
        t0 = time.monotonic()
        r = one("addr", "b.example.test", dns_servers="127.0.0.1:%d, 127.0.0.1:%d"
                % (closed_port, W.unbound.port), dns_timeout=5, inet_protocols="ipv4")
        expect(r, "OK")
        assert time.monotonic() - t0 < 3, "refused port not skipped quickly"
    finally:
        silent.stop()


def test_servfail_and_refused_are_temporary():
    r = one("addr", "host.bogus.test", dns_attempts=1)
    expect(r, "TEMP", "SERVFAIL")
    assert r["enhanced"] == "4.4.3", r
    r = one("addr", "host.unknown-zone.example", dns_servers="127.0.0.1:%d" % W.nsd.port,
            dns_attempts=1, inet_protocols="ipv4")
    expect(r, "TEMP", "REFUSED")


def test_ptr():
    r = one("ptr", "127.0.0.10")
    expect(r, "OK")
    assert [h["name"] for h in r["hosts"]] == ["ptr-target.example.test"], r


def test_cache_hits_and_ttl_expiry():
    q = W.dnsq()
    try:
        before = W.unbound.queries("short.example.test", "A")
        expect(q.lookup("addr", "short.example.test"), "OK")
        expect(q.lookup("addr", "short.example.test"), "OK")
        assert W.unbound.queries("short.example.test", "A", before + 1) == before + 1, \
            "not cached"
        st = q.stats()
        assert st["cache_hits"] >= 2, st   # A and AAAA (the AAAA NODATA is cached too)
        time.sleep(SHORT_TTL + 0.3)        # the record's TTL
        expect(q.lookup("addr", "short.example.test"), "OK")
        assert W.unbound.queries("short.example.test", "A", before + 2) == before + 2, \
            "TTL not honoured"
    finally:
        q.close()


def test_negative_caching_for_the_soa_minimum():
    q = W.dnsq()
    try:
        # Unbound may still hold this answer from an earlier check with little of its TTL left,
        # which our cache would then honour: let it run out first.
        time.sleep(SHORT_TTL + 0.3)
        before = W.unbound.queries("gone.example.test", "MX")
        expect(q.lookup("mx", "gone.example.test"), "PERM", "NXDOMAIN")
        expect(q.lookup("mx", "gone.example.test"), "PERM", "NXDOMAIN")
        assert W.unbound.queries("gone.example.test", "MX", before + 1) == before + 1, \
            "NXDOMAIN not cached"
        time.sleep(SHORT_TTL + 0.3)        # the SOA minimum (RFC 2308 5)
        expect(q.lookup("mx", "gone.example.test"), "PERM", "NXDOMAIN")
        assert W.unbound.queries("gone.example.test", "MX", before + 2) == before + 2
    finally:
        q.close()


def test_a_hundred_lookups_for_a_new_domain_make_one_query():
    q = W.dnsq()
    try:
        before = (W.unbound.queries("new.example.test", "MX"),
                  W.unbound.queries("a.example.test", "A"))
        ids = q.start_many("mx", "new.example.test", 100)
        for i in ids:
            r = q.wait(i)
            expect(r, "OK")
            assert [h["name"] for h in r["hosts"]] == ["a.example.test", "b.example.test"], r
        mx = W.unbound.queries("new.example.test", "MX", before[0] + 1) - before[0]
        a = W.unbound.queries("a.example.test", "A", before[1] + 1) - before[1]
        st = q.stats()
        print("     100 lookups: unbound saw %d MX and %d A queries; coalesced %d lookups"
              % (mx, a, st["lookups_coalesced"]))
        assert mx == 1, "MX queries: %d" % mx
        assert a == 1, "A queries for the MX host: %d" % a
        assert st["lookups_coalesced"] == 99, st
    finally:
        q.close()


def test_fifty_domains_with_one_mx_host_make_one_address_query():
    q = W.dnsq(inet_protocols="ipv4")
    try:
        before = W.unbound.queries("shared.example.test", "A")
        ids = q.start_many("mx", ["co%d.example.test" % i for i in range(50)])
        for i in ids:
            r = q.wait(i)
            expect(r, "OK")
            assert r["hosts"][0]["addrs"] == ["127.0.9.1"], r
        a = W.unbound.queries("shared.example.test", "A", before + 1) - before
        st = q.stats()
        print("     50 domains, one MX host: unbound saw %d A queries; %d queries joined"
              % (a, st["queries_coalesced"]))
        assert a == 1, "A queries for the shared host: %d" % a
        assert st["queries_coalesced"] == 49, st
    finally:
        q.close()


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_cancelled_lookups_leave_nothing_behind():
    silent = SilentServer()
    try:
        q = W.dnsq(dns_servers="127.0.0.1:%d" % silent.port, dns_timeout=5)
        try:
            fds = open_fds(q.proc.pid)
            ids = [q.start("mx", "slow%d.example.test" % i) for i in range(20)]
            ids.append(q.start("mx", "slow0.example.test"))   # joins the first
            st = q.stats()
            assert st["queries_active"] == 20 and st["lookups_active"] == 20, st
            assert open_fds(q.proc.pid) == fds + 20, "one socket per query"
            for i in ids:
                q.cancel(i)
            time.sleep(0.2)
            st = q.stats()
            assert st["queries_active"] == 0 and st["lookups_active"] == 0, st
            assert open_fds(q.proc.pid) == fds, "sockets left open"
            r = q.lookup("addr", "127.0.0.1")   # the loop still works
            expect(r, "OK")
        finally:
            q.close()
    finally:
        silent.stop()


def test_one_libcrypto_in_the_process():
    """The daemon, which links the resolver (ldns, static) and BoringSSL's libcrypto: one
    libcrypto mapped, and it is BoringSSL's."""
    ldd = subprocess.run(["ldd", os.path.join(build_dir(), "ringmta")], capture_output=True,
                         text=True).stdout
    assert "libssl.so.3" not in ldd and "libcrypto.so.3" not in ldd, ldd
    d = Daemon(shards=1, extra={"dns_servers": "127.0.0.1:%d" % W.unbound.port})
    try:
        d.start()
        with open("/proc/%d/maps" % d.proc.pid) as f:
            libs = sorted({line.split()[-1] for line in f if re.search(r"libcrypto", line)})
        print("     libcrypto mapped: %s" % libs)
        assert len(libs) == 1, libs
        assert "/android/" in libs[0], libs
        assert d.stop() == 0
    finally:
        d.cleanup()


def main():
    need("nsd", "unbound", "ldns-keygen", "ldns-signzone",
         os.path.join(build_dir(), "tests", "tools", "dnsq"))
    global W
    W = World()
    res = Results()
    try:
        only = os.environ.get("DNS_TEST_ONLY", "")   # a substring, to run a few checks
        for name, fn in sorted(globals().items()):
            if name.startswith("test_") and callable(fn) and only in name:
                res.run(name, fn)
    finally:
        W.stop()
    res.finish()


if __name__ == "__main__":
    main()
