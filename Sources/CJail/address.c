/* A jail's own addresses on the shared network stack (`--address`, `--loopback`), as
 * FreeBSD's jail IP without a network namespace: cgroup-BPF programs emitted here as raw
 * instructions (bpf_asm.h), like the port filter of ports.c, attached to the jail's cgroup.
 *
 * The decisions, per hook (docs/security.md "A jail's own addresses" lists every route):
 * - bind4/bind6 (the address half of ports.c's bind program): a wildcard becomes the jail's
 *   first address of the family; 127.0.0.1 becomes the jail's loopback; its own addresses
 *   pass; anything else fails with EADDRNOTAVAIL (FreeBSD's errno, through bpf_set_retval).
 * - connect4/connect6: 127.0.0.1 (and 0.0.0.0, which Linux connects to the local host)
 *   becomes the jail's loopback; other 127/8 addresses and ::1 are refused (ECONNREFUSED)
 *   unless `--allow-host-loopback` (then 127.0.0.1 stays the host's for a port where nothing
 *   of the jail's listens: lookup_own_listener); the source is set with bpf_bind() to the jail's address
 *   (or loopback); a socket that was bound already must have one of the jail's addresses.
 * - sendmsg4/sendmsg6 (unconnected UDP): the same destination rules, and the source
 *   (msg_src_ip4/6, which also overrides IP_PKTINFO) becomes the jail's address.
 * - recvmsg4/6 and getpeername4/6: the jail's loopback reads back as 127.0.0.1, so a resolver
 *   that checks who answered (glibc does) accepts its local server's reply.
 * - ingress/egress (cgroup_skb, beside the traffic counters): a packet of a jail socket whose
 *   own end is not one of the jail's addresses is dropped. This is the wall behind every hook:
 *   UDP sockets autobound to the wildcard by sendto, sockets whose bind came before the
 *   programs, any route not foreseen here.
 * - sock_create: raw sockets and ICMP "ping" sockets are refused (EPERM); ping sockets run
 *   no bind, connect or sendmsg hook.
 * - setsockopt: IP_FREEBIND, IP_TRANSPARENT, IPV6_FREEBIND, IPV6_TRANSPARENT are refused.
 * Addresses are kept as their bytes in memory (network order) and compared as 32-bit words. */
#define _GNU_SOURCE
#include "cjail.h"
#include "bpf_asm.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <unistd.h>

enum { PROGRAM_MAX = 1024 };

static uint32_t word(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    uint8_t bytes[4] = {a, b, c, d};
    uint32_t w;
    memcpy(&w, bytes, 4);
    return w;
}

static uint32_t v6_word(const uint8_t *address, int i) {
    uint32_t w;
    memcpy(&w, address + 4 * i, 4);
    return w;
}

static int has_addresses(const struct cj_address_plan *plan) { return plan->ipv4_count > 0 || plan->ipv6_count > 0; }

/* Where an IPv4 address in `reg` belongs. Labels get the cases; `scratch` is clobbered. */
struct v4_cases { int localhost, own_loopback, other_loopback, any, own, other; };

static void classify_v4(struct bpf_asm *a, const struct cj_address_plan *plan, int reg, int scratch, struct v4_cases c) {
    if (plan->loopback) {
        JEQ32(a, reg, word(127, 0, 0, 1), c.localhost);
        JEQ32(a, reg, plan->loopback, c.own_loopback);
        MOV(a, scratch, reg);
        asm_emit(a, INSN(BPF_ALU | BPF_AND | BPF_K, scratch, 0, 0, (int32_t)word(0xff, 0, 0, 0)));
        JEQ32(a, scratch, word(127, 0, 0, 0), c.other_loopback);
    }
    JEQ32(a, reg, 0, c.any);
    for (int i = 0; i < plan->ipv4_count; i++) JEQ32(a, reg, plan->ipv4[i], c.own);
    JA(a, c.other);
}

/* Jumps to `label` when r2..r5 hold the IPv6 address. */
static void jump_if_v6(struct bpf_asm *a, const uint8_t *address, int label, int next) {
    for (int i = 0; i < 4; i++) JNE32(a, BPF_REG_2 + i, v6_word(address, i), next);
    JA(a, label);
}

