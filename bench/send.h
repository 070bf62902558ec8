/*
 * send.h - private to `petrel-bench send`: the run shared by send.c (the driver: options,
 * scheduling, progress and reports) and send_session.c (one SMTP client session).
 *
 * The driver owns the run and every session. A session asks the driver for work when it
 * is ready (send_run_session_ready) and tells it when it is gone (send_run_session_gone);
 * the driver never looks inside a session, and a session never frees another.
 */
#ifndef PETREL_BENCH_SEND_H
#define PETREL_BENCH_SEND_H

#include "bench.h"
#include "message.h"
#include "petrel/net/stream.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#define SEND_CMD        "send"
#define SEND_ERROR_TEXT 200 /* first error message kept per kind */

/* Errors by kind. Message rejections are 4XX/5XX; the rest end a session. */
enum send_error {
	SEND_ERR_CONNECT_REFUSED, /* ECONNREFUSED */
	SEND_ERR_CONNECT,         /* any other connect failure */
	SEND_ERR_TIMEOUT,         /* no reply within --timeout (connect included) */
	SEND_ERR_TLS,             /* STARTTLS refused or handshake failed */
	SEND_ERR_4XX,             /* transient rejection (message or session) */
	SEND_ERR_5XX,             /* permanent rejection (message or session) */
	SEND_ERR_PROTOCOL,        /* malformed/unexpected reply, missing extension */
	SEND_ERR_DISCONNECTED,    /* the server closed the connection mid-session */
	SEND_ERR_KINDS,
};

extern const char *const send_error_names[SEND_ERR_KINDS];

struct send_config {
	struct bench_addr addr;              /* resolved --host/--port */
	char host[256];                      /* --host as given (TLS name) */
	char port[32];                       /* --port as given */
	uint64_t connections;                /* concurrent sessions */
	uint64_t messages;                   /* total messages, 0 = until --duration */
	double duration;                     /* seconds, 0 = until --messages */
	double rate;                         /* open loop messages/s, 0 = closed loop */
	struct message_sizes sizes;          /* body size distribution */
	uint64_t recipients;                 /* RCPTs per message */
	uint64_t per_connection;             /* messages per session before QUIT, 0 = no limit */
	bool pipelining;                     /* RFC 2920 groups */
	bool chunking;                       /* BDAT instead of DATA */
	uint64_t chunk_size;                 /* bytes per BDAT chunk */
	bool starttls;                       /* STARTTLS before anything else */
	bool tls_verify;                     /* verify the server certificate */
	const char *tls_ca;                  /* CA file for --tls-verify */
	const char *tls_name;                /* name to verify and send as SNI */
	bool auth;                           /* AUTH PLAIN after EHLO (and TLS) */
	char auth_user[256];                 /* --auth user */
	char auth_pass[256];                 /* --auth password */
	const char *from;                    /* envelope sender */
	struct message_template to;          /* recipient template */
	uint64_t to_range;                   /* %d cycles through 1..to_range */
	const char *helo;                    /* EHLO name */
	double timeout;                      /* seconds per reply (and per connect) */
	uint64_t connect_batch;              /* sessions connecting at once */
	uint64_t max_errors;                 /* session errors before giving up */
	char run_id[MESSAGE_RUN_ID_MAX + 1]; /* marker and Message-ID prefix */
	uint64_t seed;                       /* size choices */
	const char *json_path;               /* --json FILE or NULL */
	bool quiet;                          /* no progress lines */
};

struct send_stats {
	uint64_t attempted;              /* transactions started (MAIL sent) */
	uint64_t accepted;               /* final 2xx after the data */
	uint64_t failed_4xx;             /* transactions refused with 4xx */
	uint64_t failed_5xx;             /* transactions refused with 5xx */
	uint64_t failed_other;           /* transactions lost with their session, or garbled */
	uint64_t rcpt_accepted;          /* RCPT answered 2xx */
	uint64_t rcpt_rejected;          /* RCPT answered otherwise */
	uint64_t bytes;                  /* content bytes sent (headers + raw body) */
	uint64_t sessions_opened;        /* connections attempted */
	uint64_t sessions_done;          /* ended by QUIT and its reply */
	uint64_t sessions_failed;        /* ended by an error */
	uint64_t errors[SEND_ERR_KINDS]; /* by kind */
	char first_error[SEND_ERR_KINDS][SEND_ERROR_TEXT]; /* the first of each kind */
	uint64_t codes[600];                               /* every reply, by code */
};

