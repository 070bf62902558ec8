/*
 * scheduler.c: what happens to a message after its 250 (see scheduler.h).
 *
 * Units. A message's recipients are grouped by destination domain into delivery units; a unit
 * is what the heap (queue.c) orders and what one SMTP transaction or one Maildir job carries.
 * When the recipients of a unit meet different fates, the ones to retry form the unit again
 * (fewer recipients, next attempt later); the others are finished for good.
 *
 * Destinations. Units for the same next hop ("mx:example.com", "relay:host:port") share a
 * destination: it caps how many are in flight (queue.concurrency_per_destination), keeps the
 * units that wait for a slot, and keeps idle SMTP connections for reuse: a connection that
 * finishes a transaction takes the next waiting unit of its destination at once.
 *
 * State on disk. A recipient's final state (delivered, bounced, expired) and a deferral are
 * appended to the spool's state journal (state/<id>), so a restart neither forgets nor repeats
 * anyone; when every recipient is final the message leaves the spool. Journal lines:
 *   "<rcpt-index> delivered|bounced|expired <unix-time> [<reply>]"
 *   "<rcpt-index> deferred <unix-time> <attempts> <next-attempt-unix-time> [<reply>]"
 *   "- warned <unix-time>"          (the "delayed" DSN was sent)
 *   "- held <unix-time>"            (queue hold: no delivery until "- released <unix-time>")
 * <reply> is the reply (or local error) that decided, printable ASCII (sched_journal_text);
 * older journals do not have it. The queue CLI (control.c) reads the same lines.
 *
 * Start reading at scheduler_kick(): pop due units, dispatch them by route.
 */
#include "petrel/scheduler.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "petrel/auth.h"
#include "petrel/bounce.h"
#include "petrel/delivery/maildir.h"
#include "petrel/delivery/smtp_client.h"
#include "petrel/dns.h"
#include "petrel/log.h"
#include "petrel/message.h"
#include "petrel/queue.h"
#include "petrel/spool.h"
#include "petrel/stats.h"
#include "petrel/tls.h"
#include "petrel/worker.h"

#define SCHED_HOPS_MAX 50 /* Received: headers before we call it a loop */
#define SCHED_KEPT_FDS                                                                             \
	1024                                /* new messages' spool files kept open for their first \
	                                     * attempt (saves an open and a close each) */
#define SCHED_HEADER_READ     (64 * 1024)   /* bytes of a message read to count hops */
#define SCHED_TARGETS_MAX     32            /* addresses tried per delivery attempt */
#define SCHED_DSN_FULL_MAX    (1024 * 1024) /* RET=FULL: embed at most this much */
#define SCHED_DEST_BUCKETS    1024
#define SCHED_MAILDIR_THREADS 2
#define SCHED_OLDEST_SCAN     64 /* messages looked at for the oldest arrival (stats) */

enum sched_rcpt_state {
	RS_PENDING = 0,
	RS_DELIVERED,
	RS_BOUNCED,
	RS_EXPIRED,
};

struct sched_msg {
	struct sched_msg *prev, *next; /* all messages */
	struct message *msg;           /* envelope; owned */
	uint8_t *state;                /* enum sched_rcpt_state per recipient */
	char **diag;                   /* last temporary error per recipient, or NULL */
	unsigned npending;             /* recipients not final */
	unsigned nunits;               /* units alive */
	int priority;
	bool warned; /* the "delayed" DSN went out */
	bool loop;   /* too many Received: headers */
	uint64_t expires_ms;
	struct scheduler *sched;
	bool journaled;     /* state/<id> exists (so removal has one to delete) */
	bool held;          /* queue hold: its units stay out of the heap (parked) until released */
	bool deleted;       /* queue delete: gone from the spool, waits for its busy units to end */
	uint64_t view_next; /* scheduler_foreach() scratch: earliest queued attempt, or 0 */
	bool view_active;   /* scheduler_foreach() scratch: a unit in flight or due */
	/* DSNs about this message not yet on disk: the message stays in the spool, and the
	 * journal lines of the recipients they report wait with them, so a crash before the DSN
	 * is committed leaves those recipients pending (bounced again) instead of lost. */
	struct sched_dsn_wait *dsn_waits;
};

struct sched_dsn_wait {
	struct sched_dsn_wait *next;
	struct spool_job *job;
	char id[MESSAGE_ID_LEN + 1];
	char *journal; /* lines to append once the DSN is committed, or NULL */
};

struct sched_unit {
	struct queue_item qi;           /* must stay first: heap items are units */
	struct sched_unit *prev, *next; /* all units */
	struct sched_unit *wait_next;   /* in its destination's wait list */
	struct scheduler *sched;
	struct sched_msg *m;
	char *domain;    /* lower case */
	unsigned *rcpts; /* indexes into m->msg->rcpts */
	size_t nrcpts;
	unsigned attempts;     /* failed attempts so far */
	struct sched_gen *gen; /* a reference: the config of the last dispatch (route points in) */
	const struct config_route *route;
	struct sched_dest *dest; /* while waiting for or holding a slot */
	struct dns_req *dns;     /* while resolving */
	struct smtp_txn txn;     /* while delivering */
	struct smtp_txn_rcpt *txn_rcpts;
	bool inflight;
};

struct sched_conn {
	struct sched_conn *prev, *next; /* all connections */
	struct sched_conn *idle_next;   /* in its destination's idle list */
	struct scheduler *sched;
	struct sched_gen *gen; /* a reference: the client borrows its TLS context, password, HELO */
	struct sched_dest *dest;
	struct smtp_client *client;
	struct sched_unit *unit; /* transaction under way, or NULL when idle */
	bool idle;
};

struct sched_dest {
	struct sched_dest *next; /* hash chain */
	char *key;
	unsigned port;
	unsigned inflight;
	bool pumping;
	struct sched_unit *wait_head, **wait_tail;
	struct sched_conn *idle;
};

/* What a route needs for STARTTLS and AUTH, loaded with its config (cfg->routes[i]). */
struct sched_route_sec {
	struct tls_client *tls; /* the route's ca_file, or NULL: the generation's tls_system */
	char *auth_pass;        /* first line of auth.password_file, or NULL; never logged */
};

/*
 * One config as the scheduler uses it: the config and what was loaded for its routes. The
 * scheduler holds the current one; a unit holds the one of its last dispatch (its route points
 * into it), a connection the one it was opened with. A reload makes a new one current; the old
 * one goes with its last reference.
 */
struct sched_gen {
	unsigned refs;
	unsigned id; /* in destination keys: a secured route's connections stay its own */
	struct petrel_config *cfg;     /* a reference */
	struct tls_client *tls_system; /* outbound TLS with the system trust store */
	struct sched_route_sec *rsec;  /* one per cfg->routes[] */
};

struct scheduler {
	struct event_base *base;
	struct sched_gen *gen; /* the current config (gen->cfg) */
	struct spool *spool;
	struct dns *dns;
	struct worker_pool *workers;
	struct event *timer;
	struct queue heap;
	struct sched_msg *msgs;
	struct sched_msg *msgs_tail; /* queued longest ago (stats: oldest arrival) */
	struct sched_unit *units;
	struct sched_conn *conns;
	struct sched_dest *dests[SCHED_DEST_BUCKETS];
	unsigned inflight;
	unsigned kept_fds; /* messages whose msg->fd is still open (SCHED_KEPT_FDS) */
	bool kicking;
	bool closing;
	void (*drained_cb)(void *arg); /* shutdown: called when nothing is in flight */
	void *drained_arg;
	struct scheduler_stats stats;
};

static void scheduler_kick(struct scheduler *s);
static struct sched_gen *sched_gen_ref(struct sched_gen *g);
static void sched_gen_free(struct sched_gen *g);
static void sched_unit_done(struct sched_unit *u);
static void sched_dest_pump(struct scheduler *s, struct sched_dest *d);

static uint64_t
sched_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* Nanoseconds from msg's arrival to now_ms (0 if the clock went back): for the stats. */
static uint64_t
sched_age_ns(const struct message *msg, uint64_t now_ms)
{
	uint64_t arrival =
	        (uint64_t)msg->arrival.tv_sec * 1000000u + (uint64_t)msg->arrival.tv_usec;
	uint64_t now = now_ms * 1000u;

	return now > arrival ? (now - arrival) * 1000u : 0;
}

/* ---- messages ---- */

static const char *
sched_domain_of(const struct scheduler *s, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (at != NULL)
		return at + 1;
	/* <postmaster> without a domain: ours. */
	return s->gen->cfg->nlocal_domains > 0 ? s->gen->cfg->local_domains[0]
	                                       : s->gen->cfg->hostname;
}

int
scheduler_priority(const struct petrel_config *cfg, const struct message *msg)
{
	const char *rdomains[64];
	const char *at = msg->from ? strrchr(msg->from, '@') : NULL;
	size_t i, n = 0;
	uint64_t size = msg->data_len;
	int bonus = size < 64 * 1024 ? 2 : size < 1024 * 1024 ? 1 : 0;

	for (i = 0; i < msg->nrcpts && n < 64; i++) {
		const char *rat = strrchr(msg->rcpts[i].addr, '@');
		if (rat)
			rdomains[n++] = rat + 1;
	}
	return config_priority_for(cfg, at ? at + 1 : "", rdomains, n) * 4 + bonus;
}

/* The spool file of m to read a delivery from (the caller closes it): a duplicate of the
 * descriptor kept open since the commit (the spool marks the slot free through it when the
 * message is done), else a new one. */
