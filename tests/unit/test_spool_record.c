/*
 * test_spool_record.c: the commit record of a spool slot file (format, parse, what parse
 * refuses) and the XXH3-64 checksum (one shot over iovecs, streaming, the length limit).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "petrel/message.h"
#include "petrel/spool_record.h"

#define ID "018f3a5c2b7d4e00"

static const char good[] = "petrel-spool 2 Q " ID " 0000000000000400 9c1f0e3a5b7d2c11\n";

/* The record `good` with byte `off` replaced by c. */
static void
mutate(char out[SPOOL_RECORD_LEN], size_t off, char c)
{
	memcpy(out, good, SPOOL_RECORD_LEN);
	out[off] = c;
}

Test(spool_record, good_is_68_bytes)
{
	cr_assert_eq(sizeof(good) - 1, SPOOL_RECORD_LEN);
	cr_assert_eq(SPOOL_RECORD_LEN, 68);
	cr_assert_eq(SPOOL_RECORD_STATE_OFF, 15);
	cr_assert_eq(good[SPOOL_RECORD_STATE_OFF], 'Q');
}

Test(spool_record, format_parse_round_trip)
{
	static const struct spool_record cases[] = {
		{ SPOOL_SLOT_QUEUED, ID, 0x400, 0x9c1f0e3a5b7d2c11ULL },
		{ SPOOL_SLOT_FREE, "0000000000000000", 0, 0 },
		{ SPOOL_SLOT_QUEUED, "ffffffffffffffff", UINT64_MAX, UINT64_MAX },
		{ SPOOL_SLOT_FREE, "0123456789abcdef", 1, 0x8000000000000000ULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[SPOOL_RECORD_LEN + 8];
		struct spool_record r;

		memset(out, '#', sizeof(out));
		spool_record_format(out, &cases[i]);
		cr_assert_eq(out[SPOOL_RECORD_LEN], '#', "case %zu: exactly 68 bytes written", i);
		cr_assert_eq(out[SPOOL_RECORD_LEN - 1], '\n', "case %zu", i);
		cr_assert_eq(memcmp(out, "petrel-spool 2 ", 15), 0, "case %zu", i);
		cr_assert_eq(out[SPOOL_RECORD_STATE_OFF], cases[i].state, "case %zu", i);
		cr_assert_null(memchr(out, '\0', SPOOL_RECORD_LEN), "case %zu: no NUL", i);
		memset(&r, 0x5a, sizeof(r));
		cr_assert_eq(spool_record_parse(out, SPOOL_RECORD_LEN, &r), 0, "case %zu", i);
		cr_assert_eq(r.state, cases[i].state, "case %zu", i);
		cr_assert_str_eq(r.id, cases[i].id, "case %zu", i);
		cr_assert_eq(r.len, cases[i].len, "case %zu", i);
		cr_assert_eq(r.sum, cases[i].sum, "case %zu", i);
	}
}

Test(spool_record, format_is_the_documented_text)
{
	struct spool_record r = { SPOOL_SLOT_QUEUED, ID, 0x400, 0x9c1f0e3a5b7d2c11ULL };
	char out[SPOOL_RECORD_LEN];

	spool_record_format(out, &r);
	cr_assert_eq(memcmp(out, good, SPOOL_RECORD_LEN), 0, "%.68s", out);
}

Test(spool_record, parse_good_and_longer_buffer)
{
	char buf[SPOOL_RECORD_LEN + 32];
	struct spool_record r;

	cr_assert_eq(spool_record_parse(good, SPOOL_RECORD_LEN, &r), 0);
	cr_assert_eq(r.state, SPOOL_SLOT_QUEUED);
	cr_assert_str_eq(r.id, ID);
	cr_assert_eq(r.len, 0x400);
	cr_assert_eq(r.sum, 0x9c1f0e3a5b7d2c11ULL);

	/* the envelope follows in a real file: only the first 68 bytes count */
	snprintf(buf, sizeof(buf), "%sid %s\n", good, ID);
	cr_assert_eq(spool_record_parse(buf, strlen(buf), &r), 0);
	cr_assert_str_eq(r.id, ID);

	/* removing a message is one 'F' over the state byte */
	mutate(buf, SPOOL_RECORD_STATE_OFF, 'F');
	cr_assert_eq(spool_record_parse(buf, SPOOL_RECORD_LEN, &r), 0);
	cr_assert_eq(r.state, SPOOL_SLOT_FREE);
	cr_assert_str_eq(r.id, ID);
}

static void
expect_refused(const char *what, const char *buf, size_t n)
{
	struct spool_record r;

	memset(&r, 0x5a, sizeof(r));
	cr_expect_eq(spool_record_parse(buf, n, &r), -1, "%s", what);
}

Test(spool_record, parse_refuses)
{
	char buf[SPOOL_RECORD_LEN + 1];
	size_t i;

	memset(buf, 0, sizeof(buf));
	expect_refused("zeros (a new file's hole)", buf, SPOOL_RECORD_LEN);

	memcpy(buf, good, SPOOL_RECORD_LEN);
	buf[13] = '1';
	expect_refused("version 1", buf, SPOOL_RECORD_LEN);
	expect_refused("another format", "petrel-spool 1\nid " ID "\n", 34);
	mutate(buf, 0, 'P');
	expect_refused("magic: case", buf, SPOOL_RECORD_LEN);

	mutate(buf, SPOOL_RECORD_STATE_OFF, 'X');
	expect_refused("unknown state", buf, SPOOL_RECORD_LEN);
	mutate(buf, SPOOL_RECORD_STATE_OFF, 'q');
	expect_refused("state: lowercase q", buf, SPOOL_RECORD_LEN);
	mutate(buf, SPOOL_RECORD_STATE_OFF, '\0');
	expect_refused("state: NUL (torn)", buf, SPOOL_RECORD_LEN);

	mutate(buf, 17, 'A');
	expect_refused("id: uppercase hex", buf, SPOOL_RECORD_LEN);
	mutate(buf, 17 + 5, 'g');
	expect_refused("id: not hex", buf, SPOOL_RECORD_LEN);
	expect_refused("id: 15 digits",
	               "petrel-spool 2 Q 018f3a5c2b7d4e0 0000000000000400 9c1f0e3a5b7d2c11\n\n",
	               SPOOL_RECORD_LEN);
	expect_refused("id: 17 digits",
	               "petrel-spool 2 Q 018f3a5c2b7d4e000 000000000000400 9c1f0e3a5b7d2c11\n",
	               SPOOL_RECORD_LEN);

	mutate(buf, 34 + 3, 'x');
	expect_refused("len: not hex", buf, SPOOL_RECORD_LEN);
	mutate(buf, 34, 'A');
	expect_refused("len: uppercase hex", buf, SPOOL_RECORD_LEN);
	mutate(buf, 34 + 15, ' ');
	expect_refused("len: 15 digits", buf, SPOOL_RECORD_LEN);
	mutate(buf, 51 + 15, 'G');
	expect_refused("sum: not hex", buf, SPOOL_RECORD_LEN);
	mutate(buf, 51, '-');
	expect_refused("sum: a sign", buf, SPOOL_RECORD_LEN);

	mutate(buf, SPOOL_RECORD_LEN - 1, ' ');
	expect_refused("no newline at the end", buf, SPOOL_RECORD_LEN);
	mutate(buf, SPOOL_RECORD_LEN - 1, '\0');
	expect_refused("torn: NUL instead of the newline", buf, SPOOL_RECORD_LEN);
	mutate(buf, 16, '_');
	expect_refused("separator after the state", buf, SPOOL_RECORD_LEN);
	mutate(buf, 33, '_');
	expect_refused("separator after the id", buf, SPOOL_RECORD_LEN);
	mutate(buf, 50, '_');
	expect_refused("separator after the len", buf, SPOOL_RECORD_LEN);

	for (i = 0; i < SPOOL_RECORD_LEN; i++) {
		char what[64];

		snprintf(what, sizeof(what), "short buffer: %zu bytes", i);
		expect_refused(what, good, i);
	}
}

Test(spool_record, parse_refused_leaves_no_id)
{
	char buf[SPOOL_RECORD_LEN];
	struct spool_record r;

	mutate(buf, 34, 'z');
	memset(&r, 0x5a, sizeof(r));
	cr_assert_eq(spool_record_parse(buf, SPOOL_RECORD_LEN, &r), -1);
	cr_assert_eq(r.state, 0, "no state from a refused record");
	cr_assert_eq(r.id[0], '\0');
}

/* ---- the checksum ---- */

static unsigned char *
pattern(size_t n)
{
	unsigned char *p = malloc(n ? n : 1);
	uint32_t x = 2463534242u;
	size_t i;

	cr_assert_not_null(p);
	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

static uint64_t
streamed(const unsigned char *p, size_t n, size_t step)
{
	struct spool_sum *s = spool_sum_new();
	uint64_t d;
	size_t i;

	cr_assert_not_null(s);
	for (i = 0; i < n; i += step)
		spool_sum_update(s, p + i, n - i < step ? n - i : step);
	d = spool_sum_digest(s);
	cr_assert_eq(spool_sum_digest(s), d, "digest does not change the state");
	spool_sum_free(s);
	return d;
}

Test(spool_record, sum_iov_equals_one_shot_and_streaming)
{
	static const size_t sizes[] = { 0, 1, 3, 16, 17, 128, 129, 240, 241, 1000, 4096, 70001 };
	size_t k;

	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k], a = n / 3, b = n / 2;
		unsigned char *p = pattern(n);
		struct iovec one = { p, n };
		/* split in uneven pieces, an empty one among them */
		struct iovec iov[4] = {
			{ p, a }, { p + a, 0 }, { p + a, b - a }, { p + b, n - b }
		};
		uint64_t whole = spool_sum_iov(&one, 1, n);

		cr_assert_eq(spool_sum_iov(iov, 4, n), whole, "%zu bytes", n);
		cr_assert_eq(streamed(p, n, n ? n : 1), whole, "%zu bytes, one update", n);
		cr_assert_eq(streamed(p, n, 1), whole, "%zu bytes, byte by byte", n);
		cr_assert_eq(streamed(p, n, 7), whole, "%zu bytes, by 7", n);
		cr_assert_eq(streamed(p, n, 4096), whole, "%zu bytes, by 4096", n);
		free(p);
	}
}

