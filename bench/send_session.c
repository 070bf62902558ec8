/*
 * send_session.c - one SMTP client session of `petrel-bench send`: connect, greeting,
 * EHLO, optional STARTTLS and AUTH PLAIN, then transactions handed out by the driver,
 * then QUIT.
 *
 * The state is the command last sent (enum send_state): a reply is handled by the code for
 * that state, which sends the next command. Inside a transaction the expected replies sit
 * in a FIFO, so with PIPELINING the whole group (MAIL, RCPT..., DATA, or MAIL, RCPT...,
 * BDAT...) goes out in one write and the replies are matched in order (RFC 2920). Bodies
 * are added to the output by reference, never copied.
 *
 * The connection is a petrel stream (net/stream.h): in plain text nothing is written until
 * stream_flush(), which the read callback calls once at its end (every command one read
 * brought about in one writev), and send_session_flush() after what the driver asks for from
 * outside that callback (a message on the open-loop clock, a QUIT when the run stops).
 *
 * Only send_session_close() frees a session; every function that can reach it returns -1
 * so that its callers stop touching the session.
 */
#include "histogram.h"
#include "send.h"
#include "tls.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#define SEND_LINE_MAX 2048 /* longest reply line accepted */

/* What the next reply in a transaction answers. */
enum send_expect {
	SEND_EXPECT_MAIL,
	SEND_EXPECT_RCPT,
	SEND_EXPECT_DATA,
	SEND_EXPECT_DOT,
	SEND_EXPECT_BDAT,
	SEND_EXPECT_BDAT_LAST,
};

static const char *const send_expect_names[] = {
	"MAIL", "RCPT", "DATA", "end of data", "BDAT", "BDAT LAST",
};

static const char *const send_state_names[] = {
	"connect", "greeting", "EHLO",        "HELO", "STARTTLS", "TLS handshake",
	"AUTH",    "idle",     "transaction", "RSET", "QUIT",
};

static void send_session_read(struct stream *st, void *arg);
static void send_session_event(struct stream *st, short what, void *arg);

static uint64_t
send_elapsed(uint64_t since)
{
	uint64_t now = bench_now_us();

	return now > since ? now - since : 0;
}

static struct timeval
send_session_timeout(const struct send_session *s)
{
	struct timeval tv;

	tv.tv_sec = (time_t)s->run->cfg.timeout;
	tv.tv_usec = (suseconds_t)((s->run->cfg.timeout - (double)tv.tv_sec) * 1e6);
	return tv;
}

/* Timer updates only: the stream's events stay in the kernel's list. */
static void
send_session_timeouts(struct send_session *s, bool reading)
{
	struct timeval tv = send_session_timeout(s);

	stream_set_timeouts(&s->st, reading ? &tv : NULL, &tv);
}

/*
 * Sends what the session has queued, unless its read callback runs: that one flushes once at
 * its end. A failed write comes back to send_session_event() from the loop.
 */
static void
send_session_flush(struct send_session *s)
{
	if (!s->in_read)
		(void)stream_flush(&s->st);
}

/* Unlinks and frees s, then tells the driver. Callers must not touch s afterwards. */
static void
send_session_close(struct send_session *s)
{
	struct send_run *run = s->run;
	bool failed = s->failed, greeted = s->greeted;

	if (s->state == SEND_STATE_TX) {
		run->st.failed_other++;
		run->in_tx--;
	}
	if (s->in_ready)
		TAILQ_REMOVE(&run->ready, s, ready_entry);
	TAILQ_REMOVE(&run->sessions, s, entry);
	stream_close(&s->st);
	free(s->fifo);
	free(s);
	send_run_session_gone(run, failed, greeted);
}