/* Loads four words at `offset` of the register `base` into r2..r5. */
static void load_v6(struct bpf_asm *a, int base, int offset) {
    for (int i = 0; i < 4; i++) LDXW(a, BPF_REG_2 + i, base, offset + 4 * i);
}

static void store_word(struct bpf_asm *a, int offset, uint32_t value) {
    MOVI(a, BPF_REG_1, (int32_t)value);
    STXW(a, BPF_REG_6, BPF_REG_1, offset);
}

static void store_v6(struct bpf_asm *a, int offset, const uint32_t words[4]) {
    for (int i = 0; i < 4; i++) store_word(a, offset + 4 * i, words[i]);
}

/* r2..r4 == 0, 0, ::ffff: → `mapped`; all four zero → `any`; ::1 → `localhost`; else `other`. */
static void classify_v6(struct bpf_asm *a, int mapped, int any, int localhost, int other) {
    JNE32(a, BPF_REG_2, 0, other);
    JNE32(a, BPF_REG_3, 0, other);
    JEQ32(a, BPF_REG_4, word(0, 0, 0xff, 0xff), mapped);
    JNE32(a, BPF_REG_4, 0, other);
    JEQ32(a, BPF_REG_5, 0, any);
    JEQ32(a, BPF_REG_5, word(0, 0, 0, 1), localhost);
    JA(a, other);
}

/* ---- bind: the address half; the port half follows at `ports` (ports.c) ---------------- */

/* Labels 1-39 are the address programs'; ports.c's port half uses 40 and up. Each address
 * compared gets its own "next" label, NEXT + i. Every block is emitted only where something
 * jumps to it: the verifier refuses unreachable instructions. */
enum { B_REWRITE_LO = 1, B_OWN_LO, B_REFUSE, B_ANY, B_OTHER, B_MAPPED, B_MAPPED_ANY, B_MAPPED_LO, B_MAPPED_OTHER,
       B_ANY6, B_LOCAL6, B_PURE6, NEXT = 20 };

/* The wildcard of an IPv4 bind (in user_ip4, or the last word of a v4-mapped user_ip6). */
static void bind_any_v4(struct bpf_asm *a, const struct cj_address_plan *plan, int offset, int ports) {
    if (plan->ipv4_count) {
        store_word(a, offset, plan->ipv4[0]);
        JA(a, ports);
    } else {
        JA(a, plan->ipv6_count ? B_REFUSE : ports);  /* an IPv6-only jail has no IPv4 address */
    }
}

void cj_emit_bind_address(struct bpf_asm *a, const struct cj_address_plan *plan, int family, int ports) {
    MOV(a, BPF_REG_6, BPF_REG_1);
    if (!plan || (!plan->loopback && !has_addresses(plan))) { JA(a, ports); return; }
    /* A loopback-only jail binds other addresses as before. */
    int other = has_addresses(plan) ? B_REFUSE : ports;
    if (family == AF_INET) {
        const int ip4 = offsetof(struct bpf_sock_addr, user_ip4);
        LDXW(a, BPF_REG_7, BPF_REG_6, ip4);
        classify_v4(a, plan, BPF_REG_7, BPF_REG_8, (struct v4_cases){B_REWRITE_LO, B_OWN_LO, B_REFUSE, B_ANY, ports, other});
        asm_label(a, B_ANY);
        bind_any_v4(a, plan, ip4, ports);
        if (plan->loopback) {
            asm_label(a, B_REWRITE_LO);
            store_word(a, ip4, plan->loopback);
            JA(a, B_OWN_LO);
        }
    } else {
        const int ip6 = offsetof(struct bpf_sock_addr, user_ip6);
        load_v6(a, BPF_REG_6, ip6);
        classify_v6(a, B_MAPPED, B_ANY6, B_LOCAL6, B_PURE6);
        asm_label(a, B_MAPPED);
        classify_v4(a, plan, BPF_REG_5, BPF_REG_7, (struct v4_cases){B_MAPPED_LO, B_OWN_LO, B_REFUSE, B_MAPPED_ANY, ports, other});
        asm_label(a, B_MAPPED_ANY);
        bind_any_v4(a, plan, ip6 + 12, ports);
        if (plan->loopback) {
            asm_label(a, B_MAPPED_LO);
            store_word(a, ip6 + 12, plan->loopback);
            JA(a, B_OWN_LO);
        }
        /* `::`: the jail's first IPv6 address; a jail with IPv4 only gets ::ffff:ITS-IPV4, so a
         * dual-stack socket (Go's and Java's default listener) serves IPv4 on the jail's address
         * (a socket with IPV6_V6ONLY then fails with EINVAL: it asked for IPv6 only). */
        asm_label(a, B_ANY6);
        if (plan->ipv6_count) {
            const uint32_t words[4] = {v6_word(plan->ipv6[0], 0), v6_word(plan->ipv6[0], 1), v6_word(plan->ipv6[0], 2),
                                       v6_word(plan->ipv6[0], 3)};
            store_v6(a, ip6, words);
        } else if (plan->ipv4_count) {
            const uint32_t words[4] = {0, 0, word(0, 0, 0xff, 0xff), plan->ipv4[0]};
            store_v6(a, ip6, words);
        }
        JA(a, ports);
        /* ::1 is the host's one IPv6 loopback address (IPv6 has no 127/8 to give each jail
         * its own): refused, so a client falls back to 127.0.0.1, which is the jail's own. */
        asm_label(a, B_LOCAL6);
        JA(a, B_REFUSE);
        asm_label(a, B_PURE6);
        for (int i = 0; i < plan->ipv6_count; i++) {
            jump_if_v6(a, plan->ipv6[i], ports, NEXT + i);
            asm_label(a, NEXT + i);
        }
        JA(a, other);
    }
    if (plan->loopback) {
        asm_label(a, B_OWN_LO);
        RET(a, 1);  /* the jail's own loopback: every port is its own, no --ports list applies */
    }
    asm_label(a, B_REFUSE);
    asm_fail_with(a, EADDRNOTAVAIL);
}

