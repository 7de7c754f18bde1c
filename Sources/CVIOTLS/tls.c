/* TLS 1.3 sessions between agents: OpenSSL context and handshake, then VIO's record layer
 * (records.c); key files and certificates are in identity.c. See include/CVIOTLS.h. */
#include "CVIOTLS.h"
#include "identity.h"
#include "records.h"

#define VIO_TLS_WRITE_BUFFER (256 * 1024)

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct vio_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct vio_tls {
    SSL *ssl;
    int fd;
    uint8_t *allowed;
    int count;
    int matched;
    int wants_write;
    int dialer;
    /* The peer asked for new keys: our own KeyUpdate goes before our next record (RFC 8446
     * 4.6.3). Owed once however often the peer asks, so a peer that asks in a loop while it
     * does not read costs one record, not one per request. */
    int update_owed;
    /* The last socket read returned less than it was asked for (or nothing): the socket was
     * empty then, and epoll reports whatever arrives after it. */
    int socket_empty;
    /* After the handshake, records are sealed and opened by VIO (records.c), or by OpenSSL
     * (kept for the interoperability tests). */
    int openssl_records;
    int records_ready;
    vio_records records;
    /* The application traffic secrets, from OpenSSL's key log, until the records take them. */
    uint8_t client_secret[VIO_MAX_SECRET], server_secret[VIO_MAX_SECRET];
    int secrets_seen;
    size_t secret_len;
    /* Ciphertext read from the socket: [in_start, in_end) not yet opened. */
    uint8_t *in;
    size_t in_start, in_end;
    /* Application bytes of an opened record the caller has not taken yet. */
    uint8_t *plain;
    size_t plain_len;
    /* Records (and handshake messages) waiting for the socket: [out_start, out_end). */
    uint8_t *out;
    size_t out_start, out_end;
    char error[256];
};

/* Ciphertext read ahead: several records per read, and always room for one whole record. */
#define VIO_TLS_IN_CAPACITY (64 * 1024 + VIO_RECORD_MAX)
/* Writes stop taking bytes once this much waits for the socket. */
#define VIO_TLS_OUT_CAPACITY (VIO_TLS_WRITE_BUFFER + 2 * VIO_RECORD_MAX)
/* Records sealed under one key before a key update is forced: RFC 8446 5.5 allows AES-GCM
 * 2^24.5 full-size records per key. */
#define VIO_TLS_RECORDS_PER_KEY (1ull << 24)

/* Watches the reads of the session's socket BIO (the handshake's) to see when they come back short. */
static long watch_reads(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                        int ret, size_t *processed) {
    (void)argp; (void)argi; (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        vio_tls *tls = (vio_tls *)BIO_get_callback_arg(b);
        tls->socket_empty = ret <= 0 || (processed && *processed < len);
    }
    return ret;
}

static int session_index = -1;
static pthread_once_t session_index_once = PTHREAD_ONCE_INIT;
static void make_session_index(void) { session_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* OpenSSL's key log hands over each secret as it derives it ("LABEL client_random secret",
 * hex); the application traffic secrets are kept for the record layer. */
static void keep_traffic_secret(const SSL *ssl, const char *line) {
    vio_tls *tls = SSL_get_ex_data(ssl, session_index);
    if (!tls) return;
    uint8_t *secret;
    int bit;
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) { secret = tls->client_secret; bit = 1; }
    else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) { secret = tls->server_secret; bit = 2; }
    else return;
    const char *space = strrchr(line, ' ');
    if (!space) return;
    const char *hex = space + 1;
    size_t len = strlen(hex) / 2;
    if (len > VIO_MAX_SECRET) return;
    for (size_t i = 0; i < len; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return;
        secret[i] = (uint8_t)(hi << 4 | lo);
    }
    tls->secret_len = len;
    tls->secrets_seen |= bit;
}

