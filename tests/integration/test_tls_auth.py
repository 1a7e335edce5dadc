"""TLS and AUTH on the wire (issue 11, "What it must show" 1 and 2): STARTTLS on the port-25
and submission listeners, implicit TLS on the smtps listener, AUTH on submission, relaying only
after AUTH, the SIGHUP reload of the certificates (with a connection open across it) and of the
AUTH users, Date:/Message-ID: on submission (RFC 6409 8), the TLS and AUTH metrics, and one
libcrypto in the running daemon.

Clients: openssl s_client -starttls smtp, Python's smtplib with ssl, swaks --tls --auth, and raw
sockets where the exact bytes matter (the STARTTLS injection). Certificates are made here with
the openssl command. Relayed mail goes to relayhost [127.0.0.1] on a closed port: it is only
deferred, and no DNS is asked.

Run by `make test` (meson test suite 'integration'); argument: the build directory.
"""
import base64
import email
import email.utils
import os
import pwd
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Results, build_dir, free_port, sample, scrape  # noqa

HOST = "mx.example.test"
USER = "alice@example.test"
PASSWORD = "correct horse"


def make_cert(d, name, cn, ec=True):
    key = os.path.join(d, name + ".key")
    crt = os.path.join(d, name + ".pem")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec else \
        ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", "-new"] + newkey + [
        "-nodes", "-keyout", key, "-out", crt, "-days", "3", "-subj", "/CN=" + cn,
        "-addext", "subjectAltName=DNS:" + cn], check=True, capture_output=True)
    return crt, key


def users_file(d):
    r = subprocess.run([os.path.join(build_dir(), "ringmta"), "passwd", USER], input=(PASSWORD + "\n").encode(), capture_output=True,
                       check=True)
    path = os.path.join(d, "auth_users")
    with open(path, "wb") as f:
        f.write(r.stdout)
    return path


class Tls:
    """A daemon with all three listeners, TLS and AUTH."""

    def __init__(self, shards=2):
        self.sub_port = free_port()
        self.smtps_port = free_port()
        self.metrics_port = free_port()
        self.d = Daemon(shards=shards)
        self.crt, self.key = make_cert(self.d.dir, "server", HOST)
        self.d.options.update({
            "submission_listen": "127.0.0.1:%d" % self.sub_port,
            "smtps_listen": "127.0.0.1:%d" % self.smtps_port,
            "tls_cert_file": self.crt,
            "tls_key_file": self.key,
            "auth_users_file": users_file(self.d.dir),
            "relayhost": "[127.0.0.1]:%d" % free_port(),
            "myhostname": HOST,
            "metrics_listen": "127.0.0.1:%d" % self.metrics_port,
        })
        self.port = self.d.port

    def start(self):
        self.d.start()
        return self


def no_verify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def trusting(crt):
    """Verifies the chain (smtplib names the host by its address: the name is not checked)."""
    ctx = ssl.create_default_context(cafile=crt)
    ctx.check_hostname = False
    return ctx


class Raw:
    """A line-level client over a plain socket that can switch to TLS."""

    def __init__(self, port, implicit=False, ctx=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if implicit:
            self.s = (ctx or no_verify()).wrap_socket(self.s, server_hostname=HOST)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed; had %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self):
        """A whole (multiline) reply: (code, [texts])."""
        texts = []
        while True:
            line = self.line()
            texts.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), texts

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()

    def starttls(self, ctx=None):
        code, _ = self.cmd("STARTTLS")
        assert code == 220, code
        assert self.buf == b""
        self.s = (ctx or no_verify()).wrap_socket(self.s, server_hostname=HOST)

    def quiet(self, seconds=1.0):
        """What arrives within seconds (b"" if nothing)."""
        self.s.settimeout(seconds)
        try:
            return self.s.recv(65536)
        except (socket.timeout, ssl.SSLError):
            return b""
        finally:
            self.s.settimeout(10)

    def close(self):
        self.s.close()


