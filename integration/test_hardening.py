"""Hardening, round two (issue 22 items 2, 3, 6, 8): jaild's own binary through /proc/PID/exe,
a host directory passed into the jail over an abstract unix socket, a boot command flooding the
supervisor's log, and the audit login uid. Each attack is tried for real, mostly as root inside
(/bin/rootprobe), and must fail; none depends on a user namespace."""
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import JAIL, JAILD, UID_A, Foreground, Jail, as_user, descendants, outcome, probe, wait_for


# Every attack of issue 22 must fail with the user namespace on (the default) and, as
# defence in depth, without it.
MODES = pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])


def file_identity(path):
    info = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return info.st_uid, info.st_gid, info.st_mode, digest


@pytest.fixture
def jaild_copy():
    """A copy of jaild that the attack may damage (on code without the fix) without harm."""
    directory = tempfile.mkdtemp(prefix="jaild-exe-", dir="/tmp")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "jaild")
    shutil.copy2(JAILD, path)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


@MODES
def test_jaild_binary_is_out_of_reach_through_proc_self_exe(rootfs_sec, jaild_copy, mode):
    """CVE-2019-5736: root inside makes the user's shell /proc/self/exe, so the next session
    runs jaild itself as the jail user (dumpable); the user opens its /proc/PID/exe and root
    inside fchowns, chmods and reopens it for writing. jaild's file must stay as it was."""
    before = file_identity(jaild_copy)
    passwd = rootfs_sec / "etc" / "passwd"
    original = passwd.read_text()
    running = Jail(rootfs_sec, UID_A)
    running.command = lambda: [jaild_copy, "-u", str(UID_A), "-r", str(rootfs_sec), *mode]
    fifo = f"/tmp/exe-fifo-{secrets.token_hex(4)}"
    with running:
        # Root inside rewrites /etc/passwd: the user's shell is /proc/self/exe.
        lines = [line if not line.startswith("work:") else ":".join(line.split(":")[:6] + ["/proc/self/exe"])
                 for line in original.splitlines()]
        running.run(f"cat > /tmp/passwd.new; mkfifo {fifo}", input=("\n".join(lines) + "\n").encode())
        result = running.run("/bin/rootprobe exec /bin/cp /tmp/passwd.new /etc/passwd")
        assert result.returncode == 0, result.stderr
        try:
            # The next session: its "shell" is jaild, told to read a config from a FIFO, so it
            # waits there while the watcher attacks it.
            victim = subprocess.Popen([JAIL, "--config", fifo], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env={"JAIL_SOCKET": running.socket},
                                      preexec_fn=as_user(UID_A))
            try:
                # Until jaild runs as the session's program (or the session was refused).
                wait_for(lambda: victim.poll() is not None or jaild_in_the_jail(running, fifo), 20, "the session")
                passwd.write_text(original)  # the watcher's own session needs a real shell
                tries = 300 if victim.poll() is None else 20  # refused already: a short look suffices
                attack = subprocess.run([JAIL, "-c", f"/bin/jailprobe exe-attack '--config {fifo}' {UID_A} {tries}"],
                                        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                                        env={"JAIL_SOCKET": running.socket}, preexec_fn=as_user(UID_A))
                text = attack.stdout.decode()
                print(text, victim.poll(), victim.stderr.read() if victim.poll() is not None else "")
                for step in ("fchown", "fchmod", "reopen-write"):
                    assert f"{step}: ok" not in text, text
            finally:
                if victim.poll() is None:
                    victim.kill()
                victim.wait()
        finally:
            passwd.write_text(original)
        assert file_identity(jaild_copy) == before
        # Even host root, through the running init's /proc/PID/exe, finds a read-only file.
        with pytest.raises(OSError) as refused:
            os.chmod(f"/proc/{running.init_pid}/exe", 0o755)
        assert refused.value.errno == 30, refused.value  # EROFS
        assert os.statvfs(f"/proc/{running.init_pid}/exe").f_flag & os.ST_RDONLY
    assert file_identity(jaild_copy) == before


def jaild_in_the_jail(running, fifo):
    for pid in [running.init_pid] + descendants(running.init_pid):
        try:
            if f"--config\0{fifo}".encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                return True
        except OSError:
            pass
    return False


