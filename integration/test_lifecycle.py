"""jaild's start, readiness, socket, pid file, stop and failures (issue: core, items 2-6, 13, 14)."""
import os
import sys
import signal
import socket
import stat
import subprocess

import pytest

from conftest import (JAIL, JAILD, UID_A, UID_B, Jail, as_user, jail_cgroups, mounts_under, pid_alive,
                      wait_for)


def test_start_is_ready_on_exit_and_stop_leaves_nothing(rootfs_a):
    jail = Jail(rootfs_a, UID_A).start()
    try:
        # Readiness: the first process exited 0, so a session works at once, no retry.
        assert jail.run("echo ready").stdout == b"ready\n"
        info = os.lstat(jail.socket)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert (info.st_uid, info.st_gid) == (UID_A, UID_A)
        directory = os.lstat("/run/jail")
        assert directory.st_uid == 0 and stat.S_IMODE(directory.st_mode) & 0o022 == 0
        assert int(open(jail.pidfile).read()) == jail.supervisor
        assert open(f"/proc/{jail.supervisor}/cmdline").read().startswith(f"jaild: supervisor [{UID_A}:{UID_A}]")
        assert mounts_under(rootfs_a) == [], "the jail's mounts leaked into the host's mount namespace"
        pids = jail.all_pids()
    finally:
        jail.stop()
    assert not any(pid_alive(p) for p in pids)
    assert not os.path.exists(jail.socket)
    assert not os.path.exists(jail.pidfile)
    assert mounts_under(rootfs_a) == []


@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_namespaces_are_new_except_network(rootfs_a, userns):
    with Jail(rootfs_a, UID_A, [] if userns else ["--no-userns"]) as jail:
        for ns in ("pid", "mnt", "uts", "ipc"):
            assert os.readlink(f"/proc/{jail.init_pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        # The host's network is shared on purpose: daemons inside bind the host's ports.
        assert os.readlink(f"/proc/{jail.init_pid}/ns/net") == os.readlink("/proc/self/ns/net")
        same_user_namespace = os.readlink(f"/proc/{jail.init_pid}/ns/user") == os.readlink("/proc/self/ns/user")
        assert same_user_namespace != userns


def test_init_is_pid_1_and_single_threaded(jail_a):
    out = jail_a.run("ps -o pid,user,args").stdout.decode()
    first = out.splitlines()[1].split(None, 2)
    assert first[0] == "1" and first[1] == "root"
    assert first[2].startswith(f"jaild: init [{UID_A}:{UID_A}]")
    status = open(f"/proc/{jail_a.init_pid}/status").read()
    assert "\nThreads:\t1\n" in status
    assert "\nNSpid:\t%d\t1\n" % jail_a.init_pid in status


def test_init_reaps_orphans(jail_a):
    # Double-forked orphans reparent to init; after they exit no zombie may stay.
    assert jail_a.run("for i in 1 2 3 4 5 6 7 8; do (sleep 0.01 &) ; done; true").returncode == 0
    def no_zombies():
        out = jail_a.run("cat /proc/[0-9]*/stat").stdout.decode()
        return all(line.rsplit(")", 1)[1].split()[0] != "Z" for line in out.splitlines())
    wait_for(no_zombies, 10, "orphans to be reaped")


def test_second_jaild_for_same_socket_is_refused(jail_a, rootfs_a):
    result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_a)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr == f"jaild: a jail is already running on {jail_a.socket} (pid {jail_a.supervisor})\n"
    assert jail_a.run("true").returncode == 0


def test_stale_socket_of_a_dead_jaild_is_replaced(rootfs_a):
    jail = Jail(rootfs_a, UID_A).start()
    pids = jail.all_pids()
    # Both killed at once, as a host crash would leave them (init alone outlives jaild: test_adoption).
    os.kill(jail.supervisor, signal.SIGKILL)
    os.kill(jail.init_pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids), 10, "the jail to die")
    assert os.path.exists(jail.socket) and os.path.exists(jail.pidfile)
    wait_for(lambda: mounts_under(rootfs_a) == [], 10, "the mounts to go")
    result = subprocess.run([JAIL, "-c", "true"], capture_output=True, text=True, preexec_fn=as_user(UID_A))
    assert result.returncode == 255
    assert "connection refused" in result.stderr
    again = Jail(rootfs_a, UID_A).start()
    try:
        assert again.run("echo again").stdout == b"again\n"
    finally:
        again.stop()


