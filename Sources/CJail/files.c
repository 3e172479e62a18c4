/* Files and mounts: openat2 and the new mount API have no glibc wrappers in Debian 12. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
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

/* A detached overlay mount: fsopen/fsconfig/fsmount without move_mount, so the merged tree
 * is reachable only through the returned descriptor (attached nowhere, invisible to every
 * other process) and goes away when it is closed. jaild reads a jail's /etc/passwd through
 * it before the start, and `jaild create` writes the jail's user into the upper layer. */
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define FSMOUNT_CLOEXEC 0x00000001
#endif

int cj_overlay_open(const char *lower, const char *upper, const char *work) {
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0) return -1;
    int rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir", lower, 0);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", upper, 0);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", work, 0);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
    int mnt = rc == 0 ? (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0) : -1;
    int saved = errno;
    close(fs);
    errno = saved;
    return mnt;
}
