/*
 * delivery/smtp_client.c: the outbound SMTP state machine (see smtp_client.h).
 *
 * The state is the command whose reply we wait for. Entering a state sends its command; the
 * reply handler of the state picks the next one (OpenSMTPD's mta_session.c has the same shape).
 * A transaction is a fixed sequence of commands: MAIL, one RCPT per recipient, DATA. With
 * PIPELINING all of it is written at once and the replies are matched by their position
 * (cmds_replied); without it each reply releases the next command.
 *
 * Security comes first on a new connection: banner, EHLO, STARTTLS and EHLO again (the stream
 * becomes a TLS filter over the socket, RFC 3207 §4.2: the first EHLO's answer is forgotten),
 * AUTH, then transactions. smtp_client_secure() is where that order lives.
 *
 * I/O goes through a net/stream: commands queued while handling a read (or by the owner's
 * smtp_client_send) leave in one write when that call ends (smtp_client_flush), the body with
 * sendfile; nothing is armed for writing unless the server's socket buffer is full.
 *
 * Owns: its stream (and socket), its copy of the targets. Borrows the transaction from the
 * owner between smtp_client_new/_send and TXN_DONE; takes the spool fd when it sends the body.
 * Freeing happens in one place, smtp_client_free(), called after the CLOSED callback, and only
 * from the top of a libevent callback (never inside the owner's call into this module).
 */
#include "petrel/delivery/smtp_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "petrel/auth.h"
#include "petrel/log.h"
#include "petrel/net/stream.h"
#include "petrel/tls.h"

#define SMTP_CLIENT_LINE_MAX  2048        /* a reply line we read at the most */
#define SMTP_CLIENT_REPLY_MAX (64 * 1024) /* a multi-line reply at the most */

enum smtp_client_state {
	SC_CONNECTING,
	SC_BANNER,
	SC_EHLO,
	SC_HELO,
	SC_STARTTLS,   /* STARTTLS sent, waiting for 220 */
	SC_HANDSHAKE,  /* TLS handshake under way on the filter */
	SC_AUTH_LOGIN, /* AUTH LOGIN sent, waiting for 334 (user name) */
	SC_AUTH_USER,  /* user name sent, waiting for 334 (password) */
	SC_AUTH,       /* AUTH PLAIN or the LOGIN password sent, waiting for 235 */
	SC_TXN,        /* MAIL/RCPT/DATA replies */
	SC_BODY,       /* body sent, waiting for the final reply */
	SC_RSET,
	SC_IDLE,
	SC_QUIT,
	SC_DEAD,
};

struct smtp_client {
	struct event_base *base;
	struct smtp_client_config cfg;
	char helo[256];
	struct smtp_target *targets;
	bool *plain_only; /* per target: TLS failed there (OPPORTUNISTIC): plain from now on */
	size_t ntargets;
	size_t cur;        /* target being tried */
	struct stream st;  /* the connection (plain, or a TLS filter over the socket) */
	unsigned conn_gen; /* bumped when st is replaced: reconnection, STARTTLS */
	enum smtp_client_state state;
	smtp_client_cb cb;
	void *arg;
	struct smtp_txn *txn;      /* current transaction, borrowed */
	struct smtp_txn *next_txn; /* handed over while RSET was in flight */
	struct event *timer;       /* idle timeout, and deferred close */
	bool close_requested;
	bool in_callback;
	bool reading; /* inside smtp_client_read_cb: smtp_client_die leaves the free to it */
	bool started; /* the deferred start has run */

	/* This connection. */
	bool tls_active;   /* the handshake is done: c->st is in TLS mode */
	bool tls_tried;    /* STARTTLS was sent (and refused, with OPPORTUNISTIC) */
	bool authed;       /* AUTH succeeded */
	char tls_desc[64]; /* tls_describe() of the session, "" when plain */
	char remote[300];  /* "host[address]:port" */

	/* What the server offers (EHLO). */
	bool pipelining, dsn, smtputf8, eightbit;
	bool size_offered;
	uint64_t size_limit;
	bool starttls;
	bool auth_offered, auth_plain, auth_login;

	/* The reply being read. */
	unsigned reply_code;
	char reply_status[12];
	char reply_text[240];
	size_t reply_bytes;

	/* Transaction progress. */
	size_t cmds_total; /* MAIL + RCPTs + DATA */
	size_t cmds_sent;
	size_t cmds_replied;
	bool mail_ok;
	size_t rcpts_ok;
	bool data_discard; /* 354 with no valid recipient: send an empty body, ignore the reply */

	char error[240];      /* why the last target failed */
	char error_status[8]; /* its enhanced status: 4.4.1 (unreachable, refused), 4.7.5 (TLS
	                       * required), 4.7.8 (AUTH) */
};

static void smtp_client_connect_next(struct smtp_client *c);
static void smtp_client_finish_txn(struct smtp_client *c, bool rset);
static void smtp_client_start_txn(struct smtp_client *c);
static void smtp_client_send_next(struct smtp_client *c);
static void smtp_client_secure(struct smtp_client *c);
static void smtp_client_read_cb(struct stream *st, void *arg);
static void smtp_client_event_cb(struct stream *st, short what, void *arg);

/* ---- replies ---- */

