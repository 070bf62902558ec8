/*
 * idle.c - `petrel-bench idle`: opens N connections to a server, reads each banner, sends
 * EHLO and reads its reply, then holds them all open for --hold seconds. With --pid or
 * --pidfile it samples the server's VmRSS (from /proc/PID/status) before the first
 * connection, once all are established, and at the end of the hold, and reports the
 * memory each connection costs the server.
 *
 * Connections open at most --batch at a time (a connection counts until its EHLO reply),
 * so the server's listen backlog is never overrun. Everything is bounded: each step by
 * --timeout, the hold by --hold (at most an hour).
 */
#include "bench.h"
#include "histogram.h"
#include "message.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#define IDLE_CMD      "idle"
#define IDLE_PIDS_MAX 16
#define IDLE_LINE_MAX 2048

enum idle_error {
	IDLE_ERR_CONNECT_REFUSED, /* ECONNREFUSED */
	IDLE_ERR_CONNECT,         /* other connect failures (EMFILE, EADDRNOTAVAIL...) */
	IDLE_ERR_TIMEOUT,         /* no banner or EHLO reply within --timeout */
	IDLE_ERR_REJECTED,        /* banner or EHLO answered with 4xx/5xx */
	IDLE_ERR_PROTOCOL,        /* malformed reply */
	IDLE_ERR_DISCONNECTED,    /* closed before the EHLO reply */
	IDLE_ERR_KINDS,
};

static const char *const idle_error_names[IDLE_ERR_KINDS] = {
	"connect_refused", "connect", "timeout", "rejected", "protocol", "disconnected",
};

enum idle_state {
	IDLE_STATE_CONNECTING, /* TCP connect in progress */
	IDLE_STATE_BANNER,     /* waiting for the greeting */
	IDLE_STATE_EHLO,       /* EHLO sent */
	IDLE_STATE_HELD,       /* established: held open */
};

struct idle_config {
	struct bench_addr addr;    /* --host/--port */
	uint64_t connections;      /* N */
	double hold;               /* seconds to hold once all are established */
	double timeout;            /* per connection step */
	uint64_t batch;            /* connections in flight at once */
	const char *helo;          /* EHLO name */
	pid_t pids[IDLE_PIDS_MAX]; /* processes to sample */
	size_t npids;              /* how many */
	const char *json_path;     /* --json FILE or NULL */
	bool quiet;                /* no progress lines */
};

struct idle_conn {
	struct idle *idle;            /* owner */
	struct bufferevent *bev;      /* the connection */
	enum idle_state state;        /* see enum idle_state */
	uint64_t connect_us;          /* connect() called */
	uint64_t step_us;             /* current step started */
	TAILQ_ENTRY(idle_conn) entry; /* idle->conns */
};

struct idle {
	struct idle_config cfg;                /* options */
	struct event_base *base;               /* the one loop */
	TAILQ_HEAD(, idle_conn) conns;         /* open connections */
	uint64_t started;                      /* connections attempted */
	uint64_t inflight;                     /* not yet established nor failed */
	uint64_t established;                  /* reached the EHLO reply */
	uint64_t held;                         /* established and still open */
	uint64_t failed;                       /* never established */
	uint64_t dropped;                      /* closed by the server while held */
	uint64_t errors[IDLE_ERR_KINDS];       /* failures by kind */
	char first_error[IDLE_ERR_KINDS][160]; /* the first of each kind */
	struct histogram *h_connect;           /* connect() to established */
	struct histogram *h_greeting;          /* connect() to banner */
	struct histogram *h_ehlo;              /* EHLO sent to its reply */
	uint64_t start_us;                     /* first connect */
	uint64_t ready_us;                     /* all attempted and settled */
	uint64_t end_us;                       /* hold over */
	bool holding;                          /* the hold timer runs */
	bool interrupted;                      /* SIGINT/SIGTERM */
	uint64_t rss_before[IDLE_PIDS_MAX];    /* kB, before connecting */
	uint64_t rss_after[IDLE_PIDS_MAX];     /* kB, all established */
	uint64_t rss_end[IDLE_PIDS_MAX];       /* kB, end of hold */
	bool rss_ok;                           /* every sample read */
	struct event *tick, *hold_timer, *sig_int, *sig_term;
};

