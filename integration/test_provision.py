"""A tenant in one command (issue 20): `jaild create` makes a copy-on-write root over a shared
base, the jail's user, the host account (login shell `jail`, an ssh key) and the config that
`jaild start NAME` reads; `jaild destroy` removes all of it; `jaild base list` shows the bases.

The tests point jaild's config and state roots at a temporary directory (JAIL_CONFIG_DIR,
JAIL_STATE_DIR); host accounts are real (jt-p00…, uids 63000–63059) and removed at the end."""
import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import time

import pytest

from conftest import PROVISION_ISSUE, REPO, as_user, tree_listing
from harness import HostSshd

DEBIAN_ISSUE = "Jail test Debian rootfs"
FIFTY = [(f"jt-p{i:02d}", 63000 + i) for i in range(50)]


def tree_hash(root):
    return hashlib.sha256(repr(tree_listing(root)).encode()).hexdigest()


def disk_bytes(path):
    """Blocks allocated beneath path (what du counts), in bytes."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


class Sshd(HostSshd):
    """The host's sshd for the given accounts, one client key."""

    def __init__(self, base, users):
        super().__init__(base, users, extra="AuthorizedKeysFile .ssh/authorized_keys\n")
        self.key = self.base / "client_key"

    def start(self):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        return super().start()

    def ssh(self, user, command):
        return subprocess.run(["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                               "-p", str(self.port), f"{user}@127.0.0.1", command],
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def sshd(prov):
    base = prov.base / "sshd"
    base.mkdir()
    server = Sshd(base, ["jt-p50", "jt-p51"])
    try:
        yield server.start()
    finally:
        server.stop()


def su(name, script):
    return subprocess.run(["su", "-", name, "-c", script], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def test_busybox_tenant_lands_inside_by_su_and_ssh(prov, sshd, capsys):
    busybox = prov.state / "bases" / "busybox"
    before = tree_hash(busybox)
    started = time.monotonic()
    prov.create("jt-p50", 63050, "busybox", "--key", str(sshd.key) + ".pub", "--hostname", "tenant50")
    elapsed = time.monotonic() - started
    assert su("jt-p50", "id -un; cat /etc/issue").stdout == f"work\n{PROVISION_ISSUE}\n".encode()
    # The host account's name is the jail user's too: ~jt-p50 is the home inside.
    assert prov.session(63050, "cd ~jt-p50 && pwd").stdout == b"/home/work\n"
    result = sshd.ssh("jt-p50", "id -un; id -u; cat /etc/issue; hostname; ps -o pid,args | grep -c 'jaild: init'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\n")[:4] == ["work", "63050", PROVISION_ISSUE, "tenant50"]
    # The jail's own sshd would accept the same key for its user.
    inside = prov.session(63050, "cat /home/work/.ssh/authorized_keys; stat -c '%u %a' /home/work /home/work/.ssh")
    assert inside.stdout == (sshd.key.with_suffix(".pub").read_bytes() + b"63050 755\n63050 700\n")
    # The layout: private directories, an upper layer of a few small files.
    jail_dir = prov.state / "jt-p50"
    for path, mode in ((jail_dir, 0o700), (jail_dir / "work", 0o700)):
        st = os.stat(path)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, mode), path
    upper = disk_bytes(prov.upper("jt-p50"))
    assert upper < 1 << 20
    config = (prov.conf / "jt-p50.conf").read_text()
    assert "uid = 63050\n" in config and f"base = {busybox}\n" in config and "hostname = tenant50\n" in config
    listing = prov.jaild("base", "list", check=True).stdout
    assert any(line.split()[:3] == ["busybox", str(busybox), "jt-p50"] for line in listing.splitlines()), listing
    assert tree_hash(busybox) == before
    with capsys.disabled():
        print(f"\n[figures] jaild create + start from the busybox base: {elapsed * 1000:.0f} ms; "
              f"upper directory {upper} bytes")


def test_debian_tenant_lands_inside_by_su_and_ssh(prov, sshd, debian_cache):
    before = tree_hash(debian_cache / "etc")
    prov.create("jt-p51", 63051, str(debian_cache), "--key", str(sshd.key) + ".pub")
    assert su("jt-p51", "id -un; cat /etc/issue").stdout == f"work\n{DEBIAN_ISSUE}\n".encode()
    result = sshd.ssh("jt-p51", "id -un; cat /etc/issue; getent passwd work; echo x > ~/mine; stat -c %u ~/mine")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\n")[:4] == ["work", DEBIAN_ISSUE, "work:x:63051:63051:work:/home/work:/bin/bash",
                                                      "63051"]
    # Debian's own files for the user moved to the new uid; the base's stayed as they were.
    assert prov.session(63051, "stat -c %u /home/work/.bashrc").stdout == b"63051\n"
    assert os.stat(debian_cache / "home" / "work" / ".bashrc").st_uid == 61000
    assert (prov.upper("jt-p51") / "home" / "work" / "mine").read_bytes() == b"x\n"
    assert tree_hash(debian_cache / "etc") == before


def test_two_jails_share_a_base_and_keep_their_writes(prov):
    base = prov.base / "shared-base"
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(base), "61000", PROVISION_ISSUE], check=True)
    data = base / "data"
    data.mkdir()
    os.chmod(data, 0o777)  # the jail users may write and delete here, as apt does in /usr as root
    for name in ("seed", "gone", "later"):
        (data / name).write_text(f"base {name}\n")
        os.chmod(data / name, 0o666)
    before = tree_hash(base)
    prov.create("jt-p52", 63052, base)
    prov.create("jt-p53", 63053, base)
    a = prov.session(63052, "echo a > /data/seed; rm /data/gone; echo new > /data/new-a; mkdir -p /data/dir-a; "
                            "cat /data/seed; ls /data")
    assert a.stdout == b"a\ndir-a\nlater\nnew-a\nseed\n", a.stderr
    b = prov.session(63053, "cat /data/seed /data/gone; ls /data")
    assert b.stdout == b"base seed\nbase gone\ngone\nlater\nseed\n"
    # A's writes are in A's upper directory only: the deletion is a whiteout there.
    upper_a = prov.upper("jt-p52") / "data"
    assert (upper_a / "seed").read_text() == "a\n" and (upper_a / "new-a").exists()
    assert stat.S_ISCHR(os.lstat(upper_a / "gone").st_mode)
    assert not (prov.upper("jt-p53") / "data").exists()
    assert tree_hash(base) == before
    # A change to the base while both are stopped is seen by both at their next start,
    # except where a jail has its own copy.
    for name in ("jt-p52", "jt-p53"):
        assert prov.jaild("status", name).returncode == 0
        prov.jaild("stop", name, check=True)
        assert prov.jaild("status", name).returncode == 3
    (data / "later").write_text("changed later\n")
    (data / "seed").write_text("changed seed\n")
    for name in ("jt-p52", "jt-p53"):
        prov.jaild("start", name, check=True)
    assert prov.session(63052, "cat /data/later /data/seed").stdout == b"changed later\na\n"
    assert prov.session(63053, "cat /data/later /data/seed").stdout == b"changed later\nchanged seed\n"
    prov.destroy("jt-p52")
    prov.destroy("jt-p53")


