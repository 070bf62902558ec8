/*
 * test_body.c: the DATA/BDAT scanner, fed every chunking of each input: the answer must not
 * depend on how the network split the bytes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "petrel/smtp/body.h"

struct outcome {
	enum body_scan_result res; /* last event (MORE if none) */
	size_t consumed;           /* bytes consumed up to and including the event */
	unsigned errors;
	unsigned received; /* Received: fields counted in the header section */
};

/* Feed `in` split at the given cut points; stop at the first event. */
static struct outcome
scan_split(const char *in, size_t len, bool bdat, const size_t *cuts, size_t ncuts)
{
	struct body_scan s;
	struct outcome o = { BODY_SCAN_MORE, 0, 0, 0 };
	size_t start = 0, k;

	body_scan_init(&s, bdat);
	for (k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		while (start < end) {
			enum body_scan_result res;
			size_t c = body_scan_feed(&s, in + start, end - start, &res);
			start += c;
			if (res != BODY_SCAN_MORE) {
				o.res = res;
				o.consumed = start;
				o.errors = s.errors;
				o.received = s.received;
				return o;
			}
			cr_assert_eq(start, end, "MORE must consume everything");
		}
	}
	o.consumed = start;
	o.errors = s.errors;
	o.received = s.received;
	return o;
}

/* Check one input under every split into one, two and three pieces. */
static void
check_all_splits(const char *in, enum body_scan_result res, size_t consumed, unsigned errors)
{
	size_t len = strlen(in), a, b;
	struct outcome o;

	o = scan_split(in, len, false, NULL, 0);
	cr_assert_eq(o.res, res, "whole: res %d want %d for %s", o.res, res, in);
	cr_assert_eq(o.consumed, consumed, "whole: consumed %zu want %zu", o.consumed, consumed);
	cr_assert_eq(o.errors, errors, "whole: errors %u want %u", o.errors, errors);
	for (a = 0; a <= len; a++) {
		o = scan_split(in, len, false, &a, 1);
		cr_assert_eq(o.res, res, "split at %zu: res %d want %d", a, o.res, res);
		cr_assert_eq(o.consumed, consumed, "split at %zu", a);
		cr_assert_eq(o.errors, errors, "split at %zu: errors %u want %u", a, o.errors,
		             errors);
		for (b = a; b <= len; b++) {
			size_t cuts[2] = { a, b };
			o = scan_split(in, len, false, cuts, 2);
			cr_assert_eq(o.res, res, "split at %zu,%zu", a, b);
			cr_assert_eq(o.consumed, consumed, "split at %zu,%zu", a, b);
			cr_assert_eq(o.errors, errors, "split at %zu,%zu", a, b);
		}
	}
}

Test(body, empty_message_ends)
{
	check_all_splits(".\r\n", BODY_SCAN_END, 3, 0);
}

Test(body, simple_message)
{
	check_all_splits("Subject: x\r\n\r\nhello\r\n.\r\n", BODY_SCAN_END, 24, 0);
}

Test(body, stuffed_dot_is_not_the_end)
{
	check_all_splits("..\r\n.x\r\n.\r\n", BODY_SCAN_END, 11, 0);
}

Test(body, trailing_bytes_are_not_consumed)
{
	check_all_splits("a\r\n.\r\nMAIL FROM:<x@y>\r\n", BODY_SCAN_END, 6, 0);
}

Test(body, incomplete_needs_more)
{
	check_all_splits("a\r\n.\r", BODY_SCAN_MORE, 5, 0);
	check_all_splits("a\r\n.", BODY_SCAN_MORE, 4, 0);
	check_all_splits("a\r\n", BODY_SCAN_MORE, 3, 0);
}

Test(body, lf_dot_lf_is_not_the_end)
{
	/* "\n.\n" and "\n.\r\n" must never end a message (SMTP smuggling). */
	check_all_splits("a\n.\r\nb\r\n.\r\n", BODY_SCAN_END, 11, BODY_ERR_BARE_LF);
}

Test(body, cr_dot_cr_is_not_the_end)
{
	check_all_splits("a\r.\rb\r\n.\r\n", BODY_SCAN_END, 10, BODY_ERR_BARE_CR);
}

