/* The "64 direct connections" side of the cross-host fan-out benchmark.
 *
 *   tcp_fanout SERVER_NETNS CLIENT_NETNS SERVER_ADDR CONNS SIZE SECONDS
 *
 * What a cluster without VIO does: one TCP connection per pair of instances. CONNS connections
 * from CLIENT_NETNS to SERVER_ADDR:7398 in SERVER_NETNS, one sending thread per connection
 * (SIZE-byte writes for SECONDS, then shutdown) and one receiving thread per connection on the
 * other side (reads until EOF). The same shape as `vio-probe fanout` over VIO: a thread per link
 * at each end. Prints one line:
 *   fanout conns=N bytes=B seconds=S gb_per_s=R cpu_s=C sockets_per_host=N
 * where cpu_s is the user+system time of both ends and sockets_per_host the established TCP
 * sockets to port 7398 the client namespace held during the run.
 */
#include "bench_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT 7398
#define MAX_CONNS 1024

static size_t size;
static double seconds;
static _Atomic uint64_t received;
static _Atomic uint64_t last_ns;

static void *drain(void *arg) {
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(1 << 20);
    uint64_t got = 0;
    ssize_t r;
    while ((r = read(fd, buf, 1 << 20)) > 0) got += (uint64_t)r;
    atomic_fetch_add(&received, got);
    uint64_t t = now_ns(), seen = atomic_load(&last_ns);
    while (t > seen && !atomic_compare_exchange_weak(&last_ns, &seen, t)) {}
    free(buf);
    close(fd);
    return NULL;
}

static void *pour(void *arg) {
    int fd = (int)(intptr_t)arg;
    char *buf = calloc(1, size);
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), sequence = 0;
    while (now_ns() < end) {
        /* as vio-probe's senders: an 8-byte sequence number stands for the message's content */
        if (size >= 8) { sequence++; memcpy(buf, &sequence, 8); }
        for (size_t put = 0; put < size;) {
            ssize_t r = write(fd, buf + put, size - put);
            if (r <= 0) { perror("write"); exit(1); }
            put += (size_t)r;
        }
    }
    shutdown(fd, SHUT_WR);
    free(buf);
    return NULL;
}

static double cpu_seconds(int who) {
    struct rusage u;
    getrusage(who, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static int established_sockets(void) {
    FILE *f = fopen("/proc/self/net/tcp", "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned port, state;  /* count only this benchmark's connections, not the agents' */
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %x", &port, &state) == 2 && state == 1 && port == PORT) n++;
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: tcp_fanout SERVER_NETNS CLIENT_NETNS SERVER_ADDR CONNS SIZE SECONDS\n");
        return 2;
    }
    int conns = atoi(argv[4]), one = 1;
    size = (size_t)atoi(argv[5]);
    seconds = atof(argv[6]);
    if (conns < 1 || conns > MAX_CONNS || size < 1) { fprintf(stderr, "bad CONNS or SIZE\n"); return 2; }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(PORT) };
    inet_pton(AF_INET, argv[3], &addr.sin_addr);
    int ready[2];
    if (pipe(ready)) return 1;

    pid_t child = fork();
    if (child == 0) {
        enter_netns(argv[1]);
        int l = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, MAX_CONNS)) { perror("bind"); _exit(1); }
        if (write(ready[1], "r", 1) != 1) _exit(1);
        pthread_t threads[MAX_CONNS];
        for (int i = 0; i < conns; i++) {
            int b = accept(l, NULL, NULL);
            if (b < 0) { perror("accept"); _exit(1); }
            pthread_create(&threads[i], NULL, drain, (void *)(intptr_t)b);
        }
        for (int i = 0; i < conns; i++) pthread_join(threads[i], NULL);
        /* The receiving end reports what arrived and when the last byte came, through the pipe. */
        uint64_t report[2] = { atomic_load(&received), atomic_load(&last_ns) };
        if (write(ready[1], report, sizeof(report)) != sizeof(report)) _exit(1);
        _exit(0);
    }
    enter_netns(argv[2]);
    char r;
    if (read(ready[0], &r, 1) != 1) return 1;
    int fds[MAX_CONNS];
    for (int i = 0; i < conns; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[i], (struct sockaddr *)&addr, sizeof(addr))) { perror("connect"); return 1; }
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int sockets = established_sockets();
    pthread_t threads[MAX_CONNS];
    uint64_t start = now_ns();
    for (int i = 0; i < conns; i++) pthread_create(&threads[i], NULL, pour, (void *)(intptr_t)fds[i]);
    for (int i = 0; i < conns; i++) pthread_join(threads[i], NULL);
    uint64_t report[2];
    if (read(ready[0], report, sizeof(report)) != sizeof(report)) { fprintf(stderr, "receiver failed\n"); return 1; }
    waitpid(child, NULL, 0);
    double secs = (double)(report[1] - start) / 1e9;
    double cpu = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
    printf("fanout conns=%d bytes=%llu seconds=%.3f gb_per_s=%.3f cpu_s=%.2f sockets_per_host=%d\n", conns,
           (unsigned long long)report[0], secs, (double)report[0] / secs / 1e9, cpu, sockets);
    return 0;
}