/* Accepts the peer's certificate only if its Ed25519 key is one of the session's allowed
 * keys; the reason for a refusal is kept for the agent's log. */
static int verify_peer(int preverified, X509_STORE_CTX *store) {
    (void)preverified;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    vio_tls *tls = ssl ? SSL_get_ex_data(ssl, session_index) : NULL;
    if (!tls) return 0;
    if (X509_STORE_CTX_get_error_depth(store) != 0) {
        snprintf(tls->error, sizeof tls->error, "the peer sent a certificate chain; VIO agents present one key");
        return 0;
    }
    EVP_PKEY *key = X509_get0_pubkey(X509_STORE_CTX_get_current_cert(store));
    uint8_t pub[VIO_TLS_KEY_BYTES];
    if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 || vio_public_key_of(key, pub) != 0) {
        snprintf(tls->error, sizeof tls->error, "the peer's certificate does not carry an Ed25519 key");
        return 0;
    }
    for (int i = 0; i < tls->count; i++) {
        if (CRYPTO_memcmp(pub, tls->allowed + (size_t)i * VIO_TLS_KEY_BYTES, VIO_TLS_KEY_BYTES) == 0) {
            tls->matched = i;
            return 1;
        }
    }
    char text[64];
    vio_tls_base64(pub, VIO_TLS_KEY_BYTES, text);
    snprintf(tls->error, sizeof tls->error, "the peer presented key ed25519:%s, which the topology does not give %s",
             text, tls->dialer ? "the host dialed" : "any host that may connect");
    return 0;
}

vio_tls_ctx *vio_tls_ctx_new(const char *key_path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen) {
    pthread_once(&session_index_once, make_session_index);
    EVP_PKEY *key = vio_load_key(key_path, err, errlen);
    if (!key) return NULL;
    if (vio_public_key_of(key, pub) != 0) {
        snprintf(err, errlen, "cannot read the public key of %s", key_path);
        EVP_PKEY_free(key);
        return NULL;
    }
    X509 *cert = vio_self_signed(key);
    SSL_CTX *c = SSL_CTX_new(TLS_method());
    int ok = cert && c && SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
             SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) == 1 &&
             /* AES-GCM first: AES-NI makes it the fastest here; ChaCha20 for CPUs without it. */
             SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") == 1 &&
             SSL_CTX_use_certificate(c, cert) == 1 && SSL_CTX_use_PrivateKey(c, key) == 1 &&
             SSL_CTX_check_private_key(c) == 1;
    if (!ok) {
        vio_take_openssl_error(err, errlen, "cannot set up TLS");
        SSL_CTX_free(c);
        X509_free(cert);
        EVP_PKEY_free(key);
        return NULL;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_peer);
    SSL_CTX_set_num_tickets(c, 0);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* An abrupt close (a killed agent) reads as end of stream: frames are whole or absent. */
    SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* No read-ahead: when the handshake ends, the socket must hold everything after it, so
     * the record layer below starts at a record boundary. */
    SSL_CTX_set_keylog_callback(c, keep_traffic_secret);
    vio_tls_ctx *ctx = calloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    return ctx;
}

