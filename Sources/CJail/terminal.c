/* Terminals and devices: the ioctls are variadic and makedev is a macro. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
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

int cj_pty_number(int fd) {
    unsigned int number = 0;
    return ioctl(fd, TIOCGPTN, &number) < 0 ? -1 : (int)number;
}

int cj_bytes_queued(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

unsigned int cj_device_major(dev_t device) { return major(device); }
unsigned int cj_device_minor(dev_t device) { return minor(device); }

long cj_filesystem_type(int fd) {
    struct statfs fs;
    return fstatfs(fd, &fs) < 0 ? -1 : (long)fs.f_type;
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
