/*
 * stats.h: petrel's counters, gauges and latency histograms, and the HTTP endpoint that shows
 * them (libevent's evhttp, on the main loop):
 *   GET /metrics  Prometheus text exposition format 0.0.4
 *   GET /stats    the same figures as one JSON object
 *   GET /healthz  200 "ok" while the loop runs and the spool is writable, else 503
 *   GET /         a self-contained HTML page that plots /stats (no external assets)
 *
 * The registry is one global struct (stats_registry) of plain uint64_t fields. Modules bump
 * them with the inline helpers below: one increment, no lock, no atomic, so only the loop
 * thread may call them (the spool's sync thread hands its measurement back with the batch).
 * Figures that a module keeps already (struct smtp_server_stats, spool_get_stats(),
 * scheduler_get_stats()) are read from it when the endpoint is scraped, never counted twice.
 *
 * Every family exists from start-up, as 0 until something happens, so dashboards and alerts
 * never see a metric appear. The list of families with their meaning: stats_families in
 * stats.c (also the HELP text of /metrics).
 */
#ifndef PETREL_STATS_H
#define PETREL_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "petrel/config.h"
#include "petrel/dns.h"
#include "petrel/scheduler.h"
#include "petrel/smtp/server.h"
#include "petrel/smtp/session.h"
#include "petrel/spool.h"

struct evbuffer;
struct event_base;
struct stats_endpoint;

/* Finite bucket bounds of every histogram: 0.5 ms to 20 s in 1-2-5 steps, then 60 s, 5 min and
 * 1 h (for end-to-end delivery); one more bucket, +Inf, counts the rest. */
#define STATS_BUCKETS 18

/* Latency histograms; the values are nanoseconds, shown as seconds. */
enum stats_hist {
	STATS_HIST_ACCEPT,     /* end of DATA -> 250 sent: the spool commit */
	STATS_HIST_DELIVERY,   /* arrival -> delivered, per recipient */
	STATS_HIST_SPOOL_SYNC, /* one group commit: syncfs (and fsync of slots/ for new files) */
	STATS_HIST_LOOP_LAG,   /* how late a 100 ms timer of the loop fires */
	STATS_HIST_COUNT
};

/* Why a command or message was refused (label reason= of petrel_rejections_total). */
enum stats_reject {
	STATS_REJECT_SIZE,             /* 552: SIZE= or the message over max_message_size */
	STATS_REJECT_BARE_NEWLINE,     /* 550: bare CR or LF in the body */
	STATS_REJECT_LINE_TOO_LONG,    /* 550: a body line over 1000 octets */
	STATS_REJECT_RELAY_DENIED,     /* 554: RCPT to a foreign domain from outside */
	STATS_REJECT_TOO_MANY_RCPTS,   /* 452: over max_recipients */
	STATS_REJECT_AUTH_REQUIRED,    /* 530: MAIL on a submission listener without AUTH */
	STATS_REJECT_SENDER_NOT_OWNED, /* 553: auth.sender_login_match */
	STATS_REJECT_LOCAL_ERROR,      /* 451: the spool could not take the message */
	STATS_REJECT_COUNT
};

/* What became of a recipient after an attempt (label outcome= of petrel_recipients_total). */
enum stats_outcome {
	STATS_OUTCOME_DELIVERED,
	STATS_OUTCOME_DEFERRED, /* a temporary failure, to be retried */
	STATS_OUTCOME_BOUNCED,
	STATS_OUTCOME_EXPIRED, /* a temporary failure past queue.max_lifetime */
	STATS_OUTCOME_COUNT
};

#define STATS_ROUTES       (CONFIG_ROUTE_DISCARD + 1) /* enum config_route_kind */
#define STATS_DNS_STATUSES (DNS_NO_ADDRESS + 1)       /* enum dns_status */

