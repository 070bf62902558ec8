/*
 * bounce.h: delivery status notifications (RFC 3464 multipart/report, RFC 3461 parameters,
 * RFC 6522 report container) for failed, expired and delayed recipients.
 *
 * Pure: builds the bytes of the DSN message; the caller spools it as a new message from the
 * null reverse path (<>) to the original sender. Never called for a null-sender message (the
 * caller checks bounce_wanted()).
 *
 * The output is in petrel's spool form: CRLF lines, dot-stuffed (a line starting with '.' gets
 * another '.'), ready to be sent after DATA as it is. The original message given as input is in
 * the same form (it comes from the spool) and is embedded without being unstuffed.
 */
#ifndef PETREL_BOUNCE_H
#define PETREL_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "petrel/smtp/parser.h"

struct evbuffer;

enum bounce_action {
	BOUNCE_FAILED = 0, /* Action: failed */
	BOUNCE_DELAYED,    /* Action: delayed */
	BOUNCE_DELIVERED,  /* Action: delivered (NOTIFY=SUCCESS) */
	BOUNCE_RELAYED,    /* Action: relayed (NOTIFY=SUCCESS to a non-DSN next hop) */
	BOUNCE_EXPANDED,   /* Action: expanded (not used yet) */
};

struct bounce_rcpt {
	const char *addr;  /* final recipient (mailbox, no <>) */
	const char *orcpt; /* RFC 3461 ORCPT as received ("rfc822;a@b", xtext) or NULL */
	enum bounce_action action;
	const char *status;      /* enhanced status, "5.1.1" */
	const char *remote_mta;  /* host name of the MTA that answered, or NULL */
	const char *diagnostic;  /* the SMTP reply ("550 5.1.1 no such user") or NULL */
	time_t last_attempt;     /* 0 if none */
	time_t will_retry_until; /* for delayed: the expiry time, else 0 */
};

struct bounce_info {
	const char *reporting_mta;     /* our host name */
	const char *message_id_domain; /* domain for the DSN's Message-ID (usually the host name) */
	const char *orig_id;     /* petrel's queue id of the original, for X-Petrel-Queue-ID */
	const char *orig_sender; /* reverse path of the original (the DSN's recipient) */
	const char *envid;       /* RFC 3461 ENVID (xtext) or NULL */
	enum smtp_dsn_ret ret;   /* RET=FULL (default when unspecified: headers only) */
	time_t arrival;          /* when the original arrived */
	time_t now;              /* Date: of the DSN */
	const struct bounce_rcpt *rcpts;
	size_t nrcpts;
	/* The original message in spool form (CRLF, dot-stuffed), and its length. */
	const char *orig;
	size_t orig_len;
	size_t max_orig_len; /* embed at most this much of the body (0: no limit) */
	/* Unique token for the Message-ID and the MIME boundary. 0 (the usual case): a fresh
	 * random one is drawn (getrandom). Tests set it to get reproducible output. */
	uint64_t nonce;
};

/* Does this message deserve a DSN for this recipient at all? (null sender → never; NOTIFY=NEVER
 * → never; NOTIFY given without FAILURE/DELAY/SUCCESS for the action → no.) No NOTIFY (0) counts
 * as NOTIFY=FAILURE,DELAY (RFC 3461 §4.1). DELIVERED, RELAYED and EXPANDED need SUCCESS. */
bool bounce_wanted(const char *orig_sender, unsigned notify, enum bounce_action action);

/*
 * Append the whole DSN message (headers + multipart body, spool form, ending with CRLF) to out.
 * Borrows info and everything it points to for the call only.
 * Returns 0, or -1 with errno set (ENOMEM on allocation failure, EINVAL if info has no
 * recipients, no reporting_mta or an empty orig_sender); on failure out is left unchanged.
 *
 * What goes in (details and RFC references at the top of bounce.c):
 * - part 3 is message/rfc822 with the whole original only for RET=FULL, when the DSN reports at
 *   least one failed recipient, and when the original fits in max_orig_len and is clean text
 *   (lines of at most 998 octets, no bare CR/LF/NUL); otherwise it is text/rfc822-headers
 *   with the original's header section (cut at a line boundary to max_orig_len), and part 1
 *   says why. No original (orig_len 0): no part 3.
 * - ENVID and ORCPT are xtext-decoded; a value that is malformed or does not decode to
 *   printable ASCII is left out (Original-Envelope-Id / Original-Recipient are optional).
 * - If the original contains 8-bit octets, part 3 and the message carry
 *   Content-Transfer-Encoding: 8bit; the caller should spool the DSN as BODY=8BITMIME then.
 */
int bounce_build(struct evbuffer *out, const struct bounce_info *info);

#endif
