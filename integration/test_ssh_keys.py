"""Where the host's sshd reads the keys of a jail account, and ssh-copy-id (issue 19, item 3;
issue 27, items 2 and 3).

The keys a tenant manages itself (`ssh-copy-id`, editing `~/.ssh/authorized_keys` over ssh) are
written inside the jail, by the jail user. The host's sshd cannot read them with the account's
own privileges: the directory above a jail's root is closed to every host user but root (a group
that could pass it would run root inside's setuid files as host root). So sshd asks jaild, as
root: `AuthorizedKeysCommand jaild authorized-keys %u` reads the jail user's file through the
running jail's root, bounded, and prints each key led by `restrict` and what sessions use."""
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import JAILD, UID_A, HostAccount, Jail
from harness import HostSshd
from test_ssh import debian_rootfs  # noqa: F401  (the cached Debian rootfs fixture)


@pytest.fixture
def seed_layout(debian_rootfs, installed_jail):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-keys-", dir="/tmp"))
    # sshd runs an AuthorizedKeysCommand only from a path whose every directory is root's and
    # not writable by others: not /tmp.
    tools = pathlib.Path(tempfile.mkdtemp(prefix="jail-keys-", dir="/run"))
    sshd = None
    account = None
    jail = None
    try:
        os.chmod(base, 0o700)  # only root may pass the directory above the jail's root
        os.chmod(tools, 0o755)
        jaild = tools / "jaild"
        shutil.copy(JAILD, jaild)
        os.chmod(jaild, 0o755)
        root = base / "root"
        subprocess.run(["cp", "-a", str(debian_rootfs), str(root)], check=True)
        home = root / "home" / "work"
        account = HostAccount("centos", UID_A, installed_jail, "/nonexistent").create()
        keys = base / "keys"
        keys.mkdir()
        for name in ("first", "second"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
        (home / ".ssh").mkdir(mode=0o700)
        shutil.copy(keys / "first.pub", home / ".ssh" / "authorized_keys")
        for path in (home / ".ssh", home / ".ssh" / "authorized_keys"):
            os.chown(path, UID_A, UID_A)
        sshd = HostSshd(keys, ["centos"], extra=f"""AuthorizedKeysFile none
AuthorizedKeysCommand {jaild} authorized-keys %u
AuthorizedKeysCommandUser root
""")
        sshd.start()
        port = sshd.port
        jail = Jail(root, UID_A).start()
        yield {"port": port, "keys": keys, "home": home, "root": root, "jaild": str(jaild)}
    finally:
        if jail:
            jail.stop()
        if sshd:
            sshd.stop()
        if account:
            account.delete()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(tools, ignore_errors=True)


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


def authorized_keys(seed_layout, user="centos"):
    return subprocess.run([seed_layout["jaild"], "authorized-keys", user], capture_output=True, text=True, timeout=10)


def test_keys_from_the_jail_are_led_by_restrict_and_lines_that_undo_it_are_left_out(seed_layout):
    keys, file = seed_layout["keys"], seed_layout["home"] / ".ssh" / "authorized_keys"
    first, second = ((keys / f"{n}.pub").read_text().split()[:2] for n in ("first", "second"))
    file.write_text(f"# the tenant's own\n{' '.join(first)} me@laptop\n\n"
                    f"port-forwarding,permitlisten=\"0.0.0.0:2525\" {' '.join(second)}\n")
    result = authorized_keys(seed_layout)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"restrict,pty,agent-forwarding {' '.join(first)} me@laptop\n"
    assert "line 4: option port-forwarding would undo restrict" in result.stderr
    # The key whose line was left out does not log in.
    login = ["ssh", "-p", str(seed_layout["port"]), *ssh_options(keys / "second"), "centos@127.0.0.1", "true"]
    assert subprocess.run(login, capture_output=True, timeout=60).returncode == 255


def test_a_fifo_authorized_keys_fails_at_once_instead_of_hanging_sshd(seed_layout):
    file = seed_layout["home"] / ".ssh" / "authorized_keys"
    file.unlink()
    os.mkfifo(file)
    os.chown(file, UID_A, UID_A)
    result = authorized_keys(seed_layout)  # bounded by the 10 s timeout: a hang fails the test
    assert result.returncode == 1 and result.stdout == ""
    assert "FIFO" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_no_keys_for_an_account_without_a_jail_or_an_unknown_one(seed_layout):
    missing = authorized_keys(seed_layout, "no-such-account")
    assert missing.returncode == 1 and missing.stdout == "" and "no host account" in missing.stderr
    nobody = authorized_keys(seed_layout, "nobody")
    assert nobody.returncode == 0 and nobody.stdout == "" and "no running jail" in nobody.stderr