static void idle_fill(struct idle *d);

/* VmRSS of pid in kB, or -1 if unreadable. */
static int
idle_rss_kb(pid_t pid, uint64_t *kb)
{
	char path[64], line[256];
	unsigned long long v;
	FILE *f;
	int rc = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
			*kb = v;
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

static uint64_t
idle_rss_sample(struct idle *d, uint64_t *out)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < d->cfg.npids; i++) {
		if (idle_rss_kb(d->cfg.pids[i], &out[i]) < 0) {
			bench_error(IDLE_CMD, "cannot read VmRSS of pid %d", (int)d->cfg.pids[i]);
			d->rss_ok = false;
			out[i] = 0;
		}
		total += out[i];
	}
	return total;
}

static uint64_t
idle_rss_total(const struct idle *d, const uint64_t *v)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < d->cfg.npids; i++)
		total += v[i];
	return total;
}

static void idle_error(struct idle *d, enum idle_error kind, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
idle_error(struct idle *d, enum idle_error kind, const char *fmt, ...)
{
	va_list ap;

	if (d->errors[kind]++ == 0) {
		va_start(ap, fmt);
		vsnprintf(d->first_error[kind], sizeof(d->first_error[kind]), fmt, ap);
		va_end(ap);
	}
}

static void
idle_conn_free(struct idle_conn *c)
{
	TAILQ_REMOVE(&c->idle->conns, c, entry);
	bufferevent_free(c->bev);
	free(c);
}

/* Ends a connection: a failure before EHLO's reply, or a drop while held. */
static void
idle_conn_lost(struct idle_conn *c, enum idle_error kind, const char *what)
{
	struct idle *d = c->idle;

	if (c->state == IDLE_STATE_HELD) {
		d->dropped++;
		d->held--;
		idle_conn_free(c);
		return;
	}
	idle_error(d, kind, "%s", what);
	d->failed++;
	d->inflight--;
	idle_conn_free(c);
	idle_fill(d);
}

/* Handles a complete reply. Returns -1 if c was freed. */
static int
idle_conn_reply(struct idle_conn *c, int code, const char *line)
{
	struct idle *d = c->idle;
	char what[IDLE_LINE_MAX + 32];
	uint64_t now = bench_now_us();

	if (code < 200 || code > 299) {
		snprintf(what, sizeof(what), "%s: %.120s",
		         c->state == IDLE_STATE_BANNER ? "greeting" : "EHLO", line);
		idle_conn_lost(c, IDLE_ERR_REJECTED, what);
		return -1;
	}
	if (c->state == IDLE_STATE_BANNER) {
		histogram_record(d->h_greeting, now - c->connect_us);
		evbuffer_add_printf(bufferevent_get_output(c->bev), "EHLO %s\r\n", d->cfg.helo);
		c->state = IDLE_STATE_EHLO;
		c->step_us = now;
		return 0;
	}
	histogram_record(d->h_ehlo, now - c->step_us);
	c->state = IDLE_STATE_HELD;
	/* Held connections wait without a read timeout; a drop still shows as EOF. */
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	d->established++;
	d->held++;
	d->inflight--;
	idle_fill(d);
	return 0;
}

static void
idle_conn_read(struct bufferevent *bev, void *arg)
{
	struct idle_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[IDLE_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t eol_len;

	if (c->state == IDLE_STATE_CONNECTING) {
		histogram_record(c->idle->h_connect, bench_now_us() - c->connect_us);
		c->state = IDLE_STATE_BANNER;
		c->step_us = bench_now_us();
	}
	for (;;) {
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0 || (size_t)eol.pos > IDLE_LINE_MAX) {
			if (evbuffer_get_length(in) > IDLE_LINE_MAX)
				idle_conn_lost(c, IDLE_ERR_PROTOCOL, "reply line too long");
			return;
		}
		evbuffer_remove(in, line, (size_t)eol.pos);
		line[eol.pos] = '\0';
		evbuffer_drain(in, eol_len);
		if (c->state == IDLE_STATE_HELD)
			continue; /* nothing is expected while held */
		if (eol.pos < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' ||
		    line[1] > '9' || line[2] < '0' || line[2] > '9') {
			idle_conn_lost(c, IDLE_ERR_PROTOCOL, "malformed reply");
			return;
		}
		if (line[3] == '-')
			continue;
		if (idle_conn_reply(c, atoi(line), line) < 0)
			return;
	}
}

static void
idle_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct idle_conn *c = arg;
	char msg[200];
	int e = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == IDLE_STATE_CONNECTING) {
			histogram_record(c->idle->h_connect, bench_now_us() - c->connect_us);
			c->state = IDLE_STATE_BANNER;
			c->step_us = bench_now_us();
		}
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		idle_conn_lost(c, IDLE_ERR_TIMEOUT,
		               c->state == IDLE_STATE_EHLO     ? "no EHLO reply in time"
		               : c->state == IDLE_STATE_BANNER ? "no greeting in time"
		                                               : "connect timed out");
		return;
	}
	if (c->state == IDLE_STATE_CONNECTING) {
		snprintf(msg, sizeof(msg), "connect %s: %s", c->idle->cfg.addr.text,
		         evutil_socket_error_to_string(e));
		idle_conn_lost(c, e == ECONNREFUSED ? IDLE_ERR_CONNECT_REFUSED : IDLE_ERR_CONNECT,
		               msg);
		return;
	}
	idle_conn_lost(c, IDLE_ERR_DISCONNECTED, "closed by the server before the EHLO reply");
}

