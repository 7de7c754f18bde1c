/* The floor of any agent-relayed design across hosts: the least work a message from an
 * instance on one host to an instance on another must cost when a per-host relay carries
 * it over TCP, written in C with nothing else in the way. What VIO's cross-host figures
 * are measured against, next to direct TCP (`socket_pingpong tcpns`).
 *
 *   relay_floor rtt|stream SIZE COUNT NETNS_A NETNS_B ADDR_B sleep|poll
 *
 * Four processes (as VIO's two agents and two instances): instance A and relay A (in
 * NETNS_A), relay B (in NETNS_B, listening on ADDR_B) and instance B. Each instance talks to its relay through two single-producer
 * rings of SIZE-byte slots in shared memory (what a VIO link is), with eventfd doorbells
 * rung only when the other side has said it is asleep. The relays share one TCP
 * connection (TCP_NODELAY). Every message is exactly SIZE bytes, so there is no framing,
 * no link id, no credit, no acknowledgement, no checksum: only the copies and wake-ups no
 * relay can avoid. The sender copies its message into the ring; relay A writes ring slots
 * to the socket in one writev; relay B reads the socket straight into instance B's ring;
 * instance B consumes in place. Instances sleep when they wait (VIO's `--wait sleep`);
 * relays sleep in poll(2), or with `poll` look again at once, yielding the core.
 * Instances run on CPUs 0 (A) and 1 (B); relays are not pinned (as VIO's agents).
 * rtt: 64 B-style ping-pong, prints percentiles; stream: A -> B, prints GB/s.
 */
#define _GNU_SOURCE
#include "bench_common.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define SLOTS 16

/* A single-producer single-consumer ring with a doorbell per direction of waiting. */
struct ring {
    _Alignas(64) _Atomic uint64_t tail;  /* written by the producer */
    _Alignas(64) _Atomic uint64_t head;  /* written by the consumer */
    _Alignas(64) _Atomic int data_armed; /* the consumer sleeps on data_fd */
    _Atomic int space_armed;             /* the producer sleeps on space_fd */
    int data_fd, space_fd;
    size_t slot;
    char *slots;
};

static size_t size, count;
static int polling;
static const char *netns_a, *netns_b, *addr_b;
static int rtt_mode;
/* In memory shared by the four processes. a_out: A -> relay A, a_in: relay A -> A, ... */
struct shared { struct ring a_out, a_in, b_in, b_out; _Atomic int listening; };
static struct shared *sh;
#define a_out (sh->a_out)
#define a_in (sh->a_in)
#define b_in (sh->b_in)
#define b_out (sh->b_out)
#define listening (sh->listening)

static void *shared_alloc(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    return p;
}

static void ring_init(struct ring *r) {
    r->slot = size;
    r->slots = shared_alloc(size * SLOTS);
    r->data_fd = eventfd(0, EFD_NONBLOCK);
    r->space_fd = eventfd(0, EFD_NONBLOCK);
}

static inline uint64_t used(struct ring *r) { return atomic_load(&r->tail) - atomic_load(&r->head); }
static inline char *slot_at(struct ring *r, uint64_t i) { return r->slots + (i % SLOTS) * r->slot; }

static void ring_bell(_Atomic int *armed, int fd) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(armed, memory_order_relaxed) && atomic_exchange(armed, 0)) {
        uint64_t one = 1;
        if (write(fd, &one, 8) != 8) abort();
    }
}