/* A session-ending error: counts it and closes. Returns -1 (s is gone). */
static int __attribute__((format(printf, 3, 4)))
send_session_fail(struct send_session *s, enum send_error kind, const char *fmt, ...)
{
	char what[SEND_ERROR_TEXT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	send_run_error(s->run, kind, "%s", what);
	s->failed = true;
	send_session_close(s);
	return -1;
}

/* A refusal during login: counts it by class and leaves politely. */
static void
send_session_refused(struct send_session *s, const char *what, int code)
{
	enum send_error kind = code >= 500   ? SEND_ERR_5XX
	                       : code >= 400 ? SEND_ERR_4XX
	                                     : SEND_ERR_PROTOCOL;

	send_run_error(s->run, kind, "%s: %s", what, s->reply_text);
	s->failed = true;
	send_session_quit(s);
}

static void
send_fifo_push(struct send_session *s, enum send_expect e)
{
	assert(s->fifo_len < s->run->fifo_max);
	s->fifo[(s->fifo_head + s->fifo_len) % s->run->fifo_max] = (unsigned char)e;
	s->fifo_len++;
}

static int
send_fifo_pop(struct send_session *s)
{
	int e;

	if (s->fifo_len == 0)
		return -1;
	e = s->fifo[s->fifo_head];
	s->fifo_head = (s->fifo_head + 1) % s->run->fifo_max;
	s->fifo_len--;
	return e;
}

static void
send_cmd(struct send_session *s, const char *cmd)
{
	stream_write(&s->st, cmd, strlen(cmd));
}

/* ---- login ------------------------------------------------------------------------- */

static void
send_login_ehlo(struct send_session *s)
{
	s->ext_pipelining = s->ext_chunking = s->ext_starttls = s->ext_auth_plain = false;
	evbuffer_add_printf(stream_output(&s->st), "EHLO %s\r\n", s->run->cfg.helo);
	s->state = SEND_STATE_EHLO;
}

/* Reads one EHLO keyword line (after the first line). */
static void
send_login_extension(struct send_session *s, const char *kw)
{
	size_t n = strcspn(kw, " =");

	if (n == 10 && strncasecmp(kw, "PIPELINING", n) == 0)
		s->ext_pipelining = true;
	else if (n == 8 && strncasecmp(kw, "CHUNKING", n) == 0)
		s->ext_chunking = true;
	else if (n == 8 && strncasecmp(kw, "STARTTLS", n) == 0)
		s->ext_starttls = true;
	else if (n == 4 && strncasecmp(kw, "AUTH", n) == 0) {
		const char *p = kw + n;

		while (*p != '\0') {
			size_t m;

			p += strspn(p, " =");
			m = strcspn(p, " ");
			if (m == 5 && strncasecmp(p, "PLAIN", 5) == 0)
				s->ext_auth_plain = true;
			p += m;
		}
	}
}

static int
send_login_auth(struct send_session *s)
{
	const struct send_config *cfg = &s->run->cfg;
	unsigned char raw[520], b64[700];
	size_t ulen = strlen(cfg->auth_user), plen = strlen(cfg->auth_pass);

	if (!s->ext_auth_plain)
		return send_session_fail(s, SEND_ERR_PROTOCOL, "AUTH PLAIN is not offered");
	/* authzid (empty) NUL authcid NUL passwd */
	raw[0] = '\0';
	memcpy(raw + 1, cfg->auth_user, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, cfg->auth_pass, plen);
	EVP_EncodeBlock(b64, raw, (int)(2 + ulen + plen));
	evbuffer_add_printf(stream_output(&s->st), "AUTH PLAIN %s\r\n", b64);
	s->state = SEND_STATE_AUTH;
	return 0;
}

static int
send_login_starttls(struct send_session *s)
{
	struct send_run *run = s->run;
	const char *name = run->cfg.tls_name ? run->cfg.tls_name : run->cfg.host;
	char err[160];
	SSL *ssl;

	ssl = bench_tls_client_ssl(run->ssl_ctx, name, run->cfg.tls_verify);
	if (ssl == NULL)
		return send_session_fail(
		        s, SEND_ERR_TLS, "%s",
		        bench_tls_error_string(0, "SSL_new failed", err, sizeof(err)));
	/* From now on a TLS filter over the same socket, with the same timeouts; what was left
	 * of the plain input is dropped (it cannot pass for protected text). */
	if (stream_start_tls(&s->st, ssl, BUFFEREVENT_SSL_CONNECTING) < 0)
		return send_session_fail(s, SEND_ERR_TLS, "cannot create the TLS filter");
	s->state = SEND_STATE_HANDSHAKE;
	stream_ssl_allow_dirty_shutdown(&s->st);
	return 0;
}

/* EHLO (or AUTH) is done: the next login step, or ready for work. */
static int
send_login_next(struct send_session *s)
{
	const struct send_config *cfg = &s->run->cfg;

	if (cfg->starttls && !s->tls) {
		if (!s->ext_starttls)
			return send_session_fail(s, SEND_ERR_TLS, "STARTTLS is not offered");
		send_cmd(s, "STARTTLS\r\n");
		s->state = SEND_STATE_STARTTLS;
		return 0;
	}
	if (cfg->auth && !s->authed)
		return send_login_auth(s);
	if (cfg->pipelining && !s->ext_pipelining)
		return send_session_fail(s, SEND_ERR_PROTOCOL,
		                         "--pipelining: the server does not offer PIPELINING");
	if (cfg->chunking && !s->ext_chunking)
		return send_session_fail(s, SEND_ERR_PROTOCOL,
		                         "--chunking: the server does not offer CHUNKING");
	s->state = SEND_STATE_READY;
	send_run_session_ready(s->run, s);
	return 0;
}

/* ---- transaction ------------------------------------------------------------------- */

/*
 * Writes the next command of the transaction. Returns true if another may follow in the
 * same pipelined group (DATA and the last BDAT end a group).
 */
static bool
send_tx_next(struct send_session *s)
{
	const struct send_config *cfg = &s->run->cfg;
	struct evbuffer *out = stream_output(&s->st);
	struct send_tx *tx = &s->tx;
	char addr[MESSAGE_ADDRESS_MAX + 32];
	uint64_t n, off, end;

	if (!tx->mail_sent) {
		evbuffer_add_printf(out, "MAIL FROM:<%s>\r\n", cfg->from);
		tx->mail_sent = true;
		send_fifo_push(s, SEND_EXPECT_MAIL);
		return true;
	}
	if (tx->rcpt_sent < cfg->recipients) {
		n = (tx->seq * cfg->recipients + tx->rcpt_sent) % cfg->to_range + 1;
		message_template_format(&cfg->to, n, addr, sizeof(addr));
		evbuffer_add_printf(out, "RCPT TO:<%s>\r\n", addr);
		tx->rcpt_sent++;
		send_fifo_push(s, SEND_EXPECT_RCPT);
		return true;
	}
	if (!cfg->chunking) {
		if (!tx->data_sent) {
			evbuffer_add(out, "DATA\r\n", 6);
			tx->data_sent = true;
			send_fifo_push(s, SEND_EXPECT_DATA);
		}
		return false;
	}
	if (tx->chunk_off >= tx->content)
		return false;
	/* BDAT: the content is hdr followed by the raw body, cut into chunk_size pieces. */
	off = tx->chunk_off;
	n = tx->content - off < cfg->chunk_size ? tx->content - off : cfg->chunk_size;
	end = off + n;
	evbuffer_add_printf(out, "BDAT %" PRIu64 "%s\r\n", n, end == tx->content ? " LAST" : "");
	if (off < tx->hdr_len) {
		size_t h = (size_t)((end < tx->hdr_len ? end : tx->hdr_len) - off);

		evbuffer_add(out, tx->hdr + off, h);
		off += h;
	}
	if (end > off)
		evbuffer_add_reference(out, tx->body->raw + (off - tx->hdr_len),
		                       (size_t)(end - off), NULL, NULL);
	tx->chunk_off = end;
	s->run->st.bytes += n;
	send_fifo_push(s, end == tx->content ? SEND_EXPECT_BDAT_LAST : SEND_EXPECT_BDAT);
	return end < tx->content;
}

/* Records the first failure of the transaction (counted once, by reply class). */
static void
send_tx_fail(struct send_session *s, const char *what, int code, bool before_end)
{
	struct send_tx *tx = &s->tx;
	enum send_error kind;

	if (before_end)
		tx->fail_before_end = true;
	if (tx->fail_code != 0)
		return;
	tx->fail_code = code;
	kind = code >= 500 ? SEND_ERR_5XX : code >= 400 ? SEND_ERR_4XX : SEND_ERR_PROTOCOL;
	send_run_error(s->run, kind, "%s: %s", what, s->reply_text);
}

static void
send_after_tx(struct send_session *s)
{
	const struct send_config *cfg = &s->run->cfg;

	s->state = SEND_STATE_READY;
	if (cfg->per_connection && s->messages >= cfg->per_connection) {
		send_session_quit(s);
		return;
	}
	send_run_session_ready(s->run, s);
}

/* The final reply of the transaction is in (or it was abandoned): count, then move on. */
static void
send_tx_finish(struct send_session *s)
{
	struct send_run *run = s->run;
	struct send_tx *tx = &s->tx;
	uint64_t lat;

	if (tx->fail_code == 0) {
		run->st.accepted++;
		lat = send_elapsed(tx->mail_us);
		histogram_record(run->h_accept, lat);
		histogram_record(run->h_interval, lat);
		if (tx->due_us != 0)
			histogram_record(run->h_scheduled, send_elapsed(tx->due_us));
	} else if (tx->fail_code >= 500) {
		run->st.failed_5xx++;
	} else if (tx->fail_code >= 400) {
		run->st.failed_4xx++;
	} else {
		run->st.failed_other++;
	}
	s->messages++;
	s->state = SEND_STATE_READY;
	run->in_tx--;
	if (tx->fail_before_end) {
		send_cmd(s, "RSET\r\n");
		s->state = SEND_STATE_RSET;
		return;
	}
	send_after_tx(s);
}

/* 354 to DATA: the content, dot-stuffed, and the terminator. */
static void
send_tx_body(struct send_session *s)
{
	struct evbuffer *out = stream_output(&s->st);
	struct send_tx *tx = &s->tx;

	if (tx->fail_code != 0 || tx->rcpt_ok == 0) {
		/* Nothing may be delivered: end the data at once. */
		evbuffer_add(out, ".\r\n", 3);
	} else {
		evbuffer_add(out, tx->hdr, tx->hdr_len);
		if (tx->body->stuffed_len > 0)
			evbuffer_add_reference(out, tx->body->stuffed, tx->body->stuffed_len, NULL,
			                       NULL);
		evbuffer_add(out, ".\r\n", 3);
		s->run->st.bytes += tx->content;
	}
	send_fifo_push(s, SEND_EXPECT_DOT);
}

/* One reply inside a transaction. Returns -1 if the session is gone. */
static int
send_tx_reply(struct send_session *s, int code)
{
	const struct send_config *cfg = &s->run->cfg;
	struct send_tx *tx = &s->tx;
	bool ok = code >= 200 && code < 300, pipe = cfg->pipelining;
	int e = send_fifo_pop(s);

	switch (e) {
	case SEND_EXPECT_MAIL:
		if (!ok) {
			send_tx_fail(s, "MAIL", code, true);
			if (!pipe)
				send_tx_finish(s);
		} else if (!pipe) {
			send_tx_next(s);
		}
		return 0;
	case SEND_EXPECT_RCPT:
		tx->rcpt_replies++;
		if (ok) {
			tx->rcpt_ok++;
			s->run->st.rcpt_accepted++;
		} else {
			s->run->st.rcpt_rejected++;
		}
		if (tx->rcpt_replies < cfg->recipients) {
			if (!pipe)
				send_tx_next(s);
			return 0;
		}
		if (tx->rcpt_ok == 0) {
			send_tx_fail(s, "RCPT", code, true);
			if (!pipe)
				send_tx_finish(s);
		} else if (!pipe) {
			send_tx_next(s);
		}
		return 0;
	case SEND_EXPECT_DATA:
		if (code == 354) {
			send_tx_body(s);
			return 0;
		}
		send_tx_fail(s, "DATA", code, true);
		send_tx_finish(s);
		return 0;
	case SEND_EXPECT_BDAT:
		if (!ok)
			send_tx_fail(s, "BDAT", code, true);
		if (!pipe) {
			if (tx->fail_code != 0)
				send_tx_finish(s); /* RFC 3030: no more chunks after a failure */
			else
				send_tx_next(s);
		}
		return 0;
	case SEND_EXPECT_DOT:
	case SEND_EXPECT_BDAT_LAST:
		if (!ok)
			send_tx_fail(s, e == SEND_EXPECT_DOT ? "end of data" : "BDAT LAST", code,
			             false);
		send_tx_finish(s);
		return 0;
	default:
		return send_session_fail(s, SEND_ERR_PROTOCOL, "reply without a command");
	}
}

/* ---- replies ----------------------------------------------------------------------- */

/* A complete reply (the code of its last line) for the current state. */
static int
send_session_reply(struct send_session *s, int code)
{
	struct send_run *run = s->run;
	bool ok = code >= 200 && code < 300;

	switch (s->state) {
	case SEND_STATE_BANNER:
		histogram_record(run->h_greeting, send_elapsed(s->connect_us));
		s->greeted = true;
		send_run_session_greeted(run);
		if (!ok) {
			send_session_refused(s, "greeting", code);
			return 0;
		}
		send_login_ehlo(s);
		return 0;
	case SEND_STATE_EHLO:
		if (ok)
			return send_login_next(s);
		if (code >= 500 && !run->cfg.pipelining && !run->cfg.chunking &&
		    !run->cfg.starttls && !run->cfg.auth) {
			evbuffer_add_printf(stream_output(&s->st), "HELO %s\r\n", run->cfg.helo);
			s->state = SEND_STATE_HELO;
			return 0;
		}
		send_session_refused(s, "EHLO", code);
		return 0;
	case SEND_STATE_HELO:
		if (ok)
			return send_login_next(s);
		send_session_refused(s, "HELO", code);
		return 0;
	case SEND_STATE_STARTTLS:
		if (code == 220)
			return send_login_starttls(s);
		send_run_error(run, SEND_ERR_TLS, "STARTTLS: %s", s->reply_text);
		s->failed = true;
		send_session_quit(s);
		return 0;
	case SEND_STATE_AUTH:
		if (code == 235) {
			s->authed = true;
			return send_login_next(s);
		}
		send_session_refused(s, "AUTH", code);
		return 0;
	case SEND_STATE_TX:
		return send_tx_reply(s, code);
	case SEND_STATE_RSET:
		if (!ok)
			return send_session_fail(s, SEND_ERR_PROTOCOL, "RSET refused");
		send_after_tx(s);
		return 0;
	case SEND_STATE_QUIT:
		if (ok) {
			histogram_record(run->h_session, send_elapsed(s->connect_us));
			if (!s->failed)
				run->st.sessions_done++;
		}
		send_session_close(s);
		return -1;
	default:
		return send_session_fail(s, SEND_ERR_PROTOCOL, "unexpected reply while %s: %s",
		                         send_state_names[s->state], s->reply_text);
	}
}

/* One reply line. Returns -1 if the session is gone. */
static int
send_session_line(struct send_session *s, const char *line, size_t len)
{
	char shown[81];
	size_t i, n;
	int code;

	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-'))
		goto bad;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (s->reply_code != 0 && code != s->reply_code)
		goto bad;
	s->reply_code = code;
	s->reply_lines++;
	if (s->state == SEND_STATE_EHLO && s->reply_lines > 1 && len > 4)
		send_login_extension(s, line + 4);
	if (len > 3 && line[3] == '-')
		return 0;
	/* Final line: keep a printable copy for error messages. */
	n = len < sizeof(s->reply_text) - 1 ? len : sizeof(s->reply_text) - 1;
	for (i = 0; i < n; i++)
		s->reply_text[i] = line[i] >= ' ' && line[i] < 0x7f ? line[i] : '?';
	s->reply_text[n] = '\0';
	s->reply_code = 0;
	s->reply_lines = 0;
	s->run->st.codes[code]++;
	return send_session_reply(s, code);
bad:
	n = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;
	for (i = 0; i < n; i++)
		shown[i] = line[i] >= ' ' && line[i] < 0x7f ? line[i] : '?';
	shown[n] = '\0';
	return send_session_fail(s, SEND_ERR_PROTOCOL, "malformed reply while %s: '%s'",
	                         send_state_names[s->state], shown);
}

/* The TCP connection is up (reported by the stream, or implied by the first bytes). */
static void
send_session_connected(struct send_session *s)
{
	histogram_record(s->run->h_connect, send_elapsed(s->connect_us));
	s->state = SEND_STATE_BANNER;
}

static void
send_session_read(struct stream *st, void *arg)
{
	struct send_session *s = arg;
	char line[SEND_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	struct evbuffer *in;
	size_t eol_len;

	/* The stream reports CONNECTED before the first input; the banner implies it anyway. */
	if (s->state == SEND_STATE_CONNECTING)
		send_session_connected(s);
	s->in_read = true;
	/* After STARTTLS the plain input is gone: the next reply comes after the handshake. */
	while (s->state != SEND_STATE_HANDSHAKE) {
		in = stream_input(st);
		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > SEND_LINE_MAX) {
				send_session_fail(s, SEND_ERR_PROTOCOL, "reply line too long");
				return;
			}
			break;
		}
		if ((size_t)eol.pos > SEND_LINE_MAX) {
			send_session_fail(s, SEND_ERR_PROTOCOL, "reply line too long");
			return;
		}
		evbuffer_remove(in, line, (size_t)eol.pos);
		line[eol.pos] = '\0';
		evbuffer_drain(in, eol_len);
		if (send_session_line(s, line, (size_t)eol.pos) < 0)
			return;
	}
	/* Every command these replies brought about leaves in one write. */
	s->in_read = false;
	(void)stream_flush(st);
}

