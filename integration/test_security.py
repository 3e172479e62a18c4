"""Hardening (issue 5): every test tries the attack for real, mostly as root inside the jail
(through /bin/rootprobe, a setuid-root copy of integration/probe/jailprobe.c, as a tenant with a
setuid binary or a weak root password would), and checks that it fails."""
import os
import random
import re
import secrets
import socket
import stat
import subprocess
import sys

import pytest

from conftest import (JAIL, JAILD, UID_A, UID_B, Jail, as_user, children_of, session_children, jail_descendants,
                      pid_alive, probe, outcome, wait_for)

# Capabilities that stay in the bounding set (Sources/JailDaemon/Init/Hardening.swift).
KEPT = {0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 29}


@pytest.fixture
def jail(rootfs_sec):
    with Jail(rootfs_sec, UID_A) as running:
        yield running


def test_root_inside_is_really_root(jail):
    assert probe(jail, "id") == "uid=0 euid=0\n"


def test_bounding_set_is_reduced(jail):
    status = jail.run("/bin/rootprobe exec /bin/cat /proc/self/status").stdout.decode()
    fields = dict(line.split(":\t") for line in status.splitlines() if ":\t" in line)
    bounding = int(fields["CapBnd"], 16)
    assert {bit for bit in range(64) if bounding >> bit & 1} == KEPT
    # Root inside gets the bounding set, no more; the jail user gets nothing.
    assert int(fields["CapEff"], 16) == bounding
    user = dict(line.split(":\t") for line in jail.run("cat /proc/self/status").stdout.decode().splitlines()
                if ":\t" in line)
    assert int(user["CapEff"], 16) == 0 and int(user["CapInh"], 16) == 0 and int(user["CapAmb"], 16) == 0


@pytest.mark.parametrize("attack", [
    "mount-proc", "remount-proc", "remount-sys-rw", "umount-proc-mask", "mknod", "init-module", "raw-socket",
    "packet-socket", "sethostname-host", "reboot", "settimeofday", "clock-settime", "open-by-handle", "dev-mem",
])
def test_root_inside_cannot(jail, attack):
    assert outcome(jail, attack) in ("EPERM", "EACCES", "ENOENT", "EROFS"), attack


@pytest.mark.parametrize("call", [
    "keyctl", "add-key", "bpf", "perf-event-open", "kexec-load", "swapon", "acct", "unshare-user", "unshare-net",
    "clone-newuser", "setns",
])
def test_seccomp_denies_host_global_syscalls(jail, call):
    assert outcome(jail, call) == "EPERM"
    assert outcome(jail, call, root=False) == "EPERM"


def test_ordinary_syscalls_still_work(jail):
    assert outcome(jail, "fork") == "ok"
    assert jail.run("echo ok | cat").stdout == b"ok\n"


