"""`ringmta passwd USER`: the password from stdin or the terminal (no echo), never from argv.

Run by `make test` (meson test suite 'integration'); argument: the build directory.
"""
import os
import pty
import select
import subprocess
import time
import warnings

import harness
from harness import Results

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # libcrypt's crypt(3): checks the printed hash independently


def ringmta():
    return os.path.join(harness.build_dir(), "ringmta")


def check_line(line, user, password):
    assert line.startswith(user + ":{CRYPT}$y$"), line
    h = line.split(":", 1)[1][len("{CRYPT}"):]
    assert crypt.crypt(password, h) == h, "the hash does not verify"
    assert crypt.crypt(password + "x", h) != h


def test_password_from_stdin():
    r = subprocess.run([ringmta(), "passwd", "alice@example.test"], input=b"s3cret pass\n",
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    check_line(r.stdout.decode().strip(), "alice@example.test", "s3cret pass")
    assert b"s3cret" not in r.stderr


def test_password_never_from_argv():
    r = subprocess.run([ringmta(), "passwd", "alice", "s3cret"], input=b"", capture_output=True,
                       timeout=30)
    assert r.returncode == 2 and b"usage" in r.stderr, (r.returncode, r.stderr)
    assert r.stdout == b""


def test_bad_user_and_empty_or_long_password_are_refused():
    for user in ["a:b", "a b", ""]:
        r = subprocess.run([ringmta(), "passwd", user], input=b"pw\n", capture_output=True,
                           timeout=30)
        assert r.returncode == 2 and r.stdout == b"", user
    for pw in [b"\n", b"", b"x" * 256 + b"\n"]:
        r = subprocess.run([ringmta(), "passwd", "bob"], input=pw, capture_output=True,
                           timeout=30)
        assert r.returncode == 1 and r.stdout == b"", (pw[:8], r.stdout)
    r = subprocess.run([ringmta(), "passwd", "bob"], input=b"x" * 255 + b"\n",
                       capture_output=True, timeout=30)
    assert r.returncode == 0, "255 octets is the limit and is taken"


def tty_run(answers):
    """Runs `ringmta passwd carol` on a pseudo-terminal, answering each prompt in turn."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(ringmta(), [ringmta(), "passwd", "carol"])
    seen = b""
    deadline = time.monotonic() + 30
    pending = list(answers)
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if pending and (seen.endswith(b"Password: ") or seen.endswith(b"Again: ")):
            os.write(fd, pending.pop(0))
    status = None
    for _ in range(20):   # the child ends right after its last output, or it is stuck
        done, st = os.waitpid(pid, os.WNOHANG)
        if done != 0:
            status = st
            break
        time.sleep(0.1)
    if status is None:   # still waiting for input: a failure, not a hang
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen


def test_password_from_the_terminal_without_echo():
    code, seen = tty_run([b"tty-secret\n", b"tty-secret\n"])
    assert code == 0, seen
    assert b"tty-secret" not in seen, "the password was echoed"
    line = [l for l in seen.decode().splitlines() if l.startswith("carol:")][0]
    check_line(line.strip(), "carol", "tty-secret")


def test_two_different_terminal_answers_fail():
    code, seen = tty_run([b"one\n", b"two\n"])
    assert code == 1 and b"differ" in seen, seen


def main():
    res = Results()
    for name, fn in [(n, f) for n, f in globals().items() if n.startswith("test_")]:
        res.run(name, fn)
    res.finish()


if __name__ == "__main__":
    main()
