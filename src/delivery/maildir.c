/*
 * delivery/maildir.c: local delivery into a Maildir (contract and file format: maildir.h).
 *
 * Owns nothing between calls: maildir_deliver() opens the Maildir, writes one file in tmp/,
 * links it into new/ and closes everything again. The only state shared between threads is
 * atomic: the delivery counter that keeps names unique within the process, and the chunk size
 * that tests may lower.
 *
 * Start reading at maildir_deliver(). The spool holds the message as it came in DATA (CRLF
 * lines, dot-stuffed); maildir_unstuff_feed() is the octet-level state machine that turns it
 * into the Maildir form (LF lines, unstuffed). Its state survives between chunks, so a line
 * start, a held-back '.' or a held-back CR may fall on any chunk boundary.
 *
 * Blocking file I/O: worker threads only, never the event loop.
 */
#include "petrel/delivery/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "petrel/log.h"

#define MAILDIR_EINTR_RETRIES 16  /* consecutive EINTRs before giving up (then: temporary) */
#define MAILDIR_HOST_MAX      64  /* escaped host name in a file name, NUL excluded */
#define MAILDIR_NAME_MAX      160 /* tmp/ name; far below NAME_MAX even with ",S=<size>" */
#define MAILDIR_OPEN_TRIES    4   /* fresh names to try when tmp/<name> already exists */

/* Where the unstuffer stands between two octets (and so between two chunks). */
struct maildir_unstuff {
	bool bol; /* the next octet starts a line (start of the content, or after CRLF) */
	bool dot; /* a '.' that began the line is held back: dropped if more follows on the line */
	bool cr;  /* a CR is held back: dropped if an LF follows, kept otherwise */
};

/* Buffered output to the file in tmp/. */
struct maildir_writer {
	int fd;        /* the file in tmp/, or -1 */
	char *buf;     /* pending octets */
	size_t len;    /* octets in buf */
	size_t cap;    /* size of buf: chunk size + room for the held-back octets */
	uint64_t size; /* octets written to fd so far (the ",S=" value in the end) */
};

static atomic_ulong maildir_counter;
static atomic_size_t maildir_chunk_size = MAILDIR_CHUNK_SIZE;

