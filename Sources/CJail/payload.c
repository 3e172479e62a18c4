/* The payload (jaild --init): the distribution's init, PID 1 of a nested PID namespace in a
 * child user namespace of the jail's. Its seccomp filter allows what an init needs inside its
 * own namespaces (mount API, new namespaces, setns, reboot of its PID namespace, sethostname,
 * file handles by name, kcmp, seccomp) and denies what reaches host-wide state; docs/security.md
 * "The payload's profile" compares it with the jail's. Plus the namespace calls the Swift side
 * needs (Glibc's module does not export them without _GNU_SOURCE). */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int cj_unshare(int flags) { return unshare(flags); }

int cj_setns(int fd, int flags) { return setns(fd, flags); }

#if defined(__x86_64__)
#define PAYLOAD_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PAYLOAD_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp filter: unsupported architecture"
#endif

#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define LOAD_ARG_LOW(n) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[n]))
#define RETURN(value) BPF_STMT(BPF_RET | BPF_K, (value))

/* Host-wide state no namespace of the payload's isolates. Each fails with EPERM, which systemd
 * takes for "not available in this container" for these (it is what nspawn returns too). */
static const int payload_denied[] = {
    /* kernel keyrings: no keyring namespace; key quotas are charged to the range's root */
    SYS_keyctl, SYS_add_key, SYS_request_key,
    /* the kernel itself, BPF programs and maps, performance counters, swap, accounting */
    SYS_kexec_load, SYS_kexec_file_load, SYS_init_module, SYS_finit_module, SYS_delete_module,
    SYS_bpf, SYS_perf_event_open, SYS_swapon, SYS_swapoff, SYS_acct, SYS_syslog,
    SYS_quotactl, SYS_lookup_dcookie,
#ifdef SYS_io_uring_setup
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
#endif
    /* file handles: open_by_handle_at walks from any inode of the file system (shocker);
     * name_to_handle_at stays (systemd uses it to compare mounts) */
    SYS_open_by_handle_at,
    /* fanotify groups count against a host-wide per-uid limit */
    SYS_fanotify_init,
    /* the host's clock */
    SYS_settimeofday, SYS_clock_settime, SYS_clock_adjtime, SYS_adjtimex,
#if defined(__x86_64__)
    SYS_iopl, SYS_ioperm, SYS_uselib, SYS_vhangup,
#endif
};

#define TIOCSTI_REQUEST 0x5412U
#define TIOCLINUX_REQUEST 0x541CU
#define SOL_IP_LEVEL 0U
#define IP_LOCAL_PORT_RANGE_OPTION 51U
#define NETLINK_AUDIT_PROTOCOL 9U

int cj_install_payload_seccomp(int allow_aio) {
    enum { ndenied = sizeof payload_denied / sizeof payload_denied[0] };
    struct sock_filter program[ndenied * 2 + 64];
    int n = 0;
    program[n++] = (struct sock_filter)LOAD(arch);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PAYLOAD_AUDIT_ARCH, 1, 0);
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_KILL_PROCESS);
    program[n++] = (struct sock_filter)LOAD(nr);
#if defined(__x86_64__)
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
#endif
    for (int i = 0; i < ndenied; i++) {
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)payload_denied[i], 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    }
    if (!allow_aio) {
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_setup, 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(ENOSYS));
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_submit, 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(ENOSYS));
    }
    /* IP_LOCAL_PORT_RANGE: as in the jail's filter (aiming bind(0) at another jail's port). */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setsockopt, 0, 6);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(1);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOL_IP_LEVEL, 0, 3);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(2);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IP_LOCAL_PORT_RANGE_OPTION, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    /* NETLINK_AUDIT: the audit subsystem is the host's (journald then reads no audit
     * messages, as in nspawn): EAFNOSUPPORT, which systemd reads as "no audit". */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 6);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(0);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 3);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(2);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NETLINK_AUDIT_PROTOCOL, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EAFNOSUPPORT));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    /* ioctl: no faking input on a terminal (TIOCSTI) nor console tricks (TIOCLINUX). */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 5);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(1);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI_REQUEST, 2, 0);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX_REQUEST, 1, 0);
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    /* Everything else: mount and the new mount API, pivot_root, unshare, clone and clone3 with
     * new namespaces, setns, reboot (in a PID namespace it ends that namespace's init),
     * sethostname, name_to_handle_at, kcmp, seccomp, userfaultfd. */
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);

    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = program};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog);
}
