"""Delivery status notifications (RFC 3464, RFC 6522, RFC 3461) from the real daemon.

A recipient that expires (its mailbox is a full private tmpfs: ENOSPC, retried until
queue_lifetime) and one that fails for good (its mailbox is a symlink: ELOOP, bounced at once,
and nothing is written where the link points) each produce a DSN from <> that is delivered to
the local sender's Maildir and parses as multipart/report with Python's email package. No DSN
for a null reverse-path or NOTIFY=NEVER; a success DSN for NOTIFY=SUCCESS. Needs root (tmpfs);
skipped (77) otherwise.
"""
import email
import email.policy
import os
import re
import smtplib
import subprocess
import sys
import tempfile
import time

from harness import Daemon, Results, mount_full_mailbox

SKIP = 77


def parse(path):
    with open(path, "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.default)


def report_parts(msg):
    """The per-message fields and per-recipient field blocks of the delivery-status part."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = [dict(b.items()) for b in parts[1].get_payload()]
    return parts, blocks[0], blocks[1:]


def dsn_files(d, user, count, timeout=20):
    files = d.wait_for_files(user, count, timeout=timeout)
    return [f for f in files if parse(f)["From"] and "MAILER-DAEMON" in str(parse(f)["From"])]


def send(port, sender, to, body, rcpt_options=()):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("bounce.example")
        s.sendmail(sender, to, body, rcpt_options=list(rcpt_options))


BODY = b"Subject: please deliver\r\nMessage-ID: <orig-1@bounce.test>\r\n\r\nhello there\r\n"


def test_expiry_bounces_to_the_local_sender():
    d = Daemon(shards=1, extra={"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
                                "queue_lifetime": "3s"})
    box = mount_full_mailbox(d, "alice")
    if box is None:
        print("skip: cannot mount a tmpfs here")
        sys.exit(SKIP)
    try:
        d.start()
        send(d.port, "bob@localhost", ["alice@localhost"], BODY,
             ["ORCPT=rfc822;Alice+20Smith@localhost"])
        files = d.wait_for_files("bob", 1, timeout=20)
        assert len(files) == 1, d.read_log()
        msg = parse(files[0])
        assert "MAILER-DAEMON@mx.example.test" in str(msg["From"]), msg["From"]
        assert str(msg["To"]) == "bob@localhost", msg["To"]
        assert msg["Auto-Submitted"] == "auto-replied"
        parts, per_msg, rcpts = report_parts(msg)
        assert per_msg["Reporting-MTA"] == "dns; mx.example.test", per_msg
        assert "Arrival-Date" in per_msg
        assert len(rcpts) == 1, rcpts
        r = rcpts[0]
        assert r["Final-Recipient"] == "rfc822; alice@localhost", r
        assert r["Original-Recipient"] == "rfc822;Alice Smith@localhost", r
        assert r["Action"] == "failed", r
        assert r["Status"] == "4.4.7", r
        assert "Diagnostic-Code" in r and "Last-Attempt-Date" in r, r
        assert parts[2].get_content_type() == "message/rfc822", parts[2].get_content_type()
        assert b"hello there" in parts[2].as_bytes()
        log = d.wait_for_log(r"to=<alice@localhost> status=expired .* dsn=4\.4\.7")
        assert re.search(r"to=<alice@localhost> status=expired .* dsn=4\.4\.7", log), log
        assert " event=dsn " in log
        assert d.stop() == 0
        # Bounced for good: the restart does not try alice again, nor repeat the notice.
        d.start()
        time.sleep(2.5)
        assert len(d.mailbox_files("bob")) == 1
        assert d.stop() == 0
    finally:
        subprocess.run(["umount", box])
        d.cleanup()


def test_delay_warning_goes_once():
    """delay_warning_time: one "delayed" notice (RFC 3464 2.3.3), also across a restart."""
    d = Daemon(shards=1, extra={"minimal_backoff_time": "1s", "maximal_backoff_time": "1s",
                                "queue_lifetime": "1h", "delay_warning_time": "2s"})
    box = mount_full_mailbox(d, "alice")
    if box is None:
        print("skip: cannot mount a tmpfs here")
        sys.exit(SKIP)
    try:
        d.start()
        send(d.port, "bob@localhost", ["alice@localhost"], BODY)
        files = d.wait_for_files("bob", 1, timeout=15)
        assert len(files) == 1, d.read_log()
        parts, per_msg, rcpts = report_parts(parse(files[0]))
        assert rcpts[0]["Action"] == "delayed", rcpts
        assert rcpts[0]["Status"].startswith("4."), rcpts
        assert "Will-Retry-Until" in rcpts[0], rcpts
        assert parts[2].get_content_type() == "text/rfc822-headers"
        assert d.stop() == 0
        d.start()
        time.sleep(3.0)   # three more attempts, after a restart: no second warning
        assert len(d.mailbox_files("bob")) == 1, d.read_log()
        assert d.read_log().count("to=<alice@localhost> status=deferred") >= 4
        assert d.stop() == 0
    finally:
        subprocess.run(["umount", box])
        d.cleanup()


def test_permanent_failure_bounces_at_once_and_writes_nothing_outside():
    d = Daemon(shards=1)
    outside = tempfile.mkdtemp(prefix="ringmta-outside-")
    try:
        os.makedirs(d.maildir)
        os.symlink(outside, os.path.join(d.maildir, "carol"))
        d.start()
        t0 = time.monotonic()
        send(d.port, "bob@localhost", ["carol@localhost", "dave@localhost"], BODY)
        files = d.wait_for_files("bob", 1, timeout=10)
        assert len(files) == 1, d.read_log()
        assert time.monotonic() - t0 < 5, "not at once"
        parts, per_msg, rcpts = report_parts(parse(files[0]))
        assert [r["Final-Recipient"] for r in rcpts] == ["rfc822; carol@localhost"], rcpts
        assert rcpts[0]["Action"] == "failed" and rcpts[0]["Status"].startswith("5."), rcpts
        assert len(d.wait_for_files("dave", 1)) == 1   # the other recipient is delivered
        assert os.listdir(outside) == [], "a delivery followed the symlink"
        assert "to=<carol@localhost> status=bounced" in d.wait_for_log(
            r"to=<carol@localhost> status=bounced")
        assert d.stop() == 0
    finally:
        d.cleanup()
        subprocess.run(["rm", "-rf", outside])


def test_no_dsn_for_the_null_sender_nor_notify_never():
    d = Daemon(shards=1)
    outside = tempfile.mkdtemp(prefix="ringmta-outside-")
    try:
        os.makedirs(d.maildir)
        os.symlink(outside, os.path.join(d.maildir, "carol"))
        d.start()
        send(d.port, "", ["carol@localhost"], BODY)                       # RFC 5321 4.5.5
        send(d.port, "bob@localhost", ["carol@localhost"], BODY, ["NOTIFY=NEVER"])
        send(d.port, "bob@localhost", ["erin@localhost"], BODY, ["NOTIFY=SUCCESS"])
        deadline = time.monotonic() + 10
        while d.read_log().count("status=bounced") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        log = d.read_log()
        assert log.count("to=<carol@localhost> status=bounced") == 2, log
        dsns = [l for l in log.splitlines() if " event=dsn " in l]
        assert len(dsns) == 1, dsns          # only the success notice for erin
        files = d.wait_for_files("bob", 1)
        assert len(files) == 1, files
        parts, per_msg, rcpts = report_parts(parse(files[0]))
        assert rcpts[0]["Action"] == "delivered" and rcpts[0]["Status"] == "2.0.0", rcpts
        # RFC 3461 4.3: a notice without a failure returns the headers only.
        assert parts[2].get_content_type() == "text/rfc822-headers", parts[2].get_content_type()
        assert len(d.mailbox_files("erin")) == 1
        assert d.stop() == 0
    finally:
        d.cleanup()
        subprocess.run(["rm", "-rf", outside])


def main():
    res = Results()
    res.run("test_expiry_bounces_to_the_local_sender", test_expiry_bounces_to_the_local_sender)
    res.run("test_delay_warning_goes_once", test_delay_warning_goes_once)
    res.run("test_permanent_failure_bounces_at_once_and_writes_nothing_outside",
            test_permanent_failure_bounces_at_once_and_writes_nothing_outside)
    res.run("test_no_dsn_for_the_null_sender_nor_notify_never",
            test_no_dsn_for_the_null_sender_nor_notify_never)
    res.finish()


if __name__ == "__main__":
    main()
