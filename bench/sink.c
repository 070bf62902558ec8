/*
 * sink.c - `petrel-bench sink`: a fast next-hop SMTP server on one event loop. It accepts
 * everything (or delays and fails on purpose), counts messages, recipients and bytes, and
 * with --check verifies that every message carries the run's marker header and that no
 * accepted Message-ID arrives twice.
 *
 * The hot path never copies bodies: DATA is scanned in the input evbuffer with
 * evbuffer_search() for "\r\n." from a saved offset (each hit is the end of data, a
 * stuffed dot, or a bare dot line) and consumed bytes are drained; BDAT chunks are drained
 * by count. Only --check copies the first bytes of a message (its header block, at most
 * SINK_HDR_MAX) to inspect them.
 *
 * Sessions are petrel streams (net/stream.h): one edge-triggered read event for the life of
 * the connection, and in plain text the replies leave with one writev when
 * sink_session_process() has handled all the input it had (stream_flush()).
 *
 * Start reading at sink_session_process(): the pipelining loop of one session.
 */
#include "bench.h"
#include "message.h"
#include "petrel/net/stream.h"
#include "tls.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/evp.h>

#define SINK_CMD            "sink"
#define SINK_LISTEN_MAX     8
#define SINK_LINE_MAX       4096          /* longest command line (AUTH included) */
#define SINK_HDR_MAX        8192          /* header bytes kept for --check */
#define SINK_PROBLEMS_SHOWN 10            /* check failures printed individually */
#define SINK_INPUT_MAX      (1024 * 1024) /* stop reading a session above this much input */

enum sink_state {
	SINK_STATE_COMMAND, /* reading command lines */
	SINK_STATE_DATA,    /* DATA content, until CRLF.CRLF */
	SINK_STATE_BDAT,    /* the bytes of a BDAT chunk */
	SINK_STATE_AUTH,    /* waiting for the AUTH PLAIN response line */
	SINK_STATE_DELAY,   /* end-of-data reply held back by --delay */
	SINK_STATE_CLOSING, /* QUIT answered; waiting for the client to close */
};

/* Why a message failed --check. */
enum sink_check_fault {
	SINK_CHECK_OK,
	SINK_CHECK_MISSING_MARKER, /* no X-Petrel-Bench header */
	SINK_CHECK_WRONG_MARKER,   /* another run id, or unparsable */
	SINK_CHECK_BAD_LENGTH,     /* body length differs from the marker's */
	SINK_CHECK_MISSING_MSGID,  /* no Message-ID header */
	SINK_CHECK_FAULTS,
};

static const char *const sink_check_fault_names[SINK_CHECK_FAULTS] = {
	"ok", "missing_marker", "wrong_marker", "bad_length", "missing_message_id",
};

struct sink_config {
	struct bench_addr listen[SINK_LISTEN_MAX]; /* addresses to bind */
	size_t nlisten;                            /* how many */
	const char *name;                          /* host name in greeting and EHLO */
	uint64_t delay_ms;                         /* hold end-of-data replies this long */
	double fail4;                              /* % of messages answered 451 */
	double fail5;                              /* % of messages answered 554 */
	double duration;                           /* seconds until exit, 0 = none */
	uint64_t exit_after;                       /* exit after this many accepted, 0 = none */
	const char *json_path;                     /* --json FILE or NULL */
	const char *check;                         /* --check MARKER or NULL */
	bool tls;                                  /* offer STARTTLS */
	const char *cert, *key;                    /* PEM files, or NULL: self-signed */
	char auth_user[256];                       /* --auth credentials */
	char auth_pass[256];
	bool auth;      /* offer AUTH PLAIN */
	double timeout; /* idle timeout per session, seconds */
	int backlog;    /* listen backlog */
	bool quiet;     /* no progress lines */
	uint64_t seed;  /* PRNG seed for --fail-rate */
};

struct sink_stats {
	uint64_t sessions;                        /* connections accepted */
	uint64_t active;                          /* connections open now */
	uint64_t active_max;                      /* highest active */
	uint64_t accept_errors;                   /* accept() failures (EMFILE...) */
	uint64_t messages;                        /* messages that reached end of data */
	uint64_t accepted;                        /* answered 250 */
	uint64_t failed4;                         /* answered 451 by --fail-rate */
	uint64_t failed5;                         /* answered 554 by --fail-rate */
	uint64_t aborted;                         /* connection lost inside DATA/BDAT */
	uint64_t recipients;                      /* RCPT answered 250 */
	uint64_t bytes;                           /* message content bytes (dot-unstuffed) */
	uint64_t protocol_errors;                 /* commands out of sequence, unknown, malformed */
	uint64_t tls_ok;                          /* STARTTLS handshakes completed */
	uint64_t tls_failed;                      /* STARTTLS handshakes failed */
	uint64_t auth_ok;                         /* AUTH answered 235 */
	uint64_t auth_failed;                     /* AUTH answered 535 */
	uint64_t check_faults[SINK_CHECK_FAULTS]; /* --check: corrupted messages by fault */
	uint64_t duplicates;                      /* --check: accepted Message-IDs seen before */
};

/* A set of 64-bit Message-ID hashes (open addressing, 0 = empty). */
struct sink_idset {
	uint64_t *slots; /* capacity entries */
	size_t capacity; /* power of two */
	size_t used;     /* entries stored */
};

struct sink_session;

struct sink {
	struct sink_config cfg;                       /* parsed options */
	struct sink_stats st;                         /* counters */
	struct event_base *base;                      /* the one loop */
	struct evconnlistener *lev[SINK_LISTEN_MAX];  /* listeners */
	char bound[SINK_LISTEN_MAX][BENCH_ADDR_TEXT]; /* their actual addresses */
	struct event *tick;                           /* once a second: progress */
	struct event *sig_int, *sig_term;             /* stop */
	struct event *stop_timer;                     /* --duration, --exit-after grace */
	struct event *resume_accept;                  /* re-enables listeners after EMFILE */
	SSL_CTX *ssl_ctx;                             /* --tls */
	TAILQ_HEAD(, sink_session) sessions;          /* open sessions */
	uint64_t next_id;                             /* session ids */
	uint64_t rng;                                 /* --fail-rate choices */
	struct sink_idset ids;                        /* --check: accepted Message-IDs */
	uint64_t problems_shown;                      /* check failures printed */
	uint64_t start_us;                            /* when listening began */
	uint64_t first_us;                            /* first connection accepted */
	uint64_t last_us;                             /* last message ended */
	uint64_t last_tick_us;                        /* previous progress line */
	uint64_t last_messages;                       /* messages at previous line */
	uint64_t last_bytes;                          /* bytes at previous line */
	double peak_rate;                             /* best messages/s over one second */
	bool stopping;                                /* --exit-after reached */
};

struct sink_session {
	struct sink *sink;               /* owner */
	struct stream st;                /* the connection (TLS after STARTTLS) */
	uint64_t id;                     /* for messages */
	enum sink_state state;           /* what the input holds next */
	bool tls;                        /* STARTTLS done */
	bool tls_up;                     /* ... and its handshake completed */
	bool drain_close;                /* free once the output has left */
	bool mail;                       /* MAIL accepted: a transaction is open */
	unsigned rcpts;                  /* RCPTs accepted in this transaction */
	uint64_t wire;                   /* content bytes consumed, as on the wire */
	uint64_t stuffed;                /* DATA: stuffing dots seen */
	size_t scan;                     /* DATA: input offset of the next search */
	bool data_begin;                 /* DATA: at the first byte (after a virtual CRLF) */
	bool bdat;                       /* a BDAT transfer is in progress */
	uint64_t bdat_left;              /* bytes of the current chunk still to come */
	bool bdat_last;                  /* the current chunk ends the message */
	char *hdr;                       /* --check: first bytes of the message */
	size_t hdr_len;                  /* bytes in hdr */
	size_t hdr_end;                  /* header block length (0 = not found yet) */
	struct event *delay;             /* --delay timer, created on first use */
	const char *delayed_reply;       /* reply to write when it fires */
	TAILQ_ENTRY(sink_session) entry; /* in sink->sessions */
};

