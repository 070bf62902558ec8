/*
 * bounce.c: delivery status notifications (DSNs): an RFC 6522 multipart/report message that
 * carries an RFC 3464 message/delivery-status report.
 *
 * One concept: turn "this is what happened to these recipients of that message" into the bytes
 * of a new message, in petrel's spool form (CRLF lines, dot-stuffed). It keeps nothing past the
 * call and does no I/O; when to send a DSN is the queue's business (bounce_wanted() answers the
 * RFC 3461 NOTIFY part of that question). Start reading at bounce_build().
 *
 * The message:
 *   header      From: Mail Delivery System <MAILER-DAEMON@host>, To:, Subject:, Date: (RFC 5322
 *               §3.3, UTC), Message-ID:, Auto-Submitted: auto-replied (RFC 3834 §5),
 *               MIME-Version:, Content-Type: multipart/report; report-type=delivery-status
 *               (RFC 6522 §3), X-Petrel-Queue-ID: (the original's queue id)
 *   part 1      text/plain; charset=us-ascii: what happened, one paragraph per recipient
 *   part 2      message/delivery-status (RFC 3464 §2): the per-message fields, then one group of
 *               per-recipient fields per recipient, each group after an empty line
 *   part 3      message/rfc822 (the whole original) or text/rfc822-headers (RFC 6522 §4: its
 *               header section); absent when there is no original
 *
 * Decisions:
 * - Everything generated from inputs is cleaned to printable US-ASCII on one line (white space
 *   runs become one SP, other controls and 8-bit octets '?') and bounded, so no input can inject
 *   a header line, a bare CR or LF, or a line over 998 octets (RFC 5322 §2.1.1). Long values are
 *   folded at spaces in part 2 (RFC 5322 §2.2.3) and word-wrapped in part 1; a run of more than
 *   997 octets without a space is split, which adds a space to that value. Every generated line
 *   goes through bounce_line(), which stuffs a leading '.' (the output is in spool form).
 * - The original comes in spool form and is embedded without unstuffing: its lines are stuffed
 *   already and stay so. A missing final CRLF is added.
 * - RET (RFC 3461 §4.3): FULL asks for the whole message in a DSN that reports a failure; a DSN
 *   without a failed recipient, RET=HDRS and no RET at all return the header section only. A
 *   message/rfc822 body part is a complete message (RFC 2046 §5.2.1), and text/rfc822-headers
 *   exists for "headers only" (RFC 6522 §4, from RFC 1892 §2: "not the complete message and
 *   should not be returned as a message/rfc822"). So an original larger than max_orig_len, or
 *   one that is not clean text (a line over 998 octets, a bare CR or LF, a NUL: BINARYMIME),
 *   is returned as its header section rather than cut into a broken message/rfc822, and part 1
 *   says why. The header section itself is cut at a line boundary when it exceeds
 *   max_orig_len; a dirty header line is cleaned (CR, LF, NUL become SP) and cut at 998 octets.
 * - Original-Envelope-Id (RFC 3464 §2.2.1) and Original-Recipient (RFC 3464 §2.3.1) carry the
 *   xtext-decoded ENVID and ORCPT: xtext is only the SMTP transport form of a value that RFC
 *   3461 (§4.2 ORCPT, §4.4 ENVID) requires to be printable US-ASCII; the DSN fields are *text.
 *   A value that does not decode, or decodes to anything but printable ASCII ("+0D+0A" would
 *   inject a field), is left out: both fields are optional.
 * - Diagnostic-Code (RFC 3464 §2.3.6) is "smtp; <reply>" when the text starts like an SMTP
 *   reply (three digits, 2xx to 5xx); other text (a local error such as a timeout) is given as
 *   "X-Petrel; <text>", since the diagnostic-type names the kind of code.
 * - Status (RFC 3464 §2.3.4, RFC 3463): the caller's, if it is class.subject.detail with class
 *   2, 4 or 5; otherwise 5.0.0 / 4.0.0 / 2.0.0 after the action.
 * - Message-ID: <orig_id.now.kind.nonce@domain>. orig_id is unique per original on this host,
 *   now and the kind (failed, delayed, success) tell the DSNs of one original apart (warnings,
 *   then the failure), and the 64-bit nonce (random unless the caller sets one) tells apart two
 *   DSNs of the same kind in the same second (recipients failing in two deliveries) and
 *   survives restarts.
 * - Boundary: "=_petrel_<orig_id>_<nonce>" (bchars only, under 70 octets: RFC 2046 §5.1.1;
 *   "=_" cannot occur in quoted-printable text). It is searched for in every byte that goes
 *   into the parts (the embedded original, parts 1 and 2) and, while found, a counter is
 *   appended.
 */
#include "petrel/bounce.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include <event2/buffer.h>

/* RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6: at most 998 octets before the CRLF. */
#define BOUNCE_LINE_MAX 998
/* Generated text per line: room for a stuffing '.' in front. */
#define BOUNCE_TEXT_MAX (BOUNCE_LINE_MAX - 1)
/* Wrap width for part 1 and fold width for part 2 (RFC 5322 §2.1.1 SHOULD: 78). */
#define BOUNCE_WRAP 76
#define BOUNCE_FOLD 78
/* Bounds for cleaned copies of the inputs. */
#define BOUNCE_DIAG_MAX  2000
#define BOUNCE_ADDR_MAX  (SMTP_PATH_MAX + 64)
#define BOUNCE_ORCPT_MAX (SMTP_ORCPT_MAX + 64)
#define BOUNCE_HOST_MAX  256
#define BOUNCE_ID_MAX    24
#define BOUNCE_DATE_MAX  64
#define BOUNCE_PARA_MAX  4096
/* RFC 2046 §5.1.1: a boundary is 1 to 70 characters. */
#define BOUNCE_BOUNDARY_MAX   70
#define BOUNCE_BOUNDARY_TRIES 1000

/* What one action means in each part. */
struct bounce_action_info {
	const char *name;   /* Action: value (RFC 3464 §2.3.3) */
	const char *status; /* Status: when the caller gave none or a malformed one */
	const char *text;   /* part 1 */
};

static const struct bounce_action_info bounce_actions[] = {
	[BOUNCE_FAILED] = { "failed", "5.0.0", "delivery failed" },
	[BOUNCE_DELAYED] = { "delayed", "4.0.0", "not delivered yet, still trying" },
	[BOUNCE_DELIVERED] = { "delivered", "2.0.0", "delivered" },
	[BOUNCE_RELAYED] = { "relayed", "2.0.0",
	                     "relayed to a server that does not send delivery notifications" },
	[BOUNCE_EXPANDED] = { "expanded", "2.0.0", "expanded to other recipients" },
};

#define BOUNCE_NACTIONS (sizeof(bounce_actions) / sizeof(bounce_actions[0]))

/* What the DSN as a whole reports: a failure wins over a delay, a delay over a success. */
enum bounce_kind {
	BOUNCE_KIND_FAILURE,
	BOUNCE_KIND_DELAY,
	BOUNCE_KIND_SUCCESS,
};

struct bounce_kind_info {
	const char *tag; /* in the Message-ID */
	const char *subject;
	const char *intro; /* part 1, before the recipients */
};

static const struct bounce_kind_info bounce_kinds[] = {
	[BOUNCE_KIND_FAILURE] = { "failed", "Undelivered Mail Returned to Sender",
	                          "Your message could not be delivered to one or more recipients. "
	                          "The mail system has given up on them; the reasons are below." },
	[BOUNCE_KIND_DELAY] = { "delayed", "Delayed Mail (still being retried)",
	                        "Your message has not been delivered yet to the recipients below. "
	                        "This is only a warning: the mail system keeps trying, and you do "
	                        "not need to send the message again. You will be told if it "
	                        "finally fails." },
	[BOUNCE_KIND_SUCCESS] = { "success", "Successful Mail Delivery Report",
	                          "This is the delivery report you asked for: your message "
	                          "reached the recipients below." },
};

/* What part 3 holds, and why. */
enum bounce_return {
	BOUNCE_RETURN_NONE,     /* no original: no part 3 */
	BOUNCE_RETURN_FULL,     /* message/rfc822, the whole original */
	BOUNCE_RETURN_HEADERS,  /* text/rfc822-headers: RET=HDRS, no RET, or no failure */
	BOUNCE_RETURN_TOO_BIG,  /* text/rfc822-headers: RET=FULL, larger than max_orig_len */
	BOUNCE_RETURN_NOT_TEXT, /* text/rfc822-headers: RET=FULL, not clean text */
};

struct bounce_part3 {
	enum bounce_return how;
	const char *p; /* the bytes to embed: a prefix of the original */
	size_t len;
	bool cut;      /* the header section was cut to max_orig_len */
	bool eightbit; /* p holds octets >= 0x80 */
};

/* Inputs, cleaned once for the whole message. */
struct bounce_ctx {
	const struct bounce_info *info;
	enum bounce_kind kind;
	struct bounce_part3 part3;
	uint64_t nonce;
	char host[BOUNCE_HOST_MAX];      /* reporting MTA */
	char id_domain[BOUNCE_HOST_MAX]; /* Message-ID domain */
	char id[BOUNCE_ID_MAX + 1];      /* queue id of the original */
	char boundary[BOUNCE_BOUNDARY_MAX + 1];
};

/* Cleaning and checking input values. */
static size_t bounce_clean(char *dst, size_t dstsize, const char *src);
static void bounce_token(char *dst, size_t dstsize, const char *src, const char *extra);
static bool bounce_is_alnum(unsigned char c);
static bool bounce_printable(const char *s, size_t len);
static bool bounce_status_valid(const char *s);
static const char *bounce_status(const struct bounce_rcpt *r);
static bool bounce_orcpt(char *dst, size_t dstsize, const char *orcpt);
static bool bounce_envid(char *dst, size_t dstsize, const char *envid);
static bool bounce_is_smtp_reply(const char *s);
static void bounce_date(char buf[BOUNCE_DATE_MAX], time_t t);
static uint64_t bounce_nonce(void);
static bool bounce_info_ok(const struct bounce_info *info);

