"""The jail's own system services (issue 16): `--rc` starts syslogd, cron, sshd on
127.0.0.2:22 and exim on 127.0.0.2:25 as root inside a Debian jail; the jail's user logs in
through the jail's own sshd with a key of their own, gets mail over SMTP from the host, runs a
crontab; `--rc-stop` runs at stop, and nothing of the jail is left after it.

One jail for the module: the crontab is set first and its minute runs while the ssh and SMTP
checks do, so the module costs about a minute of wall time, not several."""
import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import (JAILD, REPO, UID_A, UID_B, Jail, cached_debian_rootfs, children_of, descendants, mounts_under,
                      pid_alive, wait_for)

ADDRESS = "127.0.0.2"
ISSUE = "Jail test Debian rootfs"

# The test runs the documented example rc scripts, plus a few checks of its own.
RC = (REPO / "contrib" / "rc.jail.example").read_text() + """
id -u > /run/rc-uid
# Not one of the jail's --ports: refused, even to root inside.
perl -MIO::Socket::INET -e 'IO::Socket::INET->new(LocalAddr => "127.0.0.2:23", Listen => 1, ReuseAddr => 1)
    and exit 0; print "$!\\n"; exit 1' > /run/bind-23 || true
echo services started
"""

# At stop, before everything gets SIGTERM: the services are still there to see.
RC_STOP = (REPO / "contrib" / "rc.jail.stop.example").read_text().replace("#!/bin/sh\n", """#!/bin/sh
{ id -u; pgrep -x sshd >/dev/null && echo sshd-running; } > /var/tmp/rc-stop-ran
""", 1)

CRON_FILE = "/home/work/cron-ran"


def inside(root, path):
    return pathlib.Path(str(root) + path)


