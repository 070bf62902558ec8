/*
 * test_parser.c: unit tests for smtp/parser.c (one SMTP command line → struct smtp_cmd).
 *
 * Table-driven: each Test() loops over a static table of lines and expected results. Every
 * line is copied into a heap buffer of exactly its length before parsing, so that under
 * -fsanitize=address any read past `len` fails the test. Tables hold `const char *` literals
 * and are walked with plain loops (Criterion's ParameterizedTest crashes on such fields).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/smtp/parser.h"

#define TEST_PARSER_COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct test_parser_case {
	const char *line;
	enum smtp_parse_result want;
};

/* Lines that hold NUL bytes need an explicit length. */
struct test_parser_bin_case {
	const char *line;
	size_t len;
	enum smtp_parse_result want;
	enum smtp_verb verb;
};

/* The copy of the last parsed line; pointers in struct smtp_cmd point into it. */
static char *test_parser_buf;

static enum smtp_parse_result
test_parser_parse_n(const char *line, size_t len, struct smtp_cmd *cmd)
{
	free(test_parser_buf);
	test_parser_buf = malloc(len > 0 ? len : 1);
	cr_assert_not_null(test_parser_buf);
	memcpy(test_parser_buf, line, len);
	return smtp_parser_command(test_parser_buf, len, cmd);
}

static enum smtp_parse_result
test_parser_parse(const char *line, struct smtp_cmd *cmd)
{
	return test_parser_parse_n(line, strlen(line), cmd);
}

static void
test_parser_run(const struct test_parser_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct smtp_cmd cmd;
		enum smtp_parse_result got = test_parser_parse(cases[i].line, &cmd);

		cr_expect_eq(got, cases[i].want, "\"%s\": got %d, want %d", cases[i].line, got,
		             cases[i].want);
	}
}

static void
test_parser_run_bin(const struct test_parser_bin_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct smtp_cmd cmd;
		enum smtp_parse_result got = test_parser_parse_n(cases[i].line, cases[i].len, &cmd);

		cr_expect_eq(got, cases[i].want, "case %zu: got %d, want %d", i, got,
		             cases[i].want);
		cr_expect_eq(cmd.verb, cases[i].verb, "case %zu: verb %d, want %d", i, cmd.verb,
		             cases[i].verb);
	}
}

/*
 * A domain of exactly `len` octets made of labels of at most 63 octets: 62 letters then a dot,
 * with the last label taking the rest (63 at most when one octet would be left after a dot).
 */
static void
test_parser_make_domain(char *dst, size_t len)
{
	size_t label = 0;

	for (size_t i = 0; i < len; i++) {
		if (label == 62 && len - i > 1) {
			dst[i] = '.';
			label = 0;
		} else {
			dst[i] = (char)('a' + label % 26);
			label++;
		}
	}
	dst[len] = '\0';
}

static void
test_parser_fill(char *dst, char c, size_t len)
{
	memset(dst, c, len);
	dst[len] = '\0';
}

/* ---- verbs ---- */

Test(parser, every_verb)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
	} cases[] = {
		{ "HELO example.com", SMTP_VERB_HELO },
		{ "EHLO example.com", SMTP_VERB_EHLO },
		{ "MAIL FROM:<a@example.com>", SMTP_VERB_MAIL },
		{ "RCPT TO:<b@example.com>", SMTP_VERB_RCPT },
		{ "DATA", SMTP_VERB_DATA },
		{ "BDAT 10", SMTP_VERB_BDAT },
		{ "RSET", SMTP_VERB_RSET },
		{ "NOOP", SMTP_VERB_NOOP },
		{ "QUIT", SMTP_VERB_QUIT },
		{ "VRFY user", SMTP_VERB_VRFY },
		{ "EXPN list", SMTP_VERB_EXPN },
		{ "HELP", SMTP_VERB_HELP },
		{ "STARTTLS", SMTP_VERB_STARTTLS },
		{ "AUTH PLAIN", SMTP_VERB_AUTH },
		{ "SEND FROM:<a@example.com>", SMTP_VERB_SEND },
		{ "SOML FROM:<a@example.com>", SMTP_VERB_SOML },
		{ "SAML FROM:<a@example.com>", SMTP_VERB_SAML },
		{ "TURN", SMTP_VERB_TURN },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(cases); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(cases[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             cases[i].line);
		cr_expect_eq(cmd.verb, cases[i].verb, "%s", cases[i].line);
	}
	cr_expect_eq(TEST_PARSER_COUNT(cases), SMTP_VERB_COUNT - 1, "one case per verb");
}

Test(parser, verbs_case_insensitive)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
	} cases[] = {
		{ "helo example.com", SMTP_VERB_HELO },
		{ "eHlO example.com", SMTP_VERB_EHLO },
		{ "mail from:<a@example.com>", SMTP_VERB_MAIL },
		{ "Mail From:<a@example.com>", SMTP_VERB_MAIL },
		{ "rcpt to:<b@example.com>", SMTP_VERB_RCPT },
		{ "rCpT tO:<b@example.com>", SMTP_VERB_RCPT },
		{ "data", SMTP_VERB_DATA },
		{ "bdat 1 last", SMTP_VERB_BDAT },
		{ "rset", SMTP_VERB_RSET },
		{ "noop", SMTP_VERB_NOOP },
		{ "quit", SMTP_VERB_QUIT },
		{ "Quit", SMTP_VERB_QUIT },
		{ "vrfy x", SMTP_VERB_VRFY },
		{ "expn x", SMTP_VERB_EXPN },
		{ "help", SMTP_VERB_HELP },
		{ "starttls", SMTP_VERB_STARTTLS },
		{ "StartTLS", SMTP_VERB_STARTTLS },
		{ "auth plain", SMTP_VERB_AUTH },
		{ "send", SMTP_VERB_SEND },
		{ "soml", SMTP_VERB_SOML },
		{ "saml", SMTP_VERB_SAML },
		{ "turn", SMTP_VERB_TURN },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(cases); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(cases[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             cases[i].line);
		cr_expect_eq(cmd.verb, cases[i].verb, "%s", cases[i].line);
	}
}

Test(parser, rfc821_relics)
{
	static const struct test_parser_case cases[] = {
		{ "SEND FROM:<a@example.com>", SMTP_PARSE_OK },
		{ "SOML FROM:<a@example.com>", SMTP_PARSE_OK },
		{ "SAML FROM:<a@example.com>", SMTP_PARSE_OK },
		{ "SEND", SMTP_PARSE_OK },
		{ "TURN", SMTP_PARSE_OK },
		{ "TURN now", SMTP_PARSE_ERR_SYNTAX },
		{ "SEND FROM:<a@\x01>", SMTP_PARSE_ERR_SYNTAX },
		{ "SAML FROM:<\xc3\xa9@x>", SMTP_PARSE_ERR_8BIT },
	};
	struct smtp_cmd cmd;

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
	cr_expect_eq(test_parser_parse("TURN x", &cmd), SMTP_PARSE_ERR_SYNTAX);
	cr_expect_eq(cmd.verb, SMTP_VERB_TURN);
}

Test(parser, unknown_verbs)
{
	static const char *const lines[] = {
		"FOO",     "MAI",      "MAILX FROM:<a@b>", "XHELO x", "HELO2 x", "DAT",
		"DATAX",   "STARTTL",  "STARTTLSX",        "ETRN x",  "ATRN",    "XCLIENT A=B",
		"RCPTTO:", "1234",     "MAIL:FROM:<>",     "-",       ":",       "QUIT:",
		"HEL O x", "E HLO x.y"
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(lines); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(lines[i], &cmd), SMTP_PARSE_ERR_VERB, "%s",
		             lines[i]);
		cr_expect_eq(cmd.verb, SMTP_VERB_NONE, "%s", lines[i]);
		cr_expect_null(cmd.arg, "%s", lines[i]);
	}
}

