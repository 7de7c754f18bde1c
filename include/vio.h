/*
 * vio.h — the C ABI of libvio, the VIO fabric's client library (plain C99, usable from C++).
 *
 * Link with -lvio (pkg-config vio). libvio.so carries the Swift runtime statically: a C or
 * C++ program needs no Swift toolchain, flags or libraries.
 *
 * Conventions
 * - Functions returning int return VIO_OK (0) or a negative VIO_E* code; vio_strerror() names
 *   it. Nothing sets errno.
 * - timeout_ms: 0 never waits (VIO_EAGAIN if the call would block), -1 waits forever, > 0 waits
 *   at most that many milliseconds (VIO_ETIMEDOUT).
 * - Ownership: handles (vio_client, vio_link) are created by libvio and freed only by
 *   vio_detach() / vio_link_release(). Strings returned by libvio (vio_strerror,
 *   vio_link_peer) are owned by libvio and valid as documented. Buffers passed in stay the
 *   caller's; libvio does not keep pointers to them after the call.
 * - Threads: a vio_client may be used from any thread (calls are serialised). A vio_link may
 *   have one sending thread and one receiving thread at a time; vio_link_close may be called
 *   from any thread.
 * - NULL handles or pointers where a value is required return VIO_EINVAL, never crash.
 */
#ifndef VIO_H
#define VIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Library version (major * 10000 + minor * 100 + patch) and ABI version of this header. */
#define VIO_VERSION 100
#define VIO_ABI_VERSION 1

/* The ABI version of the loaded libvio: compare with VIO_ABI_VERSION at start-up. */
int vio_abi_version(void);
/* The version of the loaded libvio, as VIO_VERSION. */
int vio_version(void);

/* Error codes. */
enum {
    VIO_OK = 0,
    VIO_EINVAL = -1,        /* a NULL or invalid argument */
    VIO_EAGAIN = -2,        /* would block (timeout_ms == 0) */
    VIO_ETIMEDOUT = -3,     /* nothing happened before the timeout */
    VIO_EPEERCLOSED = -4,   /* the peer closed the link; all it sent was delivered */
    VIO_EPEERGONE = -5,     /* the peer's process exited or detached */
    VIO_ECORRUPT = -6,      /* shared memory corrupted: the link is closed */
    VIO_EMSGSIZE = -7,      /* message larger than the link allows, or buffer too small */
    VIO_ECLOSED = -8,       /* this end closed the link (or a second close) */
    VIO_EREFUSED = -9,      /* the agent refused (unknown instance, uid, token, undeclared link...) */
    VIO_EAGENT = -10,       /* the agent is unreachable or went away (also: a link to another host whose local agent died) */
    VIO_EPROTO = -11,       /* protocol violation */
    VIO_ESYSTEM = -12,      /* a system call failed */
    VIO_EMISUSE = -13,      /* invalid sequence, e.g. commit without claim */
    VIO_EHOSTDOWN = -14,    /* the peer's host is unreachable */
    VIO_ECANCELED = -15,    /* reserved */
    VIO_ENOTRESPONDING = -16, /* the peer left the ring full and unread too long (stopped?); the link stays open */
    VIO_EREMOVED = -17      /* the agent closed the link: a topology reload removed it or its peer */
};

/* A static, human-readable name for an error code (never NULL). */
const char *vio_strerror(int code);

/* The calling thread's description of its last failure (what failed and why), or "".
 * Valid until the thread's next libvio call. */
const char *vio_last_error(void);

typedef struct vio_client vio_client;
typedef struct vio_link vio_link;

/* Attach to the local agent as `instance`. `socket_path` NULL: $VIO_CONTROL_SOCKET, else the
 * only socket in /run/vio (root) or $XDG_RUNTIME_DIR/vio. `token_file` NULL: no token.
 * On success *out is a new client. Thread-safe. */
int vio_attach(const char *instance, const char *socket_path, const char *token_file, vio_client **out);

/* Release the client. Links stay usable until released; the attachment ends when the client
 * and all its links are released. NULL is ignored. */
