/*
 * CJail: the only C in Jail. It holds what Swift cannot do safely:
 *  - the fork-to-exec child path (async-signal-safe only, errno reported over a CLOEXEC pipe),
 *  - variadic calls (ioctl, prctl, fcntl) and kernel calls glibc does not wrap,
 *  - SCM_RIGHTS and SO_PEERCRED, whose cmsg/struct macros do not import into Swift,
 *  - the process title, which needs the argv area that only a constructor sees.
 * Every function returns -1 and leaves errno set on failure unless it says otherwise.
 */
#ifndef CJAIL_H
#define CJAIL_H

#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/xattr.h>   /* lgetxattr: the private-root check reads POSIX ACLs */
#include <termios.h>
#include <linux/sched.h>   /* CLONE_NEW*: plain macros, no _GNU_SOURCE needed */

/* O_PATH needs _GNU_SOURCE in <fcntl.h>; Swift gets it from here. */
extern const int CJ_O_PATH;

/* ---- process ---------------------------------------------------------------------------- */

/* Rewrites what ps shows for this process (the argv area) and its comm name. */
void cj_set_proctitle(const char *title);

/* clone(2) with fork semantics (no new stack): 0 in the child, the child's pid in the parent.
 * Only safe in a single-threaded process; the caller checks. */
pid_t cj_clone(unsigned long flags);
/* cj_clone with CLONE_NEWUSER in `flags`, the new user namespace owned by host uid `owner`
 * (real and saved uid stay 0, files are opened as root): process.c says why. Host root only. */
pid_t cj_clone_owned_by(unsigned long flags, uid_t owner);
/* The same through clone3(CLONE_INTO_CGROUP): the child starts in the cgroup2 directory
 * `cgroup_fd` (-1: plain clone). -1 and errno ENOSYS, E2BIG or EINVAL where the kernel lacks it. */
pid_t cj_clone_into_cgroup(unsigned long flags, int cgroup_fd);
pid_t cj_clone_owned_by_into_cgroup(unsigned long flags, uid_t owner, int cgroup_fd);
/* Joins a new cgroup namespace rooted at the cgroup2 directory `cgroup_fd` without moving there
 * (a short-lived child is born there and made it; process.c says how). 0, or -1 and errno. */
int cj_enter_cgroup_namespace_rooted_at(int cgroup_fd);

int cj_pivot_root(const char *new_root, const char *put_old);
int cj_set_parent_death_signal(int signo);
int cj_set_dumpable(int dumpable);
/* uid, gid 0 (all three of each) and no supplementary groups: root of the caller's user namespace. */
int cj_become_root(void);
/* Unmaps the program's pages that are still the file's (code, unwritten data): they fault
 * back in from the page cache when used. */
void cj_release_file_pages(void);
/* The same, then poll(2) on fds in one call, with nothing of jaild's file touched between the
 * release and the sleep (memory.c says why). Returns as poll does. */
int cj_poll_releasing_file_pages(struct pollfd *fds, unsigned long nfds, int timeout_ms);
/* The addresses of the code the idle release keeps mapped (its own). */
void cj_idle_text_range(uintptr_t *start, uintptr_t *end);
/* The bytes of jaild's file that the idle release keeps mapped (its own code): 1 and the
 * range, or 0. */
int cj_idle_text_file_range(uint64_t *start, uint64_t *end);
/* Opens /proc/self/pagemap for cj_release_file_pages for good (before losing access to it). */
int cj_keep_pagemap_open(void);
/* cj_release_file_pages for the writable segments only (before init forks a spare helper). */
void cj_release_data_file_pages(void);
/* cj_poll_releasing_file_pages for the code segments only, without pagemap (a spare's wait). */
int cj_poll_releasing_code_pages(struct pollfd *fds, unsigned long nfds, int timeout_ms);
/* Closes every fd >= first except those listed. */
void cj_close_all_except(unsigned int first, const int *keep, int nkeep);
int cj_set_cloexec(int fd);
/* pipe2 with O_CLOEXEC. */
int cj_pipe(int fds[2]);
int cj_set_nonblocking(int fd, int on);
/* A pidfd: readable (POLLIN) once the process has exited. */
int cj_pidfd_open(pid_t pid);
/* A signal through a pidfd: it reaches that process, never a later one with its pid. */
int cj_pidfd_send_signal(int pidfd, int signo);

