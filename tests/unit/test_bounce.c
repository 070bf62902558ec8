/*
 * test_bounce.c: DSN messages (RFC 3464 in RFC 6522 multipart/report) and bounce_wanted().
 *
 * Every built message goes through check_wire() (CRLF only, lines of at most 998 octets, no
 * lone "." line) and most also through Python's email package, an independent MIME parser:
 * the message is unstuffed, written to a temporary file and parsed by python_check().
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "petrel/bounce.h"

#define NOW ((time_t)1763932800) /* Sun, 23 Nov 2025 21:20:00 +0000 */

#define TEST_NONCE UINT64_C(0x0123456789abcdef)
#define TEST_B0    "=_petrel_018f3a5c2b7d4e00_0123456789abcdef"

/* An original in spool form: CRLF, dot-stuffed (".X-Dot-Header", ".hidden ..." and ".."). */
static const char orig_basic[] = "Received: from client.example.org ([127.0.0.1])\r\n"
                                 "\tby mx.example.org (petrel) with ESMTP id 018f3a5c2b7d4e00\r\n"
                                 "From: Alice <alice@example.org>\r\n"
                                 "To: Bob <bob@example.net>\r\n"
                                 "Subject: Hello there\r\n"
                                 "Message-ID: <hello@example.org>\r\n"
                                 "..X-Dot-Header: stuffed\r\n"
                                 "\r\n"
                                 "Hi Bob,\r\n"
                                 "..hidden line starts with a dot\r\n"
                                 "...\r\n"
                                 "BODY-MARKER\r\n";

static const struct bounce_rcpt rcpt_failed = {
	.addr = "bob@example.net",
	.action = BOUNCE_FAILED,
	.status = "5.1.1",
	.remote_mta = "mx.example.net",
	.diagnostic = "550 5.1.1 <bob@example.net>: no such user",
	.last_attempt = NOW - 60,
};

static const struct bounce_rcpt rcpt_delayed = {
	.addr = "carol@example.com",
	.action = BOUNCE_DELAYED,
	.status = "4.4.1",
	.remote_mta = "mx.example.com",
	.diagnostic = "421 4.4.1 try again later",
	.last_attempt = NOW - 120,
	.will_retry_until = NOW + 4 * 86400,
};

struct dsn {
	char *s;
	size_t len;
	char boundary[128];
};

static struct bounce_info
info_for(const struct bounce_rcpt *rcpts, size_t n)
{
	struct bounce_info info = {
		.reporting_mta = "mx.example.org",
		.message_id_domain = "mx.example.org",
		.orig_id = "018f3a5c2b7d4e00",
		.orig_sender = "alice@example.org",
		.ret = SMTP_DSN_RET_UNSPEC,
		.arrival = NOW - 3600,
		.now = NOW,
		.rcpts = rcpts,
		.nrcpts = n,
		.orig = orig_basic,
		.orig_len = sizeof(orig_basic) - 1,
		.nonce = TEST_NONCE,
	};
	return info;
}

/* CRLF only, every line at most 998 octets before its CRLF, no lone "." line, ends with CRLF. */
static void
check_wire(const char *s, size_t len)
{
	size_t i, start = 0;

	cr_assert_geq(len, 2);
	cr_assert(s[len - 2] == '\r' && s[len - 1] == '\n', "no final CRLF");
	for (i = 0; i < len; i++) {
		if (s[i] == '\r') {
			cr_assert(i + 1 < len && s[i + 1] == '\n', "bare CR at %zu", i);
			cr_assert_leq(i - start, 998, "line of %zu octets at %zu", i - start,
			              start);
			cr_assert(!(i - start == 1 && s[start] == '.'), "lone '.' line at %zu",
			          start);
			i++;
			start = i + 1;
		} else {
			cr_assert(s[i] != '\n', "bare LF at %zu", i);
		}
	}
}

static void
dsn_build(const struct bounce_info *info, struct dsn *d)
{
	struct evbuffer *b = evbuffer_new();
	const char *p, *q;

	cr_assert_not_null(b);
	cr_assert_eq(bounce_build(b, info), 0, "bounce_build: errno %d", errno);
	d->len = evbuffer_get_length(b);
	d->s = malloc(d->len + 1);
	cr_assert_not_null(d->s);
	cr_assert_eq(evbuffer_remove(b, d->s, d->len), (int)d->len);
	d->s[d->len] = '\0';
	evbuffer_free(b);
	check_wire(d->s, d->len);
	p = strstr(d->s, "boundary=\"");
	cr_assert_not_null(p);
	p += strlen("boundary=\"");
	q = strchr(p, '"');
	cr_assert_not_null(q);
	cr_assert(q - p > 0 && q - p <= 70, "boundary length %d", (int)(q - p));
	memcpy(d->boundary, p, (size_t)(q - p));
	d->boundary[q - p] = '\0';
}

static void
dsn_free(struct dsn *d)
{
	free(d->s);
	d->s = NULL;
}

/* Occurrences of needle in haystack. */
static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (hay = strstr(hay, needle); hay != NULL; hay = strstr(hay + 1, needle))
		n++;
	return n;
}

