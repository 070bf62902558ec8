/*
 * smtp/body.c: incremental DATA/BDAT scanner (see body.h for the rules).
 *
 * It looks at each line once: memchr finds the LF, a second memchr counts the CRs before it.
 * A line is judged at its LF: CRLF-terminated or not, CRs elsewhere in it, its length, and
 * whether it is the lone "." that ends DATA. The state between calls is the current line's
 * length, CR count and first/last octets, so any split of the input gives the same answer.
 */
#include "petrel/smtp/body.h"

#include <string.h>
#include <strings.h>

void
body_scan_init(struct body_scan *s, bool bdat)
{
	memset(s, 0, sizeof(*s));
	s->bdat = bdat;
	s->prev_crlf = true;
}

size_t
body_scan_pending_dot(const struct body_scan *s)
{
	if (s->bdat || !s->prev_crlf || s->line_len == 0 || s->first != '.')
		return 0;
	if (s->line_len == 1 || (s->line_len == 2 && s->last == '\r'))
		return (size_t)s->line_len;
	return 0;
}

bool
body_scan_mid_line(const struct body_scan *s)
{
	return s->line_len > 0;
}

/* Judge the line that ends at an LF. Returns the event it makes, if any. */
static enum body_scan_result
body_scan_eol(struct body_scan *s)
{
	bool crlf = s->line_len > 0 && s->last == '\r';
	uint64_t content = s->line_len - (crlf ? 1 : 0);
	unsigned stray_cr = s->crs - (crlf ? 1 : 0);
	bool dot = content == 1 && s->first == '.';
	enum body_scan_result res = BODY_SCAN_MORE;

	if (stray_cr > 0)
		s->errors |= BODY_ERR_BARE_CR;
	if (!crlf)
		s->errors |= BODY_ERR_BARE_LF;
	if (content + 2 > BODY_TEXT_LINE_MAX)
		s->errors |= BODY_ERR_LINE_TOO_LONG;
	if (!s->bdat && s->first == '.' && content > 1)
		s->stuffed++;
	if (!s->in_body) {
		if (content == 0)
			s->in_body = true;
		else if (content >= sizeof(s->head) &&
		         strncasecmp(s->head, "Received:", sizeof(s->head)) == 0)
			s->received++;
	}
	if (!s->bdat && dot && stray_cr == 0) {
		if (!crlf)
			res = BODY_SCAN_BARE_DOT;
		else if (s->prev_crlf)
			res = BODY_SCAN_END;
	}
	s->prev_crlf = crlf;
	s->line_len = 0;
	s->crs = 0;
	s->dot_checked = false;
	return res;
}

size_t
body_scan_feed(struct body_scan *s, const char *p, size_t n, enum body_scan_result *res)
{
	size_t i = 0;

	*res = BODY_SCAN_MORE;
	while (i < n) {
		const char *lf, *q;
		size_t end;

		if (s->bdat && s->line_len == 0 && p[i] == '.' && !s->dot_checked) {
			/* Stop before the '.', so the caller can insert the stuffing dot. */
			s->dot_checked = true;
			s->total += i;
			*res = BODY_SCAN_DOT_LINE;
			return i;
		}
		lf = memchr(p + i, '\n', n - i);
		end = lf ? (size_t)(lf - p) : n;
		if (end > i) {
			for (q = p + i; (q = memchr(q, '\r', (size_t)(p + end - q))) != NULL; q++)
				s->crs++;
			if (s->line_len == 0)
				s->first = p[i];
			if (!s->in_body && s->line_len < sizeof(s->head)) {
				size_t k = sizeof(s->head) - (size_t)s->line_len;
				memcpy(s->head + s->line_len, p + i, k < end - i ? k : end - i);
			}
			s->last = p[end - 1];
			s->line_len += end - i;
		}
		if (lf == NULL) {
			s->total += n;
			return n;
		}
		i = end + 1;
		*res = body_scan_eol(s);
		if (*res != BODY_SCAN_MORE) {
			s->total += i;
			return i;
		}
	}
	s->total += n;
	return n;
}
