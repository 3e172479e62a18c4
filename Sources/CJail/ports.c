/* Port ownership on the shared network, as cgroup-BPF programs emitted here as raw
 * instructions, so nothing but the kernel is needed at run time: no clang, no libbpf, no
 * object files. The verifier checks every program at load.
 *
 * - One hash map shared by every jail's programs, "jail_owned_port": key protocol<<16|port,
 *   value the owning jail's cgroup id. It is not pinned (it lives as long as a program uses
 *   it: the last jail's stop frees it). jaild keeps its id in a file of its own and opens it by
 *   that id (cj_owned_ports_by_id); only when that id is gone does it walk the host's maps by
 *   name. A start adds its own entries (cj_owned_ports_add); the whole map is rebuilt
 *   (cj_owned_ports_sync) only when a start meets another's entry and at a --ports jail's stop.
 * - bind (BPF_CGROUP_INET4_BIND, INET6_BIND; `--ports` jails only): an explicit port must be
 *   one of the jail's; for those the program returns 3, "allow and skip the
 *   CAP_NET_BIND_SERVICE check", so no capability is needed for a low port. Port 0 passes.
 * - post-bind (BPF_CGROUP_INET4_POST_BIND, INET6_POST_BIND; every jail): sees the port the
 *   kernel finally chose (bind(0), IP_LOCAL_PORT_RANGE) and fails the bind with EPERM when it
 *   is in the map and not one of the jail's own. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INSN(code_, dst_, src_, off_, imm_) \
    ((struct bpf_insn){.code = (code_), .dst_reg = (dst_), .src_reg = (src_), .off = (off_), .imm = (imm_)})
#define JUMP_IMM(op, dst, imm, off) INSN(BPF_JMP | (op) | BPF_K, dst, 0, off, imm)
#define MOV_IMM(dst, imm) INSN(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
#define EXIT INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

enum { MAX_INSNS = 4096, MAP_ENTRIES = 2 * 65536, TCP = 6, UDP = 17 };
static const char map_name[] = "jail_owned_port";

static int bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* Jumps to an "allow" target (collected in jumps) when r2 (port) is in one of the ranges of
 * protocol r3; falls through when none matches. */
static int emit_ranges(struct bpf_insn *p, int k, const struct cj_port_range *ranges, int n, int *jumps, int *njumps) {
    const int protocols[2] = {TCP, UDP};
    for (int proto = 0; proto < 2; proto++) {
        int skip = k;
        p[k++] = JUMP_IMM(BPF_JNE, BPF_REG_3, protocols[proto], 0);  /* not this protocol → next */
        for (int i = 0; i < n; i++) {
            if (ranges[i].protocol != protocols[proto]) continue;
            if (k + 16 >= MAX_INSNS) { errno = E2BIG; return -1; }
            p[k++] = JUMP_IMM(BPF_JLT, BPF_REG_2, ranges[i].low, 2);
            p[k++] = JUMP_IMM(BPF_JGT, BPF_REG_2, ranges[i].high, 1);
            jumps[(*njumps)++] = k;
            p[k++] = INSN(BPF_JMP | BPF_JA, 0, 0, 0, 0);
        }
        p[skip].off = (int16_t)(k - skip - 1);
    }
    return k;
}

static void patch(struct bpf_insn *p, const int *jumps, int njumps, int target) {
    for (int j = 0; j < njumps; j++) p[jumps[j]].off = (int16_t)(target - jumps[j] - 1);
}

/* bind: r2 = the port (host order), r3 = the protocol.
 *   port 0: 1 (allow; post-bind checks what the kernel picks)
 *   one of the jail's ranges: 3 (allow, no CAP_NET_BIND_SERVICE needed);  else 0 (EPERM) */
static int emit_bind(struct bpf_insn *p, const struct cj_port_range *ranges, int n) {
    static int jumps[MAX_INSNS];
    int k = 0, njumps = 0;
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
    p[k++] = INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_6, offsetof(struct bpf_sock_addr, user_port), 0);
    /* user_port is in network order in the low 16 bits: to host order. */
    p[k++] = INSN(BPF_ALU | BPF_END | BPF_TO_BE, BPF_REG_2, 0, 0, 16);
    p[k++] = INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_6, offsetof(struct bpf_sock_addr, protocol), 0);
    int zero = k;
    p[k++] = JUMP_IMM(BPF_JEQ, BPF_REG_2, 0, 0);
    k = emit_ranges(p, k, ranges, n, jumps, &njumps);
    if (k < 0) return -1;
    p[k++] = MOV_IMM(BPF_REG_0, 0);
    p[k++] = EXIT;
    patch(p, jumps, njumps, k);
    p[k++] = MOV_IMM(BPF_REG_0, 3);
    p[k++] = EXIT;
    p[zero].off = (int16_t)(k - zero - 1);
    p[k++] = MOV_IMM(BPF_REG_0, 1);
    p[k++] = EXIT;
    return k;
}