static int
sched_data_fd(struct scheduler *s, struct sched_msg *m)
{
	if (m->msg->fd < 0)
		return spool_open_data(spool_slots_fd(s->spool), m->msg);
	return fcntl(m->msg->fd, F_DUPFD_CLOEXEC, 0);
}

/* m waits for a retry: its kept descriptor and in-memory data go (they are for the first
 * attempt). */
static void
sched_msg_drop_kept(struct scheduler *s, struct sched_msg *m)
{
	if (m->msg->data_mem != NULL) {
		evbuffer_free(m->msg->data_mem);
		m->msg->data_mem = NULL;
	}
	if (m->msg->fd < 0)
		return;
	close(m->msg->fd);
	m->msg->fd = -1;
	s->kept_fds--;
}

/* Count the Received: lines of the header section (loop detection, RFC 5321 §6.3). */
static unsigned
sched_count_hops(struct scheduler *s, const struct message *msg)
{
	char *buf;
	ssize_t n;
	unsigned hops = 0;
	size_t i, len;
	int fd;

	if ((fd = spool_open_data(spool_slots_fd(s->spool), msg)) == -1)
		return 0;
	len = msg->data_len < SCHED_HEADER_READ ? (size_t)msg->data_len : SCHED_HEADER_READ;
	if ((buf = malloc(len + 1)) == NULL) {
		close(fd);
		return 0;
	}
	n = pread(fd, buf, len, (off_t)msg->data_offset);
	close(fd);
	for (i = 0; n > 0 && i < (size_t)n; i++) {
		if (i != 0 && buf[i - 1] != '\n')
			continue;
		if (buf[i] == '\r' || buf[i] == '\n')
			break; /* end of the header section */
		if ((size_t)n - i >= 9 && strncasecmp(buf + i, "Received:", 9) == 0)
			hops++;
	}
	free(buf);
	return hops;
}

static struct sched_msg *
sched_msg_new(struct scheduler *s, struct message *msg)
{
	struct sched_msg *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->state = calloc(msg->nrcpts, sizeof(*m->state));
	m->diag = calloc(msg->nrcpts, sizeof(*m->diag));
	if (m->state == NULL || m->diag == NULL) {
		free(m->state);
		free(m->diag);
		free(m);
		return NULL;
	}
	m->msg = msg;
	m->sched = s;
	if (msg->fd >= 0)
		s->kept_fds++;
	if (s->kept_fds > SCHED_KEPT_FDS)
		sched_msg_drop_kept(s, m); /* enough kept: this one opens its file in its turn */
	m->npending = (unsigned)msg->nrcpts;
	m->priority = scheduler_priority(s->gen->cfg, msg);
	m->expires_ms = ((uint64_t)msg->arrival.tv_sec + s->gen->cfg->max_lifetime) * 1000u;
	m->loop = (msg->hops ? msg->hops : sched_count_hops(s, msg)) > SCHED_HOPS_MAX;
	m->next = s->msgs;
	if (s->msgs)
		s->msgs->prev = m;
	else
		s->msgs_tail = m;
	s->msgs = m;
	s->stats.queued++;
	return m;
}

/* Forget the DSNs of m still being committed (they go out anyway; m hears nothing more). */
static void
sched_msg_cancel_dsns(struct sched_msg *m)
{
	while (m->dsn_waits != NULL) {
		struct sched_dsn_wait *w = m->dsn_waits;
		m->dsn_waits = w->next;
		spool_job_cancel(w->job);
		free(w->journal);
		free(w);
	}
}

static void
sched_msg_free(struct scheduler *s, struct sched_msg *m)
{
	size_t i;
	sched_msg_cancel_dsns(m);
	if (m->prev)
		m->prev->next = m->next;
	else
		s->msgs = m->next;
	if (m->next)
		m->next->prev = m->prev;
	else
		s->msgs_tail = m->prev;
	for (i = 0; i < m->msg->nrcpts; i++)
		free(m->diag[i]);
	free(m->diag);
	free(m->state);
	if (m->msg->fd >= 0)
		s->kept_fds--;
	message_free(m->msg); /* closes it */
	free(m);
	s->stats.queued--;
}

/* m's slot is free for the next message (nobody reads its file any more), then m goes. */
static void
sched_msg_leave_spool(struct scheduler *s, struct sched_msg *m, bool has_state)
{
	if (m->msg->fd >= 0)
		s->kept_fds--; /* the spool takes it */
	spool_remove(s->spool, m->msg, has_state);
	sched_msg_free(s, m);
}

/* Every recipient is final, no unit and no DSN commit is left: the message leaves the spool. */
static void
sched_msg_maybe_remove(struct scheduler *s, struct sched_msg *m)
{
	if (m->npending != 0 || m->nunits != 0 || m->dsn_waits != NULL)
		return;
	log_info("%s removed (every recipient done)", m->msg->id);
	sched_msg_leave_spool(s, m, m->journaled);
}

/* Append lines to state/<id>; the one place that writes a message's journal. 0 or -1. */
static int
sched_journal_write(struct scheduler *s, struct sched_msg *m, const char *text, size_t len)
{
	if (len == 0)
		return 0;
	m->journaled = true; /* even a failed append may have created the file */
	if (spool_state_append(s->spool, m->msg->id, text, len) == -1) {
		log_error("%s journal write failed error=\"%s\"", m->msg->id, strerror(errno));
		return -1;
	}
	return 0;
}

/* Append the journal lines collected in jb to state/<id>, in one write. */
static void
sched_journal_flush(struct scheduler *s, struct sched_msg *m, FILE *jb, char **buf, size_t *len)
{
	fflush(jb);
	sched_journal_write(s, m, *buf, *len);
}

/* ---- units ---- */

