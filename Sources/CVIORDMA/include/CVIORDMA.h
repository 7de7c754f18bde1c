/* RDMA reliable-connected queue pairs that carry a byte stream between two agents, over
 * librdmacm (connection set-up by IP address, GID chosen by the address) and libibverbs.
 * The Swift side sees opaque handles; verbs types stay in rdma.c.
 *
 * Memory protocol (docs/rdma.md): each end registers VIO_RDMA_SLOTS send and receive buffers
 * of VIO_RDMA_SLOT_BYTES and posts every receive buffer before it connects. A message is one
 * SEND_WITH_IMM from a send buffer into the next posted receive buffer; its immediate value
 * returns credits: receive buffers the sender reposted since it last said so. An end sends
 * data only while it holds two credits or more, so the last credit can always carry a
 * credit-only message (no payload) and the two ends never wait on each other. Receive
 * completions come in the order the messages were sent (RC), so the buffers read in arrival
 * order form the stream. Everything is non-blocking: the two descriptors (connection events,
 * completions) say when to call vio_rdma_progress. */
#ifndef CVIORDMA_H
#define CVIORDMA_H
#include <stddef.h>
#include <stdint.h>

/* Receive buffers each end posts (the credit window), and their size. */
#define VIO_RDMA_SLOTS 32
#define VIO_RDMA_SLOT_BYTES 32768
/* Largest private data carried by a connect request (RDMA_PS_TCP: 56 bytes). */
#define VIO_RDMA_PRIVATE_MAX 56

typedef struct vio_rdma_listener vio_rdma_listener;
typedef struct vio_rdma_request vio_rdma_request;
typedef struct vio_rdma_conn vio_rdma_conn;

/* Connection states. */
enum {
    VIO_RDMA_CONNECTING = 0,  /* resolving the address and route, or waiting for the peer */
    VIO_RDMA_ESTABLISHED = 1,
    VIO_RDMA_CLOSED = 2,      /* the peer disconnected */
    VIO_RDMA_FAILED = 3       /* vio_rdma_error says why */
};

/* Binds an RDMA listener to `address` (IPv4 or IPv6 text) on `port` (0: any free port) and
 * listens. Fails (NULL, `err` filled) when no RDMA device serves the address or its port is
 * not active: this is how a host learns it may use RDMA on its topology address. */
vio_rdma_listener *vio_rdma_listen(const char *address, uint16_t port, char *err, size_t errlen);
void vio_rdma_listener_free(vio_rdma_listener *l);
/* The descriptor that turns readable when connect requests wait (non-blocking). */
int vio_rdma_listener_fd(const vio_rdma_listener *l);
/* The port it listens on. */
uint16_t vio_rdma_listener_port(const vio_rdma_listener *l);
/* "rxe0 port 1, active MTU 1024" for logs. */
const char *vio_rdma_listener_describe(const vio_rdma_listener *l, char *out, size_t len);

/* The next connect request: 1 with `*request` set and its private data copied to `data`
 * (`*data_len` bytes, at most VIO_RDMA_PRIVATE_MAX), 0 when none waits, -1 on error. Other
 * events on the listener are consumed. Each request must be accepted or rejected. */
int vio_rdma_listener_next(vio_rdma_listener *l, vio_rdma_request **request, uint8_t *data, size_t *data_len,
                           char *err, size_t errlen);
/* Refuses a request (the dialer sees "rejected"); frees it. */
void vio_rdma_reject(vio_rdma_request *request);
/* Accepts a request: creates the queue pair and its buffers, posts every receive buffer and
 * accepts. The connection is established when its state says so. Frees the request; NULL with
 * `err` filled on failure (the request is then rejected). */
vio_rdma_conn *vio_rdma_accept(vio_rdma_request *request, char *err, size_t errlen);

/* Starts connecting from `source` (this host's address) to `destination`:`port`, sending
 * `data` (at most VIO_RDMA_PRIVATE_MAX bytes) with the request. NULL with `err` filled when
 * it cannot start; later failures show in the state. */
vio_rdma_conn *vio_rdma_dial(const char *source, const char *destination, uint16_t port, const uint8_t *data,
                             size_t data_len, char *err, size_t errlen);
/* Disconnects (the peer sees CLOSED) and destroys the queue pair: nothing more moves, and
 * memory registered with vio_rdma_register may then be deregistered. */
void vio_rdma_shutdown(vio_rdma_conn *c);
/* Shuts down (if not yet) and frees everything; deregister every vio_rdma_mr first. */
void vio_rdma_free(vio_rdma_conn *c);

/* Descriptors that turn readable when vio_rdma_progress has work: connection events and
 * completions (the latter is -1 until the queue pair exists). */
int vio_rdma_event_fd(const vio_rdma_conn *c);
int vio_rdma_completion_fd(const vio_rdma_conn *c);
/* Handles pending connection events and completions; returns the state. Re-arms the
 * completion notification, so a quiet queue pair costs nothing until the next completion. */
int vio_rdma_progress(vio_rdma_conn *c);
int vio_rdma_state(const vio_rdma_conn *c);
const char *vio_rdma_error(const vio_rdma_conn *c);
/* "rxe0 port 1, QP 17, MTU 1024" for logs and status. */
const char *vio_rdma_describe(const vio_rdma_conn *c, char *out, size_t len);

/* A free send buffer of VIO_RDMA_SLOT_BYTES to fill, or NULL when none is free or credit is
 * short; fill it, then post it. */
uint8_t *vio_rdma_send_buffer(vio_rdma_conn *c);
/* Sends the buffer vio_rdma_send_buffer returned with its first `len` bytes (> 0). 0 ok, -1
 * (state FAILED) on error. */
int vio_rdma_send(vio_rdma_conn *c, size_t len);

/* The oldest received message's unread bytes (`*len`), or NULL when none has arrived. The
 * memory is this end's and writable (an encrypted channel opens records in place). */
uint8_t *vio_rdma_received(vio_rdma_conn *c, size_t *len);
/* Marks `n` bytes of that message read; a message read to its end goes back to the receive
 * queue, and credit is returned to the peer when enough has accumulated. -1 on error. */
int vio_rdma_consume(vio_rdma_conn *c, size_t n);


/* Memory registered with the connection's protection domain: local writes always, and remote
 * reads by the peer when `remote_read` (a link's ring a far agent pulls payloads from). NULL
 * with `err` filled on failure. Deregister before the memory goes away. */
typedef struct vio_rdma_mr vio_rdma_mr;
vio_rdma_mr *vio_rdma_register(vio_rdma_conn *c, void *address, size_t length, int remote_read, char *err, size_t errlen);
void vio_rdma_deregister(vio_rdma_mr *r);
uint32_t vio_rdma_rkey(const vio_rdma_mr *r);

/* RDMA READs a connection keeps in flight at most (each way). */
#define VIO_RDMA_READS 4

/* Pulls `length` bytes of the peer's registered memory at `remote` (`rkey`) into `local`
 * (inside `local_mr`) with an RDMA READ: no CPU touches the bytes. At most VIO_RDMA_READS in
 * flight; they complete in the order posted, seen through vio_rdma_reads_finished after
 * vio_rdma_progress. Only a `signal`led READ raises a completion (it also completes every
 * READ before it): signal the last of a batch. 0 ok, -1 on error. */
int vio_rdma_read(vio_rdma_conn *c, void *local, const vio_rdma_mr *local_mr, uint64_t remote, uint32_t rkey, uint32_t length,
                  int signal);
/* READs completed since the last call (successfully: a failed one fails the connection). */
int vio_rdma_reads_finished(vio_rdma_conn *c);

#endif
