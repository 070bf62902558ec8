/*
 * send.c - `petrel-bench send`: the load driver. It parses the options, builds the bodies
 * once, keeps up to --connections SMTP sessions (send_session.c) on one event loop, hands
 * each ready session its next message (at once in closed loop, on the --rate clock in open
 * loop), prints progress once a second and the summary (table and JSON) at the end.
 *
 * Bounded: the run ends after --messages, or --duration then at most --timeout more for
 * the messages in flight (then a hard deadline), or after --max-errors session errors.
 */
#include "send.h"
#include "histogram.h"
#include "tls.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEND_RETRY_US     100000 /* pause before replacing a failed session */
#define SEND_RATE_TICK_US 1000   /* open-loop clock resolution */

const char *const send_error_names[SEND_ERR_KINDS] = {
	"connect_refused", "connect", "timeout", "tls", "4xx", "5xx", "protocol", "disconnected",
};

static void send_run_fill(struct send_run *run);

static struct timeval
send_tv(double seconds)
{
	struct timeval tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	return tv;
}

static uint64_t
send_errors_total(const struct send_run *run)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < SEND_ERR_KINDS; i++)
		n += run->st.errors[i];
	return n;
}

void
send_run_error(struct send_run *run, enum send_error kind, const char *fmt, ...)
{
	va_list ap;

	if (run->st.errors[kind]++ == 0) {
		va_start(ap, fmt);
		vsnprintf(run->st.first_error[kind], sizeof(run->st.first_error[kind]), fmt, ap);
		va_end(ap);
	}
}

/* ---- scheduling ---------------------------------------------------------------------- */

static bool
send_run_more_work(const struct send_run *run)
{
	return !run->stopping && (run->cfg.messages == 0 || run->next_seq < run->cfg.messages);
}

static enum send_take
send_run_take(struct send_run *run, uint64_t *seq, uint64_t *due_us)
{
	if (!send_run_more_work(run))
		return SEND_TAKE_DONE;
	*due_us = 0;
	if (run->cfg.rate > 0) {
		if (run->next_seq >= run->released)
			return SEND_TAKE_WAIT;
		/* Message i is due at start + i / rate, whenever a session gets to it. */
		*due_us = run->start_us + (uint64_t)((double)run->next_seq * 1e6 / run->cfg.rate);
	}
	*seq = ++run->next_seq;
	return SEND_TAKE_OK;
}

static void
send_run_check_end(struct send_run *run)
{
	if (run->open == 0 && !send_run_more_work(run)) {
		if (run->end_us == 0)
			run->end_us = bench_now_us();
		event_base_loopexit(run->base, NULL);
	}
}

/*
 * Open loop: once the last message is handed out (or the run is stopping), the sessions
 * parked for work would wait for nothing. They QUIT, and the open-loop clock stops.
 * Without this a run with --messages and --rate idled until --duration or the server
 * closed. A parked session is idle (no transaction), so QUIT is always in order.
 */
static void
send_run_release_parked(struct send_run *run)
{
	struct send_session *s;

	if (send_run_more_work(run))
		return;
	event_del(run->rate_timer);
	while ((s = TAILQ_FIRST(&run->ready)) != NULL)
		send_session_quit(s);
}

void
send_run_session_ready(struct send_run *run, struct send_session *s)
{
	uint64_t seq, due;

	switch (send_run_take(run, &seq, &due)) {
	case SEND_TAKE_OK:
		send_session_give(s, seq, due);
		send_run_release_parked(run);
		break;
	case SEND_TAKE_WAIT:
		send_session_park(s);
		break;
	case SEND_TAKE_DONE:
		send_session_quit(s);
		break;
	}
}

/* Stops handing out work; sessions finish their message and QUIT. */
static void
send_run_stop(struct send_run *run)
{
	struct timeval tv;

	if (run->stopping)
		return;
	run->stopping = true;
	run->stop_us = bench_now_us();
	send_run_release_parked(run);
	tv = send_tv(run->cfg.timeout + 1.0);
	event_add(run->deadline, &tv);
	send_run_check_end(run);
}

static void
send_run_abort(struct send_run *run, const char *reason)
{
	if (!run->aborted) {
		run->aborted = true;
		snprintf(run->abort_reason, sizeof(run->abort_reason), "%s", reason);
	}
	send_run_stop(run);
}

static void
send_run_session_failed(struct send_run *run)
{
	char reason[96];

	run->st.sessions_failed++;
	run->session_errors++;
	run->retry_at_us = bench_now_us() + SEND_RETRY_US;
	if (run->session_errors >= run->cfg.max_errors) {
		snprintf(reason, sizeof(reason), "%" PRIu64 " session errors (--max-errors)",
		         run->session_errors);
		send_run_abort(run, reason);
	}
}

