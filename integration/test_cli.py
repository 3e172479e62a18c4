"""jaild's command line as an operator meets it (issue 29): every verb's --help, completion,
one exit-code scheme, one way to name a jail, bad input refused before anything starts, and
log priorities for the journal."""
import os
import pathlib
import resource
import signal
import subprocess

import pytest

from conftest import JAIL, JAILD, UID_A, Jail, as_user, pid_alive, wait_for

VERBS = ["start", "list", "show", "status", "stop", "sessions", "enter", "create", "destroy", "base",
         "authorized-keys", "metrics", "config"]
PREFIX = "/run/jail/clitest"


def jaild(*args, **kwargs):
    return subprocess.run([JAILD, *args], capture_output=True, text=True, timeout=60, **kwargs)


def test_every_verb_has_help_on_stdout_and_jaild_help_lists_them():
    top = jaild("--help")
    assert top.returncode == 0 and top.stderr == "", top
    for verb in VERBS:
        assert f"\n  {verb} " in top.stdout, verb
        result = jaild(verb, "--help")
        assert result.returncode == 0 and result.stderr == "", (verb, result)
        assert result.stdout.startswith("OVERVIEW: ") and f"USAGE: jaild {verb}" in result.stdout, (verb, result.stdout)
        assert jaild("help", verb).stdout == result.stdout, verb
    assert jaild("base", "list", "--help").returncode == 0
    assert jaild("help").stdout == top.stdout