/* ---- connect and sendmsg ------------------------------------------------------------------ */

enum { C_LOCALHOST = 1, C_OWN_LO, C_OTHER_LO, C_SOURCE_ADDR, C_CHECK, C_ALLOW, C_REFUSED, C_MAPPED, C_LOCAL6, C_PURE6,
       C_NOTAVAIL, C_REWRITE_LO, C_HOST_LO, L_UDP, L_LOOKED, L_NOT_FOUND };

/* With --allow-host-loopback, 127.0.0.1 is the jail's own loopback where the jail listens on
 * that port (a socket bound there, bpf_sk_lookup_tcp/udp by the destination port), and the
 * host's 127.0.0.1 where it does not: jumps to `own` or falls through. */
static void lookup_own_listener(struct bpf_asm *a, const struct cj_address_plan *plan, int own) {
    STDW(a, BPF_REG_10, -48, 0);
    STW(a, BPF_REG_10, -40, 0);
    STW(a, BPF_REG_10, -44, plan->loopback);                                          /* daddr */
    LDXW(a, BPF_REG_2, BPF_REG_6, offsetof(struct bpf_sock_addr, user_port));
    asm_emit(a, INSN(BPF_STX | BPF_MEM | BPF_H, BPF_REG_10, BPF_REG_2, -38, 0));      /* dport, network order */
    LDXW(a, BPF_REG_7, BPF_REG_6, offsetof(struct bpf_sock_addr, protocol));
    MOV(a, BPF_REG_1, BPF_REG_6);
    MOV(a, BPF_REG_2, BPF_REG_10);
    asm_emit(a, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -48));
    MOVI(a, BPF_REG_3, 12);                                                          /* sizeof tuple.ipv4 */
    MOVI(a, BPF_REG_4, -1);                                                          /* BPF_F_CURRENT_NETNS */
    MOVI(a, BPF_REG_5, 0);
    JEQ(a, BPF_REG_7, IPPROTO_UDP, L_UDP);
    CALL(a, BPF_FUNC_sk_lookup_tcp);
    JA(a, L_LOOKED);
    asm_label(a, L_UDP);
    CALL(a, BPF_FUNC_sk_lookup_udp);
    asm_label(a, L_LOOKED);
    JEQ(a, BPF_REG_0, 0, L_NOT_FOUND);
    MOV(a, BPF_REG_1, BPF_REG_0);
    CALL(a, BPF_FUNC_sk_release);
    JA(a, own);
    asm_label(a, L_NOT_FOUND);
}

