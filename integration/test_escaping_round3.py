"""Hardening round three (issue 27), items 6, 8 and 9, as a jail would attack:

6. C1 controls (U+009B CSI) and bidi overrides (U+202E) from a boot command, an rc, the
   syslog relay and a session's command never reach jaild's log, the host's syslog or
   `jaild sessions` (table and --json) raw: one escaper (Logfmt's) on every path.
8. The syslog relay forwards at most 256 KiB a second (and 1,000 messages), whatever the size
   of the messages, and reports what it dropped.
9. `jaild list` counts sessions by what init knows (the helpers' records), not by process
   titles: a jail user's process titled `jaild: [9] /dev/pts/9` is not a session."""
import json
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import JAIL, JAILD, UID_A, as_user, children_of, wait_for
from harness import cmdline
from test_accounting import NAME, Daemon, listener, receive  # noqa: F401  (fixture)

# What must never arrive: C1 CSI, RIGHT-TO-LEFT OVERRIDE (UTF-8), ESC.
RAW = (b"\xc2\x9b", b"\xe2\x80\xae", b"\x1b")

# In busybox sh: printf with octal escapes prints U+009B, U+202E and ESC.
HOSTILE_PRINTF = r"printf '%s a\302\23331mb\342\200\256c\033[2Jd\n'"

PROGRAM = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

static int devlog(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "/dev/log");
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
    return fd;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "send")) {          /* escprobe send MESSAGE */
        return send(devlog(), argv[2], strlen(argv[2]), 0) < 0;
    }
    if (argc == 4 && !strcmp(argv[1], "flood")) {         /* escprobe flood SIZE SECONDS */
        int fd = devlog();
        size_t size = atol(argv[2]);
        char *message = malloc(size);
        memset(message, 'x', size);
        memcpy(message, "<13>flood: ", 11);
        long sent = 0;
        for (double end = now() + atof(argv[3]); now() < end; sent++) send(fd, message, size, 0);
        printf("%ld\n", sent);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "title")) {         /* escprobe title: pose as a session helper */
        char *args[] = {"jaild: [9] /dev/pts/9", "parked", NULL};
        execv("/proc/self/exe", args);
        return 127;
    }
    if (argc == 2 && !strcmp(argv[1], "parked")) {
        prctl(PR_SET_NAME, "jaild: [9]");
        pause();
        return 0;
    }
    fprintf(stderr, "usage: escprobe send MSG | flood SIZE SECONDS | title\n");
    return 2;
}
"""


@pytest.fixture(scope="module")
def escprobe_binary(tmp_path_factory):
    directory = tmp_path_factory.mktemp("escprobe")
    (directory / "escprobe.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(directory / "escprobe"), str(directory / "escprobe.c")], check=True)
    return directory / "escprobe"


@pytest.fixture
def escprobe_daemon(rootfs_a, public_tmp, tmp_path, escprobe_binary):
    """Starts foreground jaild's named `acct` (rootfs A with /bin/escprobe) and stops them."""
    jails = []
    installed = rootfs_a / "bin" / "escprobe"
    shutil.copy(escprobe_binary, installed)

    def start(*args):
        jail = Daemon(rootfs_a, list(args), tmp_path / f"jaild-{len(jails)}.log", str(public_tmp / "jaild"))
        jails.append(jail)
        return jail
    try:
        yield start
    finally:
        for jail in jails:
            jail.stop()
        installed.unlink(missing_ok=True)


def log_bytes(jail):
    return open(jail.log_path, "rb").read()


def assert_no_raw_controls(data, where):
    for raw in RAW:
        assert raw not in data, f"{raw!r} reached {where} raw: {data[-2000:]!r}"