def test_stop_terms_then_kills_after_timeout(rootfs_a):
    jail = Jail(rootfs_a, UID_A, ["--stop-timeout", "1"]).start()
    # A process that ignores SIGTERM must still be gone after the timeout.
    proc = subprocess.Popen([JAIL, "-c", "trap '' TERM; echo started; while :; do sleep 1; done"],
                            stdout=subprocess.PIPE, preexec_fn=as_user(UID_A))
    assert proc.stdout.readline() == b"started\n"
    pids = jail.all_pids()
    os.kill(jail.supervisor, signal.SIGTERM)
    try:
        wait_for(lambda: not any(pid_alive(p) for p in pids), 15, "the jail to stop")
        assert proc.wait(10) == 137  # the session reports SIGKILL
    finally:
        proc.kill()
    assert not os.path.exists(jail.socket)


def test_stop_reports_sigterm_to_running_sessions(rootfs_a):
    jail = Jail(rootfs_a, UID_A).start()
    proc = subprocess.Popen([JAIL, "-c", "echo started; exec sleep 1000"], stdout=subprocess.PIPE,
                            preexec_fn=as_user(UID_A))
    try:
        assert proc.stdout.readline() == b"started\n"
        jail.stop()
        assert proc.wait(10) == 128 + signal.SIGTERM
    finally:
        proc.kill()


def test_foreground_logs_to_stderr_and_stops_on_sigterm(rootfs_a):
    proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_A), "-r", str(rootfs_a)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # Host-dependent notes may come first; the start line must come, bounded in time.
        seen = []
        wait_for(lambda: seen.append(proc.stderr.readline()) or "started on /run/jail/jaild-61000-61000.sock" in seen[-1]
                 or proc.poll() is not None, 20, "the start line")
        assert "started on /run/jail/jaild-61000-61000.sock" in seen[-1], seen
        assert int(open("/run/jail/jaild-61000-61000.pid").read()) == proc.pid
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists("/run/jail/jaild-61000-61000.sock")


def test_socket_prefix_and_client_environment(rootfs_a, public_tmp):
    # The jail user must reach the socket's directory: pytest's tmp_path is 0700 root.
    prefix = str(public_tmp / "jaild")
    with Jail(rootfs_a, UID_A, prefix=prefix) as jail:
        assert jail.socket == prefix + f"-{UID_A}-{UID_A}.sock"
        assert os.path.exists(jail.socket)
        for env in ({"SOCKET": prefix}, {"JAIL_SOCKET": jail.socket}):
            result = subprocess.run([JAIL, "-c", "echo via-env"], capture_output=True, env=env,
                                    preexec_fn=as_user(UID_A))
            assert result.stdout == b"via-env\n", env


def test_no_root_still_makes_namespaces(tmp_path):
    # As in 2014: without -r the jail keeps the host's files but gets its own PIDs.
    # The user comes from the host's /etc/passwd then: nobody is on every Debian machine.
    nobody = 65534
    with Jail(None, nobody, ["-s", "/bin/sh"]) as jail:
        out = jail.run("echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'")
        pid, cmdline, count = out.stdout.decode().splitlines()
        assert cmdline.startswith(f"jaild: init [{nobody}:{nobody}]")
        assert int(count) < 10
        assert os.readlink(f"/proc/{jail.init_pid}/ns/pid") != os.readlink("/proc/self/ns/pid")


