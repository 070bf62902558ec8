/*
 * test_stats.c: stats.c, the histogram buckets and the two renderings of a snapshot.
 *
 * The Prometheus text of a known snapshot is compared byte for byte with
 * tests/unit/data/stats_metrics.prom (every family, HELP and TYPE included), and the JSON of the
 * same snapshot goes through Python's json module, which also checks the values. The HTTP side
 * is tested against the real binary (tests/integration/test_stats.py).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "petrel/stats.h"

#ifndef TEST_DATA_DIR
#error "build with -DTEST_DATA_DIR=\"…/tests/unit/data\""
#endif

#define TEST_GOLDEN TEST_DATA_DIR "/stats_metrics.prom"
#define TEST_PYTHON "/usr/bin/python3"
#define TEST_MS     UINT64_C(1000000)
#define TEST_S      UINT64_C(1000000000)

/* The rendering of snap as a malloc'd, NUL-terminated string. */
static char *
test_render(const struct stats_snapshot *snap, enum stats_format format)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	cr_assert_not_null(out);
	cr_assert_eq(stats_render(snap, format, out), 0);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	cr_assert_not_null(text);
	cr_assert_eq(evbuffer_remove(out, text, len), (int)len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

static char *
test_read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *text;
	long len;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	rewind(f);
	text = malloc((size_t)len + 1);
	cr_assert_not_null(text);
	cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	text[len] = '\0';
	fclose(f);
	return text;
}

/* A snapshot where every family has a value of its own, so a mix-up shows. */
static void
test_snapshot(struct stats_snapshot *s)
{
	unsigned i, j;

	memset(s, 0, sizeof(*s));
	s->version = "1.2.3-test";
	s->start_time = 1763932800;
	s->rss_bytes = 7340032;
	s->connections_current = 3;
	s->smtp.connections = 41;
	s->smtp.refused_limit = 2;
	s->smtp.messages = 17;
	s->smtp.bytes = 123456;
	s->smtp.rejected = 4;
	s->spool.commits = 18;
	s->spool.batches = 9;
	s->spool.failures = 1;
	s->queue.queued = 5;
	s->queue.inflight = 2;
	s->queue.dsns = 1;
	s->queue_oldest_age = 3600;
	s->reg.sessions[SMTP_STATE_GREET] = 1;
	s->reg.sessions[SMTP_STATE_RCPT] = 1;
	s->reg.sessions[SMTP_STATE_WAIT] = 1;
	s->reg.tls_handshakes = 6;
	s->reg.tls_failures = 1;
	s->reg.auth_ok = 4;
	s->reg.auth_failed = 2;
	for (i = 0; i < STATS_REJECT_COUNT; i++)
		s->reg.rejected[i] = 10 + i;
	for (i = 0; i < STATS_OUTCOME_COUNT; i++)
		for (j = 0; j < STATS_ROUTES; j++)
			s->reg.recipients[i][j] = 100 * (i + 1) + j;
	s->reg.delivery_attempts = 12;
	s->reg.dns_results[DNS_OK] = 20;
	s->reg.dns_results[DNS_TEMPFAIL] = 3;
	s->reg.dns_results[DNS_NXDOMAIN] = 2;
	s->reg.dns_results[DNS_NULL_MX] = 1;
	/* accept: 0.3 ms, 0.5 ms (on a bound), 4 ms, 2 minutes */
	stats_histogram_add(&s->reg.hist[STATS_HIST_ACCEPT], 300000);
	stats_histogram_add(&s->reg.hist[STATS_HIST_ACCEPT], 500000);
	stats_histogram_add(&s->reg.hist[STATS_HIST_ACCEPT], 4 * TEST_MS);
	stats_histogram_add(&s->reg.hist[STATS_HIST_ACCEPT], 120 * TEST_S);
	/* delivery: 1.5 s and 2 hours (+Inf) */
	stats_histogram_add(&s->reg.hist[STATS_HIST_DELIVERY], 1500 * TEST_MS);
	stats_histogram_add(&s->reg.hist[STATS_HIST_DELIVERY], 7200 * TEST_S);
	stats_histogram_add(&s->reg.hist[STATS_HIST_SPOOL_SYNC], 3 * TEST_MS);
	/* loop lag stays empty: a histogram with nothing in it */
}

