"""File descriptors: the limit is raised at start, max_connections fits what is left, and a full
descriptor table pauses accepting without spinning while the connections that exist are served.

The daemon counts what it opens itself (some 650 descriptors per shard before its first
connection: listeners, spool, the Maildir agent's open mailboxes), so a hard limit of 64 is a
start-up error. Descriptors it does not know of fill the table: here a thousand inherited from
its parent under a hard limit of 1024, so the accepts run out (EMFILE) long before
max_connections. (Lowering the limit of the running daemon would not do: an armed multishot
accept keeps the limit it was armed with.)
"""
import os
import resource
import smtplib
import socket
import time

from harness import Daemon, Results

NOFILE = resource.RLIMIT_NOFILE
CPU_BUDGET_S = 0.5      # over CPU_WINDOW_S with every accept failing: a spin would use it all
CPU_WINDOW_S = 3.0
CLIENTS = 20
NOFILE_HARD = 1024
INHERITED = 1000        # leaves about ten descriptors for connections


def limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        line = [l for l in f if l.startswith("Max open files")][0]
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_soft_limit_is_raised_and_max_connections_fits():
    d = Daemon(shards=1, preexec_fn=lambda: resource.setrlimit(NOFILE, (64, 2048)))
    try:
        d.start()
        assert limits(d.proc.pid) == (2048, 2048), limits(d.proc.pid)
        lines = [l for l in d.read_log().splitlines() if " event=fd_limit " in l]
        assert len(lines) == 1, lines
        f = dict(kv.split("=", 1) for kv in lines[0].split()[2:])
        print("     " + lines[0].split(" ", 1)[1])
        assert f["nofile"] == "2048" and f["configured"] == "10000", f
        assert 0 < int(f["max_connections"]) < 2048 - 600, f
        assert int(f["needed"]) > 10000, f
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_a_hard_limit_too_low_is_a_start_up_error():
    d = Daemon(shards=1)
    try:
        rc, err = d.run_to_exit(preexec_fn=lambda: resource.setrlimit(NOFILE, (64, 64)))
        assert rc == 2, (rc, err)
        assert "RLIMIT_NOFILE: the hard limit of 64 descriptors" in err, err
    finally:
        d.cleanup()


def greeted(sock):
    """True once the 220 greeting came, False while the connection waits to be accepted."""
    sock.settimeout(0.05)
    try:
        data = sock.recv(512)
    except socket.timeout:
        return False
    assert data.startswith(b"220 "), data
    return True


def test_emfile_pauses_accepts_without_spinning():
    null = os.open("/dev/null", os.O_RDONLY)
    inherited = [os.dup(null) for _ in range(INHERITED)]
    d = Daemon(shards=1, users=["fd"], pass_fds=inherited,
               preexec_fn=lambda: resource.setrlimit(NOFILE, (NOFILE_HARD, NOFILE_HARD)))
    socks = []
    try:
        d.start()
        for fd in inherited + [null]:
            os.close(fd)
        inherited = []
        # Open the mailbox first: the agent keeps it open, so a delivery needs no descriptor.
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail("f@example.org", ["fd@localhost"], b"Subject: before\r\n\r\nx\r\n")
        assert len(d.wait_for_files("fd", 1)) == 1
        used = len(os.listdir("/proc/%d/fd" % d.proc.pid))
        for _ in range(CLIENTS):
            socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
        time.sleep(0.5)
        served = [s for s in socks if greeted(s)]
        waiting = [s for s in socks if s not in served]
        print("     %d descriptors open of %d: %d of %d connections accepted" % (
            used, NOFILE_HARD, len(served), CLIENTS))
        assert served and waiting, (len(served), len(waiting))
        cpu0 = d.cpu_seconds()
        time.sleep(CPU_WINDOW_S)
        cpu = d.cpu_seconds() - cpu0
        print("     CPU over %.0fs with accepts failing: %.3fs" % (CPU_WINDOW_S, cpu))
        assert cpu < CPU_BUDGET_S, "the daemon spins on EMFILE: %.2fs of CPU" % cpu
        paused = [l for l in d.read_log().splitlines() if " event=accept_paused " in l]
        assert len(paused) == 1 and " error=EMFILE " in paused[0], paused   # once per interval
        # The connections that exist are served, through to the mailbox.
        s = served[0]
        s.sendall(b"EHLO c\r\nMAIL FROM:<f@example.org>\r\nRCPT TO:<fd@localhost>\r\nDATA\r\n"
                  b"Subject: during\r\n\r\ny\r\n.\r\nQUIT\r\n")
        s.settimeout(5)
        out = b""
        while b"221" not in out:
            chunk = s.recv(4096)
            assert chunk, out
            out += chunk
        assert b"250 2.0.0 Ok: queued as" in out, out
        assert len(d.wait_for_files("fd", 2)) == 2
        # Connections that close make room: the waiting ones are accepted in turn.
        for _ in range(CLIENTS):
            if not waiting:
                break
            for s in served:
                s.close()
            socks = [s for s in socks if s not in served]
            deadline = time.monotonic() + 3
            served = []
            while not served and time.monotonic() < deadline:
                served = [s for s in waiting if greeted(s)]
            assert served, "%d connections still wait after others closed" % len(waiting)
            waiting = [s for s in waiting if s not in served]
        assert not waiting
        # SIGTERM with the table full again: stopping must not need a descriptor.
        socks += [socket.create_connection(("127.0.0.1", d.port), timeout=5)
                  for _ in range(CLIENTS)]
        time.sleep(0.5)
        assert len(os.listdir("/proc/%d/fd" % d.proc.pid)) >= NOFILE_HARD - 1
        assert d.stop() == 0
    finally:
        for s in socks:
            s.close()
        for fd in inherited:
            os.close(fd)
        d.cleanup()


def main():
    res = Results()
    res.run("test_soft_limit_is_raised_and_max_connections_fits",
            test_soft_limit_is_raised_and_max_connections_fits)
    res.run("test_a_hard_limit_too_low_is_a_start_up_error",
            test_a_hard_limit_too_low_is_a_start_up_error)
    res.run("test_emfile_pauses_accepts_without_spinning",
            test_emfile_pauses_accepts_without_spinning)
    res.finish()


if __name__ == "__main__":
    main()
