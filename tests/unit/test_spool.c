/*
 * test_spool.c: the spool on a temporary directory. Slot files (slots/<n>) and their commit
 * record; begin/write/commit with both durabilities, the callback and the queue hook; abort;
 * removal and recycling in place; discard; torn files found at start-up; recovery after a
 * restart; the state journal; the read-only API (spool_list, spool_find, spool_open_data).
 *
 * Callbacks come from the event loop: a test runs it (event_base_dispatch, broken out of by
 * the callbacks) until what it waits for has happened. Each such test has a timeout.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "petrel/message.h"
#include "petrel/spool.h"
#include "petrel/spool_record.h"

#define MAXMSG 64

static char dir[256];
static struct event_base *base;

/* What the queue hook was handed, in order. */
static struct message *hooked[MAXMSG];
static int nhooked;
static bool hook_set;

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/petrel-test-spool-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	evthread_use_pthreads();
	base = event_base_new();
	cr_assert_not_null(base);
	nhooked = 0;
	hook_set = false;
}

static void
teardown(void)
{
	char cmd[300];
	int i;

	for (i = 0; i < nhooked; i++)
		message_free(hooked[i]);
	nhooked = 0;
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* ---- helpers: the spool and its callbacks ---- */

struct done {
	int calls;
	bool ok;
	char id[MESSAGE_ID_LEN + 1];
};

static void
on_commit(void *arg, const char *id, bool ok)
{
	struct done *d = arg;

	d->calls++;
	d->ok = ok;
	snprintf(d->id, sizeof(d->id), "%s", id);
	event_base_loopbreak(base);
}

static void
on_hook(void *arg, struct message *msg)
{
	cr_assert_lt(nhooked, MAXMSG);
	hooked[nhooked++] = msg;
	event_base_loopbreak(base);
}

static struct spool *
open_spool(enum config_durability durability, bool hook)
{
	char *err = NULL;
	struct spool *sp = spool_open(base, dir, durability, &err);

	cr_assert_not_null(sp, "spool_open: %s", err ? err : "(no error)");
	if (hook)
		spool_set_queue_hook(sp, on_hook, NULL);
	hook_set = hook;
	return sp;
}

static struct message *
make_message(const char *body)
{
	struct message *m = message_new();

	cr_assert_not_null(m);
	cr_assert_eq(message_set_from(m, "a@example.org"), 0);
	cr_assert_eq(message_set_helo(m, "client.example", 14), 0);
	cr_assert_eq(message_add_rcpt(m, "u@localhost", 0, NULL), 0);
	cr_assert_eq(message_add_rcpt(m, "v@localhost", 6, "rfc822;v@localhost"), 0);
	snprintf(m->client_addr, sizeof(m->client_addr), "127.0.0.1");
	evbuffer_add(m->body, body, strlen(body));
	m->body_size = strlen(body);
	return m;
}

/* The envelope make_message() gives, as read back. */
static void
expect_envelope(const struct message *m)
{
	cr_assert_str_eq(m->from, "a@example.org");
	cr_assert_str_eq(m->helo, "client.example");
	cr_assert_str_eq(m->client_addr, "127.0.0.1");
	cr_assert_eq(m->nrcpts, 2);
	cr_assert_str_eq(m->rcpts[0].addr, "u@localhost");
	cr_assert_eq(m->rcpts[0].notify, 0);
	cr_assert_null(m->rcpts[0].orcpt);
	cr_assert_str_eq(m->rcpts[1].addr, "v@localhost");
	cr_assert_eq(m->rcpts[1].notify, 6);
	cr_assert_str_eq(m->rcpts[1].orcpt, "rfc822;v@localhost");
}

/* m has been begun: commit it and run the loop until its callback (and the hook, if set).
 * Returns what the hook got (NULL without a hook). */
static struct message *
commit_begun(struct spool *sp, struct message *m, char id[MESSAGE_ID_LEN + 1])
{
	struct done d = { 0 };
	int want = nhooked + 1;

	snprintf(id, MESSAGE_ID_LEN + 1, "%s", m->id);
	cr_assert_not_null(spool_msg_commit(sp, m, on_commit, &d));
	cr_assert_eq(d.calls, 0, "the callback never runs inside commit");
	while (d.calls == 0 || (hook_set && nhooked < want))
		event_base_dispatch(base);
	cr_assert_eq(d.calls, 1);
	cr_assert(d.ok, "committed");
	cr_assert_str_eq(d.id, id);
	if (!hook_set)
		return NULL;
	cr_assert_eq(nhooked, want, "the hook gets each message once");
	cr_assert_str_eq(hooked[nhooked - 1]->id, id);
	return hooked[nhooked - 1];
}

static struct message *
commit_wait(struct spool *sp, struct message *m, const char *hdr, char id[MESSAGE_ID_LEN + 1])
{
	cr_assert_eq(spool_msg_begin(sp, m, hdr, strlen(hdr)), 0, "%s", strerror(errno));
	cr_assert_geq(m->spool_slot, 0, "begin takes a slot");
	return commit_begun(sp, m, id);
}

/* What spool_recover / spool_list hand. */
struct got {
	int n;
	struct message *m[MAXMSG];
};

static void
on_message(void *arg, struct message *msg)
{
	struct got *g = arg;

	cr_assert_lt(g->n, MAXMSG);
	g->m[g->n++] = msg;
}

static void
got_free(struct got *g)
{
	int i;

	for (i = 0; i < g->n; i++)
		message_free(g->m[i]);
	g->n = 0;
}

/* ---- helpers: the files ---- */

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
slot_path(char *out, size_t size, int64_t n)
{
	snprintf(out, size, "%s/slots/%lld", dir, (long long)n);
}

static int
open_slots_dir(void)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/slots", dir);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	return fd;
}

/* One slot file as it is on disk. */
struct slot {
	char *buf; /* the whole file, NUL-terminated */
	size_t size;
	ino_t ino;
	int parsed; /* spool_record_parse's answer */
	struct spool_record r;
	const char *content; /* what follows the record */
};

/* Read slots/<n>; false when there is no such file. */
static bool
slot_read(int64_t n, struct slot *s)
{
	char path[512];
	struct stat st;

	memset(s, 0, sizeof(*s));
	s->parsed = -1;
	slot_path(path, sizeof(path), n);
	if (stat(path, &st) == -1)
		return false;
	s->ino = st.st_ino;
	s->buf = slurp(path, &s->size);
	s->parsed = spool_record_parse(s->buf, s->size, &s->r);
	s->content = s->buf + (s->size < SPOOL_RECORD_LEN ? s->size : SPOOL_RECORD_LEN);
	return true;
}

static void
slot_free(struct slot *s)
{
	free(s->buf);
	s->buf = NULL;
}