void vio_tls_ctx_free(vio_tls_ctx *ctx) {
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

vio_tls *vio_tls_new(vio_tls_ctx *ctx, int fd, int dialer, int openssl_records, const uint8_t *allowed, int count,
                     char *err, size_t errlen) {
    vio_tls *tls = calloc(1, sizeof *tls);
    tls->fd = fd;
    tls->matched = -1;
    tls->dialer = dialer;
    tls->openssl_records = openssl_records;
    tls->count = count;
    tls->allowed = malloc((size_t)(count > 0 ? count : 1) * VIO_TLS_KEY_BYTES);
    if (count > 0) memcpy(tls->allowed, allowed, (size_t)count * VIO_TLS_KEY_BYTES);
    tls->in = malloc(VIO_TLS_IN_CAPACITY);
    tls->out = malloc(VIO_TLS_OUT_CAPACITY);
    tls->ssl = SSL_new(ctx->ssl_ctx);
    /* OpenSSL reads the handshake from the socket; everything it writes is collected in
     * memory and sent from `out`, in order with the records that follow. */
    BIO *rbio = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wbio = BIO_new(BIO_s_mem());
    if (tls->ssl && rbio && wbio) {
        BIO_set_callback_arg(rbio, (char *)tls);
        BIO_set_callback_ex(rbio, watch_reads);
        SSL_set_bio(tls->ssl, rbio, wbio);  /* the session owns them now */
    } else {
        BIO_free(rbio);
        BIO_free(wbio);
        wbio = NULL;
    }
    if (!tls->ssl || !wbio || !tls->in || !tls->out || SSL_set_ex_data(tls->ssl, session_index, tls) != 1) {
        vio_take_openssl_error(err, errlen, "cannot create a TLS session");
        vio_tls_free(tls);
        return NULL;
    }
    if (dialer) SSL_set_connect_state(tls->ssl); else SSL_set_accept_state(tls->ssl);
    return tls;
}

void vio_tls_free(vio_tls *tls) {
    if (!tls) return;
    SSL_free(tls->ssl);
    if (tls->records_ready) vio_records_free(&tls->records);
    OPENSSL_cleanse(tls->client_secret, sizeof tls->client_secret);
    OPENSSL_cleanse(tls->server_secret, sizeof tls->server_secret);
    free(tls->in);
    free(tls->out);
    free(tls->allowed);
    free(tls);
}

/* Maps an OpenSSL result to ours, keeping the reason of a failure. */
static long outcome(vio_tls *tls, int ret) {
    int code = SSL_get_error(tls->ssl, ret);
    switch (code) {
    case SSL_ERROR_WANT_READ: tls->wants_write = 0; ERR_clear_error(); return VIO_TLS_WOULD_BLOCK;
    case SSL_ERROR_WANT_WRITE: tls->wants_write = 1; ERR_clear_error(); return VIO_TLS_WOULD_BLOCK;
    case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return VIO_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_last_error() == 0) {
            if (errno == 0) return VIO_TLS_CLOSED;
            snprintf(tls->error, sizeof tls->error, "socket: %s", strerror(errno));
            return VIO_TLS_FAILED;
        }
        /* fall through */
    default:
        if (tls->error[0] == 0) vio_take_openssl_error(tls->error, sizeof tls->error, "TLS failure");
        else ERR_clear_error();
        return VIO_TLS_FAILED;
    }
}

static long failed(vio_tls *tls, const char *why) {
    if (tls->error[0] == 0) snprintf(tls->error, sizeof tls->error, "%s", why);
    return VIO_TLS_FAILED;
}

/* Makes room for `need` more bytes at the end of `out`, moving what waits to the front:
 * 0, or -1 when even then they do not fit (nothing may be written then). */
static int make_room(vio_tls *tls, size_t need) {
    if (VIO_TLS_OUT_CAPACITY - tls->out_end >= need) return 0;
    size_t waiting = tls->out_end - tls->out_start;
    memmove(tls->out, tls->out + tls->out_start, waiting);
    tls->out_start = 0;
    tls->out_end = waiting;
    return VIO_TLS_OUT_CAPACITY - tls->out_end >= need ? 0 : -1;
}

/* Moves what OpenSSL wrote (handshake messages, or its records) into `out`, as far as it fits. */
static void take_openssl_output(vio_tls *tls) {
    BIO *w = SSL_get_wbio(tls->ssl);
    size_t pending = BIO_ctrl_pending(w);
    if (pending == 0) return;
    make_room(tls, pending);
    size_t room = VIO_TLS_OUT_CAPACITY - tls->out_end;
    int n = BIO_read(w, tls->out + tls->out_end, (int)(pending < room ? pending : room));
    if (n > 0) tls->out_end += (size_t)n;
}

