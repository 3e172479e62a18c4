"""Hardening round three (issue 27), items 2 and 7.

Item 2: every directory root inside can write must be beyond every host user but root. A rootfs
beneath a 0750 root:GROUP directory used to start: root inside planted a setuid copy of the
probe (uid 0 on disk, through the idmapped mount, or as host root with --no-userns) and a member
of GROUP ran it with euid 0 on the host. Now the start is refused in one line naming the
directory and the fix, and so is a read-write bind mount or a POSIX ACL that reopens the way.

Item 7: a FIFO at the jail's /etc/passwd hung jaild (host root) before adoption, and a fresh
start forever. Now adoption reads nothing of the jail's tree, and a fresh start refuses a FIFO
/etc/passwd or /etc/group at once, in one line.
"""
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import pathlib

import pytest

from conftest import UID_A, Jail, as_user, children_of, pid_alive, wait_for
from test_adoption import Tracked

MODES = pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])
# A host group and one of its members, ids no one else uses (this helper's own range).
GROUP, MEMBER = 62471, 62470
ROOT_INSIDE = "/bin/rootprobe exec /bin/sh -c"


def run_jaild(jail, timeout=10):
    """jaild with the jail's arguments; a start that hangs is killed at `timeout` (the
    baseline hung here) and reported as such. Returns (result or None, seconds)."""
    begun = time.monotonic()
    try:
        result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - begun
    return result, time.monotonic() - begun


def started_anyway(jail, result):
    """A start that should have been refused went through: note its supervisor so that the
    test's cleanup stops it."""
    if result is not None and result.returncode == 0:
        jail.supervisor = int(open(jail.pidfile).read())
        jail.init_pid = children_of(jail.supervisor)[0]
        return True
    return False


@pytest.fixture
def shared_base():
    """A directory made as docs/ssh.md recommended: 0750 root:GROUP, in /tmp (0755 above it)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-group-", dir="/tmp"))
    os.chown(base, 0, GROUP)
    os.chmod(base, 0o750)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def copy_rootfs(source, target):
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target


def member_runs(path):
    """A member of GROUP (no other privilege) runs `path id`: what the probe prints, or the error."""
    try:
        result = subprocess.run([str(path), "id"], capture_output=True, text=True, timeout=30,
                                preexec_fn=as_user(MEMBER, MEMBER, groups=[GROUP]))
        return result.stdout.strip() or result.stderr.strip()
    except PermissionError as error:
        return str(error)


@MODES
def test_a_group_reachable_root_is_refused(rootfs_sec, shared_base, mode):
    root = copy_rootfs(rootfs_sec, shared_base / "root")
    jail = Jail(root, UID_A, list(mode))
    try:
        result, _ = run_jaild(jail)
        if started_anyway(jail, result):
            # The attack of the issue: root inside plants a setuid copy of the probe, a member
            # of GROUP runs it from the host.
            planted = jail.run(f"{ROOT_INSIDE} 'cp /bin/jailprobe /tmp/x; chown 0:0 /tmp/x; chmod 4755 /tmp/x'")
            assert planted.returncode == 0, planted.stderr
            pytest.fail(f"a root beneath a 0750 root:{GROUP} directory started; a member of the group ran root "
                        f"inside's setuid file: {member_runs(root / 'tmp' / 'x')}")
        assert result is not None, "jaild hung"
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"root {root} is reachable by group {GROUP} through {shared_base} (mode 750)" in result.stderr
        assert f"(chmod g-rwx {shared_base})" in result.stderr
        assert not os.path.exists(jail.socket)
        # The fix the line names is enough; then the planted file is out of the member's reach.
        os.chmod(shared_base, 0o700)
        jail.start()
        planted = jail.run(f"{ROOT_INSIDE} 'cp /bin/jailprobe /tmp/x; chown 0:0 /tmp/x; chmod 4755 /tmp/x'")
        assert planted.returncode == 0, planted.stderr
        assert "Permission denied" in member_runs(root / "tmp" / "x")
    finally:
        jail.stop()


@MODES
def test_a_group_reachable_read_write_bind_mount_is_refused(rootfs_sec, shared_base, tmp_path, mode):
    data = shared_base / "data"
    data.mkdir()
    jail = Jail(rootfs_sec, UID_A, ["-m", f"/data={data}", *mode])
    try:
        result, _ = run_jaild(jail)
        started_anyway(jail, result)
        assert result is not None and result.returncode == 1 and result.stderr.count("\n") == 1, result
        assert f"host path of mount /data {data} is reachable by group {GROUP} through {shared_base}" in result.stderr
        # Read-only, root inside cannot write it: accepted.
        jail.args = ["-m", f"/data={data}:ro", *mode]
        jail.start()
        assert jail.run("ls -d /data").returncode == 0
    finally:
        jail.stop()


def posix_acl(entries):
    """The kernel's system.posix_acl_access form: version 2, then (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


