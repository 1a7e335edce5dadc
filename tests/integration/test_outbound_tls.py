"""Outbound STARTTLS (issue 11, "What it must show" 1): smtp_tls_security_level may, encrypt and
verify, against receivers that are ringmta daemons themselves (real STARTTLS over loopback): one
with a self-signed certificate, one without TLS. Routes are transport_maps entries to
[127.0.0.1]:port, so no DNS is asked.

  may      delivers over TLS; the delivery line names the protocol and cipher (tls="TLSv1.3 with
           cipher ..."), the receiver's Received: says ESMTPS.
  encrypt  to a receiver without STARTTLS: deferred, and nothing reaches the receiver.
  verify   to the self-signed receiver: the handshake fails on the certificate, deferred; to
           receivers signed by a private CA (smtp_tls_ca_file): delivered when the certificate
           names the next hop, deferred when it names another host.
  per destination (destination_policy_file tls=...): over the global level, both ways.

Run by `make test` (meson test suite 'integration'); argument: the build directory.
"""
import os
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Results, free_port, sample, scrape  # noqa


def receiver(tls):
    d = Daemon(shards=1, extra={"local_domains": "tls.test", "myhostname": "rx.tls.test"})
    if tls:
        crt, key = os.path.join(d.dir, "rx.pem"), os.path.join(d.dir, "rx.key")
        subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "3", "-subj", "/CN=rx.tls.test"], check=True,
                       capture_output=True)
        d.options.update({"tls_cert_file": crt, "tls_key_file": key})
    return d.start()


def sender(to_port, level, **extra):
    d = Daemon(shards=1, extra={"local_domains": "sender.test", "relay_networks": "127.0.0.0/8",
                                "smtp_tls_security_level": level})
    d.mport = free_port()
    d.options["metrics_listen"] = "127.0.0.1:%d" % d.mport
    d.options.update(extra)
    transport = os.path.join(d.dir, "transport")
    with open(transport, "w") as f:
        f.write("tls.test [127.0.0.1]:%d\n" % to_port)
    d.options["transport_maps"] = transport
    return d.start()


