/* Port ownership on the shared network, as cgroup-BPF programs emitted here as raw
 * instructions, so nothing but the kernel is needed at run time: no clang, no libbpf, no
 * object files. The verifier checks every program at load.
 *
 * - One map shared by every jail's programs, "jail_owned_port": key struct cj_owned_key
 *   (protocol<<16|port, an IPv6 address: all zeros "every address", an IPv4 address v4-mapped,
 *   all ones "some address", see emit_post_bind), value the owning jail's cgroup id. It is an
 *   LPM trie whose every key is a full-length prefix, used as an exact-match table: a hash map
 *   of MAP_ENTRIES allocates and zeroes 4 MiB of buckets at its creation (1.7 ms, on the path of
 *   the start of a host's first jail, issue 36), a trie nothing until a key is added. It is not
 *   pinned (it lives as long as a program uses it: the last jail's stop frees it). jaild keeps
 *   its id in a file of its own and opens it by that id (cj_owned_ports_by_id); only when that
 *   id is gone does it walk the host's maps by name. A start adds its own entries
 *   (cj_owned_ports_add); the whole map is rebuilt (cj_owned_ports_sync) only when a start
 *   meets another's entry and at a --ports jail's stop.
 * - bind (BPF_CGROUP_INET4_BIND, INET6_BIND; `--ports` and address jails): first the address
 *   half (address.c), then an explicit port must be one of the jail's; for those the program
 *   returns 3, "allow and skip the CAP_NET_BIND_SERVICE check", so no capability is needed for
 *   a low port. Port 0 passes.
 * - post-bind (BPF_CGROUP_INET4_POST_BIND, INET6_POST_BIND; every jail): sees the port the
 *   kernel finally chose (bind(0), IP_LOCAL_PORT_RANGE) and fails the bind with EPERM when it
 *   is in the map and not one of the jail's own. */
#define _GNU_SOURCE
#include "cjail.h"

#include "bpf_asm.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Entries: every port, TCP and UDP, owned everywhere, or on an address plus its "somewhere" key. */
enum { MAX_INSNS = 4096, MAP_ENTRIES = 4 * 65536, TCP = 6, UDP = 17 };
static const char map_name[] = "jail_owned_port";

/* Labels of the port half (bpf_asm.h: the address half has 1-39). */
enum { PORTS = 40, OWN, ZERO, ALLOW, DENY, KEY, WILDCARD, SPECIFIC, NOT_LOOPBACK };

/* Jumps to `target` when r2 (port) is in one of the ranges of protocol r3; falls through when
 * none matches. */
static void emit_ranges(struct bpf_asm *a, const struct cj_port_range *ranges, int n, int target) {
    const int protocols[2] = {TCP, UDP};
    for (int proto = 0; proto < 2; proto++) {
        int count = 0;
        for (int i = 0; i < n; i++) count += ranges[i].protocol == protocols[proto];
        if (count == 0) continue;
        /* not this protocol: skip its 3 instructions per range */
        asm_emit(a, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_3, 0, (int16_t)(3 * count), protocols[proto]));
        for (int i = 0; i < n; i++) {
            if (ranges[i].protocol != protocols[proto]) continue;
            asm_emit(a, INSN(BPF_JMP | BPF_JLT | BPF_K, BPF_REG_2, 0, 2, ranges[i].low));
            asm_emit(a, INSN(BPF_JMP | BPF_JGT | BPF_K, BPF_REG_2, 0, 1, ranges[i].high));
            JA(a, target);
        }
    }
}

/* bind: the address half (address.c), then r2 = the port (host order), r3 = the protocol.
 *   port 0: 1 (allow; post-bind checks what the kernel picks)
 *   one of the jail's ranges: 3 (allow, no CAP_NET_BIND_SERVICE needed);  else 0 (EPERM)
 * Without `--ports` (an address jail's bind program): 1. */
static int emit_bind(struct bpf_insn *p, const struct cj_port_range *ranges, int n, int port_filter,
                     const struct cj_address_plan *plan, int family) {
    struct bpf_asm a;
    asm_begin(&a, p, MAX_INSNS);
    cj_emit_bind_address(&a, plan, family, PORTS);
    asm_label(&a, PORTS);
    if (!port_filter) {
        RET(&a, 1);
        return asm_finish(&a);
    }
    LDXW(&a, BPF_REG_2, BPF_REG_6, offsetof(struct bpf_sock_addr, user_port));
    /* user_port is in network order in the low 16 bits: to host order. */
    asm_emit(&a, INSN(BPF_ALU | BPF_END | BPF_TO_BE, BPF_REG_2, 0, 0, 16));
    LDXW(&a, BPF_REG_3, BPF_REG_6, offsetof(struct bpf_sock_addr, protocol));
    JEQ(&a, BPF_REG_2, 0, ZERO);
    emit_ranges(&a, ranges, n, OWN);
    RET(&a, 0);
    asm_label(&a, OWN);
    RET(&a, 3);
    asm_label(&a, ZERO);
    RET(&a, 1);
    return asm_finish(&a);
}