Test(body, dot_line_ended_by_bare_lf_is_reported)
{
	check_all_splits("a\r\n.\nMAIL FROM:<x@y>\r\n", BODY_SCAN_BARE_DOT, 5, BODY_ERR_BARE_LF);
	check_all_splits(".\n", BODY_SCAN_BARE_DOT, 2, BODY_ERR_BARE_LF);
}

Test(body, bare_lf_inside_is_flagged)
{
	check_all_splits("a\nb\r\n.\r\n", BODY_SCAN_END, 8, BODY_ERR_BARE_LF);
}

Test(body, bare_cr_inside_is_flagged)
{
	check_all_splits("a\rb\r\n.\r\n", BODY_SCAN_END, 8, BODY_ERR_BARE_CR);
	check_all_splits("ab\r\r\n.\r\n", BODY_SCAN_END, 8, BODY_ERR_BARE_CR);
}

Test(body, dot_with_cr_before_crlf_is_content)
{
	check_all_splits(".\r\r\n.\r\n", BODY_SCAN_END, 7, BODY_ERR_BARE_CR);
}

Test(body, line_length_limit)
{
	static char in[1100];
	struct outcome o;
	size_t len;

	/* 998 octets + CRLF = 1000: allowed. */
	memset(in, 'x', 998);
	memcpy(in + 998, "\r\n.\r\n", 6);
	len = strlen(in);
	o = scan_split(in, len, false, NULL, 0);
	cr_assert_eq(o.res, BODY_SCAN_END);
	cr_assert_eq(o.errors, 0);
	/* 999 octets + CRLF = 1001: too long. */
	memset(in, 'x', 999);
	memcpy(in + 999, "\r\n.\r\n", 6);
	len = strlen(in);
	o = scan_split(in, len, false, NULL, 0);
	cr_assert_eq(o.res, BODY_SCAN_END);
	cr_assert_eq(o.errors, BODY_ERR_LINE_TOO_LONG);
	cr_assert_eq(o.consumed, len);
}

Test(body, long_line_fed_bytewise)
{
	static char in[3000];
	struct body_scan s;
	enum body_scan_result res = BODY_SCAN_MORE;
	size_t i, len;

	memset(in, 'y', 2000);
	memcpy(in + 2000, "\r\n.\r\n", 6);
	len = strlen(in);
	body_scan_init(&s, false);
	for (i = 0; i < len && res == BODY_SCAN_MORE; i++)
		cr_assert_eq(body_scan_feed(&s, in + i, 1, &res), 1);
	cr_assert_eq(res, BODY_SCAN_END);
	cr_assert_eq(i, len);
	cr_assert_eq(s.errors, BODY_ERR_LINE_TOO_LONG);
	cr_assert_eq(s.total, len);
}

/* BDAT: stops before each line that begins with '.', never ends by itself. */
Test(body, bdat_reports_dot_lines)
{
	const char *in = ".a\r\nb\r\n.\r\n..\r\n";
	size_t len = strlen(in), pos = 0, stops[8], nstops = 0;
	struct body_scan s;
	enum body_scan_result res;

	body_scan_init(&s, true);
	while (pos < len) {
		size_t c = body_scan_feed(&s, in + pos, len - pos, &res);
		pos += c;
		if (res == BODY_SCAN_DOT_LINE)
			stops[nstops++] = pos;
		else
			cr_assert_eq(res, BODY_SCAN_MORE);
	}
	cr_assert_eq(nstops, 3);
	cr_assert_eq(stops[0], 0);
	cr_assert_eq(stops[1], 7);
	cr_assert_eq(stops[2], 10);
	cr_assert_eq(s.errors, 0);
	cr_assert_not(body_scan_mid_line(&s));
}

Test(body, bdat_mid_line_and_bare_lf)
{
	struct body_scan s;
	enum body_scan_result res;

	body_scan_init(&s, true);
	cr_assert_eq(body_scan_feed(&s, "abc\ndef", 7, &res), 7);
	cr_assert_eq(res, BODY_SCAN_MORE);
	cr_assert(body_scan_mid_line(&s));
	cr_assert_eq(s.errors, BODY_ERR_BARE_LF);
}

