/*
 * net/cidr.c: IPv4/IPv6 networks in CIDR notation and matching a peer address against them.
 *
 * Pure: no allocation, no I/O, no DNS (inet_pton only). The relay policy keeps an array of
 * struct cidr from the config and asks cidr_match_any() for each connecting client.
 *
 * Start reading at cidr_parse(). Matching compares the first `prefix` bits of the network with the
 * peer's address bytes; an IPv4-mapped IPv6 peer (::ffff:a.b.c.d, what a dual-stack socket reports
 * for an IPv4 client) is compared by its last four bytes against IPv4 networks.
 */
#include "petrel/net/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define CIDR_V4_BITS     32
#define CIDR_V6_BITS     128
#define CIDR_PREFIX_MAX  3  /* digits: "128" */
#define CIDR_V4MAPPED_AT 12 /* ::ffff:a.b.c.d keeps a.b.c.d in bytes 12..15 */

static int cidr_parse_prefix(const char *s, unsigned max, unsigned *out);
static void cidr_clear_host_bits(uint8_t *addr, size_t len, unsigned prefix);
static bool cidr_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix);

/* Decimal 0..max, no sign, no spaces, no leading zero (so "/08" is refused like "/ 8"). */
static int
cidr_parse_prefix(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t n;

	for (n = 0; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n == CIDR_PREFIX_MAX)
			return -1;
		v = v * 10 + (unsigned)(s[n] - '0');
	}
	if (n == 0 || (n > 1 && s[0] == '0') || v > max)
		return -1;
	*out = v;
	return 0;
}

static void
cidr_clear_host_bits(uint8_t *addr, size_t len, unsigned prefix)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (prefix >= 8) {
			prefix -= 8;
			continue;
		}
		addr[i] &= (uint8_t)(0xff00u >> prefix);
		prefix = 0;
	}
}

static bool
cidr_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	size_t whole = prefix / 8;
	unsigned rest = prefix % 8;
	uint8_t mask;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff00u >> rest);
	return (a[whole] & mask) == (b[whole] & mask);
}

int
cidr_parse(const char *s, struct cidr *out)
{
	char host[INET6_ADDRSTRLEN];
	struct cidr net;
	const char *slash;
	size_t len;

	if (s == NULL)
		return -1;
	slash = strchr(s, '/');
	len = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (len == 0 || len >= sizeof(host))
		return -1;
	memcpy(host, s, len);
	host[len] = '\0';

	memset(&net, 0, sizeof(net));
	net.family = memchr(host, ':', len) != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(net.family, host, net.addr) != 1)
		return -1;
	net.prefix = net.family == AF_INET ? CIDR_V4_BITS : CIDR_V6_BITS;
	if (slash != NULL && cidr_parse_prefix(slash + 1, net.prefix, &net.prefix) < 0)
		return -1;
	cidr_clear_host_bits(net.addr, net.family == AF_INET ? 4 : 16, net.prefix);
	*out = net;
	return 0;
}

bool
cidr_match(const struct cidr *net, const struct sockaddr *sa)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (net == NULL || sa == NULL)
		return false;
	/* memcpy: `sa` may be any sockaddr buffer, with no promise of alignment for the cast. */
	switch (sa->sa_family) {
	case AF_INET:
		if (net->family != AF_INET)
			return false;
		memcpy(&sin, sa, sizeof(sin));
		return cidr_prefix_equal(net->addr, (const uint8_t *)&sin.sin_addr, net->prefix);
	case AF_INET6:
		memcpy(&sin6, sa, sizeof(sin6));
		if (net->family == AF_INET6)
			return cidr_prefix_equal(net->addr, sin6.sin6_addr.s6_addr, net->prefix);
		if (net->family == AF_INET && IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
			return cidr_prefix_equal(
			        net->addr, sin6.sin6_addr.s6_addr + CIDR_V4MAPPED_AT, net->prefix);
		return false;
	default:
		return false;
	}
}

bool
cidr_match_any(const struct cidr *nets, size_t n, const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (cidr_match(&nets[i], sa))
			return true;
	}
	return false;
}
