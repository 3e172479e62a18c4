"""Who did what (issue 18): session records in jaild's log, utmp/wtmp inside for who/last,
`jaild sessions` (--json, --kill), `jaild enter` (--root, pty), and --syslog: the jail's
/dev/log relayed to the host's, tagged with the jail's name and rate-limited."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pexpect
import pytest

from conftest import (JAIL, JAILD, UID_A, UID_B, Foreground, as_user, cached_debian_rootfs, children_of, pid_alive,
                      wait_for)

NAME = "acct"
PROMPT = r"\$ "


class Daemon(Foreground):
    """A foreground jaild named `acct` whose log is its stderr, on a socket of its own (so it
    cannot meet a jail of the same uid on the default socket)."""

    def __init__(self, root, args, log_path, prefix):
        self.prefix = prefix
        super().__init__(root, ["-a", prefix, "--jail-name", NAME, *args], log_path)

    @property
    def socket(self):
        return f"{self.prefix}-{UID_A}-{UID_A}.sock"

    @socket.setter
    def socket(self, value):
        pass


@pytest.fixture
def started(rootfs_a, tmp_path, public_tmp):
    """Starts foreground jaild's named `acct` and stops them."""
    jails = []
    global SOCKET

    def start(*args, root=None):
        jail = Daemon(root or rootfs_a, list(args), tmp_path / f"jaild-{len(jails)}.log", str(public_tmp / "jaild"))
        jails.append(jail)
        return jail
    SOCKET = f"{public_tmp}/jaild-{UID_A}-{UID_A}.sock"
    yield start
    for jail in jails:
        jail.stop()


# Raw connections as host root and records owned by host uid 0 need a jail without a user
# namespace: in one, SO_PEERCRED shows host root as the overflow uid and init refuses it on the
# jail's own socket (`jaild enter` goes through the root-only control socket instead).
HOST_ROOT_PEER = ("--no-userns",)

# The socket of the jail `started` made last: the helpers below talk to it.
SOCKET = None


def run(script, env=None, uid=UID_A, timeout=30, **kwargs):
    environment = {"JAIL_SOCKET": SOCKET, "PATH": "/usr/bin:/bin"}
    environment.update(env or {})
    return subprocess.run([JAIL, "-c", script], capture_output=True, timeout=timeout, env=environment,
                          preexec_fn=as_user(uid), **kwargs)


def spawn_pty(command="", env=None, program=JAIL, uid=UID_A):
    environment = {"JAIL_SOCKET": SOCKET, "TERM": "xterm", "PATH": "/usr/bin:/bin"}
    environment.update(env or {})
    prefix = f"setpriv --reuid={uid} --regid={uid} --clear-groups " if uid else ""
    return pexpect.spawn(prefix + program + (" " + command if command else ""), env=environment, timeout=10,
                         encoding="utf-8")


