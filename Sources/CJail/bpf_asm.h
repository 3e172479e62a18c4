/* A small assembler for the cgroup-BPF programs jaild emits as raw instructions (ports.c,
 * address.c): instructions go into a caller's buffer, forward jumps name a label and are
 * patched when the program is finished, so a program reads as its decisions instead of as
 * hand-counted offsets. Private to CJail. */
#ifndef CJAIL_BPF_ASM_H
#define CJAIL_BPF_ASM_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

#define INSN(code_, dst_, src_, off_, imm_) \
    ((struct bpf_insn){.code = (code_), .dst_reg = (dst_), .src_reg = (src_), .off = (off_), .imm = (imm_)})

enum { BPF_ASM_LABELS = 64, BPF_ASM_FIXUPS = 1024 };

struct bpf_asm {
    struct bpf_insn *p;
    int k, max, overflow;
    int label_at[BPF_ASM_LABELS];
    int fix_insn[BPF_ASM_FIXUPS], fix_label[BPF_ASM_FIXUPS], nfix;
};

static inline void asm_begin(struct bpf_asm *a, struct bpf_insn *buffer, int max) {
    memset(a, 0, sizeof *a);
    a->p = buffer;
    a->max = max;
    for (int i = 0; i < BPF_ASM_LABELS; i++) a->label_at[i] = -1;
}

static inline void asm_emit(struct bpf_asm *a, struct bpf_insn insn) {
    if (a->k >= a->max) { a->overflow = 1; return; }
    a->p[a->k++] = insn;
}

static inline void asm_label(struct bpf_asm *a, int label) { a->label_at[label] = a->k; }

/* A jump to `label`: code is BPF_JMP or BPF_JMP32 | op | BPF_K or BPF_X. */
static inline void asm_jump(struct bpf_asm *a, uint8_t code, int dst, int src, int32_t imm, int label) {
    if (a->nfix >= BPF_ASM_FIXUPS) { a->overflow = 1; return; }
    a->fix_insn[a->nfix] = a->k;
    a->fix_label[a->nfix++] = label;
    asm_emit(a, INSN(code, dst, src, 0, imm));
}

/* 32-bit compares: an address loaded with a 32-bit load is compared with its bytes as the
 * immediate, which a 64-bit compare would sign-extend. */
#define JEQ32(a, reg, imm, label) asm_jump(a, BPF_JMP32 | BPF_JEQ | BPF_K, reg, 0, (int32_t)(imm), label)
#define JNE32(a, reg, imm, label) asm_jump(a, BPF_JMP32 | BPF_JNE | BPF_K, reg, 0, (int32_t)(imm), label)
#define JEQ(a, reg, imm, label) asm_jump(a, BPF_JMP | BPF_JEQ | BPF_K, reg, 0, imm, label)
#define JNE(a, reg, imm, label) asm_jump(a, BPF_JMP | BPF_JNE | BPF_K, reg, 0, imm, label)
#define JA(a, label) asm_jump(a, BPF_JMP | BPF_JA, 0, 0, 0, label)
#define MOV(a, dst, src) asm_emit(a, INSN(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0))
#define MOVI(a, dst, imm) asm_emit(a, INSN(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm))
#define LDXW(a, dst, src, off) asm_emit(a, INSN(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0))
#define LDXB(a, dst, src, off) asm_emit(a, INSN(BPF_LDX | BPF_MEM | BPF_B, dst, src, off, 0))
#define LDXDW(a, dst, src, off) asm_emit(a, INSN(BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, 0))
#define STXW(a, dst, src, off) asm_emit(a, INSN(BPF_STX | BPF_MEM | BPF_W, dst, src, off, 0))
#define STW(a, dst, off, imm) asm_emit(a, INSN(BPF_ST | BPF_MEM | BPF_W, dst, 0, off, (int32_t)(imm)))
#define STH(a, dst, off, imm) asm_emit(a, INSN(BPF_ST | BPF_MEM | BPF_H, dst, 0, off, imm))
#define STDW(a, dst, off, imm) asm_emit(a, INSN(BPF_ST | BPF_MEM | BPF_DW, dst, 0, off, imm))
#define CALL(a, helper) asm_emit(a, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, helper))
#define RET(a, value) do { MOVI(a, BPF_REG_0, value); asm_emit(a, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)); } while (0)

/* Returns 0 with the caller's return value `errno_value` (bpf_set_retval), so the system call
 * fails with that errno instead of the EPERM a plain 0 gives. */
static inline void asm_fail_with(struct bpf_asm *a, int errno_value) {
    MOVI(a, BPF_REG_1, -errno_value);
    CALL(a, BPF_FUNC_set_retval);
    RET(a, 0);
}