static void
send_session_event(struct stream *st, short what, void *arg)
{
	struct send_session *s = arg;
	struct send_run *run = s->run;
	char err[160];
	int e = errno;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SEND_STATE_CONNECTING) {
			send_session_connected(s);
		} else if (s->state == SEND_STATE_HANDSHAKE) {
			s->tls = true;
			send_login_ehlo(s);
			send_session_flush(s);
		}
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->state == SEND_STATE_TX && s->fifo_len > 0)
			send_session_fail(s, SEND_ERR_TIMEOUT, "no reply to %s within %gs",
			                  send_expect_names[s->fifo[s->fifo_head]],
			                  run->cfg.timeout);
		else
			send_session_fail(s, SEND_ERR_TIMEOUT, "%s: nothing within %gs",
			                  send_state_names[s->state], run->cfg.timeout);
		return;
	}
	if (s->state == SEND_STATE_CONNECTING) {
		send_session_fail(
		        s, e == ECONNREFUSED ? SEND_ERR_CONNECT_REFUSED : SEND_ERR_CONNECT,
		        "connect %s: %s", run->cfg.addr.text, evutil_socket_error_to_string(e));
		return;
	}
	if (s->state == SEND_STATE_HANDSHAKE) {
		send_session_fail(s, SEND_ERR_TLS, "TLS handshake: %s",
		                  bench_tls_error_string(stream_ssl_error(st), "connection closed",
		                                         err, sizeof(err)));
		return;
	}
	if (s->state == SEND_STATE_QUIT) {
		/* The server closed before (or instead of) its 221: the session is over anyway. */
		send_session_close(s);
		return;
	}
	if (what & BEV_EVENT_EOF)
		send_session_fail(s, SEND_ERR_DISCONNECTED,
		                  "connection closed by the server while %s",
		                  send_state_names[s->state]);
	else
		send_session_fail(s, SEND_ERR_DISCONNECTED, "connection error while %s: %s",
		                  send_state_names[s->state], evutil_socket_error_to_string(e));
}

