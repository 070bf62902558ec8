/*
 * smtp/parser.c: one SMTP command line in, one struct smtp_cmd out.
 *
 * Its one concept is the command grammar: the verbs of RFC 5321 §4.1.1, paths and mailboxes
 * (§4.1.2), address literals (§4.1.3), the ESMTP parameters of MAIL and RCPT (RFC 1870 SIZE,
 * RFC 6152 / 3030 BODY, RFC 3461 DSN, RFC 4954 AUTH, RFC 6531 SMTPUTF8), BDAT (RFC 3030), AUTH
 * (RFC 4954) and RFC 3461 xtext.
 *
 * What it does not do: I/O, allocation, state between lines, or policy. Whether a command is
 * allowed now, whether an extension was offered (a UTF-8 path without SMTPUTF8, BODY=BINARYMIME
 * without CHUNKING, SIZE over the limit) and what to reply are the session's and reply.c's job.
 *
 * The line is not NUL-terminated and is fuzzed: every read is bounded by an `end` pointer.
 * Start reading at smtp_parser_command(); each verb's arguments have one smtp_parser_<verb>().
 */
#include "petrel/smtp/parser.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* RFC 1035 §2.3.4 via RFC 5321 §4.1.2: an ASCII label is at most 63 octets. */
#define SMTP_PARSER_LABEL_MAX 63
/* Longest IPv6 text form, "ffff:...:ffff:255.255.255.255" (INET6_ADDRSTRLEN without NUL). */
#define SMTP_PARSER_IPV6_TEXT_MAX 45
/* RFC 1870 size-value and (here) RFC 3030 chunk-size: at most 20 digits. */
#define SMTP_PARSER_DIGITS_MAX 20
/* RFC 4422 §3.1: a SASL mechanism name is 1 to 20 characters. */
#define SMTP_PARSER_MECH_MAX 20

/* A string literal and its length, for smtp_parser_ci_equal(). */
#define SMTP_PARSER_LIT(s) s, (sizeof(s) - 1)

struct smtp_parser_name {
	const char *name;
	size_t len;
};

static const struct smtp_parser_name smtp_parser_verbs[SMTP_VERB_COUNT] = {
	[SMTP_VERB_NONE] = { "?", 0 },
	[SMTP_VERB_HELO] = { SMTP_PARSER_LIT("HELO") },
	[SMTP_VERB_EHLO] = { SMTP_PARSER_LIT("EHLO") },
	[SMTP_VERB_MAIL] = { SMTP_PARSER_LIT("MAIL") },
	[SMTP_VERB_RCPT] = { SMTP_PARSER_LIT("RCPT") },
	[SMTP_VERB_DATA] = { SMTP_PARSER_LIT("DATA") },
	[SMTP_VERB_BDAT] = { SMTP_PARSER_LIT("BDAT") },
	[SMTP_VERB_RSET] = { SMTP_PARSER_LIT("RSET") },
	[SMTP_VERB_NOOP] = { SMTP_PARSER_LIT("NOOP") },
	[SMTP_VERB_QUIT] = { SMTP_PARSER_LIT("QUIT") },
	[SMTP_VERB_VRFY] = { SMTP_PARSER_LIT("VRFY") },
	[SMTP_VERB_EXPN] = { SMTP_PARSER_LIT("EXPN") },
	[SMTP_VERB_HELP] = { SMTP_PARSER_LIT("HELP") },
	[SMTP_VERB_STARTTLS] = { SMTP_PARSER_LIT("STARTTLS") },
	[SMTP_VERB_AUTH] = { SMTP_PARSER_LIT("AUTH") },
	[SMTP_VERB_SEND] = { SMTP_PARSER_LIT("SEND") },
	[SMTP_VERB_SOML] = { SMTP_PARSER_LIT("SOML") },
	[SMTP_VERB_SAML] = { SMTP_PARSER_LIT("SAML") },
	[SMTP_VERB_TURN] = { SMTP_PARSER_LIT("TURN") },
};

/* The ESMTP parameters we know, each valid on one verb only. */
enum smtp_parser_param {
	SMTP_PARSER_PARAM_SIZE,
	SMTP_PARSER_PARAM_BODY,
	SMTP_PARSER_PARAM_SMTPUTF8,
	SMTP_PARSER_PARAM_RET,
	SMTP_PARSER_PARAM_ENVID,
	SMTP_PARSER_PARAM_AUTH,
	SMTP_PARSER_PARAM_NOTIFY,
	SMTP_PARSER_PARAM_ORCPT,
	SMTP_PARSER_PARAM_COUNT
};

struct smtp_parser_param_def {
	const char *name;
	size_t len;
	enum smtp_verb verb;
};

static const struct smtp_parser_param_def smtp_parser_params[SMTP_PARSER_PARAM_COUNT] = {
	[SMTP_PARSER_PARAM_SIZE] = { SMTP_PARSER_LIT("SIZE"), SMTP_VERB_MAIL },
	[SMTP_PARSER_PARAM_BODY] = { SMTP_PARSER_LIT("BODY"), SMTP_VERB_MAIL },
	[SMTP_PARSER_PARAM_SMTPUTF8] = { SMTP_PARSER_LIT("SMTPUTF8"), SMTP_VERB_MAIL },
	[SMTP_PARSER_PARAM_RET] = { SMTP_PARSER_LIT("RET"), SMTP_VERB_MAIL },
	[SMTP_PARSER_PARAM_ENVID] = { SMTP_PARSER_LIT("ENVID"), SMTP_VERB_MAIL },
	[SMTP_PARSER_PARAM_AUTH] = { SMTP_PARSER_LIT("AUTH"), SMTP_VERB_MAIL },
	[SMTP_PARSER_PARAM_NOTIFY] = { SMTP_PARSER_LIT("NOTIFY"), SMTP_VERB_RCPT },
	[SMTP_PARSER_PARAM_ORCPT] = { SMTP_PARSER_LIT("ORCPT"), SMTP_VERB_RCPT },
};

