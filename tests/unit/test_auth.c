/*
 * test_auth.c: auth.c, the users file, password checks, base64, SASL PLAIN and the throttle.
 *
 * Hashes are made at test time: $6$/$5$ by `openssl passwd` (through popen), $y$, bcrypt and
 * "$6$rounds=" with crypt_gensalt_rn + crypt_rn. Users files are written to temporary files.
 * Error messages are compared whole ("FILE:LINE: message"): an administrator reads them. Tables
 * are looped over inside one Test() each (Criterion's ParameterizedTest crashes with
 * `const char *` fields pointing at literals); every failure names its row. The throttle runs
 * on a fake clock: the tests pass `now` and never sleep.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "petrel/auth.h"

#define TEST_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* openssl passwd -6 -salt fixedsalt secret */
#define TEST_HASH6                                                                                 \
	"$6$fixedsalt$7AmDuj.e.Vmh2imaMoejkt2h1reZvJYdc8EOamC0hD8MHW."                             \
	"aBz4Gt1yxd9b3EkaCPJSFcK5PWFYn"                                                            \
	"BxS37hDE30"

/* ---- helpers ---- */

/* Write `len` bytes to a new temporary file; returns its path (malloc'd). */
static char *
test_auth_file(const char *text, size_t len)
{
	char *path = strdup("/tmp/petrel-test-auth-XXXXXX");
	int fd;

	cr_assert_not_null(path);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp");
	cr_assert_eq(write(fd, text, len), (ssize_t)len, "write %s", path);
	close(fd);
	return path;
}

/* Load `text` and expect success. *path gets the file (unlink and free it). */
static struct auth_users *
test_auth_load_ok(const char *text, char **path)
{
	struct auth_users *u;
	char *err = NULL;

	*path = test_auth_file(text, strlen(text));
	u = auth_users_load(*path, &err);
	cr_assert_not_null(u, "load failed: %s\n--- file:\n%s", err ? err : "(no message)", text);
	cr_assert_null(err);
	return u;
}

/* `openssl passwd -<method> -salt <salt> <pass>` (alphanumeric arguments only). */
static char *
test_auth_openssl(int method, const char *salt, const char *pass)
{
	char cmd[256], out[256];
	FILE *p;
	size_t len;

	snprintf(cmd, sizeof(cmd), "openssl passwd -%d -salt '%s' '%s' 2>/dev/null", method, salt,
	         pass);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	cr_assert_not_null(fgets(out, sizeof(out), p), "no output from: %s", cmd);
	cr_assert_eq(pclose(p), 0, "failed: %s", cmd);
	len = strcspn(out, "\r\n");
	out[len] = '\0';
	cr_assert(len > 10 && out[0] == '$', "odd output from %s: %s", cmd, out);
	return strdup(out);
}

/* crypt_rn(pass, crypt_gensalt_rn(prefix, count)): the hash as mkpasswd would make it. */
static char *
test_auth_crypt(const char *prefix, unsigned long count, const char *pass)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *out;

	cr_assert_not_null(cd);
	cr_assert_not_null(crypt_gensalt_rn(prefix, count, NULL, 0, setting, (int)sizeof(setting)),
	                   "crypt_gensalt_rn(%s, %lu)", prefix, count);
	cr_assert_not_null(crypt_rn(pass, setting, cd, (int)sizeof(*cd)), "crypt_rn %s", setting);
	out = strdup(cd->output);
	free(cd);
	return out;
}

static bool
test_auth_check(const struct auth_users *u, const char *name, const char *pass)
{
	return auth_users_check(u, name, strlen(name), pass, strlen(pass));
}

static void
test_auth_done(struct auth_users *u, char *path)
{
	auth_users_free(u);
	unlink(path);
	free(path);
}

/* ---- users file ---- */

Test(auth, users_good)
{
	char *h6 = test_auth_openssl(6, "saltsalt", "alicepw");
	char *h5 = test_auth_openssl(5, "salt5", "carolpw");
	char *hy = test_auth_crypt("$y$", 0, "bobpw");
	char *hr = test_auth_crypt("$6$", 10000, "davepw");
	char *hb = test_auth_crypt("$2b$", 4, "erinpw");
	char name255[AUTH_NAME_MAX + 1];
	char text[4096], *path;
	struct auth_users *u;

	cr_assert_eq(strncmp(hy, "$y$", 3), 0, "%s", hy);
	cr_assert_eq(strncmp(hr, "$6$rounds=10000$", 16), 0, "%s", hr);
	cr_assert_eq(strncmp(hb, "$2b$04$", 7), 0, "%s", hb);
	memset(name255, 'n', AUTH_NAME_MAX);
	name255[AUTH_NAME_MAX] = '\0';
	snprintf(text, sizeof(text),
	         "# petrel users\n"
	         "\n"
	         "alice:%s\n"
	         "   # indented comment\n"
	         "bob:%s\r\n"
	         "carol:%s   \t\n"
	         " \t \n"
	         "dave:%s\n"
	         "erin:%s\n"
	         "Alice:%s\n"
	         "%s:%s\n"
	         "utf8-\xc3\xa9l\xc3\xa8ve:%s", /* no final newline */
	         h6, hy, h5, hr, hb, TEST_HASH6, name255, TEST_HASH6, TEST_HASH6);
	u = test_auth_load_ok(text, &path);
	cr_expect_eq(auth_users_count(u), 8);

	cr_expect(test_auth_check(u, "alice", "alicepw"), "$6$ from openssl passwd -6");
	cr_expect(test_auth_check(u, "bob", "bobpw"), "$y$ from crypt_gensalt (CRLF line)");
	cr_expect(test_auth_check(u, "carol", "carolpw"), "$5$ (trailing blanks)");
	cr_expect(test_auth_check(u, "dave", "davepw"), "$6$rounds=");
	cr_expect(test_auth_check(u, "erin", "erinpw"), "$2b$");
	cr_expect(test_auth_check(u, "Alice", "secret"));
	cr_expect(test_auth_check(u, name255, "secret"), "255-octet name");
	cr_expect(test_auth_check(u, "utf8-\xc3\xa9l\xc3\xa8ve", "secret"), "last line, no LF");
	test_auth_done(u, path);
	free(h6);
	free(h5);
	free(hy);
	free(hr);
	free(hb);
}

