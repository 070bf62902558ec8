/*
 * test_message.c - Criterion suite for bench/message.c: size specs, weighted picks, the
 * prebuilt bodies (exact size, CRLF lines of at most 78 characters, correct dot-stuffing)
 * and the header block the sink's --check relies on.
 */
#include "../message.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(message_sizes, parses_single_and_weighted)
{
	struct message_sizes s;
	char err[128];

	cr_assert_eq(message_sizes_parse("1024", &s, err, sizeof(err)), 0);
	cr_assert_eq(s.count, 1);
	cr_assert_eq(s.size[0], 1024);
	cr_assert_eq(message_sizes_parse("10k", &s, err, sizeof(err)), 0);
	cr_assert_eq(s.size[0], 10240);
	cr_assert_eq(message_sizes_parse("1m", &s, err, sizeof(err)), 0);
	cr_assert_eq(s.size[0], 1048576);
	cr_assert_eq(message_sizes_parse("1k:70,10k:25,100k:5", &s, err, sizeof(err)), 0);
	cr_assert_eq(s.count, 3);
	cr_assert_eq(s.size[1], 10240);
	cr_assert_eq(s.weight[0], 70);
	cr_assert_eq(s.weight[2], 5);
	cr_assert_eq(s.total_weight, 100);
	cr_assert_eq(message_sizes_parse("0,2", &s, err, sizeof(err)), 0);
	cr_assert_eq(s.weight[0], 1);
}

Test(message_sizes, rejects_bad_specs)
{
	static const char *const bad[] = { "",    "abc", "1",  "1k:0",    "1k:",  ",",  "1k,",
		                           "65m", "1x",  "-5", "1k:70:3", "1k:x", " 1k" };
	struct message_sizes s;
	char err[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(message_sizes_parse(bad[i], &s, err, sizeof(err)), -1, "'%s' accepted",
		             bad[i]);
		cr_assert_neq(err[0], '\0', "no message for '%s'", bad[i]);
	}
}

Test(message_sizes, pick_follows_weights_exactly)
{
	struct message_sizes s;
	uint64_t counts[3] = { 0 }, r;
	char err[128];

	cr_assert_eq(message_sizes_parse("1k:70,10k:25,100k:5", &s, err, sizeof(err)), 0);
	/* Every residue of the total weight once: the counts are the weights. */
	for (r = 0; r < 100 * 1000; r++)
		counts[message_sizes_pick(&s, r)]++;
	cr_assert_eq(counts[0], 70000);
	cr_assert_eq(counts[1], 25000);
	cr_assert_eq(counts[2], 5000);
}

/* Undoes dot-stuffing of a complete body. */
static size_t
unstuff(const char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '.' && (i == 0 || in[i - 1] == '\n') && i + 1 < len &&
		    in[i + 1] == '.')
			i++;
		out[o++] = in[i];
	}
	return o;
}

static void
check_body(size_t size)
{
	struct message_body b;
	size_t i, line_start = 0, dot_lines = 0, lone_dots = 0, o;
	char *back;

	cr_assert_eq(message_body_build(&b, size), 0, "size %zu", size);
	cr_assert_eq(b.size, size);
	for (i = 0; i < size; i++) {
		char c = b.raw[i];

		if (c == '\r') {
			cr_assert(i + 1 < size && b.raw[i + 1] == '\n', "bare CR at %zu (size %zu)",
			          i, size);
			cr_assert(i - line_start <= MESSAGE_LINE_MAX,
			          "line of %zu chars (size %zu)", i - line_start, size);
			if (i > line_start && b.raw[line_start] == '.')
				dot_lines++;
			if (i - line_start == 1 && b.raw[line_start] == '.')
				lone_dots++;
			i++;
			line_start = i + 1;
		} else {
			cr_assert_neq(c, '\n', "bare LF at %zu (size %zu)", i, size);
			cr_assert(c >= ' ' && c < 0x7f, "unprintable byte at %zu", i);
		}
	}
	cr_assert_eq(line_start, size, "body of %zu does not end with CRLF", size);
	cr_assert_eq(b.stuffed_len, size + dot_lines);
	/* The stuffed form never contains the end-of-data sequence. */
	if (b.stuffed_len >= 3)
		cr_assert(memcmp(b.stuffed, ".\r\n", 3) != 0);
	for (i = 0; i + 5 <= b.stuffed_len; i++)
		cr_assert(memcmp(b.stuffed + i, "\r\n.\r\n", 5) != 0, "CRLF.CRLF at %zu", i);
	back = malloc(size + 1);
	o = unstuff(b.stuffed, b.stuffed_len, back);
	cr_assert_eq(o, size);
	cr_assert(memcmp(back, b.raw, size) == 0, "unstuffing does not give the raw body");
	if (size >= 1000) {
		cr_assert(dot_lines > 0, "no line starting with '.' in %zu bytes", size);
		cr_assert(lone_dots > 0, "no lone '.' line in %zu bytes", size);
	}
	free(back);
	message_body_release(&b);
}

