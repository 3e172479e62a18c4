"""A jail outlives its supervisor and the next jaild adopts it (issue 17): kill -9 of jaild
costs the tenant nothing, a new (or upgraded) jaild takes the running init over, a recycled
pid is never taken for init, and the systemd unit leaves the jail's processes alone."""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import JAILD, REPO, UID_A, Jail, children_of, descendants, jail_descendants, outcome, pid_alive, wait_for
from test_ports import bpf_programs, free_port

STATE_DIR = pathlib.Path("/run/jail/state")


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


def start_time(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])


def jail_pids(init_pid):
    return [init_pid] + jail_descendants(init_pid)


def listed(jail):
    rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True).stdout)
    return [r for r in rows if r["socket"] == jail.socket]


def state_file(jail):
    found = [p for p in STATE_DIR.glob(f"jail-{jail.uid}-{jail.uid}*.state")
             if f"socket={jail.socket}\n" in p.read_text()]
    return found[0] if found else None


def readopt(jail, binary=JAILD):
    """jaild again with the jail's own arguments: it must adopt (exit 0, no second init)."""
    command = [binary] + jail.command()[1:]
    begun = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - begun
    assert result.returncode == 0, result.stderr
    supervisor = int(open(jail.pidfile).read())
    assert cmdline(supervisor).startswith(f"jaild: supervisor [{jail.uid}:{jail.uid}]")
    assert children_of(supervisor) == []  # adopted, not started: init is not its child
    jail.supervisor = supervisor
    return took


def kill_supervisor(jail):
    supervisor = jail.supervisor
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not pid_alive(supervisor), 10, "the supervisor to die")


class Tracked:
    """Everything a test's jail may leave, removed at the end by pid and path."""

    def __init__(self, jail):
        self.jail = jail
        self.pids = set()
        self.cgroups = []

    def note(self):
        if self.jail.supervisor:
            self.pids.add(self.jail.supervisor)
        if self.jail.init_pid and pid_alive(self.jail.init_pid):
            self.pids.update(jail_pids(self.jail.init_pid))
        for row in listed(self.jail):
            self.cgroups = [row["cgroup"]] if row["cgroup"] else self.cgroups

    def cleanup(self):
        for pid in self.pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p) for p in self.pids), 20, "the jail's processes to die")
        base = self.jail.socket[:-len(".sock")]
        for path in (base + ".sock", base + ".pid", base + ".ctl"):
            if os.path.lexists(path):
                os.unlink(path)
        found = state_file(self.jail)
        if found:
            found.unlink()
        for directory in self.cgroups:
            for root in {"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"}:
                name = pathlib.Path(directory).name
                for d in (f"{root}/jail/{name}/init", f"{root}/jail/{name}/init.scope", f"{root}/jail/{name}/programs", f"{root}/jail/{name}/sessions",
                          f"{root}/jail/{name}"):
                    if os.path.isdir(d):
                        os.rmdir(d)


@pytest.fixture
def tracked(rootfs_sec):
    trackers = []

    def make(args=()):
        jail = Jail(rootfs_sec, UID_A, list(args))
        t = Tracked(jail)
        trackers.append(t)
        return t
    yield make
    for t in trackers:
        t.cleanup()


def program_ids(cgroup_dir):
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup_dir], capture_output=True, text=True).stdout
    return {p["id"] for p in json.loads(out or "[]")}


def assert_stopped_cleanly(jail, pids, cgroup):
    attached = program_ids(cgroup)
    result = subprocess.run([JAILD, "stop", jail.socket], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not any(pid_alive(p) for p in pids), 20, "every process of the jail to end")
    base = jail.socket[:-len(".sock")]
    for path in (base + ".sock", base + ".pid", base + ".ctl"):
        assert not os.path.lexists(path), path
    assert state_file(jail) is None
    assert not os.path.exists(cgroup)
    assert listed(jail) == []
    # The jail's programs are freed (other jails' may be loaded: compare ids, not names).
    loaded = {p["id"] for p in json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                                         text=True).stdout or "[]")}
    assert attached and not attached & loaded


