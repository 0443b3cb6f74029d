/* sigreset PROGRAM [ARGS...]: exec PROGRAM as a container's runtime would start it, as PID 1:
 * every signal at its default action, none blocked, and the leader of its own process group.
 * A POSIX shell starts background commands with SIGINT and SIGQUIT ignored (when it has no job
 * control, as in a container), and an ignored signal cannot be trapped again: the supervise
 * wrapper starts the app through this, so the app gets INT and QUIT (a JVM thread dump) like any
 * other signal. The same shell leaves a background command in its own process group: the app's
 * `kill 0` at exit would stop the wrapper (and the container), its `kill -- -$$` would find no
 * group and leave its children running. On the controlling terminal (`tty: true`) the new group
 * takes the foreground, where tini put the wrapper's: a background group that reads the terminal
 * or changes its settings is stopped (SIGTTIN, SIGTTOU). Where the caller already leads its group
 * (tini's child, a session leader) nothing changes. Built statically by `podmedic toolbox build`. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    sigset_t none;
    if (argc < 2) { fputs("usage: sigreset PROGRAM [ARGS...]\n", stderr); return 127; }
    signal(SIGTTOU, SIG_IGN);  /* tcsetpgrp from a background group: allowed only so */
    if (getpgrp() != getpid() && setpgid(0, 0) == 0 && tcgetpgrp(STDIN_FILENO) != -1)
        tcsetpgrp(STDIN_FILENO, getpid());  /* not our controlling terminal: ENOTTY, left as it is */
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
