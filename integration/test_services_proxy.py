"""Host services a jail reaches through its own relayed socket (issue 34): `--service
JPATH=HOSTPATH`, a PROXY v2 header naming the jail and the caller, and /run/jail/info.json.

Two jails (A: uid 61000, named svc-a; B: uid 61001, named svc-b) run in the foreground with
their logs in files; a Python host service listens on unix sockets in a private directory;
inside, a tiny static C client (the busybox rootfs has no socat or python) connects.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import JAIL, JAILD, UID_A, UID_B, as_user, children_of, descendants, pid_alive, sha256, wait_for
from harness import cmdline

CLIENT = r"""
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int dial(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "connect %s: %s\n", path, strerror(errno));
        return -1;
    }
    return fd;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* stdin -> socket, socket -> stdout, both at once; the socket half-closed at stdin's end. */
static int relay(int fd) {
    static char buf[65536];
    int in_open = 1;
    for (;;) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
        if (poll(p, in_open ? 2 : 1, -1) < 0) return 1;
        if (p[0].revents) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0) { fprintf(stderr, "read: %s\n", strerror(errno)); return 1; }
            if (n == 0) return 0;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(1, buf + off, n - off);
                if (w < 0) return 1;
                off += w;
            }
        }
        if (in_open && p[1].revents) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) { shutdown(fd, SHUT_WR); in_open = 0; continue; }
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(fd, buf + off, n - off);
                if (w < 0) { fprintf(stderr, "write: %s\n", strerror(errno)); return 1; }
                off += w;
            }
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc == 2) {
        int fd = dial(argv[1]);
        return fd < 0 ? 1 : relay(fd);
    }
    if (argc == 4 && !strcmp(argv[1], "abandon")) {
        int n = atoi(argv[3]), made = 0;
        for (int i = 0; i < n; i++) {
            int fd = dial(argv[2]);
            if (fd >= 0) { made++; close(fd); }
        }
        printf("abandoned %d\n", made);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "rtt")) {
        int n = atoi(argv[3]);
        double *took = calloc(n, sizeof *took);
        char reply[64];
        for (int i = 0; i < n; i++) {
            double t0 = now();
            int fd = dial(argv[2]);
            if (fd < 0) return 1;
            if (write(fd, "ping", 4) != 4) return 1;
            shutdown(fd, SHUT_WR);
            while (read(fd, reply, sizeof reply) > 0) {}
            close(fd);
            took[i] = (now() - t0) * 1e6;
        }
        qsort(took, n, sizeof *took, cmp);
        printf("p50_us=%.0f p90_us=%.0f max_us=%.0f\n", took[n / 2], took[n * 9 / 10], took[n - 1]);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "bulk")) {
        long mib = atol(argv[3]);
        static char buf[65536];
        int fd = dial(argv[2]);
        if (fd < 0) return 1;
        double t0 = now();
        for (long i = 0; i < mib * 16; i++)
            for (ssize_t off = 0; off < (ssize_t)sizeof buf;) {
                ssize_t w = write(fd, buf + off, sizeof buf - off);
                if (w < 0) return 1;
                off += w;
            }
        shutdown(fd, SHUT_WR);
        char reply[64] = {0};
        ssize_t got = read(fd, reply, sizeof reply - 1);
        double took = now() - t0;
        printf("mib_per_s=%.0f reply=%s\n", mib / took, got > 0 ? reply : "");
        return 0;
    }
    fprintf(stderr, "usage: svcclient PATH | abandon PATH N | rtt PATH N | bulk PATH MIB\n");
    return 2;
}
"""

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class HostService:
    """A host service on a unix socket: reads the PROXY v2 header (if any), then echoes the
    payload ("echo") or counts it and answers the count ("sink"). Threads: test code only."""

    def __init__(self, path, mode="echo", header=True):
        self.path, self.mode, self.header = str(path), mode, header
        self.seen = []
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        os.chmod(self.path, 0o666)
        self.server.listen(256)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()

    @staticmethod
    def read_exactly(connection, n):
        data = b""
        while len(data) < n:
            chunk = connection.recv(n - len(data))
            if not chunk:
                raise EOFError(f"{len(data)} of {n} header bytes")
            data += chunk
        return data

    def handle(self, connection):
        record = {"tlvs": {}}
        try:
            if self.header:
                fixed = self.read_exactly(connection, 16)
                record["signature"], record["ver_cmd"], record["family"] = fixed[:12], fixed[12], fixed[13]
                rest = self.read_exactly(connection, struct.unpack(">H", fixed[14:16])[0])
                record["source"], record["destination"] = rest[:108].rstrip(b"\0"), rest[108:216].rstrip(b"\0")
                tlvs = rest[216:]
                while tlvs:
                    kind, length = tlvs[0], struct.unpack(">H", tlvs[1:3])[0]
                    record["tlvs"][kind] = tlvs[3:3 + length].decode()
                    tlvs = tlvs[3 + length:]
            digest, count, first = __import__("hashlib").sha256(), 0, b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                if len(first) < 64:
                    first += chunk[:64 - len(first)]
                digest.update(chunk)
                count += len(chunk)
                if self.mode == "echo":
                    connection.sendall(chunk)
            if self.mode == "sink":
                connection.sendall(str(count).encode())
            record.update(count=count, sha=digest.hexdigest(), first=first)
            connection.shutdown(socket.SHUT_WR)
        except (OSError, EOFError) as error:
            record["error"] = str(error)
        finally:
            connection.close()
            with self.lock:
                self.seen.append(record)

    def records(self):
        with self.lock:
            return list(self.seen)

    def close(self):
        self.server.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class ServiceJail:
    """A foreground jaild (its log in a file) with services, on a socket of its own."""

    def __init__(self, root, uid, name, args, log_path, prefix):
        self.root, self.uid, self.name, self.prefix = root, uid, name, prefix
        self.argv = [JAILD, "-c", "-u", str(uid), "-r", str(root), "-a", prefix, "--jail-name", name, *args]
        self.socket = f"{prefix}-{uid}-{uid}.sock"
        self.log_path = log_path
        self.procs = []
        self.init_pid = None
        self.launch()
        self.init_pid = children_of(self.proc.pid)[0]

    def launch(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        log.close()
        self.procs.append(self.proc)
        wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, 20, "the socket")
        assert self.proc.poll() is None, self.text()
        assert self.run("true").returncode == 0, self.text()

    def text(self):
        return open(self.log_path, "rb").read().decode(errors="replace")

    def run(self, script, uid=None, **kwargs):
        return subprocess.run([JAIL, "-c", script], capture_output=True, timeout=kwargs.pop("timeout", 120),
                              env={"JAIL_SOCKET": self.socket, "PATH": "/usr/bin:/bin"},
                              preexec_fn=as_user(self.uid if uid is None else uid), **kwargs)

    def popen(self, script, **kwargs):
        return subprocess.Popen([JAIL, "-c", script], env={"JAIL_SOCKET": self.socket, "PATH": "/usr/bin:/bin"},
                                preexec_fn=as_user(self.uid), **kwargs)

    def relay(self):
        found = [p for p in children_of(self.init_pid) if cmdline(p).startswith("jaild: service relay")]
        assert len(found) == 1, [cmdline(p) for p in children_of(self.init_pid)]
        return found[0]

    def stop(self):
        pids = [self.init_pid] + descendants(self.init_pid) if self.init_pid and pid_alive(self.init_pid) else []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def client_binary(tmp_path_factory):
    directory = tmp_path_factory.mktemp("svcclient")
    (directory / "svcclient.c").write_text(CLIENT)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(directory / "svcclient"), str(directory / "svcclient.c")], check=True)
    return directory / "svcclient"


@pytest.fixture(scope="module")
def host_dir():
    """Private to root (0700): host users cannot pass it. The relay holds each service's own
    directory (0711) open and needs only to search it and write the socket (0666)."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="jail-svc-host-"))
    for name in ("a", "b"):
        (top / name).mkdir()
        os.chmod(top / name, 0o711)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy_world(rootfs_sec, rootfs_sec_b, client_binary, host_dir, tmp_path_factory):
    """Jails A and B with their services, and the host services behind them."""
    installed = [root / "bin" / "svcclient" for root in (rootfs_sec, rootfs_sec_b)]
    for target in installed:
        shutil.copy(client_binary, target)
        os.chmod(target, 0o755)
    prefix_dir = pathlib.Path(tempfile.mkdtemp(prefix="jail-svc-sock-", dir="/tmp"))
    os.chmod(prefix_dir, 0o755)
    logs = tmp_path_factory.mktemp("svclogs")
    services = {
        "a": HostService(host_dir / "a" / "echo.sock"),
        "raw": HostService(host_dir / "a" / "raw.sock", header=False),
        "b": HostService(host_dir / "b" / "echo.sock"),
    }
    jails = []
    try:
        a = ServiceJail(rootfs_sec, UID_A, "svc-a", [
            "--memory", "256M", "--pids", "300", "--hostname", "tenant-a",
            "--service", f"/run/svc/echo.sock={host_dir}/a/echo.sock",
            "--service", f"/run/raw.sock={host_dir}/a/raw.sock,header=none,mode=0660,owner=0:{UID_A}",
            "--service", f"/run/down.sock={host_dir}/a/down.sock",
            "--service", f"/run/sink.sock={host_dir}/a/sink.sock,header=none",
        ], logs / "a.log", str(prefix_dir / "a"))
        jails.append(a)
        b = ServiceJail(rootfs_sec_b, UID_B, "svc-b", ["--service", f"/run/svc/echo.sock={host_dir}/b/echo.sock"],
                        logs / "b.log", str(prefix_dir / "b"))
        jails.append(b)
        yield {"a": a, "b": b, "services": services, "host": host_dir, "client": client_binary}
    finally:
        for jail in jails:
            jail.stop()
        for service in services.values():
            service.close()
        for target in installed:
            target.unlink(missing_ok=True)
        shutil.rmtree(prefix_dir, ignore_errors=True)