Test(auth, users_empty_file)
{
	char *path;
	struct auth_users *u = test_auth_load_ok("# nobody yet\n\n", &path);

	cr_expect_eq(auth_users_count(u), 0);
	cr_expect_not(test_auth_check(u, "alice", "secret"));
	test_auth_done(u, path);
	cr_expect_eq(auth_users_count(NULL), 0);
	auth_users_free(NULL);
}

Test(auth, users_errors)
{
	static const struct {
		const char *text;
		const char *msg; /* after "FILE:" */
	} cases[] = {
		{ "alice\n", "1: missing ':' (expected name:hash)" },
		{ "# c\n\n:" TEST_HASH6 "\n", "3: empty name" },
		{ "alice:\n", "1: empty hash" },
		{ "alice:   \n", "1: empty hash" },
		{ "alice:!\n", "1: hash is not a crypt(3) string" },
		{ "alice:*\n", "1: hash is not a crypt(3) string" },
		{ "alice:!" TEST_HASH6 "\n", "1: hash is not a crypt(3) string" },
		{ "alice: " TEST_HASH6 "\n", "1: hash is not a crypt(3) string" },
		{ "alice:" TEST_HASH6 " x\n", "1: hash is not a crypt(3) string" },
		{ "alice:" TEST_HASH6 ":0:99999:7:::\n", "1: hash is not a crypt(3) string" },
		{ "alice:secret\n", "1: hash is not a crypt(3) string" },
		{ "alice:abcdefghijklmnopqrstuvwxyz\n", "1: hash is not a crypt(3) string" },
		{ "alice:$9$abc$def\n", "1: hash is not a crypt(3) string of a supported method" },
		{ "alice:$1$ab$b2XAKzcGJvTR.javvk3280\n",
		  "1: weak legacy hash method (use $y$ or $6$)" },
		{ "alice:abJnggxhB/yWI\n", "1: weak legacy hash method (use $y$ or $6$)" },
		{ "alice:$3$$8846f7eaee8fb117ad06bdd830b7586c\n",
		  "1: weak legacy hash method (use $y$ or $6$)" },
		{ "alice:$6$fixedsalt$7AmDuj\n", "1: incomplete or malformed hash" },
		{ "alice:$6$fixedsalt\n", "1: incomplete or malformed hash" },
		{ "alice:$6$\n", "1: incomplete or malformed hash" },
		{ "alice:$y$j9T$salt$\n", "1: incomplete or malformed hash" },
		{ "alice:$y$j9T$abc\n", "1: incomplete or malformed hash" },
		{ "alice:$2b$05$abcdefghijklmnopqrstuu\n", "1: incomplete or malformed hash" },
		{ "al ice:" TEST_HASH6 "\n", "1: name contains a blank or a control character" },
		{ " alice:" TEST_HASH6 "\n", "1: name contains a blank or a control character" },
		{ "al\x01ice:" TEST_HASH6 "\n", "1: name contains a blank or a control character" },
		{ "alice:" TEST_HASH6 "\nbob:" TEST_HASH6 "\nalice:" TEST_HASH6 "\n",
		  "3: duplicate name (first at line 1)" },
		{ "alice:" TEST_HASH6 "\nalice:" TEST_HASH6 "\nalice:" TEST_HASH6 "\n",
		  "2: duplicate name (first at line 1)" },
		/* The first error in the file wins, whichever kind it is. */
		{ "bob:" TEST_HASH6 "\nalice:" TEST_HASH6 "\nbob:" TEST_HASH6 "\nbad\n",
		  "3: duplicate name (first at line 1)" },
		{ "bob:" TEST_HASH6 "\nbad\nbob:" TEST_HASH6 "\n",
		  "2: missing ':' (expected name:hash)" },
		/* Names are case-sensitive, so these are not duplicates; the error is later. */
		{ "alice:" TEST_HASH6 "\nAlice:" TEST_HASH6 "\nALICE:x\n",
		  "3: hash is not a crypt(3) string" },
		{ "alice:_J9..abcdefghijklmno\n", "1: weak legacy hash method (use $y$ or $6$)" },
	};
	char *path, *err, want[512];
	size_t i;

	for (i = 0; i < TEST_COUNT(cases); i++) {
		path = test_auth_file(cases[i].text, strlen(cases[i].text));
		err = NULL;
		cr_expect_null(auth_users_load(path, &err), "row %zu: loaded", i);
		snprintf(want, sizeof(want), "%s:%s", path, cases[i].msg);
		cr_expect_str_eq(err ? err : "(null)", want, "row %zu: got \"%s\", want \"%s\"", i,
		                 err ? err : "(null)", want);
		cr_expect(err == NULL || strstr(err, "$6$fixedsalt$7A") == NULL,
		          "row %zu: hash in %s", i, err);
		free(err);
		unlink(path);
		free(path);
	}
}

