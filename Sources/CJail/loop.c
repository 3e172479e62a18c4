/* Disk images of jails (Disk/DiskImage.swift): a loop device over a jail's image file and the
 * image's file system as a detached mount. The ioctls and the new mount API have no Swift
 * face; they are here, and nothing else is. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "mount_api.h"

#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
struct loop_config {
    uint32_t fd;
    uint32_t block_size;
    struct loop_info64 info;
    uint64_t __reserved[8];
};
#endif

/* A loop device already backed by the file `image_fd` is open, whichever process attached it:
 * /sys/block/loopN/loop/ exists only for configured devices, and LOOP_GET_STATUS64 on our own
 * open descriptor tells the backing inode (not its path, which a rename of the state
 * directory would change). An open descriptor pins the device (autoclear waits for the last
 * close), so the answer stays true while it is held. Returns that descriptor with the
 * device's number in *number, or -1 (errno ENOENT: none). */
#include <dirent.h>
#include <stdlib.h>
int cj_loop_find(int image_fd, int *number) {
    struct stat image;
    if (fstat(image_fd, &image) < 0) return -1;
    DIR *block = opendir("/sys/block");
    if (block == NULL) return -1;
    int found = -1;
    struct dirent *entry;
    while (found < 0 && (entry = readdir(block)) != NULL) {
        if (strncmp(entry->d_name, "loop", 4) != 0) continue;
        char *end = NULL;
        long n = strtol(entry->d_name + 4, &end, 10);
        if (end == entry->d_name + 4 || *end != 0) continue;
        char path[64];
        snprintf(path, sizeof path, "/sys/block/loop%ld/loop", n);
        if (access(path, F_OK) != 0) continue;  /* not configured */
        snprintf(path, sizeof path, "/dev/loop%ld", n);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        struct loop_info64 info;
        if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_inode == image.st_ino &&
            info.lo_device == image.st_dev) {
            *number = (int)n;
            found = fd;
        } else {
            close(fd);
        }
    }
    closedir(block);
    if (found < 0) errno = ENOENT;
    return found;
}

/* A free loop device configured over `image_fd` in one call (LOOP_CONFIGURE, Linux 5.8), with
 * autoclear: the device frees itself at its last close, that is when the file system mounted
 * from it is gone. Direct I/O where the backing file system allows it, so the image's pages
 * are not cached twice (once by the jail's file system, once by the host's). Another process
 * may take the free device between GET_FREE and CONFIGURE (EBUSY): then the next. */
int cj_loop_attach(int image_fd, int *number) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -1;
    int fd = -1, saved = EBUSY;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        int n = ioctl(control, LOOP_CTL_GET_FREE);
        if (n < 0) { saved = errno; break; }
        char path[64];
        snprintf(path, sizeof path, "/dev/loop%d", n);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) { saved = errno; break; }
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = (uint32_t)image_fd;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        int rc = ioctl(fd, LOOP_CONFIGURE, &config);
        if (rc < 0 && errno == EINVAL) {
            config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
            rc = ioctl(fd, LOOP_CONFIGURE, &config);
        }
        if (rc < 0) {
            saved = errno;
            close(fd);
            fd = -1;
            if (saved != EBUSY) break;
            continue;
        }
        *number = n;
    }
    close(control);
    if (fd < 0) errno = saved;
    return fd;
}

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define FSMOUNT_CLOEXEC 0x00000001
#endif

/* `device` (a loop device) mounted as `type`, nosuid and nodev, attached nowhere: reachable
 * only through the returned descriptor, gone with its last reference. `read_only`: the
 * superblock too (a read-only ext4 writes nothing at its unmount). */
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#endif
int cj_mount_device_detached(const char *type, const char *device, int read_only) {
    int fs = (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC);
    if (fs < 0) return -1;
    int rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", device, 0);
    if (rc == 0 && read_only) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "ro", NULL, 0);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
    int mnt = rc == 0 ? (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) : -1;
    int saved = errno;
    close(fs);
    errno = saved;
    return mnt;
}

