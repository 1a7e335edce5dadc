"""sendmail(1): `ringmta sendmail` and the `sendmail` and `mailq` names, against the real daemon
over its local_listen Unix socket, each message checked in the Maildir it was delivered to.

Run by `make test` (meson test suite 'integration'); argument: the build directory.
"""
import os
import re
import subprocess
import time

import harness
from harness import Daemon, Results

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 64, 65, 67, 75


def ringmta():
    return os.path.join(harness.build_dir(), "ringmta")


class Local:
    """A daemon with local_listen, and the configuration file sendmail reads (-C)."""

    def __init__(self, **extra):
        self.d = Daemon(shards=2, users=extra.pop("users", None), extra=extra)
        self.sock = os.path.join(self.d.dir, "run", "sendmail.sock")
        self.d.options["local_listen"] = self.sock
        # The daemon's own configuration as a file, for sendmail -C (and -bp, -q).
        self.conf = os.path.join(self.d.dir, "ringmta.conf")
        with open(self.conf, "w") as f:
            f.write("".join("%s = %s\n" % kv for kv in self.d.options.items()))
        self.d.start()

    def send(self, args, data, name=None):
        argv = [name or ringmta()] + ([] if name else ["sendmail"]) + ["-C", self.conf] + args
        return subprocess.run(argv, input=data, capture_output=True, timeout=30)

    def one(self, user, timeout=10.0):
        files = self.d.wait_for_files(user, 1, timeout)
        assert len(files) == 1, (user, files, self.d.read_log())
        with open(files[0], "rb") as f:
            return f.read()

    def close(self):
        self.d.cleanup()


def header_block(msg):
    return msg.split(b"\r\n\r\n", 1)[0]


def no_bare_newlines(msg):
    assert b"\n" not in msg.replace(b"\r\n", b""), "a bare LF in the delivered message"
    assert b"\r" not in msg.replace(b"\r\n", b""), "a bare CR in the delivered message"


def test_plain_message_gets_date_message_id_from():
    """RFC 5322 3.6: From: and Date: are required, Message-ID: should be there; sendmail adds
    them. The daemon logs the local user (SO_PEERCRED) as the client."""
    t = Local()
    try:
        r = t.send(["alice@localhost"], b"Subject: plain\n\nhello\nworld\n")
        assert r.returncode == 0, r.stderr
        msg = t.one("alice")
        h = header_block(msg)
        assert re.search(rb"\r\nFrom: (\"[^\"]*\" )?<root@mx\.example\.test>\r\n", h), h
        assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n", h), h
        assert re.search(rb"\r\nMessage-ID: <[^@>\s]+@mx\.example\.test>\r\n", h), h
        assert b"Return-Path: <root@mx.example.test>" in h
        # RFC 5321 4.4: the trace field names the local user, as Postfix's pickup does.
        assert re.search(rb"\r\nReceived: by mx\.example\.test \(ringmta, from user root\) "
                         rb"with ESMTP id [0-9A-F]{16}\r\n", h), h
        assert msg.endswith(b"\r\n\r\nhello\r\nworld\r\n"), msg
        no_bare_newlines(msg)
        log = t.d.wait_for_log(r"event=accepted .*client=local:root")
        assert re.search(r"event=accepted .*client=local:root", log), log
        assert "event=connect shard=0 client=local:root relay=yes" in log, log
    finally:
        t.close()


def test_existing_fields_are_kept_not_doubled():
    t = Local()
    try:
        src = (b"From: Carol <carol@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
               b"Message-ID: <fixed@example.org>\n\nbody\n")
        r = t.send(["alice@localhost"], src)
        assert r.returncode == 0, r.stderr
        h = header_block(t.one("alice"))
        assert h.count(b"\r\nFrom:") == 1 and b"From: Carol <carol@example.org>" in h, h
        assert h.count(b"\r\nDate:") == 1 and h.count(b"Message-ID:") == 1, h
        assert b"Message-ID: <fixed@example.org>" in h
    finally:
        t.close()


def test_t_takes_to_cc_bcc_and_removes_bcc():
    """-t: recipients from To:, Cc: and Bcc: (RFC 5322 3.4 address lists: display names,
    quoted strings, comments, groups, folded lines); Bcc: is removed (3.6.3)."""
    t = Local()
    try:
        src = (b"To: Alice Example <alice@localhost>, \"Bob, B.\" <bob@localhost> (friend)\n"
               b"Cc: team: carol@localhost, dave@localhost;\n"
               b"Bcc: eve@localhost,\n frank@localhost\n"
               b"Subject: extract\n\nhi\n")
        r = t.send(["-t", "grace@localhost"], src)
        assert r.returncode == 0, r.stderr
        for user in ["alice", "bob", "carol", "dave", "eve", "frank", "grace"]:
            msg = t.one(user)
            h = header_block(msg)
            assert b"Bcc" not in h and b"eve@" not in h and b"frank@" not in h, (user, h)
            assert b"To: Alice Example <alice@localhost>" in h, h
        log = t.d.wait_for_log("nrcpt=7")
        assert log.count("event=accepted") == 1 and "nrcpt=7" in log, log
    finally:
        t.close()


