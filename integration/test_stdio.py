"""Stdio sessions: exact bytes, separate streams, EOF, exit codes, fds (core items 9, 10, 12)."""
import os
import subprocess

import pytest

from conftest import JAIL, UID_A, Jail, as_user, session_children, sha256, wait_for

MiB = 1 << 20


def test_echo_id_pipe_into_login_shell(jail_a):
    # The 2014 version dropped the session at stdin EOF: `echo id | jail` failed with 255.
    result = jail_a.run(None, input=b"id\n", args=[])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith(f"uid={UID_A}(work) gid={UID_A}(work)")


def test_64_mib_random_through_cat_both_ways(jail_a):
    payload = os.urandom(64 * MiB)
    result = jail_a.run("cat", input=payload, timeout=120)
    assert result.returncode == 0
    assert sha256(result.stdout) == sha256(payload)
    # Into a file inside the jail and back out again.
    assert jail_a.run("cat > /tmp/payload", input=payload, timeout=120).returncode == 0
    back = jail_a.run("cat /tmp/payload; rm /tmp/payload", timeout=120)
    assert sha256(back.stdout) == sha256(payload)


def test_stdout_and_stderr_stay_separate(jail_a):
    result = jail_a.run("echo out; echo err >&2; echo out2; echo err2 >&2")
    assert result.stdout == b"out\nout2\n"
    assert result.stderr == b"err\nerr2\n"


def test_stdin_eof_reaches_program_while_output_flows(jail_a):
    # The program sees EOF, then keeps writing: nothing after EOF may be lost.
    result = jail_a.run("wc -c; i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done",
                        input=b"x" * 100000)
    lines = result.stdout.decode().splitlines()
    assert lines[0].strip() == "100000"
    assert lines[1:] == [f"line{i}" for i in range(2000)]


def test_dev_null_stdin_and_closed_stdin(jail_a):
    result = subprocess.run([JAIL, "-c", "cat; echo done"], stdin=subprocess.DEVNULL, capture_output=True,
                            env={"JAIL_SOCKET": jail_a.socket}, preexec_fn=as_user(UID_A), timeout=30)
    assert result.stdout == b"done\n"
    result = subprocess.run(["sh", "-c", f"exec {JAIL} -c 'cat; echo closed' <&-"], capture_output=True,
                            env={"JAIL_SOCKET": jail_a.socket}, preexec_fn=as_user(UID_A), timeout=30)
    assert result.stdout == b"closed\n"


@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137), ("kill -TERM $$", 143),
                                         ("false", 1), ("exit 255", 255)])
def test_exit_status(jail_a, script, code):
    assert jail_a.run(script).returncode == code


def test_exit_status_arrives_after_all_output(jail_a):
    for _ in range(20):
        result = jail_a.run("head -c 300000 /dev/zero; head -c 70000 /dev/zero >&2; exit 7")
        assert (len(result.stdout), len(result.stderr), result.returncode) == (300000, 70000, 7)


def test_missing_program_gives_shell_status(jail_a):
    result = jail_a.run("/no/such/program")
    assert result.returncode == 127


def test_program_sees_only_fds_0_1_2(jail_a):
    out = jail_a.run("ls /proc/self/fd").stdout.split()
    # ls itself opens the directory it lists (fd 3).
    assert sorted(out) == [b"0", b"1", b"2", b"3"]
    # The shell's own table, listed by another process (a glob would open a directory fd).
    out = jail_a.run("ls /proc/$$/fd; true").stdout.split()  # "; true": the shell must not exec ls
    assert sorted(out) == [b"0", b"1", b"2"]


def test_many_sessions_leave_no_zombies_or_fds(jail_a):
    def init_fds():
        return sorted(os.listdir(f"/proc/{jail_a.init_pid}/fd"))
    before = init_fds()
    for i in range(150):
        assert jail_a.run(f"echo {i}").stdout == f"{i}\n".encode()
    wait_for(lambda: session_children(jail_a.init_pid) == [], 10, "helpers to be reaped")
    assert init_fds() == before
    stats = jail_a.run("cat /proc/[0-9]*/stat").stdout.decode().splitlines()
    assert all(line.rsplit(")", 1)[1].split()[0] != "Z" for line in stats)


def test_client_killed_sends_sighup_to_session(jail_a):
    proc = subprocess.Popen([JAIL, "-c", "trap 'echo hup > /tmp/hup; exit 0' HUP; echo ready; "
                             "while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={"JAIL_SOCKET": jail_a.socket},
                            preexec_fn=as_user(UID_A))
    # stderr: not pytest's capture file, which is relayed (a regular file): once the client is
    # gone, the shell's report of its killed `sleep` on that stderr would end it by SIGPIPE
    # before its HUP trap runs — a different race than the one tested here.
    try:
        assert proc.stdout.readline() == b"ready\n"
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: jail_a.run("cat /tmp/hup 2>/dev/null").stdout == b"hup\n", 10, "SIGHUP to reach the session")


def test_sessions_share_the_jail_and_jails_are_separate(jail_a, rootfs_b):
    from conftest import UID_B, Jail
    proc = subprocess.Popen([JAIL, "-c", "echo ready; exec sleep 1000"], stdout=subprocess.PIPE,
                            env={"JAIL_SOCKET": jail_a.socket}, preexec_fn=as_user(UID_A))
    try:
        assert proc.stdout.readline() == b"ready\n"
        assert b"sleep 1000" in jail_a.run("ps -o args").stdout
        jail_a.run("echo shared > /tmp/shared-file")
        assert jail_a.run("cat /tmp/shared-file").stdout == b"shared\n"
        with Jail(rootfs_b, UID_B) as jail_b:
            other = jail_b.run("ps -o args; cat /etc/issue; ls /tmp").stdout
            assert b"sleep 1000" not in other
            assert b"Jail test rootfs B" in other
            assert b"shared-file" not in other
    finally:
        proc.kill()
        proc.wait()


def test_passed_directory_is_refused(jail_a, tmp_path):
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = subprocess.run([JAIL, "-c", "true"], stdin=fd, capture_output=True,
                                env={"JAIL_SOCKET": jail_a.socket}, preexec_fn=as_user(UID_A))
    finally:
        os.close(fd)
    assert result.returncode == 255
    assert result.stderr == b"jail: a directory cannot be a session's stdio\n"


def test_environment_policy_default_and_accept_env(rootfs_a):
    """GIT_PROTOCOL and the locale cross by default (git protocol v2 over ssh needs it);
    --accept-env adds names and prefixes, as sshd's AcceptEnv; the session's own variables
    and the dynamic loader's never come from the client."""
    env = {"GIT_PROTOCOL": "version=2", "TZ": "UTC", "APP_MODE": "blue", "OTHER": "no",
           "LD_PRELOAD": "/nonexistent.so", "HOME": "/host/home"}
    script = 'echo "$GIT_PROTOCOL|$TZ|$APP_MODE|$OTHER|$LD_PRELOAD|$HOME"'
    with Jail(rootfs_a, UID_A) as plain:
        out = plain.run(script, env=env)
        assert out.stdout == b"version=2|UTC||||/home/work\n", out
    with Jail(rootfs_a, UID_A, args=["--accept-env", "APP_*"]) as accepting:
        out = accepting.run(script, env=env)
        assert out.stdout == b"version=2|UTC|blue|||/home/work\n", out


def test_accept_env_refuses_what_the_session_sets(rootfs_a):
    from conftest import JAILD
    result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_a), "--accept-env", "LD_PRELOAD"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "LD_PRELOAD" in result.stderr.splitlines()[0], result.stderr
