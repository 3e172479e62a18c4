/* jaild's own binary never reachable for writing from a jail (CVE-2019-5736, runc's
 * "cloned_binary"). init and the session helpers are forks of the supervisor, so their
 * /proc/PID/exe is the supervisor's executable; a session whose shell is /proc/self/exe runs
 * it again as the jail user, dumpable, and root inside could fchown or chmod the host's file
 * through /proc/PID/exe. So a root jaild re-executes itself at start from a read-only,
 * detached bind mount of its own file: the executable is the same inode (no copy, no memory
 * cost), but every path to it from the jail goes through that mount, where writes, chown,
 * chmod, truncate and xattrs fail with EROFS, and nobody in the jail can remount it (no
 * CAP_SYS_ADMIN, mounts denied by seccomp). */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mount_api.h"

int cj_executable_is_read_only(void) {
    struct statvfs info;
    if (statvfs("/proc/self/exe", &info) < 0) return -1;
    return (info.f_flag & ST_RDONLY) != 0;
}

int cj_reexec_read_only(char *const argv[], char *const envp[]) {
    /* The magic link is followed: the tree is a bind mount of the executable file itself. */
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/self/exe", OPEN_TREE_CLONE | O_CLOEXEC);
    if (tree < 0) return -1;
    struct jail_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        int saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    /* The mount stays alive, detached, as long as the running image refers to it. */
    syscall(SYS_execveat, tree, "", argv, envp, AT_EMPTY_PATH);
    int saved = errno;
    close(tree);
    errno = saved;
    return -1;
}