@pytest.mark.parametrize("case", ["missing", "file", "uid0", "unknown", "shell", "mount"])
def test_bad_input_is_one_line_and_leaves_nothing(case, rootfs_a, tmp_path):
    root = str(rootfs_a)
    args = ["-u", str(UID_A), "-r", root]
    expected = None
    if case == "missing":
        args = ["-u", str(UID_A), "-r", str(tmp_path / "nope")]
        expected = f"jaild: root {tmp_path / 'nope'} does not exist\n"
    elif case == "file":
        (tmp_path / "f").write_text("x")
        args = ["-u", str(UID_A), "-r", str(tmp_path / "f")]
        expected = f"jaild: root {tmp_path / 'f'} is not a directory\n"
    elif case == "uid0":
        args = ["-u", "0", "-r", root]
        expected = "jaild: uid 0 is not allowed: a jail for root would give away the whole jail\n"
    elif case == "unknown":
        args = ["-u", "4242", "-r", root]
        expected = "jaild: no user with uid 4242 in the jail's /etc/passwd\n"
    elif case == "shell":
        args += ["-s", "/bin/nosuchshell"]
        expected = f"jaild: shell /bin/nosuchshell of work does not exist in {root}: No such file or directory\n"
    elif case == "mount":
        args += ["-m", f"/data={tmp_path}/absent"]
        expected = f"jaild: host path {tmp_path}/absent of mount /data does not exist\n"
    before = set(os.listdir("/run/jail")) if os.path.isdir("/run/jail") else set()
    result = subprocess.run([JAILD] + args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == expected
    assert (set(os.listdir("/run/jail")) if os.path.isdir("/run/jail") else set()) == before
    assert mounts_under(root) == []


def test_not_root_gets_a_rootless_jail_of_its_own_uid_only(rootfs_a):
    # Rootless jails map only the user's own uid; another's needs root (test_rootless.py has the rest).
    result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_a)], capture_output=True, text=True,
                            preexec_fn=as_user(UID_B), timeout=30)
    assert result.returncode == 1
    assert result.stderr == (f"jaild: uid {UID_A} inside needs root: a rootless jail maps only your own uid "
                             f"({UID_B}, or 0 with --map-root)\n")


def test_client_without_jail_says_so():
    result = subprocess.run([JAIL, "-c", "true"], capture_output=True, text=True, preexec_fn=as_user(4321))
    assert result.returncode == 255
    assert result.stderr == "jail: no jail is running for uid 4321: /run/jail/jaild-4321-4321.sock: no such file\n"


def test_help_and_version():
    # The start options are the default verb's: `jaild start --help` (test_cli.py has the verbs).
    out = subprocess.run([JAILD, "start", "--help"], capture_output=True, text=True).stdout
    for flag in ("-a", "-u", "-g", "-n", "-r", "-s", "-m", "-c", "-h", "-v", "--hostname", "--stop-timeout"):
        assert f"{flag}," in out or f"{flag} " in out, flag
    assert subprocess.run([JAILD, "start", "-h"], capture_output=True, text=True).stdout == out
    version = subprocess.run([JAILD, "-v"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("jaild ")


def test_peer_of_another_uid_is_refused(jail_a):
    result = jail_a.run("true", uid=UID_B)
    # The socket is 0600: the kernel already refuses; either way, one clear line and 255.
    assert result.returncode == 255
    assert result.stderr.startswith(b"jail: ")
    # The client refuses a socket that is not its own before jaild is asked.
    assert b"owned by uid 61000" in result.stderr, result.stderr
    # jaild's own check (SO_PEERCRED), with a raw connection that skips the client's checks.
    os.chmod(jail_a.socket, 0o666)
    try:
        probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                 "s.settimeout(10); data=b''\n"
                 "while True:\n c=s.recv(4096)\n if not c: break\n data+=c\n"
                 "sys.stdout.buffer.write(data)")
        reply = subprocess.run([sys.executable, "-c", probe, jail_a.socket], capture_output=True, timeout=30,
                               preexec_fn=as_user(UID_B)).stdout
        # In the jail's user namespace the kernel shows uid 61001, which has no id there, as 65534.
        message = f"may not enter the jail of uid {UID_A}".encode()
        assert message in reply, reply
        assert reply[:4] == (len(reply) - 4).to_bytes(4, "big")  # exactly one frame, then close
    finally:
        os.chmod(jail_a.socket, 0o600)
    assert jail_a.run("true").returncode == 0


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