Test(auth, users_errors_binary)
{
	char name256[AUTH_NAME_MAX + 2], want[512], *path, *err = NULL;
	char longline[5000];
	static const char nul[] = "alice:" TEST_HASH6 "\nb\0b:" TEST_HASH6 "\n";

	/* A NUL byte. */
	path = test_auth_file(nul, sizeof(nul) - 1);
	cr_expect_null(auth_users_load(path, &err));
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	cr_expect_str_eq(err ? err : "(null)", want);
	free(err);
	unlink(path);
	free(path);

	/* A 256-octet name. */
	memset(name256, 'n', AUTH_NAME_MAX + 1);
	name256[AUTH_NAME_MAX + 1] = '\0';
	snprintf(longline, sizeof(longline), "# x\n%s:%s\n", name256, TEST_HASH6);
	path = test_auth_file(longline, strlen(longline));
	err = NULL;
	cr_expect_null(auth_users_load(path, &err));
	snprintf(want, sizeof(want), "%s:2: name longer than 255 octets", path);
	cr_expect_str_eq(err ? err : "(null)", want);
	free(err);
	unlink(path);
	free(path);

	/* A line far longer than any name:hash. */
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	path = test_auth_file(longline, strlen(longline));
	err = NULL;
	cr_expect_null(auth_users_load(path, &err));
	snprintf(want, sizeof(want), "%s:1: line too long", path);
	cr_expect_str_eq(err ? err : "(null)", want);
	free(err);
	unlink(path);
	free(path);

	/* No such file; and err may be NULL. */
	err = NULL;
	cr_expect_null(auth_users_load("/nonexistent/petrel-users", &err));
	cr_expect_str_eq(err ? err : "(null)",
	                 "/nonexistent/petrel-users: No such file or directory");
	free(err);
	cr_expect_null(auth_users_load("/nonexistent/petrel-users", NULL));
}

/* ---- checking passwords ---- */

Test(auth, check)
{
	char *h6 = test_auth_openssl(6, "Qx7salt", "s3cret");
	char *hy = test_auth_crypt("$y$", 0, "correct horse battery staple");
	char text[1024], *path;
	struct auth_users *u;

	snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", h6, hy);
	u = test_auth_load_ok(text, &path);

	cr_expect(test_auth_check(u, "alice", "s3cret"));
	cr_expect(test_auth_check(u, "bob", "correct horse battery staple"));
	/* Wrong passwords. */
	cr_expect_not(test_auth_check(u, "alice", "s3cre"));
	cr_expect_not(test_auth_check(u, "alice", "s3crets"));
	cr_expect_not(test_auth_check(u, "alice", "S3cret"));
	cr_expect_not(test_auth_check(u, "alice", "correct horse battery staple"));
	cr_expect_not(test_auth_check(u, "bob", "s3cret"));
	cr_expect_not(test_auth_check(u, "bob", "correct horse battery stapl"));
	cr_expect_not(test_auth_check(u, "alice", ""), "empty password");
	/* Unknown users, whatever the password. */
	cr_expect_not(test_auth_check(u, "carol", "s3cret"));
	cr_expect_not(test_auth_check(u, "carol", "correct horse battery staple"));
	cr_expect_not(test_auth_check(u, "carol", ""));
	/* Names are exact: case, prefixes, extensions, embedded NUL. */
	cr_expect_not(test_auth_check(u, "Alice", "s3cret"));
	cr_expect_not(test_auth_check(u, "ALICE", "s3cret"));
	cr_expect_not(test_auth_check(u, "alic", "s3cret"));
	cr_expect_not(test_auth_check(u, "alice2", "s3cret"));
	cr_expect_not(test_auth_check(u, "alice@example.com", "s3cret"));
	cr_expect_not(auth_users_check(u, "alice\0", 6, "s3cret", 6));
	cr_expect(auth_users_check(u, "alice\0", 5, "s3cret", 6), "name length is what counts");
	cr_expect_not(test_auth_check(u, "", "s3cret"));
	/* The password is counted, not NUL-terminated: a NUL inside never matches. */
	cr_expect_not(auth_users_check(u, "alice", 5, "s3cret\0x", 8));
	cr_expect_not(auth_users_check(u, "alice", 5, "s3cret\0", 7));
	cr_expect(auth_users_check(u, "alice", 5, "s3cretXYZ", 6));
	cr_expect_not(auth_users_check(u, "alice", 5, "s3cretXYZ", 5));
	/* Out of range. */
	cr_expect_not(auth_users_check(NULL, "alice", 5, "s3cret", 6));
	cr_expect_not(auth_users_check(u, NULL, 0, "s3cret", 6));
	cr_expect_not(auth_users_check(u, "alice", 5, NULL, 0));
	test_auth_done(u, path);
	free(h6);
	free(hy);
}

