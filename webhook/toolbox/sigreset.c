/* sigreset [--environ-of=PID] PROGRAM [ARGS...]: exec PROGRAM as a container's runtime would
 * start it, as PID 1: every signal at its default action, none blocked, and the leader of its own
 * process group. A POSIX shell starts background commands with SIGINT and SIGQUIT ignored (when it
 * has no job control, as in a container), and an ignored signal cannot be trapped again: the
 * supervise wrapper starts the app through this, so the app gets INT and QUIT (a JVM thread dump)
 * like any other signal. The same shell leaves a background command in its own process group: the
 * app's `kill 0` at exit would stop the wrapper (and the container), its `kill -- -$$` would find
 * no group and leave its children running. On the controlling terminal (`tty: true`) the new group
 * takes the foreground, where tini put the wrapper's: a background group that reads the terminal
 * or changes its settings is stopped (SIGTTIN, SIGTTOU). Where the caller already leads its group
 * (tini's child, a session leader) nothing changes.
 *
 * --environ-of=PID: PROGRAM gets the environment block process PID was exec'd with, not ours.
 * busybox sh hands what it starts only the variables whose names are shell identifiers, plus SHLVL
 * and PWD (and a default PATH); since Kubernetes 1.30 a name is any printable ASCII but '='
 * (`spring.datasource.url`, `db-url`, an envFrom key). The kernel keeps the block a process was
 * exec'd with in /proc/PID/environ, whatever its shell made of it: the wrapper and the chained
 * preStop pass their shell's $$ (from a child: a shell's exec would replace that block by its own).
 * Only the first argument may be this option, in this one spelling, and the wrapper is what puts
 * it there: a program literally named `--environ-of=...` is not a real concern.
 * Built statically by `podmedic toolbox build`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPTION "--environ-of="
extern char **environ;

/* The NUL-separated block of /proc/PID/environ as an environ array, of any size; NULL (errno set)
 * when it cannot be read, or reads empty: a process that has exited, or a kernel thread. */
static char **environ_of(const char *pid) {
    char path[64], *block = NULL, *grown, **env;
    size_t size = 0, cap = 0, n = 0;
    ssize_t got = 0;
    int fd;
    if (!*pid || pid[strspn(pid, "0123456789")] || strlen(pid) > 20) { errno = EINVAL; return NULL; }
    snprintf(path, sizeof path, "/proc/%s/environ", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return NULL;
    do {
        if (size + 1 >= cap) {  /* + 1: room for a final NUL of our own */
            if (!(grown = realloc(block, cap = cap * 2 + 65536))) { got = -1; break; }
            block = grown;
        }
        if ((got = read(fd, block + size, cap - size - 1)) > 0) size += (size_t)got;
    } while (got > 0 || (got < 0 && errno == EINTR));
    close(fd);
    if (got < 0) return NULL;
    if (size == 0) { errno = ENODATA; return NULL; }
    block[size] = '\0';  /* the last entry ends even if the block's own NUL is missing */
    for (char *p = block; p < block + size; p += strlen(p) + 1) n++;
    if (!(env = malloc((n + 1) * sizeof *env))) return NULL;
    n = 0;
    for (char *p = block; p < block + size; p += strlen(p) + 1) env[n++] = p;
    env[n] = NULL;
    return env;
}

int main(int argc, char **argv) {
    sigset_t none;
    char **env = NULL;
    if (argc > 1 && strncmp(argv[1], OPTION, strlen(OPTION)) == 0) {
        const char *pid = argv[1] + strlen(OPTION);
        /* Unreadable: our own environment, the shell's, as before this option existed. Some
         * variables short is what podmedic did until now; an app that never starts breaks a pod. */
        if (!(env = environ_of(pid)))
            fprintf(stderr, "sigreset: /proc/%s/environ: %s; the program gets the shell's environment\n",
                    pid, strerror(errno));
        argv++, argc--;
    }
    if (argc < 2) { fputs("usage: sigreset [--environ-of=PID] PROGRAM [ARGS...]\n", stderr); return 127; }
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* The group only now, with every action reset: the wrapper takes a child still in its own group
     * for one that may lose a signal (ignored, or caught by the shell's handlers in the forked
     * child) and sends its stop signal once the child leads a group of its own. */
    signal(SIGTTOU, SIG_IGN);  /* tcsetpgrp from a background group: allowed only so */
    if (getpgrp() != getpid() && setpgid(0, 0) == 0 && tcgetpgrp(STDIN_FILENO) != -1)
        tcsetpgrp(STDIN_FILENO, getpid());  /* not our controlling terminal: ENOTTY, left as it is */
    signal(SIGTTOU, SIG_DFL);
    if (env) environ = env;  /* execvp looks PROGRAM up on this environment's PATH, as the runtime does */
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
