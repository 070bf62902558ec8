/*
 * dns.c: asynchronous MX and address resolution with c-ares on the libevent loop (API: dns.h).
 *
 * Owns: one c-ares channel, one event per socket c-ares opens (it tells us through the
 * sock-state callback), one timer armed from ares_timeout(), and every request until its
 * callback returns or it is cancelled. Does not own: address literals ("[192.0.2.1]" is the
 * caller's), retries across delivery attempts (the queue), nor what a permanent answer means for
 * a message.
 *
 * Start reading at dns_resolve_mx(): one MX query (dns_mx_done), then for each exchanger kept
 * one AAAA and one A lookup (dns_addr_done); when the last answer is in, dns_req_settle() builds
 * the result and activates the request's `done` event, whose callback (dns_req_deliver) is the
 * only place a user callback runs. c-ares may answer inside the call that asks (/etc/hosts, bad
 * names, no memory), which is why delivery always goes through that event.
 *
 * Lifetime: c-ares cannot cancel a single query, so a cancelled request stays allocated (without
 * callback) until its last query comes back, and then frees itself. dns_free() destroys the
 * channel, which ends every query with ARES_EDESTRUCTION, and then frees every request.
 */
#include "petrel/dns.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "petrel/log.h"
#include "petrel/stats.h"

#define DNS_NAME_MAX 253 /* presentation form, without the trailing dot */

enum dns_kind {
	DNS_KIND_MX,   /* dns_resolve_mx(): MX query, then addresses */
	DNS_KIND_HOST, /* dns_resolve_host(): addresses only */
};

/* One socket c-ares asked us to watch. */
struct dns_sock {
	struct dns_sock *next;
	ares_socket_t fd;
	short what; /* EV_READ | EV_WRITE currently watched; 0 when ev is NULL */
	struct event *ev;
};

/* One ares_getaddrinfo(): one host, one address family. */
struct dns_slot {
	struct dns_req *req;
	size_t host;                    /* index in req->hosts */
	int family;                     /* AF_INET6 or AF_INET */
	int status;                     /* ARES_* once answered */
	struct sockaddr_storage *addrs; /* malloc'd, port 0 */
	size_t naddrs;
};

struct dns_req {
	struct dns *d;
	struct dns_req *prev, *next; /* in d->reqs while linked */
	bool linked;
	enum dns_kind kind;
	char name[DNS_NAME_MAX + 1]; /* normalised domain or host */
	dns_cb cb;                   /* NULL once cancelled */
	void *arg;
	bool cancelled;
	bool delivering;    /* the callback has started: dns_cancel() is a no-op */
	bool implicit;      /* no MX: the domain itself is the host */
	unsigned pending;   /* c-ares queries in flight, +1 while lookups are being started */
	struct event *done; /* activated once the result is ready; runs dns_req_deliver() */
	struct dns_result res;
	struct dns_host hosts[DNS_MAX_HOSTS]; /* candidates in order; compacted into res */
	size_t nhosts;
	struct dns_slot slots[2 * DNS_MAX_HOSTS];
	size_t nslots;
};

struct dns {
	struct event_base *base;
	ares_channel channel;
	bool library_ready;  /* ares_library_init() succeeded: undo it in dns_free() */
	char *servers;       /* the nameserver list given to dns_new(), or NULL */
	unsigned timeout_ms; /* 0: resolv.conf / c-ares defaults */
	unsigned tries;
	struct dns_sock *socks; /* sockets c-ares has open */
	struct event *timer;    /* ares_timeout() */
	struct dns_req *reqs;   /* pending and cancelled-but-unanswered requests */
	size_t nqueries;        /* c-ares queries in flight */
	uint64_t rng;           /* splitmix64 state for the equal-preference shuffle */
};

/* An MX record kept for sorting. */
struct dns_mx {
	unsigned preference;
	char name[DNS_NAME_MAX + 1];
};

static char dns_lookups_dns_only[] = "b"; /* ARES_OPT_LOOKUPS: DNS, never /etc/hosts */