def records(jail, event):
    """The fields of each `session EVENT` line of jaild's log (a small logfmt reader)."""
    out = []
    for line in jail.text().splitlines():
        match = re.match(rf"^jaild: (?:warning: )?session {event} (.*)$", line)
        if match:
            out.append(dict((k, v[1:-1] if v.startswith('"') else v)
                            for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', match.group(1))))
    return out


def record(jail, event, **where):
    """Waits for the `session EVENT` record whose fields include `where`."""
    def found():
        return next((r for r in records(jail, event) if all(r.get(k) == v for k, v in where.items())), None)
    return wait_for(found, 10, f"session {event} {where}")


def sessions(*args):
    result = subprocess.run([JAILD, "sessions", NAME, "--json", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---- session records in jaild's log ------------------------------------------------------------

def test_stdio_and_pty_sessions_are_recorded_with_their_fields(started):
    jail = started()
    ssh = {"SSH_CONNECTION": "10.1.2.3 50000 127.0.0.1 22"}
    assert run("exit 3", env=ssh).returncode == 3
    start = record(jail, "start", command="exit 3")
    assert start["jail"] == NAME and start["uid"] == str(UID_A) and start["user"] == "work"
    assert start["peer_uid"] == str(UID_A) and start["from"] == "10.1.2.3" and start["tty"] == "stdio"
    assert "peer_pid" in start
    end = record(jail, "end", id=start["id"])
    assert end["status"] == "3" and re.fullmatch(r"\d+\.\d{3}s", end["duration"]), end

    child = spawn_pty("-c 'tty; exit 4'", env={"SSH_CONNECTION": "127.0.0.9 1 127.0.0.1 22"})
    child.expect(r"(/dev/pts/\d+)\r\n")
    tty = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
    start = record(jail, "start", tty=tty)
    assert start["from"] == "127.0.0.9" and start["command"] == "tty; exit 4"
    assert record(jail, "end", id=start["id"])["status"] == "4"
    # A login shell is recorded as the shell it starts.
    login = subprocess.run([JAIL], input=b"exit 0\n", capture_output=True, timeout=30,
                           env={"JAIL_SOCKET": SOCKET}, preexec_fn=as_user(UID_A))
    assert login.returncode == 0, login.stderr
    assert int(record(jail, "start", command="-/bin/sh")["id"]) > int(start["id"])


def test_a_command_cannot_forge_a_log_line(started):
    jail = started()
    run("echo x\njaild: session start jail=other user=root\x1b[2J\x07")
    wait_for(lambda: "\\x1b[2J" in jail.text(), 10, "the escaped command")
    raw = open(jail.log_path, "rb").read()
    assert b"\x1b" not in raw and b"\x07" not in raw
    assert not any(line.startswith(b"jaild: session start jail=other") for line in raw.splitlines())
    assert b'command="echo x\\njaild: session start jail=other user=root\\x1b[2J\\x07"' in raw


def test_long_commands_are_cut_at_256_bytes(started):
    jail = started()
    run("true " + "a" * 1000)
    start = record(jail, "start", tty="stdio", id="2")
    assert start["command"] == ("true " + "a" * 1000)[:256] + "…"


def init_pid():
    for name in os.listdir("/run/jail/state"):
        state = open(f"/run/jail/state/{name}").read()
        if f"socket={SOCKET}\n" in state:
            return int(re.search(r"^init=(\d+)$", state, re.M).group(1))
    raise AssertionError(f"no state for {SOCKET}")


def helpers():
    """Session helpers (the spare that waits for the next session is not one)."""
    return [p for p in children_of(init_pid()) if _cmdline(p).startswith(b"jaild: ") and _cmdline(p) not in (b"jaild: spare", b"jaild: syslog relay")]


def test_refusals_are_recorded_with_the_reason(started):
    jail = started("--max-sessions", "1", "--handshake-timeout", "1", *HOST_ROOT_PEER)
    record(jail, "end", id="1")
    wait_for(lambda: not helpers(), 10, "the first session's helper to be reaped")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.connect(SOCKET)
        wait_for(helpers, 10, "the silent client's helper")
        # The silent client holds the one session: the next is over the cap.
        capped = run("true")
        assert capped.returncode == 255 and b"limit of 1 sessions" in capped.stderr, capped.stderr
        assert record(jail, "refused", reason="1 sessions are running")["peer_uid"] == str(UID_A)
        timeout = record(jail, "refused", reason="no hello from the client in time")
        assert timeout["peer_uid"] == "0" and timeout["id"] == "2"
    finally:
        silent.close()
    # Only the socket's mode keeps other users out; one that gets past it (here with
    # CAP_DAC_OVERRIDE) is refused by init on its peer uid.
    connect = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r); print(s.recv(4096))" % SOCKET)
    wrong = subprocess.run(["setpriv", f"--reuid={UID_B}", f"--regid={UID_B}", "--clear-groups",
                            "--inh-caps=+dac_override", "--ambient-caps=+dac_override", "/usr/bin/python3", "-c", connect],
                           capture_output=True, text=True, timeout=30)
    assert f"uid {UID_B} may not enter" in wrong.stdout, wrong.stderr
    refused = record(jail, "refused", reason=f"wrong peer uid {UID_B}")
    assert refused["peer_uid"] == str(UID_B) and refused["jail"] == NAME


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().rstrip(b"\0")
    except OSError:
        return b""


# ---- utmp/wtmp inside: who, last -----------------------------------------------------------

def who_and_last(jail, checks):
    """A pty session is listed by `who` inside while it runs, by `last` after, and a helper
    killed with SIGKILL leaves no stale `who` entry."""
    child = spawn_pty()
    try:
        child.expect(PROMPT)
        child.sendline("tty")
        child.expect(r"/dev/(pts/\d+)\r\n")
        line = child.match.group(1)
        wait_for(lambda: re.search(rf"^work\s+{re.escape(line)}\s", run("who").stdout.decode(), re.M), 10,
                 f"who to list work on {line}")
        child.sendline("exit 0")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    wait_for(lambda: line not in run("who").stdout.decode(), 10, "who to forget the session")
    last = run("last").stdout.decode()
    assert re.search(rf"^work\s+{re.escape(line)}\s", last, re.M), last
    inside = f"/proc/{init_pid()}/root"  # the jail's own view (its /run may be a tmpfs)
    assert oct(os.stat(f"{inside}/{checks['wtmp']}").st_mode & 0o777) == "0o664"

    # A helper that dies without its logout: init marks its entry dead.
    child = spawn_pty()
    try:
        child.expect(PROMPT)
        child.sendline("tty")
        child.expect(r"/dev/(pts/\d+)\r\n")
        line = child.match.group(1)
        wait_for(lambda: re.search(rf"^work\s+{re.escape(line)}\s", run("who").stdout.decode(), re.M), 10, "who")
        helper = next(s["helper_pid"] for s in sessions() if s["tty"] == "/dev/" + line)
        os.kill(helper, signal.SIGKILL)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    wait_for(lambda: line not in run("who").stdout.decode(), 10, "who to drop the killed session")
    assert record(jail, "end", status="lost")["helper_status"] == "137"
    entries = utmp_entries(f"{inside}/{checks['utmp']}")
    assert not [e for e in entries if e[0] == 7 and e[2] == line], entries


def utmp_entries(path):
    data = open(path, "rb").read()
    out = []
    for i in range(0, len(data) - len(data) % 384, 384):
        r = data[i:i + 384]
        out.append((int.from_bytes(r[0:2], "little"), int.from_bytes(r[4:8], "little"),
                    r[8:40].rstrip(b"\0").decode(), r[44:76].rstrip(b"\0").decode()))
    return out


def test_who_and_last_in_the_busybox_jail(started, rootfs_a):
    jail = started(*HOST_ROOT_PEER)
    who_and_last(jail, {"utmp": "var/run/utmp", "wtmp": "var/log/wtmp"})
    assert os.stat(f"/proc/{init_pid()}/root/var/run/utmp").st_uid == 0


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory):
    cached = cached_debian_rootfs()
    root = tmp_path_factory.mktemp("debian-acct") / "root"
    subprocess.run(["cp", "-a", str(cached), str(root)], check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_who_and_last_in_the_debian_jail(started, debian_root):
    jail = started(*HOST_ROOT_PEER, root=debian_root)
    # Debian's /var/run is /run (a fresh tmpfs inside); wtmp is there already (root:utmp
    # 0664), utmp is made.
    who_and_last(jail, {"utmp": "run/utmp", "wtmp": "var/log/wtmp"})
    utmp = os.stat(f"/proc/{init_pid()}/root/run/utmp")
    assert utmp.st_uid == 0 and utmp.st_gid == 43 and oct(utmp.st_mode & 0o777) == "0o664"


# ---- jaild sessions ------------------------------------------------------------------------

def test_sessions_lists_and_kills(started):
    started()
    stdio = subprocess.Popen([JAIL, "-c", "sleep 60"], env={"JAIL_SOCKET": SOCKET}, preexec_fn=as_user(UID_A),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    child = spawn_pty(env={"SSH_CONNECTION": "127.0.0.5 1 127.0.0.1 22"})
    try:
        child.expect(PROMPT)
        child.sendline("exec sleep 61")
        live = wait_for(lambda: (lambda s: s if len(s) == 2 and all(x["pid"] for x in s) else None)(
            [s for s in sessions() if s["command"] in ("sleep 60", "-/bin/sh")]), 10, "two sessions")
        by_command = {s["command"]: s for s in live}
        assert by_command["sleep 60"]["tty"] == "stdio" and by_command["sleep 60"]["user"] == "work"
        assert by_command["sleep 60"]["peer_pid"] == stdio.pid
        pty = by_command["-/bin/sh"]
        assert pty["tty"].startswith("/dev/pts/") and pty["from"] == "127.0.0.5" and pty["idle_seconds"] is not None
        wait_for(lambda: open(f"/proc/{pty['pid']}/cmdline", "rb").read().startswith(b"sleep"), 10, "exec sleep")
        table = subprocess.run([JAILD, "sessions", NAME], capture_output=True, text=True, timeout=30).stdout
        assert "sleep 60" in table and "/dev/pts/" in table and table.startswith("JAIL")

        killed = subprocess.run([JAILD, "sessions", NAME, "--kill", str(by_command["sleep 60"]["id"])],
                                capture_output=True, text=True, timeout=30)
        assert killed.returncode == 0, killed.stderr
        assert stdio.wait(10) in (129, 137)
        assert pid_alive(pty["pid"]) and child.isalive()
        assert [s["id"] for s in sessions()] == [pty["id"]]
        missing = subprocess.run([JAILD, "sessions", NAME, "--kill", "9999"], capture_output=True, text=True)
        assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    finally:
        child.close(force=True)
        if stdio.poll() is None:
            stdio.kill()
            stdio.wait()


# ---- jaild enter ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])
def test_enter_as_the_user_and_as_root(started, mode):
    jail = started(*mode)
    user = subprocess.run([JAILD, "enter", NAME, "--", "id", "-u"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert (user.returncode, user.stdout) == (0, f"{UID_A}\n"), user.stderr
    root = subprocess.run([JAILD, "enter", SOCKET.replace(".sock", ".pid"), "--root", "--", "sh", "-c", "id -u; exit 5"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (root.returncode, root.stdout) == (5, "0\n"), root.stderr
    start = record(jail, "start", user="root")
    assert start["uid"] == "0" and start["peer_uid"] == "0" and start["command"] == "'sh' '-c' 'id -u; exit 5'"
    by_socket = subprocess.run([JAILD, "enter", SOCKET, "--", "echo", "it's"], capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
    assert by_socket.stdout == "it's\n", by_socket.stderr


def test_enter_on_a_terminal(started):
    started()
    child = spawn_pty(program=f"{JAILD} enter {NAME}", uid=None)
    try:
        child.expect(PROMPT)
        child.sendline("tty; id -u")
        child.expect(r"/dev/pts/\d+")
        child.expect(str(UID_A))
        child.sendline("exit 6")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 6


def test_the_jail_user_and_the_jail_cannot_use_enter(started, installed_jail):
    started()
    jaild = os.path.join(os.path.dirname(installed_jail), "jaild")
    for uid in (UID_A, UID_B):
        refused = subprocess.run([jaild, "enter", NAME, "--root", "--", "id"], capture_output=True, text=True,
                                 timeout=30, preexec_fn=as_user(uid))
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and "only root" in refused.stderr, refused.stderr


# ---- --syslog ------------------------------------------------------------------------------

SENDLOG = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "/dev/log");
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    long count = argc > 2 ? atol(argv[2]) : 1;
    for (long i = 0; i < count; i++) send(fd, argv[1], strlen(argv[1]), 0);
    return 0;
}
"""


@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "host-log")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    yield path, s
    s.close()


def receive(s, timeout=5.0):
    s.settimeout(timeout)
    try:
        return s.recv(65536)
    except socket.timeout:
        return None


def test_syslog_messages_reach_the_host_under_the_jails_name(started, listener, rootfs_a, tmp_path):
    path, s = listener
    program = tmp_path / "sendlog"
    (tmp_path / "sendlog.c").write_text(SENDLOG)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(program), str(tmp_path / "sendlog.c")], check=True)
    shutil.copy(program, rootfs_a / "bin" / "sendlog")
    try:
        jail = started("--syslog", "--syslog-target", path)
        assert run("logger -t app hello").returncode == 0
        assert receive(s) == f"<13>jail/{NAME}: app: hello".encode()
        run("sendlog '<38>Dec  1 03:12:00 otherhost sshd[1]: Accepted publickey for root'")
        assert receive(s) == f"<38>jail/{NAME}: otherhost sshd[1]: Accepted publickey for root".encode()
        run("sendlog '<165>1 2026-12-01T03:12:00Z otherhost app 99 - - spoofed'")
        assert receive(s) == f"<165>jail/{NAME}: app[99]: spoofed".encode()
        run("sendlog \"$(printf '<13>a\\nb')\"")
        assert receive(s) == f"<13>jail/{NAME}: a#012b".encode()

        # A flood: the relay forwards at most 1000 a second and says how many it dropped;
        # sessions keep opening fast meanwhile. The listener reads as a syslog daemon does.
        received = []
        reader = threading.Thread(target=lambda: received.extend(iter(lambda: receive(s, 3.0), None)))
        reader.start()
        begin = time.monotonic()
        flood = subprocess.Popen([JAIL, "-c", "sendlog '<13>flood' 100000; sendlog '<13>flood' 100000; "
                                  "sendlog '<13>flood' 100000"], env={"JAIL_SOCKET": SOCKET}, preexec_fn=as_user(UID_A))
        wait_for(lambda: received, 10, "the flood to start")
        opened = time.monotonic()
        assert run("echo during").stdout == b"during\n"
        latency = time.monotonic() - opened
        flooding = flood.poll() is None
        assert flood.wait(60) == 0
        elapsed = time.monotonic() - begin
        reader.join()
        reports = [m for m in received if b"dropped" in m]
        forwarded = len(received) - len(reports)
        dropped = sum(int(re.search(rb"(\d+) messages", r).group(1)) for r in reports)
        print(f"flood of 300000 in {elapsed:.2f} s: {forwarded} forwarded, {dropped} dropped ({len(reports)} reports); "
              f"a session during it took {latency * 1000:.0f} ms (flood still running: {flooding})")
        assert latency < 1.0
        assert forwarded <= 1000 * (elapsed + 2), forwarded
        assert reports and all(r.startswith(f"<44>jail/{NAME}: jaild: ".encode()) for r in reports)
        assert dropped + forwarded >= 300000 * 0.95, (dropped, forwarded)
        assert "syslog relay exited" not in jail.text()
    finally:
        os.unlink(rootfs_a / "bin" / "sendlog")
