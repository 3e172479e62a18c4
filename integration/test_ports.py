"""Port ownership on the shared network (issues 9, 15, 22): `--ports` is enforced by a cgroup-BPF
bind filter on the jail's cgroup, for IPv4 and IPv6, TCP and UDP, whatever the uid inside; it
waives CAP_NET_BIND_SERVICE for the jail's own ports; and a post-bind check on every jail's
cgroup keeps every other jail off them, however the port was chosen."""
import json
import os
import random
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import urllib.request

import pytest

from conftest import JAILD, UID_A, UID_B, Jail, outcome, probe, wait_for

FAMILIES = ["tcp4", "tcp6", "udp4", "udp6"]


# The attacks of issue 22 fail with the user namespace on (the default) and without it.
MODES = pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])


def free_port(low=20000):
    """A port free for TCP and UDP on 127.0.0.1 and ::1 right now."""
    for port in range(low, 60000):
        sockets = []
        try:
            for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(family, kind)
                    sockets.append(s)
                    s.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port")


def bpf_programs(cgroup_dir):
    if not shutil.which("bpftool"):
        pytest.fail("bpftool is missing (scripts/test installs it)")
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup_dir], capture_output=True, text=True).stdout
    return sorted((p["attach_type"], p["name"]) for p in json.loads(out or "[]"))


def test_only_listed_ports_bind_for_every_uid(rootfs_sec):
    mine = free_port()
    other = free_port(mine + 1)
    with Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{mine},udp:{mine}"]) as jail:
        for root in (False, True):
            for family in FAMILIES:
                assert outcome(jail, "bind", family, str(mine), root=root) == "ok", (family, root)
                assert outcome(jail, "bind", family, str(other), root=root) == "EPERM", (family, root)
                assert outcome(jail, "bind", family, "0", root=root) == "ok", (family, root)  # ephemeral
        cgroup = f"/sys/fs/cgroup/unified/jail/jail-{UID_A}-{UID_A}"
        assert bpf_programs(cgroup) == [("cgroup_inet4_bind", "jail_ports4"), ("cgroup_inet4_post_bind", "jail_owned4"),
                                        ("cgroup_inet6_bind", "jail_ports6"), ("cgroup_inet6_post_bind", "jail_owned6"),
                                        ("cgroup_inet_egress", "jail_tx"), ("cgroup_inet_ingress", "jail_rx")]  # network counters
        state = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True).stdout)
        assert [j["ports"] for j in state if j["socket"] == jail.socket] == [f"tcp:{mine},udp:{mine}"]
    assert not os.path.exists(cgroup)
    names = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    for name in ("jail_ports4", "jail_ports6", "jail_owned4", "jail_owned6", "jail_rx", "jail_tx"):
        assert name not in names  # detached and freed


def test_outgoing_connections_still_work(rootfs_sec):
    mine = free_port()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        with Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{mine}"]) as jail:
            accepted = []
            t = threading.Thread(target=lambda: accepted.append(server.accept()))
            t.start()
            text = jail.run(f"/bin/jailprobe connect4 {port}").stdout.decode()
            t.join(10)
            assert "connect4: ok" in text
            assert accepted
            accepted[0][0].close()
    finally:
        server.close()


def free_low_port(low=81):
    return next(p for p in range(low, 1024) if free_port(p) == p)


@MODES
def test_own_low_ports_bind_without_any_capability(rootfs_sec, mode):
    low = free_low_port()
    other_low = free_low_port(low + 1)
    with Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{low},udp:{low}", *mode]) as jail:
        for family in FAMILIES:
            assert outcome(jail, "bind", family, str(low), root=False) == "ok", family
        assert outcome(jail, "bind", "tcp4", str(other_low), root=False) == "EPERM"
        assert outcome(jail, "bind", "tcp6", str(other_low), root=False) == "EPERM"
        assert outcome(jail, "bind", "tcp4", str(low), root=True) == "ok"
        assert outcome(jail, "bind", "tcp4", str(other_low), root=True) == "EPERM"
        assert "CapEff:\t0000000000000000" in jail.run("grep CapEff /proc/self/status").stdout.decode()


def test_net_bind_service_without_ports_is_refused(rootfs_sec):
    jail = Jail(rootfs_sec, UID_A, ["--cap", "NET_BIND_SERVICE"])
    result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    if result.returncode == 0:  # started after all: stop it (by its pid) before failing
        jail.supervisor = int(open(jail.pidfile).read())
        jail.stop()
    assert result.returncode != 0
    assert "--cap NET_BIND_SERVICE: use --ports (e.g. --ports tcp:80)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_net_bind_service_with_ports_is_accepted_and_changes_nothing(rootfs_sec):
    low = free_low_port()
    other_low = free_low_port(low + 1)
    with Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{low}", "--cap", "NET_BIND_SERVICE"]) as jail:
        assert outcome(jail, "bind", "tcp4", str(low), root=False) == "ok"
        assert outcome(jail, "bind", "tcp4", str(other_low), root=False) == "EPERM"