Test(stats, bucket_bounds_are_log_spaced_and_labelled)
{
	unsigned i;
	double label;

	cr_assert_eq(stats_bucket_bound(0), 500000, "the first bound is 0.5 ms");
	cr_assert_eq(stats_bucket_bound(STATS_BUCKETS - 1), 3600 * TEST_S, "the last is 1 h");
	cr_assert_eq(stats_bucket_bound(STATS_BUCKETS), UINT64_MAX);
	cr_assert_str_eq(stats_bucket_label(STATS_BUCKETS), "+Inf");
	for (i = 0; i < STATS_BUCKETS; i++) {
		/* The label says the bound, in seconds. */
		label = strtod(stats_bucket_label(i), NULL);
		cr_expect_eq((uint64_t)(label * 1e9 + 0.5), stats_bucket_bound(i), "bucket %u: %s",
		             i, stats_bucket_label(i));
		if (i == 0)
			continue;
		/* Log-spaced: each bound 2 to 2.5 times the one before (1-2-5 steps) up to 20 s,
		 * then coarser for end-to-end delivery: 60 s, 5 min, 1 h. */
		cr_expect_geq(stats_bucket_bound(i), 2 * stats_bucket_bound(i - 1), "bucket %u", i);
		cr_expect(stats_bucket_bound(i) * 2 <= 5 * stats_bucket_bound(i - 1) ||
		                  stats_bucket_bound(i) > 20 * TEST_S,
		          "bucket %u", i);
	}
}

Test(stats, bucket_index_is_le)
{
	static const struct {
		uint64_t ns;
		unsigned bucket;
	} cases[] = {
		{ 0, 0 },
		{ 1, 0 },
		{ 499999, 0 },
		{ 500000, 0 }, /* le: the bound itself belongs to its bucket */
		{ 500001, 1 },
		{ 1000000, 1 },
		{ 1000001, 2 },
		{ 100 * TEST_MS, 7 },
		{ 100 * TEST_MS + 1, 8 },
		{ 1 * TEST_S, 10 },
		{ 60 * TEST_S, 15 },
		{ 61 * TEST_S, 16 },
		{ 3600 * TEST_S, 17 },
		{ 3600 * TEST_S + 1, STATS_BUCKETS }, /* +Inf */
		{ UINT64_MAX, STATS_BUCKETS },
	};
	unsigned i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(stats_bucket_index(cases[i].ns), cases[i].bucket,
		             "case %u: %llu ns -> bucket %u, want %u", i,
		             (unsigned long long)cases[i].ns, stats_bucket_index(cases[i].ns),
		             cases[i].bucket);
	/* Every bound and the nanosecond after it. */
	for (i = 0; i < STATS_BUCKETS; i++) {
		cr_expect_eq(stats_bucket_index(stats_bucket_bound(i)), i, "bound %u", i);
		cr_expect_eq(stats_bucket_index(stats_bucket_bound(i) + 1), i + 1, "bound %u + 1",
		             i);
	}
}

Test(stats, histogram_add_counts_and_sums)
{
	struct stats_histogram h;
	unsigned i;
	uint64_t n = 0;

	memset(&h, 0, sizeof(h));
	stats_histogram_add(&h, 0);
	stats_histogram_add(&h, 700000);
	stats_histogram_add(&h, 700000);
	stats_histogram_add(&h, 4000 * TEST_S);
	cr_expect_eq(h.count, 4);
	cr_expect_eq(h.sum_ns, 1400000 + 4000 * TEST_S);
	cr_expect_eq(h.buckets[0], 1);
	cr_expect_eq(h.buckets[1], 2);
	cr_expect_eq(h.buckets[STATS_BUCKETS], 1);
	for (i = 0; i <= STATS_BUCKETS; i++)
		n += h.buckets[i];
	cr_expect_eq(n, h.count);
}

Test(stats, observe_goes_to_the_registry)
{
	struct stats_histogram before = stats_registry.hist[STATS_HIST_LOOP_LAG];

	stats_observe(STATS_HIST_LOOP_LAG, 2 * TEST_MS);
	cr_expect_eq(stats_registry.hist[STATS_HIST_LOOP_LAG].count, before.count + 1);
	cr_expect_eq(stats_registry.hist[STATS_HIST_LOOP_LAG].buckets[2], before.buckets[2] + 1);
	cr_expect_eq(stats_registry.hist[STATS_HIST_LOOP_LAG].sum_ns, before.sum_ns + 2 * TEST_MS);
}