/* The original message. */
static bool bounce_text_clean(const char *p, size_t len, bool *eightbit);
static size_t bounce_header_len(const char *p, size_t len);
static size_t bounce_cut(const char *p, size_t len, size_t max);
static void bounce_plan_part3(const struct bounce_info *info, bool failure, struct bounce_part3 *r);
static int bounce_embed(struct evbuffer *b, const char *p, size_t len);
static int bounce_embed_dirty_line(struct evbuffer *b, const char *p, size_t len);

/* Output lines. */
static int bounce_line(struct evbuffer *b, const char *s, size_t len);
static int bounce_printf(struct evbuffer *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void bounce_cat(char *buf, size_t size, size_t *n, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int bounce_wrap(struct evbuffer *b, const char *first, const char *text, size_t width,
                       bool fold);

/* The parts and the header. */
static int bounce_human(struct evbuffer *b, const struct bounce_ctx *c);
static int bounce_human_rcpt(struct evbuffer *b, const struct bounce_rcpt *r);
static int bounce_report(struct evbuffer *b, const struct bounce_ctx *c);
static int bounce_report_rcpt(struct evbuffer *b, const struct bounce_rcpt *r);
static bool bounce_occurs(const char *s, const struct bounce_part3 *r, struct evbuffer *human,
                          struct evbuffer *report);
static int bounce_choose_boundary(struct bounce_ctx *c, struct evbuffer *human,
                                  struct evbuffer *report);
static int bounce_header(struct evbuffer *b, const struct bounce_ctx *c);
static int bounce_part_start(struct evbuffer *b, const struct bounce_ctx *c, const char *type,
                             const char *description, bool eightbit);

bool
bounce_wanted(const char *orig_sender, unsigned notify, enum bounce_action action)
{
	unsigned bit;

	/* RFC 5321 §4.5.5 / RFC 3461 §5.2.7: never a notification to the null reverse path. */
	if (orig_sender == NULL || orig_sender[0] == '\0' || strcmp(orig_sender, "<>") == 0)
		return false;
	if (notify & SMTP_DSN_NOTIFY_NEVER)
		return false;
	switch (action) {
	case BOUNCE_FAILED:
		bit = SMTP_DSN_NOTIFY_FAILURE;
		break;
	case BOUNCE_DELAYED:
		bit = SMTP_DSN_NOTIFY_DELAY;
		break;
	case BOUNCE_DELIVERED:
	case BOUNCE_RELAYED:
	case BOUNCE_EXPANDED:
		bit = SMTP_DSN_NOTIFY_SUCCESS;
		break;
	default:
		return false;
	}
	/* RFC 3461 §4.1: without NOTIFY, behave as NOTIFY=FAILURE,DELAY. */
	if (notify == SMTP_DSN_NOTIFY_UNSPEC)
		return action == BOUNCE_FAILED || action == BOUNCE_DELAYED;
	return (notify & bit) != 0;
}

int
bounce_build(struct evbuffer *out, const struct bounce_info *info)
{
	struct evbuffer *msg = NULL, *human = NULL, *report = NULL;
	struct bounce_ctx c;
	bool failure = false, delay = false;
	size_t i;
	int rc = -1;
	int err = ENOMEM;

	if (out == NULL || !bounce_info_ok(info)) {
		errno = EINVAL;
		return -1;
	}
	memset(&c, 0, sizeof(c));
	c.info = info;
	for (i = 0; i < info->nrcpts; i++) {
		failure |= info->rcpts[i].action == BOUNCE_FAILED;
		delay |= info->rcpts[i].action == BOUNCE_DELAYED;
	}
	c.kind = failure ? BOUNCE_KIND_FAILURE : delay ? BOUNCE_KIND_DELAY : BOUNCE_KIND_SUCCESS;
	c.nonce = info->nonce != 0 ? info->nonce : bounce_nonce();
	bounce_token(c.host, sizeof(c.host), info->reporting_mta, "-._:[]");
	bounce_token(c.id_domain, sizeof(c.id_domain),
	             info->message_id_domain != NULL && info->message_id_domain[0] != '\0'
	                     ? info->message_id_domain
	                     : info->reporting_mta,
	             "-._:[]");
	bounce_token(c.id, sizeof(c.id), info->orig_id, "-");
	if (c.id[0] == '\0')
		snprintf(c.id, sizeof(c.id), "none");
	bounce_plan_part3(info, failure, &c.part3);

	if ((human = evbuffer_new()) == NULL || (report = evbuffer_new()) == NULL ||
	    (msg = evbuffer_new()) == NULL)
		goto fail;
	/* Parts 1 and 2 first: the boundary must not occur in them either. */
	if (bounce_human(human, &c) < 0 || bounce_report(report, &c) < 0)
		goto fail;
	if (bounce_choose_boundary(&c, human, report) < 0) {
		err = errno;
		goto fail;
	}
	if (bounce_header(msg, &c) < 0)
		goto fail;
	if (bounce_part_start(msg, &c, "text/plain; charset=us-ascii", "Notification", false) < 0 ||
	    evbuffer_add_buffer(msg, human) < 0)
		goto fail;
	if (bounce_part_start(msg, &c, "message/delivery-status", "Delivery report", false) < 0 ||
	    evbuffer_add_buffer(msg, report) < 0)
		goto fail;
	if (c.part3.how != BOUNCE_RETURN_NONE) {
		bool full = c.part3.how == BOUNCE_RETURN_FULL;

		if (bounce_part_start(msg, &c, full ? "message/rfc822" : "text/rfc822-headers",
		                      full ? "Undelivered message" : "Message header section",
		                      c.part3.eightbit) < 0 ||
		    bounce_embed(msg, c.part3.p, c.part3.len) < 0)
			goto fail;
	}
	/* The close delimiter; its leading CRLF follows the last part's own final CRLF. */
	if (evbuffer_add_printf(msg, "\r\n--%s--\r\n", c.boundary) < 0)
		goto fail;
	if (evbuffer_add_buffer(out, msg) < 0)
		goto fail;
	rc = 0;
fail:
	evbuffer_free(msg);
	evbuffer_free(report);
	evbuffer_free(human);
	if (rc < 0)
		errno = err;
	return rc;
}

/*
 * Copy src into dst (NUL-terminated, at most dstsize - 1 octets) as printable US-ASCII on one
 * line: runs of SP, HT, CR and LF become one SP, other controls and 8-bit octets '?', leading
 * and trailing white space goes. NULL is "". Returns the length.
 */
static size_t
bounce_clean(char *dst, size_t dstsize, const char *src)
{
	const unsigned char *s = (const unsigned char *)(src != NULL ? src : "");
	bool space = false;
	size_t n = 0;

	for (; *s != '\0' && n + 1 < dstsize; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') {
			space = n > 0;
			continue;
		}
		if (space) {
			if (n + 2 >= dstsize)
				break;
			dst[n++] = ' ';
			space = false;
		}
		dst[n++] = (*s > ' ' && *s < 0x7f) ? (char)*s : '?';
	}
	dst[n] = '\0';
	return n;
}

/* Copy src as a token: letters, digits and the octets in extra stay, anything else is '-'. */
static void
bounce_token(char *dst, size_t dstsize, const char *src, const char *extra)
{
	const unsigned char *s = (const unsigned char *)(src != NULL ? src : "");
	size_t n = 0;

	for (; *s != '\0' && n + 1 < dstsize; s++)
		dst[n++] = (bounce_is_alnum(*s) || strchr(extra, *s) != NULL) ? (char)*s : '-';
	dst[n] = '\0';
}

/* ASCII only, whatever the locale. */
static bool
bounce_is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
bounce_printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < ' ' || (unsigned char)s[i] > '~')
			return false;
	return true;
}