/* Is there a line exactly equal to line? */
static bool
has_line(const char *s, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	if (strncmp(s, line, n) == 0 && strncmp(s + n, "\r\n", 2) == 0)
		return true;
	for (p = strstr(s, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
		if (strncmp(p + 2, line, n) == 0 && strncmp(p + 2 + n, "\r\n", 2) == 0)
			return true;
	return false;
}

/* Is there a line starting with prefix? */
static bool
has_line_prefix(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	const char *p;

	if (strncmp(s, prefix, n) == 0)
		return true;
	for (p = strstr(s, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
		if (strncmp(p + 2, prefix, n) == 0)
			return true;
	return false;
}

/* The header (want_body false) or body of part k (1-based), as a new string. */
static char *
part_dup(const struct dsn *d, int k, bool want_body)
{
	char delim[160];
	const char *p, *hdr_end, *end;
	char *r;
	int i;

	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", d->boundary);
	p = d->s;
	for (i = 0; i < k; i++) {
		p = strstr(p, delim);
		cr_assert_not_null(p, "part %d missing", k);
		p += strlen(delim);
	}
	hdr_end = strstr(p, "\r\n\r\n");
	cr_assert_not_null(hdr_end);
	snprintf(delim, sizeof(delim), "\r\n--%s", d->boundary);
	end = strstr(hdr_end + 2, delim);
	cr_assert_not_null(end);
	if (!want_body) {
		end = hdr_end + 2;
	} else {
		p = hdr_end + 4;
		if (end < p) /* empty body */
			end = p;
	}
	r = strndup(p, (size_t)(end - p));
	cr_assert_not_null(r);
	return r;
}

/* Part 1 text with its line ends as spaces, so that checks do not depend on the wrapping. */
static char *
squash(char *s)
{
	char *p;

	while ((p = strstr(s, "\r\n")) != NULL) {
		p[0] = ' ';
		memmove(p + 1, p + 2, strlen(p + 2) + 1);
	}
	return s;
}

/* Undo dot-stuffing: drop the first '.' of every line that starts with one. */
static char *
unstuff(const char *s, size_t len, size_t *outlen)
{
	char *r = malloc(len + 1);
	size_t i, o = 0;
	bool bol = true;

	cr_assert_not_null(r);
	for (i = 0; i < len; i++) {
		if (bol && s[i] == '.') {
			bol = false;
			continue;
		}
		bol = s[i] == '\n';
		r[o++] = s[i];
	}
	r[o] = '\0';
	*outlen = o;
	return r;
}

/* Python: argv = file nparts nrcpts part3-type subject [marker in the returned body]. */
static const char python_script[] =
        "import email, sys\n"
        "from email import policy\n"
        "path, nparts, nrcpts, third, subject = sys.argv[1:6]\n"
        "def ok(cond, what):\n"
        "    if not cond:\n"
        "        print('python check failed:', what, file=sys.stderr)\n"
        "        sys.exit(1)\n"
        "m = email.message_from_binary_file(open(path, 'rb'), policy=policy.default)\n"
        "ok(m.get_content_type() == 'multipart/report', m.get_content_type())\n"
        "ok(m.get_param('report-type') == 'delivery-status', 'report-type')\n"
        "ok(m['Auto-Submitted'] == 'auto-replied', 'auto-submitted')\n"
        "ok(m['From'].addresses[0].addr_spec == 'MAILER-DAEMON@mx.example.org', 'from')\n"
        "ok(m['Date'].datetime is not None, 'date')\n"
        "ok(m['Message-ID'] is not None, 'message-id')\n"
        "ok(not m.defects, 'defects %r' % m.defects)\n"
        "parts = list(m.iter_parts())\n"
        "ok(len(parts) == int(nparts), 'parts %d' % len(parts))\n"
        "for p in parts:\n"
        "    ok(not p.defects, 'part defects %r' % p.defects)\n"
        "ok(parts[0].get_content_type() == 'text/plain', 'part 1 type')\n"
        "ok(parts[0].get_content_charset() == 'us-ascii', 'part 1 charset')\n"
        "ok(parts[1].get_content_type() == 'message/delivery-status', 'part 2 type')\n"
        "blocks = parts[1].get_payload()\n"
        "ok(len(blocks) == 1 + int(nrcpts), 'blocks %d' % len(blocks))\n"
        "ok(blocks[0]['Reporting-MTA'] == 'dns; mx.example.org', 'reporting-mta')\n"
        "for b in blocks[1:]:\n"
        "    ok(b['Final-Recipient'].startswith('rfc822; '), 'final-recipient')\n"
        "    ok(b['Action'] in ('failed', 'delayed', 'delivered', 'relayed'), 'action')\n"
        "    ok(b['Status'][0] in '245', 'status')\n"
        "if len(parts) > 2:\n"
        "    ok(parts[2].get_content_type() == third, 'part 3 %s' % parts[2].get_content_type())\n"
        "    if third == 'message/rfc822':\n"
        "        inner = parts[2].get_payload()[0]\n"
        "        ok(inner['Subject'] == subject, 'inner subject %r' % inner['Subject'])\n"
        "        if len(sys.argv) > 6:\n"
        "            ok(sys.argv[6] in inner.get_content(), 'marker in body')\n"
        "    else:\n"
        "        ok(('Subject: ' + subject) in parts[2].get_content(), 'headers part')\n";

static int
python_check(const struct dsn *d, const char *args)
{
	char msg[] = "/tmp/petrel-bounce-msg-XXXXXX";
	char script[] = "/tmp/petrel-bounce-py-XXXXXX";
	char cmd[1024];
	char *flat;
	size_t flat_len;
	FILE *f;
	int fd, rc;

	cr_assert_eq(access("/usr/bin/python3", X_OK), 0, "/usr/bin/python3 is needed");
	flat = unstuff(d->s, d->len, &flat_len);
	fd = mkstemp(msg);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(flat, 1, flat_len, f), flat_len);
	cr_assert_eq(fclose(f), 0);
	free(flat);
	fd = mkstemp(script);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fputs(python_script, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s %s", script, msg, args);
	rc = system(cmd);
	unlink(msg);
	unlink(script);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(bounce, failed_default_ret_structure)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn d;
	char delim[160], *h, *b;

	dsn_build(&info, &d);
	/* Message header. */
	cr_assert(strncmp(d.s, "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n",
	                  59) == 0,
	          "%.80s", d.s);
	cr_assert(has_line(d.s, "To: <alice@example.org>"));
	cr_assert(has_line(d.s, "Subject: Undelivered Mail Returned to Sender"));
	cr_assert(has_line(d.s, "Date: Sun, 23 Nov 2025 21:20:00 +0000"));
	cr_assert(has_line(d.s, "Message-ID: <018f3a5c2b7d4e00.1763932800.failed.0123456789abcdef"
	                        "@mx.example.org>"));
	cr_assert(has_line(d.s, "Auto-Submitted: auto-replied"));
	cr_assert(has_line(d.s, "MIME-Version: 1.0"));
	cr_assert(has_line(d.s, "Content-Type: multipart/report; report-type=delivery-status;"));
	cr_assert(has_line(d.s, "X-Petrel-Queue-ID: 018f3a5c2b7d4e00"));
	cr_assert_not(has_line_prefix(d.s, "Content-Transfer-Encoding:"));
	cr_assert_str_eq(d.boundary, TEST_B0);
	/* Three parts, one close delimiter, at the very end. */
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", d.boundary);
	cr_assert_eq(count(d.s, delim), 3);
	snprintf(delim, sizeof(delim), "\r\n--%s--\r\n", d.boundary);
	cr_assert_eq(count(d.s, delim), 1);
	cr_assert_str_eq(d.s + d.len - strlen(delim), delim);

	h = part_dup(&d, 1, false);
	cr_assert(has_line(h, "Content-Type: text/plain; charset=us-ascii"));
	free(h);
	b = squash(part_dup(&d, 1, true));
	cr_assert(strncmp(b, "This is the mail system at host mx.example.org.  ", 49) == 0);
	cr_assert_not_null(strstr(b, "<bob@example.net>: delivery failed (5.1.1)."));
	cr_assert_not_null(strstr(b, "no such user"));
	cr_assert_not_null(strstr(b, "The header section of your message is attached."));
	free(b);

	h = part_dup(&d, 2, false);
	cr_assert(has_line(h, "Content-Type: message/delivery-status"));
	free(h);
	b = part_dup(&d, 2, true);
	cr_assert(strncmp(b, "Reporting-MTA: dns; mx.example.org\r\n", 36) == 0, "%s", b);
	cr_assert(has_line(b, "Arrival-Date: Sun, 23 Nov 2025 20:20:00 +0000"));
	cr_assert(has_line(b, ""), "no empty line before the recipient group");
	cr_assert(has_line(b, "Final-Recipient: rfc822; bob@example.net"));
	cr_assert(has_line(b, "Action: failed"));
	cr_assert(has_line(b, "Status: 5.1.1"));
	cr_assert(has_line(b, "Remote-MTA: dns; mx.example.net"));
	cr_assert(has_line(b, "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user"));
	cr_assert(has_line(b, "Last-Attempt-Date: Sun, 23 Nov 2025 21:19:00 +0000"));
	cr_assert_not(has_line_prefix(b, "Original-Envelope-Id:"));
	cr_assert_not(has_line_prefix(b, "Original-Recipient:"));
	cr_assert_not(has_line_prefix(b, "Will-Retry-Until:"));
	free(b);

	/* No RET: the header section only, as it is in the spool (stuffed line included). */
	h = part_dup(&d, 3, false);
	cr_assert(has_line(h, "Content-Type: text/rfc822-headers"));
	free(h);
	b = part_dup(&d, 3, true);
	cr_assert_str_eq(b, "Received: from client.example.org ([127.0.0.1])\r\n"
	                    "\tby mx.example.org (petrel) with ESMTP id 018f3a5c2b7d4e00\r\n"
	                    "From: Alice <alice@example.org>\r\n"
	                    "To: Bob <bob@example.net>\r\n"
	                    "Subject: Hello there\r\n"
	                    "Message-ID: <hello@example.org>\r\n"
	                    "..X-Dot-Header: stuffed\r\n");
	free(b);
	cr_assert_null(strstr(d.s, "BODY-MARKER"));

	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);
}

Test(bounce, ret_hdrs_same_as_default)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn a, b;

	dsn_build(&info, &a);
	info.ret = SMTP_DSN_RET_HDRS;
	dsn_build(&info, &b);
	cr_assert_str_eq(a.s, b.s);
	dsn_free(&a);
	dsn_free(&b);
}

Test(bounce, ret_full_returns_whole_message)
{
	static const char noeol[] = "Subject: Hello there\r\n\r\nfirst\r\nlast line without CRLF";
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn d;
	char *h, *b;

	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	h = part_dup(&d, 3, false);
	cr_assert(has_line(h, "Content-Type: message/rfc822"));
	free(h);
	b = part_dup(&d, 3, true);
	cr_assert_str_eq(b, orig_basic);
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "Your message is attached."));
	free(b);
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there' "
	                              "'.hidden line starts with a dot'"),
	             0);
	dsn_free(&d);

	/* An original without its final CRLF gets one. */
	info.orig = noeol;
	info.orig_len = sizeof(noeol) - 1;
	dsn_build(&info, &d);
	b = part_dup(&d, 3, true);
	cr_assert_str_eq(b, "Subject: Hello there\r\n\r\nfirst\r\nlast line without CRLF\r\n");
	free(b);
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there' 'without CRLF'"), 0);
	dsn_free(&d);
}

