"""A jail that boots its distribution (issue 30): `jaild --init /sbin/init` runs Debian 12's
systemd as PID 1 of a nested PID namespace below jaild's init, in a child user namespace, with
its own cgroup namespace over the delegated `programs/payload`. The rootfs is the cached
Debian 12 with systemd, dbus and nginx (scripts/make-debian-rootfs --systemd).

One booted jail for most of the module (about 1 s to boot here), a second short one for
`systemctl poweroff`; the module costs about 25 s of wall time."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import JAILD, UID_A, Jail, cached_debian_rootfs, children_of, descendants, mounts_under, pid_alive, wait_for

PORT = 8089
NAME = "boottest"

UNITS = {
    # Restart=on-failure: a SIGSEGV brings it back.
    "crasher.service": "[Service]\nExecStart=/bin/sleep infinity\nRestart=on-failure\nRestartSec=100ms\n"
                       "[Install]\nWantedBy=multi-user.target\n",
    # A timer every second: its file grows.
    "tick.service": "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'date +%%s.%%N >> /var/tmp/ticks'\n",
    "tick.timer": "[Timer]\nOnActiveSec=100ms\nOnUnitActiveSec=1s\nAccuracySec=10ms\n"
                  "[Install]\nWantedBy=timers.target\n",
    # ExecStop at the halt writes to the rootfs.
    "stopmark.service": "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
                        "ExecStop=/bin/sh -c 'echo stopped > /var/tmp/stop-ran'\n"
                        "[Install]\nWantedBy=multi-user.target\n",
}


def prepare_root(parent):
    root = os.path.join(parent, "root")
    subprocess.run(["cp", "-a", str(cached_debian_rootfs("systemd")), root], check=True)
    # Host keys of its own (the rootfs ships none); nginx listens on the owned port.
    subprocess.run(["ssh-keygen", "-q", "-A", "-f", root], check=True)
    # Debian enables ssh.service on port 22, which is not this jail's (--ports): off here.
    os.unlink(os.path.join(root, "etc/systemd/system/multi-user.target.wants/ssh.service"))
    site = os.path.join(root, "etc/nginx/sites-available/default")
    text = open(site).read().replace("listen 80 default_server;", f"listen 127.0.0.1:{PORT} default_server;")
    open(site, "w").write(text.replace("listen [::]:80 default_server;", ""))
    # A persistent journal (journald's Storage=auto), read from the host after the stop.
    os.makedirs(os.path.join(root, "var/log/journal"), exist_ok=True)
    units = os.path.join(root, "etc/systemd/system")
    for name, body in UNITS.items():
        open(os.path.join(units, name), "w").write(body.replace("%%", "%"))
        if "[Install]" in body:
            target = "timers.target" if name.endswith(".timer") else "multi-user.target"
            wants = os.path.join(units, f"{target}.wants")
            os.makedirs(wants, exist_ok=True)
            os.symlink(f"/etc/systemd/system/{name}", os.path.join(wants, name))
    return root


def boot(root, extra=()):
    return Jail(root, UID_A, ["--init", "/sbin/init", "--ports", f"tcp:{PORT}", "--memory", "256M",
                              "--jail-name", NAME, "--stop-timeout", "20"] + list(extra))


def enter(jail, script, timeout=60):
    """As root inside, in the booted system's namespaces (jaild enter --root)."""
    return subprocess.run([JAILD, "enter", jail.socket, "--root", "--", "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def service(jail, script, timeout=60):
    """`script` run by systemd as a transient service: with the payload's own capabilities
    (SYS_ADMIN in its user namespace), which a session's root lacks."""
    return enter(jail, f"systemd-run --quiet --wait --pipe --collect /bin/sh -c {shell_quote(script)}", timeout)


def shell_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def get(path="/", timeout=3):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=timeout) as response:
        return response.status


def serving():
    try:
        return get() == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def parent():
    directory = tempfile.mkdtemp(prefix="jail-boot-", dir="/var/tmp")
    os.chmod(directory, 0o700)
    try:
        yield directory
    finally:
        assert mounts_under(directory) == []
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def booted(parent):
    root = prepare_root(parent)
    jail = boot(root)
    try:
        jail.start()
        jail.root_path = root
        yield jail
    finally:
        jail.stop(timeout=60)


def test_start_returns_once_the_system_is_running(booted):
    # jaild returned after READY=1: multi-user.target is reached, nothing failed.
    out = enter(booted, "systemctl is-system-running --wait; systemctl --failed --no-legend --plain")
    assert out.stdout.split("\n")[0] == "running", out.stdout + out.stderr
    rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True).stdout)
    assert [r["payload"] for r in rows if r["socket"] == booted.socket] == ["running"]
    print(f"start until ready: {booted.start_seconds:.2f} s")


