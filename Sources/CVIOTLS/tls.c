/* TLS 1.3 between agents over OpenSSL; see include/CVIOTLS.h. */
#include "CVIOTLS.h"

#define VIO_TLS_WRITE_BUFFER (256 * 1024)

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct vio_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct vio_tls {
    SSL *ssl;
    uint8_t *allowed;
    int count;
    int matched;
    int wants_write;
    int dialer;
    char error[256];
};

static int session_index = -1;
static pthread_once_t session_index_once = PTHREAD_ONCE_INIT;
static void make_session_index(void) { session_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/* OpenSSL's newest queued reason, or `fallback`. Empties the thread's error queue. */
static void take_openssl_error(char *out, size_t len, const char *fallback) {
    unsigned long code = ERR_peek_last_error();
    if (code != 0) ERR_error_string_n(code, out, len);
    else snprintf(out, len, "%s", fallback);
    ERR_clear_error();
}

static EVP_PKEY *load_key(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key) {
        char why[200];
        take_openssl_error(why, sizeof why, "not a PEM private key");
        snprintf(err, errlen, "%s is not a PEM private key (%s)", path, why);
        return NULL;
    }
    if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "%s holds a %s key; VIO agents use Ed25519 keys (vioctl keys generate)", path,
                 OBJ_nid2sn(EVP_PKEY_get_id(key)));
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

static int public_key_of(EVP_PKEY *key, uint8_t pub[VIO_TLS_KEY_BYTES]) {
    size_t len = VIO_TLS_KEY_BYTES;
    return EVP_PKEY_get_raw_public_key(key, pub, &len) == 1 && len == VIO_TLS_KEY_BYTES ? 0 : -1;
}

int vio_tls_generate_key(const char *path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen) {
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!key) { take_openssl_error(err, errlen, "key generation failed"); return -1; }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        EVP_PKEY_free(key);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    int ok = f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (f) ok = (fclose(f) == 0) && ok; else close(fd);
    if (!ok || public_key_of(key, pub) != 0) {
        snprintf(err, errlen, "cannot write %s", path);
        unlink(path);
        EVP_PKEY_free(key);
        return -1;
    }
    EVP_PKEY_free(key);
    return 0;
}

int vio_tls_read_public_key(const char *path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen) {
    EVP_PKEY *key = load_key(path, err, errlen);
    if (!key) return -1;
    int r = public_key_of(key, pub);
    if (r != 0) snprintf(err, errlen, "cannot read the public key of %s", path);
    EVP_PKEY_free(key);
    return r;
}

void vio_tls_base64(const uint8_t *in, size_t len, char *out) { EVP_EncodeBlock((unsigned char *)out, in, (int)len); }

/* The certificate only carries the key: self-signed, long-lived; peers check the key, not
 * the name or the dates (the topology is the trust anchor). */
static X509 *self_signed(EVP_PKEY *key) {
    X509 *x = X509_new();
    if (!x) return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    int ok = X509_set_version(x, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -86400) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(x), 100L * 365 * 86400) != NULL &&
             X509_set_pubkey(x, key) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"vio-agent", -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, name) == 1 && X509_sign(x, key, NULL) > 0;
    if (!ok) { X509_free(x); return NULL; }
    return x;
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
    if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 || public_key_of(key, pub) != 0) {
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
    EVP_PKEY *key = load_key(key_path, err, errlen);
    if (!key) return NULL;
    if (public_key_of(key, pub) != 0) {
        snprintf(err, errlen, "cannot read the public key of %s", key_path);
        EVP_PKEY_free(key);
        return NULL;
    }
    X509 *cert = self_signed(key);
    SSL_CTX *c = SSL_CTX_new(TLS_method());
    int ok = cert && c && SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1 &&
             SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) == 1 &&
             /* AES-GCM first: AES-NI makes it the fastest here; ChaCha20 for CPUs without it. */
             SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") == 1 &&
             SSL_CTX_use_certificate(c, cert) == 1 && SSL_CTX_use_PrivateKey(c, key) == 1 &&
             SSL_CTX_check_private_key(c) == 1;
    if (!ok) {
        take_openssl_error(err, errlen, "cannot set up TLS");
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
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_default_read_buffer_len(c, 64 * 1024);
    vio_tls_ctx *ctx = calloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    return ctx;
}

