/*
 * net/conn_table.h: open connections counted per client IP address, for
 * limits.max_connections_per_ip. Pure (no I/O); IPv4-mapped IPv6 counts as the IPv4 address.
 */
#ifndef PETREL_NET_CONN_TABLE_H
#define PETREL_NET_CONN_TABLE_H

#include <stdbool.h>
#include <sys/socket.h>

struct conn_table;

struct conn_table *conn_table_new(void);
void conn_table_free(struct conn_table *t);

/* Count one more connection from sa unless that would exceed `limit`: returns true if
 * counted, false if over the limit or out of memory (then nothing is counted). */
bool conn_table_acquire(struct conn_table *t, const struct sockaddr *sa, unsigned limit);

/* Forget one connection from sa (must match an earlier successful acquire). */
void conn_table_release(struct conn_table *t, const struct sockaddr *sa);

/* Connections currently counted for sa (0 if none). */
unsigned conn_table_count(const struct conn_table *t, const struct sockaddr *sa);

#endif