Test(parser, empty_and_blank_lines)
{
	static const struct test_parser_case cases[] = {
		{ "", SMTP_PARSE_ERR_VERB },    { " ", SMTP_PARSE_ERR_VERB },
		{ "   ", SMTP_PARSE_ERR_VERB }, { " DATA", SMTP_PARSE_ERR_VERB },
		{ "\t", SMTP_PARSE_ERR_VERB },  { "\tDATA", SMTP_PARSE_ERR_VERB },
		{ "\r", SMTP_PARSE_ERR_VERB },  { "\n", SMTP_PARSE_ERR_VERB },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, tab_is_not_a_verb_separator)
{
	static const struct test_parser_case cases[] = {
		{ "NOOP\tx", SMTP_PARSE_ERR_VERB },
		{ "DATA\t", SMTP_PARSE_ERR_VERB },
		{ "QUIT\t ", SMTP_PARSE_ERR_VERB },
		{ "MAIL\tFROM:<a@b>", SMTP_PARSE_ERR_VERB },
		{ "HELO\texample.com", SMTP_PARSE_ERR_VERB },
		{ "BDAT\t1", SMTP_PARSE_ERR_VERB },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, eight_bit_in_verb)
{
	static const struct test_parser_bin_case cases[] = {
		{ "D\xc3\x81TA", 5, SMTP_PARSE_ERR_8BIT, SMTP_VERB_NONE },
		{ "\xff", 1, SMTP_PARSE_ERR_8BIT, SMTP_VERB_NONE },
		{ "QUIT\x80", 5, SMTP_PARSE_ERR_8BIT, SMTP_VERB_NONE },
		{ "\xef\xbb\xbfHELO x", 9, SMTP_PARSE_ERR_8BIT, SMTP_VERB_NONE },
		{ "M\xc4\xb0IL FROM:<a@b>", 16, SMTP_PARSE_ERR_8BIT, SMTP_VERB_NONE },
	};

	test_parser_run_bin(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, verb_name)
{
	static const char *const names[SMTP_VERB_COUNT] = {
		"?",    "HELO", "EHLO", "MAIL",     "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
		"VRFY", "EXPN", "HELP", "STARTTLS", "AUTH", "SEND", "SOML", "SAML", "TURN",
	};

	for (int v = 0; v < SMTP_VERB_COUNT; v++)
		cr_expect_str_eq(smtp_verb_name((enum smtp_verb)v), names[v]);
	cr_expect_str_eq(smtp_verb_name(SMTP_VERB_COUNT), "?");
	cr_expect_str_eq(smtp_verb_name((enum smtp_verb)1000), "?");
}

Test(parser, verb_set_even_when_arguments_fail)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
		enum smtp_parse_result want;
	} cases[] = {
		{ "MAIL FROM:<bad", SMTP_VERB_MAIL, SMTP_PARSE_ERR_PATH },
		{ "RCPT", SMTP_VERB_RCPT, SMTP_PARSE_ERR_SYNTAX },
		{ "DATA now", SMTP_VERB_DATA, SMTP_PARSE_ERR_SYNTAX },
		{ "EHLO -bad", SMTP_VERB_EHLO, SMTP_PARSE_ERR_DOMAIN },
		{ "BDAT x", SMTP_VERB_BDAT, SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH", SMTP_VERB_AUTH, SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b> FOO=1", SMTP_VERB_MAIL, SMTP_PARSE_ERR_PARAM },
		{ "NOOP \xc3\xa9", SMTP_VERB_NOOP, SMTP_PARSE_ERR_8BIT },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(cases); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(cases[i].line, &cmd), cases[i].want, "%s",
		             cases[i].line);
		cr_expect_eq(cmd.verb, cases[i].verb, "%s", cases[i].line);
	}
}

