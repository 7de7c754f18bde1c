/* Shared helpers of the baseline programs: timing, pinning, percentiles. */
#ifndef VIO_BENCH_COMMON_H
#define VIO_BENCH_COMMON_H
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static inline void relax(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("pause");
#endif
}

static inline int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Moves this thread (and what it starts) into the network namespace `ip netns add NAME` made. */
static inline void enter_netns(const char *name) {
    char path[256];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) { perror(path); exit(1); }
    close(fd);
}

/* Prints the line the bench driver parses: same format as vio-probe's. */
static inline void report_rtt(uint64_t *samples, size_t n, int size) {
    qsort(samples, n, sizeof(uint64_t), cmp_u64);
    printf("rtt_us p50=%.2f p99=%.2f min=%.2f max=%.2f n=%zu size=%d\n", samples[n / 2] / 1e3,
           samples[n * 99 / 100] / 1e3, samples[0] / 1e3, samples[n - 1] / 1e3, n, size);
}
#endif