/* One lookup of the key at fp-28: found → DENY. */
static void emit_lookup(struct bpf_asm *a, int map) {
    asm_emit(a, INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map));
    asm_emit(a, INSN(0, 0, 0, 0, 0));
    MOV(a, BPF_REG_2, BPF_REG_10);
    asm_emit(a, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -28));
    CALL(a, BPF_FUNC_map_lookup_elem);
    JNE(a, BPF_REG_0, 0, DENY);
}

/* post-bind: r2 = the bound port (host order), r3 = the protocol, r6 the socket.
 *   one of the jail's ranges, or the jail's own loopback address: allow
 *   otherwise, a TCP or UDP port that the map gives to another jail: 0 (EPERM), where the
 *   map's key (struct cj_owned_key, at fp-28: its prefix length, then the port word at fp-24) is looked up as
 *     (port, every address)       a jail without --address owns the port everywhere
 *     (port, the bound address)   a jail owns it on this address; a wildcard bind looks up
 *                                 the wildcard key, which says "some jail owns it somewhere"
 *     (0, the bound address)      the whole address is a jail's (its loopback)   */
static int emit_post_bind(struct bpf_insn *p, int map, const struct cj_port_range *ranges, int n,
                          const struct cj_address_plan *plan, int family) {
    struct bpf_asm a;
    asm_begin(&a, p, MAX_INSNS);
    MOV(&a, BPF_REG_6, BPF_REG_1);
    LDXW(&a, BPF_REG_2, BPF_REG_6, offsetof(struct bpf_sock, src_port));
    LDXW(&a, BPF_REG_3, BPF_REG_6, offsetof(struct bpf_sock, protocol));
    emit_ranges(&a, ranges, n, ALLOW);
    if (plan && plan->loopback) {
        if (family == AF_INET) {
            LDXW(&a, BPF_REG_4, BPF_REG_6, offsetof(struct bpf_sock, src_ip4));
        } else {  /* ::ffff:LOOPBACK */
            const uint32_t mapped[3] = {0, 0, htonl(0xffff)};
            for (int i = 0; i < 3; i++) {
                LDXW(&a, BPF_REG_4, BPF_REG_6, offsetof(struct bpf_sock, src_ip6[i]));
                JNE32(&a, BPF_REG_4, mapped[i], NOT_LOOPBACK);
            }
            LDXW(&a, BPF_REG_4, BPF_REG_6, offsetof(struct bpf_sock, src_ip6[3]));
        }
        JEQ32(&a, BPF_REG_4, plan->loopback, ALLOW);
        asm_label(&a, NOT_LOOPBACK);
    }
    JEQ(&a, BPF_REG_2, 0, ALLOW);                 /* no port yet (IP_BIND_ADDRESS_NO_PORT) */
    JEQ(&a, BPF_REG_3, TCP, KEY);
    JNE(&a, BPF_REG_3, UDP, ALLOW);               /* other protocols own no ports here */
    asm_label(&a, KEY);
    asm_emit(&a, INSN(BPF_ALU64 | BPF_LSH | BPF_K, BPF_REG_3, 0, 0, 16));
    asm_emit(&a, INSN(BPF_ALU64 | BPF_OR | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0));
    MOV(&a, BPF_REG_8, BPF_REG_3);                /* the port word, kept across the calls */
    STW(&a, BPF_REG_10, -28, CJ_OWNED_KEY_BITS);
    STXW(&a, BPF_REG_10, BPF_REG_8, -24);
    for (int i = 0; i < 4; i++) STW(&a, BPF_REG_10, -20 + 4 * i, 0);
    emit_lookup(&a, map);                         /* (port, every address) */
    if (family == AF_INET) {
        LDXW(&a, BPF_REG_2, BPF_REG_6, offsetof(struct bpf_sock, src_ip4));
        JEQ32(&a, BPF_REG_2, 0, WILDCARD);
        STW(&a, BPF_REG_10, -12, htonl(0xffff));  /* ::ffff:a.b.c.d, as the v6 hooks see it */
        STXW(&a, BPF_REG_10, BPF_REG_2, -8);
        JA(&a, SPECIFIC);
    } else {
        for (int i = 0; i < 4; i++) LDXW(&a, BPF_REG_2 + i, BPF_REG_6, offsetof(struct bpf_sock, src_ip6[i]));
        for (int i = 0; i < 4; i++) STXW(&a, BPF_REG_10, BPF_REG_2 + i, -20 + 4 * i);
        for (int i = 0; i < 4; i++) JNE32(&a, BPF_REG_2 + i, 0, SPECIFIC);
        JA(&a, WILDCARD);
    }
    asm_label(&a, WILDCARD);
    for (int i = 0; i < 4; i++) STW(&a, BPF_REG_10, -20 + 4 * i, -1);
    emit_lookup(&a, map);                         /* (port, somewhere) */
    JA(&a, ALLOW);
    asm_label(&a, SPECIFIC);
    emit_lookup(&a, map);                         /* (port, this address) */
    STW(&a, BPF_REG_10, -24, 0);
    emit_lookup(&a, map);                         /* (0, this address) */
    JA(&a, ALLOW);
    asm_label(&a, DENY);
    RET(&a, 0);
    asm_label(&a, ALLOW);
    RET(&a, 1);
    return asm_finish(&a);
}

