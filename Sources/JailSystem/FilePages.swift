import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Giving back the pages of jaild's own file that an idle process no longer uses
// (CJail/memory.c): they leave its resident set, stay in the page cache, and fault back in
// when used. The release and the sleep after it are one C call, so that no Swift code runs
// between them and maps the pages again.

/// Opens /proc/self/pagemap for good, for the releases to come, while this process may still
/// open it. Without it a release skips the pages it cannot tell apart.
public func keepPagemapOpen() throws(SystemError) {
    try syscall("open", path: "/proc/self/pagemap") { cj_keep_pagemap_open() }
}

/// Releases the writable segments' pages still the file's (before a fork whose child waits long).
public func releaseDataFilePages() {
    cj_release_data_file_pages()
}

/// poll(2) after releasing the file's pages, in poll's place in a `Poller`'s wait: returns
/// as poll does, errno set on failure.
public func pollReleasingFilePages(_ entries: UnsafeMutablePointer<pollfd>?, _ count: nfds_t, _ timeout: Int32) -> Int32 {
    cj_poll_releasing_file_pages(entries, count, timeout)
}

/// poll(2) after releasing the code segments' pages only, in poll's place in a `Poller`'s wait.
public func pollReleasingCodePages(_ entries: UnsafeMutablePointer<pollfd>?, _ count: nfds_t, _ timeout: Int32) -> Int32 {
    cj_poll_releasing_code_pages(entries, count, timeout)
}

/// Releases the code segments' pages, then waits without a timeout for `descriptor` to be
/// readable (or hung up). A poll that fails (other than EINTR, which waits on) returns at once:
/// the caller's read of the descriptor then waits instead, only without the release.
public func waitReadableReleasingCodePages(_ descriptor: FileDescriptor) {
    var entry = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
    while cj_poll_releasing_code_pages(&entry, 1, -1) < 0 && Glibc.errno == EINTR {}
}