/* ---- signals ---------------------------------------------------------------------------- */

/* Blocks the given signals in this (single) thread and returns a CLOEXEC, non-blocking
 * signalfd that reports them. */
int cj_signalfd(const int *signals, int count);
/* Reads one pending signal: 1 if one was read, 0 if none is pending, -1 on error. `code` is
 * its si_code: SI_USER (0) for kill(), negative for other user sends, positive when the kernel
 * generated it (SIGIO's POLL_*, SI_KERNEL). */
int cj_read_signal(int fd, int *signo, int32_t *sender_pid, int32_t *code);
/* Unblocks every signal and resets every disposition to SIG_DFL. */
void cj_reset_signals(void);
int cj_ignore_signal(int signo);

/* ---- wait status ------------------------------------------------------------------------ */

/* The shell convention: the exit code, or 128+N for death by signal N; -1 if still running. */
int cj_status_to_code(int status);

/* ---- hardening (harden.c) ---------------------------------------------------------------- */

/* Drops every capability not in `keep` (bit N = capability N) from the bounding set, and
 * clears the inheritable and ambient sets. */
int cj_drop_bounding_set(uint64_t keep);
/* Installs the jail's seccomp filter on this process and all it will fork. */
int cj_install_seccomp(int allow_aio, int allow_setns);
/* The kernel's Landlock ABI version, or -1 (errno ENOSYS or EOPNOTSUPP) without Landlock. */
int cj_landlock_abi(void);
/* Puts this process in a Landlock domain with the scopes only (ABI 6: abstract unix sockets
 * and signals), no file-system rules, so mounts stay possible: the payload of --init. */
int cj_landlock_scope(void);
/* Puts this process in a Landlock domain that also limits file-system access to what is
 * beneath `root_fd` (the jail's root after pivot_root), for every access right of the kernel's
 * ABI: a directory of the host reached through a passed descriptor is refused. With ABI 6 the
 * same domain is also scoped for abstract unix sockets and signals: it and its descendants
 * reach only sockets and processes of the same domain. */
int cj_landlock_restrict_beneath(int root_fd, int abi);

/* ---- the payload of --init (payload.c; its seccomp filter in harden.c) ----------------- */

/* unshare(2) and setns(2), which Glibc's Swift module does not export. */
int cj_unshare(int flags);
int cj_setns(int fd, int flags);
/* Installs the payload's seccomp filter (docs/security.md, "The payload's profile"). */
int cj_install_payload_seccomp(int allow_aio);

/* ---- jaild's own binary (selfexec.c) ----------------------------------------------------- */

/* 1 if this process runs from a file on a read-only mount, 0 if not, -1 on error. */
int cj_executable_is_read_only(void);
/* Re-executes this program from a read-only, detached bind mount of its own file, or of
 * `image` (a descriptor of a copy of it) when that is not -1; returns only on failure (-1,
 * errno set). Needs CAP_SYS_ADMIN. */
int cj_reexec_read_only(int image, char *const argv[], char *const envp[]);
/* Without an exec: maps jaild's file again from a read-only detached mount of it (or of
 * `image`, a copy of it, when that is not -1), its written pages copied, and makes that file
 * /proc/self/exe (PR_SET_MM_EXE_FILE). 0, or -1 and errno; on failure some mappings may
 * already be the new ones (equal content). */
int cj_remap_read_only(int image);
/* The GNU build id of the running program (its PT_NOTE in memory) into `id`, and where those
 * bytes are in the program's file: a copy of the file of the same size with the same id at
 * that offset is the same build. The id's length; 0 when it has none (or more than
 * `capacity` bytes). */
size_t cj_build_id(unsigned char *id, size_t capacity, uint64_t *file_offset);
/* Where `address`, in one of the running program's loaded segments, lies in its file: 1 and
 * the offset, or 0. */
int cj_file_offset_of(uintptr_t address, uint64_t *offset);