static const char sink_reply_ok[] = "250 2.0.0 Ok\r\n";
static const char sink_reply_sender[] = "250 2.1.0 Sender ok\r\n";
static const char sink_reply_rcpt[] = "250 2.1.5 Recipient ok\r\n";
static const char sink_reply_data[] = "354 End data with <CR><LF>.<CR><LF>\r\n";
static const char sink_reply_queued[] = "250 2.0.0 Ok: queued by petrel-bench sink\r\n";
static const char sink_reply_fail4[] =
        "451 4.3.0 petrel-bench sink: simulated temporary failure\r\n";
static const char sink_reply_fail5[] =
        "554 5.3.0 petrel-bench sink: simulated permanent failure\r\n";
static const char sink_reply_quit[] = "221 2.0.0 Bye\r\n";
static const char sink_reply_nested[] = "503 5.5.1 Error: nested MAIL command\r\n";
static const char sink_reply_need_mail[] = "503 5.5.1 Error: need MAIL command\r\n";
static const char sink_reply_need_rcpt[] = "503 5.5.1 Error: need RCPT command\r\n";
static const char sink_reply_no_rcpt[] = "554 5.5.1 Error: no valid recipients\r\n";
static const char sink_reply_bdat_data[] = "503 5.5.1 Error: DATA during BDAT\r\n";
static const char sink_reply_syntax[] = "501 5.5.4 Syntax error in parameters\r\n";
static const char sink_reply_unknown[] = "500 5.5.2 Error: command not recognized\r\n";
static const char sink_reply_too_long[] = "500 5.5.2 Error: line too long\r\n";
static const char sink_reply_bad_bdat[] = "501 5.5.4 Syntax: BDAT size [LAST]\r\n";
static const char sink_reply_vrfy[] = "252 2.0.0 Cannot VRFY user\r\n";
static const char sink_reply_tls_go[] = "220 2.0.0 Ready to start TLS\r\n";
static const char sink_reply_tls_no[] = "502 5.5.1 STARTTLS not offered (use --tls)\r\n";
static const char sink_reply_tls_again[] = "503 5.5.1 TLS already active\r\n";
static const char sink_reply_auth_no[] = "502 5.5.1 AUTH not offered (use --auth)\r\n";
static const char sink_reply_auth_mech[] = "504 5.5.4 Only AUTH PLAIN is offered\r\n";
static const char sink_reply_auth_more[] = "334 \r\n";
static const char sink_reply_auth_ok[] = "235 2.7.0 Authentication successful\r\n";
static const char sink_reply_auth_bad[] = "535 5.7.8 Authentication credentials invalid\r\n";
static const char sink_reply_stopping[] = "421 4.3.2 petrel-bench sink shutting down\r\n";

static void sink_session_process(struct sink_session *s);
static void sink_session_free(struct sink_session *s);

/* ---- Message-ID set ---------------------------------------------------------------- */

static uint64_t
sink_hash(const char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ull;
	}
	/* splitmix64 finaliser: spread FNV's low-entropy high bits. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h ? h : 1;
}

/* Inserts h; returns 1 if it was new, 0 if present, -1 if out of memory. */
static int
sink_idset_insert(struct sink_idset *set, uint64_t h)
{
	size_t i;

	if ((set->used + 1) * 2 > set->capacity) {
		size_t ncap = set->capacity ? set->capacity * 2 : 4096, j;
		uint64_t *nslots = calloc(ncap, sizeof(*nslots));

		if (nslots == NULL)
			return -1;
		for (j = 0; j < set->capacity; j++) {
			if (set->slots[j] == 0)
				continue;
			for (i = set->slots[j] & (ncap - 1); nslots[i] != 0;
			     i = (i + 1) & (ncap - 1))
				;
			nslots[i] = set->slots[j];
		}
		free(set->slots);
		set->slots = nslots;
		set->capacity = ncap;
	}
	for (i = h & (set->capacity - 1); set->slots[i] != 0; i = (i + 1) & (set->capacity - 1)) {
		if (set->slots[i] == h)
			return 0;
	}
	set->slots[i] = h;
	set->used++;
	return 1;
}

/* ---- --check ---------------------------------------------------------------------- */

/* Finds header name (with ':') at a line start of hdr[0..len); returns its value or NULL. */
static const char *
sink_header_find(const char *hdr, size_t len, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name), i = 0;

	while (i < len) {
		const char *eol = memchr(hdr + i, '\n', len - i);
		size_t end = eol ? (size_t)(eol - hdr) : len;

		if (end - i > nlen && strncasecmp(hdr + i, name, nlen) == 0) {
			size_t v = i + nlen;

			while (v < end && (hdr[v] == ' ' || hdr[v] == '\t'))
				v++;
			*vlen = end - v;
			while (*vlen > 0 &&
			       (hdr[v + *vlen - 1] == '\r' || hdr[v + *vlen - 1] == ' '))
				(*vlen)--;
			return hdr + v;
		}
		i = end + 1;
	}
	return NULL;
}

static enum sink_check_fault
sink_check_marker(const struct sink *k, const char *v, size_t vlen, uint64_t body_len,
                  bool have_body_len)
{
	char buf[128], run[MESSAGE_RUN_ID_MAX + 2];
	unsigned long long seq, size;
	int n = 0;

	if (vlen >= sizeof(buf))
		return SINK_CHECK_WRONG_MARKER;
	memcpy(buf, v, vlen);
	buf[vlen] = '\0';
	if (sscanf(buf, "%33s %llu %llu%n", run, &seq, &size, &n) != 3 || (size_t)n != vlen)
		return SINK_CHECK_WRONG_MARKER;
	if (strcmp(run, k->cfg.check) != 0)
		return SINK_CHECK_WRONG_MARKER;
	if (!have_body_len || size != body_len)
		return SINK_CHECK_BAD_LENGTH;
	return SINK_CHECK_OK;
}

static void
sink_check_report(struct sink *k, struct sink_session *s, const char *what, const char *v,
                  size_t vlen)
{
	if (k->problems_shown++ >= SINK_PROBLEMS_SHOWN)
		return;
	fprintf(stderr, "petrel-bench sink: check: session %" PRIu64 ": %s%s%.*s\n", s->id, what,
	        vlen ? ": " : "", (int)(vlen > 200 ? 200 : vlen), v ? v : "");
}

/*
 * Inspects the finished message: marker and length, then (if accepted) the Message-ID
 * against every accepted one. content is the unstuffed message length.
 */
