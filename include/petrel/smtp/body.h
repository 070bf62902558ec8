/*
 * smtp/body.h: the message-body scanner for DATA and BDAT (RFC 5321 §4.1.1.4, §4.5.2; RFC 3030).
 *
 * Pure and incremental: it is fed the bytes of the input chain segment by segment (from
 * evbuffer_peek, no copy) in whatever chunking the network produced, and it keeps its state
 * between calls. It finds the end of data and checks what a relay must check, but it never
 * stores bytes: the session moves the consumed bytes from the input chain into the message.
 *
 * - End of data is <CRLF>.<CRLF> only: a "." line ends the message only when it and the line
 *   before it end in CRLF (the start of DATA counts as after a CRLF, so an empty message ends).
 * - A bare LF or a bare CR anywhere is an error (SMTP smuggling, 2023); a "." line ended by a
 *   bare LF is reported at once (BODY_SCAN_BARE_DOT): the client may be waiting for a reply to
 *   what it believes was end of data, and nothing after it can be trusted as commands.
 * - A line longer than 1000 octets with its CRLF is an error (RFC 5321 §4.5.3.1.6).
 * - Errors are sticky flags; the caller keeps reading to the end of data and replies once.
 * - In BDAT mode there is no end marker; instead the scanner stops before every line that
 *   starts with "." (BODY_SCAN_DOT_LINE), so the session can dot-stuff it: the spool keeps the
 *   wire form of DATA.
 */
#ifndef PETREL_SMTP_BODY_H
#define PETREL_SMTP_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BODY_TEXT_LINE_MAX 1000 /* octets, CRLF included */

enum body_error {
	BODY_ERR_BARE_LF = 1 << 0,
	BODY_ERR_BARE_CR = 1 << 1,
	BODY_ERR_LINE_TOO_LONG = 1 << 2,
};

enum body_scan_result {
	BODY_SCAN_MORE = 0, /* everything given was consumed; feed more */
	BODY_SCAN_END,      /* DATA: the consumed bytes end with the ".\r\n" line */
	BODY_SCAN_BARE_DOT, /* DATA: the consumed bytes end with a ".\n" line */
	BODY_SCAN_DOT_LINE, /* BDAT: the consumed bytes end just before a line starting with '.' */
};

struct body_scan {
	bool bdat;         /* BDAT mode (set by body_scan_init) */
	bool prev_crlf;    /* the previous line ended with CRLF (true at the start) */
	bool dot_checked;  /* BDAT: the current line's leading '.' was already reported */
	char first;        /* first octet of the current line */
	char last;         /* last octet seen of the current line */
	unsigned crs;      /* CR octets seen in the current line */
	unsigned errors;   /* enum body_error bits, sticky */
	uint64_t line_len; /* octets of the current line seen so far (LF excluded) */
	uint64_t total;    /* octets consumed in all */
	uint64_t stuffed;  /* DATA: lines that carried a stuffing dot (RFC 1870 does not count them)
	                    */
	bool in_body;      /* past the header section (its first empty line) */
	unsigned received; /* "Received:" fields in the header section (loop detection, RFC 5321
	                    * §6.3: counted as the data passes, so the queue need not read it) */
	char head[9];      /* the current line's first octets, while in the header section */
};

void body_scan_init(struct body_scan *s, bool bdat);

/*
 * Scan up to n bytes. Returns how many were consumed: all n with BODY_SCAN_MORE, fewer when it
 * stopped at an event (*res says which). Call again with the rest.
 */
size_t body_scan_feed(struct body_scan *s, const char *p, size_t n, enum body_scan_result *res);

/*
 * DATA: how many octets at the end of what was consumed belong to a line that may still turn
 * out to be the final "." (it is "." or ".\r" after a CRLF so far). The caller must keep them
 * out of the message until the next feed decides: if the terminator arrives split across reads,
 * its first octets must not have been stored as content already.
 */
size_t body_scan_pending_dot(const struct body_scan *s);

/* BDAT: the data so far ends in the middle of a line (so "\r\n" must be appended at LAST). */
bool body_scan_mid_line(const struct body_scan *s);

#endif
