"""Per-jail disk and inode limits (issue 32): `jaild create --disk SIZE [--disk-inodes N]`.

Two backends work on this kernel and both are tested: the image backend (an ext4 image per
jail, loop-mounted only inside the jail) with the state directory on the host's ext4, and the
btrfs backend (a subvolume per jail with a qgroup limit) with the state directory on a btrfs
file system the test makes in a file. Everything lives in a private (0700) directory under /tmp:
the btrfs image, its mount, the state and config roots; at the end the jails are destroyed,
the btrfs file system unmounted (its loop device detached) and the directory removed, and no
loop device may be left backed by anything in it. Host accounts jt-d00… (uids 63700–63719)."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import REPO, as_user
from harness import destroy_tenants

ISSUE = "Jail disk limits"
MIB = 1 << 20
HOST_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/shells")

PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/btrfs.h>
#include <linux/fs.h>
#include <linux/loop.h>

static void report(const char *what, long rc) {
    printf("%s %s\n", what, rc < 0 ? strerrorname_np(errno) : "SUCCEEDED");
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/";
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    struct fsxattr fa;
    memset(&fa, 0, sizeof fa);
    ioctl(fd, FS_IOC_FSGETXATTR, &fa);
    fa.fsx_projid = 4242;
    fa.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    report("fssetxattr", ioctl(fd, FS_IOC_FSSETXATTR, &fa));
    struct btrfs_ioctl_qgroup_limit_args limit;
    memset(&limit, 0, sizeof limit);
    limit.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    limit.lim.max_rfer = 1ULL << 40;
    report("qgroup_limit", ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &limit));
    struct btrfs_ioctl_quota_ctl_args quota = {.cmd = BTRFS_QUOTA_CTL_DISABLE};
    report("quota_ctl", ioctl(fd, BTRFS_IOC_QUOTA_CTL, &quota));
    /* A subvolume of one's own would have a qgroup of its own (unlimited). */
    struct btrfs_ioctl_vol_args volume;
    memset(&volume, 0, sizeof volume);
    strcpy(volume.name, "escape");
    report("subvol_create", ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, &volume));
    volume.fd = fd;
    strcpy(volume.name, "escape-snapshot");
    report("snap_create", ioctl(fd, BTRFS_IOC_SNAP_CREATE, &volume));
    report("loop_control", open("/dev/loop-control", O_RDWR));
    report("mknod_loop", mknod("/tmp/loop-probe", S_IFBLK | 0600, makedev(7, 0)));
    report("mount_tmpfs", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("remount_root", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
    return 0;
}
"""


def run(*args, **kwargs):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kwargs)


def loop_backing_files():
    """What every configured loop device is backed by (path as the kernel shows it)."""
    out = []
    for backing in pathlib.Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            out.append(backing.read_text().strip())
        except OSError:
            pass
    return out


def mounts_below(path):
    text = pathlib.Path("/proc/self/mountinfo").read_text()
    return [line.split()[4] for line in text.splitlines() if line.split()[4].startswith(str(path))]


def tree_hash(root):
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = pathlib.Path(dirpath) / name
            st = os.lstat(p)
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_uid} {st.st_size} {st.st_mtime_ns}\n".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                h.update(p.read_bytes())
    return h.hexdigest()


