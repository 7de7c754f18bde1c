/* Round trips over TCP loopback or a Unix-domain stream socket, between two processes
 * pinned to CPUs 0 and 1, blocking reads (what a database's per-peer socket does).
 *
 *   socket_pingpong tcp|uds SIZE COUNT [IDLE_US]
 *   socket_pingpong tcpns SIZE COUNT SERVER_NETNS CLIENT_NETNS SERVER_ADDR [stream|IDLE_US]
 *       the same over a real network path: the server end joins network namespace
 *       /run/netns/SERVER_NETNS and listens on SERVER_ADDR, the client joins CLIENT_NETNS
 *       and connects (direct TCP across a veth). With "stream" the client sends COUNT
 *       messages one way and reports bandwidth instead of round trips.
 *
 * IDLE_US (default 0) sleeps between round trips, so both ends fall asleep as a receiver
 * on an idle link does.
 */
#define _GNU_SOURCE
#include "bench_common.h"
#include <fcntl.h>
#include <sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r <= 0) return -1;
        put += (size_t)r;
    }
    return 0;
}

/* The client's side of a ping-pong on `a` (after `idle_us` of idle before each request):
 * times count + warm round trips, waits for the echoing child, prints the RTT report. */
static int ping_pong(int a, char *buf, size_t size, size_t count, size_t warm, unsigned idle_us, pid_t child) {
    uint64_t *samples = malloc(sizeof(uint64_t) * count);
    for (size_t i = 0; i < count + warm; i++) {
        if (idle_us) usleep(idle_us);
        uint64_t s = now_ns();
        if (write_full(a, buf, size) || read_full(a, buf, size)) { fprintf(stderr, "peer failed\n"); return 1; }
        if (i >= warm) samples[i - warm] = now_ns() - s;
    }
    waitpid(child, NULL, 0);
    report_rtt(samples, count, (int)size);
    return 0;
}

static int across_namespaces(int argc, char **argv) {
    size_t size = (size_t)atoi(argv[2]);
    size_t count = (size_t)strtoull(argv[3], NULL, 10), warm = count / 10;
    int stream = argc == 8 && strcmp(argv[7], "stream") == 0, one = 1;
    unsigned idle_us = argc == 8 && !stream ? (unsigned)atoi(argv[7]) : 0;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(7399) };
    inet_pton(AF_INET, argv[6], &addr.sin_addr);
    char *buf = calloc(1, size);
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        enter_netns(argv[4]);
        int l = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 1)) { perror("bind"); _exit(1); }
        int b = accept(l, NULL, NULL);
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        for (size_t i = 0; i < count + warm; i++) {
            if (read_full(b, buf, size)) _exit(1);
            if (!stream && write_full(b, buf, size)) _exit(1);
        }
        if (stream) write_full(b, buf, 1);
        _exit(0);
    }
    pin(0);
    enter_netns(argv[5]);
    int a = -1;
    for (int tries = 0; tries < 200; tries++) {
        a = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(a, (struct sockaddr *)&addr, sizeof(addr)) == 0) break;
        close(a); a = -1;
        usleep(10000);
    }
    if (a < 0) { perror("connect"); return 1; }
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (stream) {
        for (size_t i = 0; i < warm; i++) write_full(a, buf, size);
        uint64_t s = now_ns();
        for (size_t i = 0; i < count; i++) if (write_full(a, buf, size)) return 1;
        read_full(a, buf, 1);
        double secs = (double)(now_ns() - s) / 1e9;
        printf("bw gb_per_s=%.3f size=%zu\n", (double)count * (double)size / secs / 1e9, size);
        waitpid(child, NULL, 0);
        return 0;
    }
    return ping_pong(a, buf, size, count, warm, idle_us, child);
}

int main(int argc, char **argv) {
    if (argc >= 7 && strcmp(argv[1], "tcpns") == 0) return across_namespaces(argc, argv);
    if (argc != 4 && argc != 5) { fprintf(stderr, "usage: %s tcp|uds SIZE COUNT [IDLE_US]\n", argv[0]); return 2; }
    unsigned idle_us = argc == 5 ? (unsigned)atoi(argv[4]) : 0;
    int tcp = strcmp(argv[1], "tcp") == 0;
    size_t size = (size_t)atoi(argv[2]);
    size_t count = (size_t)strtoull(argv[3], NULL, 10), warm = count / 10;
    int a, b;
    if (tcp) {
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        bind(l, (struct sockaddr *)&addr, sizeof(addr));
        socklen_t len = sizeof(addr);
        getsockname(l, (struct sockaddr *)&addr, &len);
        listen(l, 1);
        a = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(a, (struct sockaddr *)&addr, sizeof(addr)) != 0) { perror("connect"); return 1; }
        b = accept(l, NULL, NULL);
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        close(l);
    } else {
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        a = sv[0];
        b = sv[1];
    }
    char *buf = calloc(1, size);
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        close(a);
        for (size_t i = 0; i < count + warm; i++) {
            if (read_full(b, buf, size) || write_full(b, buf, size)) _exit(1);
        }
        _exit(0);
    }
    pin(0);
    close(b);
    return ping_pong(a, buf, size, count, warm, idle_us, child);
}
