/*
 * common.c - helpers shared by the petrel-bench subcommands: error messages, option
 * values, address parsing and resolution, sockets, clocks, limits and randomness.
 *
 * Nothing here keeps state; nothing here touches libevent.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

uint64_t
bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct event_base *
bench_event_base_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base = NULL;

	if (cfg == NULL)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

void
bench_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "petrel-bench %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'petrel-bench %s --help'.\n", cmd);
}

void
bench_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "petrel-bench %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
bench_opt_uint(const char *cmd, const char *opt, const char *s, uint64_t min, uint64_t max,
               uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		goto fail;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		goto fail;
	*out = v;
	return 0;
fail:
	bench_usage_error(cmd, "%s: '%s' is not a whole number in %llu..%llu", opt, s,
	                  (unsigned long long)min, (unsigned long long)max);
	return -1;
}

int
bench_opt_seconds(const char *cmd, const char *opt, const char *s, double min, double max,
                  double *out)
{
	double v, scale = 1.0;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)*s) && *s != '.')
		goto fail;
	v = strtod(s, &end);
	if (errno != 0 || end == s)
		goto fail;
	if (strcmp(end, "ms") == 0)
		scale = 0.001;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		scale = 60.0;
	else if (*end != '\0' && strcmp(end, "s") != 0)
		goto fail;
	v *= scale;
	if (!isfinite(v) || v < min || v > max)
		goto fail;
	*out = v;
	return 0;
fail:
	bench_usage_error(cmd,
	                  "%s: '%s' is not a time in %g..%g seconds (e.g. 10, 1.5s, 500ms, 2m)",
	                  opt, s, min, max);
	return -1;
}

int
bench_opt_number(const char *cmd, const char *opt, const char *s, double min, double max,
                 double *out)
{
	double v;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)*s) && *s != '.')
		goto fail;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
		goto fail;
	*out = v;
	return 0;
fail:
	bench_usage_error(cmd, "%s: '%s' is not a number in %g..%g", opt, s, min, max);
	return -1;
}

int
bench_opt_percent(const char *cmd, const char *opt, const char *s, double *out)
{
	double v;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)*s) && *s != '.')
		goto fail;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 100.0))
		goto fail;
	*out = v;
	return 0;
fail:
	bench_usage_error(cmd, "%s: '%s' is not a percentage in 0..100", opt, s);
	return -1;
}

int
bench_split_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *close;
	size_t hlen;

	if (spec[0] == '[') {
		close = strchr(spec, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hlen = (size_t)(close - spec - 1);
		colon = close + 1;
		spec++;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL || memchr(spec, ':', (size_t)(colon - spec)) != NULL)
			return -1;
		hlen = (size_t)(colon - spec);
	}
	if (hlen == 0 || hlen >= hostlen || strlen(colon + 1) >= portlen || colon[1] == '\0')
		return -1;
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

void
bench_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
}

int
bench_resolve(const char *host, const char *port, bool passive, struct bench_addr *out, char *err,
              size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = passive ? AI_PASSIVE : 0;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve '%s' port '%s': %s", host, port,
		         gai_strerror(rc));
		return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	bench_addr_format(res->ai_addr, out->text, sizeof(out->text));
	freeaddrinfo(res);
	return 0;
}

uint64_t
bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t old = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = old;
	}
	return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

void
bench_tcp_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int
bench_tcp_socket(int family)
{
	int fd;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return -1;
	bench_tcp_nodelay(fd);
	return fd;
}

void
bench_random_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t seed;
	size_t i;

	if (getrandom(buf, len, GRND_NONBLOCK) == (ssize_t)len)
		return;
	seed = bench_now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(bench_rand(&seed) >> 56);
}

uint64_t
bench_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

FILE *
bench_json_open(const char *cmd, const char *path)
{
	FILE *f;

	if (strcmp(path, "-") == 0)
		return stdout;
	f = fopen(path, "w");
	if (f == NULL)
		bench_error(cmd, "cannot write JSON report '%s': %s", path, strerror(errno));
	return f;
}

int
bench_json_close(const char *cmd, FILE *f, const char *path)
{
	int bad;

	if (f == stdout)
		return fflush(f) == 0 ? 0 : -1;
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		bench_error(cmd, "writing JSON report '%s' failed: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