Test(parser, output_is_zeroed_first)
{
	struct smtp_cmd cmd;

	memset(&cmd, 0xa5, sizeof(cmd));
	cr_assert_eq(test_parser_parse("QUIT", &cmd), SMTP_PARSE_OK);
	cr_expect_null(cmd.arg);
	cr_expect_eq(cmd.arg_len, 0);
	memset(&cmd, 0xa5, sizeof(cmd));
	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b>", &cmd), SMTP_PARSE_OK);
	cr_expect_not(cmd.u.mail.params.size_set);
	cr_expect_eq(cmd.u.mail.params.body, SMTP_BODY_UNSPEC);
	cr_expect_eq(cmd.u.mail.params.ret, SMTP_DSN_RET_UNSPEC);
	cr_expect_str_eq(cmd.u.mail.params.envid, "");
	cr_expect_not(cmd.u.mail.params.auth_set);
	cr_expect_not(cmd.u.mail.params.smtputf8);
	cr_expect_not(cmd.u.mail.path.had_source_route);
	memset(&cmd, 0xa5, sizeof(cmd));
	cr_assert_eq(test_parser_parse("RCPT TO:<a@b>", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.u.rcpt.params.notify, 0);
	cr_expect_str_eq(cmd.u.rcpt.params.orcpt, "");
	memset(&cmd, 0xa5, sizeof(cmd));
	cr_expect_eq(test_parser_parse("", &cmd), SMTP_PARSE_ERR_VERB);
	cr_expect_eq(cmd.verb, SMTP_VERB_NONE);
	cr_expect_null(cmd.arg);
}

/* ---- verbs without arguments, text verbs, arg ---- */

Test(parser, verbs_without_arguments)
{
	static const struct test_parser_case cases[] = {
		{ "DATA", SMTP_PARSE_OK },
		{ "DATA ", SMTP_PARSE_OK },
		{ "DATA    ", SMTP_PARSE_OK },
		{ "DATA x", SMTP_PARSE_ERR_SYNTAX },
		{ "DATA \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "RSET", SMTP_PARSE_OK },
		{ "RSET now", SMTP_PARSE_ERR_SYNTAX },
		{ "QUIT", SMTP_PARSE_OK },
		{ "QUIT bye", SMTP_PARSE_ERR_SYNTAX },
		{ "STARTTLS", SMTP_PARSE_OK },
		{ "STARTTLS ", SMTP_PARSE_OK },
		{ "STARTTLS x", SMTP_PARSE_ERR_SYNTAX },
		{ "TURN", SMTP_PARSE_OK },
		{ "TURN x", SMTP_PARSE_ERR_SYNTAX },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, text_verbs)
{
	static const struct test_parser_case cases[] = {
		{ "NOOP", SMTP_PARSE_OK },
		{ "NOOP hello world", SMTP_PARSE_OK },
		{ "NOOP a\tb", SMTP_PARSE_OK },
		{ "NOOP ~!@#$%^&*()_+{}|:\"<>?", SMTP_PARSE_OK },
		{ "NOOP \x01", SMTP_PARSE_ERR_SYNTAX },
		{ "NOOP a\x7f", SMTP_PARSE_ERR_SYNTAX },
		{ "NOOP a\rb", SMTP_PARSE_ERR_SYNTAX },
		{ "NOOP a\nb", SMTP_PARSE_ERR_SYNTAX },
		{ "NOOP \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "HELP", SMTP_PARSE_OK },
		{ "HELP MAIL", SMTP_PARSE_OK },
		{ "HELP \x1b[0m", SMTP_PARSE_ERR_SYNTAX },
		{ "HELP \xff", SMTP_PARSE_ERR_8BIT },
		{ "VRFY user", SMTP_PARSE_OK },
		{ "VRFY <user@example.com>", SMTP_PARSE_OK },
		{ "VRFY John Smith", SMTP_PARSE_OK },
		{ "VRFY", SMTP_PARSE_ERR_SYNTAX },
		{ "VRFY   ", SMTP_PARSE_ERR_SYNTAX },
		{ "VRFY \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "VRFY a\x01", SMTP_PARSE_ERR_SYNTAX },
		{ "EXPN list", SMTP_PARSE_OK },
		{ "EXPN", SMTP_PARSE_ERR_SYNTAX },
		{ "EXPN \x80", SMTP_PARSE_ERR_8BIT },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, argument_pointer_and_length)
{
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("NOOP hello", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.arg, test_parser_buf + 5);
	cr_expect_eq(cmd.arg_len, 5);

	/* Tolerances: several SP after the verb, trailing SP after the argument. */
	cr_assert_eq(test_parser_parse("VRFY   john smith   ", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.arg, test_parser_buf + 7);
	cr_expect_eq(cmd.arg_len, 10);
	cr_expect(memcmp(cmd.arg, "john smith", 10) == 0);

	cr_assert_eq(test_parser_parse("NOOP   ", &cmd), SMTP_PARSE_OK);
	cr_expect_null(cmd.arg);
	cr_expect_eq(cmd.arg_len, 0);

	/* A trailing HT is not stripped. */
	cr_assert_eq(test_parser_parse("NOOP x\t", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.arg_len, 2);

	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> SIZE=1 ", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.arg, test_parser_buf + 5);
	cr_expect_eq(cmd.arg_len, strlen("FROM:<a@b> SIZE=1"));
}

/* ---- HELO / EHLO ---- */

Test(parser, helo_domains_good)
{
	static const char *const domains[] = {
		"example.com",
		"example.com.",
		"localhost",
		"mx1",
		"a",
		"a-b.c-d.example",
		"a--b.example",
		"xn--bcher-kva.example",
		"123.example",
		"1.2.3.4",
		"EXAMPLE.COM",
		"[1.2.3.4]",
		"[255.255.255.255]",
		"[IPv6:::1]",
		"[IPv6:2001:db8::1]",
		"[ipv6:2001:DB8::1]",
		"[IPv6:::ffff:192.0.2.1]",
		"[x-tag:content]",
		"my_pc",
		"exa_mple.com",
	};
	char line[128];

	for (size_t i = 0; i < TEST_PARSER_COUNT(domains); i++) {
		for (int ehlo = 0; ehlo < 2; ehlo++) {
			struct smtp_cmd cmd;

			snprintf(line, sizeof(line), "%s %s", ehlo ? "EHLO" : "HELO", domains[i]);
			cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "%s", line);
			cr_expect_eq(cmd.verb, ehlo ? SMTP_VERB_EHLO : SMTP_VERB_HELO);
			cr_expect_eq(cmd.u.helo.domain, test_parser_buf + 5, "%s", line);
			cr_expect_eq(cmd.u.helo.domain_len, strlen(domains[i]), "%s", line);
		}
	}
}

Test(parser, helo_trailing_spaces_and_extra_spaces)
{
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("EHLO   example.com   ", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.u.helo.domain_len, 11);
	cr_expect(memcmp(cmd.u.helo.domain, "example.com", 11) == 0);
}

Test(parser, helo_domains_bad)
{
	static const struct test_parser_case cases[] = {
		{ "HELO", SMTP_PARSE_ERR_SYNTAX },
		{ "EHLO", SMTP_PARSE_ERR_SYNTAX },
		{ "EHLO ", SMTP_PARSE_ERR_SYNTAX },
		{ "EHLO example.com extra", SMTP_PARSE_ERR_SYNTAX },
		{ "HELO example.com extra", SMTP_PARSE_ERR_SYNTAX },
		{ "EHLO [1.2.3.4] extra", SMTP_PARSE_ERR_SYNTAX },
		{ "EHLO -example.com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO example-.com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO example.-com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO example..com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO .example.com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO example.com..", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO .", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO exa+mple.com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO example.com\t", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO exa\x01mple.com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO example.com\x7f", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO <example.com>", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO user@example.com", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO [1.2.3]", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO [1.2.3.4", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO 1.2.3.4]", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO [1.2.3.4]x", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO []", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO [IPv6:]", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO [IPv6:zz::1]", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO [tag:]", SMTP_PARSE_ERR_DOMAIN },
		{ "EHLO h\xc3\xa9.example", SMTP_PARSE_ERR_8BIT },
		{ "HELO \xe4\xbe\x8b.example", SMTP_PARSE_ERR_8BIT },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, helo_label_and_domain_limits)
{
	char line[400];
	char label[70];
	struct smtp_cmd cmd;

	test_parser_fill(label, 'a', 63);
	snprintf(line, sizeof(line), "EHLO %s.example", label);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "label 63");
	test_parser_fill(label, 'a', 64);
	snprintf(line, sizeof(line), "EHLO %s.example", label);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_DOMAIN, "label 64");

	strcpy(line, "EHLO ");
	test_parser_make_domain(line + 5, 255);
	cr_expect_eq(strlen(line + 5), 255);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "domain 255");
	cr_expect_eq(cmd.u.helo.domain_len, 255);
	test_parser_make_domain(line + 5, 256);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_DOMAIN, "domain 256");
}

/* ---- address literals ---- */

static const char *const test_parser_literals_good[] = {
	"[0.0.0.0]",
	"[1.2.3.4]",
	"[255.255.255.255]",
	"[192.0.2.1]",
	"[001.002.003.004]",
	"[IPv6:::]",
	"[IPv6:::1]",
	"[IPv6:2001:db8::1]",
	"[IPv6:2001:DB8:0:0:0:0:0:1]",
	"[ipv6:fe80::1]",
	"[IPV6:1:2:3:4:5:6:7:8]",
	"[IPv6:::ffff:1.2.3.4]",
	"[IPv6:ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]",
	"[x-foo:bar]",
	"[-tag:x]", /* Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig may start with "-" */
	"[tag:a@b.c!~]",
	"[X400:c=us;a=;p=x]",
};

static const char *const test_parser_literals_bad[] = {
	"[]",
	"[1.2.3]",
	"[1.2.3.4.5]",
	"[256.1.1.1]",
	"[1.2.3.256]",
	"[1..2.3]",
	"[1.2.3.]",
	"[.1.2.3]",
	"[1.2.3.1234]",
	"[1.2.3.0004]",
	"[a.b.c.d]",
	"[1.2.3.4 ]",
	"[ 1.2.3.4]",
	"[-1.2.3.4]",
	"[IPv6:]",
	"[IPv6:1]",
	"[IPv6:1:2:3:4:5:6:7:8:9]",
	"[IPv6:1::2::3]",
	"[IPv6:12345::1]",
	"[IPv6:g::1]",
	"[IPv6:::1%eth0]",
	"[IPv6:1.2.3.4]",
	"[IPv6: ::1]",
	"[IPv6:::ffff:1.2.3.256]",
	"[IPv6:ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555]",
	"[:x]",
	"[tag:]",
	"[tag-:x]",
	"[ta_g:x]",
	"[tag:a[b]",
	"[tag:a\\b]",
	"[tag:a b]",
	"[tag:\x01]",
	"[1.2.3.4",
	"[[1.2.3.4]]",
};

Test(parser, address_literals_in_paths)
{
	char line[160];

	for (size_t i = 0; i < TEST_PARSER_COUNT(test_parser_literals_good); i++) {
		struct smtp_cmd cmd;
		const char *lit = test_parser_literals_good[i];

		snprintf(line, sizeof(line), "RCPT TO:<user@%s>", lit);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "%s", line);
		cr_expect_str_eq(cmd.u.rcpt.path.addr + cmd.u.rcpt.path.domain_off, lit, "%s",
		                 line);
		cr_expect_eq(cmd.u.rcpt.path.domain_off, 5, "%s", line);
	}
	for (size_t i = 0; i < TEST_PARSER_COUNT(test_parser_literals_bad); i++) {
		struct smtp_cmd cmd;

		snprintf(line, sizeof(line), "MAIL FROM:<user@%s>", test_parser_literals_bad[i]);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH, "%s", line);
	}
}

Test(parser, address_literals_in_ehlo)
{
	char line[160];

	for (size_t i = 0; i < TEST_PARSER_COUNT(test_parser_literals_good); i++) {
		struct smtp_cmd cmd;

		snprintf(line, sizeof(line), "EHLO %s", test_parser_literals_good[i]);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "%s", line);
	}
	for (size_t i = 0; i < TEST_PARSER_COUNT(test_parser_literals_bad); i++) {
		struct smtp_cmd cmd;

		snprintf(line, sizeof(line), "EHLO %s", test_parser_literals_bad[i]);
		cr_expect_neq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "%s", line);
	}
}

Test(parser, general_literal_domain_off_is_the_separator)
{
	struct smtp_cmd cmd;

	/* dcontent may hold "@": domain_off is the real separator, not the last "@". */
	cr_assert_eq(test_parser_parse("RCPT TO:<u@[tag:a@b]>", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.rcpt.path.addr, "u@[tag:a@b]");
	cr_expect_eq(cmd.u.rcpt.path.domain_off, 2);
}

/* ---- paths ---- */

Test(parser, path_basic)
{
	struct smtp_cmd cmd;
	const struct smtp_path *path = &cmd.u.mail.path;

	cr_assert_eq(test_parser_parse("MAIL FROM:<john.smith@example.com>", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(path->addr, "john.smith@example.com");
	cr_expect_eq(path->len, 22);
	cr_expect_eq(path->domain_off, 11);
	cr_expect_not(path->null);
	cr_expect_not(path->postmaster);
	cr_expect_not(path->had_source_route);
	cr_expect_not(path->quoted_local);
	cr_expect_not(path->utf8);

	cr_assert_eq(test_parser_parse("RCPT TO:<Mixed.Case@Example.COM>", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.rcpt.path.addr, "Mixed.Case@Example.COM");
	cr_expect_eq(cmd.u.rcpt.path.domain_off, 11);
}

Test(parser, path_null)
{
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("MAIL FROM:<>", &cmd), SMTP_PARSE_OK);
	cr_expect(cmd.u.mail.path.null);
	cr_expect_str_eq(cmd.u.mail.path.addr, "");
	cr_expect_eq(cmd.u.mail.path.len, 0);
	cr_expect_eq(cmd.u.mail.path.domain_off, 0);

	cr_assert_eq(test_parser_parse("MAIL FROM:<> SIZE=100 BODY=8BITMIME", &cmd), SMTP_PARSE_OK);
	cr_expect(cmd.u.mail.path.null);
	cr_expect_eq(cmd.u.mail.params.size, 100);

	cr_expect_eq(test_parser_parse("RCPT TO:<>", &cmd), SMTP_PARSE_ERR_PATH);
	cr_expect_eq(test_parser_parse("MAIL FROM:<@a:>", &cmd), SMTP_PARSE_ERR_PATH);
	cr_expect_eq(test_parser_parse("MAIL FROM:< >", &cmd), SMTP_PARSE_ERR_PATH);
	cr_expect_eq(test_parser_parse("MAIL FROM:<>>", &cmd), SMTP_PARSE_ERR_SYNTAX);
}

Test(parser, path_postmaster)
{
	static const char *const good[] = { "RCPT TO:<postmaster>", "RCPT TO:<Postmaster>",
		                            "RCPT TO:<POSTMASTER>", "rcpt to: <PostMaster>" };
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<postmaster>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<postmasterx>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<postmaste>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<\"postmaster\">", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<@relay.example:postmaster>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<postmaster >", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<user>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<postmaster@>", SMTP_PARSE_ERR_PATH },
	};
	struct smtp_cmd cmd;

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		cr_expect_eq(test_parser_parse(good[i], &cmd), SMTP_PARSE_OK, "%s", good[i]);
		cr_expect(cmd.u.rcpt.path.postmaster, "%s", good[i]);
		cr_expect_eq(cmd.u.rcpt.path.len, 10, "%s", good[i]);
		cr_expect_eq(cmd.u.rcpt.path.domain_off, 10, "%s", good[i]);
		cr_expect_eq(strcasecmp(cmd.u.rcpt.path.addr, "postmaster"), 0, "%s", good[i]);
	}
	/* Addr keeps the case as sent. */
	cr_assert_eq(test_parser_parse("RCPT TO:<PostMaster>", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.rcpt.path.addr, "PostMaster");

	/* With a domain it is an ordinary mailbox. */
	cr_assert_eq(test_parser_parse("RCPT TO:<postmaster@example.com>", &cmd), SMTP_PARSE_OK);
	cr_expect_not(cmd.u.rcpt.path.postmaster);
	cr_expect_eq(cmd.u.rcpt.path.domain_off, 11);

	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, path_keyword_and_space_after_colon)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM: <a@b.c>", SMTP_PARSE_OK },
		{ "MAIL FROM:   <a@b.c>", SMTP_PARSE_OK },
		{ "RCPT TO: <a@b.c>", SMTP_PARSE_OK },
		{ "MAIL FROM: <>", SMTP_PARSE_OK },
		{ "MAIL  FROM:<a@b.c>", SMTP_PARSE_OK },
		{ "MAIL FROM:<a@b.c>   ", SMTP_PARSE_OK },
		{ "MAIL FROM :<a@b.c>", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM<a@b.c>", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:   ", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL TO:<a@b.c>", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL F", SMTP_PARSE_ERR_SYNTAX },
		{ "RCPT FROM:<a@b.c>", SMTP_PARSE_ERR_SYNTAX },
		{ "RCPT TO", SMTP_PARSE_ERR_SYNTAX },
		{ "RCPT", SMTP_PARSE_ERR_SYNTAX },
		{ "RCPT TO:\t<a@b.c>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:\t<a@b.c>", SMTP_PARSE_ERR_PATH },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, path_requires_angle_brackets)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM:a@b.c", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:a@b.c", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a@b.c", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:a@b.c>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<<a@b.c>>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:postmaster", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:\"a\"@b.c", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a@b.c> <d@e.f>", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b.c>x", SMTP_PARSE_ERR_SYNTAX },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, path_dot_string_local_parts)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM:<a.b.c@example.com>", SMTP_PARSE_OK },
		{ "MAIL FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", SMTP_PARSE_OK },
		{ "MAIL FROM:<user+tag@example.com>", SMTP_PARSE_OK },
		{ "MAIL FROM:<1@example.com>", SMTP_PARSE_OK },
		{ "MAIL FROM:<.a@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a.@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a..b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a(b)@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a,b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a;b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a\\b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a[b]@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a\"b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<user>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<user@>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a@b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<a@example.com@>", SMTP_PARSE_ERR_PATH },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, path_quoted_local_parts)
{
	static const struct {
		const char *line;
		const char *addr;
		size_t domain_off;
	} good[] = {
		{ "MAIL FROM:<\"john doe\"@example.com>", "\"john doe\"@example.com", 11 },
		{ "MAIL FROM:<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com", 7 },
		{ "MAIL FROM:<\"a\\\\b\"@example.com>", "\"a\\\\b\"@example.com", 7 },
		{ "MAIL FROM:<\"a\\ b\"@example.com>", "\"a\\ b\"@example.com", 7 },
		{ "MAIL FROM:<\"\"@example.com>", "\"\"@example.com", 3 },
		{ "MAIL FROM:<\"a@b\"@example.com>", "\"a@b\"@example.com", 6 },
		{ "MAIL FROM:<\"<a>\"@example.com>", "\"<a>\"@example.com", 6 },
		{ "MAIL FROM:<\"a..b.\"@example.com>", "\"a..b.\"@example.com", 8 },
		{ "MAIL FROM:<\"  \"@example.com>", "\"  \"@example.com", 5 },
	};
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<\"abc@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"abc>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\tb\"@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\x01\"@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\x7f\"@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\\\x01\"@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\\\"@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\"b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\".b@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<b.\"a\"@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\">", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"a\\", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<\"", SMTP_PARSE_ERR_PATH },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		cr_expect_str_eq(cmd.u.mail.path.addr, good[i].addr);
		cr_expect_eq(cmd.u.mail.path.len, strlen(good[i].addr));
		cr_expect_eq(cmd.u.mail.path.domain_off, good[i].domain_off, "%s", good[i].line);
		cr_expect(cmd.u.mail.path.quoted_local, "%s", good[i].line);
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, path_source_routes)
{
	static const struct {
		const char *line;
		const char *addr;
	} good[] = {
		{ "MAIL FROM:<@a.example:user@example.com>", "user@example.com" },
		{ "MAIL FROM:<@a.example,@b.example:user@example.com>", "user@example.com" },
		{ "RCPT TO:<@a,@b,@c:\"q u\"@example.com>", "\"q u\"@example.com" },
		{ "RCPT TO:<@relay.example:user@[1.2.3.4]>", "user@[1.2.3.4]" },
	};
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<@a.example,b.example:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a,@:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a,:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a:>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@-a:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a.:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@[1.2.3.4]:user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a::user@example.com>", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a,", SMTP_PARSE_ERR_PATH },
		{ "MAIL FROM:<@a", SMTP_PARSE_ERR_PATH },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;
		const struct smtp_path *path;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		path = cmd.verb == SMTP_VERB_MAIL ? &cmd.u.mail.path : &cmd.u.rcpt.path;
		cr_expect(path->had_source_route, "%s", good[i].line);
		cr_expect_str_eq(path->addr, good[i].addr);
		cr_expect_eq(path->len, strlen(good[i].addr));
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, path_domains)
{
	static const struct test_parser_case cases[] = {
		{ "RCPT TO:<a@b>", SMTP_PARSE_OK },
		{ "RCPT TO:<a@b-c.d>", SMTP_PARSE_OK },
		{ "RCPT TO:<a@1.2>", SMTP_PARSE_OK },
		{ "RCPT TO:<a@xn--bcher-kva.example>", SMTP_PARSE_OK },
		{ "RCPT TO:<a@-b.c>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b-.c>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b..c>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@.b>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b.>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b_c.d>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b c>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b\x01>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b\x7f>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b\t>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a\x01@b>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a\x7f@b>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a\t@b>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@[1.2.3.4]x>", SMTP_PARSE_ERR_PATH },
		{ "RCPT TO:<a@b.c", SMTP_PARSE_ERR_PATH },
	};
	char line[200];
	char label[70];
	struct smtp_cmd cmd;

	test_parser_run(cases, TEST_PARSER_COUNT(cases));

	test_parser_fill(label, 'x', 63);
	snprintf(line, sizeof(line), "RCPT TO:<a@%s.example>", label);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "label 63");
	test_parser_fill(label, 'x', 64);
	snprintf(line, sizeof(line), "RCPT TO:<a@%s.example>", label);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH, "label 64");
}

