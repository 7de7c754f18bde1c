/* The TLS 1.3 record layer (RFC 8446 section 5) VIO runs after OpenSSL's handshake, the way
 * kernel TLS takes over a socket: OpenSSL negotiates and authenticates, then records are
 * sealed and opened here with the negotiated AEAD, straight between the caller's buffers and
 * the socket's. Private to CVIOTLS. */
#ifndef CVIOTLS_RECORDS_H
#define CVIOTLS_RECORDS_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define VIO_RECORD_HEADER 5
#define VIO_RECORD_TAG 16
#define VIO_RECORD_MAX_PLAINTEXT 16384
/* Largest ciphertext a peer may send: 2^14 + 256 (RFC 8446 5.2). */
#define VIO_RECORD_MAX_CIPHERTEXT (VIO_RECORD_MAX_PLAINTEXT + 256)
#define VIO_RECORD_MAX (VIO_RECORD_HEADER + VIO_RECORD_MAX_CIPHERTEXT)
#define VIO_MAX_SECRET 48

/* One direction's traffic protection: its secret (for key updates), AEAD context and IV. */
typedef struct {
    EVP_CIPHER_CTX *ctx;
    uint8_t secret[VIO_MAX_SECRET];
    uint8_t iv[12];
    uint64_t seq;
} vio_direction;

typedef struct {
    const EVP_CIPHER *cipher;
    const char *digest;
    size_t key_len, hash_len;
    vio_direction seal, open;
} vio_records;

/* Sets up both directions from the handshake's application traffic secrets for `suite` (the
 * TLS 1.3 cipher suite's number, e.g. 0x1301). 0 on success, -1 with `err` filled. */
int vio_records_init(vio_records *r, uint16_t suite, const uint8_t *seal_secret, const uint8_t *open_secret,
                     char *err, size_t errlen);
void vio_records_free(vio_records *r);

/* Appends one record of `type` holding `len` (<= 2^14) bytes to `out` (room for len + 22
 * bytes): the record's size. */
size_t vio_records_seal(vio_records *r, uint8_t type, const uint8_t *data, size_t len, uint8_t *out);

/* Opens the record `rec` (header and `ciphertext_len` bytes after it) into `out` (room for
 * ciphertext_len - 16; may be rec + 5). Returns the content's length and sets `type`, or -1
 * when the tag does not verify or the record holds no content type. */
long vio_records_open(vio_records *r, const uint8_t *rec, size_t ciphertext_len, uint8_t *out, uint8_t *type);

/* Moves one direction to its next traffic secret (KeyUpdate). 0 on success. */
int vio_records_next_key(vio_records *r, vio_direction *d);

/* HKDF-Expand-Label (RFC 8446 7.1) with an empty context. 0 on success. */
int vio_hkdf_expand_label(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
                          uint8_t *out, size_t out_len);

#endif
