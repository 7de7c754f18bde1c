/* Agent identity: Ed25519 key files and the certificate that carries the key; see identity.h. */
#include "CVIOTLS.h"
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

/* OpenSSL's newest queued reason, or `fallback`. Empties the thread's error queue. */
void vio_take_openssl_error(char *out, size_t len, const char *fallback) {
    unsigned long code = ERR_peek_last_error();
    if (code != 0) ERR_error_string_n(code, out, len);
    else snprintf(out, len, "%s", fallback);
    ERR_clear_error();
}

EVP_PKEY *vio_load_key(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key) {
        char why[200];
        vio_take_openssl_error(why, sizeof why, "not a PEM private key");
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

int vio_public_key_of(EVP_PKEY *key, uint8_t pub[VIO_TLS_KEY_BYTES]) {
    size_t len = VIO_TLS_KEY_BYTES;
    return EVP_PKEY_get_raw_public_key(key, pub, &len) == 1 && len == VIO_TLS_KEY_BYTES ? 0 : -1;
}

int vio_tls_generate_key(const char *path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen) {
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!key) { vio_take_openssl_error(err, errlen, "key generation failed"); return -1; }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        EVP_PKEY_free(key);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    int ok = f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (f) ok = (fclose(f) == 0) && ok; else close(fd);
    if (!ok || vio_public_key_of(key, pub) != 0) {
        snprintf(err, errlen, "cannot write %s", path);
        unlink(path);
        EVP_PKEY_free(key);
        return -1;
    }
    EVP_PKEY_free(key);
    return 0;
}

int vio_tls_read_public_key(const char *path, uint8_t pub[VIO_TLS_KEY_BYTES], char *err, size_t errlen) {
    EVP_PKEY *key = vio_load_key(path, err, errlen);
    if (!key) return -1;
    int r = vio_public_key_of(key, pub);
    if (r != 0) snprintf(err, errlen, "cannot read the public key of %s", path);
    EVP_PKEY_free(key);
    return r;
}

void vio_tls_base64(const uint8_t *in, size_t len, char *out) { EVP_EncodeBlock((unsigned char *)out, in, (int)len); }

/* The certificate only carries the key: self-signed, long-lived; peers check the key, not
 * the name or the dates (the topology is the trust anchor). */
X509 *vio_self_signed(EVP_PKEY *key) {
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