static struct sched_unit *
sched_unit_new(struct scheduler *s, struct sched_msg *m, const char *domain, size_t cap)
{
	struct sched_unit *u;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->rcpts = calloc(cap ? cap : 1, sizeof(*u->rcpts));
	u->domain = strdup(domain);
	if (u->rcpts == NULL || u->domain == NULL) {
		free(u->rcpts);
		free(u->domain);
		free(u);
		return NULL;
	}
	for (char *p = u->domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	u->qi.index = QUEUE_NOT_QUEUED;
	u->sched = s;
	u->m = m;
	u->txn.fd = -1;
	m->nunits++;
	u->next = s->units;
	if (s->units)
		s->units->prev = u;
	s->units = u;
	return u;
}

/* The transaction's data source (a spool file descriptor, or its reference to the data in
 * memory) goes: the attempt is over. */
static void
sched_txn_release(struct sched_unit *u)
{
	if (u->txn.fd >= 0) {
		close(u->txn.fd);
		u->txn.fd = -1;
	}
	if (u->txn.mem != NULL) {
		evbuffer_free(u->txn.mem);
		u->txn.mem = NULL;
	}
}

static void
sched_unit_free(struct scheduler *s, struct sched_unit *u)
{
	if (u->prev)
		u->prev->next = u->next;
	else
		s->units = u->next;
	if (u->next)
		u->next->prev = u->prev;
	queue_remove(&s->heap, &u->qi);
	sched_txn_release(u);
	u->m->nunits--;
	sched_gen_free(u->gen);
	free(u->txn_rcpts);
	free(u->rcpts);
	free(u->domain);
	free(u);
}

static void
sched_unit_schedule(struct scheduler *s, struct sched_unit *u, uint64_t when)
{
	u->qi.when = when;
	u->qi.priority = u->m->priority;
	if (u->m->held)
		return; /* parked: scheduler_release() queues it */
	if (queue_push(&s->heap, &u->qi) == -1)
		log_error("%s queue push failed (out of memory): retried at restart",
		          u->m->msg->id);
}

/* Group the pending recipients of m by domain into units due at `when`. */
static void
sched_msg_schedule(struct scheduler *s, struct sched_msg *m, uint64_t when,
                   const unsigned *attempts)
{
	const struct message *msg = m->msg;
	bool *taken = calloc(msg->nrcpts, sizeof(bool));
	size_t i, j;

	if (taken == NULL) {
		log_error("%s out of memory: retried at restart", msg->id);
		return;
	}
	for (i = 0; i < msg->nrcpts; i++) {
		const char *dom = sched_domain_of(s, msg->rcpts[i].addr);
		struct sched_unit *u;

		if (taken[i] || m->state[i] != RS_PENDING)
			continue;
		if ((u = sched_unit_new(s, m, dom, msg->nrcpts - i)) == NULL)
			break;
		for (j = i; j < msg->nrcpts; j++) {
			if (taken[j] || m->state[j] != RS_PENDING ||
			    strcasecmp(sched_domain_of(s, msg->rcpts[j].addr), dom) != 0)
				continue;
			taken[j] = true;
			u->rcpts[u->nrcpts++] = (unsigned)j;
			if (attempts && attempts[j] > u->attempts)
				u->attempts = attempts[j];
		}
		sched_unit_schedule(s, u, when);
	}
	free(taken);
}

/* ---- results ---- */

static void
sched_result(struct sched_unit *u, size_t i, unsigned code, const char *status, const char *text)
{
	struct smtp_txn_rcpt *r = &u->txn_rcpts[i];

	r->code = code;
	snprintf(r->status, sizeof(r->status), "%s", status);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

/* Every recipient of the unit gets the same result, and the unit is finished. */
static void
sched_unit_fail_all(struct sched_unit *u, unsigned code, const char *status, const char *text)
{
	size_t i;

	for (i = 0; i < u->nrcpts; i++)
		sched_result(u, i, code, status, text);
	sched_unit_done(u);
}

/* Read the original for a DSN: the header section (RET=HDRS) or all of it up to a bound. */
static char *
sched_read_original(struct scheduler *s, struct sched_msg *m, size_t *len)
{
	size_t want = m->msg->ret == SMTP_DSN_RET_FULL ? SCHED_DSN_FULL_MAX : SCHED_HEADER_READ;
	char *buf;
	ssize_t n;
	int fd;

	*len = 0;
	if (want > m->msg->data_len)
		want = (size_t)m->msg->data_len;
	if ((fd = spool_open_data(spool_slots_fd(s->spool), m->msg)) == -1)
		return NULL;
	if ((buf = malloc(want + 1)) == NULL) {
		close(fd);
		return NULL;
	}
	n = pread(fd, buf, want, (off_t)m->msg->data_offset);
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

static void
sched_dsn_committed(void *arg, const char *id, bool ok)
{
	struct sched_msg *m = arg;
	struct sched_dsn_wait **pp, *w;

	for (pp = &m->dsn_waits; (w = *pp) != NULL; pp = &w->next)
		if (strcmp(w->id, id) == 0) {
			*pp = w->next;
			break;
		}
	if (!ok)
		log_error("%s dsn id=%s could not be spooled: the sender is not notified",
		          m->msg->id, id);
	if (w != NULL) {
		/* The DSN is on disk: now the recipients it reports may be final on disk too. */
		if (w->journal)
			sched_journal_write(m->sched, m, w->journal, strlen(w->journal));
		free(w->journal);
		free(w);
	}
	sched_msg_maybe_remove(m->sched, m);
}

/* Spool a DSN about some recipients of m to its sender (never for the null sender). */
static void
sched_send_dsn(struct scheduler *s, struct sched_msg *m, const struct bounce_rcpt *rcpts, size_t n,
               const char *journal)
{
	struct bounce_info info;
	struct message *dsn = NULL;
	struct sched_dsn_wait *w = NULL;
	char *orig = NULL;
	size_t orig_len = 0;
	const char *p;

	if (n == 0 || m->msg->from == NULL || m->msg->from[0] == '\0')
		goto journal_now;
	memset(&info, 0, sizeof(info));
	orig = sched_read_original(s, m, &orig_len);
	info.reporting_mta = s->gen->cfg->hostname;
	info.message_id_domain = s->gen->cfg->hostname;
	info.orig_id = m->msg->id;
	info.orig_sender = m->msg->from;
	info.envid = m->msg->envid;
	info.ret = m->msg->ret;
	info.arrival = m->msg->arrival.tv_sec;
	info.now = time(NULL);
	info.rcpts = rcpts;
	info.nrcpts = n;
	info.orig = orig ? orig : "";
	info.orig_len = orig_len;
	info.max_orig_len = SCHED_DSN_FULL_MAX;
	if ((dsn = message_new()) == NULL || message_set_from(dsn, "") == -1 ||
	    message_set_helo(dsn, s->gen->cfg->hostname, strlen(s->gen->cfg->hostname)) == -1 ||
	    message_add_rcpt(dsn, m->msg->from, SMTP_DSN_NOTIFY_NEVER, NULL) == -1 ||
	    bounce_build(dsn->body, &info) == -1) {
		log_error("%s dsn failed error=\"%s\"", m->msg->id, strerror(errno));
		message_free(dsn);
		free(orig);
		goto journal_now;
	}
	free(orig);
	dsn->protocol = "local";
	/* The original (or its headers) travels inside: it keeps its 8-bit declaration. */
	if (m->msg->body_type == SMTP_BODY_8BITMIME)
		dsn->body_type = SMTP_BODY_8BITMIME;
	/* RFC 6531 §3.4: mail to a UTF-8 address needs SMTPUTF8. */
	for (p = m->msg->from; *p; p++)
		if ((unsigned char)*p >= 0x80)
			dsn->smtputf8 = true;
	snprintf(dsn->client_addr, sizeof(dsn->client_addr), "local");
	dsn->body_size = evbuffer_get_length(dsn->body);
	log_info("%s dsn id=%s to=<%s> action=%s nrcpt=%zu", m->msg->id, dsn->id, m->msg->from,
	         rcpts[0].action == BOUNCE_DELAYED ? "delayed" : "failed", n);
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (journal != NULL && (w->journal = strdup(journal)) == NULL) ||
	    spool_msg_begin(s->spool, dsn, "", 0) == -1) {
		log_error("%s dsn spool failed error=\"%s\"", m->msg->id, strerror(errno));
		spool_msg_abort(s->spool, dsn);
		if (w)
			free(w->journal);
		free(w);
		goto journal_now;
	}
	s->stats.dsns++;
	memcpy(w->id, dsn->id, sizeof(w->id));
	/* The queue hook takes the DSN from there; we wait for it to be on disk. */
	w->job = spool_msg_commit(s->spool, dsn, sched_dsn_committed, m);
	if (w->job == NULL) {
		free(w->journal);
		free(w);
		goto journal_now;
	}
	w->next = m->dsn_waits;
	m->dsn_waits = w;
	return;
journal_now:
	/* No DSN will be on disk (none wanted, or it failed): the lines are final now. */
	if (journal)
		sched_journal_write(s, m, journal, strlen(journal));
}

static void
sched_log_result(struct sched_unit *u, size_t i, const char *what)
{
	const struct smtp_txn_rcpt *r = &u->txn_rcpts[i];
	const char *route = u->route == NULL                         ? "none"
	                    : u->route->kind == CONFIG_ROUTE_MX      ? "mx"
	                    : u->route->kind == CONFIG_ROUTE_RELAY   ? "relay"
	                    : u->route->kind == CONFIG_ROUTE_MAILDIR ? "maildir"
	                                                             : "discard";
	char text[300], tls[80];

	if (u->txn.tls[0])
		snprintf(tls, sizeof(tls), "\"%s\"", u->txn.tls);
	else
		snprintf(tls, sizeof(tls), "none");
	log_info("%s delivery to=<%s> route=%s relay=%s status=%s dsn=%s attempt=%u tls=%s "
	         "reply=\"%s\"",
	         u->m->msg->id, u->m->msg->rcpts[u->rcpts[i]].addr, route,
	         u->txn.remote[0] ? u->txn.remote : "-", what, r->status, u->attempts + 1, tls,
	         log_escape(text, sizeof(text), r->text, strlen(r->text)));
}

/* " <text>" for a journal line: printable ASCII, at most 240 bytes; "" for none. */
static const char *
sched_journal_text(char *buf, size_t size, const char *text)
{
	size_t i, n = 0;

	if (text == NULL || text[0] == '\0' || size < 2)
		return "";
	buf[n++] = ' ';
	for (i = 0; text[i] != '\0' && n < size - 1 && i < 240; i++)
		buf[n++] = (unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f
		                   ? '?'
		                   : text[i];
	buf[n] = '\0';
	return buf;
}

/* Call the drained callback of a shutdown once nothing is in flight any more. */
static void
sched_maybe_drained(struct scheduler *s)
{
	if (s->closing && s->inflight == 0 && s->drained_cb) {
		void (*cb)(void *) = s->drained_cb;
		s->drained_cb = NULL;
		cb(s->drained_arg);
	}
}

/* u's attempt no longer holds a delivery slot (of the whole and of its destination). */
static void
sched_unit_release(struct scheduler *s, struct sched_unit *u)
{
	if (!u->inflight)
		return;
	u->inflight = false;
	s->inflight--;
	if (u->dest)
		u->dest->inflight--;
}

/*
 * The attempt of a unit whose message was deleted (scheduler_delete) while it was under way is
 * over: log what happened, journal nothing, send no DSN, and free the message with its last unit.
 */
static void
sched_unit_discard(struct sched_unit *u)
{
	struct scheduler *s = u->sched;
	struct sched_msg *m = u->m;
	struct sched_dest *d = u->dest;
	size_t i;

	sched_unit_release(s, u);
	u->dest = NULL;
	for (i = 0; u->txn_rcpts != NULL && i < u->nrcpts; i++)
		sched_log_result(u, i, "ignored");
	sched_unit_free(s, u);
	if (m->nunits == 0)
		sched_msg_leave_spool(s, m, false); /* its journal went with the delete */
	if (d)
		sched_dest_pump(s, d);
	scheduler_kick(s);
	sched_maybe_drained(s);
}

/*
 * A unit's attempt is over: every recipient has a code. Finish the final ones, schedule the
 * rest again (or expire them), send DSNs, and drop the message when nobody is left.
 */
static void
sched_unit_done(struct sched_unit *u)
{
	if (u->m->deleted) {
		sched_unit_discard(u);
		return;
	}
	struct scheduler *s = u->sched;
	struct sched_msg *m = u->m;
	const struct message *msg = m->msg;
	struct sched_dest *d = u->dest;
	struct bounce_rcpt *fails = calloc(u->nrcpts, sizeof(*fails));
	struct bounce_rcpt *delays = calloc(u->nrcpts, sizeof(*delays));
	size_t i, nfail = 0, ndelay = 0, nretry = 0;
	uint64_t now = sched_now_ms();
	time_t now_s = (time_t)(now / 1000);
	bool expired = now >= m->expires_ms;
	char *jbuf = NULL, *fjbuf = NULL;
	size_t jlen = 0, fjlen = 0;
	FILE *jb = open_memstream(&jbuf, &jlen);   /* journal lines of this attempt */
	FILE *fj = open_memstream(&fjbuf, &fjlen); /* ... of recipients a DSN will report */
	char remote[256]; /* Remote-MTA: the host name only (RFC 3464 "dns" type) */
	char jtext[256];  /* a reply for a journal line */

	snprintf(remote, sizeof(remote), "%.*s", (int)strcspn(u->txn.remote, "["), u->txn.remote);
	enum config_route_kind kind = u->route != NULL ? u->route->kind : CONFIG_ROUTE_MX;

	if (jb == NULL || fj == NULL || fails == NULL || delays == NULL) {
		/* Out of memory: try this unit again in a minute, nothing lost. */
		if (jb)
			fclose(jb);
		if (fj)
			fclose(fj);
		free(jbuf);
		free(fjbuf);
		free(fails);
		free(delays);
		sched_unit_release(s, u);
		u->dest = NULL;
		sched_unit_schedule(s, u, sched_now_ms() + 60000);
		return;
	}

	sched_unit_release(s, u);
	u->dest = NULL;
	sched_txn_release(u);
	stats_delivery_attempt();
	for (i = 0; i < u->nrcpts; i++) {
		unsigned idx = u->rcpts[i];
		struct smtp_txn_rcpt *r = &u->txn_rcpts[i];
		const struct message_rcpt *mr = &msg->rcpts[idx];
		unsigned cls = r->code / 100;
		struct bounce_rcpt *b = NULL;

		if (cls == 2) {
			m->state[idx] = RS_DELIVERED;
			s->stats.delivered++;
			stats_recipient(STATS_OUTCOME_DELIVERED, kind);
			stats_observe(STATS_HIST_DELIVERY, sched_age_ns(msg, now));
			sched_log_result(u, i, "sent");
			fprintf(jb, "%u delivered %lld%s\n", idx, (long long)now_s,
			        sched_journal_text(jtext, sizeof(jtext), r->text));
		} else if (cls == 5) {
			m->state[idx] = RS_BOUNCED;
			s->stats.bounced++;
			stats_recipient(STATS_OUTCOME_BOUNCED, kind);
			sched_log_result(u, i, "bounced");
			if (bounce_wanted(msg->from, mr->notify, BOUNCE_FAILED))
				b = &fails[nfail++];
			fprintf(b ? fj : jb, "%u bounced %lld%s\n", idx, (long long)now_s,
			        sched_journal_text(jtext, sizeof(jtext), r->text));
		} else {
			free(m->diag[idx]);
			m->diag[idx] = strdup(r->text);
			s->stats.deferred++;
			if (expired) {
				m->state[idx] = RS_EXPIRED;
				s->stats.expired++;
				stats_recipient(STATS_OUTCOME_EXPIRED, kind);
				snprintf(r->status, sizeof(r->status), "4.4.7");
				sched_log_result(u, i, "expired");
				if (bounce_wanted(msg->from, mr->notify, BOUNCE_FAILED))
					b = &fails[nfail++];
				fprintf(b ? fj : jb, "%u expired %lld%s\n", idx, (long long)now_s,
				        sched_journal_text(jtext, sizeof(jtext), r->text));
			} else {
				sched_log_result(u, i, "deferred");
				stats_recipient(STATS_OUTCOME_DEFERRED, kind);
				u->rcpts[nretry++] = idx;
				if (s->gen->cfg->delay_warning && !m->warned &&
				    now_s - msg->arrival.tv_sec >=
				            (time_t)s->gen->cfg->delay_warning &&
				    bounce_wanted(msg->from, mr->notify, BOUNCE_DELAYED)) {
					struct bounce_rcpt *dl = &delays[ndelay++];
					dl->addr = mr->addr;
					dl->orcpt = mr->orcpt;
					dl->action = BOUNCE_DELAYED;
					dl->status = r->status;
					dl->remote_mta = remote[0] ? remote : NULL;
					dl->diagnostic = r->text;
					dl->last_attempt = now_s;
					dl->will_retry_until = (time_t)(m->expires_ms / 1000);
				}
			}
		}
		if (m->state[idx] != RS_PENDING)
			m->npending--;
		if (b != NULL) {
			b->addr = mr->addr;
			b->orcpt = mr->orcpt;
			b->action = BOUNCE_FAILED;
			b->status = r->status;
			b->remote_mta = remote[0] ? remote : NULL;
			b->diagnostic = r->text;
			b->last_attempt = now_s;
		}
	}
	fflush(fj);
	if (nfail > 0)
		sched_send_dsn(s, m, fails, nfail, fjbuf);
	if (ndelay > 0) {
		char warned[64];

		snprintf(warned, sizeof(warned), "- warned %lld\n", (long long)now_s);
		m->warned = true;
		sched_send_dsn(s, m, delays, ndelay, warned);
	}
	fclose(fj);
	free(fjbuf);
	free(fails);
	free(delays);
	free(u->txn_rcpts);
	u->txn_rcpts = NULL;
	if (nretry > 0) {
		unsigned delay;

		u->nrcpts = nretry;
		u->attempts++;
		delay = queue_retry_delay(s->gen->cfg->retry, s->gen->cfg->nretry, u->attempts);
		for (i = 0; i < nretry; i++)
			fprintf(jb, "%u deferred %lld %u %lld%s\n", u->rcpts[i], (long long)now_s,
			        u->attempts, (long long)now_s + delay,
			        sched_journal_text(jtext, sizeof(jtext), m->diag[u->rcpts[i]]));
		sched_unit_schedule(s, u, now + (uint64_t)delay * 1000u);
		sched_msg_drop_kept(s, m);
	} else {
		sched_unit_free(s, u);
	}
	/* A message that leaves the spool now needs no journal; one that stays keeps its story. */
	if (!(m->npending == 0 && m->nunits == 0 && m->dsn_waits == NULL))
		sched_journal_flush(s, m, jb, &jbuf, &jlen);
	fclose(jb);
	free(jbuf);
	sched_msg_maybe_remove(s, m);
	if (d)
		sched_dest_pump(s, d);
	scheduler_kick(s);
	sched_maybe_drained(s);
}

/* ---- local delivery (worker threads) ---- */

static void
sched_maildir_work(void *arg)
{
	struct sched_unit *u = arg;
	const struct message *msg = u->m->msg;
	char dir[4096], err[200], text[240], prefix[1200];
	size_t i;

	for (i = 0; i < u->nrcpts; i++) {
		const char *addr = msg->rcpts[u->rcpts[i]].addr;
		const char *at = strrchr(addr, '@');
		size_t local_len = at ? (size_t)(at - addr) : strlen(addr);
		const char *domain = at ? at + 1 : u->domain;
		int temporary = 1;

		if (maildir_expand(u->route->maildir, addr, local_len, domain, dir, sizeof(dir)) ==
		    -1) {
			sched_result(u, i, 550, "5.1.1", "550 5.1.1 mailbox name not allowed");
			continue;
		}
		snprintf(prefix, sizeof(prefix),
		         "Return-Path: <%.500s>\r\nDelivered-To: %.500s\r\n", msg->from, addr);
		if (maildir_deliver(dir, prefix, u->txn.fd, (off_t)msg->data_offset,
		                    (size_t)msg->data_len, &temporary, err, sizeof(err)) == 0) {
			sched_result(u, i, 250, "2.0.0", "250 2.0.0 delivered to maildir");
		} else {
			snprintf(text, sizeof(text), "%s maildir: %.180s",
			         temporary ? "451 4.3.0" : "550 5.3.0", err);
			sched_result(u, i, temporary ? 451 : 550, temporary ? "4.3.0" : "5.3.0",
			             text);
		}
	}
}

static void
sched_maildir_done(void *arg, bool cancelled)
{
	struct sched_unit *u = arg;

	if (cancelled)
		return; /* teardown: the unit is freed with the scheduler */
	sched_unit_done(u);
}

/* ---- SMTP delivery ---- */

static unsigned
sched_dest_hash(const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h & (SCHED_DEST_BUCKETS - 1);
}

static struct sched_dest *
sched_dest_get(struct scheduler *s, const char *key)
{
	unsigned h = sched_dest_hash(key);
	struct sched_dest *d;

	for (d = s->dests[h]; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	if ((d = calloc(1, sizeof(*d))) == NULL || (d->key = strdup(key)) == NULL) {
		free(d);
		return NULL;
	}
	d->wait_tail = &d->wait_head;
	d->next = s->dests[h];
	s->dests[h] = d;
	return d;
}

static void sched_client_cb(void *arg, struct smtp_client *c, enum smtp_client_event ev,
                            struct smtp_txn *txn);

/* Fill the unit's transaction from its message. 0, or -1 (the spool file is gone). */
static int
sched_txn_prepare(struct scheduler *s, struct sched_unit *u)
{
	const struct message *msg = u->m->msg;
	size_t i;

	if (u->txn_rcpts == NULL &&
	    (u->txn_rcpts = calloc(u->nrcpts, sizeof(*u->txn_rcpts))) == NULL)
		return -1;
	memset(&u->txn, 0, sizeof(u->txn));
	u->txn.fd = -1;
	if (msg->data_mem != NULL) {
		/* The data is still in memory: the transaction gets its own reference to it (no
		 * copy), which stays valid whatever becomes of msg->data_mem. */
		if ((u->txn.mem = evbuffer_new()) == NULL ||
		    evbuffer_add_buffer_reference(u->txn.mem, msg->data_mem) == -1)
			return -1;
	} else if ((u->txn.fd = sched_data_fd(s, u->m)) == -1) {
		return -1;
	}
	u->txn.id = msg->id;
	u->txn.from = msg->from;
	u->txn.smtputf8 = msg->smtputf8;
	u->txn.body = msg->body_type;
	u->txn.ret = msg->ret;
	u->txn.envid = msg->envid;
	u->txn.offset = msg->data_offset;
	u->txn.len = msg->data_len;
	u->txn.rcpts = u->txn_rcpts;
	u->txn.nrcpts = u->nrcpts;
	for (i = 0; i < u->nrcpts; i++) {
		const struct message_rcpt *mr = &msg->rcpts[u->rcpts[i]];
		memset(&u->txn_rcpts[i], 0, sizeof(u->txn_rcpts[i]));
		u->txn_rcpts[i].addr = mr->addr;
		u->txn_rcpts[i].notify = mr->notify;
		u->txn_rcpts[i].orcpt = mr->orcpt;
	}
	return 0;
}

/* Is this address one of our own listeners (a next hop that is ourselves)? */
static bool
sched_is_self(const struct scheduler *s, const struct sockaddr_storage *ss)
{
	size_t i;

	for (i = 0; i < s->gen->cfg->nlisten; i++) {
		const struct sockaddr_storage *l = &s->gen->cfg->listen[i].addr;
		if (l->ss_family != ss->ss_family)
			continue;
		if (ss->ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)l, *b = (const void *)ss;
			if (a->sin_port == b->sin_port &&
			    (a->sin_addr.s_addr == b->sin_addr.s_addr ||
			     a->sin_addr.s_addr == htonl(INADDR_ANY)))
				return true;
		} else {
			const struct sockaddr_in6 *a = (const void *)l, *b = (const void *)ss;
			if (a->sin6_port == b->sin6_port &&
			    (memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0 ||
			     memcmp(&a->sin6_addr, &in6addr_any, 16) == 0))
				return true;
		}
	}
	return false;
}

static void
sched_set_port(struct sockaddr_storage *ss, unsigned port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* The route's STARTTLS and AUTH settings for a client. */
static void
sched_client_security(const struct sched_gen *g, const struct config_route *r,
                      struct smtp_client_config *cc)
{
	const struct sched_route_sec *sec = NULL;

	if (r >= g->cfg->routes && r < g->cfg->routes + g->cfg->nroutes)
		sec = &g->rsec[r - g->cfg->routes];
	cc->tls = r->tls == CONFIG_TLS_NONE      ? SMTP_CLIENT_TLS_NONE
	          : r->tls == CONFIG_TLS_REQUIRE ? SMTP_CLIENT_TLS_REQUIRE
	                                         : SMTP_CLIENT_TLS_OPPORTUNISTIC;
	cc->tls_ctx = sec && sec->tls ? sec->tls : g->tls_system;
	if (sec && sec->auth_pass && r->auth_user) {
		cc->auth_user = r->auth_user;
		cc->auth_pass = sec->auth_pass;
	}
}

/* Connect to the targets and run the unit's transaction on a new connection. */
static void
sched_connect(struct scheduler *s, struct sched_unit *u, const struct smtp_target *targets,
              size_t n)
{
	struct smtp_client_config cc = { .helo = u->gen->cfg->hostname };
	struct sched_conn *conn;

	if (n == 0) {
		sched_unit_fail_all(u, 554, "5.4.6",
		                    "554 5.4.6 mail for this domain loops back "
		                    "to myself");
		return;
	}
	if (sched_txn_prepare(s, u) == -1 || (conn = calloc(1, sizeof(*conn))) == NULL) {
		sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 local error (spool or memory)");
		return;
	}
	conn->sched = s;
	conn->dest = u->dest;
	conn->unit = u;
	conn->gen = sched_gen_ref(u->gen);
	sched_client_security(u->gen, u->route, &cc);
	conn->client = smtp_client_new(s->base, &cc, targets, n, &u->txn, sched_client_cb, conn);
	if (conn->client == NULL) {
		sched_gen_free(conn->gen);
		free(conn);
		sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 local error (memory)");
		return;
	}
	conn->next = s->conns;
	if (s->conns)
		s->conns->prev = conn;
	s->conns = conn;
}

static void
sched_dns_cb(void *arg, const struct dns_result *res)
{
	struct sched_unit *u = arg;
	struct scheduler *s = u->sched;
	struct smtp_target targets[SCHED_TARGETS_MAX];
	size_t h, a, n = 0;
	unsigned port = u->dest ? u->dest->port : 25, self_pref = ~0u;
	char text[240];

	u->dns = NULL;
	if (u->route->kind == CONFIG_ROUTE_RELAY && res->status != DNS_OK) {
		/* A smarthost that does not resolve is a configuration or DNS problem, not the
		 * recipient's fault: keep the mail. */
		snprintf(text, sizeof(text), "451 4.4.3 smarthost %.100s: %.100s",
		         u->route->relay_host, res->error);
		sched_unit_fail_all(u, 451, "4.4.3", text);
		return;
	}
	switch (res->status) {
	case DNS_OK:
		break;
	case DNS_NXDOMAIN:
		snprintf(text, sizeof(text), "550 5.1.2 %s", res->error);
		sched_unit_fail_all(u, 550, "5.1.2", text);
		return;
	case DNS_NULL_MX:
		snprintf(text, sizeof(text), "556 5.1.10 %s accepts no mail (null MX)", u->domain);
		sched_unit_fail_all(u, 556, "5.1.10", text);
		return;
	case DNS_NO_ADDRESS:
		snprintf(text, sizeof(text), "550 5.4.4 %s", res->error);
		sched_unit_fail_all(u, 550, "5.4.4", text);
		return;
	default:
		snprintf(text, sizeof(text), "451 4.4.3 %s", res->error);
		sched_unit_fail_all(u, 451, "4.4.3", text);
		return;
	}
	/* RFC 5321 §5.1: if we are one of the MX hosts, only better preferences may be used. */
	for (h = 0; h < res->nhosts; h++)
		if (strcasecmp(res->hosts[h].name, s->gen->cfg->hostname) == 0 &&
		    res->hosts[h].preference < self_pref)
			self_pref = res->hosts[h].preference;
	for (h = 0; h < res->nhosts && n < SCHED_TARGETS_MAX; h++) {
		const struct dns_host *host = &res->hosts[h];
		if (u->route->kind == CONFIG_ROUTE_MX && host->preference >= self_pref)
			continue;
		for (a = 0; a < host->naddrs && n < SCHED_TARGETS_MAX; a++) {
			struct smtp_target *t = &targets[n];
			snprintf(t->host, sizeof(t->host), "%s", host->name);
			t->addr = host->addrs[a];
			sched_set_port(&t->addr, port);
			t->addrlen = t->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
			                                           : sizeof(struct sockaddr_in);
			if (sched_is_self(s, &t->addr))
				continue;
			n++;
		}
	}
	sched_connect(s, u, targets, n);
}

/* An address literal or numeric host: one target without DNS. */
static bool
sched_numeric_target(const char *host, unsigned port, struct smtp_target *t)
{
	char buf[300];
	size_t len = strlen(host);

	memset(t, 0, sizeof(*t));
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		snprintf(buf, sizeof(buf), "%.*s", (int)(len - 2), host + 1);
		if (strncasecmp(buf, "IPv6:", 5) == 0)
			memmove(buf, buf + 5, strlen(buf + 5) + 1);
	} else {
		snprintf(buf, sizeof(buf), "%s", host);
	}
	snprintf(t->host, sizeof(t->host), "%s", host);
	if (inet_pton(AF_INET, buf, &((struct sockaddr_in *)&t->addr)->sin_addr) == 1) {
		t->addr.ss_family = AF_INET;
		t->addrlen = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, buf, &((struct sockaddr_in6 *)&t->addr)->sin6_addr) == 1) {
		t->addr.ss_family = AF_INET6;
		t->addrlen = sizeof(struct sockaddr_in6);
	} else {
		return false;
	}
	sched_set_port(&t->addr, port);
	return true;
}

/* Run u in a slot of d: reuse an idle connection, or resolve and connect. */
static void
sched_dest_start(struct scheduler *s, struct sched_dest *d, struct sched_unit *u)
{
	const struct config_route *r = u->route;
	struct smtp_target t;
	const char *host;

	u->dest = d;
	u->inflight = true;
	d->inflight++;
	s->inflight++;
	while (d->idle != NULL) {
		struct sched_conn *conn = d->idle;
		d->idle = conn->idle_next;
		conn->idle = false;
		if (!smtp_client_idle(conn->client))
			continue;
		if (sched_txn_prepare(s, u) == -1) {
			/* put the connection back and fail the unit */
			conn->idle = true;
			conn->idle_next = d->idle;
			d->idle = conn;
			sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 local error (spool)");
			return;
		}
		conn->unit = u;
		if (smtp_client_send(conn->client, &u->txn) == 0)
			return;
		conn->unit = NULL;
	}
	host = r->kind == CONFIG_ROUTE_RELAY ? r->relay_host : u->domain;
	if (sched_numeric_target(host, d->port, &t)) {
		sched_connect(s, u, sched_is_self(s, &t.addr) ? NULL : &t,
		              sched_is_self(s, &t.addr) ? 0 : 1);
		return;
	}
	u->dns = r->kind == CONFIG_ROUTE_RELAY ? dns_resolve_host(s->dns, host, sched_dns_cb, u)
	                                       : dns_resolve_mx(s->dns, host, sched_dns_cb, u);
	if (u->dns == NULL)
		sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 local error (resolver)");
}

/* Start waiting units while the destination (and the whole) has room. */
static void
sched_dest_pump(struct scheduler *s, struct sched_dest *d)
{
	if (d->pumping)
		return; /* a unit that failed at once, inside this loop: the loop goes on */
	d->pumping = true;
	while (!s->closing && d->wait_head != NULL &&
	       d->inflight < s->gen->cfg->concurrency_per_destination &&
	       s->inflight < s->gen->cfg->concurrency) {
		struct sched_unit *u = d->wait_head;
		d->wait_head = u->wait_next;
		if (d->wait_head == NULL)
			d->wait_tail = &d->wait_head;
		u->wait_next = NULL;
		sched_dest_start(s, d, u);
	}
	d->pumping = false;
}

static void
sched_conn_unlink(struct scheduler *s, struct sched_conn *conn)
{
	struct sched_conn **pp;

	if (conn->idle && conn->dest)
		for (pp = &conn->dest->idle; *pp != NULL; pp = &(*pp)->idle_next)
			if (*pp == conn) {
				*pp = conn->idle_next;
				break;
			}
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		s->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
}

static void
sched_client_cb(void *arg, struct smtp_client *c, enum smtp_client_event ev, struct smtp_txn *txn)
{
	struct sched_conn *conn = arg;
	struct scheduler *s = conn->sched;
	struct sched_dest *d = conn->dest;
	struct sched_unit *u = conn->unit;

	if (ev == SMTP_CLIENT_CLOSED) {
		sched_conn_unlink(s, conn);
		sched_gen_free(conn->gen);
		free(conn);
		if (u != NULL) /* cannot happen: TXN_DONE always comes first */
			sched_unit_fail_all(u, 451, "4.4.2", "451 4.4.2 connection closed");
		return;
	}
	conn->unit = NULL;
	/* Keep the connection for the destination's next unit, before anything else runs. */
	if (!s->closing && smtp_client_idle(c)) {
		conn->idle = true;
		conn->idle_next = d->idle;
		d->idle = conn;
	}
	if (u != NULL)
		sched_unit_done(u); /* pumps d: a waiting unit takes the idle connection */
}

/* ---- dispatch ---- */

static void
sched_dispatch(struct scheduler *s, struct sched_unit *u)
{
	const struct config_route *r = config_route_for(s->gen->cfg, u->domain, strlen(u->domain));
	struct sched_dest *d;
	char key[600];
	unsigned port;

	if (u->gen != s->gen) {
		sched_gen_free(u->gen);
		u->gen = sched_gen_ref(s->gen);
	}
	u->route = r;
	if (u->txn_rcpts == NULL &&
	    (u->txn_rcpts = calloc(u->nrcpts, sizeof(*u->txn_rcpts))) == NULL) {
		sched_unit_schedule(s, u, sched_now_ms() + 60000); /* out of memory: later */
		return;
	}
	memset(&u->txn, 0, sizeof(u->txn));
	u->txn.fd = -1;
	if (u->m->loop) {
		sched_unit_fail_all(u, 554, "5.4.6",
		                    "554 5.4.6 too many Received: headers (mail loop)");
		return;
	}
	switch (r->kind) {
	case CONFIG_ROUTE_DISCARD:
		sched_unit_fail_all(u, 250, "2.0.0", "250 2.0.0 discarded by route");
		return;
	case CONFIG_ROUTE_MAILDIR:
		u->txn.fd = sched_data_fd(s, u->m);
		if (u->txn.fd == -1) {
			sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 spool file unreadable");
			return;
		}
		u->inflight = true;
		s->inflight++;
		if (worker_submit(s->workers, sched_maildir_work, sched_maildir_done, u) == -1)
			sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 local error (memory)");
		return;
	case CONFIG_ROUTE_RELAY:
		port = r->relay_port ? r->relay_port : 25;
		snprintf(key, sizeof(key), "relay:%s:%u", r->relay_host, port);
		/* Connections are reused within a destination: one that is plain, or logged in as
		 * someone, must not carry mail of a route that asks for more (or other) security.
		 */
		if (r->tls != CONFIG_TLS_OPPORTUNISTIC || r->auth_user || r->ca_file)
			snprintf(key + strlen(key), sizeof(key) - strlen(key), "#%u.%zu",
			         s->gen->id, (size_t)(r - s->gen->cfg->routes));
		break;
	default:
		port = r->mx_port ? r->mx_port : 25;
		snprintf(key, sizeof(key), "mx:%s:%u", u->domain, port);
		break;
	}
	if ((d = sched_dest_get(s, key)) == NULL) {
		sched_unit_fail_all(u, 451, "4.3.0", "451 4.3.0 local error (memory)");
		return;
	}
	d->port = port;
	u->dest = d;
	*d->wait_tail = u;
	d->wait_tail = &u->wait_next;
	sched_dest_pump(s, d);
}

static void
sched_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	scheduler_kick(arg);
}

/* Dispatch every due unit the concurrency allows, then arm the timer for the next one. */
static void
scheduler_kick(struct scheduler *s)
{
	struct queue_item *it;
	uint64_t now;

	if (s->kicking || s->closing)
		return;
	s->kicking = true;
	now = sched_now_ms();
	while (s->inflight < s->gen->cfg->concurrency && (it = queue_peek(&s->heap)) != NULL &&
	       it->when <= now) {
		queue_pop(&s->heap);
		sched_dispatch(s, (struct sched_unit *)it);
	}
	s->kicking = false;
	evtimer_del(s->timer);
	if ((it = queue_peek(&s->heap)) != NULL && s->inflight < s->gen->cfg->concurrency) {
		uint64_t wait = it->when > now ? it->when - now : 0;
		struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000 };
		evtimer_add(s->timer, &tv);
	}
}