Test(stats, helpers_bump_one_field)
{
	struct stats before = stats_registry;

	stats_session_state(SMTP_STATE_COUNT, SMTP_STATE_GREET); /* a new session */
	stats_session_state(SMTP_STATE_GREET, SMTP_STATE_HELO);
	stats_tls_handshake(true);
	stats_tls_handshake(false);
	stats_auth(false);
	stats_reject(STATS_REJECT_RELAY_DENIED);
	stats_recipient(STATS_OUTCOME_BOUNCED, CONFIG_ROUTE_MAILDIR);
	stats_delivery_attempt();
	stats_dns_result(DNS_NXDOMAIN);
	cr_expect_eq(stats_registry.sessions[SMTP_STATE_GREET], before.sessions[SMTP_STATE_GREET]);
	cr_expect_eq(stats_registry.sessions[SMTP_STATE_HELO],
	             before.sessions[SMTP_STATE_HELO] + 1);
	stats_session_state(SMTP_STATE_HELO, SMTP_STATE_COUNT); /* and it ends */
	cr_expect_eq(stats_registry.sessions[SMTP_STATE_HELO], before.sessions[SMTP_STATE_HELO]);
	cr_expect_eq(stats_registry.tls_handshakes, before.tls_handshakes + 1);
	cr_expect_eq(stats_registry.tls_failures, before.tls_failures + 1);
	cr_expect_eq(stats_registry.auth_ok, before.auth_ok);
	cr_expect_eq(stats_registry.auth_failed, before.auth_failed + 1);
	cr_expect_eq(stats_registry.rejected[STATS_REJECT_RELAY_DENIED],
	             before.rejected[STATS_REJECT_RELAY_DENIED] + 1);
	cr_expect_eq(stats_registry.recipients[STATS_OUTCOME_BOUNCED][CONFIG_ROUTE_MAILDIR],
	             before.recipients[STATS_OUTCOME_BOUNCED][CONFIG_ROUTE_MAILDIR] + 1);
	cr_expect_eq(stats_registry.delivery_attempts, before.delivery_attempts + 1);
	cr_expect_eq(stats_registry.dns_results[DNS_NXDOMAIN],
	             before.dns_results[DNS_NXDOMAIN] + 1);
}

Test(stats, prometheus_text_is_exact)
{
	struct stats_snapshot snap;
	char *text, *want;

	test_snapshot(&snap);
	text = test_render(&snap, STATS_FORMAT_PROMETHEUS);
	want = test_read_file(TEST_GOLDEN);
	cr_assert_str_eq(text, want, "rendering differs from %s; got:\n%s", TEST_GOLDEN, text);
	free(text);
	free(want);
}

/* The same, checked by hand for what is easy to get wrong: labels, cumulative buckets, sums. */
Test(stats, prometheus_text_details)
{
	static const char *const want[] = {
		"# HELP petrel_build_info Always 1; the label says which petrel is running.\n"
		"# TYPE petrel_build_info gauge\n"
		"petrel_build_info{version=\"1.2.3-test\"} 1\n",
		"# TYPE petrel_connections_total counter\npetrel_connections_total 41\n",
		"petrel_sessions{state=\"greet\"} 1\npetrel_sessions{state=\"helo\"} 0\n",
		"petrel_recipients_total{outcome=\"delivered\",route=\"mx\"} 100\n"
		"petrel_recipients_total{outcome=\"delivered\",route=\"relay\"} 101\n",
		"petrel_recipients_total{outcome=\"expired\",route=\"discard\"} 403\n",
		"petrel_rejections_total{reason=\"local_error\"} 17\n",
		"# TYPE petrel_dns_lookups_total counter\npetrel_dns_lookups_total 26\n",
		"petrel_dns_failures_total{status=\"tempfail\"} 3\n"
		"petrel_dns_failures_total{status=\"nxdomain\"} 2\n"
		"petrel_dns_failures_total{status=\"null-mx\"} 1\n"
		"petrel_dns_failures_total{status=\"no-address\"} 0\n",
		"# TYPE petrel_accept_latency_seconds histogram\n"
		"petrel_accept_latency_seconds_bucket{le=\"0.0005\"} 2\n"
		"petrel_accept_latency_seconds_bucket{le=\"0.001\"} 2\n"
		"petrel_accept_latency_seconds_bucket{le=\"0.002\"} 2\n"
		"petrel_accept_latency_seconds_bucket{le=\"0.005\"} 3\n",
		"petrel_accept_latency_seconds_bucket{le=\"60\"} 3\n"
		"petrel_accept_latency_seconds_bucket{le=\"300\"} 4\n"
		"petrel_accept_latency_seconds_bucket{le=\"3600\"} 4\n"
		"petrel_accept_latency_seconds_bucket{le=\"+Inf\"} 4\n"
		"petrel_accept_latency_seconds_sum 120.004800000\n"
		"petrel_accept_latency_seconds_count 4\n",
		"petrel_delivery_latency_seconds_bucket{le=\"3600\"} 1\n"
		"petrel_delivery_latency_seconds_bucket{le=\"+Inf\"} 2\n"
		"petrel_delivery_latency_seconds_sum 7201.500000000\n",
		"petrel_loop_lag_seconds_bucket{le=\"+Inf\"} 0\n"
		"petrel_loop_lag_seconds_sum 0.000000000\n"
		"petrel_loop_lag_seconds_count 0\n",
	};
	struct stats_snapshot snap;
	char *text;
	size_t i;

	test_snapshot(&snap);
	text = test_render(&snap, STATS_FORMAT_PROMETHEUS);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect_not_null(strstr(text, want[i]), "missing:\n%s", want[i]);
	/* The last family ends the text, with its newline. */
	cr_expect_eq(text[strlen(text) - 1], '\n');
	free(text);
}

