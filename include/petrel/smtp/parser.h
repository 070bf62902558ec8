/*
 * smtp/parser.h: the SMTP command parser (RFC 5321 §4.1, ESMTP parameters of RFC 1870, 6152,
 * 3461, 3030, 4954, 6531).
 *
 * Pure: one command line in, one struct smtp_cmd out. No I/O, no allocation, no libevent, so
 * Criterion and a fuzzer can drive it. The caller has already found the line end: `line` is the
 * command without its CRLF and may contain any byte (NUL included); `len` is at most
 * SMTP_LINE_MAX - 2 (the session answers longer lines itself).
 *
 * Start reading at smtp_parser_command().
 */
#ifndef PETREL_SMTP_PARSER_H
#define PETREL_SMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 §4.5.3.1: command line 512 octets with CRLF, path 256, local part 64, domain 255. */
#define SMTP_LINE_MAX   512
#define SMTP_PATH_MAX   256
#define SMTP_LOCAL_MAX  64
#define SMTP_DOMAIN_MAX 255
/* RFC 3461 §4.2 (ENVID) and §4.2 ORCPT: at most 100 / 500 characters of xtext. */
#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500
/* RFC 4954 §5 AUTH= on MAIL: an xtext mailbox, bounded like a path. */
#define SMTP_AUTH_MAIL_MAX 500

enum smtp_verb {
	SMTP_VERB_NONE = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	/* RFC 821 relics: recognised so that they get a clean 502. */
	SMTP_VERB_SEND,
	SMTP_VERB_SOML,
	SMTP_VERB_SAML,
	SMTP_VERB_TURN,
	SMTP_VERB_COUNT
};

enum smtp_parse_result {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_ERR_VERB,   /* unknown or missing verb: 500 5.5.1 */
	SMTP_PARSE_ERR_SYNTAX, /* malformed arguments: 501 5.5.4 (5.5.2 for bad chars) */
	SMTP_PARSE_ERR_PATH,   /* malformed mailbox/path: 501 5.1.7 (MAIL) / 501 5.1.3 (RCPT) */
	SMTP_PARSE_ERR_DOMAIN, /* malformed HELO/EHLO domain or address literal: 501 5.5.4 */
	SMTP_PARSE_ERR_PATH_TOO_LONG, /* path/local part/domain over the RFC limit: 501 5.5.4 */
	SMTP_PARSE_ERR_PARAM,         /* unknown ESMTP parameter: 555 5.5.4 */
	SMTP_PARSE_ERR_PARAM_VALUE,   /* known parameter, bad value or repeated: 501 5.5.4 */
	SMTP_PARSE_ERR_8BIT, /* non-ASCII in a command where only ASCII may stand: 501 5.5.2 */
	SMTP_PARSE_ERR_NUL,  /* NUL byte in the command line: 501 5.5.2 */
};

enum smtp_body_type {
	SMTP_BODY_UNSPEC = 0, /* no BODY= given (means 7BIT) */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME, /* RFC 3030 §3: parsed; the session decides whether to allow it */
};

enum smtp_dsn_ret {
	SMTP_DSN_RET_UNSPEC = 0,
	SMTP_DSN_RET_FULL,
	SMTP_DSN_RET_HDRS,
};

/* RFC 3461 NOTIFY= bits; NEVER is exclusive of the others. */
enum smtp_dsn_notify {
	SMTP_DSN_NOTIFY_UNSPEC = 0,
	SMTP_DSN_NOTIFY_NEVER = 1 << 0,
	SMTP_DSN_NOTIFY_SUCCESS = 1 << 1,
	SMTP_DSN_NOTIFY_FAILURE = 1 << 2,
	SMTP_DSN_NOTIFY_DELAY = 1 << 3,
};

/* A mailbox from MAIL FROM:<...> or RCPT TO:<...>, copied out of the line. */
struct smtp_path {
	bool null;             /* MAIL FROM:<> (the null reverse-path) */
	bool postmaster;       /* RCPT TO:<Postmaster> with no domain (case-insensitive) */
	bool had_source_route; /* an "@a,@b:" prefix was present (and is dropped from addr) */
	bool quoted_local;     /* the local part is a quoted-string ("...") */
	bool utf8;             /* addr contains non-ASCII (UTF-8) octets (RFC 6531) */
	size_t len;            /* strlen(addr) */
	size_t domain_off;     /* offset of the domain in addr (just after the last '@'); == len for
	                        * <postmaster> and the null path */
	char addr[SMTP_PATH_MAX +
	          1]; /* local@domain as sent (quoting kept), NUL-terminated; "" for <> */
};

