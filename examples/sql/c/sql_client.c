/* A C client of vio-sql-server, against vio.h only: the same wire format as the Swift CLI
 * (examples/sql/README.md).
 *
 *   sql_client INSTANCE SERVER SQL [PARAM...]
 *
 * Runs SQL once, binding each PARAM to a `?` (an integer when it reads as one, else text),
 * and prints the rows as `a|b|c` lines. Exit status: 0, 1 an SQL error, 2 VIO failed. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vio.h"

typedef struct { uint8_t *p; size_t len, cap; } buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) { perror("realloc"); exit(2); }
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}
/* Little-endian, as the wire wants (this example assumes a little-endian host: x86-64, arm64). */
static void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(buf *b, uint16_t v) { put(b, &v, 2); }
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_i64(buf *b, int64_t v) { put(b, &v, 8); }

typedef struct { const uint8_t *p; size_t len, at; } reader;

static int take(reader *r, void *out, size_t n) {
    if (r->len - r->at < n) return -1;
    memcpy(out, r->p + r->at, n);
    r->at += n;
    return 0;
}

/* Prints one value as `sqlite3 -list` does; -1 on a malformed reply. */
static int print_value(reader *r) {
    uint8_t type;
    if (take(r, &type, 1)) return -1;
    switch (type) {
    case 0: return 0;
    case 1: { int64_t v; if (take(r, &v, 8)) return -1; printf("%lld", (long long)v); return 0; }
    case 2: { double v; if (take(r, &v, 8)) return -1; printf("%g", v); return 0; }
    case 3: case 4: {
        uint32_t n;
        if (take(r, &n, 4) || r->len - r->at < n) return -1;
        if (type == 3) fwrite(r->p + r->at, 1, n, stdout);
        else { printf("x'"); for (uint32_t i = 0; i < n; i++) printf("%02x", r->p[r->at + i]); printf("'"); }
        r->at += n;
        return 0;
    }
    default: return -1;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s INSTANCE SERVER SQL [PARAM...]\n", argv[0]); return 2; }
    vio_client *client;
    vio_link *link;
    int rc = vio_attach(argv[1], NULL, NULL, &client);
    if (rc) { fprintf(stderr, "attach: %s (%s)\n", vio_strerror(rc), vio_last_error()); return 2; }
    rc = vio_open_link(client, argv[2], 5000, &link);
    if (rc) { fprintf(stderr, "open: %s (%s)\n", vio_strerror(rc), vio_last_error()); return 2; }

    buf req = {0};
    put_u8(&req, 1);                      /* version */
    put_u16(&req, (uint16_t)(argc - 4));  /* parameters */
    for (int i = 4; i < argc; i++) {
        char *end;
        long long v = strtoll(argv[i], &end, 10);
        if (*argv[i] && !*end) { put_u8(&req, 1); put_i64(&req, v); }
        else { put_u8(&req, 3); put_u32(&req, (uint32_t)strlen(argv[i])); put(&req, argv[i], strlen(argv[i])); }
    }
    put_u32(&req, (uint32_t)strlen(argv[3]));
    put(&req, argv[3], strlen(argv[3]));
    rc = vio_send(link, req.p, req.len, 5000);
    if (rc) { fprintf(stderr, "send: %s (%s)\n", vio_strerror(rc), vio_last_error()); return 2; }

    /* Zero-copy receive: the reply is read in place in the ring, however large. */
    const void *data;
    size_t len;
    rc = vio_recv_zc(link, &data, &len, 30000);
    if (rc) { fprintf(stderr, "recv: %s (%s)\n", vio_strerror(rc), vio_last_error()); return 2; }
    reader r = { data, len, 0 };
    uint8_t version, status;
    int result = 0;
    if (take(&r, &version, 1) || take(&r, &status, 1) || version != 1) goto malformed;
    if (status == 1) {
        uint32_t n;
        if (take(&r, &n, 4) || r.len - r.at < n) goto malformed;
        fprintf(stderr, "error: %.*s\n", (int)n, (const char *)r.p + r.at);
        result = 1;
    } else {
        uint16_t columns;
        uint32_t rows, n;
        if (take(&r, &columns, 2)) goto malformed;
        for (uint16_t c = 0; c < columns; c++) {
            if (take(&r, &n, 4) || r.len - r.at < n) goto malformed;
            r.at += n;
        }
        if (take(&r, &rows, 4)) goto malformed;
        for (uint32_t i = 0; i < rows; i++) {
            for (uint16_t c = 0; c < columns; c++) {
                if (c) putchar('|');
                if (print_value(&r)) goto malformed;
            }
            putchar('\n');
        }
    }
    vio_recv_done(link);
    vio_link_release(link);
    vio_detach(client);
    free(req.p);
    return result;
malformed:
    fprintf(stderr, "malformed reply from the server\n");
    return 2;
}
