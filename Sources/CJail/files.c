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
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef MS_PRIVATE
#define MS_PRIVATE (1 << 18)
#endif
struct jail_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int cj_attach_tree_onto(int tree, int target_fd, int read_only, int nosuid_nodev) {
    /* Private: a copy of a shared host mount would otherwise join its peer group, and what
     * is mounted on it inside would show on the host. */
    uint64_t set = (read_only ? MOUNT_ATTR_RDONLY : 0) | (nosuid_nodev ? MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV : 0);
    struct jail_mount_attr attr = {.attr_set = set, .propagation = MS_PRIVATE};
    int rc = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
    if (rc == 0)
        rc = (int)syscall(SYS_move_mount, tree, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    return rc;
}

/* A detached copy of the tree at `path` (every mount below it too), not yet visible anywhere. */
int cj_open_detached_tree(const char *path) {
    return (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC);
}

/* Makes a detached tree show its files through the id mapping of a user namespace. Needs
 * CAP_SYS_ADMIN over the file system's own user namespace, so host root does it. */
int cj_idmap_tree(int tree_fd, int userns_fd) {
    struct jail_mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns_fd,
                                   .propagation = MS_PRIVATE};
    return (int)syscall(SYS_mount_setattr, tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
}

/* Attaches a detached tree at `target` in the caller's mount namespace. */
int cj_attach_tree(int tree_fd, const char *target) {
    return (int)syscall(SYS_move_mount, tree_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
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