struct stats_histogram {
	uint64_t buckets[STATS_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
	uint64_t count;
	uint64_t sum_ns;
};

/* The registry: loop thread only. */
struct stats {
	uint64_t sessions[SMTP_STATE_COUNT]; /* gauge: live sessions per state */
	uint64_t tls_handshakes;             /* inbound TLS handshakes completed */
	uint64_t tls_failures;               /* inbound TLS handshakes failed */
	uint64_t auth_ok;
	uint64_t auth_failed;
	uint64_t rejected[STATS_REJECT_COUNT];
	uint64_t recipients[STATS_OUTCOME_COUNT][STATS_ROUTES];
	uint64_t delivery_attempts;               /* units attempted (one per transaction,
	                                           * Maildir job or discard) */
	uint64_t dns_results[STATS_DNS_STATUSES]; /* finished lookups by status */
	uint64_t reloads;                         /* SIGHUP reloads applied */
	uint64_t reload_failures;                 /* SIGHUP reloads refused */
	uint64_t reload_ok;                       /* gauge: 1 unless the last reload was refused
	                                           * (main sets it at start) */
	struct stats_histogram hist[STATS_HIST_COUNT];
};

extern struct stats stats_registry;

/* CLOCK_MONOTONIC in nanoseconds: the clock of every latency. */
static inline uint64_t
stats_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A session is born (from == SMTP_STATE_COUNT), changes state, or ends (to == ..._COUNT). */
static inline void
stats_session_state(enum smtp_state from, enum smtp_state to)
{
	if (from < SMTP_STATE_COUNT)
		stats_registry.sessions[from]--;
	if (to < SMTP_STATE_COUNT)
		stats_registry.sessions[to]++;
}

static inline void
stats_tls_handshake(bool ok)
{
	if (ok)
		stats_registry.tls_handshakes++;
	else
		stats_registry.tls_failures++;
}

static inline void
stats_auth(bool ok)
{
	if (ok)
		stats_registry.auth_ok++;
	else
		stats_registry.auth_failed++;
}

static inline void
stats_reject(enum stats_reject why)
{
	stats_registry.rejected[why]++;
}

static inline void
stats_recipient(enum stats_outcome outcome, enum config_route_kind route)
{
	stats_registry.recipients[outcome][route]++;
}

static inline void
stats_delivery_attempt(void)
{
	stats_registry.delivery_attempts++;
}

static inline void
stats_dns_result(enum dns_status status)
{
	stats_registry.dns_results[status]++;
}

/* Count one latency of `ns` nanoseconds in histogram h. */
void stats_observe(enum stats_hist h, uint64_t ns);

/* The bucket of a value: the first i with ns <= bound i, or STATS_BUCKETS (+Inf). Pure. */
unsigned stats_bucket_index(uint64_t ns);

/* Upper bound i (0 <= i < STATS_BUCKETS) in nanoseconds, and as written in le="…". */
uint64_t stats_bucket_bound(unsigned i);
const char *stats_bucket_label(unsigned i);

/* Add one value to a histogram (stats_observe() does it on the registry). Pure. */
void stats_histogram_add(struct stats_histogram *h, uint64_t ns);

/* Every figure at one moment: the registry and what the modules keep themselves. */
struct stats_snapshot {
	const char *version;           /* label of petrel_build_info */
	uint64_t start_time;           /* Unix seconds */
	uint64_t rss_bytes;            /* resident set size, /proc/self/statm */
	uint64_t connections_current;  /* live inbound sessions */
	struct smtp_server_stats smtp; /* connections, refusals, messages and bytes received */
	struct spool_stats spool;
	struct scheduler_stats queue;
	uint64_t queue_oldest_age; /* seconds since the arrival of the oldest queued message */
	struct stats reg;
};

enum stats_format {
	STATS_FORMAT_PROMETHEUS, /* text exposition format 0.0.4 */
	STATS_FORMAT_JSON,       /* {"family": value | {label: …} | histogram object} */
};

/*
 * Render every family of `snap` into `out`. Pure (no clock, no I/O): the unit tests compare
 * the text byte for byte. JSON: a family without labels is a number, one with labels an object
 * keyed by the label values (nested for two labels), a histogram an object {"count", "sum"
 * (seconds), "buckets": {le: cumulative count}}. Returns 0, or -1 if memory ran out.
 */
int stats_render(const struct stats_snapshot *snap, enum stats_format format, struct evbuffer *out);

/*
 * Start the endpoint on cfg->stats_addr (the caller checks cfg->stats_address != NULL):
 * listen, and run the loop-lag timer. It reads srv, spool and sched (all borrowed, they must
 * outlive it; sched may be NULL) when scraped. Returns NULL with *err (malloc'd) naming the
 * address on failure.
 */
struct stats_endpoint *stats_endpoint_new(struct event_base *base, const struct petrel_config *cfg,
                                          const struct smtp_server *srv, struct spool *spool,
                                          const struct scheduler *sched, char **err);

/* Close the listener and any open HTTP connection. NULL is a no-op. */
void stats_endpoint_free(struct stats_endpoint *ep);

#endif
