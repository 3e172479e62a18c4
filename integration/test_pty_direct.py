"""Terminal sessions pass the jail pty's master to the client (protocol version 3): the session
helper leaves the data path. The bytes arrive exact and complete, the exit status after them,
a program that does not read its terminal does not stop its output, and a client that dies
leaves nothing behind."""
import errno
import os
import select
import signal
import subprocess
import time
import tty

from conftest import JAIL, UID_A, as_user, children_of, pid_alive, sha256, wait_for

PTMX = (5, 2)  # the device number of every pty master (/dev/ptmx, devpts' ptmx)


def char_devices(pid):
    """{fd: (major, minor)} of the character devices among the descriptors of `pid`."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            st = os.stat(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if (st.st_mode & 0o170000) == 0o020000:
            out[int(name)] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return out


def devices_held(pid):
    return list(char_devices(pid).values())


def session_helpers(jail):
    """The helpers of terminal sessions: their title is `jaild: [PID] /dev/pts/N`."""
    out = []
    for pid in children_of(jail.init_pid):
        try:
            title = open(f"/proc/{pid}/cmdline", "rb").read()
        except (FileNotFoundError, ProcessLookupError):  # gone between the listing and the read (ESRCH)
            continue
        if title.startswith(b"jaild: [") and b"/dev/pts/" in title:
            out.append(pid)
    return out


class TerminalClient:
    """`jail` on a pty of ours, as the jail user; reads everything it prints until it exits."""

    def __init__(self, jail, command):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.proc = subprocess.Popen([JAIL, "-c", command], stdin=slave, stdout=slave, stderr=slave,
                                     env={"JAIL_SOCKET": jail.socket, "PATH": "/usr/bin:/bin"},
                                     preexec_fn=as_user(UID_A), start_new_session=True)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.output = bytearray()

    def pump(self, timeout=0.1, send=b""):
        """Reads what the client printed (and writes `send`, as far as it goes); returns the
        bytes of `send` written, or -1 once the client's terminal is closed."""
        wants = [self.master] if send else []
        readable, writable, _ = select.select([self.master], wants, [], timeout)
        written = 0
        if writable:
            try:
                written = os.write(self.master, send)
            except BlockingIOError:
                pass
        if readable:
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError as error:
                if error.errno == errno.EIO:
                    return -1
                raise
            if not chunk:
                return -1
            self.output += chunk
        return written

    def wait_for_output(self, marker, timeout=10):
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            assert self.pump() != -1, f"the client ended before {marker!r}: {bytes(self.output[-200:])!r}"
            assert time.monotonic() < deadline, f"no {marker!r} in {timeout}s: {bytes(self.output[-200:])!r}"

    def read_until_exit(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.pump() != -1:
            assert time.monotonic() < deadline, f"client still printing after {timeout}s: {bytes(self.output[-200:])!r}"
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_the_helper_holds_no_pty_master_and_a_large_payload_arrives_intact(jail_a):
    payload = os.urandom(3 << 20)
    path = jail_a.root / "home/work/payload"
    path.write_bytes(payload)
    os.chown(path, UID_A, UID_A)
    # Raw on the jail's pty too (no \n → \r\n), so the bytes that arrive are the file's.
    # The program waits for one line on its terminal before it prints.
    client = TerminalClient(jail_a, "stty raw -echo; printf ready; head -c 1 >/dev/null; printf '<<'; "
                                    "cat /home/work/payload; printf '>>'; exit 7")
    try:
        client.wait_for_output(b"ready")
        helper = wait_for(lambda: session_helpers(jail_a), 10, "the session helper")[0]
        # The master went to the client; the helper holds no end of the pty (the slave is the
        # program's alone).
        assert not [d for d in devices_held(helper) if d == PTMX or 136 <= d[0] <= 143], devices_held(helper)
        assert PTMX in devices_held(client.proc.pid)
        client.pump(send=b"g")
        code = client.read_until_exit()
    finally:
        client.close()
        path.unlink()
    out = bytes(client.output)
    start = out.index(b"<<") + 2
    end = out.rindex(b">>")
    assert end - start == len(payload) and sha256(out[start:end]) == sha256(payload)
    assert out.endswith(b">>"), out[-50:]  # nothing after the last output
    assert code == 7


def test_output_keeps_flowing_while_the_program_reads_no_input(jail_a):
    # The program never reads its terminal while we type 1 MiB at it: the pty's input queue
    # fills, the client holds one bounded chunk and stops reading us, and the program's
    # output still arrives, all of it, then its status.
    # Raw: a canonical line discipline would drop what overflows a line instead of pushing back.
    client = TerminalClient(jail_a, "stty raw -echo; i=0; while [ $i -lt 20 ]; do echo tick$i; sleep 0.05; "
                                    "i=$((i+1)); done; exit 3")
    typed = 0
    try:
        deadline = time.monotonic() + 30
        while b"tick19" not in client.output:
            assert time.monotonic() < deadline, bytes(client.output[-200:])
            written = client.pump(send=b"x" * (1 << 16) if typed < (1 << 20) else b"")
            assert written != -1, bytes(client.output[-200:])
            typed += written
        code = client.read_until_exit()
    finally:
        client.close()
    assert 0 < typed < (1 << 20), typed  # the client stopped taking input: bounded
    ticks = [line.strip() for line in bytes(client.output).split(b"\n") if line.startswith(b"tick")]
    assert ticks == [b"tick%d" % i for i in range(20)], ticks
    assert code == 3


def test_a_killed_client_hangs_up_the_session_and_leaves_nothing_behind(jail_a):
    client = TerminalClient(jail_a, "echo started; sleep 321")
    try:
        client.wait_for_output(b"started")
        helper = wait_for(lambda: session_helpers(jail_a), 10, "the session helper")[0]
        program = wait_for(lambda: children_of(helper), 10, "the program")[0]
        client.proc.send_signal(signal.SIGKILL)
        client.proc.wait()
        wait_for(lambda: not pid_alive(helper) and not pid_alive(program), 10, "the helper and program to end")
        assert b"sleep 321" not in jail_a.run("ps -o args").stdout
    finally:
        client.close()


def test_the_host_user_can_do_to_the_master_only_what_a_terminal_user_can(jail_a):
    """The master the client holds is a jail devpts object: its inode is not the host user's,
    so fchmod and fchown fail, while reading and writing it is the session itself."""
    import ctypes
    client = TerminalClient(jail_a, "echo started; sleep 300")
    try:
        client.wait_for_output(b"started")
        held = next(fd for fd, device in char_devices(client.proc.pid).items() if device == PTMX)
        pidfd = os.pidfd_open(client.proc.pid)
        libc = ctypes.CDLL(None, use_errno=True)
        master = libc.syscall(438, pidfd, held, 0)  # pidfd_getfd: a copy of the client's master
        os.close(pidfd)
        assert master >= 0, os.strerror(ctypes.get_errno())
        assert os.fstat(master).st_uid != UID_A
        child = os.fork()
        if child == 0:
            code = 0
            try:
                os.setgroups([])
                os.setgid(UID_A)
                os.setuid(UID_A)
                for attempt in (lambda: os.fchmod(master, 0o666), lambda: os.fchown(master, UID_A, UID_A)):
                    try:
                        attempt()
                        code = 1
                    except PermissionError:
                        pass
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        os.close(master)
        assert os.waitstatus_to_exitcode(status) == 0, "the host user changed the jail's ptmx"
    finally:
        client.close()
