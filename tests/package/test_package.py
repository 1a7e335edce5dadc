"""The Debian package, installed into a fresh root: files, the ringmta user, the unit, start-up
from the installed configuration, mail through swaks and sendmail, remove and purge.

Run by `make test-package` (after `make deb`); argument: the directory holding the .deb. Needs
root. The fresh root is a copy-on-write overlay of this machine's root file system (overlayfs on
a tmpfs, in private mount and network namespaces), so nothing on the machine changes, port 25
of the private loopback is free, and any MTA already installed (Postfix here) is purged inside
the overlay first, as on a bare Debian 12. systemd is not PID 1 here (checked): the daemon is
started the way the unit's ExecStart says, with a $NOTIFY_SOCKET that must receive READY=1.
"""
import glob
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from harness import Results  # noqa: E402

INNER = "RINGMTA_PACKAGE_TEST_INNER"


def run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, timeout=300, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %d\n%s%s" % (" ".join(argv), r.returncode,
                                             r.stdout.decode(errors="replace"),
                                             r.stderr.decode(errors="replace")))
    return r


class Root:
    """The overlay root at self.path; in() runs a command chrooted into it."""

    def __init__(self):
        self.top = tempfile.mkdtemp(prefix="ringmta-pkg-")
        run(["mount", "--make-rprivate", "/"])
        run(["mount", "-t", "tmpfs", "tmpfs", self.top])
        for d in ["upper", "work", "root"]:
            os.mkdir(os.path.join(self.top, d))
        self.path = os.path.join(self.top, "root")
        run(["mount", "-t", "overlay", "overlay", "-o",
             "lowerdir=/,upperdir=%s/upper,workdir=%s/work" % (self.top, self.top), self.path])
        run(["mount", "--rbind", "/proc", self.path + "/proc"])
        run(["mount", "--rbind", "/dev", self.path + "/dev"])
        run(["mount", "-t", "tmpfs", "tmpfs", self.path + "/run"])   # no /run/systemd/system
        run(["ip", "link", "set", "lo", "up"])

    def inside(self, cmd, check=True, user=None, **kw):
        argv = ["chroot"] + (["--userspec=" + user] if user else []) + [self.path, "sh", "-c", cmd]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive",
                   PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        return run(argv, check=check, env=env, **kw)

    def file(self, path):
        return self.path + path


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                return s.recv(512)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