void
send_run_session_greeted(struct send_run *run)
{
	run->connecting--;
	send_run_fill(run);
}

void
send_run_session_gone(struct send_run *run, bool failed, bool greeted)
{
	run->open--;
	if (!greeted)
		run->connecting--;
	if (failed)
		send_run_session_failed(run);
	send_run_fill(run);
}

/* Opens sessions up to --connections, --connect-batch at a time, with a pause after errors. */
static void
send_run_fill(struct send_run *run)
{
	uint64_t now;
	struct timeval tv;

	while (send_run_more_work(run) && run->open < run->cfg.connections &&
	       run->connecting < run->cfg.connect_batch) {
		/* With a message count, open no session that would find nothing left to send. */
		if (run->cfg.messages &&
		    run->open - run->in_tx >= run->cfg.messages - run->next_seq)
			break;
		now = bench_now_us();
		if (now < run->retry_at_us) {
			if (!event_pending(run->fill_timer, EV_TIMEOUT, NULL)) {
				tv = send_tv((double)(run->retry_at_us - now) / 1e6);
				event_add(run->fill_timer, &tv);
			}
			break;
		}
		if (send_session_start(run) == NULL) {
			send_run_session_failed(run);
			continue;
		}
		run->open++;
		run->connecting++;
	}
	send_run_check_end(run);
}

static void
send_run_fill_cb(evutil_socket_t fd, short what, void *arg)
{
	send_run_fill(arg);
}

/* Open loop: release the messages that are due and hand them to parked sessions. */
static void
send_run_rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct send_run *run = arg;
	struct send_session *s;
	uint64_t due, seq, at;

	due = (uint64_t)((double)(bench_now_us() - run->start_us) * run->cfg.rate / 1e6) + 1;
	if (run->cfg.messages && due > run->cfg.messages)
		due = run->cfg.messages;
	run->released = due;
	while ((s = TAILQ_FIRST(&run->ready)) != NULL && run->next_seq < run->released &&
	       send_run_take(run, &seq, &at) == SEND_TAKE_OK)
		send_session_give(s, seq, at);
	send_run_release_parked(run);
}

static void
send_run_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	send_run_stop(arg);
}

static void
send_run_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct send_run *run = arg;
	struct send_session *s;

	while ((s = TAILQ_FIRST(&run->sessions)) != NULL)
		send_session_abort(s);
	if (run->end_us == 0)
		run->end_us = bench_now_us();
	event_base_loopexit(run->base, NULL);
}

static void
send_run_signal_cb(evutil_socket_t fd, short what, void *arg)
{
	struct send_run *run = arg;

	if (run->stopping) {
		/* Second signal: do not wait for the messages in flight. */
		send_run_deadline_cb(fd, what, arg);
		return;
	}
	if (!run->cfg.quiet)
		fprintf(stderr, "petrel-bench send: interrupted: finishing the messages in flight "
		                "(again to stop now)\n");
	send_run_abort(run, "interrupted");
}

static void
send_run_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct send_run *run = arg;
	uint64_t now = bench_now_us(), errors = send_errors_total(run);
	double dt = (double)(now - run->last_tick_us) / 1e6;
	char bbuf[32], total[48];

	if (!run->cfg.quiet) {
		if (run->cfg.messages)
			snprintf(total, sizeof(total), "%" PRIu64 "/%" PRIu64, run->st.accepted,
			         run->cfg.messages);
		else
			snprintf(total, sizeof(total), "%" PRIu64, run->st.accepted);
		fprintf(stderr,
		        "[%6.1fs] %8.0f msg/s %11s  accepted %s  errors %" PRIu64 " (+%" PRIu64
		        ")  conns %" PRIu64 "  p50 %.2f p99 %.2f ms\n",
		        (double)(now - run->start_us) / 1e6,
		        dt > 0 ? (double)(run->st.accepted - run->last_accepted) / dt : 0.0,
		        bench_format_rate_bytes(
		                dt > 0 ? (double)(run->st.bytes - run->last_bytes) / dt : 0.0, bbuf,
		                sizeof(bbuf)),
		        total, errors, errors - run->last_errors, run->open,
		        (double)histogram_percentile(run->h_interval, 50.0) / 1000.0,
		        (double)histogram_percentile(run->h_interval, 99.0) / 1000.0);
	}
	histogram_reset(run->h_interval);
	run->last_tick_us = now;
	run->last_accepted = run->st.accepted;
	run->last_errors = errors;
	run->last_bytes = run->st.bytes;
}

/* ---- reports ------------------------------------------------------------------------- */

