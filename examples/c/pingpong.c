/* VIO ping-pong in C, against vio.h only.
 *
 *   pingpong server INSTANCE            accept a link, echo every message until the peer closes
 *   pingpong client INSTANCE PEER COUNT SIZE
 *                                       send COUNT messages of SIZE bytes, check each echo,
 *                                       print the round-trip p50/p99 in microseconds
 *
 * The control socket comes from $VIO_CONTROL_SOCKET (or the runtime-directory default). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "vio.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "%s: %s (%s)\n", what, vio_strerror(rc), vio_last_error());
    return rc == VIO_EPEERGONE ? 5 : 1;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int server(const char *instance) {
    vio_client *client;
    vio_link *link;
    int rc = vio_attach(instance, NULL, NULL, &client);
    if (rc) return fail("attach", rc);
    printf("attached\n");
    fflush(stdout);
    if ((rc = vio_accept_link(client, 30000, &link))) return fail("accept", rc);
    printf("serving %s\n", vio_link_peer(link));
    fflush(stdout);
    long echoed = 0;
    for (;;) {
        const void *data;
        size_t len;
        rc = vio_recv_zc(link, &data, &len, -1);            /* read in place */
        if (rc == VIO_EPEERCLOSED) break;
        if (rc) return fail("receive", rc);
        if (len <= vio_link_max_claim(link)) {             /* reply in place: one copy */
            void *out;
            if ((rc = vio_claim(link, len, 10000, &out))) return fail("claim", rc);
            memcpy(out, data, len);
            vio_recv_done(link);
            if ((rc = vio_commit(link, len))) return fail("commit", rc);
        } else {                                           /* large: fragmented send */
            rc = vio_send(link, data, len, 10000);
            vio_recv_done(link);
            if (rc) return fail("send", rc);
        }
        echoed++;
    }
    printf("echoed %ld\n", echoed);
    vio_link_release(link);
    vio_detach(client);
    return 0;
}

static int client_main(const char *instance, const char *peer, long count, size_t size) {
    vio_client *client;
    vio_link *link;
    int rc = vio_attach(instance, NULL, NULL, &client);
    if (rc) return fail("attach", rc);
    if ((rc = vio_open_link(client, peer, 30000, &link))) return fail("open", rc);
    unsigned char *out = malloc(size ? size : 1), *in = malloc(size ? size : 1);
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)count);
    for (long i = 0; i < count; i++) {
        for (size_t j = 0; j < size; j++) out[j] = (unsigned char)(i * 31 + j * 7);
        size_t got = 0;
        uint64_t start = now_ns();
        if ((rc = vio_send(link, out, size, 10000))) return fail("send", rc);
        if ((rc = vio_recv(link, in, size, &got, 10000))) return fail("receive", rc);
        samples[i] = now_ns() - start;
        if (got != size || memcmp(in, out, size) != 0) {
            fprintf(stderr, "message %ld came back different (%zu bytes)\n", i, got);
            return 2;
        }
    }
    qsort(samples, (size_t)count, sizeof(uint64_t), cmp);
    printf("rtt_us p50=%.2f p99=%.2f n=%ld size=%zu\nok\n", samples[count / 2] / 1e3,
           samples[count * 99 / 100] / 1e3, count, size);
    vio_link_close(link);
    vio_link_release(link);
    vio_detach(client);
    free(out); free(in); free(samples);
    return 0;
}

int main(int argc, char **argv) {
    if (vio_abi_version() != VIO_ABI_VERSION) {
        fprintf(stderr, "libvio ABI %d, built against %d\n", vio_abi_version(), VIO_ABI_VERSION);
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "server") == 0) return server(argv[2]);
    if (argc == 6 && strcmp(argv[1], "client") == 0)
        return client_main(argv[2], argv[3], atol(argv[4]), (size_t)atol(argv[5]));
    fprintf(stderr, "usage: %s server INSTANCE | client INSTANCE PEER COUNT SIZE\n", argv[0]);
    return 2;
}