struct send_session;
struct histogram;

struct send_run {
	struct send_config cfg;                        /* options */
	struct send_stats st;                          /* counters */
	struct event_base *base;                       /* the one loop */
	SSL_CTX *ssl_ctx;                              /* --starttls */
	struct message_body bodies[MESSAGE_SIZES_MAX]; /* one per size, built once */
	size_t max_content;                            /* largest header + body */
	char date[64];                                 /* Date: header value */
	struct histogram *h_connect;                   /* connect() to established */
	struct histogram *h_greeting;                  /* connect() to banner */
	struct histogram *h_accept;                    /* MAIL sent to final 250 */
	struct histogram *h_session;                   /* connect() to QUIT reply */
	struct histogram *h_scheduled;                 /* open loop: due time to final 250 */
	struct histogram *h_interval;                  /* accept, since the last progress line */
	TAILQ_HEAD(, send_session) ready;              /* open loop: sessions waiting for work */
	uint64_t open;                                 /* sessions open */
	uint64_t connecting;                           /* sessions not yet greeted */
	uint64_t in_tx;                                /* sessions with a message in flight */
	uint64_t next_seq;                             /* messages handed out */
	uint64_t released;                             /* open loop: messages due so far */
	uint64_t session_errors;                       /* errors that ended sessions */
	uint64_t retry_at_us;                          /* no new session before (backoff) */
	uint64_t start_us;                             /* run start */
	uint64_t stop_us;                              /* when stopping began */
	uint64_t end_us;                               /* run end */
	bool stopping;                                 /* no new messages or sessions */
	bool aborted;                                  /* stopped by errors or a signal */
	char abort_reason[128];                        /* why */
	uint64_t rng;                                  /* size choices */
	struct event *fill_timer;                      /* retries session starts */
	struct event *rate_timer;                      /* open loop clock */
	struct event *tick;                            /* progress */
	struct event *stop_timer;                      /* --duration */
	struct event *deadline;                        /* hard end after stopping */
	struct event *sig_int, *sig_term;              /* graceful, then hard stop */
	uint64_t last_tick_us;                         /* previous progress line */
	uint64_t last_accepted;                        /* accepted at that time */
	uint64_t last_errors;                          /* errors at that time */
	uint64_t last_bytes;                           /* bytes at that time */
	uint64_t fifo_max;                             /* replies a pipelined group can expect */
	TAILQ_HEAD(, send_session) sessions;           /* every open session */
};

/* What send_run_take() hands out. */
enum send_take {
	SEND_TAKE_OK,   /* a message: seq and due time filled in */
	SEND_TAKE_WAIT, /* open loop: nothing due yet, more later */
	SEND_TAKE_DONE, /* no more work: QUIT */
};

/* A session's state is the command it sent last and awaits the reply to. */
enum send_state {
	SEND_STATE_CONNECTING, /* TCP connect in progress */
	SEND_STATE_BANNER,     /* waiting for the greeting */
	SEND_STATE_EHLO,       /* EHLO sent */
	SEND_STATE_HELO,       /* HELO sent (EHLO refused) */
	SEND_STATE_STARTTLS,   /* STARTTLS sent */
	SEND_STATE_HANDSHAKE,  /* TLS handshake running */
	SEND_STATE_AUTH,       /* AUTH PLAIN sent */
	SEND_STATE_READY,      /* logged in, no transaction */
	SEND_STATE_TX,         /* transaction: the replies expected are in the FIFO */
	SEND_STATE_RSET,       /* RSET sent after a failed transaction */
	SEND_STATE_QUIT,       /* QUIT sent */
};