/* RFC 3463 §2: class "." subject "." detail, class 2, 4 or 5, 1 to 3 digits each after. */
static bool
bounce_status_valid(const char *s)
{
	int part;
	size_t d;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (part = 0; part < 2; part++) {
		for (d = 0; d < 3 && s[d] >= '0' && s[d] <= '9'; d++)
			;
		if (d == 0)
			return false;
		s += d;
		if (part == 0) {
			if (*s != '.')
				return false;
			s++;
		}
	}
	return *s == '\0';
}

static const char *
bounce_status(const struct bounce_rcpt *r)
{
	return bounce_status_valid(r->status) ? r->status : bounce_actions[r->action].status;
}

/*
 * ORCPT as received ("rfc822;a+2Bb@example.org", RFC 3461 §4.2) to the Original-Recipient
 * value ("rfc822;a+b@example.org", RFC 3464 §2.3.1): the address type as it is, the address
 * xtext-decoded. false (leave the field out) if it is malformed or not printable ASCII.
 */
static bool
bounce_orcpt(char *dst, size_t dstsize, const char *orcpt)
{
	char addr[SMTP_ORCPT_MAX + 1];
	const char *semi;
	size_t tlen, i;
	long alen;
	int n;

	if (orcpt == NULL || (semi = strchr(orcpt, ';')) == NULL)
		return false;
	tlen = (size_t)(semi - orcpt);
	if (tlen == 0 || tlen > 32)
		return false;
	for (i = 0; i < tlen; i++)
		if (!bounce_is_alnum((unsigned char)orcpt[i]) && orcpt[i] != '-')
			return false;
	alen = smtp_xtext_decode(semi + 1, strlen(semi + 1), addr, sizeof(addr));
	if (alen <= 0 || !bounce_printable(addr, (size_t)alen))
		return false;
	n = snprintf(dst, dstsize, "%.*s;%s", (int)tlen, orcpt, addr);
	return n > 0 && (size_t)n < dstsize;
}

/* ENVID (xtext, RFC 3461 §4.4) to the Original-Envelope-Id value; false to leave it out. */
static bool
bounce_envid(char *dst, size_t dstsize, const char *envid)
{
	long n;

	if (envid == NULL || envid[0] == '\0')
		return false;
	n = smtp_xtext_decode(envid, strlen(envid), dst, dstsize);
	return n > 0 && bounce_printable(dst, (size_t)n);
}

