/*
 * stats.c: the registry of counters and histograms, its two renderings (Prometheus text, JSON),
 * and the HTTP endpoint that serves them with libevent's evhttp on the main loop.
 *
 * Owns: stats_registry (bumped by the other modules through stats.h), the endpoint's evhttp
 * server and listening socket, and the loop-lag timer. Does not own what it reads when
 * scraped: the SMTP server's counters, the spool's and the scheduler's (each module keeps its
 * own, read through its API).
 *
 * Start reading at stats_families[]: every family petrel exports, in the order of /metrics,
 * with its HELP text. stats_render() walks it for both formats, so /stats and /metrics cannot
 * disagree. The HTTP side starts at stats_http_cb(): allow list (403), path (404), method
 * (405), bearer token (401), then the page.
 *
 * Histograms: STATS_BUCKETS fixed bounds, log-spaced in 1-2-5 steps from 0.5 ms to 20 s, then
 * 60 s, 5 min and 1 h (end-to-end delivery takes retries). Values are integer nanoseconds and
 * so is the sum: the text is exact, with no floating point on the way.
 */
#include "petrel/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>

#include "petrel/log.h"
#include "petrel/net/cidr.h"
#include "petrel/net/listener.h"

#define STATS_LAG_PERIOD_NS  UINT64_C(100000000) /* the loop-lag timer: 100 ms */
#define STATS_HTTP_TIMEOUT   10                  /* seconds for a scrape connection */
#define STATS_HTTP_HEADERS   8192                /* bytes of request headers */
#define STATS_HTTP_BODY      1024                /* bytes of request body (none is used) */
#define STATS_HTTP_BACKLOG   64
#define STATS_PROBE_NAME     "/slots/.petrel-healthz"
#define STATS_TYPE_METRICS   "text/plain; version=0.0.4; charset=utf-8"
#define STATS_TYPE_JSON      "application/json"
#define STATS_TYPE_TEXT      "text/plain; charset=utf-8"
#define STATS_TYPE_HTML      "text/html; charset=utf-8"
#define STATS_HTTP_FORBIDDEN 403 /* (libevent names 200, 404, 405, 500 and 503, not these) */
#define STATS_HTTP_UNAUTH    401

struct stats stats_registry;

enum stats_type {
	STATS_COUNTER,
	STATS_GAUGE,
	STATS_HISTOGRAM,
};

struct stats_writer;
struct stats_family;

/* Writes the samples of a family that is not one field of the snapshot. */
typedef void stats_emit_fn(struct stats_writer *w, const struct stats_snapshot *s);

struct stats_family {
	const char *name;
	enum stats_type type;
	const char *help;
	size_t offset;        /* without .emit: a uint64_t of struct stats_snapshot */
	stats_emit_fn *emit;  /* writes the samples (labels, sums), or NULL */
	const char *label[2]; /* label names: none, one, or two */
	enum stats_hist hist; /* STATS_HISTOGRAM: which one */
};

/* One rendering under way: where the text goes and, for JSON, how deep it is. */
struct stats_writer {
	struct evbuffer *out;
	enum stats_format format;
	const struct stats_family *f; /* the family being written */
	unsigned nfamilies;           /* JSON: families written so far (comma before the next) */
	unsigned nitems;              /* JSON: items in the innermost open object */
	unsigned nouter;              /* JSON, two labels: objects opened for label[0] values */
	const char *outer; /* JSON, two labels: the label[0] value whose object is open */
	bool failed;       /* memory ran out */
};

/* A page the endpoint serves. */
struct stats_route {
	const char *path;
	bool token; /* needs the bearer token, if one is configured */
	void (*serve)(struct stats_endpoint *ep, struct evhttp_request *req);
};

struct stats_endpoint {
	const struct petrel_config *cfg; /* borrowed: the start's (address); see stats_http_cfg */
	const struct smtp_server *srv;   /* borrowed */
	struct spool *spool;             /* borrowed */
	const struct scheduler *sched;   /* borrowed, may be NULL */
	struct evhttp *http;             /* owns the listening socket and the connections */
	struct event *lag_timer;         /* fires every 100 ms; its lateness is the loop's lag */
	uint64_t lag_due_ns;             /* when it should fire next (stats_now_ns clock) */
	uint64_t start_time;             /* Unix seconds */
	char *probe;                     /* <spool>/slots/.petrel-healthz */
};