static void
sink_check_message(struct sink *k, struct sink_session *s, uint64_t content, bool accepted)
{
	enum sink_check_fault fault = SINK_CHECK_OK;
	const char *hdr = s->hdr ? s->hdr : "";
	size_t hlen = s->hdr_end ? s->hdr_end : s->hdr_len, vlen = 0, idlen = 0;
	const char *v, *id;

	v = sink_header_find(hdr, hlen, MESSAGE_MARKER_HEADER ":", &vlen);
	id = sink_header_find(hdr, hlen, "Message-ID:", &idlen);
	if (v == NULL)
		fault = SINK_CHECK_MISSING_MARKER;
	else
		fault = sink_check_marker(k, v, vlen, content - s->hdr_end,
		                          s->hdr_end != 0 && content >= s->hdr_end);
	if (fault == SINK_CHECK_OK && (id == NULL || idlen == 0))
		fault = SINK_CHECK_MISSING_MSGID;
	if (fault != SINK_CHECK_OK) {
		k->st.check_faults[fault]++;
		sink_check_report(k, s, sink_check_fault_names[fault], v, vlen);
	}
	if (accepted && id != NULL && idlen > 0) {
		int r = sink_idset_insert(&k->ids, sink_hash(id, idlen));

		if (r == 0) {
			k->st.duplicates++;
			sink_check_report(k, s, "duplicate Message-ID", id, idlen);
		} else if (r < 0) {
			bench_error(SINK_CMD, "out of memory for the Message-ID set");
		}
	}
}

/* Copies the start of the message into s->hdr until the header block ends (--check). */
static void
sink_check_capture(struct sink_session *s, struct evbuffer *in, size_t n)
{
	size_t room, take, from, i;

	if (s->hdr_end != 0 || s->hdr_len == SINK_HDR_MAX)
		return;
	if (s->hdr == NULL) {
		s->hdr = malloc(SINK_HDR_MAX);
		if (s->hdr == NULL)
			return;
	}
	room = SINK_HDR_MAX - s->hdr_len;
	take = n < room ? n : room;
	if (evbuffer_copyout(in, s->hdr + s->hdr_len, take) != (ev_ssize_t)take)
		return;
	from = s->hdr_len >= 3 ? s->hdr_len - 3 : 0;
	s->hdr_len += take;
	if (s->hdr_len >= 2 && from == 0 && s->hdr[0] == '\r' && s->hdr[1] == '\n') {
		s->hdr_end = 2; /* no header at all */
		return;
	}
	for (i = from; i + 4 <= s->hdr_len; i++) {
		if (memcmp(s->hdr + i, "\r\n\r\n", 4) == 0) {
			s->hdr_end = i + 4;
			return;
		}
	}
}

/* ---- transaction -------------------------------------------------------------------- */

static void
sink_reply(struct sink_session *s, const char *text)
{
	stream_write(&s->st, text, strlen(text));
}

static void
sink_tx_reset(struct sink_session *s)
{
	s->mail = false;
	s->rcpts = 0;
	s->wire = 0;
	s->stuffed = 0;
	s->scan = 0;
	s->data_begin = false;
	s->bdat = false;
	s->bdat_left = 0;
	s->bdat_last = false;
	free(s->hdr);
	s->hdr = NULL;
	s->hdr_len = 0;
	s->hdr_end = 0;
}

/* Consumes n content bytes from the front of the input (capturing headers for --check). */
static void
sink_consume(struct sink_session *s, struct evbuffer *in, size_t n)
{
	if (n == 0)
		return;
	if (s->sink->cfg.check != NULL)
		sink_check_capture(s, in, n);
	evbuffer_drain(in, n);
	s->wire += n;
}

static void
sink_delay_fire(evutil_socket_t fd, short what, void *arg)
{
	struct sink_session *s = arg;

	sink_reply(s, s->delayed_reply);
	s->state = SINK_STATE_COMMAND;
	sink_session_process(s);
}

/* The message is complete: choose the reply, count, check, answer (maybe later). */
static void
sink_message_end(struct sink_session *s)
{
	struct sink *k = s->sink;
	const char *reply = sink_reply_queued;
	uint64_t content = s->wire - s->stuffed;

	if (!s->mail || s->rcpts == 0) {
		/* Only BDAT gets here without recipients: its bytes had to be read first. */
		k->st.protocol_errors++;
		sink_reply(s, s->mail ? sink_reply_no_rcpt : sink_reply_need_mail);
		sink_tx_reset(s);
		s->state = SINK_STATE_COMMAND;
		return;
	}
	k->st.messages++;
	k->st.bytes += content;
	k->last_us = bench_now_us();
	if (k->cfg.fail4 > 0 || k->cfg.fail5 > 0) {
		double r = (double)(bench_rand(&k->rng) >> 11) / 9007199254740992.0 * 100.0;

		if (r < k->cfg.fail4)
			reply = sink_reply_fail4;
		else if (r < k->cfg.fail4 + k->cfg.fail5)
			reply = sink_reply_fail5;
	}
	if (reply == sink_reply_fail4)
		k->st.failed4++;
	else if (reply == sink_reply_fail5)
		k->st.failed5++;
	else
		k->st.accepted++;
	if (k->cfg.check != NULL)
		sink_check_message(k, s, content, reply == sink_reply_queued);
	sink_tx_reset(s);
	if (k->cfg.exit_after && k->st.accepted >= k->cfg.exit_after && !k->stopping) {
		struct timeval grace = { 0, 200000 };

		k->stopping = true;
		event_add(k->stop_timer, &grace);
	}
	if (k->cfg.delay_ms == 0) {
		sink_reply(s, reply);
		s->state = SINK_STATE_COMMAND;
		return;
	}
	if (s->delay == NULL)
		s->delay = evtimer_new(k->base, sink_delay_fire, s);
	if (s->delay == NULL) {
		sink_reply(s, reply);
		s->state = SINK_STATE_COMMAND;
		return;
	}
	s->delayed_reply = reply;
	s->state = SINK_STATE_DELAY;
	struct timeval tv = { (time_t)(k->cfg.delay_ms / 1000),
		              (suseconds_t)(k->cfg.delay_ms % 1000 * 1000) };
	evtimer_add(s->delay, &tv);
}

/*
 * DATA: consumes content up to CRLF.CRLF. Returns 1 when the message ended, 0 when more
 * input is needed. Every "\r\n." hit is the end (followed by CRLF), a stuffed dot (by
 * '.') or a bare dot line (anything else, tolerated as content).
 */
static int
sink_data_scan(struct sink_session *s, struct evbuffer *in)
{
	unsigned char next[3];
	struct evbuffer_ptr p;
	size_t len = evbuffer_get_length(in);

	if (s->data_begin) {
		/* The content starts as if after a CRLF: ".\r\n" is an empty message. */
		if (len < 3)
			return 0;
		evbuffer_copyout(in, next, 3);
		s->data_begin = false;
		if (next[0] == '.' && next[1] == '\r' && next[2] == '\n') {
			evbuffer_drain(in, 3);
			return 1;
		}
		if (next[0] == '.' && next[1] == '.')
			s->stuffed++;
	}
	for (;;) {
		len = evbuffer_get_length(in);
		if (s->scan + 3 > len)
			break;
		if (evbuffer_ptr_set(in, &p, s->scan, EVBUFFER_PTR_SET) < 0)
			break;
		p = evbuffer_search(in, "\r\n.", 3, &p);
		if (p.pos < 0) {
			s->scan = len - 2; /* a "\r\n" at the very end may still become a hit */
			break;
		}
		if ((size_t)p.pos + 5 > len) {
			s->scan = (size_t)p.pos;
			break;
		}
		evbuffer_ptr_set(in, &p, 3, EVBUFFER_PTR_ADD);
		evbuffer_copyout_from(in, &p, next, 2);
		if (next[0] == '\r' && next[1] == '\n') {
			sink_consume(s, in, (size_t)p.pos - 1); /* content keeps its last CRLF */
			evbuffer_drain(in, 3);
			return 1;
		}
		if (next[0] == '.')
			s->stuffed++;
		s->scan = (size_t)p.pos;
	}
	/* Everything before the scan offset is content: let it go. */
	sink_consume(s, in, s->scan);
	s->scan = 0;
	return 0;
}