/* Whether fd is the owned-ports map: its name, type and key and value sizes (the type and the
 * key's size tell it from the hash maps of earlier jailds: 4-byte keys before addresses,
 * 20-byte ones before the trie); *id gets its id. */
static int is_owned_ports_map(int fd, uint32_t *id) {
    union bpf_attr attr;
    struct bpf_map_info info;
    memset(&info, 0, sizeof info);
    memset(&attr, 0, sizeof attr);
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = sizeof info;
    attr.info.info = (uint64_t)(uintptr_t)&info;
    if (cj_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) return 0;
    if (id) *id = info.id;
    return strcmp(info.name, map_name) == 0 && info.type == BPF_MAP_TYPE_LPM_TRIE &&
           info.key_size == sizeof(struct cj_owned_key) && info.value_size == 8;
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
    int fd = cj_bpf(BPF_MAP_GET_FD_BY_ID, &attr);
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
        if (cj_bpf(BPF_MAP_GET_NEXT_ID, &attr) < 0) {
            if (errno != ENOENT) return -1;
            break;
        }
        id = attr.next_id;
        memset(&attr, 0, sizeof attr);
        attr.map_id = id;
        int fd = cj_bpf(BPF_MAP_GET_FD_BY_ID, &attr);
        if (fd < 0) continue;  /* freed meanwhile */
        if (is_owned_ports_map(fd, NULL)) return fd;
        close(fd);
    }
    if (!create) { errno = ENOENT; return -1; }
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_LPM_TRIE;
    attr.key_size = sizeof(struct cj_owned_key);
    attr.value_size = 8;
    attr.max_entries = MAP_ENTRIES;
    attr.map_flags = BPF_F_NO_PREALLOC;  /* a trie's must: nodes are allocated as keys are added */
    strncpy(attr.map_name, map_name, sizeof attr.map_name - 1);
    return cj_bpf(BPF_MAP_CREATE, &attr);
}

/* keys[i] as the trie's exact key: whatever prefix length a caller left in it, a shorter one
 * would match every key under it (0: every bind on the host). */
static struct cj_owned_key exact_key(const struct cj_owned_key *key) {
    struct cj_owned_key exact = *key;
    exact.prefixlen = CJ_OWNED_KEY_BITS;
    return exact;
}

/* One jail's keys, added where nobody owns them yet (BPF_NOEXIST): the first jail to start
 * with a port owns it. holders[i] gets the owner of keys[i] afterwards (owner, or the jail
 * that had it). Callers hold jaild's ports lock, so no other writer runs meanwhile. */
int cj_owned_ports_add(int map, const struct cj_owned_key *keys, int n, uint64_t owner, uint64_t *holders) {
    union bpf_attr attr;
    for (int i = 0; i < n; i++) {
        struct cj_owned_key key = exact_key(&keys[i]);
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&key;
        attr.value = (uint64_t)(uintptr_t)&owner;
        attr.flags = BPF_NOEXIST;
        if (cj_bpf(BPF_MAP_UPDATE_ELEM, &attr) == 0) { holders[i] = owner; continue; }
        if (errno != EEXIST) return -1;
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&key;
        attr.value = (uint64_t)(uintptr_t)&holders[i];
        if (cj_bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0) return -1;
    }
    return 0;
}

static int compare_keys(const void *left, const void *right) {
    return memcmp(left, right, sizeof(struct cj_owned_key));
}

