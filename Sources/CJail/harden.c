/* What keeps a jail's processes away from the host: the capability bounding set, a seccomp
 * filter for kernel state no namespace isolates, and a Landlock domain: file-system access
 * only beneath the jail's root, scoped for the host's abstract unix sockets and processes. init applies all three once, after its mounts and before it
 * serves, so every helper and session program inherits them. docs/security.md says why each
 * entry is there. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- capabilities ------------------------------------------------------------------------ */

int cj_drop_bounding_set(uint64_t keep) {
    /* The kernel may know more capabilities than our headers: go until it says EINVAL. */
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return -1;
    }
    /* Nothing inherited through exec by a non-root program either. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) return -1;
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0) return -1;
    data[0].inheritable = 0;
    data[1].inheritable = 0;
    return (int)syscall(SYS_capset, &header, data);
}

/* ---- seccomp ----------------------------------------------------------------------------- */

#if defined(__x86_64__)
#define JAIL_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define JAIL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp filter: unsupported architecture"
#endif

#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

/* Syscalls that reach host-global state, denied to jails and payloads alike (EPERM). */
static const int denied[] = {
    /* kernel keyrings: no keyring namespace, root inside would see host root's keys (and key
     * quotas are charged to the range's root) */
    SYS_keyctl, SYS_add_key, SYS_request_key,
    /* the kernel itself */
    SYS_kexec_load, SYS_kexec_file_load, SYS_init_module, SYS_finit_module, SYS_delete_module,
    SYS_bpf, SYS_perf_event_open, SYS_swapon, SYS_swapoff, SYS_acct, SYS_syslog,
    SYS_quotactl, SYS_lookup_dcookie,
#ifdef SYS_io_uring_setup
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
#endif
    /* file handles: open_by_handle_at walks from any inode of the file system (shocker);
     * name_to_handle_at stays (systemd compares mounts with it) */
    SYS_open_by_handle_at,
    /* fanotify groups count against the uid's host-wide limit (max_user_groups), and since
     * Linux 5.13 an unprivileged process may make them: no jail program needs one */
    SYS_fanotify_init,
    /* the host's clock */
    SYS_settimeofday, SYS_clock_settime, SYS_clock_adjtime, SYS_adjtimex,
#if defined(__x86_64__)
    SYS_iopl, SYS_ioperm, SYS_uselib, SYS_vhangup,
#endif
};

/* Denied to a jail's programs only: what an init (the payload of --init) needs inside its own
 * namespaces. docs/security.md, "The payload's profile", says why each is safe there. */
static const int denied_to_jails[] = {
    /* mounts: the jail's file system is fixed at start */
    SYS_mount, SYS_umount2, SYS_pivot_root,
#ifdef SYS_open_tree
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
#endif
#ifdef SYS_mount_setattr
    SYS_mount_setattr,
#endif
    /* reboot: in a PID namespace it would end that namespace's init */
    SYS_reboot,
    /* userfaultfd: a way to stall the kernel mid-copy, for exploits */
    SYS_userfaultfd,
};

/* CLONE_NEW* bits that clone() accepts (CLONE_NEWTIME shares a bit with the exit signal). */
#define CLONE_NAMESPACE_FLAGS 0x7E020000U
#define UNSHARE_NAMESPACE_FLAGS (CLONE_NAMESPACE_FLAGS | 0x00000080U)
#define TIOCSTI_REQUEST 0x5412U
#define TIOCLINUX_REQUEST 0x541CU
/* setsockopt(SOL_IP, IP_LOCAL_PORT_RANGE): Debian 12's headers predate it (Linux 6.3). */
#define SOL_IP_LEVEL 0U
#define IP_LOCAL_PORT_RANGE_OPTION 51U

#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define LOAD_ARG_LOW(n) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[n]))
#define RETURN(value) BPF_STMT(BPF_RET | BPF_K, (value))

/* What both filters begin with: the architecture (another one's syscall numbers would slip
 * past the list), x32, the `denied` list (EPERM each), kernel AIO, IP_LOCAL_PORT_RANGE. */
static int emit_denied(struct sock_filter *program, int n, const int *list, int count) {
    for (int i = 0; i < count; i++) {
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)list[i], 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    }
    return n;
}

static int emit_common(struct sock_filter *program, int n, int allow_aio) {
    program[n++] = (struct sock_filter)LOAD(arch);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, JAIL_AUDIT_ARCH, 1, 0);
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_KILL_PROCESS);
    program[n++] = (struct sock_filter)LOAD(nr);
#if defined(__x86_64__)
    /* x32 syscalls share the architecture but carry this bit. */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
#endif
    n = emit_denied(program, n, denied, (int)(sizeof denied / sizeof denied[0]));
    /* Kernel AIO contexts count against fs.aio-max-nr, one limit for the whole host: without
     * --allow-aio the jail looks like a kernel built without AIO (ENOSYS), which libaio users
     * (databases) already handle by falling back to threads. */
    if (!allow_aio) {
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_setup, 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(ENOSYS));
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_submit, 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(ENOSYS));
    }
    /* IP_LOCAL_PORT_RANGE narrows the ports bind(0) and connect choose from to any one port:
     * a way to aim at another jail's port (the post-bind check catches it too). It also
     * applies to IPv6 sockets, at this level. */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setsockopt, 0, 6);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(1);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOL_IP_LEVEL, 0, 3);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(2);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IP_LOCAL_PORT_RANGE_OPTION, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    return n;
}

/* What both end with: ioctl without faking input on a terminal (TIOCSTI) nor console tricks
 * (TIOCLINUX), everything else allowed; then the filter is installed. Root with CAP_SYS_ADMIN
 * may install a filter without no_new_privs, so setuid programs keep working. SPEC_ALLOW is
 * not set: speculation mitigations stay on. */