Test(bounce, ret_full_only_when_a_failure_is_reported)
{
	struct bounce_info info = info_for(&rcpt_delayed, 1);
	struct dsn d;
	char *h;

	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	h = part_dup(&d, 3, false);
	cr_assert(has_line(h, "Content-Type: text/rfc822-headers"));
	free(h);
	cr_assert_null(strstr(d.s, "BODY-MARKER"));
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);
}

Test(bounce, ret_full_too_large_returns_headers)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn d;
	char *b;

	info.ret = SMTP_DSN_RET_FULL;
	info.max_orig_len = info.orig_len - 1;
	dsn_build(&info, &d);
	b = part_dup(&d, 3, false);
	cr_assert(has_line(b, "Content-Type: text/rfc822-headers"));
	free(b);
	b = part_dup(&d, 3, true);
	cr_assert_not_null(strstr(b, "Subject: Hello there\r\n"));
	cr_assert_null(strstr(b, "BODY-MARKER"));
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "too large to be returned in full"), "%s", b);
	free(b);
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);

	/* Exactly at the limit: the whole message. */
	info.max_orig_len = info.orig_len;
	dsn_build(&info, &d);
	b = part_dup(&d, 3, false);
	cr_assert(has_line(b, "Content-Type: message/rfc822"));
	free(b);
	dsn_free(&d);
}