/* Does the slot hold a committed message, by the rule of spool.h (Q, id line, checksum)? */
static bool
slot_committed(const struct slot *s)
{
	char idline[32];
	struct iovec iov;
	size_t n;

	if (s->parsed != 0 || s->r.state != SPOOL_SLOT_QUEUED ||
	    s->size - SPOOL_RECORD_LEN < s->r.len)
		return false;
	iov.iov_base = (void *)s->content;
	iov.iov_len = s->r.len;
	if (spool_sum_iov(&iov, 1, s->r.len) != s->r.sum)
		return false;
	n = (size_t)snprintf(idline, sizeof(idline), "id %s\n", s->r.id);
	return s->r.len >= n && memcmp(s->content, idline, n) == 0;
}

/* slots/<n> holds the committed message `id`; the file is left in *s. */
static void
expect_slot_holds(int64_t n, const char *id, struct slot *s)
{
	cr_assert(slot_read(n, s), "slots/%lld exists", (long long)n);
	cr_assert(slot_committed(s), "slots/%lld holds a committed message: %.68s", (long long)n,
	          s->buf);
	cr_assert_str_eq(s->r.id, id, "slots/%lld", (long long)n);
}

/* The state byte of slots/<n>. */
static char
slot_state(int64_t n)
{
	char path[512], c = 0;
	int fd;

	slot_path(path, sizeof(path), n);
	cr_assert_geq(fd = open(path, O_RDONLY), 0, "%s", path);
	cr_assert_eq(pread(fd, &c, 1, SPOOL_RECORD_STATE_OFF), 1);
	close(fd);
	return c;
}

static ino_t
slot_ino(int64_t n)
{
	char path[512];
	struct stat st;

	slot_path(path, sizeof(path), n);
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	return st.st_ino;
}

/* The numbers of the files in slots/ (each in out[], sorted); returns how many. Other names
 * count too (as -1): no stray file is expected. */
static int
slot_files(int64_t *out, int max)
{
	char path[512];
	struct dirent *e;
	DIR *d;
	int n = 0, i, j;

	snprintf(path, sizeof(path), "%s/slots", dir);
	cr_assert_not_null(d = opendir(path), "%s", path);
	while ((e = readdir(d)) != NULL) {
		char *end;
		long long v;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		v = strtoll(e->d_name, &end, 10);
		cr_assert_lt(n, max);
		out[n++] = *end == '\0' && e->d_name[0] != '\0' ? v : -1;
	}
	closedir(d);
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && out[j - 1] > out[j]; j--) {
			int64_t t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}

/* The slot holding the committed message `id`, or -1. */
static int64_t
slot_of(const char *id)
{
	int64_t nums[MAXMSG * 2], found = -1;
	int n = slot_files(nums, MAXMSG * 2), i;

	for (i = 0; i < n; i++) {
		struct slot s = { 0 };

		if (nums[i] >= 0 && slot_read(nums[i], &s) && slot_committed(&s) &&
		    strcmp(s.r.id, id) == 0) {
			cr_assert_eq(found, -1, "%s is in one slot only", id);
			found = nums[i];
		}
		slot_free(&s);
	}
	return found;
}

static int
count_committed(void)
{
	int64_t nums[MAXMSG * 2];
	int n = slot_files(nums, MAXMSG * 2), i, c = 0;

	for (i = 0; i < n; i++) {
		struct slot s = { 0 };

		if (nums[i] >= 0 && slot_read(nums[i], &s) && slot_committed(&s))
			c++;
		slot_free(&s);
	}
	return c;
}

