#include <infiniband/verbs.h>

// ibv_query_port is a macro in rdma-core's header; Swift cannot call macros.
static inline int vio_ibv_query_port(struct ibv_context *context, uint8_t port,
                                     struct ibv_port_attr *attr) {
    return ibv_query_port(context, port, attr);
}