def wait_log(d, pattern, timeout=5.0):
    """The log once a line matches pattern (shards write their lines in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        log = d.read_log()
        if re.search(pattern, log) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def plain_auth(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def ehlo_keywords(r, name="client.example"):
    code, texts = r.cmd("EHLO " + name)
    assert code == 250, code
    return [t.split()[0].upper() for t in texts[1:]]


# ---- STARTTLS (RFC 3207) ----

def test_openssl_s_client_starttls_on_25(t):
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % t.port, "-servername", HOST, "-CAfile", t.crt,
                        "-verify_return_error", "-verify_hostname", HOST, "-quiet"],
                       input=b"EHLO client.example\r\nQUIT\r\n", capture_output=True,
                       timeout=20)
    out = p.stdout.decode(errors="replace")
    assert "221 " in out, (out, p.stderr)
    assert "STARTTLS" not in out, "STARTTLS is advertised only before TLS"
    assert "AUTH" not in out, "no AUTH on the port-25 listener"
    pattern = r"event=tls client=127\.0\.0\.1 resumed=no detail=\"TLSv1\.3 with cipher "
    log = wait_log(t.d, pattern)
    assert re.search(pattern, log), log


def test_smtplib_starttls_on_25_and_the_received_field(t):
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        s.starttls(context=trusting(t.crt))
        code, _ = s.ehlo("client.example")
        assert code == 250
        assert not s.has_extn("starttls")
        s.sendmail("sender@remote.example", ["tlsbob@example.test"],
                   b"Subject: over TLS\r\n\r\nbody\r\n")
    files = t.d.wait_for_files("tlsbob", 1)
    assert len(files) == 1
    with open(files[0], "rb") as f:
        head = f.read().split(b"\r\n\r\n", 1)[0].decode()
    # RFC 3848: ESMTPS; the comment names the version and the cipher.
    assert re.search(r"\(using TLSv1\.3 with cipher TLS_[A-Z0-9_]+ \(", head), head
    assert "with ESMTPS id" in head, head


def test_starttls_with_a_parameter_is_501(t):
    r = Raw(t.port)
    r.reply()
    ehlo_keywords(r)
    assert r.cmd("STARTTLS now")[0] == 501
    r.close()


def test_starttls_inside_tls_is_503_and_not_advertised(t):
    r = Raw(t.port)
    r.reply()
    assert "STARTTLS" in ehlo_keywords(r)
    r.starttls()
    assert "STARTTLS" not in ehlo_keywords(r)
    assert r.cmd("STARTTLS")[0] == 503
    r.close()


def test_starttls_injection_is_dropped(t):
    # RFC 3207 4.2, CVE-2011-0411: commands pipelined behind STARTTLS in the same write were
    # sent in the clear; none of them may be answered or acted on inside TLS.
    r = Raw(t.port)
    r.reply()
    ehlo_keywords(r)
    r.s.sendall(b"STARTTLS\r\nEHLO evil.example\r\nMAIL FROM:<inject@evil.example>\r\n")
    code, _ = r.reply()
    assert code == 220
    assert r.buf == b"", "an answer to an injected command came in the clear: %r" % r.buf
    r.s = no_verify().wrap_socket(r.s, server_hostname=HOST)
    assert r.quiet(1.0) == b"", "an answer to an injected command came inside TLS"
    # Nothing injected took effect: the session has no EHLO, so MAIL is out of sequence, and
    # that is the only answer.
    code, texts = r.cmd("MAIL FROM:<a@example.test>")
    assert code == 503 and "EHLO" in texts[0].upper(), (code, texts)
    assert r.cmd("NOOP")[0] == 250
    assert r.buf == b"" and r.quiet(0.3) == b""
    r.close()


def test_starttls_resets_the_session(t):
    r = Raw(t.sub_port)
    r.reply()
    ehlo_keywords(r, "before.example")
    r.starttls()
    # RFC 3207 4.2: the EHLO before TLS is forgotten; EHLO is required again.
    assert r.cmd("MAIL FROM:<a@example.test>")[0] == 503
    ehlo_keywords(r, "after.example")
    r.close()


def test_implicit_tls_on_smtps(t):
    with smtplib.SMTP_SSL("127.0.0.1", t.smtps_port, timeout=10, context=trusting(t.crt)) as s:
        code, _ = s.ehlo("client.example")
        assert code == 250
        assert not s.has_extn("starttls")
        assert "PLAIN" in s.esmtp_features.get("auth", "").upper()
        s.login(USER, PASSWORD)
        s.sendmail(USER, ["smtpsbob@example.test"], b"Subject: 465\r\n\r\nbody\r\n")
    files = t.d.wait_for_files("smtpsbob", 1)
    with open(files[0], "rb") as f:
        head = f.read().split(b"\r\n\r\n", 1)[0].decode()
    assert "with ESMTPSA id" in head, head


def test_implicit_tls_with_clear_text_fails_alone(t):
    # A client speaking clear text to 465 fails its handshake; nobody else is touched.
    s = socket.create_connection(("127.0.0.1", t.smtps_port), timeout=10)
    s.sendall(b"EHLO client.example\r\n")
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    assert b"220" not in data, "no greeting in the clear on implicit TLS"
    pattern = r"event=tls_failed client=127\.0\.0\.1 reason=\"[^\"]+\""
    assert re.search(pattern, wait_log(t.d, pattern))
    with smtplib.SMTP_SSL("127.0.0.1", t.smtps_port, timeout=10, context=no_verify()) as c:
        assert c.noop()[0] == 250


# ---- AUTH (RFC 4954) and relaying ----


def test_metrics_count_handshakes_and_auth(t):
    # ringmta_tls_handshakes_total, ..._failures_total and ringmta_auth_total (issue 12) move
    # by what this test does; the other tests' sessions only add to the counters before it.
    names = ('ringmta_tls_handshakes_total{direction="inbound"}',
             'ringmta_tls_handshake_failures_total{direction="inbound"}',
             'ringmta_auth_total{result="ok"}', 'ringmta_auth_total{result="failed"}')
    def read():
        return [sample(scrape(t.metrics_port), n) for n in names]

    before = read()
    while True:   # settled: every shard has published what the tests before did
        time.sleep(1.2)
        again = read()
        if again == before:
            break
        before = again
    r = submission(t)
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, "wrong"))[0] == 535
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))[0] == 235
    r.close()
    s = socket.create_connection(("127.0.0.1", t.smtps_port), timeout=10)
    s.sendall(b"EHLO clear.example\r\n")   # not a ClientHello: the handshake fails
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    want = [b + 1 for b in before]
    deadline = time.monotonic() + 10   # every shard publishes once a second
    while True:
        got = read()
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == want, list(zip(names, before, got))

def test_submission_needs_tls_before_auth_and_mail(t):
    r = Raw(t.sub_port)
    r.reply()
    kw = ehlo_keywords(r)
    assert "STARTTLS" in kw and "AUTH" not in kw, kw
    code, texts = r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))
    assert code == 538 and texts[0].startswith("5.7.11"), (code, texts)
    code, texts = r.cmd("MAIL FROM:<%s>" % USER)
    assert code == 530 and texts[0].startswith("5.7.0"), (code, texts)
    r.close()


def submission(t):
    r = Raw(t.sub_port)
    r.reply()
    ehlo_keywords(r)
    r.starttls()
    assert "AUTH" in ehlo_keywords(r)
    return r


def test_auth_replies(t):
    r = submission(t)
    # MAIL before AUTH on submission: 530 (RFC 4954 6).
    assert r.cmd("MAIL FROM:<%s>" % USER)[0] == 530
    # Unknown mechanism: 504; malformed base64 in the initial response: 501.
    assert r.cmd("AUTH CRAM-MD5")[0] == 504
    assert r.cmd("AUTH PLAIN !!!notbase64")[0] == 501
    # A cancelled exchange: 501 (RFC 4954 4).
    assert r.cmd("AUTH PLAIN")[0] == 334
    assert r.cmd("*")[0] == 501
    # Malformed base64 in a continuation: 501.
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd("@@@@")[0] == 501
    # A wrong password and an unknown user: the same 535 5.7.8.
    c1, t1 = r.cmd("AUTH PLAIN " + plain_auth(USER, "wrong"))
    c2, t2 = r.cmd("AUTH PLAIN " + plain_auth("nobody@example.test", PASSWORD))
    assert c1 == c2 == 535 and t1 == t2 and t1[0].startswith("5.7.8"), (t1, t2)
    r.close()
    r = submission(t)
    # Success: 235; a second AUTH: 503.
    code, texts = r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))
    assert code == 235 and texts[0].startswith("2.7.0"), (code, texts)
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))[0] == 503
    # MAIL's AUTH= parameter is accepted (RFC 4954 5).
    assert r.cmd("MAIL FROM:<%s> AUTH=<>" % USER)[0] == 250
    r.close()
    r = submission(t)
    code, _ = r.cmd("AUTH LOGIN")
    assert code == 334
    assert r.cmd(base64.b64encode(USER.encode()).decode())[0] == 334
    assert r.cmd(base64.b64encode(PASSWORD.encode()).decode())[0] == 235
    r.close()
    log = wait_log(t.d, r"event=auth client=127\.0\.0\.1 user=alice@example\.test result=ok")
    assert "event=auth client=127.0.0.1 user=alice@example.test result=ok" in log, log
    assert PASSWORD not in log, "a password reached the log"


def test_auth_inside_a_transaction_is_503(t):
    r = submission(t)
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))[0] == 235
    assert r.cmd("MAIL FROM:<%s>" % USER)[0] == 250
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))[0] == 503
    r.close()


def test_three_failures_close_with_421(t):
    # Each 535 waits longer (SMTPD_AUTH_FAIL_DELAY_MS times the failures so far), the third
    # one ends the session with 421: guessing is slow and short.
    r = submission(t)
    waits = []
    for i in range(3):
        start = time.monotonic()
        code, _ = r.cmd("AUTH PLAIN " + plain_auth(USER, "bad"))
        waits.append(time.monotonic() - start)
        assert code == 535, (i, code)
    assert waits[0] >= 0.45 and waits[1] >= 0.95 and waits[2] >= 1.45, waits
    assert r.reply()[0] == 421
    try:
        rest = r.s.recv(100)
    except (ssl.SSLError, OSError):
        rest = b""
    assert rest == b"", rest
    r.close()


def test_relay_only_after_auth(t):
    # Port 25: no relay for a client outside relay_networks (RFC 5321 3.9 / never an open relay).
    r = Raw(t.port)
    r.reply()
    ehlo_keywords(r)
    r.starttls()
    ehlo_keywords(r)
    assert r.cmd("MAIL FROM:<%s>" % USER)[0] == 250
    assert r.cmd("RCPT TO:<carol@remote.example>")[0] == 554
    r.close()
    # Submission after a failed AUTH: still not authenticated, MAIL is refused.
    r = submission(t)
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, "wrong"))[0] == 535
    assert r.cmd("MAIL FROM:<%s>" % USER)[0] == 530
    # ... and after the good one, relaying is allowed.
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))[0] == 235
    assert r.cmd("MAIL FROM:<%s>" % USER)[0] == 250
    assert r.cmd("RCPT TO:<carol@remote.example>")[0] == 250
    r.close()


def test_submission_sends_only_as_the_user(t):
    # submission_sender_check (default yes): MAIL FROM is the authenticated user or <>.
    r = submission(t)
    assert r.cmd("AUTH PLAIN " + plain_auth(USER, PASSWORD))[0] == 235
    code, texts = r.cmd("MAIL FROM:<bob@example.test>")
    assert code == 553 and texts[0].startswith("5.7.1"), (code, texts)
    assert r.cmd("MAIL FROM:<alice@EXAMPLE.test>")[0] == 250
    assert r.cmd("RSET")[0] == 250
    assert r.cmd("MAIL FROM:<>")[0] == 250
    r.close()


def test_smtplib_submission_relays(t):
    with smtplib.SMTP("127.0.0.1", t.sub_port, timeout=10) as s:
        s.starttls(context=trusting(t.crt))
        s.login(USER, PASSWORD)
        refused = s.sendmail(USER, ["dave@remote.example"], b"Subject: relay\r\n\r\nbody\r\n")
        assert refused == {}


def header_of(path):
    with open(path, "rb") as f:
        return email.message_from_bytes(f.read().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")


def test_rfc6409_8_submission_adds_date_and_message_id(t):
    # 587 and 465 are MSAs: Date: and Message-ID: are added when missing (RFC 6409 8.2, 8.3),
    # after the client's fields, and left alone when present; port 25 adds nothing. The
    # long header section of the third message spans many reads and TLS records.
    many = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 60) for i in range(600))
    with smtplib.SMTP("127.0.0.1", t.sub_port, timeout=10) as s:
        s.starttls(context=trusting(t.crt))
        s.login(USER, PASSWORD)
        s.sendmail(USER, ["msa1@example.test"], b"Subject: bare\r\n\r\nbody\r\n")
        s.sendmail(USER, ["msa3@example.test"], b"Subject: long\r\n" + many + b"\r\nbody\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", t.smtps_port, timeout=10, context=no_verify()) as s:
        s.login(USER, PASSWORD)
        s.sendmail(USER, ["msa2@example.test"],
                   b"Subject: dated\r\nDate: Tue, 30 Apr 2024 01:02:03 +0200\r\n"
                   b"Message-ID: <mine@example.test>\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", t.port, timeout=10) as s:
        s.sendmail("s@remote.example", ["msa4@example.test"], b"Subject: mx\r\n\r\nbody\r\n")
    for user in ("msa1", "msa3"):
        files = t.d.wait_for_files(user, 1)
        assert len(files) == 1, user
        h = header_of(files[0])
        assert len(h.get_all("Date")) == 1 and len(h.get_all("Message-ID")) == 1, h.items()
        assert email.utils.parsedate_to_datetime(h["Date"]) is not None
        assert re.fullmatch(r"<\d{14}\.[0-9A-F]{16}@mx\.example\.test>", h["Message-ID"]), h
        keys = [k for k, _ in h.items()]
        assert keys[-2:] == ["Date", "Message-ID"], keys   # after the client's own fields
        with open(files[0], "rb") as f:
            assert f.read().endswith(b"\r\n\r\nbody\r\n")
    assert len(header_of(t.d.wait_for_files("msa3", 1)[0]).get_all("X-Filler-00599")) == 1
    h = header_of(t.d.wait_for_files("msa2", 1)[0])
    assert h.get_all("Date") == ["Tue, 30 Apr 2024 01:02:03 +0200"], h.items()
    assert h.get_all("Message-ID") == ["<mine@example.test>"], h.items()
    h = header_of(t.d.wait_for_files("msa4", 1)[0])
    assert h.get_all("Date") is None and h.get_all("Message-ID") is None, h.items()


def test_swaks_tls_auth(t):
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % t.sub_port, "--tls",
                        "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                        "--from", USER, "--to", "swaksbob@example.test", "--helo",
                        "client.example"], capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out
    assert "235 2.7.0" in out and "250 2.0.0 Ok: queued" in out, out
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % t.sub_port, "--tls",
                        "--auth", "LOGIN", "--auth-user", USER, "--auth-password", "nope",
                        "--from", USER, "--to", "swaksbob@example.test"],
                       capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode != 0 and "535 5.7.8" in out, out
    files = t.d.wait_for_files("swaksbob", 1)
    with open(files[0], "rb") as f:
        assert b"with ESMTPSA id" in f.read()


# ---- the process ----

def test_one_libcrypto_mapped(t):
    with open("/proc/%d/maps" % t.d.proc.pid) as f:
        maps = f.read()
    paths = {line.split()[-1] for line in maps.splitlines() if len(line.split()) >= 6}
    crypto = sorted(p for p in paths if re.search(r"/libcrypto[.-]", p))
    libssl = sorted(p for p in paths if re.search(r"/libssl[.-]", p))
    assert len(crypto) == 1, crypto
    assert len(libssl) == 1, libssl
    assert "android" in crypto[0] and "android" in libssl[0], (crypto, libssl)


def peer_cn(port, ctx=None):
    r = Raw(port)
    r.reply()
    ehlo_keywords(r)
    r.starttls(ctx)
    cert = r.s.getpeercert(binary_form=True)
    r.close()
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=cert,
                       capture_output=True, check=True)
    return p.stdout.decode().strip()


def test_sighup_reloads_certificates_with_a_connection_open():
    t = Tls(shards=1).start()
    try:
        assert HOST in peer_cn(t.port)
        # A connection in TLS with the first certificate, left open across the reload.
        old = Raw(t.port)
        old.reply()
        ehlo_keywords(old)
        old.starttls()
        ehlo_keywords(old)
        crt2, key2 = make_cert(t.d.dir, "second", "second.example.test", ec=False)
        if os.geteuid() == 0:
            # The reload reads the files as mail_owner (root was given up after start-up).
            owner = pwd.getpwnam(t.d.options.get("mail_owner", "ringmta"))
            os.chown(key2, owner.pw_uid, owner.pw_gid)
        os.replace(crt2, t.crt)
        os.replace(key2, t.key)
        t.d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "event=tls_reload result=ok" not in t.d.read_log():
            assert time.monotonic() < deadline, t.d.read_log()
            time.sleep(0.05)
        assert "second.example.test" in peer_cn(t.port), "new handshakes use the new pair"
        # The open connection goes on with its old context and delivers.
        assert old.cmd("MAIL FROM:<a@remote.example>")[0] == 250
        assert old.cmd("RCPT TO:<hupbob@example.test>")[0] == 250
        assert old.cmd("DATA")[0] == 354
        assert old.cmd("Subject: across SIGHUP\r\n\r\nbody\r\n.")[0] == 250
        assert old.cmd("QUIT")[0] == 221
        old.close()
        assert len(t.d.wait_for_files("hupbob", 1)) == 1
        # A reload that cannot read its files keeps the context it has.
        with open(t.key, "w") as f:
            f.write("not a key\n")
        t.d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "event=tls_reload result=failed" not in t.d.read_log():
            assert time.monotonic() < deadline, t.d.read_log()
            time.sleep(0.05)
        assert "second.example.test" in peer_cn(t.port)
        assert t.d.stop() == 0
    finally:
        t.d.cleanup()


def auth_code(t, user, password):
    r = submission(t)
    code = r.cmd("AUTH PLAIN " + plain_auth(user, password))[0]
    r.close()
    return code


def test_sighup_reloads_the_auth_users():
    # SIGHUP reads auth_users_file again (as Dovecot's passwd-file is re-read): a user added
    # can log in, a user removed cannot; a file that does not load keeps the users in force.
    t = Tls(shards=1).start()
    try:
        path = t.d.options["auth_users_file"]
        assert auth_code(t, USER, PASSWORD) == 235
        r = subprocess.run([os.path.join(build_dir(), "ringmta"), "passwd", "bob@example.test"],
                           input=b"bob's password\n", capture_output=True, check=True)
        tmp = path + ".new"
        with open(tmp, "wb") as f:
            f.write(r.stdout)   # bob only: alice is removed
        if os.geteuid() == 0:
            owner = pwd.getpwnam(t.d.options.get("mail_owner", "ringmta"))
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        os.replace(tmp, path)
        t.d.proc.send_signal(signal.SIGHUP)
        log = wait_log(t.d, r"event=auth_reload result=ok users=1")
        assert "event=auth_reload result=ok users=1" in log, log
        assert auth_code(t, "bob@example.test", "bob's password") == 235
        assert auth_code(t, USER, PASSWORD) == 535
        with open(path, "a") as f:
            f.write("broken line without a hash\n")
        t.d.proc.send_signal(signal.SIGHUP)
        log = wait_log(t.d, r"event=auth_reload result=failed")
        assert "event=auth_reload result=failed" in log and path + ":2: " in log, log
        assert auth_code(t, "bob@example.test", "bob's password") == 235, "the old users stay"
        assert t.d.stop() == 0
    finally:
        t.d.cleanup()


def main():
    res = Results()
    t = Tls().start()
    try:
        for name, fn in sorted(globals().items()):
            if name.startswith("test_") and fn.__code__.co_argcount == 1:
                res.run(name, fn, t)
        assert t.d.stop() == 0
    finally:
        t.d.cleanup()
    res.run("test_sighup_reloads_certificates_with_a_connection_open",
            test_sighup_reloads_certificates_with_a_connection_open)
    res.run("test_sighup_reloads_the_auth_users", test_sighup_reloads_the_auth_users)
    res.finish()


if __name__ == "__main__":
    main()
