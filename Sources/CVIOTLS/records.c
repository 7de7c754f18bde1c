/* TLS 1.3 record protection (RFC 8446 sections 5.2-5.3, 7.1-7.3); see records.h. */
#include "records.h"

#include <stdio.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>

int vio_hkdf_expand_label(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
                          uint8_t *out, size_t out_len) {
    /* HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>. */
    uint8_t info[2 + 1 + 255 + 1];
    size_t label_len = strlen(label);
    if (label_len > 255 - 6 || out_len > 0xffff) return -1;
    size_t n = 0;
    info[n++] = (uint8_t)(out_len >> 8);
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(6 + label_len);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = 0;

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kctx) return -1;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(kctx);
    return ok ? 0 : -1;
}

/* Keys one direction from its traffic secret: write key and IV, sequence number 0. */
static int key_direction(vio_records *r, vio_direction *d, const uint8_t *secret) {
    uint8_t key[32];
    if (secret != d->secret) memcpy(d->secret, secret, r->hash_len);
    int ok = vio_hkdf_expand_label(r->digest, d->secret, r->hash_len, "key", key, r->key_len) == 0 &&
             vio_hkdf_expand_label(r->digest, d->secret, r->hash_len, "iv", d->iv, sizeof d->iv) == 0;
    if (ok && !d->ctx) ok = (d->ctx = EVP_CIPHER_CTX_new()) != NULL;
    /* The direction (encrypt or decrypt) is chosen per record; the key is set once here. */
    ok = ok && EVP_CipherInit_ex(d->ctx, r->cipher, NULL, key, NULL, -1) == 1;
    OPENSSL_cleanse(key, sizeof key);
    d->seq = 0;
    return ok ? 0 : -1;
}

int vio_records_init(vio_records *r, uint16_t suite, const uint8_t *seal_secret, const uint8_t *open_secret,
                     char *err, size_t errlen) {
    switch (suite) {
    case 0x1301: r->cipher = EVP_aes_128_gcm(); r->digest = "SHA256"; r->key_len = 16; r->hash_len = 32; break;
    case 0x1302: r->cipher = EVP_aes_256_gcm(); r->digest = "SHA384"; r->key_len = 32; r->hash_len = 48; break;
    case 0x1303: r->cipher = EVP_chacha20_poly1305(); r->digest = "SHA256"; r->key_len = 32; r->hash_len = 32; break;
    default:
        snprintf(err, errlen, "the negotiated cipher suite 0x%04x has no VIO record layer", suite);
        return -1;
    }
    if (key_direction(r, &r->seal, seal_secret) != 0 || key_direction(r, &r->open, open_secret) != 0) {
        snprintf(err, errlen, "cannot derive the traffic keys");
        return -1;
    }
    return 0;
}

void vio_records_free(vio_records *r) {
    EVP_CIPHER_CTX_free(r->seal.ctx);
    EVP_CIPHER_CTX_free(r->open.ctx);
    OPENSSL_cleanse(r, sizeof *r);
}

int vio_records_next_key(vio_records *r, vio_direction *d) {
    uint8_t next[VIO_MAX_SECRET];
    if (vio_hkdf_expand_label(r->digest, d->secret, r->hash_len, "traffic upd", next, r->hash_len) != 0) return -1;
    int result = key_direction(r, d, next);
    OPENSSL_cleanse(next, sizeof next);
    return result;
}

/* The per-record nonce: the IV with the 64-bit sequence number XORed into its last 8 bytes. */
static void nonce(const vio_direction *d, uint8_t out[12]) {
    memcpy(out, d->iv, 12);
    for (int i = 0; i < 8; i++) out[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

size_t vio_records_seal(vio_records *r, uint8_t type, const uint8_t *data, size_t len, uint8_t *out) {
    vio_direction *d = &r->seal;
    size_t ciphertext = len + 1 + VIO_RECORD_TAG;
    out[0] = 0x17;  /* every protected record says application_data outside */
    out[1] = 0x03;
    out[2] = 0x03;
    out[3] = (uint8_t)(ciphertext >> 8);
    out[4] = (uint8_t)ciphertext;
    uint8_t iv[12];
    nonce(d, iv);
    int n = 0;
    uint8_t *body = out + VIO_RECORD_HEADER;
    /* Sealing cannot fail with a keyed context and these lengths; the results are not checked
     * per call to keep the hot path short (a failure would show as a record the peer rejects). */
    EVP_CipherInit_ex(d->ctx, NULL, NULL, NULL, iv, 1);
    EVP_CipherUpdate(d->ctx, NULL, &n, out, VIO_RECORD_HEADER);
    if (len > 0) EVP_CipherUpdate(d->ctx, body, &n, data, (int)len);
    EVP_CipherUpdate(d->ctx, body + len, &n, &type, 1);
    EVP_CipherFinal_ex(d->ctx, body + len + 1, &n);
    EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, VIO_RECORD_TAG, body + len + 1);
    d->seq++;
    return VIO_RECORD_HEADER + ciphertext;
}

long vio_records_open(vio_records *r, const uint8_t *rec, size_t ciphertext_len, uint8_t *out, uint8_t *type) {
    vio_direction *d = &r->open;
    if (ciphertext_len < 1 + VIO_RECORD_TAG) return -1;
    size_t inner = ciphertext_len - VIO_RECORD_TAG;
    uint8_t iv[12];
    nonce(d, iv);
    int n = 0;
    int ok = EVP_CipherInit_ex(d->ctx, NULL, NULL, NULL, iv, 0) == 1 &&
             EVP_CipherUpdate(d->ctx, NULL, &n, rec, VIO_RECORD_HEADER) == 1 &&
             EVP_CipherUpdate(d->ctx, out, &n, rec + VIO_RECORD_HEADER, (int)inner) == 1 &&
             EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, VIO_RECORD_TAG,
                                 (void *)(rec + VIO_RECORD_HEADER + inner)) == 1 &&
             EVP_CipherFinal_ex(d->ctx, out + inner, &n) == 1;
    if (!ok) return -1;
    d->seq++;
    /* TLSInnerPlaintext: content, then the content type, then zero padding. */
    size_t end = inner;
    while (end > 0 && out[end - 1] == 0) end--;
    if (end == 0) return -1;
    *type = out[end - 1];
    return (long)(end - 1);
}

long vio_tls_seal_with_secret(uint16_t suite, const uint8_t *secret, uint64_t seq, uint8_t type,
                              const uint8_t *data, size_t len, uint8_t *out) {
    vio_records r = {0};
    char err[128];
    if (len > VIO_RECORD_MAX_PLAINTEXT || vio_records_init(&r, suite, secret, secret, err, sizeof err) != 0) return -1;
    r.seal.seq = seq;
    long size = (long)vio_records_seal(&r, type, data, len, out);
    vio_records_free(&r);
    return size;
}
