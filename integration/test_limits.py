"""Limits of everything a jail runs (issue 6): its cgroups (made at start, removed at stop),
--pids against a fork bomb, --memory against a hog (the jail's own OOM kill; init and the
session helpers stay outside it), --cpus as a CFS quota and --rlimit in every program."""
import os
import pathlib
import subprocess

from conftest import JAIL, UID_A, Jail, as_user, cgroup_of, children_of, jail_cgroups, pid_alive, spare_helper, wait_for


def test_pids_limit_contains_a_fork_bomb(foreground):
    jail = foreground("--pids", "64")
    # Four loops that fork for ever and keep what they forked: the limit holds them at 64.
    # busybox sh gives up at the first refused fork (bash would retry), so a loop may end once
    # it hit the limit, and the session with it: the kernel's count of refused forks
    # (pids.events) is what says the limit was hit, whenever the poll looks.
    bomb = subprocess.Popen([JAIL, "-c", "for j in 1 2 3 4; do (while :; do sleep 1000 & done) & done; wait"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    try:
        pids_dir = pathlib.Path("/sys/fs/cgroup/pids/jail") / f"jail-{UID_A}-{UID_A}" / "programs"

        def refused_forks():
            return int((pids_dir / "pids.events").read_text().split()[1])
        wait_for(lambda: refused_forks() > 0, 60, "the bomb to hit the limit")
        # The host is fine, a new session opens and its builtins kill the bomb.
        result = jail.run("for i in 1 2 3 4 5 6 7 8; do kill -9 -1; done; echo cleaned", timeout=60)
        assert result.stdout == b"cleaned\n", result.stderr
        wait_for(lambda: int((pids_dir / "pids.current").read_text()) == 0, 30, "the bomb to be gone")
        assert int((pids_dir / "pids.max").read_text()) == 64
    finally:
        bomb.kill()
        bomb.wait()
    assert jail.run("echo served").stdout == b"served\n"


def jail_processes(jail, controller="pids"):
    """Processes in the jail's limited program cgroup of a v1 controller (this host's limits)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if "jail-61000-61000/programs" in (cgroup_of(int(pid), controller) or ""):
                    out.append(int(pid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def test_memory_hog_is_killed_inside_and_init_survives(foreground):
    jail = foreground("--memory", "48M")
    # The spare session helper (replaced after each session) may not have left init's cgroup yet.
    init = wait_for(lambda: next((p for p in children_of(jail.proc.pid) if spare_helper(p)), None), 10,
                    "init and its spare session helper")
    spare = spare_helper(init)
    init_pids = [int(p) for p in open(f"/sys/fs/cgroup/unified/jail/jail-{UID_A}-{UID_A}/init.scope/cgroup.procs").read().split()
                 if int(p) != spare]
    assert init in init_pids
    result = jail.run("head -c 400000000 /dev/zero | tail -c 300000000 > /dev/null; echo status=$?")
    assert b"status=137" in result.stdout, (result.stdout, result.stderr)
    assert all(pid_alive(p) for p in init_pids)
    assert jail.run("echo served").stdout == b"served\n"
    memory = pathlib.Path("/sys/fs/cgroup/memory/jail") / f"jail-{UID_A}-{UID_A}" / "programs"
    assert int((memory / "memory.limit_in_bytes").read_text()) == 48 << 20
    kills = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
    assert int(kills["oom_kill"]) > 0  # the cgroup's own OOM killer did it


def test_cpus_and_rlimits_are_applied(foreground):
    jail = foreground("--cpus", "0.5", "--rlimit", "nofile=64:128", "--rlimit", "core=0")
    assert jail.run("ulimit -n; ulimit -Hn; ulimit -c").stdout == b"64\n128\n0\n"
    session = subprocess.Popen([JAIL, "-c", "echo ready; read x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    try:
        assert session.stdout.readline() == b"ready\n"
        program = jail_processes(jail, "cpu")[0]
        cpu_dir = pathlib.Path("/sys/fs/cgroup/cpu") / cgroup_of(program, "cpu").lstrip("/")
        assert int((cpu_dir / "cpu.cfs_quota_us").read_text()) == 50000
        assert int((cpu_dir / "cpu.cfs_period_us").read_text()) == 100000
    finally:
        session.communicate(b"\n", timeout=30)


def test_cgroups_are_made_and_removed(rootfs_a):
    with Jail(rootfs_a, UID_A, ["--memory", "64M", "--pids", "100"]) as jail:
        made = jail_cgroups()
        assert {p.parent.parent.name for p in made} >= {"unified", "memory", "pids"}
        for path in made:
            assert (path / "init.scope").is_dir() and (path / "programs").is_dir()
        assert str(jail.init_pid) in open(f"{made[0]}/init.scope/cgroup.procs").read().split()
    assert jail_cgroups() == []
