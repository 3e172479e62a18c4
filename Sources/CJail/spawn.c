/* The fork-to-exec child. Between clone and execve only async-signal-safe calls run, and every
 * failure is reported to the parent as {step, errno} over a CLOEXEC pipe, then _exit(127).
 *
 * The child shares the parent's memory until it execs (CLONE_VM | CLONE_VFORK, as
 * posix_spawn does): copying the page tables of a Swift process for a child that execs at
 * once was about 0.1 ms of every session. Sharing memory means the child must not
 * allocate or touch the parent's state: it only makes system calls on its own small stack,
 * with every signal blocked until their handlers are back to the defaults. The parent is
 * suspended until the child execs or exits. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static void fail(int pipe_fd, int step) {
    int report[2] = {step, errno};
    ssize_t ignored = write(pipe_fd, report, sizeof report);
    (void)ignored;
    _exit(127);
}

static void child(const struct cj_spawn_request *r, int report_fd) {
    /* The parent blocks signals for its signalfd and ignores SIGPIPE; the program must start
     * with defaults, or `yes | head` would never end. Handlers go before the mask is lifted:
     * a handler of the parent's must never run on this shared memory. */
    cj_reset_signals();

    if (setsid() < 0) fail(report_fd, CJ_STEP_SETSID);
    if (r->controlling_tty && ioctl(r->stdio[0], TIOCSCTTY, 0) < 0) fail(report_fd, CJ_STEP_TIOCSCTTY);

    /* Move the stdio sources above 2 first, so that dup2 into 0..2 never overwrites a source
     * that is itself 0, 1 or 2. */
    int moved[3];
    for (int i = 0; i < 3; i++) {
        moved[i] = fcntl(r->stdio[i], F_DUPFD_CLOEXEC, 3);
        if (moved[i] < 0) fail(report_fd, CJ_STEP_DUP);
    }
    for (int i = 0; i < 3; i++)
        if (dup2(moved[i], i) < 0) fail(report_fd, CJ_STEP_DUP);

    /* Everything else closes at exec; the report pipe must stay open until then. */
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

    /* Into the jail's program cgroups (where its limits are), out of init's. */
    for (int i = 0; i < r->ncgroup_procs; i++)
        if (write(r->cgroup_procs[i], "0", 1) != 1) fail(report_fd, CJ_STEP_CGROUP);
    if (r->reset_oom_score) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t ignored = write(fd, "0", 1);
            (void)ignored;
            close(fd);
        }
    }
    for (int i = 0; i < r->nrlimits; i++) {
        struct rlimit limit = {r->rlimits[i].soft, r->rlimits[i].hard};
        if (setrlimit(r->rlimits[i].resource, &limit) < 0) fail(report_fd, CJ_STEP_RLIMIT);
    }

    /* Groups first, then the group, then the user: after setuid neither would be allowed.
     * setgroups always, even with no groups, so root's groups never leak into a session.
     * Raw system calls: libc's wrappers may coordinate with other threads through memory
     * that this child shares with its parent. */
    if (!r->skip_setgroups && syscall(SYS_setgroups, (size_t)r->ngroups, r->groups) < 0) fail(report_fd, CJ_STEP_SETGROUPS);
    if (syscall(SYS_setresgid, r->gid, r->gid, r->gid) < 0) fail(report_fd, CJ_STEP_SETGID);
    if (r->ambient_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(report_fd, CJ_STEP_CAPS);
    if (syscall(SYS_setresuid, r->uid, r->uid, r->uid) < 0) fail(report_fd, CJ_STEP_SETUID);
    if (r->ambient_caps) {
        /* Ambient capabilities survive exec for a non-root program: they must be permitted
         * and inheritable first. What is not asked for is dropped here. */
        struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2] = {{0}};
        data[0].permitted = data[0].inheritable = data[0].effective = (uint32_t)r->ambient_caps;
        data[1].permitted = data[1].inheritable = data[1].effective = (uint32_t)(r->ambient_caps >> 32);
        if (syscall(SYS_capset, &header, data) < 0) fail(report_fd, CJ_STEP_CAPS);
        for (int cap = 0; cap < 64; cap++)
            if ((r->ambient_caps >> cap) & 1)
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) fail(report_fd, CJ_STEP_CAPS);
    }

    /* As login(1) does: a missing home is not fatal, the session starts in /. */
    if (r->directory == NULL || chdir(r->directory) < 0) {
        if (chdir("/") < 0) { /* nothing better to do */ }
    }
    execve(r->path, r->argv, r->envp);
    fail(report_fd, CJ_STEP_EXEC);
}

struct child_start {
    const struct cj_spawn_request *request;
    int report_fd;
};

static int child_main(void *argument) {
    const struct child_start *start = argument;
    child(start->request, start->report_fd);
    return 127;
}

/* The child's stack; the parent is suspended while the child uses it, and only one child
 * starts at a time (the daemon's processes are single-threaded). */
static char child_stack[64 * 1024] __attribute__((aligned(16)));

pid_t cj_spawn(const struct cj_spawn_request *request, int *step, int *error) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        *step = CJ_STEP_PIPE;
        *error = errno;
        return -1;
    }
    struct child_start start = {request, report[1]};
    sigset_t all, previous;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &previous);
    pid_t pid = clone(child_main, child_stack + sizeof child_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
    int clone_error = errno;
    sigprocmask(SIG_SETMASK, &previous, NULL);
    if (pid < 0) {
        *step = CJ_STEP_FORK;
        *error = clone_error;
        close(report[0]);
        close(report[1]);
        return -1;
    }

    close(report[1]);
    int result[2];
    ssize_t n;
    do n = read(report[0], result, sizeof result); while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof result) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *step = result[0];
        *error = result[1];
        return -1;
    }
    *step = CJ_STEP_NONE;
    *error = 0;
    return pid;
}