def wait_files(path, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = glob.glob(path + "/*")
        if len(files) >= count:
            return files
        time.sleep(0.05)
    return glob.glob(path + "/*")


def test_install(root, deb):
    """A bare Debian 12 has no MTA and no ringmta user: this machine's go first, inside the
    overlay."""
    root.inside("dpkg --purge --force-depends postfix || true; rm -f /usr/sbin/sendmail")
    root.inside("! getent passwd ringmta >/dev/null || userdel ringmta")
    root.inside("! getent group ringmta >/dev/null || groupdel ringmta")
    run(["cp", deb, root.file("/tmp/ringmta.deb")])
    r = root.inside("dpkg -i /tmp/ringmta.deb")
    assert b"warning" not in r.stderr.lower(), r.stderr


def test_files_user_and_unit(root, deb):
    for p in ["/usr/sbin/ringmta", "/usr/share/man/man8/ringmta.8.gz",
              "/usr/share/man/man5/ringmta.conf.5.gz", "/lib/systemd/system/ringmta.service"]:
        assert os.path.isfile(root.file(p)), p
    assert os.readlink(root.file("/usr/sbin/sendmail")) == "ringmta"
    assert os.readlink(root.file("/usr/bin/mailq")) == "../sbin/ringmta"
    assert os.path.realpath(root.file("/usr/lib/sendmail")) == root.file("/usr/sbin/ringmta")
    conf = open(root.file("/etc/ringmta/ringmta.conf")).read()
    assert "\nlisten = 127.0.0.1:25\n" in conf and "\n#max_recipients = 1000\n" in conf, conf
    keys = root.inside("/usr/sbin/ringmta --check-config -c /etc/ringmta/ringmta.conf").stdout
    for line in keys.decode().splitlines()[1:]:
        assert "# %s: " % line.split(" =")[0] in conf, "%s: not in the sample" % line
    pw = root.inside("getent passwd ringmta").stdout.decode().strip().split(":")
    assert pw[0] == "ringmta" and 100 <= int(pw[2]) < 1000, pw
    assert pw[5] == "/var/spool/ringmta", "not the user postinst creates: %s" % pw
    assert root.inside("getent group ringmta").returncode == 0
    assert pw[6] in ("/usr/sbin/nologin", "/bin/false"), pw
    st = os.stat(root.file("/var/spool/ringmta"))
    assert st.st_uid == int(pw[2]) and st.st_mode & 0o777 == 0o700, st
    wants = root.file("/etc/systemd/system/multi-user.target.wants/ringmta.service")
    assert os.path.islink(wants), "the unit is not enabled"
    unit = open(root.file("/lib/systemd/system/ringmta.service")).read()
    for line in ["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "PrivateTmp=yes"]:
        assert "\n" + line + "\n" in unit, line


class Started:
    """The daemon as the unit's ExecStart runs it (systemd is not PID 1 here)."""

    def __init__(self, root):
        self.root = root
        unit = open(root.file("/lib/systemd/system/ringmta.service")).read()
        exec_start = [l for l in unit.splitlines() if l.startswith("ExecStart=")][0]
        self.argv = shlex.split(exec_start[len("ExecStart="):])
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(root.file("/run/notify.sock"))   # root's, not writable by ringmta
        os.makedirs(root.file("/run/ringmta"), mode=0o755, exist_ok=True)   # RuntimeDirectory
        self.log = open(os.path.join(root.top, "ringmta.log"), "wb")
        self.proc = subprocess.Popen(["chroot", root.path] + self.argv, stdout=self.log,
                                     stderr=self.log, env={"NOTIFY_SOCKET": "/run/notify.sock",
                                                           "PATH": "/usr/sbin:/usr/bin"})

    def read_log(self):
        with open(os.path.join(self.root.top, "ringmta.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=5.0):
        """The log once it holds text (shards write their lines in batches)."""
        deadline = time.monotonic() + timeout
        while text not in self.read_log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.read_log()


def test_starts_from_the_installed_configuration(root, st):
    assert open("/proc/1/comm").read().strip() != "systemd", "systemd is PID 1: use systemctl"
    print("note: systemd is not PID 1 here; started as ExecStart says: %s" % " ".join(st.argv))
    st.notify.settimeout(10)
    assert st.notify.recv(256) == b"READY=1", "no sd_notify READY=1"
    assert wait_port(25).startswith(b"220 "), st.read_log()


def test_swaks_delivers(root, st):
    r = run(["swaks", "--server", "127.0.0.1", "--port", "25", "--to", "root@localhost",
             "--from", "tester@example.org", "--body", "through the package"])
    assert b"250 2.0.0 Ok: queued as" in r.stdout, r.stdout
    files = wait_files(root.file("/var/lib/ringmta/mail/root/new"), 1)
    assert len(files) == 1, st.read_log()
    assert b"through the package" in open(files[0], "rb").read()


def test_sendmail_as_a_user(root, st):
    r = root.inside("printf 'Subject: cron\\n\\nfrom nobody\\n' | /usr/sbin/sendmail root@localhost",
                    user="nobody:nogroup")
    assert r.returncode == 0
    files = wait_files(root.file("/var/lib/ringmta/mail/root/new"), 2)
    assert len(files) == 2, st.read_log()
    assert "client=local:nobody" in st.wait_log("client=local:nobody"), st.read_log()


def test_sighup_then_sigterm(root, st):
    st.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert st.proc.poll() is None, "SIGHUP ended the daemon"
    assert "event=sighup" in st.wait_log("event=sighup"), st.read_log()
    st.proc.send_signal(signal.SIGTERM)
    assert st.proc.wait(20) == 0, st.read_log()
    r = root.inside("printf 'x\\n' | /usr/sbin/sendmail root@localhost", check=False)
    assert r.returncode == 75, "EX_TEMPFAIL with the daemon down: %d" % r.returncode


def test_remove_keeps_the_spool_purge_removes_it(root, deb):
    root.inside("apt-get remove -y ringmta")
    assert not os.path.exists(root.file("/usr/sbin/ringmta"))
    assert os.path.isdir(root.file("/var/spool/ringmta")), "remove took the spool"
    assert glob.glob(root.file("/var/spool/ringmta/*")), "remove emptied the spool"
    assert os.path.exists(root.file("/etc/ringmta/ringmta.conf")), "remove took the conffile"
    root.inside("apt-get purge -y ringmta")
    assert not os.path.exists(root.file("/var/spool/ringmta")), "purge left the spool"
    assert not os.path.exists(root.file("/etc/ringmta/ringmta.conf"))


def main():
    if os.geteuid() != 0:
        print("skip: needs root (mount, chroot, dpkg)")
        sys.exit(77)
    debs = sorted(glob.glob(os.path.join(sys.argv[1], "ringmta_*.deb")))
    assert debs, "no ringmta_*.deb in %s (make deb)" % sys.argv[1]
    if os.environ.get(INNER) != "1":
        os.environ[INNER] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--net", sys.executable,
                              os.path.abspath(__file__), sys.argv[1]])
    res = Results()
    root = Root()
    st = None
    try:
        res.run("install", test_install, root, debs[-1])
        res.run("files_user_and_unit", test_files_user_and_unit, root, debs[-1])
        st = Started(root)
        res.run("starts_from_the_installed_configuration",
                test_starts_from_the_installed_configuration, root, st)
        res.run("swaks_delivers", test_swaks_delivers, root, st)
        res.run("sendmail_as_a_user", test_sendmail_as_a_user, root, st)
        res.run("sighup_then_sigterm", test_sighup_then_sigterm, root, st)
        res.run("remove_keeps_the_spool_purge_removes_it",
                test_remove_keeps_the_spool_purge_removes_it, root, debs[-1])
    finally:
        if st is not None and st.proc.poll() is None:
            st.proc.kill()
            st.proc.wait()
        run(["umount", "-l", root.top], check=False)   # the namespace drops the rest
        os.rmdir(root.top)
    res.finish()


if __name__ == "__main__":
    main()
