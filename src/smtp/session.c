/*
 * smtp/session.c: one inbound SMTP connection (RFC 5321) and its state machine.
 *
 * Owns: the stream (and so the socket), the current transaction (struct smtp_tx with its
 * message) until the spool takes the message, the HELO name, and references to the config and
 * users file current when it started (a reload does not change a live session). Borrows the
 * spool from the server.
 *
 * Start reading at smtp_session_process(): the pipelining loop. While a complete command (or
 * body bytes) is buffered and the session is not waiting, it handles the next one and appends
 * the reply to the output chain; smtp_session_settle(), at the end of the callback, writes all
 * replies of one read in one go. A spool commit is asynchronous: the session enters WAIT, stops
 * reading (no system call: net/stream.h), keeps the rest of the input where it is, and
 * smtp_session_committed() resumes the loop, so replies always leave in command order.
 *
 * Freeing: a session is freed only from the top of a callback (read, write, event, spool
 * completion, timer), never inside the loop: smtp_session_close() queues the last reply and
 * sets CLOSING; smtp_session_settle() sends it and frees at once when nothing is left to write,
 * else the stream's drained callback frees once the reply is out. Every callback ends with
 * settle (or free). After a call to settle or free, the session is gone.
 */
#include "petrel/smtp/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "petrel/auth.h"
#include "petrel/log.h"
#include "petrel/message.h"
#include "petrel/net/conn_table.h"
#include "petrel/net/stream.h"
#include "petrel/policy.h"
#include "petrel/smtp/body.h"
#include "petrel/smtp/parser.h"
#include "petrel/smtp/reply.h"
#include "petrel/smtp/server.h"
#include "petrel/spool.h"
#include "petrel/stats.h"
#include "petrel/tls.h"
#include "petrel/worker.h"
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#define SMTP_INPUT_HIGH   (256 * 1024) /* stop reading while this much input waits */
#define SMTP_OUTPUT_HIGH  (64 * 1024)  /* stop handling input while replies pile up */
#define SMTP_SPOOL_FLUSH  (64 * 1024)  /* write the body to the spool file past this */
#define SMTP_DATA_PEEK    16           /* iovecs looked at per round in DATA/BDAT */
#define SMTP_RECEIVED_MAX 2048

enum smtp_sasl {
	SMTP_SASL_NONE = 0,
	SMTP_SASL_PLAIN,      /* 334 sent, waiting for the PLAIN response */
	SMTP_SASL_LOGIN_USER, /* 334 Username: sent */
	SMTP_SASL_LOGIN_PASS, /* 334 Password: sent */
};

/* A password check running on a worker thread. `s` is NULL once the session has gone. */
struct smtp_auth_job {
	struct smtp_session *s;
	struct auth_users *users; /* a reference */
	char user[AUTH_NAME_MAX + 1];
	size_t user_len;
	char pass[AUTH_PASS_MAX + 1];
	size_t pass_len;
	const char *mech;
	bool ok;
};

/* One mail transaction: MAIL .. end of data. Freed as a unit (RSET, end of message). */
struct smtp_tx {
	struct message *msg;      /* owned until spool_msg_commit() */
	struct body_scan scan;    /* DATA/BDAT scanner state */
	enum smtp_reply_id error; /* sticky DATA/BDAT error, SMTP_REPLY_OK if none */
	bool bdat;                /* BDAT started: DATA is no longer allowed */
	bool spooling;            /* the spool file has been begun */
	size_t held;              /* DATA: scanned octets left in the input (a possible ".") */
	uint64_t dots;            /* BDAT: stuffing dots we inserted (not counted for SIZE) */
};

struct smtp_session {
	struct smtp_session *prev, *next;   /* server's list */
	struct smtp_server *srv;            /* borrowed */
	struct petrel_config *cfg;          /* a reference: the config it started with (reload) */
	struct auth_users *users;           /* a reference, or NULL: no AUTH */
	struct stream st;                   /* owned; owns the socket */
	const struct config_listen *listen; /* the listener it came in on (config) */
	uint64_t id;                        /* for logs */
	enum smtp_state state;
	unsigned errors;               /* bad commands so far (max_errors) */
	bool esmtp;                    /* greeted with EHLO */
	bool may_relay;                /* client may send to any domain */
	bool skip_line;                /* discarding the rest of an over-long line */
	bool out_blocked;              /* input paused until replies drain */
	bool shutdown;                 /* close after the current message */
	bool eof;                      /* the client half-closed; finish, then free */
	bool bdat_discard;             /* reading a BDAT chunk only to throw it away */
	enum smtp_reply_id bdat_reply; /* reply for a discarded chunk */
	uint64_t bdat_left;            /* octets of the current BDAT chunk still due */
	bool bdat_last;                /* the current chunk is the LAST one */
	time_t cmd_start;              /* when the pending partial command began */
	const char *close_reason;      /* for the disconnect log line */
	char *helo;                    /* HELO/EHLO argument */
	struct smtp_tx *tx;            /* current transaction or NULL */
	struct spool_job *job;         /* pending commit, cancelled if we go */
	uint64_t commit_ns;            /* when the pending commit began (stats_now_ns) */
	const char *line; /* the command being handled (on the stack of smtp_session_line) */
	size_t line_len;
	bool tls;           /* TLS is up (STARTTLS done, or implicit) */
	bool tls_handshake; /* handshake under way */
	bool authenticated;
	enum smtp_sasl sasl;            /* where a SASL exchange stands */
	char *auth_user;                /* after AUTH: the login name */
	char *login_user;               /* AUTH LOGIN: the name, until the password comes */
	struct smtp_auth_job *auth_job; /* password check on a worker, cancelled if we go */
	struct event *auth_timer;       /* delays a failed AUTH's reply (throttling) */
	char tls_info[96];              /* "TLSv1.3 cipher=… bits=…" */
	struct sockaddr_storage peer;
	char peer_str[INET6_ADDRSTRLEN];
};

/* The verb table: which states a verb is allowed in, and who handles it. */
typedef void (*smtp_handler)(struct smtp_session *s, struct smtp_cmd *cmd);

static void smtp_session_process(struct smtp_session *s);
static void smtp_session_settle(struct smtp_session *s);
static void smtp_session_free(struct smtp_session *s);
static void smtp_session_close(struct smtp_session *s, enum smtp_reply_id id, const char *why);
static void smtp_session_reply(struct smtp_session *s, enum smtp_reply_id id);
static void smtp_session_error(struct smtp_session *s, enum smtp_reply_id id, const char *line,
                               size_t len);

