"""Starting, using and stopping jails from Python, for the integration tests (through
conftest.py) and for scripts/bench alike: one copy of the process helpers and of `Jail`.

Plain Python 3 with no pytest, so the benchmark script can import it too. Everything it
starts it stops by pid; nothing here touches a process it did not start.
"""
import hashlib
import os
import pathlib
import signal
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
