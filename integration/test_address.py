"""A jail's own addresses (issue 33): `--address` and `--loopback`, FreeBSD's jail IP on the
shared network stack, by cgroup sock_addr and cgroup_skb programs (address.c).

The network rule holds: each test runs in a network namespace the module makes (`ip netns
add`), with 192.0.2.10, .11 and .12 (TEST-NET-1) on a veth pair in it as the host's "public"
addresses (this kernel has no dummy driver), jaild started in it with `nsenter --net` (not `ip
netns exec`, which remounts /sys and with it the cgroup file systems), and the namespace's own
listeners and clients made by a thread that joined it (setns). The namespace goes at the end."""
import ctypes
import json
import os
import secrets
import shutil
import smtplib
import socket
import subprocess
import threading

import pytest

from conftest import JAIL, JAILD, UID_A, UID_B, Jail, as_user, build_rootfs, cached_debian_rootfs, wait_for

A, B, C = "192.0.2.10", "192.0.2.11", "192.0.2.12"
A6, C6 = "2001:db8::10", "2001:db8::12"  # IPv6 documentation prefix
LO_A, LO_B = "127.0.10.1", "127.0.11.1"
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module")
def netns():
    name = f"jailaddr{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        def ip(*args):
            subprocess.run(["ip", "-n", name, *args], check=True)
        ip("link", "set", "lo", "up")
        ip("link", "add", "pub0", "type", "veth", "peer", "name", "pub1")
        for address in (A, B, C):
            ip("address", "add", f"{address}/24", "dev", "pub0")
        for address in (A6, C6):
            ip("address", "add", f"{address}/64", "dev", "pub0", "nodad")  # usable at once
        ip("link", "set", "pub0", "up")
        ip("link", "set", "pub1", "up")
        # Ping sockets for every group, so that only the jail's own program refuses them.
        subprocess.run(["nsenter", f"--net=/run/netns/{name}", "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def in_netns(ns, make):
    """Runs make() in a thread that joined the namespace: the sockets it makes are the namespace's."""
    out = {}

    def run():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if LIBC.setns(fd, CLONE_NEWNET) != 0:
                out["error"] = OSError(ctypes.get_errno(), "setns")
                return
        finally:
            os.close(fd)
        try:
            out["value"] = make()
        except BaseException as error:  # handed to the caller
            out["error"] = error
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def addrprobe(tmp_path_factory):
    out = tmp_path_factory.mktemp("addrprobe") / "addrprobe"
    source = os.path.join(os.path.dirname(__file__), "probe", "addrprobe.c")
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), source], check=True)
    return out


def rootfs_with_probe(tmp_path_factory, uid, probe, name):
    root = build_rootfs(tmp_path_factory.mktemp("rootfs") / name, uid, f"Jail address rootfs {name}")
    shutil.copy(probe, root / "bin" / "addrprobe")
    os.chmod(root / "bin" / "addrprobe", 0o755)
    return root


@pytest.fixture(scope="module")
def root_a(tmp_path_factory, addrprobe):
    return rootfs_with_probe(tmp_path_factory, UID_A, addrprobe, "addr-a")


@pytest.fixture(scope="module")
def root_b(tmp_path_factory, addrprobe):
    return rootfs_with_probe(tmp_path_factory, UID_B, addrprobe, "addr-b")


class NetnsJail(Jail):
    """A jail whose jaild runs in the test's network namespace (so its processes do too)."""

    def __init__(self, ns, root, uid, args=(), prefix=None):
        super().__init__(root, uid, args, prefix=prefix)
        self.ns = ns

    def command(self):
        return ["nsenter", f"--net=/run/netns/{self.ns}"] + super().command()


def probe(jail, *args):
    text = jail.run(" ".join(["/bin/addrprobe", *args])).stdout.decode()
    assert text.startswith(args[0] + ": "), text
    return text.strip().split(": ", 1)[1]


def serving(ns, address, port):
    def connect():
        try:
            with socket.create_connection((address, port), timeout=2) as s:
                return s.makefile().readline().strip()
        except OSError:
            return None
    return lambda: in_netns(ns, connect)


def accept_one(listener):
    """Starts accepting one connection (closed at once, so the jail's reader sees EOF); the
    list gets the peer's address."""
    peers = []

    def run():
        connection, peer = listener.accept()
        connection.close()
        peers.append(peer[0])
    thread = threading.Thread(target=run)
    thread.start()
    return thread, peers