/* Sleeps on `fd` until ready(r) holds, arming first and checking again (no lost wake-up). */
static void sleep_until(struct ring *r, _Atomic int *armed, int fd, int (*ready)(struct ring *)) {
    while (!ready(r)) {
        atomic_store(armed, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (ready(r)) { atomic_store(armed, 0); return; }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        poll(&p, 1, -1);
        uint64_t v;
        if (read(fd, &v, 8) < 0 && errno != EAGAIN) abort();
    }
}
static int has_data(struct ring *r) { return used(r) > 0; }
static int has_space(struct ring *r) { return used(r) < SLOTS; }

static void push(struct ring *r, const char *msg) {
    sleep_until(r, &r->space_armed, r->space_fd, has_space);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    memcpy(slot_at(r, t), msg, size);
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    ring_bell(&r->data_armed, r->data_fd);
}

static void pop(struct ring *r) { /* consumes in place */
    sleep_until(r, &r->data_armed, r->data_fd, has_data);
    atomic_store_explicit(&r->head, atomic_load(&r->head) + 1, memory_order_release);
    ring_bell(&r->space_armed, r->space_fd);
}

/* One host's relay: ring `out` to the socket, the socket into ring `in`. */
static void relay(int sock, struct ring *out, struct ring *in) {
    size_t partial = 0; /* bytes of the message being read into `in` */
    for (;;) {
        int progress = 0;
        uint64_t h = atomic_load_explicit(&out->head, memory_order_relaxed);
        uint64_t n = atomic_load_explicit(&out->tail, memory_order_acquire) - h;
        if (n > 0) {
            struct iovec iov[SLOTS];
            for (uint64_t i = 0; i < n; i++) iov[i] = (struct iovec){ slot_at(out, h + i), size };
            uint64_t taken = n;
            size_t total = n * size;
            while (total > 0) { /* blocking socket: a partial write only when interrupted */
                ssize_t w = writev(sock, iov, (int)n);
                if (w <= 0) return;
                total -= (size_t)w;
                while (w > 0) {
                    size_t take = (size_t)w < iov[0].iov_len ? (size_t)w : iov[0].iov_len;
                    iov[0].iov_base = (char *)iov[0].iov_base + take; iov[0].iov_len -= take; w -= (ssize_t)take;
                    if (iov[0].iov_len == 0) { memmove(iov, iov + 1, sizeof(iov[0]) * (--n)); }
                }
            }
            atomic_store_explicit(&out->head, h + taken, memory_order_release);
            ring_bell(&out->space_armed, out->space_fd);
            progress = 1;
        }
        while (has_space(in)) {
            uint64_t t = atomic_load_explicit(&in->tail, memory_order_relaxed);
            ssize_t r = recv(sock, slot_at(in, t) + partial, size - partial, MSG_DONTWAIT);
            if (r == 0) return;
            if (r < 0) { if (errno == EAGAIN) break; return; }
            progress = 1;
            partial += (size_t)r;
            if (partial == size) {
                partial = 0;
                atomic_store_explicit(&in->tail, t + 1, memory_order_release);
                ring_bell(&in->data_armed, in->data_fd);
            }
        }
        if (progress) continue;
        if (polling) { sched_yield(); continue; }
        atomic_store(&out->data_armed, 1);
        int full = !has_space(in);
        if (full) atomic_store(&in->space_armed, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (has_data(out) || (full && has_space(in))) continue;
        struct pollfd p[2] = { { .fd = out->data_fd, .events = POLLIN },
                               { .fd = full ? in->space_fd : sock, .events = POLLIN } };
        poll(p, 2, -1);
        uint64_t v;
        if (p[0].revents && read(out->data_fd, &v, 8) < 0 && errno != EAGAIN) abort();
        if (full && p[1].revents && read(in->space_fd, &v, 8) < 0 && errno != EAGAIN) abort();
    }
}

static struct sockaddr_in target(void) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(7398) };
    inet_pton(AF_INET, addr_b, &a.sin_addr);
    return a;
}

static void *relay_b(void *unused) {
    (void)unused;
    enter_netns(netns_b);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = target();
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1)) { perror("bind"); exit(1); }
    atomic_store(&listening, 1);
    int s = accept(l, NULL, NULL);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    relay(s, &b_out, &b_in);
    return NULL;
}

static void *relay_a(void *unused) {
    (void)unused;
    enter_netns(netns_a);
    while (!atomic_load(&listening)) usleep(1000);
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = target();
    if (connect(s, (struct sockaddr *)&a, sizeof(a))) { perror("connect"); exit(1); }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    relay(s, &a_out, &a_in);
    return NULL;
}

static void *instance_b(void *unused) {
    (void)unused;
    pin(1);
    size_t warm = count / 10;
    char *msg = calloc(1, size);
    if (rtt_mode) {
        for (size_t i = 0; i < count + warm; i++) { pop(&b_in); push(&b_out, msg); }
        return NULL;
    }
    pop(&b_in);
    for (size_t i = 1; i < warm; i++) pop(&b_in);
    uint64_t start = now_ns();
    for (size_t i = 0; i < count; i++) pop(&b_in);
    double secs = (double)(now_ns() - start) / 1e9;
    printf("bw gb_per_s=%.3f size=%zu\n", (double)count * (double)size / secs / 1e9, size);
    fflush(stdout);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: relay_floor rtt|stream SIZE COUNT NETNS_A NETNS_B ADDR_B sleep|poll\n");
        return 2;
    }
    rtt_mode = strcmp(argv[1], "rtt") == 0;
    size = (size_t)atoi(argv[2]);
    count = (size_t)strtoull(argv[3], NULL, 10);
    netns_a = argv[4]; netns_b = argv[5]; addr_b = argv[6];
    polling = strcmp(argv[7], "poll") == 0;
    sh = shared_alloc(sizeof(*sh));
    ring_init(&a_out); ring_init(&a_in); ring_init(&b_in); ring_init(&b_out);
    pid_t children[3];
    void *(*bodies[3])(void *) = { relay_b, relay_a, instance_b };
    for (int i = 0; i < 3; i++) {
        if ((children[i] = fork()) == 0) { bodies[i](NULL); _exit(0); }
    }
    pin(0);
    size_t warm = count / 10;
    char *msg = calloc(1, size);
    if (rtt_mode) {
        uint64_t *samples = malloc(sizeof(uint64_t) * count);
        for (size_t i = 0; i < count + warm; i++) {
            uint64_t s = now_ns();
            push(&a_out, msg);
            pop(&a_in);
            if (i >= warm) samples[i - warm] = now_ns() - s;
        }
        waitpid(children[2], NULL, 0);
        report_rtt(samples, count, (int)size);
    } else {
        for (size_t i = 0; i < count + warm; i++) push(&a_out, msg);
        waitpid(children[2], NULL, 0);
    }
    kill(children[0], SIGKILL); kill(children[1], SIGKILL); /* the relays wait on their sockets */
    waitpid(children[0], NULL, 0); waitpid(children[1], NULL, 0);
    return 0;
}
