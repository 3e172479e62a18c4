"""jaild's cached copy of itself (Supervisor/ExecutableCache.swift, issue 36 item 6): a root start
maps jaild's code from /var/cache/jail/jaild-BUILDID-SIZE, a copy written in 2 MiB pieces, so that the
kernel maps it in 2 MiB pages in each of a start's processes; it is made by the first start of a
build, refused and replaced when it is not a copy of this build or not root's alone, and never
changes what runs: the supervisor and init run jaild's own bytes from a read-only mount."""
import fcntl
import hashlib
import os
import pathlib
import shutil
import struct
import subprocess
import time

import pytest

from conftest import JAILD, UID_A, Jail, children_of

CACHE = pathlib.Path("/var/cache/jail")


def build_id(path):
    """The GNU build id of an ELF64 file, from its PT_NOTE headers, as hex."""
    data = pathlib.Path(path).read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz, _, p_align = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        align = 8 if p_align == 8 else 4
        at, end = p_offset, p_offset + p_filesz
        while at + 12 <= end:
            namesz, descsz, n_type = struct.unpack_from("<III", data, at)
            name_at = at + 12
            desc_at = name_at + (namesz + align - 1) // align * align
            if n_type == 3 and data[name_at:name_at + namesz] == b"GNU\0":  # NT_GNU_BUILD_ID
                return data[desc_at:desc_at + descsz].hex()
            at = desc_at + (descsz + align - 1) // align * align
    raise AssertionError(f"{path} has no build id")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


JAILD_DIGEST = digest(JAILD)


def text_in_2mib_pages(pid):
    """KiB of jaild's code (its executable mapping) that process `pid` maps in 2 MiB pages."""
    mapping = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                mapping = fields[1]
            elif fields[0] == "FilePmdMapped:" and mapping == "r-xp" and int(fields[1]) > 0:
                return int(fields[1])
    return 0


def runs_jaild_read_only(pid):
    """The process runs jaild's own bytes, from a read-only mount (CVE-2019-5736)."""
    return digest(f"/proc/{pid}/exe") == JAILD_DIGEST and os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY


@pytest.fixture
def copy_path():
    """This build's copy, removed first so that the test's start decides what it is."""
    path = CACHE / f"jaild-{build_id(JAILD)}-{os.stat(JAILD).st_size}"
    path.unlink(missing_ok=True)
    yield path


def start_capturing(jail):
    """Jail.start, with jaild's stderr (its warnings) returned."""
    result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    jail.supervisor = int(open(jail.pidfile).read())
    jail.init_pid = children_of(jail.supervisor)[0]
    return result.stderr


