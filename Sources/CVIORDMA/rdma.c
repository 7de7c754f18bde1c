/* See include/CVIORDMA.h for the protocol. One thread uses a connection (the agent's loop). */
#define _GNU_SOURCE
#include "CVIORDMA.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

/* Credit owed to the peer is returned by a message of its own once this much accumulated
 * (data messages carry it sooner). */
#define CREDIT_THRESHOLD (VIO_RDMA_SLOTS / 4)
/* A send's wr_id: its sequence number (high 32 bits) and send buffer (low; CREDIT_ONLY for
 * a credit-only message). */
#define CREDIT_ONLY UINT32_MAX
/* The low half of an RDMA READ's wr_id. */
#define READ_MARK (UINT32_MAX - 1)
/* Sends are signalled (raise a completion) only every SIGNAL_EVERY work requests, or while
 * free send buffers are few: a completion frees every buffer posted before it (a send queue
 * completes in order), and a request/response exchange does not wake its sender just to
 * learn that a send finished. */
#define SIGNAL_EVERY 8
/* Address and route resolution time limit, milliseconds. */
#define RESOLVE_MS 2000

struct vio_rdma_listener {
    struct rdma_event_channel *events;
    struct rdma_cm_id *id;
};

struct vio_rdma_request {
    struct rdma_cm_id *id;
};

struct arrival {
    uint32_t slot, length, offset;
};

struct vio_rdma_conn {
    struct rdma_event_channel *events;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *completions;
    struct ibv_cq *cq;
    struct ibv_mr *send_mr, *recv_mr;
    uint8_t *send_memory, *recv_memory;
    int state;
    int has_qp;
    int dialer;
    int unacked_cq_events;
    char error[256];
    uint8_t private_data[VIO_RDMA_PRIVATE_MAX];
    uint8_t private_len;
    /* Sending: credit (peer's free receive buffers), free send buffers (a stack), the buffer
     * handed out by vio_rdma_send_buffer. */
    uint32_t credit;
    uint32_t free_slots[VIO_RDMA_SLOTS];
    uint32_t free_count;
    int64_t lent_slot;
    /* Data sends posted and not known complete, in posting order (a ring). */
    struct { uint32_t seq, slot; } posted[VIO_RDMA_SLOTS];
    uint32_t posted_head, posted_count;
    uint32_t send_seq;
    uint32_t unsignalled;
    /* RDMA READs in flight (at most VIO_RDMA_READS), oldest first by send sequence number,
     * and how many finished since last asked. */
    uint32_t read_seqs[VIO_RDMA_READS];
    int reads_in_flight, reads_done;
    /* Receiving: messages in arrival order (a ring), credit not yet returned. */
    struct arrival arrived[VIO_RDMA_SLOTS];
    uint32_t arrived_head, arrived_count;
    uint32_t owed;
};

static void say(char *err, size_t errlen, const char *format, ...) {
    if (!err || !errlen) return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, errlen, format, args);
    va_end(args);
}

static int fail(vio_rdma_conn *c, const char *format, ...) {
    if (c->state != VIO_RDMA_FAILED) {
        va_list args;
        va_start(args, format);
        vsnprintf(c->error, sizeof c->error, format, args);
        va_end(args);
        c->state = VIO_RDMA_FAILED;
    }
    return -1;
}

static int nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static int parse_address(const char *text, uint16_t port, struct sockaddr_storage *out) {
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV}, *info = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    if (getaddrinfo(text, service, &hints, &info) != 0 || !info) return -1;
    memcpy(out, info->ai_addr, info->ai_addrlen);
    freeaddrinfo(info);
    return 0;
}

static const char *describe_port(struct rdma_cm_id *id, char *out, size_t len) {
    struct ibv_port_attr port;
    int mtu = 0;
    if (id->verbs && ibv_query_port(id->verbs, id->port_num, &port) == 0) mtu = 128 << port.active_mtu;
    snprintf(out, len, "%s port %u, MTU %d", id->verbs ? ibv_get_device_name(id->verbs->device) : "?",
             id->port_num, mtu);
    return out;
}

/* MARK: listener */

