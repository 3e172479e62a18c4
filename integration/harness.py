"""Starting, using and stopping jails from Python, for the integration tests (through
conftest.py) and for scripts/bench alike: one copy of the process helpers and of `Jail`.

Plain Python 3 with no pytest, so the benchmark script can import it too. Everything it
starts it stops by pid; nothing here touches a process it did not start.
"""
import errno
import hashlib
import os
import pathlib
import signal
import stat
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("JAIL_BIN_DIR", REPO / ".build" / "release"))
JAILD = str(BIN / "jaild")
JAIL = str(BIN / "jail")
CACHE = pathlib.Path(os.environ.get("JAIL_TEST_CACHE", "/var/tmp/jail-test-cache"))
UID_A, UID_B = 61000, 61001


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls a condition with a bounded timeout (the condition is the event waited for)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Reaped between the kill and the read: reading its stat then fails with ESRCH.
        return False


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def descendants(pid):
    out = []
    for child in children_of(pid):
        out.append(child)
        out.extend(descendants(child))
    return out


def as_user(uid, gid=None, groups=()):
    gid = uid if gid is None else gid

    def demote():
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
    return demote


def smaps_rollup(pid):
    """The byte counts of /proc/PID/smaps_rollup (Rss, Pss, ...); empty if the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


# The session helper jaild forks ahead of the next session (Init+Spare.swift); it is replaced
# after every session, so tests that count a jail's processes leave it out.
SPARE_HELPER = "jaild: spare"


def is_spare(pid):
    """The spare, also in the instant after init forked it, before it has its own title."""
    title = cmdline(pid)
    return title == SPARE_HELPER or title.startswith("jaild: init")


# The syslog relay serves every jail's /dev/log (on by default since issue 31, --no-syslog):
# a child of init for the jail's whole life, like the spare not a session.
SYSLOG_RELAY = "jaild: syslog relay"


def is_resident(pid):
    """The spare or the syslog relay: init's children that are there whatever sessions run."""
    return is_spare(pid) or cmdline(pid) == SYSLOG_RELAY


def session_children(init_pid):
    """init's children but the spare and the syslog relay: session helpers, boot commands, services."""
    return [p for p in children_of(init_pid) if not is_resident(p)]


def jail_descendants(init_pid):
    """Every process below init but the spare and the syslog relay."""
    return [p for p in descendants(init_pid) if not is_resident(p)]


def spare_helper(init_pid):
    """The spare's pid, or None (none while the jail is full or stopping, or just after a session)."""
    return next((p for p in children_of(init_pid) if cmdline(p) == SPARE_HELPER), None)