Test(bounce, header_section_cut_at_a_line_boundary)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	char *orig = malloc(64 * 1024), *b;
	size_t n = 0, limit = 1000, next;
	struct dsn d;
	int i;

	cr_assert_not_null(orig);
	n += (size_t)sprintf(orig + n, "Subject: Hello there\r\n");
	for (i = 0; i < 200; i++)
		n += (size_t)sprintf(orig + n, "X-Filler-%03d: %.*s\r\n", i, 20 + i % 17,
		                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
	n += (size_t)sprintf(orig + n, "\r\nbody\r\n");
	info.orig = orig;
	info.orig_len = n;
	info.max_orig_len = limit;
	dsn_build(&info, &d);
	b = part_dup(&d, 3, true);
	/* A prefix of the original, ending at a line end, as long as fits. */
	cr_assert_leq(strlen(b), limit);
	cr_assert_gt(strlen(b), 0);
	cr_assert(strncmp(b, orig, strlen(b)) == 0);
	cr_assert_str_eq(b + strlen(b) - 2, "\r\n");
	next = (size_t)(strstr(orig + strlen(b), "\r\n") + 2 - orig);
	cr_assert_gt(next, limit, "the cut is not the longest possible");
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "The header section was cut to"), "%s", b);
	free(b);
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);

	/* A limit shorter than the first line: no part 3 at all. */
	info.max_orig_len = 5;
	dsn_build(&info, &d);
	cr_assert_eq(python_check(&d, "2 1 - -"), 0);
	dsn_free(&d);
	free(orig);
}

Test(bounce, dirty_original_is_never_copied_raw)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	char *orig = malloc(8192), *b;
	size_t n = 0;
	struct dsn d;

	cr_assert_not_null(orig);
	n += (size_t)sprintf(orig + n, "Subject: Hello there\r\nX-Bare: a\nb\rc\r\nX-Long: ");
	memset(orig + n, 'L', 1500);
	n += 1500;
	n += (size_t)sprintf(orig + n, "\r\n.\r\n\r\nbody with bare LF\nhere\r\n");
	info.orig = orig;
	info.orig_len = n;
	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d); /* check_wire() holds */
	b = part_dup(&d, 3, false);
	cr_assert(has_line(b, "Content-Type: text/rfc822-headers"));
	free(b);
	b = part_dup(&d, 3, true);
	cr_assert(has_line(b, "X-Bare: a b c"), "%s", b);
	cr_assert(has_line_prefix(b, "X-Long: LLLL"));
	cr_assert(has_line(b, ".."), "a lone '.' must come out stuffed");
	cr_assert_null(strstr(b, "body with"));
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "cannot be returned in full"), "%s", b);
	free(b);
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);
	free(orig);
}

