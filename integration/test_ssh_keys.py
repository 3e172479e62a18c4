"""Where the host's sshd reads the keys of a jail account, and ssh-copy-id (issue 19, item 3).

The seed's layout: the host account's home directory is the jail user's home inside the rootfs,
so the `~/.ssh/authorized_keys` that ssh-copy-id writes from inside the jail is the one the
host's sshd reads. The rootfs lives beneath a directory of mode 0750 root:GID: private to
every other host user, but the account's own uid can traverse it, as sshd needs (it reads
authorized_keys with the user's privileges)."""
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import UID_A, HostAccount, Jail
from harness import HostSshd
from test_ssh import debian_rootfs  # noqa: F401  (the cached Debian rootfs fixture)


@pytest.fixture
def seed_layout(debian_rootfs, installed_jail):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-keys-", dir="/tmp"))
    sshd = None
    account = None
    jail = None
    try:
        os.chown(base, 0, UID_A)
        os.chmod(base, 0o750)
        root = base / "root"
        subprocess.run(["cp", "-a", str(debian_rootfs), str(root)], check=True)
        home = root / "home" / "work"
        account = HostAccount("centos", UID_A, installed_jail, home).create()
        keys = base / "keys"
        keys.mkdir()
        for name in ("first", "second"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
        (home / ".ssh").mkdir(mode=0o700)
        shutil.copy(keys / "first.pub", home / ".ssh" / "authorized_keys")
        for path in (home / ".ssh", home / ".ssh" / "authorized_keys"):
            os.chown(path, UID_A, UID_A)
        sshd = HostSshd(keys, ["centos"])
        sshd.start()
        port = sshd.port
        jail = Jail(root, UID_A).start()
        yield {"port": port, "keys": keys, "home": home, "root": root}
    finally:
        if jail:
            jail.stop()
        if sshd:
            sshd.stop()
        if account:
            account.delete()
        shutil.rmtree(base, ignore_errors=True)


def ssh_options(key):
    return ["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def test_ssh_copy_id_installs_a_key_the_next_login_uses(seed_layout):
    port, keys = seed_layout["port"], seed_layout["keys"]
    login = ["ssh", "-p", str(port), *ssh_options(keys / "second"), "centos@127.0.0.1", "id -un; cat /etc/issue"]
    assert subprocess.run(login, capture_output=True, timeout=60).returncode == 255  # not yet installed
    client_home = keys / "client"
    (client_home / ".ssh").mkdir(parents=True, mode=0o700)  # ssh-copy-id keeps its temp files there
    copy = subprocess.run(["ssh-copy-id", "-f", "-i", str(keys / "second.pub"), "-p", str(port),
                           *ssh_options(keys / "first"), "centos@127.0.0.1"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(client_home)})
    assert copy.returncode == 0, copy.stderr
    # Written from inside the jail, by the jail user, into the file the host's sshd reads.
    installed = seed_layout["home"] / ".ssh" / "authorized_keys"
    assert (keys / "second.pub").read_text().split()[1] in installed.read_text()
    assert installed.stat().st_uid == UID_A
    result = subprocess.run(login, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[0] == "work"
    assert "Jail test Debian rootfs" in result.stdout.decode()
