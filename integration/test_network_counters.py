"""Per-jail network bytes on the shared stack (issue 35, item 2): the kernel counts each jail's
own sockets' traffic (cgroup_skb programs, traffic.c) and `jaild metrics` / `jaild list --json`
show it. Three jails: one idle, one serving 20 MB to the host over TCP, one receiving 20 MB from
the host by TCP and UDP; then kill -9 of a supervisor and adoption: the counters do not go back."""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess

import pytest

from conftest import JAIL, JAILD, UID_A, UID_B, Jail, as_user, wait_for
from harness import free_port, pid_alive
from test_metrics import UID_C, exposition, metrics, rootfs_c  # noqa: F401 (rootfs_c is a fixture)

MB20 = 20_000_000
HALF = MB20 // 2
DATAGRAM = 1000

PROGRAM = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int six;  /* IPv6 (::1) instead of IPv4 (127.0.0.1) */

static int bound(int type, int port) {
    int fd = socket(six ? AF_INET6 : AF_INET, type, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int rc = six ? bind(fd, (struct sockaddr *)&a6, sizeof a6) : bind(fd, (struct sockaddr *)&a, sizeof a);
    if (fd < 0 || rc < 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(fd, 1) < 0) { perror("listen"); exit(1); }
    printf("ready\n");
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv) {
    static char buffer[1 << 16];
    if (argc != 4 && argc != 5) { fprintf(stderr, "usage: netprobe send|recv|udp PORT BYTES [6]\n"); return 2; }
    six = argc == 5;
    int port = atoi(argv[2]);
    long long want = atoll(argv[3]), total = 0;
    if (strcmp(argv[1], "udp") == 0) {
        int fd = bound(SOCK_DGRAM, port);
        struct timeval idle = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
        for (;;) {  /* until the empty datagram that ends it, or 5 s of silence */
            ssize_t n = recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            total += n;
        }
    } else {
        int listener = bound(SOCK_STREAM, port);
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) { perror("accept"); return 1; }
        if (strcmp(argv[1], "send") == 0) {
            memset(buffer, 'x', sizeof buffer);
            while (total < want) {
                ssize_t n = write(fd, buffer, want - total < (long long)sizeof buffer ? (size_t)(want - total) : sizeof buffer);
                if (n <= 0) { perror("write"); return 1; }
                total += n;
            }
        } else {
            ssize_t n;
            while ((n = read(fd, buffer, sizeof buffer)) > 0) total += n;
        }
        close(fd);
    }
    printf("%lld\n", total);
    return 0;
}
"""


@pytest.fixture(scope="module")
def netprobe_binary(tmp_path_factory):
    directory = tmp_path_factory.mktemp("netprobe")
    (directory / "netprobe.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(directory / "netprobe"), str(directory / "netprobe.c")],
                   check=True)
    return directory / "netprobe"


@pytest.fixture(scope="module")
def traffic_jails(rootfs_a, rootfs_b, rootfs_c, netprobe_binary):  # noqa: F811
    """idle (A), server (B) and receiver (C), each rootfs with /bin/netprobe."""
    started = {}
    installed = []
    try:
        for root in (rootfs_a, rootfs_b, rootfs_c):
            shutil.copy(netprobe_binary, root / "bin" / "netprobe")
            installed.append(root / "bin" / "netprobe")
        for role, uid, root in (("idle", UID_A, rootfs_a), ("server", UID_B, rootfs_b), ("receiver", UID_C, rootfs_c)):
            started[role] = Jail(root, uid).start()
        yield started
    finally:
        for jail in started.values():
            init = jail.init_pid
            jail.stop()
            if init and pid_alive(init):  # adopted: init is no child of the supervisor
                os.kill(init, 9)
        for path in installed:
            path.unlink(missing_ok=True)


def probe(jail, *args):
    """netprobe inside the jail, once it is listening: the running process."""
    process = subprocess.Popen([JAIL, "-c", "exec /bin/netprobe " + " ".join(map(str, args))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={"JAIL_SOCKET": jail.socket, "PATH": "/usr/bin:/bin"},
                               preexec_fn=as_user(jail.uid))
    line = process.stdout.readline()
    assert line == "ready\n", line + process.stderr.read()
    return process


def finish(process):
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return int(out.strip())


def counters(uid):
    figures = metrics()
    return {direction: (figures.get((f"jail_network_{direction}_bytes_total", uid)),
                        figures.get((f"jail_network_{direction}_packets_total", uid)))
            for direction in ("receive", "transmit")}


def test_each_jail_counts_its_own_traffic_and_keeps_it_across_adoption(traffic_jails):
    before = {role: counters(jail.uid) for role, jail in traffic_jails.items()}
    for role, figures in before.items():
        assert figures["receive"][0] is not None and figures["transmit"][0] is not None, (role, exposition())

    # The server sends 20 MB to a client on the host.
    port = free_port()
    server = probe(traffic_jails["server"], "send", port, MB20)
    received = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        while chunk := client.recv(1 << 16):
            received += len(chunk)
    assert finish(server) == MB20 and received == MB20

    # The receiver gets 10 MB by TCP and 10 MB by UDP from the host.
    port = free_port()
    tcp = probe(traffic_jails["receiver"], "recv", port, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"y" * HALF)
    assert finish(tcp) == HALF
    port = free_port()
    udp = probe(traffic_jails["receiver"], "udp", port, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        payload = b"z" * DATAGRAM
        for _ in range(HALF // DATAGRAM):
            client.sendto(payload, ("127.0.0.1", port))
        for _ in range(3):
            client.sendto(b"", ("127.0.0.1", port))
    got_udp = finish(udp)
    assert got_udp > 0

    text = exposition()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for family in ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets"):
        assert f"# HELP jail_network_{family}_total " in text and f"# TYPE jail_network_{family}_total counter" in text
    after = {role: counters(jail.uid) for role, jail in traffic_jails.items()}
    print("network counters before/after:", before, after, "udp payload received:", got_udp)

    sent = after["server"]["transmit"][0] - before["server"]["transmit"][0]
    assert MB20 <= sent <= 1.1 * MB20, sent
    assert after["server"]["receive"][0] - before["server"]["receive"][0] < 0.05 * MB20  # its acks' echo only
    # Counted at the socket's ingress filter, before any queue: every datagram that reached it.
    got = after["receiver"]["receive"][0] - before["receiver"]["receive"][0]
    assert MB20 <= got <= 1.1 * MB20, got
    assert after["receiver"]["transmit"][0] - before["receiver"]["transmit"][0] < 0.05 * MB20
    assert after["receiver"]["receive"][1] > before["receiver"]["receive"][1] + HALF // DATAGRAM
    assert after["idle"] == before["idle"]

    listed = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, timeout=30,
                                       check=True).stdout)
    row = next(r for r in listed if r["socket"] == traffic_jails["server"].socket)
    assert row["network_tx_bytes"] >= after["server"]["transmit"][0]
    assert row["network_rx_bytes"] >= after["server"]["receive"][0]

    # kill -9 of the server's supervisor, then jaild again: it adopts, the counters go on.
    server_jail = traffic_jails["server"]
    os.kill(server_jail.supervisor, 9)
    dead = server_jail.supervisor
    wait_for(lambda: not pid_alive(dead), 10, "the supervisor to die")
    result = subprocess.run(server_jail.command(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    server_jail.supervisor = int(open(server_jail.pidfile).read())
    assert server_jail.supervisor != dead
    adopted = counters(server_jail.uid)
    assert adopted["transmit"][0] >= after["server"]["transmit"][0]
    assert adopted["receive"][0] >= after["server"]["receive"][0]

    # Still counting after the adoption.
    port = free_port()
    server = probe(server_jail, "send", port, 1_000_000)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        while client.recv(1 << 16):
            pass
    finish(server)
    ipv4 = counters(server_jail.uid)["transmit"][0]
    assert ipv4 >= adopted["transmit"][0] + 1_000_000

    # IPv6 is counted too.
    port = free_port()
    server = probe(server_jail, "send", port, 1_000_000, 6)
    with socket.create_connection(("::1", port), timeout=30) as client:
        while client.recv(1 << 16):
            pass
    finish(server)
    assert 1_000_000 <= counters(server_jail.uid)["transmit"][0] - ipv4 <= 1_100_000


def test_the_state_file_records_the_counter_map(traffic_jails):
    for jail in traffic_jails.values():
        states = [p.read_text() for p in pathlib.Path("/run/jail/state").glob("*.state")]
        mine = [s for s in states if f"socket={jail.socket}\n" in s]
        assert len(mine) == 1
        assert re.search(r"^traffic=\d+$", mine[0], re.M), mine[0]