Test(bounce, dot_stuffing_of_original_and_generated_lines)
{
	struct bounce_rcpt r = rcpt_failed;
	struct bounce_info info = info_for(&r, 1);
	char diag[2048], *flat, *b;
	size_t n = 0, flat_len;
	struct dsn d;
	int i;

	/* Words that start with '.' so that wrapped lines in part 1 start with one. */
	n += (size_t)snprintf(diag + n, sizeof(diag) - n, "550 5.7.1");
	for (i = 0; i < 60; i++)
		n += (size_t)snprintf(diag + n, sizeof(diag) - n, " .dotword%02d", i);
	r.diagnostic = diag;
	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	/* The original's lines are embedded as they are: still stuffed. */
	b = part_dup(&d, 3, true);
	cr_assert(has_line(b, "..X-Dot-Header: stuffed"));
	cr_assert(has_line(b, "..hidden line starts with a dot"));
	cr_assert(has_line(b, "..."));
	free(b);
	/* Generated lines that start with '.' are stuffed, and none is left unstuffed. */
	cr_assert(has_line_prefix(d.s, "..dotword"), "no wrapped line starts with a dot?");
	cr_assert_not(has_line_prefix(d.s, ".dotword"));
	flat = unstuff(d.s, d.len, &flat_len);
	cr_assert(has_line_prefix(flat, ".dotword"));
	cr_assert(has_line(flat, ".hidden line starts with a dot"));
	cr_assert(has_line(flat, ".."));
	free(flat);
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there' "
	                              "'.hidden line starts with a dot'"),
	             0);
	dsn_free(&d);
}

Test(bounce, envid_and_orcpt_are_xtext_decoded)
{
	static const char *const bad_envids[] = {
		"abc+0D+0AX-Injected:+20yes", /* decodes to CRLF: an injection */
		"abc+ZZ",                     /* malformed escape */
		"abc+00",                     /* NUL */
		"caf+E9",                     /* 8-bit */
		"abc+2b",                     /* lower-case hex is not xtext */
	};
	static const char *const bad_orcpts[] = {
		"rfc822;a+0D+0AX-Injected:+20b@example.net",
		"rfc822;+ZZ@example.net",
		"no-separator",
		";b@example.net",
		"rfc 822;b@example.net",
		"rfc822;",
	};
	struct bounce_rcpt r = rcpt_failed;
	struct bounce_info info = info_for(&r, 1);
	struct dsn d;
	char *b;
	size_t i;

	info.envid = "QQ+2B314159+3Dx";
	r.orcpt = "rfc822;b+2Bob@example.net";
	dsn_build(&info, &d);
	b = part_dup(&d, 2, true);
	cr_assert(strncmp(b, "Original-Envelope-Id: QQ+314159=x\r\nReporting-MTA:", 49) == 0, "%s",
	          b);
	cr_assert(has_line(b, "Original-Recipient: rfc822;b+ob@example.net"));
	/* Original-Recipient comes first in its group (RFC 3464 §2.3 grammar). */
	cr_assert_not_null(strstr(b, "\r\n\r\nOriginal-Recipient: rfc822;b+ob@example.net\r\n"
	                             "Final-Recipient: rfc822; bob@example.net\r\n"));
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "Original recipient: rfc822;b+ob@example.net."));
	free(b);
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);

	for (i = 0; i < sizeof(bad_envids) / sizeof(bad_envids[0]); i++) {
		info.envid = bad_envids[i];
		r.orcpt = NULL;
		dsn_build(&info, &d);
		cr_assert_not(has_line_prefix(d.s, "Original-Envelope-Id:"), "envid %s",
		              bad_envids[i]);
		cr_assert_not(has_line_prefix(d.s, "X-Injected"));
		dsn_free(&d);
	}
	info.envid = NULL;
	for (i = 0; i < sizeof(bad_orcpts) / sizeof(bad_orcpts[0]); i++) {
		r.orcpt = bad_orcpts[i];
		dsn_build(&info, &d);
		cr_assert_not(has_line_prefix(d.s, "Original-Recipient:"), "orcpt %s",
		              bad_orcpts[i]);
		cr_assert_null(strstr(d.s, "Original recipient:"));
		cr_assert_not(has_line_prefix(d.s, "X-Injected"));
		dsn_free(&d);
	}
}