vio_rdma_listener *vio_rdma_listen(const char *address, uint16_t port, char *err, size_t errlen) {
    struct sockaddr_storage addr;
    if (parse_address(address, port, &addr) != 0) {
        say(err, errlen, "'%s' is not an IP address", address);
        return NULL;
    }
    vio_rdma_listener *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->events = rdma_create_event_channel();
    if (!l->events || nonblocking(l->events->fd) != 0) {
        say(err, errlen, "rdma_create_event_channel: %s (is rdma_ucm loaded?)", strerror(errno));
        goto failed;
    }
    if (rdma_create_id(l->events, &l->id, NULL, RDMA_PS_TCP) != 0) {
        say(err, errlen, "rdma_create_id: %s", strerror(errno));
        goto failed;
    }
    if (rdma_bind_addr(l->id, (struct sockaddr *)&addr) != 0) {
        say(err, errlen, "no RDMA device serves %s (rdma_bind_addr: %s)", address, strerror(errno));
        goto failed;
    }
    if (!l->id->verbs) {
        say(err, errlen, "no RDMA device serves %s", address);
        goto failed;
    }
    struct ibv_port_attr attr;
    if (ibv_query_port(l->id->verbs, l->id->port_num, &attr) != 0 || attr.state != IBV_PORT_ACTIVE) {
        say(err, errlen, "RDMA device %s serves %s, but its port %u is not active",
            ibv_get_device_name(l->id->verbs->device), address, l->id->port_num);
        goto failed;
    }
    if (rdma_listen(l->id, 64) != 0) {
        say(err, errlen, "rdma_listen on %s: %s", address, strerror(errno));
        goto failed;
    }
    return l;
failed:
    vio_rdma_listener_free(l);
    return NULL;
}

void vio_rdma_listener_free(vio_rdma_listener *l) {
    if (!l) return;
    if (l->id) rdma_destroy_id(l->id);
    if (l->events) rdma_destroy_event_channel(l->events);
    free(l);
}

int vio_rdma_listener_fd(const vio_rdma_listener *l) { return l->events->fd; }
uint16_t vio_rdma_listener_port(const vio_rdma_listener *l) { return ntohs(rdma_get_src_port(l->id)); }
const char *vio_rdma_listener_describe(const vio_rdma_listener *l, char *out, size_t len) {
    return describe_port(l->id, out, len);
}