int
smtp_client_parse_reply_line(const char *line, size_t len, unsigned *code, bool *more,
                             char status[12], const char **text, size_t *text_len)
{
	const char *p = line + 4, *end = line + len;
	size_t i, n;

	status[0] = '\0';
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || line[0] < '2' || line[0] > '5')
		return -1;
	*code = (unsigned)((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
	if (len == 3) {
		*more = false;
		*text = end;
		*text_len = 0;
		return 0;
	}
	if (line[3] != ' ' && line[3] != '-')
		return -1;
	*more = line[3] == '-';
	/* An enhanced status code "c.s.d " whose class matches the reply's. */
	for (n = 0; p + n < end && (isdigit((unsigned char)p[n]) || p[n] == '.'); n++)
		;
	if (n >= 5 && n < 12 && p[0] == line[0] && p[1] == '.' && (p + n == end || p[n] == ' ')) {
		int dots = 0;
		for (i = 0; i < n; i++)
			dots += p[i] == '.';
		if (dots == 2) {
			memcpy(status, p, n);
			status[n] = '\0';
			p += n;
			while (p < end && *p == ' ')
				p++;
		}
	}
	*text = p;
	*text_len = (size_t)(end - p);
	return 0;
}

/* Printable ASCII only, for results and logs. */
static void
smtp_client_copy_text(char *dst, size_t dstsize, const char *src, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 1 < dstsize; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	dst[o] = '\0';
}

/* Give a recipient the current reply as its result. */
static void
smtp_client_set_result(struct smtp_txn_rcpt *r, unsigned code, const char *status, const char *text)
{
	r->code = code;
	if (status && status[0])
		snprintf(r->status, sizeof(r->status), "%s", status);
	else
		snprintf(r->status, sizeof(r->status), "%u.0.0", (code / 100) % 10);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

static void
smtp_client_reply_to(struct smtp_client *c, struct smtp_txn_rcpt *r)
{
	char full[sizeof(r->text)];

	snprintf(full, sizeof(full), "%03u %.11s%s%.200s", c->reply_code % 1000, c->reply_status,
	         c->reply_status[0] ? " " : "", c->reply_text);
	smtp_client_set_result(r, c->reply_code, c->reply_status, full);
}

/* ---- output ---- */

static void smtp_client_printf(struct smtp_client *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
smtp_client_printf(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(stream_output(&c->st), fmt, ap);
	va_end(ap);
}

static void
smtp_client_set_timeout(struct smtp_client *c, unsigned seconds)
{
	struct timeval tv = { seconds, 0 };

	stream_set_timeouts(&c->st, &tv, &tv);
}

/* Send what was queued; a failure comes back as an event from the loop. */
static void
smtp_client_flush(struct smtp_client *c)
{
	if (stream_is_open(&c->st))
		stream_flush(&c->st);
}

/* ---- life cycle ---- */

static void
smtp_client_free(struct smtp_client *c)
{
	stream_close(&c->st);
	if (c->timer)
		event_free(c->timer);
	free(c->plain_only);
	free(c->targets);
	free(c);
}

/* The end: report CLOSED, then free. Only from the top of a libevent callback; inside the read
 * callback the free waits until that callback unwinds (it still looks at c->state). */
static void
smtp_client_die(struct smtp_client *c)
{
	c->state = SC_DEAD;
	stream_close(&c->st);
	c->cb(c->arg, c, SMTP_CLIENT_CLOSED, NULL);
	if (!c->reading)
		smtp_client_free(c);
}

/* Every recipient without a final result gets a temporary failure with `why`. */
static void
smtp_client_fail_txn(struct smtp_client *c, const char *status, const char *why)
{
	struct smtp_txn *txn = c->txn;
	char text[240];
	size_t i;

	if (txn == NULL)
		return;
	snprintf(text, sizeof(text), "451 %s %s", status, why);
	for (i = 0; i < txn->nrcpts; i++) {
		struct smtp_txn_rcpt *r = &txn->rcpts[i];
		if (r->code == 0 || r->code / 100 == 2)
			smtp_client_set_result(r, 451, status, text);
	}
	c->txn = NULL;
	c->in_callback = true;
	c->cb(c->arg, c, SMTP_CLIENT_TXN_DONE, txn);
	c->in_callback = false;
}

/* One timer for three jobs: the deferred start, the idle timeout, and a requested close. */
static void
smtp_client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	if (!c->started) {
		c->started = true;
		smtp_client_connect_next(c);
		return;
	}
	if (c->state == SC_IDLE && stream_is_open(&c->st)) {
		/* Idle long enough, or asked to close: say goodbye; the reply (or EOF) ends it. */
		c->state = SC_QUIT;
		smtp_client_set_timeout(c, 10);
		smtp_client_printf(c, "QUIT\r\n");
		smtp_client_flush(c);
		return;
	}
	if (c->close_requested && c->state != SC_QUIT) {
		smtp_client_fail_txn(c, "4.4.2", "delivery cancelled");
		smtp_client_die(c);
	}
}

static void
smtp_client_arm(struct smtp_client *c, unsigned seconds)
{
	struct timeval tv = { seconds, 0 };

	event_add(c->timer, &tv);
}

/* ---- transaction ---- */

static const char *
smtp_client_notify(unsigned bits, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s%s", bits & SMTP_DSN_NOTIFY_NEVER ? "NEVER," : "",
	         bits & SMTP_DSN_NOTIFY_SUCCESS ? "SUCCESS," : "",
	         bits & SMTP_DSN_NOTIFY_FAILURE ? "FAILURE," : "",
	         bits & SMTP_DSN_NOTIFY_DELAY ? "DELAY," : "");
	if (buf[0])
		buf[strlen(buf) - 1] = '\0';
	return buf;
}

/* Write command number cmds_sent of the transaction. */
static void
smtp_client_send_cmd(struct smtp_client *c)
{
	struct smtp_txn *txn = c->txn;
	size_t i = c->cmds_sent++;
	char notify[40];

	if (i == 0) {
		smtp_client_printf(c, "MAIL FROM:<%s>", txn->from);
		if (c->size_offered)
			smtp_client_printf(c, " SIZE=%llu", (unsigned long long)txn->len);
		if (txn->body == SMTP_BODY_8BITMIME && c->eightbit)
			smtp_client_printf(c, " BODY=8BITMIME");
		if (txn->smtputf8)
			smtp_client_printf(c, " SMTPUTF8");
		if (c->dsn && txn->ret != SMTP_DSN_RET_UNSPEC)
			smtp_client_printf(c, " RET=%s",
			                   txn->ret == SMTP_DSN_RET_FULL ? "FULL" : "HDRS");
		if (c->dsn && txn->envid)
			smtp_client_printf(c, " ENVID=%s", txn->envid);
		smtp_client_printf(c, "\r\n");
	} else if (i <= txn->nrcpts) {
		const struct smtp_txn_rcpt *r = &txn->rcpts[i - 1];
		smtp_client_printf(c, "RCPT TO:<%s>", r->addr);
		if (c->dsn && r->notify)
			smtp_client_printf(c, " NOTIFY=%s",
			                   smtp_client_notify(r->notify, notify, sizeof(notify)));
		if (c->dsn && r->orcpt)
			smtp_client_printf(c, " ORCPT=%s", r->orcpt);
		smtp_client_printf(c, "\r\n");
	} else {
		smtp_client_printf(c, "DATA\r\n");
	}
}

/* Without PIPELINING: the next command, if the replies so far allow one. */
static void
smtp_client_send_next(struct smtp_client *c)
{
	if (c->cmds_sent < c->cmds_total && c->cmds_sent == c->cmds_replied)
		smtp_client_send_cmd(c);
}

static void
smtp_client_start_txn(struct smtp_client *c)
{
	struct smtp_txn *txn = c->txn;
	size_t i;

	/* Per connection, so a reused one names its server and its TLS too. */
	snprintf(txn->remote, sizeof(txn->remote), "%s", c->remote);
	snprintf(txn->tls, sizeof(txn->tls), "%s", c->tls_desc);
	for (i = 0; i < txn->nrcpts; i++)
		txn->rcpts[i].code = 0;
	if (c->size_offered && c->size_limit > 0 && txn->len > c->size_limit) {
		for (i = 0; i < txn->nrcpts; i++)
			smtp_client_set_result(&txn->rcpts[i], 552, "5.3.4",
			                       "552 5.3.4 message too big for the next hop");
		smtp_client_finish_txn(c, false);
		return;
	}
	if (txn->body == SMTP_BODY_8BITMIME && !c->eightbit) {
		/* RFC 6152 §3: no 8-bit data to a server that did not offer 8BITMIME; petrel does
		 * not convert to 7 bit, so the message is returned (5.6.3). */
		for (i = 0; i < txn->nrcpts; i++)
			smtp_client_set_result(&txn->rcpts[i], 554, "5.6.3",
			                       "554 5.6.3 next hop does not support 8BITMIME");
		smtp_client_finish_txn(c, false);
		return;
	}
	if (txn->smtputf8 && !c->smtputf8) {
		for (i = 0; i < txn->nrcpts; i++)
			smtp_client_set_result(&txn->rcpts[i], 553, "5.6.7",
			                       "553 5.6.7 next hop does not support SMTPUTF8");
		smtp_client_finish_txn(c, false);
		return;
	}
	c->state = SC_TXN;
	c->cmds_total = txn->nrcpts + 2;
	c->cmds_sent = c->cmds_replied = 0;
	c->mail_ok = false;
	c->rcpts_ok = 0;
	c->data_discard = false;
	event_del(c->timer);
	smtp_client_set_timeout(c, c->cfg.command_timeout);
	if (c->pipelining) {
		while (c->cmds_sent < c->cmds_total)
			smtp_client_send_cmd(c);
	} else {
		smtp_client_send_cmd(c);
	}
}

/* The transaction has its results: report them, then idle (after RSET when needed). */
static void
smtp_client_finish_txn(struct smtp_client *c, bool rset)
{
	struct smtp_txn *txn = c->txn;

	c->txn = NULL;
	if (rset) {
		c->state = SC_RSET;
		smtp_client_printf(c, "RSET\r\n");
	} else {
		c->state = SC_IDLE;
		smtp_client_arm(c, c->cfg.idle_timeout);
	}
	c->in_callback = true;
	c->cb(c->arg, c, SMTP_CLIENT_TXN_DONE, txn);
	c->in_callback = false;
}

static void
smtp_client_send_body(struct smtp_client *c)
{
	struct smtp_txn *txn = c->txn;
	struct evbuffer *out = stream_output(&c->st);

	c->state = SC_BODY;
	smtp_client_set_timeout(c, c->cfg.data_timeout);
	if (c->data_discard || (txn->fd < 0 && txn->mem == NULL)) {
		evbuffer_add(out, ".\r\n", 3);
		return;
	}
	if (txn->mem != NULL) {
		/* Still in memory since it was received: body and dot leave in one writev. */
		if (evbuffer_add_buffer(out, txn->mem) == -1)
			log_error("smtp-out %s cannot queue the body", txn->id);
		evbuffer_free(txn->mem);
		txn->mem = NULL;
		evbuffer_add(out, ".\r\n", 3);
		return;
	}
	/* The spool keeps the DATA form (CRLF, dot-stuffed, ending in CRLF): send it as it is.
	 * evbuffer_add_file takes the fd (sendfile on a plain socket), even if it fails. */
	if (evbuffer_add_file(out, txn->fd, (ev_off_t)txn->offset, (ev_off_t)txn->len) == -1)
		log_error("smtp-out %s cannot queue the body", txn->id);
	txn->fd = -1;
	evbuffer_add(out, ".\r\n", 3);
}

/* One complete reply in the transaction: which command it answers is its position. */
static void
smtp_client_txn_reply(struct smtp_client *c)
{
	struct smtp_txn *txn = c->txn;
	size_t r = c->cmds_replied++;
	bool ok = c->reply_code / 100 == 2;
	size_t i;

	if (r == 0) {
		c->mail_ok = ok;
		if (!ok)
			for (i = 0; i < txn->nrcpts; i++)
				smtp_client_reply_to(c, &txn->rcpts[i]);
	} else if (r <= txn->nrcpts) {
		if (c->mail_ok) {
			smtp_client_reply_to(c, &txn->rcpts[r - 1]);
			if (ok)
				c->rcpts_ok++;
		}
	} else {
		/* DATA */
		if (c->reply_code == 354) {
			c->data_discard = !(c->mail_ok && c->rcpts_ok > 0);
			smtp_client_send_body(c);
			return;
		}
		if (c->mail_ok && c->rcpts_ok > 0)
			for (i = 0; i < txn->nrcpts; i++)
				if (txn->rcpts[i].code / 100 == 2)
					smtp_client_reply_to(c, &txn->rcpts[i]);
		smtp_client_finish_txn(c, true);
		return;
	}
	if (c->pipelining)
		return; /* everything is sent: wait for the next reply */
	if (!c->mail_ok || (c->cmds_sent == txn->nrcpts + 1 && c->rcpts_ok == 0 &&
	                    c->cmds_replied == c->cmds_sent)) {
		/* Nothing to send DATA for. */
		smtp_client_finish_txn(c, true);
		return;
	}
	smtp_client_send_next(c);
}

/* ---- the reply dispatcher ---- */

/* Remember why targets[cur] failed: the transaction's result if no other target works. */
static void
smtp_client_log_target_failure(struct smtp_client *c, const char *status, const char *what)
{
	const struct smtp_target *t = &c->targets[c->cur];

	snprintf(c->error, sizeof(c->error), "%.150s (%.80s)", what, t->host);
	snprintf(c->error_status, sizeof(c->error_status), "%s", status);
	log_info("smtp-out target failed host=%s error=\"%s\"", t->host, what);
}

/* This target is no good: try the next. */
static void
smtp_client_target_failed(struct smtp_client *c, const char *status, const char *what)
{
	smtp_client_log_target_failure(c, status, what);
	c->cur++;
	smtp_client_connect_next(c);
}

/* The reply just read, as text ("454 4.7.0 TLS not available"). */
static const char *
smtp_client_reply_str(const struct smtp_client *c, char *buf, size_t size)
{
	snprintf(buf, size, "%u %s%s%s", c->reply_code, c->reply_status,
	         c->reply_status[0] ? " " : "", c->reply_text);
	return buf;
}

/* Greeting or EHLO/HELO refused: this target is no good, try the next. */
static void
smtp_client_target_refused(struct smtp_client *c)
{
	char what[300];

	smtp_client_target_failed(c, "4.4.1", smtp_client_reply_str(c, what, sizeof(what)));
}

/* "AUTH PLAIN LOGIN" (or the pre-RFC "AUTH=PLAIN LOGIN"): the mechanisms we can use. */
static void
smtp_client_ehlo_auth(struct smtp_client *c, const char *p, size_t len)
{
	size_t i = 0, n;

	c->auth_offered = true;
	while (i < len) {
		while (i < len && (p[i] == ' ' || p[i] == '='))
			i++;
		for (n = 0; i + n < len && p[i + n] != ' '; n++)
			;
		if (n == 5 && strncasecmp(p + i, "PLAIN", 5) == 0)
			c->auth_plain = true;
		else if (n == 5 && strncasecmp(p + i, "LOGIN", 5) == 0)
			c->auth_login = true;
		i += n;
	}
}

static void
smtp_client_ehlo_line(struct smtp_client *c, const char *text, size_t len)
{
	char kw[32];
	size_t n = 0;

	while (n < len && n < sizeof(kw) - 1 && text[n] != ' ' && text[n] != '=') {
		kw[n] = (char)toupper((unsigned char)text[n]);
		n++;
	}
	kw[n] = '\0';
	if (strcmp(kw, "PIPELINING") == 0) {
		c->pipelining = true;
	} else if (strcmp(kw, "DSN") == 0) {
		c->dsn = true;
	} else if (strcmp(kw, "SMTPUTF8") == 0) {
		c->smtputf8 = true;
	} else if (strcmp(kw, "8BITMIME") == 0) {
		c->eightbit = true;
	} else if (strcmp(kw, "SIZE") == 0) {
		c->size_offered = true;
		c->size_limit = n < len ? strtoull(text + n + 1, NULL, 10) : 0;
	} else if (strcmp(kw, "STARTTLS") == 0) {
		c->starttls = true;
	} else if (strcmp(kw, "AUTH") == 0) {
		smtp_client_ehlo_auth(c, text + n, len - n);
	}
}

/* EHLO, forgetting what an earlier EHLO offered (after STARTTLS: RFC 3207 §4.2). */
static void
smtp_client_send_ehlo(struct smtp_client *c)
{
	c->state = SC_EHLO;
	c->pipelining = c->dsn = c->smtputf8 = c->eightbit = c->size_offered = false;
	c->size_limit = 0;
	c->starttls = c->auth_offered = c->auth_plain = c->auth_login = false;
	smtp_client_printf(c, "EHLO %s\r\n", c->helo);
}

/* "host[address]:port" of the current target. */
static void
smtp_client_set_remote(struct smtp_client *c)
{
	const struct smtp_target *t = &c->targets[c->cur];
	char addr[INET6_ADDRSTRLEN] = "?";
	unsigned port;

	if (t->addr.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&t->addr)->sin6_addr, addr,
		          sizeof(addr));
		port = ntohs(((const struct sockaddr_in6 *)&t->addr)->sin6_port);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&t->addr)->sin_addr, addr,
		          sizeof(addr));
		port = ntohs(((const struct sockaddr_in *)&t->addr)->sin_port);
	}
	snprintf(c->remote, sizeof(c->remote), "%.200s[%.46s]:%u", t->host, addr, port);
}