Test(message_body, exact_sizes_lines_and_stuffing)
{
	static const size_t sizes[] = { 0,  2,  3,   4,   5,    77,   78,   79,    80,    81,
		                        82, 83, 160, 161, 1000, 1024, 4099, 10240, 102400 };
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_body(sizes[i]);
	for (i = 2; i < 600; i++)
		check_body(i);
}

Test(message_body, rejects_one_byte)
{
	struct message_body b;

	errno = 0;
	cr_assert_eq(message_body_build(&b, 1), -1);
	cr_assert_eq(errno, EINVAL);
	message_body_release(&b);
}

Test(message_header, carries_marker_and_message_id)
{
	struct message_header h = {
		.run_id = "run-7",
		.seq = 42,
		.body_size = 1024,
		.from = "a@example.com",
		.to = "user1@example.com",
		.date = "Mon, 1 Jan 2024 00:00:00 +0000",
	};
	char buf[MESSAGE_HEADER_MAX], small[40];
	size_t n;

	n = message_header_format(buf, sizeof(buf), &h);
	cr_assert_gt(n, 0);
	cr_assert_eq(strlen(buf), n);
	cr_assert_not_null(strstr(buf, "Message-ID: <run-7.42@petrel-bench>\r\n"));
	cr_assert_not_null(strstr(buf, "\r\nX-Petrel-Bench: run-7 42 1024\r\n"));
	cr_assert_not_null(strstr(buf, "\r\nFrom: <a@example.com>\r\n"));
	cr_assert_str_eq(buf + n - 4, "\r\n\r\n");
	cr_assert_null(strstr(buf, "\r\n\r\n\r\n"));
	cr_assert_eq(message_header_format(small, sizeof(small), &h), 0);
}

Test(message_template, numbers_and_validation)
{
	struct message_template t;
	char err[128], buf[64];

	cr_assert_eq(message_template_parse("user%d@localhost", &t, err, sizeof(err)), 0);
	cr_assert_eq(message_template_format(&t, 17, buf, sizeof(buf)), strlen("user17@localhost"));
	cr_assert_str_eq(buf, "user17@localhost");
	cr_assert_eq(message_template_parse("fixed@localhost", &t, err, sizeof(err)), 0);
	message_template_format(&t, 17, buf, sizeof(buf));
	cr_assert_str_eq(buf, "fixed@localhost");
	cr_assert_eq(message_template_parse("u%s@x", &t, err, sizeof(err)), -1);
	cr_assert_eq(message_template_parse("u%d%d@x", &t, err, sizeof(err)), -1);
	cr_assert_eq(message_template_parse("u %d@x", &t, err, sizeof(err)), -1);
	cr_assert_eq(message_template_parse("<u@x>", &t, err, sizeof(err)), -1);
	cr_assert(message_run_id_valid("abc-1.2_3"));
	cr_assert(!message_run_id_valid(""));
	cr_assert(!message_run_id_valid("a b"));
	cr_assert(!message_run_id_valid("0123456789012345678901234567890123"));
}
