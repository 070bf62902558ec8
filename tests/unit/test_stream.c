/*
 * test_stream.c: net/stream over a socketpair (and loopback TCP for connect): reads into
 * reserved space until the socket is empty, edge-triggered reads of more than one round, end
 * of file with and without data in the same edge, pausing with data buffered or still in the
 * kernel, partial writes with a tiny socket buffer, write errors, timeouts, connect.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "petrel/net/stream.h"

/* What the callbacks saw. */
struct rec {
	struct event_base *base;
	struct stream st;
	unsigned reads;   /* read callbacks */
	unsigned drained; /* drained callbacks */
	short events;     /* event bits, or-ed */
	unsigned nevents; /* event callbacks */
	int event_errno;  /* errno with BEV_EVENT_ERROR */
	bool consume;     /* the read callback moves the input into `got` */
	bool pause_on_read;
	size_t events_at_read; /* nevents when the last read callback ran (ordering) */
	struct evbuffer *got;
};

static void
rec_read(struct stream *st, void *arg)
{
	struct rec *r = arg;

	r->reads++;
	r->events_at_read = r->nevents;
	if (r->consume)
		evbuffer_add_buffer(r->got, stream_input(st));
	if (r->pause_on_read)
		stream_set_reading(st, false);
}

static void
rec_drained(struct stream *st, void *arg)
{
	struct rec *r = arg;

	r->drained++;
}

static void
rec_event(struct stream *st, short what, void *arg)
{
	struct rec *r = arg;

	r->events |= what;
	r->nevents++;
	if (what & BEV_EVENT_ERROR)
		r->event_errno = errno;
}

static void
rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	signal(SIGPIPE, SIG_IGN);
	r->base = event_base_new();
	cr_assert_not_null(r->base);
	r->got = evbuffer_new();
	r->consume = true;
}

static void
rec_free(struct rec *r)
{
	stream_close(&r->st);
	evbuffer_free(r->got);
	event_base_free(r->base);
}

static void
nonblock(int fd)
{
	cr_assert_neq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), -1);
}