/* ---- outbound TLS contexts and AUTH passwords ---- */

/*
 * The password for AUTH to a smarthost: the first line of the file, without its line end (LF or
 * CRLF). Returns it (malloc'd; wipe it before freeing), or NULL with *why set (static text or
 * strerror) when the file cannot be read, is empty, holds a NUL or is too long.
 */
static char *
sched_read_password(const char *path, const char **why)
{
	char buf[AUTH_PASS_MAX + 3];
	size_t n = 0, len;
	ssize_t got;
	char *pass = NULL;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1) {
		*why = strerror(errno);
		return NULL;
	}
	while (n < sizeof(buf) - 1 && (got = read(fd, buf + n, sizeof(buf) - 1 - n)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			*why = strerror(errno);
			close(fd);
			goto done;
		}
		n += (size_t)got;
	}
	close(fd);
	buf[n] = '\0';
	len = strcspn(buf, "\n");
	if (len == n && n == sizeof(buf) - 1) {
		*why = "the password is too long";
		goto done;
	}
	if (memchr(buf, '\0', len) != NULL) {
		*why = "the password contains a NUL byte";
		goto done;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0)
		*why = "the first line is empty";
	else if (len > AUTH_PASS_MAX)
		*why = "the password is too long";
	else if ((pass = strndup(buf, len)) == NULL)
		*why = strerror(errno);