/* Starts one connection. Returns -1 if it failed at once (counted). */
static int
idle_conn_start(struct idle *d)
{
	const struct bench_addr *a = &d->cfg.addr;
	struct idle_conn *c = NULL;
	struct timeval tv;
	int fd, e;

	d->started++;
	fd = bench_tcp_socket(a->ss.ss_family);
	if (fd < 0) {
		idle_error(d, IDLE_ERR_CONNECT, "socket: %s", strerror(errno));
		goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
		e = errno;
		idle_error(d, e == ECONNREFUSED ? IDLE_ERR_CONNECT_REFUSED : IDLE_ERR_CONNECT,
		           "connect %s: %s", a->text, strerror(e));
		goto fail;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto fail_alloc;
	c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		goto fail_alloc;
	fd = -1;
	if (bufferevent_socket_connect(c->bev, NULL, 0) < 0)
		goto fail_alloc;
	c->idle = d;
	c->connect_us = c->step_us = bench_now_us();
	tv.tv_sec = (time_t)d->cfg.timeout;
	tv.tv_usec = (suseconds_t)((d->cfg.timeout - (double)tv.tv_sec) * 1e6);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_setcb(c->bev, idle_conn_read, NULL, idle_conn_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&d->conns, c, entry);
	d->inflight++;
	return 0;
fail_alloc:
	idle_error(d, IDLE_ERR_CONNECT, "out of memory");
fail:
	if (fd >= 0)
		close(fd);
	if (c != NULL && c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
	d->failed++;
	return -1;
}

static void
idle_report_progress(struct idle *d, const char *phase)
{
	if (d->cfg.quiet)
		return;
	fprintf(stderr,
	        "[%6.1fs] idle %s: %" PRIu64 " established, %" PRIu64 " held, %" PRIu64
	        " in flight, %" PRIu64 " failed, %" PRIu64 " dropped\n",
	        (double)(bench_now_us() - d->start_us) / 1e6, phase, d->established, d->held,
	        d->inflight, d->failed, d->dropped);
}

/* All connections attempted and settled: sample memory and start holding. */
static void
idle_settled(struct idle *d)
{
	struct timeval tv;

	d->ready_us = bench_now_us();
	if (d->cfg.npids)
		idle_rss_sample(d, d->rss_after);
	idle_report_progress(d, "all settled");
	d->holding = true;
	tv.tv_sec = (time_t)d->cfg.hold;
	tv.tv_usec = (suseconds_t)((d->cfg.hold - (double)tv.tv_sec) * 1e6);
	event_add(d->hold_timer, &tv);
}

static void
idle_fill(struct idle *d)
{
	while (!d->interrupted && d->started < d->cfg.connections && d->inflight < d->cfg.batch)
		(void)idle_conn_start(d);
	if (!d->holding && d->inflight == 0 && (d->started == d->cfg.connections || d->interrupted))
		idle_settled(d);
}

static void
idle_hold_done(evutil_socket_t fd, short what, void *arg)
{
	struct idle *d = arg;

	d->end_us = bench_now_us();
	if (d->cfg.npids)
		idle_rss_sample(d, d->rss_end);
	event_base_loopexit(d->base, NULL);
}

static void
idle_tick(evutil_socket_t fd, short what, void *arg)
{
	struct idle *d = arg;

	idle_report_progress(d, d->holding ? "holding" : "connecting");
}

static void
idle_signal(evutil_socket_t fd, short what, void *arg)
{
	struct idle *d = arg;

	/* Stop starting connections; end the hold now. */
	d->interrupted = true;
	if (d->holding) {
		event_del(d->hold_timer);
		idle_hold_done(fd, what, arg);
	} else {
		idle_fill(d);
		if (d->holding) {
			event_del(d->hold_timer);
			idle_hold_done(fd, what, arg);
		}
	}
}

/* ---- reports ------------------------------------------------------------------------ */

static void
idle_report(struct idle *d, FILE *f)
{
	uint64_t before = idle_rss_total(d, d->rss_before), after = idle_rss_total(d, d->rss_after);
	uint64_t end = idle_rss_total(d, d->rss_end);
	double settle = (double)(d->ready_us - d->start_us) / 1e6;
	size_t i;
	int k;

	fprintf(f, "petrel-bench idle: %s, %" PRIu64 " connections, hold %.1f s%s\n",
	        d->cfg.addr.text, d->cfg.connections, d->cfg.hold,
	        d->interrupted ? " (interrupted)" : "");
	fprintf(f,
	        "%-22s %" PRIu64 " established, %" PRIu64 " failed, %" PRIu64
	        " dropped during the hold\n",
	        "connections", d->established, d->failed, d->dropped);
	fprintf(f, "%-22s %.3f s (%.0f connections/s)\n", "establish time", settle,
	        settle > 0 ? (double)d->established / settle : 0.0);
	fprintf(f, "%-22s", "errors");
	for (k = 0; k < IDLE_ERR_KINDS; k++)
		fprintf(f, "%s%s %" PRIu64, k ? ", " : " ", idle_error_names[k], d->errors[k]);
	fprintf(f, "\n");
	for (k = 0; k < IDLE_ERR_KINDS; k++)
		if (d->errors[k])
			fprintf(f, "  first %-14s %s\n", idle_error_names[k], d->first_error[k]);
	bench_report_latency_header(f);
	bench_report_latency_row(f, "connect", d->h_connect);
	bench_report_latency_row(f, "greeting", d->h_greeting);
	bench_report_latency_row(f, "EHLO", d->h_ehlo);
	if (d->cfg.npids == 0)
		return;
	fprintf(f,
	        "%-22s before %" PRIu64 " kB, established %" PRIu64 " kB, end of hold %" PRIu64
	        " kB (pid",
	        "server VmRSS", before, after, end);
	for (i = 0; i < d->cfg.npids; i++)
		fprintf(f, "%s%d", i ? "," : " ", (int)d->cfg.pids[i]);
	fprintf(f, ")\n");
	if (d->established > 0 && d->rss_ok)
		fprintf(f, "%-22s %.0f bytes (%.1f KiB) established, %.0f bytes at end of hold\n",
		        "per connection",
		        ((double)after - (double)before) * 1024.0 / (double)d->established,
		        ((double)after - (double)before) / (double)d->established,
		        ((double)end - (double)before) * 1024.0 / (double)d->established);
}

static void
idle_report_json(struct idle *d, FILE *f)
{
	uint64_t before = idle_rss_total(d, d->rss_before), after = idle_rss_total(d, d->rss_after);
	uint64_t end = idle_rss_total(d, d->rss_end);
	struct json_writer w;
	size_t i;
	int k;

	json_begin(&w, f);
	json_add_str(&w, "tool", "petrel-bench");
	json_add_str(&w, "mode", "idle");
	json_add_str(&w, "server", d->cfg.addr.text);
	json_add_double(&w, "hold_s", d->cfg.hold);
	json_add_bool(&w, "interrupted", d->interrupted);
	json_object_open(&w, "connections");
	json_add_u64(&w, "requested", d->cfg.connections);
	json_add_u64(&w, "established", d->established);
	json_add_u64(&w, "failed", d->failed);
	json_add_u64(&w, "dropped", d->dropped);
	json_add_u64(&w, "held_at_end", d->held);
	json_object_close(&w);
	json_add_double(&w, "establish_s", (double)(d->ready_us - d->start_us) / 1e6);
	json_object_open(&w, "errors");
	for (k = 0; k < IDLE_ERR_KINDS; k++)
		json_add_u64(&w, idle_error_names[k], d->errors[k]);
	json_object_close(&w);
	json_object_open(&w, "first_errors");
	for (k = 0; k < IDLE_ERR_KINDS; k++)
		if (d->errors[k])
			json_add_str(&w, idle_error_names[k], d->first_error[k]);
	json_object_close(&w);
	json_object_open(&w, "latency_us");
	bench_report_latency_json(&w, "connect", d->h_connect);
	bench_report_latency_json(&w, "greeting", d->h_greeting);
	bench_report_latency_json(&w, "ehlo", d->h_ehlo);
	json_object_close(&w);
	json_object_open(&w, "rss");
	json_array_open(&w, "pids");
	for (i = 0; i < d->cfg.npids; i++)
		json_add_u64(&w, NULL, (uint64_t)d->cfg.pids[i]);
	json_array_close(&w);
	if (d->cfg.npids > 0 && d->rss_ok) {
		json_add_u64(&w, "before_kb", before);
		json_add_u64(&w, "established_kb", after);
		json_add_u64(&w, "end_kb", end);
		json_add_double(&w, "bytes_per_connection",
		                d->established ? ((double)after - (double)before) * 1024.0 /
		                                         (double)d->established
		                               : 0.0);
		json_add_double(&w, "bytes_per_connection_end",
		                d->established ? ((double)end - (double)before) * 1024.0 /
		                                         (double)d->established
		                               : 0.0);
	}
	json_object_close(&w);
	json_end(&w);
}

/* ---- command line ------------------------------------------------------------------- */

static void
idle_usage(FILE *f)
{
	fprintf(f,
	        "Usage: petrel-bench idle [options]\n"
	        "\n"
	        "Opens N connections to an SMTP server, reads each greeting, sends EHLO and reads\n"
	        "the reply, then holds them all open. With --pid it reports the server's memory\n"
	        "(VmRSS) per connection.\n"
	        "\n"
	        "Options:\n"
	        "  --host HOST             server name or address (default 127.0.0.1)\n"
	        "  --port PORT             server port (default 25)\n"
	        "  -c, --connections N     connections to open (default 1000)\n"
	        "  --hold SECONDS          hold them this long once all are settled (default 5,\n"
	        "                          at most 3600)\n"
	        "  --batch B               connections in flight at once, until their EHLO reply\n"
	        "                          (default 100), so the listen backlog is not overrun\n"
	        "  --helo NAME             EHLO name (default petrel-bench.localhost)\n"
	        "  --timeout SECONDS       per connect, greeting and EHLO (default 10)\n"
	        "  --pid PID[,PID...]      server processes whose VmRSS to sample\n"
	        "  --pidfile FILE          read a server pid from FILE (repeatable)\n"
	        "  --json FILE             write every figure as JSON to FILE ('-' = stdout)\n"
	        "  -q, --quiet             no progress lines on stderr\n"
	        "  -h, --help              show this help\n"
	        "\n"
	        "The open-files soft limit is raised to the hard limit. Exit status 1 if any\n"
	        "connection failed or was dropped.\n");
}

static int
idle_add_pid(struct idle_config *cfg, const char *s, const char *opt)
{
	uint64_t v, kb;

	if (cfg->npids == IDLE_PIDS_MAX) {
		bench_usage_error(IDLE_CMD, "%s: at most %d processes", opt, IDLE_PIDS_MAX);
		return -1;
	}
	if (bench_opt_uint(IDLE_CMD, opt, s, 1, 4194304, &v) < 0)
		return -1;
	if (idle_rss_kb((pid_t)v, &kb) < 0) {
		bench_usage_error(IDLE_CMD,
		                  "%s: no readable VmRSS for pid %" PRIu64
		                  " (no such process, or a kernel thread)",
		                  opt, v);
		return -1;
	}
	cfg->pids[cfg->npids++] = (pid_t)v;
	return 0;
}

static int
idle_parse_args(int argc, char **argv, struct idle_config *cfg)
{
	enum {
		OPT_HOST = 256,
		OPT_PORT,
		OPT_HOLD,
		OPT_BATCH,
		OPT_HELO,
		OPT_TIMEOUT,
		OPT_PID,
		OPT_PIDFILE,
		OPT_JSON,
	};
	static const struct option opts[] = {
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "connections", required_argument, NULL, 'c' },
		{ "hold", required_argument, NULL, OPT_HOLD },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "helo", required_argument, NULL, OPT_HELO },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "pid", required_argument, NULL, OPT_PID },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "127.0.0.1";
	char port[16] = "25", err[256], buf[64], *tok, *save;
	uint64_t v, nofile;
	FILE *f;
	int c;

	cfg->connections = 1000;
	cfg->hold = 5;
	cfg->timeout = 10;
	cfg->batch = 100;
	cfg->helo = "petrel-bench.localhost";
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_HOST:
			host = optarg;
			break;
		case OPT_PORT:
			if (bench_opt_uint(IDLE_CMD, "--port", optarg, 1, 65535, &v) < 0)
				return -1;
			snprintf(port, sizeof(port), "%" PRIu64, v);
			break;
		case 'c':
			if (bench_opt_uint(IDLE_CMD, "--connections", optarg, 1, 1000000,
			                   &cfg->connections) < 0)
				return -1;
			break;
		case OPT_HOLD:
			if (bench_opt_seconds(IDLE_CMD, "--hold", optarg, 0, 3600, &cfg->hold) < 0)
				return -1;
			break;
		case OPT_BATCH:
			if (bench_opt_uint(IDLE_CMD, "--batch", optarg, 1, 100000, &cfg->batch) < 0)
				return -1;
			break;
		case OPT_HELO:
			if (!message_address_valid(optarg)) {
				bench_usage_error(IDLE_CMD, "--helo: '%s' is not a host name",
				                  optarg);
				return -1;
			}
			cfg->helo = optarg;
			break;
		case OPT_TIMEOUT:
			if (bench_opt_seconds(IDLE_CMD, "--timeout", optarg, 0.01, 3600,
			                      &cfg->timeout) < 0)
				return -1;
			break;
		case OPT_PID:
			if (strlen(optarg) >= sizeof(buf)) {
				bench_usage_error(IDLE_CMD, "--pid: expected PID[,PID...]");
				return -1;
			}
			strcpy(buf, optarg);
			for (tok = strtok_r(buf, ",", &save); tok != NULL;
			     tok = strtok_r(NULL, ",", &save))
				if (idle_add_pid(cfg, tok, "--pid") < 0)
					return -1;
			break;
		case OPT_PIDFILE:
			f = fopen(optarg, "r");
			if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
				bench_usage_error(IDLE_CMD, "--pidfile: cannot read '%s'", optarg);
				if (f != NULL)
					fclose(f);
				return -1;
			}
			fclose(f);
			buf[strcspn(buf, " \t\r\n")] = '\0';
			if (idle_add_pid(cfg, buf, "--pidfile") < 0)
				return -1;
			break;
		case OPT_JSON:
			cfg->json_path = optarg;
			break;
		case 'q':
			cfg->quiet = true;
			break;
		case 'h':
			idle_usage(stdout);
			return 1;
		default:
			fprintf(stderr, "Try 'petrel-bench %s --help'.\n", IDLE_CMD);
			return -1;
		}
	}
	if (optind < argc) {
		bench_usage_error(IDLE_CMD, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	nofile = bench_raise_nofile();
	if (cfg->connections + 32 > nofile) {
		bench_usage_error(IDLE_CMD,
		                  "--connections %" PRIu64 " needs more descriptors than the "
		                  "open-files limit (%" PRIu64 ")",
		                  cfg->connections, nofile);
		return -1;
	}
	if (bench_resolve(host, port, false, &cfg->addr, err, sizeof(err)) < 0) {
		bench_usage_error(IDLE_CMD, "--host/--port: %s", err);
		return -1;
	}
	return 0;
}

int
idle_main(int argc, char **argv)
{
	struct idle *d;
	struct idle_conn *c;
	struct timeval one = { 1, 0 };
	int rc = BENCH_EXIT_FAIL, r;
	FILE *jf, *table = stdout;

	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return BENCH_EXIT_FAIL;
	TAILQ_INIT(&d->conns);
	r = idle_parse_args(argc, argv, &d->cfg);
	if (r != 0) {
		rc = r > 0 ? BENCH_EXIT_OK : BENCH_EXIT_USAGE;
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	d->rss_ok = true;
	d->h_connect = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	d->h_greeting = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	d->h_ehlo = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	d->base = bench_event_base_new();
	if (!d->h_connect || !d->h_greeting || !d->h_ehlo || !d->base)
		goto out;
	d->tick = event_new(d->base, -1, EV_PERSIST, idle_tick, d);
	d->hold_timer = evtimer_new(d->base, idle_hold_done, d);
	d->sig_int = evsignal_new(d->base, SIGINT, idle_signal, d);
	d->sig_term = evsignal_new(d->base, SIGTERM, idle_signal, d);
	if (!d->tick || !d->hold_timer || !d->sig_int || !d->sig_term)
		goto out;
	event_add(d->tick, &one);
	event_add(d->sig_int, NULL);
	event_add(d->sig_term, NULL);
	if (d->cfg.npids)
		idle_rss_sample(d, d->rss_before);
	d->start_us = bench_now_us();
	idle_fill(d);
	event_base_dispatch(d->base);

	if (d->cfg.json_path != NULL && strcmp(d->cfg.json_path, "-") == 0)
		table = stderr;
	idle_report(d, table);
	fflush(table);
	rc = d->failed == 0 && d->dropped == 0 && !d->interrupted ? BENCH_EXIT_OK : BENCH_EXIT_FAIL;
	if (d->cfg.json_path != NULL) {
		jf = bench_json_open(IDLE_CMD, d->cfg.json_path);
		if (jf == NULL) {
			rc = BENCH_EXIT_FAIL;
		} else {
			idle_report_json(d, jf);
			if (bench_json_close(IDLE_CMD, jf, d->cfg.json_path) < 0)
				rc = BENCH_EXIT_FAIL;
		}
	}
out:
	while ((c = TAILQ_FIRST(&d->conns)) != NULL)
		idle_conn_free(c);
	if (d->tick)
		event_free(d->tick);
	if (d->hold_timer)
		event_free(d->hold_timer);
	if (d->sig_int)
		event_free(d->sig_int);
	if (d->sig_term)
		event_free(d->sig_term);
	if (d->base)
		event_base_free(d->base);
	histogram_free(d->h_connect);
	histogram_free(d->h_greeting);
	histogram_free(d->h_ehlo);
	free(d);
	return rc;
}