/* "550 ...", "421-...", "250": an SMTP reply (RFC 5321 §4.2). */
static bool
bounce_is_smtp_reply(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' &&
	       s[2] <= '9' && (s[3] == '\0' || s[3] == ' ' || s[3] == '-');
}

/* RFC 5322 §3.3 date-time in UTC, "Sun, 23 Nov 2025 21:20:00 +0000" (no locale involved). */
static void
bounce_date(char buf[BOUNCE_DATE_MAX], time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	snprintf(buf, BOUNCE_DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	         days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
	         tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * 64 random bits. Without entropy yet (early boot), time, pid and a counter keep it unique in
 * this process. Called on the event-loop thread only (the counter is not atomic).
 */
static uint64_t
bounce_nonce(void)
{
	static uint64_t counter;
	struct timespec ts;
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v) && v != 0)
		return v;
	clock_gettime(CLOCK_REALTIME, &ts);
	v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20) ^
	    ++counter;
	return v != 0 ? v : 1;
}

static bool
bounce_info_ok(const struct bounce_info *info)
{
	size_t i;

	if (info == NULL || info->reporting_mta == NULL || info->reporting_mta[0] == '\0' ||
	    info->orig_sender == NULL || info->orig_sender[0] == '\0' || info->rcpts == NULL ||
	    info->nrcpts == 0)
		return false;
	for (i = 0; i < info->nrcpts; i++) {
		const struct bounce_rcpt *r = &info->rcpts[i];

		if (r->addr == NULL || r->addr[0] == '\0' || (size_t)r->action >= BOUNCE_NACTIONS)
			return false;
	}
	return true;
}

/*
 * Is p[0..len) clean text in spool form: CRLF lines (the last may lack its CRLF) of at most 998
 * octets, with no CR, LF or NUL inside a line and no lone "." line (which would end DATA)?
 * Sets *eightbit if it holds octets >= 0x80.
 */
static bool
bounce_text_clean(const char *p, size_t len, bool *eightbit)
{
	size_t i, start = 0;
	bool clean = true;

	*eightbit = false;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch >= 0x80) {
			*eightbit = true;
		} else if (ch == '\r' && i + 1 < len && p[i + 1] == '\n') {
			if (i - start > BOUNCE_LINE_MAX || (i - start == 1 && p[start] == '.'))
				clean = false;
			i++;
			start = i + 1;
		} else if (ch == '\r' || ch == '\n' || ch == '\0') {
			clean = false;
		}
	}
	if (len - start > BOUNCE_LINE_MAX || (len - start == 1 && p[start] == '.'))
		clean = false;
	return clean;
}

/* Length of the header section: up to and including the CRLF before the first empty line. */
static size_t
bounce_header_len(const char *p, size_t len)
{
	const char *e;

	if (len >= 2 && p[0] == '\r' && p[1] == '\n')
		return 0;
	e = memmem(p, len, "\r\n\r\n", 4);
	return e != NULL ? (size_t)(e - p) + 2 : len;
}

/* The longest prefix of p[0..len) of at most max octets that ends with CRLF (0 if none). */
static size_t
bounce_cut(const char *p, size_t len, size_t max)
{
	size_t i;

	if (len <= max)
		return len;
	for (i = max; i >= 2; i--)
		if (p[i - 2] == '\r' && p[i - 1] == '\n')
			return i;
	return 0;
}

/* Decide what part 3 holds (see "RET" at the top). */
static void
bounce_plan_part3(const struct bounce_info *info, bool failure, struct bounce_part3 *r)
{
	size_t hlen;

	memset(r, 0, sizeof(*r));
	if (info->orig == NULL || info->orig_len == 0)
		return;
	r->how = BOUNCE_RETURN_HEADERS;
	if (info->ret == SMTP_DSN_RET_FULL && failure) {
		if (info->max_orig_len != 0 && info->orig_len > info->max_orig_len) {
			r->how = BOUNCE_RETURN_TOO_BIG;
		} else if (!bounce_text_clean(info->orig, info->orig_len, &r->eightbit)) {
			r->how = BOUNCE_RETURN_NOT_TEXT;
		} else {
			r->how = BOUNCE_RETURN_FULL;
			r->p = info->orig;
			r->len = info->orig_len;
			return;
		}
	}
	hlen = bounce_header_len(info->orig, info->orig_len);
	r->p = info->orig;
	r->len = hlen;
	if (info->max_orig_len != 0 && hlen > info->max_orig_len) {
		r->len = bounce_cut(info->orig, hlen, info->max_orig_len);
		r->cut = true;
	}
	(void)bounce_text_clean(r->p, r->len, &r->eightbit);
	if (r->len == 0)
		r->how = BOUNCE_RETURN_NONE;
}

/*
 * Append p[0..len) of the original: clean text as it is (its lines are stuffed already), a
 * dirty line cleaned; then a CRLF if it does not end with one.
 */