def test_nginx_serves_the_host_and_its_journal_says_so(booted):
    wait_for(serving, 10, "nginx on 127.0.0.1:8089")
    out = enter(booted, "journalctl -u nginx --no-pager")
    assert "Started nginx.service" in out.stdout or "Started A high performance web server" in out.stdout, out.stdout


def test_sessions_land_in_the_booted_system(booted):
    user = booted.run("ps -o comm= -p 1; id -u; systemctl is-system-running")
    assert user.returncode == 0, user.stderr
    assert user.stdout.decode().split() == ["systemd", str(UID_A), "running"]
    root = enter(booted, "systemctl is-active nginx; systemd-detect-virt --container; ps -o comm= -p 1")
    assert root.stdout.split() == ["active", "container-other", "systemd"], root.stdout + root.stderr


def test_restart_on_failure_and_a_timer(booted):
    first = enter(booted, "systemctl show -P MainPID crasher").stdout.strip()
    assert enter(booted, "systemctl kill --signal=SIGSEGV crasher").returncode == 0
    wait_for(lambda: enter(booted, "systemctl show -P MainPID crasher").stdout.strip() not in ("", "0", first), 10,
             "crasher to be restarted")
    ticks = lambda: len(enter(booted, "cat /var/tmp/ticks 2>/dev/null").stdout.split())
    now = ticks()
    wait_for(lambda: ticks() >= now + 2, 10, "the timer to fire twice more")


def test_unit_sandboxing_is_enforced_not_skipped(booted):
    out = enter(booted, "systemd-run --quiet --wait -p ProtectSystem=strict -p PrivateTmp=yes -p PrivateDevices=yes "
                        "/bin/touch /etc/sandbox-x; echo status=$?; ls /etc/sandbox-x")
    assert "status=0" not in out.stdout, out.stdout
    assert not os.path.exists(os.path.join(booted.root_path, "etc/sandbox-x"))


def test_the_payloads_root_stays_inside(booted):
    # Run by systemd: the payload's full capability set in its own user namespace.
    out = service(booted, """
        unshare -m sh -c 'mkdir -p /tmp/r /tmp/s; mount --rbind / /tmp/r && echo rbind-ok;
          mount --bind / /tmp/s 2>/dev/null && echo bind-uncovers;
          mount -o remount,bind,dev /tmp/r 2>/dev/null && echo dev-remounted;
          umount -l /tmp/r/dev 2>/dev/null && echo dev-unmounted;
          umount -l /tmp/r/sys 2>/dev/null && echo sys-unmounted;
          mount -o remount,bind,rw /tmp/r/sys 2>/dev/null && echo sys-writable'
        perl -e 'my ($t, $d, $p) = ("user", "k", "v"); syscall(248, $t, $d, $p, 1, -3) < 0 and print "add_key: $!\\n"'
        perl -e 'syscall(321, 0, 0, 0) < 0 and print "bpf: $!\\n"'
        ls /sys/fs/cgroup | grep -c -x jail
        cat /sys/fs/cgroup/cgroup.procs | wc -l
        echo done""")
    lines = out.stdout.splitlines()
    assert "done" in lines, out.stdout + out.stderr
    assert "rbind-ok" in lines  # its own mount namespace: allowed
    # The jail's mounts came into the payload's user namespace locked: a plain bind of / (which
    # would show what the jail's /dev, /proc and /sys cover, such as the rootfs's own
    # /dev/console, the host's console) is refused, so are unmounting them and clearing nodev
    # or read-only.
    for forbidden in ("bind-uncovers", "dev-remounted", "dev-unmounted", "sys-unmounted", "sys-writable"):
        assert forbidden not in lines, out.stdout
    assert "add_key: Operation not permitted" in lines and "bpf: Operation not permitted" in lines, out.stdout
    assert lines[lines.index("done") - 2] == "0"  # the host's cgroup tree is not in view


