/*
 * message.c - size distributions, prebuilt bodies and header blocks for petrel-bench.
 *
 * Owns only the body bytes it allocates (struct message_body). Knows nothing of sockets:
 * send.c decides which size to use and how (DATA with the stuffed form, BDAT with the raw
 * one) and adds the bytes to its output by reference.
 */
#include "message.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Eight body lines repeat: long, dot-first, empty, medium, lone dot, long, "..", short. */
static const struct {
	size_t len; /* characters before CRLF */
	bool dot;   /* first character is '.' */
} message_pattern[] = {
	{ 78, false }, { 78, true },  { 0, false }, { 60, false },
	{ 1, true },   { 78, false }, { 2, true },  { 45, false },
};

static const char message_filler[] =
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 "
        "the quick brown fox jumps over the lazy dog";

static int
message_size_parse_one(const char *s, size_t len, size_t *out)
{
	uint64_t v = 0, mult = 1;
	size_t i = 0;

	if (len == 0)
		return -1;
	while (i < len && isdigit((unsigned char)s[i])) {
		if (v > UINT64_MAX / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 0)
		return -1;
	if (i < len) {
		if (s[i] == 'k' || s[i] == 'K')
			mult = 1024;
		else if (s[i] == 'm' || s[i] == 'M')
			mult = 1024 * 1024;
		else
			return -1;
		i++;
		/* Accept "kb"/"KiB"-style spellings too. */
		if (i < len && (s[i] == 'i' || s[i] == 'I'))
			i++;
		if (i < len && (s[i] == 'b' || s[i] == 'B'))
			i++;
	}
	if (i != len || v > MESSAGE_BODY_MAX / mult)
		return -1;
	*out = (size_t)(v * mult);
	return 0;
}

int
message_sizes_parse(const char *spec, struct message_sizes *out, char *err, size_t errlen)
{
	const char *p = spec, *end, *colon;
	char item[64];

	memset(out, 0, sizeof(*out));
	if (*spec == '\0') {
		snprintf(err, errlen, "empty size");
		return -1;
	}
	while (*p != '\0') {
		size_t len, size;
		uint64_t weight = 1;

		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		snprintf(item, sizeof(item), "%.*s", (int)(len < 63 ? len : 63), p);
		if (out->count == MESSAGE_SIZES_MAX) {
			snprintf(err, errlen, "more than %d sizes", MESSAGE_SIZES_MAX);
			return -1;
		}
		colon = memchr(p, ':', len);
		if (message_size_parse_one(p, colon ? (size_t)(colon - p) : len, &size) < 0) {
			snprintf(err, errlen,
			         "'%s': expected a size like 1024, 10k or 1m (at most 64m)", item);
			return -1;
		}
		if (size == 1) {
			snprintf(err, errlen,
			         "'%s': a body is whole CRLF lines: 0 or at least 2 bytes", item);
			return -1;
		}
		if (colon != NULL) {
			char *wend;
			const char *w = colon + 1;

			errno = 0;
			weight = strtoull(w, &wend, 10);
			if (errno != 0 || wend != p + len || wend == w ||
			    !isdigit((unsigned char)*w) || weight == 0 || weight > 1000000) {
				snprintf(err, errlen, "'%s': weight must be a number in 1..1000000",
				         item);
				return -1;
			}
		}
		out->size[out->count] = size;
		out->weight[out->count] = weight;
		out->total_weight += weight;
		out->count++;
		if (end == NULL)
			break;
		p = end + 1;
		if (*p == '\0') {
			snprintf(err, errlen, "trailing ','");
			return -1;
		}
	}
	return 0;
}

size_t
message_sizes_pick(const struct message_sizes *sizes, uint64_t random)
{
	uint64_t r = random % sizes->total_weight;
	size_t i;

	for (i = 0; i + 1 < sizes->count; i++) {
		if (r < sizes->weight[i])
			return i;
		r -= sizes->weight[i];
	}
	return sizes->count - 1;
}

/* Writes line number n of len characters at p (no CRLF). */
static void
message_line_fill(char *p, size_t len, bool dot, size_t n)
{
	char tag[32];
	size_t taglen, i;

	taglen = (size_t)snprintf(tag, sizeof(tag), "line %06zu ", n);
	for (i = 0; i < len; i++) {
		if (i < taglen)
			p[i] = tag[i];
		else
			p[i] = message_filler[(i - taglen + n) % (sizeof(message_filler) - 1)];
	}
	if (dot && len > 0) {
		p[0] = '.';
		if (len == 2)
			p[1] = '.';
	}
}

int
message_body_build(struct message_body *body, size_t size)
{
	size_t pos = 0, line = 0, dots = 0, i, o;

	memset(body, 0, sizeof(*body));
	if (size == 1 || size > MESSAGE_BODY_MAX) {
		errno = EINVAL;
		goto fail;
	}
	body->size = size;
	body->raw = malloc(size ? size : 1);
	if (body->raw == NULL)
		goto fail;
	while (pos < size) {
		size_t rem = size - pos;
		size_t want = message_pattern[line % 8].len;
		bool dot = message_pattern[line % 8].dot;

		if (want + 2 > rem)
			want = rem - 2;
		else if (rem - (want + 2) == 1)
			want = want < MESSAGE_LINE_MAX ? want + 1 : want - 1;
		message_line_fill(body->raw + pos, want, dot, line);
		if (want > 0 && body->raw[pos] == '.')
			dots++;
		body->raw[pos + want] = '\r';
		body->raw[pos + want + 1] = '\n';
		pos += want + 2;
		line++;
	}
	body->stuffed_len = size + dots;
	body->stuffed = malloc(body->stuffed_len ? body->stuffed_len : 1);
	if (body->stuffed == NULL)
		goto fail;
	for (i = 0, o = 0; i < size; i++) {
		if (body->raw[i] == '.' && (i == 0 || body->raw[i - 1] == '\n'))
			body->stuffed[o++] = '.';
		body->stuffed[o++] = body->raw[i];
	}
	return 0;
fail:
	message_body_release(body);
	return -1;
}

void
message_body_release(struct message_body *body)
{
	free(body->raw);
	free(body->stuffed);
	memset(body, 0, sizeof(*body));
}

size_t
message_header_format(char *buf, size_t cap, const struct message_header *hdr)
{
	int n;

	n = snprintf(buf, cap,
	             "Message-ID: <%s.%" PRIu64 "@petrel-bench>\r\n"
	             "%s: %s %" PRIu64 " %zu\r\n"
	             "From: <%s>\r\n"
	             "To: <%s>\r\n"
	             "Subject: petrel-bench %s %" PRIu64 "\r\n"
	             "Date: %s\r\n"
	             "\r\n",
	             hdr->run_id, hdr->seq, MESSAGE_MARKER_HEADER, hdr->run_id, hdr->seq,
	             hdr->body_size, hdr->from, hdr->to, hdr->run_id, hdr->seq, hdr->date);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

bool
message_address_valid(const char *s)
{
	size_t len = strlen(s), i;

	if (len == 0 || len > MESSAGE_ADDRESS_MAX)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>')
			return false;
	}
	return true;
}

bool
message_run_id_valid(const char *s)
{
	size_t len = strlen(s), i;

	if (len == 0 || len > MESSAGE_RUN_ID_MAX)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return false;
	}
	return true;
}

