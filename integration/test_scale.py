"""Many tenants on one host (issue 36): a start must not cost more the more jails run, and
jails started all at once (as systemd starts them at boot) must all come up right.

- 200 tenants made by `jaild create` on one busybox base and started one after another, all
  earlier ones still running: the mean create+start of the last 50 is within 1.5x of the first
  50's (the id range, the owned-ports map, the state and the running-jail checks are found
  through indexes, not by reading every jail's files). Then all destroyed, and nothing is left:
  no range file or index entry, no port record, no reserved port, no BPF program, no account.
- 100 tenants, each owning a port, started concurrently (xargs -P 8 jaild start): each has
  a range of its own, its port in the owned-ports map and the reserved list, and a session.

Host accounts are real (jsc000…, uids 64100–64299; jsp000…, 64300–64399) and removed at the
end; configs and state live in a temporary directory (JAIL_CONFIG_DIR, JAIL_STATE_DIR).
About 40 s on the 2-core CI machine."""
import glob
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time

import pytest

from conftest import REPO, as_user
from test_ports import owned_map, reserved_ports  # one reader of the map and the sysctl

ISSUE = "Jail scale test base"
SEQUENTIAL = [(f"jsc{i:03d}", 64100 + i) for i in range(200)]
CONCURRENT = [(f"jsp{i:03d}", 64300 + i) for i in range(100)]
FIRST_PORT = 47100            # the concurrent tenants own tcp:47100…47199


def dangling_range_entries():
    """Entries of the range index whose range file is gone (conftest removes those of earlier runs)."""
    index = "/var/lib/jail/userns/by-name"
    return {e for e in (os.listdir(index) if os.path.isdir(index) else []) if not os.path.exists(f"{index}/{e}")}


def jail_programs():
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout)
    return sorted(p["id"] for p in progs if p.get("name", "").startswith("jail_"))


def states_of(names):
    out = {}
    for path in glob.glob("/run/jail/state/*.state"):
        try:
            text = open(path).read()
        except FileNotFoundError:
            continue
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if fields.get("name") in names:
            out[fields["name"]] = fields
    return out


class Tenants:
    def __init__(self, base, jail_binary):
        self.base = base
        self.jaild_path = str(pathlib.Path(jail_binary).parent / "jaild")
        self.jail_path = jail_binary
        self.names = []
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JAIL_CONFIG_DIR": str(base / "conf"),
                    "JAIL_STATE_DIR": str(base / "state"), "JAIL_SSHD_CONFIG_DIR": str(base / "sshd_config.d")}

    def jaild(self, *args):
        result = subprocess.run([self.jaild_path, *args], capture_output=True, text=True, timeout=60, env=self.env)
        assert result.returncode == 0, f"jaild {' '.join(args)}: {result.stderr}"
        return result

    def create(self, name, uid, *extra):
        self.names.append(name)
        self.jaild("create", name, "--uid", str(uid), "--base", "busybox", *extra)

    def destroy_all(self):
        failures = []
        for name in list(self.names):
            result = subprocess.run([self.jaild_path, "destroy", name, "--yes"], capture_output=True, text=True,
                                    timeout=60, env=self.env)
            if result.returncode != 0:
                failures.append(f"{name}: {result.stderr.strip()}")
                subprocess.run(["userdel", name], capture_output=True)
                subprocess.run(["groupdel", name], capture_output=True)
            self.names.remove(name)
        return failures

    def session(self, uid, script):
        return subprocess.run([self.jail_path, "-c", script], capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin"}, preexec_fn=as_user(uid))


@pytest.fixture
def scale_tenants(installed_jail):
    base = pathlib.Path(tempfile.mkdtemp(prefix="jail-scale-", dir="/tmp"))
    os.chmod(base, 0o755)
    t = Tenants(base, installed_jail)
    (base / "state" / "bases").mkdir(parents=True)
    os.chmod(base / "state", 0o700)
    (base / "conf").mkdir()
    (base / "sshd_config.d").mkdir()
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(base / "state" / "bases" / "busybox"), "61000", ISSUE],
                   check=True)
    made_group = subprocess.run(["groupadd", "-r", "jail"], capture_output=True).returncode == 0
    t.ranges_before = set(glob.glob("/var/lib/jail/userns/*.range"))
    t.records_before = set(os.listdir("/run/jail/ports")) if os.path.isdir("/run/jail/ports") else set()
    t.programs_before = jail_programs()
    t.dangling_before = dangling_range_entries()
    try:
        yield t
    finally:
        t.destroy_all()
        if made_group:
            subprocess.run(["groupdel", "jail"], capture_output=True)
        shells = pathlib.Path("/etc/shells")
        lines = shells.read_text().splitlines(keepends=True)
        if any(line.strip() == installed_jail for line in lines):
            shells.write_text("".join(line for line in lines if line.strip() != installed_jail))
        shutil.rmtree(base, ignore_errors=True)