def policy(d, name, text):
    path = os.path.join(d.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def send(d, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("alice@sender.test", [rcpt], b"Subject: %s\r\n\r\nbody\r\n" % subject)


def delivery_line(d, rcpt, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in d.read_log().splitlines():
            if "event=delivery" in line and "to=<%s>" % rcpt in line:
                return line
        time.sleep(0.05)
    raise AssertionError("no delivery line for %s:\n%s" % (rcpt, d.read_log()))


def outbound_tls_metric(d, name, want, timeout=5.0):
    """Waits for ringmta_tls_<name>_total{direction="outbound"} to reach want (each shard
    publishes once a second)."""
    series = 'ringmta_tls_%s_total{direction="outbound"}' % name
    deadline = time.monotonic() + timeout
    while True:
        got = sample(scrape(d.mport), series)
        if got == want or time.monotonic() > deadline:
            assert got == want, (series, got, want)
            return
        time.sleep(0.2)


def test_may_delivers_over_tls(rx):
    tx = sender(rx.port, "may", connection_reuse_limit="1")
    try:
        send(tx, "bob@tls.test", b"may")
        files = rx.wait_for_files("bob", 1)
        assert len(files) == 1, rx.read_log()
        with open(files[0], "rb") as f:
            head = f.read().split(b"\r\n\r\n", 1)[0].decode()
        assert "with ESMTPS id" in head, head
        line = delivery_line(tx, "bob@tls.test")
        assert "status=delivered" in line, line
        assert re.search(r'tls="TLSv1\.3 with cipher TLS_[A-Z0-9_]+ ', line), line
        log = tx.read_log()
        assert re.search(r"event=smtp_tls shard=0 relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+ "
                         r"verified=no resumed=no", log), log
        # The next connection to the same receiver resumes the session (the shard's cache).
        send(tx, "carol@tls.test", b"again")
        assert len(rx.wait_for_files("carol", 1)) == 1
        assert "status=delivered" in delivery_line(tx, "carol@tls.test")
        assert re.search(r"event=smtp_tls .* resumed=yes", tx.read_log()), tx.read_log()
        outbound_tls_metric(tx, "handshakes", 2)
        outbound_tls_metric(tx, "handshake_failures", 0)
        assert tx.stop() == 0
    finally:
        tx.cleanup()


def test_encrypt_defers_without_starttls(plain):
    tx = sender(plain.port, "encrypt")
    try:
        send(tx, "dave@tls.test", b"encrypt")
        line = delivery_line(tx, "dave@tls.test")
        assert "status=deferred" in line, line
        assert "TLS is required, but was not offered by the server" in line, line
        time.sleep(0.5)
        assert plain.mailbox_files("dave") == []
        assert "event=accepted" not in plain.read_log(), "the mail went in clear"
        assert tx.stop() == 0
    finally:
        tx.cleanup()


def test_verify_fails_on_a_self_signed_receiver(rx):
    tx = sender(rx.port, "verify")
    try:
        send(tx, "erin@tls.test", b"verify")
        line = delivery_line(tx, "erin@tls.test")
        assert "status=deferred" in line, line
        assert "certificate verify failed" in line, line
        assert "event=smtp_tls_failed" in tx.read_log(), tx.read_log()
        outbound_tls_metric(tx, "handshake_failures", 1)
        outbound_tls_metric(tx, "handshakes", 0)
        time.sleep(0.5)
        assert rx.mailbox_files("erin") == []
        assert tx.stop() == 0
    finally:
        tx.cleanup()


def ca_signed_receiver(ca_dir, name, san):
    """A receiver whose certificate a private CA (ca_dir/ca.pem) signed for subjectAltName san."""
    d = Daemon(shards=1, extra={"local_domains": "tls.test", "myhostname": "rx.tls.test"})
    key, csr, crt = (os.path.join(d.dir, name + x) for x in (".key", ".csr", ".pem"))
    ext = os.path.join(d.dir, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % san)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=" + name], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(ca_dir, "ca.pem"),
                    "-CAkey", os.path.join(ca_dir, "ca.key"), "-CAcreateserial", "-days", "3",
                    "-extfile", ext, "-out", crt], check=True, capture_output=True)
    d.options.update({"tls_cert_file": crt, "tls_key_file": key})
    return d.start()


def test_verify_succeeds_with_the_ca_and_the_name():
    # verify: the chain to a trusted CA (smtp_tls_ca_file here, the system store by default)
    # and the next hop's name; the route is [127.0.0.1], so the name is the address (an IP
    # subjectAltName, RFC 6125 / X509_VERIFY_PARAM_set1_ip).
    ca = Daemon(shards=1)   # only for its private directory
    subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(ca.dir, "ca.key"),
                    "-out", os.path.join(ca.dir, "ca.pem"), "-days", "3", "-subj", "/CN=test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign"], check=True, capture_output=True)
    good = ca_signed_receiver(ca.dir, "good", "IP:127.0.0.1")
    wrong = ca_signed_receiver(ca.dir, "wrong", "DNS:other.example")
    txs = []
    try:
        tx = sender(good.port, "verify", smtp_tls_ca_file=os.path.join(ca.dir, "ca.pem"))
        txs.append(tx)
        send(tx, "hana@tls.test", b"verified")
        line = delivery_line(tx, "hana@tls.test")
        assert "status=delivered" in line and 'tls="TLSv1.3 with cipher' in line, line
        assert re.search(r"event=smtp_tls .* verified=yes", tx.read_log()), tx.read_log()
        assert len(good.wait_for_files("hana", 1)) == 1
        tx = sender(wrong.port, "verify", smtp_tls_ca_file=os.path.join(ca.dir, "ca.pem"))
        txs.append(tx)
        send(tx, "ivan@tls.test", b"wrong name")
        line = delivery_line(tx, "ivan@tls.test")
        assert "status=deferred" in line and "certificate verify failed" in line, line
        time.sleep(0.5)
        assert wrong.mailbox_files("ivan") == [], "sent to a receiver of the wrong name"
        for t in txs:
            assert t.stop() == 0
        assert good.stop() == 0 and wrong.stop() == 0
    finally:
        for d in txs + [good, wrong, ca]:
            d.cleanup()


def test_the_destination_policy_sets_the_level(rx, plain):
    # Global none, tls=may for the destination: TLS all the same (the client context is built
    # because a policy line asks for it).
    tx = sender(rx.port, "none", destination_policy_file=policy(rx, "policy-may",
                                                                 "tls.test tls=may\n"))
    try:
        send(tx, "fred@tls.test", b"policy may")
        line = delivery_line(tx, "fred@tls.test")
        assert "status=delivered" in line and 'tls="TLSv1.3 with cipher' in line, line
        assert tx.stop() == 0
    finally:
        tx.cleanup()
    # Global may, tls=encrypt for the destination: a receiver without STARTTLS is deferred.
    tx = sender(plain.port, "may", destination_policy_file=policy(plain, "policy-encrypt",
                                                                  "tls.test tls=encrypt\n"))
    try:
        send(tx, "gina@tls.test", b"policy encrypt")
        line = delivery_line(tx, "gina@tls.test")
        assert "status=deferred" in line and "TLS is required" in line, line
        assert plain.mailbox_files("gina") == []
        assert tx.stop() == 0
    finally:
        tx.cleanup()


def main():
    res = Results()
    rx = receiver(tls=True)
    plain = receiver(tls=False)
    try:
        res.run("test_may_delivers_over_tls", test_may_delivers_over_tls, rx)
        res.run("test_encrypt_defers_without_starttls", test_encrypt_defers_without_starttls,
                plain)
        res.run("test_verify_fails_on_a_self_signed_receiver",
                test_verify_fails_on_a_self_signed_receiver, rx)
        res.run("test_verify_succeeds_with_the_ca_and_the_name",
                test_verify_succeeds_with_the_ca_and_the_name)
        res.run("test_the_destination_policy_sets_the_level",
                test_the_destination_policy_sets_the_level, rx, plain)
        assert rx.stop() == 0 and plain.stop() == 0
    finally:
        rx.cleanup()
        plain.cleanup()
    res.finish()


if __name__ == "__main__":
    main()
