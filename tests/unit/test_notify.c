/*
 * test_notify.c: notify.c, sd_notify(3) without libsystemd. Each test binds its own datagram
 * socket (a path in a fresh directory, or an abstract name), points NOTIFY_SOCKET at it, and
 * compares the exact datagram that arrives.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "petrel/notify.h"

/* A bound AF_UNIX datagram socket and the NOTIFY_SOCKET value that names it. */
struct test_notify_sink {
	int fd;
	char dir[64];
	char name[128]; /* "/tmp/…/notify" or "@petrel-test-…" */
};

static void
test_notify_sink_open(struct test_notify_sink *s, int abstract)
{
	struct sockaddr_un sun;
	struct timeval tv = { 5, 0 };
	socklen_t len;

	memset(s, 0, sizeof(*s));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_neq(s->fd, -1, "socket: %s", strerror(errno));
	cr_assert_eq(setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	if (abstract) {
		snprintf(s->name, sizeof(s->name), "@petrel-test-notify-%ld", (long)getpid());
		memcpy(sun.sun_path + 1, s->name + 1, strlen(s->name) - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(s->name));
	} else {
		snprintf(s->dir, sizeof(s->dir), "/tmp/petrel-notify-XXXXXX");
		cr_assert_not_null(mkdtemp(s->dir));
		snprintf(s->name, sizeof(s->name), "%s/notify", s->dir);
		cr_assert_lt(strlen(s->name), sizeof(sun.sun_path));
		memcpy(sun.sun_path, s->name, strlen(s->name));
		len = sizeof(sun);
	}
	cr_assert_eq(bind(s->fd, (struct sockaddr *)&sun, len), 0, "bind %s: %s", s->name,
	             strerror(errno));
	cr_assert_eq(setenv("NOTIFY_SOCKET", s->name, 1), 0);
}

/* The next datagram, as a string (caller frees). */
static char *
test_notify_recv(struct test_notify_sink *s)
{
	char buf[1024];
	ssize_t n;

	n = recv(s->fd, buf, sizeof(buf) - 1, 0);
	cr_assert_geq(n, 0, "no datagram on %s: %s", s->name, strerror(errno));
	buf[n] = '\0';
	return strdup(buf);
}

static void
test_notify_sink_close(struct test_notify_sink *s)
{
	close(s->fd);
	if (s->dir[0] != '\0') {
		unlink(s->name);
		rmdir(s->dir);
	}
	unsetenv("NOTIFY_SOCKET");
}

Test(notify, unset_is_a_no_op)
{
	unsetenv("NOTIFY_SOCKET");
	cr_expect_eq(notify_ready("x"), 0);
	cr_expect_eq(notify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	cr_expect_eq(notify_stopping("x"), 0, "empty counts as unset");
	unsetenv("NOTIFY_SOCKET");
}

Test(notify, ready_to_a_path)
{
	struct test_notify_sink s;
	char *got;

	test_notify_sink_open(&s, 0);
	cr_assert_eq(notify_ready("petrel %s running: listeners=%d", "0.1.0", 2), 1);
	got = test_notify_recv(&s);
	cr_expect_str_eq(got, "READY=1\nSTATUS=petrel 0.1.0 running: listeners=2");
	free(got);
	cr_assert_eq(notify_send("WATCHDOG=1"), 1);
	got = test_notify_recv(&s);
	cr_expect_str_eq(got, "WATCHDOG=1", "notify_send sends its text as it is");
	free(got);
	test_notify_sink_close(&s);
}

Test(notify, stopping_to_an_abstract_name)
{
	struct test_notify_sink s;
	char *got;

	test_notify_sink_open(&s, 1);
	cr_assert_eq(notify_stopping("petrel stopping: finishing sessions=%u", 3u), 1);
	got = test_notify_recv(&s);
	cr_expect_str_eq(got, "STOPPING=1\nSTATUS=petrel stopping: finishing sessions=3");
	free(got);
	test_notify_sink_close(&s);
}

Test(notify, reloading_carries_monotonic_usec)
{
	unsigned long long before, after, usec;
	struct test_notify_sink s;
	struct timespec ts;
	char status[64];
	char *got;

	test_notify_sink_open(&s, 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	before = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
	cr_assert_eq(notify_reloading("reloading"), 1);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	after = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
	got = test_notify_recv(&s);
	cr_assert_eq(
	        sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%63[^\n]", &usec, status), 2,
	        "got %s", got);
	cr_expect(usec >= before && usec <= after, "%llu not in [%llu, %llu]", usec, before, after);
	cr_expect_str_eq(status, "reloading");
	free(got);
	test_notify_sink_close(&s);
}

Test(notify, status_is_one_line_and_bounded)
{
	char long_text[NOTIFY_STATUS_MAX * 2], want[NOTIFY_STATUS_MAX + 16];
	struct test_notify_sink s;
	char *got;

	test_notify_sink_open(&s, 0);
	cr_assert_eq(notify_status("a\nb\rc"), 1);
	got = test_notify_recv(&s);
	cr_expect_str_eq(got, "STATUS=a b c", "a newline would end the STATUS= line");
	free(got);

	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	cr_assert_eq(notify_status("%s", long_text), 1);
	got = test_notify_recv(&s);
	snprintf(want, sizeof(want), "STATUS=%.*s", NOTIFY_STATUS_MAX, long_text);
	cr_expect_str_eq(got, want);
	free(got);
	test_notify_sink_close(&s);
}

Test(notify, bad_addresses_fail)
{
	char name[200];

	setenv("NOTIFY_SOCKET", "relative/notify", 1);
	errno = 0;
	cr_expect_eq(notify_ready("x"), -1);
	cr_expect_eq(errno, EAFNOSUPPORT);

	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	cr_expect_eq(notify_send("READY=1"), -1, "vsock: is not supported");
	cr_expect_eq(errno, EAFNOSUPPORT);

	setenv("NOTIFY_SOCKET", "@", 1);
	cr_expect_eq(notify_send("READY=1"), -1);
	cr_expect_eq(errno, EINVAL);

	memset(name, 'a', sizeof(name) - 1);
	name[0] = '/';
	name[sizeof(name) - 1] = '\0';
	setenv("NOTIFY_SOCKET", name, 1);
	cr_expect_eq(notify_send("READY=1"), -1);
	cr_expect_eq(errno, ENAMETOOLONG);

	setenv("NOTIFY_SOCKET", "/nonexistent/petrel/notify", 1);
	cr_expect_eq(notify_stopping("x"), -1, "nobody listens there");
	cr_expect_eq(errno, ENOENT);
	unsetenv("NOTIFY_SOCKET");
}