/* bpf_bind(ctx, the socket's family's sockaddr of `v4` (or of `v6` when v4 is 0), 0 port). */
static void bind_source(struct bpf_asm *a, int family, uint32_t v4, const uint8_t *v6) {
    if (family == AF_INET) {
        STDW(a, BPF_REG_10, -16, 0);
        STDW(a, BPF_REG_10, -8, 0);
        STH(a, BPF_REG_10, -16, AF_INET);
        STW(a, BPF_REG_10, -12, v4);
        MOV(a, BPF_REG_1, BPF_REG_6);
        MOV(a, BPF_REG_2, BPF_REG_10);
        asm_emit(a, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -16));
        MOVI(a, BPF_REG_3, sizeof(struct sockaddr_in));
    } else {
        for (int off = -32; off < 0; off += 8) STDW(a, BPF_REG_10, off, 0);
        STH(a, BPF_REG_10, -32, AF_INET6);
        const uint32_t mapped[4] = {0, 0, word(0, 0, 0xff, 0xff), v4};
        for (int i = 0; i < 4; i++) STW(a, BPF_REG_10, -24 + 4 * i, v4 ? mapped[i] : v6_word(v6, i));
        MOV(a, BPF_REG_1, BPF_REG_6);
        MOV(a, BPF_REG_2, BPF_REG_10);
        asm_emit(a, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -32));
        MOVI(a, BPF_REG_3, sizeof(struct sockaddr_in6));
    }
    CALL(a, BPF_FUNC_bind);
}

/* After a bpf_bind that failed (the socket was bound already): allow only when the socket's
 * own address is one of the jail's. */
static void check_source(struct bpf_asm *a, const struct cj_address_plan *plan, int family, int allow, int refuse) {
    LDXDW(a, BPF_REG_1, BPF_REG_6, offsetof(struct bpf_sock_addr, sk));
    if (family == AF_INET) {
        LDXW(a, BPF_REG_2, BPF_REG_1, offsetof(struct bpf_sock, src_ip4));
        for (int i = 0; i < plan->ipv4_count; i++) JEQ32(a, BPF_REG_2, plan->ipv4[i], allow);
        if (plan->loopback) JEQ32(a, BPF_REG_2, plan->loopback, allow);
        JA(a, refuse);
        return;
    }
    load_v6(a, BPF_REG_1, offsetof(struct bpf_sock, src_ip6));
    int next = NEXT;
    for (int i = 0; i < plan->ipv6_count; i++, next++) {
        jump_if_v6(a, plan->ipv6[i], allow, next);
        asm_label(a, next);
    }
    for (int i = 0; i <= plan->ipv4_count; i++) {
        uint32_t v4 = i < plan->ipv4_count ? plan->ipv4[i] : plan->loopback;
        if (!v4) continue;
        uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(mapped + 12, &v4, 4);
        jump_if_v6(a, mapped, allow, next);
        asm_label(a, next++);
    }
    JA(a, refuse);
}

