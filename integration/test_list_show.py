"""`jaild list` names each jail and shows its memory cgroup's charge; `jaild show NAME` prints
one jail's full record; `jaild status`/`stop` find a jail by its `--jail-name` alone (issue 35
item 5, issue 29 item 2)."""
import json
import os
import stat
import subprocess

from conftest import JAILD, UID_A, UID_B, Jail, pid_alive, wait_for

NAME_A = "lsa-limited"
NAME_B = "lsb-plain"
SHOW_KEYS = {"name", "socket", "pid_file", "control_socket", "state_file", "root", "uid", "gid", "supervisor_pid",
             "init_pid", "started", "started_seconds", "uptime_seconds", "sessions", "memory_bytes", "memory_source",
             "memory_limit_bytes", "pids_limit", "cpus", "ports", "rc_status", "userns_start", "userns_count", "cgroup",
             "cgroups", "services", "disk_bytes", "disk_limit_bytes"}


def jaild(*args):
    return subprocess.run([JAILD, *args], capture_output=True, text=True, timeout=60)


def memory_charge(init_pid):
    """The test's own reading: the memory hierarchy of init's cgroup (from /proc, not from
    jaild's state), summed over the jail's leaves init, programs and sessions; None without one."""
    for line in open(f"/proc/{init_pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        jail_dir = os.path.dirname(path)  # /jail/NAME
        if "memory" in controllers.split(","):
            base, name = f"/sys/fs/cgroup/memory{jail_dir}", "memory.usage_in_bytes"
        elif controllers == "":
            base, name = f"/sys/fs/cgroup/unified{jail_dir}", "memory.current"
            if not os.path.exists("/sys/fs/cgroup/unified"):
                base = f"/sys/fs/cgroup{jail_dir}"
        else:
            continue
        leaves = [f"{base}/{leaf}/{name}" for leaf in ("init.scope", "programs", "sessions")]
        found = [int(open(p).read()) for p in leaves if os.path.exists(p)]
        if found:
            return sum(found)
    return None


def row_of(jail, rows):
    found = [r for r in rows if r["socket"] == jail.socket]
    assert len(found) == 1, rows
    return found[0]


def test_list_names_jails_and_shows_the_cgroup_charge_and_show_prints_the_record(rootfs_a, rootfs_b):
    fill = rootfs_a / "tmp" / "list-show-fill"
    try:
        with Jail(rootfs_a, UID_A, ["--jail-name", NAME_A, "--memory", "64M", "--pids", "50", "--cpus", "0.5"]) as a, \
                Jail(rootfs_b, UID_B, ["--jail-name", NAME_B]) as b:
            # 32 MiB of page cache charged to the jail's programs cgroup, so that the figure is
            # well above the noise of a session helper coming and going.
            result = a.run("head -c 33554432 /dev/zero > /tmp/list-show-fill && echo ok")
            assert result.returncode == 0 and result.stdout == b"ok\n", result.stderr

            before = memory_charge(a.init_pid)
            listed = jaild("list", "--json")
            after = memory_charge(a.init_pid)
            assert listed.returncode == 0, listed.stderr
            rows = json.loads(listed.stdout)
            row_a, row_b = row_of(a, rows), row_of(b, rows)
            assert row_a["name"] == NAME_A and row_b["name"] == NAME_B
            assert before and after and before >= 32 << 20, (before, after)
            assert row_a["memory_source"] == "cgroup"
            assert min(before, after) * 0.9 <= row_a["memory_bytes"] <= max(before, after) * 1.1, (row_a, before, after)
            charge_b = memory_charge(b.init_pid)
            if charge_b is None:
                assert row_b["memory_source"] == "rss" and row_b["memory_bytes"] > 0
            else:
                assert row_b["memory_source"] == "cgroup"
                assert abs(row_b["memory_bytes"] - charge_b) <= charge_b * 0.10

            table = jaild("list")
            assert table.returncode == 0, table.stderr
            lines = table.stdout.splitlines()
            assert lines[0].split()[:2] == ["NAME", "SOCKET"]
            by_name = {line.split()[0]: line.split() for line in lines[1:]}
            assert by_name[NAME_A][1] == a.socket
            memory_column = lines[0].split().index("MEMORY")
            assert not by_name[NAME_A][memory_column].startswith("~")
            assert by_name[NAME_B][memory_column].startswith("~") == (charge_b is None)

            shown = jaild("show", NAME_A, "--json")
            assert shown.returncode == 0, shown.stderr
            record = json.loads(shown.stdout)
            assert SHOW_KEYS <= record.keys(), SHOW_KEYS - record.keys()
            assert record["name"] == NAME_A and record["socket"] == a.socket and record["pid_file"] == a.pidfile
            assert (record["uid"], record["gid"]) == (UID_A, UID_A)
            assert (record["supervisor_pid"], record["init_pid"]) == (a.supervisor, a.init_pid)
            assert record["memory_limit_bytes"] == 64 << 20
            assert record["pids_limit"] == 50
            assert record["cpus"] == 0.5
            assert record["memory_source"] == "cgroup"
            assert os.path.exists(record["state_file"]) and f"socket={a.socket}\n" in open(record["state_file"]).read()
            assert record["cgroups"] and all(os.path.isdir(d) for d in record["cgroups"])
            assert record["started"].endswith("Z") and abs(record["started_seconds"] - a_started(a)) <= 5
            assert stat.S_ISSOCK(os.stat(record["control_socket"]).st_mode)
            assert str(record["root"]) == str(rootfs_a)

            plain = jaild("show", NAME_B)
            assert plain.returncode == 0, plain.stderr
            fields = dict(line.split(": ", 1) for line in plain.stdout.splitlines())
            assert fields["name"] == NAME_B and fields["socket"] == b.socket and fields["uid"] == str(UID_B)
            assert fields["memory_limit_bytes"] == "-" and fields["pids_limit"] == "-"
            # The other ways to name it give the same record.
            assert json.loads(jaild("show", f"{UID_A}:{UID_A}", "--json").stdout)["name"] == NAME_A
            assert json.loads(jaild("show", a.socket, "--json").stdout)["name"] == NAME_A
    finally:
        # The rootfs is shared by the session's tests: the fill goes, whatever happened above.
        if fill.exists():
            fill.unlink()


def a_started(jail):
    """The supervisor's start, from /proc (clock ticks since boot), in seconds since the epoch."""
    ticks = int(open(f"/proc/{jail.supervisor}/stat").read().rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def test_show_of_no_such_jail_exits_1_with_one_line():
    result = jaild("show", "nosuch-jail-here")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "nosuch-jail-here" in result.stderr


def test_status_and_stop_find_a_jail_by_its_jail_name_without_a_config(rootfs_b):
    assert not os.path.exists(f"/etc/jail/{NAME_B}.conf")
    jail = Jail(rootfs_b, UID_B, ["--jail-name", NAME_B])
    jail.start()
    pids = jail.all_pids()
    try:
        status = jaild("status", NAME_B)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "running" in status.stdout
        stopped = jaild("stop", NAME_B)
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: not any(pid_alive(p) for p in pids), 30, "the jail to stop")
        assert jaild("status", NAME_B).returncode != 0
    finally:
        jail.stop()


def test_list_status_and_stop(rootfs_a, rootfs_b):
    a = Jail(rootfs_a, UID_A).start()
    b = Jail(rootfs_b, UID_B).start()
    try:
        table = subprocess.run([JAILD, "list"], capture_output=True, text=True).stdout
        assert table.splitlines()[0].split() == ["NAME", "SOCKET", "UID:GID", "ROOT", "INIT", "SESSIONS", "UPTIME", "MEMORY", "PORTS", "ADDRESS",
                                               "RC", "USERNS", "DISK", "SYSTEM"]
        listed = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True).stdout)
        mine = {j["socket"]: j for j in listed}
        assert mine[a.socket]["init_pid"] == a.init_pid and mine[a.socket]["uid"] == UID_A
        assert mine[b.socket]["root"] == str(rootfs_b) and mine[b.socket]["memory_bytes"] > 0
        assert mine[a.socket]["rc_status"] is None  # no --rc
        assert mine[a.socket]["disk_backend"] is None and mine[a.socket]["disk_limit_bytes"] is None  # no --disk
        assert f"{UID_A}:{UID_A}" in table and a.socket in table
        assert subprocess.run([JAILD, "status", f"{UID_A}:{UID_A}"], capture_output=True).returncode == 0
        # Stop by socket: returns only when the jail is gone.
        assert subprocess.run([JAILD, "stop", a.socket], capture_output=True, timeout=60).returncode == 0
        assert not pid_alive(a.supervisor) and not pid_alive(a.init_pid)
        assert subprocess.run([JAILD, "status", a.socket], capture_output=True).returncode == 3
        # Stop by pid file.
        assert subprocess.run([JAILD, "stop", b.pidfile], capture_output=True, timeout=60).returncode == 0
        assert not pid_alive(b.supervisor)
        assert subprocess.run([JAILD, "status", f"{UID_B}:{UID_B}"], capture_output=True).returncode == 3
        sockets = [j["socket"] for j in json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True,
                                                                  text=True).stdout)]
        assert a.socket not in sockets and b.socket not in sockets
    finally:
        a.stop()
        b.stop()
