/* The namespace calls of the payload (jaild --init) and its session helpers, which Glibc's
 * Swift module does not export without _GNU_SOURCE. The payload's seccomp filter is in
 * harden.c, beside the jail's. */
#define _GNU_SOURCE
#include "cjail.h"

#include <sched.h>

int cj_unshare(int flags) { return unshare(flags); }

int cj_setns(int fd, int flags) { return setns(fd, flags); }
