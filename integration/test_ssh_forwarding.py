"""A tenant reaches the host only through `jail` (issue 27, item 3).

What sshd forwards by itself it does on the host, in the tenant's sshd process: as the tenant's
host uid, outside every jail's cgroup, port filter and mount namespace. Before the fix `jaild
create --key` wrote the key with no options and nothing restricted sshd, so `ssh -N -R
127.0.0.1:P` listened on a port that another jail owns (the owner then got EADDRINUSE on its own
port) and `ssh -L PORT:/path.sock` reached a unix socket that only host users can reach.

Here two tenants made by `jaild create` on the cached Debian base (jt-fwd, and jt-own that owns
a port), and the host's sshd on 127.0.0.1 with its own config that Includes a drop-in directory
first, as Debian's sshd_config Includes /etc/ssh/sshd_config.d (JAIL_SSHD_CONFIG_DIR points
jaild create there). Forwarding on the host is refused; sessions, scp, sftp, rsync, a pty,
`ssh -A` and `ssh -X` (served inside by jail) keep working. With the binaries of main before the
fix (JAIL_BIN_DIR=/work/ci-base/.build/release) the -R, -L and -W tests fail: the attack works."""
import grp
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import REPO, as_user, wait_for
from harness import HostSshd, free_port

TENANT, TENANT_UID = "jt-fwd", 63070
OWNER, OWNER_UID = "jt-own", 63071
OTHER, OTHER_UID = "jt-f72", 63072
GROUP = "jail"
SHIPPED = (REPO / "contrib" / "sshd" / "jail.conf").read_text()


def group_exists():
    try:
        grp.getgrnam(GROUP)
        return True
    except KeyError:
        return False


def members():
    try:
        return grp.getgrnam(GROUP).gr_mem
    except KeyError:
        return []


class Host:
    """jaild's config and state roots and sshd's drop-in directory in a temporary directory;
    the host accounts are real. Every tenant made is destroyed at the end, and the group `jail`
    too when the test made it."""

    def __init__(self, base, jail_binary):
        self.base = base
        self.dropins = base / "sshd_config.d"
        self.dropins.mkdir()
        self.jaild_path = str(pathlib.Path(jail_binary).parent / "jaild")
        self.jail_path = jail_binary
        self.names = set()
        self.group_existed = group_exists()
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JAIL_CONFIG_DIR": str(base / "conf"),
                    "JAIL_STATE_DIR": str(base / "state"), "JAIL_SSHD_CONFIG_DIR": str(self.dropins)}
        (base / "conf").mkdir()
        (base / "state").mkdir()  # 0755: sshd reads the keys in state/home/NAME as the user

    def jaild(self, *args, env=None):
        return subprocess.run([self.jaild_path, *args], capture_output=True, text=True, timeout=120,
                              env={**self.env, **(env or {})})

    def create(self, name, uid, base, *extra, env=None):
        self.names.add(name)
        return self.jaild("create", name, "--uid", str(uid), "--base", str(base), *extra, env=env)

    def cleanup(self):
        for name in sorted(self.names):
            self.jaild("destroy", name, "--yes")
            subprocess.run(["userdel", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)
        if not self.group_existed and group_exists():
            subprocess.run(["groupdel", GROUP], capture_output=True)
        shells = pathlib.Path("/etc/shells")
        lines = shells.read_text().splitlines(keepends=True)
        if any(line.strip() == self.jail_path for line in lines):
            shells.write_text("".join(line for line in lines if line.strip() != self.jail_path))


def ssh_options(key, port):
    return ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", str(port)]


class World:
    def __init__(self, host, sshd, key, owned_port, created):
        self.host, self.sshd, self.key, self.owned_port, self.created = host, sshd, key, owned_port, created

    def ssh_argv(self, *args, user=TENANT):
        return ["ssh", *ssh_options(self.key, self.sshd.port), *args[:-1], f"{user}@127.0.0.1", args[-1]]

    def ssh(self, *args, user=TENANT, **kwargs):
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.ssh_argv(*args, user=user), **kwargs)


def reload_sshd(sshd):
    """What `systemctl reload ssh` does: SIGHUP, sshd re-executes itself and reads its config."""
    os.kill(sshd.process.pid, signal.SIGHUP)
    wait_for(sshd.accepting, 20, "sshd to listen again after the reload")