def test_no_abstract_socket_of_the_host_from_the_payload(booted):
    name = f"jail-boot-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + name)
        listener.listen(1)
        out = service(booted, "perl -MSocket -e 'socket(my $s, AF_UNIX, SOCK_STREAM, 0); "
                              f"connect($s, pack_sockaddr_un(\"\\0{name}\")) and print \"connected\\n\" or print \"refused: $!\\n\"'")
        assert out.stdout.startswith("refused"), out.stdout + out.stderr


def test_ports_memory_bound_the_payload(booted):
    out = service(booted, "perl -MIO::Socket::INET -e 'IO::Socket::INET->new(LocalAddr => \"127.0.0.1:8090\", "
                          "Listen => 1) and print \"bound\\n\" or print \"refused: $!\\n\"'")
    assert out.stdout.startswith("refused"), out.stdout + out.stderr
    # 400 MiB in a unit of the payload, against --memory 256M on the jail's programs: OOM-killed.
    out = enter(booted, "systemd-run --quiet --wait -p Restart=no perl -e '$x = \"a\" x (400 << 20); sleep 1'; echo status=$?")
    assert "status=0" not in out.stdout, out.stdout
    assert enter(booted, "systemctl is-active nginx").stdout.strip() == "active"


def test_reboot_restarts_the_payload_only(booted):
    before = enter(booted, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    enter(booted, "systemctl reboot")
    init_pid = booted.init_pid

    def rebooted():
        words = enter(booted, "systemctl is-system-running; cat /proc/sys/kernel/random/boot_id").stdout.split()
        return len(words) == 2 and words[0] == "running" and words[1] != before
    wait_for(rebooted, 30, "the payload to boot again with a new boot id")
    assert pid_alive(init_pid) and children_of(booted.supervisor) == [init_pid]
    wait_for(serving, 10, "nginx after the reboot")


def test_adoption_keeps_nginx_serving_then_stop_runs_execstop(booted):
    os.kill(booted.supervisor, signal.SIGKILL)
    wait_for(lambda: not pid_alive(booted.supervisor), 5, "the supervisor to die")
    assert serving()
    result = subprocess.run(booted.command(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    booted.supervisor = int(open(booted.pidfile).read())
    assert serving()
    assert enter(booted, "systemctl is-system-running").stdout.strip() == "running"
    # jaild stop: systemd halts (ExecStop of every unit runs), then nothing is left.
    pids = [booted.init_pid] + descendants(booted.init_pid)
    began = time.monotonic()
    assert subprocess.run([JAILD, "stop", booted.socket], capture_output=True, timeout=60).returncode == 0
    print(f"stop: {time.monotonic() - began:.2f} s")
    assert not any(pid_alive(p) for p in pids)
    assert open(os.path.join(booted.root_path, "var/tmp/stop-ran")).read() == "stopped\n"
    journal = subprocess.run(["journalctl", "--directory", os.path.join(booted.root_path, "var/log/journal"),
                              "--no-pager", "-u", "nginx"], capture_output=True, text=True).stdout
    assert "Stopped nginx.service" in journal or "Stopped A high performance web server" in journal, journal
    assert not serving()


def test_poweroff_inside_ends_the_jail_with_status_0(parent):
    second = os.path.join(parent, "second")
    os.mkdir(second, 0o700)
    root = prepare_root(second)
    jail = Jail(root, UID_A, ["--init", "/sbin/init", "--jail-name", NAME + "2", "-c"])
    process = subprocess.Popen(jail.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: subprocess.run([JAILD, "status", jail.socket], capture_output=True).returncode == 0, 30,
                 "the second jail to run")
        wait_for(lambda: enter(jail, "systemctl is-system-running").stdout.strip() == "running", 30, "it to boot")
        enter(jail, "systemctl poweroff")
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_no_userns_init_is_refused_in_one_line(tmp_path):
    out = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(tmp_path), "--no-userns", "--init", "/sbin/init"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "user namespace" in out.stderr, out.stderr


def test_an_init_that_ends_before_it_is_ready_fails_the_start_and_leaves_nothing(rootfs_a):
    out = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_a), "--init", "/bin/false", "--init-timeout", "10"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "ended before it was ready" in out.stderr, out.stderr
    assert not os.path.exists(f"/run/jail/jaild-{UID_A}-{UID_A}.sock")
    assert not os.path.exists(f"/sys/fs/cgroup/unified/jail/jail-{UID_A}-{UID_A}")


def test_an_init_that_cannot_start_fails_the_start_in_one_line_that_says_why(rootfs_a):
    """The payload's own steps before its execve (the console as its controlling terminal, the
    execve itself) fail the boot the way the boot's do: the reason reaches the one line."""
    out = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_a), "--init", "/nonexistent/init", "--init-timeout", "10"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "ended before it was ready: execve /nonexistent/init: No such file or directory" in out.stderr, out.stderr
    assert not os.path.exists(f"/run/jail/jaild-{UID_A}-{UID_A}.sock")


def test_rc_boot_commands_and_rc_stop_run_in_the_booted_system(parent):
    """`--rc` (once READY=1 came), `--boot` commands and `--rc-stop` (before the halt) join the
    payload's namespaces as sessions do: PID 1 they see is systemd, their PID namespace is its."""
    third = os.path.join(parent, "third")
    os.mkdir(third, 0o700)
    root = prepare_root(third)
    saw = "echo $(ps -o comm= -p 1) $(readlink /proc/self/ns/pid) $(systemctl is-system-running)"
    jail = Jail(root, UID_A, ["--init", "/sbin/init", "--jail-name", NAME + "3", "--stop-timeout", "20",
                              "--rc", f"{saw} > /var/tmp/rc-saw", "--rc-required",
                              "--boot", f"{saw} > /var/tmp/boot-saw.tmp; mv /var/tmp/boot-saw.tmp /var/tmp/boot-saw",
                              "--rc-stop", f"{saw} > /var/tmp/rc-stop-saw"])
    files = {name: os.path.join(root, "var/tmp", name) for name in ("rc-saw", "boot-saw", "rc-stop-saw")}
    try:
        jail.start()
        # A session's PID namespace is systemd's (test_sessions_land_in_the_booted_system).
        session = enter(jail, "ps -o comm= -p 1; readlink /proc/self/ns/pid")
        assert session.stdout.split()[0] == "systemd", session.stdout + session.stderr
        systems = session.stdout.split()[1]
        # The rc ran to its end before jaild returned, after READY=1: the system was running.
        assert open(files["rc-saw"]).read().split() == ["systemd", systems, "running"]
        wait_for(lambda: os.path.exists(files["boot-saw"]), 10, "the boot command's file")
        assert open(files["boot-saw"]).read().split() == ["systemd", systems, "running"]
        assert subprocess.run([JAILD, "stop", jail.socket], capture_output=True, timeout=60).returncode == 0
        # rc-stop ran before the payload's halt: systemd still up and running.
        assert open(files["rc-stop-saw"]).read().split() == ["systemd", systems, "running"]
    finally:
        jail.stop(timeout=60)


def test_an_rc_past_its_timeout_is_killed_inside_the_booted_system(parent):
    """The rc's process init waits for is its child outside the payload; killed at `--rc-timeout`,
    its death kills the rc's program in the payload too: nothing of it is left."""
    fourth = os.path.join(parent, "fourth")
    os.mkdir(fourth, 0o700)
    root = prepare_root(fourth)
    jail = Jail(root, UID_A, ["--init", "/sbin/init", "--jail-name", NAME + "4", "--rc", "exec sleep 1000",
                              "--rc-timeout", "1"])
    try:
        jail.start()

        def command_line(pid):
            try:
                return open(f"/proc/{pid}/cmdline").read()
            except OSError:  # it ended meanwhile
                return ""

        # Its own sleep, not crasher.service's `sleep infinity`.
        def sleeps():
            return [p for p in descendants(jail.init_pid) if command_line(p) == "sleep\x001000\x00"]
        wait_for(lambda: sleeps() == [], 5, "the rc's sleep to be gone")
        assert enter(jail, "systemctl is-system-running").stdout.strip() == "running"
    finally:
        jail.stop(timeout=60)
