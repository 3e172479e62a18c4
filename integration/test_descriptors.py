"""jaild keeps none of its caller's descriptors (issue 36, found with `flock LOCK jaild …`):
a daemon that inherited a lock or a pipe would hold it for the jail's whole life, so the
caller's lock stays taken and the caller's pipe never reaches EOF."""
import fcntl
import os
import signal
import subprocess

from conftest import JAILD, UID_A, Jail, descendants, pid_alive, wait_for


def pipe_of(fd):
    return f"pipe:[{os.fstat(fd).st_ino}]"


def holders(pids, target):
    """The pids of `pids` with a descriptor on `target` (a readlink of /proc/PID/fd/N)."""
    found = []
    for pid in pids:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}") == target:
                    found.append(pid)
            except FileNotFoundError:
                pass
    return found


def at_eof(read_end):
    """True when no process holds the write end any more (a read returns b"" at once)."""
    os.set_blocking(read_end, False)
    try:
        return os.read(read_end, 1) == b""
    except BlockingIOError:
        return False


def session_descriptors(jail):
    result = jail.run("ls -l /proc/self/fd/")
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def assert_no_process_of_the_jail_holds(jail, read_end):
    """Neither the supervisor nor anything below it (init, the spare, a session) holds the
    caller's write end, so the caller's read end is at EOF while the jail runs."""
    target = pipe_of(read_end)
    # Before the fix the supervisor (and from it init) held the write end: no EOF.
    assert holders(jail.all_pids(), target) == []
    assert at_eof(read_end)
    assert target not in session_descriptors(jail)


def started_passing_a_pipe(jail):
    """Runs jaild for `jail` with the write end of a new pipe as one more descriptor (closed
    here once jaild returned, so the jail's processes are the only writers left); returns the
    read end."""
    read_end, write_end = os.pipe()
    try:
        began = subprocess.run(jail.command(), pass_fds=(write_end,), capture_output=True, text=True, timeout=30)
    finally:
        os.close(write_end)
    if began.returncode != 0:
        os.close(read_end)
        raise AssertionError(f"jaild failed: {began.stderr}")
    jail.supervisor = int(open(jail.pidfile).read())
    assert pid_alive(jail.supervisor)
    return read_end


def test_a_daemonized_jaild_keeps_no_descriptor_of_its_caller(rootfs_a):
    jail = Jail(rootfs_a, UID_A)
    try:
        read_end = started_passing_a_pipe(jail)
        try:
            assert_no_process_of_the_jail_holds(jail, read_end)
        finally:
            os.close(read_end)
    finally:
        jail.stop()


def test_a_lock_held_around_jaild_is_free_once_it_returns(rootfs_a, tmp_path):
    """`flock LOCK jaild …`: the lock is the caller's, for the time jaild takes to start."""
    lock = tmp_path / "lock"
    lock.touch()
    jail = Jail(rootfs_a, UID_A)
    try:
        began = subprocess.run(["flock", str(lock)] + jail.command(), capture_output=True, text=True, timeout=30)
        assert began.returncode == 0, began.stderr
        jail.supervisor = int(open(jail.pidfile).read())
        assert pid_alive(jail.supervisor)
        with open(lock) as again:
            # Raises BlockingIOError while the jail's supervisor holds the caller's lock.
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        jail.stop()


def test_a_foreground_jaild_keeps_no_descriptor_of_its_caller(rootfs_a, tmp_path):
    read_end, write_end = os.pipe()
    jail = Jail(rootfs_a, UID_A)
    log = open(tmp_path / "jaild.log", "w")
    proc = subprocess.Popen([JAILD, "-c"] + jail.command()[1:], pass_fds=(write_end,),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        os.close(write_end)
        write_end = None
        wait_for(lambda: os.path.exists(jail.socket) and os.path.exists(jail.pidfile), 20, "the jail's socket")
        jail.supervisor = proc.pid
        assert session_descriptors(jail)  # a session works: the jail is up
        assert proc.poll() is None
        assert_no_process_of_the_jail_holds(jail, read_end)
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_a_jaild_adopting_a_jail_keeps_no_descriptor_of_its_caller(rootfs_a):
    """The other path that makes a supervisor: jaild run again for a jail whose supervisor died."""
    jail = Jail(rootfs_a, UID_A).start()
    init = jail.init_pid
    try:
        os.kill(jail.supervisor, signal.SIGKILL)
        wait_for(lambda: not pid_alive(jail.supervisor), 10, "the supervisor to die")
        read_end = started_passing_a_pipe(jail)
        try:
            assert pid_alive(init)
            # The adopting supervisor is not init's parent: init and its tree are looked at apart.
            assert holders([init] + descendants(init), pipe_of(read_end)) == []
            assert_no_process_of_the_jail_holds(jail, read_end)
        finally:
            os.close(read_end)
    finally:
        left = [init] + descendants(init)
        jail.stop()
        try:
            wait_for(lambda: not pid_alive(init), 30, "the adopted jail's init to stop")
        finally:
            for pid in left:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
