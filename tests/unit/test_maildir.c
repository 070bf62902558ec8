/*
 * test_maildir.c: maildir_expand() as a table of good and bad addresses, and maildir_deliver()
 * on temporary directories: the exact bytes of the file in new/ (prefix, unstuffing, CRLF → LF)
 * against a line-based reference, every chunk size over one message, stuffed lines on chunk
 * boundaries of a large message, unique names, nothing left in tmp/, offset/len, and the
 * failures (not a directory, permission denied, short source) with their class.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "petrel/delivery/maildir.h"

static char dir[256];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/petrel-test-maildir-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	umask(022);
}

static void
teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

TestSuite(maildir, .init = setup, .fini = teardown);

/* A source file under dir holding data[0..n); returns its fd (read-only). */
static int
make_src(const char *data, size_t n)
{
	char path[300];
	int fd;

	snprintf(path, sizeof(path), "%s/src", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, data, n), (ssize_t)n);
	close(fd);
	fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	return fd;
}

/* Entries of path (without "." and ".."); the first is copied to first if not NULL. */
static int
count_entries(const char *path, char *first, size_t firstsize)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int n = 0;

	cr_assert_not_null(d, "opendir %s", path);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == 0 && first != NULL)
			snprintf(first, firstsize, "%s", de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "fopen %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/*
 * The expected Maildir form, computed line by line (independently of the state machine in
 * maildir.c): split at CRLF, drop the first '.' of a line that has more than that '.', end
 * each line with LF; a last line without CRLF stays without LF.
 */
static size_t
ref_unstuff(const char *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t e = i, linelen;
		const char *line = in + i;
		bool crlf;

		while (e + 1 < n && !(in[e] == '\r' && in[e + 1] == '\n'))
			e++;
		crlf = e + 1 < n;
		linelen = crlf ? e - i : n - i;
		if (linelen > 1 && line[0] == '.') {
			line++;
			linelen--;
		}
		memcpy(out + o, line, linelen);
		o += linelen;
		if (crlf) {
			out[o++] = '\n';
			i = e + 2;
		} else {
			i = n;
		}
	}
	return o;
}

/*
 * Deliver src[offset, offset+len) into md with prefix, expect success, and return the
 * contents of the one new file in new/ (tmp/ must be empty). The ",S=" of its name must be
 * its size.
 */
static char *
deliver_one(const char *md, const char *prefix, const char *src, size_t srclen, off_t offset,
            size_t len, size_t *outlen)
{
	char path[600], name[256], err[256];
	const char *s;
	int fd = make_src(src, srclen), temporary = -1;
	unsigned long long size;
	char *data;

	cr_assert_eq(maildir_deliver(md, prefix, fd, offset, len, &temporary, err, sizeof(err)), 0,
	             "deliver: %s", err);
	close(fd);
	snprintf(path, sizeof(path), "%s/tmp", md);
	cr_assert_eq(count_entries(path, NULL, 0), 0, "tmp/ not empty after success");
	snprintf(path, sizeof(path), "%s/new", md);
	cr_assert_eq(count_entries(path, name, sizeof(name)), 1);
	snprintf(path, sizeof(path), "%s/new/%s", md, name);
	data = slurp(path, outlen);
	s = strstr(name, ",S=");
	cr_assert_not_null(s, "no ,S= in %s", name);
	cr_assert_eq(sscanf(s, ",S=%llu", &size), 1);
	cr_assert_eq(size, *outlen, "S=%llu for a file of %zu octets", size, *outlen);
	unlink(path);
	return data;
}

/* --- maildir_expand ------------------------------------------------------------------ */

struct expand_case {
	const char *tmpl;
	const char *local; /* NULL: use the local_len octets of local_bin */
	const char *local_bin;
	size_t local_len;
	const char *domain;
	const char *want; /* NULL: must fail with EINVAL */
};

