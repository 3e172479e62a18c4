/* Memory: letting go of the pages an idle daemon no longer uses. */
#define _GNU_SOURCE
#include "cjail.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <poll.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Start-up (argument parsing, mounts, the Swift runtime's first lookups) touches megabytes of
 * jaild's code and read-mostly data that an idle supervisor or init never uses again, and
 * those pages stay in the process's resident set, charged to it as PSS. A page of a file
 * mapping that the process never wrote is still the page cache's page: MADV_DONTNEED only
 * unmaps it, the page stays cached (shared, reclaimable), and the next access faults it back
 * in unchanged. Pages the process wrote (relocations, variables, .bss) are private copies
 * that DONTNEED would throw away, so each page is checked in /proc/self/pagemap first and
 * only those still backed by the file are released.
 *
 * What runs after the release matters as much: every page fault on a file mapping maps up to
 * 16 cached pages around the faulting one (the kernel's fault-around, 64 KiB), and
 * MADV_RANDOM does not turn that off (measured on 6.18). Released, then back in the loop, the
 * ~11 pages the idle loop touches on its way to poll came back as 176 pages (704 KiB of RSS,
 * 416 KiB of PSS per process). So the release and the sleep are one call: the code from the
 * first madvise to the sleeping ppoll lives in its own section (`jail_idle_text`), which it
 * keeps mapped, and makes raw system calls (no libc page is touched); its data is on the
 * stack or in .bss, anonymous memory that is never released. */

#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_FILE (1ULL << 61)

#define IDLE_TEXT __attribute__((section("jail_idle_text"), noinline))
extern const char __start_jail_idle_text[];
extern const char __stop_jail_idle_text[];

/* All in .bss (anonymous), set before the release. */
static long page_size;
static int pagemap = -1;
struct segment {
    uintptr_t start, end;
    /* Not writable (code and read-only data): never written, so released whole, without
     * pagemap (release_range). RELRO is in the writable segment. */
    int code;
};
static struct segment segments[32];
/* The stack mapping's lowest address (find_stack_bottom), 0 when not known. */
static uintptr_t stack_bottom;
static int segment_count;
/* Which segments a release takes: all (the file's pages, found in pagemap), only the writable
 * ones (cj_release_data_file_pages), or only the code (cj_poll_releasing_code_pages). */
enum { ALL_SEGMENTS, WRITABLE_ONLY, CODE_ONLY };
static int which_segments = ALL_SEGMENTS;

/* A system call without libc, for the code that runs while jaild's file pages are unmapped. */
static inline __attribute__((always_inline)) long raw_syscall4(long number, long a1, long a2, long a3, long a4) {
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = a4;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(number), "D"(a1), "S"(a2), "d"(a3), "r"(r10) : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = number;
    register long x0 __asm__("x0") = a1;
    register long x1 __asm__("x1") = a2;
    register long x2 __asm__("x2") = a3;
    register long x3 __asm__("x3") = a4;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory", "cc");
    return x0;
#else
    /* Elsewhere libc's wrapper: correct, only some pages come back before the sleep. */
    long ret = syscall(number, a1, a2, a3, a4);
    return ret < 0 ? -errno : ret;
#endif
}

/* Unmaps the pages of [start, end) that are still the file's, except [keep_start, keep_end).
 * Code is never written, so all of a code segment is the file's: no pagemap needed (a forked
 * spare helper's pagemap descriptor is init's, inherited, and shows init's pages). And code is
 * released in one madvise per side of the kept range, not in runs of present pages: the kernel
 * frees a page table (4 KiB for 2 MiB of address space) only when one MADV_DONTNEED covers all
 * of its 2 MiB (CONFIG_PT_RECLAIM, measured on 6.18: runs split by a single page, or page by
 * page, leave every table in place). The code's 14 MiB held 6–7 empty tables per process. */
IDLE_TEXT static void release_range(uintptr_t start, uintptr_t end, int code, uintptr_t keep_start, uintptr_t keep_end) {
    if (code) {
        if (keep_start > start) raw_syscall4(SYS_madvise, (long)start, (long)((keep_start < end ? keep_start : end) - start), MADV_DONTNEED, 0);
        if (keep_end < end) raw_syscall4(SYS_madvise, (long)(keep_end > start ? keep_end : start), (long)(end - (keep_end > start ? keep_end : start)), MADV_DONTNEED, 0);
        return;
    }
    uint64_t entries[512];
    uintptr_t run = 0; /* start of the current run of releasable pages, 0 when none */
    uintptr_t page = (uintptr_t)page_size;
    for (uintptr_t address = start; address < end;) {
        size_t count = (size_t)((end - address) / page);
        if (count > 512) count = 512;
        long offset = (long)(address / page * sizeof(uint64_t));
        long got = raw_syscall4(SYS_pread64, pagemap, (long)entries, (long)(count * sizeof(uint64_t)), offset);
        if (got <= 0) break;
        count = (size_t)got / sizeof(uint64_t);
        for (size_t i = 0; i < count; i++, address += page) {
            uint64_t entry = entries[i];
            int releasable = (entry & PAGEMAP_PRESENT) && (entry & PAGEMAP_FILE)
                && !(address >= keep_start && address < keep_end);
            if (releasable && run == 0) run = address;
            if (!releasable && run != 0) {
                raw_syscall4(SYS_madvise, (long)run, (long)(address - run), MADV_DONTNEED, 0);
                run = 0;
            }
        }
    }
    if (run != 0) raw_syscall4(SYS_madvise, (long)run, (long)(end - run), MADV_DONTNEED, 0);
}

/* The release, then (if fds is not NULL) the sleep: returns ppoll's result or -errno. */
IDLE_TEXT static long release_then_poll(struct pollfd *fds, unsigned long nfds, struct timespec *timeout) {
    uintptr_t mask = ~(uintptr_t)(page_size - 1);
    uintptr_t keep_start = (uintptr_t)__start_jail_idle_text & mask;
    uintptr_t keep_end = ((uintptr_t)__stop_jail_idle_text + (uintptr_t)page_size - 1) & mask;
    for (int i = 0; i < segment_count; i++) release_range(segments[i].start, segments[i].end, segments[i].code, keep_start, keep_end);
    /* Last, the stack below this frame but the page the sleep goes on (release_range's 4 KiB of
     * pagemap entries were down there too). A failure leaves the pages resident: nothing to say. */
    uintptr_t below = ((uintptr_t)__builtin_frame_address(0) & mask) - (uintptr_t)page_size;
    if (stack_bottom != 0 && stack_bottom < below) raw_syscall4(SYS_madvise, (long)stack_bottom, (long)(below - stack_bottom), MADV_DONTNEED, 0);
    if (fds == NULL) return 0;
    return raw_syscall4(SYS_ppoll, (long)fds, (long)nfds, (long)timeout, 0);
}

static int collect_segment(struct dl_phdr_info *info, size_t size, void *unused) {
    (void)size;
    (void)unused;
    const char *name = info->dlpi_name;
    /* The main program has an empty name; the vDSO is not a file. */
    if (name != NULL && name[0] != '\0' && name[0] != '/') return 0;
    uintptr_t mask = ~(uintptr_t)(page_size - 1);
    for (int i = 0; i < info->dlpi_phnum && segment_count < 32; i++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
        if (segment->p_type != PT_LOAD) continue;
        if (which_segments == WRITABLE_ONLY && !(segment->p_flags & PF_W)) continue;
        if (which_segments == CODE_ONLY && (segment->p_flags & PF_W)) continue;
        uintptr_t start = (info->dlpi_addr + segment->p_vaddr) & mask;
        uintptr_t end = (info->dlpi_addr + segment->p_vaddr + segment->p_memsz + (uintptr_t)page_size - 1) & mask;
        int code = !(segment->p_flags & PF_W);
        segments[segment_count++] = (struct segment){start, end, code};
    }
    return 0;
}

/* Where the kept code (jail_idle_text) lies in memory. */
void cj_idle_text_range(uintptr_t *start, uintptr_t *end) {
    *start = (uintptr_t)__start_jail_idle_text;
    *end = (uintptr_t)__stop_jail_idle_text;
}

/* Where the kept code (jail_idle_text) lies in jaild's file: the text segment maps the file
 * at a fixed offset. 0 when it is not in a loaded segment. */
int cj_idle_text_file_range(uint64_t *start, uint64_t *end) {
    return cj_file_offset_of((uintptr_t)__start_jail_idle_text, start) && cj_file_offset_of((uintptr_t)__stop_jail_idle_text, end);
}

/* Kept open from now on. In root's user namespace, init's /proc/self files belong to host
 * root (init was exec'd on the host and is not dumpable), which root inside cannot open. */
int cj_keep_pagemap_open(void) {
    if (pagemap < 0) pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    return pagemap;
}

/* glibc's: an address at the top of the main thread's stack (inherited across fork and clone). */
extern void *__libc_stack_end;

/* The stack below the frame that sleeps: start-up's and the last turn's deeper calls left pages
 * resident under the idle loop's own frames (measured: 3–4 pages in each of a tenant's four
 * processes, whose idle frames are 23–46 KiB deep and stay). Below the stack pointer nothing is
 * live (no signal handler runs on it: signals come through a signalfd); released, a page used
 * again is a fresh zero page. The release is the last thing before the sleep, in
 * release_then_poll. The stack mapping's lower end is found here with mincore (ENOMEM below
 * it): the kernel keeps a guard gap there, so no other mapping is next to it. */
static void find_stack_bottom(void) {
    stack_bottom = 0;
    /* Only the main thread's stack has that gap (a thread's stack is next to another's, in a
     * test runner; jaild's processes are single-threaded), and only code on it is released from:
     * a clone child on a stack of its own in .bss (spawn.c) must never walk down into the data. */
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    uintptr_t top = (uintptr_t)__libc_stack_end;
    if (syscall(SYS_gettid) != getpid() || here >= top || top - here > (64u << 20)) return;
    uintptr_t page = (uintptr_t)page_size;
    uintptr_t bottom = here & ~(page - 1);
    unsigned char resident;
    /* At most the default stack limit's worth of probes. */
    for (int i = 0; i < 2048 && bottom > page; i++) {
        if (mincore((void *)(bottom - page), page, &resident) != 0) break;
        bottom -= page;
    }
    stack_bottom = bottom;
}

static long release(struct pollfd *fds, unsigned long nfds, int timeout_ms) {
    page_size = sysconf(_SC_PAGESIZE);
    /* The heap's free chunks, whole pages of them, go back to the kernel (glibc keeps them
     * otherwise; measured: each idle process's heap RSS 288 -> 112 KiB). Here, before the
     * code's release: what malloc_trim runs of libc is released with the rest. */
    (void)malloc_trim(0);
    find_stack_bottom();
    int kept = pagemap >= 0;
    if (!kept) pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    segment_count = 0;
    /* Without pagemap the writable segments' releases read nothing and release nothing. */
    dl_iterate_phdr(collect_segment, NULL);
    struct timespec timeout = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
    long result = release_then_poll(fds, nfds, timeout_ms < 0 ? NULL : &timeout);
    if (!kept && pagemap >= 0) {
        close(pagemap);
        pagemap = -1;
    }
    return result;
}

void cj_release_file_pages(void) {
    (void)release(NULL, 0, 0);
}

/* Before init forks a spare session helper (Init+Spare.swift): a fork copies every page-table
 * entry of a mapping that has private pages, so the data pages init merely read would be
 * mapped in the spare too, and stay there (charged to it alone) once init's idle release drops
 * init's own. The spare cannot tell them apart itself: its /proc/self/pagemap belongs to host
 * root, and init's open one shows init's pages. Code pages are not copied by a fork. */
void cj_release_data_file_pages(void) {
    which_segments = WRITABLE_ONLY;
    cj_release_file_pages();
    which_segments = ALL_SEGMENTS;
}

int cj_poll_releasing_file_pages(struct pollfd *fds, unsigned long nfds, int timeout_ms) {
    long result = release(fds, nfds, timeout_ms);
    if (result < 0) {
        errno = (int)-result;
        return -1;
    }
    return (int)result;
}

/* The spare session helper's wait (Session/SessionHelper+Spare.swift): the few calls between
 * init's fork and the wait map a megabyte or two of code (64 KiB around each fault), charged to
 * the idle spare; they go, then the sleep, as in the idle loop. */
int cj_poll_releasing_code_pages(struct pollfd *fds, unsigned long nfds, int timeout_ms) {
    which_segments = CODE_ONLY;
    long result = release(fds, nfds, timeout_ms);
    which_segments = ALL_SEGMENTS;
    if (result < 0) {
        errno = (int)-result;
        return -1;
    }
    return (int)result;
}