def session_sleep(jail, seconds):
    """A background process of a session that has ended: its host pid."""
    result = jail.run(f"setsid sleep {seconds} </dev/null >/dev/null 2>&1 & echo $!")
    assert result.returncode == 0, result.stderr
    return wait_for(lambda: next((p for p in descendants(jail.init_pid) if cmdline(p) == f"sleep {seconds}"), None),
                    10, "the session's sleep")


def adoption_round_trip(tracked, binary):
    mine = free_port()
    other = free_port(mine + 1)
    t = tracked(["--boot", "exec sleep 1001", "--ports", f"tcp:{mine}", "--pids", "200", "--memory", "128M"])
    jail = t.jail.start()
    t.note()
    init = jail.init_pid
    cgroup = listed(jail)[0]["cgroup"]
    programs = bpf_programs(cgroup)
    assert ("cgroup_inet4_bind", "jail_ports4") in programs and ("cgroup_inet6_bind", "jail_ports6") in programs
    boot = wait_for(lambda: next((p for p in descendants(init) if cmdline(p) == "sleep 1001"), None), 10, "the boot service")
    session = session_sleep(jail, 1002)
    before = {init, boot, session}
    wait_for(lambda: set(jail_pids(init)) == before, 10, "the session's helper to be gone")
    kill_supervisor(jail)
    # The jail goes on: init, its boot service and the session's process, untouched.
    for pid in (init, boot, session):
        assert pid_alive(pid), cmdline(pid)
    assert jail.run("echo still served").stdout == b"still served\n"
    assert outcome(jail, "bind", "tcp4", str(other)) == "EPERM"
    assert outcome(jail, "bind", "tcp4", str(mine)) == "ok"
    took = readopt(jail, binary)
    t.note()
    assert [p for p in jail_pids(init) if cmdline(p).startswith("jaild: init")] == [init]
    # No second init, nothing new, nothing gone (once the probes' session helpers are reaped).
    wait_for(lambda: set(jail_pids(init)) == before, 10, "the jail's processes to be as before")
    rows = listed(jail)
    assert len(rows) == 1 and rows[0]["init_pid"] == init and rows[0]["supervisor_pid"] == jail.supervisor
    assert bpf_programs(cgroup) == programs  # attached to the cgroup, not to a supervisor's fd
    assert jail.run("echo adopted").stdout == b"adopted\n"
    assert subprocess.run([JAILD, "status", jail.socket], capture_output=True).returncode == 0
    assert_stopped_cleanly(jail, before | {jail.supervisor}, cgroup)
    return took


def test_killed_supervisor_leaves_the_jail_running_and_jaild_adopts_it(tracked):
    took = adoption_round_trip(tracked, JAILD)
    print(f"adoption: jaild exited 0 after {took * 1000:.1f} ms")


def test_a_different_jaild_binary_adopts_as_an_upgrade(tracked):
    directory = tempfile.mkdtemp(prefix="jaild-upgrade-")
    try:
        newer = os.path.join(directory, "jaild")
        shutil.copy2(JAILD, newer)
        adoption_round_trip(tracked, newer)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_recycled_pid_is_neither_adopted_nor_signalled(tracked):
    t = tracked()
    jail = t.jail.start()
    t.note()
    state = state_file(jail)
    text = state.read_text()
    # Both gone, as after a host crash of jaild and init: only the files remain.
    os.kill(jail.init_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(jail.supervisor), 20, "the supervisor to exit after init")
    state.write_text(text)
    # The recorded pid now names an unrelated process, with even its start time copied.
    stranger = subprocess.Popen(["sleep", "1003"])
    try:
        crafted = re.sub(r"^init=\d+$", f"init={stranger.pid}", text, flags=re.M)
        crafted = re.sub(r"^initstart=\d+$", f"initstart={start_time(stranger.pid)}", crafted, flags=re.M)
        state.write_text(crafted)
        again = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
        assert again.returncode == 0, again.stderr
        supervisor = int(open(jail.pidfile).read())
        jail.supervisor = supervisor
        kids = children_of(supervisor)
        assert len(kids) == 1  # started afresh: a new init of its own
        jail.init_pid = kids[0]
        t.note()
        assert stranger.poll() is None and pid_alive(stranger.pid)
        assert f"init={kids[0]}\n" in state_file(jail).read_text()
        assert jail.run("echo fresh").stdout == b"fresh\n"
        jail.stop()
        assert stranger.poll() is None  # not signalled, at start or at stop
    finally:
        stranger.kill()
        stranger.wait()