/* m's data read back through spool_open_data (malloc'd, NUL-terminated). */
static char *
read_data(int slotsfd, const struct message *m)
{
	int fd = spool_open_data(slotsfd, m);
	char *buf;
	ssize_t n;

	cr_assert_geq(fd, 0, "spool_open_data(%s): %s", m->id, strerror(errno));
	cr_assert_not_null(buf = malloc(m->data_len + 1));
	n = pread(fd, buf, m->data_len, (off_t)m->data_offset);
	cr_assert_eq(n, (ssize_t)m->data_len, "%s: %zd of %llu bytes", m->id, n,
	             (unsigned long long)m->data_len);
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* Write slots/<n> by hand: a record (state, id, the length of content, its checksum xor
 * sum_xor), then content less its last `cut` bytes. */
static void
write_slot(int64_t n, char state, const char *id, const char *content, uint64_t sum_xor, size_t cut)
{
	struct spool_record r = { .state = state, .len = strlen(content) };
	struct iovec iov = { (void *)content, strlen(content) };
	char rec[SPOOL_RECORD_LEN], path[512];
	FILE *f;

	snprintf(r.id, sizeof(r.id), "%s", id);
	r.sum = spool_sum_iov(&iov, 1, r.len) ^ sum_xor;
	spool_record_format(rec, &r);
	snprintf(path, sizeof(path), "%s/slots", dir);
	cr_assert(mkdir(path, 0700) == 0 || errno == EEXIST);
	slot_path(path, sizeof(path), n);
	cr_assert_not_null(f = fopen(path, "wb"));
	cr_assert_eq(fwrite(rec, 1, SPOOL_RECORD_LEN, f), SPOOL_RECORD_LEN);
	cr_assert_eq(fwrite(content, 1, r.len - cut, f), r.len - cut);
	cr_assert_eq(fclose(f), 0);
}

#define HAND_DATA "Received: from client.example.org\r\nSubject: by hand\r\n\r\nmade\r\n"

/* A complete envelope and data, the id line saying `id` (malloc'd). */
static char *
hand_content(const char *id)
{
	char *s;

	cr_assert_neq(asprintf(&s,
	                       "id %s\narrival 1763932800.123456\nclient 192.0.2.7\n"
	                       "helo client.example.org\nprotocol ESMTP\nfrom <s@example.org>\n"
	                       "body 8BITMIME\nsmtputf8\nret HDRS\nenvid env+2B1\n"
	                       "rcpt notify=SUCCESS,FAILURE orcpt=rfc822;a@far.test <a@far.test>\n"
	                       "rcpt <b@far.test>\n\n" HAND_DATA,
	                       id),
	              -1);
	return s;
}

/* ---- commit ---- */

static void
commit_one(enum config_durability durability)
{
	static const char data[] = "Received: x\r\nSubject: t\r\n\r\n..dot\r\n";
	struct spool *sp = open_spool(durability, false);
	struct message *m = make_message("Subject: t\r\n\r\n..dot\r\n"), *found = NULL;
	char id[MESSAGE_ID_LEN + 1], idline[32], *got;
	struct spool_stats stats;
	struct got g = { 0 };
	struct slot s;
	int64_t nums[4], n;
	int slotsfd;

	commit_wait(sp, m, "Received: x\r\n", id);
	spool_get_stats(sp, &stats);
	cr_assert_eq(stats.commits, 1);
	cr_assert_eq(stats.failures, 0);

	/* One file in slots/, with a valid Q record, then the envelope and the data. */
	cr_assert_eq(slot_files(nums, 4), 1, "one slot file");
	n = nums[0];
	cr_assert_geq(n, 0, "named by a number");
	cr_assert_eq(slot_of(id), n);
	expect_slot_holds(n, id, &s);
	cr_assert_eq(memcmp(s.buf, "petrel-spool 2 Q ", 17), 0, "%.68s", s.buf);
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + s.r.len, "a new file ends with its message");
	snprintf(idline, sizeof(idline), "id %s\narrival ", id);
	cr_assert_eq(strncmp(s.content, idline, strlen(idline)), 0, "%s", s.content);
	cr_assert_not_null(strstr(s.content, "\nclient 127.0.0.1\nhelo client.example\n"), "%s",
	                   s.content);
	cr_assert_not_null(strstr(s.content, "\nfrom <a@example.org>\n"), "%s", s.content);
	cr_assert_not_null(strstr(s.content, "\nrcpt <u@localhost>\n"), "%s", s.content);
	cr_assert_not_null(strstr(s.content, "\nrcpt notify=SUCCESS,FAILURE "
	                                     "orcpt=rfc822;v@localhost <v@localhost>\n"),
	                   "%s", s.content);
	cr_assert_geq(s.r.len, strlen(data) + 2);
	cr_assert_eq(memcmp(s.content + s.r.len - strlen(data) - 2, "\n\n", 2), 0,
	             "the empty line, then the data: %s", s.content);
	cr_assert_eq(memcmp(s.content + s.r.len - strlen(data), data, strlen(data)), 0,
	             "the data as written: %s", s.content);

	/* The read-only API finds it, on its own fd and on the spool's. */
	slotsfd = open_slots_dir();
	cr_assert_eq(spool_find(slotsfd, id, &found), 0, "%s", strerror(errno));
	cr_assert_str_eq(found->id, id);
	expect_envelope(found);
	cr_assert_eq(found->spool_slot, n);
	cr_assert_eq(found->data_len, strlen(data));
	cr_assert_eq(found->data_offset + found->data_len, SPOOL_RECORD_LEN + s.r.len);
	got = read_data(slotsfd, found);
	cr_assert_str_eq(got, data);
	free(got);
	message_free(found);
	found = NULL;
	cr_assert_geq(spool_slots_fd(sp), 0);
	cr_assert_eq(spool_find(spool_slots_fd(sp), id, &found), 0);
	message_free(found);
	close(slotsfd);
	slot_free(&s);

	/* spool_recover hands what spool_open found: nothing yet. */
	cr_assert_eq(spool_recover(sp, on_message, &g), 0);
	cr_assert_eq(g.n, 0);
	spool_close(sp);

	/* After a restart it is there, once. */
	sp = open_spool(durability, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_eq(g.n, 1);
	cr_assert_str_eq(g.m[0]->id, id);
	expect_envelope(g.m[0]);
	cr_assert_eq(g.m[0]->spool_slot, n);
	cr_assert_eq(g.m[0]->data_len, strlen(data));
	got = read_data(spool_slots_fd(sp), g.m[0]);
	cr_assert_str_eq(got, data);
	free(got);
	got_free(&g);
	cr_assert_eq(spool_recover(sp, on_message, &g), 0, "a second call hands nothing");
	spool_close(sp);
}

Test(spool, commit_fsync, .init = setup, .fini = teardown, .timeout = 10)
{
	commit_one(CONFIG_DURABILITY_FSYNC);
}

Test(spool, commit_none, .init = setup, .fini = teardown, .timeout = 10)
{
	commit_one(CONFIG_DURABILITY_NONE);
}

/* Written in several spool_msg_write calls (the running checksum), over a recycled slot that
 * held a smaller message: the record covers the whole new message. */
Test(spool, piecewise_write_over_a_recycled_slot, .init = setup, .fini = teardown, .timeout = 10)
{
	enum { CHUNK = 100000, PIECES = 4 };
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	struct message *m = make_message("tiny\r\n"), *h;
	char id1[MESSAGE_ID_LEN + 1], id2[MESSAGE_ID_LEN + 1], *want, *got;
	struct got g = { 0 };
	size_t wlen = 13;
	struct slot s;
	int64_t slot;
	ino_t ino;
	int k;

	h = commit_wait(sp, m, "", id1);
	slot = h->spool_slot;
	ino = slot_ino(slot);
	spool_remove(sp, h, false);

	cr_assert_not_null(want = malloc(13 + (size_t)CHUNK * PIECES));
	memcpy(want, "Received: p\r\n", 13);
	m = make_message("");
	cr_assert_eq(spool_msg_begin(sp, m, "Received: p\r\n", 13), 0);
	cr_assert_eq(m->spool_slot, slot, "the free slot is taken");
	for (k = 0; k < PIECES; k++) {
		char *piece = want + wlen;
		size_t i;

		for (i = 0; i < CHUNK; i++)
			piece[i] = i % 50 == 48   ? '\r'
			           : i % 50 == 49 ? '\n'
			                          : (char)('a' + (i + k) % 26);
		evbuffer_add(m->body, piece, CHUNK);
		m->body_size += CHUNK;
		wlen += CHUNK;
		if (k < PIECES - 1) { /* the last piece is left to the commit */
			cr_assert_eq(spool_msg_write(sp, m), 0, "%s", strerror(errno));
			cr_assert_eq(evbuffer_get_length(m->body), 0, "drained");
		}
	}
	h = commit_begun(sp, m, id2);
	cr_assert_eq(h->spool_slot, slot);
	cr_assert_eq(h->data_len, wlen);
	expect_slot_holds(slot, id2, &s);
	cr_assert_eq(s.ino, ino, "written where it lies");
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + s.r.len);
	cr_assert_eq(memcmp(s.content + s.r.len - wlen, want, wlen), 0);
	slot_free(&s);
	got = read_data(spool_slots_fd(sp), h);
	cr_assert_eq(memcmp(got, want, wlen), 0);
	free(got);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_str_eq(g.m[0]->id, id2);
	cr_assert_eq(g.m[0]->data_len, wlen);
	got = read_data(spool_slots_fd(sp), g.m[0]);
	cr_assert_eq(memcmp(got, want, wlen), 0);
	free(got);
	got_free(&g);
	spool_close(sp);
	free(want);
}

/* The other ways a commit writes: a big body in one piece (the record in the same writev), and
 * a small message, whose data may stay in memory (data_mem) for its first deliveries. */