/* A socketpair: fds[0] for the stream (non-blocking), fds[1] for the test (blocking). */
static void
pair(struct rec *r, int fds[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	nonblock(fds[0]);
	cr_assert_eq(stream_open(&r->st, r->base, fds[0], rec_read, rec_drained, rec_event, r), 0);
}

/* Run the loop for about `ms` milliseconds, or until *flag becomes nonzero. */
static void
run(struct rec *r, unsigned ms, const unsigned *flag)
{
	struct timeval tv = { 0, 10 * 1000 };
	unsigned start = flag ? *flag : 0, i;

	for (i = 0; i < ms / 10 + 1; i++) {
		event_base_loopexit(r->base, &tv);
		event_base_loop(r->base, 0);
		if (flag && *flag != start)
			return;
	}
}

static void
send_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		cr_assert_gt(n, 0, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

Test(stream, reads_what_came_and_writes_at_once)
{
	struct rec r;
	int fds[2];
	char buf[64];

	rec_init(&r);
	pair(&r, fds);
	send_all(fds[1], "EHLO x\r\n", 8);
	run(&r, 500, &r.reads);
	cr_assert_eq(r.reads, 1);
	cr_assert_eq(evbuffer_get_length(r.got), 8);
	cr_assert_eq(memcmp(evbuffer_pullup(r.got, -1), "EHLO x\r\n", 8), 0);

	/* Writing: queued until flushed, then taken at once, no drained callback needed. */
	cr_assert_eq(stream_write(&r.st, "250 ok\r\n", 8), 0);
	cr_assert_eq(stream_output_length(&r.st), 8);
	cr_assert_eq(stream_flush(&r.st), 0);
	cr_assert_eq(stream_output_length(&r.st), 0);
	cr_assert_eq(read(fds[1], buf, sizeof(buf)), 8);
	cr_assert_eq(memcmp(buf, "250 ok\r\n", 8), 0);
	run(&r, 50, NULL);
	cr_assert_eq(r.drained, 0);
	cr_assert_eq(r.nevents, 0);
	close(fds[1]);
	rec_free(&r);
}

Test(stream, data_and_eof_in_one_edge)
{
	struct rec r;
	int fds[2];

	rec_init(&r);
	pair(&r, fds);
	/* Both arrive before the loop looks: one edge. The data comes first, then EOF. */
	send_all(fds[1], "QUIT\r\n", 6);
	shutdown(fds[1], SHUT_WR);
	run(&r, 1000, &r.nevents);
	cr_assert_eq(r.reads, 1);
	cr_assert_eq(r.events_at_read, 0, "data before EOF");
	cr_assert_eq(evbuffer_get_length(r.got), 6);
	cr_assert_eq(r.events, BEV_EVENT_EOF | BEV_EVENT_READING);
	cr_assert_eq(r.nevents, 1);
	/* The write side still works after the peer's half-close. */
	cr_assert_eq(stream_write(&r.st, "221 bye\r\n", 9), 0);
	cr_assert_eq(stream_flush(&r.st), 0);
	close(fds[1]);
	rec_free(&r);
}

Test(stream, eof_alone)
{
	struct rec r;
	int fds[2];

	rec_init(&r);
	pair(&r, fds);
	close(fds[1]);
	run(&r, 1000, &r.nevents);
	cr_assert_eq(r.reads, 0);
	cr_assert_eq(r.events, BEV_EVENT_EOF | BEV_EVENT_READING);
	run(&r, 50, NULL);
	cr_assert_eq(r.nevents, 1, "reported once");
	rec_free(&r);
}

Test(stream, edge_triggered_read_of_more_than_one_round)
{
	struct rec r;
	int fds[2], sz = 1 << 20;
	char chunk[4096];
	size_t sent = 0, i;
	ssize_t n;

	rec_init(&r);
	pair(&r, fds);
	setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	nonblock(fds[1]);
	/* Fill the socket once (one edge) with numbered octets. */
	for (;;) {
		for (i = 0; i < sizeof(chunk); i++)
			chunk[i] = (char)((sent + i) % 251);
		n = write(fds[1], chunk, sizeof(chunk));
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	cr_assert_gt(sent, 64 * 1024, "the socketpair took only %zu octets", sent);
	run(&r, 2000, NULL);
	cr_assert_eq(evbuffer_get_length(r.got), sent, "all %zu octets read without a new edge",
	             sent);
	cr_assert_gt(r.reads, 1, "more than one round (budget)");
	{
		unsigned char *p = evbuffer_pullup(r.got, -1);
		for (i = 0; i < sent; i++)
			if (p[i] != (unsigned char)(i % 251))
				cr_assert_fail("octet %zu is wrong", i);
	}
	close(fds[1]);
	rec_free(&r);
}

Test(stream, read_max_bounds_the_input)
{
	struct rec r;
	int fds[2];
	char data[32 * 1024];

	rec_init(&r);
	r.consume = false;
	pair(&r, fds);
	stream_set_read_max(&r.st, 8 * 1024);
	memset(data, 'a', sizeof(data));
	send_all(fds[1], data, sizeof(data));
	run(&r, 300, NULL);
	cr_assert_geq(r.reads, 1);
	cr_assert_lt(evbuffer_get_length(stream_input(&r.st)), sizeof(data),
	             "stopped at the limit");
	/* The owner consumes and says it wants more: reading goes on where it stopped. */
	while (evbuffer_get_length(r.got) < sizeof(data)) {
		unsigned before = r.reads;
		evbuffer_add_buffer(r.got, stream_input(&r.st));
		stream_set_reading(&r.st, true);
		run(&r, 500, &r.reads);
		if (r.reads == before && evbuffer_get_length(stream_input(&r.st)) == 0)
			break;
	}
	evbuffer_add_buffer(r.got, stream_input(&r.st));
	cr_assert_eq(evbuffer_get_length(r.got), sizeof(data));
	close(fds[1]);
	rec_free(&r);
}

Test(stream, pause_keeps_data_and_resume_reads_on)
{
	struct rec r;
	int fds[2];

	rec_init(&r);
	r.consume = false;
	r.pause_on_read = true; /* like a session entering WAIT with input left */
	pair(&r, fds);
	send_all(fds[1], "MAIL FROM:<a@b>\r\n", 17);
	run(&r, 500, &r.reads);
	cr_assert_eq(r.reads, 1);
	/* While paused: the edge for new data is noted, nothing is read, no callback. */
	send_all(fds[1], "RCPT TO:<c@d>\r\n", 15);
	run(&r, 200, NULL);
	cr_assert_eq(r.reads, 1);
	cr_assert_eq(evbuffer_get_length(stream_input(&r.st)), 17, "buffered input stays");
	/* Resume: the owner handles what is buffered itself; the stream reads the rest. */
	r.pause_on_read = false;
	r.consume = true;
	stream_set_reading(&r.st, true);
	run(&r, 500, &r.reads);
	cr_assert_eq(r.reads, 2);
	cr_assert_eq(evbuffer_get_length(r.got), 32);
	cr_assert_eq(memcmp(evbuffer_pullup(r.got, -1), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", 32),
	             0);
	close(fds[1]);
	rec_free(&r);
}

Test(stream, eof_while_paused_comes_after_resume)
{
	struct rec r;
	int fds[2];

	rec_init(&r);
	pair(&r, fds);
	stream_set_reading(&r.st, false);
	send_all(fds[1], "x\r\n", 3);
	close(fds[1]);
	run(&r, 200, NULL);
	cr_assert_eq(r.reads, 0);
	cr_assert_eq(r.nevents, 0);
	stream_set_reading(&r.st, true);
	run(&r, 1000, &r.nevents);
	cr_assert_eq(r.reads, 1);
	cr_assert_eq(evbuffer_get_length(r.got), 3);
	cr_assert_eq(r.events, BEV_EVENT_EOF | BEV_EVENT_READING);
	rec_free(&r);
}

Test(stream, partial_write_waits_for_the_socket)
{
	struct rec r;
	int fds[2], small = 4096;
	static char data[512 * 1024], back[512 * 1024];
	size_t got = 0, i;
	ssize_t n;

	rec_init(&r);
	pair(&r, fds);
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)(i % 253);
	cr_assert_eq(stream_write(&r.st, data, sizeof(data)), 0);
	cr_assert_eq(stream_flush(&r.st), 0);
	cr_assert_gt(stream_output_length(&r.st), 0, "a tiny buffer cannot take 512 KiB");
	cr_assert(r.st.writing, "the write event is armed");
	/* A second flush while the socket is full does nothing. */
	cr_assert_eq(stream_flush(&r.st), 0);
	nonblock(fds[1]);
	while (got < sizeof(data)) {
		n = read(fds[1], back + got, sizeof(back) - got);
		if (n > 0)
			got += (size_t)n;
		else
			run(&r, 10, NULL);
		cr_assert_eq(r.nevents, 0);
	}
	run(&r, 200, &r.drained);
	cr_assert_eq(r.drained, 1, "drained once, when all had gone");
	cr_assert_eq(stream_output_length(&r.st), 0);
	cr_assert_not(r.st.writing, "the write event is disarmed");
	cr_assert_eq(memcmp(data, back, sizeof(data)), 0);
	close(fds[1]);
	rec_free(&r);
}

Test(stream, write_error_is_returned_and_reported)
{
	struct rec r;
	int fds[2];

	rec_init(&r);
	r.consume = false;
	pair(&r, fds);
	stream_set_reading(&r.st, false); /* see only the write side */
	close(fds[1]);
	cr_assert_eq(stream_write(&r.st, "250 ok\r\n", 8), 0);
	cr_assert_eq(stream_flush(&r.st), -1);
	cr_assert_eq(errno, EPIPE);
	run(&r, 500, &r.nevents);
	cr_assert_eq(r.events, BEV_EVENT_ERROR | BEV_EVENT_WRITING);
	cr_assert_eq(r.event_errno, EPIPE);
	rec_free(&r);
}

Test(stream, flush_later_runs_drained_from_the_loop)
{
	struct rec r;
	int fds[2];
	char buf[16];

	rec_init(&r);
	pair(&r, fds);
	cr_assert_eq(stream_write(&r.st, "421 bye\r\n", 9), 0);
	stream_flush_later(&r.st);
	cr_assert_eq(r.drained, 0, "never from inside the call");
	run(&r, 500, &r.drained);
	cr_assert_eq(r.drained, 1);
	cr_assert_eq(read(fds[1], buf, sizeof(buf)), 9);
	close(fds[1]);
	rec_free(&r);
}

Test(stream, read_timeout_ignored_while_paused)
{
	struct rec r;
	int fds[2];
	struct timeval tv = { 0, 100 * 1000 };

	rec_init(&r);
	pair(&r, fds);
	stream_set_timeouts(&r.st, &tv, NULL);
	stream_set_reading(&r.st, false);
	run(&r, 400, NULL);
	cr_assert_eq(r.nevents, 0, "waiting for ourselves is no timeout");
	stream_set_reading(&r.st, true);
	run(&r, 1000, &r.nevents);
	cr_assert_eq(r.events, BEV_EVENT_TIMEOUT | BEV_EVENT_READING);
	close(fds[1]);
	rec_free(&r);
}

Test(stream, activity_keeps_the_read_timer_away)
{
	struct rec r;
	int fds[2], i;
	struct timeval tv = { 0, 200 * 1000 };

	rec_init(&r);
	pair(&r, fds);
	stream_set_timeouts(&r.st, &tv, NULL);
	for (i = 0; i < 6; i++) {
		send_all(fds[1], "NOOP\r\n", 6);
		run(&r, 100, NULL);
	}
	cr_assert_eq(r.nevents, 0);
	cr_assert_eq(evbuffer_get_length(r.got), 36);
	close(fds[1]);
	rec_free(&r);
}

static int
listener(struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)sin, &len), 0);
	return fd;
}

