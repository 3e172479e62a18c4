"""Events in jaild's log (issue 35, item 4): a --boot service's exit and its restart under
--boot-restart, an OOM kill in the jail naming the process, the pids limit reached."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import JAILD, UID_A, wait_for, descendants

SERVICE = "echo started $$; exec sleep 1000"


def host_pid(supervisor, jail_pid):
    """The host pid of the jail's process `jail_pid` (the last NSpid of its status)."""
    for pid in descendants(supervisor):
        try:
            status = open(f"/proc/{pid}/status").read()
        except (FileNotFoundError, ProcessLookupError):  # gone between the listing and the read (ESRCH)
            continue
        line = next(l for l in status.splitlines() if l.startswith("NSpid:"))
        if line.split()[-1] == str(jail_pid) and len(line.split()) > 2:
            return pid
    return None


def started_pids(jail):
    return re.findall(r"boot: started (\d+)", jail.text())


def kill_service(jail):
    pid = started_pids(jail)[-1]
    target = host_pid(jail.proc.pid, pid)
    assert target is not None, (pid, jail.text())
    os.kill(target, signal.SIGKILL)
    return pid


def test_a_killed_boot_service_comes_back_under_on_failure(foreground):
    jail = foreground("--boot", SERVICE, "--boot-restart", "on-failure")
    wait_for(lambda: len(started_pids(jail)) == 1, 20, "the service's first start")
    first = kill_service(jail)
    wait_for(lambda: len(started_pids(jail)) == 2, 10, "the service's restart")
    assert started_pids(jail)[1] != first
    text = jail.text()
    assert re.search(rf"boot exit jail=\S+ index=0 pid={first} status=137 ", text), text
    assert re.search(r"boot restart jail=\S+ index=0 restart=1 after=100ms", text), text
    assert jail.run("echo still-running").stdout == b"still-running\n"
    # The count where an operator scrapes it: init's record, read by `jaild metrics`.
    metrics = subprocess.run([JAILD, "metrics"], capture_output=True, text=True, timeout=30).stdout
    restarts = re.findall(rf'^jail_boot_restarts_total{{jail="[^"]*",uid="{UID_A}"}} (\d+)$', metrics, re.M)
    assert restarts == ["1"], metrics


def test_a_killed_boot_service_stays_down_under_no(foreground):
    jail = foreground("--boot", SERVICE, "--boot-restart", "no")
    wait_for(lambda: len(started_pids(jail)) == 1, 20, "the service's first start")
    first = kill_service(jail)
    wait_for(lambda: f"pid={first} status=137" in jail.text(), 10, "the exit's line")
    # Ten times the first back-off: a restart would have come by now.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert len(started_pids(jail)) == 1 and "boot restart" not in jail.text(), jail.text()
        time.sleep(0.1)


def test_a_crash_looping_service_is_given_up_after_the_start_limit(foreground):
    jail = foreground("--boot", "echo started $$; exit 1", "--boot-restart", "always")
    wait_for(lambda: "boot gave up" in jail.text(), 20, "the start limit")
    assert len(started_pids(jail)) == 6, jail.text()
    assert jail.text().count("boot restart ") == 5, jail.text()


def test_an_oom_kill_is_logged_with_the_process(foreground):
    jail = foreground("--memory", "64M")
    result = jail.run("tail /dev/zero")
    assert result.returncode == 137, result
    wait_for(lambda: "oom kill " in jail.text(), 10, "the OOM line")
    lines = [l for l in jail.text().splitlines() if "oom kill " in l]
    assert len(lines) == 1, lines
    assert "process=tail" in lines[0] and "oom_kill=1" in lines[0] and "limit_bytes=67108864" in lines[0], lines


def test_the_pids_limit_reached_is_logged(foreground):
    jail = foreground("--pids", "16")
    jail.run("for i in $(seq 40); do sleep 3 & done; wait", timeout=30)
    wait_for(lambda: "pids limit reached " in jail.text(), 10, "the pids line")
    line = next(l for l in jail.text().splitlines() if "pids limit reached " in l)
    assert "limit=16" in line, line


