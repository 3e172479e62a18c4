"""Root inside a jail is nobody on the host (issue 15): a user namespace for every jail started
by root. The jail user is itself on both sides; every other id of 0-65535 inside is the jail's
own host range; the rootfs is attached through an idmapped mount and must be private."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import JAIL, JAILD, REPO, UID_A, UID_B, Jail, as_user, descendants, outcome, probe, wait_for

RANGE = 65536
POOL_START = 1 << 20
ROOT = "/bin/rootprobe exec /bin/sh -c"


def listed(jail):
    rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, check=True).stdout)
    return next(row for row in rows if row["socket"] == jail.socket)


def host_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def run_as_nobody(path, *args):
    """An ordinary host user runs a file, as the issue's exploit does. (Not with setpriv
    --reuid: it keeps root's capabilities up to the execve, so it passes 0700 directories.)"""
    try:
        return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30,
                              preexec_fn=as_user(65534, 65534))
    except PermissionError as error:
        return subprocess.CompletedProcess([str(path)], 126, "", str(error))


def test_root_inside_is_the_first_id_of_its_range_and_the_user_is_itself(rootfs_sec, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with Jail(rootfs_sec, UID_A, ["-m", f"/shared={shared}"]) as jail:
        row = listed(jail)
        start = row["userns_start"]
        assert row["userns_count"] == RANGE and start >= POOL_START and start % RANGE == 0
        assert not start <= UID_A < start + RANGE
        assert host_uid(jail.init_pid) == start
        # ps on the host: root inside is `start`, the user is 61000.
        sessions = [subprocess.Popen([JAIL, "-c", command], env={"JAIL_SOCKET": jail.socket},
                                     preexec_fn=as_user(UID_A), stdout=subprocess.DEVNULL)
                    for command in ("/bin/rootprobe exec /bin/sleep 30", "exec /bin/sleep 31")]
        try:
            def sleepers():
                found = {}
                for pid in descendants(jail.init_pid):
                    try:
                        cmdline = open(f"/proc/{pid}/cmdline").read()
                    except FileNotFoundError:
                        continue
                    if cmdline.startswith("/bin/sleep\0"):
                        found[cmdline.split("\0")[1]] = host_uid(pid)
                return found if len(found) == 2 else None
            assert wait_for(sleepers, 10, "both sleeps") == {"30": start, "31": UID_A}
        finally:
            for session in sessions:
                session.kill()
                session.wait()
        # Files: on a bind mount (not idmapped) root inside writes as `start`; in the rootfs
        # (idmapped) as on-disk 0. The user is 61000 in both.
        assert jail.run(f"{ROOT} 'touch /shared/by-root /tmp/by-root'").returncode == 0
        assert jail.run("touch /shared/by-user /tmp/by-user").returncode == 0
        assert (os.stat(shared / "by-root").st_uid, os.stat(shared / "by-root").st_gid) == (start, start)
        assert os.stat(shared / "by-user").st_uid == UID_A
        assert (os.stat(rootfs_sec / "tmp" / "by-root").st_uid, os.stat(rootfs_sec / "tmp" / "by-root").st_gid) == (0, 0)
        assert os.stat(rootfs_sec / "tmp" / "by-user").st_uid == UID_A
        # Inside, the rootfs has its on-disk owners and supplementary groups work.
        assert jail.run("stat -c %u:%g /etc/passwd /home/work").stdout == f"0:0\n{UID_A}:{UID_A}\n".encode()
        assert jail.run("id -G").stdout.split() == [str(UID_A).encode(), b"100"]
    for name in ("by-root", "by-user"):
        os.unlink(rootfs_sec / "tmp" / name)


def test_two_jails_get_disjoint_ranges_and_a_restart_keeps_its_range(rootfs_sec, rootfs_sec_b):
    a = Jail(rootfs_sec, UID_A).start()
    try:
        b = Jail(rootfs_sec_b, UID_B).start()
        try:
            first_a, first_b = listed(a)["userns_start"], listed(b)["userns_start"]
            assert abs(first_a - first_b) >= RANGE
        finally:
            b.stop()
        a.stop()
        a = Jail(rootfs_sec, UID_A).start()
        assert listed(a)["userns_start"] == first_a
        assert host_uid(a.init_pid) == first_a
        # A pool with no free range left: one clear line.
        c = Jail(rootfs_sec_b, UID_B, ["--userns-pool", f"{first_a}:{RANGE}"], prefix="/run/jail/pooltest")
        result = subprocess.run(c.command(), capture_output=True, text=True, timeout=30)
        if result.returncode == 0:  # started after all: stop it on the way out
            c.supervisor = int(open(c.pidfile).read())
            c.stop()
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "no free id range in the user-namespace pool" in result.stderr
    finally:
        a.stop()


@pytest.fixture
def planted(public_tmp):
    """A rw directory for the jail's root to plant a file in, beneath a directory only root can
    pass (jaild refuses a read-write bind mount another host user can reach, issue 27)."""
    os.chmod(public_tmp, 0o700)
    shared = public_tmp / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    return shared


def test_planted_setuid_file_does_not_make_a_host_user_root(rootfs_sec, planted):
    plant = "cp /bin/jailprobe {0}; chown 0:0 {0}; chmod 4755 {0}"
    with Jail(rootfs_sec, UID_A, ["-m", f"/shared={planted}"]) as jail:
        start = listed(jail)["userns_start"]
        for path in ("/shared/x", "/tmp/x"):
            result = jail.run(f"{ROOT} '{plant.format(path)}'")
            assert result.returncode == 0, result.stderr
    try:
        # Through the bind mount: the file is the range's root, not host root.
        info = os.stat(planted / "x")
        assert info.st_uid == start and info.st_mode & 0o4000
        result = run_as_nobody(planted / "x", "exec", "/usr/bin/id", "-u")
        assert result.stdout.strip() != "0", result
        # In the rootfs it is uid 0 on disk (the idmapped mount), setuid: out of reach only
        # because the rootfs is private, which jaild insists on.
        info = os.stat(rootfs_sec / "tmp" / "x")
        assert info.st_uid == 0 and info.st_mode & 0o4000
        result = run_as_nobody(rootfs_sec / "tmp" / "x", "exec", "/usr/bin/id", "-u")
        assert result.returncode != 0 and result.stdout.strip() != "0", result
        assert "Permission denied" in result.stderr
    finally:
        os.unlink(rootfs_sec / "tmp" / "x")


def test_a_world_reachable_root_is_refused(public_tmp):
    root = public_tmp / "jails" / "r"
    root.parent.mkdir()
    os.chmod(root.parent, 0o755)
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(root), str(UID_A)], check=True,
                   capture_output=True)
    jail = Jail(root, UID_A)
    try:
        result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
        if result.returncode == 0:  # started after all: stop it on the way out
            jail.supervisor = int(open(jail.pidfile).read())
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"root {root} (mode 755) is reachable by every host user" in result.stderr
        assert not os.path.exists(jail.socket)
        # A private directory above it is enough.
        os.chmod(root.parent, 0o700)
        jail.start()
        assert jail.run("echo in").stdout == b"in\n"
    finally:
        jail.stop()


