"""The spare session helper (issue 21): init forks the next session's helper ahead of time and
hands it the connection; the sessions it serves behave exactly like forked ones."""
import os
import signal
import subprocess

from conftest import JAIL, JAILD, UID_A, Jail, as_user, session_children, sha256, spare_helper, wait_for
from harness import cmdline


def held_session(jail):
    """A session that waits for a line on stdin; returns the client once the program runs."""
    client = subprocess.Popen([JAIL, "-c", "echo ready; read x; exit 7"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    assert client.stdout.readline() == b"ready\n"
    return client


def finish(client):
    out, _ = client.communicate(b"\n", timeout=30)
    return client.returncode, out


def helper_of_the_session(jail):
    return wait_for(lambda: next((p for p in session_children(jail.init_pid) if cmdline(p).startswith("jaild: [")), None),
                    10, "the session's helper")


def test_the_spare_serves_the_next_session_and_a_new_one_follows(rootfs_sec):
    with Jail(rootfs_sec, UID_A) as jail:
        spare = wait_for(lambda: spare_helper(jail.init_pid), 10, "the first spare")
        client = held_session(jail)
        try:
            assert helper_of_the_session(jail) == spare
            # Forked once the session's program runs, not before: a different process.
            follower = wait_for(lambda: spare_helper(jail.init_pid), 10, "the next spare")
            assert follower != spare
        finally:
            code, out = finish(client)
        assert (code, out) == (7, b"")
        # The follower serves the next one, with exact bytes both ways.
        payload = os.urandom(3 << 20)
        result = jail.run("sha256sum | cut -d' ' -f1; head -c 1000000 /dev/zero | tr '\\0' z", input=payload)
        assert result.returncode == 0
        digest, rest = result.stdout.split(b"\n", 1)
        assert digest.decode() == sha256(payload) and rest == b"z" * 1000000


def test_a_killed_spare_costs_no_session(rootfs_sec):
    with Jail(rootfs_sec, UID_A) as jail:
        spare = wait_for(lambda: spare_helper(jail.init_pid), 10, "the spare")
        os.kill(spare, signal.SIGKILL)  # as root inside could
        wait_for(lambda: spare_helper(jail.init_pid) is None, 10, "the dead spare to be reaped")
        # init forks a helper as it did before spares, and a spare comes back behind it.
        assert jail.run("echo served; exit 3").stdout == b"served\n"
        back = wait_for(lambda: spare_helper(jail.init_pid), 10, "a new spare")
        assert back != spare
        assert jail.run("exit 4").returncode == 4


def test_the_spare_is_as_closed_to_the_jail_as_a_helper(rootfs_sec):
    with Jail(rootfs_sec, UID_A) as jail:
        spare = wait_for(lambda: spare_helper(jail.init_pid), 10, "the spare")
        nspid = [line.split()[-1] for line in open(f"/proc/{spare}/status") if line.startswith("NSpid:")][0]
        # The probes run through `jaild enter`, which never uses the spare (a session through the
        # jail's socket would be served by this very spare). The jail's user, then root inside.
        for root in ([], ["--root"]):
            for path in ("mem", "environ", "root/etc/issue"):
                probe = subprocess.run([JAILD, "enter", jail.socket, *root, "--", "/bin/rootprobe", "read-file",
                                        f"/proc/{nspid}/{path}"], capture_output=True, text=True, timeout=30)
                assert probe.stdout.strip() in (f"read-file: EACCES", f"read-file: EPERM"), (root, path, probe)
            traced = subprocess.run([JAILD, "enter", jail.socket, *root, "--", "/bin/rootprobe", "ptrace", nspid],
                                    capture_output=True, text=True, timeout=30)
            assert traced.stdout.strip() == "ptrace: EPERM", (root, traced)
        assert spare_helper(jail.init_pid) == spare
        # Everything it holds is close-on-exec, and it shares no socket with init: not the
        # listener, not the control socket (only its own end of the hand-off socketpair).
        def sockets(pid):
            return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
        for fd in os.listdir(f"/proc/{spare}/fd"):
            flags = int(open(f"/proc/{spare}/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
            assert flags & 0o2000000, (fd, os.readlink(f"/proc/{spare}/fd/{fd}"))
        assert len(sockets(spare)) == 1 and not sockets(spare) & sockets(jail.init_pid)


def test_no_spare_while_the_jail_is_full(rootfs_sec):
    with Jail(rootfs_sec, UID_A, ["--max-sessions", "1"]) as jail:
        wait_for(lambda: spare_helper(jail.init_pid), 10, "the spare")
        client = held_session(jail)
        try:
            # The one session holds the one slot: no spare waits for a session that would be refused.
            wait_for(lambda: spare_helper(jail.init_pid) is None, 10, "no spare at the limit")
            capped = jail.run("true")
            assert capped.returncode == 255 and b"limit of 1 sessions" in capped.stderr, capped.stderr
        finally:
            assert finish(client) == (7, b"")
        wait_for(lambda: spare_helper(jail.init_pid), 10, "the spare once a slot is free")
        assert jail.run("echo again").stdout == b"again\n"