/* Character classes (ASCII only; callers deal with octets >= 0x80 themselves). */
static bool smtp_parser_is_digit(unsigned char c);
static bool smtp_parser_is_alpha(unsigned char c);
static bool smtp_parser_is_alnum(unsigned char c);
static bool smtp_parser_is_atext(unsigned char c);
static bool smtp_parser_is_xchar(unsigned char c);
static bool smtp_parser_is_hex(unsigned char c);
static int smtp_parser_hex_upper(unsigned char c);
static bool smtp_parser_ci_equal(const unsigned char *p, size_t len, const char *upper,
                                 size_t upper_len);
static bool smtp_parser_has_8bit(const unsigned char *p, const unsigned char *end);
static size_t smtp_parser_utf8_len(const unsigned char *p, const unsigned char *end);
static bool smtp_parser_xtext_valid(const unsigned char *p, size_t len);

/* Address grammar (RFC 5321 §4.1.2, §4.1.3). */
static enum smtp_parse_result smtp_parser_domain(const unsigned char **pp, const unsigned char *end,
                                                 bool trailing_dot, bool *utf8);
static enum smtp_parse_result smtp_parser_literal(const unsigned char **pp,
                                                  const unsigned char *end);
static bool smtp_parser_ipv4(const unsigned char *p, const unsigned char *end);
static bool smtp_parser_ipv6(const unsigned char *p, const unsigned char *end);
static bool smtp_parser_general_literal(const unsigned char *p, const unsigned char *end);
static enum smtp_parse_result smtp_parser_dot_string(const unsigned char **pp,
                                                     const unsigned char *end, bool *utf8);
static enum smtp_parse_result smtp_parser_quoted(const unsigned char **pp, const unsigned char *end,
                                                 bool *utf8);
static enum smtp_parse_result smtp_parser_path(const unsigned char **pp, const unsigned char *end,
                                               bool is_mail, struct smtp_path *path);

/* ESMTP parameters. */
static enum smtp_parse_result smtp_parser_esmtp_params(struct smtp_cmd *cmd, const unsigned char *p,
                                                       const unsigned char *end);
static enum smtp_parse_result smtp_parser_param_value(struct smtp_cmd *cmd,
                                                      enum smtp_parser_param param,
                                                      const unsigned char *val, size_t len,
                                                      bool has_value);
static enum smtp_parse_result smtp_parser_notify(const unsigned char *val, size_t len,
                                                 unsigned *notify);
static enum smtp_parse_result smtp_parser_orcpt(const unsigned char *val, size_t len, char *dst);
static void smtp_parser_copy(char *dst, const unsigned char *src, size_t len);

/* One function per verb family. */
static enum smtp_verb smtp_parser_verb(const unsigned char *p, size_t len);
static enum smtp_parse_result smtp_parser_text(const unsigned char *p, const unsigned char *end,
                                               bool required);
static enum smtp_parse_result smtp_parser_helo(struct smtp_cmd *cmd, const unsigned char *p,
                                               const unsigned char *end);
static enum smtp_parse_result smtp_parser_mail_rcpt(struct smtp_cmd *cmd, const unsigned char *p,
                                                    const unsigned char *end);
static enum smtp_parse_result smtp_parser_bdat(struct smtp_cmd *cmd, const unsigned char *p,
                                               const unsigned char *end);
static enum smtp_parse_result smtp_parser_auth(struct smtp_cmd *cmd, const unsigned char *p,
                                               const unsigned char *end);

enum smtp_parse_result
smtp_parser_command(const char *line, size_t len, struct smtp_cmd *out)
{
	const unsigned char *start;
	const unsigned char *end;
	const unsigned char *p;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return SMTP_PARSE_ERR_VERB;
	start = (const unsigned char *)line;
	end = start + len;
	/*
	 * Tolerance: trailing spaces after the last argument (or after a bare verb, "DATA "). Some
	 * clients pad their lines; only SP is dropped, a trailing HT stays and is judged below.
	 */
	while (end > start && end[-1] == ' ')
		end--;

	/* The verb ends at SP or the end of the line; HT is not a separator, so "NOOP\tx" fails. */
	for (p = start; p < end && *p != ' '; p++)
		;
	out->verb = smtp_parser_verb(start, (size_t)(p - start));
	if (memchr(line, '\0', len) != NULL)
		return SMTP_PARSE_ERR_NUL;
	if (out->verb == SMTP_VERB_NONE)
		return smtp_parser_has_8bit(start, p) ? SMTP_PARSE_ERR_8BIT : SMTP_PARSE_ERR_VERB;

	/* Tolerance (parser.h): more than one SP between the verb and its argument. */
	while (p < end && *p == ' ')
		p++;
	if (p < end) {
		out->arg = (const char *)p;
		out->arg_len = (size_t)(end - p);
	}
	/* Only a MAIL/RCPT path may hold UTF-8 (RFC 6531); those verbs check the rest. */
	if (out->verb != SMTP_VERB_MAIL && out->verb != SMTP_VERB_RCPT &&
	    smtp_parser_has_8bit(p, end))
		return SMTP_PARSE_ERR_8BIT;

	switch (out->verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		return smtp_parser_helo(out, p, end);
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		return smtp_parser_mail_rcpt(out, p, end);
	case SMTP_VERB_BDAT:
		return smtp_parser_bdat(out, p, end);
	case SMTP_VERB_AUTH:
		return smtp_parser_auth(out, p, end);
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
	case SMTP_VERB_TURN:
		return out->arg == NULL ? SMTP_PARSE_OK : SMTP_PARSE_ERR_SYNTAX;
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		return smtp_parser_text(p, end, true);
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
	/* RFC 821 relics: any text; the session answers 502 whatever follows. */
	case SMTP_VERB_SEND:
	case SMTP_VERB_SOML:
	case SMTP_VERB_SAML:
		return smtp_parser_text(p, end, false);
	case SMTP_VERB_NONE:
	case SMTP_VERB_COUNT:
		break;
	}
	return SMTP_PARSE_ERR_VERB;
}