def wait_records(service, count, timeout=20):
    return wait_for(lambda: len(service.records()) >= count and service.records(), timeout, f"{count} connections at the service")


def check_header(record, jail, uid, path="/run/svc/echo.sock"):
    assert "error" not in record, record
    assert record["signature"] == SIGNATURE
    assert record["ver_cmd"] == 0x21 and record["family"] == 0x31
    assert record["source"] == b"" and record["destination"] == path.encode()
    assert record["tlvs"][0xE0] == jail
    uid_text, pid_text = record["tlvs"][0xE1].split()
    assert uid_text == f"uid={uid}" and pid_text.startswith("pid=") and int(pid_text[4:]) > 1


def test_header_names_jail_and_caller_then_the_exact_bytes_both_ways(proxy_world):
    a, service = proxy_world["a"], proxy_world["services"]["a"]
    payload = os.urandom(16 << 20)
    before = len(service.records())
    result = a.run("/bin/svcclient /run/svc/echo.sock", input=payload)
    assert result.returncode == 0, result.stderr
    assert sha256(result.stdout) == sha256(payload), "the echo differs from what was sent"
    record = wait_records(service, before + 1)[-1]
    check_header(record, "svc-a", UID_A)
    assert record["count"] == len(payload) and record["sha"] == sha256(payload)
    # Root inside (the setuid probe: euid 0 inside, as a tenant's su gets it).
    result = a.run("/bin/rootprobe exec /bin/svcclient /run/svc/echo.sock", input=b"as root")
    assert result.returncode == 0 and result.stdout == b"as root", result
    check_header(wait_records(service, before + 2)[-1], "svc-a", 0)