/* post-bind: r2 = the bound port (host order), r3 = the protocol.
 *   one of the jail's ranges: allow;  TCP/UDP port in the shared map: 0 (EPERM);  else allow */
static int emit_post_bind(struct bpf_insn *p, int map, const struct cj_port_range *ranges, int n) {
    static int jumps[MAX_INSNS];
    int k = 0, njumps = 0;
    p[k++] = INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, offsetof(struct bpf_sock, src_port), 0);
    p[k++] = INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_1, offsetof(struct bpf_sock, protocol), 0);
    k = emit_ranges(p, k, ranges, n, jumps, &njumps);
    if (k < 0) return -1;
    if (k + 24 >= MAX_INSNS) { errno = E2BIG; return -1; }  /* the lookup below */
    jumps[njumps++] = k;
    p[k++] = JUMP_IMM(BPF_JEQ, BPF_REG_2, 0, 0);                 /* no port yet (IP_BIND_ADDRESS_NO_PORT) */
    p[k++] = JUMP_IMM(BPF_JEQ, BPF_REG_3, TCP, 1);
    jumps[njumps++] = k;
    p[k++] = JUMP_IMM(BPF_JNE, BPF_REG_3, UDP, 0);               /* other protocols own no ports here */
    /* key = protocol << 16 | port, on the stack */
    p[k++] = INSN(BPF_ALU64 | BPF_LSH | BPF_K, BPF_REG_3, 0, 0, 16);
    p[k++] = INSN(BPF_ALU64 | BPF_OR | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0);
    p[k++] = INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_3, -4, 0);
    p[k++] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map);
    p[k++] = INSN(0, 0, 0, 0, 0);
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    p[k++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4);
    p[k++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    jumps[njumps++] = k;
    p[k++] = JUMP_IMM(BPF_JEQ, BPF_REG_0, 0, 0);                 /* nobody's: allow */
    p[k++] = MOV_IMM(BPF_REG_0, 0);                              /* another jail's: EPERM */
    p[k++] = EXIT;
    patch(p, jumps, njumps, k);
    p[k++] = MOV_IMM(BPF_REG_0, 1);
    p[k++] = EXIT;
    return k;
}

static int load(const struct bpf_insn *insns, int count, enum bpf_prog_type type, enum bpf_attach_type attach,
                const char *name) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = type;
    attr.expected_attach_type = attach;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = (uint32_t)count;
    attr.license = (uint64_t)(uintptr_t)"Dual MIT/GPL";
    strncpy(attr.prog_name, name, sizeof attr.prog_name - 1);
    return bpf(BPF_PROG_LOAD, &attr);
}

/* Whether fd is the owned-ports map: its name, type and key and value sizes; *id gets its id. */
static int is_owned_ports_map(int fd, uint32_t *id) {
    union bpf_attr attr;
    struct bpf_map_info info;
    memset(&info, 0, sizeof info);
    memset(&attr, 0, sizeof attr);
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = sizeof info;
    attr.info.info = (uint64_t)(uintptr_t)&info;
    if (bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) return 0;
    if (id) *id = info.id;
    return strcmp(info.name, map_name) == 0 && info.type == BPF_MAP_TYPE_HASH && info.key_size == 4 &&
           info.value_size == 8;
}

/* The map by the id jaild recorded. Safe against a stale id: the kernel hands out map ids
 * cyclically (idr_alloc_cyclic up to INT_MAX), so a freed map's id comes back only after
 * 2^31 other maps, and whatever map holds the id is checked for the name, type and sizes
 * above before it is used. ENOENT when the id is no map of ours. */
int cj_owned_ports_by_id(uint32_t id) {
    if (id == 0) { errno = ENOENT; return -1; }
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_id = id;
    int fd = bpf(BPF_MAP_GET_FD_BY_ID, &attr);
    if (fd < 0) return -1;
    if (is_owned_ports_map(fd, NULL)) return fd;
    close(fd);
    errno = ENOENT;
    return -1;
}

uint32_t cj_bpf_map_id(int fd) {
    uint32_t id = 0;
    return is_owned_ports_map(fd, &id) ? id : 0;
}

int cj_owned_ports_open(int create) {
    union bpf_attr attr;
    uint32_t id = 0;
    for (;;) {
        memset(&attr, 0, sizeof attr);
        attr.start_id = id;
        if (bpf(BPF_MAP_GET_NEXT_ID, &attr) < 0) {
            if (errno != ENOENT) return -1;
            break;
        }
        id = attr.next_id;
        memset(&attr, 0, sizeof attr);
        attr.map_id = id;
        int fd = bpf(BPF_MAP_GET_FD_BY_ID, &attr);
        if (fd < 0) continue;  /* freed meanwhile */
        if (is_owned_ports_map(fd, NULL)) return fd;
        close(fd);
    }
    if (!create) { errno = ENOENT; return -1; }
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_HASH;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = MAP_ENTRIES;
    attr.map_flags = BPF_F_NO_PREALLOC;  /* memory for the ports in use only */
    strncpy(attr.map_name, map_name, sizeof attr.map_name - 1);
    return bpf(BPF_MAP_CREATE, &attr);
}

