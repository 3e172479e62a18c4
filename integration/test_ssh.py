"""ssh, scp, sftp and rsync land inside the jail (issue 4): Debian's OpenSSH server on
127.0.0.1 at a free port, key authentication, host account `centos` (uid 61000) whose login
shell is `jail`, its jail running a Debian rootfs with openssh-sftp-server, rsync, git and xauth.
Issue 19: file names that are not UTF-8 through scp (both protocols), sftp and rsync; git's
protocol v2; X11 cookies."""
import concurrent.futures
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pexpect
import pytest

from harness import HostSshd, free_port  # noqa: F401  (free_port: test_ssh_keys imports it from here)
from conftest import (UID_A, HostAccount, Jail, cached_debian_rootfs, leave_shell,
                      resize_reaches_the_foreground_job, wait_for)

PLAIN_UID = 61010
PROMPT = r"work@[^:]*:~\$ "


@pytest.fixture(scope="module")
def debian_rootfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("debian") / "root"
    subprocess.run(["cp", "-a", str(cached_debian_rootfs()), str(root)], check=True)
    return root


class SSHWorld:
    """sshd on 127.0.0.1, a jailed account `centos` and a plain account, one client key."""

    def __init__(self, base, rootfs, jail_binary):
        self.base = base
        self.rootfs = rootfs
        self.port = free_port()
        self.key = base / "client_key"
        self.accounts = []
        self.sshd = None
        self.jail = None
        self.jail_binary = jail_binary

    def start(self):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        for name, uid, shell in (("centos", UID_A, self.jail_binary), ("jailplain", PLAIN_UID, "/bin/sh")):
            home = self.base / "home" / name
            (home / ".ssh").mkdir(parents=True)
            shutil.copy(str(self.key) + ".pub", home / ".ssh" / "authorized_keys")
            account = HostAccount(name, uid, shell, home).create()
            self.accounts.append(account)
            for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
                os.chown(path, uid, uid)
            os.chmod(home / ".ssh", 0o700)
        os.chmod(self.base / "home", 0o755)
        self.sshd = HostSshd(self.base, ["centos", "jailplain"], extra="""MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
AcceptEnv GIT_PROTOCOL
X11Forwarding yes
X11UseLocalhost yes
AllowAgentForwarding yes
""")
        self.sshd.port = self.port
        self.sshd.start()
        self.jail = Jail(self.rootfs, UID_A, args=["--forward-x11"]).start()
        return self

    def stop(self):
        if self.jail:
            self.jail.stop()
        if self.sshd:
            self.sshd.stop()
        for account in self.accounts:
            account.delete()

    def options(self):
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

    def ssh(self, *args, user="centos", **kwargs):
        argv = ["ssh", *self.options(), "-p", str(self.port), *args[:-1], f"{user}@127.0.0.1", args[-1]] \
            if args else ["ssh", *self.options(), "-p", str(self.port), f"{user}@127.0.0.1"]
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("capture_output", True)
        return subprocess.run(argv, **kwargs)

    def inside(self, path):
        return self.rootfs / path.lstrip("/")


@pytest.fixture(scope="module")
def ssh_world(debian_rootfs, tmp_path_factory, installed_jail):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-ssh-", dir="/tmp"))
    os.chmod(base, 0o755)
    w = SSHWorld(base, debian_rootfs, installed_jail)
    try:
        yield w.start()
    finally:
        w.stop()
        shutil.rmtree(base, ignore_errors=True)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_interactive_ssh_lands_in_the_jail(ssh_world):
    child = pexpect.spawn("ssh", [*ssh_world.options(), "-tt", "-p", str(ssh_world.port), "centos@127.0.0.1"],
                          timeout=20, encoding="utf-8", dimensions=(30, 100))
    try:
        child.expect(PROMPT)
        child.sendline("id -u; cat /etc/issue; ps -o pid=,args= -p 1; echo TTY=$SSH_TTY; stty size")
        child.expect(r"\r\n(\x1b\[\?2004l\r)?61000\r\n")  # bash's bracketed-paste toggle may come first
        child.expect("Jail test Debian rootfs")
        child.expect(r"\s1 jaild: init \[61000:61000\]")
        child.expect(r"TTY=(/dev/pts/\d+)")
        child.expect("30 100")
        child.expect(PROMPT)
        # The resize reaches the foreground job inside the jail.
        resize_reaches_the_foreground_job(child, 40, 120, shell="bash")
        child.expect(PROMPT)
        assert leave_shell(child, 5) == 5
    finally:
        child.close()


