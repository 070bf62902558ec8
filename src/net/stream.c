/*
 * net/stream.c: a connected socket with input and output chains (see stream.h for the model).
 *
 * Owns: the socket (plain mode) or the bufferevent that owns it (TLS mode), the two chains in
 * plain mode, and two embedded events. Does not own: the event base, the owner, its callbacks.
 *
 * Start reading at stream_read_ev(): an edge (or a hand-made activation) sets may_read; unless
 * the owner has paused, stream_fill() reads until the socket is empty for now, and the read
 * callback follows. Writing is the owner's call to stream_flush(); stream_write_ev() runs only
 * when the socket was full (or for a connect, or by stream_flush_later()).
 *
 * Re-entrancy: every handler calls at most one owner callback, as its last action, and anything
 * it must do afterwards (read on, report the end of input) it asks for beforehand with
 * event_active() on its own event: stream_close() from inside the callback cancels that.
 */
#include "petrel/net/stream.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#define STREAM_READ_FIRST  4096        /* the first read of a round: one command, one reply */
#define STREAM_READ_MORE   32768       /* later reads of the same round: a body is coming */
#define STREAM_READ_BUDGET (64 * 1024) /* then others get their turn (event_active) */

static void stream_read_ev(evutil_socket_t fd, short what, void *arg);
static void stream_write_ev(evutil_socket_t fd, short what, void *arg);
static void stream_kick_ev(evutil_socket_t fd, short what, void *arg);
static void stream_bev_read(struct bufferevent *bev, void *arg);
static void stream_bev_write(struct bufferevent *bev, void *arg);
static void stream_bev_event(struct bufferevent *bev, short what, void *arg);

static void
stream_init(struct stream *st, struct event_base *base, stream_data_cb read_cb,
            stream_data_cb drained_cb, stream_event_cb event_cb, void *arg)
{
	memset(st, 0, sizeof(*st));
	st->base = base;
	st->fd = -1;
	st->read_cb = read_cb;
	st->drained_cb = drained_cb;
	st->event_cb = event_cb;
	st->arg = arg;
}

static bool
stream_input_full(const struct stream *st)
{
	return st->read_max > 0 && evbuffer_get_length(st->in) >= st->read_max;
}

/* ---- plain mode: reading ---- */

/*
 * A reservation that got no data leaves an empty chain at the end of the input, and
 * evbuffer_drain() of an empty buffer returns early without freeing it: give it one octet and
 * drain that, which frees every chain. An idle connection keeps no read buffer.
 */
static void
stream_release_input(struct stream *st)
{
	if (evbuffer_get_length(st->in) == 0 && evbuffer_add(st->in, "", 1) == 0)
		evbuffer_drain(st->in, 1);
}

/*
 * One round of reading: into reserved space, until a short read (the socket is empty for now:
 * the next arrival makes a new edge), EAGAIN, end of file, an error, the input limit or the
 * round's budget. Returns the octets read; may_read stays set only if the round stopped early.
 *
 * A short read says nothing of a FIN that came with the last data (one edge for both): the
 * read event also asks for EV_CLOSED (EPOLLRDHUP), and once that was seen, reading goes on
 * to the end of file. (libevent 2.1 reports a reset as EV_READ alone; one that comes with the
 * last data shows at the next write or timeout, like a peer that vanished.)
 */