void vio_tls_ctx_free(vio_tls_ctx *ctx) {
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

vio_tls *vio_tls_new(vio_tls_ctx *ctx, int fd, int dialer, const uint8_t *allowed, int count, char *err, size_t errlen) {
    vio_tls *tls = calloc(1, sizeof *tls);
    tls->matched = -1;
    tls->dialer = dialer;
    tls->count = count;
    tls->allowed = malloc((size_t)(count > 0 ? count : 1) * VIO_TLS_KEY_BYTES);
    if (count > 0) memcpy(tls->allowed, allowed, (size_t)count * VIO_TLS_KEY_BYTES);
    tls->ssl = SSL_new(ctx->ssl_ctx);
    /* Reads go straight to the socket; writes collect records in a buffer flushed once per
     * vio_tls_flush, so a batch of frames (and small records) costs one send. */
    BIO *rbio = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wsock = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wbuf = BIO_new(BIO_f_buffer());
    BIO *wbio = NULL;
    if (wbuf && wsock && BIO_set_write_buffer_size(wbuf, VIO_TLS_WRITE_BUFFER) == 1) wbio = BIO_push(wbuf, wsock);
    if (tls->ssl && rbio && wbio) {
        SSL_set_bio(tls->ssl, rbio, wbio);  /* the session owns them now */
    } else {
        BIO_free(rbio);
        if (wbio) BIO_free_all(wbio);
        else { BIO_free(wbuf); BIO_free(wsock); }
        rbio = wbio = NULL;
    }
    if (!tls->ssl || !wbio || SSL_set_ex_data(tls->ssl, session_index, tls) != 1) {
        take_openssl_error(err, errlen, "cannot create a TLS session");
        vio_tls_free(tls);
        return NULL;
    }
    if (dialer) SSL_set_connect_state(tls->ssl); else SSL_set_accept_state(tls->ssl);
    return tls;
}

void vio_tls_free(vio_tls *tls) {
    if (!tls) return;
    SSL_free(tls->ssl);
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
        if (tls->error[0] == 0) take_openssl_error(tls->error, sizeof tls->error, "TLS failure");
        else ERR_clear_error();
        return VIO_TLS_FAILED;
    }
}

int vio_tls_handshake(vio_tls *tls) {
    errno = 0;
    int r = SSL_do_handshake(tls->ssl);
    return r == 1 ? 1 : (int)outcome(tls, r);
}

int vio_tls_established(const vio_tls *tls) { return SSL_is_init_finished(tls->ssl); }

int vio_tls_wants_write(const vio_tls *tls) { return tls->wants_write; }

long vio_tls_read(vio_tls *tls, void *buf, size_t len) {
    size_t got = 0;
    errno = 0;
    int r = SSL_read_ex(tls->ssl, buf, len, &got);
    return r == 1 ? (long)got : outcome(tls, r);
}

long vio_tls_write(vio_tls *tls, const void *buf, size_t len) {
    size_t put = 0;
    errno = 0;
    int r = SSL_write_ex(tls->ssl, buf, len, &put);
    return r == 1 ? (long)put : outcome(tls, r);
}

int vio_tls_flush(vio_tls *tls) {
    BIO *wbio = SSL_get_wbio(tls->ssl);
    errno = 0;
    if (BIO_flush(wbio) == 1) return 1;
    if (BIO_should_retry(wbio)) { tls->wants_write = 1; return VIO_TLS_WOULD_BLOCK; }
    snprintf(tls->error, sizeof tls->error, "socket: %s", errno ? strerror(errno) : "write failed");
    return VIO_TLS_FAILED;
}

int vio_tls_pending(const vio_tls *tls) { return SSL_pending(tls->ssl); }

int vio_tls_key_update(vio_tls *tls) {
    int r = SSL_key_update(tls->ssl, SSL_KEY_UPDATE_REQUESTED);
    if (r != 1) take_openssl_error(tls->error, sizeof tls->error, "key update refused");
    return r;
}

int vio_tls_peer_index(const vio_tls *tls) { return tls->matched; }

const char *vio_tls_description(vio_tls *tls, char *out, size_t len) {
    snprintf(out, len, "%s %s", SSL_get_version(tls->ssl), SSL_get_cipher_name(tls->ssl));
    return out;
}

const char *vio_tls_error(const vio_tls *tls) { return tls->error; }