/* the registry and its renderings */
static void stats_w_begin(struct stats_writer *w, const struct stats_family *f);
static void stats_w_sample(struct stats_writer *w, const char *l0, const char *l1, uint64_t v);
static void stats_w_histogram(struct stats_writer *w, const struct stats_histogram *h);
static void stats_w_end(struct stats_writer *w);
static void stats_w_printf(struct stats_writer *w, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void stats_w_string(struct stats_writer *w, const char *s);
static void stats_w_seconds(struct stats_writer *w, uint64_t ns);
static stats_emit_fn stats_build_info;
static stats_emit_fn stats_sessions;
static stats_emit_fn stats_rejections;
static stats_emit_fn stats_recipients;
static stats_emit_fn stats_dns_lookups;
static stats_emit_fn stats_dns_failures;

/* the endpoint */
static void stats_snapshot_take(const struct stats_endpoint *ep, struct stats_snapshot *snap);
static uint64_t stats_rss_bytes(void);
static void stats_lag_cb(evutil_socket_t fd, short what, void *arg);
static void stats_http_cb(struct evhttp_request *req, void *arg);
static bool stats_http_allowed(const struct stats_endpoint *ep, struct evhttp_request *req);
static bool stats_http_token_ok(const struct stats_endpoint *ep, struct evhttp_request *req);
static void stats_http_reply(struct evhttp_request *req, int code, const char *reason,
                             const char *type, struct evbuffer *body);
static void stats_http_text(struct evhttp_request *req, int code, const char *reason,
                            const char *text);
static void stats_serve_page(struct stats_endpoint *ep, struct evhttp_request *req);
static void stats_serve_metrics(struct stats_endpoint *ep, struct evhttp_request *req);
static void stats_serve_json(struct stats_endpoint *ep, struct evhttp_request *req);
static void stats_serve_healthz(struct stats_endpoint *ep, struct evhttp_request *req);
static void stats_serve_render(struct stats_endpoint *ep, struct evhttp_request *req,
                               enum stats_format format, const char *type);

/*
 * The buckets: upper bounds in nanoseconds and as the le="…" label writes them.
 */
static const struct {
	uint64_t ns;
	const char *label;
} stats_bounds[STATS_BUCKETS] = {
	{ UINT64_C(500000), "0.0005" },    { UINT64_C(1000000), "0.001" },
	{ UINT64_C(2000000), "0.002" },    { UINT64_C(5000000), "0.005" },
	{ UINT64_C(10000000), "0.01" },    { UINT64_C(20000000), "0.02" },
	{ UINT64_C(50000000), "0.05" },    { UINT64_C(100000000), "0.1" },
	{ UINT64_C(200000000), "0.2" },    { UINT64_C(500000000), "0.5" },
	{ UINT64_C(1000000000), "1" },     { UINT64_C(2000000000), "2" },
	{ UINT64_C(5000000000), "5" },     { UINT64_C(10000000000), "10" },
	{ UINT64_C(20000000000), "20" },   { UINT64_C(60000000000), "60" },
	{ UINT64_C(300000000000), "300" }, { UINT64_C(3600000000000), "3600" },
};

/* Label values, in the order of their enums. */
static const char *const stats_reject_names[STATS_REJECT_COUNT] = {
	[STATS_REJECT_SIZE] = "size",
	[STATS_REJECT_BARE_NEWLINE] = "bare_newline",
	[STATS_REJECT_LINE_TOO_LONG] = "line_too_long",
	[STATS_REJECT_RELAY_DENIED] = "relay_denied",
	[STATS_REJECT_TOO_MANY_RCPTS] = "too_many_recipients",
	[STATS_REJECT_AUTH_REQUIRED] = "auth_required",
	[STATS_REJECT_SENDER_NOT_OWNED] = "sender_not_owned",
	[STATS_REJECT_LOCAL_ERROR] = "local_error",
};

static const char *const stats_outcome_names[STATS_OUTCOME_COUNT] = {
	[STATS_OUTCOME_DELIVERED] = "delivered",
	[STATS_OUTCOME_DEFERRED] = "deferred",
	[STATS_OUTCOME_BOUNCED] = "bounced",
	[STATS_OUTCOME_EXPIRED] = "expired",
};

static const char *const stats_route_names[STATS_ROUTES] = {
	[CONFIG_ROUTE_MX] = "mx",
	[CONFIG_ROUTE_RELAY] = "relay",
	[CONFIG_ROUTE_MAILDIR] = "maildir",
	[CONFIG_ROUTE_DISCARD] = "discard",
};

static const char *const stats_type_names[] = {
	[STATS_COUNTER] = "counter",
	[STATS_GAUGE] = "gauge",
	[STATS_HISTOGRAM] = "histogram",
};

#define STATS_OFF(field) offsetof(struct stats_snapshot, field)

/* Every family, in the order of /metrics and /stats. */
static const struct stats_family stats_families[] = {
	{ .name = "petrel_build_info",
	  .type = STATS_GAUGE,
	  .help = "Always 1; the label says which petrel is running.",
	  .emit = stats_build_info,
	  .label = { "version" } },
	{ .name = "petrel_start_time_seconds",
	  .type = STATS_GAUGE,
	  .help = "When petrel started, in seconds since the Unix epoch.",
	  .offset = STATS_OFF(start_time) },
	{ .name = "petrel_process_resident_memory_bytes",
	  .type = STATS_GAUGE,
	  .help = "Resident set size of the process (/proc/self/statm).",
	  .offset = STATS_OFF(rss_bytes) },
	{ .name = "petrel_config_reloads_total",
	  .type = STATS_COUNTER,
	  .help = "Configuration reloads (SIGHUP) applied.",
	  .offset = STATS_OFF(reg.reloads) },
	{ .name = "petrel_config_reload_failures_total",
	  .type = STATS_COUNTER,
	  .help = "Configuration reloads (SIGHUP) refused: the running configuration was kept.",
	  .offset = STATS_OFF(reg.reload_failures) },
	{ .name = "petrel_config_last_reload_successful",
	  .type = STATS_GAUGE,
	  .help = "1 when the last reload was applied (or none was asked for), 0 when it was "
	          "refused.",
	  .offset = STATS_OFF(reg.reload_ok) },
	{ .name = "petrel_connections_current",
	  .type = STATS_GAUGE,
	  .help = "Inbound SMTP connections open now.",
	  .offset = STATS_OFF(connections_current) },
	{ .name = "petrel_connections_total",
	  .type = STATS_COUNTER,
	  .help = "Inbound SMTP connections accepted and served.",
	  .offset = STATS_OFF(smtp.connections) },
	{ .name = "petrel_connections_refused_total",
	  .type = STATS_COUNTER,
	  .help = "Inbound connections refused by limits.max_connections or "
	          "max_connections_per_ip.",
	  .offset = STATS_OFF(smtp.refused_limit) },
	{ .name = "petrel_sessions",
	  .type = STATS_GAUGE,
	  .help = "Inbound SMTP sessions open now, by protocol state.",
	  .emit = stats_sessions,
	  .label = { "state" } },
	{ .name = "petrel_tls_handshakes_total",
	  .type = STATS_COUNTER,
	  .help = "Inbound TLS handshakes completed (STARTTLS and implicit TLS).",
	  .offset = STATS_OFF(reg.tls_handshakes) },
	{ .name = "petrel_tls_handshake_failures_total",
	  .type = STATS_COUNTER,
	  .help = "Inbound TLS handshakes that failed or were abandoned.",
	  .offset = STATS_OFF(reg.tls_failures) },
	{ .name = "petrel_auth_successes_total",
	  .type = STATS_COUNTER,
	  .help = "SMTP AUTH logins whose credentials were right.",
	  .offset = STATS_OFF(reg.auth_ok) },
	{ .name = "petrel_auth_failures_total",
	  .type = STATS_COUNTER,
	  .help = "SMTP AUTH logins whose credentials were wrong.",
	  .offset = STATS_OFF(reg.auth_failed) },
	{ .name = "petrel_messages_received_total",
	  .type = STATS_COUNTER,
	  .help = "Messages accepted with 250 (on disk in the spool).",
	  .offset = STATS_OFF(smtp.messages) },
	{ .name = "petrel_received_bytes_total",
	  .type = STATS_COUNTER,
	  .help = "Message bytes received at the end of DATA or BDAT LAST.",
	  .offset = STATS_OFF(smtp.bytes) },
	{ .name = "petrel_rejections_total",
	  .type = STATS_COUNTER,
	  .help = "Senders, recipients and messages refused, by reason.",
	  .emit = stats_rejections,
	  .label = { "reason" } },
	{ .name = "petrel_recipients_total",
	  .type = STATS_COUNTER,
	  .help = "Delivery results per recipient and attempt, by outcome and route kind "
	          "(deferred: will be retried; expired: past queue.max_lifetime).",
	  .emit = stats_recipients,
	  .label = { "outcome", "route" } },
	{ .name = "petrel_delivery_attempts_total",
	  .type = STATS_COUNTER,
	  .help = "Delivery attempts (one SMTP transaction, Maildir job or discard each).",
	  .offset = STATS_OFF(reg.delivery_attempts) },
	{ .name = "petrel_deliveries_inflight",
	  .type = STATS_GAUGE,
	  .help = "Delivery attempts under way now.",
	  .offset = STATS_OFF(queue.inflight) },
	{ .name = "petrel_queue_messages",
	  .type = STATS_GAUGE,
	  .help = "Messages in the queue (not yet delivered to every recipient).",
	  .offset = STATS_OFF(queue.queued) },
	{ .name = "petrel_queue_oldest_age_seconds",
	  .type = STATS_GAUGE,
	  .help = "Age of the oldest message in the queue (0 when it is empty).",
	  .offset = STATS_OFF(queue_oldest_age) },
	{ .name = "petrel_dsns_total",
	  .type = STATS_COUNTER,
	  .help = "Delivery status notifications (bounces, delay warnings) generated.",
	  .offset = STATS_OFF(queue.dsns) },
	{ .name = "petrel_spool_commits_total",
	  .type = STATS_COUNTER,
	  .help = "Messages committed to the spool (received ones and DSNs).",
	  .offset = STATS_OFF(spool.commits) },
	{ .name = "petrel_spool_commit_failures_total",
	  .type = STATS_COUNTER,
	  .help = "Spool commits that failed (the client got 451).",
	  .offset = STATS_OFF(spool.failures) },
	{ .name = "petrel_spool_sync_batches_total",
	  .type = STATS_COUNTER,
	  .help = "Group commits: one syncfs and one directory fsync for a batch of messages.",
	  .offset = STATS_OFF(spool.batches) },
	{ .name = "petrel_dns_lookups_total",
	  .type = STATS_COUNTER,
	  .help = "MX and host lookups finished (whatever their answer).",
	  .emit = stats_dns_lookups },
	{ .name = "petrel_dns_failures_total",
	  .type = STATS_COUNTER,
	  .help = "MX and host lookups that gave no usable address, by status.",
	  .emit = stats_dns_failures,
	  .label = { "status" } },
	{ .name = "petrel_accept_latency_seconds",
	  .type = STATS_HISTOGRAM,
	  .help = "From the end of DATA (or BDAT LAST) to the 250: the spool commit.",
	  .hist = STATS_HIST_ACCEPT },
	{ .name = "petrel_delivery_latency_seconds",
	  .type = STATS_HISTOGRAM,
	  .help = "From the arrival of a message to the delivery of a recipient.",
	  .hist = STATS_HIST_DELIVERY },
	{ .name = "petrel_spool_sync_seconds",
	  .type = STATS_HISTOGRAM,
	  .help = "Duration of one group commit (syncfs, and fsync of slots/ when a slot file was "
	          "created).",
	  .hist = STATS_HIST_SPOOL_SYNC },
	{ .name = "petrel_loop_lag_seconds",
	  .type = STATS_HISTOGRAM,
	  .help = "How late a 100 ms timer of the event loop fires.",
	  .hist = STATS_HIST_LOOP_LAG },
};

static const struct stats_route stats_routes[] = {
	{ "/", false, stats_serve_page }, /* static: it asks for the token itself */
	{ "/metrics", true, stats_serve_metrics },
	{ "/stats", true, stats_serve_json },
	{ "/healthz", true, stats_serve_healthz },
};

_Static_assert(sizeof(stats_route_names) / sizeof(stats_route_names[0]) == STATS_ROUTES,
               "a name per route kind");

/*
 * Histograms.
 */

unsigned
stats_bucket_index(uint64_t ns)
{
	unsigned lo = 0, hi = STATS_BUCKETS, mid;

	/* The first bound >= ns (le: "less than or equal"). */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (stats_bounds[mid].ns < ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t
stats_bucket_bound(unsigned i)
{
	return i < STATS_BUCKETS ? stats_bounds[i].ns : UINT64_MAX;
}

const char *
stats_bucket_label(unsigned i)
{
	return i < STATS_BUCKETS ? stats_bounds[i].label : "+Inf";
}

void
stats_histogram_add(struct stats_histogram *h, uint64_t ns)
{
	h->buckets[stats_bucket_index(ns)]++;
	h->count++;
	h->sum_ns += ns;
}

void
stats_observe(enum stats_hist h, uint64_t ns)
{
	stats_histogram_add(&stats_registry.hist[h], ns);
}

/*
 * Rendering.
 */

int
stats_render(const struct stats_snapshot *snap, enum stats_format format, struct evbuffer *out)
{
	struct stats_writer w = { .out = out, .format = format };
	const struct stats_family *f;
	uint64_t v;
	size_t i;

	if (format == STATS_FORMAT_JSON)
		stats_w_printf(&w, "{");
	for (i = 0; i < sizeof(stats_families) / sizeof(stats_families[0]); i++) {
		f = &stats_families[i];
		stats_w_begin(&w, f);
		if (f->type == STATS_HISTOGRAM) {
			stats_w_histogram(&w, &snap->reg.hist[f->hist]);
		} else if (f->emit != NULL) {
			f->emit(&w, snap);
		} else {
			memcpy(&v, (const char *)snap + f->offset, sizeof(v));
			stats_w_sample(&w, NULL, NULL, v);
		}
		stats_w_end(&w);
	}
	if (format == STATS_FORMAT_JSON)
		stats_w_printf(&w, "\n}\n");
	return w.failed ? -1 : 0;
}

static void
stats_build_info(struct stats_writer *w, const struct stats_snapshot *s)
{
	stats_w_sample(w, s->version != NULL ? s->version : "", NULL, 1);
}

static void
stats_sessions(struct stats_writer *w, const struct stats_snapshot *s)
{
	unsigned i;

	for (i = 0; i < SMTP_STATE_COUNT; i++)
		stats_w_sample(w, smtp_state_name((enum smtp_state)i), NULL, s->reg.sessions[i]);
}

static void
stats_rejections(struct stats_writer *w, const struct stats_snapshot *s)
{
	unsigned i;

	for (i = 0; i < STATS_REJECT_COUNT; i++)
		stats_w_sample(w, stats_reject_names[i], NULL, s->reg.rejected[i]);
}

static void
stats_recipients(struct stats_writer *w, const struct stats_snapshot *s)
{
	unsigned o, r;

	for (o = 0; o < STATS_OUTCOME_COUNT; o++)
		for (r = 0; r < STATS_ROUTES; r++)
			stats_w_sample(w, stats_outcome_names[o], stats_route_names[r],
			               s->reg.recipients[o][r]);
}

static void
stats_dns_lookups(struct stats_writer *w, const struct stats_snapshot *s)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; i < STATS_DNS_STATUSES; i++)
		sum += s->reg.dns_results[i];
	stats_w_sample(w, NULL, NULL, sum);
}

static void
stats_dns_failures(struct stats_writer *w, const struct stats_snapshot *s)
{
	unsigned i;

	for (i = 0; i < STATS_DNS_STATUSES; i++) {
		if (i != DNS_OK)
			stats_w_sample(w, dns_status_name((enum dns_status)i), NULL,
			               s->reg.dns_results[i]);
	}
}

/* "# HELP" and "# TYPE" lines; in JSON the key, and "{" for a family with labels. */
static void
stats_w_begin(struct stats_writer *w, const struct stats_family *f)
{
	w->f = f;
	w->nitems = 0;
	w->nouter = 0;
	w->outer = NULL;
	if (w->format == STATS_FORMAT_PROMETHEUS) {
		stats_w_printf(w, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
		               stats_type_names[f->type]);
		return;
	}
	stats_w_printf(w, "%s\n  \"%s\": %s", w->nfamilies > 0 ? "," : "", f->name,
	               f->label[0] != NULL ? "{" : "");
}

/* One sample: no label (l0 NULL), one, or two. */
static void
stats_w_sample(struct stats_writer *w, const char *l0, const char *l1, uint64_t v)
{
	const struct stats_family *f = w->f;

	if (w->format == STATS_FORMAT_PROMETHEUS) {
		stats_w_printf(w, "%s", f->name);
		if (l0 != NULL) {
			stats_w_printf(w, "{%s=\"", f->label[0]);
			stats_w_string(w, l0);
			if (l1 != NULL) {
				stats_w_printf(w, "\",%s=\"", f->label[1]);
				stats_w_string(w, l1);
			}
			stats_w_printf(w, "\"}");
		}
		stats_w_printf(w, " %" PRIu64 "\n", v);
		return;
	}
	if (l1 != NULL && (w->outer == NULL || strcmp(w->outer, l0) != 0)) {
		/* A new value of the first label: its own object. */
		stats_w_printf(w, "%s%s\"", w->outer != NULL ? "}" : "", w->nouter > 0 ? ", " : "");
		stats_w_string(w, l0);
		stats_w_printf(w, "\": {");
		w->outer = l0;
		w->nouter++;
		w->nitems = 0;
	}
	if (l0 != NULL) {
		stats_w_printf(w, "%s\"", w->nitems > 0 ? ", " : "");
		stats_w_string(w, l1 != NULL ? l1 : l0);
		stats_w_printf(w, "\": ");
	}
	stats_w_printf(w, "%" PRIu64, v);
	w->nitems++;
}

/* Cumulative buckets, then +Inf (= count), sum and count. */
static void
stats_w_histogram(struct stats_writer *w, const struct stats_histogram *h)
{
	const char *name = w->f->name;
	uint64_t cum = 0;
	unsigned i;

	if (w->format == STATS_FORMAT_JSON) {
		stats_w_printf(w, "{\"count\": %" PRIu64 ", \"sum\": ", h->count);
		stats_w_seconds(w, h->sum_ns);
		stats_w_printf(w, ", \"buckets\": {");
	}
	for (i = 0; i <= STATS_BUCKETS; i++) {
		cum += h->buckets[i];
		if (w->format == STATS_FORMAT_PROMETHEUS)
			stats_w_printf(w, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name,
			               stats_bucket_label(i), cum);
		else
			stats_w_printf(w, "%s\"%s\": %" PRIu64, i > 0 ? ", " : "",
			               stats_bucket_label(i), cum);
	}
	if (w->format == STATS_FORMAT_JSON) {
		stats_w_printf(w, "}}");
		return;
	}
	stats_w_printf(w, "%s_sum ", name);
	stats_w_seconds(w, h->sum_ns);
	stats_w_printf(w, "\n%s_count %" PRIu64 "\n", name, h->count);
}

/* JSON: close what the family opened. */
static void
stats_w_end(struct stats_writer *w)
{
	if (w->format == STATS_FORMAT_JSON) {
		if (w->outer != NULL)
			stats_w_printf(w, "}");
		if (w->f->label[0] != NULL)
			stats_w_printf(w, "}");
	}
	w->nfamilies++;
}

static void
stats_w_printf(struct stats_writer *w, const char *fmt, ...)
{
	va_list ap;

	if (w->failed)
		return;
	va_start(ap, fmt);
	if (evbuffer_add_vprintf(w->out, fmt, ap) < 0)
		w->failed = true;
	va_end(ap);
}

/* A label value or JSON string: \ " and newline escaped the same way in both formats, other
 * control bytes replaced (the values are petrel's own names, but stay safe). */
static void
stats_w_string(struct stats_writer *w, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			stats_w_printf(w, "\\%c", *s);
		else if (*s == '\n')
			stats_w_printf(w, "\\n");
		else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			stats_w_printf(w, "?");
		else
			stats_w_printf(w, "%c", *s);
	}
}