@pytest.fixture(scope="module")
def forwarding_world(installed_jail, debian_cache):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-fwd-", dir="/tmp"))
    os.chmod(base, 0o755)
    host = Host(base, installed_jail)
    sshd = None
    try:
        key = base / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        sshd = HostSshd(base, [TENANT, OWNER], include=host.dropins, extra="""Subsystem sftp /usr/lib/openssh/sftp-server
X11Forwarding yes
X11UseLocalhost yes
AllowAgentForwarding yes
""")
        sshd.start()  # running: jaild create tells the operator to reload it
        owned_port = free_port()
        created = host.create(TENANT, TENANT_UID, debian_cache, "--key", f"{key}.pub", "--forward-x11")
        assert created.returncode == 0, created.stderr
        result = host.create(OWNER, OWNER_UID, debian_cache, "--key", f"{key}.pub", "--ports", f"tcp:{owned_port}")
        assert result.returncode == 0, result.stderr
        reload_sshd(sshd)
        for name in (TENANT, OWNER):
            result = host.jaild("start", name)
            assert result.returncode == 0, result.stderr
        yield World(host, sshd, key, owned_port, created)
    finally:
        host.cleanup()
        if sshd:
            sshd.stop()
        shutil.rmtree(base, ignore_errors=True)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_remote_forward_onto_another_jails_port_is_refused(forwarding_world):
    port = forwarding_world.owned_port
    attack = subprocess.Popen(forwarding_world.ssh_argv("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{port}:127.0.0.1:9",
                                             "unused"), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: attack.poll() is not None or listening(port), 30, "ssh -R to be refused or to listen")
        taken = listening(port)
        # The owner binds its own port inside its jail.
        owner = subprocess.run([forwarding_world.host.jail_path, "-c",
                                f"perl -MIO::Socket::INET -e 'IO::Socket::INET->new(LocalAddr => \"127.0.0.1\", "
                                f"LocalPort => {port}, Listen => 1) or die \"bind: $!\\n\"; print \"bound\\n\"'"],
                               capture_output=True, timeout=60, preexec_fn=as_user(OWNER_UID))
    finally:
        if attack.poll() is None:
            attack.kill()
        attack.wait(10)
    stderr = attack.stderr.read().decode()
    assert not taken, f"{TENANT}'s ssh -R listens on the host on {OWNER}'s port {port}; the owner: {owner.stderr!r}"
    assert attack.returncode == 255 and "remote port forwarding failed" in stderr, stderr
    assert owner.stdout == b"bound\n", owner.stderr


