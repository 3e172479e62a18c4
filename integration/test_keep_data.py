"""`jaild destroy --keep-data` keeps the data usable for a later `jaild create` (issue 32, item 4):
the same name and uid get the tenant's files back, as they were, with a plain overlay upper and
with a disk image; a request the data cannot serve is refused in one line and the data stays."""

import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import tree_listing
from test_disk import MIB, Tenants, loop_backing_files, place  # noqa: F401 (place: test_disk's file systems)

# Uids of this file only (test_provision: 63000-63056, test_disk: 63700-63714).
PLAIN_UID, IMAGE_UID = 63920, 63925


def range_files(uid):
    """The user-namespace range files that name the jail of uid:uid (its default socket)."""
    return [r for r in pathlib.Path("/var/lib/jail/userns").glob("*.range") if f"/jaild-{uid}-{uid}.sock" in r.read_text()]


def one_line_refusal(result):
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert result.returncode != 0 and len(stderr.strip().splitlines()) == 1, stderr
    return stderr


def test_kept_upper_comes_back_to_the_same_uid(prov):
    name, uid = "jt-k0", PLAIN_UID
    shutil.copytree(prov.state / "bases" / "busybox", prov.state / "bases" / "other", symlinks=True)
    before = prov.snapshot()
    prov.create(name, uid, "busybox")
    made = prov.session(uid, "head -c 200000 /dev/urandom > ~/data && chmod 640 ~/data && echo tuned >> ~/.profile "
                            "&& sha256sum ~/data")
    assert made.returncode == 0, made.stderr
    digest = made.stdout.split()[0]
    result = prov.destroy(name, "--keep-data")
    prov.names.add(name)  # the data is left: cleanup destroys it if the test fails
    assert result.returncode == 0, result.stderr
    assert "jaild create" in result.stdout
    assert len(range_files(uid)) == 1  # kept with the data
    kept = tree_listing(prov.state / name)
    host = {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in before[0]}

    # Requests the data cannot serve: one line each, nothing changed (the host's account
    # files included: no account, group or range made and undone half way).
    for args, words in [(["--uid", str(uid + 1), "--base", "busybox"], f"--uid {uid}"),
                        (["--uid", str(uid), "--base", "other"], "base"),
                        (["--uid", str(uid), "--base", "busybox", "--disk", "64M"], "--disk"),
                        (["--uid", str(uid), "--base", "busybox", "--copy"], "--copy")]:
        refused = prov.jaild("create", name, *args)
        assert words in one_line_refusal(refused)
        assert tree_listing(prov.state / name) == kept
        assert not (prov.conf / f"{name}.conf").exists()
        assert {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in host} == host
    assert not subprocess.run(["getent", "passwd", name], capture_output=True).stdout

    # The same name and uid: the tenant's files as they were, nothing written twice.
    prov.create(name, uid, "busybox")
    again = prov.session(uid, "sha256sum ~/data; id -u; tail -n 1 ~/.profile; grep -c -e '^work:' -e '^jt-k0:' /etc/passwd")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.decode().splitlines()
    assert lines[0].split()[0] == digest.decode() and lines[1] == str(uid) and lines[2] == "tuned", lines
    assert lines[3:] == ["2"], lines  # the user and its alias (the host account's name), once each
    shadow = (prov.upper(name) / "etc/shadow").read_text().splitlines()
    assert [line.split(":")[0] for line in shadow].count("work") == 1
    assert os.stat(prov.upper(name) / "home/work/data").st_uid != 0
    assert not (prov.state / name / "kept-data").exists()
    assert len(range_files(uid)) == 1

    # A plain destroy leaves nothing: the range and its /etc/subuid lines go too.
    assert prov.destroy(name).returncode == 0
    assert not range_files(uid)
    assert not (prov.state / name).exists()
    assert prov.snapshot() == before


def test_a_plain_destroy_of_kept_data_gives_everything_back(prov):
    name, uid = "jt-k1", PLAIN_UID + 1
    before = prov.snapshot()
    prov.create(name, uid, "busybox")
    assert prov.destroy(name, "--keep-data").returncode == 0
    prov.names.add(name)
    result = prov.destroy(name)
    assert result.returncode == 0, result.stderr
    assert not range_files(uid)
    assert prov.snapshot() == before
    assert not list(pathlib.Path("/var/log/jail").glob(f"jail-{uid}-{uid}.log*"))


