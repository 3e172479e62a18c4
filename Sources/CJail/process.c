/* Process-level calls: title, raw clone, pivot_root, prctl, fds, signals, wait status. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

/* The argv strings, as the kernel laid them out; only a constructor sees them (glibc passes
 * argc/argv/envp to ELF constructors). */
static char **saved_argv;
static int saved_argc;

__attribute__((constructor)) static void cj_save_argv(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

/* Like setproctitle(3): the title is written over the argv strings and the environment
 * strings that follow them, so the environment is first copied to the heap. */
void cj_set_proctitle(const char *title) {
    static char *area;
    static size_t area_len;
    if (area == NULL) {
        if (saved_argc < 1 || saved_argv == NULL || saved_argv[0] == NULL) return;
        char *end = saved_argv[0];
        for (int i = 0; i < saved_argc; i++)
            if (saved_argv[i] == end) end = saved_argv[i] + strlen(saved_argv[i]) + 1;
        size_t count = 0;
        while (environ != NULL && environ[count] != NULL) count++;
        char **copy = calloc(count + 1, sizeof(char *));
        if (copy == NULL) return;
        for (size_t i = 0; i < count; i++) {
            if (environ[i] == end) end = environ[i] + strlen(environ[i]) + 1;
            copy[i] = strdup(environ[i]);
        }
        environ = copy;
        area = saved_argv[0];
        area_len = (size_t)(end - area);
        for (int i = 1; i < saved_argc; i++) saved_argv[i] = NULL;
    }
    size_t n = strlen(title);
    if (n >= area_len) n = area_len - 1;
    memcpy(area, title, n);
    memset(area + n, 0, area_len - n);
    /* The kernel's short name (comm): the title up to its first space ("jaild:"). lxcfs
     * reads the start time of a jail's PID 1 from /proc/PID/stat with scanf's "(%s)", which
     * a space in comm derails (the jail's /proc/uptime was garbage); a prefix of argv[0], so
     * ps (procps, busybox) still shows the title alone, not "{comm} title". */
    char comm[16];
    size_t i = 0;
    for (; i < sizeof comm - 1 && title[i] != '\0' && title[i] != ' '; i++) comm[i] = title[i];
    comm[i] = '\0';
    prctl(PR_SET_NAME, (unsigned long)comm, 0, 0, 0);
}

pid_t cj_clone(unsigned long flags) {
    /* With a NULL stack, clone behaves like fork: the child runs on a copy of this stack. */
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* struct clone_args of <linux/sched.h>, up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7). */
struct cj_clone_args {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};

pid_t cj_clone_into_cgroup(unsigned long flags, int cgroup_fd) {
    if (cgroup_fd < 0) return cj_clone(flags);
    /* clone3 with no stack (0 and size 0) has fork semantics too. The child is born in the
     * cgroup: no write to cgroup.procs, whose first one after a quiet spell waits out an RCU
     * grace period (cgroup_threadgroup_rwsem), milliseconds on a HZ=250 kernel. With
     * CLONE_NEWCGROUP the new namespace is rooted at that cgroup (cgroup_post_fork). */
    struct cj_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = (unsigned long long)flags | CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (unsigned long long)cgroup_fd;
    return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

pid_t cj_clone_owned_by(unsigned long flags, uid_t owner) {
    return cj_clone_owned_by_into_cgroup(flags, owner, -1);
}

pid_t cj_clone_owned_by_into_cgroup(unsigned long flags, uid_t owner, int cgroup_fd) {
    /* A new user namespace is owned by the creator's effective uid, and the kernel charges
     * the namespace's per-user counts (ucounts: inotify, namespaces, fanotify, the rlimit
     * counts) to that uid in the parent namespace. So for the clone only, the effective uid is
     * `owner`; the real and saved uids stay 0: the real uid 0 keeps RLIMIT_NPROC unenforced for
     * the new namespace (enforced_nproc_rlimit), the saved 0 is the way back. Single-threaded
     * callers only: set*uid here changes this thread alone at the kernel level. */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (setresuid(0, owner, 0) < 0) return -1;
    /* Files are still opened as host root (init opens host paths and /proc/self/loginuid
     * before it becomes the namespace's root, as it did when the clone ran with euid 0). */
    setfsuid(0);
    /* The euid change cleared the effective capabilities; the permitted ones stay (real and
     * saved uid 0). Raised again, so that hosts which allow only privileged user namespaces
     * (Debian's kernel.unprivileged_userns_clone=0, Ubuntu's AppArmor restriction) still let
     * host root's clone through. The child gets a full set in its own namespace regardless. */
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
    int raised = syscall(SYS_capget, &header, caps) == 0;
    for (int i = 0; raised && i < _LINUX_CAPABILITY_U32S_3; i++) caps[i].effective = caps[i].permitted;
    if (raised) raised = syscall(SYS_capset, &header, caps) == 0;
    pid_t pid = raised ? cj_clone_into_cgroup(flags, cgroup_fd) : -1;
    /* The child keeps these ids until init becomes its namespace's root; non-dumpable (the euid
     * change saw to it), its /proc/self files are host root's, which its fsuid 0 still opens
     * (/proc/self/loginuid, written before that). */
    if (pid == 0) return 0;
    int error = errno;
    /* Back to root: euid 0 again copies the permitted capabilities into the effective set.
     * A failure here would leave jaild running as the owner: not survivable. */
    if (setresuid(0, 0, 0) < 0) abort();
    /* The euid change made this process non-dumpable (its /proc files root's); as it was. */
    if (dumpable >= 0) prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0, 0, 0);
    errno = error;
    return pid;
}

int cj_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int cj_set_parent_death_signal(int signo) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signo, 0, 0, 0);
}