Test(spool, commit_big_and_small_bodies, .init = setup, .fini = teardown, .timeout = 10)
{
	enum { BIG = 200000 };
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char ids[2][MESSAGE_ID_LEN + 1], *big = malloc(BIG + 1), *got, *bigw;
	const char *want[2];
	struct message *h;
	struct got g = { 0 };
	struct slot s;
	size_t i;

	cr_assert_not_null(big);
	for (i = 0; i < BIG; i++)
		big[i] = i % 40 == 38 ? '\r' : i % 40 == 39 ? '\n' : (char)('A' + i % 26);
	big[BIG] = '\0';
	cr_assert_neq(asprintf(&bigw, "Received: b\r\n%s", big), -1);
	h = commit_wait(sp, make_message(big), "Received: b\r\n", ids[0]);
	cr_assert_eq(h->data_len, 13 + BIG);
	expect_slot_holds(h->spool_slot, ids[0], &s);
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + s.r.len);
	slot_free(&s);
	got = read_data(spool_slots_fd(sp), h);
	cr_assert(strcmp(got, bigw) == 0, "the big message reads back");
	free(got);

	h = commit_wait(sp, make_message("small\r\n"), "Received: s\r\n", ids[1]);
	cr_assert_eq(h->data_len, 20);
	if (h->data_mem != NULL) {
		cr_assert_eq(evbuffer_get_length(h->data_mem), h->data_len, "data_mem is the data");
		cr_assert_eq(
		        memcmp(evbuffer_pullup(h->data_mem, -1), "Received: s\r\nsmall\r\n", 20),
		        0);
	}
	expect_slot_holds(h->spool_slot, ids[1], &s);
	slot_free(&s);
	got = read_data(spool_slots_fd(sp), h);
	cr_assert_str_eq(got, "Received: s\r\nsmall\r\n");
	free(got);
	spool_close(sp);

	want[0] = bigw;
	want[1] = "Received: s\r\nsmall\r\n";
	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 2);
	for (i = 0; i < 2; i++) {
		cr_assert_str_eq(g.m[i]->id, ids[i]);
		cr_assert_eq(g.m[i]->data_len, strlen(want[i]));
		got = read_data(spool_slots_fd(sp), g.m[i]);
		cr_assert(strcmp(got, want[i]) == 0, "message %zu reads back after a restart", i);
		free(got);
	}
	got_free(&g);
	spool_close(sp);
	free(big);
	free(bigw);
}

/* A body chain in more pieces than one writev takes (SPOOL_IOV, 64), committed without a
 * spool_msg_write before: each of `pieces` pieces is `size` bytes. Small enough for the data to
 * be kept in memory, or not. */
static void
commit_fragmented(size_t pieces, size_t size)
{
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char id[MESSAGE_ID_LEN + 1], *store = malloc(pieces * size + 1), *got;
	struct message *m = make_message(""), *h;
	struct got g = { 0 };
	struct slot s;
	size_t i;

	cr_assert_not_null(store);
	for (i = 0; i < pieces; i++) {
		char *p = store + i * size;

		memset(p, 'a' + (int)(i % 26), size);
		snprintf(p, size, "%05zu", i);
		p[5] = ' ';
		memcpy(p + size - 2, "\r\n", 2);
		cr_assert_eq(evbuffer_add_reference(m->body, p, size, NULL, NULL), 0);
		m->body_size += size;
	}
	store[pieces * size] = '\0';
	cr_assert_gt(evbuffer_peek(m->body, -1, NULL, NULL, 0), 64, "more than one writev takes");
	h = commit_wait(sp, m, "", id);
	cr_assert_eq(h->data_len, pieces * size);
	got = read_data(spool_slots_fd(sp), h);
	cr_assert(strcmp(got, store) == 0, "the file holds the whole message");
	free(got);
	cr_assert(slot_read(h->spool_slot, &s));
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + s.r.len, "the file ends with the message");
	cr_assert(slot_committed(&s), "the record's checksum matches the %llu bytes it covers",
	          (unsigned long long)s.r.len);
	slot_free(&s);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1, "acknowledged, so recovered");
	cr_assert_str_eq(g.m[0]->id, id);
	got = read_data(spool_slots_fd(sp), g.m[0]);
	cr_assert(strcmp(got, store) == 0);
	free(got);
	got_free(&g);
	spool_close(sp);
	free(store);
}

Test(spool, commit_small_body_in_many_pieces, .init = setup, .fini = teardown, .timeout = 10)
{
	commit_fragmented(300, 7); /* 2100 bytes: kept in memory too */
}

Test(spool, commit_big_body_in_many_pieces, .init = setup, .fini = teardown, .timeout = 10)
{
	commit_fragmented(100, 600); /* 60000 bytes */
}

/* ---- abort, and files torn by a crash ---- */

Test(spool, abort_leaves_no_committed_slot_and_the_slot_is_reused, .init = setup, .fini = teardown,
     .timeout = 10)
{
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	struct message *m = make_message("x\r\n"), *m2 = make_message("y\r\n"),
	               *m3 = make_message("a message that was being received at the crash\r\n");
	char id[MESSAGE_ID_LEN + 1], id2[MESSAGE_ID_LEN + 1];
	struct got g = { 0 };
	int64_t slot, slot3, nums[4];
	ino_t ino;

	snprintf(id, sizeof(id), "%s", m->id);
	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	slot = m->spool_slot;
	cr_assert_geq(slot, 0);
	cr_assert_eq(spool_msg_write(sp, m), 0);
	spool_msg_abort(sp, m);
	cr_assert_eq(slot_of(id), -1, "aborted: no committed slot");
	cr_assert_eq(count_committed(), 0);

	/* The next message takes the same slot. */
	cr_assert_eq(spool_msg_begin(sp, m2, "", 0), 0);
	cr_assert_eq(m2->spool_slot, slot, "the aborted slot is reused");
	commit_begun(sp, m2, id2);
	cr_assert_eq(slot_of(id2), slot);
	ino = slot_ino(slot);

	/* A message being written when petrel dies: its slot is free at the next start. */
	cr_assert_eq(spool_msg_begin(sp, m3, "Received: z\r\n", 13), 0);
	slot3 = m3->spool_slot;
	cr_assert_neq(slot3, slot);
	cr_assert_eq(spool_msg_write(sp, m3), 0);
	close(m3->fd); /* the "crash": no commit, no abort */
	m3->fd = -1;
	message_free(m3);
	spool_close(sp);
	cr_assert_eq(slot_files(nums, 4), 2);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1, "only the committed one");
	cr_assert_str_eq(g.m[0]->id, id2);
	cr_assert_eq(g.m[0]->spool_slot, slot);
	cr_assert_eq(slot_ino(slot), ino);
	got_free(&g);
	m = make_message("w\r\n");
	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	cr_assert_eq(m->spool_slot, slot3, "the unfinished slot is free again");
	spool_msg_abort(sp, m);
	spool_close(sp);
	cr_assert_eq(slot_files(nums, 4), 2, "no slot file added");
}

#define ID_OK    "018f3a5c2b7d4e00"
#define ID_SUM   "018f3a5c2b7d4e01"
#define ID_SHORT "018f3a5c2b7d4e02"
#define ID_OTHER "018f3a5c2b7d4e03"
#define ID_FREE  "018f3a5c2b7d4e05"

/* Slot files made by hand: the one committed is recovered with its whole envelope; the torn,
 * mismatched, empty or free ones are not, and their slots go to the next messages, in place. */