/* ESMTP parameters of MAIL FROM (RFC 1870, 6152, 3461, 4954, 6531). */
struct smtp_mail_params {
	bool size_set;
	uint64_t size;                  /* SIZE=n */
	enum smtp_body_type body;       /* BODY= */
	bool smtputf8;                  /* SMTPUTF8 */
	enum smtp_dsn_ret ret;          /* RET= */
	char envid[SMTP_ENVID_MAX + 1]; /* ENVID=, still xtext-encoded; "" if absent */
	bool auth_set;
	char auth[SMTP_AUTH_MAIL_MAX + 1]; /* AUTH=, still xtext-encoded ("<>" allowed) */
};

/* ESMTP parameters of RCPT TO (RFC 3461). */
struct smtp_rcpt_params {
	unsigned notify;                /* enum smtp_dsn_notify bits; 0 if absent */
	char orcpt[SMTP_ORCPT_MAX + 1]; /* ORCPT=, as sent (addr-type;xtext); "" if absent */
};

/*
 * One parsed command. Pointer fields point into the caller's line buffer and live as long as it.
 */
struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg; /* everything after the verb and its separating space(s); NULL if none */
	size_t arg_len;
	union {
		/* HELO / EHLO: the domain or address literal ("[1.2.3.4]", "[IPv6:...]"). */
		struct {
			const char *domain;
			size_t domain_len;
		} helo;
		struct {
			struct smtp_path path;
			struct smtp_mail_params params;
		} mail;
		struct {
			struct smtp_path path;
			struct smtp_rcpt_params params;
		} rcpt;
		/* BDAT chunk-size [LAST] (RFC 3030). */
		struct {
			uint64_t size;
			bool last;
		} bdat;
		/* AUTH mechanism [initial-response] (RFC 4954). */
		struct {
			const char *mech;
			size_t mech_len;
			const char *initial; /* NULL if absent; "=" means an empty response */
			size_t initial_len;
		} auth;
	} u;
};

/*
 * Parse one command line (without CRLF). Fills *out (always zeroed first, verb set as soon as
 * it is recognised, even when the arguments are bad, so the caller can count errors per verb).
 *
 * Rules, in short (the unit tests are the full list):
 * - the verb is case-insensitive and ends at SP or end of line; "MAIL FROM:" and "RCPT TO:"
 *   are matched case-insensitively, and one space after the colon is tolerated (common clients
 *   send "MAIL FROM: <a@b>").
 * - DATA, RSET, QUIT, STARTTLS, TURN take no argument (SMTP_PARSE_ERR_SYNTAX otherwise); NOOP,
 *   HELP, VRFY, EXPN take any ASCII argument.
 * - HELO/EHLO need a domain (letters, digits, hyphens, dots; a trailing dot allowed) or an
 *   address literal ([IPv4], [IPv6:...], [tag:...]); HELO with anything after the domain is an
 *   error; EHLO likewise.
 * - Paths: RFC 5321 Path/Mailbox with dot-string or quoted-string local parts; a source route
 *   (@a,@b:) is accepted and dropped (had_source_route set); a domain is a dot-separated list of
 *   LDH labels or an address literal; UTF-8 (well-formed only) is allowed in local part and
 *   domain (utf8 set; the session rejects it without SMTPUTF8). "<postmaster>" without domain is
 *   accepted for RCPT only. MAIL FROM:<> is the null path. Angle brackets are required.
 * - Parameters: keyword[=value] separated by spaces; keywords case-insensitive; repeated or
 *   malformed values → SMTP_PARSE_ERR_PARAM_VALUE; unknown keyword → SMTP_PARSE_ERR_PARAM.
 *   MAIL: SIZE, BODY, SMTPUTF8 (no value), RET, ENVID, AUTH. RCPT: NOTIFY, ORCPT.
 * - BDAT: a decimal chunk size (at most 20 digits, no overflow) and an optional "LAST".
 * - AUTH: mechanism (1-20 chars of A-Z 0-9 - _) and an optional initial response.
 */
enum smtp_parse_result smtp_parser_command(const char *line, size_t len, struct smtp_cmd *out);

/* "MAIL", "RCPT", ... for logs; "?" for SMTP_VERB_NONE. */
const char *smtp_verb_name(enum smtp_verb verb);

/*
 * Decode RFC 3461 xtext ("+XX" hex escapes) from src into dst (NUL-terminated).
 * Returns the decoded length, or -1 on a malformed escape or if dst is too small.
 */
long smtp_xtext_decode(const char *src, size_t len, char *dst, size_t dstsize);

/* Encode into xtext; returns the length or -1 if dst is too small. */
long smtp_xtext_encode(const char *src, size_t len, char *dst, size_t dstsize);

#endif