def host_state():
    """What a start and stop must leave as it was: jaild's records and reserved ports, and
    which jail programs the kernel has."""
    records = sorted(os.listdir("/run/jail/ports")) if os.path.isdir("/run/jail/ports") else []
    with open("/proc/sys/net/ipv4/ip_local_reserved_ports") as f:
        reserved = f.read()
    programs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout)
    names = sorted(p.get("name", "") for p in programs if p.get("name", "").startswith("jail_"))
    maps = json.loads(subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True, check=True).stdout)
    owned = [m["id"] for m in maps if m.get("name") == "jail_owned_port" and m.get("bytes_key") == 24]
    return records, reserved, names, owned


@pytest.fixture
def leaves_host_as_found():
    if not shutil.which("bpftool"):
        pytest.fail("bpftool is missing (scripts/test installs it)")
    before = host_state()
    yield
    wait_for(lambda: host_state() == before, 10, "the owned-ports map, reserved ports and programs as they were")


def test_two_jails_own_the_same_ports_on_their_own_addresses(netns, root_a, root_b, leaves_host_as_found):
    common = ["--ports", "tcp:2525,udp:5353", "--ports-exclusive"]
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A, *common,
                                          "--boot", "/bin/addrprobe serve 0.0.0.0 2525 jail-a"]) as a, \
         NetnsJail(netns, root_b, UID_B, ["--address", B, "--loopback", LO_B, *common,
                                          "--boot", "/bin/addrprobe serve 0.0.0.0 2525 jail-b"]) as b:
        wait_for(serving(netns, A, 2525), 10, "jail A's server")
        wait_for(serving(netns, B, 2525), 10, "jail B's server")
        assert serving(netns, A, 2525)() == "jail-a"
        assert serving(netns, B, 2525)() == "jail-b"
        listening = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "ss", "-Hltn", "sport = :2525"],
                                   capture_output=True, text=True, check=True).stdout
        assert sorted(line.split()[3] for line in listening.splitlines()) == [f"{A}:2525", f"{B}:2525"]
        listed = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, check=True).stdout)
        mine = {j["socket"]: j for j in listed if j["socket"] in (a.socket, b.socket)}
        assert (mine[a.socket]["addresses"], mine[a.socket]["loopback"]) == ([A], LO_A)
        assert (mine[b.socket]["addresses"], mine[b.socket]["loopback"]) == ([B], LO_B)
        table = subprocess.run([JAILD, "list"], capture_output=True, text=True, check=True).stdout
        assert f"{A},lo={LO_A}" in table
        # UDP too: each jail binds its own 5353.
        assert probe(a, "bind", "udp", "0.0.0.0", "5353") == f"ok {A}:5353"
        assert probe(b, "bind", "udp", "0.0.0.0", "5353") == f"ok {B}:5353"


def test_binds_connects_and_datagrams_keep_the_jails_address(netns, root_a, leaves_host_as_found):
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A]) as a:
        for other in (B, C, "10.9.9.9"):
            assert probe(a, "bind", "tcp", other, "2600") == "EADDRNOTAVAIL"
            assert probe(a, "bind", "udp", other, "2600") == "EADDRNOTAVAIL"
        assert probe(a, "bind", "tcp", "0.0.0.0", "2600") == f"ok {A}:2600"
        assert probe(a, "bind", "tcp", A, "2600") == f"ok {A}:2600"
        assert probe(a, "bind", "tcp", "::", "2600") == f"ok ::ffff:{A}:2600"  # dual-stack: the jail's IPv4
        assert probe(a, "bind", "tcp", f"::ffff:{B}", "2600") == "EADDRNOTAVAIL"  # v4-mapped
        assert probe(a, "bind", "tcp", "::1", "2600") == "EADDRNOTAVAIL"
        assert probe(a, "bind", "tcp", "0.0.0.0", "0").startswith(f"ok {A}:")  # port 0 too

        # TCP connect, IPv6 to a v4-mapped destination and UDP sendto to C arrive from A.
        def tcp_listener():
            s = socket.socket()
            s.bind((C, 0))
            s.listen(4)
            return s
        listener = in_netns(netns, tcp_listener)
        port = listener.getsockname()[1]
        udp = in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp.bind((C, 0))
        try:
            listener.settimeout(10)
            udp.settimeout(10)
            for destination in (C, f"::ffff:{C}"):
                thread, peers = accept_one(listener)
                assert probe(a, "connect", destination, str(port)).startswith("ok")
                thread.join(15)
                assert peers == [A], destination
            assert probe(a, "sendto", C, str(udp.getsockname()[1])).startswith("ok")
            data, source = udp.recvfrom(100)
            assert (data, source[0]) == (b"hello\n", A)
        finally:
            listener.close()
            udp.close()

        # A UDP socket autobound by sendto (to the wildcard) receives what is sent to A only.
        waiting = subprocess.Popen([JAIL, "-c", f"/bin/addrprobe udpwait {C} 9 10000"], stdout=subprocess.PIPE,
                                   env={"JAIL_SOCKET": a.socket, "PATH": "/usr/bin:/bin"}, preexec_fn=as_user(UID_A))
        try:
            bound = waiting.stdout.readline().decode()
            assert bound.startswith("udpwait: bound 0.0.0.0:"), bound
            autobound = int(bound.rsplit(":", 1)[1])

            def send():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"to-c", (C, autobound))   # first: would arrive first if it arrived
                    s.sendto(b"last", (A, autobound))
            in_netns(netns, send)
            out = waiting.communicate(timeout=15)[0].decode()
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        assert "received last" in out and "to-c" not in out, out