Test(parser, path_local_part_limit)
{
	char local[80];
	char line[200];
	struct smtp_cmd cmd;

	test_parser_fill(local, 'l', 64);
	snprintf(line, sizeof(line), "MAIL FROM:<%s@example.com>", local);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "local 64");
	cr_expect_eq(cmd.u.mail.path.domain_off, 65);

	test_parser_fill(local, 'l', 65);
	snprintf(line, sizeof(line), "MAIL FROM:<%s@example.com>", local);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH_TOO_LONG, "local 65");

	/* Quotes count: "<62 chars>" is 64 octets, "<63 chars>" is 65. */
	test_parser_fill(local, 'q', 62);
	snprintf(line, sizeof(line), "RCPT TO:<\"%s\"@example.com>", local);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "quoted 64");
	test_parser_fill(local, 'q', 63);
	snprintf(line, sizeof(line), "RCPT TO:<\"%s\"@example.com>", local);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH_TOO_LONG, "quoted 65");
}

Test(parser, path_total_limit)
{
	char domain[300];
	char line[400];
	struct smtp_cmd cmd;

	/* "a@" + 254 = 256 octets: the longest path. */
	test_parser_make_domain(domain, 254);
	snprintf(line, sizeof(line), "RCPT TO:<a@%s>", domain);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "path 256");
	cr_expect_eq(cmd.u.rcpt.path.len, 256);
	cr_expect_eq(strlen(cmd.u.rcpt.path.addr), 256);
	cr_expect_eq(cmd.u.rcpt.path.domain_off, 2);

	/* "ab@" + 254 = 257 octets. */
	snprintf(line, sizeof(line), "RCPT TO:<ab@%s>", domain);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH_TOO_LONG, "path 257");

	/* A domain of 255 is legal alone but makes any path 257+; 256 is over either limit. */
	test_parser_make_domain(domain, 255);
	snprintf(line, sizeof(line), "MAIL FROM:<a@%s>", domain);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH_TOO_LONG, "domain 255");
	test_parser_make_domain(domain, 256);
	snprintf(line, sizeof(line), "MAIL FROM:<a@%s>", domain);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH_TOO_LONG, "domain 256");

	/* The dropped source route does not count. */
	test_parser_make_domain(domain, 254);
	snprintf(line, sizeof(line), "RCPT TO:<@relay.example,@relay2.example:a@%s>", domain);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "path 256 with route");
	cr_expect_eq(cmd.u.rcpt.path.len, 256);
}

