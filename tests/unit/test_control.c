/*
 * test_control.c: the pure side of queue control: request parsing, the journal as `show` reads
 * it, escaping for display, and the `list` / `list --by-domain` / `show` formats, including a
 * message read back from a spool directory (the CLI's path when petrel is stopped).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "petrel/control.h"
#include "petrel/message.h"
#include "petrel/scheduler.h"
#include "petrel/spool_record.h"

#define ID_A "0660f8bf21ed0600"
#define ID_B "0660f8bf21f6b800"

/* ---- helpers ---- */

/* Everything written so far, as a NUL-terminated string (malloc'd), the buffer drained. */
static char *
take(struct evbuffer *buf)
{
	size_t n = evbuffer_get_length(buf);
	char *s = malloc(n + 1);

	cr_assert_not_null(s);
	evbuffer_remove(buf, s, n);
	s[n] = '\0';
	return s;
}

static struct message *
msg_make(const char *id, time_t arrival, const char *from, const char *const *rcpts, size_t n,
         uint64_t size)
{
	struct message *m = message_new();
	size_t i;

	cr_assert_not_null(m);
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->arrival.tv_sec = arrival;
	cr_assert_eq(message_set_from(m, from), 0);
	for (i = 0; i < n; i++)
		cr_assert_eq(message_add_rcpt(m, rcpts[i], 0, NULL), 0);
	m->data_len = size;
	return m;
}

/* ---- parsing ---- */

struct parse_case {
	char line[80];
	enum control_parse_result want;
	enum control_verb verb;
	bool by_domain;
	char id[17];
};

Test(control, parse_table)
{
	static const struct parse_case cases[] = {
		{ "list", CONTROL_PARSE_OK, CONTROL_LIST, false, "" },
		{ "  list\t", CONTROL_PARSE_OK, CONTROL_LIST, false, "" },
		{ "list --by-domain", CONTROL_PARSE_OK, CONTROL_LIST, true, "" },
		{ "list --by-domains", CONTROL_PARSE_USAGE, CONTROL_LIST, false, "" },
		{ "list x y", CONTROL_PARSE_USAGE, CONTROL_LIST, false, "" },
		{ "show " ID_A, CONTROL_PARSE_OK, CONTROL_SHOW, false, ID_A },
		{ "delete " ID_A, CONTROL_PARSE_OK, CONTROL_DELETE, false, ID_A },
		{ "hold   " ID_B, CONTROL_PARSE_OK, CONTROL_HOLD, false, ID_B },
		{ "release " ID_B, CONTROL_PARSE_OK, CONTROL_RELEASE, false, ID_B },
		{ "flush", CONTROL_PARSE_OK, CONTROL_FLUSH, false, "" },
		{ "flush now", CONTROL_PARSE_USAGE, CONTROL_FLUSH, false, "" },
		{ "show", CONTROL_PARSE_USAGE, CONTROL_SHOW, false, "" },
		{ "show " ID_A " " ID_B, CONTROL_PARSE_USAGE, CONTROL_SHOW, false, "" },
		{ "show 0660F8BF21ED0600", CONTROL_PARSE_BAD_ID, CONTROL_SHOW, false, "" },
		{ "show 0660f8bf21ed060", CONTROL_PARSE_BAD_ID, CONTROL_SHOW, false, "" },
		{ "show ../../etc/passwd", CONTROL_PARSE_BAD_ID, CONTROL_SHOW, false, "" },
		{ "LIST", CONTROL_PARSE_UNKNOWN, CONTROL_LIST, false, "" },
		{ "lis", CONTROL_PARSE_UNKNOWN, CONTROL_LIST, false, "" },
		{ "", CONTROL_PARSE_EMPTY, CONTROL_LIST, false, "" },
		{ " \t ", CONTROL_PARSE_EMPTY, CONTROL_LIST, false, "" },
	};
	struct control_request req;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *c = &cases[i];
		enum control_parse_result r = control_parse(c->line, strlen(c->line), &req);

		cr_expect_eq(r, c->want, "'%s': got %d, want %d", c->line, r, c->want);
		if (r != CONTROL_PARSE_OK)
			continue;
		cr_expect_eq(req.verb, c->verb, "'%s'", c->line);
		cr_expect_eq(req.by_domain, c->by_domain, "'%s'", c->line);
		cr_expect_str_eq(req.id, c->id, "'%s'", c->line);
	}
}