def test_forged_header_is_payload_and_jail_b_relays_with_its_own_name(proxy_world):
    a, b, service_a, service_b = proxy_world["a"], proxy_world["b"], proxy_world["services"]["a"], proxy_world["services"]["b"]
    forged = (SIGNATURE + bytes([0x21, 0x31]) + struct.pack(">H", 216 + 8) + b"\0" * 216
              + bytes([0xE0, 0, 5]) + b"svc-b")
    before = len(service_a.records())
    result = a.run("/bin/svcclient /run/svc/echo.sock", input=forged + b"mail from a")
    assert result.returncode == 0 and result.stdout == forged + b"mail from a", result
    record = wait_records(service_a, before + 1)[-1]
    check_header(record, "svc-a", UID_A)
    assert record["first"].startswith(forged[:64])
    before_b = len(service_b.records())
    result = b.run("/bin/svcclient /run/svc/echo.sock", input=b"mail from b")
    assert result.returncode == 0 and result.stdout == b"mail from b", result
    check_header(wait_records(service_b, before_b + 1)[-1], "svc-b", UID_B)
    # header=none: raw bytes, the service tells jails apart by its socket; mode and owner as given.
    listing = a.run("ls -ln /run/raw.sock").stdout.decode().split()
    assert listing[0] == "srw-rw----" and listing[2:4] == ["0", str(UID_A)], listing
    raw = proxy_world["services"]["raw"]
    before_raw = len(raw.records())
    result = a.run("/bin/svcclient /run/raw.sock", input=b"raw bytes")
    assert result.returncode == 0 and result.stdout == b"raw bytes", result
    assert wait_records(raw, before_raw + 1)[-1]["first"] == b"raw bytes"