def test_an_ipv6_address_and_a_loopback_only_jail(netns, root_a, leaves_host_as_found):
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--address", A6, "--loopback", LO_A]) as a:
        assert probe(a, "bind", "tcp", "::", "2900") == f"ok {A6}:2900"        # the first IPv6 address
        assert probe(a, "bind", "tcp", "0.0.0.0", "2900") == f"ok {A}:2900"
        assert probe(a, "bind", "udp", C6, "2900") == "EADDRNOTAVAIL"
        listener = in_netns(netns, lambda: socket.create_server((C6, 0), family=socket.AF_INET6))
        try:
            listener.settimeout(10)
            thread, peers = accept_one(listener)
            assert probe(a, "connect", C6, str(listener.getsockname()[1])).startswith("ok")
            thread.join(15)
            assert peers == [A6]
        finally:
            listener.close()
        udp = in_netns(netns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        try:
            udp.bind((C6, 0))
            udp.settimeout(10)
            assert probe(a, "sendto", C6, str(udp.getsockname()[1])).startswith("ok")
            assert udp.recvfrom(100)[1][0] == A6
        finally:
            udp.close()
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A]) as a:
        assert probe(a, "connect", C6, "9") == "ENETUNREACH"  # no IPv6 address of its own
    # --loopback alone: a private localhost, every other address as before.
    with NetnsJail(netns, root_a, UID_A, ["--loopback", LO_A]) as a:
        assert probe(a, "bind", "tcp", "127.0.0.1", "2900") == f"ok {LO_A}:2900"
        assert probe(a, "bind", "tcp", C, "2900") == f"ok {C}:2900"
        assert probe(a, "bind", "tcp", "0.0.0.0", "2900") == "ok 0.0.0.0:2900"
        assert probe(a, "bind", "tcp", "127.0.0.2", "2900") == "EADDRNOTAVAIL"
        assert probe(a, "connect", LO_B, "9") == "ECONNREFUSED"


def test_routes_around_the_hooks_are_closed(netns, root_a, leaves_host_as_found):
    # The control: a jail without --address in the same namespace may open a ping socket.
    with NetnsJail(netns, root_a, UID_A, []) as plain:
        assert "ping-socket: ok" in plain.run(f"/bin/addrprobe ping {C}").stdout.decode()
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A]) as a:
        out = a.run(f"/bin/addrprobe ping {C}").stdout.decode()
        assert "ping-socket: EPERM" in out and "ping6-socket: EPERM" in out and "raw-socket: EPERM" in out, out
        out = a.run("/bin/addrprobe option").stdout.decode()
        assert "freebind: EPERM" in out and "freebind6: EPERM" in out and "transparent: EPERM" in out, out
        assert "reuseaddr: ok" in out  # other options pass