/* connect4/connect6: the destination's rules, then the source. */
static int emit_connect(struct bpf_insn *buffer, const struct cj_address_plan *plan, int family) {
    struct bpf_asm a_;
    struct bpf_asm *a = &a_;
    asm_begin(a, buffer, PROGRAM_MAX);
    MOV(a, BPF_REG_6, BPF_REG_1);
    /* 0.0.0.0 connects to the local host, as 127.0.0.1 does. */
    struct v4_cases cases = {C_LOCALHOST, C_OWN_LO, C_OTHER_LO, plan->loopback ? C_LOCALHOST : C_SOURCE_ADDR, C_SOURCE_ADDR,
                             C_SOURCE_ADDR};
    int rewrite;
    if (family == AF_INET) {
        rewrite = offsetof(struct bpf_sock_addr, user_ip4);
        LDXW(a, BPF_REG_7, BPF_REG_6, rewrite);
        classify_v4(a, plan, BPF_REG_7, BPF_REG_8, cases);
    } else {
        const int ip6 = offsetof(struct bpf_sock_addr, user_ip6);
        rewrite = ip6 + 12;
        load_v6(a, BPF_REG_6, ip6);
        classify_v6(a, C_MAPPED, C_LOCAL6, C_LOCAL6, C_PURE6);
        asm_label(a, C_LOCAL6);
        JA(a, C_REFUSED);
        asm_label(a, C_PURE6);
        if (plan->ipv6_count) {
            bind_source(a, AF_INET6, 0, plan->ipv6[0]);
            JA(a, C_CHECK);
        } else {
            /* No IPv6 address of the jail's: ENETUNREACH, and the client tries IPv4. */
            if (plan->ipv4_count) asm_fail_with(a, ENETUNREACH); else JA(a, C_ALLOW);
        }
        asm_label(a, C_MAPPED);
        classify_v4(a, plan, BPF_REG_5, BPF_REG_7, cases);
    }
    if (plan->loopback) {
        asm_label(a, C_LOCALHOST);
        if (plan->allow_host_loopback) {
            lookup_own_listener(a, plan, C_REWRITE_LO);
            JA(a, C_HOST_LO);  /* the host's 127.0.0.1, from the jail's loopback */
        }
        asm_label(a, C_REWRITE_LO);
        store_word(a, rewrite, plan->loopback);
        asm_label(a, C_OWN_LO);
        bind_source(a, family, plan->loopback, NULL);
        JA(a, C_CHECK);
        asm_label(a, C_OTHER_LO);
        if (plan->allow_host_loopback) {
            asm_label(a, C_HOST_LO);
            bind_source(a, family, plan->loopback, NULL);
            JA(a, C_CHECK);
        } else {
            JA(a, C_REFUSED);
        }
    }
    asm_label(a, C_SOURCE_ADDR);
    if (plan->ipv4_count) {
        bind_source(a, family, plan->ipv4[0], NULL);
        JA(a, C_CHECK);
    } else if (plan->ipv6_count) {
        asm_fail_with(a, ENETUNREACH);
    } else {
        JA(a, C_ALLOW);
    }
    if (has_addresses(plan) || plan->loopback) {
        asm_label(a, C_CHECK);
        JEQ(a, BPF_REG_0, 0, C_ALLOW);
        check_source(a, plan, family, C_ALLOW, C_NOTAVAIL);
        asm_label(a, C_NOTAVAIL);
        asm_fail_with(a, EADDRNOTAVAIL);
    }
    if ((plan->loopback && !plan->allow_host_loopback) || family == AF_INET6) {
        asm_label(a, C_REFUSED);
        asm_fail_with(a, ECONNREFUSED);
    }
    asm_label(a, C_ALLOW);
    RET(a, 1);
    return asm_finish(a);
}

/* sendmsg4/sendmsg6 (UDP without a connected peer): the destination's rules; the source
 * (msg_src_ip4/6) becomes the jail's address unless it is one already. The kernel hands an
 * IPv6 socket's v4-mapped destination to the IPv4 path, so sendmsg4 decides those too. */