Test(spool, torn_slots_are_not_recovered_and_are_reused, .init = setup, .fini = teardown,
     .timeout = 10)
{
	char *ok = hand_content(ID_OK), *sum = hand_content(ID_SUM), *shrt = hand_content(ID_SHORT),
	     *other = hand_content(ID_OK), *fr = hand_content(ID_FREE), path[512], *got;
	char ids[6][MESSAGE_ID_LEN + 1];
	bool used[7] = { false };
	struct spool *sp;
	struct message *r;
	struct got g = { 0 };
	ino_t inos[7];
	int64_t nums[16];
	struct slot s;
	int i, fd;

	write_slot(0, 'Q', ID_OK, ok, 0, 0);
	write_slot(1, 'Q', ID_SUM, sum, 1, 0);     /* wrong checksum */
	write_slot(2, 'Q', ID_SHORT, shrt, 0, 10); /* the file stops 10 bytes short */
	write_slot(3, 'Q', ID_OTHER, other, 0, 0); /* complete, but the id line names another
	                                            * message: not ours to reuse, left alone */
	write_slot(5, 'F', ID_FREE, fr, 0, 0);     /* a finished message */
	slot_path(path, sizeof(path), 4);          /* a new file's zeros */
	cr_assert_geq(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
	cr_assert_eq(ftruncate(fd, 4096), 0);
	close(fd);
	slot_path(path, sizeof(path), 6); /* created, then the crash before any write */
	cr_assert_geq(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
	close(fd);
	for (i = 0; i < 7; i++)
		inos[i] = slot_ino(i);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1, "only the committed slot");
	r = g.m[0];
	cr_assert_str_eq(r->id, ID_OK);
	cr_assert_eq(r->spool_slot, 0);
	cr_assert_eq(r->arrival.tv_sec, 1763932800);
	cr_assert_eq(r->arrival.tv_usec, 123456);
	cr_assert_str_eq(r->client_addr, "192.0.2.7");
	cr_assert_str_eq(r->helo, "client.example.org");
	cr_assert_str_eq(r->from, "s@example.org");
	cr_assert_eq(r->body_type, SMTP_BODY_8BITMIME);
	cr_assert(r->smtputf8);
	cr_assert_eq(r->ret, SMTP_DSN_RET_HDRS);
	cr_assert_str_eq(r->envid, "env+2B1");
	cr_assert_eq(r->nrcpts, 2);
	cr_assert_str_eq(r->rcpts[0].addr, "a@far.test");
	cr_assert_eq(r->rcpts[0].notify, SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_FAILURE);
	cr_assert_str_eq(r->rcpts[0].orcpt, "rfc822;a@far.test");
	cr_assert_str_eq(r->rcpts[1].addr, "b@far.test");
	cr_assert_eq(r->rcpts[1].notify, 0);
	cr_assert_null(r->rcpts[1].orcpt);
	cr_assert_eq(r->data_len, strlen(HAND_DATA));
	cr_assert_eq(r->data_offset, SPOOL_RECORD_LEN + strlen(ok) - strlen(HAND_DATA));
	got = read_data(spool_slots_fd(sp), r);
	cr_assert_str_eq(got, HAND_DATA);
	free(got);
	got_free(&g);

	/* Five messages take the five free slots, where they lie; the sixth makes slots/7. */
	for (i = 0; i < 6; i++) {
		struct message *h = commit_wait(sp, make_message("reuse\r\n"), "", ids[i]);

		if (i == 5) {
			cr_assert_eq(h->spool_slot, 7, "a new file once the free slots are taken");
			used[3] = true; /* the one left alone */
			expect_slot_holds(7, ids[i], &s);
			slot_free(&s);
			continue;
		}
		cr_assert(h->spool_slot >= 1 && h->spool_slot <= 6 && h->spool_slot != 3,
		          "slot %lld", (long long)h->spool_slot);
		cr_assert(!used[h->spool_slot], "slot %lld given twice", (long long)h->spool_slot);
		used[h->spool_slot] = true;
		cr_assert_eq(slot_ino(h->spool_slot), inos[h->spool_slot], "written in place");
		expect_slot_holds(h->spool_slot, ids[i], &s);
		slot_free(&s);
	}
	cr_assert_eq(slot_files(nums, 16), 8, "one slot file created");
	cr_assert(slot_read(3, &s));
	cr_assert_eq(s.ino, inos[3]);
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + strlen(other), "slots/3 is untouched");
	cr_assert_eq(memcmp(s.content, other, strlen(other)), 0);
	slot_free(&s);
	expect_slot_holds(0, ID_OK, &s);
	cr_assert_eq(s.r.len, strlen(ok), "the committed slot is untouched");
	cr_assert_eq(memcmp(s.content, ok, strlen(ok)), 0);
	slot_free(&s);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 7);
	cr_assert_str_eq(g.m[0]->id, ID_OK);
	for (i = 0; i < 6; i++)
		cr_assert_str_eq(g.m[i + 1]->id, ids[i]);
	got_free(&g);
	spool_close(sp);
	free(ok);
	free(sum);
	free(shrt);
	free(other);
	free(fr);
}

/* Files the spool wrote and committed, damaged afterwards (a bit flipped, the end cut off):
 * not recovered at the next start; a damaged length is not trusted either. */
Test(spool, damaged_committed_slots_are_dropped, .init = setup, .fini = teardown, .timeout = 10)
{
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char ids[4][MESSAGE_ID_LEN + 1], path[512];
	int64_t slots[4], nums[8];
	struct got g = { 0 };
	struct stat st;
	int i, fd;

	for (i = 0; i < 4; i++)
		slots[i] =
		        commit_wait(sp, make_message("to be damaged\r\n"), "", ids[i])->spool_slot;
	spool_close(sp);

	/* 0: one bit of the data flipped */
	slot_path(path, sizeof(path), slots[0]);
	cr_assert_geq(fd = open(path, O_RDWR), 0);
	cr_assert_eq(fstat(fd, &st), 0);
	{
		char c;

		cr_assert_eq(pread(fd, &c, 1, st.st_size - 3), 1);
		c ^= 0x04;
		cr_assert_eq(pwrite(fd, &c, 1, st.st_size - 3), 1);
	}
	close(fd);
	/* 1: the last byte cut off */
	slot_path(path, sizeof(path), slots[1]);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(truncate(path, st.st_size - 1), 0);
	/* 2: the recorded length one less (the checksum no longer matches what it covers) */
	{
		struct slot s;
		struct spool_record r;
		char rec[SPOOL_RECORD_LEN];

		cr_assert(slot_read(slots[2], &s));
		r = s.r;
		r.len--;
		spool_record_format(rec, &r);
		slot_path(path, sizeof(path), slots[2]);
		cr_assert_geq(fd = open(path, O_WRONLY), 0);
		cr_assert_eq(pwrite(fd, rec, SPOOL_RECORD_LEN, 0), SPOOL_RECORD_LEN);
		close(fd);
		slot_free(&s);
	}
	/* 3: left alone */

	sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_str_eq(g.m[0]->id, ids[3]);
	got_free(&g);
	for (i = 0; i < 3; i++) {
		char id[MESSAGE_ID_LEN + 1];
		struct message *h = commit_wait(sp, make_message("new\r\n"), "", id);

		cr_assert(h->spool_slot == slots[0] || h->spool_slot == slots[1] ||
		                  h->spool_slot == slots[2],
		          "a damaged slot is reused (got %lld)", (long long)h->spool_slot);
	}
	cr_assert_eq(slot_files(nums, 8), 4);
	spool_close(sp);
}

/* ---- many at once ---- */

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

