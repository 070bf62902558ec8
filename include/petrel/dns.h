/*
 * dns.h: asynchronous mail-exchanger resolution for outbound delivery (RFC 5321 §5.1,
 * RFC 7505 null MX), on the event loop, with c-ares (libevent's evdns cannot ask for MX).
 *
 * One request = one domain → an ordered list of hosts, each with its addresses:
 * - MX records sorted by preference, random order among equal preferences;
 * - no MX record (NODATA) → the domain itself as the only host ("implicit MX", preference 0);
 * - a single MX "." → DNS_NULL_MX (permanent: the domain accepts no mail);
 * - NXDOMAIN → DNS_NXDOMAIN (permanent);
 * - timeouts, SERVFAIL, refused → DNS_TEMPFAIL;
 * - hosts whose A/AAAA lookups all fail are dropped; if no host has an address → DNS_TEMPFAIL
 *   (DNS_NO_ADDRESS when every host lookup said NXDOMAIN/NODATA: permanent).
 *
 * Details (src/dns.c):
 * - names are absolute: no search domains are ever appended; one trailing dot is accepted;
 *   result names are lower case without the trailing dot;
 * - at most DNS_MAX_HOSTS exchangers (the most preferred) are resolved, all in parallel, each
 *   with one AAAA and one A lookup; a host's addresses are its IPv6 ones then its IPv4 ones, each
 *   in the resolver's order; an address already listed (for this or an earlier host) is left
 *   out, and a host whose addresses were all listed already is left out too;
 * - a null MX is a set of MX records whose exchangers are all "." (RFC 7505: exactly one);
 *   a "." among real exchangers is ignored;
 * - an exchanger name that is not usable (too long, escaped bytes) is skipped;
 * - the seed of the shuffle comes from getrandom(); dns_set_seed() fixes it (tests);
 * - nameservers NULL: /etc/resolv.conf (its timeout/attempts options apply) and the system's
 *   lookup order, so /etc/hosts is read first where nsswitch.conf says "files dns"; with an
 *   explicit list only DNS is asked, never /etc/hosts;
 * - timing: c-ares waits `timeout` for a try, doubles it after each round over the servers and
 *   makes `tries` rounds: with its defaults (5 s, 4 tries) an unreachable single server turns
 *   into DNS_TEMPFAIL after 5+10+20+40 = 75 s for the MX query, and up to as long again for the
 *   address lookups (N servers: N times that). dns_set_timeout() shortens it.
 */
#ifndef PETREL_DNS_H
#define PETREL_DNS_H

#include <stddef.h>
#include <sys/socket.h>

#define DNS_MAX_HOSTS 10 /* exchangers resolved per domain (the most preferred) */

struct event_base;
struct dns;
struct dns_req;

enum dns_status {
	DNS_OK = 0,
	DNS_TEMPFAIL,   /* try again later (4.4.3) */
	DNS_NXDOMAIN,   /* permanent (5.1.2) */
	DNS_NULL_MX,    /* permanent (5.1.10, RFC 7505) */
	DNS_NO_ADDRESS, /* permanent: no host has an address (5.4.4) */
};

struct dns_host {
	char name[256]; /* host name, lower case, no trailing dot */
	unsigned preference;
	struct sockaddr_storage *addrs; /* IPv6 and IPv4, port 0 */
	size_t naddrs;
};

struct dns_result {
	enum dns_status status;
	struct dns_host *hosts; /* in the order to try */
	size_t nhosts;
	char error[128]; /* human-readable reason when status != DNS_OK */
};

/* Called once per request from the event loop; `res` is valid only during the call. */
typedef void (*dns_cb)(void *arg, const struct dns_result *res);

/*
 * nameservers: NULL for /etc/resolv.conf, or a comma-separated list of IP addresses, each with an
 * optional port: "192.0.2.1", "127.0.0.1:5353", "2001:db8::1", "[::1]:53" (an IPv6 address with
 * a port needs the brackets); no host names, no spaces; asked in order (c-ares
 * ares_set_servers_ports_csv). Returns NULL and *err (malloc'd, if err is not NULL) on failure.
 */
struct dns *dns_new(struct event_base *base, const char *nameservers, char **err);

/*
 * Cancels every pending request (their callbacks are not called); every struct dns_req pointer is
 * invalid afterwards. dns_free(NULL) is a no-op. May be called from a dns_cb.
 */
void dns_free(struct dns *d);

/*
 * Per-try timeout (doubled after each round over the servers) and number of rounds, in place of
 * the resolv.conf/c-ares defaults. Only while no query is in flight (e.g. right after dns_new):
 * returns 0, or -1 with errno EBUSY (queries in flight), EINVAL (a zero) or ENOMEM.
 */
int dns_set_timeout(struct dns *d, unsigned timeout_ms, unsigned tries);

/* Seed the generator that orders MX hosts of equal preference (deterministic tests). */
void dns_set_seed(struct dns *d, unsigned seed);

/* "ok", "tempfail", "nxdomain", "null-mx", "no-address": for logs. */
const char *dns_status_name(enum dns_status status);

/*
 * Start resolving the mail exchangers of `domain`. NULL on allocation failure (then `cb` never
 * runs); otherwise `cb` runs exactly once, from the event loop and never from inside this call,
 * unless the request is cancelled first. The dns_req belongs to dns.c and is gone once `cb`
 * returns.
 */
struct dns_req *dns_resolve_mx(struct dns *d, const char *domain, dns_cb cb, void *arg);

/*
 * Resolve one host name to addresses only (smarthost relays): the result has one host
 * (preference 0), or DNS_NXDOMAIN (the name does not exist), DNS_NO_ADDRESS (it has no A/AAAA),
 * DNS_TEMPFAIL. Whether a permanent answer bounces a smarthost's mail is the caller's call.
 * Same ownership and callback rules as dns_resolve_mx().
 */
struct dns_req *dns_resolve_host(struct dns *d, const char *host, dns_cb cb, void *arg);

/*
 * The caller goes away: the callback will not run. Valid at any time until the callback starts
 * (a no-op from inside the callback itself, and for NULL); `req` is invalid afterwards. Queries
 * already sent run to their end inside dns.c (c-ares cannot cancel one query).
 */
void dns_cancel(struct dns_req *req);

#endif