Test(maildir, expand_table)
{
	static const struct expand_case cases[] = {
		{ "/var/mail/%d/%u/", "Alice", NULL, 0, "Example.ORG",
		  "/var/mail/example.org/alice/" },
		{ "/m/%u", "bob", NULL, 0, "x.org", "/m/bob" },
		{ "/m/%d", "bob", NULL, 0, "X.Org", "/m/x.org" },
		{ "/m/%%/%u%%", "bob", NULL, 0, "x.org", "/m/%/bob%" },
		{ "/m/100%%", "bob", NULL, 0, "x.org", "/m/100%" },
		{ "maildirs/%u", "bob", NULL, 0, "x.org", "maildirs/bob" },     /* relative */
		{ "/srv/../m/%u", "bob", NULL, 0, "x.org", "/srv/../m/bob" },   /* trusted */
		{ "/m/%u", "J\xc3\xb6RG", NULL, 0, "x.org", "/m/j\xc3\xb6rg" }, /* ASCII fold */
		{ "/m/%u", "first.last+tag", NULL, 0, "x.org", "/m/first.last+tag" },
		{ "/m/%u", "..x", NULL, 0, "x.org", "/m/..x" },
		{ "/m/.%u", ".x", NULL, 0, "x.org", "/m/..x" },
		{ "/m/%u", NULL, "carol@x.org", 5, "x.org", "/m/carol" }, /* local_len honoured */
		{ "/shared", "", NULL, 0, NULL, "/shared" }, /* %u unused: not checked */
		{ "/m/%u", "../x", NULL, 0, "x.org", NULL },
		{ "/m/%u", "a/b", NULL, 0, "x.org", NULL },
		{ "/m/%u", ".", NULL, 0, "x.org", NULL },
		{ "/m/%u", "..", NULL, 0, "x.org", NULL },
		{ "/m/%u", "", NULL, 0, "x.org", NULL },
		{ "/m/%u", NULL, "a\0b", 3, "x.org", NULL },
		{ "/m/%u", "a\tb", NULL, 0, "x.org", NULL },
		{ "/m/%u", "a\nb", NULL, 0, "x.org", NULL },
		{ "/m/%u", "a\x7f", NULL, 0, "x.org", NULL },
		{ "/m/%d/%u", "bob", NULL, 0, "", NULL },
		{ "/m/%d/%u", "bob", NULL, 0, NULL, NULL },
		{ "/m/%d/%u", "bob", NULL, 0, "..", NULL },
		{ "/m/%d/%u", "bob", NULL, 0, ".", NULL },
		{ "/m/%d/%u", "bob", NULL, 0, "a/b", NULL },
		{ "/m/%d/%u", "bob", NULL, 0, "x\r.org", NULL },
		{ "/m/.%d/x", "bob", NULL, 0, ".", NULL }, /* ".%d" would climb a level */
		{ "/m/%d%d", "bob", NULL, 0, ".", NULL },
		{ "/m/%x", "bob", NULL, 0, "x.org", NULL },
		{ "/m/%", "bob", NULL, 0, "x.org", NULL },
		{ "", "bob", NULL, 0, "x.org", NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct expand_case *c = &cases[i];
		const char *local = c->local != NULL ? c->local : c->local_bin;
		size_t len = c->local != NULL ? strlen(c->local) : c->local_len;
		char out[128];
		int rc;

		memset(out, 'Z', sizeof(out));
		errno = 0;
		rc = maildir_expand(c->tmpl, local, len, c->domain, out, sizeof(out));
		if (c->want != NULL) {
			cr_expect_eq(rc, 0, "case %zu (%s): failed", i, c->tmpl);
			cr_expect_str_eq(out, c->want, "case %zu", i);
		} else {
			cr_expect_eq(rc, -1, "case %zu (%s): accepted as %s", i, c->tmpl, out);
			cr_expect_eq(errno, EINVAL, "case %zu: errno %d", i, errno);
		}
	}
}

Test(maildir, expand_size)
{
	char out[8];

	cr_assert_eq(maildir_expand("/m/%u", "bob", 3, "x", out, 7), 0); /* 6 + NUL */
	cr_assert_str_eq(out, "/m/bob");
	cr_assert_eq(maildir_expand("/m/%u", "bob", 3, "x", out, 6), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
	cr_assert_eq(maildir_expand("/m/x", "bob", 3, "x", out, 4), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
	cr_assert_eq(maildir_expand("/m", "bob", 3, "x", out, 0), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
}

/* --- error classes -------------------------------------------------------------------- */

Test(maildir, error_classes)
{
	static const struct {
		int err;
		int temporary;
	} cases[] = {
		{ ENOSPC, 1 }, { EDQUOT, 1 }, { EIO, 1 },    { EAGAIN, 1 },
		{ EINTR, 1 },  { EROFS, 1 },  { ENOMEM, 1 }, { EMFILE, 1 },
		{ EEXIST, 1 }, { ENOENT, 1 }, { 0, 1 },      { ENOTDIR, 0 },
		{ EACCES, 0 }, { EPERM, 0 },  { ELOOP, 0 },  { ENAMETOOLONG, 0 },
		{ EISDIR, 0 }, { EFBIG, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(maildir_error_is_temporary(cases[i].err), cases[i].temporary, "%s",
		             strerror(cases[i].err));
}

/* --- delivery: content ------------------------------------------------------------------ */

Test(maildir, deliver_byte_exact)
{
	static const char src[] = "Subject: x\r\n"
	                          "\r\n"
	                          "..dot\r\n"
	                          "...\r\n"
	                          "..\r\n"
	                          "mid.dot.\r\n"
	                          "end\r\n";
	static const char want[] = "Return-Path: <a@b.example>\n"
	                           "Delivered-To: u@x.example\n"
	                           "Subject: x\n"
	                           "\n"
	                           ".dot\n"
	                           "..\n"
	                           ".\n"
	                           "mid.dot.\n"
	                           "end\n";
	char md[300], path[400];
	struct stat st;
	size_t len;
	char *got;

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	got = deliver_one(md, "Return-Path: <a@b.example>\r\nDelivered-To: u@x.example\r\n", src,
	                  sizeof(src) - 1, 0, sizeof(src) - 1, &len);
	cr_assert_eq(len, sizeof(want) - 1, "got %zu octets: [%s]", len, got);
	cr_assert_eq(memcmp(got, want, len), 0, "got [%s]", got);
	free(got);
	snprintf(path, sizeof(path), "%s/cur", md);
	cr_assert_eq(stat(path, &st), 0, "cur/ missing");
	cr_assert(S_ISDIR(st.st_mode));
}

Test(maildir, deliver_name_and_mode)
{
	static const char src[] = "a\r\n";
	char md[300], path[600], name[256], prefix[64];
	struct stat st;
	int fd = make_src(src, 3), temporary = -1;

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	cr_assert_eq(maildir_deliver(md, "X: y\n", fd, 0, 3, &temporary, NULL, 0), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/new", md);
	cr_assert_eq(count_entries(path, name, sizeof(name)), 1);
	/* <sec>.M<usec>P<pid>Q<n>.<host>,S=<size> */
	snprintf(prefix, sizeof(prefix), "P%ldQ", (long)getpid());
	cr_expect_not_null(strstr(name, ".M"), "%s", name);
	cr_expect_not_null(strstr(name, prefix), "%s", name);
	cr_expect_not_null(strstr(name, ",S=7"), "%s", name); /* "X: y\na\n" */
	cr_expect_null(strchr(name, ':'), "%s", name);
	snprintf(path, sizeof(path), "%s/new/%s", md, name);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
}

Test(maildir, deliver_lone_dot_and_last_line)
{
	/* A lone "." line is kept (RFC 5321 4.5.2); so is a last line without CRLF. */
	static const char src1[] = "a\r\n.\r\n.x";
	static const char src2[] = "a\r\n.";
	char md[300];
	size_t len;
	char *got;

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	got = deliver_one(md, NULL, src1, sizeof(src1) - 1, 0, sizeof(src1) - 1, &len);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(got, "a\n.\nx", 5), 0, "got [%s]", got);
	free(got);
	got = deliver_one(md, NULL, src2, sizeof(src2) - 1, 0, sizeof(src2) - 1, &len);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(got, "a\n.", 3), 0, "got [%s]", got);
	free(got);
}

Test(maildir, deliver_empty)
{
	char md[300];
	size_t len;
	char *got;

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	got = deliver_one(md, NULL, "", 0, 0, 0, &len);
	cr_assert_eq(len, 0);
	free(got);
	got = deliver_one(md, "", "", 0, 0, 0, &len);
	cr_assert_eq(len, 0);
	free(got);
}

/* Every feature at once; bare CR and bare LF cannot reach the spool but must pass unharmed. */
static const char mixed[] = "..a\r\n"
                            ".\r\n"
                            "..\r\n"
                            "...\r\n"
                            "x.y\r\n"
                            "\r\n"
                            ".\r\r\n"
                            "a\rb\r\n"
                            "a\n.b\r\n"
                            "\r\n"
                            "..end";

Test(maildir, every_chunk_size)
{
	char want[sizeof(mixed)], md[300];
	size_t wantlen = ref_unstuff(mixed, sizeof(mixed) - 1, want), chunk;

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	for (chunk = 1; chunk <= sizeof(mixed) + 1; chunk++) {
		size_t len;
		char *got;

		maildir_set_chunk_size(chunk);
		got = deliver_one(md, NULL, mixed, sizeof(mixed) - 1, 0, sizeof(mixed) - 1, &len);
		cr_assert_eq(len, wantlen, "chunk %zu: %zu octets, want %zu", chunk, len, wantlen);
		cr_assert_eq(memcmp(got, want, len), 0, "chunk %zu", chunk);
		free(got);
	}
	maildir_set_chunk_size(0);
}

/* Append filler lines to buf[*n..) so that the next line starts exactly at pos. */
static void
fill_to(char *buf, size_t *n, size_t pos)
{
	while (*n < pos) {
		size_t room = pos - *n, line = room > 80 ? 78 : room - 2;

		cr_assert(room >= 2 && (room > 80 || room - 2 <= 78), "cannot fill %zu", room);
		if (room > 80 && room - 80 < 2)
			line = 77; /* do not leave a gap of 1 */
		memset(buf + *n, 'a', line);
		*n += line;
		memcpy(buf + *n, "\r\n", 2);
		*n += 2;
	}
	cr_assert_eq(*n, pos);
}

static void
put(char *buf, size_t *n, const char *s)
{
	memcpy(buf + *n, s, strlen(s));
	*n += strlen(s);
}

/*
 * A message of several default-size chunks (after an envelope, so offset is not 0): a stuffed
 * line at a chunk start, a CRLF split over a boundary with a stuffed line just after it, and a
 * stuffed lone "." whose two dots are on either side of a boundary.
 */
static void
check_large(size_t chunk)
{
	static const char envelope[] = "petrel-spool 1\nfrom <a@b>\n\n";
	size_t cap = 4 * chunk + 4096, n = 0, body, wantlen, len;
	char *src = malloc(cap), *want = malloc(cap), md[300];
	char *got;

	cr_assert(src && want);
	put(src, &n, envelope);
	body = n;
	fill_to(src, &n, body + chunk);
	put(src, &n, "..stuffed at the first boundary\r\n");
	fill_to(src, &n, body + 2 * chunk - 4);
	put(src, &n, "abc\r\n..after a split CRLF\r\n"); /* CR last of chunk 2, LF first of 3 */
	fill_to(src, &n, body + 3 * chunk - 1);
	put(src, &n, "..\r\n"); /* the stuffing dot ends chunk 3 */
	put(src, &n, "tail\r\n");
	cr_assert(src[body + chunk] == '.' && src[body + chunk + 1] == '.');
	cr_assert(src[body + 2 * chunk - 1] == '\r' && src[body + 2 * chunk] == '\n');
	cr_assert(src[body + 3 * chunk - 1] == '.' && src[body + 3 * chunk] == '.');
	memcpy(src + n, "GARBAGE AFTER", 13); /* outside [offset, offset+len) */
	wantlen = ref_unstuff(src + body, n - body, want);

	maildir_set_chunk_size(chunk);
	snprintf(md, sizeof(md), "%s/Maildir", dir);
	got = deliver_one(md, "P: 1\r\n", src, n + 13, (off_t)body, n - body, &len);
	cr_assert_eq(len, wantlen + 5, "%zu octets, want %zu", len, wantlen + 5);
	cr_assert_eq(memcmp(got, "P: 1\n", 5), 0);
	cr_assert_eq(memcmp(got + 5, want, wantlen), 0);
	cr_assert_not_null(memmem(got, len, "\n.stuffed at the first boundary\n", 32));
	cr_assert_not_null(memmem(got, len, "\nabc\n.after a split CRLF\n", 25));
	cr_assert_not_null(memmem(got, len, "\n.\ntail\n", 8));
	cr_assert_null(memmem(got, len, "\r", 1));
	free(got);
	free(src);
	free(want);
	maildir_set_chunk_size(0);
}

Test(maildir, large_default_chunk)
{
	check_large(MAILDIR_CHUNK_SIZE);
}

Test(maildir, large_small_chunk)
{
	check_large(4096);
}

Test(maildir, offset_len_honoured)
{
#define ENVELOPE "ENVELOPE from <a@b>\r\nrcpt <c@d>\r\n\r\n"
#define BODY     "Subject: s\r\n\r\n..body\r\n"
	static const char src[] = ENVELOPE BODY "TRAILER not part of it";
	const size_t env = sizeof(ENVELOPE) - 1, body = sizeof(BODY) - 1;
	char md[300];
	size_t len;
	char *got;
	int fd;

	cr_assert_eq(memcmp(src + env, "Subject", 7), 0);
	cr_assert_eq(memcmp(src + env + body, "TRAILER", 7), 0);
	snprintf(md, sizeof(md), "%s/Maildir", dir);
	got = deliver_one(md, NULL, src, sizeof(src) - 1, (off_t)env, body, &len);
	cr_assert_eq(len, 18);
	cr_assert_eq(memcmp(got, "Subject: s\n\n.body\n", 18), 0, "got [%s]", got);
	free(got);

	/* pread: the fd's own offset is neither used nor moved. */
	fd = make_src(src, sizeof(src) - 1);
	cr_assert_eq(lseek(fd, 5, SEEK_SET), 5);
	cr_assert_eq(maildir_deliver(md, NULL, fd, (off_t)env, body, NULL, NULL, 0), 0);
	cr_assert_eq(lseek(fd, 0, SEEK_CUR), 5);
	close(fd);
}

/* --- delivery: names and directories ------------------------------------------------------ */

Test(maildir, two_deliveries_two_files)
{
	char md[300], path[400];
	int fd = make_src("hi\r\n", 4);

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	cr_assert_eq(maildir_deliver(md, NULL, fd, 0, 4, NULL, NULL, 0), 0);
	cr_assert_eq(maildir_deliver(md, NULL, fd, 0, 4, NULL, NULL, 0), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/new", md);
	cr_assert_eq(count_entries(path, NULL, 0), 2);
	snprintf(path, sizeof(path), "%s/tmp", md);
	cr_assert_eq(count_entries(path, NULL, 0), 0);
}

Test(maildir, creates_parents_0700)
{
	static const char *const sub[] = {
		"a", "a/b", "a/b/Maildir", "a/b/Maildir/tmp", "a/b/Maildir/new", "a/b/Maildir/cur"
	};
	char md[300], path[400];
	int fd = make_src("hi\r\n", 4);
	size_t i;

	snprintf(md, sizeof(md), "%s/a/b/Maildir", dir);
	cr_assert_eq(maildir_deliver(md, NULL, fd, 0, 4, NULL, NULL, 0), 0);
	close(fd);
	for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, sub[i]);
		cr_assert_eq(stat(path, &st), 0, "%s", sub[i]);
		cr_expect(S_ISDIR(st.st_mode), "%s", sub[i]);
		cr_expect_eq(st.st_mode & 07777, 0700, "%s: mode %o", sub[i], st.st_mode & 07777);
	}
}

/* --- delivery: failures ------------------------------------------------------------------- */

/* Expect maildir_deliver() to fail with that class; returns its errno. */
static int
expect_fail(const char *md, int src_fd, off_t offset, size_t len, int want_temporary)
{
	char err[512];
	int temporary = -1, rc, saved;

	err[0] = '\0';
	rc = maildir_deliver(md, "X: y\r\n", src_fd, offset, len, &temporary, err, sizeof(err));
	saved = errno;
	cr_assert_eq(rc, -1);
	cr_expect_eq(temporary, want_temporary, "temporary=%d: %s", temporary, err);
	cr_expect_not_null(strstr(err, md), "err does not name the maildir: %s", err);
	return saved;
}

Test(maildir, dir_is_a_file)
{
	char md[300];
	int fd = make_src("hi\r\n", 4);

	snprintf(md, sizeof(md), "%s/file", dir);
	close(open(md, O_WRONLY | O_CREAT, 0600));
	cr_expect_eq(expect_fail(md, fd, 0, 4, 0), ENOTDIR);
	snprintf(md, sizeof(md), "%s/file/Maildir", dir); /* under a regular file */
	cr_expect_eq(expect_fail(md, fd, 0, 4, 0), ENOTDIR);
	close(fd);
}

Test(maildir, new_is_a_file)
{
	char md[300], path[400];
	int fd = make_src("hi\r\n", 4);

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	snprintf(path, sizeof(path), "%s/Maildir", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/Maildir/new", dir);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	expect_fail(md, fd, 0, 4, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/Maildir/tmp", dir);
	cr_assert_eq(count_entries(path, NULL, 0), 0);
}

/* The Maildir may be a symbolic link; its tmp/ and new/ may not. */
Test(maildir, symlinks)
{
	char md[300], real[300], path[400];
	int fd = make_src("hi\r\n", 4), e;

	snprintf(real, sizeof(real), "%s/real", dir);
	snprintf(md, sizeof(md), "%s/Maildir", dir);
	cr_assert_eq(mkdir(real, 0700), 0);
	cr_assert_eq(symlink(real, md), 0);
	cr_assert_eq(maildir_deliver(md, NULL, fd, 0, 4, NULL, NULL, 0), 0);
	snprintf(path, sizeof(path), "%s/new", real);
	cr_assert_eq(count_entries(path, NULL, 0), 1);

	snprintf(md, sizeof(md), "%s/Maildir2", dir);
	cr_assert_eq(mkdir(md, 0700), 0);
	snprintf(path, sizeof(path), "%s/Maildir2/tmp", dir);
	cr_assert_eq(symlink(real, path), 0);
	e = expect_fail(md, fd, 0, 4, 0); /* Linux: ENOTDIR with O_DIRECTORY, else ELOOP */
	cr_expect(e == ENOTDIR || e == ELOOP, "%s", strerror(e));
	close(fd);
	snprintf(path, sizeof(path), "%s/tmp", real);
	cr_assert_eq(count_entries(path, NULL, 0), 0);
}

/* Root ignores modes: drop to nobody in a child to see EACCES. */
Test(maildir, permission_denied)
{
	char md[300], ro[300];
	int fd = make_src("hi\r\n", 4), status;
	pid_t pid;

	snprintf(ro, sizeof(ro), "%s/ro", dir);
	snprintf(md, sizeof(md), "%s/ro/Maildir", dir);
	cr_assert_eq(mkdir(ro, 0555), 0);
	if (geteuid() != 0) {
		cr_expect_eq(expect_fail(md, fd, 0, 4, 0), EACCES);
		close(fd);
		return;
	}
	cr_assert_eq(chmod(dir, 0755), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		char err[512];
		int temporary = -1, rc;

		if (setgroups(0, NULL) == -1 || setgid(65534) == -1 || setuid(65534) == -1)
			_exit(10);
		rc = maildir_deliver(md, NULL, fd, 0, 4, &temporary, err, sizeof(err));
		if (rc != -1)
			_exit(11);
		if (errno != EACCES)
			_exit(12);
		if (temporary != 0)
			_exit(13);
		if (strstr(err, "Permission denied") == NULL)
			_exit(14);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child failed with %d", WEXITSTATUS(status));
	close(fd);
}

/* A spool file shorter than offset+len: temporary, and the partial file is gone. */
Test(maildir, short_source_leaves_nothing)
{
	char md[300], path[400];
	int fd = make_src("hello\r\nworld\r\n", 14);

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	maildir_set_chunk_size(4); /* so some of it is written before the end is found */
	expect_fail(md, fd, 0, 100, 1);
	expect_fail(md, fd, 20, 1, 1);
	maildir_set_chunk_size(0);
	snprintf(path, sizeof(path), "%s/tmp", md);
	cr_assert_eq(count_entries(path, NULL, 0), 0);
	snprintf(path, sizeof(path), "%s/new", md);
	cr_assert_eq(count_entries(path, NULL, 0), 0);
	close(fd);
}

Test(maildir, bad_fd_and_range)
{
	char md[300], path[400];
	int fd = make_src("hi\r\n", 4);

	snprintf(md, sizeof(md), "%s/Maildir", dir);
	/* EBADF: not a Maildir problem, so not a reason to bounce */
	cr_expect_eq(expect_fail(md, -1, 0, 4, 1), EBADF);
	cr_expect_eq(expect_fail(md, fd, -1, 4, 1), EINVAL);
	close(fd);
	snprintf(path, sizeof(path), "%s/tmp", md);
	cr_assert_eq(count_entries(path, NULL, 0), 0);
}