Test(auth, check_long_passwords)
{
	char pass[AUTH_PASS_MAX + 2];
	char *h, *path, text[1024];
	struct auth_users *u;

	/* 300 octets: longer than the 255 RFC 4616 asks us to take, within AUTH_PASS_MAX. */
	memset(pass, 'p', 300);
	pass[300] = '\0';
	h = test_auth_crypt("$6$", 0, pass);
	snprintf(text, sizeof(text), "alice:%s\n", h);
	u = test_auth_load_ok(text, &path);
	cr_expect(test_auth_check(u, "alice", pass));
	pass[299] = 'q';
	cr_expect_not(test_auth_check(u, "alice", pass));
	memset(pass, 'p', sizeof(pass));
	cr_expect_not(auth_users_check(u, "alice", 5, pass, AUTH_PASS_MAX));
	cr_expect_not(auth_users_check(u, "alice", 5, pass, AUTH_PASS_MAX + 1));
	test_auth_done(u, path);
	free(h);
}

/* ---- base64 ---- */

Test(auth, base64_rfc4648_vectors)
{
	static const struct {
		const char *plain;
		const char *b64;
	} cases[] = {
		/* RFC 4648 §10 */
		{ "", "" },
		{ "f", "Zg==" },
		{ "fo", "Zm8=" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
		/* RFC 4954 §4 LOGIN-style prompts and a PLAIN example */
		{ "Username:", "VXNlcm5hbWU6" },
		{ "Password:", "UGFzc3dvcmQ6" },
		{ "\xff\xfe\xfd", "//79" },
		{ "\xfb\xef\xbe", "++++" },
	};
	unsigned char out[64];
	char enc[64];
	size_t i, len;

	for (i = 0; i < TEST_COUNT(cases); i++) {
		len = strlen(cases[i].plain);
		cr_expect_eq(auth_base64_encode((const unsigned char *)cases[i].plain, len, enc,
		                                sizeof(enc)),
		             (long)strlen(cases[i].b64), "row %zu: encode length", i);
		cr_expect_str_eq(enc, cases[i].b64, "row %zu: encode", i);
		memset(out, 0xa5, sizeof(out));
		cr_expect_eq(
		        auth_base64_decode(cases[i].b64, strlen(cases[i].b64), out, sizeof(out)),
		        (long)len, "row %zu: decode length", i);
		cr_expect_arr_eq(out, cases[i].plain, len, "row %zu: decode", i);
	}
}

Test(auth, base64_roundtrip_and_sizes)
{
	unsigned char in[256], out[256];
	char enc[AUTH_BASE64_ENCODED_SIZE(256)];
	size_t len, i;
	long n;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (len = 0; len <= sizeof(in); len++) {
		n = auth_base64_encode(in, len, enc, AUTH_BASE64_ENCODED_SIZE(len));
		cr_assert_eq(n, (long)(AUTH_BASE64_ENCODED_SIZE(len) - 1), "len %zu", len);
		cr_assert_eq(auth_base64_encode(in, len, enc, AUTH_BASE64_ENCODED_SIZE(len) - 1),
		             -1, "len %zu: one short", len);
		n = auth_base64_encode(in, len, enc, sizeof(enc));
		cr_assert_eq(
		        auth_base64_decode(enc, (size_t)n, out, AUTH_BASE64_DECODED_MAX((size_t)n)),
		        (long)len, "len %zu", len);
		cr_assert_arr_eq(out, in, len, "len %zu", len);
		/* Exactly big enough works; one short fails. */
		cr_assert_eq(auth_base64_decode(enc, (size_t)n, out, len), (long)len);
		if (len > 0)
			cr_assert_eq(auth_base64_decode(enc, (size_t)n, out, len - 1), -1,
			             "len %zu", len);
	}
}

Test(auth, base64_bad)
{
	static const struct {
		const char *in;
		size_t len; /* 0: strlen */
	} cases[] = {
		{ "=", 0 },
		{ "==", 0 },
		{ "===", 0 },
		{ "====", 0 },
		{ "Zg", 0 },
		{ "Zg=", 0 },
		{ "Zg===", 0 },
		{ "Z===", 0 },
		{ "Zm9", 0 },
		{ "Zm9vY", 0 },
		{ "Zm9v=", 0 },
		{ "Zm9v====", 0 },
		{ "Zg==Zg==", 0 },
		{ "Zm=v", 0 },
		{ "=m9v", 0 },
		{ "Zm9v\r\n", 0 },
		{ " Zm9v", 0 },
		{ "Zm9v ", 0 },
		{ "Zm 9v", 0 },
		{ "Zm9\tv", 0 },
		{ "Zm9v\nYmFy", 0 },
		{ "Zm9-", 0 },
		{ "Zm9_", 0 },
		{ "Zm9v*A==", 0 },
		{ "Zm9\x80", 0 },
		{ "Zm9\xff", 0 },
		{ "Zm9\0", 4 },
		{ "\0\0\0\0", 4 },
		/* Non-zero unused bits (RFC 4648 §3.5): only one spelling per value. */
		{ "Zh==", 0 },
		{ "Zm9=", 0 },
		{ "Zm9vYh==", 0 },
		{ "Zm9vYmF=", 0 },
		{ "//==", 0 },
		{ "AB==", 0 },
		{ "AAB=", 0 },
	};
	unsigned char out[64];
	size_t i, len;

	for (i = 0; i < TEST_COUNT(cases); i++) {
		len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		cr_expect_eq(auth_base64_decode(cases[i].in, len, out, sizeof(out)), -1,
		             "row %zu (\"%s\") accepted", i, cases[i].in);
	}
	/* The zero-bit spellings next to the refused ones are fine. */
	cr_expect_eq(auth_base64_decode("Zg==", 4, out, sizeof(out)), 1);
	cr_expect_eq(auth_base64_decode("AA==", 4, out, sizeof(out)), 1);
	cr_expect_eq(auth_base64_decode("AAA=", 4, out, sizeof(out)), 2);
	cr_expect_eq(auth_base64_decode("", 0, out, 0), 0);
}

/* ---- SASL PLAIN ---- */

Test(auth, plain_parse)
{
	static char name255[AUTH_NAME_MAX + 1], name256[AUTH_NAME_MAX + 2];
	static char pass1024[AUTH_PASS_MAX + 1], pass1025[AUTH_PASS_MAX + 2];
	struct {
		const char *msg;
		size_t len;
		int rc;
		const char *authzid, *authcid, *passwd;
	} cases[] = {
		/* RFC 4616 §4 examples */
		{ "\0tim\0tanstaaftanstaaf", 21, 0, "", "tim", "tanstaaftanstaaf" },
		{ "Ursel\0Kurt\0xipj3plmq", 20, 0, "Ursel", "Kurt", "xipj3plmq" },
		{ "tim\0tim\0pw", 10, 0, "tim", "tim", "pw" },
		{ "\0tim\0 ", 6, 0, "", "tim", " " },
		{ "\0\xc3\xa9\0\xff\xfe", 6, 0, "", "\xc3\xa9", "\xff\xfe" }, /* bytes, not UTF-8 */
		/* Malformed */
		{ "", 0, -1, NULL, NULL, NULL },
		{ "\0", 1, -1, NULL, NULL, NULL },
		{ "\0\0", 2, -1, NULL, NULL, NULL },
		{ "tim", 3, -1, NULL, NULL, NULL },
		{ "\0tim", 4, -1, NULL, NULL, NULL },
		{ "tim\0tanstaaf", 12, -1, NULL, NULL, NULL },
		{ "\0tim\0", 5, -1, NULL, NULL, NULL },          /* empty passwd */
		{ "\0\0tanstaaf", 10, -1, NULL, NULL, NULL },    /* empty authcid */
		{ "tim\0\0tanstaaf", 13, -1, NULL, NULL, NULL }, /* empty authcid, authzid set */
		{ "\0tim\0pass\0", 10, -1, NULL, NULL, NULL },   /* NUL in passwd */
		{ "\0tim\0pa\0ss", 10, -1, NULL, NULL, NULL },
		{ "\0tim\0\0", 6, -1, NULL, NULL, NULL },
		/* Lengths, filled in below */
		{ NULL, 0, 0, "", name255, "pw" },
		{ NULL, 0, -1, NULL, NULL, NULL }, /* 256-octet authcid */
		{ NULL, 0, -1, NULL, NULL, NULL }, /* 256-octet authzid */
		{ NULL, 0, 0, "", "tim", pass1024 },
		{ NULL, 0, -1, NULL, NULL, NULL }, /* 1025-octet passwd */
	};
	static unsigned char big[5][AUTH_PASS_MAX + 64];
	const char *z, *c, *p;
	size_t zl, cl, pl, i, n = TEST_COUNT(cases) - 5;

	memset(name255, 'c', AUTH_NAME_MAX);
	memset(name256, 'c', AUTH_NAME_MAX + 1);
	memset(pass1024, 'p', AUTH_PASS_MAX);
	memset(pass1025, 'p', AUTH_PASS_MAX + 1);
	cases[n].len = (size_t)sprintf((char *)big[0], "%c%s%cpw", 0, name255, 0);
	cases[n + 1].len = (size_t)sprintf((char *)big[1], "%c%s%cpw", 0, name256, 0);
	cases[n + 2].len = (size_t)sprintf((char *)big[2], "%s%ctim%cpw", name256, 0, 0);
	cases[n + 3].len = (size_t)sprintf((char *)big[3], "%ctim%c%s", 0, 0, pass1024);
	cases[n + 4].len = (size_t)sprintf((char *)big[4], "%ctim%c%s", 0, 0, pass1025);
	for (i = 0; i < 5; i++)
		cases[n + i].msg = (const char *)big[i];

	for (i = 0; i < TEST_COUNT(cases); i++) {
		z = c = p = NULL;
		zl = cl = pl = 12345;
		cr_expect_eq(auth_plain_parse((const unsigned char *)cases[i].msg, cases[i].len, &z,
		                              &zl, &c, &cl, &p, &pl),
		             cases[i].rc, "row %zu", i);
		if (cases[i].rc != 0) {
			cr_expect(z == NULL && c == NULL && p == NULL, "row %zu: outputs touched",
			          i);
			continue;
		}
		cr_assert(z != NULL && c != NULL && p != NULL, "row %zu", i);
		cr_expect_eq(zl, strlen(cases[i].authzid), "row %zu: authzid length", i);
		cr_expect_arr_eq(z, cases[i].authzid, zl, "row %zu: authzid", i);
		cr_expect_eq(cl, strlen(cases[i].authcid), "row %zu: authcid length", i);
		cr_expect_arr_eq(c, cases[i].authcid, cl, "row %zu: authcid", i);
		cr_expect_eq(pl, strlen(cases[i].passwd), "row %zu: passwd length", i);
		cr_expect_arr_eq(p, cases[i].passwd, pl, "row %zu: passwd", i);
		/* The pointers are into msg. */
		cr_expect(z >= cases[i].msg && p + pl == cases[i].msg + cases[i].len, "row %zu", i);
	}
}

Test(auth, plain_from_base64_then_check)
{
	/* What the session does with "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm". */
	char *h = test_auth_openssl(6, "rfc4616", "tanstaaftanstaaf");
	unsigned char msg[AUTH_BASE64_DECODED_MAX(32)];
	const char *z, *c, *p, *b64 = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
	size_t zl, cl, pl;
	char text[256], *path;
	struct auth_users *u;
	long n;

	n = auth_base64_decode(b64, strlen(b64), msg, sizeof(msg));
	cr_assert_eq(n, 21);
	cr_assert_eq(auth_plain_parse(msg, (size_t)n, &z, &zl, &c, &cl, &p, &pl), 0);
	cr_expect_eq(zl, 0);
	snprintf(text, sizeof(text), "tim:%s\n", h);
	u = test_auth_load_ok(text, &path);
	cr_expect(auth_users_check(u, c, cl, p, pl));
	cr_expect_not(auth_users_check(u, c, cl, p, pl - 1));
	test_auth_done(u, path);
	free(h);
}

/* ---- throttle ---- */

static const struct sockaddr *
test_auth_addr(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strchr(s, ':') != NULL) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
		cr_assert_eq(inet_pton(AF_INET6, s, &sin6->sin6_addr), 1, "bad address %s", s);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40001);
		cr_assert_eq(inet_pton(AF_INET, s, &sin->sin_addr), 1, "bad address %s", s);
	}
	return (const struct sockaddr *)ss;
}