static int emit_sendmsg(struct bpf_insn *buffer, const struct cj_address_plan *plan, int family) {
    struct bpf_asm a_;
    struct bpf_asm *a = &a_;
    asm_begin(a, buffer, PROGRAM_MAX);
    MOV(a, BPF_REG_6, BPF_REG_1);
    if (family == AF_INET) {
        const int dst = offsetof(struct bpf_sock_addr, user_ip4), src = offsetof(struct bpf_sock_addr, msg_src_ip4);
        LDXW(a, BPF_REG_7, BPF_REG_6, dst);
        classify_v4(a, plan, BPF_REG_7, BPF_REG_8,
                    (struct v4_cases){C_LOCALHOST, C_OWN_LO, C_OTHER_LO, plan->loopback ? C_LOCALHOST : C_SOURCE_ADDR,
                                      C_SOURCE_ADDR, C_SOURCE_ADDR});
        if (plan->loopback) {
            asm_label(a, C_LOCALHOST);
            if (plan->allow_host_loopback) {
                lookup_own_listener(a, plan, C_REWRITE_LO);
                JA(a, C_OWN_LO);  /* the host's 127.0.0.1, from the jail's loopback */
            }
            asm_label(a, C_REWRITE_LO);
            store_word(a, dst, plan->loopback);
            asm_label(a, C_OWN_LO);
            store_word(a, src, plan->loopback);
            RET(a, 1);
            asm_label(a, C_OTHER_LO);
            if (plan->allow_host_loopback) JA(a, C_OWN_LO); else asm_fail_with(a, ECONNREFUSED);
        }
        asm_label(a, C_SOURCE_ADDR);
        if (plan->ipv4_count) {
            LDXW(a, BPF_REG_2, BPF_REG_6, src);
            for (int i = 0; i < plan->ipv4_count; i++) JEQ32(a, BPF_REG_2, plan->ipv4[i], C_ALLOW);
            store_word(a, src, plan->ipv4[0]);
            JA(a, C_ALLOW);
        } else if (plan->ipv6_count) {
            asm_fail_with(a, ENETUNREACH);
        } else {
            JA(a, C_ALLOW);
        }
    } else {
        const int dst = offsetof(struct bpf_sock_addr, user_ip6), src = offsetof(struct bpf_sock_addr, msg_src_ip6);
        load_v6(a, BPF_REG_6, dst);
        classify_v6(a, C_ALLOW, C_LOCAL6, C_LOCAL6, C_PURE6);
        asm_label(a, C_LOCAL6);
        asm_fail_with(a, ECONNREFUSED);
        asm_label(a, C_PURE6);
        if (plan->ipv6_count) {
            load_v6(a, BPF_REG_6, src);
            for (int i = 0; i < plan->ipv6_count; i++) {
                jump_if_v6(a, plan->ipv6[i], C_ALLOW, NEXT + i);
                asm_label(a, NEXT + i);
            }
            const uint32_t words[4] = {v6_word(plan->ipv6[0], 0), v6_word(plan->ipv6[0], 1), v6_word(plan->ipv6[0], 2),
                                       v6_word(plan->ipv6[0], 3)};
            store_v6(a, src, words);
            JA(a, C_ALLOW);
        } else if (plan->ipv4_count) {
            asm_fail_with(a, ENETUNREACH);
        } else {
            JA(a, C_ALLOW);
        }
    }
    asm_label(a, C_ALLOW);
    RET(a, 1);
    return asm_finish(a);
}

/* recvmsg4/6, getpeername4/6: the jail's loopback reads back as 127.0.0.1 (plain or v4-mapped). */
static int emit_peer_name(struct bpf_insn *buffer, const struct cj_address_plan *plan, int family) {
    enum { END = 1 };
    struct bpf_asm a_;
    struct bpf_asm *a = &a_;
    asm_begin(a, buffer, PROGRAM_MAX);
    MOV(a, BPF_REG_6, BPF_REG_1);
    int offset = offsetof(struct bpf_sock_addr, user_ip4);
    if (family == AF_INET) {
        LDXW(a, BPF_REG_5, BPF_REG_6, offset);
    } else {
        offset = offsetof(struct bpf_sock_addr, user_ip6);
        load_v6(a, BPF_REG_6, offset);
        JNE32(a, BPF_REG_2, 0, END);
        JNE32(a, BPF_REG_3, 0, END);
        JNE32(a, BPF_REG_4, word(0, 0, 0xff, 0xff), END);
        offset += 12;
    }
    JNE32(a, BPF_REG_5, plan->loopback, END);
    store_word(a, offset, word(127, 0, 0, 1));
    asm_label(a, END);
    RET(a, 1);
    return asm_finish(a);
}

/* ---- the packet wall: cgroup_skb ingress (destination) and egress (source) ----------------- */

