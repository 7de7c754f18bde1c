/* Sends each argument as a request to a kv_server and prints each reply on its own line.
 *
 *   kv_client INSTANCE SERVER "SET a 1" "GET a" ... */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include "vio.h"

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s INSTANCE SERVER REQUEST...\n", argv[0]); return 2; }
    vio_client *client;
    vio_link *link;
    int rc = vio_attach(argv[1], NULL, NULL, &client);
    if (!rc) rc = vio_open_link(client, argv[2], 30000, &link);
    if (rc) { fprintf(stderr, "%s (%s)\n", vio_strerror(rc), vio_last_error()); return 1; }
    for (int i = 3; i < argc; i++) {
        char reply[1200];
        size_t len;
        if ((rc = vio_send(link, argv[i], strlen(argv[i]), 5000)) ||
            (rc = vio_recv(link, reply, sizeof(reply) - 1, &len, 5000))) {
            fprintf(stderr, "%s (%s)\n", vio_strerror(rc), vio_last_error());
            return 1;
        }
        reply[len] = 0;
        printf("%s\n", reply);
    }
    vio_link_close(link);
    vio_link_release(link);
    vio_detach(client);
    return 0;
}
