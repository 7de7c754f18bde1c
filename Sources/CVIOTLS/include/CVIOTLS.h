/* TLS 1.3 between agents, over the system's OpenSSL (libssl3). The Swift side sees opaque
 * handles and plain return codes; OpenSSL's types stay in tls.c.
 *
 * Identity: each agent has an Ed25519 private key (PEM file). Its certificate is generated
 * in memory at start-up (self-signed, a carrier for the key); the peer is accepted when the
 * certificate's Ed25519 public key is one the caller allows (from the topology), and TLS 1.3's
 * CertificateVerify proves it holds the private key. */
#ifndef CVIOTLS_H
#define CVIOTLS_H
#include <stddef.h>
#include <stdint.h>

#define VIO_TLS_KEY_BYTES 32

typedef struct vio_tls_ctx vio_tls_ctx;
typedef struct vio_tls vio_tls;

/* Results of vio_tls_read / vio_tls_write / vio_tls_handshake. */
enum {
    VIO_TLS_WOULD_BLOCK = 0,   /* try again when the socket is ready */
    VIO_TLS_CLOSED = -1,       /* the peer closed (close_notify or end of stream) */
    VIO_TLS_FAILED = -2        /* error: vio_tls_error() says what */
};

/* Creates an Ed25519 key, writes it as PEM (PKCS#8) to `path` with mode 0600 (the file must
 * not exist), and returns its public key. 0 on success, -1 with `err` filled. */
int vio_tls_generate_key(const char *path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen);

/* Reads the public key of the Ed25519 private key in `path`. */
int vio_tls_read_public_key(const char *path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen);

/* Standard base64 of `len` bytes into `out` (needs 4*ceil(len/3)+1 bytes). */
void vio_tls_base64(const uint8_t *in, size_t len, char *out);

/* A TLS 1.3-only context for both roles, with the private key in `key_path` and a
 * certificate made from it; `pub` receives the key's public half. NULL with `err` filled on
 * failure. */
vio_tls_ctx *vio_tls_ctx_new(const char *key_path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen);
void vio_tls_ctx_free(vio_tls_ctx *ctx);

/* A TLS session on the connected non-blocking socket `fd` (not owned). `allowed` holds
 * `count` public keys of 32 bytes; the peer must present one of them. Dialers pass the one
 * host they dialed, acceptors every host that may connect. OpenSSL runs the handshake; then
 * VIO's record layer seals and opens the records (RFC 8446 section 5, with the negotiated
 * keys), or OpenSSL's own when `openssl_records` is set (interoperability tests). */
vio_tls *vio_tls_new(vio_tls_ctx *ctx, int fd, int dialer, int openssl_records, const uint8_t *allowed, int count,
                     char *err, size_t errlen);
void vio_tls_free(vio_tls *tls);

/* Drives the handshake: 1 done, or one of the codes above. */
int vio_tls_handshake(vio_tls *tls);
/* 1 once the handshake is complete. */
int vio_tls_established(const vio_tls *tls);
/* Whether the last WOULD_BLOCK waits for the socket to be writable (else readable). */
int vio_tls_wants_write(const vio_tls *tls);
/* Reads decrypted bytes: > 0 bytes, or one of the codes above (runs the handshake first). */
long vio_tls_read(vio_tls *tls, void *buf, size_t len);
/* Encrypts up to `len` bytes into records, sent when the write buffer fills or at
 * vio_tls_flush: > 0 bytes taken, or one of the codes above. */
long vio_tls_write(vio_tls *tls, const void *buf, size_t len);
/* Sends the records vio_tls_write buffered: 1 all sent, or one of the codes above. */
int vio_tls_flush(vio_tls *tls);
/* 1 when the session holds no input (decrypted or not) and its last socket read came back
 * short: reading again before the socket turns readable would only return WOULD_BLOCK. */
int vio_tls_drained(const vio_tls *tls);
/* Seals one TLS 1.3 record as the record layer does, from an application traffic secret
 * (32 or 48 bytes for `suite`) at sequence number `seq`: its size in `out` (len + 22 bytes),
 * or -1. For known-answer tests against RFC 8448. */
long vio_tls_seal_with_secret(uint16_t suite, const uint8_t *secret, uint64_t seq, uint8_t type,
                              const uint8_t *data, size_t len, uint8_t *out);
/* Schedules a key update (new traffic keys both ways) with the next write. 1 ok. */
int vio_tls_key_update(vio_tls *tls);
/* Index into `allowed` of the key the peer proved, or -1 before/without one. */
int vio_tls_peer_index(const vio_tls *tls);
/* The negotiated suite and version, e.g. "TLSv1.3 TLS_AES_128_GCM_SHA256". */
const char *vio_tls_description(vio_tls *tls, char *out, size_t len);
/* Record protection for a second carrier between the same two agents (an RDMA queue pair
 * that carries what this session authenticated): one key per direction, exported from the
 * session (RFC 8446 7.5, labels "EXPORTER-vio carrier dialer|acceptor"), the session's
 * suite, TLS 1.3 records with implicit sequence numbers, so a record that is changed,
 * replayed, dropped or reordered fails to open. NULL with `err` filled before the
 * handshake is complete. */
typedef struct vio_tls_seal vio_tls_seal;
vio_tls_seal *vio_tls_export_seal(vio_tls *tls, char *err, size_t errlen);
void vio_tls_seal_free(vio_tls_seal *seal);
/* Seals 1 to 16384 bytes into one record at `out` (len + 22 bytes): the record's size, or -1. */
long vio_tls_seal_record(vio_tls_seal *seal, const uint8_t *data, size_t len, uint8_t *out);
/* Opens the `len`-byte record at `record` in place: its content (at record + 5) length, or
 * -1 when it does not verify or is malformed. */
long vio_tls_open_record(vio_tls_seal *seal, uint8_t *record, size_t len);

/* Why the last call failed (OpenSSL's reason or the key check's). */
const char *vio_tls_error(const vio_tls *tls);

#endif