Test(parser, path_utf8_good)
{
	static const struct {
		const char *line;
		bool quoted;
	} cases[] = {
		{ "MAIL FROM:<\xc3\xa9l\xc3\xa8ve@example.com>", false },
		{ "MAIL FROM:<user@\xe4\xbe\x8b\xe3\x81\x88.example>", false },
		{ "RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f"
		  "\xb8>",
		  false },
		{ "RCPT TO:<\xf0\x9f\x98\x80@example.com>", false },
		{ "RCPT TO:<\"j\xc3\xb6rg m\"@example.com>", true },
		{ "RCPT TO:<a@b\xc3\xa9-c.example>", false },
		{ "RCPT TO:<\xef\xbf\xbd@example.com>", false },
		{ "RCPT TO:<\xf4\x8f\xbf\xbf@example.com>", false },
		{ "RCPT TO:<\xed\x9f\xbf@example.com>", false },
		{ "RCPT TO:<\xee\x80\x80@example.com>", false },
		{ "MAIL FROM:<\xc2\x80@example.com> SMTPUTF8", false },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(cases); i++) {
		struct smtp_cmd cmd;
		const struct smtp_path *path;

		cr_expect_eq(test_parser_parse(cases[i].line, &cmd), SMTP_PARSE_OK, "case %zu", i);
		path = cmd.verb == SMTP_VERB_MAIL ? &cmd.u.mail.path : &cmd.u.rcpt.path;
		cr_expect(path->utf8, "case %zu", i);
		cr_expect_eq(path->quoted_local, cases[i].quoted, "case %zu", i);
		cr_expect_eq(strlen(path->addr), path->len, "case %zu", i);
	}
}

Test(parser, path_utf8_in_source_route_does_not_mark_addr)
{
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("RCPT TO:<@\xc3\xa9.example:a@b.example>", &cmd),
	             SMTP_PARSE_OK);
	cr_expect(cmd.u.rcpt.path.had_source_route);
	cr_expect_not(cmd.u.rcpt.path.utf8);
	cr_expect_str_eq(cmd.u.rcpt.path.addr, "a@b.example");
}

Test(parser, path_utf8_bad)
{
	static const char *const bad[] = {
		"\x80",             /* lone continuation */
		"\xbf",             /* lone continuation */
		"\xc3",             /* truncated before '@' */
		"\xc3\x41",         /* bad continuation ("A") */
		"\xc0\xaf",         /* overlong '/' */
		"\xc1\xbf",         /* overlong */
		"\xe0\x80\xaf",     /* overlong 3-byte */
		"\xe0\x9f\xbf",     /* overlong 3-byte, top */
		"\xf0\x80\x80\xaf", /* overlong 4-byte */
		"\xf0\x8f\xbf\xbf", /* overlong 4-byte, top */
		"\xed\xa0\x80",     /* surrogate U+D800 */
		"\xed\xbf\xbf",     /* surrogate U+DFFF */
		"\xf4\x90\x80\x80", /* U+110000 */
		"\xf5\x80\x80\x80", /* F5 */
		"\xf8\x88\x80\x80\x80",
		"\xfe",
		"\xff",
		"\xe2\x82",     /* truncated 3-byte */
		"\xf0\x9f\x98", /* truncated 4-byte */
		"\xe2\x28\xa1",
	};
	char line[64];

	for (size_t i = 0; i < TEST_PARSER_COUNT(bad); i++) {
		struct smtp_cmd cmd;

		snprintf(line, sizeof(line), "MAIL FROM:<a%s@example.com>", bad[i]);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH, "local %zu", i);
		snprintf(line, sizeof(line), "RCPT TO:<a@ex%s.com>", bad[i]);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH, "domain %zu", i);
		snprintf(line, sizeof(line), "RCPT TO:<\"a%s\"@example.com>", bad[i]);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PATH, "quoted %zu", i);
	}
}

Test(parser, path_utf8_truncated_at_end_of_line)
{
	static const struct test_parser_bin_case cases[] = {
		{ "MAIL FROM:<a\xe2\x82", 14, SMTP_PARSE_ERR_PATH, SMTP_VERB_MAIL },
		{ "MAIL FROM:<a\xf0", 13, SMTP_PARSE_ERR_PATH, SMTP_VERB_MAIL },
		{ "RCPT TO:<a@b\xc3", 13, SMTP_PARSE_ERR_PATH, SMTP_VERB_RCPT },
		{ "RCPT TO:<\"\xe2\x82", 12, SMTP_PARSE_ERR_PATH, SMTP_VERB_RCPT },
	};

	test_parser_run_bin(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, eight_bit_outside_path)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM:<a@b> SIZE=1\xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "MAIL FROM:<a@b> \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "MAIL FROM:<a@b> ENVID=\xff", SMTP_PARSE_ERR_8BIT },
		{ "MAIL FR\xc3\x96M:<a@b>", SMTP_PARSE_ERR_8BIT },
		{ "MAIL \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "RCPT T\xc3\x96:<a@b>", SMTP_PARSE_ERR_8BIT },
		{ "RCPT TO:<a@b> ORCPT=rfc822;\xc3\xa9@b", SMTP_PARSE_ERR_8BIT },
		{ "RCPT TO:<a@b> NOTIFY=NEVER \xff", SMTP_PARSE_ERR_8BIT },
		{ "HELO \xc3\xa9.example", SMTP_PARSE_ERR_8BIT },
		{ "AUTH PL\xc3\x81IN", SMTP_PARSE_ERR_8BIT },
		{ "AUTH PLAIN \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "BDAT 1\xff", SMTP_PARSE_ERR_8BIT },
		{ "QUIT \x80", SMTP_PARSE_ERR_8BIT },
		{ "STARTTLS \xc3\xa9", SMTP_PARSE_ERR_8BIT },
		{ "EXPN \xc3\xa9", SMTP_PARSE_ERR_8BIT },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, nul_bytes)
{
	static const struct test_parser_bin_case cases[] = {
		{ "\0", 1, SMTP_PARSE_ERR_NUL, SMTP_VERB_NONE },
		{ "\0DATA", 5, SMTP_PARSE_ERR_NUL, SMTP_VERB_NONE },
		{ "DA\0TA", 5, SMTP_PARSE_ERR_NUL, SMTP_VERB_NONE },
		{ "DATA\0", 5, SMTP_PARSE_ERR_NUL, SMTP_VERB_NONE },
		{ "DATA \0", 6, SMTP_PARSE_ERR_NUL, SMTP_VERB_DATA },
		{ "QUIT \0 ", 7, SMTP_PARSE_ERR_NUL, SMTP_VERB_QUIT },
		{ "NOOP a\0b", 8, SMTP_PARSE_ERR_NUL, SMTP_VERB_NOOP },
		{ "MAIL FROM:<a\0@b>", 16, SMTP_PARSE_ERR_NUL, SMTP_VERB_MAIL },
		{ "MAIL FROM:<a@b>\0", 16, SMTP_PARSE_ERR_NUL, SMTP_VERB_MAIL },
		{ "RCPT TO:<a@b> NOTIFY=\0", 22, SMTP_PARSE_ERR_NUL, SMTP_VERB_RCPT },
		{ "RCPT TO:<\"a\0\"@b>", 16, SMTP_PARSE_ERR_NUL, SMTP_VERB_RCPT },
		{ "EHLO exa\0mple.com", 17, SMTP_PARSE_ERR_NUL, SMTP_VERB_EHLO },
		{ "AUTH PLAIN AAAA\0", 16, SMTP_PARSE_ERR_NUL, SMTP_VERB_AUTH },
		{ "BDAT 1\0", 7, SMTP_PARSE_ERR_NUL, SMTP_VERB_BDAT },
		{ "FOO \0", 5, SMTP_PARSE_ERR_NUL, SMTP_VERB_NONE },
		{ "\xff\0", 2, SMTP_PARSE_ERR_NUL, SMTP_VERB_NONE },
	};

	test_parser_run_bin(cases, TEST_PARSER_COUNT(cases));
}

/* ---- MAIL parameters ---- */

Test(parser, mail_param_size)
{
	static const struct {
		const char *line;
		uint64_t size;
	} good[] = {
		{ "MAIL FROM:<a@b> SIZE=0", 0 },
		{ "MAIL FROM:<a@b> SIZE=1000", 1000 },
		{ "MAIL FROM:<a@b> size=42", 42 },
		{ "MAIL FROM:<a@b> SIZE=007", 7 },
		{ "MAIL FROM:<a@b> SIZE=18446744073709551615", UINT64_MAX },
		{ "MAIL FROM:<a@b> SIZE=00000000000000000001", 1 },
		/* RFC 1870 allows 20 digits: beyond 64 bits it saturates (too big, not bad) */
		{ "MAIL FROM:<a@b> SIZE=18446744073709551616", UINT64_MAX },
		{ "MAIL FROM:<a@b> SIZE=99999999999999999999", UINT64_MAX },
	};
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<a@b> SIZE=000000000000000000001", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=-1", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=+1", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=1a", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=1.5", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=0x10", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE==1", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=1\t", SMTP_PARSE_ERR_PARAM_VALUE },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		cr_expect(cmd.u.mail.params.size_set, "%s", good[i].line);
		cr_expect_eq(cmd.u.mail.params.size, good[i].size, "%s", good[i].line);
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, mail_param_body)
{
	static const struct {
		const char *line;
		enum smtp_body_type body;
	} good[] = {
		{ "MAIL FROM:<a@b>", SMTP_BODY_UNSPEC },
		{ "MAIL FROM:<a@b> BODY=7BIT", SMTP_BODY_7BIT },
		{ "MAIL FROM:<a@b> BODY=8BITMIME", SMTP_BODY_8BITMIME },
		{ "MAIL FROM:<a@b> body=8bitmime", SMTP_BODY_8BITMIME },
		{ "MAIL FROM:<a@b> BODY=BINARYMIME", SMTP_BODY_BINARYMIME },
		{ "MAIL FROM:<a@b> Body=BinaryMime", SMTP_BODY_BINARYMIME },
	};
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<a@b> BODY=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> BODY", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> BODY=9BIT", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> BODY=8BIT", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> BODY=8BITMIMEX", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> BODY=7BIT,8BITMIME", SMTP_PARSE_ERR_PARAM_VALUE },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		cr_expect_eq(cmd.u.mail.params.body, good[i].body, "%s", good[i].line);
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, mail_param_smtputf8)
{
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<a@b> SMTPUTF8=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SMTPUTF8=yes", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SMTPUTF", SMTP_PARSE_ERR_PARAM },
		{ "MAIL FROM:<a@b> SMTPUTF8X", SMTP_PARSE_ERR_PARAM },
	};
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> SMTPUTF8", &cmd), SMTP_PARSE_OK);
	cr_expect(cmd.u.mail.params.smtputf8);
	cr_assert_eq(test_parser_parse("MAIL FROM:<\xc3\xa9@b> smtputf8", &cmd), SMTP_PARSE_OK);
	cr_expect(cmd.u.mail.params.smtputf8);
	cr_expect(cmd.u.mail.path.utf8);
	cr_assert_eq(test_parser_parse("MAIL FROM:<\xc3\xa9@b>", &cmd), SMTP_PARSE_OK);
	cr_expect_not(cmd.u.mail.params.smtputf8, "the session rejects this, not the parser");
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, mail_param_ret)
{
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<a@b> RET=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> RET", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> RET=NONE", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> RET=FULLX", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> RET=FULL,HDRS", SMTP_PARSE_ERR_PARAM_VALUE },
	};
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> RET=FULL", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.u.mail.params.ret, SMTP_DSN_RET_FULL);
	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> ret=hdrs", &cmd), SMTP_PARSE_OK);
	cr_expect_eq(cmd.u.mail.params.ret, SMTP_DSN_RET_HDRS);
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, mail_param_envid)
{
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<a@b> ENVID=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a+2bb", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a+2", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a+", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a+GG", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a=b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a\x01", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=a\x7f", SMTP_PARSE_ERR_PARAM_VALUE },
	};
	char envid[120];
	char line[200];
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> ENVID=QQ314159", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.mail.params.envid, "QQ314159");
	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> envid=a+2Bb+3Dc+20", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.mail.params.envid, "a+2Bb+3Dc+20", "kept xtext-encoded");
	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> ENVID=<id@host>", &cmd), SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.mail.params.envid, "<id@host>");
	test_parser_run(bad, TEST_PARSER_COUNT(bad));

	test_parser_fill(envid, 'e', 100);
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> ENVID=%s", envid);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "envid 100");
	cr_expect_eq(strlen(cmd.u.mail.params.envid), 100);
	test_parser_fill(envid, 'e', 101);
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> ENVID=%s", envid);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PARAM_VALUE, "envid 101");
}

