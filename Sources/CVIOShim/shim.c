#define _GNU_SOURCE
#include "CVIOShim.h"

#include <features.h>
#include <liburing.h>
#include <stdlib.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

const unsigned int vio_shim_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned int vio_shim_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;
const int vio_shim_F_ADD_SEALS = F_ADD_SEALS;
const int vio_shim_F_GET_SEALS = F_GET_SEALS;
const int vio_shim_F_SEAL_SHRINK = F_SEAL_SHRINK;
const int vio_shim_F_SEAL_GROW = F_SEAL_GROW;
const int vio_shim_F_SEAL_SEAL = F_SEAL_SEAL;

#define VIO_SHIM_MAX_FDS 16

int vio_shim_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

ssize_t vio_shim_send_with_fds(int sock, const void *buf, size_t len,
                               const int *fds, int nfds, int flags) {
    if (nfds < 0 || nfds > VIO_SHIM_MAX_FDS) { errno = EINVAL; return -1; }
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * VIO_SHIM_MAX_FDS)]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
}

ssize_t vio_shim_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds,
                               int *nfds, int *truncated, int flags) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * VIO_SHIM_MAX_FDS)]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    *nfds = 0;
    *truncated = 0;
    ssize_t n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    if (msg.msg_flags & MSG_TRUNC) *truncated |= 1;
    if (msg.msg_flags & MSG_CTRUNC) *truncated |= 2;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            // Keep what fits; close the rest so a hostile sender cannot leak fds into us.
            if (*nfds < maxfds) fds[(*nfds)++] = data[i];
            else { close(data[i]); *truncated |= 2; }
        }
    }
    return n;
}

int vio_shim_accept_cloexec(int sock) {
    return accept4(sock, NULL, NULL, SOCK_CLOEXEC);
}

int vio_shim_accept_nonblocking(int sock, void *address, unsigned int *length) {
    socklen_t l = *length;
    int fd = accept4(sock, (struct sockaddr *)address, &l, SOCK_CLOEXEC | SOCK_NONBLOCK);
    *length = l;
    return fd;
}

int vio_shim_peer_credentials(int sock, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t l = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &l) != 0) return -1;
    *pid = cred.pid; *uid = cred.uid; *gid = cred.gid;
    return 0;
}

int vio_shim_pidfd_open(pid_t pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int vio_shim_pin_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void vio_shim_cpu_relax(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int vio_shim_signalfd(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) { errno = rc; return -1; }
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int vio_shim_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof(info));
    if (n == (ssize_t)sizeof(info)) return (int)info.ssi_signo;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
}

int vio_shim_getcpu(unsigned int *cpu, unsigned int *node) {
    return getcpu(cpu, node);
}

struct vio_shim_uring { struct io_uring ring; };

#define VIO_SHIM_CANCEL_TOKEN UINT64_MAX

vio_shim_uring *vio_shim_uring_create(unsigned entries) {
    vio_shim_uring *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) { free(r); errno = -rc; return NULL; }
    return r;
}

void vio_shim_uring_destroy(vio_shim_uring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

static struct io_uring_sqe *vio_shim_sqe(vio_shim_uring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) { io_uring_submit(&r->ring); sqe = io_uring_get_sqe(&r->ring); }
    return sqe;
}

int vio_shim_uring_poll_add(vio_shim_uring *r, int fd, uint64_t token) {
    struct io_uring_sqe *sqe = vio_shim_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, token);
    int rc = io_uring_submit(&r->ring);
    return rc < 0 ? rc : 0;
}

int vio_shim_uring_poll_remove(vio_shim_uring *r, uint64_t token) {
    struct io_uring_sqe *sqe = vio_shim_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_remove(sqe, token);
    io_uring_sqe_set_data64(sqe, VIO_SHIM_CANCEL_TOKEN);
    int rc = io_uring_submit(&r->ring);
    return rc < 0 ? rc : 0;
}

int vio_shim_uring_wait(vio_shim_uring *r, int64_t timeout_ns, uint64_t *tokens, int *ended, int max) {
    struct io_uring_cqe *cqe = NULL;
    int rc;
    if (timeout_ns >= 0) {
        struct __kernel_timespec ts = { .tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL };
        rc = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
    } else {
        rc = io_uring_wait_cqe(&r->ring, &cqe);
    }
    if (rc == -ETIME || rc == -EINTR) return 0;
    if (rc < 0) return rc;
    int n = 0;
    while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        uint64_t token = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        io_uring_cqe_seen(&r->ring, cqe);
        if (token == VIO_SHIM_CANCEL_TOKEN) continue;
        if (res == -ECANCELED) continue;   /* a removed poll's last completion */
        tokens[n] = token;
        ended[n] = !more;
        n++;
    }
    return n;
}

static __thread char vio_shim_error_buffer[512];

void vio_shim_set_last_error(const char *message) {
    if (!message) { vio_shim_error_buffer[0] = 0; return; }
    strncpy(vio_shim_error_buffer, message, sizeof(vio_shim_error_buffer) - 1);
    vio_shim_error_buffer[sizeof(vio_shim_error_buffer) - 1] = 0;
}

const char *vio_shim_last_error(void) { return vio_shim_error_buffer; }

int vio_shim_enter_network_namespace(int fd) { return setns(fd, CLONE_NEWNET); }
