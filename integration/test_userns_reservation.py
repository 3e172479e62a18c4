"""A jail's id range is never any other principal's, and its user namespace is owned by an id of
its own (issue 27, items 1 and 4).

Item 1: each range is reserved by a line `root:START:65536` in /etc/subuid and /etc/subgid, so
useradd never gives it to an account as subordinate ids (with newuidmap such an account ran as
the jail's root ids and stopped the jail with SIGTERM to init); the default pool lies above
useradd's span (SUB_UID_MIN..SUB_UID_MAX of /etc/login.defs) and a pool inside it is refused;
`jaild destroy` gives the line back.

Item 4: the jail's user namespace is owned by the range's last id, mapped nowhere, so the
kernel's per-user counts of the jail (inotify instances here) are that id's, not host root's."""
import ctypes
import fcntl
import json
import os
import pathlib
import signal
import struct
import subprocess
import tempfile
import textwrap

import pytest

from conftest import JAIL, JAILD, REPO, UID_A, Jail, as_user, children_of, descendants, pid_alive, wait_for

RANGE = 65536
SUBUID, SUBGID = pathlib.Path("/etc/subuid"), pathlib.Path("/etc/subgid")
ACCOUNT_UID = 63090  # the test's own host accounts: 63090, 63091
NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4), linux/nsfs.h


def listed(jail):
    rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, check=True).stdout)
    return next(row for row in rows if row["socket"] == jail.socket)


def entries(path):
    """(name, start, count) of each line of /etc/subuid or /etc/subgid."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            out.append((fields[0], int(fields[1]), int(fields[2])))
    return out


def overlaps(first, count, start):
    return first < start + RANGE and start < first + count


def login_defs_span():
    values = {}
    for line in pathlib.Path("/etc/login.defs").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and not words[0].startswith("#") and words[1].isdigit():
            values[words[0]] = int(words[1])
    return values.get("SUB_UID_MIN", 100000), values.get("SUB_UID_MAX", 600100000)


def remove_lines(path, predicate):
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if not predicate(line.strip())))


@pytest.fixture
def accounts():
    """Host accounts the test makes with useradd (subordinate ids included); deleted at the end,
    with every /etc/subuid and /etc/subgid line of theirs."""
    made = []

    def make(name, uid, *options):
        made.append(name)
        # newuidmap insists on the account's group being the process's: gid = uid. UID_MAX:
        # useradd gives subordinate ids only to uids between UID_MIN and UID_MAX.
        subprocess.run(["groupadd", "-g", str(uid), name], check=True, capture_output=True)
        subprocess.run(["useradd", "-u", str(uid), "-g", str(uid), "-M", "-d", "/nonexistent", "-s", "/bin/sh",
                        "-K", "UID_MAX=65000", *options, name],
                       check=True, capture_output=True)
        return name
    yield make
    for name in made:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
        for path in (SUBUID, SUBGID):
            remove_lines(path, lambda line: line.startswith(name + ":"))


# As the account: a user namespace whose root is host id START (newuidmap checks the account's
# /etc/subuid ranges), then SIGTERM to the jail's init. Prints what each step got.
ATTACK = textwrap.dedent("""
    import ctypes, os, signal, subprocess, sys
    start, target = sys.argv[1], int(sys.argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r); os.close(go_w)
        if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
            print("unshare:", os.strerror(ctypes.get_errno()), flush=True); os._exit(1)
        os.write(ready_w, b"x")
        if os.read(go_r, 1) != b"y":
            print("newuidmap: refused", flush=True); os._exit(1)
        try:
            os.setresgid(0, 0, 0); os.setresuid(0, 0, 0)
        except OSError as error:
            print("setuid:", error.strerror, flush=True); os._exit(1)
        try:
            os.kill(target, signal.SIGTERM); print("kill: ok", flush=True)
        except OSError as error:
            print("kill:", error.strerror, flush=True)
        os._exit(0)
    os.close(ready_w); os.close(go_r)
    os.read(ready_r, 1)
    mapped = all(subprocess.run([tool, str(child), "0", start, "1"], capture_output=True).returncode == 0
                 for tool in ("newuidmap", "newgidmap"))
    os.write(go_w, b"y" if mapped else b"n")
    os.waitpid(child, 0)