def cmdline(pid):
    """A process's command line as one string (its proctitle, for jaild's processes)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Jail:
    """One running jaild, started by a test and stopped by it (by pid) at the end."""

    def __init__(self, root, uid, args=(), prefix=None, tmp=None):
        self.root = root
        self.uid = uid
        self.args = list(args)
        self.prefix = prefix
        base = (prefix or "/run/jail/jaild") + f"-{uid}-{uid}"
        self.socket = base + ".sock"
        self.pidfile = base + ".pid"
        self.supervisor = None
        self.init_pid = None
        self.start_seconds = None

    def command(self):
        cmd = [JAILD, "-u", str(self.uid)]
        if self.root:
            cmd += ["-r", str(self.root)]
        if self.prefix:
            cmd += ["-a", self.prefix]
        return cmd + self.args

    def start(self):
        """Runs jaild (it returns once the socket accepts sessions); `start_seconds` is how
        long that took."""
        began = time.perf_counter()
        result = subprocess.run(self.command(), capture_output=True, text=True, timeout=30)
        self.start_seconds = time.perf_counter() - began
        assert result.returncode == 0, f"jaild failed: {result.stderr}"
        assert result.stdout == ""
        self.supervisor = int(open(self.pidfile).read())
        kids = children_of(self.supervisor)
        assert len(kids) == 1, kids
        self.init_pid = kids[0]
        return self

    def all_pids(self):
        return [self.supervisor] + descendants(self.supervisor)

    def run(self, script, uid=None, input=b"", timeout=60, env=None, args=None):
        """Runs `jail -c script` as the jail user in stdio mode."""
        argv = [JAIL] + (args if args is not None else ["-c", script])
        environment = {"JAIL_SOCKET": self.socket, "PATH": "/usr/bin:/bin"}
        environment.update(env or {})
        return subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                              env=environment, preexec_fn=as_user(self.uid if uid is None else uid))

    def stop(self, timeout=30):
        if self.supervisor is None or not pid_alive(self.supervisor):
            return
        pids = self.all_pids()
        os.kill(self.supervisor, signal.SIGTERM)
        try:
            wait_for(lambda: not any(pid_alive(p) for p in pids), timeout, "the jail to stop")
        finally:
            for p in pids:
                if pid_alive(p):
                    os.kill(p, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Lxcfs:
    """lxcfs in the foreground on a directory of its own (for `--lxcfs-directory`), so nothing of
    the host's lxcfs is used; `stop` ends it and unmounts."""

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(exist_ok=True)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["lxcfs", "-f", "-p", str(self.directory) + ".pid", str(self.directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (self.directory / "proc" / "meminfo").exists() or self.proc.poll() is not None, 10, "lxcfs")
        assert self.proc.poll() is None, "lxcfs exited"
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # A daemon that died leaves its mount (ENOTCONN): gone too.
        if os.path.ismount(self.directory) or self.disconnected():
            subprocess.run(["umount", "-l", str(self.directory)], capture_output=True)

    def disconnected(self):
        try:
            os.stat(self.directory)
            return False
        except OSError as error:
            return error.errno == errno.ENOTCONN


USERNS_RANGES = pathlib.Path("/var/lib/jail/userns")


def give_back_range(path):
    """Gives back an id range jaild kept for a jail's next start (USERNS_RANGES/START.range):
    the file, its line `root:START:65536` in /etc/subuid and /etc/subgid, and the index entries
    (by-name/JAIL -> ../START.range) that point nowhere now."""
    path = pathlib.Path(path)
    path.unlink(missing_ok=True)
    # jaild's stamp of the range's last passed check (Supervisor/AccountsStamp.swift).
    path.with_suffix(".checked").unlink(missing_ok=True)
    reservation = f"root:{path.name[:-len('.range')]}:65536"
    for name in ("/etc/subuid", "/etc/subgid"):
        lines = pathlib.Path(name).read_text().splitlines(keepends=True)
        if any(line.strip() == reservation for line in lines):
            pathlib.Path(name).write_text("".join(line for line in lines if line.strip() != reservation))
    index = path.parent / "by-name"
    for entry in (index.iterdir() if index.is_dir() else []):
        if entry.is_symlink() and not entry.exists():
            entry.unlink(missing_ok=True)


def cached_debian_rootfs(variant=None):
    """The Debian 12 rootfs of the ssh and services tests (scripts/make-debian-rootfs), built
    once per machine and cached: tests copy it. A new key whenever the script's packages change.
    `variant` "systemd" (systemd, dbus, nginx: issue 30's booted jails) or "sysvinit"
    (sysvinit-core, cron's .deb in /root) is an entry of its own."""
    if variant is None:
        cached = CACHE / f"debian-bookworm-v4-{UID_A}"
        flags, issue = [], "Jail test Debian rootfs"
    else:
        assert variant in ("systemd", "sysvinit"), variant
        cached = CACHE / f"debian-bookworm-{variant}-v2-{UID_A}"
        flags, issue = [f"--{variant}"], f"Jail test Debian rootfs ({variant})"
    if not (cached / "usr" / "sbin" / "sshd").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(REPO / "scripts" / "make-debian-rootfs")] + flags + [str(cached), str(UID_A), issue],
                       check=True, timeout=900)
    return cached


def build_rootfs(path, uid, issue):
    if not (path / "bin" / "busybox").exists():
        subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(path), str(uid), issue], check=True)
    return path