def test_kept_copy_comes_back(prov):
    name, uid = "jt-k4", PLAIN_UID + 2
    prov.create(name, uid, "busybox", "--copy")
    digest = prov.session(uid, "echo copied > ~/note && sha256sum ~/note").stdout.split()[0]
    assert prov.destroy(name, "--keep-data").returncode == 0
    prov.names.add(name)
    # The copy's root is its data: kept (it was deleted with the mount point before).
    assert (prov.state / name / "root/home/work/note").read_text() == "copied\n"
    assert "--copy" in one_line_refusal(prov.jaild("create", name, "--uid", str(uid), "--base", "busybox"))
    prov.create(name, uid, "busybox", "--copy")
    assert prov.session(uid, "sha256sum ~/note").stdout.split()[0] == digest
    assert prov.destroy(name).returncode == 0
    assert not (prov.state / name).exists() and not range_files(uid)


@pytest.fixture(params=["image", "btrfs"])
def kept_tenants(request, place):
    """Tenants on the ext4 /tmp (the image backend) or on test_disk's btrfs file system."""
    if request.param == "btrfs":
        if place["btrfs"] is None:
            pytest.skip("no mkfs.btrfs (package btrfs-progs)")  # under CI=true `place` fails instead
        where = place["btrfs"] / "keep"
    else:
        where = place["top"] / "keep-ext4"
    t = Tenants(where, place["bin"])
    t.backend = request.param
    try:
        yield t
    finally:
        t.cleanup()
        left = [b for b in loop_backing_files() if b.startswith(str(where))]
        assert not left, f"loop devices left over: {left}"


def test_kept_disk_comes_back_with_its_limit(kept_tenants):
    t = kept_tenants
    name, uid = ("jt-k2", IMAGE_UID) if t.backend == "image" else ("jt-k3", IMAGE_UID + 1)
    other = "btrfs" if t.backend == "image" else "image"
    t.create(name, uid, "--disk", "64M")
    made = t.as_user(uid, "head -c 8388608 /dev/urandom > ~/data && sha256sum ~/data")
    assert made.returncode == 0, made.stderr
    digest = made.stdout.split()[0]
    result = t.jaild("destroy", name, "--yes", "--keep-data")
    assert result.returncode == 0, result.stderr
    if t.backend == "image":
        assert (t.state / name / "disk.img").is_file()
    else:
        assert os.stat(t.state / name).st_ino == 256  # still a btrfs subvolume (its root inode)
    assert not [b for b in loop_backing_files() if b.startswith(str(t.state / name))]
    kept = tree_listing(t.state / name)

    for args, words in [(["--uid", str(uid + 1), "--disk", "64M"], f"--uid {uid}"),
                        (["--uid", str(uid)], "--disk"),
                        (["--uid", str(uid), "--disk", "64M", "--disk-backend", other], t.backend)]:
        refused = t.jaild("create", name, "--base", "busybox", *args)
        assert words in one_line_refusal(refused)
        assert tree_listing(t.state / name) == kept
        assert not (t.conf / f"{name}.conf").exists()

    t.create(name, uid, "--disk", "64M")
    again = t.as_user(uid, "sha256sum ~/data")
    assert again.returncode == 0 and again.stdout.split()[0] == digest, again
    assert t.listing(name)["disk_backend"] == t.backend
    # The limit holds: the jail user writes until the image is full, well short of the host's disk.
    filled = t.as_user(uid, "dd if=/dev/zero of=$HOME/fill bs=1M 2>&1; echo; wc -c < ~/fill")
    written = int(filled.stdout.strip().splitlines()[-1])
    assert 40 * MIB < written < 64 * MIB, filled.stdout
    assert t.as_user(uid, "rm ~/fill; sha256sum ~/data").stdout.split()[0] == digest

    assert t.destroy(name).returncode == 0
    assert not (t.state / name).exists()
    assert not range_files(uid)
    assert not [b for b in loop_backing_files() if b.startswith(str(t.state))]
    assert not [m for m in pathlib.Path("/proc/self/mountinfo").read_text().splitlines() if str(t.state) in m]
