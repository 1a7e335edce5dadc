"""Starts the real build/ringmta on loopback in a private directory and talks to it.

Every test gets its own directory (spool, Maildir, log) and its own port, so tests never share
state. Only 127.0.0.1 and ::1 are used.
"""
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    if len(sys.argv) > 1 and os.path.isdir(sys.argv[1]):
        return sys.argv[1]
    return os.path.join(ROOT, "build")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One ringmta process: start(), stop() (SIGTERM), kill() (SIGKILL), restart()."""

    def __init__(self, shards=2, users=None, extra=None, keep_dir=None, preexec_fn=None,
                 pass_fds=(), env=None):
        self.dir = keep_dir or tempfile.mkdtemp(prefix="ringmta-it-")
        # Run as root, the daemon becomes mail_owner: it must be able to reach its directories
        # (mkdtemp makes them 0700).
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.maildir = os.path.join(self.dir, "mail")
        self.spool = os.path.join(self.dir, "spool")
        self.log_path = os.path.join(self.dir, "ringmta.log")
        self.options = {
            "listen": "127.0.0.1:%d, [::1]:%d" % (self.port, self.port),
            "spool_dir": self.spool,
            "maildir_root": self.maildir,
            "local_domains": "localhost, example.test",
            "myhostname": "mx.example.test",
            "shards": str(shards),
            # Never the machine's resolver: a loopback port where nothing answers, so remote
            # domains defer; a test that resolves names sets its own DNS server.
            "dns_servers": "127.0.0.1:%d" % free_port(),
        }
        if users is not None:
            path = os.path.join(self.dir, "users")
            with open(path, "w") as f:
                f.write("\n".join(users) + "\n")
            self.options["local_users_file"] = path
        self.options.update(extra or {})
        self.preexec_fn = preexec_fn   # runs in the child before exec (resource limits)
        self.pass_fds = pass_fds       # descriptors the daemon inherits
        self.env = env                 # added to the daemon's environment (LD_PRELOAD shims)
        self.proc = None

    def argv(self):
        argv = [os.path.join(build_dir(), "ringmta")]
        for k, v in self.options.items():
            argv += ["-o", "%s=%s" % (k, v)]
        return argv

    def start(self, timeout=10.0):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=self.log,
                                     preexec_fn=self.preexec_fn, pass_fds=self.pass_fds,
                                     env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ringmta exited with %d:\n%s" % (self.proc.returncode,
                                                                   self.read_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(512)
                    s.sendall(b"QUIT\r\n")
                    s.recv(512)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ringmta did not start listening:\n" + self.read_log())

    def run_to_exit(self, preexec_fn=None, timeout=10.0):
        """Runs the daemon expecting it to refuse to start: (exit code, stderr)."""
        r = subprocess.run(self.argv(), capture_output=True, timeout=timeout,
                           preexec_fn=preexec_fn)
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def stop(self, timeout=15.0):
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("ringmta did not stop on SIGTERM")
        self.proc = None
        self.log.close()
        return rc

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.log.close()

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def mailbox_dir(self, user):
        """Makes <maildir_root>/<user> as an administrator would: owned by mail_owner when the
        daemon starts as root (a tmpfs mounted on it hides it, and shows it again unmounted)."""
        path = os.path.join(self.maildir, user)
        os.makedirs(path, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(self.options.get("mail_owner", "ringmta"))
            for p in (self.maildir, path):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        return path
    def wait_for_log(self, pattern, timeout=5.0):
        """The log once a line matches pattern (a regex): shards write their lines in batches,
        a little after the event (base/log_sink)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.read_log()
            if re.search(pattern, log) or time.monotonic() >= deadline:
                return log
            time.sleep(0.02)

    def mailbox_files(self, user):
        new = os.path.join(self.maildir, user, "new")
        if not os.path.isdir(new):
            return []
        return sorted(os.path.join(new, n) for n in os.listdir(new))

    def wait_for_files(self, user, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.mailbox_files(user)
            if len(files) >= count:
                return files
            time.sleep(0.02)
        return self.mailbox_files(user)

    def cpu_seconds(self):
        """User plus system CPU time the daemon has used so far (/proc/PID/stat)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed_sessions(port, user, count):
    """count one-message sessions to user@localhost, one after the other: the slowest, in s."""
    worst = 0.0
    for i in range(count):
        t0 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
            s.sendmail("%s@example.org" % user, ["%s@localhost" % user],
                       b"Subject: %d\r\n\r\nx\r\n" % i)
        worst = max(worst, time.monotonic() - t0)
    return worst


def read_until_quiet(s, quiet=1.0):
    """Everything s receives until the peer closes or sends nothing for `quiet` seconds."""
    out = b""
    s.settimeout(quiet)
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    return out


def smtp_dialog(port, lines, read_final=True, timeout=10.0):
    """Sends raw bytes, returns everything the server answered until it closed or went quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.recv(4096)
        s.sendall(lines)
        return read_until_quiet(s)


def scrape(port):
    """The metrics endpoint's exposition text (metrics_listen on 127.0.0.1:port)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        return r.read().decode()


def sample(text, name):
    """The value of the series named exactly `name` (with its labels) in exposition text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    raise AssertionError("%s not in:\n%s" % (name, text[:3000]))


class Results:
    """Counts checks and prints the closing line that CI reads."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn, *args):
        start = time.monotonic()
        try:
            fn(*args)
            self.passed += 1
            print("ok   %s (%.1fs)" % (name, time.monotonic() - start), flush=True)
        except Exception as e:  # a failing check must not stop the others
            self.failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
            import traceback
            traceback.print_exc()

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


def mount_full_mailbox(d, user):
    """A mailbox on which nothing can be created, even by root: a private tmpfs with no free inode
    mounted on it, so every delivery fails with ENOSPC, a temporary failure. Returns its path (to
    umount when the mailbox should work again), or None where no tmpfs can be mounted."""
    path = d.mailbox_dir(user)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=1", "tmpfs", path],
            capture_output=True).returncode != 0:
        return None
    return path