Test(spool, group_commit_many_then_recover_in_id_order, .init = setup, .fini = teardown,
     .timeout = 20)
{
	enum { N = 50 };
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	static struct done d[N];
	static char ids[N][MESSAGE_ID_LEN + 1];
	bool seen[N * 2] = { false };
	struct spool_stats st;
	struct got g = { 0 };
	int i, calls = 0;

	for (i = 0; i < N; i++) {
		struct message *m = make_message("body\r\n");

		snprintf(ids[i], sizeof(ids[i]), "%s", m->id);
		cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
		cr_assert_not_null(spool_msg_commit(sp, m, on_commit, &d[i]));
	}
	while (calls < N) {
		event_base_dispatch(base);
		for (calls = 0, i = 0; i < N; i++)
			calls += d[i].calls;
	}
	for (i = 0; i < N; i++) {
		cr_assert(d[i].ok && d[i].calls == 1, "message %d", i);
		cr_assert_str_eq(d[i].id, ids[i]);
	}
	spool_get_stats(sp, &st);
	cr_assert_eq(st.commits, N);
	cr_assert_eq(st.failures, 0);
	cr_assert_geq(st.batches, 1);
	cr_assert_leq(st.batches, N);
	cr_assert_eq(count_committed(), N);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), N);
	cr_assert_eq(g.n, N);
	qsort(ids, N, sizeof(ids[0]), id_cmp);
	for (i = 0; i < N; i++) {
		cr_assert_str_eq(g.m[i]->id, ids[i], "in id order (%d)", i);
		cr_assert(g.m[i]->spool_slot >= 0 && g.m[i]->spool_slot < N * 2);
		cr_assert(!seen[g.m[i]->spool_slot], "one message per slot");
		seen[g.m[i]->spool_slot] = true;
		cr_assert_eq(g.m[i]->data_len, 6);
	}
	got_free(&g);
	cr_assert_eq(spool_recover(sp, on_message, &g), 0, "a second call hands nothing");
	cr_assert_eq(g.n, 0);
	spool_close(sp);
}

Test(spool, cancelled_job_still_commits, .init = setup, .fini = teardown, .timeout = 10)
{
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	struct message *m = make_message("z\r\n");
	char id[MESSAGE_ID_LEN + 1];
	struct spool_job *job;
	struct done d = { 0 };
	struct got g = { 0 };

	snprintf(id, sizeof(id), "%s", m->id);
	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	job = spool_msg_commit(sp, m, on_commit, &d);
	cr_assert_not_null(job);
	spool_job_cancel(job);
	spool_close(sp); /* waits for the commit */
	cr_assert_eq(d.calls, 0);
	cr_assert_geq(slot_of(id), 0);
	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_str_eq(g.m[0]->id, id);
	got_free(&g);
	spool_close(sp);
}