static void
send_describe(const struct send_run *run, char *buf, size_t len)
{
	const struct send_config *c = &run->cfg;
	char loop[48];

	if (c->rate > 0)
		snprintf(loop, sizeof(loop), "open loop %.0f msg/s", c->rate);
	else
		snprintf(loop, sizeof(loop), "closed loop");
	snprintf(buf, len, "%s, %" PRIu64 " connections, %s, %s%s%s%s", c->addr.text,
	         c->connections, loop, c->chunking ? "BDAT" : "DATA",
	         c->pipelining ? ", pipelining" : "", c->starttls ? ", STARTTLS" : "",
	         c->auth ? ", AUTH" : "");
}

static void
send_report(const struct send_run *run, FILE *f, double elapsed)
{
	const struct send_stats *st = &run->st;
	char desc[256], bbuf[32];
	bool first = true;
	int i;

	send_describe(run, desc, sizeof(desc));
	fprintf(f, "petrel-bench send: run %s, %s\n", run->cfg.run_id, desc);
	if (run->aborted)
		fprintf(f, "%-22s %s\n", "aborted", run->abort_reason);
	fprintf(f, "%-22s %.3f s\n", "elapsed", elapsed);
	fprintf(f,
	        "%-22s %" PRIu64 " accepted, %" PRIu64 " failed (4xx %" PRIu64 ", 5xx %" PRIu64
	        ", other %" PRIu64 "), %" PRIu64 " attempted\n",
	        "messages", st->accepted, st->failed_4xx + st->failed_5xx + st->failed_other,
	        st->failed_4xx, st->failed_5xx, st->failed_other, st->attempted);
	fprintf(f, "%-22s %.1f msg/s, %s (%" PRIu64 " bytes)\n", "throughput",
	        elapsed > 0 ? (double)st->accepted / elapsed : 0.0,
	        bench_format_rate_bytes(elapsed > 0 ? (double)st->bytes / elapsed : 0.0, bbuf,
	                                sizeof(bbuf)),
	        st->bytes);
	fprintf(f, "%-22s %" PRIu64 " accepted, %" PRIu64 " rejected\n", "recipients",
	        st->rcpt_accepted, st->rcpt_rejected);
	fprintf(f, "%-22s %" PRIu64 " opened, %" PRIu64 " completed, %" PRIu64 " failed\n",
	        "sessions", st->sessions_opened, st->sessions_done, st->sessions_failed);
	fprintf(f, "%-22s %" PRIu64, "errors", send_errors_total(run));
	for (i = 0; i < SEND_ERR_KINDS; i++)
		fprintf(f, "%s%s %" PRIu64, i ? ", " : " (", send_error_names[i], st->errors[i]);
	fprintf(f, ")\n");
	for (i = 0; i < SEND_ERR_KINDS; i++)
		if (st->errors[i])
			fprintf(f, "  first %-14s %s\n", send_error_names[i], st->first_error[i]);
	fprintf(f, "%-22s", "reply codes");
	for (i = 0; i < 600; i++) {
		if (st->codes[i] == 0)
			continue;
		fprintf(f, "%s%d: %" PRIu64, first ? " " : ", ", i, st->codes[i]);
		first = false;
	}
	fprintf(f, "%s\n", first ? " none" : "");
	bench_report_latency_header(f);
	bench_report_latency_row(f, "connect", run->h_connect);
	bench_report_latency_row(f, "greeting", run->h_greeting);
	bench_report_latency_row(f, "accept (MAIL..250)", run->h_accept);
	bench_report_latency_row(f, "session", run->h_session);
	if (run->cfg.rate > 0)
		bench_report_latency_row(f, "accept from due time", run->h_scheduled);
}

