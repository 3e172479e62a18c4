/* userns-limit: runs a command as UID:GID inside a fresh user namespace whose
 * user.max_user_namespaces is VALUE, so a test can show what jaild says when user namespaces
 * are disabled without touching the host's own setting (which needs CAP_SYS_RESOURCE, and
 * would affect everything else on the machine). Run as root. Test code only.
 * usage: userns-limit UID GID VALUE COMMAND [ARG...] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void put(int fd, const char *text, const char *what) {
    if (fd < 0) { perror(what); exit(111); }
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) { perror(what); exit(111); }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: userns-limit UID GID VALUE COMMAND [ARG...]\n"); return 2; }
    /* The maps hold more than our own id, so a process outside the new namespace (the
     * parent, root) must write them: the child unshares, the parent maps, the child goes on. */
    int ready[2], mapped[2];
    if (pipe(ready) < 0 || pipe(mapped) < 0) { perror("pipe"); return 111; }
    pid_t child = fork();
    if (child < 0) { perror("fork"); return 111; }
    char byte = 0;
    if (child > 0) {
        close(ready[1]);
        close(mapped[0]);
        if (read(ready[0], &byte, 1) != 1) return 111;
        char path[64], map[128];
        snprintf(map, sizeof map, "0 0 1\n%s %s 1\n", argv[1], argv[1]);
        snprintf(path, sizeof path, "/proc/%d/uid_map", child);
        put(open(path, O_WRONLY), map, "uid_map");
        snprintf(map, sizeof map, "0 0 1\n%s %s 1\n", argv[2], argv[2]);
        snprintf(path, sizeof path, "/proc/%d/gid_map", child);
        put(open(path, O_WRONLY), map, "gid_map");
        put(mapped[1], "m", "pipe");
        int status;
        if (waitpid(child, &status, 0) < 0) return 111;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    close(ready[0]);
    close(mapped[1]);
    if (unshare(CLONE_NEWUSER) < 0) { perror("unshare"); return 111; }
    put(ready[1], "u", "pipe");
    if (read(mapped[0], &byte, 1) != 1) return 111;
    /* Root of the new namespace now: its own limits are ours to set. */
    put(open("/proc/sys/user/max_user_namespaces", O_WRONLY), argv[3], "max_user_namespaces");
    if (setgroups(0, NULL) < 0 || setgid(atoi(argv[2])) < 0 || setuid(atoi(argv[1])) < 0) { perror("setuid"); return 111; }
    execvp(argv[4], argv + 4);
    perror("execvp");
    return 127;
}
