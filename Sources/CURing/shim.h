// liburing's header needs the glibc feature macros seen first.
#include <features.h>
#include <liburing.h>