const char *
smtp_verb_name(enum smtp_verb verb)
{
	if (verb <= SMTP_VERB_NONE || verb >= SMTP_VERB_COUNT)
		return "?";
	return smtp_parser_verbs[verb].name;
}

long
smtp_xtext_decode(const char *src, size_t len, char *dst, size_t dstsize)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0;
	size_t o = 0;

	if (dst == NULL || dstsize == 0)
		return -1;
	while (i < len) {
		unsigned char c = s[i];

		if (c == '+') {
			int hi, lo;

			if (len - i < 3)
				return -1;
			hi = smtp_parser_hex_upper(s[i + 1]);
			lo = smtp_parser_hex_upper(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			i += 3;
		} else if (smtp_parser_is_xchar(c)) {
			i++;
		} else {
			/* Not xtext (SP, '=', controls, 8-bit): as bad as a broken escape. */
			return -1;
		}
		if (dstsize - o < 2)
			return -1;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return (long)o;
}

long
smtp_xtext_encode(const char *src, size_t len, char *dst, size_t dstsize)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0;

	if (dst == NULL || dstsize == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (smtp_parser_is_xchar(c)) {
			if (dstsize - o < 2)
				return -1;
			dst[o++] = (char)c;
		} else {
			if (dstsize - o < 4)
				return -1;
			dst[o++] = '+';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0x0f];
		}
	}
	dst[o] = '\0';
	return (long)o;
}

static bool
smtp_parser_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
smtp_parser_is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
smtp_parser_is_alnum(unsigned char c)
{
	return smtp_parser_is_alpha(c) || smtp_parser_is_digit(c);
}

/* RFC 5322 §3.2.3 atext (ASCII part), as used by RFC 5321 Atom. */
static bool
smtp_parser_is_atext(unsigned char c)
{
	if (smtp_parser_is_alnum(c))
		return true;
	switch (c) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '/':
	case '=':
	case '?':
	case '^':
	case '_':
	case '`':
	case '{':
	case '|':
	case '}':
	case '~':
		return true;
	default:
		return false;
	}
}

/* RFC 3461 §4 xchar: "!" to "~" except "+" and "=". */
static bool
smtp_parser_is_xchar(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '+' && c != '=';
}

static bool
smtp_parser_is_hex(unsigned char c)
{
	return smtp_parser_is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* RFC 3461 hexchar digits are upper case only; returns the value or -1. */
static int
smtp_parser_hex_upper(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Does p[0..len) equal `upper` (upper case ASCII) ignoring the case of ASCII letters? */
static bool
smtp_parser_ci_equal(const unsigned char *p, size_t len, const char *upper, size_t upper_len)
{
	if (len != upper_len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - ('a' - 'A'));
		if (c != (unsigned char)upper[i])
			return false;
	}
	return true;
}

static bool
smtp_parser_has_8bit(const unsigned char *p, const unsigned char *end)
{
	for (; p < end; p++)
		if (*p >= 0x80)
			return true;
	return false;
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629 §4: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0 if it is not one. Reads no further than end.
 */
static size_t
smtp_parser_utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t avail = (size_t)(end - p);
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong below U+0800 */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates U+D800..U+DFFF */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0; /* ASCII, a continuation byte, C0/C1 (overlong), F5..FF */
	}
	if (avail < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* RFC 3461 §4: xtext = *( xchar / hexchar ), hexchar = "+" 2(upper case HEXDIG). */
static bool
smtp_parser_xtext_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (p[i] == '+') {
			if (len - i < 3 || smtp_parser_hex_upper(p[i + 1]) < 0 ||
			    smtp_parser_hex_upper(p[i + 2]) < 0)
				return false;
			i += 3;
		} else if (smtp_parser_is_xchar(p[i])) {
			i++;
		} else {
			return false;
		}
	}
	return true;
}

