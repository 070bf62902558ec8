/*
 * net/cidr.h: IPv4/IPv6 networks ("127.0.0.0/8", "::1/128", "10.1.2.3") and matching a peer
 * address against them. Pure; IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match IPv4 networks.
 */
#ifndef PETREL_NET_CIDR_H
#define PETREL_NET_CIDR_H

#include <stdbool.h>
#include <stdint.h>

#include <sys/socket.h>

struct cidr {
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network bytes, host bits cleared; 4 used for AF_INET */
	unsigned prefix;  /* 0..32 or 0..128 */
};

/* Parse "a.b.c.d[/n]" or "v6[/n]" (no brackets). A missing prefix means a host. Returns 0/-1. */
int cidr_parse(const char *s, struct cidr *out);

/* Does the socket address fall inside the network? */
bool cidr_match(const struct cidr *net, const struct sockaddr *sa);

/* Does it fall inside any of n networks? */
bool cidr_match_any(const struct cidr *nets, size_t n, const struct sockaddr *sa);

#endif