/* Nanoseconds as exact decimal seconds: 1500000 -> "0.001500000". */
static void
stats_w_seconds(struct stats_writer *w, uint64_t ns)
{
	stats_w_printf(w, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}

/*
 * The endpoint.
 */

struct stats_endpoint *
stats_endpoint_new(struct event_base *base, const struct petrel_config *cfg,
                   const struct smtp_server *srv, struct spool *spool,
                   const struct scheduler *sched, char **err)
{
	struct stats_endpoint *ep;
	const char *what = "allocate";
	struct timeval tv;
	int fd = -1;

	*err = NULL;
	if ((ep = calloc(1, sizeof(*ep))) == NULL)
		goto fail;
	ep->cfg = cfg;
	ep->srv = srv;
	ep->spool = spool;
	ep->sched = sched;
	gettimeofday(&tv, NULL);
	ep->start_time = (uint64_t)tv.tv_sec;
	if (asprintf(&ep->probe, "%s%s", cfg->spool, STATS_PROBE_NAME) == -1) {
		ep->probe = NULL;
		goto fail;
	}
	if ((ep->http = evhttp_new(base)) == NULL)
		goto fail;
	/* Every method reaches stats_http_cb, which answers 405 itself (evhttp would say 501). */
	evhttp_set_allowed_methods(ep->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                             EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                             EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(ep->http, STATS_HTTP_TIMEOUT);
	evhttp_set_max_headers_size(ep->http, STATS_HTTP_HEADERS);
	evhttp_set_max_body_size(ep->http, STATS_HTTP_BODY);
	evhttp_set_gencb(ep->http, stats_http_cb, ep);
	if ((ep->lag_timer = evtimer_new(base, stats_lag_cb, ep)) == NULL)
		goto fail;
	fd = listener_socket((const struct sockaddr *)&cfg->stats_addr, cfg->stats_addrlen,
	                     STATS_HTTP_BACKLOG, &what);
	if (fd == -1)
		goto fail;
	if (evhttp_accept_socket_with_handle(ep->http, fd) == NULL) {
		close(fd);
		goto fail;
	}
	tv.tv_sec = 0;
	tv.tv_usec = (suseconds_t)(STATS_LAG_PERIOD_NS / 1000);
	ep->lag_due_ns = stats_now_ns() + STATS_LAG_PERIOD_NS;
	evtimer_add(ep->lag_timer, &tv);
	log_info("stats listening address=%s token=%s allow=%zu", cfg->stats_address,
	         cfg->stats_token != NULL ? "yes" : "no", cfg->nstats_allow);
	return ep;

fail:
	if (asprintf(err, "cannot %s stats address %s: %s", what, cfg->stats_address,
	             strerror(errno != 0 ? errno : ENOMEM)) == -1)
		*err = NULL;
	stats_endpoint_free(ep);
	return NULL;
}

void
stats_endpoint_free(struct stats_endpoint *ep)
{
	if (ep == NULL)
		return;
	if (ep->http != NULL)
		evhttp_free(ep->http); /* closes the listener and open connections */
	if (ep->lag_timer != NULL)
		event_free(ep->lag_timer);
	free(ep->probe);
	free(ep);
}

/* The loop is as late as this timer: count it, and ask again in 100 ms. */
static void
stats_lag_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stats_endpoint *ep = arg;
	struct timeval tv = { 0, (suseconds_t)(STATS_LAG_PERIOD_NS / 1000) };
	uint64_t now = stats_now_ns();

	stats_observe(STATS_HIST_LOOP_LAG, now > ep->lag_due_ns ? now - ep->lag_due_ns : 0);
	ep->lag_due_ns = now + STATS_LAG_PERIOD_NS;
	evtimer_add(ep->lag_timer, &tv);
}

/* Pages in this order: 403 (allow), 404 (path), 405 (method), 401 (token). */
static void
stats_http_cb(struct evhttp_request *req, void *arg)
{
	struct stats_endpoint *ep = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const struct stats_route *route = NULL;
	size_t i;

	if (path == NULL || *path == '\0')
		path = "/";
	if (!stats_http_allowed(ep, req)) {
		stats_http_text(req, STATS_HTTP_FORBIDDEN, "Forbidden", "forbidden\n");
		return;
	}
	for (i = 0; i < sizeof(stats_routes) / sizeof(stats_routes[0]); i++) {
		if (strcmp(stats_routes[i].path, path) == 0)
			route = &stats_routes[i];
	}
	if (route == NULL) {
		stats_http_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
		return;
	}
	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		stats_http_text(req, HTTP_BADMETHOD, "Method Not Allowed", "method not allowed\n");
		return;
	}
	if (route->token && !stats_http_token_ok(ep, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		                  "Bearer realm=\"petrel\"");
		stats_http_text(req, STATS_HTTP_UNAUTH, "Unauthorized", "unauthorized\n");
		return;
	}
	route->serve(ep, req);
}