Test(body, bdat_dot_split_across_feeds)
{
	struct body_scan s;
	enum body_scan_result res;

	body_scan_init(&s, true);
	cr_assert_eq(body_scan_feed(&s, "x\r\n", 3, &res), 3);
	cr_assert_eq(res, BODY_SCAN_MORE);
	cr_assert_eq(body_scan_feed(&s, ".y\r\n", 4, &res), 0);
	cr_assert_eq(res, BODY_SCAN_DOT_LINE);
	cr_assert_eq(body_scan_feed(&s, ".y\r\n", 4, &res), 4);
	cr_assert_eq(res, BODY_SCAN_MORE);
}

/* A terminator split across reads: the octets of a possible final "." line are reported as
 * pending, so the session keeps them out of the message until the line is decided. */
Test(body, pending_dot_across_feeds)
{
	struct body_scan s;
	enum body_scan_result res;

	body_scan_init(&s, false);
	cr_assert_eq(body_scan_feed(&s, "body\r\n.", 7, &res), 7);
	cr_assert_eq(res, BODY_SCAN_MORE);
	cr_assert_eq(body_scan_pending_dot(&s), 1);
	cr_assert_eq(body_scan_feed(&s, "\r", 1, &res), 1);
	cr_assert_eq(body_scan_pending_dot(&s), 2);
	cr_assert_eq(body_scan_feed(&s, "\nNOOP\r\n", 7, &res), 1);
	cr_assert_eq(res, BODY_SCAN_END);

	body_scan_init(&s, false);
	cr_assert_eq(body_scan_pending_dot(&s), 0);
	body_scan_feed(&s, ".", 1, &res);
	cr_assert_eq(body_scan_pending_dot(&s), 1, "the very first line may be the end too");
	body_scan_feed(&s, "x", 1, &res);
	cr_assert_eq(body_scan_pending_dot(&s), 0, "'.x' is content: store it");
	body_scan_init(&s, false);
	body_scan_feed(&s, "a\n.", 3, &res);
	cr_assert_eq(body_scan_pending_dot(&s), 0, "after a bare LF a '.' cannot end the data");
	body_scan_init(&s, true);
	body_scan_feed(&s, "x\r\n", 3, &res);
	cr_assert_eq(body_scan_feed(&s, ".", 1, &res), 0);
	cr_assert_eq(body_scan_pending_dot(&s), 0, "BDAT has no terminator");
}

Test(body, stuffed_dots_counted)
{
	struct body_scan s;
	enum body_scan_result res;
	const char *in = "..a\r\nb.\r\n...\r\n.\r\n";

	body_scan_init(&s, false);
	cr_assert_eq(body_scan_feed(&s, in, strlen(in), &res), strlen(in));
	cr_assert_eq(res, BODY_SCAN_END);
	cr_assert_eq(s.stuffed, 2, "'..a' and '...' carry a stuffing dot; '.' ends");
}

/* The Received: fields of the header section, under every split into one, two, three pieces. */
static void
check_received(const char *in, unsigned want)
{
	size_t len = strlen(in), a, b;
	struct outcome o;

	o = scan_split(in, len, false, NULL, 0);
	cr_assert_eq(o.res, BODY_SCAN_END, "%s", in);
	cr_assert_eq(o.received, want, "whole: %u want %u for %s", o.received, want, in);
	for (a = 0; a <= len; a++)
		for (b = a; b <= len; b++) {
			size_t cuts[2] = { a, b };
			o = scan_split(in, len, false, cuts, 2);
			cr_assert_eq(o.received, want, "split at %zu,%zu: %u want %u for %s", a, b,
			             o.received, want, in);
		}
}

Test(body, received_fields_in_the_header_section)
{
	check_received("Received: from a\r\nreceived: from b\r\n\tby c\r\nSubject: x\r\n\r\n"
	               "Received: in the body\r\n.\r\n",
	               2);
	check_received("RECEIVED:x\r\nReceived:\r\n\r\n.\r\n", 2);
	check_received(
	        "X-Received: no\r\nReceivedX: no\r\n Received: folded\r\nReceiv\r\n\r\n.\r\n", 0);
	check_received("Received: no body follows\r\n.\r\n", 1);
	check_received("\r\nReceived: after an empty first line is body\r\n.\r\n", 0);
	check_received(".\r\n", 0);
}