def mounts_under(path):
    path = str(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


class HostAccount:
    """A host login account whose shell is `jail`, created by a test and deleted after it."""

    def __init__(self, name, uid, shell, home):
        self.name, self.uid, self.shell, self.home = name, uid, shell, home

    def create(self):
        try:
            import pwd
            existing = pwd.getpwnam(self.name)
        except KeyError:
            existing = None
        if existing is not None:
            raise AssertionError(f"host account {self.name} already exists (uid {existing.pw_uid}); "
                                 "the tests create and delete it themselves")
        subprocess.run(["groupadd", "-g", str(self.uid), self.name], check=True)
        subprocess.run(["useradd", "-u", str(self.uid), "-g", str(self.uid), "-M", "-d", str(self.home),
                        "-s", self.shell, self.name], check=True)
        # "*": no password, but not locked ("!"), which sshd would refuse even for a key.
        subprocess.run(["usermod", "-p", "*", self.name], check=True)
        return self

    def delete(self):
        subprocess.run(["userdel", self.name], capture_output=True)
        subprocess.run(["groupdel", self.name], capture_output=True)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HostSshd:
    """Debian's sshd on 127.0.0.1 at a free port, key authentication only, for the given
    accounts: the host's sshd that logs accounts into their jails. `extra` is appended to its
    config; `include`, a directory, is Included first, as Debian's sshd_config Includes
    /etc/ssh/sshd_config.d. Stopped by pid; the privilege-separation directory it made is removed."""

    def __init__(self, base, users, extra="", include=None):
        self.base, self.users, self.extra = pathlib.Path(base), list(users), extra
        self.include = include
        self.port = free_port()
        self.process = None
        self.made_privsep_dir = False

    def start(self):
        host_key = self.base / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        if not os.path.isdir("/run/sshd"):
            os.mkdir("/run/sshd", 0o755)
            self.made_privsep_dir = True
        config = self.base / "sshd_config"
        first = f"Include {self.include}/*.conf\n" if self.include else ""
        config.write_text(first + f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {self.base / 'sshd.pid'}
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers {' '.join(self.users)}
LogLevel ERROR
""" + self.extra)
        self.process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        wait_for(self.accepting, 20, "sshd to listen")
        return self

    def accepting(self):
        import socket
        assert self.process.poll() is None, self.process.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(10)
        if self.made_privsep_dir:
            os.rmdir("/run/sshd")


CGROUP_ROOTS = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup"]


def jail_cgroups(uid=UID_A):
    """Every cgroup directory jaild made for this jail, in any hierarchy."""
    found = []
    for root in CGROUP_ROOTS:
        path = pathlib.Path(root) / "jail" / f"jail-{uid}-{uid}"
        if path.is_dir():
            found.append(path)
    return found


def cgroup_of(pid, controller):
    """The path of a process's cgroup in a v1 controller's hierarchy (or v2 with '')."""
    for line in open(f"/proc/{pid}/cgroup"):
        number, controllers, path = line.rstrip("\n").split(":", 2)
        if (controller == "" and number == "0") or controller in controllers.split(","):
            return path
    return None


class Foreground:
    """jaild -c, its log in a file, stopped by SIGTERM at the end (conftest's `foreground`)."""

    def __init__(self, root, args, log_path, env=None):
        self.log_path = log_path
        self.socket = f"/run/jail/jaild-{UID_A}-{UID_A}.sock"
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_A), "-r", str(root), *args], stdout=self.log,
                                     stderr=self.log, env=env)
        try:
            wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, 20, "the socket")
            assert self.proc.poll() is None, self.text()
            # The socket is bound before the jail is ready: a first session waits in the backlog.
            assert self.run("true").returncode == 0, self.text()
        except BaseException:
            self.stop()  # a start that failed halfway leaves no jail behind
            raise

    def text(self):
        return open(self.log_path, "rb").read().decode(errors="replace")

    def run(self, script, **kwargs):
        return subprocess.run([JAIL, "-c", script], capture_output=True, timeout=kwargs.pop("timeout", 60),
                              env={"JAIL_SOCKET": self.socket}, preexec_fn=as_user(UID_A), **kwargs)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- jaild create/destroy in a temporary directory (conftest's `prov`) ----------------------------

PROVISION_ISSUE = "Jail provision base"  # /etc/issue of the busybox base `prov` makes
HOST_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/shells", "/etc/subuid", "/etc/subgid")


def tree_listing(root):
    """Every entry beneath root with its type, mode, owner, size, mtime and content hash
    (symlink: its target; device: its number): equal listings are equal trees."""
    root = pathlib.Path(root)
    if not root.exists():
        return None
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = pathlib.Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = f"dev {st.st_rdev}"
            else:
                content = ""
            mtime = 0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            out.append((str(p.relative_to(root)), st.st_mode, st.st_uid, st.st_gid, st.st_size, mtime, content))
    return out


def destroy_tenants(names, jaild, jail_path):
    """`jaild destroy` of every tenant named (`jaild(*args)` runs jaild with the test's roots),
    its host account removed even when destroy is what broke, and the client's line that
    `jaild create` added to /etc/shells taken out."""
    for name in sorted(names):
        jaild("destroy", name, "--yes")
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
    shells = pathlib.Path("/etc/shells")
    lines = shells.read_text().splitlines(keepends=True)
    if any(line.strip() == jail_path for line in lines):
        shells.write_text("".join(line for line in lines if line.strip() != jail_path))


class Provisioning:
    """jaild with its config and state roots in a temporary directory; every tenant it made
    is destroyed at the end, whatever happened."""

    def __init__(self, base, jail_binary):
        self.base = base
        self.conf = base / "conf"
        self.state = base / "state"
        self.bin = pathlib.Path(jail_binary).parent
        self.jaild_path = str(self.bin / "jaild")
        self.jail_path = jail_binary
        self.names = set()
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JAIL_CONFIG_DIR": str(self.conf),
                    "JAIL_STATE_DIR": str(self.state), "JAIL_SSHD_CONFIG_DIR": str(base / "sshd_config.d")}

    def jaild(self, *args, check=False, **kwargs):
        result = subprocess.run([self.jaild_path, *args], capture_output=True, text=True, timeout=60, env=self.env,
                                **kwargs)
        if check:
            assert result.returncode == 0, f"jaild {' '.join(args)}: {result.stderr}"
        return result

    def create(self, name, uid, base, *extra, start=True):
        self.names.add(name)
        self.jaild("create", name, "--uid", str(uid), "--base", str(base), *extra, check=True)
        if start:
            # No warning either: the host account's name is an alias of the jail's user.
            assert "warning" not in self.jaild("start", name, check=True).stderr

    def destroy(self, name, *extra):
        result = self.jaild("destroy", name, "--yes", *extra)
        self.names.discard(name)
        return result

    def cleanup(self):
        destroy_tenants(self.names, self.jaild, self.jail_path)

    def session(self, uid, script):
        """`jail -c script` as the host uid: the default socket of uid:uid."""
        return subprocess.run([self.jail_path, "-c", script], capture_output=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin"}, preexec_fn=as_user(uid))

    def upper(self, name):
        return self.state / name / "upper"

    def snapshot(self):
        """The host as the bad-input and destroy tests compare it."""
        files = {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in HOST_FILES}
        return files, tree_listing(self.conf), tree_listing(self.state)