def test_ssh_command_status_streams_and_stdin(ssh_world, tmp_path):
    result = ssh_world.ssh("echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert ssh_world.ssh("-n", "cat /etc/issue; id -un").stdout == b"Jail test Debian rootfs\nwork\n"
    source = tmp_path / "in"
    source.write_bytes(b"line one\nline two\n")
    with open(source, "rb") as f:
        assert ssh_world.ssh("wc -l", stdin=f).stdout.strip() == b"2"
    payload = os.urandom(64 << 20)
    result = ssh_world.ssh("cat", input=payload)
    assert result.returncode == 0 and sha(result.stdout) == sha(payload)
    assert ssh_world.ssh("cat > /home/work/blob", input=payload).returncode == 0
    assert sha(ssh_world.inside("/home/work/blob").read_bytes()) == sha(payload)
    assert os.stat(ssh_world.inside("/home/work/blob")).st_uid == UID_A
    os.unlink(ssh_world.inside("/home/work/blob"))


def test_ssh_environment_is_visible_inside(ssh_world):
    out = ssh_world.ssh("echo C=$SSH_CONNECTION; echo L=$SSH_CLIENT; echo T=${SSH_TTY:-none}").stdout.decode()
    assert "C=127.0.0.1 " in out and f" 127.0.0.1 {ssh_world.port}" in out
    assert "L=127.0.0.1 " in out and out.rstrip().endswith("T=none")


def transfer_rate(nbytes, seconds):
    return nbytes / seconds / 1e6


def test_scp_both_ways_and_trees(ssh_world, tmp_path, capsys):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(100 << 20))
    rates = {}
    for user, target in (("centos", "/home/work/big"), ("jailplain", "big")):
        start = time.monotonic()
        r = subprocess.run(["scp", *ssh_world.options(), "-P", str(ssh_world.port), str(big), f"{user}@127.0.0.1:{target}"],
                           capture_output=True, timeout=300)
        rates[user] = transfer_rate(100 << 20, time.monotonic() - start)
        assert r.returncode == 0, r.stderr
    landed = ssh_world.inside("/home/work/big")
    assert sha(landed.read_bytes()) == sha(big.read_bytes())
    assert os.stat(landed).st_uid == UID_A
    back = tmp_path / "back"
    r = subprocess.run(["scp", *ssh_world.options(), "-P", str(ssh_world.port), "centos@127.0.0.1:/home/work/big", str(back)],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sha(back.read_bytes()) == sha(big.read_bytes())
    # A tree of small files.
    tree = tmp_path / "tree"
    for i in range(200):
        (tree / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 10}" / f"f{i}").write_bytes(os.urandom(i * 37))
    r = subprocess.run(["scp", *ssh_world.options(), "-r", "-P", str(ssh_world.port), str(tree), "centos@127.0.0.1:/home/work/"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert tree_digest(tree) == tree_digest(ssh_world.inside("/home/work/tree"))
    assert all(os.stat(p).st_uid == UID_A for p in ssh_world.inside("/home/work/tree").rglob("*"))
    os.unlink(landed)
    shutil.rmtree(ssh_world.inside("/home/work/tree"))
    with capsys.disabled():
        print(f"\n[figures] scp 100 MiB upload: jail {rates['centos']:.0f} MB/s, plain account {rates['jailplain']:.0f} MB/s")


def tree_digest(root):
    root = pathlib.Path(root)
    return sorted((str(p.relative_to(root)), sha(p.read_bytes()) if p.is_file() else "dir") for p in root.rglob("*"))


def test_sftp_batch(ssh_world, tmp_path):
    local = tmp_path / "up"
    local.write_bytes(os.urandom(3 << 20))
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} up.bin\nls -l\nrename up.bin renamed.bin\nget renamed.bin {tmp_path / 'down'}\n"
                     "rm renamed.bin\nls\n")
    r = subprocess.run(["sftp", *ssh_world.options(), "-P", str(ssh_world.port), "-b", str(batch), "centos@127.0.0.1"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert b"up.bin" in r.stdout
    assert sha((tmp_path / "down").read_bytes()) == sha(local.read_bytes())
    assert not ssh_world.inside("/home/work/renamed.bin").exists()
    assert not ssh_world.inside("/home/work/up.bin").exists()


def test_rsync_both_ways(ssh_world, tmp_path, capsys):
    tree = tmp_path / "src"
    for i in range(300):
        (tree / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 7}" / f"f{i}").write_bytes(os.urandom(i * 101))
    (tree / "large").write_bytes(os.urandom(100 << 20))
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    ssh = "ssh " + " ".join(ssh_world.options()) + f" -p {ssh_world.port}"
    rates = {}
    for user, dest in (("centos", "/home/work/dst/"), ("jailplain", "dst/")):
        start = time.monotonic()
        r = subprocess.run(["rsync", "-a", "-e", ssh, f"{tree}/", f"{user}@127.0.0.1:{dest}"], capture_output=True,
                           timeout=300)
        rates[user] = transfer_rate(size, time.monotonic() - start)
        assert r.returncode == 0, r.stderr
    assert tree_digest(tree) == tree_digest(ssh_world.inside("/home/work/dst"))
    assert all(os.stat(p).st_uid == UID_A for p in ssh_world.inside("/home/work/dst").rglob("*"))
    back = tmp_path / "back"
    r = subprocess.run(["rsync", "-a", "-e", ssh, "centos@127.0.0.1:/home/work/dst/", f"{back}/"], capture_output=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert tree_digest(back) == tree_digest(tree)
    shutil.rmtree(ssh_world.inside("/home/work/dst"))
    with capsys.disabled():
        print(f"\n[figures] rsync {size / 1e6:.0f} MB upload: jail {rates['centos']:.0f} MB/s, "
              f"plain account {rates['jailplain']:.0f} MB/s")


def test_dropped_connection_hangs_up_the_session_but_not_nohup(ssh_world):
    client = subprocess.Popen(["ssh", *ssh_world.options(), "-p", str(ssh_world.port), "centos@127.0.0.1",
                               "nohup sleep 501 >/dev/null 2>&1 & setsid sleep 502 >/dev/null 2>&1 < /dev/null & "
                               "echo ready; exec sleep 503"], stdout=subprocess.PIPE)
    try:
        assert client.stdout.readline() == b"ready\n"
        wait_for(lambda: b"sleep 503" in ssh_world.jail.run("ps -eo args").stdout, 10, "the session's sleep")
    finally:
        client.kill()
        client.wait()
    wait_for(lambda: b"sleep 503" not in ssh_world.jail.run("ps -eo args").stdout, 20, "the hangup to end the session")
    survivors = ssh_world.jail.run("ps -eo args").stdout
    assert b"sleep 501" in survivors and b"sleep 502" in survivors
    ssh_world.jail.run("pkill -f 'sleep 50[12]'; true")


def test_twenty_concurrent_sessions(ssh_world):
    payloads = [os.urandom(4 << 20) for _ in range(20)]

    def one(data):
        r = ssh_world.ssh("sha256sum", input=data)
        return r.returncode, r.stdout.split()[0].decode() if r.stdout else ""

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, payloads))
    assert results == [(0, sha(p)) for p in payloads]


def test_su_behaves_as_ssh_does(ssh_world):
    result = subprocess.run(["su", "-", "centos", "-c", "cat /etc/issue; id -un; exit 4"], capture_output=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout) == (4, b"Jail test Debian rootfs\nwork\n")
    child = pexpect.spawn("su - centos", env={"TERM": "xterm", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=20,
                          encoding="utf-8")
    try:
        child.expect(PROMPT)
        child.sendline("ps -o pid=,args= -p 1")
        child.expect(r"\s1 jaild: init \[61000:61000\]")
        child.expect(PROMPT)
        assert leave_shell(child, 9) == 9
    finally:
        child.close()


# Issue 19: argv and the environment are bytes end to end. Latin-1 and stray high bytes, a
# space, and (where the tool allows it) a newline.
HIGH = b"caf\xe9-\x80\xfe\xff"
NAMES = [b"latin " + HIGH, b"new\nline " + bytes(range(0xa0, 0xb0))]


def test_bytes_reach_the_program_unchanged(ssh_world):
    r = ssh_world.jail.run("", args=[b"-c", b"printf %s '\xff\xfe' | od -An -tx1"])
    assert r.stdout.split() == [b"ff", b"fe"]
    r = ssh_world.ssh(b"printf %s '" + HIGH + b"' | od -An -tx1")
    assert r.stdout.split() == [b"%02x" % c for c in HIGH]


def local_tree(base):
    os.makedirs(base, exist_ok=True)
    digests = {}
    for i, name in enumerate(NAMES):
        data = os.urandom(1000 + i)
        with open(os.path.join(base, name), "wb") as f:
            f.write(data)
        digests[name] = sha(data)
    return digests


def names_and_hashes(directory):
    directory = os.fsencode(directory)
    return {name: sha(open(os.path.join(directory, name), "rb").read()) for name in os.listdir(directory)}


def test_scp_legacy_with_byte_names_in_argv(ssh_world, tmp_path):
    # scp -O: the remote path is scp's argv inside the jail (`scp -t PATH`, `scp -f PATH`).
    local = os.fsencode(tmp_path / "one")
    data = os.urandom(5000)
    open(local, "wb").write(data)
    remote = b"/home/work/" + HIGH
    base = ["scp", "-O", *ssh_world.options(), "-P", str(ssh_world.port)]
    r = subprocess.run(base + [local, b"centos@127.0.0.1:" + remote], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sha(open(os.fsencode(ssh_world.rootfs) + remote, "rb").read()) == sha(data)
    back = os.fsencode(tmp_path / "back")
    os.mkdir(back)
    r = subprocess.run(base + [b"centos@127.0.0.1:" + remote, back], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert names_and_hashes(back) == {HIGH: sha(data)}
    os.unlink(os.fsencode(ssh_world.rootfs) + remote)


def test_scp_sftp_sftp_and_rsync_with_byte_names_both_ways(ssh_world, tmp_path):
    inside = os.fsencode(ssh_world.inside("/home/work"))
    opts = [*ssh_world.options()]
    # scp's default protocol (sftp): a tree whose names hold every kind of byte.
    src = os.fsencode(tmp_path / "src")
    digests = local_tree(src)
    r = subprocess.run(["scp", "-r", *opts, "-P", str(ssh_world.port), src, b"centos@127.0.0.1:/home/work/scp-" + HIGH],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert names_and_hashes(inside + b"/scp-" + HIGH) == digests
    down = os.fsencode(tmp_path / "scp-down")
    r = subprocess.run(["scp", "-r", *opts, "-P", str(ssh_world.port), b"centos@127.0.0.1:/home/work/scp-" + HIGH, down],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert names_and_hashes(down) == digests
    # sftp: a name with high bytes and a space, quoted in the batch.
    batch = os.fsencode(tmp_path / "batch")
    one = os.path.join(src, NAMES[0])
    open(batch, "wb").write(b'put "' + one + b'" "sftp ' + HIGH + b'"\nget "sftp ' + HIGH + b'" "'
                            + os.fsencode(tmp_path) + b'/sftp-back"\n')
    r = subprocess.run(["sftp", *opts, "-P", str(ssh_world.port), "-b", batch, "centos@127.0.0.1"], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert sha(open(inside + b"/sftp " + HIGH, "rb").read()) == digests[NAMES[0]]
    assert sha(open(os.fsencode(tmp_path) + b"/sftp-back", "rb").read()) == digests[NAMES[0]]
    # rsync: the remote directory is in rsync's argv inside the jail.
    ssh = "ssh " + " ".join(opts) + f" -p {ssh_world.port}"
    r = subprocess.run(["rsync", "-a", "-e", ssh, src + b"/", b"centos@127.0.0.1:/home/work/rsync " + HIGH + b"/"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert names_and_hashes(inside + b"/rsync " + HIGH) == digests
    back = os.fsencode(tmp_path / "rsync-back")
    r = subprocess.run(["rsync", "-a", "-e", ssh, b"centos@127.0.0.1:/home/work/rsync " + HIGH + b"/", back + b"/"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert names_and_hashes(back) == digests
    for d in (b"/scp-" + HIGH, b"/rsync " + HIGH):
        shutil.rmtree(inside + d)
    os.unlink(inside + b"/sftp " + HIGH)


def test_git_protocol_v2_clones_an_empty_repository_onto_main(ssh_world, tmp_path):
    r = ssh_world.ssh("git init -q --bare --initial-branch=main /home/work/empty.git && echo made")
    assert r.stdout == b"made\n", r.stderr
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TRACE_PACKET": "1",
           "GIT_SSH_COMMAND": "ssh " + " ".join(ssh_world.options()) + f" -p {ssh_world.port}"}
    r = subprocess.run(["git", "-c", "init.defaultBranch=master", "clone",
                        "centos@127.0.0.1:/home/work/empty.git", str(tmp_path / "clone")],
                       capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert b"< version 2" in r.stderr
    head = subprocess.run(["git", "-C", str(tmp_path / "clone"), "symbolic-ref", "HEAD"], capture_output=True, env=env)
    assert head.stdout == b"refs/heads/main\n"
    shutil.rmtree(ssh_world.inside("/home/work/empty.git"))


def test_x11_cookie_reaches_the_session(ssh_world):
    # ssh -Y without an X server: the client makes up a cookie, sshd stores it with xauth in
    # the host account's ~/.Xauthority and sets DISPLAY; the jail's session gets its own copy.
    env = dict(os.environ, DISPLAY=":99")
    env.pop("XAUTHORITY", None)
    r = ssh_world.ssh("-Y", "echo D=$DISPLAY; stat -c '%a %u %U' \"$XAUTHORITY\" \"${XAUTHORITY%/*}\"; xauth list; "
                  "echo X=$XAUTHORITY", env=env)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    lines = out.splitlines()
    assert lines[0].startswith("D=localhost:1"), out
    assert lines[1] == "600 61000 work" and lines[2] == "700 61000 work", out
    inside = [line.split() for line in lines[3:-1]]
    host = subprocess.run(["xauth", "-f", str(ssh_world.base / "home" / "centos" / ".Xauthority"), "list"],
                          capture_output=True, text=True).stdout.split()
    number = lines[0].split(":")[1].split(".")[0]
    assert [entry[1:] for entry in inside] == [["MIT-MAGIC-COOKIE-1", host[-1]]], (out, host)
    assert inside[0][0].endswith(f"/unix:{number}")
    # Removed at the session's end.
    xauthority = lines[-1][2:]
    assert xauthority.startswith("/tmp/jail-x11-")
    wait_for(lambda: not ssh_world.inside(os.path.dirname(xauthority)).exists(), 10, "the session's Xauthority to go")


@pytest.fixture
def agent(ssh_world):
    """An ssh-agent on the host holding the client key (as the user's laptop would)."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="jail-agent-host-", dir="/tmp"))
    path = directory / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(path)], stdout=subprocess.DEVNULL)
    try:
        wait_for(path.exists, 10, "ssh-agent's socket")
        env = dict(os.environ, SSH_AUTH_SOCK=str(path))
        subprocess.run(["ssh-add", "-q", str(ssh_world.key)], check=True, env=env, capture_output=True, timeout=30)
        yield env
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_agent_forwarding_reaches_an_ssh_from_inside(ssh_world, agent):
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(ssh_world.key) + ".pub"], capture_output=True,
                                 text=True).stdout.split()[1]
    onward = (f"ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR "
              f"-o IdentityFile=/nonexistent -p {ssh_world.port} jailplain@127.0.0.1 'echo onward as $(id -un)'")
    script = ("echo S=$SSH_AUTH_SOCK; stat -c '%a %U' \"${SSH_AUTH_SOCK%/*}\" \"$SSH_AUTH_SOCK\"; ssh-add -l; " + onward)
    for tty in ([], ["-tt"]):
        r = ssh_world.ssh("-A", *tty, script, env=agent, stdin=subprocess.DEVNULL)
        out = r.stdout.decode().replace("\r", "")
        assert r.returncode == 0, (out, r.stderr)
        lines = out.splitlines()
        socket_path = lines[0][2:]
        assert socket_path.startswith("/tmp/jail-agent-") and socket_path.endswith("/agent.sock"), out
        assert lines[1:3] == ["700 work", "600 work"], out
        assert fingerprint in lines[3], out
        assert lines[-1] == "onward as jailplain", out
        # Removed at the session's end.
        wait_for(lambda: not ssh_world.inside(os.path.dirname(socket_path)).exists(), 10, "the agent socket to go")
    # Without -A there is no agent inside.
    r = ssh_world.ssh("echo S=${SSH_AUTH_SOCK:-none}", env=agent)
    assert r.stdout == b"S=none\n"
