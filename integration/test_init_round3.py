"""Hardening round three, init's loop (issue 27, items 10-13): a signal root inside aims at init
without kill(2) does not stop the jail; the session helpers' CPU is held to --cpus; init's control
socket takes an exact proof of host root; the operator has session slots the tenant cannot take;
a stopped spare costs the next session at most the hand-off deadline.
Attacks run as root inside through /bin/rootprobe or `jaild enter --root` (jailprobe.c)."""
import os
import signal
import subprocess
import time

import pytest

from conftest import JAIL, JAILD, UID_A, UID_B, Foreground, Jail, as_user, children_of, pid_alive, spare_helper, wait_for
from harness import cmdline

MODES = pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])
CONTROL = f"/run/jail/jaild-{UID_A}-{UID_A}.ctl"


@pytest.fixture
def probe_foreground(rootfs_sec, tmp_path):
    """jaild -c on the probe rootfs, its log in a file; stopped at the end."""
    started = []

    def start(*args):
        jail = Foreground(rootfs_sec, list(args), tmp_path / f"jaild-{len(started)}.log")
        started.append(jail)
        return jail
    yield start
    for jail in started:
        jail.stop()


def init_of(jail):
    kids = children_of(jail.proc.pid)
    assert len(kids) == 1, kids
    return kids[0]


def enter(socket_path, *command, timeout=30):
    return subprocess.run([JAILD, "enter", socket_path, "--root", "--", *command], capture_output=True, timeout=timeout)


# ---- item 10: only kill(2) from the host stops the jail --------------------------------------

@MODES
@pytest.mark.parametrize("attack", ["sigio-pipe", "sigio-socket", "sigqueue-pid0"])
def test_a_signal_root_inside_aims_at_init_without_kill_leaves_the_jail_running(probe_foreground, mode, attack):
    jail = probe_foreground(*mode)
    # F_SETOWN(1) + F_SETSIG(SIGTERM) + O_ASYNC: the kernel sends init SIGTERM with sender pid 0
    # when a byte arrives; sigqueue: SIGTERM with a sender pid of 0 written by hand.
    probe = jail.run(f"/bin/rootprobe {attack} 1 {int(signal.SIGTERM)}")
    assert probe.stdout.decode().strip() == f"{attack}: ok", (probe.stdout, probe.stderr)
    wait_for(lambda: "ignored signal 15 sent to init" in jail.text() or jail.proc.poll() is not None, 10,
             "init to see the signal")
    assert jail.proc.poll() is None, f"the jail stopped:\n{jail.text()}"
    assert jail.run("echo alive").stdout == b"alive\n"
    assert jail.proc.poll() is None


@MODES
def test_the_hosts_kill_still_stops_the_jail(probe_foreground, mode):
    jail = probe_foreground(*mode)
    init = init_of(jail)
    os.kill(init, signal.SIGTERM)  # kill(1), as an operator or systemd would
    wait_for(lambda: not pid_alive(init), 30, "init to stop the jail")
    jail.proc.wait(30)


# ---- item 11 (a): the helpers' CPU is held to --cpus -----------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def read_bytes(pid):
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def test_a_helper_relaying_output_stays_within_the_jails_cpus(rootfs_sec):
    with Jail(rootfs_sec, UID_A, ["--cpus", "0.1"]) as jail:
        # stdout to a device (/dev/zero discards what is written): not passed into the jail,
        # the helper relays every byte of it to the client, which writes it there.
        with open("/dev/zero", "wb") as sink:
            client = subprocess.Popen([JAIL, "-c", "exec timeout 6 cat /dev/zero"], stdout=sink, stderr=subprocess.PIPE,
                                      env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
        try:
            helper = wait_for(lambda: next((p for p in children_of(jail.init_pid)
                                            if cmdline(p).startswith("jaild: [")), None), 10, "the session's helper")
            wait_for(lambda: read_bytes(helper) > 0, 10, "output")
            # A measurement over a fixed window, not a wait for an event.
            began, used, sent = time.monotonic(), cpu_seconds(helper), read_bytes(helper)
            time.sleep(2)
            rate = (cpu_seconds(helper) - used) / (time.monotonic() - began)
            relayed = read_bytes(helper) - sent
        finally:
            client.kill()
            client.wait()
        assert relayed > 1 << 20, relayed  # it did relay
        # --cpus 0.1: a tenth of a CPU, and a margin for the scheduler's accounting.
        assert rate <= 0.15, f"the helper used {rate:.2f} s of CPU per second under --cpus 0.1 ({relayed} bytes)"


# ---- item 11 (b): the control socket's check is exact ---------------------------------------

def control_request(uid, request, pass_path_descriptor):
    """A host uid with CAP_DAC_OVERRIDE (so it gets past the socket's mode) sends a request on
    the control socket, with a lifeline (a pipe) for an adoption request and, if asked, an
    O_PATH descriptor of the proof directory (opened without any permission on it): what init
    answers."""
    code = ("import os, socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({CONTROL!r})\n"
            f"request = {request!r}\n"
            "fds = [os.pipe()[0]] if request.startswith(b'jail-adopt') else []\n"
            f"fds += [os.open('/run/jail/operator', os.O_PATH)] if {pass_path_descriptor!r} else []\n"
            "socket.send_fds(s, [request], fds)\n"
            "s.settimeout(10)\n"
            "print(s.recv(4096))\n")
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=+dac_override",
                           "--ambient-caps=+dac_override", "/usr/bin/python3", "-c", code],
                          capture_output=True, text=True, timeout=30)