def test_each_jail_has_a_localhost_of_its_own(netns, root_a, root_b, leaves_host_as_found):
    def host_listener():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        return s
    host = in_netns(netns, host_listener)
    host_port = host.getsockname()[1]
    try:
        b_args = ["--address", B, "--loopback", LO_B, "--boot", "/bin/addrprobe serve 127.0.0.1 5432 pg-b"]
        with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A,
                                              "--boot", "/bin/addrprobe serve 127.0.0.1 5432 pg-a"]) as a, \
             NetnsJail(netns, root_b, UID_B, b_args) as b:
            wait_for(serving(netns, LO_A, 5432), 10, "jail A's local server")
            wait_for(serving(netns, LO_B, 5432), 10, "jail B's local server")
            assert probe(a, "connect", "127.0.0.1", "5432").endswith(" pg-a")
            assert probe(b, "connect", "127.0.0.1", "5432").endswith(" pg-b")
            assert probe(a, "connect", "127.0.0.1", "5432").startswith(f"ok {LO_A}:")
            # Not the namespace's 127.0.0.1, not B's loopback, not ::1.
            assert probe(a, "connect", "127.0.0.1", str(host_port)) == "ECONNREFUSED"
            assert probe(a, "connect", LO_B, "5432") == "ECONNREFUSED"
            assert probe(a, "connect", "::1", str(host_port)) == "ECONNREFUSED"
            assert probe(a, "sendto", LO_B, "5432") == "ECONNREFUSED"
            host.settimeout(0)
            with pytest.raises(BlockingIOError):
                host.accept()  # the host's listener never saw the jail
        # --allow-host-loopback: the namespace's 127.0.0.1 and B's loopback are reachable, and
        # the jail's own 127.0.0.1 server still answers on its port.
        with NetnsJail(netns, root_b, UID_B, b_args), \
             NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A, "--allow-host-loopback",
                                              "--boot", "/bin/addrprobe serve 127.0.0.1 5432 pg-a"]) as a:
            wait_for(serving(netns, LO_A, 5432), 10, "jail A's local server")
            wait_for(serving(netns, LO_B, 5432), 10, "jail B's local server")
            assert probe(a, "connect", LO_B, "5432").endswith(" pg-b")
            assert probe(a, "connect", "127.0.0.1", "5432").endswith(" pg-a")
            host.settimeout(10)
            thread, peers = accept_one(host)
            assert probe(a, "connect", "127.0.0.1", str(host_port)).startswith(f"ok {LO_A}:")
            thread.join(15)
            assert peers == [LO_A]
    finally:
        host.close()


def test_loopback_is_chosen_from_the_pool_and_kept(netns, root_a, leaves_host_as_found):
    store = "/var/lib/jail/loopback"
    before = set(os.listdir(store)) if os.path.isdir(store) else set()
    pool = ["--loopback-pool", "127.201.0.0/29"]
    try:
        with NetnsJail(netns, root_a, UID_A, ["--address", A, *pool]) as a:
            chosen = [j["loopback"] for j in json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True,
                                                                       text=True, check=True).stdout)
                      if j["socket"] == a.socket]
            assert chosen == ["127.201.0.1"]
            assert probe(a, "bind", "tcp", "127.0.0.1", "7000") == "ok 127.201.0.1:7000"
        with NetnsJail(netns, root_a, UID_A, ["--address", A, *pool]) as a:  # the same again
            assert probe(a, "bind", "tcp", "127.0.0.1", "7000") == "ok 127.201.0.1:7000"
    finally:
        for name in set(os.listdir(store)) - before:
            os.unlink(os.path.join(store, name))


def refused(ns, uid, root, args):
    jail = NetnsJail(ns, root, uid, args)
    result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    if result.returncode == 0:  # started after all: stop it before failing
        jail.supervisor = int(open(jail.pidfile).read())
        jail.stop()
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_addresses_must_exist_and_are_not_shared_unless_both_say_so(netns, root_a, root_b, leaves_host_as_found):
    assert refused(netns, UID_A, root_a, ["--address", "192.0.2.99"]) == (
        "jaild: --address 192.0.2.99 is not an address of this host (add it first: ip address add 192.0.2.99/32 dev IFACE)")
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A, "--ports", "tcp:2525"]):
        text = refused(netns, UID_B, root_b, ["--address", A, "--loopback", LO_B])
        assert text.startswith(f"jaild: address {A} is the jail on ") and "--address-shared" in text
        text = refused(netns, UID_B, root_b, ["--address", B, "--loopback", LO_A])
        assert text.startswith(f"jaild: loopback address {LO_A} is the jail on ")
        # A jail without --address owns its ports on every address: it meets A's on A's.
        text = refused(netns, UID_B, root_b, ["--ports", "tcp:2525", "--ports-exclusive"])
        assert "ports tcp:2525 belong to the jail on" in text and "owns its ports on every address" in text
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A, "--address-shared"]):
        with NetnsJail(netns, root_b, UID_B, ["--address", A, "--loopback", LO_B, "--address-shared"]) as b:
            assert probe(b, "bind", "tcp", "0.0.0.0", "2700") == f"ok {A}:2700"


