"""A jail sees its own machine (issue 31): lxcfs's memory, CPU and uptime files, a cpuset that
follows --cpus, a cgroup namespace and its own read-only /sys/fs/cgroup, /dev/shm sized from
--memory, its host name in /etc/hosts, and a /dev/log that is never a black hole.

lxcfs is Debian's package; each test that needs it starts its own on a private directory
(`--lxcfs-directory`) and stops it at the end, so nothing of the host's is used or left."""
import os
import pathlib
import re
import signal
import socket
import subprocess

import pytest

from conftest import JAILD, UID_A, UID_B, Jail, Lxcfs, cached_debian_rootfs, wait_for


@pytest.fixture
def lxcfs(tmp_path):
    daemon = Lxcfs(tmp_path / "lxcfs").start()
    yield daemon
    daemon.stop()


@pytest.fixture
def start_jail():
    """Starts a jail (root, uid, options); every one started is stopped at the end."""
    started = []

    def start(root, uid, *args, prefix=None):
        jail = Jail(root, uid, list(args), prefix=prefix)
        started.append(jail)
        return jail.start()
    yield start
    for jail in started:
        jail.stop()


def out(jail, script):
    result = jail.run(script)
    assert result.returncode == 0, (script, result.stdout, result.stderr)
    return result.stdout.decode()


def host_uptime():
    return float(open("/proc/uptime").read().split()[0])


def test_memory_cpus_and_uptime_are_the_jails(start_jail, lxcfs, rootfs_a):
    jail = start_jail(rootfs_a, UID_A, "--memory", "256M", "--cpus", "1", "--lxcfs-directory", str(lxcfs.directory))
    # procps' free reads /proc/meminfo; busybox's (this rootfs) asks sysinfo(2), which lxcfs
    # cannot answer: the file is what counts.
    total = int(re.search(r"MemTotal:\s+(\d+) kB", out(jail, "cat /proc/meminfo")).group(1)) // 1024
    assert 255 <= total <= 257, total
    assert out(jail, "nproc").strip() == "1"
    allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", out(jail, "cat /proc/self/status")).group(1)
    assert re.fullmatch(r"\d+", allowed), allowed  # sched_getaffinity: one CPU
    uptime = float(out(jail, "cat /proc/uptime").split()[0])
    assert uptime < 60 and host_uptime() > uptime, (uptime, host_uptime())
    assert out(jail, "grep -c ^processor /proc/cpuinfo").strip() == "1"
    assert out(jail, "cat /sys/devices/system/cpu/online").strip() == allowed
    # The CFS quota stays as before, beside the cpuset.
    state = [line for line in open("/proc/%d/cgroup" % jail.init_pid) if ":cpu:" in line]
    assert state and "/jail/" in state[0]


def test_cpusets_are_spread_and_can_be_given(start_jail, rootfs_a, rootfs_b):
    online = open("/sys/devices/system/cpu/online").read().strip()
    a = start_jail(rootfs_a, UID_A, "--cpus", "0.5", "--views", "off")
    b = start_jail(rootfs_b, UID_B, "--cpus", "0.5", "--views", "off")
    cpu_a = out(a, "grep Cpus_allowed_list /proc/self/status").split()[-1]
    cpu_b = out(b, "grep Cpus_allowed_list /proc/self/status").split()[-1]
    if online != "0":
        assert cpu_a != cpu_b, "two jails of one CPU each share it while another is free"
    b.stop()
    b = start_jail(rootfs_b, UID_B, "--cpuset", "0", "--views", "off")
    assert out(b, "nproc").strip() == "1"
    assert out(b, "grep Cpus_allowed_list /proc/self/status").split()[-1] == "0"