/* ---- unix sockets ----------------------------------------------------------------------- */

/* socket+bind+listen on a path (CLOEXEC, non-blocking). The path must be absent. */
int cj_unix_listen(const char *path, int backlog);
/* socket+connect (CLOEXEC, blocking). */
int cj_unix_connect(const char *path);
/* The same for another socket type (SOCK_DGRAM: /dev/log). */
int cj_unix_connect_type(const char *path, int type);
/* accept4 with CLOEXEC and O_NONBLOCK (accept4 needs _GNU_SOURCE, which the header avoids). */
int cj_accept(int listener);
int cj_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);
/* sendmsg with fds attached as SCM_RIGHTS. */
ssize_t cj_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* recvmsg taking any SCM_RIGHTS fds (made CLOEXEC); *nfds is how many arrived. Fds beyond
 * maxfds, and any truncated control data, are closed and make the call fail with EBADMSG. */
ssize_t cj_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);

/* ---- terminals -------------------------------------------------------------------------- */

int cj_get_window_size(int fd, uint16_t *rows, uint16_t *cols);
int cj_set_window_size(int fd, uint16_t rows, uint16_t cols);
/* Opens a new pty master from the /dev/ptmx in the current root and writes the slave's path. */
int cj_open_pty_master(char *slave_path, size_t len);
/* TIOCGPTN: the number of the pty whose master `fd` is; -1 (ENOTTY) for anything else,
 * a pty slave included. */
int cj_pty_number(int fd);
/* FIONREAD: bytes waiting to be read in a pipe, socket or pty master; -1 on error. */
int cj_bytes_queued(int fd);
/* major(3)/minor(3) of a device number (macros in C). */
unsigned int cj_device_major(dev_t device);
unsigned int cj_device_minor(dev_t device);
/* fstatfs(2)'s f_type of the file system `fd` lives on (PIPEFS_MAGIC for pipe(2)); -1 on error. */
long cj_filesystem_type(int fd);

/* ---- files ------------------------------------------------------------------------------ */

/* openat2(2) with RESOLVE_IN_ROOT: `path` is resolved as if `root_fd` were "/", so neither
 * "..", an absolute symlink nor a magic /proc link can lead outside it. */
int cj_open_in_root(int root_fd, const char *path, int flags);
/* openat2 that stays in root_fd and refuses any symlink on the way (ELOOP). */
int cj_open_beneath_no_symlinks(int root_fd, const char *path, int flags);
/* Attaches a detached tree (read-only and nosuid,nodev if asked, always private) onto the
 * object target_fd names. The caller closes the tree. */
int cj_attach_tree_onto(int tree, int target_fd, int read_only, int nosuid_nodev);
/* open_tree(OPEN_TREE_CLONE|AT_RECURSIVE): a detached copy of the tree at path. */
int cj_open_detached_tree(const char *path);
/* mount_setattr(MOUNT_ATTR_IDMAP) of a detached tree with a user namespace's mapping. */
int cj_idmap_tree(int tree_fd, int userns_fd);
/* move_mount of a detached tree onto a path of the caller's mount namespace. */
int cj_attach_tree(int tree_fd, const char *target);
/* A detached overlay mount of lower/upper/work: a descriptor of its root, attached nowhere. */
int cj_overlay_open(const char *lower, const char *upper, const char *work);
/* A detached overlay mount over idmapped layer trees (the base; STATE/NAME with upper/work). */
int cj_overlay_open_layers(int lower_tree, int state_tree);
/* move_mount of a detached mount onto the root of a detached tree. */
int cj_mount_onto_tree(int mount_fd, int tree_fd);
/* A descriptor of a new, empty user namespace with these uid/gid maps. */
int cj_make_userns(const char *uid_map, const char *gid_map);

/* ---- devices ---------------------------------------------------------------------------- */

int cj_mknod_char(const char *path, mode_t mode, unsigned int major, unsigned int minor);

/* ---- spawn: the fork-to-exec child ------------------------------------------------------ */