Test(parser, mail_param_auth)
{
	static const struct test_parser_case bad[] = {
		{ "MAIL FROM:<a@b> AUTH=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> AUTH", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> AUTH=a+zz", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> AUTH=a=b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> AUTH=+4", SMTP_PARSE_ERR_PARAM_VALUE },
	};
	char value[520];
	char line[600];
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> AUTH=<>", &cmd), SMTP_PARSE_OK);
	cr_expect(cmd.u.mail.params.auth_set);
	cr_expect_str_eq(cmd.u.mail.params.auth, "<>");
	cr_assert_eq(test_parser_parse("MAIL FROM:<a@b> auth=user+2Bx@example.com", &cmd),
	             SMTP_PARSE_OK);
	cr_expect_str_eq(cmd.u.mail.params.auth, "user+2Bx@example.com");
	test_parser_run(bad, TEST_PARSER_COUNT(bad));

	/* At and over SMTP_AUTH_MAIL_MAX (the line itself is allowed to be long here). */
	test_parser_fill(value, 'u', 500);
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> AUTH=%s", value);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "auth 500");
	cr_expect_eq(strlen(cmd.u.mail.params.auth), 500);
	test_parser_fill(value, 'u', 501);
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> AUTH=%s", value);
	cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PARAM_VALUE, "auth 501");
}

Test(parser, mail_all_params_together)
{
	struct smtp_cmd cmd;
	const struct smtp_mail_params *mp = &cmd.u.mail.params;

	cr_assert_eq(test_parser_parse("MAIL FROM:<\xc3\xa9@example.com> SIZE=12345 "
	                               "BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1 AUTH=<>",
	                               &cmd),
	             SMTP_PARSE_OK);
	cr_expect(mp->size_set);
	cr_expect_eq(mp->size, 12345);
	cr_expect_eq(mp->body, SMTP_BODY_8BITMIME);
	cr_expect(mp->smtputf8);
	cr_expect_eq(mp->ret, SMTP_DSN_RET_HDRS);
	cr_expect_str_eq(mp->envid, "id+2B1");
	cr_expect(mp->auth_set);
	cr_expect_str_eq(mp->auth, "<>");
	cr_expect(cmd.u.mail.path.utf8);
}

/* ---- RCPT parameters ---- */

Test(parser, rcpt_param_notify)
{
	static const struct {
		const char *line;
		unsigned notify;
	} good[] = {
		{ "RCPT TO:<a@b> NOTIFY=NEVER", SMTP_DSN_NOTIFY_NEVER },
		{ "RCPT TO:<a@b> notify=never", SMTP_DSN_NOTIFY_NEVER },
		{ "RCPT TO:<a@b> NOTIFY=SUCCESS", SMTP_DSN_NOTIFY_SUCCESS },
		{ "RCPT TO:<a@b> NOTIFY=FAILURE", SMTP_DSN_NOTIFY_FAILURE },
		{ "RCPT TO:<a@b> NOTIFY=DELAY", SMTP_DSN_NOTIFY_DELAY },
		{ "RCPT TO:<a@b> NOTIFY=FAILURE,DELAY",
		  SMTP_DSN_NOTIFY_FAILURE | SMTP_DSN_NOTIFY_DELAY },
		{ "RCPT TO:<a@b> NOTIFY=success,Failure,DELAY",
		  SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_FAILURE | SMTP_DSN_NOTIFY_DELAY },
		{ "RCPT TO:<a@b> NOTIFY=DELAY,SUCCESS",
		  SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_DELAY },
	};
	static const struct test_parser_case bad[] = {
		{ "RCPT TO:<a@b> NOTIFY=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=DELAY,NEVER", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=NEVER,NEVER", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=SUCCESS,", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=,SUCCESS", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=SUCCESS,,DELAY", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=SOMETIMES", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=SUCCESS;DELAY", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=,", SMTP_PARSE_ERR_PARAM_VALUE },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		cr_expect_eq(cmd.u.rcpt.params.notify, good[i].notify, "%s", good[i].line);
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

Test(parser, rcpt_param_orcpt)
{
	static const char *const good[] = {
		"rfc822;a@b.example",
		"RFC822;user+2Bx@example.com",
		"utf-8;j\\x{F6}rg@example.com",
		"x-type;<weird>",
	};
	static const struct test_parser_case bad[] = {
		{ "RCPT TO:<a@b> ORCPT=", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=;a@b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822;", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc(822);a@b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc.822;a@b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822;a=b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822;a+2b", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822;a;b+", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822;a b", SMTP_PARSE_ERR_PARAM },
	};
	char value[520];
	char line[600];

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		snprintf(line, sizeof(line), "RCPT TO:<a@b> ORCPT=%s", good[i]);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "%s", line);
		cr_expect_str_eq(cmd.u.rcpt.params.orcpt, good[i]);
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));

	memcpy(value, "rfc822;", 7);
	test_parser_fill(value + 7, 'o', 493);
	snprintf(line, sizeof(line), "RCPT TO:<a@b> ORCPT=%s", value);
	{
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "orcpt 500");
		cr_expect_eq(strlen(cmd.u.rcpt.params.orcpt), 500);
		test_parser_fill(value + 7, 'o', 494);
		snprintf(line, sizeof(line), "RCPT TO:<a@b> ORCPT=%s", value);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_ERR_PARAM_VALUE,
		             "orcpt 501");
	}
}

