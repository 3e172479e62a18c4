/* Network bytes and packets per jail on the shared stack, counted by the kernel: two
 * cgroup_skb programs (ingress and egress) on the jail's cgroup v2 directory add each packet's
 * length and 1 to their direction's slot of the jail's own array map, with an atomic add, and
 * allow it. Raw instructions, as in ports.c: no clang, no libbpf at run time.
 *
 * The map ("jail_traffic", BPF_MAP_TYPE_ARRAY, key 0 receive, key 1 transmit, value
 * {u64 bytes, u64 packets}) is not pinned: it lives as long as the attached programs use it,
 * and those as long as the cgroup (or the detach at stop). Readers open it by the id the state
 * file records (BPF_MAP_GET_FD_BY_ID), never by walking the host's maps. A packet is an skb as
 * the hook sees it: with GSO (loopback TCP) one skb may stand for several wire packets; its
 * length counts the IP header and payload. */
#define _GNU_SOURCE
#include "cjail.h"
#include "bpf_asm.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char traffic_map_name[] = "jail_traffic";
static const char *const program_names[2] = {"jail_rx", "jail_tx"};
static const enum bpf_attach_type hooks[2] = {BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS};

static int bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* slot[direction].bytes += skb->len; slot[direction].packets += 1; return 1 (allow). */
static int emit_counter(struct bpf_insn *p, int map, int direction) {
    int k = 0;
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
    p[k++] = INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, direction);       /* key on the stack */
    p[k++] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map);
    p[k++] = INSN(0, 0, 0, 0, 0);
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    p[k++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4);
    p[k++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    p[k++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 4, 0);                 /* no slot: just allow */
    p[k++] = INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_1, BPF_REG_6, offsetof(struct __sk_buff, len), 0);
    p[k++] = INSN(BPF_STX | BPF_XADD | BPF_DW, BPF_REG_0, BPF_REG_1, 0, BPF_ADD);
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1);
    p[k++] = INSN(BPF_STX | BPF_XADD | BPF_DW, BPF_REG_0, BPF_REG_1, 8, BPF_ADD);
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
    p[k++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    return k;
}

static int map_id(int fd, uint32_t *id) {
    struct bpf_map_info info;
    union bpf_attr attr;
    memset(&info, 0, sizeof info);
    memset(&attr, 0, sizeof attr);
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = sizeof info;
    attr.info.info = (uint64_t)(uintptr_t)&info;
    if (bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) return -1;
    *id = info.id;
    return 0;
}

int cj_traffic_attach(const char *cgroup_dir, uint32_t *id, int *failed_step) {
    *failed_step = 1;
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) return -1;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = sizeof(struct cj_traffic_slot);
    attr.max_entries = 2;
    strncpy(attr.map_name, traffic_map_name, sizeof attr.map_name - 1);
    *failed_step = 2;
    int map = bpf(BPF_MAP_CREATE, &attr);
    int rc = map < 0 || map_id(map, id) < 0 ? -1 : 0;
    for (int direction = 0; rc == 0 && direction < 2; direction++) {
        struct bpf_insn program[16];
        int count = emit_counter(program, map, direction);
        memset(&attr, 0, sizeof attr);
        attr.prog_type = BPF_PROG_TYPE_CGROUP_SKB;
        attr.expected_attach_type = hooks[direction];
        attr.insns = (uint64_t)(uintptr_t)program;
        attr.insn_cnt = (uint32_t)count;
        attr.license = (uint64_t)(uintptr_t)"Dual MIT/GPL";
        strncpy(attr.prog_name, program_names[direction], sizeof attr.prog_name - 1);
        *failed_step = 3;
        int prog = bpf(BPF_PROG_LOAD, &attr);
        if (prog < 0) { rc = -1; break; }
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (uint32_t)cgroup;
        attr.attach_bpf_fd = (uint32_t)prog;
        attr.attach_type = hooks[direction];
        attr.attach_flags = BPF_F_ALLOW_MULTI;  /* beside anyone else's counting programs */
        *failed_step = 4;
        rc = bpf(BPF_PROG_ATTACH, &attr);
        int saved = errno;
        close(prog);  /* the attachment holds the program, and the program the map */
        errno = saved;
    }
    int saved = errno;
    if (map >= 0) close(map);
    close(cgroup);
    errno = saved;
    return rc;
}

/* With BPF_F_ALLOW_MULTI a detach names the program (bpf_asm.h). */
int cj_traffic_detach(const char *cgroup_dir) {
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) return -1;
    int rc = 0;
    for (int direction = 0; direction < 2; direction++) {
        if (cj_bpf_detach_named(cgroup, hooks[direction], program_names[direction]) < 0) rc = -1;
    }
    close(cgroup);
    return rc;
}

int cj_traffic_read(uint32_t id, struct cj_traffic_slot *receive, struct cj_traffic_slot *transmit) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_id = id;
    int map = bpf(BPF_MAP_GET_FD_BY_ID, &attr);
    if (map < 0) return -1;
    /* An id the kernel gave to another map since (the jail's map freed): not ours. */
    struct bpf_map_info info;
    memset(&info, 0, sizeof info);
    memset(&attr, 0, sizeof attr);
    attr.info.bpf_fd = (uint32_t)map;
    attr.info.info_len = sizeof info;
    attr.info.info = (uint64_t)(uintptr_t)&info;
    int rc = bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
    if (rc == 0 && (strcmp(info.name, traffic_map_name) != 0 || info.type != BPF_MAP_TYPE_ARRAY || info.key_size != 4 ||
                    info.value_size != sizeof(struct cj_traffic_slot) || info.max_entries != 2)) {
        errno = ENOENT;
        rc = -1;
    }
    struct cj_traffic_slot *slots[2] = {receive, transmit};
    for (uint32_t key = 0; rc == 0 && key < 2; key++) {
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&key;
        attr.value = (uint64_t)(uintptr_t)slots[key];
        rc = bpf(BPF_MAP_LOOKUP_ELEM, &attr);
    }
    int saved = errno;
    close(map);
    errno = saved;
    return rc;
}