struct cj_spawn_request {
    const char *path;
    char *const *argv;
    char *const *envp;
    int stdio[3];            /* become fds 0, 1, 2 of the program */
    int controlling_tty;     /* make stdio[0] the controlling terminal of the new session */
    uint32_t uid;
    uint32_t gid;
    const uint32_t *groups;  /* supplementary groups, set even when empty */
    size_t ngroups;
    const char *directory;   /* working directory; "/" if it cannot be entered */
    const int *cgroup_procs; /* cgroup.procs files to join (the jail's program cgroups) */
    int ncgroup_procs;
    int reset_oom_score;     /* init is protected from the OOM killer; programs are not */
    const struct cj_rlimit *rlimits;
    int nrlimits;
    uint64_t ambient_caps;   /* bit N: capability N stays with the user as an ambient cap */
    int skip_setgroups;      /* rootless: setgroups is denied in the user namespace */
};

struct cj_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

enum cj_spawn_step {
    CJ_STEP_NONE = 0, CJ_STEP_FORK, CJ_STEP_SETSID, CJ_STEP_TIOCSCTTY, CJ_STEP_DUP,
    CJ_STEP_SETGROUPS, CJ_STEP_SETGID, CJ_STEP_SETUID, CJ_STEP_EXEC, CJ_STEP_PIPE,
    CJ_STEP_CGROUP, CJ_STEP_RLIMIT, CJ_STEP_CAPS,
};

/* Forks a child that becomes the program. Returns its pid, or -1 with *step and *error set
 * to the step that failed and its errno (the child is reaped in that case). */
pid_t cj_spawn(const struct cj_spawn_request *request, int *step, int *error);

/* ---- port ownership (ports.c) ----------------------------------------------------------- */

struct cj_port_range {
    int protocol;     /* 6 TCP, 17 UDP */
    uint16_t low;
    uint16_t high;
};
/* A key of the owned-ports map: `port` is protocol << 16 | port (0: the whole address);
 * `address` an IPv6 address, an IPv4 one as ::ffff:a.b.c.d, all zeros for "every address",
 * all ones for "some address" (a wildcard bind's key). */
struct cj_owned_key {
    uint32_t prefixlen;  /* the LPM trie's: always CJ_OWNED_KEY_BITS, an exact match */
    uint32_t port;
    uint8_t address[16];
};
enum { CJ_OWNED_KEY_BITS = 8 * (4 + 16) };
/* A jail's own addresses (address.c): IPv4 ones as their 4 bytes in network order read as a
 * uint32_t, IPv6 ones 16 bytes each; loopback 0 when the jail has none. */
enum { CJ_ADDRESSES_MAX = 8 };
struct cj_address_plan {
    int ipv4_count;
    uint32_t ipv4[CJ_ADDRESSES_MAX];
    int ipv6_count;
    uint8_t ipv6[CJ_ADDRESSES_MAX][16];
    uint32_t loopback;
    int allow_host_loopback;
};
/* The map of owned ports shared by every jail (found by name, or created when `create`). */
int cj_owned_ports_open(int create);
/* Makes the map hold exactly these keys with these owners (cgroup ids). */
int cj_owned_ports_sync(int map, const struct cj_owned_key *keys, const uint64_t *owners, int n);
/* The map by its id (kept by jaild in /run/jail/ports/map-id), checked to be the map; -1 with
 * ENOENT when it is gone or another map has the id. cj_bpf_map_id: the map's id, 0 if none. */
int cj_owned_ports_by_id(uint32_t id);
uint32_t cj_bpf_map_id(int fd);
/* One jail's keys added where free (holders[i]: who holds keys[i] afterwards). */
int cj_owned_ports_add(int map, const struct cj_owned_key *keys, int n, uint64_t owner, uint64_t *holders);
/* Attaches to a cgroup v2 directory the post-bind check against the map (IPv4 and IPv6),
 * with `bind_filter` the bind filter for these ranges, and with a plan that has addresses or a
 * loopback the address programs (address.c). *failed_step: 1 opening the cgroup, 2 loading,
 * 3 attaching. */
int cj_ports_attach(const char *cgroup_dir, int map, const struct cj_port_range *ranges, int n, int bind_filter,
                    const struct cj_address_plan *plan, int *failed_step);