def test_views_required_refuses_without_lxcfs_and_auto_warns(rootfs_a, tmp_path):
    missing = str(tmp_path / "no-lxcfs")
    result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_a), "--views", "required",
                             "--lxcfs-directory", missing], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"--views required: lxcfs is not mounted at {missing}" in result.stderr
    log = tmp_path / "jaild.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_A), "-r", str(rootfs_a), "--lxcfs-directory", missing],
                                stdout=sink, stderr=sink)
    try:
        wait_for(lambda: "started on" in log.read_text() or proc.poll() is not None, 20, "the start")
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert text.count(f"lxcfs is not mounted at {missing}") == 1, text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_the_jail_sees_only_its_own_cgroups(start_jail, rootfs_a, rootfs_b):
    # The attack: root inside mounts a cgroup file system of its own, or re-mounts the jail's
    # read-write, to reach the host's tree or the limits; both are refused (no CAP_SYS_ADMIN
    # in the bounding set), and a fresh mount could only show the namespace's root anyway.
    attack = ("mkdir -p /run/cg; mount -t cgroup2 none /run/cg; echo $? > /run/attack; "
              "mount -o remount,rw /sys/fs/cgroup/memory; echo $? >> /run/attack; ls /run/cg >> /run/attack")
    a = start_jail(rootfs_a, UID_A, "--memory", "128M", "--views", "off", "--rc", attack)
    b = start_jail(rootfs_b, UID_B, "--memory", "128M", "--pids", "100", "--views", "off")
    mount_code, remount_code, *listed_inside = out(a, "cat /run/attack").split()
    assert mount_code != "0" and remount_code != "0" and listed_inside == [], (mount_code, remount_code, listed_inside)
    for jail, other in ((a, b), (b, a)):
        cgroup = out(jail, "cat /proc/self/cgroup")
        assert "/jail/" not in cgroup and "process_api" not in cgroup, cgroup
        assert re.search(r"^\d+:memory:/programs$", cgroup, re.M), cgroup
        listing = out(jail, "find /sys/fs/cgroup")
        assert f"{other.uid}-{other.uid}" not in listing and f"{jail.uid}-{jail.uid}" not in listing, listing
        assert "/jail" not in listing, listing
        # The namespace's root is the jail's cgroup: its leaves, and nothing of the host's root.
        assert "/sys/fs/cgroup/memory/programs/memory.limit_in_bytes" in listing, listing
        assert out(jail, "cat /sys/fs/cgroup/memory/programs/memory.limit_in_bytes").strip() == str(128 << 20)
        for path in ("/sys/fs/cgroup/memory/programs/memory.limit_in_bytes", "/sys/fs/cgroup/memory/new",
                     "/sys/fs/cgroup/x"):
            write = jail.run(f"echo 1 > {path} || mkdir {path}")
            assert write.returncode != 0, path
        mounts = out(jail, "grep ' /sys/fs/cgroup' /proc/self/mountinfo")
        assert all(" ro," in line or " ro " in line for line in mounts.splitlines()), mounts
    # Everything that uses the cgroups keeps working: limits, list, stop.
    listed = subprocess.run([JAILD, "list"], capture_output=True, text=True, check=True).stdout
    assert str(a.init_pid) in listed and str(b.init_pid) in listed
    # The pids limit of the programs' cgroup still holds inside the namespace.
    assert b.run("for i in $(seq 150); do sleep 5 & done; wait").returncode != 0


def test_dev_shm_is_half_the_memory_charged_and_ends_in_enospc(start_jail, rootfs_a):
    jail = start_jail(rootfs_a, UID_A, "--memory", "512M", "--views", "off")
    assert " 256.0M " in out(jail, "df -h /dev/shm") or "262144" in out(jail, "df -k /dev/shm")
    out(jail, "dd if=/dev/zero of=/dev/shm/data bs=1M count=200 2>/dev/null")
    programs = next(line.split(":")[2].strip() for line in open(f"/proc/{jail.init_pid}/cgroup") if ":memory:" in line)
    memory_root = "/sys/fs/cgroup/memory" + programs.rsplit("/", 1)[0] + "/programs"
    charged = int(open(memory_root + "/memory.usage_in_bytes").read())
    assert charged >= 200 << 20, charged
    past = jail.run("dd if=/dev/zero of=/dev/shm/more bs=1M count=100")
    assert past.returncode == 1, past  # not 128+SIGBUS
    assert b"No space left on device" in past.stderr
    out(jail, "rm /dev/shm/data /dev/shm/more")