static unsigned
test_auth_delay(struct auth_throttle *t, const char *addr, time_t now, bool *blocked)
{
	struct sockaddr_storage ss;

	return auth_throttle_delay(t, test_auth_addr(addr, &ss), now, blocked);
}

static void
test_auth_fail(struct auth_throttle *t, const char *addr, time_t now)
{
	struct sockaddr_storage ss;

	auth_throttle_fail(t, test_auth_addr(addr, &ss), now);
}

Test(auth, throttle_delays_double_to_60)
{
	static const unsigned want[] = { 1, 2, 4, 8, 16, 32, 60, 60, 60, 60 };
	struct auth_throttle *t = auth_throttle_new(100, 3600);
	time_t now = 1700000000;
	bool blocked = true;
	size_t i;

	cr_assert_not_null(t);
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", now, &blocked), 0, "no failure yet");
	cr_expect_not(blocked);
	for (i = 0; i < TEST_COUNT(want); i++) {
		test_auth_fail(t, "192.0.2.1", now);
		cr_expect_eq(test_auth_delay(t, "192.0.2.1", now, &blocked), want[i],
		             "after failure %zu", i + 1);
		cr_expect_not(blocked, "failure %zu", i + 1);
		cr_expect_eq(test_auth_delay(t, "192.0.2.1", now + 1, NULL), want[i] - 1,
		             "counts down after failure %zu", i + 1);
		cr_expect_eq(test_auth_delay(t, "192.0.2.1", now + (time_t)want[i] - 1, NULL), 1);
		cr_expect_eq(test_auth_delay(t, "192.0.2.1", now + (time_t)want[i], NULL), 0,
		             "over after failure %zu", i + 1);
		/* Other addresses are not affected. */
		cr_expect_eq(test_auth_delay(t, "192.0.2.2", now, NULL), 0);
		cr_expect_eq(test_auth_delay(t, "2001:db8::1", now, NULL), 0);
		now += (time_t)want[i];
	}
	cr_expect_eq(auth_throttle_count(t), 1);
	auth_throttle_free(t);
	auth_throttle_free(NULL);
}