/* ---- STARTTLS ---- */

/*
 * STARTTLS or its handshake failed on targets[cur]. REQUIRE: the target fails. Otherwise the
 * same target again, in plain text this time (a server whose TLS is broken still gets its mail;
 * an attacker who can break the handshake could strip STARTTLS anyway).
 */
static void
smtp_client_tls_failed(struct smtp_client *c, const char *why)
{
	char what[300];

	if (c->cfg.tls == SMTP_CLIENT_TLS_REQUIRE) {
		snprintf(what, sizeof(what), "TLS required but %.200s", why);
		smtp_client_target_failed(c, "4.7.5", what);
		return;
	}
	log_info("smtp-out tls failed host=%s error=\"%s\" fallback=plain", c->targets[c->cur].host,
	         why);
	c->plain_only[c->cur] = true;
	smtp_client_connect_next(c);
}

/* Why the connection broke during STARTTLS or the handshake, for the log and the result. */
static void
smtp_client_tls_why(struct smtp_client *c, short what, char *buf, size_t size)
{
	SSL *ssl = c->state == SC_HANDSHAKE ? stream_ssl(&c->st) : NULL;
	unsigned long e = ssl ? stream_ssl_error(&c->st) : 0;
	long vr = ssl && c->cfg.tls == SMTP_CLIENT_TLS_REQUIRE ? SSL_get_verify_result(ssl)
	                                                       : X509_V_OK;
	const char *io = what & BEV_EVENT_TIMEOUT ? "timeout"
	                 : what & BEV_EVENT_EOF   ? "connection closed by the server"
	                                          : "connection error";
	char ebuf[160];

	if (c->state == SC_STARTTLS) {
		snprintf(buf, size, "the connection broke after STARTTLS (%s)", io);
	} else if (vr != X509_V_OK) {
		snprintf(buf, size, "the certificate did not verify (%s)",
		         X509_verify_cert_error_string(vr));
	} else if (e != 0) {
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
		snprintf(buf, size, "the TLS handshake failed (%s)", ebuf);
	} else {
		snprintf(buf, size, "the TLS handshake failed (%s)", io);
	}
	ERR_clear_error();
}

