/* Agent identity helpers shared by identity.c and tls.c. Private to CVIOTLS. */
#ifndef CVIOTLS_IDENTITY_H
#define CVIOTLS_IDENTITY_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* OpenSSL's newest queued reason, or `fallback`. Empties the thread's error queue. */
void vio_take_openssl_error(char *out, size_t len, const char *fallback);
/* The Ed25519 private key in the PEM file `path`, or NULL with `err` filled. */
EVP_PKEY *vio_load_key(const char *path, char *err, size_t errlen);
/* The raw 32-byte public half of `key`: 0, or -1. */
int vio_public_key_of(EVP_PKEY *key, uint8_t pub[32]);
/* A self-signed certificate that only carries `key`, or NULL. */
X509 *vio_self_signed(EVP_PKEY *key);

#endif