def test_root_inside_cannot_read_host_secrets_nor_chown_to_host_root(rootfs_sec, tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    os.chmod(rw, 0o777)
    (ro / "secret").write_text("host root's\n")
    os.chmod(ro / "secret", 0o600)
    (rw / "hosts").write_text("host root's\n")
    os.chmod(rw / "hosts", 0o644)
    (rw / "mine").write_text("the user's\n")
    os.chown(rw / "mine", UID_A, UID_A)
    with Jail(rootfs_sec, UID_A, ["-m", f"/ro={ro}:ro", "-m", f"/rw={rw}"]) as jail:
        assert outcome(jail, "read-file", "/ro/secret") == "EACCES"
        assert outcome(jail, "write-file", "/rw/hosts") == "EACCES"
        start = listed(jail)["userns_start"]
        jail.run(f"{ROOT} 'chown 0:0 /rw/mine /rw/hosts'")
        # Host root's files show as nobody inside.
        assert jail.run("stat -c %u /rw/hosts").stdout == b"65534\n"
    assert os.stat(rw / "hosts").st_uid == 0 and (rw / "hosts").read_text() == "host root's\n"
    # "0" inside is the range's first id: the user's file went to it, never to host root.
    assert os.stat(rw / "mine").st_uid == start


@pytest.mark.parametrize("option", ["", ":suid"])
def test_setuid_file_on_a_bind_mount_does_not_raise_privileges(rootfs_sec, probe_binary, tmp_path, option):
    hostbin = tmp_path / "hostbin"
    hostbin.mkdir()
    shutil.copy(probe_binary, hostbin / "suid")
    os.chown(hostbin / "suid", 0, 0)
    os.chmod(hostbin / "suid", 0o4755)
    with Jail(rootfs_sec, UID_A, ["-m", f"/hostbin={hostbin}:ro{option.replace(':', ',')}"]) as jail:
        assert jail.run("/hostbin/suid id").stdout == f"uid={UID_A} euid={UID_A}\n".encode()
        options = next(line.split()[5] for line in jail.run("cat /proc/self/mountinfo").stdout.decode().splitlines()
                       if line.split()[4] == "/hostbin")
        assert ("nosuid" in options and "nodev" in options) == (option == ""), options


@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_sessions_boot_and_groups_in_both_modes(rootfs_sec, tmp_path, userns):
    marker = tmp_path / "boot"
    marker.mkdir()
    os.chmod(marker, 0o777)
    args = ["-m", f"/boot={marker}", "--boot", "echo booted > /boot/done"] + ([] if userns else ["--no-userns"])
    with Jail(rootfs_sec, UID_A, args) as jail:
        assert probe(jail, "id") == "uid=0 euid=0\n"
        assert jail.run("id -u; id -G").stdout == f"{UID_A}\n{UID_A} 100\n".encode()
        wait_for(lambda: (marker / "done").exists(), 10, "the boot command")
        assert os.stat(marker / "done").st_uid == UID_A
        row = listed(jail)
        assert (row["userns_start"] is not None) == userns
        expected = row["userns_start"] if userns else 0
        assert host_uid(jail.init_pid) == expected


def test_a_file_system_that_cannot_be_idmapped_is_named(rootfs_sec, tmp_path):
    ram = tmp_path / "ram"
    ram.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(ram)], check=True)
    try:
        subprocess.run(["cp", "-a", str(rootfs_sec), str(ram / "r")], check=True)
        jail = Jail(ram / "r", UID_A, prefix="/run/jail/ramfs")
        result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
        if result.returncode == 0:  # started after all: stop it on the way out
            jail.supervisor = int(open(jail.pidfile).read())
            jail.stop()
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"the file system of {ram / 'r'} (ramfs) cannot be idmapped" in result.stderr
        assert "--no-userns" in result.stderr
        assert not os.path.exists(jail.socket)
    finally:
        subprocess.run(["umount", "-l", str(ram)], check=True)