class Server:
    """A host-only service: answers every connection with a secret and counts them."""

    def __init__(self, family, address, secret):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.secret, self.accepted, self.done = secret, 0, threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.done.is_set():
            try:
                connection, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            with connection:
                connection.sendall(self.secret)

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def read_through(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        data = b""
        while chunk := s.recv(100):
            data += chunk
        return data


@pytest.fixture
def public_directory():
    path = pathlib.Path(tempfile.mkdtemp(prefix="jail-fwd-sock-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_local_and_stdio_forwards_to_host_only_services_are_refused(forwarding_world, public_directory):
    # A unix socket and a TCP port that the tenant's host uid could reach, its jail cannot.
    path = public_directory / "host.sock"
    unix = Server(socket.AF_UNIX, str(path), b"SECRET-UNIX")
    os.chmod(path, 0o666)
    tcp_port = free_port()
    tcp = Server(socket.AF_INET, ("127.0.0.1", tcp_port), b"SECRET-TCP")
    local_unix, local_tcp = free_port(), free_port()
    forward = subprocess.Popen(forwarding_world.ssh_argv("-N", "-L", f"127.0.0.1:{local_unix}:{path}",
                                              "-L", f"127.0.0.1:{local_tcp}:127.0.0.1:{tcp_port}", "unused"),
                               stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The client listens on its side; each connection asks sshd for a channel.
        wait_for(lambda: listening(local_unix) and listening(local_tcp), 30, "ssh -L to listen on the client's side")
        through_unix, through_tcp = read_through(local_unix), read_through(local_tcp)
        stdio = forwarding_world.ssh("-W", f"127.0.0.1:{tcp_port}", "unused", timeout=60)
    finally:
        forward.kill()
        forward.wait(10)
        unix.close()
        tcp.close()
    assert through_unix == b"", f"ssh -L reached the host's unix socket {path}: {through_unix!r}"
    assert through_tcp == b"", f"ssh -L reached the host-only port {tcp_port}: {through_tcp!r}"
    assert stdio.returncode == 255 and b"SECRET" not in stdio.stdout, (stdio.stdout, stdio.stderr)
    assert (unix.accepted, tcp.accepted) == (0, 0)


def test_sessions_copies_pty_agent_and_x11_keep_working(forwarding_world, tmp_path):
    r = forwarding_world.ssh("id -un; id -u; cat /etc/issue")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[:3] == ["work", str(TENANT_UID), "Jail test Debian rootfs"]
    r = forwarding_world.ssh("-tt", "tty")
    assert r.returncode == 0 and r.stdout.startswith(b"/dev/pts/"), (r.stdout, r.stderr)
    # scp both ways, sftp, rsync.
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(1 << 20))
    target = f"{TENANT}@127.0.0.1"
    scp = ["scp", *ssh_options(forwarding_world.key, forwarding_world.sshd.port)[:-2], "-P", str(forwarding_world.sshd.port)]
    assert subprocess.run([*scp, str(local), f"{target}:up.bin"], capture_output=True, timeout=120).returncode == 0
    assert subprocess.run([*scp, f"{target}:up.bin", str(tmp_path / "down.bin")], capture_output=True,
                          timeout=120).returncode == 0
    assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} sftp.bin\nget sftp.bin {tmp_path / 'sftp.bin'}\nrm sftp.bin\n")
    r = subprocess.run(["sftp", *ssh_options(forwarding_world.key, forwarding_world.sshd.port)[:-2], "-P", str(forwarding_world.sshd.port), "-b", str(batch),
                        target], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sftp.bin").read_bytes() == local.read_bytes()
    rsh = " ".join(["ssh", *ssh_options(forwarding_world.key, forwarding_world.sshd.port)])
    r = subprocess.run(["rsync", "-a", "-e", rsh, str(local), f"{target}:rsync.bin"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = forwarding_world.ssh("sha256sum < rsync.bin; rm up.bin rsync.bin")
    assert r.stdout.split()[0].decode() == __import__("hashlib").sha256(local.read_bytes()).hexdigest()

    # ssh -A: the agent reaches the session inside (jail relays sshd's agent socket).
    directory = pathlib.Path(tempfile.mkdtemp(prefix="jail-agent-host-", dir="/tmp"))
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(directory / "agent.sock")], stdout=subprocess.DEVNULL)
    try:
        wait_for((directory / "agent.sock").exists, 10, "ssh-agent's socket")
        env = dict(os.environ, SSH_AUTH_SOCK=str(directory / "agent.sock"))
        subprocess.run(["ssh-add", "-q", str(forwarding_world.key)], check=True, env=env, capture_output=True, timeout=30)
        r = forwarding_world.ssh("-A", "echo S=$SSH_AUTH_SOCK; ssh-add -l", env=env)
    finally:
        agent.kill()
        agent.wait()
        shutil.rmtree(directory, ignore_errors=True)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", f"{forwarding_world.key}.pub"], capture_output=True, text=True).stdout.split()[1]
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 0 and lines[0].startswith("S=/tmp/jail-agent-") and fingerprint in lines[1], (r.stdout, r.stderr)

    # ssh -Y: sshd accepts X11 forwarding for the jail made with --forward-x11 (its key says
    # X11-forwarding), its xauth stores the cookie in the tenant's own host home, and the session
    # inside gets DISPLAY and its own Xauthority with that cookie.
    r = forwarding_world.ssh("-Y", "-o", "LogLevel=INFO", "echo D=$DISPLAY; xauth list | wc -l", env=x11_client())
    assert r.returncode == 0 and b"X11 forwarding request failed" not in r.stderr, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("D=localhost:") and lines[1].strip() == "1", (r.stdout, r.stderr)


def x11_client():
    env = dict(os.environ, DISPLAY=":99")
    env.pop("XAUTHORITY", None)
    return env


def test_create_writes_the_restriction_and_says_to_reload(forwarding_world):
    # The key for the host's sshd; the jail user's own copy inside stays as given.
    home = pathlib.Path(__import__("pwd").getpwnam(TENANT).pw_dir)
    public = pathlib.Path(f"{forwarding_world.key}.pub").read_text()
    assert (home / ".ssh" / "authorized_keys").read_text() == "restrict,pty,agent-forwarding,X11-forwarding " + public
    owner_home = pathlib.Path(__import__("pwd").getpwnam(OWNER).pw_dir)
    assert (owner_home / ".ssh" / "authorized_keys").read_text() == "restrict,pty,agent-forwarding " + public
    assert (forwarding_world.host.dropins / "jail.conf").read_text() == SHIPPED
    assert {TENANT, OWNER} <= set(members())
    # The jail without --forward-x11: sshd refuses X11 forwarding (no X11 listener on the host).
    r = forwarding_world.ssh("-Y", "-o", "LogLevel=INFO", "echo D=$DISPLAY", env=x11_client(), user=OWNER)
    assert r.returncode == 0 and b"X11 forwarding request failed" in r.stderr and r.stdout == b"D=\n", (r.stdout, r.stderr)
    # sshd ran when the first create installed the drop-in: one line says to reload it.
    lines = forwarding_world.created.stdout.splitlines()
    assert len(lines) == 2 and "only when reloaded: systemctl reload ssh" in lines[1], forwarding_world.created.stdout
    # What sshd makes of it for a tenant (the Match block ends with the included file).
    effective = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(forwarding_world.sshd.base / "sshd_config"), "-C",
                                f"user={TENANT},host=x,addr=127.0.0.1"], capture_output=True, text=True).stdout
    for setting in ("allowtcpforwarding no", "allowstreamlocalforwarding no", "permittunnel no", "permitopen none",
                    "permitlisten none", "gatewayports no", "allowagentforwarding yes", "x11forwarding yes",
                    "subsystem sftp /usr/lib/openssh/sftp-server"):
        assert setting in effective.splitlines(), (setting, effective)


def test_group_and_drop_in_are_made_once_undone_on_failure_and_never_overwritten(installed_jail, tmp_path):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-fwd-group-", dir="/tmp"))
    os.chmod(base, 0o755)
    host = Host(base, installed_jail)
    existed = host.group_existed
    try:
        busybox = base / "busybox"
        subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(busybox), "61000", "Jail fwd base"], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
        key = tmp_path / "k.pub"
        # A key that asks for forwarding back is refused, nothing made.
        granting = tmp_path / "granting.pub"
        granting.write_text("port-forwarding,permitlisten=\"127.0.0.1:80\" " + key.read_text())
        result = host.create(OTHER, OTHER_UID, busybox, "--key", str(granting))
        assert result.returncode != 0 and "option 'port-forwarding'" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert group_exists() == existed and not (host.dropins / "jail.conf").exists()
        # A failure at the last step undoes the drop-in and, if this create made it, the group.
        conf = base / "conf"
        subprocess.run(["mount", "--bind", str(conf), str(conf)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(conf)], check=True)
            result = host.create(OTHER, OTHER_UID, busybox, "--key", str(key))
        finally:
            subprocess.run(["umount", str(conf)], check=True)
        assert result.returncode != 0 and f"{OTHER}.conf" in result.stderr, result.stderr
        assert group_exists() == existed and not (host.dropins / "jail.conf").exists()
        # An operator's own drop-in is left as it is, with one warning; a missing directory too.
        operators = base / "operators"
        operators.mkdir()
        (operators / "jail.conf").write_text("Match Group jail\n    AllowTcpForwarding no\n")
        result = host.create(OTHER, OTHER_UID, busybox, "--key", str(key), env={"JAIL_SSHD_CONFIG_DIR": str(operators)})
        assert result.returncode == 0, result.stderr
        assert (operators / "jail.conf").read_text() == "Match Group jail\n    AllowTcpForwarding no\n"
        assert "warning:" in result.stdout and "left as it is" in result.stdout, result.stdout
        assert group_exists() and OTHER in members()
        assert host.jaild("destroy", OTHER, "--yes").returncode == 0
        # destroy takes the account out of the group and leaves the group.
        assert group_exists() and OTHER not in members()
        result = host.create(OTHER, OTHER_UID, busybox, env={"JAIL_SSHD_CONFIG_DIR": str(base / "none")})
        assert result.returncode == 0 and "does not exist" in result.stdout, result.stdout
        assert host.jaild("destroy", OTHER, "--yes").returncode == 0
        # The shipped drop-in, when absent; a second create leaves it be.
        result = host.create(OTHER, OTHER_UID, busybox, "--key", str(key))
        assert result.returncode == 0 and (host.dropins / "jail.conf").read_text() == SHIPPED, result.stderr
        assert host.jaild("destroy", OTHER, "--yes").returncode == 0
        assert (host.dropins / "jail.conf").read_text() == SHIPPED
        # A tenant may not be called after the group.
        # (Made directly, not through host.create: its cleanup would remove an account and group of that name.)
        result = host.jaild("create", GROUP, "--uid", str(OTHER_UID), "--base", str(busybox))
        assert result.returncode != 0 and "is taken" in result.stderr, result.stderr
    finally:
        host.cleanup()
        shutil.rmtree(base, ignore_errors=True)