def test_the_host_name_resolves_in_a_fresh_debian_jail(prov, lxcfs, tmp_path):
    debian = cached_debian_rootfs()
    name, uid = "jt-views", 63070
    prov.create(name, uid, debian, "--hostname", "wl", "--memory", "256M", "--cpus", "1",
                       "--lxcfs-directory", str(lxcfs.directory), start=False)
    started = prov.jaild("start", name, check=True)
    assert "warning" not in started.stderr
    # procps and coreutils, as a tenant runs them.
    free = prov.session(uid, "free -m").stdout.decode()
    assert 255 <= int(re.search(r"Mem:\s+(\d+)", free).group(1)) <= 257, free
    assert prov.session(uid, "nproc").stdout == b"1\n"
    assert prov.session(uid, "hostname -f").stdout == b"wl\n"
    assert prov.session(uid, "getent hosts wl").stdout.split() == [b"127.0.1.1", b"wl"]
    # sudo resolves the host name first and says so on stderr when it cannot.
    sudo = prov.jaild("enter", name, "--root", "--", "sudo", "true")
    assert sudo.returncode == 0 and sudo.stderr == "", sudo.stderr
    # A name given after create: added at start, and said.
    hosts = prov.upper(name) / "etc" / "hosts"
    assert "127.0.1.1\twl\n" in hosts.read_text()
    prov.jaild("stop", name, check=True)
    config = prov.conf / f"{name}.conf"
    config.write_text(config.read_text().replace("hostname = wl", "hostname = web.example.org"))
    prov.jaild("start", name, check=True)
    try:
        assert prov.session(uid, "hostname -f").stdout == b"web.example.org\n"
        text = hosts.read_text()
        assert text.count("wl") == 1 and "127.0.1.1\tweb.example.org web\n" in text
    finally:
        prov.jaild("stop", name, check=True)


def test_dev_log_reaches_the_hosts_syslog_or_the_jails_log_file(start_jail, rootfs_a, tmp_path, public_tmp):
    path = str(tmp_path / "host-log")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(5)
    try:
        jail = start_jail(rootfs_a, UID_A, "--jail-name", "views-log", "--syslog-target", path, "--views", "off")
        assert out(jail, "logger hello-from-jail; echo ok").strip() == "ok"
        message = listener.recv(65536)
        assert message.startswith(b"<13>jail/views-log: ") and message.endswith(b"hello-from-jail"), message
        jail.stop()
    finally:
        listener.close()
    # No syslog listening: the jail's log file under /var/log/jail (the daemon's own, on a host
    # without syslog) gets the message, with the same tag.
    log = pathlib.Path(f"/var/log/jail/jail-{UID_A}-{UID_A}.log")  # the supervisor's log, by its cgroup's name
    before = log.read_text() if log.exists() else ""
    jail = start_jail(rootfs_a, UID_A, "--jail-name", "views-log", "--syslog-target", str(tmp_path / "nobody"),
                 "--views", "off")
    assert out(jail, "ls -l /dev/log; logger hello-into-the-file; echo ok").strip().endswith("ok")
    if os.path.exists("/dev/log"):
        print("the host has a syslog: jaild's own log goes there, not to a file")
    else:
        def relayed():
            return [x for x in log.read_text()[len(before):].splitlines() if x.endswith(": hello-into-the-file")]
        line = wait_for(relayed, 10, "the message in the log file")[0]
        assert "jail/views-log: " in line, line
    jail.stop()
    if not before and log.exists():
        log.unlink()


def test_lxcfs_restart_is_noticed_and_repaired(start_jail, lxcfs, rootfs_a):
    jail = start_jail(rootfs_a, UID_A, "--memory", "256M", "--lxcfs-directory", str(lxcfs.directory))
    assert "MemTotal:" in out(jail, "cat /proc/meminfo")
    lxcfs.stop()
    broken = jail.run("cat /proc/meminfo")
    assert broken.returncode != 0 and b"not connected" in broken.stderr, broken
    listed = subprocess.run([JAILD, "list"], capture_output=True, text=True)
    assert "lxcfs" in listed.stderr and "ENOTCONN" in listed.stderr, listed.stderr
    lxcfs.start()
    wait_for(lambda: jail.run("cat /proc/meminfo").returncode == 0, 15, "the supervisor to bind lxcfs again")
    total = int(re.search(r"MemTotal:\s+(\d+) kB", out(jail, "cat /proc/meminfo")).group(1)) // 1024
    assert 255 <= total <= 257, total
    assert "lxcfs" not in subprocess.run([JAILD, "list"], capture_output=True, text=True).stderr