Test(control, parse_bounds_and_nul)
{
	char line[CONTROL_MAX_REQUEST + 2];
	struct control_request req;

	memset(line, ' ', sizeof(line));
	memcpy(line, "list", 4);
	cr_expect_eq(control_parse(line, CONTROL_MAX_REQUEST, &req), CONTROL_PARSE_OK);
	cr_expect_eq(control_parse(line, CONTROL_MAX_REQUEST + 1, &req), CONTROL_PARSE_TOO_LONG);
	cr_expect_eq(control_parse("show 0660f8bf\0"
	                           "1ed0600",
	                           21, &req),
	             CONTROL_PARSE_BAD_ID, "a NUL inside the id");
	cr_expect_eq(control_parse("list\0", 5, &req), CONTROL_PARSE_UNKNOWN);
	cr_expect_str_neq(control_parse_error(CONTROL_PARSE_BAD_ID), "");
}

/* ---- the journal ---- */

static void
feed(struct control_journal *j, const char *line)
{
	control_journal_line(j, line, strlen(line));
}

Test(control, journal_lines)
{
	struct control_journal *j = control_journal_new(4);

	cr_assert_not_null(j);
	cr_expect_eq(j->npending, 4);
	feed(j, "0 deferred 100 1 3700");                                  /* an old journal */
	feed(j, "0 deferred 200 2 7400 451 4.4.1 Connection refused (x)"); /* with its reply */
	feed(j, "1 delivered 210 250 2.0.0 Ok: queued as X");
	feed(j, "1 bounced 220 550 too late"); /* the first final line wins */
	feed(j, "2 expired 230");
	feed(j, "3 deferred 240");  /* malformed: no attempts */
	feed(j, "9 delivered 250"); /* no such recipient */
	feed(j, "- warned 260");
	feed(j, "- held 270");
	feed(j, "x y z");

	cr_expect_eq(j->state[0], SCHEDULER_RCPT_PENDING);
	cr_expect_eq(j->attempts[0], 2);
	cr_expect_eq(j->next[0], 7400);
	cr_expect_eq(j->at[0], 200);
	cr_expect_str_eq(j->text[0], "451 4.4.1 Connection refused (x)");
	cr_expect_eq(j->state[1], SCHEDULER_RCPT_DELIVERED);
	cr_expect_eq(j->at[1], 210);
	cr_expect_str_eq(j->text[1], "250 2.0.0 Ok: queued as X");
	cr_expect_eq(j->state[2], SCHEDULER_RCPT_EXPIRED);
	cr_expect_null(j->text[2]);
	cr_expect_eq(j->state[3], SCHEDULER_RCPT_PENDING);
	cr_expect_eq(j->attempts[3], 0);
	cr_expect_eq(j->npending, 2);
	cr_expect(j->warned);
	cr_expect(j->held);
	feed(j, "- released 280");
	cr_expect_not(j->held, "the last of held/released wins");
	feed(j, "- held 290");
	cr_expect(j->held);
	control_journal_free(j);
}

Test(control, summary_from_journal_states)
{
	static const char *const rcpts[] = { "a@far.test", "b@far.test" };
	struct message *m = msg_make(ID_A, 1000, "s@example.org", rcpts, 2, 321);
	struct control_journal *j = control_journal_new(2);
	struct scheduler_msg_summary sum;

	control_summary_from_journal(m, j, 5000, &sum);
	cr_expect_eq(sum.state, SCHEDULER_MSG_ACTIVE, "never tried: due at start");
	cr_expect_null(sum.last_error);
	feed(j, "0 deferred 1100 1 9000 451 first");
	feed(j, "1 deferred 1100 1 8000 451 second");
	control_summary_from_journal(m, j, 5000, &sum);
	cr_expect_eq(sum.state, SCHEDULER_MSG_DEFERRED);
	cr_expect_eq(sum.next_attempt, 9000, "the latest next attempt, as recovery does");
	cr_expect_str_eq(sum.last_error, "451 first");
	cr_expect_eq(sum.npending, 2);
	control_summary_from_journal(m, j, 9500, &sum);
	cr_expect_eq(sum.state, SCHEDULER_MSG_ACTIVE, "past its next attempt");
	feed(j, "- held 1200");
	control_summary_from_journal(m, j, 5000, &sum);
	cr_expect_eq(sum.state, SCHEDULER_MSG_HELD);
	feed(j, "0 delivered 1300");
	control_summary_from_journal(m, j, 5000, &sum);
	cr_expect_eq(sum.npending, 1);
	cr_expect_str_eq(sum.last_error, "451 second", "only pending recipients' errors");
	control_journal_free(j);
	message_free(m);
}