/* stats.token and stats.allow: the server's current config (a reload changes them). */
static const struct petrel_config *
stats_http_cfg(const struct stats_endpoint *ep)
{
	return ep->srv != NULL ? ep->srv->cfg : ep->cfg;
}

/* Is the client inside stats.allow? (From the socket: evhttp keeps only a string.) */
static bool
stats_http_allowed(const struct stats_endpoint *ep, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
	const struct petrel_config *cfg;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (bev == NULL || getpeername(bufferevent_getfd(bev), (struct sockaddr *)&ss, &len) == -1)
		return false;
	cfg = stats_http_cfg(ep);
	return cidr_match_any(cfg->stats_allow, cfg->nstats_allow, (struct sockaddr *)&ss);
}

/* "Authorization: Bearer <stats.token>" (RFC 6750), compared in constant time. */
static bool
stats_http_token_ok(const struct stats_endpoint *ep, struct evhttp_request *req)
{
	const char *token = stats_http_cfg(ep)->stats_token, *h;
	size_t len;

	if (token == NULL)
		return true;
	h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	for (h += 7; *h == ' '; h++)
		;
	len = strlen(token);
	return strlen(h) == len && CRYPTO_memcmp(h, token, len) == 0;
}

static void
stats_http_reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                 struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, code, reason, body); /* no body goes out for HEAD */
}

