/* hog FAST_MIB STEP_KIB STEP_MS: the app of the real OOM test. Touches FAST_MIB MiB at once, then
 * STEP_KIB more every STEP_MS milliseconds, each page written so it is resident (and charged to
 * the memory cgroup), until the kernel's OOM killer ends it. Bounded: after 4 GiB or 120 s it
 * exits 0, which the test reports as "no OOM kill". */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *volatile last;  /* volatile: the compiler must not drop the unused allocations */

static void touch(size_t bytes) {
    char *p = malloc(bytes);
    if (p == NULL) exit(2);
    memset(p, 0xa5, bytes);
    last = p;
}

int main(int argc, char **argv) {
    if (argc != 4) return 64;
    size_t fast = (size_t)atol(argv[1]) << 20, step = (size_t)atol(argv[2]) << 10;
    struct timespec pause = {0, atol(argv[3]) * 1000000L};
    time_t until = time(NULL) + 120;
    touch(fast);
    for (size_t total = fast; total < ((size_t)4 << 30) && time(NULL) < until; total += step) {
        touch(step);
        nanosleep(&pause, NULL);
    }
    return 0;
}