/*
 * Domain = sub-domain *("." sub-domain) (RFC 5321 §4.1.2), sub-domain = Let-dig [Ldh-str], or
 * a U-label (RFC 6531 §3.3), which we check only for well-formed UTF-8 and the hyphen rule.
 * Consumes as much as forms a domain and leaves *pp on the first octet after it; the caller
 * judges that octet. `trailing_dot` (HELO/EHLO only) accepts one final "." and '_' in labels:
 * Windows clients announce host names such as "my_pc", and refusing them helps nobody. ASCII labels
 * are limited to 63 octets; labels with UTF-8 are not, as their A-label form may be shorter.
 * Returns OK, ERR_PATH or ERR_PATH_TOO_LONG (over SMTP_DOMAIN_MAX octets).
 */
static enum smtp_parse_result
smtp_parser_domain(const unsigned char **pp, const unsigned char *end, bool trailing_dot,
                   bool *utf8)
{
	const unsigned char *start = *pp;
	const unsigned char *p = start;

	for (;;) {
		const unsigned char *label = p;
		bool label_utf8 = false;

		while (p < end) {
			if (smtp_parser_is_alnum(*p) || *p == '-' || (trailing_dot && *p == '_')) {
				p++;
			} else if (*p >= 0x80) {
				size_t n = smtp_parser_utf8_len(p, end);

				if (n == 0)
					return SMTP_PARSE_ERR_PATH;
				p += n;
				label_utf8 = true;
			} else {
				break;
			}
		}
		if (p == label || *label == '-' || p[-1] == '-')
			return SMTP_PARSE_ERR_PATH;
		if (!label_utf8 && (size_t)(p - label) > SMTP_PARSER_LABEL_MAX)
			return SMTP_PARSE_ERR_PATH;
		if (label_utf8)
			*utf8 = true;
		if (p == end || *p != '.')
			break;
		p++;
		if (trailing_dot && p == end)
			break;
	}
	if ((size_t)(p - start) > SMTP_DOMAIN_MAX)
		return SMTP_PARSE_ERR_PATH_TOO_LONG;
	*pp = p;
	return SMTP_PARSE_OK;
}

/*
 * address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]" (RFC 5321 §4.1.3). *pp is on the "["; on success it is left
 * just after the "]". Returns OK or ERR_PATH.
 */
static enum smtp_parse_result
smtp_parser_literal(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char *start = *pp + 1;
	const unsigned char *close;
	const unsigned char *colon;
	bool ok;

	close = memchr(start, ']', (size_t)(end - start));
	if (close == NULL)
		return SMTP_PARSE_ERR_PATH;
	colon = memchr(start, ':', (size_t)(close - start));
	if (colon == NULL)
		ok = smtp_parser_ipv4(start, close);
	else if (smtp_parser_ci_equal(start, (size_t)(colon + 1 - start), SMTP_PARSER_LIT("IPV6:")))
		ok = smtp_parser_ipv6(colon + 1, close);
	else
		ok = smtp_parser_general_literal(start, close);
	if (!ok)
		return SMTP_PARSE_ERR_PATH;
	if ((size_t)(close + 1 - *pp) > SMTP_DOMAIN_MAX)
		return SMTP_PARSE_ERR_PATH_TOO_LONG;
	*pp = close + 1;
	return SMTP_PARSE_OK;
}

/* IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT of value 0..255. */
static bool
smtp_parser_ipv4(const unsigned char *p, const unsigned char *end)
{
	for (int i = 0; i < 4; i++) {
		unsigned value = 0;
		int digits = 0;

		if (i > 0) {
			if (p == end || *p != '.')
				return false;
			p++;
		}
		while (p < end && smtp_parser_is_digit(*p) && digits < 3) {
			value = value * 10 + (unsigned)(*p - '0');
			digits++;
			p++;
		}
		if (digits == 0 || value > 255)
			return false;
	}
	return p == end;
}

/* IPv6-addr (RFC 5321 §4.1.3): the text after "IPv6:", checked by inet_pton(). */
static bool
smtp_parser_ipv6(const unsigned char *p, const unsigned char *end)
{
	char text[SMTP_PARSER_IPV6_TEXT_MAX + 1];
	struct in6_addr addr;
	size_t len = (size_t)(end - p);

	if (len < 2 || len > SMTP_PARSER_IPV6_TEXT_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!smtp_parser_is_hex(p[i]) && p[i] != ':' && p[i] != '.')
			return false;
	memcpy(text, p, len);
	text[len] = '\0';
	return inet_pton(AF_INET6, text, &addr) == 1;
}

/*
 * General-address-literal = Standardized-tag ":" 1*dcontent; the tag is an Ldh-str (letters,
 * digits, hyphens, not ending in a hyphen), dcontent is %d33-90 / %d94-126.
 */
static bool
smtp_parser_general_literal(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *tag = p;

	while (p < end && (smtp_parser_is_alnum(*p) || *p == '-'))
		p++;
	if (p == tag || p[-1] == '-' || p == end || *p != ':')
		return false;
	p++;
	if (p == end)
		return false;
	for (; p < end; p++)
		if (*p < 33 || *p > 126 || (*p >= 91 && *p <= 93))
			return false;
	return true;
}

/* Dot-string = Atom *("." Atom), Atom = 1*atext; atext includes UTF-8 (RFC 6531 §3.3). */
static enum smtp_parse_result
smtp_parser_dot_string(const unsigned char **pp, const unsigned char *end, bool *utf8)
{
	const unsigned char *p = *pp;

	for (;;) {
		const unsigned char *atom = p;

		while (p < end) {
			if (*p < 0x80) {
				if (!smtp_parser_is_atext(*p))
					break;
				p++;
			} else {
				size_t n = smtp_parser_utf8_len(p, end);

				if (n == 0)
					return SMTP_PARSE_ERR_PATH;
				p += n;
				*utf8 = true;
			}
		}
		if (p == atom)
			return SMTP_PARSE_ERR_PATH;
		if (p == end || *p != '.')
			break;
		p++;
	}
	*pp = p;
	return SMTP_PARSE_OK;
}

