"""Logs that never vanish (issue 19, item 7): a daemon without syslog writes its own file, a
service ended by the stop is "stopped" and not an error, and a start says nothing it need not."""
import pathlib
import socket
import subprocess
import threading

from conftest import UID_A, Jail, wait_for
from harness import SYSLOG_RELAY, children_of, cmdline, spare_helper

LOG_DIR = pathlib.Path("/var/log/jail")
LOG = LOG_DIR / f"jail-{UID_A}-{UID_A}.log"


def syslog_listening():
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect("/dev/log")
            return True
        except OSError:
            return False


def without_syslog(command):
    """`command` as it runs on a host where nothing listens on /dev/log: where a syslog does
    listen, in a mount namespace of its own with /dev/null over /dev/log (connect is refused)."""
    if not syslog_listening():
        return command
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", 'mount --bind /dev/null /dev/log\nexec "$@"',
            "sh", *command]


def test_boot_service_ended_by_the_stop_is_logged_as_stopped(foreground):
    jail = foreground("--boot", "exec sleep 1000", "--stop-timeout", "5")
    jail.stop()
    text = jail.text()
    assert "boot command 'exec sleep 1000' stopped" in text, text
    assert "error" not in text, text
    assert "OOM" not in text, text


def test_daemon_without_syslog_writes_its_own_log_file(rootfs_a):
    saved = {path: path.read_bytes() for path in LOG_DIR.glob(LOG.name + "*")} if LOG_DIR.exists() else {}
    for path in saved:
        path.unlink()
    try:
        jail = Jail(rootfs_a, UID_A, args=["--boot", "echo booted-$((20+22))"])
        result = subprocess.run(without_syslog(jail.command()), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        jail.supervisor = int(open(jail.pidfile).read())
        try:
            # Not a terminal here: no extra line on stderr; the file says why it exists.
            assert result.stderr == "", result.stderr
            wait_for(lambda: "boot: booted-42" in LOG.read_text(), 10, "the boot output in the log file")
            assert f"syslog is unreachable (nothing listens on /dev/log): logging to {LOG}" in LOG.read_text()
            assert "started on /run/jail/" in LOG.read_text()
            assert oct(LOG.stat().st_mode & 0o777) == "0o640" and LOG.stat().st_uid == 0
            assert oct(LOG_DIR.stat().st_mode & 0o777) == "0o750"
        finally:
            jail.stop()
        wait_for(lambda: "stopped" in LOG.read_text(), 10, "the stop in the log file")
        again = subprocess.run(without_syslog(jail.command()), capture_output=True, text=True, timeout=30)
        jail.supervisor = int(open(jail.pidfile).read())
        jail.stop()
        assert again.returncode == 0 and again.stderr == "", again.stderr
    finally:
        for path in LOG_DIR.glob(LOG.name + "*"):
            path.unlink()
        for path, content in saved.items():
            path.write_bytes(content)


def test_the_note_is_said_once_at_a_terminal(rootfs_a):
    """At a terminal, the first start without syslog says where the log goes; the next does not."""
    import pexpect
    saved = {path: path.read_bytes() for path in LOG_DIR.glob(LOG.name + "*")} if LOG_DIR.exists() else {}
    for path in saved:
        path.unlink()
    try:
        for expected_note in (True, False):
            jail = Jail(rootfs_a, UID_A)
            command = without_syslog(jail.command())
            child = pexpect.spawn(command[0], command[1:], timeout=30)
            child.expect(pexpect.EOF)
            child.close()
            jail.supervisor = int(open(jail.pidfile).read())
            jail.stop()
            assert child.exitstatus == 0
            said = child.before.decode()
            assert ("logging to " + str(LOG) in said) == expected_note, said
    finally:
        for path in LOG_DIR.glob(LOG.name + "*"):
            path.unlink()
        for path, content in saved.items():
            path.write_bytes(content)


def test_the_syslog_relay_starts_at_the_jails_first_message(rootfs_a, tmp_path):
    """An idle jail runs no relay (a fourth process per tenant, SyslogRelay+Init.swift); the
    first datagram to /dev/log starts it, and none is lost, not even more than the socket's
    queue holds (net.unix.max_dgram_qlen) before the relay reads."""
    path = str(tmp_path / "host-log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        with Jail(rootfs_a, UID_A, args=["--jail-name", "lazylog", "--syslog-target", path]) as jail:
            wait_for(lambda: spare_helper(jail.init_pid), 10, "the spare")
            assert [p for p in children_of(jail.init_pid) if cmdline(p) == SYSLOG_RELAY] == []
            # Read as a syslog daemon does, while the jail sends (the host socket's queue is
            # as short as the jail's: the relay drops what it cannot send at once).
            got = []
            reader = threading.Thread(target=lambda: got.extend(listener.recv(65536) for _ in range(40)))
            reader.start()
            result = jail.run("for i in $(seq 1 40); do logger -t lazy \"m$i\"; done; echo sent")
            reader.join()
            assert result.stdout == b"sent\n", result
            assert got == [f"<13>jail/lazylog: lazy: m{i}".encode() for i in range(1, 41)], got
            relay = [p for p in children_of(jail.init_pid) if cmdline(p) == SYSLOG_RELAY]
            assert len(relay) == 1
            # Started once: the next message is the same relay's.
            assert jail.run("logger -t lazy again").returncode == 0
            assert listener.recv(65536) == b"<13>jail/lazylog: lazy: again"
            assert [p for p in children_of(jail.init_pid) if cmdline(p) == SYSLOG_RELAY] == relay