static int emit_packet_wall(struct bpf_insn *buffer, const struct cj_address_plan *plan, int ingress) {
    enum { PASS = 1, DROP, V4, V6 };
    struct bpf_asm a_;
    struct bpf_asm *a = &a_;
    asm_begin(a, buffer, PROGRAM_MAX);
    MOV(a, BPF_REG_6, BPF_REG_1);
    /* The IPv4 header (20 bytes) onto the stack at fp-40; the data of a cgroup_skb program
     * starts at the network header. */
    MOV(a, BPF_REG_1, BPF_REG_6);
    MOVI(a, BPF_REG_2, 0);
    MOV(a, BPF_REG_3, BPF_REG_10);
    asm_emit(a, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -40));
    MOVI(a, BPF_REG_4, 20);
    CALL(a, BPF_FUNC_skb_load_bytes);
    JNE(a, BPF_REG_0, 0, DROP);
    LDXB(a, BPF_REG_7, BPF_REG_10, -40);
    asm_emit(a, INSN(BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_7, 0, 0, 4));
    JEQ(a, BPF_REG_7, 4, V4);
    JEQ(a, BPF_REG_7, 6, V6);
    JA(a, DROP);
    asm_label(a, V4);
    LDXW(a, BPF_REG_7, BPF_REG_10, -40 + (ingress ? 16 : 12));
    if (plan->loopback) JEQ32(a, BPF_REG_7, plan->loopback, PASS);
    for (int i = 0; i < plan->ipv4_count; i++) JEQ32(a, BPF_REG_7, plan->ipv4[i], PASS);
    if (!has_addresses(plan)) {
        /* A loopback-only jail: every address but the rest of 127/8. */
        MOV(a, BPF_REG_8, BPF_REG_7);
        asm_emit(a, INSN(BPF_ALU | BPF_AND | BPF_K, BPF_REG_8, 0, 0, (int32_t)word(0xff, 0, 0, 0)));
        JNE32(a, BPF_REG_8, word(127, 0, 0, 0), PASS);
    }
    JA(a, DROP);
    asm_label(a, V6);
    if (has_addresses(plan) && !plan->ipv6_count) {
        JA(a, DROP);
    } else {
        MOV(a, BPF_REG_1, BPF_REG_6);
        MOVI(a, BPF_REG_2, 0);
        MOV(a, BPF_REG_3, BPF_REG_10);
        asm_emit(a, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -40));
        MOVI(a, BPF_REG_4, 40);
        CALL(a, BPF_FUNC_skb_load_bytes);
        JNE(a, BPF_REG_0, 0, DROP);
        load_v6(a, BPF_REG_10, -40 + (ingress ? 24 : 8));
        for (int i = 0; i < plan->ipv6_count; i++) {
            jump_if_v6(a, plan->ipv6[i], PASS, NEXT + i);
            asm_label(a, NEXT + i);
        }
        if (!has_addresses(plan)) {
            static const uint8_t localhost6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
            jump_if_v6(a, localhost6, DROP, NEXT + 8);
            asm_label(a, NEXT + 8);
            JA(a, PASS);
        } else {
            JA(a, DROP);
        }
    }
    asm_label(a, PASS);
    RET(a, 1);
    asm_label(a, DROP);
    RET(a, 0);
    return asm_finish(a);
}

/* ---- sockets and options with no hook above ------------------------------------------------ */

/* sock_create: raw sockets and ICMP echo ("ping") sockets are refused with EPERM. */
static int emit_socket_filter(struct bpf_insn *buffer) {
    enum { REFUSE = 1, DATAGRAM, ALLOW };
    struct bpf_asm a_;
    struct bpf_asm *a = &a_;
    asm_begin(a, buffer, PROGRAM_MAX);
    LDXW(a, BPF_REG_2, BPF_REG_1, offsetof(struct bpf_sock, type));
    LDXW(a, BPF_REG_3, BPF_REG_1, offsetof(struct bpf_sock, protocol));
    JEQ(a, BPF_REG_2, SOCK_RAW, REFUSE);
    JEQ(a, BPF_REG_2, SOCK_DGRAM, DATAGRAM);
    JA(a, ALLOW);
    asm_label(a, DATAGRAM);
    JEQ(a, BPF_REG_3, IPPROTO_ICMP, REFUSE);
    JEQ(a, BPF_REG_3, IPPROTO_ICMPV6, REFUSE);
    asm_label(a, ALLOW);
    RET(a, 1);
    asm_label(a, REFUSE);
    RET(a, 0);
    return asm_finish(a);
}

/* setsockopt: the options that let a socket bind or send from an address the host does not
 * have, or intercept another's (IP_FREEBIND 15, IP_TRANSPARENT 19, IPV6_TRANSPARENT 75,
 * IPV6_FREEBIND 78), fail with EPERM. Everything else passes untouched. */