int cj_ports_detach(const char *cgroup_dir);

/* ---- systemd -------------------------------------------------------------------------- */

/* Sends one datagram to $NOTIFY_SOCKET's path (a leading '@' is an abstract address). */
int cj_sd_notify(const char *socket_path, const char *message);

/* ---- logging ---------------------------------------------------------------------------- */

void cj_syslog(int priority, const char *message);
void cj_openlog(const char *ident);

/* ---- accounting (accounting.c) ---------------------------------------------------------- */

/* A memfd named NAME holding LEN bytes of DATA, sealed against every change (write, grow,
 * shrink, new seals), close-on-exec. The session helper's record for `jaild sessions`. */
int cj_sealed_memfd(const char *name, const void *data, size_t len);

/* A close-on-exec AF_UNIX datagram socket bound at PATH (the jail's /dev/log). */
int cj_unix_dgram_bind(const char *path);

/* pidfd_getfd(2): a copy of descriptor FD of the process PIDFD refers to (close-on-exec).
 * `jaild sessions` reads a helper's peer credentials in the host's PID namespace with it. */
int cj_pidfd_getfd(int pidfd, int fd);

/* ---- disk images (loop.c) ------------------------------------------------------------ */

/* An open descriptor of the loop device already backed by the file IMAGE_FD (its number in
 * *NUMBER), or -1 with errno ENOENT. */
int cj_loop_find(int image_fd, int *number);
/* A free loop device configured over IMAGE_FD with autoclear (and direct I/O where possible). */
int cj_loop_attach(int image_fd, int *number);
/* DEVICE mounted as TYPE, nosuid and nodev (READ_ONLY: the superblock read-only), attached
 * nowhere: the mount's descriptor. */
int cj_mount_device_detached(const char *type, const char *device, int read_only);
/* A read-only overlay of STATE_TREE's upper/ over LOWER_TREE (both lower layers): the mount. */
int cj_overlay_open_read_only(int state_tree, int lower_tree);
/* Binds the host files SOURCES[i] over TARGETS[i] (read-only, nosuid, nodev) in the mount
 * namespace MNTNS_FD (a running jail's: lxcfs's files again after lxcfs restarted), each
 * stale mount there detached first. Host root, single-threaded caller: the trees are opened
 * here, a child joins the namespace and attaches them. 0, or -1 with errno (the child's). */
int cj_rebind_in_namespace(int mntns_fd, const char *const *sources, const char *const *targets, int count);
/* statfs(2) of PATH: the file system's type, sizes in blocks and inode counts. */
struct cj_fs_usage { int64_t type; uint64_t block_size, blocks, blocks_free, files, files_free; };
int cj_statfs(const char *path, struct cj_fs_usage *out);
/* btrfs: the uuid (37 bytes with the NUL) of PATH's file system and the id of its subvolume;
 * the referenced-bytes limit of that subvolume's qgroup; a commit of the file system. */
int cj_btrfs_subvolume(const char *path, char *uuid, uint64_t *id);
int cj_btrfs_limit_referenced(const char *path, uint64_t bytes);
int cj_btrfs_sync(const char *path);
/* FS_NOCOW_FL on an empty file (btrfs); -1 where the file system has no such flag. */
int cj_set_no_copy_on_write(int fd);

/* ---- network counters (traffic.c) ------------------------------------------------------- */

struct cj_traffic_slot { uint64_t bytes, packets; };
/* A new counter map and the ingress and egress programs that fill it, attached (multi) to a
 * cgroup v2 directory; *id is the map's id. *failed_step: 1 opening the cgroup, 2 the map,
 * 3 loading, 4 attaching. */
int cj_traffic_attach(const char *cgroup_dir, uint32_t *id, int *failed_step);
int cj_traffic_detach(const char *cgroup_dir);
/* The counters of the map with this id (-1 with ENOENT: no such map, or not a jail's counters). */
int cj_traffic_read(uint32_t id, struct cj_traffic_slot *receive, struct cj_traffic_slot *transmit);

/* A non-blocking, close-on-exec eventfd (counter 0): cgroup v1's OOM notification. */
int cj_eventfd(void);

#endif
