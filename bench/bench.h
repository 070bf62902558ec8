/*
 * bench.h - shared declarations of petrel-bench: the subcommand entry points and the
 * helpers every subcommand uses (common.c: option values, addresses, clocks, limits;
 * report.c: latency rows and JSON; json.c: the JSON writer is in json.h).
 *
 * Start reading at petrel-bench.c (dispatch), then sink.c (the simplest server), send.c
 * (the load driver) with send_session.c (one SMTP client session), and idle.c.
 */
#ifndef PETREL_BENCH_H
#define PETREL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "json.h"

#define BENCH_EXIT_OK    0
#define BENCH_EXIT_FAIL  1 /* ran, but something went wrong (errors, check failures) */
#define BENCH_EXIT_USAGE 2 /* bad command line */

#define BENCH_ADDR_TEXT 64 /* "[ffff:...:ffff]:65535" fits */

/* Latencies are recorded in µs into histograms of this shape (1 hour, 0.2 %). */
#define BENCH_HIST_HIGHEST   (3600ull * 1000 * 1000)
#define BENCH_HIST_PRECISION 10

struct histogram;

/* Subcommands: argv[0] is the subcommand name. Return an exit status. */
int send_main(int argc, char **argv);
int sink_main(int argc, char **argv);
int idle_main(int argc, char **argv);

struct event_base;

/* Monotonic clock in µs. */
uint64_t bench_now_us(void);

/*
 * A new event base with precise timers: libevent 2.1 otherwise reads the coarse clock
 * (4 ms steps), which would blur the open-loop clock and --delay. NULL on failure.
 */
struct event_base *bench_event_base_new(void);

/*
 * Prints "petrel-bench CMD: <message>" and the --help hint on stderr. The caller then
 * returns BENCH_EXIT_USAGE.
 */
void bench_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "petrel-bench CMD: <message>" on stderr (runtime errors). */
void bench_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Option values. Each returns 0, or -1 after printing a usage error naming the option
 * (opt, e.g. "--connections") and the accepted range.
 */
int bench_opt_uint(const char *cmd, const char *opt, const char *s, uint64_t min, uint64_t max,
                   uint64_t *out);
/* Seconds as a decimal number with an optional unit: "2", "1.5", "500ms", "2m". */
int bench_opt_seconds(const char *cmd, const char *opt, const char *s, double min, double max,
                      double *out);
/* A decimal number in min..max. */
int bench_opt_number(const char *cmd, const char *opt, const char *s, double min, double max,
                     double *out);
/* A percentage 0..100 (decimals allowed). */
int bench_opt_percent(const char *cmd, const char *opt, const char *s, double *out);

/* A resolved socket address and its printable form ("127.0.0.1:25", "[::1]:25"). */
struct bench_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[BENCH_ADDR_TEXT];
};

/*
 * Splits "host:port", "[v6]:port" into host and port. Returns 0, or -1 if malformed.
 * host and port must have room for the whole spec.
 */
int bench_split_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen);

/*
 * Resolves host and port numerically or by name (blocking: startup only), preferring the
 * first answer. passive for a listening address. Returns 0, or -1 with a message in err.
 */
int bench_resolve(const char *host, const char *port, bool passive, struct bench_addr *out,
                  char *err, size_t errlen);

/* Formats sa as "a.b.c.d:port" or "[v6]:port". */
void bench_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Raises the RLIMIT_NOFILE soft limit to the hard limit and returns the new soft limit
 * (or the old one if raising failed).
 */
uint64_t bench_raise_nofile(void);

/* Creates a non-blocking, close-on-exec TCP socket with TCP_NODELAY, or returns -1. */
int bench_tcp_socket(int family);

/* Sets TCP_NODELAY on fd (ignoring errors: it is a latency optimisation). */
void bench_tcp_nodelay(int fd);

/* Fills buf from the kernel's random source (falls back to time and pid). */
void bench_random_bytes(void *buf, size_t len);

/* xorshift64*: a fast PRNG for choices that need no cryptographic quality. */
uint64_t bench_rand(uint64_t *state);

/* Opens path for a JSON report ("-" is stdout). Returns NULL after printing an error. */
FILE *bench_json_open(const char *cmd, const char *path);
/* Closes f (unless stdout) and reports a write error. Returns 0 or -1. */
int bench_json_close(const char *cmd, FILE *f, const char *path);

/*
 * report.c: one summary table row for a latency histogram (µs recorded, ms printed),
 * the header of that table, and the same figures as a JSON object (µs).
 */
void bench_report_latency_header(FILE *f);
void bench_report_latency_row(FILE *f, const char *name, const struct histogram *h);
void bench_report_latency_json(struct json_writer *w, const char *key, const struct histogram *h);

/* Formats a byte rate as "12.3 MiB/s" into buf. */
const char *bench_format_rate_bytes(double bytes_per_s, char *buf, size_t len);

#endif /* PETREL_BENCH_H */