def test_the_control_socket_takes_only_host_root(probe_foreground):
    jail = probe_foreground()
    # In the jail's user namespace this uid shows as the overflow uid, like host root.
    for request in (b"jail-enter 1\n", b"jail-adopt 1\n"):
        for path_descriptor in (False, True):
            answer = control_request(UID_B, request, path_descriptor)
            assert "refused no proof of host root" in answer.stdout, (request, answer.stdout, answer.stderr)
    assert "control socket request refused" in jail.text() and "peer_uid=65534" in jail.text()
    # Host root, with the proof: `jaild enter` works, and the jail still has its supervisor.
    operator = enter(jail.socket, "id", "-u")
    assert (operator.returncode, operator.stdout) == (0, b"0\n"), operator.stderr
    assert jail.proc.poll() is None


# ---- item 12: the operator's slots ------------------------------------------------------------

def test_the_operator_enters_while_the_tenant_holds_every_session(probe_foreground):
    jail = probe_foreground("--max-sessions", "3")
    init = init_of(jail)
    holders = [subprocess.Popen([JAIL, "-c", "echo held; exec sleep 60"], stdout=subprocess.PIPE,
                                env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A)) for _ in range(3)]
    try:
        for holder in holders:
            assert holder.stdout.readline() == b"held\n"
        operator = enter(jail.socket, "id", "-u")
        assert (operator.returncode, operator.stdout) == (0, b"0\n"), operator.stderr
        fourth = jail.run("true")
        assert fourth.returncode == 255 and b"limit of 3 sessions" in fourth.stderr, fourth.stderr
        wait_for(lambda: "session refused" in jail.text() and "reason=\"3 sessions are running\"" in jail.text(), 10,
                 "the refusal's log line")
        # The operator's own slots are bounded too, and a refusal there says why.
        entered = [subprocess.Popen([JAILD, "enter", jail.socket, "--root", "--", "sh", "-c", "echo in; exec sleep 60"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
        try:
            for one in entered:
                assert one.stdout.readline() == b"in\n"
            fifth = enter(jail.socket, "true")
            assert fifth.returncode != 0 and b"4 operator sessions are running" in fifth.stderr, fifth.stderr
        finally:
            for one in entered:
                one.kill()
                one.wait()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert pid_alive(init)


# ---- item 13: a stopped spare ----------------------------------------------------------------

def ns_pid(pid):
    return [line.split()[-1] for line in open(f"/proc/{pid}/status") if line.startswith("NSpid:")][0]


@MODES
def test_a_stopped_spare_costs_the_next_session_at_most_the_deadline(rootfs_sec, mode):
    with Jail(rootfs_sec, UID_A, list(mode)) as jail:
        spare = wait_for(lambda: spare_helper(jail.init_pid), 10, "the spare")
        # Root inside stops it, found by its title in the jail's ps (`jaild enter` never uses it).
        listed = enter(jail.socket, "ps", "-o", "pid,args")
        inside = next(line.split()[0] for line in listed.stdout.decode().splitlines() if line.endswith("jaild: spare"))
        assert inside == ns_pid(spare)
        stopped = enter(jail.socket, "kill", "-STOP", inside)
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: open(f"/proc/{spare}/stat").read().rsplit(")", 1)[1].split()[0] == "T", 10, "the spare to stop")
        began = time.monotonic()
        served = jail.run("echo served", timeout=10)
        took = time.monotonic() - began
        assert served.stdout == b"served\n", served.stderr
        assert took < 2, f"the session took {took:.2f} s"
        wait_for(lambda: not pid_alive(spare), 10, "the stopped spare to be killed")
        for n in range(3):
            assert jail.run(f"exit {n}").returncode == n
        wait_for(lambda: spare_helper(jail.init_pid) not in (None, spare), 10, "a new spare")