static int emit_option_filter(struct bpf_insn *buffer) {
    enum { REFUSE = 1, IPV6, ALLOW };
    struct bpf_asm a_;
    struct bpf_asm *a = &a_;
    asm_begin(a, buffer, PROGRAM_MAX);
    LDXW(a, BPF_REG_2, BPF_REG_1, offsetof(struct bpf_sockopt, level));
    LDXW(a, BPF_REG_3, BPF_REG_1, offsetof(struct bpf_sockopt, optname));
    JEQ32(a, BPF_REG_2, SOL_IPV6, IPV6);
    JNE32(a, BPF_REG_2, SOL_IP, ALLOW);
    JEQ32(a, BPF_REG_3, 15, REFUSE);
    JEQ32(a, BPF_REG_3, 19, REFUSE);
    JA(a, ALLOW);
    asm_label(a, IPV6);
    JEQ32(a, BPF_REG_3, 75, REFUSE);
    JEQ32(a, BPF_REG_3, 78, REFUSE);
    asm_label(a, ALLOW);
    RET(a, 1);
    asm_label(a, REFUSE);
    RET(a, 0);
    return asm_finish(a);
}

/* ---- attach and detach ---------------------------------------------------------------------- */

struct address_hook {
    enum bpf_prog_type type;
    enum bpf_attach_type attach;
    const char *name;
    int family;
    int kind;  /* what to emit */
};
enum { CONNECT, SENDMSG, PEER_NAME, INGRESS, EGRESS, SOCKET, OPTION };

static const struct address_hook hooks[] = {
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, "jail_addr_cn4", AF_INET, CONNECT},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, "jail_addr_cn6", AF_INET6, CONNECT},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG, "jail_addr_snd4", AF_INET, SENDMSG},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG, "jail_addr_snd6", AF_INET6, SENDMSG},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_RECVMSG, "jail_addr_rcv4", AF_INET, PEER_NAME},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_RECVMSG, "jail_addr_rcv6", AF_INET6, PEER_NAME},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME, "jail_addr_peer4", AF_INET, PEER_NAME},
    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_GETPEERNAME, "jail_addr_peer6", AF_INET6, PEER_NAME},
    {BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS, "jail_addr_in", 0, INGRESS},
    {BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, "jail_addr_out", 0, EGRESS},
    {BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, "jail_addr_sock", 0, SOCKET},
    {BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT, "jail_addr_opt", 0, OPTION},
};
enum { HOOKS = sizeof hooks / sizeof hooks[0] };

static int shared_hook(enum bpf_attach_type attach) {
    return attach == BPF_CGROUP_INET_INGRESS || attach == BPF_CGROUP_INET_EGRESS;
}

int cj_address_programs_attach(int cgroup, const struct cj_address_plan *plan, int *failed_step) {
    static struct bpf_insn program[PROGRAM_MAX];
    for (int i = 0; i < HOOKS; i++) {
        const struct address_hook *hook = &hooks[i];
        if (hook->kind == PEER_NAME && !plan->loopback) continue;  /* nothing to translate back */
        int count = -1;
        switch (hook->kind) {
        case CONNECT: count = emit_connect(program, plan, hook->family); break;
        case SENDMSG: count = emit_sendmsg(program, plan, hook->family); break;
        case PEER_NAME: count = emit_peer_name(program, plan, hook->family); break;
        case INGRESS: count = emit_packet_wall(program, plan, 1); break;
        case EGRESS: count = emit_packet_wall(program, plan, 0); break;
        case SOCKET: count = emit_socket_filter(program); break;
        case OPTION: count = emit_option_filter(program); break;
        }
        if (count < 0) { *failed_step = 2; return -1; }
        /* The packet hooks are shared with the traffic counters (BPF_F_ALLOW_MULTI there too:
         * the kernel wants one mode per hook and cgroup). */
        uint32_t flags = shared_hook(hook->attach) ? BPF_F_ALLOW_MULTI : 0;
        if (cj_bpf_attach_program(cgroup, program, count, hook->type, hook->attach, hook->name, flags, failed_step) < 0)
            return -1;
    }
    return 0;
}

int cj_address_programs_detach(int cgroup) {
    int rc = 0;
    for (int i = 0; i < HOOKS; i++) {
        if (shared_hook(hooks[i].attach)) {
            if (cj_bpf_detach_named(cgroup, hooks[i].attach, hooks[i].name) < 0) rc = -1;
            continue;
        }
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.target_fd = (uint32_t)cgroup;
        attr.attach_type = hooks[i].attach;
        if (cj_bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT) rc = -1;
    }
    return rc;
}