def assert_nothing_left(t, scale_tenants, ports=()):
    names = [name for name, _ in scale_tenants]
    assert set(glob.glob("/var/lib/jail/userns/*.range")) <= t.ranges_before
    assert not [u for _, u in scale_tenants if os.path.lexists(f"/var/lib/jail/userns/by-name/jail-{u}-{u}")]
    assert not states_of(set(names))
    assert not [n for n in names if os.path.lexists(f"/run/jail/index/name/{n}")]
    records = set(os.listdir("/run/jail/ports")) if os.path.isdir("/run/jail/ports") else set()
    assert not [r for r in records - t.records_before if r.isdigit()]
    assert not set(ports) & reserved_ports()
    entries = (owned_map() or (0, {}))[1]
    assert not [p for p in ports if (6, p) in entries]
    assert set(jail_programs()) <= set(t.programs_before)
    accounts = {line.split(":")[0] for line in open("/etc/passwd")}
    assert not accounts & set(names)
    assert dangling_range_entries() <= t.dangling_before


def test_create_and_start_stay_flat_with_200_running(scale_tenants):
    timings = []
    for name, uid in SEQUENTIAL:
        t0 = time.perf_counter()
        scale_tenants.create(name, uid)
        scale_tenants.jaild("start", name)
        timings.append(time.perf_counter() - t0)
    first, last = statistics.fmean(timings[:50]), statistics.fmean(timings[-50:])
    listed = json.loads(scale_tenants.jaild("list", "--json").stdout)
    assert {j["name"] for j in listed} >= {name for name, _ in SEQUENTIAL}
    states = states_of({name for name, _ in SEQUENTIAL})
    assert len(states) == 200 and len({s["userns"] for s in states.values()}) == 200
    # The last one started still answers a session.
    assert scale_tenants.session(SEQUENTIAL[-1][1], "id -u").stdout.strip() == str(SEQUENTIAL[-1][1])
    print(f"\n[figures] create+start: first 50 {first * 1000:.0f} ms, last 50 {last * 1000:.0f} ms "
          f"(ratio {last / first:.2f})")
    assert last <= 1.5 * first, (first, last)
    assert scale_tenants.destroy_all() == []
    assert_nothing_left(scale_tenants, SEQUENTIAL)


def test_100_concurrent_starts_each_get_their_range_ports_and_a_session(scale_tenants):
    for i, (name, uid) in enumerate(CONCURRENT):
        scale_tenants.create(name, uid, "--ports", f"tcp:{FIRST_PORT + i}")
    names = [name for name, _ in CONCURRENT]
    result = subprocess.run(["xargs", "-P", "8", "-n", "1", scale_tenants.jaild_path, "start"], input="\n".join(names) + "\n",
                            capture_output=True, text=True, env=scale_tenants.env, timeout=300)
    assert result.returncode == 0, result.stderr
    states = states_of(set(names))
    assert sorted(states) == sorted(names)
    ranges = {name: int(s["userns"]) for name, s in states.items()}
    assert len(set(ranges.values())) == 100
    for name, start in ranges.items():
        holder = pathlib.Path(f"/var/lib/jail/userns/{start}.range").read_text().split()
        assert holder[1] == states[name]["socket"], (name, holder)
        assert f"root:{start}:65536" in pathlib.Path("/etc/subuid").read_text().splitlines()
    entries = owned_map()[1]
    reserved = reserved_ports()
    for i, (name, uid) in enumerate(CONCURRENT):
        port = FIRST_PORT + i
        cgroup = states[name]["cgroup"]
        assert entries.get((6, port)) == os.stat(cgroup).st_ino, (name, port)
        assert port in reserved
        session = scale_tenants.session(uid, "id -u")
        assert session.returncode == 0 and session.stdout.strip() == str(uid), (name, session)
    assert scale_tenants.destroy_all() == []
    assert_nothing_left(scale_tenants, CONCURRENT, ports=[FIRST_PORT + i for i in range(100)])