/* ---- called by the driver ---------------------------------------------------------- */

/*
 * stream_connect() fails at once only when no socket could be made, or the connect failed with
 * another error than a refusal (a refusal comes to send_session_event() from the loop).
 */
static void
send_session_connect_error(struct send_run *run, int e)
{
	switch (e) {
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		send_run_error(run, SEND_ERR_CONNECT, "cannot open a connection: %s", strerror(e));
		return;
	default:
		send_run_error(run, SEND_ERR_CONNECT, "connect %s: %s", run->cfg.addr.text,
		               strerror(e));
		return;
	}
}

struct send_session *
send_session_start(struct send_run *run)
{
	const struct bench_addr *a = &run->cfg.addr;
	struct send_session *s;
	struct timeval tv;
	int e;

	run->st.sessions_opened++;
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->fifo = malloc(run->fifo_max)) == NULL) {
		e = errno;
		free(s);
		send_run_error(run, SEND_ERR_CONNECT, "cannot open a connection: %s", strerror(e));
		return NULL;
	}
	s->run = run;
	s->id = run->st.sessions_opened;
	s->state = SEND_STATE_CONNECTING;
	tv = send_session_timeout(s);
	s->connect_us = bench_now_us();
	/* The outcome (connected, refused, timed out) comes to send_session_event(). */
	if (stream_connect(&s->st, run->base, (const struct sockaddr *)&a->ss, a->len, &tv,
	                   send_session_read, NULL, send_session_event, s) < 0) {
		send_session_connect_error(run, errno);
		free(s->fifo);
		free(s);
		return NULL;
	}
	/* Commands are small writes: never let Nagle hold one back for a delayed ACK. */
	bench_tcp_nodelay(stream_fd(&s->st));
	send_session_timeouts(s, true);
	TAILQ_INSERT_TAIL(&run->sessions, s, entry);
	return s;
}