def test_bcc_is_removed_without_t_too():
    """RFC 5322 3.6.3: Bcc: is for the sender's eyes; its recipients are not told (no -t: the
    command line names the recipients, and the field still goes)."""
    t = Local()
    try:
        r = t.send(["alice@localhost"], b"To: alice@localhost\nBcc: secret@localhost\n\nx\n")
        assert r.returncode == 0, r.stderr
        h = header_block(t.one("alice"))
        assert b"Bcc" not in h and b"secret" not in h, h
        assert t.d.mailbox_files("secret") == []
    finally:
        t.close()


def test_t_without_recipients_or_with_a_broken_field_is_dataerr():
    t = Local()
    try:
        r = t.send(["-t"], b"Subject: nobody\n\nhi\n")
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
        r = t.send(["-t"], b"To: <alice@localhost\n\nhi\n")
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
        r = t.send(["-t"], b"To: \"alice@localhost\n\nhi\n")
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
        r = t.send([], b"Subject: x\n\nhi\n")
        assert r.returncode == EX_USAGE, (r.returncode, r.stderr)
        many = b"To: alice@localhost\n" + b"Bcc: bob@localhost\nX: y\n" * 1100 + b"\nhi\n"
        r = t.send(["-t"], many)
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)   # over 1000 recipients
        r = t.send(["-t"], b"To: alice@localhost\n" + b"Bcc: \nX: y\n" * 2100 + b"\nhi\n")
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)   # pieces, not a crash
        time.sleep(0.3)
        assert "event=accepted" not in t.d.read_log()
    finally:
        t.close()


def test_dot_line_ends_input_without_i_and_is_text_with_i():
    t = Local()
    try:
        r = t.send(["alice@localhost"], b"Subject: a\n\nbefore\n.\nafter\n")
        assert r.returncode == 0, r.stderr
        msg = t.one("alice")
        assert msg.endswith(b"\r\n\r\nbefore\r\n") and b"after" not in msg, msg
        for flag in ["-i", "-oi"]:
            r = t.send([flag, "bob@localhost"], b"Subject: b\n\nbefore\n.\nafter\n..two\n")
            assert r.returncode == 0, r.stderr
        files = t.d.wait_for_files("bob", 2)
        for path in files:
            with open(path, "rb") as f:
                msg = f.read()
            assert msg.endswith(b"\r\n\r\nbefore\r\n.\r\nafter\r\n..two\r\n"), msg
    finally:
        t.close()


def test_bare_lf_dot_cannot_end_the_message_or_smuggle_a_second_one():
    """RFC 5321 4.1.1.4 and 2.3.8: with -i, a "." line in any line-end form (LF, CRLF, a bare
    CR) is text, dot-stuffed on the way; the SMTP commands after it stay body text, so no
    second message is injected (SMTP smuggling)."""
    t = Local()
    try:
        evil = (b"Subject: smuggle\n\nline\n.\nMAIL FROM:<x@example.org>\nRCPT TO:<mallory@localhost>\n"
                b"DATA\ninjected\n.\r\nQUIT\r\n\r.\r\nlast\rline\n.\n")
        r = t.send(["-i", "alice@localhost"], evil)
        assert r.returncode == 0, r.stderr
        msg = t.one("alice")
        no_bare_newlines(msg)
        body = msg.split(b"\r\n\r\n", 1)[1]
        assert body == (b"line\r\n.\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<mallory@localhost>\r\n"
                        b"DATA\r\ninjected\r\n.\r\nQUIT\r\n\r\n.\r\nlast\r\nline\r\n.\r\n"), body
        time.sleep(0.5)
        assert t.d.mailbox_files("mallory") == []
        assert t.d.wait_for_log("event=accepted").count("event=accepted") == 1
    finally:
        t.close()


