/* jaild's own binary never reachable for writing from a jail (CVE-2019-5736, runc's
 * "cloned_binary"). init and the session helpers are forks of the supervisor, so their
 * /proc/PID/exe is the supervisor's executable; a session whose shell is /proc/self/exe runs
 * it again as the jail user, dumpable, and root inside could fchown or chmod the host's file
 * through /proc/PID/exe. So a root jaild re-executes itself at start from a read-only,
 * detached bind mount of its own file: the executable is the same inode (no copy, no memory
 * cost), but every path to it from the jail goes through that mount, where writes, chown,
 * chmod, truncate and xattrs fail with EROFS, and nobody in the jail can remount it (no
 * CAP_SYS_ADMIN, mounts denied by seccomp).
 *
 * Cheaper than the exec (cj_remap_read_only, tried first): the running process maps each of
 * its file's mappings again from that mount (the pages it wrote copied over) and makes the
 * mount's file its /proc/self/exe with prctl(PR_SET_MM), which the kernel allows once no
 * mapping of the old path is left. The result is the one the exec gives: exe and every file
 * mapping on the read-only mount. The exec stays as the fallback.
 *
 * Both can take a copy of jaild's file instead of the file itself (ExecutableCache.swift: the
 * same bytes, cached in 2 MiB folios), whose read-only mount then serves the same purpose. */
#define _GNU_SOURCE
#include "cjail.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mount_api.h"

int cj_executable_is_read_only(void) {
    struct statvfs info;
    if (statvfs("/proc/self/exe", &info) < 0) return -1;
    return (info.f_flag & ST_RDONLY) != 0;
}

/* A detached, read-only bind mount of `image` (a verified copy of jaild's file, see
 * cj_build_id), or of jaild's own file when `image` is -1; the magic link /proc/self/exe is
 * followed: the tree is a bind mount of the executable file itself. */
static int open_read_only_self(int image) {
    int tree = image >= 0
        ? (int)syscall(SYS_open_tree, image, "", OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH)
        : (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/self/exe", OPEN_TREE_CLONE | O_CLOEXEC);
    if (tree < 0) return -1;
    struct jail_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        int saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    return tree;
}

/* The running program's headers (AT_PHDR) and where it is loaded: a position-independent
 * program at an offset, which PT_PHDR tells; a static one without PT_PHDR where its headers say. */
static const ElfW(Phdr) *program_headers(size_t *count, uintptr_t *bias) {
    const ElfW(Phdr) *headers = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    *count = headers == NULL ? 0 : (size_t)getauxval(AT_PHNUM);
    *bias = 0;
    for (size_t i = 0; i < *count; i++) {
        if (headers[i].p_type == PT_PHDR) *bias = (uintptr_t)headers - (uintptr_t)headers[i].p_vaddr;
    }
    return headers;
}

int cj_file_offset_of(uintptr_t address, uint64_t *offset) {
    size_t count;
    uintptr_t bias;
    const ElfW(Phdr) *headers = program_headers(&count, &bias);
    for (size_t i = 0; i < count; i++) {
        uintptr_t base = bias + (uintptr_t)headers[i].p_vaddr;
        if (headers[i].p_type == PT_LOAD && address >= base && address <= base + headers[i].p_filesz) {
            *offset = (uint64_t)headers[i].p_offset + (uint64_t)(address - base);
            return 1;
        }
    }
    return 0;
}

size_t cj_build_id(unsigned char *id, size_t capacity, uint64_t *file_offset) {
    size_t count;
    uintptr_t bias;
    const ElfW(Phdr) *headers = program_headers(&count, &bias);
    for (size_t i = 0; i < count; i++) {
        if (headers[i].p_type != PT_NOTE) continue;
        const unsigned char *start = (const unsigned char *)(bias + (uintptr_t)headers[i].p_vaddr);
        const unsigned char *end = start + headers[i].p_memsz;
        size_t align = headers[i].p_align == 8 ? 8 : 4;
        for (const unsigned char *at = start; at + sizeof(ElfW(Nhdr)) <= end;) {
            const ElfW(Nhdr) *note = (const ElfW(Nhdr) *)(const void *)at;
            const unsigned char *name = at + sizeof *note;
            const unsigned char *desc = name + ((note->n_namesz + align - 1) & ~(align - 1));
            if (desc + note->n_descsz > end) break;
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                if (note->n_descsz == 0 || note->n_descsz > capacity) return 0;
                memcpy(id, desc, note->n_descsz);
                *file_offset = (uint64_t)headers[i].p_offset + (uint64_t)(desc - start);
                return note->n_descsz;
            }
            at = desc + ((note->n_descsz + align - 1) & ~(align - 1));
        }
    }
    return 0;
}