void
send_session_give(struct send_session *s, uint64_t seq, uint64_t due_us)
{
	struct send_run *run = s->run;
	const struct send_config *cfg = &run->cfg;
	struct send_tx *tx = &s->tx;
	struct message_header h;
	char to[MESSAGE_ADDRESS_MAX + 32];
	size_t idx;

	tx->seq = seq;
	tx->due_us = due_us;
	idx = cfg->sizes.count > 1 ? message_sizes_pick(&cfg->sizes, bench_rand(&run->rng)) : 0;
	tx->body = &run->bodies[idx];
	message_template_format(&cfg->to, seq * cfg->recipients % cfg->to_range + 1, to,
	                        sizeof(to));
	h.run_id = cfg->run_id;
	h.seq = seq;
	h.body_size = tx->body->size;
	h.from = cfg->from;
	h.to = to;
	h.date = run->date;
	tx->hdr_len = message_header_format(tx->hdr, sizeof(tx->hdr), &h);
	tx->content = tx->hdr_len + tx->body->size;
	tx->mail_sent = tx->data_sent = tx->fail_before_end = false;
	tx->rcpt_sent = tx->rcpt_replies = tx->rcpt_ok = tx->chunk_off = 0;
	tx->fail_code = 0;
	if (s->in_ready) {
		TAILQ_REMOVE(&run->ready, s, ready_entry);
		s->in_ready = false;
		send_session_timeouts(s, true);
	}
	s->state = SEND_STATE_TX;
	run->in_tx++;
	s->fifo_head = s->fifo_len = 0;
	tx->mail_us = bench_now_us();
	run->st.attempted++;
	if (cfg->pipelining) {
		while (send_tx_next(s))
			;
	} else {
		send_tx_next(s);
	}
	send_session_flush(s);
}

void
send_session_park(struct send_session *s)
{
	if (s->in_ready)
		return;
	TAILQ_INSERT_TAIL(&s->run->ready, s, ready_entry);
	s->in_ready = true;
	send_session_timeouts(s, false);
}

void
send_session_quit(struct send_session *s)
{
	if (s->in_ready) {
		TAILQ_REMOVE(&s->run->ready, s, ready_entry);
		s->in_ready = false;
		send_session_timeouts(s, true);
	}
	send_cmd(s, "QUIT\r\n");
	s->state = SEND_STATE_QUIT;
	send_session_flush(s);
}

void
send_session_abort(struct send_session *s)
{
	send_session_fail(s, SEND_ERR_TIMEOUT, "still %s at the deadline",
	                  send_state_names[s->state]);
}