Test(parser, rcpt_both_params)
{
	struct smtp_cmd cmd;

	cr_assert_eq(
	        test_parser_parse("RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b", &cmd),
	        SMTP_PARSE_OK);
	cr_expect_eq(cmd.u.rcpt.params.notify, SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_FAILURE);
	cr_expect_str_eq(cmd.u.rcpt.params.orcpt, "rfc822;a@b");
	cr_expect_str_eq(cmd.u.rcpt.path.addr, "a@b");
}

/* ---- parameter framing ---- */

Test(parser, params_repeated)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM:<a@b> SIZE=1 SIZE=2", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=1 size=1", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> BODY=7BIT BODY=8BITMIME", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> RET=FULL RET=FULL", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> ENVID=x ENVID=y", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> AUTH=<> AUTH=<>", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE=1 BODY=7BIT SIZE=1", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "RCPT TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;a", SMTP_PARSE_ERR_PARAM_VALUE },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, params_unknown_or_wrong_verb)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM:<a@b> NOTIFY=NEVER", SMTP_PARSE_ERR_PARAM },
		{ "MAIL FROM:<a@b> ORCPT=rfc822;a@b", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> SIZE=1", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> BODY=8BITMIME", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> SMTPUTF8", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> RET=FULL", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> ENVID=x", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> AUTH=<>", SMTP_PARSE_ERR_PARAM },
		{ "MAIL FROM:<a@b> XFOO=bar", SMTP_PARSE_ERR_PARAM },
		{ "MAIL FROM:<a@b> X-FOO", SMTP_PARSE_ERR_PARAM },
		{ "MAIL FROM:<a@b> MT-PRIORITY=3", SMTP_PARSE_ERR_PARAM },
		{ "MAIL FROM:<a@b> SIZE=1 XFOO", SMTP_PARSE_ERR_PARAM },
		{ "RCPT TO:<a@b> FOO=\x01", SMTP_PARSE_ERR_PARAM },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

Test(parser, params_framing)
{
	static const struct test_parser_case cases[] = {
		{ "MAIL FROM:<a@b>SIZE=1", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b>\tSIZE=1", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b> =1", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b> -X=1", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b> SI_ZE=1", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b> SIZE=1\tBODY=7BIT", SMTP_PARSE_ERR_PARAM_VALUE },
		{ "MAIL FROM:<a@b> SIZE\x01=1", SMTP_PARSE_ERR_SYNTAX },
		{ "MAIL FROM:<a@b> SIZE=1 BODY=7BIT", SMTP_PARSE_OK },
		{ "MAIL FROM:<a@b> SIZE=1  BODY=7BIT", SMTP_PARSE_OK },
		{ "MAIL FROM:<a@b>   SIZE=1", SMTP_PARSE_OK },
		{ "MAIL FROM:<a@b> SIZE=1 ", SMTP_PARSE_OK },
		{ "MAIL FROM:<a@b> SIZE=1   ", SMTP_PARSE_OK },
		{ "MAIL FROM:<a@b> ", SMTP_PARSE_OK },
		{ "RCPT TO:<a@b> NOTIFY=NEVER ", SMTP_PARSE_OK },
	};

	test_parser_run(cases, TEST_PARSER_COUNT(cases));
}

/* ---- BDAT ---- */

Test(parser, bdat)
{
	static const struct {
		const char *line;
		uint64_t size;
		bool last;
	} good[] = {
		{ "BDAT 0", 0, false },
		{ "BDAT 1000", 1000, false },
		{ "BDAT 0 LAST", 0, true },
		{ "BDAT 86 LAST", 86, true },
		{ "bdat 5 last", 5, true },
		{ "BDAT 5 Last", 5, true },
		{ "BDAT 5  LAST", 5, true },
		{ "BDAT 5 LAST  ", 5, true },
		{ "BDAT 18446744073709551615", UINT64_MAX, false },
		{ "BDAT 00000000000000000042 LAST", 42, true },
	};
	static const struct test_parser_case bad[] = {
		{ "BDAT", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT ", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT x", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT -1", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT +1", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1x", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 0x10", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1.5", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 18446744073709551616", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 99999999999999999999", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 000000000000000000001", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 123456789012345678901234567890", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT LAST", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1 LAST x", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1 FIRST", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1 LASTX", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1 LAS", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1\tLAST", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1 2", SMTP_PARSE_ERR_SYNTAX },
		{ "BDAT 1LAST", SMTP_PARSE_ERR_SYNTAX },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		cr_expect_eq(cmd.u.bdat.size, good[i].size, "%s", good[i].line);
		cr_expect_eq(cmd.u.bdat.last, good[i].last, "%s", good[i].line);
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

/* ---- AUTH ---- */

Test(parser, auth)
{
	static const struct {
		const char *line;
		const char *mech;
		const char *initial; /* NULL if none */
	} good[] = {
		{ "AUTH PLAIN", "PLAIN", NULL },
		{ "AUTH PLAIN dGVzdA==", "PLAIN", "dGVzdA==" },
		{ "AUTH PLAIN AHVzZXIAcGFzcw==", "PLAIN", "AHVzZXIAcGFzcw==" },
		{ "AUTH PLAIN =", "PLAIN", "=" },
		{ "AUTH LOGIN", "LOGIN", NULL },
		{ "AUTH LOGIN dXNlcg==", "LOGIN", "dXNlcg==" },
		{ "AUTH CRAM-MD5", "CRAM-MD5", NULL },
		{ "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9", "SCRAM-SHA-256", "biwsbj11c2VyLHI9" },
		{ "AUTH X_MECH a+b/c", "X_MECH", "a+b/c" },
		{ "auth plain", "plain", NULL },
		{ "AUTH PLAIN   dGVzdA==  ", "PLAIN", "dGVzdA==" },
		{ "AUTH ABCDEFGHIJKLMNOPQRST", "ABCDEFGHIJKLMNOPQRST", NULL },
	};
	static const struct test_parser_case bad[] = {
		{ "AUTH", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH ", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH ABCDEFGHIJKLMNOPQRSTU", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PL.AIN", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PLAIN\tdGVzdA==", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PLAIN dGVz dA==", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PLAIN dGVz*", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PLAIN dGVz-", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PLAIN dGVz\x01", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH =", SMTP_PARSE_ERR_SYNTAX },
		{ "AUTH PLAIN\x01", SMTP_PARSE_ERR_SYNTAX },
	};

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(good[i].line, &cmd), SMTP_PARSE_OK, "%s",
		             good[i].line);
		cr_expect_eq(cmd.u.auth.mech_len, strlen(good[i].mech), "%s", good[i].line);
		cr_expect(memcmp(cmd.u.auth.mech, good[i].mech, cmd.u.auth.mech_len) == 0, "%s",
		          good[i].line);
		if (good[i].initial == NULL) {
			cr_expect_null(cmd.u.auth.initial, "%s", good[i].line);
			cr_expect_eq(cmd.u.auth.initial_len, 0);
		} else {
			cr_assert_not_null(cmd.u.auth.initial, "%s", good[i].line);
			cr_expect_eq(cmd.u.auth.initial_len, strlen(good[i].initial), "%s",
			             good[i].line);
			cr_expect(memcmp(cmd.u.auth.initial, good[i].initial,
			                 cmd.u.auth.initial_len) == 0,
			          "%s", good[i].line);
		}
	}
	test_parser_run(bad, TEST_PARSER_COUNT(bad));
}

/* ---- xtext ---- */

Test(parser, xtext_decode)
{
	static const struct {
		const char *in;
		const char *out;
		long len;
	} good[] = {
		{ "", "", 0 },     { "abc", "abc", 3 },   { "a+2Bb", "a+b", 3 },
		{ "+3D", "=", 1 }, { "a+20b", "a b", 3 }, { "+7E+21", "~!", 2 },
		{ "<>", "<>", 2 },
	};
	static const char *const bad[] = { "+2b", "+2",  "+",    "a+",   "+G0",     "+0g",
		                           "a=b", "a b", "\x01", "\x7f", "\xc3\xa9" };
	char dst[64];

	for (size_t i = 0; i < TEST_PARSER_COUNT(good); i++) {
		long n = smtp_xtext_decode(good[i].in, strlen(good[i].in), dst, sizeof(dst));

		cr_expect_eq(n, good[i].len, "%s", good[i].in);
		cr_expect_str_eq(dst, good[i].out, "%s", good[i].in);
	}
	for (size_t i = 0; i < TEST_PARSER_COUNT(bad); i++)
		cr_expect_eq(smtp_xtext_decode(bad[i], strlen(bad[i]), dst, sizeof(dst)), -1, "%s",
		             bad[i]);

	/* Escaped NUL and 0xFF decode to raw octets. */
	cr_expect_eq(smtp_xtext_decode("a+00b+FF", 8, dst, sizeof(dst)), 4);
	cr_expect(memcmp(dst, "a\0b\xff", 5) == 0);

	/* dst sizing: the decoded text plus its NUL. */
	cr_expect_eq(smtp_xtext_decode("abc", 3, dst, 4), 3);
	cr_expect_eq(smtp_xtext_decode("abc", 3, dst, 3), -1);
	cr_expect_eq(smtp_xtext_decode("+41+42", 6, dst, 3), 2);
	cr_expect_str_eq(dst, "AB");
	cr_expect_eq(smtp_xtext_decode("", 0, dst, 1), 0);
	cr_expect_eq(smtp_xtext_decode("", 0, dst, 0), -1);
	cr_expect_eq(smtp_xtext_decode("a", 1, NULL, 10), -1);
}

Test(parser, xtext_encode)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "", "" },
		{ "abc", "abc" },
		{ "a+b=c d", "a+2Bb+3Dc+20d" },
		{ "~!", "~!" },
		{ "\t\x7f", "+09+7F" },
		{ "<user@example.com>", "<user@example.com>" },
		{ "\xc3\xa9", "+C3+A9" },
	};
	char dst[64];

	for (size_t i = 0; i < TEST_PARSER_COUNT(cases); i++) {
		long n = smtp_xtext_encode(cases[i].in, strlen(cases[i].in), dst, sizeof(dst));

		cr_expect_eq(n, (long)strlen(cases[i].out), "%s", cases[i].out);
		cr_expect_str_eq(dst, cases[i].out);
	}
	cr_expect_eq(smtp_xtext_encode("\0", 1, dst, sizeof(dst)), 3);
	cr_expect_str_eq(dst, "+00");
	cr_expect_eq(smtp_xtext_encode("\xff", 1, dst, sizeof(dst)), 3);
	cr_expect_str_eq(dst, "+FF");

	/* dst sizing. */
	cr_expect_eq(smtp_xtext_encode("ab", 2, dst, 3), 2);
	cr_expect_eq(smtp_xtext_encode("ab", 2, dst, 2), -1);
	cr_expect_eq(smtp_xtext_encode("+", 1, dst, 4), 3);
	cr_expect_eq(smtp_xtext_encode("+", 1, dst, 3), -1);
	cr_expect_eq(smtp_xtext_encode("", 0, dst, 0), -1);
	cr_expect_eq(smtp_xtext_encode("a", 1, NULL, 10), -1);
}

