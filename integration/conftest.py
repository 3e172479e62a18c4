"""Shared fixtures for Jail's integration tests.

They run the built `jaild` and `jail` binaries for real, as root: real namespaces, real
ptys, real pipes. Every test cleans up what it started (by pid), even when it fails.
Under CI=true a test that cannot run is a failure, never a skip.
"""
import hashlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pexpect
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("JAIL_BIN_DIR", REPO / ".build" / "release"))
JAILD = str(BIN / "jaild")
JAIL = str(BIN / "jail")
CACHE = pathlib.Path(os.environ.get("JAIL_TEST_CACHE", "/var/tmp/jail-test-cache"))
UID_A, UID_B = 61000, 61001


def pytest_collection_modifyitems(config, items):
    problems = []
    if os.geteuid() != 0:
        problems.append("integration tests need root")
    for binary in (JAILD, JAIL):
        if not os.access(binary, os.X_OK):
            problems.append(f"{binary} is not built")
    if not problems:
        return
    if os.environ.get("CI") == "true":
        # A skipped integration test in CI is a failure.
        raise pytest.UsageError("; ".join(problems))
    for item in items:
        item.add_marker(pytest.mark.skip(reason="; ".join(problems)))


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
    except FileNotFoundError:
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

    def command(self):
        cmd = [JAILD, "-u", str(self.uid)]
        if self.root:
            cmd += ["-r", str(self.root)]
        if self.prefix:
            cmd += ["-a", self.prefix]
        return cmd + self.args

    def start(self):
        result = subprocess.run(self.command(), capture_output=True, text=True, timeout=30)
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


def cached_debian_rootfs():
    """The Debian 12 rootfs of the ssh and services tests (scripts/make-debian-rootfs), built
    once per machine and cached: tests copy it. A new key whenever the script's packages change."""
    cached = CACHE / f"debian-bookworm-v3-{UID_A}"
    if not (cached / "usr" / "sbin" / "sshd").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(REPO / "scripts" / "make-debian-rootfs"), str(cached), str(UID_A),
                        "Jail test Debian rootfs"], check=True, timeout=900)
    return cached


def build_rootfs(path, uid, issue):
    if not (path / "bin" / "busybox").exists():
        subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(path), str(uid), issue], check=True)
    return path


@pytest.fixture(scope="session")
def rootfs_a(tmp_path_factory):
    return build_rootfs(tmp_path_factory.mktemp("rootfs") / "a", UID_A, "Jail test rootfs A")


@pytest.fixture(scope="session")
def rootfs_b(tmp_path_factory):
    return build_rootfs(tmp_path_factory.mktemp("rootfs") / "b", UID_B, "Jail test rootfs B")


@pytest.fixture
def public_tmp():
    """A temporary directory every user can reach (pytest's tmp_path is private to root)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="jail-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def jail_a(rootfs_a):
    jail = Jail(rootfs_a, UID_A)
    jail.start()
    yield jail
    jail.stop()


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


@pytest.fixture(scope="session")
def installed_jail(tmp_path_factory):
    """The `jail` client (and jaild beside it) where every account can execute it: a login
    shell, or a rootless jail's programs."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="jail-bin-", dir="/tmp"))
    os.chmod(path, 0o755)
    for binary in (JAIL, JAILD):
        shutil.copy2(binary, path)
        os.chmod(path / os.path.basename(binary), 0o755)
    yield str(path / "jail")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host_accounts(installed_jail, public_tmp):
    """Host accounts centos (61000) and debian (61001) with `jail` as their login shell."""
    accounts = {}
    try:
        for name, uid in (("centos", UID_A), ("debian", UID_B)):
            accounts[name] = HostAccount(name, uid, installed_jail, public_tmp).create()
        yield accounts
    finally:
        for account in accounts.values():
            account.delete()


def leave_shell(child, code):
    """Types `exit CODE` into an interactive session (a pexpect child) and returns the
    client's exit status once it has ended."""
    child.sendline(f"exit {code}")
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def resize_reaches_the_foreground_job(child, rows, cols, shell="sh"):
    """Resizes the client's terminal (pexpect) and checks that the jail's foreground job gets
    SIGWINCH and sees the new size. The job is a non-interactive shell that traps WINCH and
    runs the trap between its sleeps; its markers are computed so the echoed command line
    cannot match them."""
    child.sendline(f"{shell} -c 'trap \"echo winch-$((1+1)); stty size; exit\" WINCH; "
                   "echo armed-$((2+3)); while :; do sleep 0.05; done'")
    child.expect("armed-5")
    child.setwinsize(rows, cols)
    child.expect("winch-2")
    child.expect(f"{rows} {cols}")


# ---- the attack probe (integration/probe/jailprobe.c) --------------------------------------------

@pytest.fixture(scope="session")
def probe_binary(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "jailprobe"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(REPO / "integration" / "probe" / "jailprobe.c")],
                   check=True)
    return out


def install_probe(root, probe_binary):
    """/bin/jailprobe for the user, /bin/rootprobe setuid root: root inside, as a tenant gets it."""
    shutil.copy(probe_binary, root / "bin" / "jailprobe")
    os.chmod(root / "bin" / "jailprobe", 0o755)
    shutil.copy(probe_binary, root / "bin" / "rootprobe")
    os.chown(root / "bin" / "rootprobe", 0, 0)
    os.chmod(root / "bin" / "rootprobe", 0o4755)
    return root


@pytest.fixture(scope="session")
def rootfs_sec(tmp_path_factory, probe_binary):
    return install_probe(build_rootfs(tmp_path_factory.mktemp("rootfs") / "sec", UID_A, "Jail security rootfs"),
                         probe_binary)


@pytest.fixture(scope="session")
def rootfs_sec_b(tmp_path_factory, probe_binary):
    return install_probe(build_rootfs(tmp_path_factory.mktemp("rootfs") / "secb", UID_B, "Jail security rootfs B"),
                         probe_binary)


def probe(jail, *args, root=True):
    program = "/bin/rootprobe" if root else "/bin/jailprobe"
    result = jail.run(None, args=["-c", " ".join([program, *args])])
    return result.stdout.decode()


def outcome(jail, name, *args, root=True):
    text = probe(jail, name, *args, root=root)
    match = re.search(rf"^{re.escape(name)}: (\S+)$", text, re.M)
    assert match, text
    return match.group(1)




@pytest.fixture(scope="session")
def debian_cache():
    """The cached Debian bookworm rootfs (openssh-sftp-server, rsync; user work = 61000),
    built once by scripts/make-debian-rootfs. Tests copy it or use it as a read-only base."""
    return cached_debian_rootfs()
