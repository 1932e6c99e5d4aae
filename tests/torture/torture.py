#!/usr/bin/env python3
"""torture.py - a model-based randomized test of the llmfs daemon.

Mounts the real daemon on a fresh store kept on a small size-limited tmpfs
and makes random operations on the mount: create, overwrite, append,
truncate, rename, delete, mkdir, rmdir, rm -r, `cp -r` of folders (inside
the tree and from outside), files of 0 to a few MiB mixing random,
repetitive and shared bytes (so that both dedup and compression happen),
deletions followed by a wait for garbage collection (dead chunks dropped,
packs deleted or compacted), filling the disk to ENOSPC and deleting again,
kill -9 and SIGTERM of the daemon at random moments (while idle, while
writers are in the middle of files, while a copy runs, while GC runs),
clean remounts, and llmfs-fsck / llmfs-fsck --repair while unmounted.

It keeps its own record (the model) of what every file must contain: the
size and SHA-256 of its committed content.  What the docs promise and the
model checks (docs/architecture.md, "A write" and "Crash safety"):
  - a completed close() or fsync() commits: that content survives any
    later crash, remount or fsck --repair;
  - a write whose writer never closed (the daemon was killed or stopped)
    leaves the previous content, or what the last completed fsync()
    committed; a new file is then absent or empty;
  - a write that fails (ENOSPC) leaves the previous content;
  - namespace operations (mkdir, rename, unlink, truncate(2)) are committed
    when they return.
After every remount every file of the model must read back byte-identical,
nothing deleted may come back, and the listing must match the model
exactly.  Each daemon's stderr must hold no "llmfs: error:" line (but the
ENOSPC ones) and no sanitizer report.

Seeded and reproducible: --seed N (or TORTURE_SEED) replays the same
operation sequence; the moments of kills depend on the machine.  A failure
prints the seed and the tail of the operation log and exits 1.  Exit 77:
skipped (not root, no FUSE, no tmpfs).

  torture.py --llmfs build/fs/llmfs --fsck build/tools/llmfs-fsck \\
             [--seed N] [--ops N] [--minutes M] [--disk-mb 64]
             [--pack-max BYTES] [--users] [--keep] [--verbose]

--users also runs the access checks (see ACCESS_RULES) as a throwaway user
created with useradd -M and removed at the end.
"""
import argparse
import collections
import errno
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
MOUNT_DEADLINE = 30   # seconds for a mount to come up or a daemon to exit
GC_DEADLINE = 15      # seconds for GC to drop the dead chunks of a delete
ALLOWED_ERRORS = re.compile(r"No space left on device")
SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                       r"SUMMARY: (Address|Undefined|Leak)Sanitizer|ThreadSanitizer")
ABSENT = None         # a file state: no such file
EMPTY = (0, hashlib.sha256(b"").hexdigest())


class Failure(Exception):
    """The daemon broke a promise (or died): the run fails."""


class Skip(Exception):
    """The machine cannot run the test (exit 77)."""


def sha(data):
    return hashlib.sha256(data).hexdigest()


def state_of(data):
    return (len(data), sha(data))


def show(st):
    if st is ABSENT:
        return "absent"
    return "%d bytes sha256 %s" % (st[0], st[1][:16])


def mounted(path):
    """Is path a mount point (even one whose daemon died)?"""
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


# ---------------------------------------------------------------------------
# Child modes: a writer killed in the middle of a file, a probe run as
# another user.

def child_write(src, dst, mark, stop, fsync_at, closed_mark):
    """Writes src to dst (created or truncated) in 64 KiB blocks; fsyncs
    once fsync_at bytes are written (if >= 0); once stop bytes are written
    (if >= 0) it creates mark and waits, the file open, to be killed.  With
    stop < 0 it writes everything, closes and then creates closed_mark."""
    data = open(src, "rb").read()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    off = 0
    synced = False
    while True:
        if 0 <= stop <= off:
            open(mark, "w").close()
            time.sleep(300)
            return 3
        if off >= len(data):
            break
        n = os.write(fd, data[off:off + 65536])
        off += n
        if 0 <= fsync_at <= off and not synced:
            os.fsync(fd)
            synced = True
    os.close(fd)
    open(closed_mark, "w").close()
    return 0


PROBE = r"""
import errno, os, sys
op, p = sys.argv[1], sys.argv[2]
try:
    if op == "read":
        with open(p, "rb", buffering=0) as f:
            f.read(1)
    elif op == "create":
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    elif op == "open-write":
        os.close(os.open(p, os.O_WRONLY))
    elif op == "mkdir":
        os.mkdir(p)
    elif op == "unlink":
        os.unlink(p)
    elif op == "rename":
        os.rename(p, sys.argv[3])
    elif op == "list":
        os.listdir(p)
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
"""

# The access model, checked with a throwaway user U against files of root
# (made by setup_access()).  One line a rule: what, op, path (relative to
# models/, or to the mount's root after "@/"), [second path], the answer
# expected.  More rules are added here
# as the access model (docs/security.md) grows.
ACCESS_RULES = [
    ("U reads root's 0644 file (control)", "read", "acl/public", None, "OK"),
    ("U lists root's 0755 folder (control)", "list", "acl", None, "OK"),
    ("U cannot read root's 0600 file", "read", "acl/secret", None, "EACCES"),
    ("U cannot open root's 0644 file for writing", "open-write", "acl/public", None, "EACCES"),
    ("U cannot create in root's 0755 folder", "create", "acl/new", None, "EACCES"),
    ("U cannot mkdir in root's 0755 folder", "mkdir", "acl/newdir", None, "EACCES"),
    ("U cannot create at the top of models/", "create", "u-new", None, "EACCES"),
    ("U cannot delete root's file", "unlink", "acl/public", None, "EACCES"),
    ("U cannot rename root's file", "rename", "acl/public", "acl/moved", "EACCES"),
    ("U cannot list root's 0700 folder", "list", "acl/private", None, "EACCES"),
    ("U cannot read the manifest of a model with files U cannot read", "read",
     "acl/.smip/manifest.json", None, "EACCES"),
    ("U cannot read the tensor index of that model", "read", "acl/.smip/tensors", None, "EACCES"),
    ("U cannot list root's task in paths/", "list", "@/paths/t-root", None, "EACCES"),
    ("U cannot read root's task file", "read", "@/paths/t-root/task", None, "EACCES"),
    ("U cannot ask for a collection", "open-write", "@/.llmfs/gc", None, "EACCES"),
    ("U reads the store's status (control)", "read", "@/.llmfs/status", None, "OK"),
]


