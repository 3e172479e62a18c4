"""Which stdio descriptors enter the jail (issue 22 items 1 and 5): only pipes and unix sockets
are passed; /dev/null is the jail's own; files, devices and inet sockets are relayed, with exact
bytes; the helpers' buffers are bounded and the helpers sit in a memory-limited cgroup.
Attacks run as root inside through /bin/rootprobe (integration/probe/jailprobe.c)."""
import os
import re
import socket
import stat
import struct
import subprocess
import threading
import time
import tty

import pytest

from conftest import JAIL, UID_A, Jail, as_user, children_of, sha256, wait_for

MiB = 1 << 20


# Every attack of issue 22 must fail with the user namespace on (the default) and, as
# defence in depth, without it.
MODES = pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])


def run_with(probe_jail, script, stdin=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60):
    """`jail -c script` as the jail user, with the given host descriptors as its stdio."""
    return subprocess.run([JAIL, "-c", script], stdin=stdin, stdout=stdout, stderr=stderr, timeout=timeout,
                          env={"JAIL_SOCKET": probe_jail.socket, "PATH": "/usr/bin:/bin"}, preexec_fn=as_user(UID_A))


def kinds(text):
    """fd -> (kind, inode) from the probe's `fd-kind` lines, in order."""
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"^fd-kind: (\S+) ino=(\d+)$", text, re.M)]


def test_root_owned_file_as_stdin_is_relayed_read_only_with_exact_bytes(probe_jail, public_tmp):
    path = public_tmp / "secret"
    payload = os.urandom(8 * MiB + 12345)
    path.write_bytes(payload)
    os.chmod(path, 0o644)
    before = os.stat(path)
    # The attacks of `su acc -c cmd < file`: write through /proc/self/fd/0, chmod it setuid,
    # give it away. Each must miss the host file.
    with open(path, "rb") as f:
        result = run_with(probe_jail, "/bin/rootprobe fd-kind 0; /bin/rootprobe fd-reopen-write 0; "
                          "/bin/rootprobe fd-fchmod 0 4755; /bin/rootprobe fd-fchown 0 61000; exit 0", stdin=f)
    assert result.returncode == 0, result.stderr
    assert kinds(result.stdout.decode())[0][0] == "pipe", result.stdout
    after = os.stat(path)
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_size) == \
        (before.st_mode, before.st_uid, before.st_gid, before.st_size)
    assert sha256(path.read_bytes()) == sha256(payload)
    # The program reads exactly the file's bytes.
    with open(path, "rb") as f:
        result = run_with(probe_jail, "cat", stdin=f)
    assert result.returncode == 0
    assert sha256(result.stdout) == sha256(payload)


def test_dev_null_stdin_is_the_jails_own(probe_jail, public_tmp):
    node = public_tmp / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(node, 0o666)
    with open(node, "rb") as f:
        result = run_with(probe_jail, "/bin/rootprobe fd-same 0 /dev/null; /bin/rootprobe fd-fchmod 0 0; "
                          "/bin/rootprobe fd-fchown 0 61000; cat; echo end", stdin=f)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "fd-same: yes" in out, out
    assert out.endswith("end\n")
    info = os.stat(node)
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o666, 0)
    # The common case, the host's own /dev/null, and a closed stdin: both the jail's /dev/null.
    result = run_with(probe_jail, "/bin/jailprobe fd-same 0 /dev/null", stdin=subprocess.DEVNULL)
    assert result.stdout == b"fd-same: yes\n"
    result = subprocess.run(["sh", "-c", f"exec {JAIL} -c '/bin/jailprobe fd-same 0 /dev/null' <&-"],
                            capture_output=True, env={"JAIL_SOCKET": probe_jail.socket}, preexec_fn=as_user(UID_A),
                            timeout=30)
    assert result.stdout == b"fd-same: yes\n"