def test_two_jails_each_bind_only_their_own(rootfs_sec, rootfs_sec_b):
    port_a = free_port()
    port_b = free_port(port_a + 1)
    a = Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{port_a}"]).start()
    b = Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{port_b}"]).start()
    try:
        assert outcome(a, "bind", "tcp4", str(port_a)) == "ok"
        assert outcome(a, "bind", "tcp4", str(port_b)) == "EPERM"
        assert outcome(b, "bind", "tcp4", str(port_b)) == "ok"
        assert outcome(b, "bind", "tcp4", str(port_a)) == "EPERM"
    finally:
        a.stop()
        b.stop()


def test_overlapping_ports_warn_or_refuse(rootfs_sec, rootfs_sec_b):
    port = free_port()
    a = Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{port}-{port + 5}"]).start()
    try:
        refused = subprocess.run([JAILD, "-u", str(UID_B), "-r", str(rootfs_sec_b), "--ports", f"tcp:{port + 3}",
                                  "--ports-exclusive"], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1
        assert refused.stderr == f"jaild: ports tcp:{port + 3} belong to the jail on {a.socket} (--ports-exclusive)\n"
        b = Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{port + 3},udp:{port}"])
        result = subprocess.run(b.command(), capture_output=True, text=True, timeout=30)
        try:
            assert result.returncode == 0
            assert result.stderr == f"jaild: warning: ports tcp:{port + 3} are also the ports of the jail on {a.socket}\n"
        finally:
            b.supervisor = int(open(b.pidfile).read()) if os.path.exists(b.pidfile) else None
            b.stop()
    finally:
        a.stop()


def test_bad_port_specs_are_refused(rootfs_sec):
    for spec, reason in (("25", "'25' is not tcp:PORT[-PORT] or udp:PORT[-PORT]"),
                         ("tcp:0", "'tcp:0' has no valid port or range (1-65535, low-high)"),
                         ("tcp:90-80", "'tcp:90-80' has no valid port or range (1-65535, low-high)")):
        result = subprocess.run([JAILD, "-u", str(UID_A), "-r", str(rootfs_sec), "--ports", spec], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode != 0
        assert f"--ports '{spec}': {reason}" in result.stderr


# ---- issue 22 item 4: another jail's port by any route ------------------------------------------

def ephemeral_port():
    """A port free right now inside the kernel's ephemeral range, where bind(0) may land."""
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    return free_port(random.randint(low, high - 2000))


def jail_cgroup(uid):
    return f"/sys/fs/cgroup/unified/jail/jail-{uid}-{uid}"


CHOSEN_PORT = r"""
import errno, socket, struct, sys
kind, port, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = socket.AF_INET6 if kind.endswith("6") else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 51, struct.pack("<HH", port, port))  # IP_LOCAL_PORT_RANGE: port-port
address = "::1" if family == socket.AF_INET6 else "127.0.0.1"
try:
    if how == "bind":
        s.bind((address, 0))
    else:
        s.connect((address, int(sys.argv[4])))
    print("bound", s.getsockname()[1])
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def chosen_port_in_cgroup(cgroup, kind, port, how="bind", target=0):
    """IP_LOCAL_PORT_RANGE then bind(0) (or connect) from a host process put into a jail's
    cgroup: the BPF programs alone, without the jail's seccomp filter in the way."""
    def enter():
        with open(f"{cgroup}/init.scope/cgroup.procs", "w") as procs:
            procs.write(str(os.getpid()))
    result = subprocess.run([sys.executable, "-c", CHOSEN_PORT, kind, str(port), how, str(target)], preexec_fn=enter,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@MODES
def test_port_range_option_is_refused_in_the_jail(rootfs_sec, mode):
    port = ephemeral_port()
    with Jail(rootfs_sec, UID_A, list(mode)) as jail:
        for root in (False, True):
            for family in FAMILIES:
                text = probe(jail, "port-range", family, str(port), root=root)
                assert "setsockopt: EPERM" in text, (family, root, text)
                assert f"bound {port}" not in text, (family, root, text)


@pytest.mark.parametrize("with_ports", [False, True], ids=["without-ports", "with-ports"])
def test_a_chosen_port_of_another_jail_is_refused(rootfs_sec, rootfs_sec_b, with_ports):
    owned = ephemeral_port()
    unowned = free_port(owned + 1)
    with Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{owned},udp:{owned}", "--ports-exclusive"]) as b, \
            Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{free_port(unowned + 1)}"] if with_ports else []) as a:
        for family in FAMILIES:
            # EADDRINUSE: the port is reserved, bind(0) finds none; EPERM: post-bind refused it
            assert chosen_port_in_cgroup(jail_cgroup(UID_A), family, owned) in ("EADDRINUSE", "EPERM"), family
            assert chosen_port_in_cgroup(jail_cgroup(UID_A), family, unowned) == f"bound {unowned}", family
        # and explicitly, from inside, as the user and as root
        for root in (False, True):
            for family in FAMILIES:
                assert outcome(a, "bind", family, str(owned), root=root) == "EPERM", (family, root)
        assert outcome(b, "bind", "tcp4", str(owned)) == "ok"


@MODES
def test_bind0_retries_never_reach_another_jails_port(rootfs_sec, rootfs_sec_b, mode):
    # Every port of the upper half of the ephemeral range is B's: A's bind(0) would land there
    # about half the time, but the kernel does not choose them (reserved) and post-bind
    # would refuse them.
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    middle = (low + high) // 2
    with Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{middle}-{high},udp:{middle}-{high}"]), Jail(rootfs_sec, UID_A, list(mode)) as a:
        for family in ("tcp4", "udp6"):
            text = probe(a, "bind0-loop", family, str(middle), str(high), "400")
            assert re.search(r"^not reached in 400 \(\d+ refused\)$", text, re.M), text


def test_outgoing_connections_work_from_a_jail_without_ports(rootfs_sec, rootfs_sec_b):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    owned = ephemeral_port()
    try:
        with Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{owned}"]), Jail(rootfs_sec, UID_A) as a:
            accepted = []
            t = threading.Thread(target=lambda: accepted.append(server.accept()))
            t.start()
            assert "connect4: ok" in a.run(f"/bin/jailprobe connect4 {port}").stdout.decode()
            t.join(10)
            assert accepted
            accepted[0][0].close()
            # connect chooses its source port without any bind hook; narrowed to the owned port
            # it finds none, because the owned port is reserved from the kernel's own choice.
            result = chosen_port_in_cgroup(jail_cgroup(UID_A), "tcp4", owned, how="connect", target=port)
            assert result == "EADDRNOTAVAIL", result
    finally:
        server.close()


def owned_map():
    """The shared owned-ports map's ports owned on every address as {(protocol, port): owner
    cgroup id}, or None if absent. Its key (struct cj_owned_key, 24 bytes) is the LPM trie's
    prefix length (always 160, a full-length key), the port word and an address, all zeros for
    "every address" (test_address checks the others); hash maps with 4- or 20-byte keys are
    earlier jailds'."""
    maps = json.loads(subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True).stdout or "[]")
    found = []
    for map_id in [m["id"] for m in maps if m.get("name") == "jail_owned_port" and m.get("bytes_key") == 24]:
        dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)], capture_output=True,
                                         text=True).stdout or "{}")
        if not isinstance(dump, list):
            continue  # a map of jails gone, being freed by the kernel
        entries = {}
        for entry in dump:
            raw = bytes(int(b, 16) for b in entry["key"])
            assert struct.unpack("<I", raw[:4])[0] == 160, raw  # an exact key, never a prefix
            if raw[8:] != bytes(16):
                continue
            key = struct.unpack("<I", raw[4:8])[0]
            entries[(key >> 16, key & 0xFFFF)] = struct.unpack("<Q", bytes(int(b, 16) for b in entry["value"]))[0]
        found.append((map_id, entries))
    assert len(found) <= 1, found
    return found[0] if found else None