static int
bounce_embed(struct evbuffer *b, const char *p, size_t len)
{
	const char *e = NULL;
	size_t start, l = 0;
	bool eightbit;

	if (bounce_text_clean(p, len, &eightbit)) {
		if (evbuffer_add(b, p, len) < 0)
			return -1;
		if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n')
			return evbuffer_add(b, "\r\n", 2);
		return 0;
	}
	for (start = 0; start < len; start += l + (e != NULL ? 2 : 0)) {
		e = memmem(p + start, len - start, "\r\n", 2);
		l = e != NULL ? (size_t)(e - (p + start)) : len - start;
		if (bounce_embed_dirty_line(b, p + start, l) < 0)
			return -1;
	}
	return 0;
}

/* One line of the original that is not clean: CR, LF, NUL become SP; cut at 998 octets. */
static int
bounce_embed_dirty_line(struct evbuffer *b, const char *p, size_t len)
{
	char line[BOUNCE_LINE_MAX + 2];
	size_t i;

	if (len > BOUNCE_LINE_MAX)
		len = BOUNCE_LINE_MAX;
	for (i = 0; i < len; i++)
		line[i] = (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') ? ' ' : p[i];
	/* A lone "." cannot be in spool form; stuff it rather than end DATA with it. */
	if (len == 1 && line[0] == '.')
		line[len++] = '.';
	memcpy(line + len, "\r\n", 2);
	return evbuffer_add(b, line, len + 2);
}

/*
 * Append one generated line (no CR or LF in s) and its CRLF, stuffing a leading '.'. Callers
 * keep len <= BOUNCE_TEXT_MAX; a longer line is cut rather than overflow.
 */
static int
bounce_line(struct evbuffer *b, const char *s, size_t len)
{
	if (len > 0 && s[0] == '.') {
		if (evbuffer_add(b, ".", 1) < 0)
			return -1;
		if (len > BOUNCE_TEXT_MAX)
			len = BOUNCE_TEXT_MAX;
	} else if (len > BOUNCE_LINE_MAX) {
		len = BOUNCE_LINE_MAX;
	}
	if (evbuffer_add(b, s, len) < 0 || evbuffer_add(b, "\r\n", 2) < 0)
		return -1;
	return 0;
}

/* One generated line from a format; every %s argument is a cleaned, bounded value. */
static int
bounce_printf(struct evbuffer *b, const char *fmt, ...)
{
	char line[BOUNCE_LINE_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	return bounce_line(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* Append to buf (size octets, *n used), cutting what does not fit. */
static void
bounce_cat(char *buf, size_t size, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (*n + 1 >= size)
		return;
	va_start(ap, fmt);
	k = vsnprintf(buf + *n, size - *n, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	*n += (size_t)k < size - *n ? (size_t)k : size - *n - 1;
}

/*
 * Emit text (cleaned: printable ASCII, single spaces) in lines of at most `width` octets where
 * the words allow it, never more than BOUNCE_TEXT_MAX. The first line starts with `first`.
 * fold: a header field folded (RFC 5322 §2.2.3), each word after a SP and a continuation line
 * starting with that SP; else a paragraph, a continuation line starting with its first word.
 * A word that does not fit on a line of its own is split at BOUNCE_TEXT_MAX.
 */
static int
bounce_wrap(struct evbuffer *b, const char *first, const char *text, size_t width, bool fold)
{
	char line[BOUNCE_LINE_MAX + 1];
	size_t n, words = 0, wl, sep, take;
	const char *p = text, *w;

	n = strlen(first);
	if (n > BOUNCE_TEXT_MAX / 2)
		return -1;
	memcpy(line, first, n);
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		w = p;
		while (*p != '\0' && *p != ' ')
			p++;
		wl = (size_t)(p - w);
		while (wl > 0) {
			sep = (fold || words > 0) ? 1 : 0;
			if (n + sep + wl <= width) {
				take = wl;
			} else if (words > 0) {
				if (bounce_line(b, line, n) < 0)
					return -1;
				n = 0;
				words = 0;
				continue;
			} else {
				/* Alone on its line and still too long: up to the hard limit. */
				take = BOUNCE_TEXT_MAX - n - sep;
				if (take > wl)
					take = wl;
			}
			if (sep)
				line[n++] = ' ';
			memcpy(line + n, w, take);
			n += take;
			words++;
			w += take;
			wl -= take;
		}
	}
	if (n > 0 && bounce_line(b, line, n) < 0)
		return -1;
	return 0;
}

/* Part 1: text/plain for people. */
static int
bounce_human(struct evbuffer *b, const struct bounce_ctx *c)
{
	const struct bounce_info *info = c->info;
	const struct bounce_part3 *r = &c->part3;
	char note[512];
	size_t i, n = 0;

	if (bounce_printf(b, "This is the mail system at host %s.", c->host) < 0 ||
	    bounce_line(b, "", 0) < 0 ||
	    bounce_wrap(b, "", bounce_kinds[c->kind].intro, BOUNCE_WRAP, false) < 0)
		return -1;
	for (i = 0; i < info->nrcpts; i++)
		if (bounce_line(b, "", 0) < 0 || bounce_human_rcpt(b, &info->rcpts[i]) < 0)
			return -1;
	switch (r->how) {
	case BOUNCE_RETURN_NONE:
		return 0;
	case BOUNCE_RETURN_FULL:
		bounce_cat(note, sizeof(note), &n, "Your message is attached.");
		break;
	case BOUNCE_RETURN_HEADERS:
		bounce_cat(note, sizeof(note), &n,
		           "The header section of your message is attached.");
		break;
	case BOUNCE_RETURN_TOO_BIG:
		bounce_cat(note, sizeof(note), &n,
		           "Your message is too large to be returned in full (%zu octets, the "
		           "limit is %zu); its header section is attached.",
		           info->orig_len, info->max_orig_len);
		break;
	case BOUNCE_RETURN_NOT_TEXT:
		bounce_cat(note, sizeof(note), &n,
		           "Your message cannot be returned in full (it is not plain text with "
		           "short lines); its header section is attached.");
		break;
	}
	if (r->cut)
		bounce_cat(note, sizeof(note), &n, " The header section was cut to %zu octets.",
		           r->len);
	if (bounce_line(b, "", 0) < 0 || bounce_wrap(b, "", note, BOUNCE_WRAP, false) < 0)
		return -1;
	return 0;
}

/*
 * "<bob@example.net>: delivery failed (5.1.1). The server mx.example.net said: 550 ...". The
 * diagnostic comes last: it is someone else's text, with or without a final full stop.
 */
static int
bounce_human_rcpt(struct evbuffer *b, const struct bounce_rcpt *r)
{
	char addr[BOUNCE_ADDR_MAX], orcpt[BOUNCE_ORCPT_MAX], host[BOUNCE_HOST_MAX];
	char diag[BOUNCE_DIAG_MAX], date[BOUNCE_DATE_MAX], para[BOUNCE_PARA_MAX];
	size_t n = 0;

	bounce_clean(addr, sizeof(addr), r->addr);
	bounce_cat(para, sizeof(para), &n, "<%s>: %s (%s).", addr, bounce_actions[r->action].text,
	           bounce_status(r));
	if (bounce_orcpt(orcpt, sizeof(orcpt), r->orcpt))
		bounce_cat(para, sizeof(para), &n, " Original recipient: %s.", orcpt);
	if (r->action == BOUNCE_DELAYED && r->will_retry_until != 0) {
		bounce_date(date, r->will_retry_until);
		bounce_cat(para, sizeof(para), &n, " The mail system will keep trying until %s.",
		           date);
	}
	bounce_clean(host, sizeof(host), r->remote_mta);
	if (bounce_clean(diag, sizeof(diag), r->diagnostic) > 0) {
		if (host[0] != '\0')
			bounce_cat(para, sizeof(para), &n, " The server %s said: %s", host, diag);
		else
			bounce_cat(para, sizeof(para), &n, " Reason: %s", diag);
	} else if (host[0] != '\0') {
		bounce_cat(para, sizeof(para), &n, " Server: %s.", host);
	}
	return bounce_wrap(b, "", para, BOUNCE_WRAP, false);
}

/* Part 2: message/delivery-status (RFC 3464 §2.1: per-message fields, per-recipient groups). */
static int
bounce_report(struct evbuffer *b, const struct bounce_ctx *c)
{
	const struct bounce_info *info = c->info;
	char envid[SMTP_ENVID_MAX + 1], date[BOUNCE_DATE_MAX];
	size_t i;

	/* RFC 3464 §2.2, in the order of its grammar. */
	if (bounce_envid(envid, sizeof(envid), info->envid) &&
	    bounce_printf(b, "Original-Envelope-Id: %s", envid) < 0)
		return -1;
	if (bounce_printf(b, "Reporting-MTA: dns; %s", c->host) < 0)
		return -1;
	if (info->arrival != 0) {
		bounce_date(date, info->arrival);
		if (bounce_printf(b, "Arrival-Date: %s", date) < 0)
			return -1;
	}
	for (i = 0; i < info->nrcpts; i++)
		if (bounce_line(b, "", 0) < 0 || bounce_report_rcpt(b, &info->rcpts[i]) < 0)
			return -1;
	return 0;
}

/* RFC 3464 §2.3, in the order of its grammar. */
static int
bounce_report_rcpt(struct evbuffer *b, const struct bounce_rcpt *r)
{
	char addr[BOUNCE_ADDR_MAX], orcpt[BOUNCE_ORCPT_MAX], host[BOUNCE_HOST_MAX];
	char diag[BOUNCE_DIAG_MAX], date[BOUNCE_DATE_MAX];

	if (bounce_orcpt(orcpt, sizeof(orcpt), r->orcpt) &&
	    bounce_printf(b, "Original-Recipient: %s", orcpt) < 0)
		return -1;
	bounce_clean(addr, sizeof(addr), r->addr);
	if (bounce_printf(b, "Final-Recipient: rfc822; %s", addr) < 0 ||
	    bounce_printf(b, "Action: %s", bounce_actions[r->action].name) < 0 ||
	    bounce_printf(b, "Status: %s", bounce_status(r)) < 0)
		return -1;
	if (bounce_clean(host, sizeof(host), r->remote_mta) > 0 &&
	    bounce_printf(b, "Remote-MTA: dns; %s", host) < 0)
		return -1;
	if (bounce_clean(diag, sizeof(diag), r->diagnostic) > 0 &&
	    bounce_wrap(b,
	                bounce_is_smtp_reply(diag) ? "Diagnostic-Code: smtp;"
	                                           : "Diagnostic-Code: X-Petrel;",
	                diag, BOUNCE_FOLD, true) < 0)
		return -1;
	if (r->last_attempt != 0) {
		bounce_date(date, r->last_attempt);
		if (bounce_printf(b, "Last-Attempt-Date: %s", date) < 0)
			return -1;
	}
	if (r->action == BOUNCE_DELAYED && r->will_retry_until != 0) {
		bounce_date(date, r->will_retry_until);
		if (bounce_printf(b, "Will-Retry-Until: %s", date) < 0)
			return -1;
	}
	return 0;
}

/* Does s occur in any byte that goes into the parts? */
static bool
bounce_occurs(const char *s, const struct bounce_part3 *r, struct evbuffer *human,
              struct evbuffer *report)
{
	size_t len = strlen(s);

	/* Cleaning a dirty line only turns octets into SP, which no boundary holds: searching
	 * the original bytes covers what bounce_embed() writes. */
	if (r->len > 0 && memmem(r->p, r->len, s, len) != NULL)
		return true;
	return evbuffer_search(human, s, len, NULL).pos != -1 ||
	       evbuffer_search(report, s, len, NULL).pos != -1;
}

static int
bounce_choose_boundary(struct bounce_ctx *c, struct evbuffer *human, struct evbuffer *report)
{
	unsigned attempt;

	for (attempt = 0; attempt < BOUNCE_BOUNDARY_TRIES; attempt++) {
		if (attempt == 0)
			snprintf(c->boundary, sizeof(c->boundary), "=_petrel_%s_%016" PRIx64, c->id,
			         c->nonce);
		else
			snprintf(c->boundary, sizeof(c->boundary), "=_petrel_%s_%016" PRIx64 "_%u",
			         c->id, c->nonce, attempt);
		if (!bounce_occurs(c->boundary, &c->part3, human, report))
			return 0;
	}
	/* Only an original built against a known nonce gets here. */
	errno = EEXIST;
	return -1;
}

/* The message header section and the preamble. */
static int
bounce_header(struct evbuffer *b, const struct bounce_ctx *c)
{
	const struct bounce_info *info = c->info;
	char sender[BOUNCE_ADDR_MAX], date[BOUNCE_DATE_MAX];

	bounce_clean(sender, sizeof(sender), info->orig_sender);
	bounce_date(date, info->now);
	if (bounce_printf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>", c->host) < 0 ||
	    bounce_printf(b, "To: <%s>", sender) < 0 ||
	    bounce_printf(b, "Subject: %s", bounce_kinds[c->kind].subject) < 0 ||
	    bounce_printf(b, "Date: %s", date) < 0 ||
	    bounce_printf(b, "Message-ID: <%s.%lld.%s.%016" PRIx64 "@%s>", c->id,
	                  (long long)info->now, bounce_kinds[c->kind].tag, c->nonce,
	                  c->id_domain) < 0 ||
	    bounce_printf(b, "Auto-Submitted: auto-replied") < 0 ||
	    bounce_printf(b, "MIME-Version: 1.0") < 0 ||
	    bounce_printf(b, "Content-Type: multipart/report; report-type=delivery-status;") < 0 ||
	    bounce_printf(b, "\tboundary=\"%s\"", c->boundary) < 0)
		return -1;
	/* RFC 2045 §6.4: a multipart holding 8-bit data is labelled 8bit too. */
	if (c->part3.eightbit && bounce_printf(b, "Content-Transfer-Encoding: 8bit") < 0)
		return -1;
	if (bounce_printf(b, "X-Petrel-Queue-ID: %s", c->id) < 0 || bounce_line(b, "", 0) < 0 ||
	    bounce_printf(b, "This is a MIME-encapsulated message.") < 0)
		return -1;
	return 0;
}

/*
 * A delimiter line and a part's header. The CRLF before "--" belongs to the delimiter (RFC 2046
 * §5.1.1), so it is written here after the previous part's own final CRLF.
 */
static int
bounce_part_start(struct evbuffer *b, const struct bounce_ctx *c, const char *type,
                  const char *description, bool eightbit)
{
	if (bounce_line(b, "", 0) < 0 || bounce_printf(b, "--%s", c->boundary) < 0 ||
	    bounce_printf(b, "Content-Type: %s", type) < 0 ||
	    bounce_printf(b, "Content-Description: %s", description) < 0)
		return -1;
	if (eightbit && bounce_printf(b, "Content-Transfer-Encoding: 8bit") < 0)
		return -1;
	return bounce_line(b, "", 0);
}