Test(bounce, delayed_fields)
{
	struct bounce_rcpt rs[2] = { rcpt_delayed, rcpt_failed };
	struct bounce_info info = info_for(rs, 1);
	struct dsn d;
	char *b;

	dsn_build(&info, &d);
	cr_assert(has_line(d.s, "Subject: Delayed Mail (still being retried)"));
	cr_assert_not_null(strstr(d.s, "Message-ID: <018f3a5c2b7d4e00.1763932800.delayed."));
	b = part_dup(&d, 2, true);
	cr_assert(has_line(b, "Action: delayed"));
	cr_assert(has_line(b, "Status: 4.4.1"));
	cr_assert(has_line(b, "Diagnostic-Code: smtp; 421 4.4.1 try again later"));
	cr_assert(has_line(b, "Last-Attempt-Date: Sun, 23 Nov 2025 21:18:00 +0000"));
	cr_assert(has_line(b, "Will-Retry-Until: Thu, 27 Nov 2025 21:20:00 +0000"));
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "only a warning"));
	cr_assert_not_null(strstr(b, "until Thu, 27 Nov 2025 21:20:00 +0000."), "%s", b);
	free(b);
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);

	/* Will-Retry-Until belongs to delayed recipients only. */
	rs[1].will_retry_until = NOW + 86400;
	info.nrcpts = 2;
	dsn_build(&info, &d);
	cr_assert(has_line(d.s, "Subject: Undelivered Mail Returned to Sender"));
	cr_assert_eq(count(d.s, "\r\nWill-Retry-Until: "), 1);
	dsn_free(&d);
}