/* The instruction count, or -1 (E2BIG) when the buffer or the fix-ups overflowed. */
static inline int asm_finish(struct bpf_asm *a) {
    if (a->overflow) { errno = E2BIG; return -1; }
    for (int i = 0; i < a->nfix; i++) {
        int target = a->label_at[a->fix_label[i]];
        if (target < 0) { errno = EINVAL; return -1; }  /* a label never placed: a bug here */
        a->p[a->fix_insn[i]].off = (int16_t)(target - a->fix_insn[i] - 1);
    }
    return a->k;
}

static inline int cj_bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* Loads a program and attaches it to the cgroup directory `cgroup` (an open fd). `flags` 0:
 * the one program of this hook here, nothing below may override it; BPF_F_ALLOW_MULTI: beside
 * others (the cgroup_skb hooks, shared with the traffic counters). *failed_step: 2 loading,
 * 3 attaching. */
static inline int cj_bpf_attach_program(int cgroup, const struct bpf_insn *program, int count, enum bpf_prog_type type,
                                        enum bpf_attach_type attach, const char *name, uint32_t flags,
                                        int *failed_step) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = type;
    attr.expected_attach_type = attach;
    attr.insns = (uint64_t)(uintptr_t)program;
    attr.insn_cnt = (uint32_t)count;
    attr.license = (uint64_t)(uintptr_t)"Dual MIT/GPL";
    strncpy(attr.prog_name, name, sizeof attr.prog_name - 1);
    int prog = cj_bpf(BPF_PROG_LOAD, &attr);
#ifdef CJ_BPF_DEBUG  /* a test build: the verifier's reason */
    if (prog < 0) {
        static char log[65536];
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = sizeof log;
        attr.log_level = 1;
        cj_bpf(BPF_PROG_LOAD, &attr);
        fprintf(stderr, "%s: %s\n", name, log);
    }
#endif
    if (prog < 0) { *failed_step = 2; return -1; }
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup;
    attr.attach_bpf_fd = (uint32_t)prog;
    attr.attach_type = attach;
    attr.attach_flags = flags;
    int rc = cj_bpf(BPF_PROG_ATTACH, &attr);
    int saved = errno;
    close(prog);  /* the attachment holds the program (and its maps) now */
    errno = saved;
    if (rc < 0) *failed_step = 3;
    return rc;
}

/* A program attached with BPF_F_ALLOW_MULTI is detached by naming it: found by name among
 * the cgroup's own attachments of that hook (BPF_PROG_QUERY), a handful at most. */
static inline int cj_bpf_detach_named(int cgroup, enum bpf_attach_type attach, const char *name) {
    uint32_t ids[64];
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.query.target_fd = (uint32_t)cgroup;
    attr.query.attach_type = attach;
    attr.query.prog_ids = (uint64_t)(uintptr_t)ids;
    attr.query.prog_cnt = 64;
    if (cj_bpf(BPF_PROG_QUERY, &attr) < 0) return -1;
    uint32_t count = attr.query.prog_cnt < 64 ? attr.query.prog_cnt : 64;
    int rc = 0;
    for (uint32_t i = 0; i < count; i++) {
        memset(&attr, 0, sizeof attr);
        attr.prog_id = ids[i];
        int prog = cj_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
        if (prog < 0) continue;
        struct bpf_prog_info info;
        memset(&info, 0, sizeof info);
        memset(&attr, 0, sizeof attr);
        attr.info.bpf_fd = (uint32_t)prog;
        attr.info.info_len = sizeof info;
        attr.info.info = (uint64_t)(uintptr_t)&info;
        if (cj_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) == 0 && strncmp(info.name, name, sizeof info.name) == 0) {
            memset(&attr, 0, sizeof attr);
            attr.target_fd = (uint32_t)cgroup;
            attr.attach_bpf_fd = (uint32_t)prog;
            attr.attach_type = attach;
            if (cj_bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT) rc = -1;
        }
        close(prog);
    }
    return rc;
}

/* ---- shared by ports.c and address.c ---------------------------------------------------- */

struct cj_address_plan;
/* The address half of the bind program (address.c): starts with r6 = ctx and continues at
 * label `ports` (the port half, ports.c) with the address decided. Labels 1-39 are its. */
void cj_emit_bind_address(struct bpf_asm *a, const struct cj_address_plan *plan, int family, int ports);
/* Attaches every other address program to the open cgroup directory (address.c). */
int cj_address_programs_attach(int cgroup, const struct cj_address_plan *plan, int *failed_step);
/* Detaches them; 0, or -1 when one could not be detached. */
int cj_address_programs_detach(int cgroup);

#endif
