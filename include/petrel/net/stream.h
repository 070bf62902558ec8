/*
 * net/stream.h: one connected socket with an input and an output chain on the event loop: what
 * a bufferevent does for petrel's SMTP connections, with fewer system calls in plain text.
 *
 * Plain mode (the common case) drives the socket itself:
 * - One read event, registered once and edge-triggered (EV_READ|EV_CLOSED|EV_PERSIST|EV_ET),
 *   stays in the kernel's interest list for the life of the stream. An edge only says "there may be
 *   something to read" (may_read); the stream reads into space reserved in the input chain
 *   (evbuffer_reserve_space + readv, no FIONREAD) until a short read, EAGAIN, end of file, the
 *   input limit, or the per-round budget, then calls the read callback.
 * - Pausing (stream_set_reading(st, false)) makes no system call: the stream simply stops
 *   reading. Resuming reads again only if an edge came in the meantime (or a round stopped
 *   early), through event_active(): again no system call.
 * - Writes are the owner's: it appends replies to the output (stream_write, or the evbuffer) and
 *   calls stream_flush() once, at the end of handling what it read; the flush writes at once
 *   (writev, or sendfile for a file segment). Only if the socket cannot take everything is the
 *   write event armed; it is disarmed once the output has drained.
 * - Timeouts: the read event's timer is re-armed by libevent whenever the event runs, so
 *   keeping it costs nothing per message. A read timeout while paused is ignored: the owner is
 *   waiting for itself (its disk), not for the peer. The write timeout runs only while the
 *   write event is armed.
 * So a connection that is never short of socket buffer costs no epoll_ctl after its first.
 *
 * TLS mode wraps a bufferevent (bufferevent_openssl_socket_new for implicit TLS, or a filter
 * put over the socket by stream_start_tls() for STARTTLS): the same functions and callbacks,
 * with libevent doing the I/O. stream_flush() is then a no-op (the bufferevent writes by
 * itself).
 *
 * Callbacks run only from the event loop, never from inside a stream_* call. After calling
 * one, the stream does not touch itself again, so a callback may stream_close() the stream and
 * free its owner. The event bits are the bufferevent ones (BEV_EVENT_READING, _WRITING, _EOF,
 * _ERROR, _TIMEOUT, _CONNECTED), and errno holds the error with BEV_EVENT_ERROR.
 *
 * A struct stream is embedded in its owner: no allocation of its own besides the two chains.
 * While idle (input and output empty) the chains hold no memory.
 */
#ifndef PETREL_NET_STREAM_H
#define PETREL_NET_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <openssl/ssl.h>

struct stream;

/* New input (read), or the output has drained (drained). */
typedef void (*stream_data_cb)(struct stream *st, void *arg);
/* BEV_EVENT_* bits: EOF, ERROR (errno set), TIMEOUT with READING or WRITING; CONNECTED. */
typedef void (*stream_event_cb)(struct stream *st, short what, void *arg);

/* The fields are private to stream.c; the struct is here only to be embedded. */
struct stream {
	struct event_base *base;
	evutil_socket_t fd;      /* plain mode: owned; -1 in TLS mode (the bufferevent owns it) */
	struct bufferevent *bev; /* TLS mode: owned (it owns the socket); NULL in plain mode */
	struct evbuffer *in;     /* plain mode: owned; TLS mode: the bufferevent's */
	struct evbuffer *out;
	struct event rev; /* plain: EV_READ|EV_CLOSED|EV_PERSIST|EV_ET, for the stream's life */
	struct event wev; /* plain: EV_WRITE|EV_PERSIST|EV_ET, added only while output waits */
	stream_data_cb read_cb;
	stream_data_cb drained_cb; /* may be NULL */
	stream_event_cb event_cb;
	void *arg;
	struct timeval read_timeout; /* meaningful when read_timeout_set */
	struct timeval write_timeout;
	size_t read_max; /* stop reading while this much input waits (0: no limit) */
	int error;       /* errno of a failed read or write, to be reported */
	bool open;
	bool connecting; /* stream_connect() not finished */
	bool read_timeout_set;
	bool write_timeout_set;
	bool paused;      /* the owner does not want input now */
	bool may_read;    /* an edge came (or a round stopped early): the socket may have more */
	bool peer_closed; /* EV_CLOSED came: read on past short reads, to the end of file */
	bool eof;         /* the peer closed (read returned 0) */
	bool reported;    /* the end (EOF or error) went to event_cb */
	bool writing;     /* wev is added: the output waits for the socket */
};

