"""Rootless jails (issue 7): an unprivileged user, with no capabilities, runs jaild and jail.
A throw-away host user is created (and deleted), with a rootfs it owns."""
import os
import pathlib
import shutil
import subprocess
import tempfile

import pexpect
import pytest

from conftest import REPO, HostAccount, as_user, leave_shell, pid_alive, sha256, wait_for

RL_UID = 62600
PROMPT = r"work@[^:]*:~\$ "


@pytest.fixture(scope="module")
def user(tmp_path_factory, installed_jail):
    # Under /tmp, not pytest's private tmp: the user must reach it.
    home = pathlib.Path(tempfile.mkdtemp(prefix="jail-rootless-", dir="/tmp"))
    account = HostAccount("jailtestrl", RL_UID, "/bin/sh", home)
    try:
        account.create()
        os.chown(home, RL_UID, RL_UID)
        root = home / "rootfs"
        subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(root), str(RL_UID), "Rootless rootfs"],
                       check=True, preexec_fn=as_user(RL_UID))
        bindir = os.path.dirname(installed_jail)
        yield {"root": root, "jaild": os.path.join(bindir, "jaild"), "jail": installed_jail,
               "dir": f"{home}/.local/state/jail/sockets"}
    finally:
        account.delete()
        shutil.rmtree(f"/tmp/jail-{RL_UID}", ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def as_rl(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 60)
    env = {"PATH": "/usr/bin:/bin", **kwargs.pop("env", {})}
    return subprocess.run(argv, preexec_fn=as_user(RL_UID), env=env, **kwargs)


@pytest.fixture
def rootless_jail(user):
    result = as_rl([user["jaild"], "-r", str(user["root"]), "--hostname", "rootless"])
    assert result.returncode == 0, result.stderr
    pidfile = f"{user['dir']}/jaild-{RL_UID}-{RL_UID}.pid"
    supervisor = int(open(pidfile).read())
    yield {**user, "pidfile": pidfile, "supervisor": supervisor, "socket": pidfile[:-4] + ".sock"}
    if pid_alive(supervisor):
        os.kill(supervisor, 15)
        wait_for(lambda: not pid_alive(supervisor), 20, "the rootless jail to stop")


def test_sessions_exit_codes_and_stop(rootless_jail):
    info = os.stat(rootless_jail["dir"])
    assert (info.st_uid, info.st_mode & 0o777) == (RL_UID, 0o700)
    out = as_rl([rootless_jail["jail"], "-c", "id -u; cat /etc/issue; hostname; ps -o pid,args | sed -n 2p; exit 3"],
                stdin=subprocess.DEVNULL)
    assert out.returncode == 3
    lines = out.stdout.decode().splitlines()
    assert lines[:3] == [str(RL_UID), "Rootless rootfs", "rootless"]
    assert lines[3].split(None, 1) == ["1", f"jaild: init [{RL_UID}:{RL_UID}]"]
    data = os.urandom(8 << 20)
    out = as_rl([rootless_jail["jail"], "-c", "cat; echo err >&2"], input=data)
    assert (sha256(out.stdout), out.stderr, out.returncode) == (sha256(data), b"err\n", 0)
    # The user's own processes own the jail: no capability anywhere on the host side.
    status = open(f"/proc/{rootless_jail['supervisor']}/status").read()
    assert "CapEff:\t0000000000000000" in status
    os.kill(rootless_jail["supervisor"], 15)
    wait_for(lambda: not pid_alive(rootless_jail["supervisor"]), 20, "the stop")
    assert not os.path.exists(rootless_jail["socket"]) and not os.path.exists(rootless_jail["pidfile"])


def test_pty_session(rootless_jail):
    child = pexpect.spawn(f"setpriv --reuid={RL_UID} --regid={RL_UID} --clear-groups {rootless_jail['jail']}",
                          env={"PATH": "/usr/bin:/bin", "TERM": "xterm"}, timeout=15, encoding="utf-8",
                          dimensions=(33, 99))
    try:
        child.expect(PROMPT)
        child.sendline("stty size; tty")
        child.expect("33 99")
        child.expect(r"/dev/pts/\d+")
        child.expect(PROMPT)
        assert leave_shell(child, 5) == 5
    finally:
        child.close()


def test_map_root(user):
    result = as_rl([user["jaild"], "--map-root", "-r", str(user["root"])])
    assert result.returncode == 0, result.stderr
    pidfile = f"{user['dir']}/jaild-{RL_UID}-{RL_UID}.pid"
    supervisor = int(open(pidfile).read())
    try:
        out = as_rl([user["jail"], "-c", "id -u; id -g; touch /root/x && ls -ln /root/x"], stdin=subprocess.DEVNULL)
        lines = out.stdout.decode().splitlines()
        assert lines[:2] == ["0", "0"]
        assert lines[2].split()[2:4] == ["0", "0"]
        assert os.stat(user["root"] / "root" / "x").st_uid == RL_UID  # on the host: the user's file
    finally:
        os.kill(supervisor, 15)
        wait_for(lambda: not pid_alive(supervisor), 20, "the stop")


@pytest.mark.parametrize("args,message", [
    (["--memory", "64M"], "--memory, --pids, --cpus and --ports need root: cgroups are not delegated"),
    (["--ports", "tcp:8080"], "--memory, --pids, --cpus and --ports need root"),
    (["-u", "61000"], f"uid 61000 inside needs root: a rootless jail maps only your own uid ({RL_UID}, or 0 with --map-root)"),
    (["--cap", "NET_BIND_SERVICE"], "--cap needs root: capabilities in a user namespace do not reach the host's network"),
])
def test_what_needs_root_is_refused_clearly(user, args, message):
    result = as_rl([user["jaild"], "-r", str(user["root"]), *args])
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"jaild: {message}")
    assert result.stderr.count(b"\n") == 1
    assert not os.path.exists(f"{user['dir']}/jaild-{RL_UID}-{RL_UID}.sock")