static void smtp_proceed_helo(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_mail(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_rcpt(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_data(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_bdat(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_rset(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_noop(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_quit(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_vrfy(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_expn(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_help(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_not_implemented(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_starttls(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_proceed_auth(struct smtp_session *s, struct smtp_cmd *cmd);
static void smtp_session_event_cb(struct stream *st, short what, void *arg);
static void smtp_session_read_cb(struct stream *st, void *arg);
static void smtp_session_write_cb(struct stream *st, void *arg);

#define ST(x)   (1u << SMTP_STATE_##x)
#define ST_IDLE (ST(GREET) | ST(HELO) | ST(MAIL) | ST(RCPT))
#define ST_ANY  ST_IDLE

static const struct {
	unsigned states;
	smtp_handler proceed;
} smtp_verbs[SMTP_VERB_COUNT] = {
	[SMTP_VERB_HELO] = { ST_IDLE, smtp_proceed_helo },
	[SMTP_VERB_EHLO] = { ST_IDLE, smtp_proceed_helo },
	[SMTP_VERB_MAIL] = { ST(HELO), smtp_proceed_mail },
	[SMTP_VERB_RCPT] = { ST(MAIL) | ST(RCPT), smtp_proceed_rcpt },
	[SMTP_VERB_DATA] = { ST(RCPT), smtp_proceed_data },
	[SMTP_VERB_BDAT] = { ST(MAIL) | ST(RCPT), smtp_proceed_bdat },
	[SMTP_VERB_RSET] = { ST_ANY, smtp_proceed_rset },
	[SMTP_VERB_NOOP] = { ST_ANY, smtp_proceed_noop },
	[SMTP_VERB_QUIT] = { ST_ANY, smtp_proceed_quit },
	[SMTP_VERB_VRFY] = { ST_ANY, smtp_proceed_vrfy },
	[SMTP_VERB_EXPN] = { ST_ANY, smtp_proceed_expn },
	[SMTP_VERB_HELP] = { ST_ANY, smtp_proceed_help },
	[SMTP_VERB_STARTTLS] = { ST_IDLE, smtp_proceed_starttls },
	[SMTP_VERB_AUTH] = { ST(GREET) | ST(HELO), smtp_proceed_auth },
	[SMTP_VERB_SEND] = { ST_ANY, smtp_proceed_not_implemented },
	[SMTP_VERB_SOML] = { ST_ANY, smtp_proceed_not_implemented },
	[SMTP_VERB_SAML] = { ST_ANY, smtp_proceed_not_implemented },
	[SMTP_VERB_TURN] = { ST_ANY, smtp_proceed_not_implemented },
};

static const char *const smtp_state_names[SMTP_STATE_COUNT] = {
	[SMTP_STATE_GREET] = "greet", [SMTP_STATE_HELO] = "helo",       [SMTP_STATE_MAIL] = "mail",
	[SMTP_STATE_RCPT] = "rcpt",   [SMTP_STATE_DATA] = "data",       [SMTP_STATE_BDAT] = "bdat",
	[SMTP_STATE_WAIT] = "wait",   [SMTP_STATE_CLOSING] = "closing",
};

const char *
smtp_state_name(enum smtp_state state)
{
	return (unsigned)state < SMTP_STATE_COUNT ? smtp_state_names[state] : "?";
}

struct smtp_session *
smtp_session_next(const struct smtp_session *s)
{
	return s->next;
}

static void
smtp_session_set_state(struct smtp_session *s, enum smtp_state state)
{
	if (s->state == state)
		return;
	log_debug("%016llx smtp state %s -> %s", (unsigned long long)s->id,
	          smtp_state_name(s->state), smtp_state_name(state));
	stats_session_state(s->state, state);
	s->state = state;
}

/* The read timeout follows the state: data timeout inside a body, command timeout elsewhere. */
static void
smtp_session_set_timeouts(struct smtp_session *s, bool data)
{
	const struct petrel_config *cfg = s->cfg;
	struct timeval rt = { data ? cfg->timeout_data : cfg->timeout_command, 0 };
	struct timeval wt = { cfg->timeout_command, 0 };

	stream_set_timeouts(&s->st, &rt, &wt);
}

/* ---- transactions ---- */

static void
smtp_tx_free(struct smtp_session *s)
{
	if (s->tx == NULL)
		return;
	spool_msg_abort(s->srv->spool, s->tx->msg);
	free(s->tx);
	s->tx = NULL;
}

/* Sticky error inside a body: the first one wins, the reply waits for the end of data. */
static void
smtp_tx_fail(struct smtp_tx *tx, enum smtp_reply_id id)
{
	if (tx->error == SMTP_REPLY_OK)
		tx->error = id;
}

/* Count a refusal for the stats, by its reply (replies that refuse nothing count nothing). */
static void
smtp_session_count_reject(enum smtp_reply_id id)
{
	switch (id) {
	case SMTP_REPLY_SIZE_EXCEEDED:
		stats_reject(STATS_REJECT_SIZE);
		break;
	case SMTP_REPLY_BARE_LF:
	case SMTP_REPLY_BARE_LF_CLOSE:
		stats_reject(STATS_REJECT_BARE_NEWLINE);
		break;
	case SMTP_REPLY_TEXT_LINE_TOO_LONG:
		stats_reject(STATS_REJECT_LINE_TOO_LONG);
		break;
	case SMTP_REPLY_RELAY_DENIED:
		stats_reject(STATS_REJECT_RELAY_DENIED);
		break;
	case SMTP_REPLY_TOO_MANY_RCPTS:
		stats_reject(STATS_REJECT_TOO_MANY_RCPTS);
		break;
	case SMTP_REPLY_AUTH_REQUIRED:
		stats_reject(STATS_REJECT_AUTH_REQUIRED);
		break;
	case SMTP_REPLY_SENDER_NOT_OWNED:
		stats_reject(STATS_REJECT_SENDER_NOT_OWNED);
		break;
	case SMTP_REPLY_LOCAL_ERROR:
		stats_reject(STATS_REJECT_LOCAL_ERROR);
		break;
	default:
		break;
	}
}

/* Write the envelope and the Received: header: the spool file exists from now on. */
static int
smtp_tx_spool_begin(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	char hdr[SMTP_RECEIVED_MAX];
	size_t hlen;

	if (tx->spooling)
		return 0;
	hlen = message_received_header(tx->msg, s->cfg->hostname, s->tls ? s->tls_info : NULL, hdr,
	                               sizeof(hdr));
	if (hlen == 0 || spool_msg_begin(s->srv->spool, tx->msg, hdr, hlen) == -1) {
		log_error("%016llx smtp spool failed id=%s error=\"%s\"", (unsigned long long)s->id,
		          tx->msg->id, strerror(errno));
		return -1;
	}
	tx->spooling = true;
	return 0;
}

/* Move n body octets from the input chain into the message (or drop them after an error). */
static void
smtp_tx_store(struct smtp_session *s, struct evbuffer *in, size_t n)
{
	struct smtp_tx *tx = s->tx;
	uint64_t max = s->cfg->max_message_size; /* RFC 1870 §3: the size is the message's,
	                                                 without the dots of dot-stuffing. */
	uint64_t dots = tx->bdat ? tx->dots : tx->scan.stuffed;

	if (tx->error == SMTP_REPLY_OK && max != 0 && tx->msg->body_size + n - dots > max)
		smtp_tx_fail(tx, SMTP_REPLY_SIZE_EXCEEDED);
	if (tx->error != SMTP_REPLY_OK) {
		evbuffer_drain(in, n);
		return;
	}
	evbuffer_remove_buffer(in, tx->msg->body, n);
	tx->msg->body_size += n;
	if (evbuffer_get_length(tx->msg->body) >= SMTP_SPOOL_FLUSH) {
		if (smtp_tx_spool_begin(s) == -1 || spool_msg_write(s->srv->spool, tx->msg) == -1) {
			smtp_tx_fail(tx, SMTP_REPLY_LOCAL_ERROR);
			evbuffer_drain(tx->msg->body, evbuffer_get_length(tx->msg->body));
		}
	}
}

static void
smtp_session_committed(void *arg, const char *id, bool ok)
{
	struct smtp_session *s = arg;
	char line[64];
	int n;

	s->job = NULL;
	if (ok) {
		n = snprintf(line, sizeof(line), "250 2.0.0 Ok: queued as %s\r\n", id);
		stream_write(&s->st, line, (size_t)n);
		s->srv->stats.messages++;
		stats_observe(STATS_HIST_ACCEPT, stats_now_ns() - s->commit_ns);
	} else {
		smtp_session_count_reject(SMTP_REPLY_LOCAL_ERROR);
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
	}
	smtp_session_set_state(s, SMTP_STATE_HELO);
	if (s->shutdown)
		smtp_session_close(s, SMTP_REPLY_SHUTDOWN, "shutdown");
	else
		smtp_session_process(s);
	smtp_session_settle(s);
}

/* End of DATA or of the LAST chunk: refuse with the sticky error, or hand over to the spool. */
static void
smtp_tx_finish(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct message *msg = tx->msg;
	unsigned errs = tx->scan.errors;

	smtp_session_set_timeouts(s, false);
	if (tx->error == SMTP_REPLY_OK && (errs & (BODY_ERR_BARE_LF | BODY_ERR_BARE_CR)))
		tx->error = SMTP_REPLY_BARE_LF;
	if (tx->error == SMTP_REPLY_OK && (errs & BODY_ERR_LINE_TOO_LONG))
		tx->error = SMTP_REPLY_TEXT_LINE_TOO_LONG;
	if (tx->error == SMTP_REPLY_OK && smtp_tx_spool_begin(s) == -1)
		tx->error = SMTP_REPLY_LOCAL_ERROR;
	if (tx->error != SMTP_REPLY_OK) {
		const struct smtp_reply *r = smtp_reply_get(tx->error);
		log_info("%016llx smtp message rejected id=%s result=\"%u %s %s\"",
		         (unsigned long long)s->id, msg->id, r->code, r->enhanced, r->text);
		s->srv->stats.rejected++;
		smtp_session_count_reject(tx->error);
		smtp_session_reply(s, tx->error);
		smtp_tx_free(s);
		smtp_session_set_state(s, SMTP_STATE_HELO);
		return;
	}
	log_info("%016llx smtp message accepted id=%s from=<%s> nrcpt=%zu size=%llu",
	         (unsigned long long)s->id, msg->id, msg->from, msg->nrcpts,
	         (unsigned long long)msg->body_size);
	s->srv->stats.bytes += msg->body_size;
	msg->hops = tx->scan.received + 1; /* and ours, prepended */
	tx->msg = NULL;                    /* the spool owns it now, even if the commit fails */
	free(s->tx);
	s->tx = NULL;
	smtp_session_set_state(s, SMTP_STATE_WAIT);
	s->commit_ns = stats_now_ns();
	s->job = spool_msg_commit(s->srv->spool, msg, smtp_session_committed, s);
	if (s->job == NULL) {
		smtp_session_count_reject(SMTP_REPLY_LOCAL_ERROR);
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
		smtp_session_set_state(s, SMTP_STATE_HELO);
	}
}

/* ---- replies ---- */

static void
smtp_session_reply(struct smtp_session *s, enum smtp_reply_id id)
{
	const struct smtp_reply *r = smtp_reply_get(id);

	stream_write(&s->st, r->line, r->len);
}

/*
 * A failed command: reply, log it (escaped), count it, drop the client past max_errors. `line`
 * NULL means the command being handled (s->line).
 */
static void
smtp_session_error(struct smtp_session *s, enum smtp_reply_id id, const char *line, size_t len)
{
	if (line == NULL) {
		line = s->line;
		len = s->line_len;
	}
	if (len >= 4 && strncasecmp(line, "AUTH", 4) == 0 && len > 4) {
		/* Never log an AUTH argument: it may carry credentials. */
		line = "AUTH (arguments not logged)";
		len = strlen(line);
	}
	const struct smtp_reply *r = smtp_reply_get(id);
	char esc[128];

	smtp_session_count_reject(id);
	smtp_session_reply(s, id);
	log_info("%016llx smtp failed-command command=\"%s\" result=\"%u %s %s\"",
	         (unsigned long long)s->id, log_escape(esc, sizeof(esc), line, len), r->code,
	         r->enhanced, r->text);
	if (r->code >= 500 && ++s->errors >= s->cfg->max_errors)
		smtp_session_close(s, SMTP_REPLY_TOO_MANY_ERRORS, "errors");
}

static void
smtp_session_close(struct smtp_session *s, enum smtp_reply_id id, const char *why)
{
	if (s->state == SMTP_STATE_CLOSING)
		return;
	smtp_session_reply(s, id);
	s->close_reason = why;
	smtp_session_set_state(s, SMTP_STATE_CLOSING);
	/* Inside a callback, settle() sends the reply and frees; outside one (shutdown), the
	 * stream's drained callback does, from the loop. */
	stream_flush_later(&s->st);
}

/*
 * The end of every callback: send what it queued (all replies of one read in one write), then
 * free the session if it is done and nothing is left to write; else say whether it wants input
 * (not while it waits for the spool, a password check or a slow reader). After this call the
 * session may be gone.
 */
static void
smtp_session_settle(struct smtp_session *s)
{
	bool done = s->state == SMTP_STATE_CLOSING || (s->eof && s->state != SMTP_STATE_WAIT);

	if (stream_flush(&s->st) == -1) {
		/* Reset or broken pipe: nobody is left to read a reply. */
		if (!s->close_reason)
			s->close_reason = "error";
		smtp_session_free(s);
		return;
	}
	if (done) {
		if (stream_output_length(&s->st) == 0) {
			smtp_session_free(s);
			return;
		}
		smtp_session_set_state(s, SMTP_STATE_CLOSING); /* the drained callback frees */
		stream_set_reading(&s->st, false);
		return;
	}
	stream_set_reading(&s->st, s->state != SMTP_STATE_WAIT && !s->out_blocked);
}

/* ---- command handlers ---- */

/* The 503 that explains best why this verb is not allowed now. */
static enum smtp_reply_id
smtp_session_wrong_state(const struct smtp_session *s, enum smtp_verb verb)
{
	switch (verb) {
	case SMTP_VERB_MAIL:
		return s->state == SMTP_STATE_GREET ? SMTP_REPLY_NEED_HELO : SMTP_REPLY_NESTED_MAIL;
	case SMTP_VERB_RCPT:
		return s->state == SMTP_STATE_GREET ? SMTP_REPLY_NEED_HELO : SMTP_REPLY_NEED_MAIL;
	case SMTP_VERB_DATA:
	case SMTP_VERB_BDAT:
		if (s->state == SMTP_STATE_GREET)
			return SMTP_REPLY_NEED_HELO;
		return s->state == SMTP_STATE_MAIL ? SMTP_REPLY_NEED_RCPT : SMTP_REPLY_NEED_MAIL;
	case SMTP_VERB_AUTH:
		return s->state == SMTP_STATE_GREET ? SMTP_REPLY_NEED_HELO : SMTP_REPLY_AUTH_IN_TXN;
	default:
		return SMTP_REPLY_BAD_SEQUENCE;
	}
}

/* ---- STARTTLS and AUTH ---- */

/* An exchange that cannot go on (over-long line, STARTTLS): forget it. */
static void
smtp_session_sasl_abort(struct smtp_session *s)
{
	s->sasl = SMTP_SASL_NONE;
	free(s->login_user);
	s->login_user = NULL;
}

static bool
smtp_session_tls_offered(const struct smtp_session *s)
{
	return !s->tls && s->srv->tls != NULL &&
	       config_listen_tls_effective(s->cfg, s->listen) == CONFIG_LISTEN_TLS_STARTTLS;
}

static bool
smtp_session_auth_offered(const struct smtp_session *s)
{
	return s->users != NULL && !s->authenticated && (s->tls || !s->cfg->auth_require_tls);
}

/*
 * auth.sender_login_match: the login must be the whole reverse path, or its local part when
 * the login has no '@' and the sender's domain is one of ours.
 */
static bool
smtp_session_owns_sender(const struct smtp_session *s, const struct smtp_path *path)
{
	const char *user = s->auth_user;
	size_t ulen = strlen(user), local_len;

	if (path->null)
		return true; /* bounces carry no owner */
	if (strcasecmp(path->addr, user) == 0)
		return true;
	local_len = path->domain_off > 0 ? path->domain_off - 1 : path->len;
	return strchr(user, '@') == NULL && local_len == ulen &&
	       strncmp(path->addr, user, ulen) == 0 &&
	       config_is_local_domain(s->cfg, path->addr + path->domain_off,
	                              path->len - path->domain_off);
}

/*
 * STARTTLS (RFC 3207): answer 220 in the clear, throw away whatever the client pipelined after
 * the command (never execute plaintext inside the TLS session: CVE-2011-0411), forget
 * everything learnt so far (HELO, transaction, AUTH), and put a TLS filter over the socket.
 */
static void
smtp_proceed_starttls(struct smtp_session *s, struct smtp_cmd *cmd)
{
	struct evbuffer *in = stream_input(&s->st);
	size_t pending = evbuffer_get_length(in);
	SSL *ssl;

	if (s->tls) {
		smtp_session_error(s, SMTP_REPLY_TLS_ACTIVE, NULL, 0);
		return;
	}
	if (!smtp_session_tls_offered(s)) {
		smtp_session_error(s, SMTP_REPLY_NOT_IMPLEMENTED, NULL, 0);
		return;
	}
	if ((ssl = tls_server_ssl(s->srv->tls)) == NULL) {
		smtp_session_reply(s, SMTP_REPLY_TLS_UNAVAILABLE);
		return;
	}
	smtp_session_reply(s, SMTP_REPLY_TLS_READY);
	if (pending > 0) {
		log_info("%016llx smtp starttls discarded-pipelined-octets=%zu",
		         (unsigned long long)s->id, pending);
		evbuffer_drain(in, pending);
	}
	smtp_tx_free(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	/* RFC 3207 §4.2: discard any knowledge obtained from the client, AUTH included. */
	s->authenticated = false;
	free(s->auth_user);
	s->auth_user = NULL;
	smtp_session_sasl_abort(s);
	s->may_relay = policy_client_may_relay(s->cfg, (struct sockaddr *)&s->peer, false);
	smtp_session_set_state(s, SMTP_STATE_GREET);
	/* The 220 is queued, so it leaves in the clear before the handshake; from here the
	 * stream is a TLS filter over the socket (timeouts and the input limit carry over). */
	if (stream_start_tls(&s->st, ssl, BUFFEREVENT_SSL_ACCEPTING) == -1) {
		smtp_session_close(s, SMTP_REPLY_TLS_UNAVAILABLE, "tls-setup");
		return;
	}
	s->tls_handshake = true;
}

static void smtp_session_auth_check(struct smtp_session *s, const char *user, size_t ulen,
                                    const char *pass, size_t plen, const char *mech);

/* The delayed 535 of a throttled failure. */
static void
smtp_session_auth_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	smtp_session_set_state(s, s->helo ? SMTP_STATE_HELO : SMTP_STATE_GREET);
	smtp_session_error(s, SMTP_REPLY_AUTH_FAILED, "AUTH", 4);
	smtp_session_process(s);
	smtp_session_settle(s);
}

/* Decode a base64 SASL response; "=" is the empty response (RFC 4954 §4). */
static long
smtp_session_sasl_decode(const char *in, size_t len, unsigned char *out, size_t outsize)
{
	if (len == 1 && in[0] == '=')
		return 0;
	return auth_base64_decode(in, len, out, outsize);
}

static void
smtp_session_sasl_plain(struct smtp_session *s, const char *resp, size_t len)
{
	unsigned char buf[AUTH_LINE_MAX];
	const char *authz, *user, *pass;
	size_t authz_len, user_len, pass_len;
	long n = smtp_session_sasl_decode(resp, len, buf, sizeof(buf));

	if (n < 0 || auth_plain_parse(buf, (size_t)n, &authz, &authz_len, &user, &user_len, &pass,
	                              &pass_len) == -1) {
		OPENSSL_cleanse(buf, sizeof(buf));
		smtp_session_error(s, SMTP_REPLY_AUTH_SYNTAX, "AUTH PLAIN (response)", 21);
		return;
	}
	if (authz_len > 0 && (authz_len != user_len || memcmp(authz, user, user_len) != 0)) {
		/* We act for nobody else: an authorization identity must be the login itself. */
		OPENSSL_cleanse(buf, sizeof(buf));
		smtp_session_auth_check(s, "", 0, "", 0, "PLAIN");
		return;
	}
	smtp_session_auth_check(s, user, user_len, pass, pass_len, "PLAIN");
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* One line of a SASL exchange (after a 334). */
static void
smtp_session_sasl_line(struct smtp_session *s, const char *line, size_t len)
{
	unsigned char buf[AUTH_LINE_MAX];
	enum smtp_sasl step = s->sasl;
	long n;

	s->sasl = SMTP_SASL_NONE;
	if (len == 1 && line[0] == '*') {
		free(s->login_user);
		s->login_user = NULL;
		smtp_session_error(s, SMTP_REPLY_AUTH_CANCELLED, "AUTH (cancelled)", 16);
		return;
	}
	switch (step) {
	case SMTP_SASL_PLAIN:
		smtp_session_sasl_plain(s, line, len);
		return;
	case SMTP_SASL_LOGIN_USER:
		n = smtp_session_sasl_decode(line, len, buf, sizeof(buf) - 1);
		if (n <= 0 || n > AUTH_NAME_MAX || memchr(buf, '\0', (size_t)n) != NULL) {
			smtp_session_error(s, SMTP_REPLY_AUTH_SYNTAX, "AUTH LOGIN (user)", 17);
			return;
		}
		free(s->login_user);
		s->login_user = strndup((const char *)buf, (size_t)n);
		s->sasl = SMTP_SASL_LOGIN_PASS;
		stream_write(&s->st, "334 UGFzc3dvcmQ6\r\n", 18); /* "Password:" */
		return;
	case SMTP_SASL_LOGIN_PASS:
		n = smtp_session_sasl_decode(line, len, buf, sizeof(buf));
		if (n < 0 || s->login_user == NULL) {
			OPENSSL_cleanse(buf, sizeof(buf));
			smtp_session_error(s, SMTP_REPLY_AUTH_SYNTAX, "AUTH LOGIN (password)", 21);
			return;
		}
		smtp_session_auth_check(s, s->login_user, strlen(s->login_user), (const char *)buf,
		                        (size_t)n, "LOGIN");
		OPENSSL_cleanse(buf, sizeof(buf));
		free(s->login_user);
		s->login_user = NULL;
		return;
	default:
		return;
	}
}

static void
smtp_proceed_auth(struct smtp_session *s, struct smtp_cmd *cmd)
{
	const char *mech = cmd->u.auth.mech, *ir = cmd->u.auth.initial;
	size_t mlen = cmd->u.auth.mech_len, irlen = cmd->u.auth.initial_len;
	bool blocked = false;

	if (s->users == NULL) {
		smtp_session_error(s, SMTP_REPLY_NOT_IMPLEMENTED, "AUTH", 4);
		return;
	}
	if (s->authenticated) {
		smtp_session_error(s, SMTP_REPLY_AUTH_ALREADY, "AUTH", 4);
		return;
	}
	if (!s->esmtp) {
		smtp_session_error(s, SMTP_REPLY_NEED_HELO, "AUTH", 4);
		return;
	}
	if (!s->tls && s->cfg->auth_require_tls) {
		smtp_session_error(s, SMTP_REPLY_AUTH_NEEDS_TLS, "AUTH", 4);
		return;
	}
	auth_throttle_delay(s->srv->throttle, (struct sockaddr *)&s->peer, time(NULL), &blocked);
	if (blocked) {
		log_info("%016llx smtp auth refused reason=throttled", (unsigned long long)s->id);
		smtp_session_close(s, SMTP_REPLY_AUTH_THROTTLED, "auth-throttled");
		return;
	}
	if (mlen == 5 && strncasecmp(mech, "PLAIN", 5) == 0) {
		if (ir != NULL) {
			smtp_session_sasl_plain(s, ir, irlen);
			return;
		}
		s->sasl = SMTP_SASL_PLAIN;
		stream_write(&s->st, "334 \r\n", 6);
		return;
	}
	if (mlen == 5 && strncasecmp(mech, "LOGIN", 5) == 0) {
		if (ir != NULL) {
			s->sasl = SMTP_SASL_LOGIN_USER;
			smtp_session_sasl_line(s, ir, irlen);
			return;
		}
		s->sasl = SMTP_SASL_LOGIN_USER;
		stream_write(&s->st, "334 VXNlcm5hbWU6\r\n", 18); /* "Username:" */
		return;
	}
	smtp_session_error(s, SMTP_REPLY_AUTH_MECH, "AUTH", 4);
}

/* The verdict of a password check (on the loop thread): reply, log, throttle. */
static void
smtp_session_auth_result(struct smtp_session *s, bool ok, const char *user, size_t ulen,
                         const char *mech)
{
	char esc[96];
	bool blocked = false;
	unsigned delay;
	struct timeval tv = { 0, 0 };

	log_escape(esc, sizeof(esc), user, ulen);
	smtp_session_set_state(s, s->helo ? SMTP_STATE_HELO : SMTP_STATE_GREET);
	if (ok) {
		free(s->auth_user);
		s->auth_user = strndup(user, ulen);
		s->authenticated = s->auth_user != NULL;
		s->may_relay = true;
		stats_auth(true);
		log_info("%016llx smtp auth user=\"%s\" mech=%s result=ok",
		         (unsigned long long)s->id, esc, mech);
		smtp_session_reply(s, SMTP_REPLY_AUTH_OK);
		return;
	}
	log_info("%016llx smtp auth user=\"%s\" mech=%s result=failed", (unsigned long long)s->id,
	         esc, mech);
	stats_auth(false);
	auth_throttle_fail(s->srv->throttle, (struct sockaddr *)&s->peer, time(NULL));
	delay = auth_throttle_delay(s->srv->throttle, (struct sockaddr *)&s->peer, time(NULL),
	                            &blocked);
	if (blocked) {
		smtp_session_close(s, SMTP_REPLY_AUTH_THROTTLED, "auth-throttled");
		return;
	}
	if (delay == 0 ||
	    (s->auth_timer == NULL &&
	     (s->auth_timer = evtimer_new(s->srv->base, smtp_session_auth_timer_cb, s)) == NULL)) {
		smtp_session_error(s, SMTP_REPLY_AUTH_FAILED, "AUTH", 4);
		return;
	}
	/* Brute force is slow: the 535 comes only after the delay; input waits meanwhile. */
	smtp_session_set_state(s, SMTP_STATE_WAIT);
	tv.tv_sec = delay;
	evtimer_add(s->auth_timer, &tv);
}

static void
smtp_session_auth_work(void *arg)
{
	struct smtp_auth_job *job = arg;

	job->ok = job->user_len > 0 &&
	          auth_users_check(job->users, job->user, job->user_len, job->pass, job->pass_len);
	OPENSSL_cleanse(job->pass, sizeof(job->pass));
}

static void
smtp_session_auth_done(void *arg, bool cancelled)
{
	struct smtp_auth_job *job = arg;
	struct smtp_session *s = job->s;

	if (s != NULL && !cancelled) {
		s->auth_job = NULL;
		smtp_session_auth_result(s, job->ok, job->user, job->user_len, job->mech);
		if (s->state != SMTP_STATE_WAIT)
			smtp_session_process(s);
		smtp_session_settle(s);
	} else if (s != NULL) {
		s->auth_job = NULL;
	}
	auth_users_free(job->users);
	OPENSSL_cleanse(job, sizeof(*job));
	free(job);
}

/* Check the credentials on a worker thread (crypt is slow on purpose); WAIT meanwhile. */
static void
smtp_session_auth_check(struct smtp_session *s, const char *user, size_t ulen, const char *pass,
                        size_t plen, const char *mech)
{
	struct smtp_auth_job *job;

	if (ulen > AUTH_NAME_MAX || plen > AUTH_PASS_MAX ||
	    (job = calloc(1, sizeof(*job))) == NULL) {
		smtp_session_auth_result(s, false, user, ulen > AUTH_NAME_MAX ? 0 : ulen, mech);
		return;
	}
	job->s = s;
	job->users = auth_users_ref(s->users); /* the session may go (and a reload) first */
	memcpy(job->user, user, ulen);
	job->user_len = ulen;
	memcpy(job->pass, pass, plen);
	job->pass_len = plen;
	job->mech = mech;
	if (worker_submit(s->srv->workers, smtp_session_auth_work, smtp_session_auth_done, job) ==
	    -1) {
		auth_users_free(job->users);
		OPENSSL_cleanse(job, sizeof(*job));
		free(job);
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
		return;
	}
	s->auth_job = job;
	smtp_session_set_state(s, SMTP_STATE_WAIT);
}

static void
smtp_proceed_helo(struct smtp_session *s, struct smtp_cmd *cmd)
{
	char buf[512];
	size_t n;
	int r;

	smtp_tx_free(s);
	free(s->helo);
	s->helo = strndup(cmd->u.helo.domain, cmd->u.helo.domain_len);
	if (s->helo == NULL) {
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
		return;
	}
	s->esmtp = cmd->verb == SMTP_VERB_EHLO;
	smtp_session_set_state(s, SMTP_STATE_HELO);
	if (s->esmtp) {
		struct smtp_ehlo_info info = {
			.hostname = s->cfg->hostname,
			.max_size = s->cfg->max_message_size,
			.starttls = smtp_session_tls_offered(s),
			.auth_mechs = smtp_session_auth_offered(s) ? "PLAIN LOGIN" : NULL,
			.dsn = true, /* RFC 3461: NOTIFY, ORCPT, RET, ENVID are kept and honoured */
		};
		n = smtp_reply_ehlo(buf, sizeof(buf), &info);
	} else {
		r = snprintf(buf, sizeof(buf), "250 %s\r\n", s->cfg->hostname);
		n = r > 0 && (size_t)r < sizeof(buf) ? (size_t)r : 0;
	}
	if (n == 0) {
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
		return;
	}
	stream_write(&s->st, buf, n);
}

static void
smtp_proceed_mail(struct smtp_session *s, struct smtp_cmd *cmd)
{
	const struct smtp_path *path = &cmd->u.mail.path;
	const struct smtp_mail_params *p = &cmd->u.mail.params;
	uint64_t max = s->cfg->max_message_size;
	struct smtp_tx *tx = NULL;
	struct message *msg = NULL;
	if (s->listen->role == CONFIG_ROLE_SUBMISSION && !s->authenticated) {
		/* Submission (RFC 6409): everything needs AUTH first. */
		smtp_session_error(s, SMTP_REPLY_AUTH_REQUIRED, NULL, 0);
		return;
	}
	if (s->authenticated && s->cfg->auth_sender_login_match &&
	    !smtp_session_owns_sender(s, path)) {
		smtp_session_error(s, SMTP_REPLY_SENDER_NOT_OWNED, NULL, 0);
		return;
	}
	if (p->body == SMTP_BODY_BINARYMIME) {
		smtp_session_error(s, SMTP_REPLY_BINARYMIME, NULL, 0);
		return;
	}
	if (p->size_set && max != 0 && p->size > max) {
		smtp_session_error(s, SMTP_REPLY_SIZE_EXCEEDED, NULL, 0);
		return;
	}
	if (path->utf8 && !p->smtputf8) {
		smtp_session_error(s, SMTP_REPLY_UTF8_REQUIRED, NULL, 0);
		return;
	}
	if ((tx = calloc(1, sizeof(*tx))) == NULL || (msg = message_new()) == NULL ||
	    message_set_from(msg, path->addr) == -1 ||
	    message_set_helo(msg, s->helo, strlen(s->helo)) == -1 ||
	    (p->envid[0] != '\0' && message_set_envid(msg, p->envid) == -1)) {
		free(tx);
		message_free(msg);
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
		return;
	}
	msg->body_type = p->body;
	msg->smtputf8 = p->smtputf8;
	msg->ret = p->ret; /* RFC 3848 protocol names */
	msg->protocol = !s->esmtp                    ? "SMTP"
	                : s->tls && s->authenticated ? "ESMTPSA"
	                : s->tls                     ? "ESMTPS"
	                : s->authenticated           ? "ESMTPA"
	                                             : "ESMTP";
	snprintf(msg->client_addr, sizeof(msg->client_addr), "%s%s",
	         s->peer.ss_family == AF_INET6 ? "IPv6:" : "", s->peer_str);
	tx->msg = msg;
	tx->error = SMTP_REPLY_OK;
	s->tx = tx;
	smtp_session_set_state(s, SMTP_STATE_MAIL);
	smtp_session_reply(s, SMTP_REPLY_MAIL_OK);
}

static void
smtp_proceed_rcpt(struct smtp_session *s, struct smtp_cmd *cmd)
{
	const struct smtp_path *path = &cmd->u.rcpt.path;
	const struct smtp_rcpt_params *p = &cmd->u.rcpt.params;
	struct message *msg = s->tx->msg;

	if (s->tx->bdat) {
		smtp_session_error(s, SMTP_REPLY_BAD_SEQUENCE, NULL, 0);
		return;
	}
	if (path->utf8 && !msg->smtputf8) {
		smtp_session_error(s, SMTP_REPLY_UTF8_REQUIRED, NULL, 0);
		return;
	}
	if (msg->nrcpts >= s->cfg->max_recipients) {
		smtp_session_count_reject(SMTP_REPLY_TOO_MANY_RCPTS);
		smtp_session_reply(s, SMTP_REPLY_TOO_MANY_RCPTS);
		return;
	}
	if (policy_check_rcpt(s->cfg, s->may_relay, path) != POLICY_ACCEPT) {
		smtp_session_error(s, SMTP_REPLY_RELAY_DENIED, NULL, 0);
		return;
	}
	if (message_add_rcpt(msg, path->postmaster ? "postmaster" : path->addr, p->notify,
	                     p->orcpt) == -1) {
		smtp_session_reply(s, SMTP_REPLY_LOCAL_ERROR);
		return;
	}
	smtp_session_set_state(s, SMTP_STATE_RCPT);
	smtp_session_reply(s, SMTP_REPLY_RCPT_OK);
}

static void
smtp_proceed_data(struct smtp_session *s, struct smtp_cmd *cmd)
{
	if (s->tx->bdat) {
		smtp_session_error(s, SMTP_REPLY_BDAT_MIX, "DATA", 4);
		return;
	}
	body_scan_init(&s->tx->scan, false);
	smtp_session_set_state(s, SMTP_STATE_DATA);
	smtp_session_set_timeouts(s, true);
	smtp_session_reply(s, SMTP_REPLY_DATA_GO);
}

/*
 * BDAT: the chunk's octets follow the command whatever we answer, so a refused chunk is still
 * read (and thrown away) before its reply: bdat_discard with the reply kept in bdat_reply.
 */
static void
smtp_session_bdat_discard(struct smtp_session *s, uint64_t size, enum smtp_reply_id reply)
{
	s->bdat_discard = true;
	s->bdat_reply = reply;
	s->bdat_left = size;
	s->bdat_last = false;
	smtp_session_set_state(s, SMTP_STATE_BDAT);
	smtp_session_set_timeouts(s, true);
}

static void
smtp_proceed_bdat(struct smtp_session *s, struct smtp_cmd *cmd)
{
	struct smtp_tx *tx = s->tx;
	uint64_t max = s->cfg->max_message_size;

	if (s->state == SMTP_STATE_MAIL) {
		smtp_session_bdat_discard(s, cmd->u.bdat.size, SMTP_REPLY_NEED_RCPT);
		return;
	}
	if (!tx->bdat) {
		tx->bdat = true;
		body_scan_init(&tx->scan, true);
	}
	if (max != 0 && cmd->u.bdat.size > max)
		smtp_tx_fail(tx, SMTP_REPLY_SIZE_EXCEEDED);
	s->bdat_discard = false;
	s->bdat_left = cmd->u.bdat.size;
	s->bdat_last = cmd->u.bdat.last;
	smtp_session_set_state(s, SMTP_STATE_BDAT);
	smtp_session_set_timeouts(s, true);
}

static void
smtp_proceed_rset(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_tx_free(s);
	if (s->state != SMTP_STATE_GREET)
		smtp_session_set_state(s, SMTP_STATE_HELO);
	smtp_session_reply(s, SMTP_REPLY_RSET_OK);
}

static void
smtp_proceed_noop(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_session_reply(s, SMTP_REPLY_OK);
}

static void
smtp_proceed_quit(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_tx_free(s);
	smtp_session_close(s, SMTP_REPLY_BYE, "quit");
}

static void
smtp_proceed_vrfy(struct smtp_session *s, struct smtp_cmd *cmd)
{
	/* RFC 5321 §3.5.3: 252, never an address oracle. */
	smtp_session_reply(s, SMTP_REPLY_VRFY);
}

static void
smtp_proceed_expn(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_session_error(s, SMTP_REPLY_EXPN, "EXPN", 4);
}

static void
smtp_proceed_help(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_session_reply(s, SMTP_REPLY_HELP);
}

static void
smtp_proceed_not_implemented(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_session_error(s, SMTP_REPLY_NOT_IMPLEMENTED, smtp_verb_name(cmd->verb),
	                   strlen(smtp_verb_name(cmd->verb)));
}

/* One complete command line (CRLF removed). */
static void
smtp_session_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	enum smtp_parse_result r;

	r = smtp_parser_command(line, len, &cmd);
	if (cmd.verb == SMTP_VERB_NONE) {
		/* Not a command we know: it may be a SASL response sent after a refused AUTH, so
		 * its bytes are not logged, only its size. */
		char what[48];
		int n = snprintf(what, sizeof(what), "(unrecognized, %zu octets)", len);
		smtp_session_error(s, smtp_reply_for_parse(r, cmd.verb), what, (size_t)n);
		return;
	}
	if (cmd.verb == SMTP_VERB_AUTH && r != SMTP_PARSE_OK && cmd.u.auth.mech_len == 0 &&
	    len > 5 && memchr(line + 5, ' ', len - 5) != NULL) {
		/* AUTH mech <initial-response> with a response that is not base64 */
		smtp_session_error(s, SMTP_REPLY_AUTH_SYNTAX, NULL, 0);
		return;
	}
	if (cmd.verb == SMTP_VERB_BDAT && r != SMTP_PARSE_OK) {
		/* Without a chunk size the octets that follow cannot be told from commands. */
		smtp_session_error(s, smtp_reply_for_parse(r, cmd.verb), line, len);
		smtp_session_close(s, SMTP_REPLY_TOO_MANY_ERRORS, "bdat-syntax");
		return;
	}
	if (!(smtp_verbs[cmd.verb].states & (1u << s->state))) {
		enum smtp_reply_id why = smtp_session_wrong_state(s, cmd.verb);
		if (cmd.verb == SMTP_VERB_BDAT)
			smtp_session_bdat_discard(s, cmd.u.bdat.size, why); /* replies after it */
		else
			smtp_session_error(s, why, line, len);
		return;
	}
	if (r != SMTP_PARSE_OK) {
		smtp_session_error(s, smtp_reply_for_parse(r, cmd.verb), line, len);
		return;
	}
	smtp_verbs[cmd.verb].proceed(s, &cmd);
}

/* ---- input ---- */

/* Take one command line out of the input. Returns 1 if it made progress, 0 if it needs more. */
static int
smtp_session_line(struct smtp_session *s, struct evbuffer *in)
{
	char line[AUTH_LINE_MAX];
	struct evbuffer_ptr eol;
	size_t eol_len = 0, len, avail = evbuffer_get_length(in), max = SMTP_LINE_MAX - 2;
	char head[5];
	time_t now;

	if (avail == 0)
		return 0;
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (s->skip_line) {
		/* The tail of an over-long line: throw it away, up to its end. */
		evbuffer_drain(in, eol.pos < 0 ? avail : (size_t)eol.pos + eol_len);
		s->skip_line = eol.pos < 0;
		return eol.pos < 0 ? 0 : 1;
	} /* RFC 4954 §4: AUTH lines and SASL responses may be up to 12288 octets. */
	if (s->sasl != SMTP_SASL_NONE ||
	    (evbuffer_copyout(in, head, sizeof(head)) == (ev_ssize_t)sizeof(head) &&
	     strncasecmp(head, "AUTH ", 5) == 0))
		max = AUTH_LINE_MAX - 2;
	if (eol.pos < 0) {
		if (avail > max) {
			evbuffer_drain(in, avail);
			s->skip_line = true;
			smtp_session_sasl_abort(s);
			smtp_session_error(s, SMTP_REPLY_LINE_TOO_LONG, "(over-long line)", 16);
			return 1;
		}
		/* A partial command: it must complete within the command timeout (slowloris). */
		now = time(NULL);
		if (s->cmd_start == 0)
			s->cmd_start = now;
		else if (now - s->cmd_start > (time_t)s->cfg->timeout_command)
			smtp_session_close(s, SMTP_REPLY_TIMEOUT, "timeout");
		return 0;
	}
	s->cmd_start = 0;
	len = (size_t)eol.pos;
	if (len > max) {
		evbuffer_drain(in, len + eol_len);
		smtp_session_sasl_abort(s);
		smtp_session_error(s, SMTP_REPLY_LINE_TOO_LONG, "(over-long line)", 16);
		return 1;
	}
	evbuffer_remove(in, line, len);
	evbuffer_drain(in, eol_len);
	if (s->sasl != SMTP_SASL_NONE) {
		smtp_session_sasl_line(s, line, len);
		OPENSSL_cleanse(line, len);
		return 1;
	}
	s->line = line;
	s->line_len = len;
	smtp_session_command(s, line, len);
	s->line = NULL;
	s->line_len = 0;
	if (len >= 4 && strncasecmp(line, "AUTH", 4) == 0)
		OPENSSL_cleanse(line, len);
	return 1;
}

/* DATA: scan the input chain in place, move finished bytes into the message. */
static int
smtp_session_data(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[SMTP_DATA_PEEK];
	enum body_scan_result res = BODY_SCAN_MORE;
	struct smtp_tx *tx = s->tx;
	struct evbuffer_ptr start;
	size_t consumed = 0, hold;
	int i, n;

	/* The first tx->held octets were scanned already (a line that may be the final "."). */
	if (evbuffer_get_length(in) <= tx->held ||
	    evbuffer_ptr_set(in, &start, tx->held, EVBUFFER_PTR_SET) == -1)
		return 0;
	n = evbuffer_peek(in, -1, &start, vec, SMTP_DATA_PEEK);
	if (n <= 0)
		return 0;
	for (i = 0; i < n && i < SMTP_DATA_PEEK && res == BODY_SCAN_MORE; i++)
		consumed += body_scan_feed(&tx->scan, vec[i].iov_base, vec[i].iov_len, &res);
	consumed += tx->held;
	tx->held = 0;
	switch (res) {
	case BODY_SCAN_END:
		/* The ".\r\n" line is the last 3 octets of what was scanned: it never reaches
		 * the message, however the network split it. */
		smtp_tx_store(s, in, consumed - 3);
		evbuffer_drain(in, 3);
		smtp_tx_finish(s);
		return 1;
	case BODY_SCAN_BARE_DOT:
		evbuffer_drain(in, consumed);
		log_info("%016llx smtp message rejected id=%s result=\"bare LF ends data\"",
		         (unsigned long long)s->id, s->tx->msg->id);
		smtp_tx_free(s);
		smtp_session_count_reject(SMTP_REPLY_BARE_LF_CLOSE);
		smtp_session_close(s, SMTP_REPLY_BARE_LF_CLOSE, "bare-lf");
		return 1;
	default:
		hold = body_scan_pending_dot(&tx->scan);
		smtp_tx_store(s, in, consumed - hold);
		tx->held = hold;
		return n > SMTP_DATA_PEEK; /* more chains than we looked at: go on */
	}
}

/* The reply to a BDAT chunk that is not the last. */
static void
smtp_session_bdat_ack(struct smtp_session *s, uint64_t size)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "250 2.0.0 %llu octets received\r\n",
	                 (unsigned long long)size);

	stream_write(&s->st, line, (size_t)n);
}

/* BDAT: exactly bdat_left octets, dot-stuffed on the way in (the spool keeps DATA's form). */
static int
smtp_session_bdat(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[SMTP_DATA_PEEK];
	enum body_scan_result res = BODY_SCAN_MORE;
	struct smtp_tx *tx = s->tx;
	size_t avail = evbuffer_get_length(in), consumed = 0;
	int i, n;

	if (avail > s->bdat_left)
		avail = (size_t)s->bdat_left;
	if (s->bdat_discard) {
		evbuffer_drain(in, avail);
		s->bdat_left -= avail;
		if (s->bdat_left > 0)
			return 0;
		s->bdat_discard = false;
		smtp_session_set_timeouts(s, false);
		smtp_session_set_state(s, s->tx ? SMTP_STATE_RCPT : SMTP_STATE_HELO);
		if (s->tx && s->tx->msg->nrcpts == 0)
			smtp_session_set_state(s, SMTP_STATE_MAIL);
		if (s->state == SMTP_STATE_HELO && s->helo == NULL)
			smtp_session_set_state(s, SMTP_STATE_GREET);
		smtp_session_error(s, s->bdat_reply, "BDAT", 4);
		return 1;
	}
	if (avail > 0) {
		n = evbuffer_peek(in, (ev_ssize_t)avail, NULL, vec, SMTP_DATA_PEEK);
		for (i = 0; i < n && i < SMTP_DATA_PEEK && res == BODY_SCAN_MORE; i++) {
			size_t len = vec[i].iov_len;
			if (consumed + len > avail)
				len = avail - consumed;
			consumed += body_scan_feed(&tx->scan, vec[i].iov_base, len, &res);
		}
		smtp_tx_store(s, in, consumed);
		s->bdat_left -= consumed;
		if (res == BODY_SCAN_DOT_LINE && tx->error == SMTP_REPLY_OK) {
			evbuffer_add(tx->msg->body, ".", 1);
			tx->msg->body_size++;
			tx->dots++;
		}
		if (s->bdat_left > 0)
			return consumed > 0 || res == BODY_SCAN_DOT_LINE;
	}
	if (s->bdat_left > 0)
		return 0;
	/* The chunk is complete. */
	smtp_session_set_state(s, SMTP_STATE_RCPT);
	if (!s->bdat_last) {
		smtp_session_set_timeouts(s, false);
		if (tx->error != SMTP_REPLY_OK)
			smtp_session_reply(s, tx->error);
		else
			smtp_session_bdat_ack(s, tx->scan.total);
		return 1;
	}
	if (body_scan_mid_line(&tx->scan) && tx->error == SMTP_REPLY_OK) {
		/* The spool (and DATA out) needs the last line ended. */
		evbuffer_add(tx->msg->body, "\r\n", 2);
		tx->msg->body_size += 2;
	}
	smtp_tx_finish(s);
	return 1;
}

/*
 * The pipelining loop: handle buffered input until it runs out, the session waits for the
 * spool, or it is closing. Never frees the session.
 */
static void
smtp_session_process(struct smtp_session *s)
{
	struct evbuffer *in;
	int progress = 1;

	while (progress && s->state != SMTP_STATE_WAIT && s->state != SMTP_STATE_CLOSING) {
		if (s->shutdown && s->state != SMTP_STATE_DATA && s->state != SMTP_STATE_BDAT) {
			/* The message it was receiving is done: now obey the shutdown. */
			smtp_tx_free(s);
			smtp_session_close(s, SMTP_REPLY_SHUTDOWN, "shutdown");
			return;
		}
		if (stream_output_length(&s->st) > SMTP_OUTPUT_HIGH &&
		    (stream_flush(&s->st) == -1 ||
		     stream_output_length(&s->st) > SMTP_OUTPUT_HIGH)) {
			/* The client pipelines but does not read its replies: wait for it (settle
			 * stops reading; the drained callback goes on). */
			s->out_blocked = true;
			return;
		}
		in = stream_input(&s->st); /* STARTTLS changes it */
		switch (s->state) {
		case SMTP_STATE_DATA:
			progress = smtp_session_data(s, in);
			break;
		case SMTP_STATE_BDAT:
			progress = smtp_session_bdat(s, in);
			break;
		default:
			progress = smtp_session_line(s, in);
			break;
		}
	}
}

/* ---- stream callbacks ---- */

static void
smtp_session_read_cb(struct stream *st, void *arg)
{
	struct smtp_session *s = arg;

	smtp_session_process(s);
	smtp_session_settle(s);
}

/* The output has drained (after the socket was full, or after smtp_session_close()). */
static void
smtp_session_write_cb(struct stream *st, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SMTP_STATE_CLOSING) {
		smtp_session_free(s);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		smtp_session_process(s);
		smtp_session_settle(s);
	}
}

static void
smtp_session_event_cb(struct stream *st, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake is done. */
		SSL *ssl = stream_ssl(st);
		s->tls = true;
		s->tls_handshake = false;
		stats_tls_handshake(true);
		if (ssl)
			tls_describe(ssl, s->tls_info, sizeof(s->tls_info));
		log_info("%016llx smtp tls established %s", (unsigned long long)s->id, s->tls_info);
		return;
	}
	if (s->tls_handshake && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
		unsigned long e = stream_ssl_error(st);
		char ebuf[160] = "connection closed";
		if (e)
			ERR_error_string_n(e, ebuf, sizeof(ebuf));
		log_info("%016llx smtp tls handshake failed error=\"%s\"",
		         (unsigned long long)s->id, ebuf);
		/* the client hears OpenSSL's alert: smtp_session_free() flushes it */
		s->close_reason = "tls-handshake";
		smtp_session_free(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->state == SMTP_STATE_WAIT && (what & BEV_EVENT_READING))
			return; /* our disk is slow, not the client: keep waiting */
		if (s->state == SMTP_STATE_CLOSING || (what & BEV_EVENT_WRITING)) {
			s->close_reason = "write-timeout";
			smtp_session_free(s);
			return;
		}
		smtp_tx_free(s);
		smtp_session_close(s, SMTP_REPLY_TIMEOUT, "timeout");
		smtp_session_settle(s);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		if (!s->close_reason)
			s->close_reason = s->tx ? "eof-in-transaction" : "eof";
		s->eof = true;
		stream_set_reading(st, false);
		if (s->state == SMTP_STATE_WAIT)
			return; /* finish the commit first; settle() frees after */
		if (s->state != SMTP_STATE_DATA && s->state != SMTP_STATE_BDAT)
			smtp_session_process(s); /* what was pipelined before the close */
		smtp_session_settle(s); /* frees now, after the replies, or after the commit */
		return;
	}
	if (!s->close_reason)
		s->close_reason = "error";
	smtp_session_free(s);
}

/* ---- life cycle ---- */

static void
smtp_session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;

	log_info("%016llx smtp disconnected reason=%s", (unsigned long long)s->id,
	         s->close_reason ? s->close_reason : "closed");
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	stats_session_state(s->state, SMTP_STATE_COUNT);
	if (s->tls_handshake)
		stats_tls_handshake(false); /* failed, timed out, or the session had to go */
	conn_table_release(srv->per_ip, (struct sockaddr *)&s->peer);
	spool_job_cancel(s->job);
	smtp_tx_free(s);
	free(s->helo);
	if (s->auth_job)
		s->auth_job->s = NULL; /* the worker's result finds nobody */
	if (s->auth_timer)
		event_free(s->auth_timer);
	free(s->auth_user);
	free(s->login_user);
	auth_users_free(s->users);
	config_free(s->cfg);
	stream_close(&s->st); /* under TLS, the last records still go out */
	free(s);
	if (srv->shutting_down && srv->nsessions == 0 && srv->drained_cb) {
		void (*cb)(void *) = srv->drained_cb;
		srv->drained_cb = NULL;
		cb(srv->drained_arg);
	}
}

struct smtp_session *
smtp_session_new(struct smtp_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
                 socklen_t salen, const struct config_listen *entry)
{
	struct smtp_session *s;
	char greeting[300];
	const void *addr;
	unsigned port;
	int n, rc, one = 1;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		evutil_closesocket(fd);
		return NULL;
	}
	/* Replies are small writes; never let Nagle hold one back for a delayed ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (config_listen_tls_effective(srv->cfg, entry) == CONFIG_LISTEN_TLS_IMPLICIT &&
	    srv->tls != NULL) {
		/* RFC 8314 implicit TLS: the greeting goes out once the handshake is done. */
		SSL *ssl = tls_server_ssl(srv->tls);
		if (ssl == NULL) {
			evutil_closesocket(fd);
			rc = -1;
		} else {
			rc = stream_open_tls(&s->st, srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
			                     smtp_session_read_cb, smtp_session_write_cb,
			                     smtp_session_event_cb, s);
		}
		s->tls_handshake = true;
	} else {
		rc = stream_open(&s->st, srv->base, fd, smtp_session_read_cb, smtp_session_write_cb,
		                 smtp_session_event_cb, s);
	}
	if (rc == -1) { /* the stream has closed fd */
		free(s);
		return NULL;
	}
	s->srv = srv;
	s->cfg = config_ref(srv->cfg);
	s->users = srv->users != NULL ? auth_users_ref(srv->users) : NULL;
	s->listen = entry;
	s->id = ++srv->next_session_id;
	memcpy(&s->peer, sa, salen < sizeof(s->peer) ? salen : sizeof(s->peer));
	if (sa->sa_family == AF_INET6) {
		addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	} else {
		addr = &((const struct sockaddr_in *)sa)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	}
	inet_ntop(sa->sa_family, addr, s->peer_str, sizeof(s->peer_str));
	s->may_relay = policy_client_may_relay(s->cfg, sa, false);
	s->state = SMTP_STATE_GREET;

	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	srv->stats.connections++;
	stats_session_state(SMTP_STATE_COUNT, s->state);

	log_info("%016llx smtp connected address=%s port=%u relay=%s", (unsigned long long)s->id,
	         s->peer_str, port, s->may_relay ? "yes" : "no");
	stream_set_read_max(&s->st, SMTP_INPUT_HIGH);
	smtp_session_set_timeouts(s, false);
	n = snprintf(greeting, sizeof(greeting), "220 %s ESMTP petrel\r\n", s->cfg->hostname);
	stream_write(&s->st, greeting, (size_t)n);
	/* Not a callback, so nothing may free the session here: a failed write is reported to
	 * the event callback from the loop. */
	stream_flush(&s->st);
	return s;
}

void
smtp_session_shutdown(struct smtp_session *s, bool now)
{
	switch (s->state) {
	case SMTP_STATE_CLOSING:
		return;
	case SMTP_STATE_DATA:
	case SMTP_STATE_BDAT:
	case SMTP_STATE_WAIT:
		if (!now) {
			s->shutdown = true;
			return;
		}
		smtp_tx_free(s);
		spool_job_cancel(s->job);
		s->job = NULL;
		break;
	default:
		smtp_tx_free(s);
		break;
	}
	smtp_session_close(s, SMTP_REPLY_SHUTDOWN, "shutdown");
}