class Tenants:
    """jaild create/start/destroy with config and state roots in `place`; every jail made is
    destroyed at the end, and its host account removed even if destroy failed."""

    def __init__(self, place, binaries):
        self.conf = place / "conf"
        self.state = place / "state"
        self.conf.mkdir(parents=True)
        (self.state / "bases").mkdir(parents=True)
        self.base = self.state / "bases" / "busybox"
        subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(self.base), "61000", ISSUE], check=True,
                       capture_output=True)
        self.jaild_path = str(binaries / "jaild")
        self.jail_path = str(binaries / "jail")
        self.names = set()
        # The drop-in goes where conftest says, never into the host's /etc/ssh.
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JAIL_CONFIG_DIR": str(self.conf),
                    "JAIL_STATE_DIR": str(self.state), "JAIL_SSHD_CONFIG_DIR": os.environ["JAIL_SSHD_CONFIG_DIR"]}

    def jaild(self, *args, check=False, stdin=None):
        result = subprocess.run([self.jaild_path, *args], capture_output=True, timeout=120, env=self.env, input=stdin)
        if check:
            assert result.returncode == 0, f"jaild {' '.join(args)}: {result.stderr.decode()}"
        return result

    def create(self, name, uid, *extra, start=True):
        self.names.add(name)
        self.jaild("create", name, "--uid", str(uid), "--base", "busybox", *extra, check=True)
        if start:
            self.jaild("start", name, check=True)

    def as_user(self, uid, script):
        """`jail -c script` as the jail's host account (the default socket of uid:uid)."""
        return subprocess.run([self.jail_path, "-c", script], capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin"}, preexec_fn=as_user(uid))

    def as_root(self, name, script, stdin=None):
        """`jaild enter NAME --root`: root inside the jail."""
        result = self.jaild("enter", name, "--root", "--", "/bin/sh", "-c", script, stdin=stdin)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())

    def listing(self, name):
        uid = int(self.config(name)["uid"])
        rows = json.loads(self.jaild("list", "--json", check=True).stdout)
        return next(r for r in rows if r["uid"] == uid)

    def config(self, name):
        """NAME.conf as jaild reads it (`jaild config`), key to value (the last of a repeated key)."""
        entries = json.loads(self.jaild("config", name, "--json", check=True).stdout)
        return {entry["key"]: entry["value"] for entry in entries}

    def set_disk(self, name, size):
        path = self.conf / f"{name}.conf"
        lines = [f"disk = {size}" if line.startswith("disk = ") else line for line in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")

    def destroy(self, name):
        result = self.jaild("destroy", name, "--yes")
        self.names.discard(name)
        return result

    def cleanup(self):
        destroy_tenants(self.names, self.jaild, self.jail_path)


@pytest.fixture(scope="module")
def place(installed_jail):
    """The private directory, the btrfs file system in it, the probe; all gone after."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="jail-disk-", dir="/tmp"))
    os.chmod(top, 0o700)
    btrfs_mount = top / "btrfs"
    mounted = False
    try:
        if shutil.which("mkfs.btrfs") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("mkfs.btrfs is missing (package btrfs-progs): this kernel has btrfs, CI must test it")
        else:
            image = top / "btrfs.img"
            with open(image, "wb") as f:
                f.truncate(1024 * MIB)
            assert run("mkfs.btrfs", "-q", str(image)).returncode == 0
            btrfs_mount.mkdir()
            # mount -o loop sets autoclear: the loop device goes with the unmount.
            result = run("mount", "-o", "loop", str(image), str(btrfs_mount))
            assert result.returncode == 0, result.stderr
            mounted = True
            os.chmod(btrfs_mount, 0o700)
            assert run("btrfs", "quota", "enable", str(btrfs_mount)).returncode == 0
        probe_source = top / "probe.c"
        probe_source.write_text(PROBE)
        result = run("gcc", "-static", "-O1", "-o", str(top / "probe"), str(probe_source))
        assert result.returncode == 0, result.stderr
        yield {"top": top, "btrfs": btrfs_mount if mounted else None, "bin": pathlib.Path(installed_jail).parent}
    finally:
        if mounted:
            run("umount", str(btrfs_mount))
        shutil.rmtree(top, ignore_errors=True)
        left = [b for b in loop_backing_files() if b.startswith(str(top))]
        assert not left, f"loop devices left over: {left}"


@pytest.fixture(scope="module", params=["image", "btrfs"])
def tenants(request, place):
    backend = request.param
    if backend == "btrfs":
        if place["btrfs"] is None:
            pytest.skip("no mkfs.btrfs (package btrfs-progs)")
        where = place["btrfs"] / "t"
    else:
        where = place["top"] / "ext4"
    t = Tenants(where, place["bin"])
    t.backend = backend
    t.probe = place["top"] / "probe"
    uid = 63700 if backend == "image" else 63710
    t.uids = {"limited": uid, "neighbour": uid + 1, "grow": uid + 2, "bad": uid + 3}
    t.prefix = "jt-d0" if backend == "image" else "jt-d1"
    try:
        yield t
    finally:
        t.cleanup()


def fill(tenants, name, uid, path, root=False):
    """Writes zeros to `path` inside until the file system or quota refuses; returns the
    bytes written and dd's complaint."""
    script = f"dd if=/dev/zero of={path} bs=1M 2>&1; echo; wc -c < {path}"
    result = tenants.as_root(name, script) if root else tenants.as_user(uid, script)
    lines = result.stdout.strip().splitlines()
    return int(lines[-1]), result.stdout


def test_the_limit_holds_for_the_user_and_root_inside(tenants):
    t = tenants
    name, uid = t.prefix + "0", t.uids["limited"]
    neighbour, neighbour_uid = t.prefix + "1", t.uids["neighbour"]
    inodes = ["--disk-inodes", "2000"] if t.backend == "image" else []
    base_before = tree_hash(t.base)
    t.create(name, uid, "--disk", "64M", *inodes)
    t.create(neighbour, neighbour_uid)
    assert t.config(name)["disk-backend"] == t.backend
    row = t.listing(name)
    assert row["disk_backend"] == t.backend and row["disk_limit_bytes"] >= 64 * MIB * 0.99, row

    # Earlier files, to be found intact after the disk was full.
    early = t.as_user(uid, "mkdir -p ~/keep && head -c 3000000 /dev/urandom > ~/keep/a && echo hello > ~/keep/b && "
                           "sha256sum ~/keep/a ~/keep/b")
    assert early.returncode == 0, early.stderr

    if t.backend == "image":
        # What the tenant sees is its own disk: about 64 MiB (the kernel's statfs of the image).
        df = t.as_user(uid, "df -k / | tail -1")
        total_kib = int(df.stdout.split()[1])
        assert abs(total_kib * 1024 - 64 * MIB) <= 0.05 * 64 * MIB, df.stdout

    for who in ("user", "root"):
        path = "/home/work/fill" if who == "user" else "/root/fill"
        written, output = fill(t, name, uid, path, root=(who == "root"))
        assert ("No space left" in output) or ("quota exceeded" in output), output
        # 3 MB of earlier files are there too: the total is within 5 % of 64 MiB.
        total = written + 3_000_000
        assert abs(total - 64 * MIB) <= 0.05 * 64 * MIB, (who, written, output)
        # Full: the host and the neighbour jail write on.
        with open(t.state / f"host-{who}", "wb") as f:
            f.write(b"\1" * 8 * MIB)
        assert (t.state / f"host-{who}").stat().st_size == 8 * MIB
        other = t.as_user(neighbour_uid, "dd if=/dev/zero of=/home/work/x bs=1M count=16 2>&1 && wc -c < /home/work/x")
        assert other.returncode == 0 and other.stdout.strip().endswith(str(16 * MIB)), other.stdout
        t.as_user(neighbour_uid, "rm /home/work/x")
        (t.state / f"host-{who}").unlink()
        after = t.as_user(uid, "sha256sum ~/keep/a ~/keep/b")
        assert after.stdout == early.stdout
        # Deleting frees the space again.
        rm = t.as_root(name, f"rm {path} && dd if=/dev/zero of={path} bs=1M count=8 2>&1 && rm {path}")
        assert rm.returncode == 0, rm.stdout + rm.stderr

    if t.backend == "image":
        # Files (inodes) stop near 2,000: the image has exactly that many.
        made = t.as_user(uid, "mkdir ~/many && i=0; while true 2>/dev/null > ~/many/$i; do i=$((i+1)); done; echo $i; "
                              "df -i / | tail -1")
        count = int(made.stdout.split()[0])
        used, free = int(made.stdout.split()[3]), int(made.stdout.split()[4])
        assert 1900 <= count < 2000 and free == 0 and used == 2000, made.stdout
        again = t.as_user(uid, "rm -r ~/many && : > ~/one && echo ok")
        assert again.stdout.strip() == "ok", again.stderr
        row = t.listing(name)
        assert row["disk_inodes_limit"] == 2000 and 0 < row["disk_inodes"] < 100, row

    # The base was never written: the limit is on the jail's upper layer.
    assert tree_hash(t.base) == base_before


def test_root_inside_cannot_raise_or_escape_the_limit(tenants):
    t = tenants
    name, uid = t.prefix + "0", t.uids["limited"]
    probe = t.probe.read_bytes()
    result = t.as_root(name, "cat > /root/probe && chmod 700 /root/probe && /root/probe / && /root/probe /home/work; "
                             "rm -f /root/probe", stdin=probe)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 18, result.stdout + result.stderr
    assert not [line for line in lines if line.endswith("SUCCEEDED")], result.stdout
    # The busybox tools say the same.
    tools = t.as_root(name, "head -c 1048576 /dev/zero > /root/img; losetup -f /root/img 2>&1; echo rc=$?; "
                            "mount -o loop /root/img /mnt 2>&1; echo rc=$?; mount -o remount,size=1G / 2>&1; echo rc=$?; "
                            "rm /root/img")
    assert tools.stdout.count("rc=") == 3 and tools.stdout.count("rc=0") == 0, tools.stdout
    # And the limit holds after all that.
    written, output = fill(t, name, uid, "/root/fill", root=True)
    assert written <= 64 * MIB, output
    t.as_root(name, "rm /root/fill")


def test_raising_and_lowering_the_limit_keeps_every_file(tenants):
    t = tenants
    name, uid = t.prefix + "2", t.uids["grow"]
    t.create(name, uid, "--disk", "64M")
    made = t.as_user(uid, "head -c 40000000 /dev/urandom > ~/data && mkdir ~/d && echo x > ~/d/y && sha256sum ~/data ~/d/y")
    assert made.returncode == 0, made.stderr
    t.jaild("stop", name, check=True)
    t.set_disk(name, "128M")
    t.jaild("start", name, check=True)
    assert t.as_user(uid, "sha256sum ~/data ~/d/y").stdout == made.stdout
    assert t.listing(name)["disk_limit_bytes"] >= 128 * MIB * 0.99
    more, output = fill(t, name, uid, "/home/work/more")
    assert abs(more + 40_000_000 - 128 * MIB) <= 0.05 * 128 * MIB, output
    t.as_user(uid, "rm ~/more")
    if t.backend == "image":
        df = t.as_user(uid, "df -k / | tail -1")
        assert abs(int(df.stdout.split()[1]) * 1024 - 128 * MIB) <= 0.05 * 128 * MIB, df.stdout

    # Lower than what the jail holds: refused with one line, the jail keeps its files.
    t.jaild("stop", name, check=True)
    t.set_disk(name, "32M")
    refused = t.jaild("start", name)
    message = refused.stderr.decode().strip()
    assert refused.returncode != 0 and len(message.splitlines()) == 1 and "--disk" in message, message
    t.set_disk(name, "48M")
    t.jaild("start", name, check=True)
    assert t.as_user(uid, "sha256sum ~/data ~/d/y").stdout == made.stdout
    assert t.listing(name)["disk_limit_bytes"] <= 49 * MIB

    # Destroy leaves no image, subvolume, loop device or mount.
    jail_directory = t.state / name
    assert t.destroy(name).returncode == 0
    assert not jail_directory.exists()
    assert not [b for b in loop_backing_files() if b.startswith(str(jail_directory))]
    assert not mounts_below(jail_directory)
    if t.backend == "btrfs":
        listing = run("btrfs", "subvolume", "list", str(t.state)).stdout
        assert f"/{name}" not in listing, listing


def test_bad_input_refused_and_the_backend_chosen(tenants):
    t = tenants
    name, uid = t.prefix + "3", t.uids["bad"]
    bad = [["--disk", "0"], ["--disk", "1K"], ["--disk", "ten"], ["--disk", "64M", "--disk-backend", "project"],
           ["--disk", "64M", "--disk-backend", "zfs"], ["--disk-inodes", "2000"], ["--disk", "64M", "--disk-inodes", "x"]]
    if t.backend == "image":
        bad.append(["--disk", "64M", "--disk-backend", "btrfs"])  # the state directory is on ext4
        bad.append(["--disk", "64M", "--copy", "--disk-backend", "image"])  # an image holds an upper layer only
    else:
        bad.append(["--disk", "64M", "--disk-inodes", "2000", "--disk-backend", "btrfs"])  # btrfs counts no inodes
        # A --copy root on btrfs: its users could make subvolumes of their own, outside the qgroup.
        bad.append(["--disk", "64M", "--copy", "--disk-backend", "btrfs"])
        bad.append(["--disk", "64M", "--copy"])
    before = ({p: pathlib.Path(p).read_bytes() for p in HOST_FILES if os.path.exists(p)},
              sorted(os.listdir(t.state)), sorted(os.listdir(t.conf)), loop_backing_files())
    for args in bad:
        result = t.jaild("create", name, "--uid", str(uid), "--base", "busybox", *args)
        message = result.stderr.decode().strip()
        assert result.returncode != 0, args
        assert len(message.splitlines()) == 1 and message, (args, message)
        after = ({p: pathlib.Path(p).read_bytes() for p in HOST_FILES if os.path.exists(p)},
                 sorted(os.listdir(t.state)), sorted(os.listdir(t.conf)), loop_backing_files())
        assert after == before, args
    if t.backend == "image":
        result = t.jaild("create", name, "--uid", str(uid), "--base", "busybox", "--disk", "64M", "--disk-backend", "project")
        assert "CONFIG_QFMT_V2" in result.stderr.decode() or "not implemented" in result.stderr.decode()
    # The same name and uid with good input: made, with the backend named (so the refusals
    # above were about the input, not about the name).
    t.create(name, uid, "--disk", "16M", "--disk-backend", t.backend, start=False)
    assert t.config(name)["disk-backend"] == t.backend
    assert t.destroy(name).returncode == 0
    if t.backend == "btrfs":
        inode_limit_on_btrfs_takes_an_image_without_copy_on_write(t)


def test_destroy_keep_data_keeps_the_files_and_nothing_attached(tenants):
    t = tenants
    name, uid = t.prefix + "4", t.uids["bad"] + 1
    t.create(name, uid, "--disk", "32M")
    t.as_user(uid, "echo kept > ~/note")
    jail_directory = t.state / name
    try:
        result = t.jaild("destroy", name, "--yes", "--keep-data")
        t.names.discard(name)
        assert result.returncode == 0, result.stderr
        assert not [b for b in loop_backing_files() if b.startswith(str(jail_directory))]
        if t.backend == "image":
            image = jail_directory / "disk.img"
            assert str(image) in result.stdout.decode() and image.is_file()
            # The operator reads it as the message says.
            mount_point = jail_directory / "mnt"
            mount_point.mkdir()
            assert run("mount", "-o", "loop,ro,nosuid,nodev", str(image), str(mount_point)).returncode == 0
            try:
                assert (mount_point / "upper/home/work/note").read_text() == "kept\n"
            finally:
                run("umount", str(mount_point))
        else:
            assert (jail_directory / "upper/home/work/note").read_text() == "kept\n"
    finally:
        if t.backend == "btrfs" and jail_directory.exists():
            run("btrfs", "subvolume", "delete", str(jail_directory))
        shutil.rmtree(jail_directory, ignore_errors=True)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def inode_limit_on_btrfs_takes_an_image_without_copy_on_write(t):
    """auto with --disk-inodes on btrfs: btrfs counts no inodes, so the image backend, its file
    marked no-copy-on-write (FS_NOCOW_FL)."""
    import fcntl
    import struct
    name, uid = t.prefix + "5", t.uids["bad"] + 2
    t.create(name, uid, "--disk", "32M", "--disk-inodes", "500")
    try:
        assert t.config(name)["disk-backend"] == "image"
        image = t.state / name / "disk.img"
        with open(image, "rb") as f:
            flags = struct.unpack("i", fcntl.ioctl(f, 0x80086601, struct.pack("i", 0)))[0]  # FS_IOC_GETFLAGS
        assert flags & 0x00800000, hex(flags)  # FS_NOCOW_FL
        df = t.as_user(uid, "df -i / | tail -1")
        # mkfs.ext4 rounds up to whole inode-table blocks (16 inodes of 256 bytes per 4 KiB).
        assert 500 <= int(df.stdout.split()[1]) < 516, df.stdout
    finally:
        assert t.destroy(name).returncode == 0