static void
send_report_json(const struct send_run *run, FILE *f, double elapsed)
{
	const struct send_config *c = &run->cfg;
	const struct send_stats *st = &run->st;
	struct json_writer w;
	char key[8];
	size_t i;

	json_begin(&w, f);
	json_add_str(&w, "tool", "petrel-bench");
	json_add_str(&w, "mode", "send");
	json_add_str(&w, "run_id", c->run_id);
	json_object_open(&w, "config");
	json_add_str(&w, "server", c->addr.text);
	json_add_u64(&w, "connections", c->connections);
	json_add_u64(&w, "messages", c->messages);
	json_add_double(&w, "duration_s", c->duration);
	json_add_double(&w, "rate", c->rate);
	json_add_str(&w, "loop", c->rate > 0 ? "open" : "closed");
	json_array_open(&w, "sizes");
	for (i = 0; i < c->sizes.count; i++) {
		json_object_open(&w, NULL);
		json_add_u64(&w, "bytes", c->sizes.size[i]);
		json_add_u64(&w, "weight", c->sizes.weight[i]);
		json_object_close(&w);
	}
	json_array_close(&w);
	json_add_u64(&w, "recipients", c->recipients);
	json_add_u64(&w, "per_connection", c->per_connection);
	json_add_bool(&w, "pipelining", c->pipelining);
	json_add_bool(&w, "chunking", c->chunking);
	json_add_u64(&w, "chunk_size", c->chunk_size);
	json_add_bool(&w, "starttls", c->starttls);
	json_add_bool(&w, "tls_verify", c->tls_verify);
	json_add_bool(&w, "auth", c->auth);
	json_add_double(&w, "timeout_s", c->timeout);
	json_object_close(&w);
	json_add_bool(&w, "aborted", run->aborted);
	if (run->aborted)
		json_add_str(&w, "abort_reason", run->abort_reason);
	json_add_double(&w, "elapsed_s", elapsed);
	json_object_open(&w, "messages");
	json_add_u64(&w, "attempted", st->attempted);
	json_add_u64(&w, "accepted", st->accepted);
	json_add_u64(&w, "failed", st->failed_4xx + st->failed_5xx + st->failed_other);
	json_add_u64(&w, "failed_4xx", st->failed_4xx);
	json_add_u64(&w, "failed_5xx", st->failed_5xx);
	json_add_u64(&w, "failed_other", st->failed_other);
	json_object_close(&w);
	json_add_double(&w, "messages_per_s", elapsed > 0 ? (double)st->accepted / elapsed : 0);
	json_add_u64(&w, "bytes", st->bytes);
	json_add_double(&w, "bytes_per_s", elapsed > 0 ? (double)st->bytes / elapsed : 0);
	json_object_open(&w, "recipients");
	json_add_u64(&w, "accepted", st->rcpt_accepted);
	json_add_u64(&w, "rejected", st->rcpt_rejected);
	json_object_close(&w);
	json_object_open(&w, "sessions");
	json_add_u64(&w, "opened", st->sessions_opened);
	json_add_u64(&w, "completed", st->sessions_done);
	json_add_u64(&w, "failed", st->sessions_failed);
	json_object_close(&w);
	json_object_open(&w, "reply_codes");
	for (i = 0; i < 600; i++) {
		if (st->codes[i] == 0)
			continue;
		snprintf(key, sizeof(key), "%zu", i);
		json_add_u64(&w, key, st->codes[i]);
	}
	json_object_close(&w);
	json_object_open(&w, "errors");
	json_add_u64(&w, "total", send_errors_total(run));
	for (i = 0; i < SEND_ERR_KINDS; i++)
		json_add_u64(&w, send_error_names[i], st->errors[i]);
	json_object_close(&w);
	json_object_open(&w, "first_errors");
	for (i = 0; i < SEND_ERR_KINDS; i++)
		if (st->errors[i])
			json_add_str(&w, send_error_names[i], st->first_error[i]);
	json_object_close(&w);
	json_object_open(&w, "latency_us");
	bench_report_latency_json(&w, "connect", run->h_connect);
	bench_report_latency_json(&w, "greeting", run->h_greeting);
	bench_report_latency_json(&w, "accept", run->h_accept);
	bench_report_latency_json(&w, "session", run->h_session);
	if (c->rate > 0)
		bench_report_latency_json(&w, "accept_from_due", run->h_scheduled);
	json_object_close(&w);
	json_end(&w);
}

/* ---- command line ---------------------------------------------------------------------- */

