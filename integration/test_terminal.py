"""pty sessions: raw mode restored, termios and window size, SIGWINCH, job control, Ctrl-C
(core item 8), driven through a real pty with pexpect."""
import os
import subprocess
import termios

import pexpect

from conftest import JAIL, UID_A, descendants, leave_shell, resize_reaches_the_foreground_job, wait_for

PROMPT = r"work@[^:]*:~\$ "


def spawn(jail, args="", rows=24, cols=80, env=None):
    environment = {"JAIL_SOCKET": jail.socket, "TERM": "xterm", "PATH": "/usr/bin:/bin"}
    environment.update(env or {})
    child = pexpect.spawn(f"setpriv --reuid={UID_A} --regid={UID_A} --clear-groups {JAIL} {args}",
                          env=environment, timeout=10, dimensions=(rows, cols), encoding="utf-8")
    return child


def in_foreground(jail, cmdline):
    """True when a jail process with this cmdline leads the foreground group of its terminal."""
    for pid in descendants(jail.init_pid):
        try:
            if open(f"/proc/{pid}/cmdline", "rb").read().rstrip(b"\0") != cmdline:
                continue
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        pgrp, tpgid = int(fields[2]), int(fields[5])
        return pgrp == tpgid
    return False


def test_interactive_shell_on_the_jails_pty(jail_a):
    child = spawn(jail_a, env={"SSH_TTY": "/dev/pts/77"})
    try:
        child.expect(PROMPT)
        child.sendline("tty; echo SSH_TTY=$SSH_TTY; ps -o pid,tty,args | grep -c jaild")
        child.expect(r"(/dev/pts/\d+)\r\n")
        pts = child.match.group(1)
        child.expect(r"SSH_TTY=(\S+)\r\n")
        assert child.match.group(1) == pts  # rewritten to the jail's own pty
        child.expect(PROMPT)
        assert leave_shell(child, 5) == 5
    finally:
        child.close()


def test_window_size_and_sigwinch(jail_a):
    child = spawn(jail_a, rows=30, cols=100)
    try:
        child.expect(PROMPT)
        child.sendline("stty size")
        child.expect("30 100")
        child.expect(PROMPT)
        resize_reaches_the_foreground_job(child, 45, 132)
        child.expect(PROMPT)
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()


def test_ctrl_c_interrupts_only_the_foreground_job(jail_a):
    child = spawn(jail_a)
    try:
        child.expect(PROMPT)
        child.sendline("sleep 100; echo after-sleep")
        wait_for(lambda: b"sleep 100" in jail_a.run("ps -o args").stdout, 10, "sleep to start")
        child.sendcontrol("c")
        child.expect(PROMPT)
        assert "\nafter-sleep" not in child.before  # the command line's echo has it, the output not
        child.sendline("echo still-here")
        child.expect("still-here")
        child.expect(PROMPT)
        # Job control: a background job, brought to the foreground, then interrupted.
        child.sendline("sleep 200 &")
        child.expect(PROMPT)
        child.sendline("fg")
        wait_for(lambda: in_foreground(jail_a, b"sleep\x00200"), 10, "sleep 200 in the foreground")
        child.sendcontrol("c")
        child.expect(PROMPT)
        assert leave_shell(child, 0) == 0
    finally:
        child.close()
    assert b"sleep" not in jail_a.run("ps -o args").stdout


def test_terminal_modes_are_restored_on_every_exit(jail_a):
    """Raw mode is restored after a normal exit, after an error, and after a signal."""
    import pty
    for how in ("exit", "error", "signal"):
        master, slave = pty.openpty()
        before = termios.tcgetattr(slave)
        env = {"JAIL_SOCKET": jail_a.socket if how != "error" else "/nonexistent.sock"}
        proc = subprocess.Popen([JAIL], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                preexec_fn=None if os.getuid() else None, user=UID_A, group=UID_A, extra_groups=[])
        try:
            if how == "exit":
                os.write(master, b"exit 4\n")
            elif how == "signal":
                wait_for(lambda: termios.tcgetattr(slave)[3] & termios.ECHO == 0, 10, "raw mode")
                proc.terminate()
            output = b""
            code = proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert termios.tcgetattr(slave) == before, how
        os.close(master)
        os.close(slave)
        assert code == {"exit": 4, "error": 255, "signal": -15}[how], (how, code, output)


def test_client_hangup_kills_the_sessions_foreground(jail_a):
    child = spawn(jail_a)
    try:
        child.expect(PROMPT)
        child.sendline("sleep 321")
        wait_for(lambda: b"sleep 321" in jail_a.run("ps -o args").stdout, 10, "sleep to start")
    finally:
        child.close(force=True)
    wait_for(lambda: b"sleep 321" not in jail_a.run("ps -o args").stdout, 10, "hangup to end the session")