/* ---- commands ----------------------------------------------------------------------- */

static bool
sink_verb(const char *line, size_t len, const char *verb)
{
	size_t n = strlen(verb);

	return len >= n && strncasecmp(line, verb, n) == 0 && (len == n || line[n] == ' ');
}

static void
sink_cmd_ehlo(struct sink_session *s, bool extended)
{
	struct sink *k = s->sink;
	struct evbuffer *out = stream_output(&s->st);

	sink_tx_reset(s);
	if (!extended) {
		evbuffer_add_printf(out, "250 %s\r\n", k->cfg.name);
		return;
	}
	evbuffer_add_printf(out,
	                    "250-%s petrel-bench sink\r\n"
	                    "250-PIPELINING\r\n"
	                    "250-8BITMIME\r\n"
	                    "250-SIZE\r\n"
	                    "250-CHUNKING\r\n"
	                    "250-ENHANCEDSTATUSCODES\r\n"
	                    "%s%s"
	                    "250 SMTPUTF8\r\n",
	                    k->cfg.name, k->cfg.tls && !s->tls ? "250-STARTTLS\r\n" : "",
	                    k->cfg.auth ? "250-AUTH PLAIN\r\n" : "");
}

static void
sink_cmd_mail(struct sink_session *s, const char *line, size_t len)
{
	if (s->sink->stopping) {
		sink_reply(s, sink_reply_stopping);
		return;
	}
	if (s->mail) {
		s->sink->st.protocol_errors++;
		sink_reply(s, sink_reply_nested);
		return;
	}
	if (len < 10 || strncasecmp(line, "MAIL FROM:", 10) != 0) {
		s->sink->st.protocol_errors++;
		sink_reply(s, sink_reply_syntax);
		return;
	}
	s->mail = true;
	sink_reply(s, sink_reply_sender);
}

static void
sink_cmd_rcpt(struct sink_session *s, const char *line, size_t len)
{
	if (!s->mail) {
		s->sink->st.protocol_errors++;
		sink_reply(s, sink_reply_need_mail);
		return;
	}
	if (len < 8 || strncasecmp(line, "RCPT TO:", 8) != 0) {
		s->sink->st.protocol_errors++;
		sink_reply(s, sink_reply_syntax);
		return;
	}
	s->rcpts++;
	s->sink->st.recipients++;
	sink_reply(s, sink_reply_rcpt);
}

static void
sink_cmd_data(struct sink_session *s)
{
	if (s->bdat) {
		s->sink->st.protocol_errors++;
		sink_reply(s, sink_reply_bdat_data);
		return;
	}
	if (!s->mail || s->rcpts == 0) {
		s->sink->st.protocol_errors++;
		sink_reply(s, s->mail ? sink_reply_need_rcpt : sink_reply_need_mail);
		return;
	}
	sink_reply(s, sink_reply_data);
	s->state = SINK_STATE_DATA;
	s->data_begin = true;
	s->scan = 0;
}

/* BDAT <size> [LAST]. Returns -1 if the size is unreadable (the session must end). */
static int
sink_cmd_bdat(struct sink_session *s, const char *line, size_t len)
{
	char arg[32], extra[16];
	unsigned long long n;
	char *end;
	int fields;

	if (len > 5 + sizeof(arg) + sizeof(extra))
		goto bad;
	fields = sscanf(line + 4, " %31s %15s", arg, extra);
	if (fields < 1 || !isdigit((unsigned char)arg[0]))
		goto bad;
	errno = 0;
	n = strtoull(arg, &end, 10);
	if (errno != 0 || *end != '\0')
		goto bad;
	if (fields == 2 && strcasecmp(extra, "LAST") != 0)
		goto bad;
	s->bdat = true;
	s->bdat_left = n;
	s->bdat_last = fields == 2;
	s->state = SINK_STATE_BDAT;
	return 0;
bad:
	s->sink->st.protocol_errors++;
	sink_reply(s, sink_reply_bad_bdat);
	return -1;
}

/* AUTH PLAIN response: base64 of "authzid\0user\0pass". */
static void
sink_auth_check(struct sink_session *s, const char *b64, size_t len)
{
	struct sink *k = s->sink;
	unsigned char dec[SINK_LINE_MAX];
	const char *end, *user, *pass, *nul;
	size_t passlen;
	int n;

	s->state = SINK_STATE_COMMAND;
	if (len == 0 || len % 4 != 0 || len / 4 * 3 >= sizeof(dec))
		goto bad;
	n = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)len);
	if (n < 0)
		goto bad;
	n -= (b64[len - 1] == '=') + (len > 1 && b64[len - 2] == '=');
	end = (const char *)dec + n;
	/* authzid NUL authcid NUL passwd */
	nul = memchr(dec, '\0', (size_t)n);
	if (nul == NULL)
		goto bad;
	user = nul + 1;
	nul = memchr(user, '\0', (size_t)(end - user));
	if (nul == NULL)
		goto bad;
	pass = nul + 1;
	passlen = (size_t)(end - pass);
	if (strcmp(user, k->cfg.auth_user) != 0 || passlen != strlen(k->cfg.auth_pass) ||
	    memcmp(pass, k->cfg.auth_pass, passlen) != 0)
		goto bad;
	k->st.auth_ok++;
	sink_reply(s, sink_reply_auth_ok);
	return;
bad:
	k->st.auth_failed++;
	sink_reply(s, sink_reply_auth_bad);
}

static void
sink_cmd_auth(struct sink_session *s, const char *line, size_t len)
{
	const char *arg = line + 4, *sp;

	if (!s->sink->cfg.auth) {
		s->sink->st.protocol_errors++;
		sink_reply(s, sink_reply_auth_no);
		return;
	}
	while (*arg == ' ')
		arg++;
	if (strncasecmp(arg, "PLAIN", 5) != 0 || (arg[5] != '\0' && arg[5] != ' ')) {
		sink_reply(s, sink_reply_auth_mech);
		return;
	}
	sp = arg + 5;
	while (*sp == ' ')
		sp++;
	if (*sp == '\0') {
		s->state = SINK_STATE_AUTH;
		sink_reply(s, sink_reply_auth_more);
		return;
	}
	sink_auth_check(s, sp, strlen(sp));
}

/* STARTTLS: answer on the plain socket, forget the input, wrap it in a TLS filter. */
static int
sink_cmd_starttls(struct sink_session *s)
{
	struct sink *k = s->sink;
	SSL *ssl;

	if (!k->cfg.tls) {
		sink_reply(s, sink_reply_tls_no);
		return 0;
	}
	if (s->tls) {
		sink_reply(s, sink_reply_tls_again);
		return 0;
	}
	sink_reply(s, sink_reply_tls_go);
	sink_tx_reset(s);
	ssl = SSL_new(k->ssl_ctx);
	if (ssl == NULL)
		return -1;
	/* The 220 leaves in the clear first. RFC 3207: nothing the client sent before the
	 * handshake may be acted upon, and stream_start_tls() drops it. On failure the stream
	 * stays plain, so the 220 still goes before the close. */
	if (stream_start_tls(&s->st, ssl, BUFFEREVENT_SSL_ACCEPTING) < 0)
		return -1;
	s->tls = true;
	stream_ssl_allow_dirty_shutdown(&s->st);
	return 0;
}