/* 220 to STARTTLS: put a TLS filter over the socket and shake hands. */
static void
smtp_client_start_tls(struct smtp_client *c)
{
	const struct smtp_target *t = &c->targets[c->cur];
	bool verify = c->cfg.tls == SMTP_CLIENT_TLS_REQUIRE;
	char ebuf[160], why[200];
	SSL *ssl;

	if (evbuffer_get_length(stream_input(&c->st)) != 0) {
		/* Plain bytes after the 220 would pass for TLS-protected ones (RFC 3207 §6). */
		smtp_client_tls_failed(c, "the server sent more after its 220 to STARTTLS");
		return;
	}
	if ((ssl = tls_client_ssl(c->cfg.tls_ctx, t->host, verify)) == NULL) {
		snprintf(why, sizeof(why), "no TLS session (%s)", tls_error(ebuf, sizeof(ebuf)));
		smtp_client_tls_failed(c, why);
		return;
	}
	/* The stream takes the SSL (and frees it on failure). */
	if (stream_start_tls(&c->st, ssl, BUFFEREVENT_SSL_CONNECTING) == -1) {
		smtp_client_tls_failed(c, "no TLS filter (out of memory)");
		return;
	}
	/* SMTP frames its own data: a close without close_notify is an EOF, not an attack on the
	 * message. The filter keeps its own timeouts (nothing is left under it). */
	c->conn_gen++;
	c->state = SC_HANDSHAKE;
	stream_ssl_allow_dirty_shutdown(&c->st);
	smtp_client_set_timeout(c, c->cfg.command_timeout);
}

