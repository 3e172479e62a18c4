/* addrprobe: what a jail's process can do with addresses (test_address.py). Each command
 * prints one line "NAME: ok DETAIL" or "NAME: ERRNO-NAME" and exits 0; a server prints
 * "NAME: listening ADDR:PORT" once it accepts, then serves until killed.
 *   bind tcp|udp ADDR PORT            bind and say what was bound
 *   serve ADDR PORT TEXT              TCP server answering TEXT to every connection
 *   connect ADDR PORT                 TCP connect; say the local address and the first line read
 *   sendto ADDR PORT                  unconnected UDP sendto (autobound); say the local address
 *   udpwait DEST PORT MS              sendto DEST:PORT (autobinds), say the local port, then
 *                                     print every datagram received until one says "last"
 *                                     (at most MS milliseconds)
 *   ping ADDR                         an ICMP echo ("ping") socket, then a raw socket
 *   option                            setsockopt IP_FREEBIND, IP_TRANSPARENT, IPV6_FREEBIND
 *   bench N                           N TCP connects (with accept and close) to a listener of
 *                                     its own on the wildcard, then N UDP sendto: ns each */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *errno_name(int e) {
    switch (e) {
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENETUNREACH: return "ENETUNREACH";
    case EADDRINUSE: return "EADDRINUSE";
    case EINVAL: return "EINVAL";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return strerror(e);
    }
}

static int fail(const char *name) {
    printf("%s: %s\n", name, errno_name(errno));
    return 0;
}

/* ADDR (IPv4 or IPv6, v4-mapped included) and PORT to a sockaddr of the matching family. */
static int address(const char *text, int port, struct sockaddr_storage *out, socklen_t *size) {
    memset(out, 0, sizeof *out);
    struct sockaddr_in *four = (struct sockaddr_in *)out;
    struct sockaddr_in6 *six = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, text, &four->sin_addr) == 1) {
        four->sin_family = AF_INET;
        four->sin_port = htons((uint16_t)port);
        *size = sizeof *four;
        return AF_INET;
    }
    if (inet_pton(AF_INET6, text, &six->sin6_addr) == 1) {
        six->sin6_family = AF_INET6;
        six->sin6_port = htons((uint16_t)port);
        *size = sizeof *six;
        return AF_INET6;
    }
    fprintf(stderr, "not an address: %s\n", text);
    exit(2);
}

static const char *text_of(const struct sockaddr_storage *a) {
    static char out[INET6_ADDRSTRLEN + 8];
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *four = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &four->sin_addr, host, sizeof host);
        port = ntohs(four->sin_port);
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *six = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &six->sin6_addr, host, sizeof host);
        port = ntohs(six->sin6_port);
    }
    snprintf(out, sizeof out, "%s:%d", host, port);
    return out;
}