Test(auth, throttle_blocks_after_max_failures)
{
	struct auth_throttle *t = auth_throttle_new(3, 900);
	time_t now = 5000;
	bool blocked;

	test_auth_fail(t, "198.51.100.7", now);
	test_auth_fail(t, "198.51.100.7", now + 1);
	cr_expect_eq(test_auth_delay(t, "198.51.100.7", now + 1, &blocked), 2);
	cr_expect_not(blocked, "2 of 3");
	test_auth_fail(t, "198.51.100.7", now + 3);
	/* Blocked for the window from the failure that reached the limit. */
	cr_expect_eq(test_auth_delay(t, "198.51.100.7", now + 3, &blocked), 900);
	cr_expect(blocked);
	cr_expect_eq(test_auth_delay(t, "198.51.100.7", now + 500, &blocked), 403);
	cr_expect(blocked);
	cr_expect_eq(test_auth_delay(t, "198.51.100.7", now + 3 + 899, &blocked), 1);
	cr_expect(blocked);
	cr_expect_eq(test_auth_delay(t, "198.51.100.8", now + 500, &blocked), 0);
	cr_expect_not(blocked, "a neighbour is not blocked");
	cr_expect_eq(test_auth_delay(t, "198.51.100.7", now + 3 + 900, &blocked), 0);
	cr_expect_not(blocked, "the window has passed");
	cr_expect_eq(auth_throttle_count(t), 0, "and the entry is gone");
	/* A fresh start: one failure is one second again. */
	test_auth_fail(t, "198.51.100.7", now + 1000);
	cr_expect_eq(test_auth_delay(t, "198.51.100.7", now + 1000, &blocked), 1);
	cr_expect_not(blocked);
	auth_throttle_free(t);
}