# ---------------------------------------------------------------------------
# The daemon

class Daemon:
    def __init__(self, t):
        self.t = t
        self.proc = None
        self.log = None
        self.n = 0

    def start(self):
        t = self.t
        self.n += 1
        self.log = os.path.join(t.dir, "daemon.%d.log" % self.n)
        cmd = [t.args.llmfs, "--store", t.store, "-f", "--pack-max",
               str(t.pack_max), t.mnt]
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, start_new_session=True)
        end = time.monotonic() + MOUNT_DEADLINE
        while True:
            if mounted(t.mnt) and os.path.exists(os.path.join(t.mnt, ".llmfs/status")):
                break
            if self.proc.poll() is not None:
                raise Failure("daemon exited (status %d) before mounting; log:\n%s" %
                              (self.proc.returncode, self.tail()))
            if time.monotonic() > end:
                raise Failure("not mounted after %ds; log:\n%s" % (MOUNT_DEADLINE, self.tail()))
            time.sleep(0.05)
        t.stats["mounts"] += 1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            raise Failure("the daemon died on its own (status %d); log:\n%s" % (rc, self.tail()))

    def tail(self, n=30):
        try:
            lines = open(self.log, errors="replace").read().splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + s for s in lines[-n:])

    def check_log(self):
        text = open(self.log, errors="replace").read()
        bad = [s for s in text.splitlines()
               if "llmfs: error:" in s and not ALLOWED_ERRORS.search(s)]
        if bad:
            raise Failure("error lines in %s:\n%s" % (self.log, "\n".join(bad[:20])))
        if SANITIZER.search(text):
            raise Failure("sanitizer report in %s:\n%s" % (self.log, self.tail(80)))

    def _wait(self, what):
        try:
            self.proc.wait(timeout=MOUNT_DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.t.lazy_unmount()
            raise Failure("daemon still running %ds after %s" % (MOUNT_DEADLINE, what))
        rc = self.proc.returncode
        self.proc = None
        return rc

    def stop(self, how):
        """how: 'umount' (fusermount3 -u), 'TERM', or 'KILL'."""
        t = self.t
        self.check_alive()
        if how == "umount":
            r = subprocess.run(["fusermount3", "-u", t.mnt], capture_output=True, text=True)
            if r.returncode != 0:
                raise Failure("fusermount3 -u failed: %s" % r.stderr.strip())
        elif how == "TERM":
            self.proc.send_signal(signal.SIGTERM)
        else:
            self.proc.kill()
        rc = self._wait(how)
        if how == "KILL":
            t.lazy_unmount()
            t.stats["kills"] += 1
        else:
            if rc != 0:
                raise Failure("daemon exited with status %d after %s; log:\n%s" %
                              (rc, how, self.tail()))
            if mounted(t.mnt):
                t.lazy_unmount()
                raise Failure("%s still mounted after the daemon exited (%s)" % (t.mnt, how))
            if how == "TERM":
                t.stats["terms"] += 1
        self.check_log()


# ---------------------------------------------------------------------------
# The test

class Torture:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.dir = None
        self.tmpfs_up = False
        self.user = None
        self.children = []
        self.oplog = collections.deque(maxlen=40)
        self.opnum = 0
        self.stats = collections.Counter()
        # The model: committed state of every file and folder (paths
        # relative to models/).  pending holds files whose state is one of
        # several (after a crash); pending_dirs folders that may or may not
        # exist.  Both are settled by the next verify().
        self.files = {}
        self.dirs = set()
        self.pending = {}
        self.pending_dirs = set()
        self.deleted = set()
        self.pool = [self.rng.randbytes(MiB) for _ in range(4)]
        self.uniq = 0

    # -- set-up and clean-up ------------------------------------------------

    def setup(self):
        if os.geteuid() != 0:
            raise Skip("needs root (FUSE mounts, tmpfs)")
        if not os.path.exists("/dev/fuse"):
            raise Skip("/dev/fuse is missing")
        try:
            os.close(os.open("/dev/fuse", os.O_RDWR))
        except OSError as e:
            raise Skip("/dev/fuse cannot be opened: %s" % e)
        for c in ("fusermount3", "cp"):
            if not shutil.which(c):
                raise Skip("%s is missing" % c)
        for p in (self.args.llmfs, self.args.fsck):
            if not os.access(p, os.X_OK):
                raise Failure("%s is not executable" % p)
        self.dir = tempfile.mkdtemp(prefix="llmfs-torture.")
        self.disk = os.path.join(self.dir, "disk")
        self.mnt = os.path.join(self.dir, "mnt")
        self.src = os.path.join(self.dir, "src")
        for d in (self.disk, self.mnt, self.src):
            os.mkdir(d)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                            "size=%dm,mode=0700" % self.args.disk_mb, "torture", self.disk],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip("cannot mount a tmpfs: %s" % r.stderr.strip())
        self.tmpfs_up = True
        self.store = os.path.join(self.disk, "store")
        self.disk_bytes = self.args.disk_mb * MiB
        self.pack_max = self.args.pack_max or self.rng.choice([1, 2, 4]) * MiB
        self.models = os.path.join(self.mnt, "models")
        self.daemon = Daemon(self)
        if self.args.users:
            self.setup_user()

    def cleanup(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        d = getattr(self, "daemon", None)
        if d and d.proc is not None and d.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            try:
                d.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()
        if self.dir:
            self.lazy_unmount()
            if self.tmpfs_up and not self.args.keep:
                subprocess.run(["umount", "-l", self.disk], capture_output=True)
        if self.user:
            subprocess.run(["userdel", self.user], capture_output=True)
        if self.dir:
            if self.args.keep:
                print("# kept %s (the store's tmpfs is still mounted: umount %s)" % (
                    self.dir, self.disk))
            elif not mounted(self.mnt) and not mounted(self.disk):
                shutil.rmtree(self.dir, ignore_errors=True)

    def lazy_unmount(self):
        if mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)

    def setup_user(self):
        if not shutil.which("useradd"):
            raise Skip("useradd is missing")
        name = "llmfs-t%d" % os.getpid()
        r = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip("useradd failed: %s" % r.stderr.strip())
        self.user = name
        import pwd
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chmod(self.dir, 0o755)

    # -- the log ------------------------------------------------------------

    def note(self, text):
        line = "%5d %s" % (self.opnum, text)
        self.oplog.append(line)
        with open(os.path.join(self.dir, "ops.log"), "a") as f:
            f.write(line + "\n")
        if self.args.verbose:
            print("# " + line, flush=True)

    # -- content ------------------------------------------------------------

    def pick_size(self):
        r = self.rng.random()
        if r < 0.08:
            return 0
        if r < 0.3:
            return self.rng.randrange(1, 8192)
        if r < 0.65:
            return self.rng.randrange(8192, 512 * 1024)
        if r < 0.93:
            return self.rng.randrange(512 * 1024, 2 * MiB)
        return self.rng.randrange(2 * MiB, 4 * MiB)

    def content(self, size):
        """Random, repetitive (compressible) and shared (deduplicated) runs."""
        parts, n = [], 0
        while n < size:
            seg = min(size - n, self.rng.choice([4096, 65536, 300000, MiB]))
            k = self.rng.random()
            if k < 0.4:
                b = self.rng.randbytes(seg)
            elif k < 0.7:
                word = b"w%d %d.%d " % (self.rng.randrange(50), n, self.rng.randrange(9))
                b = (word * (seg // len(word) + 1))[:seg]
            else:
                blob = self.pool[self.rng.randrange(len(self.pool))]
                off = self.rng.randrange(len(blob))
                b = blob[off:off + seg]
            parts.append(b)
            n += len(b)
        return b"".join(parts)[:size]

    def name(self, prefix):
        self.uniq += 1
        return "%s%d" % (prefix, self.uniq)

    # -- the model ----------------------------------------------------------

    def path(self, rel):
        return os.path.join(self.models, rel)

    def under(self, d):
        """Files and folders of the model below folder d."""
        pre = d + "/"
        return ([p for p in self.files if p.startswith(pre)],
                [p for p in self.dirs if p.startswith(pre)])

    def set_file(self, rel, st):
        self.files[rel] = st
        self.deleted.discard(rel)

    def del_file(self, rel):
        del self.files[rel]
        self.deleted.add(rel)

    def read_file(self, rel):
        """Reads a committed file through the mount and checks it."""
        want = self.files[rel]
        data = self.read_bytes(rel)
        if state_of(data) != want:
            raise Failure("%s reads %s, the model says %s" % (rel, show(state_of(data)), show(want)))
        return data

    def read_bytes(self, rel):
        try:
            with open(self.path(rel), "rb", buffering=0) as f:
                data = f.read()
        except OSError as e:
            raise Failure("%s: read failed: %s" % (rel, e))
        self.stats["bytes_verified"] += len(data)
        return data

    def scan(self):
        """The tree under models/ as it is: {file: state}, {folder}."""
        files, dirs = {}, set()
        for root, dnames, fnames in os.walk(self.models, onerror=self._walk_error):
            rel = os.path.relpath(root, self.models)
            for d in dnames:
                dirs.add(d if rel == "." else rel + "/" + d)
            for fn in fnames:
                p = fn if rel == "." else rel + "/" + fn
                data = self.read_bytes(p)
                size = os.stat(self.path(p)).st_size
                if size != len(data):
                    raise Failure("%s: stat says %d bytes, read gave %d" % (p, size, len(data)))
                files[p] = state_of(data)
        return files, dirs

    def _walk_error(self, e):
        raise Failure("cannot list %s: %s" % (e.filename, e))

    def verify(self, why):
        """Every file and folder of the model, and nothing else."""
        files, dirs = self.scan()
        errs = []
        for p, want in self.files.items():
            got = files.get(p, ABSENT)
            if got != want:
                errs.append("%s: %s, committed %s" % (p, show(got), show(want)))
        for p, opts in self.pending.items():
            got = files.get(p, ABSENT)
            if got not in opts:
                errs.append("%s: %s, expected one of %s" %
                            (p, show(got), ", ".join(show(o) for o in opts)))
        for p in files:
            if p not in self.files and p not in self.pending:
                errs.append("%s: present (%s), %s" % (
                    p, show(files[p]),
                    "was deleted: came back" if p in self.deleted else "never made"))
        for d in self.dirs - dirs:
            errs.append("folder %s/ is missing" % d)
        for d in dirs - self.dirs - self.pending_dirs:
            errs.append("folder %s/ is present, %s" % (
                d, "was deleted: came back" if d in self.deleted else "never made"))
        if errs:
            raise Failure("verify (%s): %d mismatches:\n  %s" % (why, len(errs),
                                                                  "\n  ".join(errs[:30])))
        # Settle what was uncertain.
        for p in self.pending:
            if files.get(p, ABSENT) is ABSENT:
                self.deleted.add(p)
            else:
                self.set_file(p, files[p])
        for d in self.pending_dirs:
            if d in dirs:
                self.dirs.add(d)
        self.pending.clear()
        self.pending_dirs.clear()
        self.stats["verifies"] += 1
        self.stats["files_verified"] += len(files)

    def may_change(self, rels, new=None, dirs=()):
        """The files rels (and folders dirs) are uncertain until the next
        verify(): each keeps its committed state or takes one of new."""
        for p in rels:
            opts = [self.files.get(p, ABSENT)]
            if opts[0] is ABSENT:
                opts.append(EMPTY)
            opts += new.get(p, []) if new else []
            self.pending[p] = opts
            self.files.pop(p, None)
        for d in dirs:
            if d not in self.dirs:
                self.pending_dirs.add(d)

    # -- helpers ------------------------------------------------------------

    def free_bytes(self):
        s = os.statvfs(self.disk)
        return s.f_bavail * s.f_frsize

    def status(self):
        out = {}
        with open(os.path.join(self.mnt, ".llmfs/status")) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
        return out

    def wait_gc(self):
        """GC runs a second after the last delete, with no writer open."""
        time.sleep(1.2)
        end = time.monotonic() + GC_DEADLINE
        while time.monotonic() < end:
            if self.status().get("dead_chunks") == "0":
                self.stats["gc_waits"] += 1
                return True
            time.sleep(0.2)
        # Nothing here holds a writer open, and no chunk was fetched from a
        # registry: every dead chunk is GC's to drop.
        raise Failure("GC did not run: %s dead chunks %ds after the deletes (status: %s)" % (
            self.status().get("dead_chunks"), GC_DEADLINE, self.status()))

    def enospc(self, e, what):
        if e.errno != errno.ENOSPC:
            raise Failure("%s: %s" % (what, e))
        self.stats["enospc"] += 1
        self.note("  ENOSPC: %s" % what)

    def write(self, rel, data, append=False):
        """Writes (creates, truncates or appends) and closes; the model
        follows.  ENOSPC leaves the file as it was (checked at once)."""
        new = rel not in self.files
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        old = self.read_file(rel) if append else None
        try:
            fd = os.open(self.path(rel), flags, 0o644)
        except OSError as e:
            self.enospc(e, "open %s" % rel)
            return False
        try:
            try:
                for off in range(0, len(data), MiB):
                    os.write(fd, data[off:off + MiB])
            finally:
                os.close(fd)
        except OSError as e:
            self.enospc(e, "write %s" % rel)
            # the create itself was committed when open() returned
            self.may_change([rel])
            if new:
                self.pending[rel] = [EMPTY]
            self.verify("after ENOSPC")
            return False
        self.set_file(rel, state_of(old + data if append else data))
        self.stats["bytes_written"] += len(data)
        return True

    def unlink(self, rel):
        """Deletes must work, on a full disk too: deleting is how space is
        made (docs/architecture.md, "Full disks")."""
        try:
            os.unlink(self.path(rel))
        except OSError as e:
            raise Failure("unlink %s (disk free %d): %s" % (rel, self.free_bytes(), e))
        self.del_file(rel)

    def mutable_files(self):
        """Files that random operations may change (not the access
        fixtures under acl/)."""
        return [p for p in sorted(self.files) if not p.startswith("acl/")]

    def random_file(self):
        fs = self.mutable_files()
        return self.rng.choice(fs) if fs else None

    def random_dir(self, top=False, movable=False):
        ds = sorted(self.dirs)
        if movable:
            # m0, m1, m2 stay (operations write into them) and so does acl/
            ds = [d for d in ds if "/" in d and d != "acl" and not d.startswith("acl/")]
        if top or not ds:
            return ""
        return self.rng.choice(ds)

    def new_path(self, prefix="f"):
        d = self.random_dir(top=self.rng.random() < 0.1)
        return (d + "/" if d else "") + self.name(prefix)

    # -- operations ---------------------------------------------------------

    def op_create(self):
        rel = self.new_path()
        if rel.count("/") == 0:
            rel = "m0/" + rel
        data = self.content(self.pick_size())
        self.note("create %s %d" % (rel, len(data)))
        self.write(rel, data)

    def op_overwrite(self):
        rel = self.random_file()
        if rel:
            data = self.content(self.pick_size())
            self.note("overwrite %s %d" % (rel, len(data)))
            self.write(rel, data)

    def op_append(self):
        rel = self.random_file()
        if rel:
            data = self.content(self.rng.choice([1, 100, 5000, 70000, 400000]))
            self.note("append %s +%d" % (rel, len(data)))
            self.write(rel, data, append=True)

    def op_truncate(self):
        rel = self.random_file()
        if not rel:
            return
        old = self.read_file(rel)
        n = self.rng.choice([0, len(old) // 2, max(0, len(old) - 1), len(old) + 4096,
                             self.rng.randrange(len(old) + 1)])
        self.note("truncate %s %d -> %d" % (rel, len(old), n))
        try:
            os.truncate(self.path(rel), n)
        except OSError as e:
            self.enospc(e, "truncate %s" % rel)
            return
        self.set_file(rel, state_of(old[:n] + bytes(max(0, n - len(old)))))

    def op_rename(self):
        if self.rng.random() < 0.75 or not self.dirs:
            src = self.random_file()
            if not src:
                return
            if self.rng.random() < 0.3 and len(self.files) > 1:
                dst = self.random_file()     # over an existing file
            else:
                dst = self.new_path()
            if dst == src or "/" not in dst:
                return
            self.note("rename %s %s" % (src, dst))
            try:
                os.rename(self.path(src), self.path(dst))
            except OSError as e:
                self.enospc(e, "rename %s" % src)
                return
            st = self.files[src]
            self.del_file(src)
            self.set_file(dst, st)
            return
        src = self.random_dir(movable=True)
        dst = self.new_path("d")
        if not src or dst.startswith(src + "/"):
            return
        self.note("rename folder %s %s" % (src, dst))
        try:
            os.rename(self.path(src), self.path(dst))
        except OSError as e:
            self.enospc(e, "rename %s" % src)
            return
        fs, ds = self.under(src)
        for p in fs:
            st = self.files[p]
            self.del_file(p)
            self.set_file(dst + p[len(src):], st)
        for d in ds + [src]:
            self.dirs.discard(d)
            self.deleted.add(d)
            self.dirs.add(dst + d[len(src):])

    def op_delete(self):
        rel = self.random_file()
        if rel:
            self.note("delete %s" % rel)
            self.unlink(rel)

    def op_mkdir(self):
        parent = self.random_dir(top=self.rng.random() < 0.2)
        if parent.count("/") >= 3:
            return
        rel = (parent + "/" if parent else "") + self.name("d")
        self.note("mkdir %s" % rel)
        try:
            os.mkdir(self.path(rel))
        except OSError as e:
            self.enospc(e, "mkdir %s" % rel)
            return
        self.dirs.add(rel)
        self.deleted.discard(rel)

    def op_rmdir(self):
        d = self.random_dir(movable=True)
        if not d:
            return
        fs, ds = self.under(d)
        if self.rng.random() < 0.5:
            self.note("rmdir %s (%d entries below)" % (d, len(fs) + len(ds)))
            try:
                os.rmdir(self.path(d))
                got = "OK"
            except OSError as e:
                got = errno.errorcode.get(e.errno, str(e.errno))
            want = "ENOTEMPTY" if fs or ds else "OK"
            if got != want:
                raise Failure("rmdir %s: %s, expected %s" % (d, got, want))
            if got != "OK":
                return
        else:
            self.note("rm -r %s (%d files)" % (d, len(fs)))
            r = subprocess.run(["rm", "-r", self.path(d)], capture_output=True, text=True)
            if r.returncode != 0:
                raise Failure("rm -r %s: %s" % (d, r.stderr.strip()))
            for p in fs:
                self.del_file(p)
        for x in ds + [d]:
            self.dirs.discard(x)
            self.deleted.add(x)

    def op_cp_tree(self):
        """cp -r of a folder inside the tree (copy_file_range)."""
        if not self.dirs:
            return
        src = self.random_dir()
        fs, ds = self.under(src)
        dst = self.new_path("c")
        if not src or dst.startswith(src + "/"):
            return
        self.note("cp -r %s %s (%d files)" % (src, dst, len(fs)))
        r = subprocess.run(["cp", "-r", self.path(src), self.path(dst)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            if "No space left" not in r.stderr:
                raise Failure("cp -r %s %s: %s" % (src, dst, r.stderr.strip()))
            self.stats["enospc"] += 1
            self.may_change([dst + p[len(src):] for p in fs],
                            {dst + p[len(src):]: [self.files[p]] for p in fs},
                            [dst] + [dst + d[len(src):] for d in ds])
            self.verify("after a cp that hit ENOSPC")
            return
        for p in fs:
            self.set_file(dst + p[len(src):], self.files[p])
        for d in ds + [src]:
            self.dirs.add(dst + d[len(src):])
            self.deleted.discard(dst + d[len(src):])

    def make_local_tree(self, nfiles):
        """A folder outside the mount: {relative path: data}."""
        local = os.path.join(self.src, self.name("t"))
        os.makedirs(os.path.join(local, "sub"))
        tree = {}
        for i in range(nfiles):
            rel = ("sub/" if i % 2 else "") + "x%d" % i
            data = self.content(self.rng.choice([0, 3000, 200000, MiB, 2 * MiB]))
            with open(os.path.join(local, rel), "wb") as f:
                f.write(data)
            tree[rel] = data
        return local, tree

    def op_cp_import(self):
        """cp -r of a folder from outside into the tree."""
        local, tree = self.make_local_tree(self.rng.randrange(1, 6))
        dst = self.new_path("i")
        if "/" not in dst:
            dst = "m1/" + dst
        self.note("cp -r <local %d files> %s" % (len(tree), dst))
        r = subprocess.run(["cp", "-r", local, self.path(dst)], capture_output=True, text=True)
        shutil.rmtree(local)
        names = {dst + "/" + p: [state_of(d)] for p, d in tree.items()}
        if r.returncode != 0:
            if "No space left" not in r.stderr:
                raise Failure("cp -r into %s: %s" % (dst, r.stderr.strip()))
            self.stats["enospc"] += 1
            self.may_change(list(names), names, [dst, dst + "/sub"])
            self.verify("after a cp that hit ENOSPC")
            return
        for p, st in names.items():
            self.set_file(p, st[0])
        self.dirs.update([dst, dst + "/sub"])

    def op_read(self):
        for _ in range(3):
            rel = self.random_file()
            if rel:
                self.note("read %s" % rel)
                self.read_file(rel)

    def op_gc(self):
        """Deletes several files, then waits for GC (dead chunks dropped,
        packs deleted or compacted)."""
        fs = self.mutable_files()
        victims = self.rng.sample(fs, min(len(fs), self.rng.randrange(1, 8)))
        self.note("gc: delete %d of %d files and wait" % (len(victims), len(fs)))
        for rel in victims:
            self.unlink(rel)
        self.wait_gc()

    def op_fill(self):
        """Fills the disk with incompressible files until ENOSPC, then
        deletes down to a third of the disk: space must come back."""
        d = "m2/" + self.name("fill")
        self.note("fill %s (free %d)" % (d, self.free_bytes()))
        os.mkdir(self.path(d))
        self.dirs.add(d)
        for i in range(200):
            rel = "%s/b%d" % (d, i)
            if not self.write(rel, self.rng.randbytes(self.rng.choice([MiB, 2 * MiB]))):
                break
        self.note("  full: free %d" % self.free_bytes())
        self.stats["fills"] += 1
        if self.rng.random() < 0.3:
            # a restart on a full disk: it must come up, so that files
            # can be deleted
            self.restart(self.rng.choice(["KILL", "umount"]))
        self.free_space()

    def free_space(self):
        """Deletes files until the model holds at most a third of the disk
        (in logical bytes); after GC a 1 MiB write must fit."""
        total = sum(st[0] for st in self.files.values())
        order = self.mutable_files()
        self.rng.shuffle(order)
        n = 0
        while total > self.disk_bytes // 3 and order:
            rel = order.pop()
            total -= self.files[rel][0]
            self.unlink(rel)
            n += 1
        self.note("free space: deleted %d files, %d bytes left in the model" % (n, total))
        for attempt in range(3):
            self.wait_gc()
            rel = "m0/" + self.name("after-free")
            if self.write(rel, self.rng.randbytes(MiB)):
                return
        raise Failure("deleting freed no space: the model holds %d bytes of a %d-byte disk, "
                      "GC ran, a 1 MiB write still gets ENOSPC (free %d; status %s)" %
                      (total, self.disk_bytes, self.free_bytes(), self.status()))

    # -- stops, crashes and fsck ------------------------------------------

    def restart(self, how, fsck=None):
        self.note("stop (%s)" % how)
        self.daemon.stop(how)
        if fsck is None:
            fsck = self.rng.choice([None, None, None, "check", "repair"])
        if fsck:
            self.run_fsck(fsck, crashed=(how == "KILL" or bool(self.pending)))
        self.daemon.start()
        self.stats["remounts"] += 1
        self.check_quarantine(how)
        self.verify("remount after %s" % how)
        if self.args.users:
            self.check_access()

    def check_quarantine(self, how):
        """Crashes abandon packs (a writer's new pack, never committed):
        recovery removes them.  quarantine/ is for packs whose catalog rows
        were lost, which never happens here; packs piling up there would
        fill the disk, crash after crash."""
        q = os.path.join(self.store, "quarantine")
        kept = sorted(os.listdir(q)) if os.path.isdir(q) else []
        if kept:
            raise Failure("after %s, %d packs were set aside in quarantine/ though no "
                          "catalog row was lost: %s" % (how, len(kept), " ".join(kept[:8])))

    def run_fsck(self, mode, crashed):
        """Plain fsck must find a cleanly stopped store sound (exit 0);
        after a crash it may report residue (exit 1), which --repair must
        clear.  The data check is the remount's verify()."""
        def fsck(*extra):
            r = subprocess.run([self.args.fsck, *extra, "--store", self.store],
                               capture_output=True, text=True)
            out = (r.stdout + r.stderr).strip()
            lines = out.splitlines()
            self.note("  llmfs-fsck %s -> %d%s" % (" ".join(extra), r.returncode, "".join(
                "\n        | " + x for x in lines[:8] + (["..."] if len(lines) > 8 else []))))
            if SANITIZER.search(out):
                raise Failure("sanitizer report from llmfs-fsck:\n" + out)
            return r.returncode, out
        rc, out = fsck()
        self.stats["fsck"] += 1
        if rc == 0 and mode == "check":
            return
        if rc != 0 and not (crashed and rc == 1):
            raise Failure("llmfs-fsck exited %d on a %s store:\n%s" % (
                rc, "crashed" if crashed else "cleanly stopped", out[-3000:]))
        rc, out = fsck("--repair")
        self.stats["repairs"] += 1
        if rc != 0:
            raise Failure("llmfs-fsck --repair exited %d:\n%s" % (rc, out[-3000:]))
        rc, out = fsck()
        if rc != 0:
            raise Failure("llmfs-fsck after --repair exited %d:\n%s" % (rc, out[-3000:]))

    def op_remount(self):
        self.restart("umount")

    def op_kill_idle(self):
        self.restart(self.rng.choice(["KILL", "KILL", "TERM"]))

    def op_term_write(self):
        self.op_crash_write("TERM")

    def op_crash_write(self, how="KILL"):
        """1 to 3 writers stopped in the middle of their files (some after
        an fsync), then the daemon is killed (or stopped with SIGTERM, the
        documented way to stop it)."""
        writers = []
        for i in range(self.rng.randrange(1, 4)):
            rel = self.random_file() if self.rng.random() < 0.5 else None
            if rel:
                if any(w[0] == rel for w in writers):
                    continue
            else:
                rel = self.new_path()
                if "/" not in rel:
                    rel = "m0/" + rel
            data = self.content(self.rng.randrange(300000, 3 * MiB))
            blocks = len(data) // 65536
            stop = self.rng.randrange(1, blocks) * 65536
            fsync_at = (self.rng.randrange(1, stop // 65536 + 1) * 65536
                        if self.rng.random() < 0.3 else -1)
            writers.append((rel, data, stop, fsync_at))
        self.note("crash-write (%s): %s" % (how, "; ".join(
            "%s %d stop %d fsync %d" % (w[0], len(w[1]), w[2], w[3]) for w in writers)))
        procs = []
        for k, (rel, data, stop, fsync_at) in enumerate(writers):
            procs.append(self.spawn_writer(rel, data, stop, fsync_at, k))
        new = {}
        for (rel, data, stop, fsync_at), (p, mark, closed) in zip(writers, procs):
            self.wait_mark(p, mark, rel)
            new[rel] = [state_of(data[:fsync_at])] if fsync_at >= 0 else []
        self.may_change([w[0] for w in writers], new)
        self.stats["crash_writes"] += 1
        self.daemon.stop(how)
        self.end_children()
        self.restart_after_crash(how)

    def op_race_write(self):
        """A writer writes a whole file and closes while the daemon is
        killed at a random moment: if close() returned, the new content is
        committed; if not, either may be there."""
        rel = self.random_file() if self.rng.random() < 0.5 else None
        if rel is None:
            rel = "m0/" + self.name("r")
        data = self.content(self.rng.randrange(100000, 2 * MiB))
        delay = self.rng.uniform(0, 0.6)
        self.note("race-write %s %d, kill -9 after %.2fs" % (rel, len(data), delay))
        p, mark, closed = self.spawn_writer(rel, data, -1, -1, 0)
        time.sleep(delay)
        self.daemon.stop("KILL")
        p.wait()
        if os.path.exists(closed):
            self.note("  close() had returned")
            self.set_file(rel, state_of(data))
        else:
            self.may_change([rel], {rel: [state_of(data)]})
        self.end_children()
        self.restart_after_crash("KILL")

    def op_crash_cp(self):
        """kill -9 while cp -r copies a folder in."""
        local, tree = self.make_local_tree(self.rng.randrange(2, 6))
        dst = "m1/" + self.name("k")
        delay = self.rng.uniform(0, 0.5)
        self.note("crash-cp %d files into %s, kill -9 after %.2fs" % (len(tree), dst, delay))
        p = subprocess.Popen(["cp", "-r", local, self.path(dst)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.children.append(p)
        time.sleep(delay)
        self.daemon.stop("KILL")
        self.end_children()
        names = {dst + "/" + q: [state_of(d)] for q, d in tree.items()}
        self.may_change(list(names), names, [dst, dst + "/sub"])
        shutil.rmtree(local)
        self.restart_after_crash("KILL")

    def op_crash_gc(self):
        """kill -9 while GC collects (or compacts) after deletes."""
        fs = self.mutable_files()
        victims = self.rng.sample(fs, min(len(fs), self.rng.randrange(1, 10)))
        delay = self.rng.uniform(0.8, 2.5)
        self.note("crash-gc: delete %d of %d files, kill -9 after %.2fs" % (len(victims), len(fs),
                                                                          delay))
        for rel in victims:
            self.unlink(rel)
        time.sleep(delay)
        self.daemon.stop("KILL")
        self.restart_after_crash("KILL")

    def restart_after_crash(self, how):
        fsck = self.rng.choice([None, None, "check", "repair"])
        if fsck:
            self.run_fsck(fsck, crashed=True)
        self.daemon.start()
        self.stats["remounts"] += 1
        self.check_quarantine(how)
        self.verify("remount after %s" % how)
        if self.args.users:
            self.check_access()

    def spawn_writer(self, rel, data, stop, fsync_at, k):
        srcf = os.path.join(self.src, "w%d" % k)
        with open(srcf, "wb") as f:
            f.write(data)
        mark = os.path.join(self.dir, "mark.%d" % k)
        closed = os.path.join(self.dir, "closed.%d" % k)
        for m in (mark, closed):
            if os.path.exists(m):
                os.unlink(m)
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child-write",
                              srcf, self.path(rel), mark, str(stop), str(fsync_at), closed],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.children.append(p)
        return p, mark, closed

    def wait_mark(self, p, mark, rel):
        end = time.monotonic() + MOUNT_DEADLINE
        while not os.path.exists(mark):
            if p.poll() is not None:
                raise Failure("writer of %s ended (status %d) before its stop point" %
                              (rel, p.returncode))
            if time.monotonic() > end:
                raise Failure("writer of %s did not reach its stop point" % rel)
            time.sleep(0.02)

    def end_children(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.children = []

    # -- access (--users) ---------------------------------------------------

    def setup_access(self):
        acl = self.path("acl")
        os.mkdir(acl, 0o755)
        os.mkdir(os.path.join(acl, "private"), 0o700)
        for name, mode in (("public", 0o644), ("secret", 0o600)):
            p = os.path.join(acl, name)
            with open(p, "wb") as f:
                f.write(b"root's %s file\n" % name.encode())
            os.chmod(p, mode)

    def access_path(self, rel):
        if rel.startswith("@/"):
            return os.path.join(self.mnt, rel[2:])
        return self.path(rel)

    def check_access(self):
        """ACCESS_RULES, run as the throwaway user (after every remount:
        modes must survive them too)."""
        # root's task: a folder in paths/ (never submitted; tasks live as
        # long as the daemon, so it is made again after a remount)
        task = os.path.join(self.mnt, "paths", "t-root")
        if not os.path.isdir(task):
            os.mkdir(task)
        for what, op, p, q, want in ACCESS_RULES:
            # the system's python: the user may not reach this one's folder
            py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            argv = [py, "-c", PROBE, op, self.access_path(p)]
            if q:
                argv.append(self.access_path(q))
            r = subprocess.run(argv, capture_output=True, text=True, user=self.uid,
                               group=self.gid, extra_groups=[], cwd="/")
            got = r.stdout.strip() or r.stderr.strip()
            if got != want:
                raise Failure("access: %s: %s %s gave %s, expected %s" % (what, op, p, got, want))
        self.stats["access_checks"] += len(ACCESS_RULES)

    # -- the run ------------------------------------------------------------

    OPS = [  # (weight, method)
        (20, "op_create"), (9, "op_overwrite"), (7, "op_append"), (6, "op_truncate"),
        (8, "op_rename"), (10, "op_delete"), (5, "op_mkdir"), (3, "op_rmdir"),
        (3, "op_cp_tree"), (3, "op_cp_import"), (5, "op_read"), (4, "op_gc"),
        (0.7, "op_fill"), (2, "op_remount"), (2, "op_kill_idle"), (2, "op_crash_write"),
        (1.5, "op_term_write"),
        (1.5, "op_race_write"), (1, "op_crash_cp"), (2, "op_crash_gc"),
    ]

    def choose(self):
        ops = [(w, m) for w, m in self.OPS if m[3:] not in self.args.without]
        # Near a full disk (or a model as big as the disk) deletes first,
        # so that the run goes on rather than failing every write.
        logical = sum(st[0] for st in self.files.values())
        if self.free_bytes() < self.disk_bytes // 4 or logical > 2 * self.disk_bytes:
            ops = [(w * (6 if m in ("op_delete", "op_gc", "op_rmdir") else 1), m)
                   for w, m in ops if m != "op_fill"]
        total = sum(w for w, _ in ops)
        x = self.rng.uniform(0, total)
        for w, m in ops:
            x -= w
            if x <= 0:
                return m
        return ops[-1][1]

    def run(self):
        a = self.args
        print("# torture: seed %d, pack_max %d, disk %d MiB, %s" % (
            self.seed, self.pack_max, a.disk_mb,
            ("%d ops" % a.ops if a.ops else "") +
            (" %g minutes" % a.minutes if a.minutes else "")), flush=True)
        self.daemon.start()
        for d in ("m0", "m1", "m2"):
            os.mkdir(self.path(d))
            self.dirs.add(d)
        if a.users:
            self.setup_access()
            self.dirs.update(["acl", "acl/private"])
            self.files["acl/public"] = state_of(b"root's public file\n")
            self.files["acl/secret"] = state_of(b"root's secret file\n")
            self.check_access()
        end = time.monotonic() + a.minutes * 60 if a.minutes else None
        while True:
            if a.ops and self.opnum >= a.ops:
                break
            if end and time.monotonic() > end:
                break
            self.opnum += 1
            getattr(self, self.choose())()
            self.stats["ops"] += 1
            self.daemon.check_alive()
        self.note("final: remount and verify")
        self.restart("umount", fsck="check")
        self.daemon.stop("umount")
        self.run_fsck("check", crashed=False)

    def report(self, ok):
        s = self.stats
        print("# torture %s: seed %d, %d ops, %d kills (-9), %d SIGTERMs, %d remounts, "
              "%d fsck runs (%d --repair), %d verifies, %d files and %d bytes verified, "
              "%d bytes written, %d ENOSPC, %d disk fills, %d GC waits, "
              "%d access checks, failures: %d" % (
                  "passed" if ok else "FAILED", self.seed, s["ops"], s["kills"], s["terms"],
                  s["remounts"], s["fsck"], s["repairs"], s["verifies"], s["files_verified"],
                  s["bytes_verified"], s["bytes_written"], s["enospc"], s["fills"],
                  s["gc_waits"], s["access_checks"], 0 if ok else 1),
              flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child-write":
        a = sys.argv[2:]
        return child_write(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llmfs", default=os.environ.get("LLMFS", "build/fs/llmfs"))
    ap.add_argument("--fsck", default=os.environ.get("LLMFS_FSCK", "build/tools/llmfs-fsck"))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ops", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--disk-mb", type=int, default=64)
    ap.add_argument("--pack-max", type=int, default=0)
    ap.add_argument("--users", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--without", default="",
                    help="operations left out, comma-separated (e.g. term_write,fill): "
                         "to look past a known failure")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.seed is None:
        env = os.environ.get("TORTURE_SEED")
        args.seed = int(env) if env else int.from_bytes(os.urandom(4), "little")
    if args.minutes is None and os.environ.get("TORTURE_MINUTES"):
        args.minutes = float(os.environ["TORTURE_MINUTES"])
    if not args.ops and not args.minutes:
        args.ops = 300
    args.without = set(filter(None, args.without.split(",")))
    args.llmfs = os.path.abspath(args.llmfs)
    args.fsck = os.path.abspath(args.fsck)

    t = Torture(args)
    # SIGTERM and SIGHUP (meson's timeout) end the run through the finally.
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda n, f: sys.exit(128 + n))
    ok = False
    try:
        t.setup()
        t.run()
        ok = True
    except Skip as e:
        print("1..0 # SKIP torture: %s" % e)
        t.cleanup()
        return 77
    except (Failure, Exception) as e:
        if not isinstance(e, Failure):
            import traceback
            traceback.print_exc()
        print("# FAILED at op %d (seed %d): %s" % (t.opnum, t.seed, e))
        print("# last operations:")
        for line in t.oplog:
            print("#   " + line)
        d = getattr(t, "daemon", None)
        if d and d.log:
            print("# daemon log tail:\n" + d.tail(15))
        print("# reproduce (as root): python3 %s --llmfs %s --fsck %s --seed %d %s" % (
            os.path.abspath(__file__), args.llmfs, args.fsck, t.seed,
            "--ops %d" % args.ops if args.ops else "--minutes %g" % args.minutes)
              + (" --pack-max %d" % t.pack_max if args.pack_max else "")
              + (" --users" if args.users else "")
              + (" --without " + ",".join(sorted(args.without)) if args.without else ""))
    finally:
        if t.dir:
            t.report(ok)
        t.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
