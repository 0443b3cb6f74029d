/* A stand-in for a JVM in the forensics tests: it handles SIGQUIT (a JVM prints a thread dump)
 * by appending one line to RECORD, so a test can count the dumps it was asked for.
 *
 *   jvm RECORD [ARGS...]   create RECORD (the handler is installed: ready), then wait for signals
 *
 * Compiled static and named `java` it is a JVM by its executable; linked against a library named
 * libjvm.so it is a launcher that embeds a JVM (jsvc); under any other name, with "java" among
 * its ARGS, it is what must not be taken for a JVM. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static const char *record;

static void on_quit(int sig) {
    (void)sig;
    int fd = open(record, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        (void)!write(fd, "SIGQUIT\n", 8);
        close(fd);
    }
}

int main(int argc, char **argv) {
    struct sigaction sa;
    if (argc < 2) return 2;
    record = argv[1];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_quit;
    sigaction(SIGQUIT, &sa, 0);
    close(open(record, O_WRONLY | O_CREAT, 0644));
    for (;;) pause();
}