void vio_detach(vio_client *client);

/* A descriptor that becomes readable when an incoming link waits (vio_accept_link); for the
 * caller's epoll/poll loop. Owned by the client. An agent's hang-up is libvio's to handle: it
 * attaches again by itself once an agent serves the socket, and this descriptor stays the
 * same. */
int vio_client_fd(vio_client *client);

/* Open the link to `peer`, waiting up to timeout_ms for it to attach. *out: a new link. */
int vio_open_link(vio_client *client, const char *peer, int timeout_ms, vio_link **out);

/* The next link a peer opened to this instance. *out: a new link. */
int vio_accept_link(vio_client *client, int timeout_ms, vio_link **out);

/* Close the link: the peer receives what was sent, then VIO_EPEERCLOSED. A second close
 * returns VIO_ECLOSED. The handle stays valid until vio_link_release. */
int vio_link_close(vio_link *link);

/* Free the handle (closing the link if open). The pointer is invalid afterwards. NULL ok. */
void vio_link_release(vio_link *link);

/* The peer's instance name, owned by the link, valid until vio_link_release. */
const char *vio_link_peer(const vio_link *link);

/* Largest message the link accepts, and the largest vio_claim. 0 for NULL. */
size_t vio_link_max_message(const vio_link *link);
size_t vio_link_max_claim(const vio_link *link);

/* How blocking calls wait. Default VIO_WAIT_SPIN: spin as long as this end's waits usually take (up to 100 us), then sleep. */
enum { VIO_WAIT_BUSY = 0, VIO_WAIT_SPIN = 1, VIO_WAIT_SLEEP = 2 };
int vio_link_set_wait(vio_link *link, int mode);

/* Send one message of `len` bytes (copied). */
int vio_send(vio_link *link, const void *data, size_t len, int timeout_ms);

/* Zero-copy send: *buf points to `len` writable bytes in the ring (len <= vio_link_max_claim).
 * Finish with vio_commit (send the first `len` bytes) or vio_abort. A larger len:
 * VIO_EMSGSIZE (send larger messages with vio_send, which fragments them). */
int vio_claim(vio_link *link, size_t len, int timeout_ms, void **buf);
int vio_commit(vio_link *link, size_t len);
int vio_abort(vio_link *link);

/* Receive one message into buf (capacity cap). On VIO_OK *len is its size. If cap is too
 * small: VIO_EMSGSIZE, *len is the size needed, and the message stays queued for the next
 * call. */
int vio_recv(vio_link *link, void *buf, size_t cap, size_t *len, int timeout_ms);

/* Zero-copy receive: *data and *len describe the next message in place, valid until
 * vio_recv_done (call it before the next receive). Do not write through *data. */
int vio_recv_zc(vio_link *link, const void **data, size_t *len, int timeout_ms);
int vio_recv_done(vio_link *link);

/* Waiting in the caller's own event loop:
 * vio_link_fd is readable when data may have arrived (owned by the link). Before waiting on
 * it, call vio_link_arm: 1 means armed (wait now), 0 means a message is already there (do not
 * wait). After waking, call vio_link_disarm. */
int vio_link_fd(const vio_link *link);
int vio_link_arm(vio_link *link);
int vio_link_disarm(vio_link *link);

/* Wait on n links at once: ready[i] is set to 1 for each link that can be read without
 * blocking (a message, or the link ended). Returns the number ready (0 on timeout) or an
 * error. */
int vio_wait(vio_link *const *links, int n, int timeout_ms, int *ready);

/* VIO_OK while the link is open, else the code receive would return once drained. */
int vio_link_state(const vio_link *link);

/* Counters of both directions, from this end's view. */
typedef struct vio_counters {
    uint64_t sent_messages, sent_bytes, sent_wakeups, sent_full_stalls;
    uint64_t received_messages, received_bytes, received_wakeups, received_errors;
} vio_counters;
int vio_link_counters(const vio_link *link, vio_counters *out);

#ifdef __cplusplus
}
#endif
#endif /* VIO_H */
