// The one C shim: GNU-only calls and function-like macros Swift cannot import.
// Every symbol is prefixed vio_shim_.
#ifndef CVIO_SHIM_H
#define CVIO_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
// Re-exported to Swift: the Glibc module does not cover these Linux headers.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <poll.h>

/// memfd_create(2); returns the fd or -1 with errno set.
int vio_shim_memfd_create(const char *name, unsigned int flags);

/// The MFD_* and F_SEAL_* constants (GNU-only in the headers).
extern const unsigned int vio_shim_MFD_CLOEXEC;
extern const unsigned int vio_shim_MFD_ALLOW_SEALING;
extern const int vio_shim_F_ADD_SEALS;
extern const int vio_shim_F_GET_SEALS;
extern const int vio_shim_F_SEAL_SHRINK;
extern const int vio_shim_F_SEAL_GROW;
extern const int vio_shim_F_SEAL_SEAL;

/// sendmsg(2) of `len` bytes plus up to 16 fds as SCM_RIGHTS. Returns bytes sent or -1.
ssize_t vio_shim_send_with_fds(int sock, const void *buf, size_t len,
                               const int *fds, int nfds, int flags);

/// recvmsg(2) into `buf`; fds passed with SCM_RIGHTS land in `fds` (at most `maxfds`,
/// count in `*nfds`, all opened O_CLOEXEC). `*truncated` has bit 0 set when the data was cut
/// (MSG_TRUNC) and bit 1 when descriptors were (MSG_CTRUNC, or more than `maxfds`: closed).
ssize_t vio_shim_recv_with_fds(int sock, void *buf, size_t len, int *fds, int maxfds,
                               int *nfds, int *truncated, int flags);

/// accept4(2) with SOCK_CLOEXEC (accept4 is GNU-only in the headers).
int vio_shim_accept_cloexec(int sock);

/// accept4(2) with SOCK_CLOEXEC | SOCK_NONBLOCK, storing the peer's address in `address`
/// (`*length` bytes available, updated).
int vio_shim_accept_nonblocking(int sock, void *address, unsigned int *length);

/* setns(fd, CLONE_NEWNET): moves the calling thread into a network namespace (GNU-only). */
int vio_shim_enter_network_namespace(int fd);

/// SO_PEERCRED of a connected Unix socket. Returns 0 or -1 with errno.
int vio_shim_peer_credentials(int sock, pid_t *pid, uid_t *uid, gid_t *gid);

/// pidfd_open(2) through syscall(2) (older glibc has no wrapper).
int vio_shim_pidfd_open(pid_t pid, unsigned int flags);

/// Pins the calling thread to one CPU. Returns 0 or an errno value.
int vio_shim_pin_thread_to_cpu(int cpu);

/// A CPU relax hint for spin loops (x86 pause).
void vio_shim_cpu_relax(void);

/// Blocks `signals` for the calling thread (and threads it creates later) and returns a
/// signalfd that reads them, non-blocking and close-on-exec. -1 with errno on failure.
int vio_shim_signalfd(const int *signals, int count);

/// Reads one pending signal from a signalfd; returns its number, 0 if none, -1 on error.
int vio_shim_signalfd_read(int fd);

/// getcpu(2): the CPU and NUMA node the calling thread runs on now. Returns 0 or -1.
int vio_shim_getcpu(unsigned int *cpu, unsigned int *node);

/// A per-thread message buffer for the C ABI's vio_last_error(): set copies (truncating to
/// 511 bytes), get returns the calling thread's buffer.
void vio_shim_set_last_error(const char *message);
const char *vio_shim_last_error(void);

/// An io_uring used to wait for many descriptors to become readable (liburing inside).
typedef struct vio_shim_uring vio_shim_uring;

/// A ring with `entries` submission slots, or NULL with errno set.
vio_shim_uring *vio_shim_uring_create(unsigned entries);
void vio_shim_uring_destroy(vio_shim_uring *ring);

/// Starts a multishot poll for POLLIN on `fd`; completions carry `token`. 0 or -errno.
int vio_shim_uring_poll_add(vio_shim_uring *ring, int fd, uint64_t token);

/// Cancels the poll started with `token`. 0 or -errno.
int vio_shim_uring_poll_remove(vio_shim_uring *ring, uint64_t token);

/// Waits up to `timeout_ns` (-1: forever) for completions, then stores up to `max` tokens of
/// polls that fired into `tokens` and, into `ended`, whether each poll ended (must be
/// re-armed). Returns the count, 0 on timeout, or -errno.
int vio_shim_uring_wait(vio_shim_uring *ring, int64_t timeout_ns, uint64_t *tokens, int *ended, int max);

#endif
