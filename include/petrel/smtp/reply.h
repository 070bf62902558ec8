/*
 * smtp/reply.h: every reply petrel's SMTP server sends, in one table (code, enhanced status
 * code of RFC 3463, short text), and the builders for the few dynamic ones (EHLO, greeting).
 *
 * Pure: no I/O. The session writes what these produce.
 */
#ifndef PETREL_SMTP_REPLY_H
#define PETREL_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "petrel/smtp/parser.h"

/* X(id, code, enhanced, text) */
#define SMTP_REPLIES(X)                                                                            \
	X(OK, 250, "2.0.0", "Ok")                                                                  \
	X(MAIL_OK, 250, "2.1.0", "Sender ok")                                                      \
	X(RCPT_OK, 250, "2.1.5", "Recipient ok")                                                   \
	X(RSET_OK, 250, "2.0.0", "Reset state")                                                    \
	X(DATA_GO, 354, "", "End data with <CR><LF>.<CR><LF>")                                     \
	X(BYE, 221, "2.0.0", "Bye")                                                                \
	X(VRFY, 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")    \
	X(HELP, 214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")                        \
	X(EXPN, 502, "5.5.1", "EXPN not available")                                                \
	X(NOT_IMPLEMENTED, 502, "5.5.1", "Command not implemented")                                \
	X(UNKNOWN, 500, "5.5.1", "Command unrecognized")                                           \
	X(LINE_TOO_LONG, 500, "5.5.6", "Line too long")                                            \
	X(SYNTAX, 501, "5.5.4", "Syntax error in parameters or arguments")                         \
	X(SYNTAX_CHARS, 501, "5.5.2", "Invalid characters in command")                             \
	X(HELO_SYNTAX, 501, "5.5.4", "Invalid domain name")                                        \
	X(BAD_SENDER, 501, "5.1.7", "Bad sender address syntax")                                   \
	X(BAD_RCPT, 501, "5.1.3", "Bad recipient address syntax")                                  \
	X(PATH_TOO_LONG, 501, "5.5.4", "Path too long")                                            \
	X(PARAM_UNKNOWN, 555, "5.5.4", "Unsupported parameter")                                    \
	X(PARAM_BAD, 501, "5.5.4", "Invalid parameter value")                                      \
	X(BINARYMIME, 555, "5.5.4", "BODY=BINARYMIME not supported")                               \
	X(NEED_HELO, 503, "5.5.1", "Send HELO/EHLO first")                                         \
	X(NESTED_MAIL, 503, "5.5.1", "Sender already specified")                                   \
	X(NEED_MAIL, 503, "5.5.1", "Need MAIL command")                                            \
	X(NEED_RCPT, 503, "5.5.1", "Need RCPT command")                                            \
	X(BDAT_MIX, 503, "5.5.1", "DATA and BDAT cannot be mixed in one transaction")              \
	X(BAD_SEQUENCE, 503, "5.5.1", "Bad sequence of commands")                                  \
	X(SIZE_EXCEEDED, 552, "5.3.4", "Message size exceeds fixed limit")                         \
	X(TOO_MANY_RCPTS, 452, "4.5.3", "Too many recipients")                                     \
	X(RELAY_DENIED, 554, "5.7.1", "Relay access denied")                                       \
	X(AUTH_REQUIRED, 530, "5.7.0", "Authentication required")                                  \
	X(TLS_READY, 220, "2.0.0", "Ready to start TLS")                                           \
	X(TLS_ACTIVE, 503, "5.5.1", "TLS already active")                                          \
	X(TLS_UNAVAILABLE, 454, "4.7.0", "TLS not available due to temporary reason")              \
	X(AUTH_OK, 235, "2.7.0", "Authentication successful")                                      \
	X(AUTH_FAILED, 535, "5.7.8", "Authentication credentials invalid")                         \
	X(AUTH_ALREADY, 503, "5.5.1", "Already authenticated")                                     \
	X(AUTH_IN_TXN, 503, "5.5.1", "AUTH not permitted during a mail transaction")               \
	X(AUTH_MECH, 504, "5.5.4", "Unrecognized authentication type")                             \
	X(AUTH_CANCELLED, 501, "5.0.0", "Authentication cancelled")                                \
	X(AUTH_SYNTAX, 501, "5.5.2", "Cannot decode response")                                     \
	X(AUTH_NEEDS_TLS, 538, "5.7.11",                                                           \
	  "Encryption required for requested authentication mechanism")                            \
	X(AUTH_THROTTLED, 421, "4.7.0", "Too many failed authentications, try again later")        \
	X(SENDER_NOT_OWNED, 553, "5.7.1", "Sender address not owned by the authenticated user")    \
	X(UTF8_REQUIRED, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8")                      \
	X(TEXT_LINE_TOO_LONG, 550, "5.6.0", "Message line longer than 1000 octets (RFC 5321)")     \
	X(BARE_LF, 550, "5.6.11", "Bare <LF> or <CR> in message refused (CRLF only)")              \
	X(BARE_LF_CLOSE, 550, "5.6.11", "Bare <LF> ends data; refused, closing connection")        \
	X(BDAT_TOO_LARGE, 552, "5.3.4", "Chunk size exceeds fixed limit")                          \
	X(LOCAL_ERROR, 451, "4.3.0", "Local error in processing, try again later")                 \
	X(TOO_MANY_ERRORS, 421, "4.7.0", "Too many errors, closing connection")                    \
	X(TOO_MANY_CONNECTIONS, 421, "4.7.0", "Too many connections, try again later")             \
	X(TOO_MANY_FROM_IP, 421, "4.7.0", "Too many connections from your address")                \
	X(TIMEOUT, 421, "4.4.2", "Timeout, closing connection")                                    \
	X(SHUTDOWN, 421, "4.3.2", "Service shutting down, try again later")                        \
	X(EARLY_TALKER, 554, "5.5.0", "Protocol error: talking before the greeting")

enum smtp_reply_id {
#define SMTP_REPLY_ENUM(id, code, esc, text) SMTP_REPLY_##id,
	SMTP_REPLIES(SMTP_REPLY_ENUM)
#undef SMTP_REPLY_ENUM
	        SMTP_REPLY_COUNT
};

struct smtp_reply {
	unsigned code;
	const char *enhanced; /* "" for 354 (no enhanced code on intermediate replies) */
	const char *text;
	const char *line; /* the whole line with CRLF: "250 2.1.0 Sender ok\r\n" */
	size_t len;
};

/* The reply for an id (never NULL). */
const struct smtp_reply *smtp_reply_get(enum smtp_reply_id id);

/* Which reply a parse error earns for that verb (MAIL vs RCPT path errors differ). */
enum smtp_reply_id smtp_reply_for_parse(enum smtp_parse_result r, enum smtp_verb verb);

/* Extensions advertised in EHLO. */
struct smtp_ehlo_info {
	const char *hostname;   /* our name */
	uint64_t max_size;      /* SIZE value; 0 advertises "SIZE" with no value */
	bool starttls;          /* advertise STARTTLS */
	const char *auth_mechs; /* "PLAIN LOGIN" or NULL */
	bool dsn;               /* advertise DSN */
};

/*
 * Write the multi-line EHLO reply into buf. Returns the length, or 0 if buf is too small
 * (512 bytes is always enough).
 */
size_t smtp_reply_ehlo(char *buf, size_t bufsize, const struct smtp_ehlo_info *info);

#endif