static size_t
stream_fill(struct stream *st)
{
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	size_t total = 0, want = STREAM_READ_FIRST, space, left;
	bool reserved = false;
	ssize_t n;
	int nvec, i;

	while (st->may_read && !stream_input_full(st) && total < STREAM_READ_BUDGET) {
		if (st->read_max > 0 && st->read_max - evbuffer_get_length(st->in) < want)
			want = st->read_max - evbuffer_get_length(st->in);
		nvec = evbuffer_reserve_space(st->in, (ev_ssize_t)want, vec, 2);
		if (nvec <= 0) {
			st->error = ENOMEM;
			st->may_read = false;
			break;
		}
		reserved = true;
		for (space = 0, i = 0; i < nvec; i++) {
			/* the chain may offer more than asked: the input limit is a limit */
			iov[i].iov_base = vec[i].iov_base;
			iov[i].iov_len =
			        vec[i].iov_len < want - space ? vec[i].iov_len : want - space;
			space += iov[i].iov_len;
		}
		n = readv(st->fd, iov, nvec);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				st->eof = true;
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				st->error = errno;
			st->may_read = false;
			break;
		}
		for (left = (size_t)n, i = 0; i < nvec; i++) {
			vec[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
			left -= vec[i].iov_len;
		}
		evbuffer_commit_space(st->in, vec, (size_t)n > iov[0].iov_len ? 2 : 1);
		total += (size_t)n;
		if ((size_t)n < space && !st->peer_closed)
			st->may_read = false;
		want = STREAM_READ_MORE;
	}
	if (reserved && total == 0)
		stream_release_input(st);
	return total;
}

static void
stream_read_ev(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;
	bool ended;

	if (what & EV_CLOSED)
		st->peer_closed = true;
	if ((what & (EV_READ | EV_CLOSED)) && !st->eof && st->error == 0)
		st->may_read = true;
	if (st->connecting || st->paused)
		return; /* a timeout now is ours (waiting for the disk), not the peer's */
	if ((what & EV_TIMEOUT) && !st->may_read) {
		if (!st->eof)
			st->event_cb(st, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, st->arg);
		return;
	}
	if (stream_fill(st) > 0) {
		ended = (st->eof || st->error != 0) && !st->reported;
		if ((st->may_read && !stream_input_full(st)) || ended)
			event_active(&st->rev, EV_READ, 1); /* read on, or report the end, after */
		st->read_cb(st, st->arg);
		return;
	}
	if ((st->eof || st->error != 0) && !st->reported) {
		st->reported = true;
		if (st->error != 0) {
			errno = st->error;
			st->event_cb(st, BEV_EVENT_ERROR | BEV_EVENT_READING, st->arg);
		} else {
			st->event_cb(st, BEV_EVENT_EOF | BEV_EVENT_READING, st->arg);
		}
	}
}

/* ---- plain mode: writing ---- */

/* Write until the output is empty or the socket is full. 0, or -1 (errno set). */
static int
stream_write_out(struct stream *st)
{
	int n;

	while (evbuffer_get_length(st->out) > 0) {
		/* writev of the memory chains, or sendfile of a file segment at the front */
		n = evbuffer_write(st->out, st->fd);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
	}
	return 0;
}

static void
stream_stop_writing(struct stream *st)
{
	if (st->writing) {
		event_del(&st->wev);
		st->writing = false;
	}
}

static void
stream_start_writing(struct stream *st)
{
	if (!st->writing) {
		event_add(&st->wev, st->write_timeout_set ? &st->write_timeout : NULL);
		st->writing = true;
	}
}

/* The connect finished (or failed, or timed out). */
static void
stream_connect_done(struct stream *st, short what)
{
	socklen_t len = sizeof(int);
	int err = st->error;

	if (what & EV_TIMEOUT) {
		st->event_cb(st, BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING, st->arg);
		return;
	}
	if (err == 0 && getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == EINPROGRESS || err == EINTR)
		return; /* not yet */
	stream_stop_writing(st);
	st->connecting = false;
	if (err != 0) {
		st->error = err;
		st->reported = true;
		errno = err;
		st->event_cb(st, BEV_EVENT_ERROR, st->arg);
		return;
	}
	if (st->may_read && !st->paused)
		event_active(&st->rev, EV_READ, 1); /* the banner came with the connection */
	if (evbuffer_get_length(st->out) > 0)
		stream_flush(st);
	st->event_cb(st, BEV_EVENT_CONNECTED, st->arg);
}