def reserved_ports():
    ports = set()
    for item in open("/proc/sys/net/ipv4/ip_local_reserved_ports").read().strip().split(","):
        if item:
            low, _, high = item.partition("-")
            ports.update(range(int(low), int(high or low) + 1))
    return ports


def test_owned_ports_map_follows_the_jails(rootfs_sec, rootfs_sec_b):
    owned = ephemeral_port()
    stale = free_port(owned + 1)
    b = Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{owned},udp:{owned + 1}"]).start()
    try:
        map_id, entries = owned_map()
        owner = os.stat(jail_cgroup(UID_B)).st_ino
        assert entries[(6, owned)] == owner and entries[(17, owned + 1)] == owner
        assert {owned, owned + 1} <= reserved_ports()
        # A jail that died without its stop: its record and entry are stale (no such cgroup).
        record = f"/run/jail/ports/{owner + 999983}"
        with open(record, "w") as f:
            f.write(f"tcp:{stale}")
        key = " ".join(str(b) for b in struct.pack("<II", 160, 6 << 16 | stale) + bytes(16))  # every address
        value = " ".join(str(b) for b in struct.pack("<Q", owner + 999983))
        subprocess.run(f"bpftool map update id {map_id} key {key} value {value}".split(), check=True)
        assert (6, stale) in owned_map()[1]
        # The next start that claims the port finds it held by no live jail and rebuilds the map
        # from the live records (a start without --ports touches nothing but its own programs).
        a = Jail(rootfs_sec, UID_A, ["--ports", f"tcp:{stale}"]).start()
        try:
            entries = owned_map()[1]
            assert entries[(6, stale)] == os.stat(jail_cgroup(UID_A)).st_ino and (6, owned) in entries
            assert not os.path.exists(record)
        finally:
            a.stop()
        assert (6, owned) in owned_map()[1]  # a stop takes only its own
    finally:
        b.stop()
    assert not os.path.exists(jail_cgroup(UID_B))
    left = owned_map()
    assert left is None or not {(6, owned), (17, owned + 1)} & set(left[1]), left
    assert not [name for name in os.listdir("/run/jail/ports") if name == str(owner)]
    assert not {owned, owned + 1} & reserved_ports()
    jails = "/sys/fs/cgroup/unified/jail"
    if not os.path.isdir(jails) or not os.listdir(jails):  # no other jail running: nothing left at all
        # The kernel frees programs, then their map, after an RCU grace period.
        wait_for(lambda: owned_map() is None, 10, "the owned-ports map to be freed")
        names = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
        assert "jail_owned" not in names