/* The handshake is done (and with REQUIRE the certificate verified): EHLO again. */
static void
smtp_client_tls_ready(struct smtp_client *c)
{
	SSL *ssl = stream_ssl(&c->st);

	c->tls_active = true;
	if (ssl != NULL)
		tls_describe(ssl, c->tls_desc, sizeof(c->tls_desc));
	log_info("smtp-out tls established host=%s verified=%s %s", c->targets[c->cur].host,
	         c->cfg.tls == SMTP_CLIENT_TLS_REQUIRE ? "yes" : "no", c->tls_desc);
	c->reply_code = 0;
	c->reply_bytes = 0;
	smtp_client_send_ehlo(c);
}

/* ---- AUTH ---- */

static void
smtp_client_auth_failed(struct smtp_client *c, const char *why)
{
	char what[300];

	snprintf(what, sizeof(what), "authentication to the smarthost failed: %.200s", why);
	smtp_client_target_failed(c, "4.7.8", what);
}

/* Write prefix + base64(data) + CRLF; the encoded copy is wiped. */
static void
smtp_client_send_b64(struct smtp_client *c, const char *prefix, const void *data, size_t len)
{
	char b64[AUTH_BASE64_ENCODED_SIZE(AUTH_NAME_MAX + AUTH_PASS_MAX + 2)];

	if (auth_base64_encode(data, len, b64, sizeof(b64)) < 0)
		b64[0] = '\0'; /* cannot happen: the lengths were checked */
	smtp_client_printf(c, "%s%s\r\n", prefix, b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}

/* AUTH PLAIN with the initial response (RFC 4616: NUL user NUL password), else AUTH LOGIN. */
static void
smtp_client_auth_start(struct smtp_client *c)
{
	const char *user = c->cfg.auth_user, *pass = c->cfg.auth_pass ? c->cfg.auth_pass : "";
	size_t ulen = strlen(user), plen = strlen(pass);
	unsigned char msg[AUTH_NAME_MAX + AUTH_PASS_MAX + 2];

	if (ulen == 0 || ulen > AUTH_NAME_MAX || plen > AUTH_PASS_MAX) {
		smtp_client_auth_failed(c, "the user name or password is too long");
		return;
	}
	if (!c->auth_plain) {
		c->state = SC_AUTH_LOGIN;
		smtp_client_printf(c, "AUTH LOGIN\r\n");
		return;
	}
	msg[0] = '\0';
	memcpy(msg + 1, user, ulen);
	msg[1 + ulen] = '\0';
	memcpy(msg + 2 + ulen, pass, plen);
	c->state = SC_AUTH;
	smtp_client_send_b64(c, "AUTH PLAIN ", msg, ulen + plen + 2);
	OPENSSL_cleanse(msg, sizeof(msg));
}

/* A reply in one of the AUTH states. */
static void
smtp_client_auth_reply(struct smtp_client *c)
{
	const char *pass = c->cfg.auth_pass ? c->cfg.auth_pass : "";
	char what[300];

	switch (c->state) {
	case SC_AUTH_LOGIN:
		if (c->reply_code != 334)
			break;
		c->state = SC_AUTH_USER;
		smtp_client_send_b64(c, "", c->cfg.auth_user, strlen(c->cfg.auth_user));
		return;
	case SC_AUTH_USER:
		if (c->reply_code != 334)
			break;
		c->state = SC_AUTH;
		smtp_client_send_b64(c, "", pass, strlen(pass));
		return;
	default: /* SC_AUTH */
		if (c->reply_code != 235)
			break;
		c->authed = true;
		log_info("smtp-out auth ok host=%s user=%s mechanism=%s", c->targets[c->cur].host,
		         c->cfg.auth_user, c->auth_plain ? "PLAIN" : "LOGIN");
		smtp_client_secure(c);
		return;
	}
	smtp_client_auth_failed(c, smtp_client_reply_str(c, what, sizeof(what)));
}

/*
 * EHLO (or HELO) is done, or a step after it: STARTTLS if wanted and not done, then AUTH if
 * configured and not done, then the transaction. Each step comes back here when it is over.
 */
static void
smtp_client_secure(struct smtp_client *c)
{
	bool require = c->cfg.tls == SMTP_CLIENT_TLS_REQUIRE;

	if (!c->tls_active && c->cfg.tls != SMTP_CLIENT_TLS_NONE && !c->tls_tried &&
	    !c->plain_only[c->cur]) {
		if (c->starttls && c->cfg.tls_ctx != NULL) {
			c->tls_tried = true;
			c->state = SC_STARTTLS;
			smtp_client_printf(c, "STARTTLS\r\n");
			return;
		}
		if (require) {
			smtp_client_tls_failed(c, c->cfg.tls_ctx ? "STARTTLS is not offered"
			                                         : "no TLS client context");
			return;
		}
	}
	if (require && !c->tls_active) { /* cannot happen: every way here without TLS failed */
		smtp_client_tls_failed(c, "no TLS");
		return;
	}
	if (c->cfg.auth_user != NULL && !c->authed) {
		if (!c->tls_active && c->cfg.tls != SMTP_CLIENT_TLS_NONE) {
			smtp_client_auth_failed(c, "no TLS, and AUTH is not sent in the clear");
			return;
		}
		if (!c->auth_offered) {
			smtp_client_auth_failed(c, "the server does not offer AUTH");
			return;
		}
		smtp_client_auth_start(c);
		return;
	}
	if (c->txn == NULL) {
		c->state = SC_IDLE;
		smtp_client_arm(c, c->cfg.idle_timeout);
		return;
	}
	smtp_client_start_txn(c);
}

static void
smtp_client_reply(struct smtp_client *c)
{
	bool ok = c->reply_code / 100 == 2;
	char what[300], why[340];

	switch (c->state) {
	case SC_BANNER:
		if (!ok) {
			smtp_client_target_refused(c);
			return;
		}
		smtp_client_send_ehlo(c);
		return;
	case SC_EHLO:
	case SC_HELO:
		if (!ok) {
			if (c->state == SC_EHLO && c->reply_code / 100 == 5) {
				c->state = SC_HELO;
				smtp_client_printf(c, "HELO %s\r\n", c->helo);
				return;
			}
			smtp_client_target_refused(c);
			return;
		}
		smtp_client_secure(c);
		return;
	case SC_STARTTLS:
		if (c->reply_code == 220) {
			smtp_client_start_tls(c);
			return;
		}
		smtp_client_reply_str(c, what, sizeof(what));
		if (c->cfg.tls == SMTP_CLIENT_TLS_REQUIRE) {
			snprintf(why, sizeof(why), "STARTTLS was refused (%s)", what);
			smtp_client_tls_failed(c, why);
			return;
		}
		/* RFC 3207 §4: the session is as it was before STARTTLS; go on in plain text. */
		log_info("smtp-out starttls refused host=%s reply=\"%s\" fallback=plain",
		         c->targets[c->cur].host, what);
		smtp_client_secure(c);
		return;
	case SC_AUTH_LOGIN:
	case SC_AUTH_USER:
	case SC_AUTH:
		smtp_client_auth_reply(c);
		return;
	case SC_TXN:
		smtp_client_txn_reply(c);
		return;
	case SC_BODY: {
		struct smtp_txn *txn = c->txn;
		size_t i;

		if (!c->data_discard)
			for (i = 0; i < txn->nrcpts; i++)
				if (txn->rcpts[i].code / 100 == 2)
					smtp_client_reply_to(c, &txn->rcpts[i]);
		smtp_client_finish_txn(c, false);
		return;
	}
	case SC_RSET:
		c->state = SC_IDLE;
		if (c->next_txn) {
			c->txn = c->next_txn;
			c->next_txn = NULL;
			smtp_client_start_txn(c);
			return;
		}
		smtp_client_arm(c, c->cfg.idle_timeout);
		return;
	case SC_QUIT:
		smtp_client_die(c);
		return;
	default:
		return; /* unsolicited (IDLE): ignore */
	}
}

/* ---- stream callbacks ---- */

/* Is the client before its first transaction on this connection (a failure there is the
 * target's, and the next target may do better)? */
static bool
smtp_client_greeting_state(enum smtp_client_state st)
{
	switch (st) {
	case SC_CONNECTING:
	case SC_BANNER:
	case SC_EHLO:
	case SC_HELO:
	case SC_STARTTLS:
	case SC_HANDSHAKE:
	case SC_AUTH_LOGIN:
	case SC_AUTH_USER:
	case SC_AUTH:
		return true;
	default:
		return false;
	}
}

/* Every complete reply in the input, each to its state. Stops when the connection changes
 * (STARTTLS put a filter over it, or a reconnection replaced it) or the client died. */
static void
smtp_client_read_replies(struct smtp_client *c)
{
	struct evbuffer *in = stream_input(&c->st);
	unsigned gen = c->conn_gen;
	char line[SMTP_CLIENT_LINE_MAX];
	struct evbuffer_ptr eol;
	size_t eol_len, len;

	while (c->state != SC_DEAD && c->conn_gen == gen) {
		const char *text;
		size_t text_len;
		unsigned code;
		bool more;
		char status[12];

		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > SMTP_CLIENT_LINE_MAX)
				goto protocol_error;
			return;
		}
		len = (size_t)eol.pos;
		if (len >= sizeof(line)) {
			evbuffer_drain(in, len + eol_len);
			goto protocol_error;
		}
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		c->reply_bytes += len;
		if (c->reply_bytes > SMTP_CLIENT_REPLY_MAX ||
		    smtp_client_parse_reply_line(line, len, &code, &more, status, &text,
		                                 &text_len) == -1)
			goto protocol_error;
		if (c->reply_code == 0) {
			c->reply_code = code;
			snprintf(c->reply_status, sizeof(c->reply_status), "%s", status);
			smtp_client_copy_text(c->reply_text, sizeof(c->reply_text), text, text_len);
		} else if (code != c->reply_code) {
			goto protocol_error;
		}
		if (c->state == SC_EHLO && code / 100 == 2 && c->reply_bytes > len)
			smtp_client_ehlo_line(c, text, text_len);
		if (more)
			continue;
		smtp_client_reply(c);
		if (c->state == SC_DEAD)
			return; /* freed by the caller */
		c->reply_code = 0;
		c->reply_bytes = 0;
	}
	return;
