/*
 * message.h: one message in flight: its id, its envelope (sender, recipients with their
 * per-recipient DSN parameters), where it came from, and its body chain while it is received.
 *
 * Ownership: the session owns the message while it is received; spool_commit() takes it. The
 * body chain is an evbuffer the session moves input chains into (never copied byte by byte).
 */
#ifndef PETREL_MESSAGE_H
#define PETREL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "petrel/smtp/parser.h"

#define MESSAGE_ID_LEN 16 /* lowercase hex characters */

struct evbuffer;
struct spool_sum;

struct message_rcpt {
	char *addr;      /* mailbox as received, without <> ("Postmaster" for <Postmaster>) */
	unsigned notify; /* enum smtp_dsn_notify bits */
	char *orcpt;     /* RFC 3461 ORCPT as received (addr-type;xtext), or NULL */
};

struct message {
	char id[MESSAGE_ID_LEN + 1]; /* unique, sortable by arrival */
	struct timeval arrival;
	char client_addr[64]; /* numeric peer address */
	char *helo;           /* HELO/EHLO argument, validated by the parser */
	const char *protocol; /* "SMTP", "ESMTP" (static string) */

	char *from; /* reverse path without <> ("" for the null path) */
	enum smtp_body_type body_type;
	bool smtputf8;
	enum smtp_dsn_ret ret;
	char *envid; /* xtext or NULL */

	struct message_rcpt *rcpts;
	size_t nrcpts;
	size_t rcpts_alloc;

	struct evbuffer *body;       /* received bytes not yet written to the spool file */
	uint64_t body_size;          /* bytes of body stored so far (wire form) */
	int fd;                      /* the spool file while it is written; after the commit still
	                              * open while the queue keeps it (its first deliveries read
	                              * duplicates of it, the spool marks the slot free through
	                              * it), else -1. message_free closes it */
	struct evbuffer *data_mem;   /* after the commit: a small message's data (data_len bytes)
	                              * still in memory for its first deliveries (no file read), or
	                              * NULL; the queue drops it when it keeps no more. Freed here */
	uint64_t data_offset;        /* in the spool file: where the message data begins */
	uint64_t data_len;           /* message data length (Received: header + body) */
	unsigned hops;               /* Received: fields in the data (ours included), counted as it
	                              * arrived; 0: not known (read from the spool file) */
	uint64_t spool_written;      /* while being written: bytes after the commit record handed
	                              * to the spool file */
	int64_t spool_slot;          /* the spool slot file (slots/<n>) holding it, or -1 */
	bool spool_new_file;         /* while being committed: the slot file was created for it (its
	                              * directory entry must be synced too) */
	uint64_t spool_old_size;     /* while being written over a recycled slot file: its length */
	struct spool_sum *spool_sum; /* while being written piecewise: the running checksum */
};

/* A new, empty message with a fresh id and arrival time; NULL on allocation failure. */
struct message *message_new(void);
void message_free(struct message *msg);

/* Set fields, copying the strings. Return 0 or -1 (ENOMEM). */
int message_set_from(struct message *msg, const char *from);
int message_set_helo(struct message *msg, const char *helo, size_t len);
int message_set_envid(struct message *msg, const char *envid);
int message_add_rcpt(struct message *msg, const char *addr, unsigned notify, const char *orcpt);

/*
 * Fill id with a new message id: 16 lowercase hex digits of (microseconds since the epoch << 8 |
 * sequence), strictly increasing within the process even if the clock steps back, so ids sort
 * by arrival. `now` may be NULL (gettimeofday). Exposed for tests.
 */
void message_id_new(char id[MESSAGE_ID_LEN + 1], const struct timeval *now);

/* Is this a well-formed message id (16 lowercase hex digits)? */
bool message_id_valid(const char *id);

/*
 * Write the Received: trace header (RFC 5321 §4.4) into buf; `by` is our host name, `with` the *
 * protocol keyword (ESMTP, ESMTPS, ...). "for <rcpt>" is added when there is one recipient. `tls`
 * ("TLSv1.3 cipher=… bits=…") or NULL adds a "(using …)" comment after the protocol. Returns the
 * length or 0 if it does not fit.
 */
size_t message_received_header(const struct message *msg, const char *by, const char *tls,
                               char *buf, size_t bufsize);

#endif