def test_init_and_helpers_cannot_be_traced_or_read(jail):
    other = subprocess.Popen([JAIL, "-c", "echo ready; read x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    try:
        assert other.stdout.readline() == b"ready\n"
        helper = session_children(jail.init_pid)[0]
        nspid = [line.split()[-1] for line in open(f"/proc/{helper}/status") if line.startswith("NSpid:")][0]
        attack_init_and_helper(jail, nspid)
    finally:
        other.communicate(b"\n", timeout=30)


def attack_init_and_helper(jail, helper):
    for pid in ("1", helper):
        assert outcome(jail, "ptrace", pid) == "EPERM"
        for path in ("mem", "environ", "root/etc/issue", "cwd/etc/issue"):
            assert outcome(jail, "read-file", f"/proc/{pid}/{path}") in ("EACCES", "EPERM"), path
    # CVE-2019-5736: rewriting jaild's binary through /proc/PID/exe.
    assert outcome(jail, "write-file", "/proc/1/exe") in ("EACCES", "EPERM", "ETXTBSY")


def test_chroot_escape_stays_in_the_jail(jail):
    text = probe(jail, "chroot-escape")
    # The climb may succeed, but it ends at the jail's root: the old root is detached.
    assert "Jail security rootfs" in text or "chroot-escape: E" in text, text
    assert "Debian" not in text and "GNU" not in text


def test_host_root_not_reachable_through_proc(jail):
    script = ("for p in /proc/[0-9]*; do for l in root cwd; do "
              "/bin/rootprobe read-file $p/$l/etc/issue >/dev/null && cat $p/$l/etc/issue; done; done; true")
    for line in jail.run(script).stdout.decode().splitlines():
        assert line == "Jail security rootfs", line


def test_proc_and_sys(jail):
    masked = [p for p in ("/proc/kcore", "/proc/kallsyms", "/proc/keys", "/proc/timer_list", "/proc/sysrq-trigger",
                          "/proc/sched_debug", "/proc/slabinfo") if os.path.exists(p)]  # this kernel's
    assert masked
    for path in masked:
        out = jail.run(f"/bin/rootprobe exec /bin/cat {path} | wc -c").stdout
        assert out.strip() == b"0", path
        listing = jail.run(f"ls -l {path}").stdout.decode()
        assert re.match(r"^c.*\b1,\s+3\b", listing), listing  # /dev/null on top
    # Read-only mounts; in the user namespace the files are also host root's, which root
    # inside is not (EACCES comes first).
    assert outcome(jail, "write-file", "/proc/sys/kernel/hostname") in ("EROFS", "EACCES")
    assert outcome(jail, "write-file", "/proc/sys/vm/drop_caches") in ("EROFS", "EACCES")
    assert outcome(jail, "write-file", "/sys/kernel/uevent_helper") in ("EROFS", "ENOENT", "EACCES")
    mounts = jail.run("cat /proc/mounts").stdout.decode()
    assert str(jail.root) not in mounts
    assert "/tmp/pytest" not in mounts and "/work" not in mounts
    # Host processes are invisible.
    assert b"pytest" not in jail.run("cat /proc/[0-9]*/cmdline 2>/dev/null; true").stdout


def test_init_and_helpers_hold_no_host_directory_and_all_cloexec(jail):
    proc = subprocess.Popen([JAIL, "-c", "echo ready; read x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    try:
        assert proc.stdout.readline() == b"ready\n"
        helpers = children_of(jail.init_pid)
        assert helpers
        for pid in [jail.init_pid] + helpers:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    info = open(f"/proc/{pid}/fdinfo/{fd}").read()
                except FileNotFoundError:
                    continue  # closed meanwhile (init closes each connection after the fork)
                # The jail's own devices, the write-only cgroup.procs of its program cgroups, the
                # helper's sealed session record (a memfd, for `jaild sessions`), or (user
                # namespace) init's pagemap in the jail's /proc, kept for IdlePages.
                assert not os.path.isdir(f"/proc/{pid}/fd/{fd}"), (pid, fd, target)
                assert not target.startswith("/") or target.startswith("/dev/") or target == "/proc/1/pagemap" or \
                    target == "/memfd:jail-session (deleted)" or \
                    re.fullmatch(r"/sys/fs/cgroup/[^ ]*/jail/jail-\d+-\d+/programs/cgroup.procs", target), (pid, fd, target)
                flags = int(info.split("flags:")[1].split()[0], 8)
                assert flags & 0o2000000, (pid, fd, target, "not close-on-exec")
    finally:
        proc.communicate(b"\n", timeout=30)


def test_no_terminal_injection_into_the_host(jail):
    master, slave = os.openpty()
    try:
        # stdio mode with stdout on a host terminal: the terminal is relayed, never passed.
        result = subprocess.run([JAIL, "-c", "/bin/rootprobe tiocsti"], stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.PIPE, env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A),
                                timeout=30)
        assert result.returncode == 0
        out = b""
        os.set_blocking(master, False)
        try:
            out = os.read(master, 4096)
        except BlockingIOError:
            pass
        assert b"tiocsti-fd1: not a tty" in out
        # pty mode: the program's terminal is the jail's own pty, and TIOCSTI is denied anyway.
        proc = subprocess.Popen([JAIL, "-c", "/bin/rootprobe tiocsti"], stdin=slave, stdout=slave, stderr=slave,
                                env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A), start_new_session=True)
        text = b""
        while True:
            if readable(master):
                try:
                    text += os.read(master, 4096)
                except OSError:
                    break
            elif proc.poll() is not None:
                break
        assert proc.wait(10) == 0
        assert b"tiocsti-fd0: EPERM" in text and b"tiocsti-devtty: EPERM" in text, text
        # Nothing was pushed into the host terminal's input queue.
        os.set_blocking(slave, False)
        with pytest.raises(BlockingIOError):
            os.read(slave, 100)
    finally:
        os.close(master)
        os.close(slave)


def readable(fd):
    import select
    return bool(select.select([fd], [], [], 0.05)[0])


def test_abstract_sockets_of_the_host_are_out_of_reach(jail):
    name = "jail-test-" + secrets.token_hex(6)
    host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host.bind("\0" + name)
    host.listen(4)
    try:
        assert outcome(jail, "abstract-connect", name, root=False) in ("EPERM", "ECONNREFUSED")
        assert outcome(jail, "abstract-connect", name) in ("EPERM", "ECONNREFUSED")
    finally:
        host.close()
    # Inside one jail, two sessions still talk over an abstract socket of their own.
    inner = "jail-inner-" + secrets.token_hex(6)
    listener = subprocess.Popen([JAIL, "-c", f"/bin/jailprobe abstract-listen {inner}"], stdout=subprocess.PIPE,
                                env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    try:
        assert listener.stdout.readline() == b"listening\n"
        text = probe(jail, "abstract-connect", inner, root=False)
        assert "hello-from-listener" in text and "abstract-connect: ok" in text
    finally:
        listener.kill()
        listener.wait()


def test_kill_minus_one_spares_init_and_helpers(jail):
    victim = subprocess.Popen([JAIL, "-c", "echo ready; exec sleep 1000"], stdout=subprocess.PIPE,
                              env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    try:
        assert victim.stdout.readline() == b"ready\n"
        killer = jail.run("kill -9 -1; echo survived")
        assert killer.stdout == b"survived\n"  # kill(-1) spares its caller
        assert victim.wait(10) == 137  # each client still gets its session's status
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert pid_alive(jail.init_pid)
    assert jail.run("echo alive").stdout == b"alive\n"


def test_sigterm_from_root_inside_does_not_stop_the_jail(jail):
    assert outcome(jail, "kill", "1", "15") == "ok"  # delivered, and dropped by the kernel or init
    assert outcome(jail, "kill", "1", "9") == "ok"
    assert jail.run("echo alive").stdout == b"alive\n"
    assert pid_alive(jail.init_pid)


def test_socket_directory_squatting_is_refused(rootfs_sec, public_tmp):
    cases = {}
    # A directory of another user.
    theirs = public_tmp / "theirs"
    theirs.mkdir()
    os.chown(theirs, UID_B, UID_B)
    cases["owned"] = (str(theirs / "jaild"), f"refusing socket directory {theirs}: it is owned by uid {UID_B}")
    # A symlink to a directory they control.
    link = public_tmp / "link"
    link.symlink_to(theirs)
    cases["symlink"] = (str(link / "jaild"), f"refusing socket directory {link}: it is a symlink")
    # A root directory inside one they can rename.
    nested = theirs / "nested"
    nested.mkdir()
    cases["parent"] = (str(nested / "jaild"), f"refusing socket directory {nested}: it has a parent {theirs} "
                                              f"that is owned by uid {UID_B}")
    for case, (prefix, message) in cases.items():
        result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_sec), "-a", prefix], capture_output=True,
                                text=True, timeout=30)
        assert (result.returncode, result.stderr) == (1, f"jaild: {message}\n"), case
        assert not os.path.exists(prefix + f"-{UID_A}-{UID_A}.sock")


def test_planted_symlink_at_the_socket_path_is_not_followed(rootfs_sec, public_tmp):
    sticky = public_tmp / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    victim = public_tmp / "victim"
    victim.write_text("precious\n")
    socket_path = sticky / f"jaild-{UID_A}-{UID_A}.sock"
    subprocess.run(["ln", "-s", str(victim), str(socket_path)], check=True, preexec_fn=as_user(UID_B))
    with Jail(rootfs_sec, UID_A, prefix=str(sticky / "jaild")) as jail:
        info = os.lstat(jail.socket)
        assert stat.S_ISSOCK(info.st_mode) and info.st_uid == UID_A
        assert jail.run("echo ok").stdout == b"ok\n"
    assert victim.read_text() == "precious\n"
    assert os.lstat(victim).st_uid == 0


def test_client_refuses_an_impostor(public_tmp):
    impostor_dir = public_tmp / "impostor"
    impostor_dir.mkdir()
    os.chown(impostor_dir, UID_B, UID_B)
    path = impostor_dir / "fake.sock"
    server = subprocess.Popen([sys.executable, "-c", "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
                               "s.bind(sys.argv[1]); s.listen(1); print('up', flush=True)\nc,_=s.accept()\n"
                               "print('CONNECTED', flush=True)", str(path)],
                              stdout=subprocess.PIPE, preexec_fn=as_user(UID_B))
    try:
        assert server.stdout.readline() == b"up\n"
        os.chmod(path, 0o777)
        result = subprocess.run([JAIL, "-c", "true"], capture_output=True, text=True, timeout=30,
                                env={"JAIL_SOCKET": str(path)}, preexec_fn=as_user(UID_A))
        assert result.returncode == 255
        assert result.stderr.startswith("jail: refusing") and f"uid {UID_B}" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("target", ["/etc", "../../../etc", "/"])
def test_symlink_at_a_bind_mount_target_is_refused(rootfs_sec, tmp_path, target):
    data = rootfs_sec / "home" / "work" / "data"
    data.symlink_to(target)
    os.lchown(data, UID_A, UID_A)
    host = tmp_path / "hostdata"
    host.mkdir()
    try:
        result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_sec), "-m", f"/home/work/data={host}"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert result.stderr == "jaild: jail path /home/work/data: /home/work/data is a symlink\n"
        # Also a symlink in the middle of the path.
        result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_sec), "-m", f"/home/work/data/x={host}"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1 and "is a symlink" in result.stderr
        assert (rootfs_sec / "etc" / "passwd").read_text().startswith("root:")
        assert not os.path.exists(f"/run/jail/jaild-{UID_A}-{UID_A}.sock")
    finally:
        data.unlink()