def tcp_pair(receive_buffer=None):
    """A connected loopback TCP pair (host sockets, outside the jail's cgroup)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


def test_inet_socket_stdin_is_relayed_not_passed(probe_jail):
    inside, outside = tcp_pair()
    try:
        payload = os.urandom(3 * MiB)
        outside.sendall(payload)
        outside.shutdown(socket.SHUT_WR)
        result = run_with(probe_jail, "/bin/jailprobe fd-kind 0; cat", stdin=inside.fileno())
    finally:
        inside.close()
        outside.close()
    assert result.returncode == 0, result.stderr
    head, _, rest = result.stdout.partition(b"\n")
    assert head.startswith(b"fd-kind: pipe "), head
    assert sha256(rest) == sha256(payload)


def test_stdout_to_a_regular_file_exact_bytes_append_and_2_to_1(probe_jail, public_tmp):
    path = public_tmp / "out"
    payload = os.urandom(8 * MiB + 7)
    with open(path, "wb") as f:
        proc = subprocess.run([JAIL, "-c", "cat"], input=payload, stdout=f, stderr=subprocess.PIPE, timeout=60,
                              env={"JAIL_SOCKET": probe_jail.socket}, preexec_fn=as_user(UID_A))
    assert proc.returncode == 0, proc.stderr
    assert sha256(path.read_bytes()) == sha256(payload)
    # `>>` still appends, and the program's stdout is not the host file.
    with open(path, "ab") as f:
        result = run_with(probe_jail, "/bin/jailprobe fd-kind 1", stdout=f)
    assert result.returncode == 0, result.stderr
    tail = path.read_bytes()[len(payload):].decode()
    assert tail.startswith("fd-kind: pipe "), tail
    assert len(path.read_bytes()) == len(payload) + len(tail)
    # 2>&1 into a file: one stream, in the program's order.
    with open(path, "wb") as f:
        result = run_with(probe_jail, "for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done", stdout=f,
                          stderr=subprocess.STDOUT)
    assert result.returncode == 0
    assert path.read_text() == "".join(f"out{i}\nerr{i}\n" for i in range(1, 9))
    # stdout and stderr to two files stay separate.
    err = public_tmp / "err"
    with open(path, "wb") as f, open(err, "wb") as g:
        result = run_with(probe_jail, "echo out; echo err >&2", stdout=f, stderr=g)
    assert (path.read_text(), err.read_text()) == ("out\n", "err\n")


def test_pipes_and_unix_sockets_are_still_passed(probe_jail):
    # The fast path: the program holds the client's own pipe (same inode), no relay.
    proc = subprocess.Popen([JAIL, "-c", "/bin/jailprobe fd-kind 0; /bin/jailprobe fd-kind 1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"JAIL_SOCKET": probe_jail.socket},
                            preexec_fn=as_user(UID_A))
    stdin_ino = os.fstat(proc.stdin.fileno()).st_ino
    stdout_ino = os.fstat(proc.stdout.fileno()).st_ino
    out, _ = proc.communicate(timeout=30)
    assert kinds(out.decode()) == [("pipe", stdin_ino), ("pipe", stdout_ino)]
    # ssh's socketpairs.
    ours, theirs = socket.socketpair()
    try:
        result = run_with(probe_jail, "/bin/jailprobe fd-kind 0", stdin=theirs.fileno())
    finally:
        ours.close()
        theirs.close()
    assert kinds(result.stdout.decode())[0][0] == "unix-socket"


def hello_frame(passed, null=0):
    """A hello (protocol 2, docs/protocol.md) for `sh -c true` in stdio mode."""
    def string(s):
        return struct.pack(">I", len(s)) + s

    payload = b"JAIL" + struct.pack(">HB", 3, 0)
    payload += struct.pack(">I", 2) + string(b"-c") + string(b"true")
    payload += struct.pack(">I", 0)
    payload += bytes([0, passed, null, 0])
    return struct.pack(">IB", len(payload) + 1, 1) + payload


def refusal(probe_jail, fd):
    """Sends a hello passing `fd` as stdin, as a modified client would (root may connect),
    and returns the error frame's text (or what came back instead)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(probe_jail.socket)
        socket.send_fds(s, [hello_frame(1)], [fd])
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    length, kind = struct.unpack(">IB", data[:5])
    if kind != 6:
        return f"frame type {kind}"
    return data[9:4 + length].decode()


@pytest.fixture
def jail_root_peer(rootfs_sec):
    """A jail without a user namespace: there host root, which the raw client below runs as,
    is a peer the jail's socket admits (in one it is the overflow uid and refused)."""
    with Jail(rootfs_sec, UID_A, args=["--no-userns"]) as running:
        yield running


def test_helper_refuses_host_objects_from_a_modified_client(jail_root_peer, public_tmp):
    jail = jail_root_peer
    path = public_tmp / "file"
    path.write_bytes(b"x")
    inside, outside = tcp_pair()
    fds = {"a regular file": os.open(path, os.O_RDONLY), "a /dev/null device": os.open("/dev/null", os.O_RDWR),
           "an inet socket": inside.fileno()}
    fifo = public_tmp / "fifo"
    os.mkfifo(fifo)
    fds["a named FIFO"] = os.open(fifo, os.O_RDWR)
    try:
        for what, fd in fds.items():
            assert refusal(jail, fd).startswith(f"{what} cannot be passed into the jail"), what
        # A pipe still works through the same path.
        r, w = os.pipe()
        try:
            assert refusal(jail, r) == "frame type 5"
        finally:
            os.close(r)
            os.close(w)
    finally:
        for what, fd in fds.items():
            if what != "an inet socket":
                os.close(fd)
        inside.close()
        outside.close()