#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_SWAPPED (1ULL << 62)
#define PAGEMAP_FILE (1ULL << 61)

#define HUGE_PAGE ((uintptr_t)2 << 20)

/* The 2 MiB window(s) of [start, end) that hold the code an idle process keeps mapped
 * (CJail/memory.c); low == high when none. */
static void kept_window(uintptr_t start, uintptr_t end, uintptr_t *low, uintptr_t *high) {
    uintptr_t kept_start = 0, kept_end = 0;
    cj_idle_text_range(&kept_start, &kept_end);
    *low = kept_start & ~(HUGE_PAGE - 1);
    *high = (kept_end + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    if (*low < start) *low = start;
    if (*high > end) *high = end;
    if (kept_end <= kept_start || *low >= *high) *low = *high = 0;
}

/* How jaild's code is faulted in; the advice is inherited by every fork. A 2 MiB window of
 * code not in memory is read whole into one 2 MiB folio (MADV_HUGEPAGE), which the kernel
 * maps with one entry, in this process and at its first touch in each fork; a cache that
 * drops it (some hosts drop caches on a timer) reads it back the same way. MADV_RANDOM: a
 * fault reads its own window, not the next one ahead as well. The window of the code an idle
 * process keeps mapped stays in small folios: a kept page in a 2 MiB folio is mapped with all
 * of it (Linux 6.18 maps a whole folio at a fault), 1.8 MiB more per idle process, measured.
 * So its pages are read in small folios before anything can fault them (WILLNEED, here, on the
 * new mapping before it replaces the old) and never in a 2 MiB one (MADV_NOHUGEPAGE, after).
 * The advice changes only how pages are cached and mapped: a kernel that refuses it (no THP)
 * runs the same code, so its result is not a failure. */
static void advise_code_before(char *fresh, size_t length, int file, off_t offset, uintptr_t start, uintptr_t end) {
    (void)madvise(fresh, length, MADV_HUGEPAGE);
    (void)madvise(fresh, length, MADV_RANDOM);
    uintptr_t low, high;
    kept_window(start, end, &low, &high);
    if (low < high) (void)posix_fadvise(file, offset + (off_t)(low - start), (off_t)(high - low), POSIX_FADV_WILLNEED);
}

static void advise_code_after(uintptr_t start, uintptr_t end) {
    uintptr_t low, high;
    kept_window(start, end, &low, &high);
    if (low < high) (void)madvise((void *)low, high - low, MADV_NOHUGEPAGE);
}

/* One mapping of jaild's file, [start, end) at `offset`, mapped again from `file` (the same
 * inode on the read-only mount) at the same address. The pages this process wrote (private
 * copies: data it changed) are copied into the new mapping first; the others are the page
 * cache's, equal in both. mremap puts the new mapping in place in one step, so the code that
 * runs here, even from the text being replaced, sees the same bytes before and after. */
static int remap_one(int file, int pagemap, uintptr_t start, uintptr_t end, off_t offset, int prot) {
    size_t length = end - start;
    long page = sysconf(_SC_PAGESIZE);
    char *fresh = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, file, offset);
    if (fresh == MAP_FAILED) return -1;
    uint64_t entries[512];
    /* Code is never written (no PROT_WRITE): none of its pages is this process's own. */
    for (uintptr_t address = (prot & PROT_WRITE) || !(prot & PROT_EXEC) ? start : end; address < end;) {
        size_t count = (size_t)((end - address) / (uintptr_t)page);
        if (count > 512) count = 512;
        ssize_t got = pread(pagemap, entries, count * sizeof entries[0], (off_t)(address / (uintptr_t)page * sizeof entries[0]));
        if (got <= 0) {
            munmap(fresh, length);
            errno = EIO;
            return -1;
        }
        for (size_t i = 0; i < (size_t)got / sizeof entries[0]; i++, address += (uintptr_t)page) {
            uint64_t entry = entries[i];
            int written = ((entry & PAGEMAP_PRESENT) && !(entry & PAGEMAP_FILE)) || (entry & PAGEMAP_SWAPPED);
            if (written) memcpy(fresh + (address - start), (const void *)address, (size_t)page);
        }
    }
    if (prot & PROT_EXEC) advise_code_before(fresh, length, file, offset, start, end);
    if (mprotect(fresh, length, prot) < 0 || mremap(fresh, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)start) == MAP_FAILED) {
        int saved = errno;
        munmap(fresh, length);
        errno = saved;
        return -1;
    }
    if (prot & PROT_EXEC) advise_code_after(start, end);
    return 0;
}