# ---- issue 22 item 7: host-wide kernel quotas ---------------------------------------------------

@MODES
def test_kernel_aio_needs_allow_aio(rootfs_sec, mode):
    with Jail(rootfs_sec, UID_A, list(mode)) as jail:
        assert outcome(jail, "io-setup", root=False) == "ENOSYS"
        assert outcome(jail, "io-setup", root=True) == "ENOSYS"
    with Jail(rootfs_sec, UID_A, ["--allow-aio", *mode]) as jail:
        assert outcome(jail, "io-setup", root=False) == "ok"


@MODES
def test_fanotify_is_refused(rootfs_sec, mode):
    with Jail(rootfs_sec, UID_A, list(mode)) as jail:
        assert outcome(jail, "fanotify-init", root=False) == "EPERM"
        assert outcome(jail, "fanotify-init", root=True) == "EPERM"


@pytest.mark.parametrize("kind", ["tcp4", "udp4", "udp6"])
def test_implicit_ports_never_land_on_another_jails_port(rootfs_sec, rootfs_sec_b, kind):
    # connect and sendto choose a source port with no bind hook at all: the owned ports are
    # reserved from the kernel's automatic choice (ip_local_reserved_ports) instead.
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    middle = (low + high) // 2
    family = socket.AF_INET6 if kind.endswith("6") else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM if kind.startswith("tcp") else socket.SOCK_DGRAM)
    server.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    if kind.startswith("tcp"):
        server.listen(512)
    try:
        with Jail(rootfs_sec_b, UID_B, ["--ports", f"tcp:{middle}-{high},udp:{middle}-{high}"]), \
                Jail(rootfs_sec, UID_A) as a:
            text = probe(a, "autobind-loop", kind, str(middle), str(high), "100", str(server.getsockname()[1]))
            assert "not reached in 100 (0 refused)" in text, text
    finally:
        server.close()


def test_own_port_lets_the_user_bind_a_low_port_without_capabilities(foreground, rootfs_a):
    port = free_low_port()
    page = rootfs_a / "home" / "work" / "www" / "index.html"
    page.parent.mkdir(exist_ok=True)
    token = secrets.token_hex(8)
    page.write_text(token)
    jail = foreground("--ports", f"tcp:{port}", "--boot", f"exec httpd -f -p 127.0.0.1:{port} -h /home/work/www")

    def answers():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read().decode()
        except OSError:
            return None
    assert wait_for(answers, 20, "httpd on the low port") == token
    owner = jail.run("ps -o user,args | grep '[h]ttpd'").stdout.split()[0]
    assert owner == b"work"


def test_without_the_capability_a_low_port_is_refused(foreground):
    port = free_low_port()
    jail = foreground()
    result = jail.run(f"httpd -f -p 127.0.0.1:{port} -h /")
    assert result.returncode != 0
    assert b"Permission denied" in result.stderr
