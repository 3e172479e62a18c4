"""The Debian package (issue 29): built from this checkout by scripts/package, lintian-clean
of errors, installed on this machine with dpkg, a jail started by the installed jaild and
entered with `su -`, upgraded with that jail running (its init stays the same process), then
purged: everything goes but the jails' data, and /etc/shells is as before."""
import gzip
import os
import pathlib
import subprocess

import pytest

from conftest import REPO, HostAccount, build_rootfs, pid_alive, wait_for

ACCOUNT, UID = "pkgtenant", 63190
INSTALLED_JAILD, INSTALLED_JAIL = "/usr/sbin/jaild", "/usr/bin/jail"
PACKAGE_FILES = [INSTALLED_JAILD, INSTALLED_JAIL, "/lib/systemd/system/jaild@.service", "/etc/jail/example.conf.sample",
                 "/usr/share/man/man8/jaild.8.gz", "/usr/share/man/man1/jail.1.gz", "/usr/share/man/man5/jail.conf.5.gz",
                 "/usr/share/bash-completion/completions/jaild", "/usr/share/zsh/vendor-completions/_jaild",
                 "/usr/share/doc/jail/copyright", "/usr/share/doc/jail/changelog.Debian.gz"]


def run(*argv, **kwargs):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=kwargs.pop("timeout", 300), **kwargs)


def installed():
    return run("dpkg-query", "-W", "-f=${Status}", "jail").stdout == "install ok installed"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    built = run(str(REPO / "scripts" / "package"), str(out), timeout=1800)
    assert built.returncode == 0, built.stderr
    path = pathlib.Path(built.stdout.strip().splitlines()[-1])
    assert path.name.startswith("jail_") and path.name.endswith("_amd64.deb"), path
    return path


def test_man_pages_render_without_warnings():
    for page in ("jaild.8", "jail.1", "jail.conf.5"):
        checked = run("man", "--warnings", "-l", "-E", "UTF-8", str(REPO / "man" / page), env=dict(os.environ, MANWIDTH="80"))
        assert checked.returncode == 0 and checked.stderr == "", (page, checked.stderr)
    jaild_page = (REPO / "man" / "jaild.8").read_text()
    for verb in ("start", "list", "show", "status", "stop", "sessions", "enter", "create", "destroy", "base",
                 "authorized-keys", "metrics", "config"):
        assert f".It Em {verb}" in jaild_page, verb
    assert "no jail has that name" in jaild_page  # the exit codes
    config_page = (REPO / "man" / "jail.conf.5").read_text()
    for key in ("uid", "root", "rlimit", "forward-agent", "forward-x11", "boot", "service"):
        assert f".It Cm {key} No = " in config_page, key


def test_lintian_finds_no_error(deb, tmp_path):
    # lintian leaves temporary directories of its own (mldbm-elf-*) behind: in the test's.
    checked = run("lintian", "--fail-on", "error", str(deb), env={**os.environ, "TMPDIR": str(tmp_path)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "\nE: " not in "\n" + checked.stdout


def test_the_package_holds_what_an_operator_needs(deb):
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    for path in PACKAGE_FILES:
        assert f".{path}\n" in listing, path
    control = run("dpkg-deb", "-f", str(deb), "Version").stdout.strip()
    version = run(str(REPO / ".build" / "release" / "jaild"), "--version").stdout.splitlines()[0].split()[1]
    assert control == f"{version}-1"


def test_install_enter_upgrade_with_the_jail_running_and_purge(deb, tmp_path):
    assert not installed() and not os.path.exists(INSTALLED_JAILD) and not os.path.exists(INSTALLED_JAIL), \
        "jail is installed on this machine already: the test installs and purges it itself"
    shells_before = pathlib.Path("/etc/shells").read_text()
    rootfs = build_rootfs(tmp_path / "jails" / ACCOUNT, UID, "Jail package test")
    account = None
    init = None
    try:
        result = run("dpkg", "-i", str(deb))
        assert result.returncode == 0, result.stdout + result.stderr
        assert INSTALLED_JAIL in pathlib.Path("/etc/shells").read_text().split("\n")
        assert gzip.decompress(pathlib.Path("/usr/share/man/man8/jaild.8.gz").read_bytes()).startswith(b'.\\" ')
        account = HostAccount(ACCOUNT, UID, INSTALLED_JAIL, "/").create()

        started = run(INSTALLED_JAILD, "-u", str(UID), "-r", str(rootfs), "--jail-name", ACCOUNT)
        assert started.returncode == 0, started.stderr
        state = run(INSTALLED_JAILD, "show", ACCOUNT).stdout
        init = int(next(line for line in state.splitlines() if line.startswith("init_pid: ")).split()[1])
        supervisor = int(next(line for line in state.splitlines() if line.startswith("supervisor_pid: ")).split()[1])
        entered = run("su", "-", ACCOUNT, "-c", "cat /etc/issue; echo $((6*7))")
        assert entered.returncode == 0 and entered.stdout == "Jail package test\n42\n", entered

        # The upgrade replaces the binaries only: the jail's init and its supervisor run on.
        again = run("dpkg", "-i", str(deb))
        assert again.returncode == 0, again.stdout + again.stderr
        assert pid_alive(init) and pid_alive(supervisor)
        assert run(INSTALLED_JAILD, "status", ACCOUNT).returncode == 0
        assert f"init_pid: {init}\n" in run(INSTALLED_JAILD, "show", ACCOUNT).stdout
        assert run("su", "-", ACCOUNT, "-c", "echo still").stdout == "still\n"
        assert pathlib.Path("/etc/shells").read_text().split("\n").count(INSTALLED_JAIL) == 1

        assert run(INSTALLED_JAILD, "stop", ACCOUNT).returncode == 0
        wait_for(lambda: not pid_alive(init), 30, "the jail's init to end")
        purged = run("dpkg", "--purge", "jail")
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert not installed()
        for path in PACKAGE_FILES:
            assert not os.path.exists(path), path
        assert not os.path.exists("/etc/jail") or os.listdir("/etc/jail") != ["example.conf.sample"]
        assert pathlib.Path("/etc/shells").read_text() == shells_before
        # The jail's data is the operator's: its root stays.
        assert (rootfs / "etc" / "issue").read_text() == "Jail package test\n"
    finally:
        if init is not None and pid_alive(init) and os.path.exists(INSTALLED_JAILD):
            run(INSTALLED_JAILD, "stop", ACCOUNT)
        if account is not None:
            account.delete()
        if installed() or run("dpkg-query", "-W", "jail").returncode == 0:
            run("dpkg", "--purge", "jail")
        if pathlib.Path("/etc/shells").read_text() != shells_before:
            pathlib.Path("/etc/shells").write_text(shells_before)