static int dns_channel_open(struct dns *d, ares_channel *out, char *why, size_t whysize);
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable);
static void dns_sock_cb(evutil_socket_t fd, short what, void *arg);
static void dns_timer_cb(evutil_socket_t fd, short what, void *arg);
static void dns_timer_rearm(struct dns *d);
static uint32_t dns_random(struct dns *d, uint32_t bound);

static int dns_name_normalize(const char *in, char *out, size_t outsize);
static struct dns_req *dns_req_new(struct dns *d, enum dns_kind kind, dns_cb cb, void *arg);
static void dns_req_unlink(struct dns_req *req);
static void dns_req_free(struct dns_req *req);
static void dns_req_error(struct dns_req *req, enum dns_status status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void dns_req_settle(struct dns_req *req);
static void dns_req_build(struct dns_req *req);
static void dns_req_deliver(evutil_socket_t fd, short what, void *arg);
static void dns_req_lookup_hosts(struct dns_req *req);
static void dns_req_take_mx(struct dns_req *req, const struct ares_mx_reply *mx);
static void dns_mx_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
static void dns_addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai);
static int dns_slot_take(struct dns_slot *slot, const struct ares_addrinfo *ai);
static bool dns_status_permanent(int ares_status);
static bool dns_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
static int dns_mx_cmp(const void *a, const void *b);

/* ---- the resolver object ---- */

struct dns *
dns_new(struct event_base *base, const char *nameservers, char **err)
{
	struct dns *d = NULL;
	char why[256];
	unsigned seed;
	int rc;

	why[0] = '\0';
	if (base == NULL) {
		snprintf(why, sizeof(why), "dns: no event base");
		goto fail;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		snprintf(why, sizeof(why), "dns: out of memory");
		goto fail;
	}
	d->base = base;
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		snprintf(why, sizeof(why), "dns: ares_library_init: %s", ares_strerror(rc));
		goto fail;
	}
	d->library_ready = true;
	if (nameservers != NULL) {
		if (nameservers[0] == '\0') {
			snprintf(why, sizeof(why), "dns: empty nameserver list");
			goto fail;
		}
		d->servers = strdup(nameservers);
		if (d->servers == NULL) {
			snprintf(why, sizeof(why), "dns: out of memory");
			goto fail;
		}
	}
	d->timer = evtimer_new(base, dns_timer_cb, d);
	if (d->timer == NULL) {
		snprintf(why, sizeof(why), "dns: cannot create the timer");
		goto fail;
	}
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
	dns_set_seed(d, seed);
	if (dns_channel_open(d, &d->channel, why, sizeof(why)) < 0)
		goto fail;
	return d;

fail:
	dns_free(d);
	if (err != NULL)
		*err = strdup(why[0] != '\0' ? why : "dns: out of memory");
	return NULL;
}

void
dns_free(struct dns *d)
{
	struct dns_sock *s;

	if (d == NULL)
		return;
	/* Every query ends now with ARES_EDESTRUCTION; dns_mx_done/dns_addr_done just count it. */
	if (d->channel != NULL)
		ares_destroy(d->channel);
	while (d->reqs != NULL)
		dns_req_free(d->reqs);
	while ((s = d->socks) != NULL) {
		d->socks = s->next;
		if (s->ev != NULL)
			event_free(s->ev);
		free(s);
	}
	if (d->timer != NULL)
		event_free(d->timer);
	if (d->library_ready)
		ares_library_cleanup();
	free(d->servers);
	free(d);
}

