"""The DSNs proto/dsn.c composes parse as RFC 3464 / RFC 6522 reports with Python's email package.

build/tests/tools/dsn_dump writes fixed cases (see tests/tools/dsn_dump.c); each is parsed with
email.policy.default and checked: multipart/report with report-type=delivery-status, the three
parts, the message/delivery-status fields per message and per recipient, the type of the part
that returns the original, no parse defects, CRLF lines within 998 octets, and that hostile
diagnostic text, ORCPT, ENVID and host names created no header field and no MIME part.
"""
import email
import email.policy
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LINE_LEN_MAX = 998            # RFC 5322 2.1.1
SENDER = "alice@a.example"
HOST = "mx.example.com"
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what)


def dump(out_dir):
    tool = os.path.join(harness.build_dir(), "tests", "tools", "dsn_dump")
    res = subprocess.run([tool, out_dir], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        sys.exit("dsn_dump failed: %s" % res.stderr)
    flags = {}
    for line in res.stdout.splitlines():
        name, *kv = line.split()
        flags[name] = dict(x.split("=") for x in kv)
    return flags


def check_lines(name, raw):
    check(raw.endswith(b"\r\n"), "%s: ends with CRLF" % name)
    lines = raw.split(b"\r\n")
    for i, line in enumerate(lines):
        check(b"\n" not in line and b"\r" not in line, "%s: bare CR or LF in line %d" % (name, i))
        check(len(line) <= LINE_LEN_MAX, "%s: line %d has %d octets" % (name, i, len(line)))


def walk_defects(msg):
    found = list(msg.defects)
    if msg.is_multipart():
        for part in msg.get_payload():
            found += walk_defects(part)
    return found


def parse(out_dir, name):
    raw = open(os.path.join(out_dir, name + ".eml"), "rb").read()
    check_lines(name, raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    check(walk_defects(msg) == [], "%s: parse defects %r" % (name, walk_defects(msg)))
    return raw, msg


def check_report(name, msg, subject, original_type, rcpt_count):
    check(msg.get_content_type() == "multipart/report", "%s: multipart/report" % name)
    check(msg.get_param("report-type") == "delivery-status", "%s: report-type" % name)
    check(msg["Auto-Submitted"] == "auto-replied", "%s: Auto-Submitted (RFC 3834)" % name)
    check(msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@" + HOST, "%s: From" % name)
    check(msg["From"].addresses[0].display_name != "", "%s: From has a display name" % name)
    check(msg["To"].addresses[0].addr_spec == SENDER, "%s: To is the sender" % name)
    check(msg["Subject"] == subject, "%s: Subject %r" % (name, msg["Subject"]))
    check(msg["Date"].datetime is not None, "%s: Date parses" % name)
    check(msg["Message-ID"].endswith("@" + HOST + ">"), "%s: Message-ID" % name)
    check(msg["MIME-Version"] == "1.0", "%s: MIME-Version" % name)
    parts = msg.get_payload()
    check(len(parts) == 3, "%s: three parts, not %d" % (name, len(parts)))
    types = [p.get_content_type() for p in parts]
    check(types == ["text/plain", "message/delivery-status", original_type],
          "%s: part types %r" % (name, types))
    blocks = parts[1].get_payload()
    check(len(blocks) == 1 + rcpt_count, "%s: %d delivery-status blocks" % (name, len(blocks)))
    per_msg = blocks[0]
    check(per_msg["Reporting-MTA"] == "dns; " + HOST, "%s: Reporting-MTA" % name)
    check(per_msg["Arrival-Date"] == "Wed, 1 May 2024 12:34:50 +0000", "%s: Arrival-Date" % name)
    return parts, blocks


def check_failed_full(out_dir):
    _, msg = parse(out_dir, "failed_full")
    parts, blocks = check_report("failed_full", msg, "Undelivered Mail Returned to Sender",
                                 "message/rfc822", 1)
    check(blocks[0]["Original-Envelope-Id"] == "QQ314159+x", "ENVID is xtext-decoded")
    r = blocks[1]
    check(r["Original-Recipient"] == "rfc822;bob+foo@b.example", "ORCPT is xtext-decoded")
    check(r["Final-Recipient"] == "rfc822; bob@b.example", "Final-Recipient")
    check(r["Action"] == "failed", "Action failed")
    check(r["Status"] == "5.1.1", "Status")
    check(r["Remote-MTA"] == "dns; mx.b.example", "Remote-MTA")
    check(r["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@b.example>: Recipient address rejected: "
          "User unknown", "Diagnostic-Code unfolds to the reply: %r" % r["Diagnostic-Code"])
    check(r["Last-Attempt-Date"] == "Wed, 1 May 2024 12:34:55 +0000", "Last-Attempt-Date")
    check(r["Will-Retry-Until"] is None, "no Will-Retry-Until for a failure")
    inner = parts[2].get_payload()[0]
    check(inner["Subject"] == "lunch", "the whole original is returned")
    check(inner.get_content().strip() == "Shall we meet at noon?", "with its body")
    human = parts[0].get_content()
    check("<bob@b.example>" in human and "User unknown" in human, "human part names the reason")


def check_failed_hdrs(out_dir):
    raw, msg = parse(out_dir, "failed_hdrs")
    parts, _ = check_report("failed_hdrs", msg, "Undelivered Mail Returned to Sender",
                            "text/rfc822-headers", 1)
    text = parts[2].get_content()
    check("Subject: lunch" in text, "RET=HDRS returns the headers")
    check(b"Shall we meet" not in raw, "RET=HDRS does not return the body")


def check_over_limit(out_dir):
    raw, msg = parse(out_dir, "over_limit")
    parts, _ = check_report("over_limit", msg, "Undelivered Mail Returned to Sender",
                            "text/rfc822-headers", 1)
    check("Message-ID: <lunch-1@a.example>" in parts[2].get_content(), "headers of a big message")
    check(len(raw) < 10000, "a 60000-octet original is not returned (%d octets)" % len(raw))
    check("larger than 50000 octets" in parts[0].get_content(), "human part says why")


def check_delayed(out_dir):
    raw, msg = parse(out_dir, "delayed")
    parts, blocks = check_report("delayed", msg, "Delayed Mail (still being retried)",
                                 "text/rfc822-headers", 2)
    check(b"Shall we meet" not in raw, "a delay DSN returns headers only (RFC 3461 4.3)")
    for b, who in zip(blocks[1:], ["bob@b.example", "carol@b.example"]):
        check(b["Final-Recipient"] == "rfc822; " + who, "delayed: Final-Recipient " + who)
        check(b["Action"] == "delayed", "delayed: Action")
        check(b["Status"] == "4.4.1", "delayed: Status")
        check(b["Will-Retry-Until"] == "Mon, 6 May 2024 12:34:56 +0000", "Will-Retry-Until")
        check(b["Diagnostic-Code"].startswith("X-ringmta; connect to"), "local diagnostic")
    check(blocks[1]["Original-Recipient"] is not None, "ORCPT where given")
    check(blocks[2]["Original-Recipient"] is None, "no Original-Recipient without ORCPT")
    check("Mon, 6 May 2024" in parts[0].get_content(), "human part says until when")


def check_hostile(out_dir):
    raw, msg = parse(out_dir, "hostile")
    parts, blocks = check_report("hostile", msg, "Undelivered Mail Returned to Sender",
                                 "message/rfc822", 1)
    every = [msg] + parts + blocks
    for m in every:
        check("X-Injected" not in m, "hostile text created a header field: %r" % m.items())
        check("Content-Type" not in m or m is not blocks[1], "no Content-Type in a block")
    r = blocks[1]
    diag = r["Diagnostic-Code"]
    check(diag.startswith("smtp; 550 5.7.1 evil X-Injected: diag"), "hostile diag kept on one "
          "field: %r" % diag)
    check(all(0x20 <= ord(c) < 0x7f for c in diag), "no control character in the diagnostic")
    check("\x00" not in raw.decode("latin-1").split("\r\n\r\n", 1)[0], "no NUL in the headers")
    check(b"\x1b" not in raw and b"\x00" not in raw and b"\xff" not in raw,
          "ESC, NUL and 0xff are gone")
    check(r["Original-Recipient"] == "rfc822;bob??X-Injected: orcpt@b.example",
          "a decoded CR LF in ORCPT is shown as '?': %r" % r["Original-Recipient"])
    check(blocks[0]["Original-Envelope-Id"] == "id??X-Injected: envid", "decoded ENVID safe")
    check(msg.get_param("boundary") != "=_ringmta_6632356000000002",
          "the boundary changes when the original contains it")
    inner = parts[2].get_payload()[0]
    check(inner["Subject"] == "collide", "the original is one part")
    check("forged part" in inner.get_payload(), "the forged MIME lines stay inside it")


def check_mixed(out_dir):
    _, msg = parse(out_dir, "mixed")
    parts, blocks = check_report("mixed", msg, "Undelivered Mail Returned to Sender",
                                 "message/rfc822", 40)
    actions = [b["Action"] for b in blocks[1:]]
    check(actions == ["failed", "delayed"] * 20, "recipients in order with their actions")
    check(blocks[0]["Original-Envelope-Id"] is None, "no Original-Envelope-Id without ENVID")
    long = blocks[4]["Diagnostic-Code"]
    check(long.endswith("..."), "a diagnostic over the limit ends with ...")
    check(len(long) <= len("smtp; ") + 2048, "and is cut to DSN_DIAG_LEN_MAX: %d" % len(long))
    human = parts[0].get_content()
    check(human.count("<user") == 40, "every recipient in the human part")


def check_utf8(out_dir, flags):
    raw, msg = parse(out_dir, "utf8")
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    check(types == ["text/plain", "message/global-delivery-status", "message/global"],
          "utf8: RFC 6533 types %r" % types)
    # The bytes parser keeps non-ASCII header octets as surrogates; RFC 6532 text is UTF-8.
    text_msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    check(text_msg["To"].addresses[0].addr_spec == "j\u00f6rg@a.example", "utf8: To is UTF-8")
    check("b\u00f8b@b.example" in raw.decode("utf-8"), "utf8: the recipient is shown in UTF-8")
    check(flags["utf8"] == {"8bitmime": "1", "smtputf8": "1"}, "utf8: both flags")
    check(flags["failed_full"] == {"8bitmime": "0", "smtputf8": "0"}, "ASCII: no flag")


def main():
    with tempfile.TemporaryDirectory(prefix="ringmta-dsn-") as out_dir:
        flags = dump(out_dir)
        check(sorted(flags) == sorted(["failed_full", "failed_hdrs", "delayed", "over_limit",
                                       "hostile", "mixed", "utf8"]), "every case written")
        check_failed_full(out_dir)
        check_failed_hdrs(out_dir)
        check_over_limit(out_dir)
        check_delayed(out_dir)
        check_hostile(out_dir)
        check_mixed(out_dir)
        check_utf8(out_dir, flags)
    if FAILS:
        print("%d checks failed" % len(FAILS))
        return 1
    print("test_dsn_format: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