def session_client(jail, command):
    return subprocess.Popen([JAIL, "-c", command], env={"JAIL_SOCKET": jail.socket}, preexec_fn=as_user(UID_A),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_client(client):
    if client.poll() is None:
        client.kill()
        client.wait(10)


# ---- item 6: C1 and bidi, escaped on every path ---------------------------------------------

def test_boot_and_rc_output_reach_jailds_log_escaped(escprobe_daemon):
    jail = escprobe_daemon("--boot", HOSTILE_PRINTF % "boot", "--rc", HOSTILE_PRINTF % "rc")
    wait_for(lambda: b"boot a" in log_bytes(jail) and b"rc a" in log_bytes(jail), 10, "the boot and rc output")
    data = log_bytes(jail)
    assert_no_raw_controls(data, "jaild's log")
    for who in (b"boot", b"rc"):
        assert who + b" a\\x9b31mb\\u{202e}c\\x1b[2Jd" in data, data


def test_syslog_relay_escapes_c1_and_bidi(escprobe_daemon, listener):
    path, s = listener
    jail = escprobe_daemon("--syslog", "--syslog-target", path)
    sent = jail.run(r"""escprobe send "$(printf '<13>app: a\302\23331mb\342\200\256c\033[2Jd\342\201\246')" """)
    assert sent.returncode == 0, sent.stderr
    message = receive(s)
    assert message is not None, "nothing reached the host's syslog"
    assert_no_raw_controls(message, "the host's syslog")
    assert message == f"<13>jail/{NAME}: app: a#302#23331mb#342#200#256c#033[2Jd#342#201#246".encode()


USERNS_MODES = pytest.mark.parametrize("mode", [(), ("--no-userns",)], ids=["userns", "no-userns"])


@USERNS_MODES
def test_sessions_table_and_json_escape_the_command(escprobe_daemon, mode):
    jail = escprobe_daemon(*mode)
    command = "sleep 60 # \u009b31m \u202egpj.exe \x1b[2J"
    client = session_client(jail, command)
    try:
        def listed():
            out = subprocess.run([JAILD, "sessions", NAME, "--json"], capture_output=True, timeout=30)
            assert out.returncode == 0, out.stderr
            return out.stdout if any(s["command"] == command for s in json.loads(out.stdout)) else None
        data = wait_for(listed, 10, "the session in `jaild sessions --json`")
        assert_no_raw_controls(data, "jaild sessions --json")
        assert b"\\u009b31m \\u202egpj.exe \\u001b[2J" in data, data
        table = subprocess.run([JAILD, "sessions", NAME], capture_output=True, timeout=30)
        assert table.returncode == 0, table.stderr
        assert_no_raw_controls(table.stdout, "jaild sessions")
        assert b"\\x9b31m \\u{202e}gpj.exe \\x1b[2J" in table.stdout, table.stdout
        assert_no_raw_controls(log_bytes(jail), "jaild's log (the session record)")
    finally:
        stop_client(client)


# ---- item 8: the relay's byte budget ----------------------------------------------------------

BUDGET = 256 << 10


def test_syslog_relay_forwards_at_most_256_kib_a_second(escprobe_daemon, listener):
    path, s = listener
    jail = escprobe_daemon("--syslog", "--syslog-target", path)
    received = []
    reader = threading.Thread(target=lambda: received.extend(iter(lambda: receive(s, 3.0), None)))
    reader.start()
    begin = time.monotonic()
    flood = jail.run("escprobe flood 8000 2", timeout=60)
    elapsed = time.monotonic() - begin
    reader.join()
    assert flood.returncode == 0, flood.stderr
    sent = int(flood.stdout)
    reports = [m for m in received if b"dropped" in m]
    forwarded = [m for m in received if b"dropped" not in m]
    forwarded_bytes = sum(len(m) for m in forwarded)
    print(f"flood of {sent} messages of 8000 bytes in {elapsed:.2f} s: {len(forwarded)} forwarded "
          f"({forwarded_bytes} bytes, {forwarded_bytes / elapsed / 1024:.0f} KiB/s); reports: {reports[:3]}")
    # Each one-second window forwards at most the budget; the flood spans at most elapsed + 1 of them.
    assert forwarded_bytes <= BUDGET * (elapsed + 1), (forwarded_bytes, elapsed)
    assert forwarded_bytes >= BUDGET * 1, "the relay forwarded (almost) nothing"
    assert reports and all(r.startswith(f"<44>jail/{NAME}: jaild: ".encode()) for r in reports), reports
    drops = [re.search(rb"(\d+) messages \((\d+) bytes\)", r) for r in reports]
    assert all(drops), reports
    dropped = sum(int(d.group(1)) for d in drops)
    assert dropped + len(forwarded) >= sent * 0.95, (dropped, len(forwarded), sent)
    assert "syslog relay exited" not in jail.text()


# ---- item 9: jaild list counts sessions by init's records, not titles --------------------------

def sessions_json(jail):
    out = subprocess.run([JAILD, "sessions", NAME, "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def list_entry(jail):
    out = subprocess.run([JAILD, "list", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return next(e for e in json.loads(out.stdout) if e["socket"] == jail.socket)


@USERNS_MODES
def test_a_forged_title_is_not_a_session_in_jaild_list(escprobe_daemon, mode):
    jail = escprobe_daemon(*mode)
    init = list_entry(jail)["init_pid"]
    parked = jail.run("setsid escprobe title </dev/null >/dev/null 2>&1 &")
    assert parked.returncode == 0, parked.stderr

    def forged():
        return [p for p in children_of(init) if cmdline(p).startswith("jaild: [9] ")]
    wait_for(forged, 10, "the process titled `jaild: [9] /dev/pts/9` under init")
    # The session that parked it is over (as `jaild sessions` sees it): whatever the title says,
    # there is no session.
    wait_for(lambda: sessions_json(jail) == [], 10, "the parking session's end")
    assert list_entry(jail)["sessions"] == 0, list_entry(jail)
    table = subprocess.run([JAILD, "list"], capture_output=True, text=True, timeout=30).stdout
    row = next(line for line in table.splitlines() if line.split()[1:2] == [jail.socket])  # NAME, SOCKET, …
    assert row.split()[5] == "0", table

    client = session_client(jail, "sleep 60")
    try:
        wait_for(lambda: list_entry(jail)["sessions"] == 1, 10, "the real session in jaild list")
    finally:
        stop_client(client)
    wait_for(lambda: list_entry(jail)["sessions"] == 0, 10, "the session's end in jaild list")
    assert forged(), "the forged process is still there"