def test_copy_is_a_tree_of_its_own(prov):
    base = prov.base / "copy-base"
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(base), "61000", PROVISION_ISSUE], check=True)
    before = tree_hash(base)
    prov.create("jt-p54", 63054, base, "--copy")
    root = prov.state / "jt-p54" / "root"
    assert sorted(os.listdir(prov.state / "jt-p54")) == ["root"]
    assert (root / "etc" / "issue").read_text() == PROVISION_ISSUE + "\n"
    assert os.stat(root / "bin" / "busybox").st_ino != os.stat(base / "bin" / "busybox").st_ino
    assert "base =" not in (prov.conf / "jt-p54.conf").read_text()
    assert tree_hash(base) == before
    (base / "etc" / "issue").write_text("changed\n")
    prov.jaild("stop", "63054:63054", check=True)
    prov.jaild("start", "jt-p54", check=True)
    assert prov.session(63054, "id -un; cat /etc/issue").stdout == f"work\n{PROVISION_ISSUE}\n".encode()
    assert prov.destroy("jt-p54").returncode == 0
    assert not (prov.state / "jt-p54").exists()


def test_bad_input_changes_nothing(prov, tmp_path):
    busybox = prov.state / "bases" / "busybox"
    empty = prov.base / "not-a-rootfs"
    empty.mkdir(exist_ok=True)
    taken = prov.base / "uid-taken-base"
    (taken / "etc").mkdir(parents=True, exist_ok=True)
    (taken / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nother:x:63059:63059::/:/bin/sh\n")
    (prov.conf / "jt-p58.conf").write_text("uid = 63058\nroot = /nonexistent\n")  # a jail of another's
    (prov.state / "jt-p57").mkdir()  # state left by a jail
    key = tmp_path / "bad.pub"
    key.write_text("not a key\n")
    before = prov.snapshot()
    cases = [
        (["daemon", "--uid", "63054", "--base", "busybox"], "a host account of that name exists"),
        (["jt-p58", "--uid", "63054", "--base", "busybox"], "jt-p58.conf exists"),
        (["jt-p57", "--uid", "63054", "--base", "busybox"], "jt-p57 exists"),
        (["jt-p54", "--uid", "1", "--base", "busybox"], "uid 1 is in use by host account daemon"),
        (["jt-p54", "--uid", "63058", "--base", "busybox"], "uid 63058 is in use by jail jt-p58"),
        (["jt-p54", "--uid", "63054", "--base", "/nonexistent/base"], "does not exist"),
        (["jt-p54", "--uid", "63054", "--base", "nosuchbase"], "does not exist"),
        (["jt-p54", "--uid", "63054", "--base", str(empty)], "it has no /etc/passwd"),
        (["jt-p54", "--uid", "0", "--base", "busybox"], "uid 0 is not allowed"),
        (["Bad/Name", "--uid", "63054", "--base", "busybox"], "not a valid account name"),
        (["jt-p54", "--uid", "63054", "--base", "busybox", "--key", str(key)], "is not an ssh public key"),
        (["jt-p54", "--uid", "63054", "--base", "busybox", "--key", "/nonexistent.pub"], "cannot read key"),
        (["jt-p54", "--uid", "63054", "--base", "busybox", "--memory", "lots"], "--memory"),
        (["jt-p54", "--uid", "63054", "--base", "busybox", "--bogus", "1"], "--bogus"),
        (["jt-p54", "--uid", "63054", "--base", "busybox", "--shell", "/bin/zsh"], "does not exist in base"),
        (["jt-p54", "--uid", "63059", "--base", str(taken)], "belongs to user 'other' in the base"),
        (["jt-p54", "--base", "busybox"], "--uid UID is required"),
        (["jt-p54", "--uid", "63054", "--base", "busybox", "--user", "root"], "is a system account"),
        (["jt-p54", "--uid", "63054", "--gid", "0", "--base", "busybox"], "gid 0 is not allowed"),
    ]
    for args, message in cases:
        result = prov.jaild("create", *args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert prov.snapshot() == before, args
    result = subprocess.run([prov.jaild_path, "create", "jt-p54", "--uid", "63054", "--base", "busybox"],
                            capture_output=True, text=True, env=prov.env, preexec_fn=as_user(65534))
    assert result.returncode != 0 and "must run as root" in result.stderr
    assert prov.snapshot() == before
    # A failure at the last step (the config directory is read-only) undoes the rest:
    # the host account, its group, its home, the /etc/shells line, the jail's directories.
    subprocess.run(["mount", "--bind", str(prov.conf), str(prov.conf)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(prov.conf)], check=True)
        result = prov.jaild("create", "jt-p54", "--uid", "63054", "--base", "busybox")
    finally:
        subprocess.run(["umount", str(prov.conf)], check=True)
    assert result.returncode != 0 and "jt-p54.conf" in result.stderr, result.stderr
    assert prov.snapshot() == before
    os.unlink(prov.conf / "jt-p58.conf")
    os.rmdir(prov.state / "jt-p57")


def test_destroy_leaves_nothing_and_keep_data_keeps_the_upper(prov):
    before = prov.snapshot()
    prov.create("jt-p55", 63055, "busybox", "--pids", "64")
    prov.session(63055, "echo mine > /home/work/file")
    # A second start is refused before a second overlay could be mounted over the layers in use.
    again = prov.jaild("start", "jt-p55")
    assert again.returncode == 1 and "already running" in again.stderr
    refused = prov.jaild("destroy", "jt-p55")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert prov.session(63055, "cat /home/work/file").stdout == b"mine\n"
    result = prov.destroy("jt-p55")
    assert result.returncode == 0, result.stderr
    assert prov.snapshot() == before
    assert not os.path.exists("/run/jail/jaild-63055-63055.sock")
    assert not os.path.exists("/var/log/jail/jail-63055-63055.log")
    # Its user-namespace range is given back: the pool does not fill with destroyed tenants.
    ranges = pathlib.Path("/var/lib/jail/userns")
    assert not any("/jaild-63055-63055.sock" in r.read_text() for r in ranges.glob("*.range")), \
        [r.read_text() for r in ranges.glob("*.range") if "63055" in r.read_text()]

    prov.create("jt-p56", 63056, "busybox")
    prov.session(63056, "echo kept > /home/work/file")
    result = prov.destroy("jt-p56", "--keep-data")
    assert result.returncode == 0, result.stderr
    assert (prov.upper("jt-p56") / "home" / "work" / "file").read_text() == "kept\n"
    assert sorted(os.listdir(prov.state / "jt-p56")) == ["kept-data", "upper"]
    shutil.rmtree(prov.state / "jt-p56")
    for log in pathlib.Path("/var/log/jail").glob("jail-63056-63056.log*"):  # kept with the data
        log.unlink()
    # So is its id range, reserved in /etc/subuid and /etc/subgid (files root inside wrote keep
    # their owners): given back here by hand.
    for kept in [r for r in ranges.glob("*.range") if "/jaild-63056-63056.sock" in r.read_text()]:
        line = f"root:{kept.name[:-len('.range')]}:65536"
        for name in ("/etc/subuid", "/etc/subgid"):
            assert line in pathlib.Path(name).read_text().splitlines()
            pathlib.Path(name).write_text("".join(f"{l}\n" for l in pathlib.Path(name).read_text().splitlines() if l != line))
        kept.unlink()
    assert prov.snapshot() == before
    assert prov.jaild("destroy", "jt-p56", "--yes").returncode != 0


def test_fifty_jails_from_one_base(prov, capsys):
    busybox = prov.state / "bases" / "busybox"
    before = tree_hash(busybox)
    times = []
    started = time.monotonic()
    for name, uid in FIFTY:
        t = time.monotonic()
        prov.create(name, uid, "busybox")
        times.append(time.monotonic() - t)
    total = time.monotonic() - started
    for name, uid in FIFTY:
        result = prov.session(uid, "id -u; cat /etc/issue")
        assert result.stdout == f"{uid}\n{PROVISION_ISSUE}\n".encode(), (name, result.stderr)
    uppers = sum(disk_bytes(prov.upper(name)) for name, _ in FIFTY)
    listing = prov.jaild("base", "list", check=True).stdout
    row = next(line for line in listing.splitlines() if line.startswith("busybox "))
    assert {name for name, _ in FIFTY} <= set(row.split()[2].split(","))
    t = time.monotonic()
    for name, _ in FIFTY:
        assert prov.destroy(name).returncode == 0
    destroyed = time.monotonic() - t
    assert tree_hash(busybox) == before
    with capsys.disabled():
        print(f"\n[figures] 50 jails from one base: create + start {total:.2f} s "
              f"(mean {sum(times) / 50 * 1000:.0f} ms, max {max(times) * 1000:.0f} ms), "
              f"upper directories {uppers} bytes in all ({uppers / 50 / 1024:.0f} KiB each), "
              f"destroy {destroyed:.2f} s, base {disk_bytes(busybox) / 1e6:.1f} MB")


def test_root_inside_a_base_jail_is_not_host_root(prov):
    """A jail on a base gets its user namespace: the overlay is mounted over idmapped layers."""
    base = prov.base / "userns-base"
    subprocess.run([str(REPO / "scripts" / "make-busybox-rootfs"), str(base), "61000", PROVISION_ISSUE], check=True)
    prov.create("jt-p54", 63054, base, "--rc", "cat /proc/self/uid_map > /rc-map; id -u > /rc-uid")
    try:
        rows = json.loads(prov.jaild("list", "--json", check=True).stdout)
        row = next(r for r in rows if r["uid"] == 63054)
        start = row["userns_start"]
        assert start > 0 and row["userns_count"] > 0
        with open(f"/proc/{row['init_pid']}/status") as f:
            assert int(next(line for line in f if line.startswith("Uid:")).split()[1]) == start
        upper = prov.upper("jt-p54")
        # What root inside wrote: uid 0 inside, root's on disk (the private state directory).
        assert (upper / "rc-uid").read_text() == "0\n"
        assert os.stat(upper / "rc-uid").st_uid == 0
        assert (upper / "rc-map").read_text().split()[:2] == ["0", str(start)]
        # The jail user writes as itself; the base is root's inside.
        out = prov.session(63054, "echo x > ~/mine; stat -c %u ~/mine /bin/busybox /etc/passwd")
        assert out.stdout == b"63054\n0\n0\n", out.stderr
        assert os.stat(upper / "home" / "work" / "mine").st_uid == 63054
    finally:
        prov.destroy("jt-p54")


def login_defs_ages():
    """PASS_MIN_DAYS, PASS_MAX_DAYS and PASS_WARN_AGE of /etc/login.defs as shadow(5) fields."""
    values = {}
    for line in pathlib.Path("/etc/login.defs").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("PASS_MIN_DAYS", "PASS_MAX_DAYS", "PASS_WARN_AGE"):
            values[words[0]] = words[1] if int(words[1]) >= 0 else ""
    return ":".join(values.get(k, "") for k in ("PASS_MIN_DAYS", "PASS_MAX_DAYS", "PASS_WARN_AGE"))


def account_lines(name):
    return {path: [l for l in pathlib.Path(path).read_text().splitlines() if l.split(":")[0] == name]
            for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow")}


def members(path, group):
    line = next(l for l in pathlib.Path(path).read_text().splitlines() if l.split(":")[0] == group)
    return [m for m in line.split(":")[3].split(",") if m]


def test_the_host_account_is_what_useradd_writes_and_waits_for_the_shadow_locks(prov):
    """jaild writes the tenant's account itself (issue 36: useradd and userdel rewrite every
    account file and cost more the more tenants there are): the lines are useradd's and
    groupadd's, membership of `jail` in group and gshadow, a stale lastlog record of the uid
    cleared; destroy leaves the four files byte for byte as they were. While another program
    holds lckpwdf, create waits for it, then gives up and changes nothing."""
    before = prov.snapshot()
    lastlog = pathlib.Path("/var/log/lastlog")
    made_lastlog = not lastlog.exists()
    record_at = 63059 * 292
    with open(lastlog, "ab"):
        pass
    size_before = lastlog.stat().st_size
    with open(lastlog, "r+b") as f:
        f.seek(record_at)
        saved = f.read(292)
        f.seek(record_at)
        f.write(b"\x01" * 292)     # a login of an earlier account that had the uid
    try:
        day_before = int(time.time() // 86400)
        prov.create("jt-p59", 63059, "busybox", start=False)
        day_after = int(time.time() // 86400)
        lines = account_lines("jt-p59")
        passwd = lines["/etc/passwd"][0].split(":")
        assert len(lines["/etc/passwd"]) == 1 and passwd[:5] == ["jt-p59", "x", "63059", "63059", "jail jt-p59"], lines
        assert passwd[5] == str(prov.state / "home" / "jt-p59") and passwd[6].endswith("/jail")
        assert lines["/etc/shadow"] in ([f"jt-p59:*:{day}:{login_defs_ages()}:::"] for day in {day_before, day_after}), lines
        assert lines["/etc/group"] == ["jt-p59:x:63059:"] and lines["/etc/gshadow"] == ["jt-p59:!::"], lines
        assert "jt-p59" in members("/etc/group", "jail") and "jt-p59" in members("/etc/gshadow", "jail")
        assert subprocess.run(["id", "-Gn", "jt-p59"], capture_output=True, text=True).stdout.split() == ["jt-p59", "jail"]
        grpck = subprocess.run(["grpck", "-r"], capture_output=True, text=True)
        assert grpck.returncode == 0, grpck.stdout + grpck.stderr
        with open(lastlog, "rb") as f:
            f.seek(record_at)
            assert f.read(292) == b"\0" * 292
        for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"):
            assert not os.path.exists(path + ".lock") and not os.path.exists(path + "+"), path

        # A config of another name with the uid of an account create made would get its logins:
        # its start is refused (create reads only the configs of jails it did not make).
        (prov.conf / "jt-p57.conf").write_text("uid = 63059\nroot = /nonexistent\n")
        try:
            refused = prov.jaild("start", "jt-p57")
        finally:
            (prov.conf / "jt-p57.conf").unlink()
        assert refused.returncode != 0 and "uid 63059 is jail jt-p59's" in refused.stderr, refused.stderr

        # lckpwdf held (fcntl, as shadow's tools take it): create waits its 5 s and gives up.
        with_one = prov.snapshot()
        lock = os.open("/etc/.pwd.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            import fcntl
            fcntl.lockf(lock, fcntl.LOCK_EX)
            started = time.monotonic()
            refused = prov.jaild("create", "jt-p58", "--uid", "63058", "--base", "busybox")
            waited = time.monotonic() - started
        finally:
            os.close(lock)
        assert refused.returncode != 0 and "/etc/.pwd.lock is held by another program" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and waited >= 4.5, (refused.stderr, waited)
        assert prov.snapshot() == with_one

        # The last file cannot be written (immutable): the three written before are put back.
        subprocess.run(["chattr", "+i", "/etc/shadow"], check=True)
        try:
            refused = prov.jaild("create", "jt-p58", "--uid", "63058", "--base", "busybox")
        finally:
            subprocess.run(["chattr", "-i", "/etc/shadow"], check=True)
        assert refused.returncode != 0 and "/etc/shadow" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert prov.snapshot() == with_one

        assert prov.destroy("jt-p59").returncode == 0
        assert prov.snapshot() == before
    finally:
        if made_lastlog:
            lastlog.unlink()
        else:
            with open(lastlog, "r+b") as f:
                f.seek(record_at)
                f.write(saved + b"\0" * (292 - len(saved)))
                f.truncate(size_before)
