/* The spare session helper's wait (JailDaemon/Session/SessionHelper+Spare.swift). */
#define _GNU_SOURCE
#include "cjail.h"

#include <link.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static int release_code(struct dl_phdr_info *info, size_t size, void *unused) {
    (void)size;
    (void)unused;
    /* The main program has an empty name; everything else (the vDSO) is left alone. */
    if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0') return 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
        if (segment->p_type != PT_LOAD || (segment->p_flags & PF_W)) continue;
        uintptr_t start = (info->dlpi_addr + segment->p_vaddr) & ~(page - 1);
        uintptr_t end = (info->dlpi_addr + segment->p_vaddr + segment->p_memsz + page - 1) & ~(page - 1);
        madvise((void *)start, end - start, MADV_DONTNEED);
    }
    return 1;
}

/* Each fault in jaild's code maps the 64 KiB around it, so the few calls between init's fork
 * and this wait leave a megabyte or two of code mapped in the spare, charged to the idle jail.
 * They are unmapped here (the pages stay in the page cache; a session maps what it runs with
 * minor faults), then the wait begins from C, so little is mapped again before it blocks.
 * Only segments that are never written: no page of the process's own is lost. */
ssize_t cj_spare_wait(int channel, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    dl_iterate_phdr(release_code, NULL);
    return cj_recv_with_fds(channel, buf, len, fds, maxfds, nfds);
}