def voluntary_switches(pid):
    status = open(f"/proc/{pid}/status").read()
    return int(next(l for l in status.splitlines() if l.startswith("voluntary_ctxt_switches:")).split()[1])


def wakeups_while_idle(jail, seconds=3.0):
    """The supervisor's voluntary context switches (its poll returning) over `seconds` of an idle
    jail: the measured window is the test's subject, not a wait for something to happen."""
    before = voluntary_switches(jail.proc.pid)
    time.sleep(seconds)
    woke = voluntary_switches(jail.proc.pid) - before
    print(f"supervisor wakeups in {seconds} s idle: {woke}")
    return woke


@pytest.mark.parametrize("limits", [[], ["--memory", "64M"]], ids=["none", "memory"])
def test_an_idle_supervisor_does_not_wake(foreground, limits):
    # Issue 36: the OOM counters are read when the kernel notifies a change, never once a
    # second. One wakeup is allowed for the idle loop's release of its pages (IdlePages).
    jail = foreground(*limits)
    assert wakeups_while_idle(jail) <= 2, jail.text()


def pids_served_by_v2():
    """Whether the pids controller is on the unified hierarchy (enabled under its root)."""
    for path in ["/sys/fs/cgroup/cgroup.subtree_control", "/sys/fs/cgroup/unified/cgroup.subtree_control"]:
        if os.path.exists(path):
            return "pids" in open(path).read().split()
    return False


def test_an_idle_supervisor_with_a_pids_limit_wakes_only_where_the_kernel_cannot_notify(foreground):
    # v2 pids.events is notified (inotify): no wakeup. v1 pids.events is not (Linux >= 6.12):
    # it is read once a second, as before.
    jail = foreground("--pids", "16")
    woke = wakeups_while_idle(jail)
    if pids_served_by_v2():
        assert woke <= 2, jail.text()
    else:
        assert woke <= 5, jail.text()


def test_the_pids_limit_reached_is_logged_promptly(foreground):
    jail = foreground("--pids", "16")
    started = time.monotonic()
    jail.run("for i in $(seq 40); do sleep 3 & done; wait", timeout=30)
    wait_for(lambda: "pids limit reached " in jail.text(), 10, "the pids line")
    # The refused forks happen in the first milliseconds of the script: the line is there
    # before the 3 s sleeps end (the run), with no periodic read to wait for.
    line_seen = time.monotonic() - started
    assert line_seen < 4, (line_seen, jail.text())


def test_an_adopting_supervisor_watches_the_jail_again(foreground):
    first = foreground("--memory", "64M")
    first.proc.kill()  # kill -9 of the supervisor: the jail lives on
    first.proc.wait()
    again = foreground("--memory", "64M")
    wait_for(lambda: "adopted" in again.text(), 10, "the adoption")
    assert again.run("tail /dev/zero").returncode == 137
    wait_for(lambda: "oom kill " in again.text(), 10, "the OOM line from the new supervisor")
    assert "process=tail" in again.text() and "oom kill " not in first.text(), again.text()


def test_the_rcs_result_is_a_logfmt_line(foreground):
    jail = foreground("--rc", "echo rc-ran; exit 3")
    wait_for(lambda: "rc exit jail=" in jail.text(), 20, "the rc's result")
    assert re.search(r"rc exit jail=\S+ status=3 timed_out=no ms=\d+", jail.text()), jail.text()


def test_boot_commands_run_as_the_user_and_report_failures(foreground):
    jail = foreground("--boot", "echo booted-$((1+1)); id -u", "--boot", "exit 3")
    wait_for(lambda: "boot command 'exit 3' exited with status 3" in jail.text(), 20, "the failing boot command")
    wait_for(lambda: "boot: booted-2" in jail.text() and "boot: 61000" in jail.text(), 20, "boot output")
    assert jail.run("echo still-running").stdout == b"still-running\n"
