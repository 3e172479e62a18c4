"""The jail's file system: pivot_root, /proc, /sys, a minimal /dev, bind mounts, host name
(core item 2) and the login environment (item 11)."""
import os
import subprocess

from conftest import JAIL, UID_A, Jail, as_user


def test_root_is_the_rootfs_and_host_root_is_gone(jail_a):
    out = jail_a.run("cat /etc/issue; ls /; cat /proc/self/mountinfo").stdout.decode()
    assert out.startswith("Jail test rootfs A\n")
    # pivot_root + detach: no mount of the old root is left (a chroot would keep it all).
    mount_points = [line.split()[4] for line in out.splitlines() if line.count(" - ")]
    assert "/" in mount_points
    assert not any(m.startswith("/run/jail") or m.startswith("/work") for m in mount_points)
    # The jail's /run/jail is its own tmpfs's, holding only the facts jaild wrote (info.json):
    # none of the host's sockets, pid files or state.
    assert jail_a.run("ls -a /run/jail").stdout.split() == [b".", b"..", b"info.json"]
    assert jail_a.run("cat /proc/1/root/etc/issue").returncode != 0 or \
        jail_a.run("cat /proc/1/root/etc/issue").stdout == b"Jail test rootfs A\n"


def test_minimal_dev(jail_a):
    names = set(jail_a.run("ls -A /dev").stdout.decode().split())
    # /dev/log: the syslog relay's socket, in every jail with a root by default (issue 31).
    assert names == {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
                     "fd", "stdin", "stdout", "stderr", "log"}
    out = jail_a.run("ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty").stdout.decode()
    for line in out.splitlines():
        assert line.startswith("crw-rw-rw-"), line
    mounts = jail_a.run("cat /proc/mounts").stdout.decode()
    assert "devpts /dev/pts devpts" in mounts and "ptmxmode=666" in mounts
    assert "/dev/shm tmpfs" in mounts
    assert jail_a.run("head -c 16 /dev/urandom | wc -c; echo x > /dev/null; echo ok").stdout == b"16\nok\n"
    assert jail_a.run("echo x > /dev/shm/f && cat /dev/shm/f").stdout == b"x\n"
    # The host's devices are not there.
    assert jail_a.run("ls /dev/sda /dev/vda /dev/mem /dev/kmsg 2>/dev/null").stdout == b""


def test_proc_is_fresh_and_sys_is_read_only(jail_a):
    pids = jail_a.run("ls /proc | grep '^[0-9]'").stdout.split()
    assert len(pids) < 10, pids
    assert b"sysfs /sys sysfs ro," in jail_a.run("cat /proc/mounts").stdout
    result = jail_a.run("touch /sys/x", uid=UID_A)
    assert result.returncode != 0


def test_bind_mounts_read_write_and_read_only(rootfs_a, tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    os.chown(rw, UID_A, UID_A)
    os.chown(ro, UID_A, UID_A)
    (ro / "hello").write_text("from host\n")
    (tmp_path / "single").write_text("one file\n")
    with Jail(rootfs_a, UID_A, ["-m", f"/data={rw}", "--mount", f"/srv/ro={ro}:ro",
                                "-m", f"/etc/single.conf={tmp_path}/single:ro"]) as jail:
        assert jail.run("echo written > /data/out").returncode == 0
        assert (rw / "out").read_text() == "written\n"
        assert jail.run("cat /srv/ro/hello").stdout == b"from host\n"
        result = jail.run("echo no > /srv/ro/x")
        assert result.returncode != 0 and b"Read-only file system" in result.stderr
        assert jail.run("cat /etc/single.conf").stdout == b"one file\n"


def test_hostname(rootfs_a):
    host = os.uname().nodename
    with Jail(rootfs_a, UID_A, ["--hostname", "mail-jail"]) as jail:
        assert jail.run("hostname").stdout == b"mail-jail\n"
    assert os.uname().nodename == host


def test_login_environment_and_home(jail_a):
    env = {"TERM": "vt100", "LANG": "C.UTF-8", "LC_TIME": "C", "SSH_CONNECTION": "127.0.0.1 5 127.0.0.1 22",
           "SSH_CLIENT": "127.0.0.1 5 22", "SECRET_TOKEN": "leak", "LD_PRELOAD": "/tmp/x.so", "HOME": "/root"}
    out = jail_a.run("env; pwd; id -G", env=env).stdout.decode().splitlines()
    assert "HOME=/home/work" in out and "USER=work" in out and "LOGNAME=work" in out
    assert "SHELL=/bin/sh" in out and "PATH=/usr/local/bin:/usr/bin:/bin" in out
    for name in ("TERM=vt100", "LANG=C.UTF-8", "LC_TIME=C", "SSH_CONNECTION=127.0.0.1 5 127.0.0.1 22",
                 "SSH_CLIENT=127.0.0.1 5 22"):
        assert name in out, name
    assert not any(line.startswith(("SECRET_TOKEN=", "LD_PRELOAD=", "JAIL_SOCKET=")) for line in out)
    assert "/home/work" in out
    # Supplementary groups come from the jail's /etc/group (users:x:100:work).
    assert sorted(out[-1].split()) == sorted([str(UID_A), "100"])


def test_login_shell_when_started_as_one(jail_a):
    def run(argv0, args):
        return subprocess.run(args, executable=JAIL, capture_output=True, env={"JAIL_SOCKET": jail_a.socket},
                              preexec_fn=as_user(UID_A), input=b"")
    # argv[0] "-jail" (login, su -, sshd): the jail user's shell starts as a login shell.
    assert run("-jail", ["-jail", "-c", "echo $0"]).stdout == b"-sh\n"
    assert run("jail", ["jail", "-c", "echo $0"]).stdout == b"sh\n"
    # A login shell reads /etc/profile of the jail.
    assert run("-jail", ["-jail", "-c", "echo \"$PS1\""]).stdout.startswith(b"\\u@\\h")


def test_shell_override(rootfs_a):
    with Jail(rootfs_a, UID_A, ["-s", "/bin/ash"]) as jail:
        assert jail.run("echo $SHELL; echo $0").stdout == b"/bin/ash\nash\n"