/* Sends `out`: 1 all sent, WOULD_BLOCK when the socket is full, FAILED. */
static int send_output(vio_tls *tls) {
    while (tls->out_start < tls->out_end) {
        ssize_t n = send(tls->fd, tls->out + tls->out_start, tls->out_end - tls->out_start, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) { tls->out_start += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { tls->wants_write = 1; return VIO_TLS_WOULD_BLOCK; }
        snprintf(tls->error, sizeof tls->error, "socket: %s", n < 0 ? strerror(errno) : "send returned 0");
        return VIO_TLS_FAILED;
    }
    tls->out_start = tls->out_end = 0;
    return 1;
}

static int established(const vio_tls *tls) {
    return SSL_is_init_finished(tls->ssl) && (tls->openssl_records || tls->records_ready);
}

/* One step of OpenSSL's handshake; when it completes, the record layer takes the keys. */
static int step_handshake(vio_tls *tls) {
    errno = 0;
    int r = SSL_do_handshake(tls->ssl);
    int result = r == 1 ? 1 : (int)outcome(tls, r);
    take_openssl_output(tls);
    int sent = send_output(tls);
    if (result != 1) return sent == VIO_TLS_FAILED ? VIO_TLS_FAILED : result;
    if (sent == VIO_TLS_FAILED) return VIO_TLS_FAILED;
    if (!tls->openssl_records && !tls->records_ready) {
        if (tls->secrets_seen != 3) return (int)failed(tls, "the handshake ended without application traffic secrets");
        const uint8_t *mine = tls->dialer ? tls->client_secret : tls->server_secret;
        const uint8_t *theirs = tls->dialer ? tls->server_secret : tls->client_secret;
        const SSL_CIPHER *suite = SSL_get_current_cipher(tls->ssl);
        if (vio_records_init(&tls->records, suite ? SSL_CIPHER_get_protocol_id(suite) : 0, mine, theirs,
                             tls->error, sizeof tls->error) != 0) {
            vio_records_free(&tls->records);
            return VIO_TLS_FAILED;
        }
        if (tls->secret_len != tls->records.hash_len) {
            vio_records_free(&tls->records);
            return (int)failed(tls, "the key log gave a traffic secret of the wrong length");
        }
        tls->records_ready = 1;
        OPENSSL_cleanse(tls->client_secret, sizeof tls->client_secret);
        OPENSSL_cleanse(tls->server_secret, sizeof tls->server_secret);
    }
    return 1;
}

int vio_tls_handshake(vio_tls *tls) { return established(tls) ? 1 : step_handshake(tls); }

int vio_tls_established(const vio_tls *tls) { return established(tls); }

int vio_tls_wants_write(const vio_tls *tls) { return tls->wants_write; }

/* Seals a KeyUpdate (RFC 8446 4.6.3) under the current key, then moves to the next one:
 * 0, or -1 (the session failed) when `out` has no room for it. */
static int seal_key_update(vio_tls *tls, int requested) {
    uint8_t message[5] = {24, 0, 0, 1, (uint8_t)(requested ? 1 : 0)};
    if (make_room(tls, VIO_RECORD_HEADER + sizeof message + 1 + VIO_RECORD_TAG) != 0) {
        failed(tls, "no room to queue a KeyUpdate: the peer does not read what this side sends");
        return -1;
    }
    tls->out_end += vio_records_seal(&tls->records, 22, message, sizeof message, tls->out + tls->out_end);
    vio_records_next_key(&tls->records, &tls->records.seal);
    return 0;
}

/* Handshake messages after the handshake: KeyUpdate moves the read key (and, when asked,
 * queues ours before any further data); NewSessionTicket is ignored (no resumption). */
static long post_handshake(vio_tls *tls, const uint8_t *msg, size_t len) {
    while (len > 0) {
        if (len < 4) return failed(tls, "a handshake message split across records after the handshake");
        size_t body = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
        if (4 + body > len) return failed(tls, "a handshake message split across records after the handshake");
        if (msg[0] == 24) {
            if (body != 1 || msg[4] > 1) return failed(tls, "malformed KeyUpdate");
            if (4 + body != len) return failed(tls, "data after a KeyUpdate in the same record");
            if (vio_records_next_key(&tls->records, &tls->records.open) != 0) return failed(tls, "cannot derive the next traffic key");
            if (msg[4] == 1) tls->update_owed = 1;
        } else if (msg[0] != 4) {
            char why[96];
            snprintf(why, sizeof why, "unexpected handshake message %u after the handshake", msg[0]);
            return failed(tls, why);
        }
        msg += 4 + body;
        len -= 4 + body;
    }
    return 0;
}

/* The ciphertext length a record header announces. */
static size_t ciphertext_length(const uint8_t *header) { return (size_t)header[3] << 8 | header[4]; }

/* Opens records from the socket until application bytes reach `buf`. */
static long read_records(vio_tls *tls, uint8_t *buf, size_t len) {
    for (;;) {
        if (tls->plain_len > 0) {
            size_t n = tls->plain_len < len ? tls->plain_len : len;
            memcpy(buf, tls->plain, n);
            tls->plain += n;
            tls->plain_len -= n;
            return (long)n;
        }
        size_t buffered = tls->in_end - tls->in_start;
        if (buffered >= VIO_RECORD_HEADER) {
            const uint8_t *rec = tls->in + tls->in_start;
            size_t ciphertext = ciphertext_length(rec);
            if (rec[0] != 0x17) {
                char why[96];
                snprintf(why, sizeof why, "unexpected record type %u after the handshake", rec[0]);
                return failed(tls, why);
            }
            if (rec[1] != 0x03 || rec[2] != 0x03) return failed(tls, "bad record version");
            if (ciphertext > VIO_RECORD_MAX_CIPHERTEXT) return failed(tls, "record overflow");
            if (buffered >= VIO_RECORD_HEADER + ciphertext) {
                /* Straight into the caller's buffer when the record fits, else in place. */
                int direct = ciphertext >= VIO_RECORD_TAG && ciphertext - VIO_RECORD_TAG <= len;
                uint8_t *dst = direct ? buf : tls->in + tls->in_start + VIO_RECORD_HEADER;
                uint8_t type = 0;
                long content = vio_records_open(&tls->records, rec, ciphertext, dst, &type);
                tls->in_start += VIO_RECORD_HEADER + ciphertext;
                if (content < 0) return failed(tls, "bad record mac: a record failed its integrity check (changed, replayed or reordered)");
                switch (type) {
                case 23:
                    if (content == 0) continue;
                    if (direct) return content;
                    tls->plain = dst;
                    tls->plain_len = (size_t)content;
                    continue;
                case 22:
                    if (post_handshake(tls, dst, (size_t)content) != 0) return VIO_TLS_FAILED;
                    continue;
                case 21:
                    if (content == 2 && dst[1] == 0) return VIO_TLS_CLOSED;  /* close_notify */
                    {
                        char why[64];
                        snprintf(why, sizeof why, "the peer sent TLS alert %u", content == 2 ? dst[1] : 0);
                        return failed(tls, why);
                    }
                default:
                    return failed(tls, "unexpected content type in a record");
                }
            }
        }
        /* More ciphertext: keep the partial record, then read as much as fits. */
        if (tls->in_start == tls->in_end) tls->in_start = tls->in_end = 0;
        else if (VIO_TLS_IN_CAPACITY - tls->in_end < VIO_RECORD_MAX) {
            memmove(tls->in, tls->in + tls->in_start, buffered);
            tls->in_start = 0;
            tls->in_end = buffered;
        }
        size_t room = VIO_TLS_IN_CAPACITY - tls->in_end;
        ssize_t n;
        do n = read(tls->fd, tls->in + tls->in_end, room); while (n < 0 && errno == EINTR);
        if (n > 0) {
            tls->in_end += (size_t)n;
            tls->socket_empty = (size_t)n < room;
            continue;
        }
        tls->socket_empty = 1;
        if (n == 0) return VIO_TLS_CLOSED;  /* end of stream: frames are whole or absent */
        if (errno == EAGAIN || errno == EWOULDBLOCK) { tls->wants_write = 0; return VIO_TLS_WOULD_BLOCK; }
        snprintf(tls->error, sizeof tls->error, "socket: %s", strerror(errno));
        return VIO_TLS_FAILED;
    }
}

long vio_tls_read(vio_tls *tls, void *buf, size_t len) {
    if (!established(tls)) {
        int r = step_handshake(tls);
        if (r != 1) return r;
    }
    if (!tls->openssl_records) return read_records(tls, buf, len);
    size_t got = 0;
    errno = 0;
    int r = SSL_read_ex(tls->ssl, buf, len, &got);
    take_openssl_output(tls);
    return r == 1 ? (long)got : outcome(tls, r);
}

/* Seals `buf` into records in `out`, sending when `out` is full. */
static long write_records(vio_tls *tls, const uint8_t *buf, size_t len) {
    if (tls->update_owed) {
        if (seal_key_update(tls, 0) != 0) return VIO_TLS_FAILED;
        tls->update_owed = 0;
    }
    if (tls->records.seal.seq >= VIO_TLS_RECORDS_PER_KEY && seal_key_update(tls, 1) != 0) return VIO_TLS_FAILED;
    size_t taken = 0;
    while (taken < len) {
        if (tls->out_end - tls->out_start >= VIO_TLS_WRITE_BUFFER) {
            int sent = send_output(tls);
            if (sent == VIO_TLS_FAILED) return taken > 0 ? (long)taken : VIO_TLS_FAILED;
            if (tls->out_end - tls->out_start >= VIO_TLS_WRITE_BUFFER) break;
        }
        size_t chunk = len - taken < VIO_RECORD_MAX_PLAINTEXT ? len - taken : VIO_RECORD_MAX_PLAINTEXT;
        if (make_room(tls, VIO_RECORD_HEADER + chunk + 1 + VIO_RECORD_TAG) != 0) break;
        tls->out_end += vio_records_seal(&tls->records, 23, buf + taken, chunk, tls->out + tls->out_end);
        taken += chunk;
    }
    if (taken == 0 && len > 0) { tls->wants_write = 1; return VIO_TLS_WOULD_BLOCK; }
    return (long)taken;
}

long vio_tls_write(vio_tls *tls, const void *buf, size_t len) {
    if (!established(tls)) {
        int r = step_handshake(tls);
        if (r != 1) return r;
    }
    if (!tls->openssl_records) return write_records(tls, buf, len);
    size_t put = 0;
    errno = 0;
    int r = SSL_write_ex(tls->ssl, buf, len, &put);
    take_openssl_output(tls);
    return r == 1 ? (long)put : outcome(tls, r);
}

int vio_tls_flush(vio_tls *tls) {
    for (;;) {
        take_openssl_output(tls);
        int sent = send_output(tls);
        if (sent != 1) return sent;
        if (BIO_ctrl_pending(SSL_get_wbio(tls->ssl)) == 0) return 1;
    }
}

/* A whole record waits in `in`. */
static int record_buffered(const vio_tls *tls) {
    size_t buffered = tls->in_end - tls->in_start;
    if (buffered < VIO_RECORD_HEADER) return 0;
    return buffered >= VIO_RECORD_HEADER + ciphertext_length(tls->in + tls->in_start);
}

int vio_tls_drained(const vio_tls *tls) {
    if (!tls->socket_empty) return 0;
    if (tls->openssl_records || !tls->records_ready) return !SSL_has_pending(tls->ssl);
    return tls->plain_len == 0 && !record_buffered(tls);
}

int vio_tls_key_update(vio_tls *tls) {
    if (tls->records_ready) {
        /* A request also answers one the peer made. */
        if (seal_key_update(tls, 1) != 0) return 0;
        tls->update_owed = 0;
        return 1;
    }
    int r = SSL_key_update(tls->ssl, SSL_KEY_UPDATE_REQUESTED);
    if (r != 1) vio_take_openssl_error(tls->error, sizeof tls->error, "key update refused");
    return r;
}

int vio_tls_peer_index(const vio_tls *tls) { return tls->matched; }

const char *vio_tls_description(vio_tls *tls, char *out, size_t len) {
    snprintf(out, len, "%s %s", SSL_get_version(tls->ssl), SSL_get_cipher_name(tls->ssl));
    return out;
}

const char *vio_tls_error(const vio_tls *tls) { return tls->error; }

/* MARK: record protection for a second carrier */

struct vio_tls_seal {
    vio_records records;
};

vio_tls_seal *vio_tls_export_seal(vio_tls *tls, char *err, size_t errlen) {
    if (!vio_tls_established(tls)) {
        snprintf(err, errlen, "the TLS handshake is not complete");
        return NULL;
    }
    const SSL_CIPHER *suite = SSL_get_current_cipher(tls->ssl);
    uint16_t id = suite ? SSL_CIPHER_get_protocol_id(suite) : 0;
    size_t hash_len = id == 0x1302 ? 48 : 32;
    uint8_t dialer[VIO_MAX_SECRET], acceptor[VIO_MAX_SECRET];
    static const char dialer_label[] = "EXPORTER-vio carrier dialer";
    static const char acceptor_label[] = "EXPORTER-vio carrier acceptor";
    if (SSL_export_keying_material(tls->ssl, dialer, hash_len, dialer_label, sizeof dialer_label - 1, NULL, 0, 0) != 1 ||
        SSL_export_keying_material(tls->ssl, acceptor, hash_len, acceptor_label, sizeof acceptor_label - 1, NULL, 0, 0) != 1) {
        snprintf(err, errlen, "SSL_export_keying_material failed");
        return NULL;
    }
    vio_tls_seal *seal = calloc(1, sizeof *seal);
    int ok = seal && vio_records_init(&seal->records, id, tls->dialer ? dialer : acceptor,
                                      tls->dialer ? acceptor : dialer, err, errlen) == 0;
    OPENSSL_cleanse(dialer, sizeof dialer);
    OPENSSL_cleanse(acceptor, sizeof acceptor);
    if (!ok) {
        if (seal) vio_records_free(&seal->records);
        free(seal);
        return NULL;
    }
    return seal;
}

void vio_tls_seal_free(vio_tls_seal *seal) {
    if (!seal) return;
    vio_records_free(&seal->records);
    free(seal);
}

long vio_tls_seal_record(vio_tls_seal *seal, const uint8_t *data, size_t len, uint8_t *out) {
    if (len == 0 || len > VIO_RECORD_MAX_PLAINTEXT) return -1;
    return (long)vio_records_seal(&seal->records, 23 /* application_data */, data, len, out);
}

long vio_tls_open_record(vio_tls_seal *seal, uint8_t *record, size_t len) {
    if (len < VIO_RECORD_HEADER + 1 + VIO_RECORD_TAG || len > VIO_RECORD_MAX) return -1;
    size_t ciphertext = ((size_t)record[3] << 8) | record[4];
    if (record[0] != 23 || ciphertext != len - VIO_RECORD_HEADER) return -1;
    uint8_t type = 0;
    long n = vio_records_open(&seal->records, record, ciphertext, record + VIO_RECORD_HEADER, &type);
    return n < 0 || type != 23 ? -1 : n;
}