int cj_set_dumpable(int dumpable) {
    return prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0, 0, 0);
}

void cj_close_all_except(unsigned int first, const int *keep, int nkeep) {
    /* Walk ranges between kept fds so this stays O(kept) syscalls. */
    unsigned int from = first;
    for (;;) {
        int next = -1;
        for (int i = 0; i < nkeep; i++)
            if (keep[i] >= (int)from && (next < 0 || keep[i] < next)) next = keep[i];
        if (next < 0) {
            syscall(SYS_close_range, from, ~0U, 0);
            return;
        }
        if ((unsigned int)next > from) syscall(SYS_close_range, from, (unsigned int)next - 1, 0);
        from = (unsigned int)next + 1;
    }
}

const int CJ_O_PATH = O_PATH;

int cj_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int cj_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

int cj_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags);
}

int cj_signalfd(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int cj_read_signal(int fd, int *signo, int32_t *sender_pid, int32_t *code) {
    struct signalfd_siginfo info;
    ssize_t n;
    do n = read(fd, &info, sizeof info); while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN) ? 0 : -1;
    if (n != (ssize_t)sizeof info) { errno = EIO; return -1; }
    *signo = (int)info.ssi_signo;
    *sender_pid = (int32_t)info.ssi_pid;
    *code = info.ssi_code;
    return 1;
}

void cj_reset_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &action, NULL);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
}

int cj_ignore_signal(int signo) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_IGN;
    return sigaction(signo, &action, NULL);
}

int cj_status_to_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}


int cj_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int cj_become_root(void) {
    /* setresuid/setresgid need _GNU_SOURCE, which Swift's Glibc import does not define. */
    if (setresgid(0, 0, 0) < 0) return -1;
    if (setgroups(0, NULL) < 0) return -1;
    return setresuid(0, 0, 0);
}

int cj_pidfd_send_signal(int pidfd, int signo) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0);
}

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

int cj_enter_cgroup_namespace_rooted_at(int cgroup_fd) {
    /* A cgroup namespace is rooted where its creator sits. init sits in init.scope (born there,
     * so no migration and no RCU grace period), and its namespace must be rooted one level up,
     * at jail/NAME: a child is born there with a new cgroup namespace (clone3 with
     * CLONE_INTO_CGROUP and CLONE_NEWCGROUP: cgroup_post_fork roots it at the child's cgroup),
     * init joins that namespace through the child's pidfd (setns, Linux 5.8) and kills it. The
     * child runs nothing but pause(); it is gone before init returns. Owned by init's user
     * namespace, as if init had unshared it. Single-threaded callers only. */
    int pidfd = -1;
    struct cj_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PIDFD | CLONE_INTO_CGROUP | CLONE_NEWCGROUP;
    args.pidfd = (unsigned long long)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    args.cgroup = (unsigned long long)cgroup_fd;
    /* setns through a pidfd checks ptrace access (PTRACE_MODE_READ_REALCREDS): init's euid is
     * not its real uid, which made it non-dumpable, and a non-dumpable target needs
     * CAP_SYS_PTRACE where its memory was made (the host's namespace). So the child is
     * born dumpable (the flag is copied with the memory), and init is as it was at once. */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        for (;;) pause();
    }
    if (dumpable >= 0) prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0, 0, 0);
    if (pid < 0) return -1;
    int rc = setns(pidfd, CLONE_NEWCGROUP);
    int error = errno;
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    close(pidfd);
    errno = error;
    return rc;
}