def test_f_sets_the_envelope_sender_and_null_sender():
    t = Local()
    try:
        r = t.send(["-f", "bounces@example.org", "alice@localhost"], b"Subject: f\n\nx\n")
        assert r.returncode == 0, r.stderr
        h = header_block(t.one("alice"))
        assert b"Return-Path: <bounces@example.org>" in h, h
        assert b"From: <bounces@example.org>" in h or b"<bounces@example.org>\r\n" in h, h
        r = t.send(["-f<>", "bob@localhost"], b"Subject: null\n\nx\n")
        assert r.returncode == 0, r.stderr
        h = header_block(t.one("bob"))
        assert b"Return-Path: <>" in h, h
        assert re.search(rb"\r\nFrom: .*<root@mx\.example\.test>\r\n", h), h
        r = t.send(["-f", "a\r\nRCPT TO:<x@y>", "bob@localhost"], b"x\n")
        assert r.returncode == EX_USAGE, (r.returncode, r.stderr)
    finally:
        t.close()


def test_F_sets_the_full_name_of_the_added_from():
    t = Local()
    try:
        r = t.send(["-F", "Cron \"Daemon\"\r\nBcc: x@y", "alice@localhost"], b"Subject: F\n\nx\n")
        assert r.returncode == 0, r.stderr
        h = header_block(t.one("alice"))
        assert b'\r\nFrom: "Cron \\"Daemon\\"  Bcc: x@y" <root@mx.example.test>\r\n' in h, h
    finally:
        t.close()


def test_bs_speaks_smtp_on_stdin_and_stdout():
    t = Local()
    try:
        dialog = (b"EHLO script.example\r\nMAIL FROM:<s@example.org>\r\n"
                  b"RCPT TO:<alice@localhost>\r\nDATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n")
        r = t.send(["-bs"], dialog)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"220 "), r.stdout
        assert b"250 2.0.0 Ok: queued as " in r.stdout and b"221" in r.stdout, r.stdout
        msg = t.one("alice")
        assert msg.endswith(b"\r\n\r\nvia -bs\r\n"), msg
    finally:
        t.close()


def test_daemon_down_is_tempfail():
    """Postfix's sendmail: EX_TEMPFAIL when the mail system cannot take the message now."""
    t = Local()
    try:
        t.d.stop()
        r = t.send(["alice@localhost"], b"Subject: down\n\nx\n")
        assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr)
        r = t.send(["-bs"], b"QUIT\r\n")
        assert r.returncode == EX_TEMPFAIL and r.stdout.startswith(b"421 "), r
        os.unlink(t.sock) if os.path.exists(t.sock) else None
        r = t.send(["alice@localhost"], b"Subject: gone\n\nx\n")
        assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr)
    finally:
        t.close()


def test_unknown_user_and_oversize_are_refused():
    t = Local(users=["alice"], max_message_size="1k")
    try:
        r = t.send(["nobody@localhost"], b"Subject: u\n\nx\n")
        assert r.returncode == EX_NOUSER, (r.returncode, r.stderr)
        r = t.send(["alice@localhost"], b"Subject: big\n\n" + (b"y" * 70 + b"\n") * 20)
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
        time.sleep(0.3)
        assert "event=accepted" not in t.d.read_log()
    finally:
        t.close()


def test_local_user_may_relay():
    """A local submission may relay (as Postfix's pickup): queued for a remote domain."""
    t = Local()
    try:
        r = t.send(["someone@remote.example.org"], b"Subject: out\n\nx\n")
        assert r.returncode == 0, r.stderr
        assert re.search(r"event=accepted .*client=local:root",
                         t.d.wait_for_log(r"event=accepted .*client=local:root"))
    finally:
        t.close()


def test_sendmail_and_mailq_names():
    """ringmta run as `sendmail` is sendmail(1); as `mailq` it is `ringmta queue list`."""
    t = Local()
    try:
        link = os.path.join(t.d.dir, "sendmail")
        os.symlink(os.path.abspath(ringmta()), link)
        r = t.send(["-t"], b"To: alice@localhost\nSubject: link\n\nx\n", name=link)
        assert r.returncode == 0, r.stderr
        t.one("alice")
    finally:
        t.close()


def queue_commands_exist():
    r = subprocess.run([ringmta(), "queue", "list"], capture_output=True, timeout=30)
    return not (r.returncode == 2 and b"usage" in r.stderr)


def test_bp_q_and_mailq_run_the_queue_commands():
    if not queue_commands_exist():
        print("skip: `ringmta queue` is not built in this tree (the queue control issue)")
        return
    t = Local()
    try:
        link = os.path.join(t.d.dir, "mailq")
        os.symlink(os.path.abspath(ringmta()), link)
        for argv in [[ringmta(), "sendmail", "-C", t.conf, "-bp"], [link, "-C", t.conf],
                     [ringmta(), "sendmail", "-C", t.conf, "-q"]]:
            r = subprocess.run(argv, capture_output=True, timeout=30)
            assert r.returncode == 0, (argv, r.returncode, r.stderr)
    finally:
        t.close()


if __name__ == "__main__":
    res = Results()
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            res.run(name, fn)
    res.finish()