static void
send_usage(FILE *f)
{
	fprintf(f,
	        "Usage: petrel-bench send [options]\n"
	        "\n"
	        "Runs many concurrent SMTP client sessions on one event loop against a server and\n"
	        "reports messages/s, bytes/s, reply codes, errors by kind and latency "
	        "percentiles.\n"
	        "\n"
	        "Target:\n"
	        "  --host HOST             server name or address (default 127.0.0.1)\n"
	        "  --port PORT             server port (default 25)\n"
	        "Load:\n"
	        "  -c, --connections N     concurrent sessions (default 10)\n"
	        "  -m, --messages M        messages in total (default 1000 without --duration)\n"
	        "  -d, --duration T        send for T seconds (e.g. 30, 1.5, 500ms, 2m); with\n"
	        "                          --messages too, whichever ends first\n"
	        "  -r, --rate R            open loop: R messages/s in total, due on a fixed clock\n"
	        "                          (default: closed loop, each session sends as fast as "
	        "it\n"
	        "                          is answered)\n"
	        "  --per-connection P      messages per session before QUIT and a new connection\n"
	        "                          (default 0: no limit)\n"
	        "  --connect-batch B       sessions connecting at once (default 200)\n"
	        "Messages:\n"
	        "  -s, --size SPEC         body bytes: 1024, 10k, 1m or a weighted mix such as\n"
	        "                          1k:70,10k:25,100k:5 (default 1k); headers add ~250 "
	        "bytes\n"
	        "  -n, --recipients K      RCPTs per message (default 1)\n"
	        "  --from ADDR             envelope sender (default bench@localhost)\n"
	        "  --to TEMPLATE           recipients; %%d becomes 1..N (default "
	        "user%%d@localhost)\n"
	        "  --to-range N            N for --to (default 1000)\n"
	        "  --helo NAME             EHLO name (default petrel-bench.localhost)\n"
	        "  --run-id ID             marker for `sink --check` and Message-IDs (default "
	        "random)\n"
	        "  --seed N                seed for size choices (default random)\n"
	        "Protocol:\n"
	        "  --pipelining            send MAIL, RCPTs and DATA (or BDATs) as one group\n"
	        "  --chunking              BDAT instead of DATA (RFC 3030)\n"
	        "  --chunk-size BYTES      BDAT chunk size (default 64k)\n"
	        "  --starttls              STARTTLS first (no certificate check unless "
	        "--tls-verify)\n"
	        "  --tls-verify            verify the certificate (system CAs or --tls-ca)\n"
	        "  --tls-ca FILE           CA certificates for --tls-verify\n"
	        "  --tls-name NAME         name to verify and send as SNI (default --host)\n"
	        "  --auth USER:PASS        AUTH PLAIN after EHLO (after STARTTLS if both)\n"
	        "  --timeout T             seconds to wait for a connection or a reply (default "
	        "30)\n"
	        "  --max-errors N          stop after N session errors (default 1000)\n"
	        "Output:\n"
	        "  --json FILE             write every figure as JSON to FILE ('-' = stdout, and "
	        "the\n"
	        "                          table goes to stderr)\n"
	        "  -q, --quiet             no progress lines on stderr\n"
	        "  -h, --help              show this help\n"
	        "\n"
	        "Progress goes to stderr once a second. Latency: connect (connect() to "
	        "established),\n"
	        "greeting (connect() to the banner), accept (MAIL sent to the final 250 after the\n"
	        "data), session (connect() to the QUIT reply); open loop also reports accept from\n"
	        "the time each message was due. Exit status 1 if any error occurred.\n");
}