# ---- item 5: the helpers' memory -----------------------------------------------------------------

def helper_pids(probe_jail):
    out = []
    for pid in children_of(probe_jail.init_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"jaild: ["):
                    out.append(pid)
        except (FileNotFoundError, ProcessLookupError):  # gone between the listing and the read (ESRCH)
            pass
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB$", f.read(), re.M).group(1))


def max_rss_over(pid, seconds):
    """The helper's largest VmRSS while it is observed for `seconds` (a measurement window,
    not a wait for an event)."""
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.05)
    return peak


def memory_cgroup(pid):
    """The memory cgroup of `pid` (v1 memory hierarchy, else the unified one) and its limit."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    with open("/proc/self/mounts") as f:
        mounts = [line.split() for line in f]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            root = next(m[1] for m in mounts if m[2] == "cgroup" and "memory" in m[3].split(","))
            return path, int(open(f"{root}{path}/memory.limit_in_bytes").read())
    path = next(p for _, c, p in lines if c == "")
    root = next(m[1] for m in mounts if m[2] == "cgroup2")
    return path, int(open(f"{root}{path}/memory.max").read())


@pytest.fixture
def limited_jail(rootfs_sec):
    with Jail(rootfs_sec, UID_A, args=["--memory", "64M"]) as running:
        yield running


def test_helper_memory_is_bounded_with_a_client_slower_than_the_program(limited_jail):
    jail = limited_jail
    # A terminal as stdout (relayed), read as fast as a pty goes, which is slower than the
    # program writes: the client's queue is never empty. The helper used to keep everything
    # it had sent (tens of MiB after two seconds, growing with the bytes relayed).
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([JAIL, "-c", "head -c 3000000000 /dev/zero"], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.DEVNULL, env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    os.close(slave)
    received = [0]

    def drain():
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            received[0] += len(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        helper = wait_for(lambda: helper_pids(jail), 10, "the session helper")[0]
        # In the sessions cgroup, whose limit is max(32 MiB, --memory / 4).
        cgroup, limit = memory_cgroup(helper)
        assert cgroup.endswith("/sessions"), cgroup
        assert limit == 32 * MiB
        assert max_rss_over(helper, 2.0) < 16 * 1024
        assert received[0] > 16 * MiB, "the relay must keep moving"
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        reader.join(10)
    wait_for(lambda: not helper_pids(jail), 10, "the helper to end with its client")


def test_helper_memory_is_bounded_when_the_client_stops_reading(limited_jail):
    jail = limited_jail
    # A writer left behind after the program exits, and a client whose stdout (a terminal,
    # relayed) nobody reads: the helper used to drain it into memory until EAGAIN. The sleep
    # lets the writer fill the relay first, so the client is stuck when the program exits.
    master, slave = os.openpty()
    proc = subprocess.Popen([JAIL, "-c", "/bin/jailprobe fd-flood 1 & /bin/jailprobe fd-flood 1 & sleep 1; exit 0"],
                            stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.DEVNULL, env={"JAIL_SOCKET": jail.socket},
                            preexec_fn=as_user(UID_A))
    os.close(slave)
    try:
        helper = wait_for(lambda: helper_pids(jail), 10, "the session helper")[0]
        assert max_rss_over(helper, 2.0) < 16 * 1024
        assert proc.poll() is None, "the client cannot have finished: nobody reads its stdout"
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    wait_for(lambda: not helper_pids(jail), 10, "the helper to end with its client")


def test_relayed_output_resumes_exactly_after_a_stall(limited_jail):
    jail = limited_jail
    payload = os.urandom(32 * MiB)
    inside, outside = tcp_pair(receive_buffer=4096)
    proc = subprocess.Popen([JAIL, "-c", "cat"], stdin=subprocess.PIPE, stdout=inside.fileno(),
                            stderr=subprocess.DEVNULL, env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A))
    inside.close()
    try:
        feeder = threading.Thread(target=lambda: (proc.stdin.write(payload), proc.stdin.close()))
        feeder.start()
        helper = wait_for(lambda: helper_pids(jail), 10, "the session helper")[0]
        assert max_rss_over(helper, 1.0) < 16 * 1024
        received = bytearray()
        outside.settimeout(30)
        while True:
            chunk = outside.recv(1 << 20)
            if not chunk:
                break
            received += chunk
        feeder.join(30)
        assert proc.wait(30) == 0
        assert sha256(bytes(received)) == sha256(payload)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        outside.close()
