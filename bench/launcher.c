/*
 * bench launcher: forks, execs and reaps the measured commands for bench/harness.py.
 *
 * Why this exists: Linux carries ru_maxrss across execve() (exec_mmap() folds the old mm's
 * high-water RSS into signal->maxrss), and both fork() and vfork()/posix_spawn() from the
 * Python harness start the child with the harness's mm, so every command measured straight
 * from Python reports at least the harness's own peak RSS (10-60 MiB) - more than crun
 * (~3 MiB) ever uses. A child forked from this tiny process starts from a mm of a few
 * hundred KiB, so its ru_maxrss describes the command.
 *
 * Usage: launcher REQUEST_FD REPLY_FD (pipes the harness passes down; EOF on REQUEST_FD ends it).
 * Protocol (native byte order):
 *   request: u32 flags (bit 0: send the command's stdout/stderr to /dev/null), u32 argc,
 *            then argc times (u32 length, bytes); argv[0] is an absolute path (no PATH search
 *            inside the timed region).
 *   reply:   i64 wall_ns, i64 utime_us, i64 stime_us, i64 maxrss_kib, i64 wait_status
 *            (wall_ns is CLOCK_MONOTONIC - what Python's perf_counter_ns reads - taken just
 *            before fork() and just after wait4(); rusage is wait4()'s, which includes the
 *            child's reaped descendants).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int req_fd = -1;
static int rep_fd = -1;
#define FLAG_DISCARD_OUTPUT 1u

static int read_full(void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(req_fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_full(const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(rep_fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char **read_argv(uint32_t argc) {
    char **argv = calloc((size_t)argc + 1, sizeof(char *));
    if (argv == NULL)
        return NULL;
    for (uint32_t i = 0; i < argc; i++) {
        uint32_t len;
        if (read_full(&len, sizeof len) != 0 || (argv[i] = malloc((size_t)len + 1)) == NULL)
            return NULL;
        if (read_full(argv[i], len) != 0)
            return NULL;
        argv[i][len] = '\0';
    }
    return argv;
}

static void free_argv(char **argv) {
    for (char **p = argv; *p != NULL; p++)
        free(*p);
    free(argv);
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    req_fd = atoi(argv[1]);
    rep_fd = atoi(argv[2]);
    /* The measured commands must not inherit the harness's pipes. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || fcntl(req_fd, F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(rep_fd, F_SETFD, FD_CLOEXEC) != 0)
        return 2;
    for (;;) {
        uint32_t header[2];
        if (read_full(header, sizeof header) != 0)
            return 0; /* EOF: the harness is done */
        char **cmd = read_argv(header[1]);
        if (cmd == NULL || cmd[0] == NULL)
            return 2;
        int64_t start = now_ns();
        pid_t pid = fork();
        if (pid == 0) {
            if (header[0] & FLAG_DISCARD_OUTPUT) {
                dup2(devnull, STDOUT_FILENO);
                dup2(devnull, STDERR_FILENO);
            }
            execv(cmd[0], cmd);
            _exit(127);
        }
        if (pid < 0)
            return 3;
        int status = 0;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) != pid)
            return 4;
        int64_t reply[5] = {
            now_ns() - start,
            (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
            (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
            (int64_t)ru.ru_maxrss,
            (int64_t)status,
        };
        free_argv(cmd);
        if (write_full(reply, sizeof reply) != 0)
            return 5;
    }
}
