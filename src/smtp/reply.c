/*
 * smtp/reply.c: the reply table and the EHLO builder. The only place reply text lives.
 *
 * Enhanced status codes follow RFC 3463 / RFC 5248 (and 5.6.7 from RFC 6531, 5.3.4 for size,
 * 5.7.1 for relay denial). 354 carries none: RFC 2034 §3 exempts intermediate replies.
 */
#include "petrel/smtp/reply.h"

#include <stdio.h>

#define SMTP_REPLY_LINE(code, esc, text) #code " " esc " " text "\r\n"

static const struct smtp_reply smtp_replies[SMTP_REPLY_COUNT] = {
#define SMTP_REPLY_ROW(id, code, esc, text)                                                        \
	[SMTP_REPLY_##id] = { code, esc, text, SMTP_REPLY_LINE(code, esc, text),                   \
		              sizeof(SMTP_REPLY_LINE(code, esc, text)) - 1 },
	SMTP_REPLIES(SMTP_REPLY_ROW)
#undef SMTP_REPLY_ROW
};

/* 354 has no enhanced code: "354  End data" would carry two spaces; fix that one line. */
static const struct smtp_reply smtp_reply_354 = {
	354, "", "End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>\r\n",
	sizeof("354 End data with <CR><LF>.<CR><LF>\r\n") - 1
};

const struct smtp_reply *
smtp_reply_get(enum smtp_reply_id id)
{
	if (id == SMTP_REPLY_DATA_GO)
		return &smtp_reply_354;
	if ((unsigned)id >= SMTP_REPLY_COUNT)
		return &smtp_replies[SMTP_REPLY_LOCAL_ERROR];
	return &smtp_replies[id];
}

enum smtp_reply_id
smtp_reply_for_parse(enum smtp_parse_result r, enum smtp_verb verb)
{
	switch (r) {
	case SMTP_PARSE_OK:
		return SMTP_REPLY_OK;
	case SMTP_PARSE_ERR_VERB:
		return SMTP_REPLY_UNKNOWN;
	case SMTP_PARSE_ERR_SYNTAX:
		return SMTP_REPLY_SYNTAX;
	case SMTP_PARSE_ERR_PATH:
		return verb == SMTP_VERB_MAIL ? SMTP_REPLY_BAD_SENDER : SMTP_REPLY_BAD_RCPT;
	case SMTP_PARSE_ERR_DOMAIN:
		return SMTP_REPLY_HELO_SYNTAX;
	case SMTP_PARSE_ERR_PATH_TOO_LONG:
		return SMTP_REPLY_PATH_TOO_LONG;
	case SMTP_PARSE_ERR_PARAM:
		return SMTP_REPLY_PARAM_UNKNOWN;
	case SMTP_PARSE_ERR_PARAM_VALUE:
		return SMTP_REPLY_PARAM_BAD;
	case SMTP_PARSE_ERR_8BIT:
	case SMTP_PARSE_ERR_NUL:
		return SMTP_REPLY_SYNTAX_CHARS;
	}
	return SMTP_REPLY_SYNTAX;
}

size_t
smtp_reply_ehlo(char *buf, size_t bufsize, const struct smtp_ehlo_info *info)
{
	int n;

	n = snprintf(buf, bufsize,
	             "250-%s\r\n"
	             "250-PIPELINING\r\n"
	             "250-SIZE %llu\r\n"
	             "250-8BITMIME\r\n"
	             "250-ENHANCEDSTATUSCODES\r\n"
	             "250-SMTPUTF8\r\n"
	             "%s"
	             "%s%s%s"
	             "%s"
	             "250 CHUNKING\r\n",
	             info->hostname, (unsigned long long)info->max_size,
	             info->starttls ? "250-STARTTLS\r\n" : "", info->auth_mechs ? "250-AUTH " : "",
	             info->auth_mechs ? info->auth_mechs : "", info->auth_mechs ? "\r\n" : "",
	             info->dsn ? "250-DSN\r\n" : "");
	if (n < 0 || (size_t)n >= bufsize)
		return 0;
	return (size_t)n;
}