int
dns_set_timeout(struct dns *d, unsigned timeout_ms, unsigned tries)
{
	ares_channel channel = NULL;
	unsigned old_timeout = d->timeout_ms, old_tries = d->tries;
	char why[256];

	if (timeout_ms == 0 || tries == 0 || timeout_ms > INT32_MAX || tries > INT32_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (d->nqueries > 0) {
		errno = EBUSY;
		return -1;
	}
	d->timeout_ms = timeout_ms;
	d->tries = tries;
	if (dns_channel_open(d, &channel, why, sizeof(why)) < 0) {
		d->timeout_ms = old_timeout;
		d->tries = old_tries;
		log_warn("dns set-timeout failed reason=\"%s\"", why);
		errno = ENOMEM;
		return -1;
	}
	/* No query in flight: destroying the old channel only closes its idle sockets. */
	ares_destroy(d->channel);
	d->channel = channel;
	return 0;
}

void
dns_set_seed(struct dns *d, unsigned seed)
{
	d->rng = (uint64_t)seed;
}

const char *
dns_status_name(enum dns_status status)
{
	switch (status) {
	case DNS_OK:
		return "ok";
	case DNS_TEMPFAIL:
		return "tempfail";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_NULL_MX:
		return "null-mx";
	case DNS_NO_ADDRESS:
		return "no-address";
	}
	return "unknown";
}

/* A c-ares channel with our options, on d's servers; `why` gets the reason on failure. */
static int
dns_channel_open(struct dns *d, ares_channel *out, char *why, size_t whysize)
{
	struct ares_options opts;
	ares_channel channel = NULL;
	int mask, rc;

	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = dns_sock_state;
	opts.sock_state_cb_data = d;
	mask = ARES_OPT_SOCK_STATE_CB;
	/* Mail names are absolute (RFC 5321 §5.1): never append resolv.conf search domains. */
	opts.domains = NULL;
	opts.ndomains = 0;
	mask |= ARES_OPT_DOMAINS;
	if (d->servers != NULL) {
		opts.lookups = dns_lookups_dns_only;
		mask |= ARES_OPT_LOOKUPS;
	}
	if (d->timeout_ms > 0) {
		opts.timeout = (int)d->timeout_ms;
		opts.tries = (int)d->tries;
		mask |= ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	}
	rc = ares_init_options(&channel, &opts, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(why, whysize, "dns: ares_init_options: %s", ares_strerror(rc));
		goto fail;
	}
	if (d->servers != NULL) {
		rc = ares_set_servers_ports_csv(channel, d->servers);
		if (rc != ARES_SUCCESS) {
			snprintf(why, whysize, "dns: bad nameserver list \"%.100s\": %s",
			         d->servers, ares_strerror(rc));
			goto fail;
		}
	}
	*out = channel;
	return 0;

fail:
	if (channel != NULL)
		ares_destroy(channel);
	return -1;
}

/* ---- c-ares ↔ libevent ---- */

/* c-ares opens, closes or changes interest in a socket: mirror it with one event. */
static void
dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock **pp, *s;
	short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

	for (pp = &d->socks; *pp != NULL && (*pp)->fd != fd; pp = &(*pp)->next)
		;
	s = *pp;
	if (s != NULL && s->ev != NULL && s->what == what)
		return;
	if (s != NULL && s->ev != NULL) {
		event_free(s->ev);
		s->ev = NULL;
		s->what = 0;
	}
	if (what == 0) {
		if (s != NULL) {
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			goto fail;
		s->fd = fd;
		s->next = d->socks;
		d->socks = s;
	}
	s->ev = event_new(d->base, fd, (short)(what | EV_PERSIST), dns_sock_cb, d);
	if (s->ev == NULL)
		goto fail;
	if (event_add(s->ev, NULL) < 0) {
		event_free(s->ev);
		s->ev = NULL;
		goto fail;
	}
	s->what = what;
	return;

fail:
	/* Not fatal: the timer still runs, so the queries on this socket end as timeouts. */
	log_error("dns cannot watch resolver socket fd=%d", (int)fd);
}

static void
dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	/* May close this socket, and free its struct dns_sock and event: touch neither after. */
	ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_timer_rearm(d);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_rearm(d);
}

/* After every call into c-ares: wake up when its next query times out, or never. */
static void
dns_timer_rearm(struct dns *d)
{
	struct timeval tv, *next;

	next = ares_timeout(d->channel, NULL, &tv);
	if (next == NULL)
		evtimer_del(d->timer);
	else
		evtimer_add(d->timer, next);
}

/* splitmix64; `bound` is small (a run of equal preferences), so the modulo bias is nil. */
static uint32_t
dns_random(struct dns *d, uint32_t bound)
{
	uint64_t z;

	d->rng += 0x9e3779b97f4a7c15ULL;
	z = d->rng;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (uint32_t)((z >> 32) % bound);
}

/* ---- requests ---- */