/* Handles one command line. Returns -1 if the session must be closed now. */
static int
sink_command(struct sink_session *s, char *line, size_t len)
{
	struct sink *k = s->sink;

	if (sink_verb(line, len, "MAIL")) {
		sink_cmd_mail(s, line, len);
	} else if (sink_verb(line, len, "RCPT")) {
		sink_cmd_rcpt(s, line, len);
	} else if (sink_verb(line, len, "DATA")) {
		sink_cmd_data(s);
	} else if (sink_verb(line, len, "BDAT")) {
		return sink_cmd_bdat(s, line, len);
	} else if (sink_verb(line, len, "EHLO")) {
		sink_cmd_ehlo(s, true);
	} else if (sink_verb(line, len, "HELO")) {
		sink_cmd_ehlo(s, false);
	} else if (sink_verb(line, len, "RSET")) {
		sink_tx_reset(s);
		sink_reply(s, sink_reply_ok);
	} else if (sink_verb(line, len, "NOOP")) {
		sink_reply(s, sink_reply_ok);
	} else if (sink_verb(line, len, "QUIT")) {
		sink_reply(s, sink_reply_quit);
		s->state = SINK_STATE_CLOSING;
	} else if (sink_verb(line, len, "STARTTLS")) {
		return sink_cmd_starttls(s);
	} else if (sink_verb(line, len, "AUTH")) {
		sink_cmd_auth(s, line, len);
	} else if (sink_verb(line, len, "VRFY")) {
		sink_reply(s, sink_reply_vrfy);
	} else {
		k->st.protocol_errors++;
		sink_reply(s, sink_reply_unknown);
	}
	return 0;
}

/*
 * The pipelining loop: while input is complete enough for the current state, handle it
 * and append replies; then they leave together (stream_flush), and reading goes on if the
 * input limit had stopped it. May free s.
 */
static void
sink_session_process(struct sink_session *s)
{
	struct evbuffer *in = stream_input(&s->st);
	char line[SINK_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t eol_len, avail, n;

	for (;;) {
		switch (s->state) {
		case SINK_STATE_COMMAND:
		case SINK_STATE_AUTH:
			eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
			if (eol.pos < 0) {
				if (evbuffer_get_length(in) > SINK_LINE_MAX) {
					s->sink->st.protocol_errors++;
					sink_reply(s, sink_reply_too_long);
					goto close;
				}
				goto out;
			}
			if ((size_t)eol.pos > SINK_LINE_MAX) {
				s->sink->st.protocol_errors++;
				sink_reply(s, sink_reply_too_long);
				goto close;
			}
			evbuffer_remove(in, line, (size_t)eol.pos);
			line[eol.pos] = '\0';
			evbuffer_drain(in, eol_len);
			if (s->state == SINK_STATE_AUTH) {
				sink_auth_check(s, line, (size_t)eol.pos);
				break;
			}
			if (sink_command(s, line, (size_t)eol.pos) < 0)
				goto close;
			/* STARTTLS put a TLS filter under the stream: read from its input now. */
			in = stream_input(&s->st);
			break;
		case SINK_STATE_DATA:
			if (sink_data_scan(s, in) == 0)
				goto out;
			sink_message_end(s);
			break;
		case SINK_STATE_BDAT:
			avail = evbuffer_get_length(in);
			n = avail < s->bdat_left ? avail : (size_t)s->bdat_left;
			sink_consume(s, in, n);
			s->bdat_left -= n;
			if (s->bdat_left > 0)
				goto out;
			if (s->bdat_last) {
				sink_message_end(s);
			} else {
				evbuffer_add_printf(stream_output(&s->st),
				                    "250 2.0.0 %" PRIu64 " octets received\r\n",
				                    s->wire);
				s->state = SINK_STATE_COMMAND;
			}
			break;
		case SINK_STATE_DELAY:
			goto out;
		case SINK_STATE_CLOSING:
			/* Ignore anything after QUIT; the client closes. */
			evbuffer_drain(in, evbuffer_get_length(in));
			goto out;
		}
	}
out:
	/* A failed write comes back to sink_session_event() from the loop. */
	(void)stream_flush(&s->st);
	stream_set_reading(&s->st, true);
	return;
close:
	/* Let the last reply go, then free (here, or in sink_session_drained). */
	s->state = SINK_STATE_CLOSING;
	s->drain_close = true;
	evbuffer_drain(in, evbuffer_get_length(in));
	stream_set_reading(&s->st, false);
	(void)stream_flush(&s->st);
	if (stream_output_length(&s->st) == 0)
		sink_session_free(s);
}

static void
sink_session_read(struct stream *st, void *arg)
{
	sink_session_process(arg);
}

/* The output has drained (it had filled the socket, or it is TLS). */
static void
sink_session_drained(struct stream *st, void *arg)
{
	struct sink_session *s = arg;

	/* After a fatal error, close once the reply is out. */
	if (s->drain_close)
		sink_session_free(s);
}

static void
sink_session_event(struct stream *st, short what, void *arg)
{
	struct sink_session *s = arg;
	struct sink *k = s->sink;

	if (what & BEV_EVENT_CONNECTED) {
		s->tls_up = true;
		k->st.tls_ok++;
		return;
	}
	if (s->tls && !s->tls_up)
		k->st.tls_failed++;
	if (s->state == SINK_STATE_DATA || s->state == SINK_STATE_BDAT)
		k->st.aborted++;
	sink_session_free(s);
}

static void
sink_session_free(struct sink_session *s)
{
	struct sink *k;

	if (s == NULL)
		return;
	k = s->sink;
	TAILQ_REMOVE(&k->sessions, s, entry);
	k->st.active--;
	if (s->delay != NULL)
		event_free(s->delay);
	free(s->hdr);
	stream_close(&s->st); /* under TLS, the last records still go out */
	free(s);
}

static void
sink_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
            void *arg)
{
	struct sink *k = arg;
	struct sink_session *s;
	struct timeval tv;

	bench_tcp_nodelay(fd);
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		evutil_closesocket(fd);
		return;
	}
	if (stream_open(&s->st, k->base, fd, sink_session_read, sink_session_drained,
	                sink_session_event, s) < 0) {
		free(s); /* the stream has closed fd */
		return;
	}
	s->sink = k;
	s->id = ++k->next_id;
	s->state = SINK_STATE_COMMAND;
	TAILQ_INSERT_TAIL(&k->sessions, s, entry);
	if (k->st.sessions++ == 0)
		k->first_us = bench_now_us();
	if (++k->st.active > k->st.active_max)
		k->st.active_max = k->st.active;
	tv.tv_sec = (time_t)k->cfg.timeout;
	tv.tv_usec = (suseconds_t)((k->cfg.timeout - (double)tv.tv_sec) * 1e6);
	stream_set_timeouts(&s->st, &tv, &tv);
	/* A client that pipelines into a held (--delay) reply cannot make the input grow. */
	stream_set_read_max(&s->st, SINK_INPUT_MAX);
	evbuffer_add_printf(stream_output(&s->st), "220 %s ESMTP petrel-bench sink\r\n",
	                    k->cfg.name);
	/* Not a callback: a failed write is reported to sink_session_event() from the loop. */
	(void)stream_flush(&s->st);
}

