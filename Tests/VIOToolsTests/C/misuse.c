/* Misuse of the C ABI gives documented errors, never a crash. Prints one line per check and
 * "misuse: N passed, M failed". Needs an agent with instances db1 and db2 linked. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include "vio.h"

static int passed, failed;
#define CHECK(cond, what) do { if (cond) passed++; else { failed++; printf("FAILED: %s\n", what); } } while (0)

int main(void) {
    vio_client *a = NULL, *b = NULL;
    vio_link *la = NULL, *lb = NULL;
    char buf[8];
    size_t len = 0;
    void *claim;
    const void *zc;

    CHECK(vio_abi_version() == VIO_ABI_VERSION, "ABI version");
    CHECK(strcmp(vio_strerror(VIO_EPEERGONE), "peer gone (exited or detached)") == 0, "strerror");
    CHECK(vio_strerror(12345) != NULL, "strerror of an unknown code");
    CHECK(vio_attach(NULL, NULL, NULL, &a) == VIO_EINVAL, "attach NULL instance");
    CHECK(vio_attach("db1", NULL, NULL, NULL) == VIO_EINVAL, "attach NULL out");
    CHECK(vio_attach("nobody-such", NULL, NULL, &a) == VIO_EREFUSED && a == NULL, "attach unknown instance");
    CHECK(strstr(vio_last_error(), "no instance 'nobody-such'") != NULL, "last error says why");
    CHECK(vio_attach("db1", NULL, NULL, &a) == VIO_OK, "attach db1");
    CHECK(vio_attach("db2", NULL, NULL, &b) == VIO_OK, "attach db2");
    CHECK(vio_open_link(NULL, "db2", 0, &la) == VIO_EINVAL, "open NULL client");
    CHECK(vio_open_link(a, NULL, 0, &la) == VIO_EINVAL, "open NULL peer");
    CHECK(vio_open_link(a, "db3", 0, &la) == VIO_EREFUSED, "open undeclared link");
    CHECK(vio_open_link(a, "db2", 1000, &la) == VIO_OK, "open");
    CHECK(vio_accept_link(b, 1000, &lb) == VIO_OK, "accept");
    CHECK(strcmp(vio_link_peer(lb), "db1") == 0, "peer name");

    CHECK(vio_send(NULL, "x", 1, 0) == VIO_EINVAL, "send NULL link");
    CHECK(vio_send(la, NULL, 5, 0) == VIO_EINVAL, "send NULL data");
    CHECK(vio_recv(lb, buf, sizeof(buf), &len, 0) == VIO_EAGAIN, "receive on empty: would block");
    CHECK(vio_recv(lb, buf, sizeof(buf), &len, 20) == VIO_ETIMEDOUT, "receive timeout");
    CHECK(vio_send(la, "0123456789ABCDEF", 16, 0) == VIO_OK, "send 16 bytes");
    CHECK(vio_recv(lb, buf, sizeof(buf), &len, 1000) == VIO_EMSGSIZE && len == 16, "buffer too small reports the size");
    char big[16];
    CHECK(vio_recv(lb, big, sizeof(big), &len, 1000) == VIO_OK && len == 16 && memcmp(big, "0123456789ABCDEF", 16) == 0,
          "the message stayed queued");
    CHECK(vio_recv(lb, NULL, 4, &len, 0) == VIO_EINVAL, "receive NULL buffer");
    CHECK(vio_recv(lb, buf, sizeof(buf), NULL, 0) == VIO_EINVAL, "receive NULL length");
    CHECK(vio_commit(la, 1) == VIO_EMISUSE, "commit without claim");
    CHECK(vio_recv_done(lb) == VIO_EMISUSE, "recv_done without recv_zc");
    CHECK(vio_claim(la, vio_link_max_claim(la) + 1, 0, &claim) == VIO_EMSGSIZE, "claim beyond a record");
    CHECK(vio_claim(la, 4, 0, &claim) == VIO_OK, "claim");
    CHECK(vio_claim(la, 4, 0, &claim) == VIO_EMISUSE, "second claim");
    memcpy(claim, "zcmp", 4);
    CHECK(vio_commit(la, 5) == VIO_EMISUSE, "commit more than claimed");
    CHECK(vio_commit(la, 4) == VIO_OK, "commit");
    CHECK(vio_recv_zc(lb, &zc, &len, 1000) == VIO_OK && len == 4 && memcmp(zc, "zcmp", 4) == 0, "zero-copy receive");
    CHECK(vio_recv(lb, buf, sizeof(buf), &len, 0) == VIO_EMISUSE, "receive before recv_done");
    CHECK(vio_recv_done(lb) == VIO_OK, "recv_done");
    CHECK(vio_link_set_wait(la, 7) == VIO_EINVAL, "bad wait mode");
    vio_counters c;
    CHECK(vio_link_counters(la, &c) == VIO_OK && c.sent_messages == 2, "counters");
    CHECK(vio_link_counters(la, NULL) == VIO_EINVAL, "counters NULL out");

    CHECK(vio_link_close(la) == VIO_OK, "close");
    CHECK(vio_link_close(la) == VIO_ECLOSED, "double close");
    CHECK(vio_send(la, "x", 1, 0) == VIO_ECLOSED, "send on a closed link");
    CHECK(vio_link_state(lb) == VIO_EPEERCLOSED, "peer sees the close in the state");
    CHECK(vio_recv(lb, buf, sizeof(buf), &len, 1000) == VIO_EPEERCLOSED, "peer receives peer-closed");
    CHECK(vio_link_close(NULL) == VIO_EINVAL, "close NULL");
    vio_link_release(NULL);
    vio_detach(NULL);
    vio_link_release(la);
    vio_link_release(lb);
    vio_detach(a);
    vio_detach(b);
    printf("misuse: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