struct dns_req *
dns_resolve_mx(struct dns *d, const char *domain, dns_cb cb, void *arg)
{
	struct dns_req *req;

	req = dns_req_new(d, DNS_KIND_MX, cb, arg);
	if (req == NULL)
		return NULL;
	if (dns_name_normalize(domain, req->name, sizeof(req->name)) < 0) {
		dns_req_error(req, DNS_NXDOMAIN, "invalid domain name");
		dns_req_settle(req);
		return req;
	}
	req->pending++;
	d->nqueries++;
	ares_query(d->channel, req->name, ns_c_in, ns_t_mx, dns_mx_done, req);
	dns_timer_rearm(d);
	return req;
}

struct dns_req *
dns_resolve_host(struct dns *d, const char *host, dns_cb cb, void *arg)
{
	struct dns_req *req;

	req = dns_req_new(d, DNS_KIND_HOST, cb, arg);
	if (req == NULL)
		return NULL;
	if (dns_name_normalize(host, req->name, sizeof(req->name)) < 0) {
		dns_req_error(req, DNS_NXDOMAIN, "invalid host name");
		dns_req_settle(req);
		return req;
	}
	snprintf(req->hosts[0].name, sizeof(req->hosts[0].name), "%s", req->name);
	req->hosts[0].preference = 0;
	req->nhosts = 1;
	dns_req_lookup_hosts(req);
	dns_timer_rearm(d);
	return req;
}

void
dns_cancel(struct dns_req *req)
{
	if (req == NULL || req->delivering || req->cancelled)
		return;
	req->cancelled = true;
	req->cb = NULL;
	req->arg = NULL;
	event_del(req->done);
	if (req->pending == 0)
		dns_req_free(req);
	/* else the last answer frees it (dns_req_settle) */
}

static struct dns_req *
dns_req_new(struct dns *d, enum dns_kind kind, dns_cb cb, void *arg)
{
	struct dns_req *req;

	req = calloc(1, sizeof(*req));
	if (req == NULL)
		goto fail;
	req->done = event_new(d->base, -1, 0, dns_req_deliver, req);
	if (req->done == NULL)
		goto fail;
	req->d = d;
	req->kind = kind;
	req->cb = cb;
	req->arg = arg;
	req->next = d->reqs;
	if (d->reqs != NULL)
		d->reqs->prev = req;
	d->reqs = req;
	req->linked = true;
	return req;

fail:
	free(req);
	return NULL;
}

static void
dns_req_unlink(struct dns_req *req)
{
	if (!req->linked)
		return;
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		req->d->reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	req->linked = false;
}

/* Does not touch req->d once unlinked: the callback may have freed it. */
static void
dns_req_free(struct dns_req *req)
{
	size_t i;

	dns_req_unlink(req);
	if (req->done != NULL)
		event_free(req->done);
	for (i = 0; i < req->nslots; i++)
		free(req->slots[i].addrs);
	for (i = 0; i < DNS_MAX_HOSTS; i++)
		free(req->hosts[i].addrs);
	free(req);
}

/* The failure status and its reason, cut to fit res.error. */
static void
dns_req_error(struct dns_req *req, enum dns_status status, const char *fmt, ...)
{
	va_list ap;

	req->res.status = status;
	va_start(ap, fmt);
	vsnprintf(req->res.error, sizeof(req->res.error), fmt, ap);
	va_end(ap);
}

/* A query of req's has ended (or none was sent): once none is left, finish or free. */
static void
dns_req_settle(struct dns_req *req)
{
	if (req->pending > 0)
		return;
	if (req->cancelled) {
		dns_req_free(req);
		return;
	}
	if (req->nslots > 0)
		dns_req_build(req); /* else dns_req_error() decided before any address lookup */
	event_active(req->done, 0, 0);
}

/* The only place a user callback runs, from the loop (never inside dns_resolve_*). */
static void
dns_req_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req *req = arg;

	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char name[DNS_NAME_MAX * 4 + 1], error[sizeof(req->res.error) * 4];

		/* The domain comes from a client's RCPT: escaped like any client bytes. */
		log_escape(name, sizeof(name), req->name, strlen(req->name));
		log_escape(error, sizeof(error), req->res.error, strlen(req->res.error));
		log_debug("dns resolved kind=%s name=%s status=%s hosts=%zu error=\"%s\"",
		          req->kind == DNS_KIND_MX ? "mx" : "host", name,
		          dns_status_name(req->res.status), req->res.nhosts, error);
	}
	stats_dns_result(req->res.status);
	/* Unlinked first: a callback that calls dns_free() must not free this request under us. */
	dns_req_unlink(req);
	req->delivering = true;
	req->cb(req->arg, &req->res);
	dns_req_free(req);
}