def test_host_directory_passed_in_over_an_abstract_socket_opens_nothing(probe_jail):
    """A host process connects in to an abstract socket root inside listens on (the Landlock
    scope only stops connections out of the jail) and passes a descriptor of the host's /."""
    name = "jail-fd-" + secrets.token_hex(6)
    created = f"tmp/jail-landlock-{secrets.token_hex(6)}"
    listener = subprocess.Popen([JAIL, "-c", f"/bin/rootprobe abstract-receive-fd {name} {created}"],
                                stdout=subprocess.PIPE, env={"JAIL_SOCKET": probe_jail.socket}, preexec_fn=as_user(UID_A))
    try:
        assert listener.stdout.readline() == b"listening\n"
        host_root = os.open("/", os.O_PATH | os.O_DIRECTORY)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect("\0" + name)
                socket.send_fds(s, [b"x"], [host_root])
                text = listener.communicate(timeout=30)[0].decode()
        finally:
            os.close(host_root)
        assert "got-fd" in text, text
        for step in ("read-shadow", "read-passwd", "list-root", "create", "mkdir"):
            assert f"{step}: EACCES" in text, text
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.wait()
        for leftover in ("/" + created, "/tmp/jail-landlock-probe-dir"):
            if os.path.isdir(leftover):
                os.rmdir(leftover)
            elif os.path.exists(leftover):
                os.unlink(leftover)


def test_landlock_leaves_the_jail_usable(probe_jail):
    """Everything beneath the jail's root stays reachable: /proc, /dev, /tmp, stdin through
    /dev/stdin for a pipe, su-like setuid programs, renames across directories."""
    out = probe_jail.run("cat /proc/self/status >/dev/null && ls /dev/pts >/dev/null && echo x > /tmp/a && "
                   "mkdir -p /tmp/d && mv /tmp/a /tmp/d/b && cat /tmp/d/b && rm -r /tmp/d && echo piped | cat /dev/stdin")
    assert (out.returncode, out.stdout) == (0, b"x\npiped\n"), out.stderr
    assert probe(probe_jail, "id") == "uid=0 euid=0\n"
    assert outcome(probe_jail, "read-file", "/etc/passwd") == "ok"
    # Root inside switching users (su), as sshd and login do.
    assert probe_jail.run("/bin/rootprobe exec /bin/su -s /bin/sh work -c 'id -u; ls / >/dev/null && echo listed'").stdout == \
        f"{UID_A}\nlisted\n".encode()


def supervisor_usage(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = [int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:")][0]
    return cpu, rss


def test_boot_output_flood_costs_the_supervisor_little(rootfs_a, tmp_path):
    """A boot command (as the jail user, who could also take the pipe with pidfd_getfd) writes
    a flood of lines, then 64 MiB without a newline. The supervisor (host root, no cgroup of
    the jail's) must stay small and cool, cut lines at 4 KiB, rate-limit them, and serve."""
    flood = "yes flood-line | head -n 50000; head -c 67108864 /dev/zero | tr '\\0' x; echo; echo flood-done"
    jail = Foreground(rootfs_a, ["--boot", flood], tmp_path / "jaild.log")
    try:
        start_cpu, _ = supervisor_usage(jail.proc.pid)
        deadline = time.monotonic() + 4
        peak = 0
        while time.monotonic() < deadline:
            peak = max(peak, supervisor_usage(jail.proc.pid)[1])
            assert jail.run("echo served").stdout == b"served\n"
        cpu, rss = supervisor_usage(jail.proc.pid)
        text = jail.text()
        lines = [line for line in text.splitlines() if line.startswith("jaild: boot: ")]
        cut = [line for line in lines if line.endswith(" [cut at 4096 bytes]")]
        print(f"supervisor cpu {cpu - start_cpu:.3f}s, peak VmRSS {peak} KiB, {len(lines)} boot lines, {len(cut)} cut")
        assert peak < 16 * 1024, peak
        assert cpu - start_cpu < 1.0
        assert cut and all(line == "jaild: boot: " + "x" * 4096 + " [cut at 4096 bytes]" for line in cut[:3])
        assert "lines of boot output dropped (more than 100 a second)" in text
        assert len(lines) <= 100 * 7, len(lines)
    finally:
        jail.stop()


@MODES
def test_loginuid_is_the_jail_user_and_fixed(rootfs_sec, mode):
    """Every process of the jail has the jail user's audit login uid, set before anything
    runs: root inside cannot set it (to 0) nor change it."""
    with Jail(rootfs_sec, UID_A, ["--boot", "cat /proc/self/loginuid > /tmp/boot-loginuid", *mode]) as running:
        assert running.run("cat /proc/self/loginuid").stdout == str(UID_A).encode()
        assert probe(running, "exec", "/bin/cat", "/proc/self/loginuid") == str(UID_A)
        assert outcome(running, "write-text", "/proc/self/loginuid", "0") == "EPERM"
        assert outcome(running, "write-text", "/proc/self/loginuid", "4294967295") == "EPERM"
        wait_for(lambda: running.run("cat /tmp/boot-loginuid").stdout != b"", 10, "the boot command")
        assert running.run("cat /tmp/boot-loginuid").stdout == str(UID_A).encode()
        # The bounding set has no CAP_AUDIT_CONTROL (30), which changing it would need.
        status = running.run("/bin/rootprobe exec /bin/cat /proc/self/status").stdout.decode()
        bounding = int([line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:")][0], 16)
        assert not bounding >> 30 & 1