/* ---- display helpers ---- */

Test(control, escape)
{
	char out[64];

	cr_expect_str_eq(control_escape(out, sizeof(out), "plain text", 10), "plain text");
	cr_expect_str_eq(control_escape(out, sizeof(out), "a\r\nb\x1b[2Jc\x7f", 10),
	                 "a\\x0d\\x0ab\\x1b[2Jc\\x7f");
	cr_expect_str_eq(control_escape(out, sizeof(out), "tab\there", 8), "tab\there");
	cr_expect_str_eq(control_escape(out, sizeof(out), "caf\xc3\xa9 \xe2\x82\xac", 9),
	                 "caf\xc3\xa9 \xe2\x82\xac", "valid UTF-8 is kept");
	cr_expect_str_eq(control_escape(out, sizeof(out),
	                                "\xc2\x9b"
	                                "x",
	                                3),
	                 "\\xc2\\x9bx", "a C1 control (CSI) is escaped");
	cr_expect_str_eq(control_escape(out, sizeof(out), "\xe9t\xe9", 3), "\\xe9t\\xe9",
	                 "Latin-1 bytes are escaped");
	cr_expect_str_eq(control_escape(out, sizeof(out), "\xc0\xaf", 2), "\\xc0\\xaf",
	                 "an overlong form is escaped");
	cr_expect_str_eq(control_escape(out, sizeof(out), "\xed\xa0\x80", 3), "\\xed\\xa0\\x80",
	                 "a surrogate is escaped");
	cr_expect_str_eq(control_escape(out, 8, "0123456", 7), "0123456", "exactly fits");
	cr_expect_str_eq(control_escape(out, 8, "01234567", 8), "0123...");
	cr_expect_str_eq(control_escape(out, 8, "\x01\x02\x03", 3), "\\x01...");
	cr_expect_str_eq(control_escape(out, 8, "ab\xe2\x82\xac\xe2\x82\xac", 8), "ab...",
	                 "never cut inside a UTF-8 sequence");
}

Test(control, times_and_ages)
{
	char buf[32];

	cr_expect_str_eq(control_iso_time(buf, sizeof(buf), 1795471335), "2026-11-23T22:02:15Z");
	cr_expect_str_eq(control_iso_time(buf, sizeof(buf), 0), "-");
	cr_expect_str_eq(control_age(buf, sizeof(buf), -5), "0s");
	cr_expect_str_eq(control_age(buf, sizeof(buf), 59), "59s");
	cr_expect_str_eq(control_age(buf, sizeof(buf), 125), "2m");
	cr_expect_str_eq(control_age(buf, sizeof(buf), 3 * 3600 + 5 * 60), "3h05m");
	cr_expect_str_eq(control_age(buf, sizeof(buf), 2 * 86400 + 4 * 3600 + 59), "2d04h");
}

/* ---- list ---- */