done:
	OPENSSL_cleanse(buf, sizeof(buf));
	return pass;
}

static struct sched_gen *
sched_gen_ref(struct sched_gen *g)
{
	g->refs++;
	return g;
}

static void
sched_gen_free(struct sched_gen *g)
{
	size_t i;

	if (g == NULL || --g->refs > 0)
		return;
	if (g->rsec != NULL)
		for (i = 0; i < g->cfg->nroutes; i++) {
			tls_client_free(g->rsec[i].tls);
			if (g->rsec[i].auth_pass != NULL) {
				OPENSSL_cleanse(g->rsec[i].auth_pass, strlen(g->rsec[i].auth_pass));
				free(g->rsec[i].auth_pass);
			}
		}
	free(g->rsec);
	tls_client_free(g->tls_system);
	config_free(g->cfg);
	free(g);
}

/* cfg with one TLS client context for the system trust store, one per route with a ca_file,
 * and the routes' AUTH passwords. The generation, or NULL with *err (malloc'd, naming the
 * route; NULL: out of memory). */
static struct sched_gen *
sched_gen_new(struct petrel_config *cfg, unsigned id, char **err)
{
	struct sched_gen *g;
	char *terr = NULL;
	const char *why;
	size_t i;

	*err = NULL;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->refs = 1;
	g->id = id;
	g->cfg = config_ref(cfg);
	if ((g->tls_system = tls_client_new(NULL, &terr)) == NULL) {
		if (asprintf(err, "outbound TLS: %s", terr ? terr : "out of memory") == -1)
			*err = NULL;
		free(terr);
		goto fail;
	}
	if ((g->rsec = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*g->rsec))) == NULL)
		goto fail;
	for (i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];

		if (r->ca_file != NULL &&
		    (g->rsec[i].tls = tls_client_new(r->ca_file, &terr)) == NULL) {
			if (asprintf(err, "%s:%u: routes[%zu] (%s): ca_file: %s", cfg->path,
			             r->line, i, r->domain, terr ? terr : "out of memory") == -1)
				*err = NULL;
			free(terr);
			goto fail;
		}
		if (r->auth_user == NULL || r->auth_password_file == NULL)
			continue;
		if (strlen(r->auth_user) > AUTH_NAME_MAX) {
			if (asprintf(err,
			             "%s:%u: routes[%zu] (%s): auth user is longer than %d octets",
			             cfg->path, r->line, i, r->domain, AUTH_NAME_MAX) == -1)
				*err = NULL;
			goto fail;
		}
		if ((g->rsec[i].auth_pass = sched_read_password(r->auth_password_file, &why)) ==
		    NULL) {
			if (asprintf(err, "%s:%u: routes[%zu] (%s): auth password_file %s: %s",
			             cfg->path, r->line, i, r->domain, r->auth_password_file,
			             why) == -1)
				*err = NULL;
			goto fail;
		}
	}
	return g;