int
message_template_parse(const char *tmpl, struct message_template *out, char *err, size_t errlen)
{
	const char *pct = strchr(tmpl, '%');

	memset(out, 0, sizeof(*out));
	if (!message_address_valid(tmpl)) {
		snprintf(err, errlen,
		         "'%s': expected an address of printable characters, no spaces or <>",
		         tmpl);
		return -1;
	}
	if (pct == NULL) {
		snprintf(out->prefix, sizeof(out->prefix), "%s", tmpl);
		return 0;
	}
	if (pct[1] != 'd' || strchr(pct + 1, '%') != NULL) {
		snprintf(err, errlen, "'%s': the only placeholder is a single %%d", tmpl);
		return -1;
	}
	snprintf(out->prefix, sizeof(out->prefix), "%.*s", (int)(pct - tmpl), tmpl);
	snprintf(out->suffix, sizeof(out->suffix), "%s", pct + 2);
	out->numbered = true;
	return 0;
}

size_t
message_template_format(const struct message_template *t, uint64_t n, char *buf, size_t cap)
{
	int len;

	if (t->numbered)
		len = snprintf(buf, cap, "%s%" PRIu64 "%s", t->prefix, n, t->suffix);
	else
		len = snprintf(buf, cap, "%s", t->prefix);
	if (len < 0 || (size_t)len >= cap)
		return 0;
	return (size_t)len;
}