/*
 * Quoted-string = DQUOTE *QcontentSMTP DQUOTE; qtextSMTP = %d32-33 / %d35-91 / %d93-126 or
 * UTF-8 (RFC 6531); quoted-pairSMTP = "\" %d32-126. *pp is on the opening quote.
 */
static enum smtp_parse_result
smtp_parser_quoted(const unsigned char **pp, const unsigned char *end, bool *utf8)
{
	const unsigned char *p = *pp + 1;

	while (p < end && *p != '"') {
		if (*p == '\\') {
			if (end - p < 2 || p[1] < 32 || p[1] > 126)
				return SMTP_PARSE_ERR_PATH;
			p += 2;
		} else if (*p >= 0x80) {
			size_t n = smtp_parser_utf8_len(p, end);

			if (n == 0)
				return SMTP_PARSE_ERR_PATH;
			p += n;
			*utf8 = true;
		} else if (*p >= 32 && *p <= 126) {
			p++;
		} else {
			return SMTP_PARSE_ERR_PATH; /* controls, HT included */
		}
	}
	if (p == end)
		return SMTP_PARSE_ERR_PATH;
	*pp = p + 1;
	return SMTP_PARSE_OK;
}

/*
 * Path = "<" [ A-d-l ":" ] Mailbox ">", plus "<>" for MAIL and "<Postmaster>" for RCPT
 * (RFC 5321 §4.1.1.3). The source route (A-d-l) is checked and dropped. On success *pp is
 * just after the ">". Errors: ERR_PATH, ERR_PATH_TOO_LONG (local part over 64, domain over
 * 255, or local@domain over 256 octets).
 */
static enum smtp_parse_result
smtp_parser_path(const unsigned char **pp, const unsigned char *end, bool is_mail,
                 struct smtp_path *path)
{
	const unsigned char *p = *pp;
	const unsigned char *mailbox;
	const unsigned char *domain;
	enum smtp_parse_result res;
	bool utf8 = false;
	size_t len;

	if (p == end || *p != '<')
		return SMTP_PARSE_ERR_PATH;
	p++;
	if (p < end && *p == '>') {
		if (!is_mail)
			return SMTP_PARSE_ERR_PATH;
		path->null = true;
		*pp = p + 1;
		return SMTP_PARSE_OK;
	}
	if (p < end && *p == '@') {
		/* A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain. */
		bool route_utf8 = false;

		for (;;) {
			p++;
			res = smtp_parser_domain(&p, end, false, &route_utf8);
			if (res != SMTP_PARSE_OK)
				return SMTP_PARSE_ERR_PATH;
			if (p == end)
				return SMTP_PARSE_ERR_PATH;
			if (*p == ':')
				break;
			if (*p != ',' || end - p < 2 || p[1] != '@')
				return SMTP_PARSE_ERR_PATH;
			p++;
		}
		p++;
		path->had_source_route = true;
	}

	mailbox = p;
	if (p < end && *p == '"') {
		path->quoted_local = true;
		res = smtp_parser_quoted(&p, end, &utf8);
	} else {
		res = smtp_parser_dot_string(&p, end, &utf8);
	}
	if (res != SMTP_PARSE_OK)
		return res;
	len = (size_t)(p - mailbox);
	if (len > SMTP_LOCAL_MAX)
		return SMTP_PARSE_ERR_PATH_TOO_LONG;

	if (p < end && *p == '>') {
		/* No domain: only RCPT TO:<Postmaster> (RFC 5321 §4.1.1.3), any case, no route. */
		if (is_mail || path->had_source_route || path->quoted_local ||
		    !smtp_parser_ci_equal(mailbox, len, SMTP_PARSER_LIT("POSTMASTER")))
			return SMTP_PARSE_ERR_PATH;
		path->postmaster = true;
		domain = p;
	} else {
		if (p == end || *p != '@')
			return SMTP_PARSE_ERR_PATH;
		p++;
		domain = p;
		if (p < end && *p == '[')
			res = smtp_parser_literal(&p, end);
		else
			res = smtp_parser_domain(&p, end, false, &utf8);
		if (res != SMTP_PARSE_OK)
			return res;
		if (p == end || *p != '>')
			return SMTP_PARSE_ERR_PATH;
	}

	len = (size_t)(p - mailbox);
	if (len > SMTP_PATH_MAX)
		return SMTP_PARSE_ERR_PATH_TOO_LONG;
	memcpy(path->addr, mailbox, len);
	path->addr[len] = '\0';
	path->len = len;
	path->domain_off = (size_t)(domain - mailbox);
	path->utf8 = utf8;
	*pp = p + 1;
	return SMTP_PARSE_OK;
}