/* A fresh process: every family is there, as 0. */
Test(stats, every_family_exists_at_zero)
{
	struct stats_snapshot snap;
	char *text, *line, *save = NULL;
	unsigned types = 0, samples = 0;

	memset(&snap, 0, sizeof(snap));
	text = test_render(&snap, STATS_FORMAT_PROMETHEUS);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# TYPE ", 7) == 0) {
			types++;
			continue;
		}
		if (line[0] == '#')
			continue;
		samples++;
		/* Only build_info says 1; everything else is 0. */
		if (strncmp(line, "petrel_build_info", 17) == 0)
			cr_expect_str_eq(strrchr(line, ' '), " 1", "%s", line);
		else if (strstr(line, "_sum ") != NULL)
			cr_expect_str_eq(strrchr(line, ' '), " 0.000000000", "%s", line);
		else
			cr_expect_str_eq(strrchr(line, ' '), " 0", "%s", line);
	}
	cr_expect_eq(types, 32, "families");
	/* 24 single samples (build_info included) + 8 states + 8 reasons + 16 outcome x route
	 * + 4 DNS failures + 4 histograms x (19 buckets + sum + count). */
	cr_expect_eq(samples, 24 + 8 + 8 + 16 + 4 + 4 * 21, "samples");
	free(text);
}

/* Python's json module parses the JSON and checks it says what the snapshot says. */
Test(stats, json_parses_and_matches)
{
	static const char check[] =
	        "import json, sys\n"
	        "j = json.load(sys.stdin)\n"
	        "assert j['petrel_build_info'] == {'1.2.3-test': 1}, j['petrel_build_info']\n"
	        "assert j['petrel_connections_total'] == 41\n"
	        "assert j['petrel_connections_current'] == 3\n"
	        "assert j['petrel_sessions']['rcpt'] == 1 and j['petrel_sessions']['helo'] == 0\n"
	        "assert len(j['petrel_sessions']) == 8\n"
	        "assert j['petrel_recipients_total']['bounced']['maildir'] == 302\n"
	        "assert sorted(j['petrel_recipients_total']) == "
	        "['bounced', 'deferred', 'delivered', 'expired']\n"
	        "assert j['petrel_rejections_total']['relay_denied'] == 13\n"
	        "assert j['petrel_dns_lookups_total'] == 26\n"
	        "assert j['petrel_dns_failures_total'] == "
	        "{'tempfail': 3, 'nxdomain': 2, 'null-mx': 1, 'no-address': 0}\n"
	        "h = j['petrel_accept_latency_seconds']\n"
	        "assert h['count'] == 4 and abs(h['sum'] - 120.0048) < 1e-9, h\n"
	        "b = list(h['buckets'].items())\n"
	        "assert len(b) == 19 and b[0] == ('0.0005', 2) and b[-1] == ('+Inf', 4), b\n"
	        "assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), b\n"
	        "assert j['petrel_loop_lag_seconds']['count'] == 0\n"
	        "assert len(j) == 32, len(j)\n";
	char script[] = "/tmp/petrel-test-stats-XXXXXX", cmd[128];
	struct stats_snapshot snap;
	char *text;
	FILE *f;
	int fd, status;

	/* The check is a script file; the JSON goes to Python's stdin through popen(). */
	fd = mkstemp(script);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, check, sizeof(check) - 1), (ssize_t)(sizeof(check) - 1));
	close(fd);
	test_snapshot(&snap);
	text = test_render(&snap, STATS_FORMAT_JSON);
	snprintf(cmd, sizeof(cmd), "%s %s", TEST_PYTHON, script);
	f = popen(cmd, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	status = pclose(f);
	unlink(script);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "python3 rejected the JSON (status %d):\n%s", status, text);
	free(text);
}