int vio_rdma_listener_next(vio_rdma_listener *l, vio_rdma_request **request, uint8_t *data, size_t *data_len,
                           char *err, size_t errlen) {
    struct rdma_cm_event *event;
    while (rdma_get_cm_event(l->events, &event) == 0) {
        if (event->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
            rdma_ack_cm_event(event);
            continue;
        }
        size_t n = event->param.conn.private_data_len;
        if (n > VIO_RDMA_PRIVATE_MAX) n = VIO_RDMA_PRIVATE_MAX;
        if (n && event->param.conn.private_data) memcpy(data, event->param.conn.private_data, n);
        *data_len = n;
        struct rdma_cm_id *id = event->id;
        rdma_ack_cm_event(event);
        vio_rdma_request *r = malloc(sizeof *r);
        if (!r) {
            rdma_reject(id, NULL, 0);
            rdma_destroy_id(id);
            say(err, errlen, "out of memory");
            return -1;
        }
        r->id = id;
        *request = r;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    say(err, errlen, "rdma_get_cm_event: %s", strerror(errno));
    return -1;
}

void vio_rdma_reject(vio_rdma_request *request) {
    rdma_reject(request->id, NULL, 0);
    rdma_destroy_id(request->id);
    free(request);
}

/* MARK: connection resources */

static vio_rdma_conn *new_conn(void) {
    vio_rdma_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->lent_slot = -1;
    c->credit = VIO_RDMA_SLOTS;  /* the peer posts all its receive buffers before connecting */
    for (uint32_t i = 0; i < VIO_RDMA_SLOTS; i++) c->free_slots[i] = VIO_RDMA_SLOTS - 1 - i;
    c->free_count = VIO_RDMA_SLOTS;
    c->events = rdma_create_event_channel();
    if (!c->events || nonblocking(c->events->fd) != 0) {
        if (c->events) rdma_destroy_event_channel(c->events);
        free(c);
        return NULL;
    }
    return c;
}

static int post_receive(vio_rdma_conn *c, uint32_t slot) {
    struct ibv_sge sge = {.addr = (uintptr_t)(c->recv_memory + (size_t)slot * VIO_RDMA_SLOT_BYTES),
                          .length = VIO_RDMA_SLOT_BYTES, .lkey = c->recv_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = slot, .sg_list = &sge, .num_sge = 1}, *bad;
    int rc = ibv_post_recv(c->id->qp, &wr, &bad);
    return rc == 0 ? 0 : fail(c, "ibv_post_recv: %s", strerror(rc));
}

/* Protection domain, completion channel and queue, queue pair, registered buffers, every
 * receive buffer posted: what must exist before connecting or accepting. */
static int build_queue_pair(vio_rdma_conn *c) {
    struct ibv_context *verbs = c->id->verbs;
    if (!verbs) return fail(c, "the address is not served by an RDMA device");
    size_t bytes = (size_t)VIO_RDMA_SLOTS * VIO_RDMA_SLOT_BYTES;
    if (!(c->pd = ibv_alloc_pd(verbs))) return fail(c, "ibv_alloc_pd: %s", strerror(errno));
    if (!(c->completions = ibv_create_comp_channel(verbs)) || nonblocking(c->completions->fd) != 0)
        return fail(c, "ibv_create_comp_channel: %s", strerror(errno));
    /* Room for every work request that can be outstanding: sends, credit-only sends and
     * READs on the send queue, every posted receive buffer. */
    if (!(c->cq = ibv_create_cq(verbs, 3 * VIO_RDMA_SLOTS + 2 + VIO_RDMA_READS + 8, c, c->completions, 0)))
        return fail(c, "ibv_create_cq: %s", strerror(errno));
    if (ibv_req_notify_cq(c->cq, 0) != 0) return fail(c, "ibv_req_notify_cq failed");
    if (posix_memalign((void **)&c->send_memory, 4096, bytes) != 0 ||
        posix_memalign((void **)&c->recv_memory, 4096, bytes) != 0)
        return fail(c, "cannot allocate %zu bytes of buffers", 2 * bytes);
    memset(c->send_memory, 0, bytes);
    memset(c->recv_memory, 0, bytes);
    if (!(c->send_mr = ibv_reg_mr(c->pd, c->send_memory, bytes, IBV_ACCESS_LOCAL_WRITE)) ||
        !(c->recv_mr = ibv_reg_mr(c->pd, c->recv_memory, bytes, IBV_ACCESS_LOCAL_WRITE)))
        return fail(c, "ibv_reg_mr of %zu bytes: %s (locked-memory limit? see `ulimit -l`)", bytes, strerror(errno));
    struct ibv_qp_init_attr attr = {
        .send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC, .sq_sig_all = 0,
        .cap = {.max_send_wr = 2 * VIO_RDMA_SLOTS + 1 + VIO_RDMA_READS, .max_recv_wr = VIO_RDMA_SLOTS,
                .max_send_sge = 1, .max_recv_sge = 1},
    };
    if (rdma_create_qp(c->id, c->pd, &attr) != 0) return fail(c, "rdma_create_qp: %s", strerror(errno));
    c->has_qp = 1;
    for (uint32_t i = 0; i < VIO_RDMA_SLOTS; i++)
        if (post_receive(c, i) != 0) return -1;
    return 0;
}

static struct rdma_conn_param connection_parameters(const uint8_t *data, size_t len) {
    struct rdma_conn_param p = {
        .private_data = data, .private_data_len = (uint8_t)len,
        /* RDMA READs in flight each way (payloads pulled ring to ring). */
        .responder_resources = VIO_RDMA_READS, .initiator_depth = VIO_RDMA_READS,
        .retry_count = 7,
        /* Credit means a receive buffer is always posted: an RNR would be a bug, not load. */
        .rnr_retry_count = 0,
    };
    return p;
}

vio_rdma_conn *vio_rdma_accept(vio_rdma_request *request, char *err, size_t errlen) {
    vio_rdma_conn *c = new_conn();
    if (!c) {
        say(err, errlen, "cannot create an event channel: %s", strerror(errno));
        vio_rdma_reject(request);
        return NULL;
    }
    c->id = request->id;
    free(request);
    if (rdma_migrate_id(c->id, c->events) != 0) {
        say(err, errlen, "rdma_migrate_id: %s", strerror(errno));
        goto failed;
    }
    if (build_queue_pair(c) != 0) {
        say(err, errlen, "%s", c->error);
        goto failed;
    }
    struct rdma_conn_param p = connection_parameters(NULL, 0);
    if (rdma_accept(c->id, &p) != 0) {
        say(err, errlen, "rdma_accept: %s", strerror(errno));
        goto failed;
    }
    return c;
failed:
    if (!c->has_qp) rdma_reject(c->id, NULL, 0);
    vio_rdma_free(c);
    return NULL;
}

vio_rdma_conn *vio_rdma_dial(const char *source, const char *destination, uint16_t port, const uint8_t *data,
                             size_t data_len, char *err, size_t errlen) {
    struct sockaddr_storage src, dst;
    if (parse_address(source, 0, &src) != 0 || parse_address(destination, port, &dst) != 0) {
        say(err, errlen, "'%s' or '%s' is not an IP address", source, destination);
        return NULL;
    }
    if (data_len > VIO_RDMA_PRIVATE_MAX) {
        say(err, errlen, "%zu bytes of private data (at most %d)", data_len, VIO_RDMA_PRIVATE_MAX);
        return NULL;
    }
    vio_rdma_conn *c = new_conn();
    if (!c) {
        say(err, errlen, "rdma_create_event_channel: %s (is rdma_ucm loaded?)", strerror(errno));
        return NULL;
    }
    c->dialer = 1;
    memcpy(c->private_data, data, data_len);
    c->private_len = (uint8_t)data_len;
    if (rdma_create_id(c->events, &c->id, c, RDMA_PS_TCP) != 0) {
        say(err, errlen, "rdma_create_id: %s", strerror(errno));
        goto failed;
    }
    if (rdma_resolve_addr(c->id, (struct sockaddr *)&src, (struct sockaddr *)&dst, RESOLVE_MS) != 0) {
        say(err, errlen, "rdma_resolve_addr %s -> %s: %s", source, destination, strerror(errno));
        goto failed;
    }
    return c;
failed:
    vio_rdma_free(c);
    return NULL;
}

void vio_rdma_shutdown(vio_rdma_conn *c) {
    if (!c || !c->id) return;
    if (c->state == VIO_RDMA_ESTABLISHED) rdma_disconnect(c->id);
    if (c->has_qp) rdma_destroy_qp(c->id);
    c->has_qp = 0;
    if (c->state == VIO_RDMA_ESTABLISHED || c->state == VIO_RDMA_CONNECTING) {
        c->state = VIO_RDMA_CLOSED;
        snprintf(c->error, sizeof c->error, "this end closed the queue pair");
    }
}

void vio_rdma_free(vio_rdma_conn *c) {
    if (!c) return;
    vio_rdma_shutdown(c);
    if (c->cq) {
        if (c->unacked_cq_events) ibv_ack_cq_events(c->cq, c->unacked_cq_events);
        ibv_destroy_cq(c->cq);
    }
    if (c->send_mr) ibv_dereg_mr(c->send_mr);
    if (c->recv_mr) ibv_dereg_mr(c->recv_mr);
    if (c->completions) ibv_destroy_comp_channel(c->completions);
    if (c->pd) ibv_dealloc_pd(c->pd);
    if (c->id) rdma_destroy_id(c->id);
    if (c->events) rdma_destroy_event_channel(c->events);
    free(c->send_memory);
    free(c->recv_memory);
    free(c);
}

int vio_rdma_event_fd(const vio_rdma_conn *c) { return c->events->fd; }
int vio_rdma_completion_fd(const vio_rdma_conn *c) { return c->completions ? c->completions->fd : -1; }
int vio_rdma_state(const vio_rdma_conn *c) { return c->state; }
const char *vio_rdma_error(const vio_rdma_conn *c) { return c->error; }

const char *vio_rdma_describe(const vio_rdma_conn *c, char *out, size_t len) {
    char port[96];
    snprintf(out, len, "%s, QP %u", describe_port(c->id, port, sizeof port), c->has_qp ? c->id->qp->qp_num : 0);
    return out;
}


/* MARK: progress */

static void connection_event(vio_rdma_conn *c, struct rdma_cm_event *event) {
    switch (event->event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (rdma_resolve_route(c->id, RESOLVE_MS) != 0) fail(c, "rdma_resolve_route: %s", strerror(errno));
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
        if (build_queue_pair(c) != 0) break;
        struct rdma_conn_param p = connection_parameters(c->private_data, c->private_len);
        if (rdma_connect(c->id, &p) != 0) fail(c, "rdma_connect: %s", strerror(errno));
        break;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
        if (c->state == VIO_RDMA_CONNECTING) c->state = VIO_RDMA_ESTABLISHED;
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_TIMEWAIT_EXIT:
        if (c->state == VIO_RDMA_ESTABLISHED || c->state == VIO_RDMA_CONNECTING) {
            c->state = VIO_RDMA_CLOSED;
            snprintf(c->error, sizeof c->error, "the peer disconnected the queue pair");
        }
        break;
    case RDMA_CM_EVENT_REJECTED:
        fail(c, "the peer rejected the queue pair (status %d)", event->status);
        break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        fail(c, "the RDMA device was removed");
        break;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
        fail(c, "%s (status %d: %s)", rdma_event_str(event->event), event->status, strerror(-event->status));
        break;
    default:
        break;
    }
}

static void completion(vio_rdma_conn *c, const struct ibv_wc *wc) {
    if (wc->status != IBV_WC_SUCCESS) {
        if (c->state == VIO_RDMA_CLOSED) return;  /* flushed after a disconnect */
        /* wc->opcode is undefined on an error completion: name the work request by its id. */
        fail(c, "queue pair error: %s", ibv_wc_status_str(wc->status));
        return;
    }
    if (wc->opcode & IBV_WC_RECV) {
        if (c->state == VIO_RDMA_CONNECTING) {
            /* The peer's first message can come before this end's ESTABLISHED event (an
             * accepting end, or a lost RTU): the connection is up. */
            rdma_notify(c->id, IBV_EVENT_COMM_EST);
            c->state = VIO_RDMA_ESTABLISHED;
        }
        if (wc->wc_flags & IBV_WC_WITH_IMM) {
            uint32_t returned = ntohl(wc->imm_data);
            if (returned > VIO_RDMA_SLOTS || c->credit + returned > VIO_RDMA_SLOTS) {
                fail(c, "the peer returned %u credits, more than it was given", returned);
                return;
            }
            c->credit += returned;
        }
        uint32_t slot = (uint32_t)wc->wr_id;
        if (wc->byte_len == 0) {
            /* Credit only: the buffer goes straight back. */
            c->owed++;
            post_receive(c, slot);
            return;
        }
        uint32_t tail = (c->arrived_head + c->arrived_count) % VIO_RDMA_SLOTS;
        c->arrived[tail] = (struct arrival){.slot = slot, .length = wc->byte_len, .offset = 0};
        c->arrived_count++;
    } else {
        /* Every work request posted up to this one is complete: READs before it (unsignalled
         * but for the last of a batch) have landed, send buffers are free again. */
        uint32_t done = (uint32_t)(wc->wr_id >> 32);
        int landed = 0;
        while (landed < c->reads_in_flight && (int32_t)(c->read_seqs[landed] - done) <= 0) landed++;
        if (landed > 0) {
            memmove(c->read_seqs, c->read_seqs + landed, (size_t)(c->reads_in_flight - landed) * sizeof c->read_seqs[0]);
            c->reads_in_flight -= landed;
            c->reads_done += landed;
        }
        while (c->posted_count > 0 && (int32_t)(c->posted[c->posted_head].seq - done) <= 0) {
            c->free_slots[c->free_count++] = c->posted[c->posted_head].slot;
            c->posted_head = (c->posted_head + 1) % VIO_RDMA_SLOTS;
            c->posted_count--;
        }
    }
}

static int post_send(vio_rdma_conn *c, uint32_t slot, size_t len) {
    struct ibv_sge sge = {.lkey = c->send_mr->lkey, .length = (uint32_t)len};
    if (slot != CREDIT_ONLY) sge.addr = (uintptr_t)(c->send_memory + (size_t)slot * VIO_RDMA_SLOT_BYTES);
    uint32_t seq = ++c->send_seq;
    int signal = ++c->unsignalled >= SIGNAL_EVERY || c->free_count <= VIO_RDMA_SLOTS / 4;
    struct ibv_send_wr wr = {
        .wr_id = ((uint64_t)seq << 32) | slot, .sg_list = &sge, .num_sge = slot == CREDIT_ONLY ? 0 : 1,
        .opcode = IBV_WR_SEND_WITH_IMM, .send_flags = signal ? IBV_SEND_SIGNALED : 0, .imm_data = htonl(c->owed),
    }, *bad;
    int rc = ibv_post_send(c->id->qp, &wr, &bad);
    if (rc != 0) return fail(c, "ibv_post_send: %s", strerror(rc));
    if (signal) c->unsignalled = 0;
    if (slot != CREDIT_ONLY) {
        uint32_t tail = (c->posted_head + c->posted_count) % VIO_RDMA_SLOTS;
        c->posted[tail].seq = seq;
        c->posted[tail].slot = slot;
        c->posted_count++;
    }
    c->owed = 0;
    c->credit--;
    return 0;
}

/* Returns owed credit in a message of its own when enough accumulated. */
static int return_credit(vio_rdma_conn *c) {
    if (c->state != VIO_RDMA_ESTABLISHED || c->owed < CREDIT_THRESHOLD || c->credit < 1) return 0;
    return post_send(c, CREDIT_ONLY, 0);
}

int vio_rdma_progress(vio_rdma_conn *c) {
    struct rdma_cm_event *event;
    while (rdma_get_cm_event(c->events, &event) == 0) {
        connection_event(c, event);
        rdma_ack_cm_event(event);
    }
    if (!c->cq) return c->state;
    struct ibv_cq *cq;
    void *context;
    while (ibv_get_cq_event(c->completions, &cq, &context) == 0) {
        /* Acknowledged in batches: each ack takes a lock. */
        if (++c->unacked_cq_events >= 64) {
            ibv_ack_cq_events(c->cq, c->unacked_cq_events);
            c->unacked_cq_events = 0;
        }
    }
    /* Re-arm first, then drain: a completion that lands in between raises a new event. */
    if (ibv_req_notify_cq(c->cq, 0) != 0) return fail(c, "ibv_req_notify_cq failed"), c->state;
    struct ibv_wc wc[16];
    int n;
    while ((n = ibv_poll_cq(c->cq, 16, wc)) > 0)
        for (int i = 0; i < n; i++) completion(c, &wc[i]);
    if (n < 0) fail(c, "ibv_poll_cq failed");
    return_credit(c);
    return c->state;
}

/* MARK: data */

uint8_t *vio_rdma_send_buffer(vio_rdma_conn *c) {
    if (c->state != VIO_RDMA_ESTABLISHED) return NULL;
    if (c->lent_slot >= 0) return c->send_memory + (size_t)c->lent_slot * VIO_RDMA_SLOT_BYTES;
    /* The last credit is kept for returning credit. */
    if (c->free_count == 0 || c->credit < 2) {
        return NULL;
    }
    c->lent_slot = c->free_slots[--c->free_count];
    return c->send_memory + (size_t)c->lent_slot * VIO_RDMA_SLOT_BYTES;
}

int vio_rdma_send(vio_rdma_conn *c, size_t len) {
    if (c->lent_slot < 0 || len == 0 || len > VIO_RDMA_SLOT_BYTES) return fail(c, "vio_rdma_send without a buffer");
    uint32_t slot = (uint32_t)c->lent_slot;
    c->lent_slot = -1;
    if (post_send(c, slot, len) != 0) {
        c->free_slots[c->free_count++] = (uint32_t)slot;
        return -1;
    }
    return 0;
}

uint8_t *vio_rdma_received(vio_rdma_conn *c, size_t *len) {
    if (c->arrived_count == 0) return NULL;
    struct arrival *a = &c->arrived[c->arrived_head];
    *len = a->length - a->offset;
    return c->recv_memory + (size_t)a->slot * VIO_RDMA_SLOT_BYTES + a->offset;
}

int vio_rdma_consume(vio_rdma_conn *c, size_t n) {
    if (c->arrived_count == 0) return n == 0 ? 0 : fail(c, "consumed more than arrived");
    struct arrival *a = &c->arrived[c->arrived_head];
    if (n > a->length - a->offset) return fail(c, "consumed more than arrived");
    a->offset += (uint32_t)n;
    if (a->offset < a->length) return 0;
    uint32_t slot = a->slot;
    c->arrived_head = (c->arrived_head + 1) % VIO_RDMA_SLOTS;
    c->arrived_count--;
    c->owed++;
    if (post_receive(c, slot) != 0) return -1;
    return return_credit(c);
}

/* MARK: memory registration and RDMA READ */

struct vio_rdma_mr {
    struct ibv_mr *mr;
};

vio_rdma_mr *vio_rdma_register(vio_rdma_conn *c, void *address, size_t length, int remote_read, char *err, size_t errlen) {
    if (!c->pd) {
        say(err, errlen, "the queue pair is not set up");
        return NULL;
    }
    int access = IBV_ACCESS_LOCAL_WRITE | (remote_read ? IBV_ACCESS_REMOTE_READ : 0);
    struct ibv_mr *mr = ibv_reg_mr(c->pd, address, length, access);
    if (!mr) {
        say(err, errlen, "ibv_reg_mr of %zu bytes: %s (locked-memory limit? see `ulimit -l`)", length, strerror(errno));
        return NULL;
    }
    vio_rdma_mr *r = malloc(sizeof *r);
    if (!r) {
        ibv_dereg_mr(mr);
        say(err, errlen, "out of memory");
        return NULL;
    }
    r->mr = mr;
    return r;
}

void vio_rdma_deregister(vio_rdma_mr *r) {
    if (!r) return;
    ibv_dereg_mr(r->mr);
    free(r);
}

uint32_t vio_rdma_rkey(const vio_rdma_mr *r) { return r->mr->rkey; }

int vio_rdma_read(vio_rdma_conn *c, void *local, const vio_rdma_mr *local_mr, uint64_t remote, uint32_t rkey, uint32_t length,
                  int signal) {
    if (c->state != VIO_RDMA_ESTABLISHED) return fail(c, "RDMA READ on a queue pair that is not established");
    if (c->reads_in_flight >= VIO_RDMA_READS) return fail(c, "more than %d RDMA READs in flight", VIO_RDMA_READS);
    struct ibv_sge sge = {.addr = (uintptr_t)local, .length = length, .lkey = local_mr->mr->lkey};
    uint32_t seq = ++c->send_seq;
    struct ibv_send_wr wr = {
        .wr_id = ((uint64_t)seq << 32) | READ_MARK, .sg_list = &sge, .num_sge = 1,
        .opcode = IBV_WR_RDMA_READ, .send_flags = signal ? IBV_SEND_SIGNALED : 0,
        .wr.rdma = {.remote_addr = remote, .rkey = rkey},
    }, *bad;
    int rc = ibv_post_send(c->id->qp, &wr, &bad);
    if (rc != 0) return fail(c, "ibv_post_send (RDMA READ): %s", strerror(rc));
    if (signal) c->unsignalled = 0;
    c->read_seqs[c->reads_in_flight++] = seq;
    return 0;
}

int vio_rdma_reads_finished(vio_rdma_conn *c) {
    int n = c->reads_done;
    c->reads_done = 0;
    return n;
}