def test_a_start_makes_the_copy_and_maps_jaild_from_it_in_2mib_pages(rootfs_a, copy_path):
    with Jail(rootfs_a, UID_A) as jail:
        info = os.stat(copy_path)
        assert (info.st_uid, info.st_mode) == (0, 0o100500)
        assert os.stat(CACHE).st_mode & 0o7777 == 0o700
        assert digest(copy_path) == JAILD_DIGEST
        for pid in (jail.supervisor, jail.init_pid):
            assert runs_jaild_read_only(pid)
            # On a file system that caches files in large folios (ext4 on Linux >= 6.16, as in CI).
            assert text_in_2mib_pages(pid) >= 2048, open(f"/proc/{pid}/smaps").read()[:2000]
        assert jail.run("echo ok").stdout == b"ok\n"
    # The next start uses the copy as it is.
    before = os.stat(copy_path)
    with Jail(rootfs_a, UID_A) as jail:
        assert runs_jaild_read_only(jail.supervisor)
        assert text_in_2mib_pages(jail.init_pid) >= 2048
    after = os.stat(copy_path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("kind", ["junk", "owned-by-nobody", "writable-by-group"])
def test_a_file_that_is_not_a_root_only_copy_is_replaced(rootfs_a, copy_path, kind):
    CACHE.mkdir(mode=0o700, exist_ok=True)
    if kind == "junk":
        copy_path.write_bytes(b"not jaild\n" * 1000)
        os.chmod(copy_path, 0o500)
    else:
        shutil.copyfile(JAILD, copy_path)
        if kind == "owned-by-nobody":
            os.chown(copy_path, 65534, 65534)
            os.chmod(copy_path, 0o500)
        else:
            os.chmod(copy_path, 0o570)
    with Jail(rootfs_a, UID_A) as jail:
        info = os.stat(copy_path)
        assert (info.st_uid, info.st_mode) == (0, 0o100500)
        assert digest(copy_path) == JAILD_DIGEST
        assert runs_jaild_read_only(jail.supervisor) and runs_jaild_read_only(jail.init_pid)


def test_the_two_newest_copies_of_other_builds_stay_older_ones_and_half_written_ones_go(rootfs_a, copy_path):
    """Two builds used in turn (an upgrade, a test of two versions) must not rewrite their
    copies at every start; older builds' copies and a crash's half-written one are removed."""
    CACHE.mkdir(mode=0o700, exist_ok=True)
    others = [CACHE / (f"jaild-{digit}" * 1 + "0" * 39) for digit in "123"]
    half = CACHE / f".{copy_path.name}.new"
    for age, other in enumerate(others):  # jaild-1… the oldest, jaild-3… the newest (of all)
        other.write_bytes(b"another build")
        os.utime(other, (time.time() + 1000 + age,) * 2)
    half.write_bytes(b"a crash's half")
    try:
        with Jail(rootfs_a, UID_A) as jail:
            assert sorted(p.name for p in CACHE.iterdir()) == sorted([copy_path.name, others[1].name, others[2].name])
            assert runs_jaild_read_only(jail.supervisor)
    finally:
        for path in others + [half]:
            path.unlink(missing_ok=True)


def test_a_start_while_another_makes_the_copy_runs_from_its_own_file(rootfs_a, copy_path):
    CACHE.mkdir(mode=0o700, exist_ok=True)
    lock = os.open(CACHE, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with Jail(rootfs_a, UID_A) as jail:
            assert not copy_path.exists()
            assert runs_jaild_read_only(jail.supervisor) and runs_jaild_read_only(jail.init_pid)
            assert jail.run("echo ok").stdout == b"ok\n"
    finally:
        os.close(lock)


def test_a_cache_directory_others_can_write_is_not_used(rootfs_a, copy_path):
    """Even with a good copy in it: another user could have put any file there first."""
    CACHE.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(JAILD, copy_path)
    os.chmod(copy_path, 0o500)
    os.chmod(CACHE, 0o777)
    jail = Jail(rootfs_a, UID_A)
    try:
        warnings = start_capturing(jail)
        assert "jaild runs without its cached copy (/var/cache/jail): /var/cache/jail " in warnings, warnings
        assert len(warnings.splitlines()) == 1, warnings
        assert runs_jaild_read_only(jail.supervisor) and runs_jaild_read_only(jail.init_pid)
        assert text_in_2mib_pages(jail.supervisor) == 0
    finally:
        jail.stop()
        os.chmod(CACHE, 0o700)


def code_mappings(pid):
    """jaild's code mappings of process `pid`: (size in KiB, VmFlags, KiB mapped in 2 MiB pages)."""
    found, current = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                low, high = (int(x, 16) for x in fields[0].split("-"))
                current = {"kib": (high - low) // 1024, "pmd": 0, "flags": ""} if fields[1] == "r-xp" and fields[-1] == "/" else None
                if current is not None:
                    found.append(current)
            elif current is not None and fields[0] == "FilePmdMapped:":
                current["pmd"] = int(fields[1])
            elif current is not None and fields[0] == "VmFlags:":
                current["flags"] = fields[1:]
    return found


def test_the_copy_dropped_from_the_cache_comes_back_in_2mib_pages_but_the_idle_code(rootfs_a, copy_path):
    """Some hosts drop the page cache on a timer (this VM every few minutes): the copy is read
    back in 2 MiB folios, but never the window of the code an idle process keeps mapped, which
    would keep 2 MiB per idle process resident (test_memory's goals)."""
    with Jail(rootfs_a, UID_A):
        pass
    fd = os.open(copy_path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # what a cache drop does to it
    finally:
        os.close(fd)
    with Jail(rootfs_a, UID_A) as jail:
        for pid in (jail.supervisor, jail.init_pid):
            code = code_mappings(pid)
            assert sum(m["pmd"] for m in code) >= 2048, code
            kept = [m for m in code if "nh" in m["flags"]]
            assert len(kept) == 1 and kept[0]["pmd"] == 0 and kept[0]["kib"] == 2048, code
