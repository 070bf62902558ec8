/*
 * delivery/smtp_client.h: one outbound SMTP connection (RFC 5321 client side) on the event loop.
 *
 * A client is created for one destination with its first transaction. It tries the targets in
 * order (next one on connection failure, timeout, or a greeting/EHLO+HELO refusal), runs the
 * transaction (MAIL, every RCPT, DATA, body from the spool file without copying, final reply),
 * reports TXN_DONE with a result per recipient, and then stays connected and idle: the owner may
 * hand it the next transaction for the same destination (connection reuse, RSET in between when
 * needed) or let the idle timer close it. CLOSED is the last event; the client is freed right
 * after that callback returns.
 *
 * With PIPELINING the client sends MAIL, all RCPTs and DATA in one write (RFC 2920); without it,
 * one command per reply. SIZE, 8BITMIME, SMTPUTF8 and DSN parameters are used when offered.
 *
 * Security, per connection, before the first transaction (a reused connection keeps it):
 * - STARTTLS (RFC 3207) when the server offers it, unless the mode is NONE; then EHLO again.
 *   OPPORTUNISTIC verifies nothing, and a failed handshake means the same target again in plain
 *   text (remembered per target for the life of the client). REQUIRE verifies the certificate
 *   (trust anchors of the tls_client, host name = the target's host) and fails the target when
 *   STARTTLS is missing or the handshake fails; when every target failed so, the transaction
 *   gets 451 4.7.5 and nothing was sent in the clear.
 * - AUTH (RFC 4954) when auth_user is set: PLAIN if offered, else LOGIN. Never on a plain
 *   connection unless the mode is NONE (the administrator chose it). A refused login, a server
 *   without AUTH, or no TLS fail the target with 4.7.8 (temporary: a configuration problem must
 *   not bounce mail).
 */
#ifndef PETREL_DELIVERY_SMTP_CLIENT_H
#define PETREL_DELIVERY_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "petrel/smtp/parser.h"

struct event_base;
struct smtp_client;
struct tls_client;

/* One address to try, with the host name it belongs to (for logs and Remote-MTA). */
struct smtp_target {
	char host[256];
	struct sockaddr_storage addr; /* port set */
	socklen_t addrlen;
};

struct smtp_txn_rcpt {
	const char *addr;  /* mailbox, no <> */
	unsigned notify;   /* DSN NOTIFY bits (sent only if the server offers DSN) */
	const char *orcpt; /* DSN ORCPT or NULL */
	/* Result: */
	unsigned code;   /* the reply that decides this recipient's fate */
	char status[12]; /* enhanced status ("2.0.0"), derived from the code if absent */
	char text[240];  /* the reply text, printable ASCII */
};

struct smtp_txn {
	const char *id;   /* queue id, for logs */
	const char *from; /* reverse path, "" for <> */
	bool smtputf8;
	enum smtp_body_type body;
	enum smtp_dsn_ret ret;
	const char *envid;    /* xtext or NULL */
	int fd;               /* spool file; the client takes it when it sends the body (-1 then) */
	struct evbuffer *mem; /* or the data itself (len bytes), taken the same way; NULL */
	uint64_t offset;      /* message data in the file (CRLF, dot-stuffed, ends with CRLF) */
	uint64_t len;
	struct smtp_txn_rcpt *rcpts;
	size_t nrcpts;
	/* Result, for the transaction as a whole: */
	char remote[300]; /* "host[address]:port" of the server that answered, or "" */
	char tls[64];     /* TLS version/cipher (tls_describe), "" when plain */
};

enum smtp_client_event {
	SMTP_CLIENT_TXN_DONE, /* the transaction has a result per recipient; the client is idle */
	SMTP_CLIENT_CLOSED,   /* the connection is gone; the client is freed after the callback */
};

typedef void (*smtp_client_cb)(void *arg, struct smtp_client *c, enum smtp_client_event ev,
                               struct smtp_txn *txn);

enum smtp_client_tls {
	SMTP_CLIENT_TLS_OPPORTUNISTIC = 0, /* STARTTLS when offered, unverified; else plain */
	SMTP_CLIENT_TLS_NONE,              /* never STARTTLS */
	SMTP_CLIENT_TLS_REQUIRE,           /* STARTTLS with a verified certificate, or nothing */
};

/* Copied by smtp_client_new, except the pointers: helo is copied, the others are borrowed and
 * must outlive the client (the scheduler owns them). */
struct smtp_client_config {
	const char *helo;         /* our name for EHLO */
	unsigned connect_timeout; /* seconds (default 30) */
	unsigned command_timeout; /* seconds, banner and commands (default 300) */
	unsigned data_timeout;    /* seconds for the final reply after the body (default 600) */
	unsigned idle_timeout;    /* seconds an idle connection is kept for reuse (default 5) */
	enum smtp_client_tls tls;
	struct tls_client *tls_ctx; /* trust anchors for REQUIRE; NULL: no STARTTLS at all (and
	                             * REQUIRE fails every target) */
	const char *auth_user;      /* NULL: no AUTH; at most AUTH_NAME_MAX octets */
	const char *auth_pass;      /* with auth_user; at most AUTH_PASS_MAX octets, never logged */
};

/*
 * Start: connect to targets[0] (copied), then run txn. Never calls cb from inside this call.
 * Returns NULL on allocation failure (then nothing happened).
 */
struct smtp_client *smtp_client_new(struct event_base *base, const struct smtp_client_config *cfg,
                                    const struct smtp_target *targets, size_t ntargets,
                                    struct smtp_txn *txn, smtp_client_cb cb, void *arg);

/* Give an idle client its next transaction. Returns 0, or -1 if the client is not idle. */
int smtp_client_send(struct smtp_client *c, struct smtp_txn *txn);

/* Close now (QUIT if idle and connected); CLOSED follows from the loop, never from inside. */
void smtp_client_close(struct smtp_client *c);

/* Free now, without any callback (teardown). A transaction it held is simply dropped. */
void smtp_client_abort(struct smtp_client *c);

/* Is the client idle and connected (ready for smtp_client_send)? */
bool smtp_client_idle(const struct smtp_client *c);

/* Parse one reply line "250-2.1.0 text" / "250 text": code, continuation flag, enhanced status
 * (copied into status if present), text after it. Returns 0 or -1. Pure, exposed for tests. */
int smtp_client_parse_reply_line(const char *line, size_t len, unsigned *code, bool *more,
                                 char status[12], const char **text, size_t *text_len);

#endif