static int emit_ioctl_and_install(struct sock_filter *program, int n) {
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 5);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(1);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI_REQUEST, 2, 0);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX_REQUEST, 1, 0);
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = program};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog);
}

int cj_install_seccomp(int allow_aio, int allow_setns) {
    enum { ndenied = sizeof denied / sizeof denied[0] + sizeof denied_to_jails / sizeof denied_to_jails[0] };
    struct sock_filter program[ndenied * 2 + 64];
    int n = emit_common(program, 0, allow_aio);
    n = emit_denied(program, n, denied_to_jails, (int)(sizeof denied_to_jails / sizeof denied_to_jails[0]));
    /* setns: joining namespaces. With --init the session helpers join the payload's (Linux
     * asks CAP_SYS_ADMIN in the caller's and the target's user namespace: only init and its
     * helpers, never exec'd, hold it; every program's bounding set lacks it). */
    if (!allow_setns) {
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setns, 0, 1);
        program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    }
    /* clone3 hides its flags in memory the filter cannot read: ENOSYS makes libc fall back to
     * clone, whose flags it can. */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(ENOSYS));
    /* clone and unshare: allowed unless they ask for a namespace. */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(0);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NAMESPACE_FLAGS, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 4);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(0);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, UNSHARE_NAMESPACE_FLAGS, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EPERM));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    return emit_ioctl_and_install(program, n);
}

/* ---- the payload's filter (--init) ------------------------------------------------------- */

#define NETLINK_AUDIT_PROTOCOL 9U

int cj_install_payload_seccomp(int allow_aio) {
    enum { ndenied = sizeof denied / sizeof denied[0] };
    struct sock_filter program[ndenied * 2 + 64];
    /* The jail's filter without `denied_to_jails`, setns and the namespace checks of clone and
     * unshare (docs/security.md, "The payload's profile"). */
    int n = emit_common(program, 0, allow_aio);
    /* NETLINK_AUDIT: the audit subsystem is the host's (journald then reads no audit
     * messages, as under nspawn): EAFNOSUPPORT, which systemd reads as "no audit". */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 6);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(0);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 3);
    program[n++] = (struct sock_filter)LOAD_ARG_LOW(2);
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NETLINK_AUDIT_PROTOCOL, 0, 1);
    program[n++] = (struct sock_filter)RETURN(ERRNO(EAFNOSUPPORT));
    program[n++] = (struct sock_filter)RETURN(SECCOMP_RET_ALLOW);
    return emit_ioctl_and_install(program, n);
}

/* ---- Landlock ---------------------------------------------------------------------------- */

/* Debian 12's headers predate scoping (Linux 6.12, ABI 6): the layout is the kernel's. */
struct jail_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};
#define JAIL_LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#define JAIL_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define JAIL_LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#define JAIL_SYS_landlock_create_ruleset 444
#define JAIL_SYS_landlock_restrict_self 446

int cj_landlock_abi(void) {
    return (int)syscall(JAIL_SYS_landlock_create_ruleset, NULL, 0, JAIL_LANDLOCK_CREATE_RULESET_VERSION);
}

/* File-system access rights, by the ABI that brought them: 1 has bits 0..12 (execute, read,
 * write, directories, every kind of make and remove), 2 refer (link and rename across
 * directories), 3 truncate, 5 ioctl on devices. */
static uint64_t landlock_fs_rights(int abi) {
    uint64_t rights = (1ULL << 13) - 1;
    if (abi >= 2) rights |= 1ULL << 13;
    if (abi >= 3) rights |= 1ULL << 14;
    if (abi >= 5) rights |= 1ULL << 15;
    return rights;
}

#define JAIL_LANDLOCK_RULE_PATH_BENEATH 1
#define JAIL_SYS_landlock_add_rule 445
struct jail_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

int cj_landlock_restrict_beneath(int root_fd, int abi) {
    uint64_t rights = landlock_fs_rights(abi);
    struct jail_landlock_ruleset_attr attr = {
        .handled_access_fs = rights,
        .scoped = abi >= 6 ? (JAIL_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | JAIL_LANDLOCK_SCOPE_SIGNAL) : 0,
    };
    /* Older kernels take the larger struct as long as the fields they do not know are 0. */
    int ruleset = (int)syscall(JAIL_SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (ruleset < 0) return -1;
    /* Everything beneath the jail's root, its bind mounts, /proc, /dev and /sys included
     * (they are mounted beneath it): Landlock walks a path up through its mounts, so only a
     * file reached through a descriptor of the host's tree is outside. */
    struct jail_landlock_path_beneath_attr beneath = {.allowed_access = rights, .parent_fd = root_fd};
    int rc = (int)syscall(JAIL_SYS_landlock_add_rule, ruleset, JAIL_LANDLOCK_RULE_PATH_BENEATH, &beneath, 0);
    if (rc == 0) rc = (int)syscall(JAIL_SYS_landlock_restrict_self, ruleset, 0);
    int saved = errno;
    close(ruleset);
    errno = saved;
    return rc;
}

int cj_landlock_scope(void) {
    struct jail_landlock_ruleset_attr attr = {
        .scoped = JAIL_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | JAIL_LANDLOCK_SCOPE_SIGNAL,
    };
    int ruleset = (int)syscall(JAIL_SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (ruleset < 0) return -1;
    int rc = (int)syscall(JAIL_SYS_landlock_restrict_self, ruleset, 0);
    int saved = errno;
    close(ruleset);
    errno = saved;
    return rc;
}