/* One message in flight on a session. */
struct send_tx {
	uint64_t seq;                    /* message number in the run */
	uint64_t mail_us;                /* MAIL sent */
	uint64_t due_us;                 /* open loop: when it was due; 0 in closed loop */
	const struct message_body *body; /* shared prebuilt body */
	char hdr[MESSAGE_HEADER_MAX];    /* this message's header block */
	size_t hdr_len;                  /* its length */
	uint64_t content;                /* hdr_len + raw body size */
	bool mail_sent;                  /* MAIL written */
	uint64_t rcpt_sent;              /* RCPTs written */
	bool data_sent;                  /* DATA written */
	uint64_t chunk_off;              /* BDAT: content bytes written in chunks */
	uint64_t rcpt_replies;           /* RCPT replies read */
	uint64_t rcpt_ok;                /* ... of which 2xx */
	int fail_code;                   /* first failing reply, 0 = none yet */
	bool fail_before_end;            /* failed before the final reply: RSET after */
};

/*
 * One SMTP client session. The fields are send_session.c's; the driver only links
 * sessions into its lists (entry, ready_entry, in_ready).
 */
struct send_session {
	struct send_run *run;                  /* owner */
	struct stream st;                      /* the connection (TLS after STARTTLS) */
	uint64_t id;                           /* for messages */
	enum send_state state;                 /* see enum send_state */
	uint64_t connect_us;                   /* connect() called */
	bool greeted;                          /* banner received (or session over) */
	bool failed;                           /* an error ends this session */
	bool tls;                              /* TLS is up */
	bool authed;                           /* AUTH succeeded */
	bool ext_pipelining;                   /* EHLO advertised PIPELINING */
	bool ext_chunking;                     /* ... CHUNKING */
	bool ext_starttls;                     /* ... STARTTLS */
	bool ext_auth_plain;                   /* ... AUTH with PLAIN */
	uint64_t messages;                     /* transactions finished here */
	int reply_code;                        /* multi-line reply being read, 0 = none */
	unsigned reply_lines;                  /* lines of it so far */
	char reply_text[SEND_ERROR_TEXT];      /* last reply line, sanitised */
	struct send_tx tx;                     /* the message in flight */
	unsigned char *fifo;                   /* expected replies (enum send_expect) */
	size_t fifo_head, fifo_len;            /* ring position and fill */
	bool in_ready;                         /* linked in run->ready */
	bool in_read;                          /* its read callback runs: it flushes at the end */
	TAILQ_ENTRY(send_session) entry;       /* run->sessions */
	TAILQ_ENTRY(send_session) ready_entry; /* run->ready */
};

/* ---- send.c, called by sessions ---- */

/* The session is logged in and idle: give it a message, park it, or tell it to QUIT. */
void send_run_session_ready(struct send_run *run, struct send_session *s);
/* The session got its banner: another one may start connecting. */
void send_run_session_greeted(struct send_run *run);
/*
 * The session has been unlinked and freed. failed: it ended by an error; greeted: it had
 * reached the banner (otherwise it still counted as connecting).
 */
void send_run_session_gone(struct send_run *run, bool failed, bool greeted);
/* Counts an error of kind; the first message of each kind is kept for the report. */
void send_run_error(struct send_run *run, enum send_error kind, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* ---- send_session.c, called by the driver ---- */

/*
 * Opens a session and starts connecting. Returns NULL if it failed at once (the error is
 * counted). The session stays in run->sessions until it is gone.
 */
struct send_session *send_session_start(struct send_run *run);
/* Starts a transaction for message seq, due at due_us (0 in closed loop). */
void send_session_give(struct send_session *s, uint64_t seq, uint64_t due_us);
/* Parks a ready session (no read timeout while it waits for work). */
void send_session_park(struct send_session *s);
/* Ends a ready session politely (QUIT). */
void send_session_quit(struct send_session *s);
/* Drops a session now (hard deadline); its message, if any, is counted as failed. */
void send_session_abort(struct send_session *s);

#endif /* PETREL_BENCH_SEND_H */