/* statfs(2) of `path`, in fixed-width fields (Swift's Glibc module has no sys/vfs.h). */
#include <sys/vfs.h>
int cj_statfs(const char *path, struct cj_fs_usage *out) {
    struct statfs fs;
    if (statfs(path, &fs) < 0) return -1;
    out->type = (int64_t)fs.f_type;
    out->block_size = (uint64_t)fs.f_bsize;
    out->blocks = (uint64_t)fs.f_blocks;
    out->blocks_free = (uint64_t)fs.f_bfree;
    out->files = (uint64_t)fs.f_files;
    out->files_free = (uint64_t)fs.f_ffree;
    return 0;
}

/* ---- btrfs (Disk/BtrfsQuota.swift) ----------------------------------------------------- */
#include <linux/btrfs.h>

/* The btrfs subvolume `path` is in: its file system's uuid as sysfs spells it (36 characters
 * and a NUL in `uuid`) and the subvolume's tree id, which is its qgroup's (0/ID). */
int cj_btrfs_subvolume(const char *path, char *uuid, uint64_t *id) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct btrfs_ioctl_fs_info_args info;
    memset(&info, 0, sizeof info);
    /* treeid 0, objectid 256: "which subvolume is this descriptor in", no privilege needed. */
    struct btrfs_ioctl_ino_lookup_args lookup;
    memset(&lookup, 0, sizeof lookup);
    lookup.objectid = 256; /* BTRFS_FIRST_FREE_OBJECTID (linux/btrfs_tree.h): a subvolume's root */
    int rc = ioctl(fd, BTRFS_IOC_FS_INFO, &info);
    if (rc == 0) rc = ioctl(fd, BTRFS_IOC_INO_LOOKUP, &lookup);
    int saved = errno;
    close(fd);
    if (rc < 0) { errno = saved; return -1; }
    const unsigned char *u = info.fsid;
    snprintf(uuid, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
             u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    *id = lookup.treeid;
    return 0;
}

/* Limits the referenced bytes of the qgroup of the subvolume `path` (qgroupid 0: the
 * descriptor's own subvolume). Needs CAP_SYS_ADMIN in the initial user namespace. */
int cj_btrfs_limit_referenced(const char *path, uint64_t bytes) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct btrfs_ioctl_qgroup_limit_args args;
    memset(&args, 0, sizeof args);
    args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    args.lim.max_rfer = bytes;
    int rc = ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &args);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Commits the file system `path` is on (qgroup counts are updated at commits). */
int cj_btrfs_sync(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = ioctl(fd, BTRFS_IOC_SYNC, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* A read-only view of a jail's merged tree for reading its files before a start: the
 * overlay's upper directory (in `state_tree`) stacked as the top lower layer over `lower_tree`,
 * no upper and no work directory, so the image under it can be mounted read-only (overlayfs
 * refuses a read-only upper file system). Whiteouts and opaque directories count in lower
 * layers as in the upper one. */
int cj_overlay_open_read_only(int state_tree, int lower_tree) {
    int upper = openat(state_tree, "upper", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    int rc = upper < 0 || fs < 0 ? -1 : 0;
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "lowerdir+", NULL, upper);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "lowerdir+", NULL, lower_tree);
    if (rc == 0) rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
    int mnt = rc == 0 ? (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY) : -1;
    int saved = errno;
    if (upper >= 0) close(upper);
    if (fs >= 0) close(fs);
    errno = saved;
    return mnt;
}

/* No copy-on-write for a new, still empty image file where the file system does it (btrfs):
 * a file system image rewritten in place would fragment without end, as machined and
 * libvirt know (they do the same). Elsewhere the flag does not exist: -1, and nothing lost. */
int cj_set_no_copy_on_write(int fd) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) return -1;
    flags |= FS_NOCOW_FL;
    return ioctl(fd, FS_IOC_SETFLAGS, &flags);
}