static void maildir_set_err(char *err, size_t errsize, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

int
maildir_error_is_temporary(int err)
{
	switch (err) {
	case ENOTDIR:
	case EACCES:
	case EPERM:
	case ENAMETOOLONG:
	case ELOOP:
	case EISDIR:
	case EFBIG:
		return 0;
	default:
		/* ENOSPC, EDQUOT, EIO, EAGAIN, EINTR, EROFS, ENOMEM, EMFILE, EEXIST, unknown. */
		return 1;
	}
}

void
maildir_set_chunk_size(size_t n)
{
	atomic_store(&maildir_chunk_size, n > 0 ? n : (size_t)MAILDIR_CHUNK_SIZE);
}

static void
maildir_set_err(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsize == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
}

/* ASCII-only lower-casing: independent of the locale, 8-bit octets unchanged. */
static char
maildir_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* True if s[0..n) holds no '/', NUL or control octet. */
static bool
maildir_octets_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '/' || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static bool
maildir_local_ok(const char *local, size_t len)
{
	if (local == NULL || len == 0)
		return false;
	if ((len == 1 && local[0] == '.') || (len == 2 && local[0] == '.' && local[1] == '.'))
		return false;
	return maildir_octets_ok(local, len);
}

/* True if the path component c[0..n) is "." or "..". */
static bool
maildir_dot_component(const char *c, size_t n)
{
	return (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.');
}

int
maildir_expand(const char *tmpl, const char *local, size_t local_len, const char *domain, char *out,
               size_t outsize)
{
	const char *t;
	size_t o = 0, comp = 0; /* comp: where the current path component starts in out */
	bool tainted = false;   /* the current component holds octets from %u or %d */

	if (outsize == 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (domain == NULL)
		domain = "";
	for (t = tmpl; *t != '\0'; t++) {
		const char *s = t;
		size_t i, n = 1;
		bool sub = false;

		if (*t == '%') {
			t++;
			switch (*t) {
			case '%':
				s = t;
				break;
			case 'u':
				if (!maildir_local_ok(local, local_len))
					goto unsafe;
				s = local;
				n = local_len;
				sub = true;
				break;
			case 'd':
				n = strlen(domain);
				if (n == 0 || !maildir_octets_ok(domain, n))
					goto unsafe;
				s = domain;
				sub = true;
				break;
			default: /* an unknown escape, or a '%' that ends the template */
				goto unsafe;
			}
		} else if (*t == '/') {
			/* Only the template makes '/': the component before it is complete. */
			if (tainted && maildir_dot_component(out + comp, o - comp))
				goto unsafe;
			comp = o + 1;
			tainted = false;
		}
		if (n >= outsize - o) {
			out[0] = '\0';
			errno = ENAMETOOLONG;
			return -1;
		}
		for (i = 0; i < n; i++)
			out[o++] = sub ? maildir_lower(s[i]) : s[i];
		tainted = tainted || sub;
	}
	if (o == 0 || (tainted && maildir_dot_component(out + comp, o - comp)))
		goto unsafe;
	out[o] = '\0';
	return 0;
unsafe:
	out[0] = '\0';
	errno = EINVAL;
	return -1;
}

/*
 * Unstuff and convert in[0..n) into out, which must have room for n + 2 octets (the octets
 * held back from the previous chunk). Returns the number of octets put in out.
 */
static size_t
maildir_unstuff_feed(struct maildir_unstuff *st, const char *in, size_t n, char *out)
{
	const char *p = in, *end = in + n;
	char *o = out;

	while (p < end) {
		char c;

		if (!st->bol && !st->dot && !st->cr) {
			/* Inside a line: copy everything up to the next CR at once. */
			const char *q = memchr(p, '\r', (size_t)(end - p));
			size_t run = q != NULL ? (size_t)(q - p) : (size_t)(end - p);

			memcpy(o, p, run);
			o += run;
			p += run;
			if (p == end)
				break;
		}
		c = *p++;
		if (st->cr) {
			st->cr = false;
			if (c == '\n') {
				if (st->dot)
					*o++ = '.'; /* the line was a lone ".": kept */
				st->dot = false;
				*o++ = '\n';
				st->bol = true;
				continue;
			}
			/* A bare CR (refused at reception, so never here): kept as it is. */
			st->dot = false;
			*o++ = '\r';
		}
		if (c == '\r') {
			st->cr = true;
			st->bol = false;
			continue;
		}
		if (st->bol && c == '.') {
			st->dot = true;
			st->bol = false;
			continue;
		}
		/* More follows a held-back dot: it was the stuffing dot, drop it. */
		st->dot = false;
		st->bol = false;
		*o++ = c;
	}
	return (size_t)(o - out);
}

/* End of the content: release what is held back (at most 1 octet). Returns octets put. */
static size_t
maildir_unstuff_finish(struct maildir_unstuff *st, char *out)
{
	size_t n = 0;

	if (st->cr)
		out[n++] = '\r'; /* ".\r" at the very end: more than a dot, the dot goes */
	else if (st->dot)
		out[n++] = '.'; /* a last line that is a lone "." without CRLF */
	st->cr = st->dot = false;
	return n;
}

static int
maildir_write_all(int fd, const char *p, size_t n)
{
	unsigned eintr = 0;

	while (n > 0) {
		ssize_t r = write(fd, p, n);

		if (r == -1) {
			if (errno == EINTR && ++eintr < MAILDIR_EINTR_RETRIES)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EIO;
			return -1;
		}
		eintr = 0;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
maildir_writer_flush(struct maildir_writer *w)
{
	if (w->len == 0)
		return 0;
	if (maildir_write_all(w->fd, w->buf, w->len) == -1)
		return -1;
	w->size += w->len;
	w->len = 0;
	return 0;
}

/* Make room for n more octets in w->buf (n <= w->cap). */
static int
maildir_writer_reserve(struct maildir_writer *w, size_t n)
{
	if (w->cap - w->len >= n)
		return 0;
	return maildir_writer_flush(w);
}

/* The prefix, with CRLF → LF and nothing else changed. */
static int
maildir_writer_prefix(struct maildir_writer *w, const char *prefix)
{
	const char *p;

	for (p = prefix; *p != '\0'; p++) {
		if (p[0] == '\r' && p[1] == '\n')
			continue;
		if (maildir_writer_reserve(w, 1) == -1)
			return -1;
		w->buf[w->len++] = *p;
	}
	return 0;
}

static ssize_t
maildir_pread(int fd, char *buf, size_t n, off_t off)
{
	unsigned eintr = 0;
	ssize_t r;

	while ((r = pread(fd, buf, n, off)) == -1 && errno == EINTR &&
	       ++eintr < MAILDIR_EINTR_RETRIES)
		continue;
	return r;
}

static int
maildir_fsync(int fd)
{
	unsigned eintr = 0;
	int r;

	while ((r = fsync(fd)) == -1 && errno == EINTR && ++eintr < MAILDIR_EINTR_RETRIES)
		continue;
	return r;
}

/*
 * Copy src_fd[offset, offset+len) into w, unstuffed, in chunks of chunk_size through chunk.
 * On failure *what names the step that failed (errno set).
 */
static int
maildir_copy(struct maildir_writer *w, int src_fd, off_t offset, size_t len, char *chunk,
             size_t chunk_size, const char **what)
{
	struct maildir_unstuff st = { .bol = true };
	size_t done = 0;

	while (done < len) {
		size_t want = len - done < chunk_size ? len - done : chunk_size;
		ssize_t n;

		*what = "read the message for";
		if ((n = maildir_pread(src_fd, chunk, want, offset + (off_t)done)) == -1)
			return -1;
		if (n == 0) {
			*what = "read the message (the spool file is too short) for";
			errno = EIO;
			return -1;
		}
		*what = "write to";
		if (maildir_writer_reserve(w, (size_t)n + 2) == -1)
			return -1;
		w->len += maildir_unstuff_feed(&st, chunk, (size_t)n, w->buf + w->len);
		done += (size_t)n;
	}
	*what = "write to";
	if (maildir_writer_reserve(w, 1) == -1)
		return -1;
	w->len += maildir_unstuff_finish(&st, w->buf + w->len);
	return maildir_writer_flush(w);
}

/* fsync the directory at path. */
static int
maildir_fsync_path(const char *path)
{
	int fd, r, saved;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = maildir_fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

/*
 * mkdir -p (mode 0700): create path and its missing parents. The parent of each directory
 * created is fsync'd, so the new entry survives a crash like the message below it.
 */
static int
maildir_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t i, start = 0, len = strlen(path);

	if (len == 0) {
		errno = ENOENT;
		return -1;
	}
	if (len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (i = 0; i <= len; i++) {
		char saved;

		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		if (i == start) { /* a leading '/' or "//": no component here */
			start = i + 1;
			continue;
		}
		buf[i] = '\0';
		if (mkdir(buf, 0700) == 0) {
			/* buf[0..start) is the parent: "/", "a/b/", or "" for "." */
			saved = buf[start];
			buf[start] = '\0';
			if (maildir_fsync_path(start > 0 ? buf : ".") == -1)
				return -1;
			buf[start] = saved;
		} else if (errno != EEXIST) {
			return -1;
		}
		buf[i] = path[i];
		start = i + 1;
	}
	return 0;
}

/* Open the Maildir itself, creating it (and its parents) if it does not exist. */
static int
maildir_open_root(const char *dir)
{
	int fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1 || errno != ENOENT)
		return fd;
	if (maildir_mkdir_p(dir) == -1)
		return -1;
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/*
 * Open (creating it if needed) dirfd/name; *created is set if it was made. tmp/ and new/ must
 * be real directories, not symbolic links (ENOTDIR, permanent): the Maildir itself may be a link.
 */
static int
maildir_open_sub(int dirfd, const char *name, bool *created)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd;

	if ((fd = openat(dirfd, name, flags)) != -1 || errno != ENOENT)
		return fd;
	if (mkdirat(dirfd, name, 0700) == 0)
		*created = true;
	else if (errno != EEXIST) /* EEXIST: another delivery made it just now */
		return -1;
	return openat(dirfd, name, flags);
}

/*
 * The host part of a file name: gethostname(), with '/', ':' (the Maildir info separator),
 * ',' (the field separator of ",S="), '\\' and anything not printable as \ooo (octal).
 */
static void
maildir_host(char *out, size_t outsize)
{
	char host[256];
	const char *p;
	size_t o = 0;

	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	for (p = host; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c > 0x20 && c < 0x7f && strchr("/:,\\", c) == NULL) {
			if (o + 1 >= outsize)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outsize)
				break;
			snprintf(out + o, outsize - o, "\\%03o", c);
			o += 4;
		}
	}
	out[o] = '\0';
}

/*
 * Create tmp/<unique> (0600, O_EXCL). The name is <sec>.M<usec>P<pid>Q<n>.<host>, n from the
 * process-wide counter. A clash (another process with our pid before a reboot, a clock step)
 * just takes the next n.
 */
static int
maildir_create_tmp(int tmpfd, const char *host, char *name, size_t namesize)
{
	int fd = -1, tries;

	for (tries = 0; tries < MAILDIR_OPEN_TRIES; tries++) {
		struct timespec ts;
		unsigned long n = atomic_fetch_add(&maildir_counter, 1);

		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(name, namesize, "%lld.M%06ldP%ldQ%lu.%s", (long long)ts.tv_sec,
		         ts.tv_nsec / 1000, (long)getpid(), n, host);
		fd = openat(tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		            0600);
		if (fd != -1 || errno != EEXIST)
			break;
	}
	return fd;
}

int
maildir_deliver(const char *dir, const char *prefix, int src_fd, off_t offset, size_t len,
                int *temporary, char *err, size_t errsize)
{
	struct maildir_writer w = { .fd = -1 };
	char host[MAILDIR_HOST_MAX + 1], name[MAILDIR_NAME_MAX], newname[MAILDIR_NAME_MAX + 32];
	char msg[128]; /* for strerror_r(): strerror() is not thread-safe */
	const off_t off_max = (off_t)(((uintmax_t)1 << (sizeof(off_t) * CHAR_BIT - 1)) - 1);
	size_t chunk_size = atomic_load(&maildir_chunk_size);
	char *chunk = NULL;
	int dirfd = -1, tmpfd = -1, newfd = -1, saved;
	bool created = false, in_tmp = false, in_new = false;
	const char *what = "check the message range for";

	if (temporary != NULL)
		*temporary = 0;
	maildir_set_err(err, errsize, "%s", "");
	if (offset < 0 || (uintmax_t)len > (uintmax_t)(off_max - offset)) {
		errno = EINVAL;
		goto fail;
	}
	what = "allocate memory for";
	w.cap = chunk_size + 8;
	if ((chunk = malloc(chunk_size)) == NULL || (w.buf = malloc(w.cap)) == NULL)
		goto fail;

	what = "create";
	if ((dirfd = maildir_open_root(dir)) == -1)
		goto fail;
	what = "create tmp/ in";
	if ((tmpfd = maildir_open_sub(dirfd, "tmp", &created)) == -1)
		goto fail;
	what = "create new/ in";
	if ((newfd = maildir_open_sub(dirfd, "new", &created)) == -1)
		goto fail;
	what = "create cur/ in";
	if (mkdirat(dirfd, "cur", 0700) == 0)
		created = true;
	else if (errno != EEXIST)
		goto fail;
	what = "sync";
	if (created && maildir_fsync(dirfd) == -1)
		goto fail;

	what = "create a file in tmp/ of";
	maildir_host(host, sizeof(host));
	if ((w.fd = maildir_create_tmp(tmpfd, host, name, sizeof(name))) == -1)
		goto fail;
	in_tmp = true;
	what = "write to";
	if (prefix != NULL && maildir_writer_prefix(&w, prefix) == -1)
		goto fail;
	if (maildir_copy(&w, src_fd, offset, len, chunk, chunk_size, &what) == -1)
		goto fail;
	what = "sync a file in tmp/ of";
	if (maildir_fsync(w.fd) == -1)
		goto fail;
	what = "close a file in tmp/ of";
	if (close(w.fd) == -1) { /* the fd is gone even then (Linux): do not close it again */
		w.fd = -1;
		goto fail;
	}
	w.fd = -1;

	what = "move a file into new/ of";
	snprintf(newname, sizeof(newname), "%s,S=%" PRIu64, name, w.size);
	if (linkat(tmpfd, name, newfd, newname, 0) == -1) {
		/* EPERM from link(2): this file system has no hard links. Rename instead. */
		if (errno != EPERM && errno != EOPNOTSUPP)
			goto fail;
		if (renameat(tmpfd, name, newfd, newname) == -1)
			goto fail;
		in_tmp = false;
	}
	in_new = true;
	what = "sync new/ of";
	if (maildir_fsync(newfd) == -1)
		goto fail;
	/* Delivered. A leftover link in tmp/ is a whole copy, which Maildir readers clean up. */
	if (in_tmp && unlinkat(tmpfd, name, 0) == -1)
		log_warn("maildir cannot remove tmp file dir=%s name=%s error=\"%s\"", dir, name,
		         strerror_r(errno, msg, sizeof(msg)));
	close(newfd);
	close(tmpfd);
	close(dirfd);
	free(w.buf);
	free(chunk);
	return 0;
fail:
	saved = errno;
	if (w.fd != -1)
		close(w.fd);
	if (in_new)
		unlinkat(newfd, newname, 0);
	if (in_tmp)
		unlinkat(tmpfd, name, 0);
	if (newfd != -1)
		close(newfd);
	if (tmpfd != -1)
		close(tmpfd);
	if (dirfd != -1)
		close(dirfd);
	free(w.buf);
	free(chunk);
	if (temporary != NULL)
		*temporary = maildir_error_is_temporary(saved);
	maildir_set_err(err, errsize, "cannot %s maildir %s: %s", what, dir,
	                strerror_r(saved, msg, sizeof(msg)));
	errno = saved;
	return -1;
}