Test(stream, connect_then_banner)
{
	struct rec r;
	struct sockaddr_in sin;
	struct timeval tv = { 5, 0 };
	int lfd, cfd;

	rec_init(&r);
	lfd = listener(&sin);
	cr_assert_eq(stream_connect(&r.st, r.base, (struct sockaddr *)&sin, sizeof(sin), &tv,
	                            rec_read, rec_drained, rec_event, &r),
	             0);
	cr_assert_eq(r.nevents, 0, "never from inside the call");
	cfd = accept(lfd, NULL, NULL);
	cr_assert_geq(cfd, 0);
	send_all(cfd, "220 hi\r\n", 8);
	run(&r, 1000, &r.nevents);
	cr_assert_eq(r.events, BEV_EVENT_CONNECTED);
	run(&r, 1000, &r.reads);
	cr_assert_eq(evbuffer_get_length(r.got), 8);
	close(cfd);
	close(lfd);
	rec_free(&r);
}

Test(stream, connect_refused_is_reported_from_the_loop)
{
	struct rec r;
	struct sockaddr_in sin;
	int lfd;

	rec_init(&r);
	lfd = listener(&sin);
	close(lfd); /* nobody listens there any more */
	cr_assert_eq(stream_connect(&r.st, r.base, (struct sockaddr *)&sin, sizeof(sin), NULL,
	                            rec_read, rec_drained, rec_event, &r),
	             0);
	cr_assert_eq(r.nevents, 0);
	run(&r, 1000, &r.nevents);
	cr_assert_eq(r.events, BEV_EVENT_ERROR);
	cr_assert_eq(r.event_errno, ECONNREFUSED);
	rec_free(&r);
}

/* The owner frees itself (closes the stream) inside a callback: nothing touches it after. */
struct owner {
	struct stream st;
	unsigned *closed;
};

static void
owner_read(struct stream *st, void *arg)
{
	struct owner *o = arg;

	(*o->closed)++;
	stream_close(&o->st);
	free(o);
}

static void
owner_event(struct stream *st, short what, void *arg)
{
	cr_assert_fail("no event after the close");
}

Test(stream, close_inside_the_read_callback)
{
	struct event_base *base = event_base_new();
	struct owner *o = calloc(1, sizeof(*o));
	struct timeval tv = { 0, 200 * 1000 };
	unsigned closed = 0;
	int fds[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	nonblock(fds[0]);
	o->closed = &closed;
	cr_assert_eq(stream_open(&o->st, base, fds[0], owner_read, NULL, owner_event, o), 0);
	/* Data and EOF at once: the stream has an activation pending to report the EOF. */
	send_all(fds[1], "QUIT\r\n", 6);
	close(fds[1]);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	cr_assert_eq(closed, 1);
	event_base_free(base);
}
