/* Memory: letting go of the pages an idle daemon no longer uses. */
#define _GNU_SOURCE
#include "cjail.h"

#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* Start-up (argument parsing, mounts, the Swift runtime's first lookups) touches megabytes of
 * jaild's code and read-mostly data that an idle supervisor or init never uses again, and
 * those pages stay in the process's resident set, charged to it as PSS. A page of a file
 * mapping that the process never wrote is still the page cache's page: MADV_DONTNEED only
 * unmaps it, the page stays cached (shared, reclaimable), and the next access faults it back
 * in unchanged. Pages the process wrote (relocations, variables, .bss) are private copies
 * that DONTNEED would throw away, so each page is checked in /proc/self/pagemap first and
 * only those still backed by the file are released. */

#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_FILE (1ULL << 61)

static long page_size;
static int pagemap = -1;
/* cj_release_data_file_pages: only the writable segments (data, RELRO), not the code. */
static int writable_only;

static void release_file_pages(uintptr_t start, uintptr_t end) {
    uint64_t entries[512];
    uintptr_t run = 0; /* start of the current run of releasable pages, 0 when none */
    for (uintptr_t address = start; address < end;) {
        size_t count = (size_t)((end - address) / (uintptr_t)page_size);
        if (count > 512) count = 512;
        off_t offset = (off_t)(address / (uintptr_t)page_size * sizeof(uint64_t));
        ssize_t got = pread(pagemap, entries, count * sizeof(uint64_t), offset);
        if (got <= 0) break;
        count = (size_t)got / sizeof(uint64_t);
        for (size_t i = 0; i < count; i++, address += (uintptr_t)page_size) {
            uint64_t entry = entries[i];
            int releasable = (entry & PAGEMAP_PRESENT) && (entry & PAGEMAP_FILE);
            if (releasable && run == 0) run = address;
            if (!releasable && run != 0) {
                madvise((void *)run, address - run, MADV_DONTNEED);
                run = 0;
            }
        }
    }
    if (run != 0) madvise((void *)run, end - run, MADV_DONTNEED);
}

static int release_object(struct dl_phdr_info *info, size_t size, void *unused) {
    (void)size;
    (void)unused;
    const char *name = info->dlpi_name;
    /* The main program has an empty name; the vDSO is not a file. */
    if (name != NULL && name[0] != '\0' && name[0] != '/') return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
        if (segment->p_type != PT_LOAD) continue;
        if (writable_only && !(segment->p_flags & PF_W)) continue;
        uintptr_t mask = ~(uintptr_t)(page_size - 1);
        uintptr_t start = (info->dlpi_addr + segment->p_vaddr) & mask;
        uintptr_t end = (info->dlpi_addr + segment->p_vaddr + segment->p_memsz + (uintptr_t)page_size - 1) & mask;
        release_file_pages(start, end);
    }
    return 0;
}

/* Kept open from now on. In root's user namespace, init's /proc/self files belong to host
 * root (init was exec'd on the host and is not dumpable), which root inside cannot open. */
int cj_keep_pagemap_open(void) {
    if (pagemap < 0) pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    return pagemap;
}

void cj_release_file_pages(void) {
    page_size = sysconf(_SC_PAGESIZE);
    int kept = pagemap >= 0;
    if (!kept) pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) return;
    dl_iterate_phdr(release_object, NULL);
    if (!kept) {
        close(pagemap);
        pagemap = -1;
    }
}

/* Before init forks a spare session helper (Init+Spare.swift): a fork copies every page-table
 * entry of a mapping that has private pages, so the data pages init merely read would be
 * mapped in the spare too, and stay there (charged to it alone) once init's idle release drops
 * init's own. The spare cannot tell them apart itself: its /proc/self/pagemap belongs to host
 * root, and init's open one shows init's pages. Code pages are not copied by a fork. */
void cj_release_data_file_pages(void) {
    writable_only = 1;
    cj_release_file_pages();
    writable_only = 0;
}