static void
stream_write_ev(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	if (st->connecting) {
		stream_connect_done(st, what);
		return;
	}
	if (st->error == 0 && (what & EV_TIMEOUT)) {
		if (st->writing)
			st->event_cb(st, BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING, st->arg);
		return;
	}
	if (st->error == 0 && stream_write_out(st) == -1)
		st->error = errno;
	if (st->error != 0) {
		stream_stop_writing(st);
		if (!st->reported) {
			st->reported = true;
			errno = st->error;
			st->event_cb(st, BEV_EVENT_ERROR | BEV_EVENT_WRITING, st->arg);
		}
		return;
	}
	if (evbuffer_get_length(st->out) > 0) {
		stream_start_writing(st);
		return;
	}
	stream_stop_writing(st);
	if (st->drained_cb)
		st->drained_cb(st, st->arg);
}

/* ---- TLS mode: the bufferevent does the I/O ---- */

static void
stream_bev_read(struct bufferevent *bev, void *arg)
{
	struct stream *st = arg;

	st->read_cb(st, st->arg);
}

static void
stream_bev_write(struct bufferevent *bev, void *arg)
{
	struct stream *st = arg;

	if (st->drained_cb)
		st->drained_cb(st, st->arg);
}

static void
stream_bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct stream *st = arg;

	/* After a read timeout, EOF or error the bufferevent has stopped reading by itself:
	 * stream_set_reading(st, true) must enable it again. */
	if ((what & BEV_EVENT_READING) &&
	    (what & (BEV_EVENT_TIMEOUT | BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		st->paused = true;
	st->event_cb(st, what, st->arg);
}

/* stream_flush_later() in TLS mode with nothing left to write. */
static void
stream_kick_ev(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	if (st->drained_cb)
		st->drained_cb(st, st->arg);
}

/* Hand the I/O to bev (owned from now on), with what the owner has set so far. */
static void
stream_use_bev(struct stream *st, struct bufferevent *bev)
{
	st->bev = bev;
	st->fd = -1;
	st->in = bufferevent_get_input(bev);
	st->out = bufferevent_get_output(bev);
	st->may_read = st->eof = st->writing = false;
	event_assign(&st->wev, st->base, -1, 0, stream_kick_ev, st);
	bufferevent_setcb(bev, stream_bev_read, stream_bev_write, stream_bev_event, st);
	bufferevent_setwatermark(bev, EV_READ, 0, st->read_max);
	bufferevent_set_timeouts(bev, st->read_timeout_set ? &st->read_timeout : NULL,
	                         st->write_timeout_set ? &st->write_timeout : NULL);
	bufferevent_enable(bev, st->paused ? EV_WRITE : EV_READ | EV_WRITE);
}

/*
 * Under a TLS filter, the last records (a 221 or 421, a handshake alert) may still sit in the
 * plain bufferevent below when the filter's own output is empty: write them out once, without
 * blocking, before the socket is closed, or the peer never sees them.
 */
static void
stream_flush_below(struct bufferevent *bev)
{
	struct bufferevent *under = bufferevent_get_underlying(bev);
	struct evbuffer *out;

	if (under == NULL)
		return;
	out = bufferevent_get_output(under);
	if (evbuffer_get_length(out) > 0) {
		/* A socket bufferevent keeps its output's front frozen (only it may drain it). */
		evbuffer_unfreeze(out, 1);
		evbuffer_write(out, bufferevent_getfd(under));
	}
}

/* ---- life cycle ---- */

int
stream_open(struct stream *st, struct event_base *base, evutil_socket_t fd, stream_data_cb read_cb,
            stream_data_cb drained_cb, stream_event_cb event_cb, void *arg)
{
	int saved;

	stream_init(st, base, read_cb, drained_cb, event_cb, arg);
	st->fd = fd;
	if ((st->in = evbuffer_new()) == NULL || (st->out = evbuffer_new()) == NULL)
		goto fail;
	/* A file segment (evbuffer_add_file) in the output then goes out with sendfile. */
	evbuffer_set_flags(st->out, EVBUFFER_FLAG_DRAINS_TO_FD);
	if (event_assign(&st->rev, base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET,
	                 stream_read_ev, st) == -1 ||
	    event_assign(&st->wev, base, fd, EV_WRITE | EV_PERSIST | EV_ET, stream_write_ev, st) ==
	            -1 ||
	    event_add(&st->rev, NULL) == -1)
		goto fail;
	st->open = true;
	return 0;
fail:
	saved = errno;
	if (st->in)
		evbuffer_free(st->in);
	if (st->out)
		evbuffer_free(st->out);
	evutil_closesocket(fd);
	st->in = st->out = NULL;
	st->fd = -1;
	errno = saved ? saved : ENOMEM;
	return -1;
}

int
stream_connect(struct stream *st, struct event_base *base, const struct sockaddr *sa,
               socklen_t salen, const struct timeval *timeout, stream_data_cb read_cb,
               stream_data_cb drained_cb, stream_event_cb event_cb, void *arg)
{
	evutil_socket_t fd;
	int saved, rc;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (stream_open(st, base, fd, read_cb, drained_cb, event_cb, arg) == -1)
		return -1;
	st->connecting = true;
	if (timeout) {
		st->write_timeout = *timeout;
		st->write_timeout_set = true;
	}
	rc = connect(fd, sa, salen);
	if (rc == 0 || errno == ECONNREFUSED) {
		/* Done (or refused) at once: the owner hears of it from the loop all the same. */
		st->error = rc == 0 ? 0 : ECONNREFUSED;
		event_active(&st->wev, EV_WRITE, 1);
		return 0;
	}
	if (errno != EINPROGRESS) {
		saved = errno;
		stream_close(st);
		errno = saved;
		return -1;
	}
	stream_start_writing(st);
	return 0;
}

int
stream_open_tls(struct stream *st, struct event_base *base, evutil_socket_t fd, SSL *ssl,
                enum bufferevent_ssl_state state, stream_data_cb read_cb, stream_data_cb drained_cb,
                stream_event_cb event_cb, void *arg)
{
	struct bufferevent *bev;

	stream_init(st, base, read_cb, drained_cb, event_cb, arg);
	bev = bufferevent_openssl_socket_new(base, fd, ssl, state,
	                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return -1;
	}
	stream_use_bev(st, bev);
	st->open = true;
	return 0;
}

int
stream_start_tls(struct stream *st, SSL *ssl, enum bufferevent_ssl_state state)
{
	struct bufferevent *plain, *filter;

	if (!st->open || st->bev != NULL || st->connecting) {
		SSL_free(ssl);
		return -1;
	}
	/* Our edge-triggered events leave the socket before level-triggered ones join it. */
	event_del(&st->rev);
	event_del(&st->wev);
	st->writing = false;
	plain = bufferevent_socket_new(st->base, st->fd, BEV_OPT_CLOSE_ON_FREE);
	if (plain == NULL) {
		event_add(&st->rev, st->read_timeout_set ? &st->read_timeout : NULL);
		if (evbuffer_get_length(st->out) > 0)
			stream_start_writing(st);
		SSL_free(ssl);
		return -1;
	}
	/* The plain bufferevent owns the socket now, and takes what is queued (writing is on in
	 * a new bufferevent). Moving chains into a buffer frozen only at its front cannot fail. */
	(void)bufferevent_write_buffer(plain, st->out);
	evbuffer_free(st->in);
	evbuffer_free(st->out);
	filter = bufferevent_openssl_filter_new(st->base, plain, ssl, state,
	                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (filter == NULL) {
		SSL_free(ssl);
		stream_use_bev(st, plain);
		return -1;
	}
	/* The filter owns the plain bufferevent, and enables it: the 220 leaves first. */
	stream_use_bev(st, filter);
	return 0;
}

SSL *
stream_ssl(const struct stream *st)
{
	return st->bev ? bufferevent_openssl_get_ssl(st->bev) : NULL;
}

unsigned long
stream_ssl_error(const struct stream *st)
{
	return st->bev && bufferevent_openssl_get_ssl(st->bev)
	               ? bufferevent_get_openssl_error(st->bev)
	               : 0;
}

void
stream_ssl_allow_dirty_shutdown(struct stream *st)
{
	if (st->bev)
		bufferevent_openssl_set_allow_dirty_shutdown(st->bev, 1);
}

void
stream_close(struct stream *st)
{
	if (!st->open)
		return;
	event_del(&st->wev);
	if (st->bev) {
		stream_flush_below(st->bev);
		bufferevent_free(st->bev);
	} else {
		event_del(&st->rev);
		evbuffer_free(st->in);
		evbuffer_free(st->out);
		evutil_closesocket(st->fd);
	}
	st->bev = NULL;
	st->in = st->out = NULL;
	st->fd = -1;
	st->open = false;
}

bool
stream_is_open(const struct stream *st)
{
	return st->open;
}

/* ---- data ---- */

struct evbuffer *
stream_input(const struct stream *st)
{
	return st->in;
}

struct evbuffer *
stream_output(const struct stream *st)
{
	return st->out;
}

int
stream_write(struct stream *st, const void *data, size_t len)
{
	return evbuffer_add(st->out, data, len);
}

size_t
stream_output_length(const struct stream *st)
{
	return st->out ? evbuffer_get_length(st->out) : 0;
}

int
stream_flush(struct stream *st)
{
	if (!st->open || st->bev != NULL)
		return 0;
	if (st->error != 0) {
		errno = st->error;
		return -1;
	}
	if (st->writing || st->connecting || evbuffer_get_length(st->out) == 0)
		return 0;
	if (stream_write_out(st) == -1) {
		st->error = errno;
		event_active(&st->wev, EV_WRITE, 1); /* report it from the loop */
		errno = st->error;
		return -1;
	}
	if (evbuffer_get_length(st->out) > 0)
		stream_start_writing(st);
	return 0;
}

void
stream_flush_later(struct stream *st)
{
	if (!st->open)
		return;
	if (st->bev == NULL) {
		if (!st->writing && !st->connecting)
			event_active(&st->wev, EV_WRITE, 1);
	} else if (evbuffer_get_length(st->out) > 0) {
		bufferevent_enable(st->bev, EV_WRITE); /* its write callback follows the drain */
	} else {
		event_active(&st->wev, 0, 1);
	}
}

void
stream_set_reading(struct stream *st, bool on)
{
	if (!st->open || (!on && st->paused))
		return;
	if (st->bev != NULL) {
		if (on == st->paused) {
			if (on)
				bufferevent_enable(st->bev, EV_READ);
			else
				bufferevent_disable(st->bev, EV_READ);
		}
		st->paused = !on;
		return;
	}
	if (!on) {
		st->paused = true;
		return;
	}
	if (st->paused) {
		st->paused = false;
		if (st->read_timeout_set)
			event_add(&st->rev, &st->read_timeout); /* afresh: only a timer update */
	}
	if (st->connecting)
		return;
	if ((st->may_read && !stream_input_full(st)) ||
	    ((st->eof || st->error != 0) && !st->reported))
		event_active(&st->rev, EV_READ, 1);
}

void
stream_set_timeouts(struct stream *st, const struct timeval *read, const struct timeval *write)
{
	st->read_timeout_set = read != NULL;
	if (read)
		st->read_timeout = *read;
	st->write_timeout_set = write != NULL;
	if (write)
		st->write_timeout = *write;
	if (!st->open)
		return;
	if (st->bev != NULL) {
		bufferevent_set_timeouts(st->bev, read, write);
		return;
	}
	/* Both events are already in the kernel's list: these only move timers. */
	if (read)
		event_add(&st->rev, read);
	else
		event_remove_timer(&st->rev);
	if (st->writing) {
		if (write)
			event_add(&st->wev, write);
		else
			event_remove_timer(&st->wev);
	}
}

void
stream_set_read_max(struct stream *st, size_t max)
{
	st->read_max = max;
	if (st->open && st->bev != NULL)
		bufferevent_setwatermark(st->bev, EV_READ, 0, max);
}

evutil_socket_t
stream_fd(const struct stream *st)
{
	return st->fd;
}