static void
sink_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct sink *k = arg;
	size_t i;

	for (i = 0; i < k->cfg.nlisten; i++)
		evconnlistener_enable(k->lev[i]);
}

static void
sink_accept_error(struct evconnlistener *lev, void *arg)
{
	struct sink *k = arg;
	struct timeval tv = { 0, 100000 };
	int err = EVUTIL_SOCKET_ERROR();
	size_t i;

	/* Out of descriptors: pause accepting instead of spinning on the ready listener. */
	if (k->st.accept_errors++ == 0)
		bench_error(SINK_CMD, "accept: %s (pausing accepts for 100 ms)",
		            evutil_socket_error_to_string(err));
	for (i = 0; i < k->cfg.nlisten; i++)
		evconnlistener_disable(k->lev[i]);
	event_add(k->resume_accept, &tv);
}

/* ---- reporting ---------------------------------------------------------------------- */

static uint64_t
sink_corrupted(const struct sink *k)
{
	uint64_t n = 0;
	int i;

	for (i = 1; i < SINK_CHECK_FAULTS; i++)
		n += k->st.check_faults[i];
	return n;
}

static void
sink_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sink *k = arg;
	uint64_t now = bench_now_us();
	double dt = (double)(now - k->last_tick_us) / 1e6;
	double rate = dt > 0 ? (double)(k->st.messages - k->last_messages) / dt : 0;
	double brate = dt > 0 ? (double)(k->st.bytes - k->last_bytes) / dt : 0;
	char bbuf[32];

	if (rate > k->peak_rate)
		k->peak_rate = rate;
	k->last_tick_us = now;
	k->last_messages = k->st.messages;
	k->last_bytes = k->st.bytes;
	if (k->cfg.quiet)
		return;
	fprintf(stderr,
	        "[%6.1fs] sink %8.0f msg/s %11s  total %" PRIu64 "  rcpts %" PRIu64
	        "  conns %" PRIu64 "  4xx %" PRIu64 " 5xx %" PRIu64 "%s\n",
	        (double)(now - k->start_us) / 1e6, rate,
	        bench_format_rate_bytes(brate, bbuf, sizeof(bbuf)), k->st.messages,
	        k->st.recipients, k->st.active, k->st.failed4, k->st.failed5,
	        k->cfg.check && (sink_corrupted(k) || k->st.duplicates) ? "  CHECK FAILURES" : "");
}

/* Seconds from the first connection to the last message: the window rates are over. */
static double
sink_active(const struct sink *k, double elapsed)
{
	if (k->st.messages == 0 || k->last_us <= k->first_us)
		return elapsed;
	return (double)(k->last_us - k->first_us) / 1e6;
}

static void
sink_report(struct sink *k, FILE *f, double elapsed)
{
	double active = sink_active(k, elapsed);
	char bbuf[32];
	int i;

	fprintf(f, "petrel-bench sink: %s, up %.3f s\n", k->bound[0], elapsed);
	fprintf(f, "%-22s %.3f s (first connection to last message)\n", "active", active);
	fprintf(f,
	        "%-22s %" PRIu64 " received, %" PRIu64 " accepted, %" PRIu64 " 4xx, %" PRIu64
	        " 5xx, %" PRIu64 " aborted\n",
	        "messages", k->st.messages, k->st.accepted, k->st.failed4, k->st.failed5,
	        k->st.aborted);
	fprintf(f, "%-22s %.1f msg/s, %s", "throughput",
	        active > 0 ? (double)k->st.messages / active : 0.0,
	        bench_format_rate_bytes(active > 0 ? (double)k->st.bytes / active : 0, bbuf,
	                                sizeof(bbuf)));
	if (k->peak_rate > 0)
		fprintf(f, " (best second %.0f msg/s)", k->peak_rate);
	fprintf(f, "\n");
	fprintf(f, "%-22s %" PRIu64 "\n", "recipients", k->st.recipients);
	fprintf(f, "%-22s %" PRIu64 "\n", "bytes", k->st.bytes);
	fprintf(f, "%-22s %" PRIu64 " accepted, %" PRIu64 " max concurrent\n", "sessions",
	        k->st.sessions, k->st.active_max);
	fprintf(f, "%-22s %" PRIu64 "\n", "protocol errors", k->st.protocol_errors);
	if (k->cfg.tls)
		fprintf(f, "%-22s %" PRIu64 " ok, %" PRIu64 " failed\n", "starttls", k->st.tls_ok,
		        k->st.tls_failed);
	if (k->cfg.auth)
		fprintf(f, "%-22s %" PRIu64 " ok, %" PRIu64 " failed\n", "auth", k->st.auth_ok,
		        k->st.auth_failed);
	if (k->cfg.check) {
		fprintf(f, "%-22s marker %s: %" PRIu64 " duplicates, %" PRIu64 " corrupted",
		        "check", k->cfg.check, k->st.duplicates, sink_corrupted(k));
		for (i = 1; i < SINK_CHECK_FAULTS; i++)
			if (k->st.check_faults[i])
				fprintf(f, ", %s %" PRIu64, sink_check_fault_names[i],
				        k->st.check_faults[i]);
		fprintf(f, "\n");
	}
}

static void
sink_report_json(struct sink *k, FILE *f, double elapsed)
{
	double active = sink_active(k, elapsed);
	struct json_writer w;
	size_t i;

	json_begin(&w, f);
	json_add_str(&w, "tool", "petrel-bench");
	json_add_str(&w, "mode", "sink");
	json_array_open(&w, "listen");
	for (i = 0; i < k->cfg.nlisten; i++)
		json_add_str(&w, NULL, k->bound[i]);
	json_array_close(&w);
	json_object_open(&w, "config");
	json_add_u64(&w, "delay_ms", k->cfg.delay_ms);
	json_add_double(&w, "fail_4xx_percent", k->cfg.fail4);
	json_add_double(&w, "fail_5xx_percent", k->cfg.fail5);
	json_add_bool(&w, "tls", k->cfg.tls);
	json_add_bool(&w, "auth", k->cfg.auth);
	json_object_close(&w);
	json_add_double(&w, "elapsed_s", elapsed);
	json_add_double(&w, "active_s", active);
	json_object_open(&w, "sessions");
	json_add_u64(&w, "accepted", k->st.sessions);
	json_add_u64(&w, "max_concurrent", k->st.active_max);
	json_add_u64(&w, "accept_errors", k->st.accept_errors);
	json_object_close(&w);
	json_object_open(&w, "messages");
	json_add_u64(&w, "received", k->st.messages);
	json_add_u64(&w, "accepted", k->st.accepted);
	json_add_u64(&w, "failed_4xx", k->st.failed4);
	json_add_u64(&w, "failed_5xx", k->st.failed5);
	json_add_u64(&w, "aborted", k->st.aborted);
	json_object_close(&w);
	json_add_u64(&w, "recipients", k->st.recipients);
	json_add_u64(&w, "bytes", k->st.bytes);
	json_add_double(&w, "messages_per_s", active > 0 ? (double)k->st.messages / active : 0);
	json_add_double(&w, "bytes_per_s", active > 0 ? (double)k->st.bytes / active : 0);
	json_add_double(&w, "peak_messages_per_s", k->peak_rate);
	json_add_u64(&w, "protocol_errors", k->st.protocol_errors);
	json_object_open(&w, "tls");
	json_add_u64(&w, "ok", k->st.tls_ok);
	json_add_u64(&w, "failed", k->st.tls_failed);
	json_object_close(&w);
	json_object_open(&w, "auth");
	json_add_u64(&w, "ok", k->st.auth_ok);
	json_add_u64(&w, "failed", k->st.auth_failed);
	json_object_close(&w);
	json_object_open(&w, "check");
	json_add_bool(&w, "enabled", k->cfg.check != NULL);
	if (k->cfg.check)
		json_add_str(&w, "marker", k->cfg.check);
	else
		json_add_null(&w, "marker");
	json_add_u64(&w, "duplicates", k->st.duplicates);
	json_add_u64(&w, "corrupted", sink_corrupted(k));
	for (i = 1; i < SINK_CHECK_FAULTS; i++)
		json_add_u64(&w, sink_check_fault_names[i], k->st.check_faults[i]);
	json_object_close(&w);
	json_end(&w);
}