static int
send_parse_args(int argc, char **argv, struct send_config *cfg)
{
	enum {
		OPT_HOST = 256,
		OPT_PORT,
		OPT_PER_CONN,
		OPT_BATCH,
		OPT_FROM,
		OPT_TO,
		OPT_TO_RANGE,
		OPT_HELO,
		OPT_RUN_ID,
		OPT_SEED,
		OPT_PIPELINING,
		OPT_CHUNKING,
		OPT_CHUNK_SIZE,
		OPT_STARTTLS,
		OPT_TLS_VERIFY,
		OPT_TLS_CA,
		OPT_TLS_NAME,
		OPT_AUTH,
		OPT_TIMEOUT,
		OPT_MAX_ERRORS,
		OPT_JSON,
	};
	static const struct option opts[] = {
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "connections", required_argument, NULL, 'c' },
		{ "messages", required_argument, NULL, 'm' },
		{ "duration", required_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'r' },
		{ "per-connection", required_argument, NULL, OPT_PER_CONN },
		{ "connect-batch", required_argument, NULL, OPT_BATCH },
		{ "size", required_argument, NULL, 's' },
		{ "recipients", required_argument, NULL, 'n' },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "to-range", required_argument, NULL, OPT_TO_RANGE },
		{ "helo", required_argument, NULL, OPT_HELO },
		{ "run-id", required_argument, NULL, OPT_RUN_ID },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "pipelining", no_argument, NULL, OPT_PIPELINING },
		{ "chunking", no_argument, NULL, OPT_CHUNKING },
		{ "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
		{ "starttls", no_argument, NULL, OPT_STARTTLS },
		{ "tls-verify", no_argument, NULL, OPT_TLS_VERIFY },
		{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
		{ "tls-name", required_argument, NULL, OPT_TLS_NAME },
		{ "auth", required_argument, NULL, OPT_AUTH },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "max-errors", required_argument, NULL, OPT_MAX_ERRORS },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *size_spec = "1k", *to = "user%d@localhost", *colon;
	char err[256];
	unsigned char rnd[6];
	uint64_t nofile, v;
	bool have_messages = false;
	size_t i;
	int c;

	snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
	snprintf(cfg->port, sizeof(cfg->port), "25");
	cfg->connections = 10;
	cfg->recipients = 1;
	cfg->from = "bench@localhost";
	cfg->to_range = 1000;
	cfg->helo = "petrel-bench.localhost";
	cfg->timeout = 30;
	cfg->chunk_size = 64 * 1024;
	cfg->connect_batch = 200;
	cfg->max_errors = 1000;
	bench_random_bytes(&cfg->seed, sizeof(cfg->seed));
	bench_random_bytes(rnd, sizeof(rnd));
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(cfg->run_id + 2 * i, 3, "%02x", rnd[i]);
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:m:d:r:s:n:qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_HOST:
			if (strlen(optarg) == 0 || strlen(optarg) >= sizeof(cfg->host)) {
				bench_usage_error(SEND_CMD,
				                  "--host: expected a host name or address");
				return -1;
			}
			snprintf(cfg->host, sizeof(cfg->host), "%s", optarg);
			break;
		case OPT_PORT:
			if (bench_opt_uint(SEND_CMD, "--port", optarg, 1, 65535, &v) < 0)
				return -1;
			snprintf(cfg->port, sizeof(cfg->port), "%" PRIu64, v);
			break;
		case 'c':
			if (bench_opt_uint(SEND_CMD, "--connections", optarg, 1, 1000000,
			                   &cfg->connections) < 0)
				return -1;
			break;
		case 'm':
			if (bench_opt_uint(SEND_CMD, "--messages", optarg, 1, UINT64_MAX / 4,
			                   &cfg->messages) < 0)
				return -1;
			have_messages = true;
			break;
		case 'd':
			if (bench_opt_seconds(SEND_CMD, "--duration", optarg, 0.001, 86400,
			                      &cfg->duration) < 0)
				return -1;
			break;
		case 'r':
			if (bench_opt_number(SEND_CMD, "--rate", optarg, 0.001, 10000000,
			                     &cfg->rate) < 0)
				return -1;
			break;
		case OPT_PER_CONN:
			if (bench_opt_uint(SEND_CMD, "--per-connection", optarg, 0, UINT64_MAX / 4,
			                   &cfg->per_connection) < 0)
				return -1;
			break;
		case OPT_BATCH:
			if (bench_opt_uint(SEND_CMD, "--connect-batch", optarg, 1, 100000,
			                   &cfg->connect_batch) < 0)
				return -1;
			break;
		case 's':
			size_spec = optarg;
			break;
		case 'n':
			if (bench_opt_uint(SEND_CMD, "--recipients", optarg, 1, 10000,
			                   &cfg->recipients) < 0)
				return -1;
			break;
		case OPT_FROM:
			if (!message_address_valid(optarg)) {
				bench_usage_error(SEND_CMD,
				                  "--from: '%s' is not an address (printable, no "
				                  "spaces or <>)",
				                  optarg);
				return -1;
			}
			cfg->from = optarg;
			break;
		case OPT_TO:
			to = optarg;
			break;
		case OPT_TO_RANGE:
			if (bench_opt_uint(SEND_CMD, "--to-range", optarg, 1, UINT64_MAX / 4,
			                   &cfg->to_range) < 0)
				return -1;
			break;
		case OPT_HELO:
			if (!message_address_valid(optarg)) {
				bench_usage_error(SEND_CMD, "--helo: '%s' is not a host name",
				                  optarg);
				return -1;
			}
			cfg->helo = optarg;
			break;
		case OPT_RUN_ID:
			if (!message_run_id_valid(optarg)) {
				bench_usage_error(SEND_CMD,
				                  "--run-id: '%s' is not 1..%d of [A-Za-z0-9._-]",
				                  optarg, MESSAGE_RUN_ID_MAX);
				return -1;
			}
			snprintf(cfg->run_id, sizeof(cfg->run_id), "%s", optarg);
			break;
		case OPT_SEED:
			if (bench_opt_uint(SEND_CMD, "--seed", optarg, 0, UINT64_MAX, &cfg->seed) <
			    0)
				return -1;
			break;
		case OPT_PIPELINING:
			cfg->pipelining = true;
			break;
		case OPT_CHUNKING:
			cfg->chunking = true;
			break;
		case OPT_CHUNK_SIZE: {
			struct message_sizes one;

			if (message_sizes_parse(optarg, &one, err, sizeof(err)) < 0 ||
			    one.count != 1 || one.size[0] == 0 || strchr(optarg, ':') != NULL) {
				bench_usage_error(
				        SEND_CMD,
				        "--chunk-size: '%s' is not a size in 2..64m (e.g. 64k)",
				        optarg);
				return -1;
			}
			cfg->chunk_size = one.size[0];
			break;
		}
		case OPT_STARTTLS:
			cfg->starttls = true;
			break;
		case OPT_TLS_VERIFY:
			cfg->tls_verify = true;
			break;
		case OPT_TLS_CA:
			cfg->tls_ca = optarg;
			break;
		case OPT_TLS_NAME:
			cfg->tls_name = optarg;
			break;
		case OPT_AUTH:
			colon = strchr(optarg, ':');
			if (colon == NULL || colon == optarg ||
			    (size_t)(colon - optarg) >= sizeof(cfg->auth_user) ||
			    strlen(colon + 1) >= sizeof(cfg->auth_pass)) {
				bench_usage_error(
				        SEND_CMD,
				        "--auth: expected USER:PASS (each under 256 bytes)");
				return -1;
			}
			snprintf(cfg->auth_user, sizeof(cfg->auth_user), "%.*s",
			         (int)(colon - optarg), optarg);
			snprintf(cfg->auth_pass, sizeof(cfg->auth_pass), "%s", colon + 1);
			cfg->auth = true;
			break;
		case OPT_TIMEOUT:
			if (bench_opt_seconds(SEND_CMD, "--timeout", optarg, 0.01, 3600,
			                      &cfg->timeout) < 0)
				return -1;
			break;
		case OPT_MAX_ERRORS:
			if (bench_opt_uint(SEND_CMD, "--max-errors", optarg, 1, UINT64_MAX / 4,
			                   &cfg->max_errors) < 0)
				return -1;
			break;
		case OPT_JSON:
			cfg->json_path = optarg;
			break;
		case 'q':
			cfg->quiet = true;
			break;
		case 'h':
			send_usage(stdout);
			return 1;
		default:
			fprintf(stderr, "Try 'petrel-bench %s --help'.\n", SEND_CMD);
			return -1;
		}
	}
	if (optind < argc) {
		bench_usage_error(SEND_CMD, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (!have_messages && cfg->duration == 0)
		cfg->messages = 1000;
	if (message_sizes_parse(size_spec, &cfg->sizes, err, sizeof(err)) < 0) {
		bench_usage_error(SEND_CMD, "--size: %s", err);
		return -1;
	}
	if (message_template_parse(to, &cfg->to, err, sizeof(err)) < 0) {
		bench_usage_error(SEND_CMD, "--to: %s", err);
		return -1;
	}
	if ((cfg->tls_verify || cfg->tls_ca || cfg->tls_name) && !cfg->starttls) {
		bench_usage_error(SEND_CMD,
		                  "--tls-verify, --tls-ca and --tls-name need --starttls");
		return -1;
	}
	if (cfg->tls_ca && !cfg->tls_verify) {
		bench_usage_error(SEND_CMD, "--tls-ca needs --tls-verify");
		return -1;
	}
	nofile = bench_raise_nofile();
	if (cfg->connections + 32 > nofile) {
		bench_usage_error(SEND_CMD,
		                  "--connections %" PRIu64 " needs more descriptors than the "
		                  "open-files limit (%" PRIu64 ")",
		                  cfg->connections, nofile);
		return -1;
	}
	if (bench_resolve(cfg->host, cfg->port, false, &cfg->addr, err, sizeof(err)) < 0) {
		bench_usage_error(SEND_CMD, "--host/--port: %s", err);
		return -1;
	}
	return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static int
send_setup(struct send_run *run)
{
	const struct send_config *c = &run->cfg;
	uint64_t chunks = 0;
	struct tm tm;
	time_t now;
	char err[256];
	size_t i;

	for (i = 0; i < c->sizes.count; i++) {
		if (message_body_build(&run->bodies[i], c->sizes.size[i]) < 0) {
			bench_error(SEND_CMD, "cannot build a %zu-byte body: %s", c->sizes.size[i],
			            strerror(errno));
			return -1;
		}
		if (c->sizes.size[i] + MESSAGE_HEADER_MAX > run->max_content)
			run->max_content = c->sizes.size[i] + MESSAGE_HEADER_MAX;
	}
	if (c->chunking)
		chunks = (run->max_content + c->chunk_size - 1) / c->chunk_size;
	/* MAIL, RCPTs, DATA and its end, or the BDATs, with room to spare. */
	run->fifo_max = c->recipients + chunks + 4;
	run->h_connect = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	run->h_greeting = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	run->h_accept = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	run->h_session = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	run->h_scheduled = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	run->h_interval = histogram_new(BENCH_HIST_HIGHEST, BENCH_HIST_PRECISION);
	if (!run->h_connect || !run->h_greeting || !run->h_accept || !run->h_session ||
	    !run->h_scheduled || !run->h_interval)
		return -1;
	if (c->starttls) {
		run->ssl_ctx = bench_tls_client_ctx(c->tls_verify, c->tls_ca, err, sizeof(err));
		if (run->ssl_ctx == NULL) {
			bench_error(SEND_CMD, "--starttls: %s", err);
			return -1;
		}
	}
	now = time(NULL);
	localtime_r(&now, &tm);
	strftime(run->date, sizeof(run->date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	run->rng = c->seed;
	run->base = bench_event_base_new();
	if (run->base == NULL)
		return -1;
	run->fill_timer = evtimer_new(run->base, send_run_fill_cb, run);
	run->rate_timer = event_new(run->base, -1, EV_PERSIST, send_run_rate_cb, run);
	run->tick = event_new(run->base, -1, EV_PERSIST, send_run_tick_cb, run);
	run->stop_timer = evtimer_new(run->base, send_run_stop_cb, run);
	run->deadline = evtimer_new(run->base, send_run_deadline_cb, run);
	run->sig_int = evsignal_new(run->base, SIGINT, send_run_signal_cb, run);
	run->sig_term = evsignal_new(run->base, SIGTERM, send_run_signal_cb, run);
	if (!run->fill_timer || !run->rate_timer || !run->tick || !run->stop_timer ||
	    !run->deadline || !run->sig_int || !run->sig_term)
		return -1;
	return 0;
}

static void
send_teardown(struct send_run *run)
{
	struct event *evs[] = { run->fill_timer, run->rate_timer, run->tick,    run->stop_timer,
		                run->deadline,   run->sig_int,    run->sig_term };
	struct send_session *s;
	size_t i;

	/* Sessions left only if setup failed midway or the loop broke: drop them quietly. */
	run->stopping = true;
	while ((s = TAILQ_FIRST(&run->sessions)) != NULL)
		send_session_abort(s);
	for (i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i] != NULL)
			event_free(evs[i]);
	if (run->base != NULL)
		event_base_free(run->base);
	SSL_CTX_free(run->ssl_ctx);
	histogram_free(run->h_connect);
	histogram_free(run->h_greeting);
	histogram_free(run->h_accept);
	histogram_free(run->h_session);
	histogram_free(run->h_scheduled);
	histogram_free(run->h_interval);
	/* Bodies last: output buffers referenced them until the streams were closed. */
	for (i = 0; i < MESSAGE_SIZES_MAX; i++)
		message_body_release(&run->bodies[i]);
}

int
send_main(int argc, char **argv)
{
	struct send_run *run;
	struct timeval tv;
	double elapsed;
	FILE *table = stdout, *jf;
	int rc = BENCH_EXIT_FAIL, r;

	run = calloc(1, sizeof(*run));
	if (run == NULL)
		return BENCH_EXIT_FAIL;
	TAILQ_INIT(&run->sessions);
	TAILQ_INIT(&run->ready);
	r = send_parse_args(argc, argv, &run->cfg);
	if (r != 0) {
		rc = r > 0 ? BENCH_EXIT_OK : BENCH_EXIT_USAGE;
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (send_setup(run) < 0) {
		bench_error(SEND_CMD, "setup failed");
		goto out;
	}
	event_add(run->sig_int, NULL);
	event_add(run->sig_term, NULL);
	tv = send_tv(1.0);
	event_add(run->tick, &tv);
	if (run->cfg.duration > 0) {
		tv = send_tv(run->cfg.duration);
		event_add(run->stop_timer, &tv);
	}
	if (run->cfg.rate > 0) {
		tv = send_tv(SEND_RATE_TICK_US / 1e6);
		event_add(run->rate_timer, &tv);
		run->released = 1;
	}
	run->start_us = run->last_tick_us = bench_now_us();
	if (!run->cfg.quiet) {
		char desc[256];

		send_describe(run, desc, sizeof(desc));
		fprintf(stderr, "petrel-bench send: run %s, %s\n", run->cfg.run_id, desc);
	}
	send_run_fill(run);
	event_base_dispatch(run->base);
	if (run->end_us == 0)
		run->end_us = bench_now_us();
	elapsed = (double)(run->end_us - run->start_us) / 1e6;

	if (run->cfg.json_path != NULL && strcmp(run->cfg.json_path, "-") == 0)
		table = stderr;
	send_report(run, table, elapsed);
	fflush(table);
	rc = send_errors_total(run) == 0 && !run->aborted ? BENCH_EXIT_OK : BENCH_EXIT_FAIL;
	if (run->cfg.json_path != NULL) {
		jf = bench_json_open(SEND_CMD, run->cfg.json_path);
		if (jf == NULL) {
			rc = BENCH_EXIT_FAIL;
		} else {
			send_report_json(run, jf, elapsed);
			if (bench_json_close(SEND_CMD, jf, run->cfg.json_path) < 0)
				rc = BENCH_EXIT_FAIL;
		}
	}
out:
	send_teardown(run);
	free(run);
	return rc;
}