fail:
	sched_gen_free(g);
	return NULL;
}

/* ---- public ---- */

struct scheduler *
scheduler_new(struct event_base *base, struct petrel_config *cfg, struct spool *sp, struct dns *dns,
              char **err)
{
	struct scheduler *s;

	*err = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->base = base;
	s->spool = sp;
	s->dns = dns;
	queue_init(&s->heap);
	if ((s->gen = sched_gen_new(cfg, 1, err)) == NULL)
		goto fail;
	if ((s->timer = evtimer_new(base, sched_timer_cb, s)) == NULL ||
	    (s->workers = worker_pool_new(base, SCHED_MAILDIR_THREADS)) == NULL)
		goto fail;
	return s;
fail:
	if (s->timer)
		event_free(s->timer);
	sched_gen_free(s->gen);
	free(s);
	return NULL;
}

int
scheduler_config_prepare(struct scheduler *s, struct petrel_config *cfg, struct sched_gen **out,
                         char **err)
{
	*out = sched_gen_new(cfg, s->gen->id + 1, err);
	if (*out == NULL && *err == NULL)
		*err = strdup("out of memory");
	return *out != NULL ? 0 : -1;
}

void
scheduler_config_commit(struct scheduler *s, struct sched_gen *gen)
{
	struct sched_dest *d;
	size_t i;

	sched_gen_free(s->gen);
	s->gen = gen;
	/* Limits may have grown: start what now fits, then what is due. */
	for (i = 0; i < SCHED_DEST_BUCKETS; i++)
		for (d = s->dests[i]; d != NULL; d = d->next)
			sched_dest_pump(s, d);
	scheduler_kick(s);
}