static void
sink_stop(evutil_socket_t fd, short what, void *arg)
{
	struct sink *k = arg;

	event_base_loopbreak(k->base);
}

/* ---- command line ------------------------------------------------------------------- */

static void
sink_usage(FILE *f)
{
	fprintf(f,
	        "Usage: petrel-bench sink [options]\n"
	        "\n"
	        "A fast SMTP sink: accepts every message on one event loop (or delays and fails\n"
	        "some on purpose), counts messages, recipients and bytes, and reports the rate.\n"
	        "The first line on stdout is \"listening ADDRESS:PORT\" for each listener.\n"
	        "\n"
	        "Options:\n"
	        "  --listen ADDR:PORT      address to listen on (default 127.0.0.1:2525; port 0 =\n"
	        "                          ephemeral; [::1]:PORT for IPv6; repeat for several)\n"
	        "  --name NAME             host name in the greeting and EHLO (petrel-bench-sink)\n"
	        "  --delay MS              wait MS milliseconds before answering end of data\n"
	        "  --fail-rate SPEC        answer end of data with failures, e.g. 4xx:5,5xx:1\n"
	        "                          (percent of messages: 451 4.3.0 and 554 5.3.0)\n"
	        "  --check MARKER          verify every message has \"X-Petrel-Bench: MARKER SEQ "
	        "SIZE\"\n"
	        "                          with the right body size and a Message-ID never "
	        "accepted\n"
	        "                          before; exit status 1 on any duplicate or corrupted "
	        "message\n"
	        "  --tls                   offer STARTTLS (self-signed certificate made at "
	        "startup)\n"
	        "  --cert FILE --key FILE  use this PEM certificate chain and key for --tls\n"
	        "  --auth USER:PASS        offer AUTH PLAIN and accept only these credentials\n"
	        "  --duration SECONDS      exit after this long (default: run until "
	        "SIGINT/SIGTERM)\n"
	        "  --exit-after N          exit once N messages have been accepted\n"
	        "  --timeout SECONDS       close sessions idle this long (default 300)\n"
	        "  --backlog N             listen backlog (default 4096)\n"
	        "  --seed N                seed for --fail-rate choices (default: random)\n"
	        "  --json FILE             write every figure as JSON to FILE at exit ('-' = "
	        "stdout)\n"
	        "  -q, --quiet             no progress lines on stderr\n"
	        "  -h, --help              show this help\n"
	        "\n"
	        "Progress (messages/s) goes to stderr once a second; totals go to stdout at "
	        "exit.\n");
}

/* "4xx:PCT,5xx:PCT" in either order, either part optional. */
static int
sink_parse_fail_rate(const char *spec, struct sink_config *cfg)
{
	char buf[64], *tok, *save = NULL;

	if (strlen(spec) >= sizeof(buf))
		goto bad;
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		double *dst;

		if (strncasecmp(tok, "4xx:", 4) == 0)
			dst = &cfg->fail4;
		else if (strncasecmp(tok, "5xx:", 4) == 0)
			dst = &cfg->fail5;
		else
			goto bad;
		if (bench_opt_percent(SINK_CMD, "--fail-rate", tok + 4, dst) < 0)
			return -1;
	}
	if (cfg->fail4 + cfg->fail5 > 100.0) {
		bench_usage_error(SINK_CMD, "--fail-rate: '%s' adds up to more than 100%%", spec);
		return -1;
	}
	return 0;
bad:
	bench_usage_error(SINK_CMD, "--fail-rate: '%s' is not like 4xx:5,5xx:1", spec);
	return -1;
}