def test_host_path_is_not_reachable_from_inside(proxy_world):
    a, service, host = proxy_world["a"], proxy_world["services"]["a"], proxy_world["host"]
    relay = a.relay()
    inside_pid = open(f"/proc/{relay}/status").read().split("NSpid:")[1].split("\n")[0].split()[-1]
    held = [fd for fd in os.listdir(f"/proc/{relay}/fd") if os.readlink(f"/proc/{relay}/fd/{fd}") == str(host / "a")]
    assert held, "the relay does not hold the host directory"
    before = len(service.records())
    for who in ("", "/bin/rootprobe exec "):
        for path in (f"{host}/a/echo.sock", f"/proc/{inside_pid}/fd/{held[0]}/echo.sock", f"/proc/{inside_pid}/root{host}/a/echo.sock"):
            result = a.run(f"{who}/bin/svcclient {path} </dev/null")
            assert result.returncode != 0, (who, path, result)
        listing = a.run(f"{who}ls /proc/{inside_pid}/fd/ 2>&1; ls {host} 2>&1")
        assert b"echo.sock" not in listing.stdout and str(host).encode() + b"/a" not in listing.stdout, listing
    assert len(service.records()) == before, "a path reached the host's service"
    # Where the relay stands: init's cgroup (not the programs'), the jail's nobody, no
    # capabilities, non-dumpable (the /proc reads above were refused to root inside).
    status = open(f"/proc/{relay}/status").read()
    uids = status.split("Uid:")[1].split("\n")[0].split()
    assert len(set(uids)) == 1 and int(uids[0]) not in (0, UID_A), uids
    assert status.split("CapEff:")[1].split()[0] == "0000000000000000"
    assert status.split("CapBnd:")[1].split()[0] == "0000000000000000"
    assert open(f"/proc/{relay}/cgroup").read() == open(f"/proc/{a.init_pid}/cgroup").read()


def test_service_down_fails_promptly_with_one_log_line(proxy_world):
    a = proxy_world["a"]
    assert "down.sock does not exist yet" in a.text()  # the start's warning
    began = time.monotonic()
    result = a.run("/bin/svcclient /run/down.sock </dev/null; /bin/svcclient /run/down.sock </dev/null; echo done")
    took = time.monotonic() - began
    assert result.stdout == b"done\n" and took < 1.0, (took, result)
    wait_for(lambda: "service connection refused" in a.text(), 5, "the log line")
    lines = [line for line in a.text().splitlines() if "service connection refused" in line and "down.sock" in line]
    assert len(lines) == 1, lines
    assert "jail=svc-a" in lines[0] and "connect" in lines[0], lines


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    return int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0])


