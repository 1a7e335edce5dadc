"""Durability across a power cut, not only kill -9 (RFC 5321 4.1.1.4, 6.1: 250 means stored).

SIGKILL keeps the page cache, so test_crash cannot see a missing fdatasync. Here the spool and
the Maildir live on lossyfs (tests/powercut/), a FUSE file system that keeps in memory what was
not made durable and drops it at a simulated power cut. Each round: mount, start ringmta, inject
mail over 20 connections, cut the power at a random moment (from then on nothing becomes durable
and every operation fails), SIGKILL the daemon, unmount (lossyfs rewrites its backing directory
to the durable state), mount again. Rounds alternate between lossyfs's two models (strict POSIX,
and ext4 data=ordered). At the end every message that got 250 must be in Maildir exactly once and
byte-identical. Prints rounds, acknowledged, lost, duplicated, corrupt.

First, checks of lossyfs itself: what it keeps and drops for each kind of sync, and that syncfs(2)
and sync(2) make nothing durable on it (the kernel does not pass them to a FUSE server).

    test_powercut.py BUILD [--rounds=N] [--unsafe] [--maildir-sync=auto|fsync|syncfs] [--model=M]

--unsafe: the same rounds with a ringmta built with -Dunsafe_skip_sync=true (built here, in
BUILD/unsafe-skip-sync), which must lose acknowledged mail: the proof that this test can fail.
--maildir-sync=syncfs: the daemon's syncfs strategy, which loses mail on FUSE (see the README in
tests/powercut/). Exit 77 only if this machine has no FUSE at all.
"""
import ctypes
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import ROOT, Daemon, Results, build_dir
from test_crash import CLIENTS, USERS, body_for, client, rcpts_for, strip_added

OPTS = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[2:])
ROUNDS = int(OPTS.get("--rounds", os.environ.get("POWERCUT_ROUNDS", "12")))
UNSAFE = "--unsafe" in OPTS
MAILDIR_SYNC = OPTS.get("--maildir-sync")   # None: the daemon's default (auto: fsync on FUSE)
MODELS = [OPTS["--model"]] if "--model" in OPTS else ["strict", "ext4"]


def fuse_usable():
    """None if FUSE can be used here, else why not (then the test is skipped with 77)."""
    if not os.path.exists("/dev/fuse"):
        with open("/proc/filesystems") as f:
            kernel_has_fuse = any(line.split()[-1] == "fuse" for line in f if line.strip())
        if not kernel_has_fuse:
            return "the kernel has no FUSE (no 'fuse' in /proc/filesystems, no /dev/fuse)"
        try:   # a chroot or container without the device node: make it (root only)
            os.mknod("/dev/fuse", 0o666 | 0o020000, os.makedev(10, 229))
        except OSError as e:
            return "no /dev/fuse and it cannot be made here (%s)" % e
    if shutil.which("fusermount3") is None:
        raise RuntimeError("fusermount3 is missing: install fuse3 (make deps does)")
    return None


class LossyFs:
    """One lossyfs mount: mount(), cut() (the power cut), unmount() (returns its stats)."""

    def __init__(self, base):
        self.backing = os.path.join(base, "backing")
        self.mnt = os.path.join(base, "mnt")
        self.log_path = os.path.join(base, "lossyfs.log")
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mnt, exist_ok=True)
        self.bin = os.path.join(build_dir(), "tests", "powercut", "lossyfs")
        self.proc = None

    def mount(self, model="strict", options=()):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bin, "--model=" + model, *options, self.backing,
                                      self.mnt], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("lossyfs exited with %d:\n%s" % (self.proc.returncode,
                                                                   self.read_log()))
            if os.path.ismount(self.mnt):
                return self
            time.sleep(0.02)
        raise RuntimeError("lossyfs did not mount:\n" + self.read_log())

    def cut(self):
        marker = os.path.join(self.backing, ".cut")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not os.path.exists(marker):
            if time.monotonic() > deadline:
                raise RuntimeError("lossyfs did not cut:\n" + self.read_log())
            time.sleep(0.005)

    def unmount(self):
        """Unmounts (retrying while the killed daemon's last references go) and waits for
        lossyfs to write the durable state out. Returns its exit counters."""
        for _ in range(100):
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.05)
        else:
            subprocess.run(["fusermount3", "-uz", self.mnt])
        rc = self.proc.wait(120)
        self.proc = None
        self.log.close()
        if rc != 0:
            raise RuntimeError("lossyfs exited with %d:\n%s" % (rc, self.read_log()[-3000:]))
        return self.last_stats()

    def last_stats(self):
        lines = [l for l in self.read_log().splitlines() if l.startswith("lossyfs: exit ")]
        return dict(kv.split("=", 1) for kv in lines[-1].split()[2:]) if lines else {}

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        if self.proc is not None:
            subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# ---- lossyfs itself: what each sync keeps ----