static int key_index(uint32_t key) {
    return ((key >> 16) == UDP ? 65536 : 0) + (int)(key & 0xffff);
}

/* One jail's keys, added where nobody owns them yet (BPF_NOEXIST): the first jail to start
 * with a port owns it. holders[i] gets the owner of keys[i] afterwards (owner, or the jail
 * that had it). Callers hold jaild's ports lock, so no other writer runs meanwhile. */
int cj_owned_ports_add(int map, const uint32_t *keys, int n, uint64_t owner, uint64_t *holders) {
    union bpf_attr attr;
    for (int i = 0; i < n; i++) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&keys[i];
        attr.value = (uint64_t)(uintptr_t)&owner;
        attr.flags = BPF_NOEXIST;
        if (bpf(BPF_MAP_UPDATE_ELEM, &attr) == 0) { holders[i] = owner; continue; }
        if (errno != EEXIST) return -1;
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&keys[i];
        attr.value = (uint64_t)(uintptr_t)&holders[i];
        if (bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0) return -1;
    }
    return 0;
}

int cj_owned_ports_sync(int map, const uint32_t *keys, const uint64_t *owners, int n) {
    static uint8_t wanted[MAP_ENTRIES / 8];
    static uint32_t stale[MAP_ENTRIES];
    memset(wanted, 0, sizeof wanted);
    for (int i = 0; i < n; i++) wanted[key_index(keys[i]) / 8] |= (uint8_t)(1u << (key_index(keys[i]) % 8));
    /* Collect first: deleting while walking would restart the walk. */
    int nstale = 0;
    union bpf_attr attr;
    uint32_t key = 0, next = 0;
    int first = 1;
    for (;;) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = first ? 0 : (uint64_t)(uintptr_t)&key;
        attr.next_key = (uint64_t)(uintptr_t)&next;
        if (bpf(BPF_MAP_GET_NEXT_KEY, &attr) < 0) {
            if (errno != ENOENT) return -1;
            break;
        }
        first = 0;
        key = next;
        int index = key_index(key);
        if (!(wanted[index / 8] & (1u << (index % 8))) && nstale < MAP_ENTRIES) stale[nstale++] = key;
    }
    for (int i = 0; i < nstale; i++) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&stale[i];
        if (bpf(BPF_MAP_DELETE_ELEM, &attr) < 0 && errno != ENOENT) return -1;
    }
    for (int i = 0; i < n; i++) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&keys[i];
        attr.value = (uint64_t)(uintptr_t)&owners[i];
        attr.flags = BPF_ANY;
        if (bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0) return -1;
    }
    return 0;
}

static int attach_one(int cgroup, const struct bpf_insn *program, int count, enum bpf_prog_type type,
                      enum bpf_attach_type attach, const char *name, int *failed_step) {
    int prog = load(program, count, type, attach, name);
    if (prog < 0) { *failed_step = 2; return -1; }
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup;
    attr.attach_bpf_fd = (uint32_t)prog;
    attr.attach_type = attach;
    /* No flags: one program here, and nothing below may override it. */
    int rc = bpf(BPF_PROG_ATTACH, &attr);
    int saved = errno;
    close(prog);  /* the attachment holds the program (and the map) now */
    errno = saved;
    if (rc < 0) *failed_step = 3;
    return rc;
}

int cj_ports_attach(const char *cgroup_dir, int map, const struct cj_port_range *ranges, int n, int bind_filter,
                    int *failed_step) {
    static struct bpf_insn program[MAX_INSNS];
    *failed_step = 0;
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) { *failed_step = 1; return -1; }
    int rc = 0;
    int count = emit_post_bind(program, map, ranges, n);
    if (count < 0) { *failed_step = 2; rc = -1; }
    if (rc == 0) rc = attach_one(cgroup, program, count, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET4_POST_BIND,
                                 "jail_owned4", failed_step);
    if (rc == 0) rc = attach_one(cgroup, program, count, BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET6_POST_BIND,
                                 "jail_owned6", failed_step);
    if (rc == 0 && bind_filter) {
        count = emit_bind(program, ranges, n);
        if (count < 0) { *failed_step = 2; rc = -1; }
        if (rc == 0) rc = attach_one(cgroup, program, count, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_BIND,
                                     "jail_ports4", failed_step);
        if (rc == 0) rc = attach_one(cgroup, program, count, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_BIND,
                                     "jail_ports6", failed_step);
    }
    int saved = errno;
    close(cgroup);
    errno = saved;
    return rc;
}

int cj_ports_detach(const char *cgroup_dir) {
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) return -1;
    const enum bpf_attach_type types[4] = {BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND, BPF_CGROUP_INET4_POST_BIND,
                                           BPF_CGROUP_INET6_POST_BIND};
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (uint32_t)cgroup;
        attr.attach_type = types[i];
        if (bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT) rc = -1;
    }
    close(cgroup);
    return rc;
}