def test_completion_scripts_are_generated(tmp_path):
    for shell in ("bash", "zsh", "fish"):
        result = jaild("--generate-completion-script", shell)
        assert result.returncode == 0 and "destroy" in result.stdout and "rlimit" in result.stdout, (shell, result.stderr)
        (tmp_path / shell).write_text(result.stdout)
    checked = subprocess.run(["bash", "-n", str(tmp_path / "bash")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_usage_errors_exit_2_for_every_verb():
    for verb in VERBS:
        # (start's own check, -u UID is required, comes first without one)
        result = jaild(verb, *(["-u", "61000"] if verb == "start" else []), "--no-such-option")
        assert result.returncode == 2, (verb, result)
        # (a missing JAIL is named first where the verb needs one)
        assert result.stdout == "" and result.stderr.startswith("jaild: "), (verb, result)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.endswith(f"--help')\n"), (verb, result)
    # Missing arguments and bad values are usage errors too, worded by the value's own parser.
    assert jaild("status").returncode == 2
    assert jaild("enter").returncode == 2
    bad = jaild("-u", "61000", "--rlimit", "nofile=9:8")
    assert bad.returncode == 2 and "rlimit 'nofile=9:8': soft limit above the hard limit" in bad.stderr, bad
    assert jaild("-u", "61000", "--boot-restart", "sometimes").returncode == 2
    assert jaild("sessions", "--kill", "3").returncode == 2  # --kill needs JAIL
    assert jaild("destroy", "x").returncode == 2  # --yes
    created = jaild("create", "x", "--uid", "63999", "--base", "b", "--memory", "lots")
    assert created.returncode == 2 and created.stderr.startswith("jaild: create: --memory 'lots' is not a size"), created


def test_version_names_the_versions_adoption_depends_on():
    result = jaild("--version")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("jaild ") and lines[0] != "jaild 0.1.0"
    assert [line.split()[:2] for line in lines[1:]] == [["state", "format"], ["adoption", "channel"], ["session", "protocol"]]
    assert jaild("-v").stdout == result.stdout


@pytest.fixture
def named_jail(rootfs_a):
    """A jail named only by --jail-name: no config file says the name."""
    jail = Jail(rootfs_a, UID_A, ["--jail-name", "clix"], prefix=PREFIX)
    jail.start()
    yield jail
    jail.stop()


def test_a_jail_named_on_its_command_line_is_found_by_every_verb(named_jail):
    assert not os.path.exists("/etc/jail/clix.conf")
    status = jaild("status", "clix")
    assert status.returncode == 0, status
    shown = jaild("show", "clix")
    assert shown.returncode == 0 and "name: clix" in shown.stdout, shown
    assert "clix" in jaild("list").stdout.split()
    entered = jaild("enter", "clix", "--", "/bin/sh", "-c", "echo in-$((40+2))")
    assert entered.returncode == 0 and entered.stdout == "in-42\n", entered
    sessions = jaild("sessions", "clix")
    assert sessions.returncode == 0, sessions
    stopped = jaild("stop", "clix")
    assert stopped.returncode == 0, stopped
    wait_for(lambda: not pid_alive(named_jail.init_pid), 30, "the jail's init to end")
    # Status in LSB's codes: 3 for a jail that a socket, pid file or UID:GID still names, 4 for
    # a name that names nothing any more (it came from the running jail only).
    assert jaild("status", named_jail.socket).returncode == 3
    assert jaild("status", named_jail.pidfile).returncode == 3
    gone = jaild("status", "clix")
    assert gone.returncode == 4 and "no jail is named 'clix'" in gone.stderr, gone
    for verb in ("show", "stop", "sessions", "enter"):
        assert jaild(verb, "clix").returncode == 1, verb


def has_cap_sys_resource():
    effective = next(line for line in open("/proc/self/status") if line.startswith("CapEff:")).split()[1]
    return bool(int(effective, 16) >> 24 & 1)  # CAP_SYS_RESOURCE


def test_rlimit_above_jailds_own_hard_limit_is_granted_by_the_supervisor_or_refused(rootfs_a):
    """jaild started with a low hard limit (as a unit's LimitNOFILE= would give it) raises its
    own, as host root with CAP_SYS_RESOURCE, so init, the rc and every session get the
    --rlimit; without that capability (a container's bounding set) it refuses in one line,
    before anything starts. A limit under its own applies everywhere either way."""
    def low_hard_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 2048))

    marker = "/tmp/rc-ulimit"
    for soft, hard in ((512, 1536), (4096, 8192)):
        jail = Jail(rootfs_a, UID_A, ["--rlimit", f"nofile={soft}:{hard}", "--rc", f"ulimit -Hn > {marker}"], prefix=PREFIX)
        began = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30, preexec_fn=low_hard_limit)
        try:
            if hard > 2048 and not has_cap_sys_resource():
                assert began.returncode == 1 and began.stderr == (
                    f"jaild: --rlimit nofile={soft}:{hard}: above jaild's own hard limit 2048, which it cannot raise "
                    "without CAP_SYS_RESOURCE\n"), began
                assert not os.path.exists(jail.socket) and not os.path.exists(jail.pidfile)
                continue
            assert began.returncode == 0, began.stderr
            jail.supervisor = int(open(jail.pidfile).read())
            entered = jaild("enter", jail.socket, "--", "/bin/sh", "-c", f"ulimit -Sn; ulimit -Hn; cat {marker}")
            assert entered.returncode == 0 and entered.stdout == f"{soft}\n{hard}\n{hard}\n", entered
            session = jail.run("ulimit -Hn")
            assert session.returncode == 0 and session.stdout == f"{hard}\n".encode(), session
        finally:
            jail.stop()
            pathlib.Path(rootfs_a, marker.lstrip("/")).unlink(missing_ok=True)


