"""Running jails for real (issue 6): boot services, capabilities for low ports, cgroup limits
and rlimits, list/stop/status, config files, systemd notify, restarts after a crash."""
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import urllib.request

import pytest

from conftest import JAIL, JAILD, UID_A, UID_B, Jail, as_user, children_of, pid_alive, spare_helper, wait_for

CGROUP_ROOTS = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup"]


def jail_cgroups(uid=UID_A):
    """Every cgroup directory jaild made for this jail, in any hierarchy."""
    found = []
    for root in CGROUP_ROOTS:
        path = pathlib.Path(root) / "jail" / f"jail-{uid}-{uid}"
        if path.is_dir():
            found.append(path)
    return found


def cgroup_of(pid, controller):
    """The path of a process's cgroup in a v1 controller's hierarchy (or v2 with '')."""
    for line in open(f"/proc/{pid}/cgroup"):
        number, controllers, path = line.rstrip("\n").split(":", 2)
        if (controller == "" and number == "0") or controller in controllers.split(","):
            return path
    return None


class Foreground:
    """jaild -c, its log in a file, stopped by SIGTERM at the end."""

    def __init__(self, root, args, log_path, env=None):
        self.log_path = log_path
        self.socket = f"/run/jail/jaild-{UID_A}-{UID_A}.sock"
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_A), "-r", str(root), *args], stdout=self.log,
                                     stderr=self.log, env=env)
        try:
            wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, 20, "the socket")
            assert self.proc.poll() is None, self.text()
            # The socket is bound before the jail is ready: a first session waits in the backlog.
            assert self.run("true").returncode == 0, self.text()
        except BaseException:
            self.stop()  # a start that failed halfway leaves no jail behind
            raise

    def text(self):
        return open(self.log_path, "rb").read().decode(errors="replace")

    def run(self, script, **kwargs):
        return subprocess.run([JAIL, "-c", script], capture_output=True, timeout=kwargs.pop("timeout", 60),
                              env={"JAIL_SOCKET": self.socket}, preexec_fn=as_user(UID_A), **kwargs)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def foreground(rootfs_a, tmp_path):
    started = []

    def start(*args, env=None):
        jail = Foreground(rootfs_a, list(args), tmp_path / f"jaild-{len(started)}.log", env=env)
        started.append(jail)
        return jail
    yield start
    for jail in started:
        jail.stop()


def test_boot_commands_run_as_the_user_and_report_failures(foreground):
    jail = foreground("--boot", "echo booted-$((1+1)); id -u", "--boot", "exit 3")
    wait_for(lambda: "boot command 'exit 3' exited with status 3" in jail.text(), 20, "the failing boot command")
    wait_for(lambda: "boot: booted-2" in jail.text() and "boot: 61000" in jail.text(), 20, "boot output")
    assert jail.run("echo still-running").stdout == b"still-running\n"


def free_low_port():
    for port in range(81, 1024):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024 on 127.0.0.1")


def test_own_port_lets_the_user_bind_a_low_port_without_capabilities(foreground, rootfs_a):
    port = free_low_port()
    page = rootfs_a / "home" / "work" / "www" / "index.html"
    page.parent.mkdir(exist_ok=True)
    token = secrets.token_hex(8)
    page.write_text(token)
    jail = foreground("--ports", f"tcp:{port}", "--boot", f"exec httpd -f -p 127.0.0.1:{port} -h /home/work/www")

    def answers():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read().decode()
        except OSError:
            return None
    assert wait_for(answers, 20, "httpd on the low port") == token
    owner = jail.run("ps -o user,args | grep '[h]ttpd'").stdout.split()[0]
    assert owner == b"work"


def test_without_the_capability_a_low_port_is_refused(foreground):
    port = free_low_port()
    jail = foreground()
    result = jail.run(f"httpd -f -p 127.0.0.1:{port} -h /")
    assert result.returncode != 0
    assert b"Permission denied" in result.stderr


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


def test_config_file_and_command_line_override(rootfs_a, tmp_path):
    config = tmp_path / "jail.conf"
    config.write_text(f"# the test jail\nuid = {UID_A}\nroot = {rootfs_a}\nhostname = from-file\n"
                      "boot = true   # a boot command\nrlimit = nofile=100\n")
    result = subprocess.run([JAILD, "--config", str(config), "--hostname", "from-flag"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    jail = Jail(rootfs_a, UID_A)
    jail.supervisor = int(open(jail.pidfile).read())
    try:
        assert jail.run("hostname; ulimit -n").stdout == b"from-flag\n100\n"
    finally:
        jail.stop()
    config.write_text(f"uid = {UID_A}\nroot = {rootfs_a}\npids = many\n")
    result = subprocess.run([JAILD, "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(f"jaild: {config}:3: ") and result.stderr.count("\n") == 1, result.stderr
    config.write_text(f"uid = {UID_A}\nbogus = 1\n")
    result = subprocess.run([JAILD, "--config", str(config)], capture_output=True, text=True)
    assert (result.returncode, result.stderr.split(" (known")[0]) == (1, f"jaild: {config}:2: unknown key 'bogus'")


def test_start_by_name_reads_etc_jail(rootfs_a):
    name = "jailtest-" + secrets.token_hex(4)
    made_dir = not os.path.isdir("/etc/jail")
    os.makedirs("/etc/jail", exist_ok=True)
    path = pathlib.Path("/etc/jail") / f"{name}.conf"
    path.write_text(f"uid = {UID_A}\nroot = {rootfs_a}\nhostname = {name}\n")
    jail = Jail(rootfs_a, UID_A)
    try:
        result = subprocess.run([JAILD, "start", name], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        jail.supervisor = int(open(jail.pidfile).read())
        assert jail.run("hostname").stdout == f"{name}\n".encode()
    finally:
        jail.stop()
        path.unlink()
        if made_dir:
            os.rmdir("/etc/jail")
    missing = subprocess.run([JAILD, "start", "no-such-jail-" + name], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read config /etc/jail/no-such-jail-" in missing.stderr


def test_systemd_notify_ready_and_stopping(rootfs_a, tmp_path):
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(20)
    env = {"NOTIFY_SOCKET": path, "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([JAILD, "-u", str(UID_A), "-r", str(rootfs_a)], env=env, stderr=subprocess.PIPE)
    try:
        message = listener.recv(4096).decode()
        assert message == f"READY=1\nMAINPID={proc.pid}"
        assert proc.poll() is None  # Type=notify: jaild stays in the foreground
        assert Jail(rootfs_a, UID_A).run("echo ok").stdout == b"ok\n"
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096) == b"STOPPING=1"
        assert proc.wait(30) == 0
        assert b"\x1b" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


def test_restart_after_a_crash_cleans_up(rootfs_a):
    jail = Jail(rootfs_a, UID_A, ["--memory", "64M"]).start()
    pids = jail.all_pids()
    os.kill(jail.supervisor, signal.SIGKILL)
    os.kill(jail.init_pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids), 20, "the jail to die")
    # What a crash leaves: the socket, the pid file (unlocked), the state file, the cgroups.
    assert os.path.exists(jail.socket) and os.path.exists(jail.pidfile)
    assert jail_cgroups() != []
    assert subprocess.run([JAILD, "status", jail.socket], capture_output=True).returncode == 3
    again = Jail(rootfs_a, UID_A, ["--memory", "64M"]).start()
    try:
        assert again.run("echo back").stdout == b"back\n"
    finally:
        again.stop()
    assert jail_cgroups() == [] and not os.path.exists(jail.socket)