static void
smtp_parser_copy(char *dst, const unsigned char *src, size_t len)
{
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * Mail-parameters / Rcpt-parameters = esmtp-param *(SP esmtp-param), esmtp-param =
 * esmtp-keyword ["=" esmtp-value] (RFC 5321 §4.1.2). p is just after the ">" of the path.
 * A malformed keyword is ERR_SYNTAX, an unknown one (or one for the other verb) ERR_PARAM, a
 * known one with a bad value or given twice ERR_PARAM_VALUE.
 */
static enum smtp_parse_result
smtp_parser_esmtp_params(struct smtp_cmd *cmd, const unsigned char *p, const unsigned char *end)
{
	unsigned seen = 0;

	if (p == end)
		return SMTP_PARSE_OK;
	if (*p != ' ')
		return SMTP_PARSE_ERR_SYNTAX;
	if (smtp_parser_has_8bit(p, end))
		return SMTP_PARSE_ERR_8BIT;

	for (;;) {
		const unsigned char *keyword;
		const unsigned char *val = NULL;
		size_t keyword_len;
		size_t val_len = 0;
		bool has_value = false;
		int param = -1;
		enum smtp_parse_result res;

		/* Tolerance (parser.h "separated by spaces"): more than one SP between params. */
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			return SMTP_PARSE_OK;

		keyword = p;
		while (p < end && *p != ' ' && *p != '=')
			p++;
		keyword_len = (size_t)(p - keyword);
		if (keyword_len == 0 || !smtp_parser_is_alnum(keyword[0]))
			return SMTP_PARSE_ERR_SYNTAX;
		for (size_t i = 1; i < keyword_len; i++)
			if (!smtp_parser_is_alnum(keyword[i]) && keyword[i] != '-')
				return SMTP_PARSE_ERR_SYNTAX;
		if (p < end && *p == '=') {
			p++;
			val = p;
			while (p < end && *p != ' ')
				p++;
			val_len = (size_t)(p - val);
			has_value = true;
		}

		for (int i = 0; i < SMTP_PARSER_PARAM_COUNT; i++) {
			if (smtp_parser_params[i].verb == cmd->verb &&
			    smtp_parser_ci_equal(keyword, keyword_len, smtp_parser_params[i].name,
			                         smtp_parser_params[i].len)) {
				param = i;
				break;
			}
		}
		if (param < 0)
			return SMTP_PARSE_ERR_PARAM;
		if (seen & (1u << param))
			return SMTP_PARSE_ERR_PARAM_VALUE;
		seen |= 1u << param;
		res = smtp_parser_param_value(cmd, (enum smtp_parser_param)param, val, val_len,
		                              has_value);
		if (res != SMTP_PARSE_OK)
			return res;
	}
}

/* Check and store one known parameter's value (val is NULL when there was no "="). */
static enum smtp_parse_result
smtp_parser_param_value(struct smtp_cmd *cmd, enum smtp_parser_param param,
                        const unsigned char *val, size_t len, bool has_value)
{
	struct smtp_mail_params *mail = &cmd->u.mail.params;

	/* SMTPUTF8 takes no value; every other parameter we know needs a non-empty one. */
	if (param == SMTP_PARSER_PARAM_SMTPUTF8) {
		if (has_value)
			return SMTP_PARSE_ERR_PARAM_VALUE;
		mail->smtputf8 = true;
		return SMTP_PARSE_OK;
	}
	if (!has_value || len == 0)
		return SMTP_PARSE_ERR_PARAM_VALUE;

	switch (param) {
	case SMTP_PARSER_PARAM_SIZE: {
		uint64_t size = 0; /* RFC 1870: size-value ::= 1*20DIGIT. A legal 20-digit value
		                    * beyond 64 bits saturates: it is simply too big (552 from the
		                    * session), not malformed. */
		if (len > SMTP_PARSER_DIGITS_MAX)
			return SMTP_PARSE_ERR_PARAM_VALUE;
		for (size_t i = 0; i < len; i++) {
			unsigned d = (unsigned)(val[i] - '0');

			if (!smtp_parser_is_digit(val[i]))
				return SMTP_PARSE_ERR_PARAM_VALUE;
			size = size > (UINT64_MAX - d) / 10 ? UINT64_MAX : size * 10 + d;
		}
		mail->size_set = true;
		mail->size = size;
		return SMTP_PARSE_OK;
	}
	case SMTP_PARSER_PARAM_BODY:
		if (smtp_parser_ci_equal(val, len, SMTP_PARSER_LIT("7BIT")))
			mail->body = SMTP_BODY_7BIT;
		else if (smtp_parser_ci_equal(val, len, SMTP_PARSER_LIT("8BITMIME")))
			mail->body = SMTP_BODY_8BITMIME;
		else if (smtp_parser_ci_equal(val, len, SMTP_PARSER_LIT("BINARYMIME")))
			mail->body = SMTP_BODY_BINARYMIME;
		else
			return SMTP_PARSE_ERR_PARAM_VALUE;
		return SMTP_PARSE_OK;
	case SMTP_PARSER_PARAM_RET:
		if (smtp_parser_ci_equal(val, len, SMTP_PARSER_LIT("FULL")))
			mail->ret = SMTP_DSN_RET_FULL;
		else if (smtp_parser_ci_equal(val, len, SMTP_PARSER_LIT("HDRS")))
			mail->ret = SMTP_DSN_RET_HDRS;
		else
			return SMTP_PARSE_ERR_PARAM_VALUE;
		return SMTP_PARSE_OK;
	case SMTP_PARSER_PARAM_ENVID:
		if (len > SMTP_ENVID_MAX || !smtp_parser_xtext_valid(val, len))
			return SMTP_PARSE_ERR_PARAM_VALUE;
		smtp_parser_copy(mail->envid, val, len);
		return SMTP_PARSE_OK;
	case SMTP_PARSER_PARAM_AUTH:
		/* RFC 4954 §5: xtext or "<>"; "<>" is itself valid xtext. */
		if (len > SMTP_AUTH_MAIL_MAX || !smtp_parser_xtext_valid(val, len))
			return SMTP_PARSE_ERR_PARAM_VALUE;
		smtp_parser_copy(mail->auth, val, len);
		mail->auth_set = true;
		return SMTP_PARSE_OK;
	case SMTP_PARSER_PARAM_NOTIFY:
		return smtp_parser_notify(val, len, &cmd->u.rcpt.params.notify);
	case SMTP_PARSER_PARAM_ORCPT:
		return smtp_parser_orcpt(val, len, cmd->u.rcpt.params.orcpt);
	case SMTP_PARSER_PARAM_SMTPUTF8:
	case SMTP_PARSER_PARAM_COUNT:
		break;
	}
	return SMTP_PARSE_ERR_PARAM_VALUE;
}

/* RFC 3461 §4.1: "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ), any case, no repeats. */
static enum smtp_parse_result
smtp_parser_notify(const unsigned char *val, size_t len, unsigned *notify)
{
	const unsigned char *p = val;
	const unsigned char *end = val + len;
	unsigned bits = 0;

	for (;;) {
		const unsigned char *item = p;
		size_t item_len;
		unsigned bit;

		while (p < end && *p != ',')
			p++;
		item_len = (size_t)(p - item);
		if (smtp_parser_ci_equal(item, item_len, SMTP_PARSER_LIT("NEVER")))
			bit = SMTP_DSN_NOTIFY_NEVER;
		else if (smtp_parser_ci_equal(item, item_len, SMTP_PARSER_LIT("SUCCESS")))
			bit = SMTP_DSN_NOTIFY_SUCCESS;
		else if (smtp_parser_ci_equal(item, item_len, SMTP_PARSER_LIT("FAILURE")))
			bit = SMTP_DSN_NOTIFY_FAILURE;
		else if (smtp_parser_ci_equal(item, item_len, SMTP_PARSER_LIT("DELAY")))
			bit = SMTP_DSN_NOTIFY_DELAY;
		else
			return SMTP_PARSE_ERR_PARAM_VALUE;
		if (bits & bit)
			return SMTP_PARSE_ERR_PARAM_VALUE;
		bits |= bit;
		if (p == end)
			break;
		p++; /* the comma; an empty item after it fails above */
	}
	if ((bits & SMTP_DSN_NOTIFY_NEVER) && bits != SMTP_DSN_NOTIFY_NEVER)
		return SMTP_PARSE_ERR_PARAM_VALUE;
	*notify = bits;
	return SMTP_PARSE_OK;
}

/*
 * RFC 3461 §4.2: ORCPT=addr-type ";" xtext, addr-type an atom ("rfc822", "utf-8"), the whole
 * value at most SMTP_ORCPT_MAX characters and the address not empty. Stored as sent.
 */
static enum smtp_parse_result
smtp_parser_orcpt(const unsigned char *val, size_t len, char *dst)
{
	const unsigned char *semi;
	size_t type_len;

	if (len > SMTP_ORCPT_MAX)
		return SMTP_PARSE_ERR_PARAM_VALUE;
	semi = memchr(val, ';', len);
	if (semi == NULL || semi == val || semi + 1 == val + len)
		return SMTP_PARSE_ERR_PARAM_VALUE;
	type_len = (size_t)(semi - val);
	for (size_t i = 0; i < type_len; i++)
		if (!smtp_parser_is_atext(val[i]))
			return SMTP_PARSE_ERR_PARAM_VALUE;
	if (!smtp_parser_xtext_valid(semi + 1, len - type_len - 1))
		return SMTP_PARSE_ERR_PARAM_VALUE;
	smtp_parser_copy(dst, val, len);
	return SMTP_PARSE_OK;
}

/* Case-insensitive verb lookup; SMTP_VERB_NONE if p[0..len) is no verb we know. */
static enum smtp_verb
smtp_parser_verb(const unsigned char *p, size_t len)
{
	for (int v = SMTP_VERB_NONE + 1; v < SMTP_VERB_COUNT; v++)
		if (smtp_parser_ci_equal(p, len, smtp_parser_verbs[v].name,
		                         smtp_parser_verbs[v].len))
			return (enum smtp_verb)v;
	return SMTP_VERB_NONE;
}

/*
 * NOOP, HELP, VRFY, EXPN and the RFC 821 relics: printable ASCII, SP and HT (8-bit was refused
 * by the caller). `required`: VRFY and EXPN need a String (RFC 5321 §4.1.1.6, §4.1.1.7).
 */
static enum smtp_parse_result
smtp_parser_text(const unsigned char *p, const unsigned char *end, bool required)
{
	if (p == end)
		return required ? SMTP_PARSE_ERR_SYNTAX : SMTP_PARSE_OK;
	for (; p < end; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return SMTP_PARSE_ERR_SYNTAX;
	return SMTP_PARSE_OK;
}

/*
 * HELO Domain / EHLO ( Domain / address-literal ). Tolerances: HELO may also give an address
 * literal (many clients do), and the domain may end with one ".". A missing argument or
 * anything after the domain is ERR_SYNTAX; a malformed domain or literal is ERR_DOMAIN.
 */
static enum smtp_parse_result
smtp_parser_helo(struct smtp_cmd *cmd, const unsigned char *p, const unsigned char *end)
{
	const unsigned char *domain = p;
	enum smtp_parse_result res;
	bool utf8 = false;

	if (p == end)
		return SMTP_PARSE_ERR_SYNTAX;
	if (*p == '[')
		res = smtp_parser_literal(&p, end);
	else
		res = smtp_parser_domain(&p, end, true, &utf8);
	if (res != SMTP_PARSE_OK)
		return SMTP_PARSE_ERR_DOMAIN;
	if (p != end)
		return *p == ' ' ? SMTP_PARSE_ERR_SYNTAX : SMTP_PARSE_ERR_DOMAIN;
	cmd->u.helo.domain = (const char *)domain;
	cmd->u.helo.domain_len = (size_t)(end - domain);
	return SMTP_PARSE_OK;
}

/*
 * "MAIL FROM:" Reverse-path [SP Mail-parameters] / "RCPT TO:" Forward-path [SP
 * Rcpt-parameters]. Tolerance: spaces between the colon and the "<" ("MAIL FROM: <a@b>", sent
 * by many clients). A missing or misspelt keyword, or no path at all, is ERR_SYNTAX.
 */
static enum smtp_parse_result
smtp_parser_mail_rcpt(struct smtp_cmd *cmd, const unsigned char *p, const unsigned char *end)
{
	bool is_mail = cmd->verb == SMTP_VERB_MAIL;
	struct smtp_path *path = is_mail ? &cmd->u.mail.path : &cmd->u.rcpt.path;
	size_t kw_len = is_mail ? sizeof("FROM:") - 1 : sizeof("TO:") - 1;
	size_t avail = (size_t)(end - p);
	enum smtp_parse_result res;

	if (avail < kw_len || !smtp_parser_ci_equal(p, kw_len, is_mail ? "FROM:" : "TO:", kw_len)) {
		if (avail > kw_len)
			avail = kw_len;
		return smtp_parser_has_8bit(p, p + avail) ? SMTP_PARSE_ERR_8BIT
		                                          : SMTP_PARSE_ERR_SYNTAX;
	}
	p += kw_len;
	while (p < end && *p == ' ')
		p++;
	if (p == end)
		return SMTP_PARSE_ERR_SYNTAX;
	res = smtp_parser_path(&p, end, is_mail, path);
	if (res != SMTP_PARSE_OK)
		return res;
	return smtp_parser_esmtp_params(cmd, p, end);
}

/*
 * "BDAT" SP chunk-size [SP end-marker] (RFC 3030 §2): 1 to 20 digits that fit a uint64_t,
 * then optionally "LAST" in any case (tolerance: more than one SP before it).
 */
static enum smtp_parse_result
smtp_parser_bdat(struct smtp_cmd *cmd, const unsigned char *p, const unsigned char *end)
{
	const unsigned char *digits = p;
	uint64_t size = 0;
	bool last = false;

	for (; p < end && smtp_parser_is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (p - digits >= SMTP_PARSER_DIGITS_MAX || size > (UINT64_MAX - d) / 10)
			return SMTP_PARSE_ERR_SYNTAX;
		size = size * 10 + d;
	}
	if (p == digits)
		return SMTP_PARSE_ERR_SYNTAX;
	if (p < end) {
		if (*p != ' ')
			return SMTP_PARSE_ERR_SYNTAX;
		while (p < end && *p == ' ')
			p++;
		if (!smtp_parser_ci_equal(p, (size_t)(end - p), SMTP_PARSER_LIT("LAST")))
			return SMTP_PARSE_ERR_SYNTAX;
		last = true;
	}
	cmd->u.bdat.size = size;
	cmd->u.bdat.last = last;
	return SMTP_PARSE_OK;
}

/*
 * "AUTH" SP sasl-mech [SP initial-response] (RFC 4954 §4). The mechanism is 1 to 20 of
 * A-Z 0-9 "-" "_"; tolerance: lower case is accepted too (as verbs are), so the session must
 * compare mechanism names case-insensitively. The initial response is base64 characters or a
 * lone "=" (empty response); decoding it is the session's job.
 */
static enum smtp_parse_result
smtp_parser_auth(struct smtp_cmd *cmd, const unsigned char *p, const unsigned char *end)
{
	const unsigned char *mech = p;
	const unsigned char *mech_end;
	const unsigned char *initial;

	while (p < end && *p != ' ') {
		if (!smtp_parser_is_alnum(*p) && *p != '-' && *p != '_')
			return SMTP_PARSE_ERR_SYNTAX;
		p++;
	}
	if (p == mech || p - mech > SMTP_PARSER_MECH_MAX)
		return SMTP_PARSE_ERR_SYNTAX;
	mech_end = p;
	while (p < end && *p == ' ')
		p++;
	initial = p;
	for (; p < end; p++)
		if (!smtp_parser_is_alnum(*p) && *p != '+' && *p != '/' && *p != '=')
			return SMTP_PARSE_ERR_SYNTAX;
	cmd->u.auth.mech = (const char *)mech;
	cmd->u.auth.mech_len = (size_t)(mech_end - mech);
	if (initial < end) {
		cmd->u.auth.initial = (const char *)initial;
		cmd->u.auth.initial_len = (size_t)(end - initial);
	}
	return SMTP_PARSE_OK;
}
