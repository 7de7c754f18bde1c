/* The bare shared-memory ring VIO is measured against: a single-producer single-consumer
 * Lamport ring with cached indices and records aligned to 16 bytes (VIO's algorithm, without
 * validation, fragmentation, counters, doorbells or a link state). Two threads, pinned to
 * CPUs 0 and 1, busy-polling.
 *
 *   ring_baseline lat  SIZE COUNT    round trips of SIZE bytes (ping-pong on two rings)
 *   ring_baseline rate SIZE COUNT    one-way messages, reports msgs/s and GB/s
 *   ring_baseline lat  SIZE COUNT sleepsafe
 *                                    the same, plus what a ring whose reader may sleep must do
 *                                    on every send (VIO's doorbell protocol): a sequentially
 *                                    consistent fence after publishing the tail, then a load of
 *                                    the reader's "armed" flag (never set here)
 */
#include "bench_common.h"
#include <stdatomic.h>
#include <string.h>

#define CAPACITY (1u << 20)

static int sleep_safe;
#define LINE 64

struct ring {
    _Alignas(LINE) _Atomic uint64_t tail;
    _Alignas(LINE) _Atomic uint64_t head;
    _Alignas(LINE) _Atomic uint32_t reader_armed;
    _Alignas(LINE) uint8_t data[CAPACITY];
};

struct producer { struct ring *r; uint64_t tail, cached_head; };
struct consumer { struct ring *r; uint64_t head, cached_tail; };

static inline size_t record_size(size_t n) { return 16 + ((n + 15) & ~(size_t)15); }

static inline void send_msg(struct producer *p, const void *buf, uint32_t n) {
    size_t size = record_size(n);
    uint64_t pos = p->tail & (CAPACITY - 1);
    size_t contiguous = CAPACITY - pos;
    size_t need = size <= contiguous ? size : size + contiguous;
    while (CAPACITY - (p->tail - p->cached_head) < need) {
        p->cached_head = atomic_load_explicit(&p->r->head, memory_order_acquire);
        relax();
    }
    if (size > contiguous) {  /* pad to the end */
        uint32_t padlen = (uint32_t)(contiguous - 16);
        memcpy(p->r->data + pos, &padlen, 4);
        uint32_t flags = 4;
        memcpy(p->r->data + pos + 4, &flags, 4);
        p->tail += contiguous;
        pos = 0;
    }
    memcpy(p->r->data + pos, &n, 4);
    uint32_t flags = 3;
    memcpy(p->r->data + pos + 4, &flags, 4);
    memcpy(p->r->data + pos + 16, buf, n);
    p->tail += size;
    atomic_store_explicit(&p->r->tail, p->tail, memory_order_release);
    if (sleep_safe) {
        /* Store tail, then load armed: without the fence a sleeping reader could miss it. */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&p->r->reader_armed, memory_order_relaxed)) abort();
    }
}

static inline uint32_t recv_msg(struct consumer *c, void *buf) {
    for (;;) {
        while (c->head == c->cached_tail) {
            c->cached_tail = atomic_load_explicit(&c->r->tail, memory_order_acquire);
            if (c->head == c->cached_tail) relax();
        }
        uint64_t pos = c->head & (CAPACITY - 1);
        uint32_t n, flags;
        memcpy(&n, c->r->data + pos, 4);
        memcpy(&flags, c->r->data + pos + 4, 4);
        if (flags == 4) { c->head += CAPACITY - pos; continue; }
        memcpy(buf, c->r->data + pos + 16, n);
        c->head += record_size(n);
        if (c->head == c->cached_tail || (c->head & (CAPACITY / 4 - 1)) < record_size(n))
            atomic_store_explicit(&c->r->head, c->head, memory_order_release);
        return n;
    }
}

static struct ring *ab, *ba;
static uint32_t msg_size;
static uint64_t count;

static void *echo_thread(void *arg) {
    (void)arg;
    pin(1);
    struct consumer c = { ab, 0, 0 };
    struct producer p = { ba, 0, 0 };
    uint8_t *buf = malloc(msg_size + 16);
    for (uint64_t i = 0; i < count; i++) {
        uint32_t n = recv_msg(&c, buf);
        send_msg(&p, buf, n);
    }
    free(buf);
    return NULL;
}

static void *sink_thread(void *arg) {
    uint64_t *elapsed = arg;
    pin(1);
    struct consumer c = { ab, 0, 0 };
    uint8_t *buf = malloc(msg_size + 16);
    recv_msg(&c, buf);
    uint64_t start = now_ns();
    for (uint64_t i = 1; i < count; i++) recv_msg(&c, buf);
    *elapsed = now_ns() - start;
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "sleepsafe") == 0)) {
        fprintf(stderr, "usage: %s lat|rate SIZE COUNT [sleepsafe]\n", argv[0]);
        return 2;
    }
    sleep_safe = argc == 5;
    msg_size = (uint32_t)atoi(argv[2]);
    count = strtoull(argv[3], NULL, 10);
    ab = aligned_alloc(4096, sizeof(struct ring));
    ba = aligned_alloc(4096, sizeof(struct ring));
    memset(ab, 0, sizeof(*ab));
    memset(ba, 0, sizeof(*ba));
    uint8_t *buf = calloc(1, msg_size + 16);
    pin(0);
    pthread_t t;
    if (argv[1][0] == 'l') {
        uint64_t warm = count / 10;
        count += warm;
        pthread_create(&t, NULL, echo_thread, NULL);
        struct producer p = { ab, 0, 0 };
        struct consumer c = { ba, 0, 0 };
        uint64_t *samples = malloc(sizeof(uint64_t) * count);
        size_t n = 0;
        for (uint64_t i = 0; i < count; i++) {
            uint64_t s = now_ns();
            send_msg(&p, buf, msg_size);
            recv_msg(&c, buf);
            if (i >= warm) samples[n++] = now_ns() - s;
        }
        pthread_join(t, NULL);
        report_rtt(samples, n, (int)msg_size);
    } else {
        uint64_t elapsed = 0;
        pthread_create(&t, NULL, sink_thread, &elapsed);
        struct producer p = { ab, 0, 0 };
        for (uint64_t i = 0; i < count; i++) send_msg(&p, buf, msg_size);
        pthread_join(t, NULL);
        double secs = elapsed / 1e9;
        printf("rate msgs_per_s=%.0f gb_per_s=%.3f n=%llu size=%u\n", (count - 1) / secs,
               (count - 1) * (double)msg_size / secs / 1e9, (unsigned long long)count, msg_size);
    }
    return 0;
}