/* PR_SET_MM_EXE_FILE needs CAP_SYS_RESOURCE, which some hosts withhold (this test VM does);
 * PR_SET_MM_MAP with an exe_fd needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE) instead, which
 * jaild has wherever it can make a jail. It sets the whole layout, so the current one is
 * given back unchanged: from /proc/self/stat (fields 26-28, 45-51) and brk. */
static int set_exe_file(int file) {
    if (prctl(PR_SET_MM, PR_SET_MM_EXE_FILE, (unsigned long)file, 0, 0) == 0) return 0;
    int stat_fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (stat_fd < 0) return -1;
    char text[2048];
    ssize_t got = read(stat_fd, text, sizeof text - 1);
    close(stat_fd);
    if (got <= 0) return -1;
    text[got] = '\0';
    char *after = strrchr(text, ')');
    if (after == NULL) return -1;
    unsigned long long field[53] = {0};
    int number = 3;
    for (char *token = strtok(after + 1, " \n"); token && number < 53; token = strtok(NULL, " \n"), number++) {
        field[number] = strtoull(token, NULL, 10);
    }
    if (number <= 51) {
        errno = EINVAL;
        return -1;
    }
    struct prctl_mm_map map = {
        .start_code = field[26], .end_code = field[27], .start_stack = field[28],
        .start_data = field[45], .end_data = field[46], .start_brk = field[47],
        .brk = (unsigned long long)syscall(SYS_brk, 0),
        .arg_start = field[48], .arg_end = field[49], .env_start = field[50], .env_end = field[51],
        .auxv = NULL, .auxv_size = 0, .exe_fd = (unsigned int)file,
    };
    return prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&map, sizeof map, 0);
}

int cj_remap_read_only(int image) {
    struct stat self;
    if (stat("/proc/self/exe", &self) < 0) return -1;
    int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (maps < 0) return -1;
    /* Read whole before anything changes: a static binary has a handful of lines. */
    char text[16384];
    size_t used = 0;
    for (ssize_t got; used < sizeof text - 1 && (got = read(maps, text + used, sizeof text - 1 - used)) > 0;) used += (size_t)got;
    close(maps);
    text[used] = '\0';
    int tree = open_read_only_self(image);
    if (tree < 0) return -1;
    /* open_tree gives an O_PATH descriptor, which mmap and PR_SET_MM refuse: opened for
     * reading through it (the file on the read-only mount). */
    char path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", tree);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    close(tree);
    if (file < 0) return -1;
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        close(file);
        return -1;
    }
    int rc = 0;
    for (char *line = text; rc == 0 && line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        unsigned long start, end, offset, inode;
        unsigned int major, minor;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu", &start, &end, perms, &offset, &major, &minor, &inode) == 7
            && inode == (unsigned long)self.st_ino && makedev(major, minor) == self.st_dev) {
            int prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
            rc = remap_one(file, pagemap, start, end, (off_t)offset, prot);
        }
        line = next;
    }
    close(pagemap);
    /* No mapping of the old path is left, so the kernel lets /proc/self/exe change (EBUSY
     * otherwise). */
    if (rc == 0) rc = set_exe_file(file);
    int saved = errno;
    close(file);
    errno = saved;
    return rc;
}

int cj_reexec_read_only(int image, char *const argv[], char *const envp[]) {
    int tree = open_read_only_self(image);
    if (tree < 0) return -1;
    /* The mount stays alive, detached, as long as the running image refers to it. */
    syscall(SYS_execveat, tree, "", argv, envp, AT_EMPTY_PATH);
    int saved = errno;
    close(tree);
    errno = saved;
    return -1;
}