protocol_error:
	log_info("smtp-out protocol error host=%s state=%d", c->targets[c->cur].host, c->state);
	if (smtp_client_greeting_state(c->state)) {
		smtp_client_target_failed(c, "4.4.1", "protocol error");
		return;
	}
	snprintf(c->error, sizeof(c->error), "protocol error (%.200s)", c->targets[c->cur].host);
	smtp_client_fail_txn(c, "4.5.0", c->error);
	smtp_client_die(c);
}

static void
smtp_client_read_cb(struct stream *st, void *arg)
{
	struct smtp_client *c = arg;

	c->reading = true;
	smtp_client_read_replies(c);
	c->reading = false;
	if (c->state == SC_DEAD) {
		smtp_client_free(c); /* smtp_client_die left it to us */
		return;
	}
	smtp_client_flush(c); /* every command the replies called for, in one write */
}

static void
smtp_client_event_cb(struct stream *st, short what, void *arg)
{
	struct smtp_client *c = arg;
	char why[200], ebuf[160];
	unsigned long e;

	if ((what & BEV_EVENT_CONNECTED) && c->state == SC_HANDSHAKE) {
		smtp_client_tls_ready(c);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;

		/* Commands and the body's last ".\r\n" are small writes: without this, Nagle
		 * waits for the peer's delayed ACK (40 ms) on every transaction. */
		setsockopt(stream_fd(st), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->state = SC_BANNER;
		c->reply_code = 0;
		c->reply_bytes = 0;
		smtp_client_set_remote(c);
		smtp_client_set_timeout(c, c->cfg.command_timeout);
		return;
	}
	if (c->state == SC_STARTTLS || c->state == SC_HANDSHAKE) {
		smtp_client_tls_why(c, what, why, sizeof(why));
		smtp_client_tls_failed(c, why);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof(why), "timeout");
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by the server");
	else if (c->tls_active && (e = stream_ssl_error(st)) != 0)
		snprintf(why, sizeof(why), "%s", (ERR_error_string_n(e, ebuf, sizeof(ebuf)), ebuf));
	else
		snprintf(why, sizeof(why), "%s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	if (smtp_client_greeting_state(c->state)) {
		smtp_client_target_failed(c, "4.4.1", why);
		return;
	}
	switch (c->state) {
	case SC_TXN:
	case SC_BODY:
	case SC_RSET: {
		char text[200];
		snprintf(text, sizeof(text), "lost connection with %.100s: %.60s",
		         c->targets[c->cur].host, why);
		smtp_client_fail_txn(c, "4.4.2", text);
		smtp_client_die(c);
		return;
	}
	default:
		smtp_client_die(c);
		return;
	}
}

/* Connect to targets[cur]; when none is left, fail the transaction and close. */
static void
smtp_client_connect_next(struct smtp_client *c)
{
	stream_close(&c->st);
	c->tls_active = c->tls_tried = c->authed = false;
	c->tls_desc[0] = '\0';
	c->remote[0] = '\0';
	while (c->cur < c->ntargets) {
		const struct smtp_target *t = &c->targets[c->cur];

		struct timeval tv = { c->cfg.connect_timeout, 0 };

		c->state = SC_CONNECTING;
		c->conn_gen++;
		/* 0 also when the connection was refused at once: the event callback hears of it
		 * from the loop and moves on. */
		if (stream_connect(&c->st, c->base, (const struct sockaddr *)&t->addr, t->addrlen,
		                   &tv, smtp_client_read_cb, NULL, smtp_client_event_cb, c) == 0)
			return;
		smtp_client_log_target_failure(c, "4.4.1", strerror(errno));
		c->cur++;
	}
	if (c->error[0] == '\0')
		snprintf(c->error, sizeof(c->error), "no reachable host");
	smtp_client_fail_txn(c, c->error_status[0] ? c->error_status : "4.4.1", c->error);
	smtp_client_die(c);
}

struct smtp_client *
smtp_client_new(struct event_base *base, const struct smtp_client_config *cfg,
                const struct smtp_target *targets, size_t ntargets, struct smtp_txn *txn,
                smtp_client_cb cb, void *arg)
{
	struct smtp_client *c;
	struct timeval now = { 0, 0 };

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->targets = calloc(ntargets ? ntargets : 1, sizeof(*c->targets))) == NULL ||
	    (c->plain_only = calloc(ntargets ? ntargets : 1, sizeof(*c->plain_only))) == NULL ||
	    (c->timer = evtimer_new(base, smtp_client_timer_cb, c)) == NULL) {
		free(c->plain_only);
		free(c->targets);
		free(c);
		return NULL;
	}
	memcpy(c->targets, targets, ntargets * sizeof(*targets));
	c->ntargets = ntargets;
	c->base = base;
	c->cfg = *cfg;
	if (c->cfg.connect_timeout == 0)
		c->cfg.connect_timeout = 30;
	if (c->cfg.command_timeout == 0)
		c->cfg.command_timeout = 300;
	if (c->cfg.data_timeout == 0)
		c->cfg.data_timeout = 600;
	if (c->cfg.idle_timeout == 0)
		c->cfg.idle_timeout = 5;
	snprintf(c->helo, sizeof(c->helo), "%s", cfg->helo);
	c->cb = cb;
	c->arg = arg;
	c->txn = txn;
	c->state = SC_CONNECTING;
	evtimer_add(c->timer, &now);
	return c;
}

int
smtp_client_send(struct smtp_client *c, struct smtp_txn *txn)
{
	if (c->close_requested || c->txn != NULL || c->next_txn != NULL)
		return -1;
	if (c->state == SC_RSET) {
		c->next_txn = txn;
		return 0;
	}
	if (c->state != SC_IDLE)
		return -1;
	c->txn = txn;
	smtp_client_start_txn(c);
	smtp_client_flush(c);
	return 0;
}

bool
smtp_client_idle(const struct smtp_client *c)
{
	return !c->close_requested && c->txn == NULL && c->next_txn == NULL &&
	       (c->state == SC_IDLE || c->state == SC_RSET);
}

void
smtp_client_close(struct smtp_client *c)
{
	struct timeval now = { 0, 0 };

	c->close_requested = true;
	event_del(c->timer);
	event_add(c->timer, &now);
}

void
smtp_client_abort(struct smtp_client *c)
{
	if (c != NULL)
		smtp_client_free(c);
}
