"""Failures that used to vanish (issue 28): the state file, the pid file and the record of the
ports jaild reserves. Each is made to fail here, and the operator must see it: one line naming
the call, the path and the reason, a failed start (exit 1), and nothing left behind."""
import os
import pathlib
import signal
import subprocess

from conftest import JAILD, UID_A, Jail, wait_for
from test_ports import free_port

STATE_DIR = pathlib.Path("/run/jail/state")
RESERVED = pathlib.Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
RESERVED_RECORD = pathlib.Path("/run/jail/ports/reserved")


def in_private_mounts(setup, command):
    """`command` in a mount namespace of its own, after the shell `setup` (mounts the host never sees)."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", setup + '\nexec "$@"', "sh",
                           *command], capture_output=True, text=True, timeout=60)


def supervisors_of(uid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if text.startswith((f"jaild: supervisor [{uid}:{uid}]", f"jaild: init [{uid}:{uid}]")):
                found.append(int(entry))
    return found


def assert_nothing_left(jail):
    wait_for(lambda: supervisors_of(jail.uid) == [], 30, "the failed jail's processes to exit")
    assert not os.path.exists(jail.socket)
    assert not os.path.exists(jail.pidfile)


def test_a_state_file_that_cannot_be_written_fails_the_start(rootfs_a):
    # A read-only /run/jail/state (seen by this jaild only): the jail would run unknown to
    # list, stop NAME, sessions and adoption, so it is stopped and the start fails.
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    jail = Jail(rootfs_a, UID_A)
    result = in_private_mounts(f"mount -t tmpfs -o ro,size=64k tmpfs {STATE_DIR}", jail.command())
    try:
        assert result.returncode == 1, result.stderr
        assert "jaild: cannot save the jail's state: open(/run/jail/state/" in result.stderr, result.stderr
        assert ".state.new): Read-only file system" in result.stderr, result.stderr
    finally:
        assert_nothing_left(jail)


def test_a_pid_file_that_cannot_be_written_fails_the_start(rootfs_a):
    # The socket directory on a full file system: the pid file is made (an inode) but its pid
    # cannot be written, and a lock without a pid is not taken.
    directory = pathlib.Path("/run/jail/itest-full")
    directory.mkdir(mode=0o755, exist_ok=True)
    jail = Jail(rootfs_a, UID_A, prefix=f"{directory}/jail")
    try:
        result = in_private_mounts(
            f"mount -t tmpfs -o size=4k,mode=0755 tmpfs {directory}\n"
            f"dd if=/dev/zero of={directory}/filler bs=4096 count=4 2>/dev/null || true",
            jail.command())
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"jaild: write({jail.pidfile}): No space left on device\n", result.stderr
        assert_nothing_left(jail)
    finally:
        directory.rmdir()


def test_a_record_of_reserved_ports_that_cannot_be_written_fails_the_start(rootfs_a):
    # Without its record, a port jaild reserves host-wide would stay reserved for ever: the
    # sysctl is left as it was and the --ports jail does not start.
    port = free_port()
    before = RESERVED.read_text()
    blocker = pathlib.Path(f"{RESERVED_RECORD}.new")
    blocker.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    blocker.mkdir()
    jail = Jail(rootfs_a, UID_A, ["--ports", f"tcp:{port}"])
    try:
        result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert result.stderr == (f"jaild: cannot record the ports jaild reserves in {RESERVED_RECORD}: Is a directory\n"), \
            result.stderr
        assert RESERVED.read_text() == before
        assert_nothing_left(jail)
    finally:
        blocker.rmdir()
        jail.stop()


def test_an_owned_ports_map_id_that_cannot_be_read_fails_the_start(rootfs_a):
    # Taken for absent, an unreadable /run/jail/ports/map-id would have this jail find the map
    # by name or make a second one beside the map every other jail's filter uses. Here (in this
    # jaild's mounts only) the record directory is an empty tmpfs whose map-id is a directory.
    port = free_port()
    PORTS_DIR = RESERVED_RECORD.parent
    PORTS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    jail = Jail(rootfs_a, UID_A, ["--ports", f"tcp:{port}"])
    result = in_private_mounts(f"mount -t tmpfs -o size=64k,mode=0700 tmpfs {PORTS_DIR}\nmkdir {PORTS_DIR}/map-id",
                               jail.command())
    try:
        assert result.returncode == 1, result.stderr
        assert (f"jaild: --ports: cannot read the owned-ports map's id, {PORTS_DIR}/map-id: Is a directory"
                in result.stderr), result.stderr
    finally:
        assert_nothing_left(jail)


def test_ports_that_cannot_be_given_back_at_the_stop_make_its_exit_status_1(foreground):
    # At the stop, the record of what jaild reserved cannot be read (a directory in its place):
    # taken for "nothing", the port would stay reserved for ever. One error line, and jaild -c
    # exits 1 instead of 0.
    port = free_port()
    before = RESERVED.read_text()
    jail = foreground("--ports", f"tcp:{port}")
    try:
        assert port in parse_ports(RESERVED.read_text())
        RESERVED_RECORD.unlink()
        RESERVED_RECORD.mkdir()
        jail.proc.send_signal(signal.SIGTERM)
        assert jail.proc.wait(30) == 1, jail.text()
        assert (f"cannot give back the jail's ports: cannot read the record of the ports jaild reserved, "
                f"{RESERVED_RECORD}: Is a directory") in jail.text(), jail.text()
    finally:
        if RESERVED_RECORD.is_dir():
            RESERVED_RECORD.rmdir()
        RESERVED.write_text(before)


def parse_ports(text):
    ports = set()
    for item in text.replace("\n", ",").split(","):
        if item.strip():
            low, _, high = item.strip().partition("-")
            ports.update(range(int(low), int(high or low) + 1))
    return ports


def test_list_says_a_state_file_it_cannot_read():
    # `jaild list` reads the running jails from the state files: one it cannot read or decode
    # was shown as no jail at all. In a /run/jail/state of its own (a tmpfs this test's mount
    # namespace alone sees): a directory where a state file should be, and a file of garbage.
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    setup = (f"mount -t tmpfs -o size=64k tmpfs {STATE_DIR}\n"
             f"mkdir {STATE_DIR}/jail-64000-64000.state\n"
             f"echo garbage > {STATE_DIR}/jail-64001-64001.state")
    result = in_private_mounts(setup, [JAILD, "list"])
    assert result.returncode == 0, result.stderr
    state = f"{STATE_DIR}/jail-64000-64000.state"
    assert f"jaild: warning: cannot read the state file of jail jail-64000-64000: read({state}): Is a directory" in result.stderr, result.stderr
    assert f"jaild: warning: {STATE_DIR}/jail-64001-64001.state is not a jail state file" in result.stderr, result.stderr
