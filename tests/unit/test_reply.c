/*
 * test_reply.c: the reply table is well-formed (code class matches the enhanced code, CRLF
 * ends every line) and the EHLO reply advertises what petrel does.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "petrel/smtp/reply.h"

Test(reply, every_line_is_well_formed)
{
	int id;

	for (id = 0; id < SMTP_REPLY_COUNT; id++) {
		const struct smtp_reply *r = smtp_reply_get((enum smtp_reply_id)id);
		char expect[256];

		cr_assert(r->code >= 200 && r->code < 600, "id %d code %u", id, r->code);
		if (r->code == 354) {
			snprintf(expect, sizeof(expect), "354 %s\r\n", r->text);
		} else {
			cr_assert_eq(r->enhanced[0], '0' + (char)(r->code / 100), "id %d: %u vs %s",
			             id, r->code, r->enhanced);
			snprintf(expect, sizeof(expect), "%u %s %s\r\n", r->code, r->enhanced,
			         r->text);
		}
		cr_assert_str_eq(r->line, expect, "id %d", id);
		cr_assert_eq(r->len, strlen(r->line));
		cr_assert_lt(r->len, 512, "RFC 5321 reply line limit");
	}
}

Test(reply, specific_codes)
{
	cr_assert_str_eq(smtp_reply_get(SMTP_REPLY_RELAY_DENIED)->line,
	                 "554 5.7.1 Relay access denied\r\n");
	cr_assert_str_eq(smtp_reply_get(SMTP_REPLY_DATA_GO)->line,
	                 "354 End data with <CR><LF>.<CR><LF>\r\n");
	cr_assert_eq(smtp_reply_get(SMTP_REPLY_TOO_MANY_RCPTS)->code, 452);
	cr_assert_str_eq(smtp_reply_get(SMTP_REPLY_LINE_TOO_LONG)->enhanced, "5.5.6");
	cr_assert_str_eq(smtp_reply_get(SMTP_REPLY_BARE_LF)->enhanced, "5.6.11");
	cr_assert_eq(smtp_reply_get(SMTP_REPLY_SIZE_EXCEEDED)->code, 552);
}

Test(reply, parse_errors_map)
{
	cr_assert_eq(smtp_reply_for_parse(SMTP_PARSE_ERR_VERB, SMTP_VERB_NONE), SMTP_REPLY_UNKNOWN);
	cr_assert_eq(smtp_reply_for_parse(SMTP_PARSE_ERR_PATH, SMTP_VERB_MAIL),
	             SMTP_REPLY_BAD_SENDER);
	cr_assert_eq(smtp_reply_for_parse(SMTP_PARSE_ERR_PATH, SMTP_VERB_RCPT),
	             SMTP_REPLY_BAD_RCPT);
	cr_assert_eq(smtp_reply_for_parse(SMTP_PARSE_ERR_PARAM, SMTP_VERB_MAIL),
	             SMTP_REPLY_PARAM_UNKNOWN);
	cr_assert_eq(
	        smtp_reply_get(smtp_reply_for_parse(SMTP_PARSE_ERR_PARAM, SMTP_VERB_MAIL))->code,
	        555);
	cr_assert_eq(smtp_reply_for_parse(SMTP_PARSE_ERR_NUL, SMTP_VERB_NOOP),
	             SMTP_REPLY_SYNTAX_CHARS);
}

Test(reply, ehlo)
{
	char buf[512];
	struct smtp_ehlo_info info = { .hostname = "mx.example.org", .max_size = 36700160 };
	size_t n = smtp_reply_ehlo(buf, sizeof(buf), &info);

	cr_assert_gt(n, 0);
	cr_assert_str_eq(buf, "250-mx.example.org\r\n"
	                      "250-PIPELINING\r\n"
	                      "250-SIZE 36700160\r\n"
	                      "250-8BITMIME\r\n"
	                      "250-ENHANCEDSTATUSCODES\r\n"
	                      "250-SMTPUTF8\r\n"
	                      "250 CHUNKING\r\n");
	info.starttls = true;
	info.auth_mechs = "PLAIN LOGIN";
	n = smtp_reply_ehlo(buf, sizeof(buf), &info);
	cr_assert(strstr(buf, "250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n") != NULL);
	cr_assert_eq(smtp_reply_ehlo(buf, 20, &info), 0, "too small a buffer is refused");
}
