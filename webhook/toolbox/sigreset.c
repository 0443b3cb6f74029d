/* sigreset PROGRAM [ARGS...]: exec PROGRAM with every signal at its default action and none
 * blocked. A POSIX shell starts background commands with SIGINT and SIGQUIT ignored (when it
 * has no job control, as in a container), and an ignored signal cannot be trapped again: the
 * supervise wrapper starts the app through this, so the app gets INT and QUIT (a JVM thread
 * dump) like any other signal. Built statically by `podmedic toolbox build`. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    sigset_t none;
    if (argc < 2) { fputs("usage: sigreset PROGRAM [ARGS...]\n", stderr); return 127; }
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
