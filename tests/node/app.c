/* The app of the node tests' shell-less image: one static binary and nothing else (no shell,
 * no libc), the hardest case for the supervisor wrapper, which must bring everything it runs.
 *
 *   app serve PORT [LOGFILE]   append "app serving on PORT" to LOGFILE, then answer every TCP
 *                              connection on PORT with an HTTP 200 (readiness probes, curl)
 *   app exit CODE              exit at once with CODE (a crash loop)
 *
 * SIGTERM keeps its default action: the app stops as any simple server does. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int serve(int port, const char *logfile) {
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    static const char reply[] = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
        perror("app: listen");
        return 1;
    }
    if (logfile) {
        FILE *log = fopen(logfile, "a");
        if (!log) { perror(logfile); return 1; }
        fprintf(log, "app serving on %d as uid %d\n", port, (int)getuid());
        fclose(log);
    }
    printf("app: serving on %d\n", port);
    fflush(stdout);
    for (;;) {
        char buf[512];
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        (void)!read(c, buf, sizeof buf);
        (void)!write(c, reply, sizeof reply - 1);
        close(c);
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "serve") == 0) return serve(atoi(argv[2]), argc > 3 ? argv[3] : NULL);
    if (argc == 3 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
    fputs("usage: app serve PORT [LOGFILE] | app exit CODE\n", stderr);
    return 2;
}