static void
stats_http_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *body = evbuffer_new();

	if (body != NULL)
		evbuffer_add(body, text, strlen(text));
	stats_http_reply(req, code, reason, STATS_TYPE_TEXT, body);
	evbuffer_free(body);
}

static void
stats_serve_metrics(struct stats_endpoint *ep, struct evhttp_request *req)
{
	stats_serve_render(ep, req, STATS_FORMAT_PROMETHEUS, STATS_TYPE_METRICS);
}

static void
stats_serve_json(struct stats_endpoint *ep, struct evhttp_request *req)
{
	stats_serve_render(ep, req, STATS_FORMAT_JSON, STATS_TYPE_JSON);
}

static void
stats_serve_render(struct stats_endpoint *ep, struct evhttp_request *req, enum stats_format format,
                   const char *type)
{
	struct stats_snapshot snap;
	struct evbuffer *body = evbuffer_new();

	stats_snapshot_take(ep, &snap);
	if (body == NULL || stats_render(&snap, format, body) == -1) {
		evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	stats_http_reply(req, HTTP_OK, "OK", type, body);
	evbuffer_free(body);
}

/*
 * The loop runs (it is answering), and the spool takes files: create and remove a probe in
 * <spool>/slots, where new slot files are made (a dot file is never taken for a slot; the
 * probe never outlives this call anyway).
 */
static void
stats_serve_healthz(struct stats_endpoint *ep, struct evhttp_request *req)
{
	char text[256];
	int fd, err;

	fd = open(ep->probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
	          0600);
	if (fd != -1) {
		close(fd);
		if (unlink(ep->probe) == 0) {
			stats_http_text(req, HTTP_OK, "OK", "ok\n");
			return;
		}
	}
	err = errno;
	snprintf(text, sizeof(text), "spool not writable: %s\n", strerror(err));
	log_warn("stats healthz failed probe=%s error=\"%s\"", ep->probe, strerror(err));
	stats_http_text(req, HTTP_SERVUNAVAIL, "Service Unavailable", text);
}

/* Every figure now. */
static void
stats_snapshot_take(const struct stats_endpoint *ep, struct stats_snapshot *snap)
{
	struct timeval now, oldest;

	memset(snap, 0, sizeof(*snap));
	snap->version = PETREL_VERSION;
	snap->start_time = ep->start_time;
	snap->rss_bytes = stats_rss_bytes();
	snap->connections_current = ep->srv->nsessions;
	snap->smtp = ep->srv->stats;
	spool_get_stats(ep->spool, &snap->spool);
	if (ep->sched != NULL) {
		scheduler_get_stats(ep->sched, &snap->queue);
		gettimeofday(&now, NULL);
		if (scheduler_oldest_arrival(ep->sched, &oldest) == 0 && now.tv_sec > oldest.tv_sec)
			snap->queue_oldest_age = (uint64_t)(now.tv_sec - oldest.tv_sec);
	}
	snap->reg = stats_registry;
}

/* Resident pages (the second number of /proc/self/statm) in bytes; 0 if unknown. */
static uint64_t
stats_rss_bytes(void)
{
	unsigned long long size, resident;
	char buf[128];
	ssize_t n;
	long page;
	int fd;

	if ((fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	page = sysconf(_SC_PAGESIZE);
	if (n <= 0 || page <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return 0;
	return (uint64_t)resident * (uint64_t)page;
}

/*
 * The page: plain HTML, CSS and JavaScript in one piece. It polls /stats every 2 s, keeps the
 * last 300 samples (10 minutes) in the browser, and draws them as inline SVG; the server keeps
 * no history. Without the token it shows a field to type it in (kept in sessionStorage).
 */
static const char stats_page[] =
        "<!DOCTYPE html>\n"
        "<html lang=\"en\">\n"
        "<head>\n"
        "<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>petrel</title>\n"
        "<style>\n"
        "body { font: 14px system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #222; }\n"
        "header { background: #1d3557; color: #fff; padding: 10px 16px; display: flex; gap: 16px;\n"
        "  align-items: baseline; flex-wrap: wrap; }\n"
        "header h1 { font-size: 18px; margin: 0; }\n"
        "#health { padding: 1px 8px; border-radius: 4px; background: #777; }\n"
        "#health.ok { background: #2a9d8f; }\n"
        "#health.bad { background: #e63946; }\n"
        "main { padding: 12px 16px; }\n"
        "h2 { font-size: 14px; margin: 16px 0 6px; }\n"
        ".cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr));\n"
        "  gap: 8px; }\n"
        ".card, .chart { background: #fff; border-radius: 6px; padding: 8px 10px;\n"
        "  box-shadow: 0 1px 2px #0002; }\n"
        ".card span { color: #666; font-size: 12px; }\n"
        ".card b { display: block; font-size: 20px; font-weight: 600; }\n"
        ".charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));\n"
        "  gap: 8px; }\n"
        "svg { width: 100%; height: 150px; display: block; font-size: 11px; }\n"
        "table { border-collapse: collapse; background: #fff; }\n"
        "td { padding: 2px 10px; border-bottom: 1px solid #eee; font-family: monospace; }\n"
        "td + td { text-align: right; }\n"
        "#login { display: none; margin-bottom: 12px; }\n"
        "</style>\n"
        "</head>\n"
        "<body>\n"
        "<header><h1>petrel</h1><span id=\"version\"></span><span id=\"uptime\"></span>\n"
        "<span id=\"health\">health ?</span><span id=\"error\"></span></header>\n"
        "<main>\n"
        "<form id=\"login\">Bearer token:\n"
        "<input id=\"token\" type=\"password\" autocomplete=\"off\">\n"
        "<button>Use</button></form>\n"
        "<div class=\"cards\" id=\"cards\"></div>\n"
        "<div class=\"charts\">\n"
        "<div class=\"chart\"><h2>Throughput (per second)</h2><svg id=\"chart-rate\"></svg></div>\n"
        "<div class=\"chart\"><h2>Queue (messages)</h2><svg id=\"chart-queue\"></svg></div>\n"
        "<div class=\"chart\"><h2>Latency (ms)</h2><svg id=\"chart-latency\"></svg></div>\n"
        "</div>\n"
        "<h2>Every figure</h2>\n"
        "<table id=\"figures\"></table>\n"
        "</main>\n"
        "<script>\n"
        "'use strict';\n"
        "var PERIOD = 2000, KEEP = 300;\n"
        "var samples = [], last = null;\n"
        "var token = sessionStorage.getItem('petrel-token') || '';\n"
        "\n"
        "function el(id) { return document.getElementById(id); }\n"
        "function headers() { return token ? { 'Authorization': 'Bearer ' + token } : {}; }\n"
        "function total(v) {\n"
        "  if (typeof v === 'number') return v;\n"
        "  var t = 0;\n"
        "  for (var k in v) t += total(v[k]);\n"
        "  return t;\n"
        "}\n"
        "function fmt(v) {\n"
        "  if (v === null || v === undefined || isNaN(v)) return '-';\n"
        "  if (Math.abs(v) >= 1e9) return (v / 1e9).toFixed(2) + 'G';\n"
        "  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(2) + 'M';\n"
        "  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + 'k';\n"
        "  return Math.round(v * 100) / 100 + '';\n"
        "}\n"
        "function duration(s) {\n"
        "  var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);\n"
        "  var m = Math.floor(s % 3600 / 60);\n"
        "  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm ' +\n"
        "         Math.floor(s % 60) + 's';\n"
        "}\n"
        "/* A quantile (ms) of what a histogram saw between two samples (bucket bounds). */\n"
        "function quantile(a, b, q) {\n"
        "  var n = b.count - a.count, want = q * n, le;\n"
        "  if (n <= 0) return null;\n"
        "  for (le in b.buckets) {\n"
        "    if (b.buckets[le] - a.buckets[le] >= want)\n"
        "      return le === '+Inf' ? null : parseFloat(le) * 1000;\n"
        "  }\n"
        "  return null;\n"
        "}\n"
        "function mean(a, b) {\n"
        "  var n = b.count - a.count;\n"
        "  return n > 0 ? (b.sum - a.sum) / n * 1000 : null;\n"
        "}\n"
        "function point(prev, cur, dt) {\n"
        "  var dl = cur.petrel_recipients_total.delivered;\n"
        "  var acc = 'petrel_accept_latency_seconds', del = 'petrel_delivery_latency_seconds';\n"
        "  return {\n"
        "    t: Date.now(),\n"
        "    received: (cur.petrel_messages_received_total -\n"
        "               prev.petrel_messages_received_total) / dt,\n"
        "    delivered: (total(dl) - total(prev.petrel_recipients_total.delivered)) / dt,\n"
        "    queue: cur.petrel_queue_messages,\n"
        "    inflight: cur.petrel_deliveries_inflight,\n"
        "    accept: mean(prev[acc], cur[acc]),\n"
        "    accept99: quantile(prev[acc], cur[acc], 0.99),\n"
        "    delivery: mean(prev[del], cur[del])\n"
        "  };\n"
        "}\n"
        "function chart(id, series) {\n"
        "  var svg = el(id), w = svg.clientWidth || 340, h = svg.clientHeight || 150;\n"
        "  var top = 0, out = '', i, j, s, x, y, pts;\n"
        "  for (i = 0; i < series.length; i++)\n"
        "    for (j = 0; j < samples.length; j++) {\n"
        "      var v = samples[j][series[i].key];\n"
        "      if (v !== null && v > top) top = v;\n"
        "    }\n"
        "  top = top > 0 ? top * 1.1 : 1;\n"
        "  out += '<line x1=\"0\" y1=\"' + (h - 14) + '\" x2=\"' + w + '\" y2=\"' + (h - 14) +\n"
        "         '\" stroke=\"#ccc\"/>';\n"
        "  out += '<text x=\"2\" y=\"12\" fill=\"#666\">' + fmt(top) + '</text>';\n"
        "  for (i = 0; i < series.length; i++) {\n"
        "    s = series[i];\n"
        "    pts = [];\n"
        "    for (j = 0; j < samples.length; j++) {\n"
        "      if (samples[j][s.key] === null) continue;\n"
        "      x = w - (samples.length - 1 - j) * (w / (KEEP - 1));\n"
        "      y = (h - 14) - samples[j][s.key] / top * (h - 28);\n"
        "      pts.push(x.toFixed(1) + ',' + y.toFixed(1));\n"
        "    }\n"
        "    out += '<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"' + s.color +\n"
        "           '\" points=\"' + pts.join(' ') + '\"/>';\n"
        "    out += '<text x=\"' + (60 + i * 110) + '\" y=\"' + (h - 2) + '\" fill=\"' +\n"
        "           s.color + '\">' + s.label + '</text>';\n"
        "  }\n"
        "  svg.innerHTML = out;\n"
        "}\n"
        "function card(label, value) {\n"
        "  var d = document.createElement('div'), s = document.createElement('span');\n"
        "  var b = document.createElement('b');\n"
        "  d.className = 'card';\n"
        "  s.textContent = label;\n"
        "  b.textContent = value;\n"
        "  d.appendChild(s);\n"
        "  d.appendChild(b);\n"
        "  return d;\n"
        "}\n"
        "function flatten(prefix, v, rows) {\n"
        "  if (typeof v === 'number') { rows.push([prefix, v]); return; }\n"
        "  if (v.buckets !== undefined) {\n"
        "    rows.push([prefix + ' count', v.count]);\n"
        "    rows.push([prefix + ' sum', v.sum]);\n"
        "    return;\n"
        "  }\n"
        "  for (var k in v) flatten(prefix + ' ' + k, v[k], rows);\n"
        "}\n"
        "function show(s) {\n"
        "  var p = samples.length ? samples[samples.length - 1] : {};\n"
        "  var rcpt = s.petrel_recipients_total, cards = el('cards'), rows = [], i;\n"
        "  el('version').textContent = Object.keys(s.petrel_build_info)[0];\n"
        "  el('uptime').textContent = 'up ' +\n"
        "      duration(Date.now() / 1000 - s.petrel_start_time_seconds);\n"
        "  cards.textContent = '';\n"
        "  cards.appendChild(card('received / s', fmt(p.received)));\n"
        "  cards.appendChild(card('delivered / s', fmt(p.delivered)));\n"
        "  cards.appendChild(card('messages received', fmt(s.petrel_messages_received_total)));\n"
        "  cards.appendChild(card('bytes received', fmt(s.petrel_received_bytes_total)));\n"
        "  cards.appendChild(card('connections now', fmt(s.petrel_connections_current)));\n"
        "  cards.appendChild(card('queue', fmt(s.petrel_queue_messages)));\n"
        "  cards.appendChild(card('oldest in queue',\n"
        "                         duration(s.petrel_queue_oldest_age_seconds)));\n"
        "  cards.appendChild(card('deliveries now', fmt(s.petrel_deliveries_inflight)));\n"
        "  cards.appendChild(card('delivered', fmt(total(rcpt.delivered))));\n"
        "  cards.appendChild(card('deferred', fmt(total(rcpt.deferred))));\n"
        "  cards.appendChild(card('bounced + expired',\n"
        "                         fmt(total(rcpt.bounced) + total(rcpt.expired))));\n"
        "  cards.appendChild(card('rejections', fmt(total(s.petrel_rejections_total))));\n"
        "  cards.appendChild(card('accept ms (mean)', fmt(p.accept)));\n"
        "  cards.appendChild(card('accept ms (p99)', fmt(p.accept99)));\n"
        "  cards.appendChild(card('memory (RSS)',\n"
        "                         fmt(s.petrel_process_resident_memory_bytes) + 'B'));\n"
        "  chart('chart-rate', [{ key: 'received', label: 'received', color: '#1d3557' },\n"
        "                       { key: 'delivered', label: 'delivered', color: '#2a9d8f' }]);\n"
        "  chart('chart-queue', [{ key: 'queue', label: 'queued', color: '#e76f51' },\n"
        "                        { key: 'inflight', label: 'in flight', color: '#457b9d' }]);\n"
        "  chart('chart-latency', [\n"
        "    { key: 'accept', label: 'accept mean', color: '#1d3557' },\n"
        "    { key: 'accept99', label: 'accept p99', color: '#e63946' },\n"
        "    { key: 'delivery', label: 'delivery mean', color: '#2a9d8f' }]);\n"
        "  for (var k in s) flatten(k, s[k], rows);\n"
        "  var table = el('figures');\n"
        "  table.textContent = '';\n"
        "  for (i = 0; i < rows.length; i++) {\n"
        "    var tr = table.insertRow(), a = tr.insertCell(), b = tr.insertCell();\n"
        "    a.textContent = rows[i][0];\n"
        "    b.textContent = rows[i][1];\n"
        "  }\n"
        "}\n"
        "function poll() {\n"
        "  fetch('stats', { headers: headers(), cache: 'no-store' }).then(function (r) {\n"
        "    if (r.status === 401) {\n"
        "      el('login').style.display = 'block';\n"
        "      throw new Error('a bearer token is needed');\n"
        "    }\n"
        "    if (!r.ok) throw new Error('/stats: HTTP ' + r.status);\n"
        "    return r.json();\n"
        "  }).then(function (s) {\n"
        "    var now = Date.now();\n"
        "    el('login').style.display = 'none';\n"
        "    el('error').textContent = '';\n"
        "    if (last !== null) {\n"
        "      samples.push(point(last.s, s, (now - last.t) / 1000));\n"
        "      if (samples.length > KEEP) samples.shift();\n"
        "    }\n"
        "    last = { s: s, t: now };\n"
        "    show(s);\n"
        "  }).catch(function (e) { el('error').textContent = e.message; });\n"
        "  fetch('healthz', { headers: headers(), cache: 'no-store' }).then(function (r) {\n"
        "    el('health').textContent = r.ok ? 'healthy' : 'unhealthy (' + r.status + ')';\n"
        "    el('health').className = r.ok ? 'ok' : 'bad';\n"
        "  }).catch(function () {\n"
        "    el('health').textContent = 'unreachable';\n"
        "    el('health').className = 'bad';\n"
        "  });\n"
        "}\n"
        "el('login').addEventListener('submit', function (ev) {\n"
        "  ev.preventDefault();\n"
        "  token = el('token').value;\n"
        "  sessionStorage.setItem('petrel-token', token);\n"
        "  poll();\n"
        "});\n"
        "poll();\n"
        "setInterval(poll, PERIOD);\n"
        "</script>\n"
        "</body>\n"
        "</html>\n";

static void
stats_serve_page(struct stats_endpoint *ep, struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();

	if (body == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	/* Self-contained: its own inline script and style, and it talks only to us. */
	evhttp_add_header(h, "Content-Security-Policy",
	                  "default-src 'none'; script-src 'unsafe-inline'; "
	                  "style-src 'unsafe-inline'; connect-src 'self'; img-src data:");
	evbuffer_add_reference(body, stats_page, sizeof(stats_page) - 1, NULL, NULL);
	stats_http_reply(req, HTTP_OK, "OK", STATS_TYPE_HTML, body);
	evbuffer_free(body);
}
