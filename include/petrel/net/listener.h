/*
 * net/listener.h: listening sockets (IPv4/IPv6, one per `listen:` entry) and non-blocking
 * accept. Knows nothing of SMTP: each accepted socket goes to the callback with its role.
 *
 * Backlog 1024 (the kernel caps it at net.core.somaxconn). When accept fails for lack of file
 * descriptors the listener pauses for 100 ms instead of spinning.
 */
#ifndef PETREL_NET_LISTENER_H
#define PETREL_NET_LISTENER_H

#include <sys/socket.h>

#include <event2/util.h>

#include "petrel/config.h"

#define LISTENER_BACKLOG 1024

struct event_base;
struct listener;

/* Takes ownership of fd. */
typedef void (*listener_accept_cb)(void *arg, evutil_socket_t fd, const struct sockaddr *sa,
                                   socklen_t salen, const struct config_listen *entry);

/*
 * Bind entry->addr, without listening yet: until listener_start(), a client is refused
 * (privileged ports are bound early, as root; connections are taken only once petrel is ready).
 * Returns NULL and sets *err (malloc'd) on failure. `entry` must outlive the listener. The
 * bound address (port 0 resolved) is logged.
 */
struct listener *listener_new(struct event_base *base, const struct config_listen *entry,
                              listener_accept_cb cb, void *arg, char **err);

/* Listen (backlog LISTENER_BACKLOG) and start accepting. Returns 0, or -1 with *err. */
int listener_start(struct listener *l, char **err);

/* The entry it passes to the callback (reload: the same address in the new config). */
const struct config_listen *listener_entry(const struct listener *l);
void listener_set_entry(struct listener *l, const struct config_listen *entry);

/* Stop accepting, close the socket. */
void listener_free(struct listener *l);

/*
 * The socket under a listener, for a server that accepts by other means (the stats endpoint):
 * TCP, non-blocking, close-on-exec, SO_REUSEADDR (and IPV6_V6ONLY for an IPv6 address), bound
 * to sa and listening with `backlog`. Returns the fd (the caller owns it), or -1 with errno set
 * and *what naming the step that failed: "create socket for", "bind" or "listen on".
 */
int listener_socket(const struct sockaddr *sa, socklen_t salen, int backlog, const char **what);

#endif
