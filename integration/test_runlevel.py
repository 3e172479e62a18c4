"""Issue 30 item 6: without --init, jaild's init writes the boot's BOOT_TIME and RUN_LVL records
to the jail's fresh /run/utmp, as sysvinit's init does, so `runlevel` answers and Debian's
invoke-rc.d (which `service`, `dpkg -i` and `apt-get install` call) starts init.d services
under the jail's full hardening. The rootfs is the cached Debian 12 with sysvinit-core
(scripts/make-debian-rootfs --sysvinit); one jail for the module (about 5 s)."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import JAILD, UID_A, Jail, cached_debian_rootfs, mounts_under


@pytest.fixture(scope="module")
def sysvinit_jail():
    parent = tempfile.mkdtemp(prefix="jail-runlevel-", dir="/var/tmp")
    os.chmod(parent, 0o700)
    root = os.path.join(parent, "root")
    jail = None
    try:
        subprocess.run(["cp", "-a", str(cached_debian_rootfs("sysvinit")), root], check=True)
        jail = Jail(root, UID_A, ["--runlevel", "3"]).start()
        yield jail
    finally:
        if jail:
            jail.stop()
        assert mounts_under(parent) == []
        shutil.rmtree(parent)


def as_root(jail, script, timeout=60):
    return subprocess.run([JAILD, "enter", jail.socket, "--root", "--", "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_runlevel_answers_from_utmp(sysvinit_jail):
    out = sysvinit_jail.run("/sbin/runlevel; who -b")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0] == "N 3", lines
    assert "system boot" in lines[1], lines


def test_invoke_rc_d_and_dpkg_start_cron(sysvinit_jail):
    # invoke-rc.d asks runlevel, finds S01cron in /etc/rc3.d and starts it.
    out = as_root(sysvinit_jail, "invoke-rc.d cron start; pidof cron")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "could not determine current runlevel" not in out.stderr
    first = out.stdout.split()[-1]
    # dpkg -i of the cached .deb (no network inside): its postinst restarts cron through
    # invoke-rc.d, as apt-get install does.
    out = as_root(sysvinit_jail, "invoke-rc.d cron stop; dpkg -i /root/cron_*.deb >/dev/null; pidof cron")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Defaulting to block" not in out.stderr, out.stderr
    assert out.stdout.split()[-1] != first