/* Start one AAAA and one A lookup per candidate host, all in parallel. */
static void
dns_req_lookup_hosts(struct dns_req *req)
{
	static const int families[] = { AF_INET6, AF_INET };
	struct dns *d = req->d;
	struct ares_addrinfo_hints hints;
	struct dns_slot *slot;
	size_t i, f;

	/* Held while starting: a lookup may be answered before the next one is sent. */
	req->pending++;
	for (i = 0; i < req->nhosts; i++) {
		for (f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
			slot = &req->slots[req->nslots++];
			slot->req = req;
			slot->host = i;
			slot->family = families[f];
			slot->status = ARES_ENODATA;
			memset(&hints, 0, sizeof(hints));
			hints.ai_family = families[f];
			hints.ai_flags = ARES_AI_NOSORT;
			req->pending++;
			d->nqueries++;
			ares_getaddrinfo(d->channel, req->hosts[i].name, NULL, &hints,
			                 dns_addr_done, slot);
		}
	}
	req->pending--;
	dns_req_settle(req);
}

static void
dns_mx_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *req = arg;
	struct ares_mx_reply *mx = NULL;
	int rc;

	req->d->nqueries--;
	req->pending--;
	if (status == ARES_EDESTRUCTION)
		return; /* dns_free() frees the request */
	if (req->cancelled) {
		dns_req_settle(req);
		return;
	}
	if (status == ARES_SUCCESS) {
		rc = ares_parse_mx_reply(abuf, alen, &mx);
		if (rc == ARES_SUCCESS && mx != NULL) {
			dns_req_take_mx(req, mx);
			ares_free_data(mx);
			return;
		}
		if (mx != NULL)
			ares_free_data(mx);
		if (rc != ARES_SUCCESS && rc != ARES_ENODATA) {
			dns_req_error(req, DNS_TEMPFAIL, "malformed MX answer for %s: %s",
			              req->name, ares_strerror(rc));
			dns_req_settle(req);
			return;
		}
		status = ARES_ENODATA; /* an answer without MX records (a CNAME alone, say) */
	}
	if (status == ARES_ENODATA) {
		/* RFC 5321 §5.1: no MX, so the domain is its own exchanger, preference 0. */
		req->implicit = true;
		snprintf(req->hosts[0].name, sizeof(req->hosts[0].name), "%s", req->name);
		req->hosts[0].preference = 0;
		req->nhosts = 1;
		dns_req_lookup_hosts(req);
		return;
	}
	if (status == ARES_ENOTFOUND || status == ARES_EBADNAME)
		dns_req_error(req, DNS_NXDOMAIN, "%s: domain not found", req->name);
	else
		dns_req_error(req, DNS_TEMPFAIL, "MX lookup for %s: %s", req->name,
		              ares_strerror(status));
	dns_req_settle(req);
}