Test(parser, xtext_round_trip)
{
	char raw[256];
	char enc[256 * 3 + 1];
	char dec[257];
	long n;

	for (int i = 0; i < 256; i++)
		raw[i] = (char)i;
	n = smtp_xtext_encode(raw, sizeof(raw), enc, sizeof(enc));
	cr_assert_gt(n, 0);
	cr_expect_eq((size_t)n, strlen(enc));
	/* 94 printable octets minus "+" and "=" stay as they are; the 164 others take 3. */
	cr_expect_eq(n, 92 + 164 * 3);
	n = smtp_xtext_decode(enc, (size_t)n, dec, sizeof(dec));
	cr_assert_eq(n, 256);
	cr_expect(memcmp(raw, dec, 256) == 0);

	/* Everything the encoder produces is accepted by ENVID=. */
	{
		char line[800];
		struct smtp_cmd cmd;

		n = smtp_xtext_encode("id=1+2 \x01", 8, enc, sizeof(enc));
		cr_assert_gt(n, 0);
		snprintf(line, sizeof(line), "MAIL FROM:<a@b> ENVID=%s", enc);
		cr_expect_eq(test_parser_parse(line, &cmd), SMTP_PARSE_OK, "%s", line);
		n = smtp_xtext_decode(cmd.u.mail.params.envid, strlen(cmd.u.mail.params.envid), dec,
		                      sizeof(dec));
		cr_expect_eq(n, 8);
		cr_expect(memcmp(dec, "id=1+2 \x01", 8) == 0);
	}
}

/* ---- robustness: no read past len ---- */

static const char *const test_parser_valid_lines[] = {
	"HELO example.com",
	"EHLO [IPv6:2001:db8::1]",
	"EHLO [1.2.3.4]",
	"EHLO [x-tag:content]",
	"EHLO mail.example.",
	"MAIL FROM:<>",
	"MAIL FROM:<john.smith@example.com> SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS "
	"ENVID=id+2B1 AUTH=<>",
	"MAIL FROM: <@a.example,@b.example:\"q u\\\"x\"@[IPv6:::1]>",
	"MAIL FROM:<\xc3\xa9l\xc3\xa8ve@\xe4\xbe\x8b.example> SMTPUTF8",
	"RCPT TO:<postmaster>",
	"RCPT TO:<u@[tag:a@b]> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;u+2B1@x",
	"RCPT TO:<\xf0\x9f\x98\x80@[192.0.2.1]> NOTIFY=NEVER",
	"DATA",
	"BDAT 18446744073709551615 LAST",
	"RSET",
	"NOOP hello\tworld",
	"QUIT",
	"VRFY user",
	"EXPN list",
	"HELP",
	"STARTTLS",
	"AUTH PLAIN dGVzdA==",
	"AUTH PLAIN =",
	"SEND FROM:<a@b>",
	"TURN",
};

Test(parser, every_prefix_no_overread)
{
	for (size_t i = 0; i < TEST_PARSER_COUNT(test_parser_valid_lines); i++) {
		const char *full = test_parser_valid_lines[i];
		size_t n = strlen(full);
		struct smtp_cmd cmd;

		cr_expect_eq(test_parser_parse(full, &cmd), SMTP_PARSE_OK, "%s", full);
		for (size_t len = 0; len <= n; len++) {
			enum smtp_parse_result res = test_parser_parse_n(full, len, &cmd);

			cr_expect(res >= SMTP_PARSE_OK && res <= SMTP_PARSE_ERR_NUL, "%s/%zu", full,
			          len);
			/* Every suffix too: starts mid-token, still inside the buffer. */
			res = test_parser_parse_n(full + len, n - len, &cmd);
			cr_expect(res >= SMTP_PARSE_OK && res <= SMTP_PARSE_ERR_NUL, "%s+%zu", full,
			          len);
		}
	}
}

/* Deterministic mutations of the valid lines; invariants must hold whatever the result. */
Test(parser, mutations_keep_invariants)
{
	static const unsigned char bytes[] = { 0x00, 0x01, '\t', ' ',  '"',  '\\', '<',
		                               '>',  '@',  ',',  ':',  '[',  ']',  '.',
		                               '=',  '+',  ';',  '-',  'A',  '0',  0x7f,
		                               0x80, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xff };
	uint32_t seed = 12345;
	char line[SMTP_LINE_MAX];

	for (int round = 0; round < 20000; round++) {
		const char *base =
		        test_parser_valid_lines[round % TEST_PARSER_COUNT(test_parser_valid_lines)];
		size_t n = strlen(base);
		struct smtp_cmd cmd;
		enum smtp_parse_result res;
		int edits;

		memcpy(line, base, n);
		seed = seed * 1103515245u + 12345u;
		edits = 1 + (int)((seed >> 16) % 3);
		for (int e = 0; e < edits; e++) {
			size_t pos;

			seed = seed * 1103515245u + 12345u;
			pos = (seed >> 8) % n;
			seed = seed * 1103515245u + 12345u;
			line[pos] = (char)bytes[(seed >> 16) % sizeof(bytes)];
		}
		seed = seed * 1103515245u + 12345u;
		if ((seed >> 16) % 4 == 0)
			n = (seed >> 4) % (n + 1); /* also truncate */

		res = test_parser_parse_n(line, n, &cmd);
		cr_assert(res >= SMTP_PARSE_OK && res <= SMTP_PARSE_ERR_NUL);
		if (res == SMTP_PARSE_OK &&
		    (cmd.verb == SMTP_VERB_MAIL || cmd.verb == SMTP_VERB_RCPT)) {
			const struct smtp_path *path =
			        cmd.verb == SMTP_VERB_MAIL ? &cmd.u.mail.path : &cmd.u.rcpt.path;

			cr_assert_eq(strlen(path->addr), path->len);
			cr_assert_leq(path->len, SMTP_PATH_MAX);
			cr_assert_leq(path->domain_off, path->len);
			cr_assert(path->null == (path->len == 0));
			if (path->domain_off < path->len)
				cr_assert_eq(path->addr[path->domain_off - 1], '@');
		}
		if (cmd.arg != NULL) {
			cr_assert_geq(cmd.arg, test_parser_buf);
			cr_assert_leq(cmd.arg + cmd.arg_len, test_parser_buf + n);
		}
	}
}

Test(parser, underscore_only_in_helo)
{
	struct smtp_cmd cmd;

	cr_assert_eq(test_parser_parse("EHLO DESKTOP_42.corp.example", &cmd), SMTP_PARSE_OK);
	cr_assert_eq(test_parser_parse("RCPT TO:<u@exa_mple.com>", &cmd), SMTP_PARSE_ERR_PATH);
	cr_assert_eq(test_parser_parse("MAIL FROM:<u@my_pc>", &cmd), SMTP_PARSE_ERR_PATH);
}