static int
sink_parse_args(int argc, char **argv, struct sink_config *cfg)
{
	enum {
		OPT_LISTEN = 256,
		OPT_NAME,
		OPT_DELAY,
		OPT_FAIL,
		OPT_CHECK,
		OPT_TLS,
		OPT_CERT,
		OPT_KEY,
		OPT_AUTH,
		OPT_DURATION,
		OPT_EXIT_AFTER,
		OPT_TIMEOUT,
		OPT_BACKLOG,
		OPT_SEED,
		OPT_JSON,
	};
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "delay", required_argument, NULL, OPT_DELAY },
		{ "fail-rate", required_argument, NULL, OPT_FAIL },
		{ "check", required_argument, NULL, OPT_CHECK },
		{ "tls", no_argument, NULL, OPT_TLS },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "auth", required_argument, NULL, OPT_AUTH },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "exit-after", required_argument, NULL, OPT_EXIT_AFTER },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "backlog", required_argument, NULL, OPT_BACKLOG },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char host[256], port[32], err[256];
	const char *colon;
	uint64_t v;
	int c;

	cfg->name = "petrel-bench-sink";
	cfg->timeout = 300;
	cfg->backlog = 4096;
	bench_random_bytes(&cfg->seed, sizeof(cfg->seed));
	opterr = 1;
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN:
			if (cfg->nlisten == SINK_LISTEN_MAX) {
				bench_usage_error(SINK_CMD, "--listen: at most %d listeners",
				                  SINK_LISTEN_MAX);
				return -1;
			}
			if (bench_split_hostport(optarg, host, sizeof(host), port, sizeof(port)) <
			    0) {
				bench_usage_error(SINK_CMD,
				                  "--listen: '%s' is not ADDRESS:PORT (e.g. "
				                  "127.0.0.1:0, [::1]:2525)",
				                  optarg);
				return -1;
			}
			if (bench_resolve(host, port, true, &cfg->listen[cfg->nlisten], err,
			                  sizeof(err)) < 0) {
				bench_usage_error(SINK_CMD, "--listen: %s", err);
				return -1;
			}
			cfg->nlisten++;
			break;
		case OPT_NAME:
			if (!message_address_valid(optarg)) {
				bench_usage_error(SINK_CMD, "--name: '%s' is not a host name",
				                  optarg);
				return -1;
			}
			cfg->name = optarg;
			break;
		case OPT_DELAY:
			if (bench_opt_uint(SINK_CMD, "--delay", optarg, 0, 600000, &cfg->delay_ms) <
			    0)
				return -1;
			break;
		case OPT_FAIL:
			if (sink_parse_fail_rate(optarg, cfg) < 0)
				return -1;
			break;
		case OPT_CHECK:
			if (!message_run_id_valid(optarg)) {
				bench_usage_error(
				        SINK_CMD,
				        "--check: '%s' is not a run id (1..%d of [A-Za-z0-9._-])",
				        optarg, MESSAGE_RUN_ID_MAX);
				return -1;
			}
			cfg->check = optarg;
			break;
		case OPT_TLS:
			cfg->tls = true;
			break;
		case OPT_CERT:
			cfg->cert = optarg;
			break;
		case OPT_KEY:
			cfg->key = optarg;
			break;
		case OPT_AUTH:
			colon = strchr(optarg, ':');
			if (colon == NULL || colon == optarg ||
			    (size_t)(colon - optarg) >= sizeof(cfg->auth_user) ||
			    strlen(colon + 1) >= sizeof(cfg->auth_pass)) {
				bench_usage_error(SINK_CMD, "--auth: expected USER:PASS");
				return -1;
			}
			snprintf(cfg->auth_user, sizeof(cfg->auth_user), "%.*s",
			         (int)(colon - optarg), optarg);
			snprintf(cfg->auth_pass, sizeof(cfg->auth_pass), "%s", colon + 1);
			cfg->auth = true;
			break;
		case OPT_DURATION:
			if (bench_opt_seconds(SINK_CMD, "--duration", optarg, 0.001, 86400,
			                      &cfg->duration) < 0)
				return -1;
			break;
		case OPT_EXIT_AFTER:
			if (bench_opt_uint(SINK_CMD, "--exit-after", optarg, 1, UINT64_MAX / 2,
			                   &cfg->exit_after) < 0)
				return -1;
			break;
		case OPT_TIMEOUT:
			if (bench_opt_seconds(SINK_CMD, "--timeout", optarg, 0.1, 86400,
			                      &cfg->timeout) < 0)
				return -1;
			break;
		case OPT_BACKLOG:
			if (bench_opt_uint(SINK_CMD, "--backlog", optarg, 1, 65535, &v) < 0)
				return -1;
			cfg->backlog = (int)v;
			break;
		case OPT_SEED:
			if (bench_opt_uint(SINK_CMD, "--seed", optarg, 0, UINT64_MAX, &cfg->seed) <
			    0)
				return -1;
			break;
		case OPT_JSON:
			cfg->json_path = optarg;
			break;
		case 'q':
			cfg->quiet = true;
			break;
		case 'h':
			sink_usage(stdout);
			return 1;
		default:
			fprintf(stderr, "Try 'petrel-bench %s --help'.\n", SINK_CMD);
			return -1;
		}
	}
	if (optind < argc) {
		bench_usage_error(SINK_CMD, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if ((cfg->cert == NULL) != (cfg->key == NULL)) {
		bench_usage_error(SINK_CMD, "--cert and --key go together");
		return -1;
	}
	if (cfg->cert != NULL && !cfg->tls) {
		bench_usage_error(SINK_CMD, "--cert and --key need --tls");
		return -1;
	}
	if (cfg->nlisten == 0 &&
	    bench_resolve("127.0.0.1", "2525", true, &cfg->listen[cfg->nlisten++], err,
	                  sizeof(err)) < 0) {
		bench_error(SINK_CMD, "%s", err);
		return -1;
	}
	return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static int
sink_listen(struct sink *k)
{
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;

	for (i = 0; i < k->cfg.nlisten; i++) {
		k->lev[i] = evconnlistener_new_bind(
		        k->base, sink_accept, k,
		        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
		        k->cfg.backlog, (struct sockaddr *)&k->cfg.listen[i].ss,
		        (int)k->cfg.listen[i].len);
		if (k->lev[i] == NULL) {
			bench_error(SINK_CMD, "cannot listen on %s: %s", k->cfg.listen[i].text,
			            strerror(errno));
			return -1;
		}
		evconnlistener_set_error_cb(k->lev[i], sink_accept_error);
		len = sizeof(ss);
		if (getsockname(evconnlistener_get_fd(k->lev[i]), (struct sockaddr *)&ss, &len) <
		    0) {
			bench_error(SINK_CMD, "getsockname: %s", strerror(errno));
			return -1;
		}
		bench_addr_format((struct sockaddr *)&ss, k->bound[i], sizeof(k->bound[i]));
		printf("listening %s\n", k->bound[i]);
	}
	fflush(stdout);
	return 0;
}

int
sink_main(int argc, char **argv)
{
	struct sink *k;
	struct sink_session *s;
	struct timeval one = { 1, 0 };
	double elapsed;
	int rc = BENCH_EXIT_FAIL, r;
	char err[256];
	FILE *jf;
	size_t i;

	k = calloc(1, sizeof(*k));
	if (k == NULL)
		return BENCH_EXIT_FAIL;
	TAILQ_INIT(&k->sessions);
	r = sink_parse_args(argc, argv, &k->cfg);
	if (r != 0) {
		rc = r > 0 ? BENCH_EXIT_OK : BENCH_EXIT_USAGE;
		goto out;
	}
	k->rng = k->cfg.seed;
	signal(SIGPIPE, SIG_IGN);
	bench_raise_nofile();
	if (k->cfg.tls) {
		k->ssl_ctx = bench_tls_server_ctx(k->cfg.cert, k->cfg.key, err, sizeof(err));
		if (k->ssl_ctx == NULL) {
			bench_error(SINK_CMD, "--tls: %s", err);
			goto out;
		}
	}
	k->base = bench_event_base_new();
	if (k->base == NULL)
		goto out;
	k->tick = event_new(k->base, -1, EV_PERSIST, sink_tick, k);
	k->sig_int = evsignal_new(k->base, SIGINT, sink_stop, k);
	k->sig_term = evsignal_new(k->base, SIGTERM, sink_stop, k);
	k->stop_timer = evtimer_new(k->base, sink_stop, k);
	k->resume_accept = evtimer_new(k->base, sink_accept_resume, k);
	if (k->tick == NULL || k->sig_int == NULL || k->sig_term == NULL || k->stop_timer == NULL ||
	    k->resume_accept == NULL)
		goto out;
	if (sink_listen(k) < 0)
		goto out;
	event_add(k->tick, &one);
	event_add(k->sig_int, NULL);
	event_add(k->sig_term, NULL);
	if (k->cfg.duration > 0) {
		struct timeval d = {
			(time_t)k->cfg.duration,
			(suseconds_t)((k->cfg.duration - (double)(time_t)k->cfg.duration) * 1e6)
		};

		event_add(k->stop_timer, &d);
	}
	k->start_us = k->last_tick_us = bench_now_us();
	event_base_dispatch(k->base);
	elapsed = (double)(bench_now_us() - k->start_us) / 1e6;

	sink_report(k, stdout, elapsed);
	fflush(stdout);
	rc = BENCH_EXIT_OK;
	if (k->cfg.json_path != NULL) {
		jf = bench_json_open(SINK_CMD, k->cfg.json_path);
		if (jf == NULL) {
			rc = BENCH_EXIT_FAIL;
		} else {
			sink_report_json(k, jf, elapsed);
			if (bench_json_close(SINK_CMD, jf, k->cfg.json_path) < 0)
				rc = BENCH_EXIT_FAIL;
		}
	}
	if (k->cfg.check && (k->st.duplicates || sink_corrupted(k)))
		rc = BENCH_EXIT_FAIL;
out:
	while ((s = TAILQ_FIRST(&k->sessions)) != NULL)
		sink_session_free(s);
	for (i = 0; i < SINK_LISTEN_MAX; i++)
		if (k->lev[i] != NULL)
			evconnlistener_free(k->lev[i]);
	if (k->tick)
		event_free(k->tick);
	if (k->sig_int)
		event_free(k->sig_int);
	if (k->sig_term)
		event_free(k->sig_term);
	if (k->stop_timer)
		event_free(k->stop_timer);
	if (k->resume_accept)
		event_free(k->resume_accept);
	if (k->base)
		event_base_free(k->base);
	SSL_CTX_free(k->ssl_ctx);
	free(k->ids.slots);
	free(k);
	return rc;
}