Test(control, list_lines_and_total)
{
	static const char *const rcpts[] = { "a@far.test", "b@Other.test" };
	struct evbuffer *buf = evbuffer_new();
	struct control_out o = { .buf = buf, .prefix = " " };
	struct message *m = msg_make(ID_A, 1795471335, "s@example.org", rcpts, 2, 4242);
	static const uint8_t states[2] = { SCHEDULER_RCPT_PENDING, SCHEDULER_RCPT_DELIVERED };
	struct scheduler_msg_summary sum = {
		.msg = m,
		.state = SCHEDULER_MSG_DEFERRED,
		.npending = 1,
		.next_attempt = 1795474935,
		.last_error = "451 4.4.1 Connection refused\r\n(with a line end and a long tail "
		              "that goes past sixty octets)",
		.rcpt_state = states,
	};
	struct control_list *l = control_list_new(&o, false, 1795471400);
	char *text, *line2;

	cr_assert_not_null(l);
	cr_assert_eq(control_list_add(l, &sum), 0);
	sum.state = SCHEDULER_MSG_HELD;
	sum.last_error = NULL;
	cr_assert_eq(control_list_add(l, &sum), 0);
	cr_assert_eq(control_list_end(l), 0);
	text = take(buf);
	cr_expect(strncmp(text, " ID ", 4) == 0, "a header first: %s", text);
	line2 = strchr(text, '\n') + 1;
	cr_expect(strncmp(line2, " " ID_A " ", 18) == 0, "then the message: %s", text);
	cr_expect_not_null(strstr(text, " " ID_A " 2026-11-23T22:02:15Z      4242 <s@example.org>"),
	                   "%s", text);
	cr_expect_not_null(strstr(text, "1/2       deferred 2026-11-23T23:02:15Z 451 4.4.1 "
	                                "Connection refused\\x0d\\x0a(with a"),
	                   "%s", text);
	cr_expect_null(strstr(text, "sixty"), "the error is cut: %s", text);
	cr_expect_not_null(strstr(text, "1/2       held     -                    -\n"), "%s", text);
	cr_expect_not_null(strstr(text, " -- 2 messages, 8484 bytes, 2 recipients pending\n"), "%s",
	                   text);
	free(text);

	l = control_list_new(&o, false, 0);
	cr_assert_eq(control_list_end(l), 0);
	text = take(buf);
	cr_expect_str_eq(text, " queue is empty\n");
	free(text);
	message_free(m);
	evbuffer_free(buf);
}

Test(control, list_by_domain)
{
	static const char *const r1[] = { "a@far.test", "b@FAR.test", "c@near.test" };
	static const char *const r2[] = { "d@far.test", "postmaster" };
	static const char *const r3[] = { "e@near.test" };
	static const uint8_t p3[3] = { 0, 0, 0 }, p2[2] = { 0, 0 }, d1[1] = { 1 };
	char *e1[3] = { "451 old error", NULL, NULL }, *e2[2] = { "451 new error", NULL };
	struct evbuffer *buf = evbuffer_new();
	struct control_out o = { .buf = buf, .prefix = "" };
	struct message *m1 = msg_make(ID_A, 1000, "s@x", r1, 3, 10);
	struct message *m2 = msg_make(ID_B, 4000, "s@x", r2, 2, 10);
	struct message *m3 = msg_make("0660f8bf21f6b900", 500, "s@x", r3, 1, 10);
	struct scheduler_msg_summary s1 = {
		.msg = m1, .npending = 3, .rcpt_state = p3, .rcpt_error = e1
	};
	struct scheduler_msg_summary s2 = {
		.msg = m2, .npending = 2, .rcpt_state = p2, .rcpt_error = e2
	};
	struct scheduler_msg_summary s3 = { .msg = m3, .npending = 0, .rcpt_state = d1 };
	struct control_list *l = control_list_new(&o, true, 7200 + 1000);
	char *text;

	cr_assert_eq(control_list_add(l, &s1), 0);
	cr_assert_eq(control_list_add(l, &s2), 0);
	cr_assert_eq(control_list_add(l, &s3), 0);
	cr_assert_eq(control_list_end(l), 0);
	text = take(buf);
	cr_expect(strncmp(text, "DOMAIN ", 7) == 0, "%s", text);
	/* far.test: messages 1 and 2 (counted once each), 3 recipients, oldest is message 1
	 * (2 h), and the error of the newest message. Then near.test and (local), by name. */
	cr_expect_not_null(strstr(text, "\nfar.test                              2      3   2h00m "
	                                "451 new error\n"
	                                "(local)                               1      1   1h10m -\n"
	                                "near.test                             1      1   2h00m -\n"
	                                "-- 3 domains, 3 messages\n"),
	                   "%s", text);
	free(text);
	message_free(m1);
	message_free(m2);
	message_free(m3);
	evbuffer_free(buf);
}

/* ---- show, from a spool directory ---- */

static char dir[256];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/petrel-test-control-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