/* Sort, dedupe and shuffle the exchangers, keep the first DNS_MAX_HOSTS, resolve them. */
static void
dns_req_take_mx(struct dns_req *req, const struct ares_mx_reply *mx)
{
	const struct ares_mx_reply *m;
	struct dns_mx *v = NULL;
	size_t n = 0, nnull = 0, k = 0, kept = 0, i, j, run;

	for (m = mx; m != NULL; m = m->next)
		n++;
	v = calloc(n, sizeof(*v));
	if (v == NULL) {
		dns_req_error(req, DNS_TEMPFAIL, "MX lookup for %s: out of memory", req->name);
		goto out;
	}
	for (m = mx; m != NULL; m = m->next) {
		if (m->host == NULL || m->host[0] == '\0' || strcmp(m->host, ".") == 0) {
			nnull++;
			continue;
		}
		if (dns_name_normalize(m->host, v[k].name, sizeof(v[k].name)) < 0)
			continue;
		v[k].preference = m->priority;
		k++;
	}
	if (k == 0) {
		if (nnull == n)
			dns_req_error(req, DNS_NULL_MX, "%s accepts no mail (null MX)", req->name);
		else
			dns_req_error(req, DNS_NO_ADDRESS, "%s: no usable MX host name", req->name);
		goto out;
	}
	/* By preference, then name: the same answer in any order gives the same list per seed. */
	qsort(v, k, sizeof(*v), dns_mx_cmp);
	for (i = 0; i < k; i++) {
		for (j = 0; j < kept && strcmp(v[j].name, v[i].name) != 0; j++)
			;
		if (j < kept)
			continue; /* listed twice: keep the most preferred */
		if (kept != i)
			v[kept] = v[i];
		kept++;
	}
	/* Fisher-Yates within each run of equal preference. */
	for (i = 0; i < kept; i = run) {
		for (run = i + 1; run < kept && v[run].preference == v[i].preference; run++)
			;
		for (j = run - 1; j > i; j--) {
			size_t r = i + dns_random(req->d, (uint32_t)(j - i + 1));
			struct dns_mx tmp = v[j];

			v[j] = v[r];
			v[r] = tmp;
		}
	}
	req->nhosts = kept < DNS_MAX_HOSTS ? kept : DNS_MAX_HOSTS;
	for (i = 0; i < req->nhosts; i++) {
		memcpy(req->hosts[i].name, v[i].name, sizeof(v[i].name));
		req->hosts[i].preference = v[i].preference;
	}
	free(v);
	dns_req_lookup_hosts(req);
	return;

out:
	free(v);
	dns_req_settle(req);
}

static void
dns_addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_slot *slot = arg;
	struct dns_req *req = slot->req;

	req->d->nqueries--;
	req->pending--;
	slot->status = status;
	if (status == ARES_SUCCESS && ai != NULL && !req->cancelled && dns_slot_take(slot, ai) < 0)
		slot->status = ARES_ENOMEM;
	if (ai != NULL)
		ares_freeaddrinfo(ai);
	if (status == ARES_EDESTRUCTION)
		return; /* dns_free() frees the request */
	dns_req_settle(req);
}

/* Copy the addresses of the slot's family, port 0. */
static int
dns_slot_take(struct dns_slot *slot, const struct ares_addrinfo *ai)
{
	const struct ares_addrinfo_node *node;
	struct sockaddr_storage *ss;
	size_t n = 0;

	for (node = ai->nodes; node != NULL; node = node->ai_next)
		if (node->ai_family == slot->family && node->ai_addr != NULL &&
		    node->ai_addrlen <= sizeof(*ss))
			n++;
	if (n == 0)
		return 0;
	slot->addrs = calloc(n, sizeof(*slot->addrs));
	if (slot->addrs == NULL)
		return -1;
	for (node = ai->nodes; node != NULL; node = node->ai_next) {
		if (node->ai_family != slot->family || node->ai_addr == NULL ||
		    node->ai_addrlen > sizeof(*ss))
			continue;
		ss = &slot->addrs[slot->naddrs++];
		memcpy(ss, node->ai_addr, node->ai_addrlen);
		if (ss->ss_family == AF_INET6)
			((struct sockaddr_in6 *)ss)->sin6_port = 0;
		else if (ss->ss_family == AF_INET)
			((struct sockaddr_in *)ss)->sin_port = 0;
	}
	return 0;
}

/*
 * Every lookup is in: each host gets its new addresses (IPv6 then IPv4), hosts without one are
 * dropped, and the status says why when none is left.
 */