Test(spool, unwritable_directory_is_an_error, .init = setup, .fini = teardown)
{
	char *err = NULL, path[300];
	struct spool *sp;

	snprintf(path, sizeof(path), "%s/file", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	snprintf(path, sizeof(path), "%s/file/spool", dir);
	sp = spool_open(base, path, CONFIG_DURABILITY_FSYNC, &err);
	cr_assert_null(sp);
	cr_assert_not_null(err);
	cr_assert(strstr(err, "spool") != NULL, "%s", err);
	free(err);
}

/* A spool of the old layout (petrel-spool 1: messages in queue/<id>) is not taken for an empty
 * one; an empty queue/ is no obstacle. */
Test(spool, an_old_layout_spool_is_refused, .init = setup, .fini = teardown)
{
	char *err = NULL, path[512];
	struct spool *sp;
	FILE *f;

	snprintf(path, sizeof(path), "%s/queue", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	spool_close(sp);

	snprintf(path, sizeof(path), "%s/queue/0660f8bf21ed0600", dir);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs("petrel-spool 1\nid 0660f8bf21ed0600\n", f);
	fclose(f);
	sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	cr_assert_null(sp);
	cr_assert_not_null(err);
	cr_assert_not_null(strstr(err, "queue/"), "%s", err);
	free(err);
}

/* ---- the hook, the journal, removal ---- */

static void
collect_line(void *arg, const char *line, size_t len)
{
	char *out = arg;

	strncat(out, line, len);
	strcat(out, "|");
}

Test(spool, hook_state_and_remove, .init = setup, .fini = teardown, .timeout = 10)
{
	static const char data[] = "Received: y\r\nSubject: t\r\n\r\nhi\r\n";
	char lines[256] = "", path[512], id[MESSAGE_ID_LEN + 1];
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	struct message *m = make_message("Subject: t\r\n\r\nhi\r\n"), *h, *found = NULL;
	struct spool_record r;
	struct got g = { 0 };
	struct slot s;
	struct stat st;
	int64_t slot;
	int slotsfd;

	m->body_type = SMTP_BODY_8BITMIME;
	m->smtputf8 = true;
	m->ret = SMTP_DSN_RET_HDRS;
	cr_assert_eq(message_set_envid(m, "env+2B1"), 0);
	h = commit_wait(sp, m, "Received: y\r\n", id);
	cr_assert_not_null(h, "the queue hook gets the committed message");
	expect_envelope(h);
	cr_assert_eq(h->data_len, strlen(data));
	slot = h->spool_slot;
	cr_assert_geq(slot, 0);
	cr_assert_eq(slot_of(id), slot);

	/* The whole envelope comes back from the file. */
	slotsfd = open_slots_dir();
	cr_assert_eq(spool_find(slotsfd, id, &found), 0);
	expect_envelope(found);
	cr_assert_eq(found->body_type, SMTP_BODY_8BITMIME);
	cr_assert(found->smtputf8);
	cr_assert_eq(found->ret, SMTP_DSN_RET_HDRS);
	cr_assert_str_eq(found->envid, "env+2B1");
	cr_assert_eq(found->data_offset, h->data_offset);
	cr_assert_eq(found->data_len, h->data_len);
	cr_assert_eq(found->arrival.tv_sec, h->arrival.tv_sec);
	cr_assert_eq(found->arrival.tv_usec, h->arrival.tv_usec);
	cr_assert_eq(found->spool_slot, slot);
	message_free(found);
	found = NULL;

	/* The journal. */
	cr_assert_eq(spool_state_append(sp, id, "0 delivered 1\n", 14), 0);
	cr_assert_eq(spool_state_append(sp, id, "1 deferred 1 1 61\n", 18), 0);
	snprintf(path, sizeof(path), "%s/state/%s", dir, id);
	{
		/* a torn line (no newline) after a crash is ignored */
		FILE *f = fopen(path, "a");

		cr_assert_not_null(f);
		fputs("1 deliv", f);
		fclose(f);
	}
	cr_assert_eq(spool_state_read(sp, id, collect_line, lines), 0);
	cr_assert_str_eq(lines, "0 delivered 1|1 deferred 1 1 61|");
	{
		char lines2[256] = "", sdir[512];
		int statefd;

		snprintf(sdir, sizeof(sdir), "%s/state", dir);
		cr_assert_geq(statefd = open(sdir, O_RDONLY | O_DIRECTORY), 0);
		cr_assert_eq(spool_read_state(statefd, id, collect_line, lines2), 0);
		cr_assert_str_eq(lines2, lines, "the read-only journal reader agrees");
		close(statefd);
	}

	/* Removed: one 'F' over the state byte, the journal gone, the file kept. */
	spool_remove(sp, h, true);
	cr_assert_eq(h->fd, -1, "spool_remove takes the fd");
	cr_assert_eq(stat(path, &st), -1, "state/<id> removed");
	cr_assert_eq(slot_state(slot), SPOOL_SLOT_FREE);
	cr_assert(slot_read(slot, &s), "the slot file stays");
	cr_assert_eq(spool_record_parse(s.buf, s.size, &r), 0);
	cr_assert_str_eq(r.id, id, "only the state byte changed");
	slot_free(&s);
	cr_assert_eq(slot_of(id), -1);
	errno = 0;
	cr_assert_eq(spool_find(slotsfd, id, &found), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_null(found);
	lines[0] = '\0';
	cr_assert_eq(spool_state_read(sp, id, collect_line, lines), 0, "no journal is no error");
	cr_assert_str_eq(lines, "");
	close(slotsfd);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 0, "removed: not recovered");
	spool_close(sp);
}

/* A finished message's slot is written over, in place, by the next one: a smaller one leaves
 * the old tail beyond its recorded length (which bounds it), a bigger one grows the file. */
Test(spool, removed_slots_are_recycled_exactly, .init = setup, .fini = teardown, .timeout = 10)
{
	static const char bigd[] = "a long first message body that is longer\r\n";
	static const char smalld[] = "short\r\n";
	static const char biggerd[] = "and now a message longer than the first one was\r\n";
	struct spool *sp = open_spool(CONFIG_DURABILITY_NONE, true);
	char id1[MESSAGE_ID_LEN + 1], id2[MESSAGE_ID_LEN + 1], id3[MESSAGE_ID_LEN + 1], *got;
	struct message *h;
	struct got g = { 0 };
	struct slot s;
	int64_t slot, nums[4];
	size_t size1;
	ino_t ino;

	h = commit_wait(sp, make_message(bigd), "", id1);
	slot = h->spool_slot;
	expect_slot_holds(slot, id1, &s);
	ino = s.ino;
	size1 = s.size;
	slot_free(&s);
	spool_remove(sp, h, false);
	cr_assert_eq(slot_state(slot), SPOOL_SLOT_FREE);
	cr_assert_eq(slot_ino(slot), ino, "the file is kept");

	h = commit_wait(sp, make_message(smalld), "", id2);
	cr_assert_eq(h->spool_slot, slot, "the freed slot is reused");
	expect_slot_holds(slot, id2, &s);
	cr_assert_eq(s.ino, ino, "the same inode, written over");
	cr_assert_eq(s.size, size1, "not cut: the old tail stays");
	cr_assert_gt(s.size, SPOOL_RECORD_LEN + s.r.len, "the file is longer than the record says");
	cr_assert_eq(memcmp(s.content + s.r.len - strlen(smalld) - 2, "\n\nshort\r\n", 9), 0,
	             "the recorded length ends with the new message");
	cr_assert_null(memmem(s.content, s.r.len, "longer", 6), "nothing old within the length");
	cr_assert_null(memmem(s.content, s.r.len, id1, MESSAGE_ID_LEN));
	slot_free(&s);
	cr_assert_eq(h->data_len, strlen(smalld));
	got = read_data(spool_slots_fd(sp), h);
	cr_assert_str_eq(got, smalld);
	free(got);
	cr_assert_eq(slot_files(nums, 4), 1);
	spool_close(sp);

	/* At the next start the length still bounds it. */
	sp = open_spool(CONFIG_DURABILITY_NONE, true);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_str_eq(g.m[0]->id, id2);
	cr_assert_eq(g.m[0]->spool_slot, slot);
	cr_assert_eq(g.m[0]->data_len, strlen(smalld));
	got = read_data(spool_slots_fd(sp), g.m[0]);
	cr_assert_str_eq(got, smalld);
	free(got);

	/* Removed after the restart, and written over by a message bigger than the first. */
	spool_remove(sp, g.m[0], false);
	got_free(&g);
	h = commit_wait(sp, make_message(biggerd), "", id3);
	cr_assert_eq(h->spool_slot, slot);
	expect_slot_holds(slot, id3, &s);
	cr_assert_eq(s.ino, ino, "the same inode again");
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + s.r.len, "grown to the new message");
	cr_assert_gt(s.size, size1);
	cr_assert_eq(memcmp(s.content + s.r.len - strlen(biggerd), biggerd, strlen(biggerd)), 0);
	cr_assert_null(memmem(s.content, s.size - SPOOL_RECORD_LEN, "short\r\n", 7));
	cr_assert_null(memmem(s.content, s.size - SPOOL_RECORD_LEN, id2, MESSAGE_ID_LEN),
	               "nothing of the old envelope");
	slot_free(&s);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_NONE, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_str_eq(g.m[0]->id, id3);
	got = read_data(spool_slots_fd(sp), g.m[0]);
	cr_assert_str_eq(got, biggerd);
	free(got);
	got_free(&g);
	spool_close(sp);
}

/* A recycled file far longer than its new message is cut to it (spool.c's SPOOL_SHRINK, 1 MiB:
 * a 3 MiB message, then a small one). */
Test(spool, a_much_longer_recycled_file_is_cut, .init = setup, .fini = teardown, .timeout = 10)
{
	enum { BIG = 3 * 1024 * 1024 };
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char id1[MESSAGE_ID_LEN + 1], id2[MESSAGE_ID_LEN + 1], *big = malloc(BIG + 1), *got;
	struct message *h;
	struct got g = { 0 };
	struct slot s;
	int64_t slot;
	ino_t ino;

	cr_assert_not_null(big);
	memset(big, 'x', BIG);
	memcpy(big + BIG - 2, "\r\n", 2);
	big[BIG] = '\0';
	h = commit_wait(sp, make_message(big), "", id1);
	slot = h->spool_slot;
	ino = slot_ino(slot);
	spool_remove(sp, h, false);
	h = commit_wait(sp, make_message("after the big one\r\n"), "", id2);
	cr_assert_eq(h->spool_slot, slot);
	expect_slot_holds(slot, id2, &s);
	cr_assert_eq(s.ino, ino);
	cr_assert_eq(s.size, SPOOL_RECORD_LEN + s.r.len, "cut to the new message");
	slot_free(&s);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 1);
	cr_assert_str_eq(g.m[0]->id, id2);
	got = read_data(spool_slots_fd(sp), g.m[0]);
	cr_assert_str_eq(got, "after the big one\r\n");
	free(got);
	got_free(&g);
	spool_close(sp);
	free(big);
}

/* ---- the read-only API ---- */

#define ID_TORN "018f3a5c2b7d4e09"