static void
write_file(const char *sub, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

/* slots/<slot>: a commit record (state, id, the content's length and checksum, the checksum
 * xor sum_xor), then the content (envelope lines, empty line, data). */
static void
write_slot(const char *slot, char state, const char *id, const char *content, uint64_t sum_xor)
{
	struct spool_record r = { .state = state, .len = strlen(content) };
	struct iovec iov = { (void *)content, strlen(content) };
	char path[512], rec[SPOOL_RECORD_LEN];
	FILE *f;

	snprintf(r.id, sizeof(r.id), "%s", id);
	r.sum = spool_sum_iov(&iov, 1, r.len) ^ sum_xor;
	spool_record_format(rec, &r);
	snprintf(path, sizeof(path), "%s/slots", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/slots/%s", dir, slot);
	cr_assert_not_null(f = fopen(path, "w"));
	cr_assert_eq(fwrite(rec, 1, SPOOL_RECORD_LEN, f), SPOOL_RECORD_LEN);
	cr_assert_eq(fwrite(content, 1, r.len, f), r.len);
	fclose(f);
}

static int
open_sub(const char *sub)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	return open(path, O_RDONLY | O_DIRECTORY);
}

Test(control, show_from_spool, .init = setup, .fini = teardown)
{
	struct evbuffer *buf = evbuffer_new();
	struct control_out o = { .buf = buf, .prefix = "" };
	struct control_show *sh;
	char *text;
	int slotsfd, sfd;

	write_slot("3", SPOOL_SLOT_QUEUED, ID_A,
	           "id " ID_A "\narrival 1795471335.000001\nclient 127.0.0.1\n"
	           "helo client.test\nprotocol ESMTP\nfrom <s@example.org>\nbody 8BITMIME\n"
	           "rcpt notify=SUCCESS,FAILURE orcpt=rfc822;a@far.test <a@far.test>\n"
	           "rcpt <b@far.test>\nrcpt <c@near.test>\n\n"
	           "Received: from client.test\r\n\tby petrel.test; now\r\n"
	           "Subject: hi \x1b[31mred\r\n..hidden: dot\r\n\r\nbody line\r\nSecret: no\r\n",
	           0);
	write_file("state", ID_A,
	           "0 deferred 1795471336 1 1795474936 451 4.4.1 refused\n"
	           "1 delivered 1795471337 250 2.0.0 Ok\n- held 1795471338\n2 bounced 17954");
	slotsfd = open_sub("slots");
	sfd = open_sub("state");
	cr_assert_eq(control_show_load(slotsfd, sfd, ID_A, -1, 1795471400, &sh), 0, "%s",
	             strerror(errno));
	cr_expect_eq(sh->state, SCHEDULER_MSG_HELD);
	cr_expect_eq(sh->j->npending, 2, "the torn last line does not count");
	cr_assert_eq(control_format_show(&o, sh, 1795471400), 0);
	text = take(buf);
	cr_expect_not_null(strstr(text, "id: " ID_A "\narrival: 2026-11-23T22:02:15Z (1m ago)\n"),
	                   "%s", text);
	cr_expect_not_null(strstr(text, "sender: <s@example.org>\n"), "%s", text);
	cr_expect_not_null(strstr(text, "options: body=8BITMIME\n"), "%s", text);
	cr_expect_not_null(strstr(text, "state: held (read from the spool"), "%s", text);
	cr_expect_not_null(strstr(text, "recipients: 2 pending of 3\n"), "%s", text);
	cr_expect_not_null(strstr(text, "recipient <a@far.test> notify=SUCCESS,FAILURE "
	                                "orcpt=rfc822;a@far.test pending attempts=1 next=held "
	                                "error=\"451 4.4.1 refused\"\n"),
	                   "%s", text);
	cr_expect_not_null(strstr(text, "recipient <b@far.test> delivered "
	                                "at=2026-11-23T22:02:17Z reply=\"250 2.0.0 Ok\"\n"),
	                   "%s", text);
	cr_expect_not_null(strstr(text, "recipient <c@near.test> pending attempts=0 next=held\n"),
	                   "%s", text);
	cr_expect_not_null(strstr(text, "\n\nReceived: from client.test\n\tby petrel.test; now\n"
	                                "Subject: hi \\x1b[31mred\n.hidden: dot\n"),
	                   "headers: unstuffed, escaped, CRLF off: %s", text);
	cr_expect_null(strstr(text, "body line"), "the body is not shown: %s", text);
	cr_expect_null(strstr(text, "truncated"), "%s", text);
	free(text);

	/* What the daemon knows wins: the hold is gone, c is being delivered. */
	{
		static const uint8_t st[3] = { 0, 1, 0 };
		char *errs[3] = { "451 4.4.1 newer", NULL, NULL };
		struct scheduler_rcpt_live live[3] = { { 2, 1795479000, false },
			                               { 0, 0, false },
			                               { 0, 0, true } };
		struct scheduler_msg_summary sum = { .msg = sh->msg,
			                             .state = SCHEDULER_MSG_ACTIVE,
			                             .npending = 2,
			                             .rcpt_state = st,
			                             .rcpt_error = errs,
			                             .live = live };

		control_show_live(sh, &sum);
		cr_assert_eq(control_format_show(&o, sh, 1795471400), 0);
		text = take(buf);
		cr_expect_not_null(strstr(text, "state: active\n"), "%s", text);
		cr_expect_not_null(strstr(text, "pending attempts=2 next=2026-11-24T00:10:00Z "
		                                "error=\"451 4.4.1 newer\"\n"),
		                   "%s", text);
		cr_expect_not_null(strstr(text, "<c@near.test> pending attempts=0 next=- "
		                                "delivering\n"),
		                   "%s", text);
		free(text);
	}
	control_show_free(sh);

	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_B, -1, 0, &sh), -1);
	cr_expect_eq(errno, ENOENT);
	write_slot("0", SPOOL_SLOT_QUEUED, ID_B, "id " ID_B "\nfrom <>\n", 0);
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_B, -1, 0, &sh), -1,
	             "malformed: no empty line");
	write_slot("0", SPOOL_SLOT_QUEUED, ID_B,
	           "id " ID_B "\nfrom <>\nrcpt <postmaster>\n\nSubject: torn\r\n", 1);
	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_B, -1, 0, &sh), -1, "torn: wrong checksum");
	cr_expect_eq(errno, ENOENT, "a torn slot was never acknowledged: no such message");
	write_slot("0", SPOOL_SLOT_FREE, ID_B,
	           "id " ID_B "\nfrom <>\nrcpt <postmaster>\n\nSubject: freed\r\n", 0);
	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_B, -1, 0, &sh), -1, "a free slot");
	cr_expect_eq(errno, ENOENT);
	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, "0660F8BF21F6B800", -1, 0, &sh), -1,
	             "not an id");
	cr_expect_eq(errno, EINVAL);

	/* The daemon names the slot: it is read directly, and must hold that very message. */
	cr_assert_eq(control_show_load(slotsfd, sfd, ID_A, 3, 1795471400, &sh), 0, "%s",
	             strerror(errno));
	cr_expect_str_eq(sh->msg->id, ID_A);
	cr_expect_eq(sh->msg->spool_slot, 3);
	control_show_free(sh);
	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_B, 3, 0, &sh), -1, "slots/3 holds ID_A");
	cr_expect_eq(errno, ENOENT);
	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_A, 0, 0, &sh), -1, "slots/0 is free");
	cr_expect_eq(errno, ENOENT);
	errno = 0;
	cr_expect_eq(control_show_load(slotsfd, sfd, ID_A, 77, 0, &sh), -1, "no slots/77");
	cr_expect_eq(errno, ENOENT);
	close(slotsfd);
	close(sfd);
	evbuffer_free(buf);
}