Test(spool_record, sum_is_xxh3_64)
{
	struct iovec iov = { (void *)"", 0 };

	/* XXH3_64bits of nothing, seed 0 (the reference value) */
	cr_assert_eq(spool_sum_iov(&iov, 1, 0), 0x2d06800538d394c2ULL);
}

Test(spool_record, sum_len_limits_what_is_hashed)
{
	size_t n = 5000, lim[] = { 0, 1, 100, 2500, 2501, 4999 };
	unsigned char *p = pattern(n);
	struct iovec iov[3] = { { p, 1000 }, { p + 1000, 2000 }, { p + 3000, 2000 } };
	size_t k;

	for (k = 0; k < sizeof(lim) / sizeof(lim[0]); k++) {
		struct iovec one = { p, n };
		uint64_t want = streamed(p, lim[k], 1000);

		cr_assert_eq(spool_sum_iov(iov, 3, lim[k]), want, "len %zu over 3 iovecs", lim[k]);
		cr_assert_eq(spool_sum_iov(&one, 1, lim[k]), want, "len %zu over 1 iovec", lim[k]);
		if (lim[k] > 0 && lim[k] < n)
			cr_assert_neq(want, streamed(p, n, 1000), "len %zu", lim[k]);
	}
	/* the bytes past len do not matter */
	p[4000] ^= 1;
	cr_assert_eq(spool_sum_iov(iov, 3, 3000), streamed(p, 3000, 1000));
	cr_assert_neq(spool_sum_iov(iov, 3, 5000), streamed(p, 3000, 1000));
	/* and those before it do */
	{
		uint64_t before = spool_sum_iov(iov, 3, 3000);

		p[2999] ^= 1;
		cr_assert_neq(spool_sum_iov(iov, 3, 3000), before);
	}
	free(p);
}

Test(spool_record, sum_of_a_one_byte_change_differs)
{
	unsigned char *p = pattern(512);
	struct iovec iov = { p, 512 };
	uint64_t a = spool_sum_iov(&iov, 1, 512);

	p[511] ^= 0x80;
	cr_assert_neq(spool_sum_iov(&iov, 1, 512), a);
	free(p);
}
