"""Shared fixtures for Jail's integration tests.

They run the built `jaild` and `jail` binaries for real, as root: real namespaces, real
ptys, real pipes. Every test cleans up what it started (by pid), even when it fails.
Under CI=true a test that cannot run is a failure, never a skip.
"""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pexpect
import pytest

from harness import (  # noqa: F401  (re-exported: tests import them from conftest)
    REPO, BIN, JAILD, JAIL, CACHE, UID_A, UID_B, wait_for, pid_alive,
    children_of, descendants, session_children, jail_descendants, spare_helper, SPARE_HELPER, as_user, sha256, Jail, cached_debian_rootfs, build_rootfs, mounts_under, HostAccount,
    Foreground, jail_cgroups, cgroup_of, Provisioning, PROVISION_ISSUE, HOST_FILES, tree_listing,
    Lxcfs, give_back_range,
)


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


USERNS_RANGES = pathlib.Path("/var/lib/jail/userns")
# The host directories jaild makes for its records (user-namespace ranges and their index,
# chosen loopback addresses), deepest first.
JAILD_STATE_DIRECTORIES = [USERNS_RANGES / "by-name", USERNS_RANGES, pathlib.Path("/var/lib/jail/loopback"),
                           pathlib.Path("/var/lib/jail")]


@pytest.fixture(scope="session", autouse=True)
def jaild_state_directories_are_removed():
    """The directories of jaild's records that this run made go at its end, once empty (the
    records themselves go with the fixtures that took them: ranges, loopback addresses)."""
    made_here = [path for path in JAILD_STATE_DIRECTORIES if not path.exists()]
    yield
    for path in made_here:
        # jaild's marker that every range is indexed (Supervisor/UserRangeStore.swift): with no
        # range left it says nothing, and it would keep the index directory.
        marker = path / ".complete"
        if path == USERNS_RANGES / "by-name" and path.is_dir() and [p.name for p in path.iterdir()] == [".complete"]:
            marker.unlink()
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as error:  # not empty: something of the host's, or a record a test left
            print(f"kept {path}: {error.strerror}")


@pytest.fixture(scope="session", autouse=True)
def userns_ranges_are_given_back(jaild_state_directories_are_removed):
    """jaild keeps a jail's id range for its next start (a file per range, and its line
    `root:START:65536` in /etc/subuid and /etc/subgid); the ranges the tests' jails took are
    given back at the end, so test runs do not fill the pool."""
    before = set(USERNS_RANGES.glob("*.range")) if USERNS_RANGES.is_dir() else set()
    yield
    if USERNS_RANGES.is_dir():
        for path in set(USERNS_RANGES.glob("*.range")) - before:
            give_back_range(path)


EXECUTABLE_CACHE = pathlib.Path("/var/cache/jail")


@pytest.fixture(scope="session", autouse=True)
def executable_cache_is_removed():
    """A root start keeps a copy of jaild in /var/cache/jail (Supervisor/ExecutableCache.swift);
    the copies this run made go at its end, with the directory if this run made it."""
    before = set(EXECUTABLE_CACHE.iterdir()) if EXECUTABLE_CACHE.is_dir() else None
    yield
    if EXECUTABLE_CACHE.is_dir():
        for path in set(EXECUTABLE_CACHE.iterdir()) - (before or set()):
            path.unlink(missing_ok=True)
        if before is None and not any(EXECUTABLE_CACHE.iterdir()):
            EXECUTABLE_CACHE.rmdir()


@pytest.fixture(scope="session", autouse=True)
def jail_log_files_are_removed():
    """Without a host syslog, the tests' jails log to /var/log/jail/NAME.log (and the relay's
    lines of their /dev/log go there too): the files this run made go at the end."""
    directory = pathlib.Path("/var/log/jail")
    before = set(directory.iterdir()) if directory.is_dir() else None
    yield
    if directory.is_dir():
        for path in set(directory.iterdir()) - (before or set()):
            path.unlink(missing_ok=True)
        if before is None and not any(directory.iterdir()):
            directory.rmdir()


@pytest.fixture(scope="session", autouse=True)
def host_sshd_and_group_are_left_as_found(tmp_path_factory):
    """`jaild create` installs its sshd drop-in and makes the host group `jail` when they are
    absent, and keeps both at destroy (they are the host's, for every tenant). The tests' creates
    put the drop-in in a directory of their own (tests that check it set their own), and the
    group goes again at the end if this run made it."""
    had_group = subprocess.run(["getent", "group", "jail"], capture_output=True).returncode == 0
    os.environ.setdefault("JAIL_SSHD_CONFIG_DIR", str(tmp_path_factory.mktemp("sshd_config.d")))
    yield
    if not had_group and subprocess.run(["getent", "group", "jail"], capture_output=True).returncode == 0:
        subprocess.run(["groupdel", "jail"], check=False)


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


@pytest.fixture
def foreground(rootfs_a, tmp_path):
    """Starts `jaild -c` on rootfs A with the given options (its log in a file: `.text()`);
    every one started is stopped at the end."""
    started = []

    def start(*args, env=None):
        jail = Foreground(rootfs_a, list(args), tmp_path / f"jaild-{len(started)}.log", env=env)
        started.append(jail)
        return jail
    yield start
    for jail in started:
        jail.stop()


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
def prov(installed_jail):
    """`jaild create`, `start`, `destroy` with jaild's config and state roots in a temporary
    directory (JAIL_CONFIG_DIR, JAIL_STATE_DIR) holding the busybox base `busybox`; every tenant
    made through it is destroyed at the end. The host group of every tenant, `jail`, is there
    before (so that snapshots compare the tenants' own changes; test_ssh_forwarding.py tests its
    making) and goes after if this fixture made it."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-prov-", dir="/tmp"))
    os.chmod(base, 0o755)
    p = Provisioning(base, installed_jail)
    (p.state / "bases").mkdir(parents=True)
    p.conf.mkdir()
    (base / "sshd_config.d").mkdir()
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(p.state / "bases" / "busybox"), "61000",
                    PROVISION_ISSUE], check=True, capture_output=True)
    made_group = subprocess.run(["groupadd", "-r", "jail"], capture_output=True).returncode == 0
    try:
        yield p
    finally:
        p.cleanup()
        if made_group:
            subprocess.run(["groupdel", "jail"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


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


@pytest.fixture(params=[(), ("--no-userns",)], ids=["userns", "no-userns"])
def probe_jail(rootfs_sec, request):
    """A jail on the probe rootfs, once with its user namespace (the default) and once without:
    the attacks that must fail either way."""
    with Jail(rootfs_sec, UID_A, list(request.param)) as running:
        yield running


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