libc = ctypes.CDLL(None, use_errno=True)


def write_file(path, data, sync=False):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_or_none(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def after_cut(model, act):
    """Mounts a fresh lossyfs, runs act(mnt), cuts the power, remounts; returns a reader of the
    durable state (path relative to the mount -> bytes or None) and the unmount counters."""
    base = tempfile.mkdtemp(prefix="ringmta-lossyfs-")
    fs = LossyFs(base)
    try:
        fs.mount(model)
        act(fs.mnt)
        fs.cut()
        stats = fs.unmount()
        data = os.path.join(fs.backing, "data")
        state = {}
        for dirpath, dirnames, filenames in os.walk(data):
            for n in filenames:
                p = os.path.join(dirpath, n)
                state[os.path.relpath(p, data)] = open(p, "rb").read()
            for n in dirnames:
                state[os.path.relpath(os.path.join(dirpath, n), data) + "/"] = b""
        return state, stats
    finally:
        fs.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def check_file_and_dir_fsync_keep_a_new_file():
    def act(m):
        os.mkdir(m + "/d")
        fsync_dir(m)
        write_file(m + "/d/f", b"A" * 5000, sync=True)
        fsync_dir(m + "/d")
        write_file(m + "/d/g", b"lost")   # no sync at all
    for model in ("strict", "ext4"):
        state, stats = after_cut(model, act)
        assert state.get("d/f") == b"A" * 5000, (model, state)
        assert "d/g" not in state, (model, state)
        assert int(stats["names_dropped"]) >= 1, stats


def check_name_without_data_sync_comes_back_empty():
    def act(m):
        write_file(m + "/f", b"data that was never synced")
        fsync_dir(m)
    state, _ = after_cut("strict", act)
    assert state.get("f") == b"", state


def check_data_sync_alone_keeps_no_new_name_in_strict_model():
    def act(m):
        write_file(m + "/f", b"synced data", sync=True)
    state, _ = after_cut("strict", act)
    assert "f" not in state, state
    # ext4: the fdatasync commits the journal, which holds the new name
    state, _ = after_cut("ext4", act)
    assert state.get("f") == b"synced data", state


def check_ext4_model_commits_every_name_but_not_other_data():
    def act(m):
        write_file(m + "/a", b"written, never synced")
        os.mkdir(m + "/d")
        write_file(m + "/d/b", b"synced", sync=True)
    state, _ = after_cut("ext4", act)
    assert state.get("a") == b"" and state.get("d/b") == b"synced", state
    state, _ = after_cut("strict", act)
    assert state == {}, state


def check_rename_needs_a_sync_of_the_new_directory():
    def setup(m):
        os.mkdir(m + "/tmp")
        os.mkdir(m + "/new")
        fsync_dir(m)
        write_file(m + "/tmp/x", b"message", sync=True)
        fsync_dir(m + "/tmp")

    def rename_only(m):
        setup(m)
        os.rename(m + "/tmp/x", m + "/new/x")

    def rename_and_sync_new(m):
        rename_only(m)
        fsync_dir(m + "/new")
    state, _ = after_cut("strict", rename_only)
    assert state.get("tmp/x") == b"message" and "new/x" not in state, state
    state, _ = after_cut("strict", rename_and_sync_new)
    # tmp/ was not synced after the rename: the old name is still durable too (a hard link)
    assert state.get("new/x") == b"message" and state.get("tmp/x") == b"message", state


def check_overwrite_truncate_unlink_roll_back():
    orig = bytes(random.Random(1).randrange(256) for _ in range(20000))

    def act(m):
        write_file(m + "/f", orig, sync=True)
        write_file(m + "/g", b"gone?", sync=True)
        fsync_dir(m)
        fd = os.open(m + "/f", os.O_WRONLY)
        os.pwrite(fd, b"X" * 9000, 3000)    # overwrite inside
        os.pwrite(fd, b"Y" * 5000, 19000)   # past the durable end
        os.ftruncate(fd, 7000)              # and cut most of it off
        os.close(fd)
        os.unlink(m + "/g")
        write_file(m + "/h", b"h", sync=True)   # other syncs do not save f or g
    state, stats = after_cut("strict", act)
    assert state.get("f") == orig, "f not rolled back: %d bytes" % len(state.get("f") or b"")
    assert state.get("g") == b"gone?" and "h" not in state, sorted(state)
    assert int(stats["files_rolled_back"]) >= 1, stats

    def act_synced(m):
        act(m)
        fd = os.open(m + "/f", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        fsync_dir(m)
    state, _ = after_cut("strict", act_synced)
    want = bytearray(orig)
    want[3000:12000] = b"X" * 9000
    assert state.get("f") == bytes(want[:7000]) and "g" not in state, sorted(state)


def check_syncfs_and_sync_make_nothing_durable():
    """The finding: syncfs(2) and sync(2) return 0 on a FUSE mount and no request reaches the
    server (on this kernel only virtiofs gets FUSE_SYNCFS; libfuse 3.14 has no syncfs hook), so
    a program that relies on them for durability loses its data at a power cut."""
    def act(m):
        os.mkdir(m + "/d")
        fd = os.open(m + "/d/f", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"relies on syncfs")
        assert libc.syncfs(fd) == 0, ctypes.get_errno()
        libc.sync()
        os.close(fd)
    for model in ("strict", "ext4"):
        state, stats = after_cut(model, act)
        assert state == {}, (model, state)
        assert stats["fsync"] == stats["fdatasync"] == stats["fsyncdir"] == "0", stats


# ---- ringmta across power cuts ----

def stored_messages(d):
    """(message id, user) -> contents of each copy in new/; a file with no id (an empty or
    cut file) is listed under (None, user)."""
    found = {}
    for u in USERS:
        for path in d.mailbox_files(u):
            with open(path, "rb") as f:
                data = f.read()
            parts = data.rsplit(b"id=", 1)
            mid = parts[1].strip().decode("ascii", "replace") if len(parts) == 2 else None
            found.setdefault((mid, u), []).append(data)
    return found

class FsDaemon(Daemon):
    """ringmta with its spool and Maildir on the lossyfs mount; ringmta_bin: which build."""

    def __init__(self, mnt, ringmta_bin, **kw):
        extra = {"spool_dir": os.path.join(mnt, "spool"), "maildir_root": os.path.join(mnt, "mail")}
        if MAILDIR_SYNC is not None:
            extra["maildir_sync"] = MAILDIR_SYNC
        super().__init__(shards=2, users=USERS, extra=extra, **kw)
        self.maildir = os.path.join(mnt, "mail")
        self.bin = ringmta_bin

    def argv(self):
        return [self.bin] + super().argv()[1:]


def unsafe_ringmta():
    """Builds ringmta with -Dunsafe_skip_sync=true beside the normal build (once)."""
    b = os.path.join(build_dir(), "unsafe-skip-sync")
    if not os.path.exists(os.path.join(b, "build.ninja")):
        subprocess.run(["meson", "setup", b, ROOT, "-Dunsafe_skip_sync=true",
                        "--buildtype=debugoptimized"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", b, "ringmta"], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(b, "ringmta")


def powercut_rounds(ringmta_bin):
    base = tempfile.mkdtemp(prefix="ringmta-powercut-")
    fs = LossyFs(base)
    os.makedirs(os.path.join(base, "daemon"))
    d = FsDaemon(fs.mnt, ringmta_bin, keep_dir=os.path.join(base, "daemon"))
    # lost, duplicated, corrupt: deliveries (message, recipient); lost_messages: messages
    totals = {"rounds": 0, "acknowledged": 0, "lost": 0, "duplicated": 0, "corrupt": 0}
    dropped = 0
    try:
        all_acked = []
        for rnd in range(ROUNDS):
            model = MODELS[rnd % len(MODELS)]
            fs.mount(model)
            d.start()
            acked, stop = [], threading.Event()
            threads = [threading.Thread(target=client, args=(d.port, "r%dc%d" % (rnd, i), acked,
                                                                stop))
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.05, 2.5))   # early: during recovery and redelivery
            fs.cut()         # nothing becomes durable from here on
            n = len(acked)   # (a 250 already on its way was for a commit before the cut)
            d.kill()
            stop.set()
            for t in threads:
                t.join(10)
            stats = fs.unmount()
            dropped += int(stats.get("names_dropped", 0)) + int(stats.get("files_rolled_back", 0))
            all_acked += acked
            totals["rounds"] += 1
            print("round %d (%s): %d acknowledged (%d at the cut); the cut dropped %s new names,"
                  " rolled back %s files; syncs seen: fdatasync=%s fsync=%s fsyncdir=%s"
                  % (rnd, model, len(acked), n, stats.get("names_dropped"),
                     stats.get("files_rolled_back"), stats.get("fdatasync"), stats.get("fsync"),
                     stats.get("fsyncdir")), flush=True)
        fs.mount(MODELS[0])
        d.start()   # recovery delivers whatever was acknowledged but not yet in Maildir
        expected = {(mid, u) for mid in all_acked for u in rcpts_for(mid)}
        deadline, progress_at, count = time.monotonic() + 60, time.monotonic(), -1
        while time.monotonic() < deadline and time.monotonic() < progress_at + 5:
            found = stored_messages(d)
            if expected <= set(found):
                break
            if len(found) != count:   # still delivering: wait on
                progress_at, count = time.monotonic(), len(found)
            time.sleep(0.2)
        found = stored_messages(d)
        totals["acknowledged"] = len(all_acked)
        lost_messages = set()
        for key in expected:
            copies = found.get(key, [])
            if not copies:
                totals["lost"] += 1
                lost_messages.add(key[0])
            elif len(copies) > 1:
                totals["duplicated"] += 1
            elif strip_added(copies[0]) != body_for(key[0]):
                totals["corrupt"] += 1
        totals["duplicated"] += sum(1 for k, v in found.items()
                                    if len(v) > 1 and k not in expected and k[0] is not None)
        totals["corrupt"] += sum(len(v) for k, v in found.items() if k[0] is None)
        totals["lost_messages"] = len(lost_messages)
        print("power-cut test%s: %d rounds, %d acknowledged messages (%d deliveries), %d lost"
              " (%d messages), %d duplicated, %d corrupt"
              % (" (unsafe build)" if UNSAFE else "", totals["rounds"], totals["acknowledged"],
                 len(expected), totals["lost"], len(lost_messages), totals["duplicated"],
                 totals["corrupt"]), flush=True)
        rc = d.stop()
        fs.unmount()
        assert rc == 0, "ringmta exited with %d" % rc
        chosen = {l.split("strategy=")[1].split()[0] for l in d.read_log().splitlines()
                  if "event=maildir_sync " in l}
        assert chosen == {MAILDIR_SYNC or "fsync"}, "maildir_sync chose %s on FUSE" % chosen
        assert totals["acknowledged"] > 0, "no message was acknowledged at all"
        assert dropped > 0, "the cuts dropped nothing: the test did not test anything"
        return totals
    except Exception:
        sys.stdout.write(d.read_log()[-3000:])
        raise
    finally:
        d.kill()
        fs.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def powercut_loses_nothing_acknowledged():
    t = powercut_rounds(os.path.join(build_dir(), "ringmta"))
    assert t["lost"] == 0 and t["duplicated"] == 0 and t["corrupt"] == 0, t


def unsafe_build_loses_acknowledged_mail():
    t = powercut_rounds(unsafe_ringmta())
    assert t["lost"] > 0, "the build without syncs lost nothing: the power-cut test cannot " \
        "see a missing fdatasync (%s)" % t


def main():
    why = fuse_usable()
    if why is not None:
        print("SKIP: FUSE is not available: %s" % why, flush=True)
        sys.exit(77)
    res = Results()
    if UNSAFE:
        res.run("unsafe_build_loses_acknowledged_mail", unsafe_build_loses_acknowledged_mail)
        res.finish()
    res.run("lossyfs_file_and_dir_fsync_keep_a_new_file", check_file_and_dir_fsync_keep_a_new_file)
    res.run("lossyfs_name_without_data_sync_comes_back_empty",
            check_name_without_data_sync_comes_back_empty)
    res.run("lossyfs_data_sync_alone_keeps_no_new_name_in_strict_model",
            check_data_sync_alone_keeps_no_new_name_in_strict_model)
    res.run("lossyfs_ext4_model_commits_every_name_but_not_other_data",
            check_ext4_model_commits_every_name_but_not_other_data)
    res.run("lossyfs_rename_needs_a_sync_of_the_new_directory",
            check_rename_needs_a_sync_of_the_new_directory)
    res.run("lossyfs_overwrite_truncate_unlink_roll_back", check_overwrite_truncate_unlink_roll_back)
    res.run("lossyfs_syncfs_and_sync_make_nothing_durable",
            check_syncfs_and_sync_make_nothing_durable)
    res.run("power_cut_under_load_loses_nothing_acknowledged", powercut_loses_nothing_acknowledged)
    res.finish()


if __name__ == "__main__":
    main()