/*
 * Plain mode over a connected non-blocking socket. Takes ownership of fd (closed by
 * stream_close(), or here on failure). Reading starts at once. 0, or -1 (errno set).
 */
int stream_open(struct stream *st, struct event_base *base, evutil_socket_t fd,
                stream_data_cb read_cb, stream_data_cb drained_cb, stream_event_cb event_cb,
                void *arg);

/*
 * Plain mode on a new non-blocking socket connecting to sa: event_cb hears CONNECTED, or ERROR
 * (errno set), or TIMEOUT|WRITING after `timeout` (NULL: none), always from the loop. Returns
 * -1 (errno set, nothing open) only if no socket could be made or the connect failed at once
 * with another error than a refusal; a refusal is reported like a failure later on.
 */
int stream_connect(struct stream *st, struct event_base *base, const struct sockaddr *sa,
                   socklen_t salen, const struct timeval *timeout, stream_data_cb read_cb,
                   stream_data_cb drained_cb, stream_event_cb event_cb, void *arg);

/*
 * TLS mode over an accepted socket (implicit TLS, RFC 8314): bufferevent_openssl_socket_new.
 * Takes ownership of fd and ssl (both freed here on failure). 0, or -1.
 */
int stream_open_tls(struct stream *st, struct event_base *base, evutil_socket_t fd, SSL *ssl,
                    enum bufferevent_ssl_state state, stream_data_cb read_cb,
                    stream_data_cb drained_cb, stream_event_cb event_cb, void *arg);

/*
 * STARTTLS (RFC 3207): from now on TLS through a filter over the same socket. Input still
 * buffered is discarded (plain text must never pass for protected text); output still queued
 * (the 220) leaves in the clear before the handshake. Timeouts and the input limit carry over.
 * Takes ownership of ssl (freed on failure). On failure the stream stays usable in the clear,
 * so the owner can still send its last reply. 0, or -1.
 */
int stream_start_tls(struct stream *st, SSL *ssl, enum bufferevent_ssl_state state);

/* TLS mode: the SSL (NULL in plain mode), the last OpenSSL error (0 if none). */
SSL *stream_ssl(const struct stream *st);
unsigned long stream_ssl_error(const struct stream *st);
/* TLS mode: a close without close_notify is an EOF, not an error (SMTP frames its data). */
void stream_ssl_allow_dirty_shutdown(struct stream *st);

/*
 * Close the socket and free what the stream holds; no callback runs after this. In TLS mode the
 * last records still below the filter are written once, without blocking (a 221 or an alert).
 * A stream that is not open (zeroed, or closed) is left alone.
 */
void stream_close(struct stream *st);

bool stream_is_open(const struct stream *st);

/* The chains. The input is the owner's to consume; the output is the owner's to append to. */
struct evbuffer *stream_input(const struct stream *st);
struct evbuffer *stream_output(const struct stream *st);

/* Append to the output (nothing is sent before stream_flush). 0, or -1 (no memory). */
int stream_write(struct stream *st, const void *data, size_t len);

/* What waits in the output (queued and not yet taken by the socket). */
size_t stream_output_length(const struct stream *st);

/*
 * Plain mode: write the output now; arm the write event only for what the socket did not
 * take (drained_cb then follows once it has all gone). Returns 0, or -1 when the socket failed
 * (errno set): the failure is also reported to event_cb (ERROR|WRITING) from the loop, unless
 * the stream is closed first. TLS mode: nothing to do, 0.
 */
int stream_flush(struct stream *st);

/* Make drained_cb run from the loop once the output is empty (at once if it is empty now). */
void stream_flush_later(struct stream *st);

/*
 * Want input or not. Off: nothing more is read (what is buffered stays), and a read timeout is
 * ignored. On: reading goes on where it stopped; the read timeout starts afresh. No system
 * call in plain mode.
 */
void stream_set_reading(struct stream *st, bool on);

/* NULL: no timeout. A timeout goes to event_cb (TIMEOUT with READING or WRITING). */
void stream_set_timeouts(struct stream *st, const struct timeval *read,
                         const struct timeval *write);

/* Stop reading while `max` octets or more wait in the input (0: no limit). */
void stream_set_read_max(struct stream *st, size_t max);

/* The socket (-1 in TLS mode: the bufferevent has it). */
evutil_socket_t stream_fd(const struct stream *st);

#endif
