/* Terminals and devices: the ioctls are variadic and makedev is a macro. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

int cj_get_window_size(int fd, uint16_t *rows, uint16_t *cols) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) < 0) return -1;
    *rows = size.ws_row;
    *cols = size.ws_col;
    return 0;
}

int cj_set_window_size(int fd, uint16_t rows, uint16_t cols) {
    struct winsize size = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &size);
}

int cj_open_pty_master(char *slave_path, size_t len) {
    /* /dev/ptmx here is the jail's own devpts instance: the pty never comes from the host. */
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (unlockpt(fd) < 0 || ptsname_r(fd, slave_path, len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cj_mknod_char(const char *path, mode_t mode, unsigned int major, unsigned int minor) {
    return mknod(path, S_IFCHR | mode, makedev(major, minor));
}

void cj_openlog(const char *ident) {
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void cj_syslog(int priority, const char *message) {
    syslog(priority, "%s", message);
}

#include <linux/openat2.h>
#include <sys/syscall.h>

int cj_open_in_root(int root_fd, const char *path, int flags) {
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT};
    return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
}

int cj_open_beneath_no_symlinks(int root_fd, const char *path, int flags) {
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
}

/* The new mount API, as runc uses it against symlink races: the tree is cloned detached,
 * made read-only while nobody can see it, and attached onto the descriptor itself, never
 * onto a path that could be swapped. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
struct jail_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int cj_bind_onto(const char *host_path, int target_fd, int read_only) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, host_path, OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
    if (tree < 0) return -1;
    int rc = 0;
    if (read_only) {
        struct jail_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        rc = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
    }
    if (rc == 0)
        rc = (int)syscall(SYS_move_mount, tree, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int saved = errno;
    close(tree);
    errno = saved;
    return rc;
}