static void
dns_req_build(struct dns_req *req)
{
	const struct dns_slot *temp = NULL;
	size_t i, s, a, h, kept = 0, ntemp = 0, nnotfound = 0;

	for (i = 0; i < req->nhosts; i++) {
		struct sockaddr_storage *addrs = NULL;
		size_t cap = 0, n = 0;
		bool found = false, permanent = true;

		for (s = 0; s < req->nslots; s++)
			if (req->slots[s].host == i)
				cap += req->slots[s].naddrs;
		if (cap > 0) {
			addrs = calloc(cap, sizeof(*addrs));
			if (addrs == NULL) {
				ntemp++;
				continue;
			}
		}
		for (s = 0; s < req->nslots; s++) {
			const struct dns_slot *slot = &req->slots[s];

			if (slot->host != i)
				continue;
			if (slot->naddrs > 0) {
				found = true;
			} else if (!dns_status_permanent(slot->status)) {
				permanent = false;
				if (temp == NULL)
					temp = slot;
			}
			if (slot->status == ARES_ENOTFOUND)
				nnotfound++;
			for (a = 0; a < slot->naddrs; a++) {
				const struct sockaddr_storage *cand = &slot->addrs[a];
				bool seen = false;
				size_t x;

				for (h = 0; h < kept && !seen; h++)
					for (x = 0; x < req->hosts[h].naddrs && !seen; x++)
						seen = dns_addr_equal(&req->hosts[h].addrs[x],
						                      cand);
				for (x = 0; x < n && !seen; x++)
					seen = dns_addr_equal(&addrs[x], cand);
				if (!seen)
					addrs[n++] = *cand;
			}
		}
		if (n == 0) {
			free(addrs);
			if (!found && !permanent)
				ntemp++;
			continue;
		}
		if (kept != i)
			req->hosts[kept] = req->hosts[i];
		req->hosts[kept].addrs = addrs;
		req->hosts[kept].naddrs = n;
		kept++;
	}
	/* Entries past `kept` are stale copies: their addrs were never set. */
	for (i = kept; i < DNS_MAX_HOSTS; i++) {
		req->hosts[i].addrs = NULL;
		req->hosts[i].naddrs = 0;
	}
	req->res.hosts = req->hosts;
	req->res.nhosts = kept;
	if (kept > 0) {
		req->res.status = DNS_OK;
	} else if (ntemp > 0) {
		dns_req_error(req, DNS_TEMPFAIL, "address lookup for %s: %s",
		              temp != NULL ? req->hosts[temp->host].name : req->name,
		              temp != NULL ? ares_strerror(temp->status) : "out of memory");
	} else if (req->kind == DNS_KIND_HOST && nnotfound > 0) {
		dns_req_error(req, DNS_NXDOMAIN, "%s: host not found", req->name);
	} else {
		if (req->kind == DNS_KIND_HOST)
			dns_req_error(req, DNS_NO_ADDRESS, "%s has no address", req->name);
		else if (req->implicit)
			dns_req_error(req, DNS_NO_ADDRESS, "%s has no MX and no address",
			              req->name);
		else
			dns_req_error(req, DNS_NO_ADDRESS, "no MX host of %s has an address",
			              req->name);
	}
}

/* ---- small helpers ---- */

/*
 * Lower case, one trailing dot removed. Refused: empty, longer than 253, empty labels, bytes
 * that are blanks, controls or '\\' (c-ares escapes odd bytes of names it receives that way).
 */
static int
dns_name_normalize(const char *in, char *out, size_t outsize)
{
	size_t len, i;

	if (in == NULL)
		return -1;
	len = strlen(in);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX || len >= outsize)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c <= ' ' || c == 0x7f || c == '\\')
			return -1;
		if (c == '.' && (i == 0 || in[i - 1] == '.'))
			return -1;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	out[len] = '\0';
	return 0;
}

/* NXDOMAIN, NODATA, a bad name, or an answer with nothing usable: asking again will not help. */
static bool
dns_status_permanent(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
	case ARES_ENODATA:
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:
	case ARES_ENONAME:
		return true;
	default:
		return false;
	}
}

static bool
dns_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		              &((const struct sockaddr_in *)b)->sin_addr,
		              sizeof(struct in_addr)) == 0;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		              &((const struct sockaddr_in6 *)b)->sin6_addr,
		              sizeof(struct in6_addr)) == 0 &&
		       ((const struct sockaddr_in6 *)a)->sin6_scope_id ==
		               ((const struct sockaddr_in6 *)b)->sin6_scope_id;
	return false;
}

static int
dns_mx_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	if (x->preference != y->preference)
		return x->preference < y->preference ? -1 : 1;
	return strcmp(x->name, y->name);
}