def test_an_orphaned_jail_is_listed_and_stopped_without_a_supervisor(tracked):
    t = tracked(["--ports", f"tcp:{free_port()}"])
    jail = t.jail.start()
    t.note()
    init = jail.init_pid
    cgroup = listed(jail)[0]["cgroup"]
    session = session_sleep(jail, 1005)
    kill_supervisor(jail)
    rows = listed(jail)
    assert len(rows) == 1 and rows[0]["init_pid"] == init and rows[0]["supervisor_pid"] == 0
    status = subprocess.run([JAILD, "status", jail.socket], capture_output=True, text=True)
    assert status.returncode == 0 and "running without a supervisor" in status.stdout
    assert_stopped_cleanly(jail, {init, session}, cgroup)


def test_incompatible_state_is_refused_and_the_jail_runs_on(tracked):
    t = tracked()
    jail = t.jail.start()
    t.note()
    init = jail.init_pid
    kill_supervisor(jail)
    state = state_file(jail)
    text = state.read_text()
    state.write_text(text.replace("version=2\n", "version=3\n"))
    refused = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert refused.stderr == (f"jaild: the jail on {jail.socket} (init pid {init}) was started by a jaild with state "
                              f"format 3; this jaild reads format 2: stop the jail (kill -TERM {init}) and start it again\n")
    assert pid_alive(init) and jail.run("echo untouched").stdout == b"untouched\n"
    state.write_text(text)
    readopt(jail)
    t.note()
    jail.stop()
    wait_for(lambda: not pid_alive(init), 20, "init to stop")


def test_init_killed_under_an_adopting_supervisor_cleans_up(tracked):
    t = tracked(["--memory", "64M"])
    jail = t.jail.start()
    t.note()
    init = jail.init_pid
    cgroup = listed(jail)[0]["cgroup"]
    kill_supervisor(jail)
    proc = subprocess.Popen([JAILD, "-c"] + jail.command()[1:], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "adopted" in proc.stderr.readline(), 20, "the adoption")
        t.pids.add(proc.pid)
        os.kill(init, signal.SIGKILL)
        assert proc.wait(20) == 1
        rest = proc.stderr.read()
        assert rest.endswith("jaild: error: the jail's init exited unexpectedly (status unknown: "
                             "this jaild adopted it and is not its parent)\n"), rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    base = jail.socket[:-len(".sock")]
    for path in (base + ".sock", base + ".pid", base + ".ctl"):
        assert not os.path.lexists(path), path
    assert state_file(jail) is None and not os.path.exists(cgroup)


