/* Files and mounts: openat2 and the new mount API have no glibc wrappers in Debian 12. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/eventfd.h>

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
#include "mount_api.h"

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

/* The overlay root of a jail with a user namespace: its layers are idmapped detached mounts
 * (`lower_tree`: the base; `state_tree`: STATE/NAME, which holds upper/ and work/ on one
 * mount, as overlayfs requires), given to overlayfs as descriptors (fsconfig FSCONFIG_SET_FD,
 * "lowerdir+" since Linux 6.8), because a detached mount has no path. The overlay itself
 * cannot be idmapped; its layers can (Linux 5.19). Created by host root, so the superblock
 * keeps the trusted.overlay.* xattrs `jaild create` wrote. Returns the detached mount. */
int cj_overlay_open_layers(int lower_tree, int state_tree) {
    int upper = openat(state_tree, "upper", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int work = openat(state_tree, "work", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    int rc = upper < 0 || work < 0 || fs < 0 ? -1 : 0;
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "lowerdir+", NULL, lower_tree);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "upperdir", NULL, upper);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "workdir", NULL, work);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
    int mnt = rc == 0 ? (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0) : -1;
    int saved = errno;
    if (upper >= 0) close(upper);
    if (work >= 0) close(work);
    if (fs >= 0) close(fs);
    errno = saved;
    return mnt;
}

/* Mounts a detached mount on top of the root of another detached tree (Linux 6.15+ allows a
 * detached target): init inherited `tree` at the clone and attaches it whole. */
int cj_mount_onto_tree(int mount_fd, int tree_fd) {
    return (int)syscall(SYS_move_mount, mount_fd, "", tree_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

/* A user namespace with these maps and no process: a child unshares, the caller writes its
 * maps and keeps a descriptor of it, the child exits. Only for mount_setattr(MOUNT_ATTR_IDMAP). */
int cj_make_userns(const char *uid_map, const char *gid_map) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    pid_t child = fork();
    if (child == 0) {
        /* 0: unshared; else the errno of unshare (below 256). */
        char byte = unshare(CLONE_NEWUSER) == 0 ? 0 : (char)errno;
        if (write(p[1], &byte, 1) < 0) _exit(1);
        for (;;) pause();  /* until the parent's SIGKILL */
    }
    close(p[1]);
    int fd = -1, saved = 0;
    char byte = EIO;
    if (child > 0 && read(p[0], &byte, 1) == 1 && byte == 0) {
        char path[64];
        const char *maps[2] = {uid_map, gid_map};
        const char *names[2] = {"uid_map", "gid_map"};
        int ok = 1;
        errno = 0;
        for (int i = 0; i < 2 && ok; i++) {
            snprintf(path, sizeof path, "/proc/%d/%s", (int)child, names[i]);
            int m = open(path, O_WRONLY | O_CLOEXEC);
            size_t len = strlen(maps[i]);
            ok = m >= 0 && write(m, maps[i], len) == (ssize_t)len;
            if (m >= 0) close(m);
        }
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
        if (ok) fd = open(path, O_RDONLY | O_CLOEXEC);
        saved = errno ? errno : EIO;
    } else {
        saved = child < 0 ? errno : byte;
    }
    close(p[0]);
    if (child > 0) { kill(child, SIGKILL); waitpid(child, NULL, 0); }
    errno = fd < 0 ? saved : 0;
    return fd;
}

int cj_rebind_in_namespace(int mntns_fd, const char *const *sources, const char *const *targets, int count) {
    int trees[16];
    if (count > 16) { errno = E2BIG; return -1; }
    for (int i = 0; i < count; i++) {
        trees[i] = cj_open_detached_tree(sources[i]);
        if (trees[i] < 0) {
            int saved = errno;
            for (int j = 0; j < i; j++) close(trees[j]);
            errno = saved;
            return -1;
        }
    }
    pid_t child = fork();
    if (child == 0) {
        /* Async-signal-safe only: setns, umount2, open, the mount syscalls, _exit. */
        if (setns(mntns_fd, CLONE_NEWNS) < 0) _exit(errno & 0xff);
        for (int i = 0; i < count; i++) {
            umount2(targets[i], MNT_DETACH);
            int target = open(targets[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (target < 0) _exit(errno & 0xff);
            if (cj_attach_tree_onto(trees[i], target, 1, 1) < 0) _exit(errno & 0xff);
            close(target);
        }
        _exit(0);
    }
    int saved = errno;
    for (int i = 0; i < count; i++) close(trees[i]);
    if (child < 0) { errno = saved; return -1; }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    errno = WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
    return -1;
}

int cj_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}
