"""The seed walkthrough (../shared/seeds/000): two jails side by side, reached with `su - ACCOUNT`
through host accounts whose login shell is `jail`."""
import subprocess

import pexpect

from conftest import UID_A, UID_B, Jail, leave_shell

PROMPT = r"work@[^:]*:~\$ "


def test_su_lands_each_account_in_its_own_jail(rootfs_a, rootfs_b, host_accounts):
    with Jail(rootfs_a, UID_A) as centos, Jail(rootfs_b, UID_B) as debian:
        seen = {}
        for name, jail, issue in (("centos", centos, "Jail test rootfs A"), ("debian", debian, "Jail test rootfs B")):
            child = pexpect.spawn(f"su - {name}", env={"TERM": "xterm", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                                  timeout=15, encoding="utf-8", dimensions=(24, 80))
            try:
                child.expect(PROMPT)
                child.sendline("cat /etc/issue; echo uid=$(id -u) home=$HOME shell=$SHELL; sleep 77 & ps -o pid,args")
                child.expect(issue)
                child.expect(r"uid=(\d+) home=(\S+) shell=(\S+)")
                assert child.match.groups() == (str(jail.uid), "/home/work", "/bin/sh")
                child.expect(r"\n\s*1 jaild: init \[(\d+):(\d+)\]")
                assert child.match.groups() == (str(jail.uid), str(jail.uid))
                child.expect(PROMPT)
                seen[name] = child.before
                assert leave_shell(child, 6) == 6
            finally:
                child.close()
        # Each jail sees its own processes only: its `sleep 77`, the other jail's not at all.
        for jail in (centos, debian):
            assert jail.run("ps -o args | grep -c '^sleep 77'; true").stdout == b"1\n"


def test_su_with_a_command_runs_it_in_the_jail(rootfs_a, host_accounts):
    with Jail(rootfs_a, UID_A):
        result = subprocess.run(["su", "-", "centos", "-c", "cat /etc/issue; id -u; echo $0; exit 3"],
                                capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert result.stdout == b"Jail test rootfs A\n61000\n-sh\n"
        assert result.returncode == 3
        data = bytes(range(256)) * 4096
        result = subprocess.run(["su", "-", "centos", "-c", "cat; echo err >&2"], input=data,
                                capture_output=True, timeout=30)
        assert result.returncode == 0
        assert result.stdout == data
        assert result.stderr == b"err\n"


def test_su_without_a_running_jail_says_so(host_accounts):
    result = subprocess.run(["su", "-", "debian", "-c", "true"], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 255
    assert result.stderr == f"jail: no jail is running for uid {UID_B}: /run/jail/jaild-{UID_B}-{UID_B}.sock: no such file\n"


def test_jaild_warns_once_when_the_host_name_is_not_in_the_jail(rootfs_a, host_accounts):
    """The seed's set-up (host `centos`, jail user `work`) works, but `~centos` does not expand
    inside: jaild says so in one line, with the fix; an alias entry silences it."""
    jail = Jail(rootfs_a, UID_A)
    result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    try:
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1, result.stderr
        assert "'centos'" in warnings[0] and "~centos" in warnings[0] and "centos:x:61000:61000" in warnings[0]
    finally:
        jail.supervisor = int(open(jail.pidfile).read())
        jail.stop()
    passwd = rootfs_a / "etc" / "passwd"
    original = passwd.read_bytes()
    try:
        passwd.write_bytes(original + b"centos:x:61000:61000:alias:/home/work:/bin/sh\n")
        aliased = Jail(rootfs_a, UID_A)
        quiet = subprocess.run(aliased.command(), capture_output=True, text=True, timeout=30)
        assert quiet.returncode == 0, quiet.stderr
        aliased.supervisor = int(open(aliased.pidfile).read())
        try:
            assert "warning" not in quiet.stderr, quiet.stderr
            assert aliased.run("id -un").stdout == b"work\n"  # the first entry with the uid names the user
        finally:
            aliased.stop()
    finally:
        passwd.write_bytes(original)