def test_rlimit_the_kernel_refuses_is_refused_before_anything_starts(rootfs_a):
    nr_open = int(pathlib.Path("/proc/sys/fs/nr_open").read_text())
    jail = Jail(rootfs_a, UID_A, ["--rlimit", f"nofile={nr_open + 1}"], prefix=PREFIX)
    result = subprocess.run(jail.command(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result
    assert result.stderr == (f"jaild: --rlimit nofile={nr_open + 1}:{nr_open + 1}: above the kernel's most open files "
                             f"(/proc/sys/fs/nr_open = {nr_open})\n")
    assert not os.path.exists(jail.socket) and not os.path.exists(jail.pidfile)


def test_a_hash_inside_a_config_value_is_kept(rootfs_a, tmp_path):
    config = tmp_path / "hash.conf"
    out = "/tmp/boot-hash"
    config.write_text(f"  # a comment, indented\nuid = {UID_A}\nroot = {rootfs_a}\nsocket-prefix = {PREFIX}\n"
                      f"jail-name = hashy\nboot = echo \"a#b # c\" > {out}\n")
    result = jaild("--config", str(config))
    assert result.returncode == 0, result
    try:
        def written():
            entered = jaild("enter", "hashy", "--", "/bin/cat", out)
            return entered.stdout if entered.returncode == 0 else None
        wait_for(written, 20, "the boot command's file")
        assert written() == "a#b # c\n"
    finally:
        assert jaild("stop", "hashy").returncode == 0
        pathlib.Path(rootfs_a, out.lstrip("/")).unlink(missing_ok=True)


def journal_stream_of(path):
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"


def test_lines_carry_their_priority_when_stderr_is_the_journal(rootfs_a, tmp_path):
    """sd-daemon(3): JOURNAL_STREAM names stderr's device and inode when systemd connected it to
    the journal; then each line starts with <3> (error), <4> (warning) or <6> (info)."""
    failed_log = tmp_path / "failed.log"
    with open(failed_log, "wb") as log:
        env = {"PATH": os.environ["PATH"], "JOURNAL_STREAM": journal_stream_of(failed_log)}
        result = subprocess.run([JAILD, "-u", str(UID_A), "-r", "/no/such/root"], stderr=log, env=env, timeout=30)
    assert result.returncode == 1
    assert failed_log.read_text() == "<3>jaild: root /no/such/root does not exist\n"

    log_path = tmp_path / "foreground.log"
    log = open(log_path, "wb")
    env = {"PATH": os.environ["PATH"], "JOURNAL_STREAM": journal_stream_of(log_path)}
    proc = subprocess.Popen([JAILD, "-c", "-u", str(UID_A), "-r", str(rootfs_a), "-a", PREFIX, "--boot", "exit 3"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        wait_for(lambda: "boot exit" in log_path.read_text() or proc.poll() is not None, 30, "the boot command's exit")
        lines = log_path.read_text().splitlines()
        warning = next(line for line in lines if "boot exit" in line)
        assert warning.startswith("<4>jaild: warning: "), lines
        assert all(line[:3] in ("<3>", "<4>", "<6>") for line in lines), lines
        assert any(line.startswith("<6>jaild: ") for line in lines), lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        log.close()
    # Not the journal (a terminal, a file of its own): no prefixes.
    plain = subprocess.run([JAILD, "-u", str(UID_A), "-r", "/no/such/root"], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "JOURNAL_STREAM": "1:2"}, timeout=30)
    assert plain.stderr == "jaild: root /no/such/root does not exist\n"


def test_the_client_as_another_user_still_works(named_jail):
    # The verbs changed jaild's parsing only: `jail` for the jail's user is untouched.
    result = subprocess.run([JAIL, "-c", "echo ok"], capture_output=True, timeout=60,
                            env={"JAIL_SOCKET": named_jail.socket}, preexec_fn=as_user(UID_A))
    assert result.returncode == 0 and result.stdout == b"ok\n", result


def test_config_keys_are_the_start_options(tmp_path):
    """One table: every long option of `jaild start` is a config key (but the config itself and
    what only a terminal asks), and every key is an option."""
    import json
    tree = json.loads(jaild("--experimental-dump-help").stdout)
    start = next(c for c in tree["command"]["subcommands"] if c["commandName"] == "start")
    options = {n["name"] for a in start["arguments"] for n in a.get("names", []) if n["kind"] == "long"}
    options -= {"config", "version", "help", "map-root", "no-forward-agent", "no-syslog"}
    config = tmp_path / "bogus.conf"
    config.write_text("bogus = 1\n")
    refused = jaild("--config", str(config))
    assert refused.returncode == 1
    known = refused.stderr.split("(known: ", 1)[1].rstrip(")\n").split(", ")
    assert set(known) == options
