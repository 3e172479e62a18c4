/* Port ownership: a cgroup-BPF program on bind(2) (BPF_CGROUP_INET4_BIND and INET6_BIND)
 * that allows only the jail's TCP and UDP ports, and port 0 (ephemeral, for outgoing
 * connections). It is emitted here as raw instructions, so nothing but the kernel is needed
 * at run time: no clang, no libbpf, no object files. The verifier checks it at load. */
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
#define LOAD_CTX_U32(dst, field) INSN(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_6, offsetof(struct bpf_sock_addr, field), 0)
#define JUMP_IMM(op, dst, imm, off) INSN(BPF_JMP | (op) | BPF_K, dst, 0, off, imm)
#define RETURN_CODE(value) INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, value), INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

enum { MAX_INSNS = 4096 };

/* The program, by protocol: r2 = the port (host order), r3 = the protocol.
 *   if port == 0: allow
 *   if protocol == TCP: for each TCP range: if lo <= port <= hi: allow;  deny
 *   if protocol == UDP: likewise;  anything else binding a port: deny   */
static int emit(struct bpf_insn *p, const struct cj_port_range *ranges, int n) {
    int k = 0;
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
    p[k++] = LOAD_CTX_U32(BPF_REG_2, user_port);
    /* user_port is in network order in the low 16 bits: to host order. */
    p[k++] = INSN(BPF_ALU | BPF_END | BPF_TO_BE, BPF_REG_2, 0, 0, 16);
    p[k++] = LOAD_CTX_U32(BPF_REG_3, protocol);
    int allow_jumps[MAX_INSNS], nallow = 0;
    allow_jumps[nallow++] = k;
    p[k++] = JUMP_IMM(BPF_JEQ, BPF_REG_2, 0, 0);           /* port 0 → allow */
    const int protocols[2] = {6 /* IPPROTO_TCP */, 17 /* IPPROTO_UDP */};
    for (int proto = 0; proto < 2; proto++) {
        int skip = k;
        p[k++] = JUMP_IMM(BPF_JNE, BPF_REG_3, protocols[proto], 0);  /* not this protocol → next */
        for (int i = 0; i < n; i++) {
            if (ranges[i].protocol != protocols[proto]) continue;
            if (k + 8 >= MAX_INSNS) { errno = E2BIG; return -1; }
            p[k++] = JUMP_IMM(BPF_JLT, BPF_REG_2, ranges[i].low, 2);
            p[k++] = JUMP_IMM(BPF_JGT, BPF_REG_2, ranges[i].high, 1);
            allow_jumps[nallow++] = k;
            p[k++] = INSN(BPF_JMP | BPF_JA, 0, 0, 0, 0);
        }
        p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);  /* deny */
        p[k++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
        p[skip].off = (int16_t)(k - skip - 1);
    }
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);      /* other protocols: deny */
    p[k++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    int allow = k;
    p[k++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
    p[k++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    for (int j = 0; j < nallow; j++) p[allow_jumps[j]].off = (int16_t)(allow - allow_jumps[j] - 1);
    return k;
}

static int bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

static int load(const struct bpf_insn *insns, int count, enum bpf_attach_type type, const char *name,
                char *log, size_t log_size) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
    attr.expected_attach_type = type;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = (uint32_t)count;
    attr.license = (uint64_t)(uintptr_t)"Dual MIT/GPL";
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = (uint32_t)log_size;
    attr.log_level = log ? 1 : 0;
    strncpy(attr.prog_name, name, sizeof attr.prog_name - 1);
    return bpf(BPF_PROG_LOAD, &attr);
}

int cj_ports_attach(const char *cgroup_dir, const struct cj_port_range *ranges, int n, int *failed_step) {
    static struct bpf_insn program[MAX_INSNS];
    *failed_step = 0;
    int count = emit(program, ranges, n);
    if (count < 0) return -1;
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) { *failed_step = 1; return -1; }
    const enum bpf_attach_type types[2] = {BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND};
    const char *names[2] = {"jail_ports4", "jail_ports6"};
    for (int i = 0; i < 2; i++) {
        int prog = load(program, count, types[i], names[i], NULL, 0);
        if (prog < 0) { *failed_step = 2; close(cgroup); return -1; }
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (uint32_t)cgroup;
        attr.attach_bpf_fd = (uint32_t)prog;
        attr.attach_type = types[i];
        /* No flags: one program here, and nothing below may override it. */
        int rc = bpf(BPF_PROG_ATTACH, &attr);
        int saved = errno;
        close(prog);  /* the attachment holds the program now */
        if (rc < 0) { errno = saved; *failed_step = 3; close(cgroup); return -1; }
    }
    close(cgroup);
    return 0;
}

int cj_ports_detach(const char *cgroup_dir) {
    int cgroup = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup < 0) return -1;
    const enum bpf_attach_type types[2] = {BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (uint32_t)cgroup;
        attr.attach_type = types[i];
        if (bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT) rc = -1;
    }
    close(cgroup);
    return rc;
}