Test(auth, throttle_failure_while_blocked_extends)
{
	struct auth_throttle *t = auth_throttle_new(2, 600);
	bool blocked;

	test_auth_fail(t, "203.0.113.9", 100);
	test_auth_fail(t, "203.0.113.9", 101);
	cr_expect_eq(test_auth_delay(t, "203.0.113.9", 101, &blocked), 600);
	cr_expect(blocked);
	/* Another session of the same client fails meanwhile. */
	test_auth_fail(t, "203.0.113.9", 400);
	cr_expect_eq(test_auth_delay(t, "203.0.113.9", 701, &blocked), 299);
	cr_expect(blocked);
	cr_expect_eq(test_auth_delay(t, "203.0.113.9", 1000, &blocked), 0);
	cr_expect_not(blocked);
	auth_throttle_free(t);
}

Test(auth, throttle_window_expiry)
{
	struct auth_throttle *t = auth_throttle_new(5, 60);
	bool blocked;

	/* 4 failures in the window: not blocked; the window ends, the count starts again. */
	test_auth_fail(t, "192.0.2.50", 0);
	test_auth_fail(t, "192.0.2.50", 1);
	test_auth_fail(t, "192.0.2.50", 3);
	test_auth_fail(t, "192.0.2.50", 7);
	cr_expect_eq(test_auth_delay(t, "192.0.2.50", 7, &blocked), 8);
	cr_expect_not(blocked);
	cr_expect_eq(test_auth_delay(t, "192.0.2.50", 59, &blocked), 0);
	cr_expect_eq(auth_throttle_count(t), 1);
	cr_expect_eq(test_auth_delay(t, "192.0.2.50", 60, &blocked), 0);
	cr_expect_eq(auth_throttle_count(t), 0, "expired at first + window");
	test_auth_fail(t, "192.0.2.50", 61);
	cr_expect_eq(test_auth_delay(t, "192.0.2.50", 61, &blocked), 1, "a new window");
	cr_expect_not(blocked);

	/* Expired entries go even if nobody asks about them. */
	test_auth_fail(t, "192.0.2.51", 70);
	test_auth_fail(t, "2001:db8::51", 71);
	cr_expect_eq(auth_throttle_count(t), 3);
	cr_expect_eq(test_auth_delay(t, "192.0.2.99", 200, NULL), 0);
	cr_expect_eq(auth_throttle_count(t), 0);
	auth_throttle_free(t);
}

Test(auth, throttle_ipv4_mapped_ipv6_is_ipv4)
{
	struct auth_throttle *t = auth_throttle_new(2, 300);
	bool blocked;

	test_auth_fail(t, "192.0.2.1", 10);
	cr_expect_eq(test_auth_delay(t, "::ffff:192.0.2.1", 10, &blocked), 1);
	test_auth_fail(t, "::ffff:192.0.2.1", 11);
	cr_expect_eq(auth_throttle_count(t), 1, "one entry for both spellings");
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", 11, &blocked), 300);
	cr_expect(blocked);
	cr_expect_eq(test_auth_delay(t, "::ffff:192.0.2.1", 12, &blocked), 299);
	cr_expect(blocked);
	/* Not the same: other IPv6 spellings of the same four bytes. */
	cr_expect_eq(test_auth_delay(t, "::192.0.2.1", 12, &blocked), 0);
	cr_expect_not(blocked);
	cr_expect_eq(test_auth_delay(t, "64:ff9b::192.0.2.1", 12, &blocked), 0);
	cr_expect_not(blocked);
	cr_expect_eq(test_auth_delay(t, "::ffff:192.0.2.2", 12, &blocked), 0);
	cr_expect_not(blocked);
	auth_throttle_free(t);
}