def connect_as_the_user(path, timeout):
    """A raw connection whose SO_PEERCRED is the jail user's (the kernel records the euid):
    host root has no id in the jail's user namespace and is refused like any stranger."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    os.seteuid(UID_A)
    try:
        s.connect(path)
    finally:
        os.seteuid(0)
    return s


def test_malformed_connections_do_not_hurt_the_jail(jail):
    rng = random.Random(1234)
    hello = bytes.fromhex("0000002b01") + b"JAIL"  # a real frame start, then garbage
    for i in range(1000):
        kind = i % 4
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 200))
        elif kind == 1:
            payload = hello[: rng.randrange(1, len(hello))]  # truncated
        elif kind == 2:
            payload = (0xFFFFFFFF).to_bytes(4, "big") + b"\x01" + rng.randbytes(50)  # absurd length
        else:
            payload = hello + rng.randbytes(rng.randrange(0, 60))
        s = connect_as_the_user(jail.socket, 15)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
        s.close()
    assert jail.run("echo still-serving").stdout == b"still-serving\n"
    wait_for(lambda: len(session_children(jail.init_pid)) == 0, 15, "the helpers of the bad connections to end")
    assert pid_alive(jail.init_pid)


def test_silent_client_costs_one_helper_for_a_bounded_time(rootfs_sec):
    with Jail(rootfs_sec, UID_A, ["--handshake-timeout", "1"]) as jail:
        s = connect_as_the_user(jail.socket, 10)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        assert b"no hello from the client in time" in data
        wait_for(lambda: session_children(jail.init_pid) == [], 10, "the helper to end")


def test_session_cap_refuses_clearly(rootfs_sec):
    with Jail(rootfs_sec, UID_A, ["--max-sessions", "2"]) as jail:
        sessions = [subprocess.Popen([JAIL, "-c", "echo ready; read x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A)) for _ in range(2)]
        try:
            for s in sessions:
                assert s.stdout.readline() == b"ready\n"
            result = jail.run("true")
            assert result.returncode == 255
            assert result.stderr == b"jail: the jail has reached its limit of 2 sessions\n"
        finally:
            for s in sessions:
                s.communicate(b"\n", timeout=30)
        wait_for(lambda: session_children(jail.init_pid) == [], 10, "sessions to end")
        assert jail.run("echo again").stdout == b"again\n"


def test_pty_pool_is_bounded_and_exhaustion_is_refused(rootfs_sec):
    import pexpect
    with Jail(rootfs_sec, UID_A, ["--max-sessions", "2"]) as jail:
        assert b"max=4" in jail.run("grep devpts /proc/mounts").stdout
        holder = subprocess.Popen([JAIL, "-c", "/bin/jailprobe hold-ptys 100"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
        try:
            assert holder.stdout.readline() == b"held 4\n"
            assert holder.stdout.readline() == b"last-open: ENOSPC\n"
            child = pexpect.spawn(f"setpriv --reuid={UID_A} --regid={UID_A} --clear-groups {JAIL}",
                                  env={"JAIL_SOCKET": jail.socket, "TERM": "xterm"}, timeout=10)
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 255
            assert b"jail: no pty left in the jail: all 4 of its ptys are in use" in child.before
        finally:
            holder.communicate(b"", timeout=30)


def test_exhaustion_from_inside_then_service_resumes(jail):
    # /dev/shm is bounded: filling it stops at its size, not at the host's memory.
    out = jail.run("dd if=/dev/zero of=/dev/shm/fill bs=1M 2>&1; ls -l /dev/shm/fill; rm /dev/shm/fill").stdout
    assert b"No space left on device" in out
    assert b" 67108864 " in out
    # A bounded fork bomb as the jail user, then everything of the user killed.
    bomb = jail.run("ulimit -u 400; b() { b | b & }; b; sleep 1; kill -9 -1; echo bomb-over", timeout=60)
    assert bomb.stdout.endswith(b"bomb-over\n")
    wait_for(lambda: len(jail_descendants(jail.init_pid)) == 0, 30, "the bomb to be reaped")
    assert jail.run("echo served").stdout == b"served\n"


def test_root_inside_cannot_change_host_network_settings(jail):
    # Setting lo's MTU to the value it already has: harmless on the host even if it passed.
    mtu = open("/sys/class/net/lo/mtu").read().strip()
    result = jail.run(f"/bin/rootprobe exec /bin/ip link set lo mtu {mtu}")
    assert result.returncode != 0
    assert b"Operation not permitted" in result.stderr or b"ermission denied" in result.stderr, result.stderr