/* The sync's two key lists on the heap for the call only, not in .bss: two arrays of 5 MiB there
 * put the rest of .bss 10 MiB further, in 2 MiB regions of their own, and so cost every jaild
 * process (supervisor, init, spare) one more page table for as long as it runs. */
static int owned_ports_sync(int map, const struct cj_owned_key *keys, const uint64_t *owners, int n,
                            struct cj_owned_key *wanted, struct cj_owned_key *stale);

int cj_owned_ports_sync(int map, const struct cj_owned_key *keys, const uint64_t *owners, int n) {
    if (n > MAP_ENTRIES) { errno = E2BIG; return -1; }
    struct cj_owned_key *wanted = malloc((size_t)(n > 0 ? n : 1) * sizeof *wanted);
    struct cj_owned_key *stale = malloc((size_t)MAP_ENTRIES * sizeof *stale);
    int rc = -1;
    if (wanted && stale) rc = owned_ports_sync(map, keys, owners, n, wanted, stale);
    else errno = ENOMEM;
    int saved = errno;
    free(wanted);
    free(stale);
    errno = saved;
    return rc;
}

static int owned_ports_sync(int map, const struct cj_owned_key *keys, const uint64_t *owners, int n,
                            struct cj_owned_key *wanted, struct cj_owned_key *stale) {
    for (int i = 0; i < n; i++) wanted[i] = exact_key(&keys[i]);
    qsort(wanted, (size_t)n, sizeof *wanted, compare_keys);
    /* Collect first: deleting while walking would restart the walk. */
    int nstale = 0;
    union bpf_attr attr;
    struct cj_owned_key key, next;
    int first = 1;
    for (;;) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = first ? 0 : (uint64_t)(uintptr_t)&key;
        attr.next_key = (uint64_t)(uintptr_t)&next;
        if (cj_bpf(BPF_MAP_GET_NEXT_KEY, &attr) < 0) {
            if (errno != ENOENT) return -1;
            break;
        }
        first = 0;
        key = next;
        if (!bsearch(&key, wanted, (size_t)n, sizeof *wanted, compare_keys) && nstale < MAP_ENTRIES) stale[nstale++] = key;
    }
    for (int i = 0; i < nstale; i++) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&stale[i];
        if (cj_bpf(BPF_MAP_DELETE_ELEM, &attr) < 0 && errno != ENOENT) return -1;
    }
    for (int i = 0; i < n; i++) {
        struct cj_owned_key key = exact_key(&keys[i]);
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&key;
        attr.value = (uint64_t)(uintptr_t)&owners[i];
        attr.flags = BPF_ANY;
        if (cj_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0) return -1;
    }
    return 0;
}

int cj_ports_attach(const char *cgroup_dir, int map, const struct cj_port_range *ranges, int n, int bind_filter,
                    const struct cj_address_plan *plan, int *failed_step) {
    static struct bpf_insn program[MAX_INSNS];
    *failed_step = 0;
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) { *failed_step = 1; return -1; }
    int addresses = plan && (plan->loopback || plan->ipv4_count || plan->ipv6_count);
    const enum bpf_attach_type post_bind[2] = {BPF_CGROUP_INET4_POST_BIND, BPF_CGROUP_INET6_POST_BIND};
    const enum bpf_attach_type bind[2] = {BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND};
    const int families[2] = {AF_INET, AF_INET6};
    const char *post_names[2] = {"jail_owned4", "jail_owned6"}, *bind_names[2] = {"jail_ports4", "jail_ports6"};
    int rc = 0;
    for (int f = 0; rc == 0 && f < 2; f++) {
        int count = emit_post_bind(program, map, ranges, n, plan, families[f]);
        if (count < 0) { *failed_step = 2; rc = -1; break; }
        rc = cj_bpf_attach_program(cgroup, program, count, BPF_PROG_TYPE_CGROUP_SOCK, post_bind[f], post_names[f], 0,
                                   failed_step);
        if (rc < 0 || !(bind_filter || addresses)) continue;
        count = emit_bind(program, ranges, n, bind_filter, plan, families[f]);
        if (count < 0) { *failed_step = 2; rc = -1; break; }
        rc = cj_bpf_attach_program(cgroup, program, count, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bind[f], bind_names[f], 0,
                                   failed_step);
    }
    if (rc == 0 && addresses) rc = cj_address_programs_attach(cgroup, plan, failed_step);
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
        if (cj_bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT) rc = -1;
    }
    if (cj_address_programs_detach(cgroup) < 0) rc = -1;
    close(cgroup);
    return rc;
}