Test(auth, throttle_unix_socket_not_throttled)
{
	struct auth_throttle *t = auth_throttle_new(1, 300);
	struct sockaddr_un sa_un = { .sun_family = AF_UNIX };
	bool blocked = true;

	auth_throttle_fail(t, (const struct sockaddr *)&sa_un, 1);
	cr_expect_eq(auth_throttle_delay(t, (const struct sockaddr *)&sa_un, 1, &blocked), 0);
	cr_expect_not(blocked);
	cr_expect_eq(auth_throttle_count(t), 0);
	auth_throttle_fail(t, NULL, 1);
	cr_expect_eq(auth_throttle_delay(t, NULL, 1, NULL), 0);
	auth_throttle_free(t);
}

Test(auth, throttle_limits_off)
{
	struct auth_throttle *t = auth_throttle_new(0, 300);
	bool blocked;
	int i;

	for (i = 0; i < 50; i++)
		test_auth_fail(t, "192.0.2.1", 1000 + i);
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", 1049, &blocked), 60);
	cr_expect_not(blocked, "max_failures 0 never blocks");
	auth_throttle_free(t);

	t = auth_throttle_new(3, 0);
	for (i = 0; i < 5; i++)
		test_auth_fail(t, "192.0.2.1", 1000);
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", 1000, &blocked), 0);
	cr_expect_not(blocked, "window 0 remembers nothing");
	cr_expect_eq(auth_throttle_count(t), 0);
	auth_throttle_free(t);
}

Test(auth, throttle_clock_steps_back)
{
	struct auth_throttle *t = auth_throttle_new(3, 900);
	bool blocked;

	test_auth_fail(t, "192.0.2.1", 10000);
	test_auth_fail(t, "192.0.2.1", 10001);
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", 5000, &blocked), 2, "not 5002");
	test_auth_fail(t, "192.0.2.1", 10003);
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", 5000, &blocked), 900, "not 5903");
	cr_expect(blocked);
	auth_throttle_free(t);
}

Test(auth, throttle_evicts_least_recent)
{
	struct auth_throttle *t = auth_throttle_new(10, 3600);

	auth_throttle_set_max_entries(t, 3);
	test_auth_fail(t, "192.0.2.1", 100);
	test_auth_fail(t, "192.0.2.2", 101);
	test_auth_fail(t, "192.0.2.3", 102);
	test_auth_fail(t, "192.0.2.1", 103); /* .1 is now the most recent */
	test_auth_fail(t, "192.0.2.4", 104); /* evicts .2 */
	cr_expect_eq(auth_throttle_count(t), 3);
	cr_expect_eq(test_auth_delay(t, "192.0.2.2", 104, NULL), 0, ".2 evicted");
	cr_expect_eq(test_auth_delay(t, "192.0.2.1", 104, NULL), 1, ".1 kept, 2 failures");
	cr_expect_eq(test_auth_delay(t, "192.0.2.3", 102, NULL), 1, ".3 kept");
	cr_expect_eq(test_auth_delay(t, "192.0.2.4", 104, NULL), 1, ".4 kept");
	/* Shrinking evicts at once. */
	auth_throttle_set_max_entries(t, 1);
	cr_expect_eq(auth_throttle_count(t), 1);
	cr_expect_eq(test_auth_delay(t, "192.0.2.4", 104, NULL), 1, "the newest stays");
	auth_throttle_set_max_entries(t, 0);
	cr_expect_eq(auth_throttle_count(t), 1, "0 means 1");
	auth_throttle_free(t);
}

Test(auth, throttle_default_cap)
{
	struct auth_throttle *t = auth_throttle_new(5, 900);
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	size_t i;

	/* An attacker rotating through a /64: the table stays at its cap. */
	inet_pton(AF_INET6, "2001:db8:1:2::", &sin6.sin6_addr);
	for (i = 0; i < AUTH_THROTTLE_MAX_ENTRIES + 1000; i++) {
		sin6.sin6_addr.s6_addr[12] = (uint8_t)(i >> 24);
		sin6.sin6_addr.s6_addr[13] = (uint8_t)(i >> 16);
		sin6.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		sin6.sin6_addr.s6_addr[15] = (uint8_t)i;
		auth_throttle_fail(t, (const struct sockaddr *)&sin6, 1000 + (time_t)(i / 1000));
	}
	cr_expect_eq(auth_throttle_count(t), AUTH_THROTTLE_MAX_ENTRIES);
	/* The newest is remembered; the oldest is gone. */
	cr_expect_eq(auth_throttle_delay(t, (const struct sockaddr *)&sin6, 1100, NULL), 1);
	memset(sin6.sin6_addr.s6_addr + 12, 0, 4);
	cr_expect_eq(auth_throttle_delay(t, (const struct sockaddr *)&sin6, 1100, NULL), 0);
	auth_throttle_free(t);
}