static const char *local_of(int fd) {
    struct sockaddr_storage a;
    socklen_t size = sizeof a;
    memset(&a, 0, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &size);
    return text_of(&a);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) { fprintf(stderr, "usage: addrprobe COMMAND ARGS\n"); return 2; }
    const char *name = argv[1];
    struct sockaddr_storage a;
    socklen_t size;
    if (strcmp(name, "bind") == 0 && argc == 5) {
        int family = address(argv[3], atoi(argv[4]), &a, &size);
        int fd = socket(family, strcmp(argv[2], "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (bind(fd, (struct sockaddr *)&a, size) < 0) return fail(name);
        printf("%s: ok %s\n", name, local_of(fd));
        return 0;
    }
    if (strcmp(name, "serve") == 0 && argc == 5) {
        int family = address(argv[2], atoi(argv[3]), &a, &size);
        int fd = socket(family, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a, size) < 0 || listen(fd, 16) < 0) return fail(name);
        printf("%s: listening %s\n", name, local_of(fd));
        for (;;) {
            int client = accept(fd, NULL, NULL);
            if (client < 0) continue;
            dprintf(client, "%s\n", argv[4]);
            close(client);
        }
    }
    if (strcmp(name, "connect") == 0 && argc == 4) {
        int family = address(argv[2], atoi(argv[3]), &a, &size);
        int fd = socket(family, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, size) < 0) return fail(name);
        char line[256] = "";
        ssize_t n = read(fd, line, sizeof line - 1);
        line[n > 0 ? n : 0] = 0;
        line[strcspn(line, "\n")] = 0;
        printf("%s: ok %s %s\n", name, local_of(fd), line);
        return 0;
    }
    if (strcmp(name, "sendto") == 0 && argc == 4) {
        int family = address(argv[2], atoi(argv[3]), &a, &size);
        int fd = socket(family, SOCK_DGRAM, 0);
        if (sendto(fd, "hello\n", 6, 0, (struct sockaddr *)&a, size) < 0) return fail(name);
        printf("%s: ok %s\n", name, local_of(fd));
        return 0;
    }
    if (strcmp(name, "udpwait") == 0 && argc == 5) {
        int family = address(argv[2], atoi(argv[3]), &a, &size);
        int fd = socket(family, SOCK_DGRAM, 0);
        if (sendto(fd, "hello\n", 6, 0, (struct sockaddr *)&a, size) < 0) return fail(name);
        printf("%s: bound %s\n", name, local_of(fd));
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        long budget = atol(argv[4]);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long left = budget - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
            if (left <= 0) break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, (int)left) <= 0) continue;
            char data[256];
            struct sockaddr_storage from;
            socklen_t from_size = sizeof from;
            ssize_t n = recvfrom(fd, data, sizeof data - 1, 0, (struct sockaddr *)&from, &from_size);
            if (n < 0) continue;
            data[n] = 0;
            data[strcspn(data, "\n")] = 0;
            printf("%s: received %s\n", name, data);
            if (strcmp(data, "last") == 0) break;
        }
        printf("%s: done\n", name);
        return 0;
    }
    if (strcmp(name, "ping") == 0 && argc == 3) {
        int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
        if (fd < 0) fail("ping-socket"); else printf("ping-socket: ok\n");
        fd = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
        if (fd < 0) fail("ping6-socket"); else printf("ping6-socket: ok\n");
        fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        if (fd < 0) fail("raw-socket"); else printf("raw-socket: ok\n");
        return 0;
    }
    if (strcmp(name, "option") == 0) {
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof one) < 0) fail("freebind"); else printf("freebind: ok\n");
        if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) < 0) fail("transparent"); else printf("transparent: ok\n");
        int six = socket(AF_INET6, SOCK_STREAM, 0);
        if (setsockopt(six, SOL_IPV6, 78 /* IPV6_FREEBIND */, &one, sizeof one) < 0) fail("freebind6"); else printf("freebind6: ok\n");
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) fail("reuseaddr"); else printf("reuseaddr: ok\n");
        return 0;
    }
    if (strcmp(name, "bench") == 0 && argc == 3) {
        long n = atol(argv[2]);
        address("0.0.0.0", 0, &a, &size);
        int listener = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(listener, (struct sockaddr *)&a, size) < 0 || listen(listener, 64) < 0) return fail(name);
        struct sockaddr_storage target;
        socklen_t target_size = sizeof target;
        getsockname(listener, (struct sockaddr *)&target, &target_size);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct linger reset = {.l_onoff = 1, .l_linger = 0};  /* no TIME_WAIT: the ports stay free */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            if (connect(fd, (struct sockaddr *)&target, target_size) < 0) return fail(name);
            int accepted = accept(listener, NULL, NULL);
            close(fd);
            close(accepted);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double tcp = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n;
        int udp = socket(AF_INET, SOCK_DGRAM, 0);
        int sink = socket(AF_INET, SOCK_DGRAM, 0);
        bind(sink, (struct sockaddr *)&a, size);
        target_size = sizeof target;
        getsockname(sink, (struct sockaddr *)&target, &target_size);
        char data[64];
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n; i++) {
            if (sendto(udp, "x", 1, 0, (struct sockaddr *)&target, target_size) < 0) return fail(name);
            recv(sink, data, sizeof data, 0);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double datagram = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n;
        printf("%s: ok tcp_connect_ns=%.0f udp_sendto_ns=%.0f target=%s\n", name, tcp, datagram, text_of(&target));
        return 0;
    }
    fprintf(stderr, "usage: addrprobe COMMAND ARGS\n");
    return 2;
}