def test_runtime_dir_and_an_unsafe_socket_directory(user, public_tmp):
    runtime = public_tmp / "run-user"
    runtime.mkdir()
    os.chown(runtime, RL_UID, RL_UID)
    os.chmod(runtime, 0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    result = as_rl([user["jaild"], "-r", str(user["root"])], env=env)
    assert result.returncode == 0, result.stderr
    sock = runtime / "jail" / f"jaild-{RL_UID}-{RL_UID}.sock"
    try:
        assert sock.exists()
        assert as_rl([user["jail"], "-c", "echo found"], env=env, stdin=subprocess.DEVNULL).stdout == b"found\n"
    finally:
        supervisor = int(open(str(sock)[:-5] + ".pid").read())
        os.kill(supervisor, 15)
        wait_for(lambda: not pid_alive(supervisor), 20, "the stop")
    # A socket directory readable by others is refused, and the error says where it comes from.
    shutil.rmtree(user["dir"], ignore_errors=True)
    os.makedirs(user["dir"], 0o755)
    path = user["dir"]
    while path != str(user["root"].parent):
        os.chown(path, RL_UID, RL_UID)
        path = os.path.dirname(path)
    os.chmod(user["dir"], 0o755)
    result = as_rl([user["jaild"], "-r", str(user["root"])])
    assert result.returncode == 1
    assert result.stderr.decode().endswith(
        f"jaild: refusing socket directory {user['dir']}: it is mode 755, not 700 (without $XDG_RUNTIME_DIR "
        f"a rootless jail's socket lives in ~/.local/state/jail/sockets)\n")
    os.rmdir(user["dir"])


def test_a_squatted_tmp_directory_does_not_stop_the_jail(user):
    """Another local user makes /tmp/jail-UID (the old, predictable place) before the user's
    first rootless jail: it starts anyway, below the user's home, and `jail` finds it there."""
    squat = f"/tmp/jail-{RL_UID}"
    shutil.rmtree(squat, ignore_errors=True)
    subprocess.run(["mkdir", "-m", "0777", squat], check=True, preexec_fn=as_user(61001))
    shutil.rmtree(user["dir"], ignore_errors=True)
    try:
        result = as_rl([user["jaild"], "-r", str(user["root"])])
        assert result.returncode == 0, result.stderr
        pidfile = f"{user['dir']}/jaild-{RL_UID}-{RL_UID}.pid"
        supervisor = int(open(pidfile).read())
        try:
            info = os.stat(user["dir"])
            assert (info.st_uid, info.st_mode & 0o777) == (RL_UID, 0o700)
            out = as_rl([user["jail"], "-c", "echo found-in-home"], stdin=subprocess.DEVNULL)
            assert out.stdout == b"found-in-home\n", out.stderr
            assert os.listdir(squat) == []
        finally:
            os.kill(supervisor, 15)
            wait_for(lambda: not pid_alive(supervisor), 20, "the stop")
    finally:
        shutil.rmtree(squat, ignore_errors=True)


def test_disabled_user_namespaces_are_named(user, tmp_path):
    """user.max_user_namespaces = 0, set in a user namespace of the test's own (the host's value
    needs CAP_SYS_RESOURCE, which this machine's root lacks, and would affect the whole host):
    integration/probe/userns-limit.c. The host's value is checked unchanged afterwards."""
    host_value = open("/proc/sys/user/max_user_namespaces").read()
    helper = tmp_path / "userns-limit"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(helper), str(REPO / "integration" / "probe" / "userns-limit.c")],
                   check=True)
    result = subprocess.run([str(helper), str(RL_UID), str(RL_UID), "0", user["jaild"], "-r", str(user["root"])],
                            capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stderr
    assert result.stderr.decode() == ("jaild: user namespaces are disabled on this host: user.max_user_namespaces "
                                      "is 0 (sysctl -w user.max_user_namespaces=15000, or run jaild as root)\n")
    assert open("/proc/sys/user/max_user_namespaces").read() == host_value
    assert not os.path.exists(f"{user['dir']}/jaild-{RL_UID}-{RL_UID}.sock")