def test_a_jail_without_an_address_cannot_take_an_address_jails_port(netns, root_a, root_b, leaves_host_as_found):
    with NetnsJail(netns, root_a, UID_A, ["--address", A, "--loopback", LO_A, "--ports", "tcp:2626"]):
        with NetnsJail(netns, root_b, UID_B, []) as plain:
            # The wildcard would cover A's 2626: the post-bind check finds "owned somewhere".
            assert probe(plain, "bind", "tcp", "0.0.0.0", "2626") == "EPERM"
            assert probe(plain, "bind", "tcp", A, "2626") == "EPERM"
            assert probe(plain, "bind", "tcp", B, "2626") == f"ok {B}:2626"  # another address: free
            assert probe(plain, "bind", "tcp", LO_A, "2800") == "EPERM"       # A's loopback is A's whole


# Debian's daemons as shipped, on the wildcard: sshd's default ListenAddress (0.0.0.0 and ::),
# exim on 0.0.0.0 port 25; the bind program puts each on the jail's own address.
DEBIAN_RC = """#!/bin/sh
set -e
mkdir -p /run/sshd
syslogd -O /var/log/messages
ssh-keygen -A
/usr/sbin/sshd
/usr/sbin/exim4 -bd -q30m -oX 0.0.0.0.25
"""


def debian_tenant(base, name):
    root = base / name
    subprocess.run(["cp", "-a", str(cached_debian_rootfs()), str(root)], check=True)
    (root / "etc" / "rc.jail").write_text(DEBIAN_RC)
    os.chmod(root / "etc" / "rc.jail", 0o755)
    (root / "etc" / "tenant").write_text(name + "\n")
    key = base / f"{name}_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh_dir = root / "home" / "work" / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(str(key) + ".pub", ssh_dir / "authorized_keys")
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, UID_A, UID_A)
    return root, key


def test_two_tenants_each_run_sshd_and_exim_on_their_own_address(netns, tmp_path, leaves_host_as_found):
    root_1, key_1 = debian_tenant(tmp_path, "tenant-1")
    root_2, key_2 = debian_tenant(tmp_path, "tenant-2")
    args = ["--ports", "tcp:22,tcp:25", "--ports-exclusive", "--rc", "/etc/rc.jail", "--rc-required"]
    with NetnsJail(netns, root_1, UID_A, ["--address", A, "--loopback", LO_A, *args], prefix="/run/jail/addr1"), \
         NetnsJail(netns, root_2, UID_A, ["--address", B, "--loopback", LO_B, *args], prefix="/run/jail/addr2"):
        listening = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "ss", "-Hltn"], capture_output=True,
                                   text=True, check=True).stdout
        bound = sorted(line.split()[3] for line in listening.splitlines())
        for address in (A, B):
            assert f"{address}:22" in bound and f"{address}:25" in bound, bound
        for address, key, name, root in ((A, key_1, "tenant-1", root_1), (B, key_2, "tenant-2", root_2)):
            ssh = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "ssh", "-i", str(key),
                                  "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                  "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                                  f"work@{address}", "cat /etc/tenant; id -u"],
                                 capture_output=True, text=True, timeout=60)
            assert ssh.stdout.split() == [name, str(UID_A)], (address, ssh.stdout, ssh.stderr)
            token = f"mail-for-{name}-" + secrets.token_hex(6)

            def send(address=address, token=token):
                with smtplib.SMTP(address, 25, timeout=10) as smtp:
                    return smtp.sendmail("tester@localhost", ["work@localhost"], f"Subject: {token}\n\n{token}\n")
            assert in_netns(netns, send) == {}
            mailbox = root / "var" / "mail" / "work"
            wait_for(lambda: mailbox.exists() and token in mailbox.read_text(errors="replace"), 15,
                     f"the mail to land in {name}'s mailbox")
        for root, other in ((root_1, "tenant-2"), (root_2, "tenant-1")):
            assert f"mail-for-{other}" not in (root / "var" / "mail" / "work").read_text(errors="replace")