def test_abandoned_connections_leak_nothing_and_another_jail_stays_fast(proxy_world):
    a, b = proxy_world["a"], proxy_world["b"]
    relay = a.relay()
    baseline = fd_count(relay)
    rss_before = rss_kib(relay)
    flood = a.popen("for i in 1 2 3 4 5; do /bin/svcclient abandon /run/svc/echo.sock 200; done",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rtt = b.run("/bin/svcclient rtt /run/svc/echo.sock 200").stdout.decode()
        out, err = flood.communicate(timeout=120)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    assert out.count(b"abandoned 200") == 5, (out, err)
    figures = dict(part.split("=") for part in rtt.split())
    print(f"jail B round trip during A's flood of 1,000 abandoned connections: {rtt.strip()}")
    assert int(figures["p50_us"]) < 10_000, rtt
    wait_for(lambda: fd_count(relay) == baseline, 10, "the relay's descriptors to return to their baseline")
    rss_after = rss_kib(relay)
    pss = open(f"/proc/{relay}/smaps_rollup").read().split("Pss:")[1].split()[0]
    print(f"relay VmRSS before the flood {rss_before} KiB, after {rss_after} KiB (Pss {pss} KiB)")
    assert rss_after - rss_before < 2048, (rss_before, rss_after)


def test_latency_and_throughput_against_a_direct_connection(proxy_world):
    a, host, client = proxy_world["a"], proxy_world["host"], proxy_world["client"]
    sink = HostService(host / "a" / "sink.sock", mode="sink", header=False)
    try:
        direct = subprocess.run([str(client), "rtt", str(host / "a" / "echo.sock"), "300"], capture_output=True, timeout=60)
        relayed = a.run("/bin/svcclient rtt /run/svc/echo.sock 300")
        bulk_direct = subprocess.run([str(client), "bulk", str(host / "a" / "sink.sock"), "512"], capture_output=True, timeout=120)
        bulk_relayed = a.run("/bin/svcclient bulk /run/sink.sock 512")
    finally:
        sink.close()
    print(f"round trip (connect, 4 bytes, echo, close): direct {direct.stdout.decode().strip()} | relayed {relayed.stdout.decode().strip()}")
    print(f"throughput one way into the host service: direct {bulk_direct.stdout.decode().strip()} | "
          f"relayed {bulk_relayed.stdout.decode().strip()}")
    assert direct.returncode == 0 and relayed.returncode == 0, (direct, relayed)
    assert bulk_direct.stdout.endswith(b"reply=536870912\n") and bulk_relayed.stdout.endswith(b"reply=536870912\n"), bulk_relayed


def test_a_full_backlog_closes_the_tenants_connection_after_the_timeout(proxy_world):
    """A host service that stops accepting: the relay tries for 1 s, then closes the tenant's
    connection with one log line, and never blocks (other connections go on meanwhile)."""
    a, host = proxy_world["a"], proxy_world["host"]
    path = host / "a" / "sink.sock"
    blocker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    blocker.bind(str(path))
    os.chmod(path, 0o666)
    blocker.listen(0)
    relay = a.relay()
    baseline = fd_count(relay)
    first = a.popen("/bin/svcclient /run/sink.sock </dev/null", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: fd_count(relay) == baseline + 2, 10, "the first connection to wait in the backlog")
        began = time.monotonic()
        second = a.run("/bin/svcclient /run/sink.sock </dev/null")
        took = time.monotonic() - began
        assert second.stdout == b"" and 0.9 < took < 3, (took, second)
        assert a.run("/bin/svcclient /run/svc/echo.sock", input=b"meanwhile").stdout == b"meanwhile"
        wait_for(lambda: "no room in its backlog" in a.text(), 5, "the log line")
    finally:
        first.kill()
        first.wait()
        blocker.close()
        path.unlink(missing_ok=True)
    wait_for(lambda: fd_count(relay) == baseline, 10, "the relay's descriptors to return to their baseline")


def test_without_a_user_namespace_the_relay_is_the_hosts_nobody(proxy_world, rootfs_sec, tmp_path):
    """--no-userns: init is host root, so the relay must drop to the host's nobody, without
    capabilities; the caller's uid in the header is the host uid, which is the jail's."""
    host, service = proxy_world["host"], proxy_world["services"]["a"]
    prefix_dir = pathlib.Path(tempfile.mkdtemp(prefix="jail-svc-nouserns-", dir="/tmp"))
    os.chmod(prefix_dir, 0o755)
    jail = None
    try:
        jail = ServiceJail(rootfs_sec, UID_A, "svc-nouserns", ["--no-userns", "--service", f"/run/svc/echo.sock={host}/a/echo.sock"],
                           tmp_path / "nouserns.log", str(prefix_dir / "n"))
        before = len(service.records())
        result = jail.run("/bin/svcclient /run/svc/echo.sock", input=b"no userns")
        assert result.returncode == 0 and result.stdout == b"no userns", result
        check_header(wait_records(service, before + 1)[-1], "svc-nouserns", UID_A)
        status = open(f"/proc/{jail.relay()}/status").read()
        assert status.split("Uid:")[1].split()[:3] == ["65534"] * 3, status
        assert status.split("CapEff:")[1].split()[0] == "0000000000000000"
        assert status.split("CapBnd:")[1].split()[0] == "0000000000000000"
    finally:
        if jail:
            jail.stop()
        shutil.rmtree(prefix_dir, ignore_errors=True)


def test_info_json_has_the_values_the_jail_started_with(proxy_world):
    a, host = proxy_world["a"], proxy_world["host"]
    text = a.run("cat /run/jail/info.json").stdout.decode()
    info = json.loads(text)
    assert info["version"] == 1 and info["name"] == "svc-a" and info["hostname"] == "tenant-a"
    assert info["uid"] == UID_A and info["gid"] == UID_A
    assert info["limits"] == {"memory": 256 << 20, "pids": 300, "cpus": None, "disk": None, "disk_inodes": None}
    assert [s["path"] for s in info["services"]] == ["/run/svc/echo.sock", "/run/raw.sock", "/run/down.sock", "/run/sink.sock"]
    assert [s["header"] for s in info["services"]] == ["proxy", "none", "proxy", "none"]
    assert info["jaild_version"] and abs(info["started"] - time.time()) < 3600
    assert str(host) not in text, "a host path is shown inside"
    listing = a.run("ls -ln /run/jail/info.json").stdout.decode().split()
    assert listing[0] == "-r--r--r--" and listing[2:4] == ["0", "0"], listing
    assert a.run("echo forged > /run/jail/info.json").returncode != 0
    # The host's view: `jaild list --json` names each service with its host path.
    rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, check=True).stdout)
    row = [r for r in rows if r["socket"] == a.socket][0]
    assert row["services"][0] == {"path": "/run/svc/echo.sock", "host_path": f"{host}/a/echo.sock"}
    assert len(row["services"]) == 4