""")


def attack(uid, start, init_pid):
    result = subprocess.run(["/usr/bin/python3", "-c", ATTACK, str(start), str(init_pid)], capture_output=True, text=True,
                            timeout=30, preexec_fn=as_user(uid), cwd="/")
    return result.stdout + result.stderr


def test_an_account_with_subordinate_ids_never_gets_a_running_jails_range(rootfs_sec, accounts):
    with Jail(rootfs_sec, UID_A) as jail:
        start = listed(jail)["userns_start"]
        reservation = ("root", start, RANGE)
        # An account whose subordinate ids useradd would take from the jail's very start
        # (-K moves its span there): without the reservation it gets the jail's root ids.
        name = accounts("jt-r90", ACCOUNT_UID, "-K", f"SUB_UID_MIN={start}", "-K", f"SUB_UID_MAX={start + (1 << 28)}",
                        "-K", f"SUB_GID_MIN={start}", "-K", f"SUB_GID_MAX={start + (1 << 28)}")
        output = attack(ACCOUNT_UID, start, jail.init_pid)
        assert "kill: ok" not in output, f"the account signalled the jail's init through newuidmap: {output}"
        assert "newuidmap: refused" in output and pid_alive(jail.init_pid), output
        assert jail.run("echo alive").stdout == b"alive\n"
        for path in (SUBUID, SUBGID):
            assert reservation in entries(path), (path, entries(path))
            theirs = [e for e in entries(path) if e[0] == name]
            assert theirs, (path, entries(path))  # useradd did give it subordinate ids
            assert not any(overlaps(first, count, start) for _, first, count in theirs), (path, theirs, start)
        # The default pool lies above useradd's own span: a plain account's ids are far from it.
        low, high = login_defs_span()
        assert start > high, (start, low, high)
        plain = accounts("jt-r91", ACCOUNT_UID + 1)
        for path in (SUBUID, SUBGID):
            theirs = [e for e in entries(path) if e[0] == plain]
            assert theirs and all(low <= first and first + count - 1 <= high for _, first, count in theirs), theirs
            assert not any(overlaps(first, count, start) for _, first, count in theirs)


def next_useradd_start():
    """Where useradd gives the next account its subordinate ids: the lowest id of its span from
    which 65536 ids are free in both files."""
    low, high = login_defs_span()
    taken = entries(SUBUID) + entries(SUBGID)
    for candidate in sorted({low} | {first + count for _, first, count in taken}):
        if candidate >= low and not any(overlaps(first, count, candidate) for _, first, count in taken):
            return candidate
    raise AssertionError("useradd's span is full")


def test_a_pool_where_useradd_allocates_next_is_refused(rootfs_sec):
    start = next_useradd_start()
    jail = Jail(rootfs_sec, UID_A, ["--userns-pool", f"{start}:{RANGE}"], prefix="/run/jail/spantest")
    before = (SUBUID.read_bytes(), SUBGID.read_bytes())
    result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    if result.returncode == 0:  # started after all: stop it on the way out
        jail.supervisor = int(open(jail.pidfile).read())
        jail.stop()
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"the user-namespace pool {start}:{RANGE} overlaps the subordinate ids useradd hands out" in result.stderr
    assert "/etc/login.defs" in result.stderr
    assert not os.path.exists(jail.socket)
    assert (SUBUID.read_bytes(), SUBGID.read_bytes()) == before


def test_a_range_taken_meanwhile_is_refused_at_the_next_start(rootfs_sec):
    jail = Jail(rootfs_sec, UID_A).start()
    try:
        start = listed(jail)["userns_start"]
    finally:
        jail.stop()
    intruder = f"jt-intruder:{start + 100}:10"
    SUBUID.write_text(SUBUID.read_text() + intruder + "\n")
    try:
        result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            jail.supervisor = int(open(jail.pidfile).read())
            jail.stop()
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert f"/etc/subuid has '{intruder}'" in result.stderr
    finally:
        remove_lines(SUBUID, lambda line: line == intruder)
    # Its own line missing (a jail from before the reservation): added at the next start.
    remove_lines(SUBUID, lambda line: line == f"root:{start}:{RANGE}")
    with Jail(rootfs_sec, UID_A) as again:
        assert listed(again)["userns_start"] == start
        assert ("root", start, RANGE) in entries(SUBUID)


def test_adoption_adds_a_missing_reservation(rootfs_sec):
    jail = Jail(rootfs_sec, UID_A).start()
    init = jail.init_pid
    pids = {jail.supervisor, init, *descendants(init)}
    try:
        start = listed(jail)["userns_start"]
        line = f"root:{start}:{RANGE}"
        for path in (SUBUID, SUBGID):
            remove_lines(path, lambda text: text == line)  # as a jaild before the reservation left it
        os.kill(jail.supervisor, signal.SIGKILL)
        wait_for(lambda: not pid_alive(jail.supervisor), 10, "the supervisor to die")
        result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        jail.supervisor = int(open(jail.pidfile).read())
        pids.add(jail.supervisor)
        assert children_of(jail.supervisor) == [] and pid_alive(init)  # adopted, not started again
        for path in (SUBUID, SUBGID):
            assert ("root", start, RANGE) in entries(path), (path, entries(path))
    finally:
        if pid_alive(jail.supervisor):
            os.kill(jail.supervisor, signal.SIGTERM)
        try:
            wait_for(lambda: not any(pid_alive(p) for p in pids), 20, "the jail to stop")
        finally:
            for pid in pids:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_destroy_gives_the_reservation_back(installed_jail):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-resv-", dir="/tmp"))
    os.chmod(base, 0o755)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JAIL_CONFIG_DIR": str(base / "conf"),
           "JAIL_STATE_DIR": str(base / "state"), "JAIL_SSHD_CONFIG_DIR": os.environ["JAIL_SSHD_CONFIG_DIR"]}
    (base / "state" / "bases").mkdir(parents=True)
    (base / "conf").mkdir()
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(base / "state" / "bases" / "busybox"), "61000",
                    "Jail reservation base"], check=True, capture_output=True)
    jaild = str(pathlib.Path(installed_jail).parent / "jaild")
    before = (SUBUID.read_text(), SUBGID.read_text())
    try:
        for step in (["create", "jt-r92", "--uid", "63092", "--base", "busybox"], ["start", "jt-r92"]):
            result = subprocess.run([jaild, *step], capture_output=True, text=True, timeout=60, env=env)
            assert result.returncode == 0, result.stderr
        rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, check=True).stdout)
        start = next(row for row in rows if row["socket"].endswith("-63092-63092.sock"))["userns_start"]
        for path in (SUBUID, SUBGID):
            assert ("root", start, RANGE) in entries(path)
            # Someone else's lines with the same start but another owner or count are not jaild's.
            path.write_text(path.read_text() + f"jt-other:{start}:{RANGE}\nroot:{start}:{2 * RANGE}\n")
        result = subprocess.run([jaild, "destroy", "jt-r92", "--yes"], capture_output=True, text=True, timeout=60,
                                env=env)
        assert result.returncode == 0, result.stderr
        for path, text in zip((SUBUID, SUBGID), before):
            assert path.read_text() == text + f"jt-other:{start}:{RANGE}\nroot:{start}:{2 * RANGE}\n"
    finally:
        subprocess.run([jaild, "destroy", "jt-r92", "--yes"], capture_output=True, timeout=60, env=env)
        subprocess.run(["userdel", "jt-r92"], capture_output=True)
        subprocess.run(["groupdel", "jt-r92"], capture_output=True)
        for path, text in zip((SUBUID, SUBGID), before):
            path.write_text(text)
        shells = pathlib.Path("/etc/shells")
        shells.write_text("".join(line for line in shells.read_text().splitlines(keepends=True)
                                  if line.strip() != installed_jail))
        subprocess.run(["rm", "-rf", str(base)])


def namespace_owner(pid):
    fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    try:
        return struct.unpack("I", fcntl.ioctl(fd, NS_GET_OWNER_UID, b"\0" * 4))[0]
    finally:
        os.close(fd)


def host_root_can_open_inotify():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return os.strerror(ctypes.get_errno())
    os.close(fd)
    return "ok"


def test_a_jails_inotify_instances_are_charged_to_its_own_owner(rootfs_sec):
    host_max = int(pathlib.Path("/proc/sys/user/max_inotify_instances").read_text())
    with Jail(rootfs_sec, UID_A) as jail:
        holder = subprocess.Popen([JAIL, "-c", "exec /bin/jailprobe hold-inotify 200"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
        try:
            held = holder.stdout.readline().decode()
            last = holder.stdout.readline().decode()
            assert held.startswith("held ") and last.startswith("last-init: "), (held, last)
            # The jail has the host's per-user budget, its owner's, and host root keeps its own.
            assert host_root_can_open_inotify() == "ok", f"the jail ({held.strip()}) took host root's instances"
            assert int(held.split()[1]) <= host_max and last.strip() == "last-init: EMFILE", (held, last)
        finally:
            holder.stdin.close()
            try:
                holder.wait(10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        start = listed(jail)["userns_start"]
        owner = start + RANGE - 1
        assert namespace_owner(jail.init_pid) == owner
        # Mapped nowhere: no process of the jail can be the owner.
        for kind in ("uid_map", "gid_map"):
            for line in pathlib.Path(f"/proc/{jail.init_pid}/{kind}").read_text().splitlines():
                inside, outside, count = map(int, line.split())
                assert not outside <= owner < outside + count, (kind, line)
        # Inside, the limits are the host's per-user values, not 2^31-1.
        for name in ("max_inotify_instances", "max_inotify_watches", "max_user_namespaces"):
            host = pathlib.Path(f"/proc/sys/user/{name}").read_text()
            assert jail.run(f"cat /proc/sys/user/{name}").stdout == host.encode(), name
