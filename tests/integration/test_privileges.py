"""Least privilege: started as root, ringmta serves as mail_owner and its files belong to it;
started as an ordinary user, it stays that user; it never serves as root.

Needs root (to start as root, and to become nobody for the ordinary-user case); skipped (77)
otherwise. The user ringmta is the default mail_owner (`make deps` creates it).
"""
import os
import pwd
import smtplib
import sys

from harness import Daemon, Results

SKIP = 77


def status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


def owners(root):
    """(path, uid, gid) of root and of everything under it."""
    out = [(root, os.lstat(root).st_uid, os.lstat(root).st_gid)]
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            out.append((os.path.join(top, name), st.st_uid, st.st_gid))
    return out


def send(port, to):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("p@example.org", [to], b"Subject: owner\r\n\r\nwhose file?\r\n")


def test_root_serves_as_mail_owner():
    owner = pwd.getpwnam("ringmta")
    d = Daemon(shards=2, users=["alice", "old"])
    try:
        # A mailbox left by a daemon that ran as root: given to mail_owner at start.
        os.makedirs(os.path.join(d.maildir, "old", "new"))
        d.start()
        st = status(d.proc.pid)
        print("     Uid %s Gid %s Groups %s CapEff %s" % (st["Uid"], st["Gid"], st["Groups"],
                                                         st["CapEff"]))
        assert st["Uid"] == [str(owner.pw_uid)] * 4, st["Uid"]
        assert st["Gid"] == [str(owner.pw_gid)] * 4, st["Gid"]
        assert st["Groups"] == [str(owner.pw_gid)], st["Groups"]
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, st
        tasks = "/proc/%d/task" % d.proc.pid
        for tid in os.listdir(tasks):   # every thread: shards, helpers, io_uring workers
            with open(os.path.join(tasks, tid, "status")) as f:
                uid = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
            assert uid == [str(owner.pw_uid)] * 4, (tid, uid)
        send(d.port, "alice@localhost")
        send(d.port, "old@localhost")
        assert len(d.wait_for_files("alice", 1)) == 1
        assert len(d.wait_for_files("old", 1)) == 1, d.read_log()
        found = owners(d.spool) + owners(d.maildir)
        wrong = [f for f in found if f[1:] != (owner.pw_uid, owner.pw_gid)]
        assert not wrong, wrong
        assert any(p.endswith(".log") for p, _, _ in found), found      # a segment
        assert any("/alice/new/" in p for p, _, _ in found), found      # a Maildir file
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_a_root_or_missing_mail_owner_is_a_start_up_error():
    d = Daemon(shards=1, extra={"mail_owner": "root"})
    try:
        rc, err = d.run_to_exit()
        assert rc == 2 and "mail_owner root: uid 0 gid 0: ringmta does not serve as root" in err, err
        d.options["mail_owner"] = "nosuchuser"
        rc, err = d.run_to_exit()
        assert rc == 2 and "mail_owner nosuchuser: no such user" in err, err
    finally:
        d.cleanup()


def test_an_ordinary_user_stays_itself():
    nobody = pwd.getpwnam("nobody")
    d = Daemon(shards=1, users=["bob"],
               preexec_fn=lambda: (os.setgroups([]), os.setgid(nobody.pw_gid),
                                   os.setuid(nobody.pw_uid)))
    try:
        for path in (d.spool, d.maildir):
            os.makedirs(path)
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        os.chown(d.options["local_users_file"], nobody.pw_uid, nobody.pw_gid)
        d.start()
        st = status(d.proc.pid)
        assert st["Uid"] == [str(nobody.pw_uid)] * 4, st["Uid"]
        send(d.port, "bob@localhost")
        files = d.wait_for_files("bob", 1)
        assert len(files) == 1
        assert os.stat(files[0]).st_uid == nobody.pw_uid
        assert d.stop() == 0
    finally:
        d.cleanup()


def main():
    if os.geteuid() != 0:
        print("skip: needs root")
        sys.exit(SKIP)
    try:
        pwd.getpwnam("ringmta")
    except KeyError:
        print("FAIL: no user ringmta: run `make deps` (as root) first")
        sys.exit(1)
    res = Results()
    res.run("test_root_serves_as_mail_owner", test_root_serves_as_mail_owner)
    res.run("test_a_root_or_missing_mail_owner_is_a_start_up_error",
            test_a_root_or_missing_mail_owner_is_a_start_up_error)
    res.run("test_an_ordinary_user_stays_itself", test_an_ordinary_user_stays_itself)
    res.finish()


if __name__ == "__main__":
    main()