def test_create_knows_service(tmp_path):
    """`jaild create` passes --service into the config and checks it as jaild would, before
    anything exists."""
    result = subprocess.run([JAILD, "create", "svc-create-check", "--uid", "62345", "--base", str(tmp_path),
                             "--service", "/run/x.sock"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "JAIL_CONFIG_DIR": str(tmp_path / "etc"), "JAIL_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 2 and "create: --service '/run/x.sock': expected JPATH=HOSTPATH" in result.stderr, result
    assert not (tmp_path / "etc" / "svc-create-check.conf").exists()


def test_relay_survives_a_killed_supervisor_and_works_after_adoption(proxy_world):
    a, service = proxy_world["a"], proxy_world["services"]["a"]
    relay = a.relay()
    before = len(service.records())
    in_flight = a.popen("/bin/svcclient /run/svc/echo.sock", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        in_flight.stdin.write(b"before ")
        in_flight.stdin.flush()
        a.proc.kill()
        a.proc.wait()
        a.launch()  # a new jaild adopts the jail
        wait_for(lambda: "adopted" in a.text(), 10, "the adoption line")
        in_flight.stdin.write(b"after")
        in_flight.stdin.close()
        assert in_flight.stdout.read() == b"before after"
        assert in_flight.wait(20) == 0
    finally:
        if in_flight.poll() is None:
            in_flight.kill()
            in_flight.wait()
    assert a.relay() == relay
    result = a.run("/bin/svcclient /run/svc/echo.sock", input=b"new after adoption")
    assert result.returncode == 0 and result.stdout == b"new after adoption", result
    records = wait_records(service, before + 2)
    check_header(records[-1], "svc-a", UID_A)


# ---- bad input: one line, nothing left ----------------------------------------------------------

def jail_cgroups():
    top = pathlib.Path("/sys/fs/cgroup/jail")
    return sorted(os.listdir(top)) if top.is_dir() else []


def start_refused(root, prefix, *service_args):
    cgroups_before = jail_cgroups()
    result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(root), "-a", prefix, "--jail-name", "svc-bad", *service_args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for suffix in (".sock", ".pid", ".ctl"):
        assert not os.path.exists(f"{prefix}-{UID_A}-{UID_A}{suffix}"), suffix
    states = pathlib.Path("/run/jail/state")
    assert not [p for p in (states.glob("*.state") if states.is_dir() else []) if f"{prefix}-" in p.read_text()]
    assert jail_cgroups() == cgroups_before
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and "svc-bad" in cmdline(pid)]
    return lines[0]


def test_bad_input_is_one_line_and_leaves_nothing(rootfs_sec, host_dir, tmp_path):
    prefix_dir = pathlib.Path(tempfile.mkdtemp(prefix="jail-svc-bad-", dir="/tmp"))
    os.chmod(prefix_dir, 0o755)
    prefix = str(prefix_dir / "bad")
    target = None
    outside = pathlib.Path(tempfile.mkdtemp(prefix="jail-svc-outside-"))
    link = rootfs_sec / "var" / "svc-out"
    not_socket = host_dir / "a" / "plain-file"
    try:
        os.makedirs(rootfs_sec / "var", exist_ok=True)
        os.symlink(str(outside), link)
        target = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target.bind(str(host_dir / "a" / "bad-target.sock"))
        os.chmod(host_dir / "a" / "bad-target.sock", 0o666)
        line = start_refused(rootfs_sec, prefix, "--service", f"/var/svc-out/x.sock={host_dir}/a/bad-target.sock")
        assert "symlink" in line, line
        assert os.listdir(outside) == [] and not os.path.lexists(rootfs_sec / "var" / "svc-out" / "x.sock")
        not_socket.write_text("not a socket")
        line = start_refused(rootfs_sec, prefix, "--service", f"/run/x.sock={not_socket}")
        assert "exists and is not a socket" in line, line
        line = start_refused(rootfs_sec, prefix, "--service", f"/run/x.sock={host_dir}/a/one.sock",
                             "--service", f"/run//x.sock={host_dir}/a/two.sock")
        assert "two services on /run/x.sock" in line, line
        line = start_refused(rootfs_sec, prefix, "--service", f"/run/x.sock={host_dir}/missing-dir/x.sock")
        assert "cannot open" in line and "missing-dir" in line, line
    finally:
        link.unlink(missing_ok=True)
        not_socket.unlink(missing_ok=True)
        (host_dir / "a" / "bad-target.sock").unlink(missing_ok=True)
        if target:
            target.close()
        shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(prefix_dir, ignore_errors=True)


def test_a_jail_with_a_service_stops_without_waiting_for_the_kill(proxy_world, rootfs_sec, tmp_path):
    """The relay is forked before init enters its Landlock domain, whose signal scope keeps
    init's SIGTERM from reaching it: init closes the relay's stop pipe instead. Before, every
    stop of a jail with --service waited the whole --stop-timeout (then init's exit killed it)."""
    host = proxy_world["host"]
    prefix_dir = pathlib.Path(tempfile.mkdtemp(prefix="jail-svc-stop-", dir="/tmp"))
    os.chmod(prefix_dir, 0o755)
    jail = None
    try:
        jail = ServiceJail(rootfs_sec, UID_A, "svc-stop", ["--stop-timeout", "20", "--service",
                                                           f"/run/svc/echo.sock={host}/a/echo.sock"],
                           tmp_path / "stop.log", str(prefix_dir / "s"))
        relay = jail.relay()
        begun = time.monotonic()
        jail.proc.send_signal(signal.SIGTERM)
        jail.proc.wait(30)
        assert time.monotonic() - begun < 5.0, jail.text()
        assert not pid_alive(relay)
    finally:
        if jail:
            jail.stop()
        shutil.rmtree(prefix_dir, ignore_errors=True)
