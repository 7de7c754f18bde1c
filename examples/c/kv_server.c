/* A tiny request/response key-value server over VIO, in C, with its own epoll loop:
 * the client fd tells it about new links, each link's fd about requests.
 *
 *   kv_server INSTANCE [CLIENTS]
 *
 * Requests: "SET key value", "GET key", "DEL key". Replies: "OK", "VALUE value",
 * "NOT_FOUND", "ERROR ...". Exits once CLIENTS links (default 1) have come and ended. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include "vio.h"

#define MAX_KEYS 256
#define MAX_LINKS 64
static char *keys[MAX_KEYS], *values[MAX_KEYS];

static const char *handle(char *req, char *reply, size_t cap) {
    char *cmd = strtok(req, " "), *key = strtok(NULL, " "), *val = strtok(NULL, "");
    if (!cmd || !key) return "ERROR malformed request";
    int slot = -1, free_slot = -1;
    for (int i = 0; i < MAX_KEYS; i++) {
        if (keys[i] && strcmp(keys[i], key) == 0) slot = i;
        if (!keys[i] && free_slot < 0) free_slot = i;
    }
    if (strcmp(cmd, "GET") == 0) {
        if (slot < 0) return "NOT_FOUND";
        snprintf(reply, cap, "VALUE %s", values[slot]);
        return reply;
    }
    if (strcmp(cmd, "SET") == 0 && val) {
        if (slot < 0 && free_slot < 0) return "ERROR full";
        if (slot < 0) { slot = free_slot; keys[slot] = strdup(key); } else free(values[slot]);
        values[slot] = strdup(val);
        return "OK";
    }
    if (strcmp(cmd, "DEL") == 0) {
        if (slot < 0) return "NOT_FOUND";
        free(keys[slot]); free(values[slot]); keys[slot] = values[slot] = NULL;
        return "OK";
    }
    return "ERROR unknown command";
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: %s INSTANCE [CLIENTS]\n", argv[0]); return 2; }
    int clients = argc == 3 ? atoi(argv[2]) : 1, ended = 0;
    vio_client *client;
    int rc = vio_attach(argv[1], NULL, NULL, &client);
    if (rc) { fprintf(stderr, "attach: %s (%s)\n", vio_strerror(rc), vio_last_error()); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };  /* NULL: the client fd */
    epoll_ctl(ep, EPOLL_CTL_ADD, vio_client_fd(client), &ev);
    vio_link *links[MAX_LINKS];
    int nlinks = 0;
    long served = 0;
    printf("ready\n");
    fflush(stdout);
    while (ended < clients) {
        /* Arm every open link; one that already has a request is served without waiting. */
        int pending = 0;
        for (int i = 0; i < nlinks; i++) if (links[i] && vio_link_arm(links[i]) == 0) pending = 1;
        struct epoll_event events[16];
        int n = epoll_wait(ep, events, 16, pending ? 0 : 30000);
        if (n == 0 && !pending) { fprintf(stderr, "idle for 30 s\n"); return 1; }
        for (int i = 0; i < nlinks; i++) if (links[i]) vio_link_disarm(links[i]);
        for (int e = 0; e < n; e++) {
            if (events[e].data.ptr == NULL) {
                vio_link *link;
                while (vio_accept_link(client, 0, &link) == VIO_OK && nlinks < MAX_LINKS) {
                    links[nlinks++] = link;
                    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = link };
                    epoll_ctl(ep, EPOLL_CTL_ADD, vio_link_fd(link), &lev);
                }
            }
        }
        for (int i = 0; i < nlinks; i++) {
            vio_link *link = links[i];
            if (!link) continue;
            char req[1024], reply[1100];
            size_t len;
            while ((rc = vio_recv(link, req, sizeof(req) - 1, &len, 0)) == VIO_OK) {
                req[len] = 0;
                const char *answer = handle(req, reply, sizeof(reply));
                vio_send(link, answer, strlen(answer), 1000);
                served++;
            }
            if (rc != VIO_EAGAIN) {          /* the link ended: peer closed, gone, ... */
                printf("link to %s ended: %s\n", vio_link_peer(link), vio_strerror(rc));
                epoll_ctl(ep, EPOLL_CTL_DEL, vio_link_fd(link), NULL);
                vio_link_release(link);
                links[i] = NULL;
                ended++;
            }
        }
    }
    printf("served %ld\n", served);
    vio_detach(client);
    return 0;
}