def ssh_options(key):
    return ["-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def banner(timeout=10):
    """The first line an SSH server sends on 127.0.0.2:22 (b'' if nothing answers)."""
    try:
        with socket.create_connection((ADDRESS, 22), timeout=timeout) as s:
            return s.makefile("rb").readline()
    except OSError:
        return b""


def listeners(port):
    out = subprocess.run(["ss", "-H", "-ltn", f"src {ADDRESS}:{port}"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def port_holders(port):
    """Host listeners on `port` that cover 127.0.0.2: that address itself or a wildcard."""
    out = subprocess.run(["ss", "-H", "-ltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()
            if line.split()[3].rsplit(":", 1)[0] in ("0.0.0.0", "*", "[::]", ADDRESS, f"[::ffff:{ADDRESS}]")]


def host_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def status_fields(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except FileNotFoundError:
        return ""


def listed(jail):
    rows = json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, check=True).stdout)
    return next(r for r in rows if r["socket"] == jail.socket)


def has_userns(jail):
    return open(f"/proc/{jail.init_pid}/uid_map").read().split()[:3] != ["0", "0", "4294967295"]


def jail_cgroup_dirs(uid=UID_A):
    found = []
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        path = pathlib.Path(base) / "jail" / f"jail-{uid}-{uid}"
        if path.is_dir():
            found.append(path)
    return found


class ServicesJail:
    """A copy of the Debian rootfs with rc scripts, a key and a crontab, and its jail."""

    def __init__(self, base):
        self.base = base
        self.root = base / "root"
        self.key = base / "client_key"
        self.jail = None
        self.started_at = None
        self.crontab_set_at = None

    def prepare(self):
        subprocess.run(["cp", "-a", str(cached_debian_rootfs()), str(self.root)], check=True)
        for name, text in (("rc.jail", RC), ("rc.jail.stop", RC_STOP)):
            path = inside(self.root, "/etc/" + name)
            path.write_text(text)
            os.chmod(path, 0o755)
        # The key is the jail user's own, in their home inside the jail: not a host account's.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        ssh_dir = inside(self.root, "/home/work/.ssh")
        ssh_dir.mkdir(mode=0o700)
        shutil.copy(str(self.key) + ".pub", ssh_dir / "authorized_keys")
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, UID_A, UID_A)
        # A supplementary group of the jail's own: sshd's initgroups must give it to the login.
        group = inside(self.root, "/etc/group")
        group.write_text(group.read_text().replace("\nusers:x:100:\n", "\nusers:x:100:work\n"))
        return self

    def start(self):
        for port in (22, 25):
            # A host daemon on every address (Debian's sshd on 0.0.0.0:22 and [::]:22) holds the
            # port on 127.0.0.2 too: the jail's daemon could not bind it.
            assert not port_holders(port), (f"the host holds port {port} on 127.0.0.2: {port_holders(port)}; "
                                            "make the host's daemon listen on 127.0.0.1 only for this test")
        # A limit, so the jail's programs have a cgroup of their own (without one they share init's).
        # The user namespace is on (the default): sshd and exim bind 22 and 25 because the port
        # filter grants the jail its own ports, not by a capability (issue 15 item 6).
        self.jail = Jail(self.root, UID_A, ["--ports", "tcp:22,tcp:25", "--pids", "1024", "--rc", "/etc/rc.jail",
                                            "--rc-stop", "/etc/rc.jail.stop", "--stop-timeout", "10"])
        # As if an admin started it from a login session: jaild has a login uid (1000).
        result = subprocess.run(self.jail.command(), capture_output=True, text=True, timeout=90,
                                preexec_fn=lambda: open("/proc/self/loginuid", "w").write("1000"))
        assert result.returncode == 0, result.stderr
        self.jail.supervisor = int(open(self.jail.pidfile).read())
        self.jail.init_pid = children_of(self.jail.supervisor)[0]
        # jaild has returned: the rc has finished, so sshd answers now, without waiting.
        first = banner()
        assert first.startswith(b"SSH-2.0-OpenSSH"), first
        # The crontab first: its minute passes while the other tests run.
        result = self.jail.run(f"echo '* * * * * id -u > {CRON_FILE}' | crontab - && crontab -l")
        assert result.returncode == 0, result.stderr
        self.crontab_set_at = time.monotonic()
        return self

    def ssh(self, command, *options, **kwargs):
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("capture_output", True)
        return subprocess.run(["ssh", *ssh_options(self.key), *options, "-p", "22", f"work@{ADDRESS}", command],
                              **kwargs)

    def stop(self):
        if self.jail:
            self.jail.stop()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    base = tmp_path_factory.mktemp("services")
    world = ServicesJail(base).prepare()
    try:
        yield world.start()
    finally:
        world.stop()


def test_rc_ran_as_root_and_list_shows_its_status(services):
    row = listed(services.jail)
    assert row["rc_status"] == 0
    table = subprocess.run([JAILD, "list"], capture_output=True, text=True, check=True).stdout.splitlines()
    rc = table[0].split().index("RC")
    assert [line.split()[rc] for line in table if services.jail.socket in line.split()] == ["0"]
    assert services.jail.run("cat /run/rc-uid").stdout == b"0\n"
    # /run is a fresh tmpfs, mode 0755, where the daemons keep their pid files and sockets.
    out = services.jail.run("stat -c %a /run; awk '$2 == \"/run\" {print $3}' /proc/mounts").stdout
    assert out == b"755\ntmpfs\n"


def test_ssh_login_through_the_jails_own_sshd_with_debians_pam(services):
    # Debian's stock sshd configuration: PAM with pam_loginuid and pam_keyinit.
    pam = inside(services.root, "/etc/pam.d/sshd").read_text()
    assert re.search(r"^session\s+required\s+pam_loginuid\.so", pam, re.M)
    assert re.search(r"^session\s+optional\s+pam_keyinit\.so", pam, re.M)
    assert not re.search(r"^UsePAM\s+no", inside(services.root, "/etc/ssh/sshd_config").read_text(), re.M)
    result = services.ssh("id -un; cat /etc/issue; ps -o args= -p 1; cat /proc/self/loginuid; echo; id -G; "
                          "ps -eo args=")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[:3] == ["work", ISSUE, f"jaild: init [{UID_A}:{UID_A}]"]
    if not has_userns(services.jail):
        # jaild's own login uid (1000) did not reach the rc's sshd: pam_loginuid set the user's.
        # (In a user namespace pam_loginuid leaves it alone.)
        assert lines[3] == str(UID_A)
    assert lines[4].split() == [str(UID_A), "100"]  # setgroups/initgroups by the jail's sshd
    assert any(line.startswith("sshd: /usr/sbin/sshd -o ListenAddress=127.0.0.2:22") for line in lines[3:]), lines
    assert any(line.startswith("sshd: work") for line in lines[3:]), lines
    # A terminal session is in the jail's utmp (sshd writes it through PAM's session).
    result = services.ssh("who; tty", "-tt")
    assert result.returncode == 0, result.stderr
    assert re.search(rb"^work\s+pts/\d+", result.stdout, re.M), result.stdout


def test_scp_and_sftp_through_the_jails_sshd(services, tmp_path):
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(16 << 20))
    target = f"work@{ADDRESS}"
    r = subprocess.run(["scp", *ssh_options(services.key), "-P", "22", str(payload), f"{target}:/home/work/up"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    landed = inside(services.root, "/home/work/up")
    assert sha_file(landed) == sha_file(payload) and os.stat(landed).st_uid == UID_A
    batch = tmp_path / "batch"
    batch.write_text(f"get up {tmp_path / 'down'}\nrm up\n")
    r = subprocess.run(["sftp", *ssh_options(services.key), "-P", "22", "-b", str(batch), target],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sha_file(tmp_path / "down") == sha_file(payload)
    assert not landed.exists()


def test_mail_over_smtp_lands_in_the_jail_users_mailbox(services):
    token = "jail-mail-" + secrets.token_hex(8)
    with smtplib.SMTP(ADDRESS, 25, timeout=10) as smtp:
        assert smtp.sendmail("tester@localhost", ["work@localhost"], f"Subject: {token}\n\n{token}\n") == {}
    mailbox = inside(services.root, "/var/mail/work")
    wait_for(lambda: mailbox.exists() and token in mailbox.read_text(errors="replace"), 10, "the mail to be delivered")
    assert os.stat(mailbox).st_uid == UID_A


def test_logger_reaches_the_jails_syslogd(services):
    token = "jail-log-" + secrets.token_hex(8)
    assert services.jail.run(f"logger -t jailtest {token}").returncode == 0
    messages = inside(services.root, "/var/log/messages")
    wait_for(lambda: messages.exists() and token in messages.read_text(errors="replace"), 10, "the syslog line")


def test_the_daemons_host_uids(services):
    row = listed(services.jail)
    daemons = {}
    for pid in descendants(services.jail.init_pid):
        name = comm(pid)
        if name in ("sshd", "exim4", "cron", "syslogd"):
            daemons.setdefault(name, []).append(host_uid(pid))
    assert set(daemons) == {"sshd", "exim4", "cron", "syslogd"}, daemons
    # Reparented to init, in the jail's program cgroup, under the jail's bounding set and seccomp.
    init_status = status_fields(services.jail.init_pid)
    for pid in descendants(services.jail.init_pid):
        if comm(pid) not in daemons:
            continue
        fields = status_fields(pid)
        assert fields["PPid"] == str(services.jail.init_pid) or comm(int(fields["PPid"])) in daemons, (pid, fields)
        assert fields["CapBnd"] == init_status["CapBnd"] and fields["Seccomp"] == "2", (comm(pid), fields)
        cgroup = open(f"/proc/{pid}/cgroup").read()
        assert f"/jail/jail-{UID_A}-{UID_A}/programs" in cgroup, (comm(pid), cgroup)
    # Root inside is the first id of the jail's range on the host, never 0 (issue 15).
    assert has_userns(services.jail)
    start, count = row["userns_start"], row["userns_count"]
    for name in ("sshd", "cron"):
        assert daemons[name], (name, daemons)
        for uid in daemons[name]:
            assert uid != 0 and start <= uid < start + count, (name, uid, row)


def test_root_inside_cannot_bind_a_port_outside_the_jails_ports(services):
    assert services.jail.run("cat /run/bind-23").stdout == b"Operation not permitted\n"


def test_the_users_crontab_runs(services):
    path = inside(services.root, CRON_FILE)
    remaining = 75 - (time.monotonic() - services.crontab_set_at)
    wait_for(path.exists, max(remaining, 1), "the cron job")
    wait_for(lambda: path.read_text() == f"{UID_A}\n", 5, "the cron job's output")
    assert os.stat(path).st_uid == UID_A


def test_stop_runs_rc_stop_then_nothing_is_left(services):
    jail = services.jail
    pids = jail.all_pids()
    marker = inside(services.root, "/var/tmp/rc-stop-ran")
    assert not marker.exists()
    result = subprocess.run([JAILD, "stop", jail.socket], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "0\nsshd-running\n"
    wait_for(lambda: not any(pid_alive(p) for p in pids), 20, "every process of the jail to end")
    assert listeners(22) == "" and listeners(25) == ""
    assert mounts_under(services.root) == []
    assert jail_cgroup_dirs() == []
    assert not os.path.exists(jail.socket) and not os.path.exists(f"/run/jail/state/jail-{UID_A}-{UID_A}.state")
    services.jail = None


# ---- rc failures, in the small busybox rootfs -----------------------------------------------------

def test_a_failing_rc_is_logged_and_the_jail_serves(rootfs_b, tmp_path):
    log_path = tmp_path / "jaild.log"
    jail = Jail(rootfs_b, UID_B)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_B), "-r", str(rootfs_b), "--rc", "echo rc-ran; exit 4"],
                                stdout=log, stderr=log)
    try:
        text = lambda: log_path.read_text(errors="replace")  # noqa: E731
        wait_for(lambda: "rc exited with status 4" in text() or proc.poll() is not None, 20, "the rc's status")
        assert proc.poll() is None, text()
        assert jail.run("echo still-serving").stdout == b"still-serving\n"
        wait_for(lambda: "boot: rc-ran" in text(), 10, "the rc's output in the log")
        assert listed(jail)["rc_status"] == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_rc_timeout_kills_the_rc_and_the_start_goes_on(rootfs_b):
    start = time.monotonic()
    with Jail(rootfs_b, UID_B, ["--rc", "sleep 600", "--rc-timeout", "1"]) as jail:
        assert 1 <= time.monotonic() - start < 10
        assert listed(jail)["rc_status"] == 137
        assert b"sleep 600" not in jail.run("ps -o args").stdout


def test_rc_required_failure_undoes_the_start(rootfs_b):
    sleeper = f"sleep {86400 + secrets.randbelow(10000)}"
    jail = Jail(rootfs_b, UID_B)
    result = subprocess.run([JAILD, "-u", str(UID_B), "-r", str(rootfs_b), "--rc-required",
                             "--rc", f"{sleeper} & echo started; exit 4"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "rc exited with status 4" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not os.path.exists(jail.socket)
    assert subprocess.run([JAILD, "status", jail.socket], capture_output=True).returncode == 3
    assert mounts_under(rootfs_b) == []
    wait_for(lambda: jail_cgroup_dirs(UID_B) == [], 5, "the jail's cgroups to go")
    leftovers = subprocess.run(["pgrep", "-f", sleeper], capture_output=True, text=True).stdout
    assert leftovers == ""
    assert jail.socket not in [r["socket"] for r in
                               json.loads(subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True).stdout)]


def test_rc_options_are_checked(rootfs_b):
    for args, message in ((["--rc-required"], "--rc-required needs --rc"),
                          (["--rc", "true", "--rc-timeout", "0"], "--rc-timeout must be 1 to 3600")):
        result = subprocess.run([JAILD, "-u", str(UID_B), "-r", str(rootfs_b), *args], capture_output=True, text=True)
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_rc_keys_in_a_config_file(rootfs_b, tmp_path):
    config = tmp_path / "jail.conf"
    config.write_text(f"uid = {UID_B}\nroot = {rootfs_b}\nrc = echo from-config > /run/rc-config\n"
                      "rc-stop = true\nrc-timeout = 5\nrc-required = yes\n")
    result = subprocess.run([JAILD, "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    jail = Jail(rootfs_b, UID_B)
    jail.supervisor = int(open(jail.pidfile).read())
    try:
        assert jail.run("cat /run/rc-config").stdout == b"from-config\n"
        assert listed(jail)["rc_status"] == 0
    finally:
        jail.stop()


def test_rc_stop_is_bounded_by_the_stop_timeout(rootfs_b, tmp_path):
    log_path = tmp_path / "jaild.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_B), "-r", str(rootfs_b), "--stop-timeout", "1",
                                 "--rc-stop", "echo rc-stop-began; exec sleep 600"], stdout=log, stderr=log)
    jail = Jail(rootfs_b, UID_B)
    try:
        wait_for(lambda: jail.run("true").returncode == 0, 20, "the jail to serve")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - start < 8
        text = log_path.read_text(errors="replace")
        assert "boot: rc-stop-began" in text and "rc-stop did not finish within 1s" in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