Test(control, show_long_header_section, .init = setup, .fini = teardown)
{
	struct evbuffer *buf = evbuffer_new();
	struct control_out o = { .buf = buf, .prefix = " " };
	struct control_show *sh;
	size_t n = 70000, i;
	char *big = malloc(n + 200), *text;
	int slotsfd;

	cr_assert_not_null(big);
	i = (size_t)snprintf(big, 200,
	                     "id " ID_A "\narrival 1.0\nclient ::1\nhelo h\n"
	                     "protocol SMTP\nfrom <>\nrcpt <postmaster>\n\nX-Long: ");
	memset(big + i, 'x', n);
	big[i + n] = '\0';
	write_slot("0", SPOOL_SLOT_QUEUED, ID_A, big, 0);
	slotsfd = open_sub("slots");
	cr_assert_eq(control_show_load(slotsfd, -1, ID_A, -1, 100, &sh), 0);
	cr_expect(sh->truncated);
	cr_assert_eq(control_format_show(&o, sh, 100), 0);
	text = take(buf);
	cr_expect_not_null(strstr(text, " sender: <>\n"), "the null sender");
	cr_expect_not_null(strstr(text, " [the header section goes on past 65536 bytes]\n"));
	free(text);
	control_show_free(sh);
	close(slotsfd);
	free(big);
	evbuffer_free(buf);
}