Test(bounce, several_recipients)
{
	struct bounce_rcpt rs[4] = { rcpt_failed, rcpt_delayed, rcpt_failed, rcpt_failed };
	struct bounce_info info = info_for(rs, 4);
	struct dsn d;
	char *b;

	rs[2].addr = "dave@example.net";
	rs[2].status = NULL;
	rs[2].remote_mta = NULL;
	rs[2].diagnostic = "connection timed out";
	rs[2].last_attempt = 0;
	rs[3].addr = "erin@example.net";
	rs[3].status = "5.1"; /* malformed: the action's default */
	rs[3].remote_mta = NULL;
	rs[3].diagnostic = NULL;
	dsn_build(&info, &d);
	b = part_dup(&d, 2, true);
	cr_assert_eq(count(b, "\r\nFinal-Recipient: "), 4);
	cr_assert_eq(count(b, "\r\n\r\n"), 4, "one empty line before each group");
	cr_assert(has_line(b, "Final-Recipient: rfc822; carol@example.com"));
	cr_assert(has_line(b, "Final-Recipient: rfc822; dave@example.net"));
	cr_assert(has_line(b, "Diagnostic-Code: X-Petrel; connection timed out"));
	cr_assert_eq(count(b, "\r\nStatus: 5.0.0\r\n"), 2);
	cr_assert_eq(count(b, "\r\nRemote-MTA: "), 2);
	cr_assert_eq(count(b, "\r\nLast-Attempt-Date: "), 3);
	free(b);
	b = squash(part_dup(&d, 1, true));
	cr_assert_not_null(strstr(b, "<bob@example.net>: delivery failed (5.1.1)."));
	cr_assert_not_null(strstr(b, "<carol@example.com>: not delivered yet, still trying"));
	cr_assert_not_null(strstr(b, "<dave@example.net>: delivery failed (5.0.0). Reason: "
	                             "connection timed out"));
	cr_assert_not_null(strstr(b, "<erin@example.net>: delivery failed (5.0.0)."));
	free(b);
	cr_assert_eq(python_check(&d, "3 4 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);
}

Test(bounce, success_report)
{
	struct bounce_rcpt rs[2] = { rcpt_failed, rcpt_failed };
	struct bounce_info info = info_for(rs, 2);
	struct dsn d;
	char *b;

	rs[0].action = BOUNCE_DELIVERED;
	rs[0].status = "2.0.0";
	rs[0].diagnostic = "250 2.0.0 Ok: queued as 12345";
	rs[1].action = BOUNCE_RELAYED;
	rs[1].status = NULL;
	info.ret = SMTP_DSN_RET_FULL; /* no failure reported: headers only */
	dsn_build(&info, &d);
	cr_assert(has_line(d.s, "Subject: Successful Mail Delivery Report"));
	cr_assert_not_null(strstr(d.s, ".1763932800.success."));
	b = part_dup(&d, 2, true);
	cr_assert(has_line(b, "Action: delivered"));
	cr_assert(has_line(b, "Action: relayed"));
	cr_assert_eq(count(b, "\r\nStatus: 2.0.0\r\n"), 2);
	free(b);
	cr_assert_eq(python_check(&d, "3 2 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);
}

Test(bounce, no_original_means_two_parts)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn d;
	char delim[160];

	info.orig = NULL;
	info.orig_len = 0;
	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", d.boundary);
	cr_assert_eq(count(d.s, delim), 2);
	cr_assert_eq(python_check(&d, "2 1 - -"), 0);
	dsn_free(&d);
}

Test(bounce, boundary_never_occurs_in_the_parts)
{
	struct bounce_rcpt r = rcpt_failed;
	struct bounce_info info = info_for(&r, 1);
	static const char orig1[] = "Subject: Hello there\r\n"
	                            "X-Trap: " TEST_B0 "\r\n"
	                            "\r\n"
	                            "--" TEST_B0 "\r\n"
	                            "--" TEST_B0 "--\r\n";
	static const char orig2[] = "Subject: Hello there\r\n"
	                            "\r\n"
	                            "--" TEST_B0 "\r\n"
	                            "--" TEST_B0 "_1\r\n";
	struct dsn d;

	/* Caught in the original (header section and body). */
	info.orig = orig1;
	info.orig_len = sizeof(orig1) - 1;
	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	cr_assert_str_eq(d.boundary, TEST_B0 "_1");
	cr_assert_null(strstr(orig1, d.boundary));
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there' '" TEST_B0 "--'"), 0);
	dsn_free(&d);
	info.ret = SMTP_DSN_RET_HDRS;
	dsn_build(&info, &d);
	cr_assert_str_eq(d.boundary, TEST_B0 "_1");
	cr_assert_eq(python_check(&d, "3 1 text/rfc822-headers 'Hello there'"), 0);
	dsn_free(&d);

	/* The first two candidates taken. */
	info.orig = orig2;
	info.orig_len = sizeof(orig2) - 1;
	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	cr_assert_str_eq(d.boundary, TEST_B0 "_2");
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there'"), 0);
	dsn_free(&d);

	/* Caught in a generated part (the remote server's reply). */
	info.orig = orig_basic;
	info.orig_len = sizeof(orig_basic) - 1;
	r.diagnostic = "550 5.7.1 rejected --" TEST_B0 "-- ha";
	dsn_build(&info, &d);
	cr_assert_str_eq(d.boundary, TEST_B0 "_1");
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there'"), 0);
	dsn_free(&d);
}

Test(bounce, nonce_makes_ids_unique)
{
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn a, b;
	const char *ma, *mb;

	dsn_build(&info, &a);
	dsn_build(&info, &b);
	cr_assert_str_eq(a.s, b.s, "a given nonce gives the same bytes");
	dsn_free(&a);
	dsn_free(&b);
	info.nonce = 0; /* random */
	dsn_build(&info, &a);
	dsn_build(&info, &b);
	ma = strstr(a.s, "\r\nMessage-ID: ");
	mb = strstr(b.s, "\r\nMessage-ID: ");
	cr_assert(ma != NULL && mb != NULL);
	cr_assert(strncmp(ma, mb, strcspn(ma + 2, "\r") + 2) != 0, "same Message-ID twice");
	cr_assert_str_neq(a.boundary, b.boundary);
	cr_assert(strncmp(a.boundary, "=_petrel_018f3a5c2b7d4e00_", 26) == 0);
	dsn_free(&a);
	dsn_free(&b);
}

Test(bounce, hostile_values_are_cleaned_and_bounded)
{
	struct bounce_rcpt r = rcpt_failed;
	struct bounce_info info = info_for(&r, 1);
	char *diag = malloc(12000), *b, *p;
	size_t n = 0;
	struct dsn d;
	int i;

	cr_assert_not_null(diag);
	n += (size_t)sprintf(diag + n, "550-5.7.1 first line\r\n550-5.7.1 \x01\x7f\xff bad octets");
	n += (size_t)sprintf(diag + n, "\r\nX-Injected: 1\r\n550 5.7.1");
	for (i = 0; i < 600; i++)
		n += (size_t)sprintf(diag + n, " w%d", i);
	diag[n++] = ' ';
	memset(diag + n, 'Z', 3000); /* one "word" longer than any line */
	n += 3000;
	diag[n] = '\0';
	r.diagnostic = diag;
	r.addr = "bob@example.net\r\nBcc: evil@example.com";
	r.remote_mta = "mx.example.net\r\nX-Injected: 2";
	info.orig_sender = "alice@example.org>\r\nBcc: <evil@example.com";
	info.reporting_mta = "mx.example.org\r\nX-Injected: 3";
	dsn_build(&info, &d); /* check_wire(): no bare CR/LF, no line over 998 octets */
	cr_assert_not(has_line_prefix(d.s, "X-Injected"));
	cr_assert_not(has_line_prefix(d.s, "Bcc:"));
	cr_assert(
	        has_line_prefix(d.s, "From: Mail Delivery System <MAILER-DAEMON@mx.example.org--"));
	b = part_dup(&d, 2, true);
	p = strstr(b, "\r\nDiagnostic-Code: smtp; 550-5.7.1 first line 550-5.7.1 ??? bad octets");
	cr_assert_not_null(p, "%s", b);
	/* Folded: continuation lines start with SP; only the split word exceeds 78. */
	for (p += 2; strncmp(p, "Last-Attempt-Date:", 18) != 0; p = strstr(p, "\r\n") + 2) {
		size_t l = (size_t)(strstr(p, "\r\n") - p);

		cr_assert(l <= 78 || p[1] == 'Z', "line of %zu: %.40s", l, p);
		if (strncmp(p, "Diagnostic-Code:", 16) != 0)
			cr_assert_eq(p[0], ' ', "not a continuation: %.40s", p);
	}
	free(b);
	dsn_free(&d);
	free(diag);
}

Test(bounce, eight_bit_original_is_labelled)
{
	static const char orig8[] = "Subject: Hello there\r\nX-Name: caf\xc3\xa9\r\n\r\nbody\r\n";
	struct bounce_info info = info_for(&rcpt_failed, 1);
	struct dsn d;
	char *h;

	info.orig = orig8;
	info.orig_len = sizeof(orig8) - 1;
	info.ret = SMTP_DSN_RET_FULL;
	dsn_build(&info, &d);
	h = part_dup(&d, 3, false);
	cr_assert(has_line(h, "Content-Transfer-Encoding: 8bit"));
	free(h);
	cr_assert(has_line(d.s, "Content-Transfer-Encoding: 8bit"));
	cr_assert_eq(python_check(&d, "3 1 message/rfc822 'Hello there'"), 0);
	dsn_free(&d);
}

Test(bounce, bad_arguments_leave_out_unchanged)
{
	struct bounce_rcpt r = rcpt_failed;
	struct bounce_info info = info_for(&r, 1);
	struct evbuffer *b = evbuffer_new();

	cr_assert_not_null(b);
	evbuffer_add(b, "x", 1);
	info.nrcpts = 0;
	errno = 0;
	cr_assert_eq(bounce_build(b, &info), -1);
	cr_assert_eq(errno, EINVAL);
	info.nrcpts = 1;
	info.orig_sender = "";
	cr_assert_eq(bounce_build(b, &info), -1);
	info.orig_sender = "alice@example.org";
	info.reporting_mta = NULL;
	cr_assert_eq(bounce_build(b, &info), -1);
	info.reporting_mta = "mx.example.org";
	r.addr = NULL;
	cr_assert_eq(bounce_build(b, &info), -1);
	r.addr = "bob@example.net";
	r.action = (enum bounce_action)42;
	cr_assert_eq(bounce_build(b, &info), -1);
	cr_assert_eq(bounce_build(NULL, &info), -1);
	cr_assert_eq(evbuffer_get_length(b), 1);
	r.action = BOUNCE_FAILED;
	cr_assert_eq(bounce_build(b, &info), 0);
	cr_assert_gt(evbuffer_get_length(b), 1);
	evbuffer_free(b);
}

struct wanted_case {
	const char *sender;
	unsigned notify;
	enum bounce_action action;
	bool want;
};

Test(bounce, wanted_truth_table)
{
	enum {
		N = SMTP_DSN_NOTIFY_NEVER,
		S = SMTP_DSN_NOTIFY_SUCCESS,
		F = SMTP_DSN_NOTIFY_FAILURE,
		D = SMTP_DSN_NOTIFY_DELAY,
	};
	static const struct wanted_case cases[] = {
		/* Null reverse path: never, whatever NOTIFY says. */
		{ "", 0, BOUNCE_FAILED, false },
		{ "", F | D | S, BOUNCE_FAILED, false },
		{ "", F | D | S, BOUNCE_DELAYED, false },
		{ "", S, BOUNCE_DELIVERED, false },
		{ NULL, F, BOUNCE_FAILED, false },
		{ "<>", F, BOUNCE_FAILED, false },
		/* No NOTIFY: FAILURE,DELAY (RFC 3461 §4.1). */
		{ "a@b", 0, BOUNCE_FAILED, true },
		{ "a@b", 0, BOUNCE_DELAYED, true },
		{ "a@b", 0, BOUNCE_DELIVERED, false },
		{ "a@b", 0, BOUNCE_RELAYED, false },
		{ "a@b", 0, BOUNCE_EXPANDED, false },
		/* NEVER. */
		{ "a@b", N, BOUNCE_FAILED, false },
		{ "a@b", N, BOUNCE_DELAYED, false },
		{ "a@b", N, BOUNCE_DELIVERED, false },
		/* Only the bit for the action counts. */
		{ "a@b", F, BOUNCE_FAILED, true },
		{ "a@b", F, BOUNCE_DELAYED, false },
		{ "a@b", F, BOUNCE_DELIVERED, false },
		{ "a@b", D, BOUNCE_FAILED, false },
		{ "a@b", D, BOUNCE_DELAYED, true },
		{ "a@b", S, BOUNCE_FAILED, false },
		{ "a@b", S, BOUNCE_DELAYED, false },
		{ "a@b", S, BOUNCE_DELIVERED, true },
		{ "a@b", S, BOUNCE_RELAYED, true },
		{ "a@b", S, BOUNCE_EXPANDED, true },
		{ "a@b", S | F, BOUNCE_FAILED, true },
		{ "a@b", S | F, BOUNCE_DELAYED, false },
		{ "a@b", F | D, BOUNCE_DELAYED, true },
		{ "a@b", F | D, BOUNCE_DELIVERED, false },
		{ "a@b", S | F | D, BOUNCE_DELAYED, true },
		/* NEVER with others (the parser refuses it): NEVER wins. */
		{ "a@b", N | F, BOUNCE_FAILED, false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(bounce_wanted(cases[i].sender, cases[i].notify, cases[i].action),
		             cases[i].want, "case %zu: sender=%s notify=%#x action=%d", i,
		             cases[i].sender != NULL ? cases[i].sender : "(null)", cases[i].notify,
		             (int)cases[i].action);
}