Test(spool, list_and_find_skip_free_and_torn_slots, .init = setup, .fini = teardown, .timeout = 10)
{
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char ids[3][MESSAGE_ID_LEN + 1], *torn = hand_content(ID_TORN), path[512], *got;
	struct message *h[3], *found = NULL;
	struct got g = { 0 };
	int i, slotsfd;
	FILE *f;

	for (i = 0; i < 3; i++)
		h[i] = commit_wait(sp, make_message("listed\r\n"), "Received: l\r\n", ids[i]);
	spool_remove(sp, h[1], false);

	/* While the spool is open, on its own fd (twice: the directory is read from its start). */
	cr_assert_eq(spool_list(spool_slots_fd(sp), on_message, &g), 2);
	cr_assert_str_eq(g.m[0]->id, ids[0]);
	cr_assert_str_eq(g.m[1]->id, ids[2]);
	got_free(&g);
	cr_assert_eq(spool_list(spool_slots_fd(sp), on_message, &g), 2, "listed again");
	got_free(&g);
	spool_close(sp);

	/* With petrel stopped, among a torn file and a stray one. */
	write_slot(40, 'Q', ID_TORN, torn, 0, 1);
	snprintf(path, sizeof(path), "%s/slots/junk", dir);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs("not a slot\n", f);
	fclose(f);
	slotsfd = open_slots_dir();
	cr_assert_eq(spool_list(slotsfd, on_message, &g), 2);
	cr_assert_eq(g.n, 2);
	for (i = 0; i < 2; i++) {
		struct message *m = g.m[i];

		cr_assert_str_eq(m->id, ids[i * 2], "in id order, without the removed one");
		expect_envelope(m);
		cr_assert_eq(m->spool_slot, h[i * 2]->spool_slot);
		cr_assert_eq(m->data_len, strlen("Received: l\r\nlisted\r\n"));
		got = read_data(slotsfd, m);
		cr_assert_str_eq(got, "Received: l\r\nlisted\r\n");
		free(got);
	}
	got_free(&g);

	cr_assert_eq(spool_find(slotsfd, ids[2], &found), 0);
	cr_assert_str_eq(found->id, ids[2]);
	cr_assert_eq(found->spool_slot, h[2]->spool_slot);
	message_free(found);
	found = NULL;
	errno = 0;
	cr_assert_eq(spool_find(slotsfd, ids[1], &found), -1, "removed");
	cr_assert_eq(errno, ENOENT);
	errno = 0;
	cr_assert_eq(spool_find(slotsfd, ID_TORN, &found), -1, "torn");
	cr_assert_eq(errno, ENOENT);
	errno = 0;
	cr_assert_eq(spool_find(slotsfd, "0123456789ABCDEF", &found), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(spool_find(slotsfd, "junk", &found), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(found);
	close(slotsfd);
	cr_assert_eq(spool_list(-1, on_message, &g), -1, "no directory");
	cr_assert_eq(g.n, 0);
	free(torn);
}

/* ---- discard ---- */

Test(spool, discard_frees_the_slot_but_not_before_a_restart, .init = setup, .fini = teardown,
     .timeout = 10)
{
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char ida[MESSAGE_ID_LEN + 1], idb[MESSAGE_ID_LEN + 1], idc[MESSAGE_ID_LEN + 1],
	        idd[MESSAGE_ID_LEN + 1], path[512], buf[64];
	struct message *a, *h;
	struct slot before, after;
	struct got g = { 0 };
	struct stat st;
	int64_t slota;
	int reader;

	a = commit_wait(sp, make_message("discarded while it is read\r\n"), "", ida);
	slota = a->spool_slot;
	cr_assert_eq(spool_state_append(sp, ida, "- held 1\n", 9), 0);
	cr_assert(slot_read(slota, &before));
	reader = spool_open_data(spool_slots_fd(sp), a); /* a delivery under way */
	cr_assert_geq(reader, 0);

	spool_discard(sp, a);
	spool_sync_soon(sp);
	cr_assert_eq(slot_state(slota), SPOOL_SLOT_FREE);
	snprintf(path, sizeof(path), "%s/state/%s", dir, ida);
	cr_assert_eq(stat(path, &st), -1, "state/<id> removed");
	cr_assert_eq(slot_of(ida), -1);

	/* The next messages take other slots: the reader still reads the old data. */
	h = commit_wait(sp, make_message("b\r\n"), "", idb);
	cr_assert_neq(h->spool_slot, slota, "not reused before the next start");
	h = commit_wait(sp, make_message("c\r\n"), "", idc);
	cr_assert_neq(h->spool_slot, slota);
	cr_assert(slot_read(slota, &after));
	cr_assert_eq(after.size, before.size);
	cr_assert_eq(memcmp(after.buf, before.buf, SPOOL_RECORD_STATE_OFF), 0);
	cr_assert_eq(memcmp(after.buf + SPOOL_RECORD_STATE_OFF + 1,
	                    before.buf + SPOOL_RECORD_STATE_OFF + 1,
	                    before.size - SPOOL_RECORD_STATE_OFF - 1),
	             0, "only the state byte changed");
	slot_free(&before);
	slot_free(&after);
	cr_assert_eq(pread(reader, buf, 28, (off_t)a->data_offset), 28);
	cr_assert_eq(memcmp(buf, "discarded while it is read\r\n", 28), 0);
	close(reader);
	spool_close(sp);

	/* After a restart: not recovered, and the slot is free to be written over. */
	sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	cr_assert_eq(spool_recover(sp, on_message, &g), 2);
	cr_assert_str_eq(g.m[0]->id, idb);
	cr_assert_str_eq(g.m[1]->id, idc);
	got_free(&g);
	h = commit_wait(sp, make_message("d\r\n"), "", idd);
	cr_assert_eq(h->spool_slot, slota, "the one free slot is taken");
	spool_close(sp);
}

/* ---- restart ---- */

Test(spool, restart_recovers_exactly_the_committed_and_not_removed, .init = setup, .fini = teardown,
     .timeout = 10)
{
	enum { N = 6 };
	struct spool *sp = open_spool(CONFIG_DURABILITY_FSYNC, true);
	char ids[N][MESSAGE_ID_LEN + 1];
	struct message *h[N], *m;
	struct got g = { 0 };
	int i;

	for (i = 0; i < N; i++)
		h[i] = commit_wait(sp, make_message("kept or not\r\n"), "", ids[i]);
	spool_remove(sp, h[1], false);
	spool_remove(sp, h[4], false);
	spool_discard(sp, h[2]);
	m = make_message("never committed\r\n");
	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	cr_assert_eq(spool_msg_write(sp, m), 0);
	spool_msg_abort(sp, m);
	spool_close(sp);

	sp = open_spool(CONFIG_DURABILITY_FSYNC, false);
	cr_assert_eq(spool_recover(sp, on_message, &g), 3);
	cr_assert_str_eq(g.m[0]->id, ids[0]);
	cr_assert_str_eq(g.m[1]->id, ids[3]);
	cr_assert_str_eq(g.m[2]->id, ids[5]);
	for (i = 0; i < 3; i++)
		cr_assert_eq(g.m[i]->spool_slot, h[i == 0 ? 0 : i == 1 ? 3 : 5]->spool_slot);
	got_free(&g);
	cr_assert_eq(spool_recover(sp, on_message, &g), 0);
	spool_close(sp);
}