def test_an_acl_that_lets_a_user_search_the_private_directory_is_refused(rootfs_sec):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-acl-", dir="/tmp"))
    try:
        os.chmod(base, 0o700)
        # setfacl -m u:MEMBER:x: user::rwx user:MEMBER:--x group::--- mask::--x other::---
        os.setxattr(base, "system.posix_acl_access",
                    posix_acl([(0x01, 7, 0xFFFFFFFF), (0x02, 1, MEMBER), (0x04, 0, 0xFFFFFFFF),
                               (0x10, 1, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]))
        root = copy_rootfs(rootfs_sec, base / "root")
        jail = Jail(root, UID_A)
        try:
            result, _ = run_jaild(jail)
            started_anyway(jail, result)
            assert result is not None and result.returncode == 1 and result.stderr.count("\n") == 1, result
            assert f"user {MEMBER} (ACL)" in result.stderr and f"setfacl -b {base}" in result.stderr, result.stderr
        finally:
            jail.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_rootfs(rootfs_sec, tmp_path):
    """A copy of the security rootfs that a test may break (its /etc/passwd made a FIFO)."""
    return copy_rootfs(rootfs_sec, tmp_path / "root")


@pytest.mark.parametrize("name", ["passwd", "group"])
def test_a_fifo_passwd_or_group_is_refused_at_a_fresh_start(own_rootfs, name):
    path = own_rootfs / "etc" / name
    path.unlink()
    os.mkfifo(path, 0o644)
    jail = Jail(own_rootfs, UID_A)
    try:
        result, seconds = run_jaild(jail)
        started_anyway(jail, result)
        assert result is not None, f"jaild hung on the FIFO {path} (killed after {seconds:.1f} s)"
        assert result.returncode == 1 and result.stderr == f"jaild: {path} is a FIFO, not a regular file\n", result.stderr
        assert seconds < 1.0, seconds
        assert not os.path.exists(jail.socket)
    finally:
        jail.stop()


@MODES
def test_a_fifo_passwd_does_not_delay_adoption(own_rootfs, mode):
    jail = Jail(own_rootfs, UID_A, list(mode))
    tracked = Tracked(jail)
    try:
        jail.start()
        tracked.note()
        made = jail.run(f"{ROOT_INSIDE} 'rm /etc/passwd && mkfifo -m 644 /etc/passwd'")
        assert made.returncode == 0, made.stderr
        assert (os.stat(own_rootfs / "etc" / "passwd").st_mode & 0o170000) == 0o010000  # S_IFIFO
        os.kill(jail.supervisor, signal.SIGKILL)
        wait_for(lambda: not pid_alive(jail.supervisor), 10, "the supervisor to die")
        result, seconds = run_jaild(jail)
        assert result is not None, f"jaild hung before adoption (killed after {seconds:.1f} s): init runs unsupervised"
        assert result.returncode == 0, result.stderr
        assert seconds < 1.0, seconds
        jail.supervisor = int(open(jail.pidfile).read())
        tracked.note()
        assert children_of(jail.supervisor) == [] and pid_alive(jail.init_pid)  # adopted, not started again
    finally:
        jail.stop()
        tracked.cleanup()


def test_jaild_create_makes_a_root_only_root_can_pass(prov):
    """`jaild create`'s STATE/NAME (root, upper and work beneath it) is 0700 root: its jails
    pass the check; opened to a group, the start is refused like any other root."""
    name, uid = "jt-pre", 62472
    prov.create(name, uid, "busybox", start=False)
    jail_dir = prov.state / name
    info = os.stat(jail_dir)
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o700)
    try:
        os.chown(jail_dir, 0, GROUP)
        os.chmod(jail_dir, 0o750)
        result = prov.jaild("start", name)
        if result.returncode == 0:
            prov.jaild("stop", name)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"is reachable by group {GROUP} through {jail_dir} (mode 750)" in result.stderr
        os.chmod(jail_dir, 0o700)
        prov.jaild("start", name, check=True)
        assert prov.session(uid, "echo in").stdout == b"in\n"
    finally:
        prov.jaild("stop", name)
        prov.destroy(name)


@MODES
def test_a_fifo_passwd_fails_a_session_at_once(own_rootfs, mode):
    """The session helper reads the jail's passwd for each session (host root with --no-userns):
    a FIFO there refuses the session with its reason instead of hanging it."""
    with Jail(own_rootfs, UID_A, list(mode)) as jail:
        made = jail.run(f"{ROOT_INSIDE} 'rm /etc/passwd && mkfifo -m 644 /etc/passwd'")
        assert made.returncode == 0, made.stderr
        begun = time.monotonic()
        try:
            result = jail.run("echo in", timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the session hung on the FIFO /etc/passwd")
        assert time.monotonic() - begun < 1.0
        assert result.returncode != 0 and b"/etc/passwd is a FIFO, not a regular file" in result.stderr, result.stderr


def test_a_fifo_group_fails_a_session_instead_of_dropping_its_groups(own_rootfs):
    """An unreadable /etc/group (here a FIFO) is not taken for an empty one: the session is
    refused with the reason, not run without the user's supplementary groups (issue 28)."""
    with Jail(own_rootfs, UID_A) as jail:
        made = jail.run(f"{ROOT_INSIDE} 'rm /etc/group && mkfifo -m 644 /etc/group'")
        assert made.returncode == 0, made.stderr
        result = jail.run("echo in", timeout=10)
        assert result.returncode != 0 and b"/etc/group is a FIFO, not a regular file" in result.stderr, result.stderr


@MODES
def test_a_fifo_passwd_does_not_hold_up_the_rc_stop(own_rootfs, mode):
    """init reads the jail's passwd for root's home before `--rc-stop` (host root itself with
    --no-userns): a FIFO there must not stall the stop until the stop timeout's KILL."""
    jail = Jail(own_rootfs, UID_A, [*mode, "--rc-stop", "true", "--stop-timeout", "10"])
    jail.start()
    try:
        made = jail.run(f"{ROOT_INSIDE} 'rm /etc/passwd && mkfifo -m 644 /etc/passwd'")
        assert made.returncode == 0, made.stderr
        begun = time.monotonic()
        jail.stop(timeout=30)
        assert time.monotonic() - begun < 5.0, "the stop waited on the FIFO /etc/passwd"
    finally:
        jail.stop()