def test_as_under_systemd_a_restarted_jaild_adopts_relays_logs_and_stops(tracked, tmp_path):
    """What systemd does with jaild@NAME: Type=notify, the main process killed, restarted."""
    t = tracked(["--boot", "while :; do echo tick; sleep 0.05; done"])
    jail = t.jail
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(20)
    env = {"NOTIFY_SOCKET": path, "PATH": "/usr/bin:/bin"}
    procs = []
    try:
        first = subprocess.Popen(jail.command(), env=env, stderr=subprocess.DEVNULL)
        procs.append(first)
        assert listener.recv(4096).decode() == f"READY=1\nMAINPID={first.pid}"
        jail.supervisor = first.pid
        jail.init_pid = children_of(first.pid)[0]
        t.note()
        init = jail.init_pid
        first.kill()  # systemctl kill --kill-whom=main -s KILL
        first.wait()
        assert jail.run("echo alone").stdout == b"alone\n"
        again = subprocess.Popen(jail.command(), env=env, stderr=subprocess.PIPE, text=True)
        procs.append(again)
        t.pids.add(again.pid)
        assert listener.recv(4096).decode() == f"READY=1\nMAINPID={again.pid}"
        assert children_of(again.pid) == [] and pid_alive(init)
        seen = []
        # The boot service's output and init's own log reach the new supervisor.
        wait_for(lambda: seen.append(again.stderr.readline()) or "boot: tick" in seen[-1], 20, "boot output")
        assert any("adopted" in line for line in seen), seen
        again.send_signal(signal.SIGTERM)  # systemctl stop
        assert listener.recv(4096) == b"STOPPING=1"
        assert again.wait(30) == 0
        wait_for(lambda: not pid_alive(init), 20, "init to stop")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        listener.close()


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_twenty_kill_and_adopt_cycles_leak_nothing(tracked):
    # A boot service that writes all the time: with no supervisor reading, init drains its
    # pipe, so it neither blocks nor dies of SIGPIPE.
    t = tracked(["--boot", "exec sleep 1004", "--boot", "while :; do echo tick; sleep 0.01; done"])
    jail = t.jail.start()
    t.note()
    init = jail.init_pid
    assert jail.run("echo 0").stdout == b"0\n"
    ticker = wait_for(lambda: next((p for p in descendants(init) if "echo tick" in cmdline(p)), None), 10, "the ticker")
    def lasting():  # the ticker's own `sleep 0.01` comes and goes every 10 ms: not counted
        return len([p for p in jail_pids(init) if cmdline(p) != "sleep 0.01"])
    fds, processes = fd_count(init), lasting()
    times = []
    for n in range(1, 21):
        kill_supervisor(jail)
        assert jail.run(f"echo {n}").stdout == f"{n}\n".encode()
        times.append(readopt(jail))
        t.pids.add(jail.supervisor)
        assert jail.run(f"echo {n}").stdout == f"{n}\n".encode()
    assert pid_alive(ticker)
    assert fd_count(init) == fds
    wait_for(lambda: lasting() == processes, 10, "no more processes than before")
    times.sort()
    print(f"adoption (jaild start to exit 0): median {times[10] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
    jail.stop()
    wait_for(lambda: not pid_alive(init), 20, "init to stop")


def test_systemd_unit_leaves_the_jail_alone_and_verifies(tmp_path):
    unit = (REPO / "contrib" / "systemd" / "jaild@.service").read_text()
    service = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert service["KillMode"] == "process"  # a killed or restarted jaild takes no tenant process along
    assert service["Restart"] == "on-failure"  # and the next one adopts the jail
    assert service["Type"] == "notify"
    if not shutil.which("systemd-analyze"):
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (scripts/test installs systemd)")
        pytest.skip("no systemd-analyze")
    fake = tmp_path / "jaild"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (tmp_path / "jaild@.service").write_text(unit.replace("/usr/local/sbin/jaild", str(fake)))
    # Its Documentation= names the man pages the package installs: here, the checkout's.
    for page, section in (("jaild.8", "man8"), ("jail.conf.5", "man5")):
        (tmp_path / "man" / section).mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "man" / page, tmp_path / "man" / section / page)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "jaild@test.service")],
                            capture_output=True, text=True, env=dict(os.environ, MANPATH=str(tmp_path / "man")))
    assert result.returncode == 0, result.stderr
