/* POSIX ACLs (libacl): the control socket grants connect permission to the topology's uids. */
#include <sys/types.h>
#include <sys/acl.h>
#include <acl/libacl.h>