void
scheduler_config_drop(struct sched_gen *gen)
{
	sched_gen_free(gen);
}

void
scheduler_shutdown(struct scheduler *s, void (*drained)(void *arg), void *arg)
{
	struct sched_conn *conn;
	struct sched_unit *u;

	s->closing = true;
	evtimer_del(s->timer);
	for (conn = s->conns; conn != NULL; conn = conn->next)
		if (conn->unit == NULL)
			smtp_client_close(conn->client);
	/* Lookups have sent nothing anywhere: drop them now, their recipients stay queued. */
	for (u = s->units; u != NULL; u = u->next)
		if (u->dns != NULL) {
			dns_cancel(u->dns);
			u->dns = NULL;
			sched_unit_release(s, u);
		}
	log_info("queue shutdown deliveries_in_flight=%u queued=%llu", s->inflight,
	         (unsigned long long)s->stats.queued);
	if (s->inflight == 0) {
		drained(arg);
		return;
	}
	s->drained_cb = drained;
	s->drained_arg = arg;
}

void
scheduler_free(struct scheduler *s)
{
	size_t i;

	if (s == NULL)
		return;
	s->closing = true;
	worker_pool_free(s->workers); /* waits for running Maildir jobs */
	while (s->conns != NULL) {
		struct sched_conn *conn = s->conns;
		s->conns = conn->next;
		smtp_client_abort(conn->client);
		sched_gen_free(conn->gen);
		free(conn);
	}
	while (s->units != NULL) {
		if (s->units->dns)
			dns_cancel(s->units->dns);
		sched_unit_free(s, s->units);
	}
	while (s->msgs != NULL)
		sched_msg_free(s, s->msgs);
	for (i = 0; i < SCHED_DEST_BUCKETS; i++)
		while (s->dests[i] != NULL) {
			struct sched_dest *d = s->dests[i];
			s->dests[i] = d->next;
			free(d->key);
			free(d);
		}
	queue_release(&s->heap);
	event_free(s->timer);
	sched_gen_free(s->gen);
	free(s);
}

/* Queue m's pending recipients (new message, or recovered with its journal applied). */
static void
sched_msg_start(struct scheduler *s, struct sched_msg *m, uint64_t when, const unsigned *attempts)
{
	if (m->npending == 0) {
		sched_msg_maybe_remove(s, m);
		return;
	}
	sched_msg_schedule(s, m, when, attempts);
	if (m->nunits == 0) { /* out of memory: the spool keeps it for the next start */
		sched_msg_free(s, m);
		return;
	}
	scheduler_kick(s);
}

void
scheduler_add(struct scheduler *s, struct message *msg)
{
	struct sched_msg *m;

	if (s->closing || (m = sched_msg_new(s, msg)) == NULL) {
		log_error("%s not queued now (out of memory): queued again at restart", msg->id);
		message_free(msg);
		return;
	}
	sched_msg_start(s, m, sched_now_ms(), NULL);
}

struct sched_recover {
	struct scheduler *s;
	struct sched_msg *m;
	unsigned *attempts;
	uint64_t next_ms;
	long count;
};

/* Apply one journal line to the message being recovered. */
static void
sched_recover_line(void *arg, const char *line, size_t len)
{
	struct sched_recover *rc = arg;
	struct sched_msg *m = rc->m;
	char word[16];
	unsigned idx, attempts;
	long long t, next;

	m->journaled = true;
	int end = 0;

	if (strncmp(line, "- warned ", 9) == 0) {
		m->warned = true;
		return;
	}
	if (strncmp(line, "- held ", 7) == 0 || strncmp(line, "- released ", 11) == 0) {
		m->held = line[2] == 'h'; /* the last one wins */
		return;
	}
	if (sscanf(line, "%u %15s %lld", &idx, word, &t) != 3 || idx >= m->msg->nrcpts)
		return;
	if (strcmp(word, "deferred") == 0) {
		if (sscanf(line, "%*u %*s %*d %u %lld%n", &attempts, &next, &end) == 2 &&
		    m->state[idx] == RS_PENDING) {
			rc->attempts[idx] = attempts;
			if ((uint64_t)next * 1000u > rc->next_ms)
				rc->next_ms = (uint64_t)next * 1000u;
			if (line[end] == ' ' && line[end + 1] != '\0') { /* the last error */
				free(m->diag[idx]);
				m->diag[idx] = strndup(line + end + 1, len - (size_t)end - 1);
			}
		}
		return;
	}
	if (m->state[idx] != RS_PENDING)
		return;
	if (strcmp(word, "delivered") == 0)
		m->state[idx] = RS_DELIVERED;
	else if (strcmp(word, "bounced") == 0)
		m->state[idx] = RS_BOUNCED;
	else if (strcmp(word, "expired") == 0)
		m->state[idx] = RS_EXPIRED;
	else
		return;
	m->npending--;
}

static void
sched_recover_entry(void *arg, struct message *msg)
{
	struct sched_recover *rc = arg;
	struct scheduler *s = rc->s;
	uint64_t now = sched_now_ms();

	log_info("spool message id=%s from=<%s> nrcpt=%zu size=%llu", msg->id, msg->from,
	         msg->nrcpts, (unsigned long long)msg->data_len);
	if ((rc->m = sched_msg_new(s, msg)) == NULL ||
	    (rc->attempts = calloc(msg->nrcpts, sizeof(unsigned))) == NULL) {
		/* out of memory: it stays in the spool for the next start */
		if (rc->m)
			sched_msg_free(s, rc->m);
		else
			message_free(msg);
		return;
	}
	rc->next_ms = now;
	spool_state_read(s->spool, msg->id, sched_recover_line, rc);
	sched_msg_start(s, rc->m, rc->next_ms, rc->attempts);
	free(rc->attempts);
	rc->count++;
}

long
scheduler_recover(struct scheduler *s)
{
	struct sched_recover rc = { .s = s };

	spool_recover(s->spool, sched_recover_entry, &rc);
	return rc.count;
}

void
scheduler_get_stats(const struct scheduler *s, struct scheduler_stats *out)
{
	*out = s->stats;
	out->inflight = s->inflight;
}

int
scheduler_oldest_arrival(const struct scheduler *s, struct timeval *out)
{
	const struct sched_msg *m;
	unsigned n;

	if (s->msgs_tail == NULL)
		return -1;
	*out = s->msgs_tail->msg->arrival;
	for (m = s->msgs_tail, n = 0; m != NULL && n < SCHED_OLDEST_SCAN; m = m->prev, n++) {
		if (timercmp(&m->msg->arrival, out, <))
			*out = m->msg->arrival;
	}
	return 0;
}

/* ---- queue control (petrel queue ...: control.c) ---- */

_Static_assert(RS_PENDING == (int)SCHEDULER_RCPT_PENDING &&
                       RS_DELIVERED == (int)SCHEDULER_RCPT_DELIVERED &&
                       RS_BOUNCED == (int)SCHEDULER_RCPT_BOUNCED &&
                       RS_EXPIRED == (int)SCHEDULER_RCPT_EXPIRED,
               "scheduler.h and scheduler.c agree on the recipient states");

static struct sched_msg *
sched_msg_find(struct scheduler *s, const char *id)
{
	struct sched_msg *m;

	for (m = s->msgs; m != NULL; m = m->next)
		if (!m->deleted && strcmp(m->msg->id, id) == 0)
			return m;
	return NULL;
}

/* Under way on a connection or in a Maildir job: it runs to its end. (A DNS lookup does not
 * count: it has sent nothing anywhere and can be cancelled.) */
static bool
sched_unit_busy(const struct sched_unit *u)
{
	return u->inflight && u->dns == NULL;
}

/*
 * Take a unit that is not busy out of the heap, its destination's wait list or its DNS lookup:
 * it is parked (hold) or about to be freed (delete). Returns the destination whose slot it gave
 * back (to pump once the caller is done), or NULL.
 */
static struct sched_dest *
sched_unit_detach(struct scheduler *s, struct sched_unit *u)
{
	struct sched_dest *d = u->dest, *slot = NULL;
	struct sched_unit **pp;

	queue_remove(&s->heap, &u->qi);
	if (u->dns != NULL) {
		dns_cancel(u->dns);
		u->dns = NULL;
	}
	if (u->inflight) { /* a lookup held the slot */
		u->inflight = false;
		s->inflight--;
		if (d != NULL) {
			d->inflight--;
			slot = d;
		}
	} else if (d != NULL) {
		for (pp = &d->wait_head; *pp != NULL; pp = &(*pp)->wait_next)
			if (*pp == u) {
				*pp = u->wait_next;
				if (d->wait_tail == &u->wait_next)
					d->wait_tail = pp;
				break;
			}
		u->wait_next = NULL;
	}
	u->dest = NULL;
	return slot;
}

/* m's units in an array: the caller may free units and pump destinations while it walks it. */
static struct sched_unit **
sched_msg_units(struct scheduler *s, struct sched_msg *m, size_t *n)
{
	struct sched_unit **us, *u;

	*n = 0;
	if ((us = calloc(m->nunits ? m->nunits : 1, sizeof(*us))) == NULL)
		return NULL;
	for (u = s->units; u != NULL && *n < m->nunits; u = u->next)
		if (u->m == m)
			us[(*n)++] = u;
	return us;
}

/* The view scratch of every message: is a unit in flight or due, and its earliest attempt. */
static void
sched_view_update(struct scheduler *s)
{
	uint64_t now = sched_now_ms();
	struct sched_msg *m;
	struct sched_unit *u;

	for (m = s->msgs; m != NULL; m = m->next) {
		m->view_next = 0;
		m->view_active = false;
	}
	for (u = s->units; u != NULL; u = u->next) {
		m = u->m;
		if (u->inflight || u->dest != NULL) {
			m->view_active = true;
		} else if (u->qi.index != QUEUE_NOT_QUEUED) {
			if (u->qi.when <= now)
				m->view_active = true;
			if (m->view_next == 0 || u->qi.when < m->view_next)
				m->view_next = u->qi.when;
		}
	}
}

static void
sched_summary(struct sched_msg *m, struct scheduler_msg_summary *sum)
{
	size_t i;

	memset(sum, 0, sizeof(*sum));
	sum->msg = m->msg;
	sum->npending = m->npending;
	sum->rcpt_state = m->state;
	sum->rcpt_error = m->diag;
	sum->next_attempt = (time_t)(m->view_next / 1000u);
	sum->state = m->held                               ? SCHEDULER_MSG_HELD
	             : m->view_active || m->view_next == 0 ? SCHEDULER_MSG_ACTIVE
	                                                   : SCHEDULER_MSG_DEFERRED;
	for (i = 0; i < m->msg->nrcpts && sum->last_error == NULL; i++)
		if (m->state[i] == RS_PENDING)
			sum->last_error = m->diag[i];
}

size_t
scheduler_foreach(struct scheduler *s, scheduler_msg_cb cb, void *arg)
{
	struct scheduler_msg_summary sum;
	struct sched_msg *m;
	size_t n = 0;

	sched_view_update(s);
	for (m = s->msgs_tail; m != NULL; m = m->prev) {
		if (m->deleted)
			continue;
		sched_summary(m, &sum);
		cb(arg, &sum);
		n++;
	}
	return n;
}

int64_t
scheduler_msg_slot(struct scheduler *s, const char *id)
{
	struct sched_msg *m = sched_msg_find(s, id);

	return m != NULL ? m->msg->spool_slot : -1;
}

int
scheduler_lookup(struct scheduler *s, const char *id, scheduler_msg_cb cb, void *arg)
{
	struct scheduler_msg_summary sum;
	struct scheduler_rcpt_live *live;
	struct sched_msg *m = sched_msg_find(s, id);
	struct sched_unit *u;
	size_t i;

	if (m == NULL) {
		errno = ENOENT;
		return -1;
	}
	if ((live = calloc(m->msg->nrcpts, sizeof(*live))) == NULL)
		return -1;
	sched_view_update(s);
	for (u = s->units; u != NULL; u = u->next) {
		if (u->m != m)
			continue;
		for (i = 0; i < u->nrcpts; i++) {
			struct scheduler_rcpt_live *l = &live[u->rcpts[i]];
			l->attempts = u->attempts;
			l->active = u->inflight || u->dest != NULL;
			if (u->qi.index != QUEUE_NOT_QUEUED)
				l->next_attempt = (time_t)(u->qi.when / 1000u);
		}
	}
	sched_summary(m, &sum);
	sum.live = live;
	cb(arg, &sum);
	free(live);
	return 0;
}

size_t
scheduler_flush(struct scheduler *s)
{
	size_t n = queue_advance(&s->heap, sched_now_ms());

	log_info("queue flush units=%zu", n);
	scheduler_kick(s);
	return n;
}

/* After units left their destinations (delete, hold): let the waiting ones take the freed
 * slots, then run what is due. Frees slots. */
static void
sched_refill_slots(struct scheduler *s, struct sched_dest **slots, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (slots[i] != NULL)
			sched_dest_pump(s, slots[i]);
	free(slots);
	scheduler_kick(s);
}

int
scheduler_delete(struct scheduler *s, const char *id)
{
	struct sched_msg *m = sched_msg_find(s, id);
	struct sched_unit **us;
	struct sched_dest **slots;
	size_t i, n;
	int busy = 0;

	if (m == NULL) {
		errno = ENOENT;
		return -1;
	}
	if ((us = sched_msg_units(s, m, &n)) == NULL)
		return -1;
	if ((slots = calloc(n ? n : 1, sizeof(*slots))) == NULL) {
		free(us);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (sched_unit_busy(us[i])) {
			busy++;
			continue;
		}
		slots[i] = sched_unit_detach(s, us[i]);
		sched_unit_free(s, us[i]);
	}
	sched_msg_cancel_dsns(m); /* their journal lines are moot: the journal goes too */
	log_info("%s deleted (queue delete) nrcpt=%zu pending=%u deliveries_in_flight=%d",
	         m->msg->id, m->msg->nrcpts, m->npending, busy);
	/* A delivery under way may still read the file: its slot is marked free now but recycled
	 * only when the last one ends (sched_unit_discard). */
	spool_discard(s->spool, m->msg);
	spool_sync_soon(s->spool); /* an admin's removal should not come back after a crash */
	m->deleted = true;
	if (m->nunits == 0)
		sched_msg_leave_spool(s, m, false);
	sched_refill_slots(s, slots, n);
	free(us);
	return busy;
}

int
scheduler_hold(struct scheduler *s, const char *id)
{
	struct sched_msg *m = sched_msg_find(s, id);
	struct sched_unit **us;
	struct sched_dest **slots = NULL;
	char line[64];
	size_t i, n;
	int busy = 0;

	if (m == NULL) {
		errno = ENOENT;
		return -1;
	}
	if (m->held)
		return 1;
	if ((us = sched_msg_units(s, m, &n)) == NULL ||
	    (slots = calloc(n ? n : 1, sizeof(*slots))) == NULL) {
		free(us);
		return -1;
	}
	snprintf(line, sizeof(line), "- held %lld\n", (long long)time(NULL));
	if (sched_journal_write(s, m, line, strlen(line)) == -1) {
		free(slots);
		free(us);
		return -1;
	}
	m->held = true;
	for (i = 0; i < n; i++) {
		if (sched_unit_busy(us[i]))
			busy++;
		else
			slots[i] = sched_unit_detach(s, us[i]); /* parked */
	}
	log_info("%s held (queue hold) pending=%u deliveries_in_flight=%d", m->msg->id, m->npending,
	         busy);
	sched_refill_slots(s, slots, n);
	free(us);
	return 0;
}

int
scheduler_release(struct scheduler *s, const char *id)
{
	struct sched_msg *m = sched_msg_find(s, id);
	struct sched_unit *u;
	uint64_t now = sched_now_ms();
	char line[64];
	unsigned n = 0;

	if (m == NULL) {
		errno = ENOENT;
		return -1;
	}
	if (!m->held)
		return 1;
	snprintf(line, sizeof(line), "- released %lld\n", (long long)time(NULL));
	if (sched_journal_write(s, m, line, strlen(line)) == -1)
		return -1;
	m->held = false;
	for (u = s->units; u != NULL; u = u->next)
		if (u->m == m && !u->inflight && u->dest == NULL &&
		    u->qi.index == QUEUE_NOT_QUEUED) {
			sched_unit_schedule(s, u, now);
			n++;
		}
	log_info("%s released (queue release) units=%u", m->msg->id, n);
	scheduler_kick(s);
	return 0;
}
