/*
 * test_spool.c: the spool on a temporary directory: begin/write/commit with both
 * durabilities, the on-disk format, the callback, abort, and the scan at start-up.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "petrel/message.h"
#include "petrel/spool.h"

static char dir[256];
static struct event_base *base;

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/petrel-test-spool-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	evthread_use_pthreads();
	base = event_base_new();
	cr_assert_not_null(base);
}

static void
teardown(void)
{
	char cmd[300];

	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

struct done {
	int calls;
	bool ok;
	char id[17];
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

static struct message *
make_message(const char *body)
{
	struct message *m = message_new();

	cr_assert_not_null(m);
	message_set_from(m, "a@example.org");
	message_set_helo(m, "client.example", 14);
	message_add_rcpt(m, "u@localhost", 0, NULL);
	message_add_rcpt(m, "v@localhost", 6, "rfc822;v@localhost");
	snprintf(m->client_addr, sizeof(m->client_addr), "127.0.0.1");
	evbuffer_add(m->body, body, strlen(body));
	m->body_size = strlen(body);
	return m;
}

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
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
commit_one(enum config_durability durability)
{
	char *err = NULL, path[512], id[17], *data;
	struct spool *sp = spool_open(base, dir, durability, &err);
	struct done d = { 0 };
	struct message *m = make_message("Subject: t\r\n\r\n..dot\r\n");
	struct spool_entry e;
	size_t len;
	int qfd;

	cr_assert_not_null(sp, "%s", err ? err : "");
	snprintf(id, sizeof(id), "%s", m->id);
	cr_assert_eq(spool_msg_begin(sp, m, "Received: x\r\n", 13), 0);
	cr_assert_not_null(spool_msg_commit(sp, m, on_commit, &d));
	cr_assert_eq(d.calls, 0, "the callback never runs inside commit");
	event_base_dispatch(base);
	cr_assert_eq(d.calls, 1);
	cr_assert(d.ok);
	cr_assert_str_eq(d.id, id);

	snprintf(path, sizeof(path), "%s/queue/%s", dir, id);
	data = slurp(path, &len);
	cr_assert(strncmp(data, "petrel-spool 1\nid ", 18) == 0, "%s", data);
	cr_assert(strstr(data, "\nfrom <a@example.org>\n") != NULL);
	cr_assert(strstr(data, "\nrcpt <u@localhost>\n") != NULL);
	cr_assert(strstr(data, "\nrcpt notify=SUCCESS,FAILURE orcpt=rfc822;v@localhost "
	                       "<v@localhost>\n") != NULL,
	          "%s", data);
	cr_assert(strstr(data, "\n\nReceived: x\r\nSubject: t\r\n\r\n..dot\r\n") != NULL);
	cr_assert_eq(data[len - 1], '\n');
	free(data);

	qfd = open(path, O_RDONLY);
	cr_assert_geq(qfd, 0);
	close(qfd);
	snprintf(path, sizeof(path), "%s/queue", dir);
	qfd = open(path, O_RDONLY | O_DIRECTORY);
	cr_assert_eq(spool_read_entry(qfd, id, &e), 0);
	cr_assert_str_eq(e.from, "a@example.org");
	cr_assert_eq(e.nrcpts, 2);
	cr_assert_eq(e.size, strlen("Received: x\r\nSubject: t\r\n\r\n..dot\r\n"));
	close(qfd);
	cr_assert_eq(spool_scan(sp, NULL, NULL), 1);
	spool_close(sp);
}

Test(spool, commit_fsync, .init = setup, .fini = teardown)
{
	commit_one(CONFIG_DURABILITY_FSYNC);
}

Test(spool, commit_none, .init = setup, .fini = teardown)
{
	commit_one(CONFIG_DURABILITY_NONE);
}

Test(spool, abort_leaves_nothing_and_tmp_is_cleaned, .init = setup, .fini = teardown)
{
	char *err = NULL, path[512];
	struct spool *sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	struct message *m = make_message("x\r\n"), *m2 = make_message("y\r\n");
	char id2[17];
	struct stat st;

	cr_assert_not_null(sp);
	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	snprintf(path, sizeof(path), "%s/tmp/%s", dir, m->id);
	cr_assert_eq(stat(path, &st), 0, "being written: in tmp/");
	spool_msg_abort(sp, m);
	cr_assert_eq(stat(path, &st), -1, "aborted: gone");

	/* A file left in tmp/ by a crash is removed at the next open. */
	cr_assert_eq(spool_msg_begin(sp, m2, "", 0), 0);
	snprintf(id2, sizeof(id2), "%s", m2->id);
	snprintf(path, sizeof(path), "%s/tmp/%s", dir, id2);
	close(m2->fd);
	m2->fd = -1;
	message_free(m2);
	spool_close(sp);
	cr_assert_eq(stat(path, &st), 0);
	sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	cr_assert_not_null(sp);
	cr_assert_eq(stat(path, &st), -1, "tmp/ cleaned at open");
	cr_assert_eq(spool_scan(sp, NULL, NULL), 0);
	spool_close(sp);
}

static void
count_entry(void *arg, const struct spool_entry *e)
{
	char(*ids)[17] = arg;
	int i = 0;

	while (ids[i][0])
		i++;
	snprintf(ids[i], 17, "%s", e->id);
}

Test(spool, group_commit_many_and_scan_sorted, .init = setup, .fini = teardown)
{
	char *err = NULL;
	struct spool *sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	static struct done d[50];
	static char ids[51][17];
	struct spool_stats st;
	int i, calls = 0;

	cr_assert_not_null(sp);
	for (i = 0; i < 50; i++) {
		struct message *m = make_message("body\r\n");
		cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
		cr_assert_not_null(spool_msg_commit(sp, m, on_commit, &d[i]));
	}
	while (calls < 50) {
		event_base_dispatch(base);
		for (calls = 0, i = 0; i < 50; i++)
			calls += d[i].calls;
	}
	for (i = 0; i < 50; i++)
		cr_assert(d[i].ok && d[i].calls == 1);
	spool_get_stats(sp, &st);
	cr_assert_eq(st.commits, 50);
	cr_assert_leq(st.batches, 50);
	memset(ids, 0, sizeof(ids));
	cr_assert_eq(spool_scan(sp, count_entry, ids), 50);
	for (i = 1; i < 50; i++)
		cr_assert_lt(strcmp(ids[i - 1], ids[i]), 0, "scan is sorted by id");
	spool_close(sp);
}

Test(spool, cancelled_job_still_commits, .init = setup, .fini = teardown)
{
	char *err = NULL;
	struct spool *sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	struct message *m = make_message("z\r\n");
	struct spool_job *job;
	struct done d = { 0 };

	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	job = spool_msg_commit(sp, m, on_commit, &d);
	cr_assert_not_null(job);
	spool_job_cancel(job);
	spool_close(sp); /* waits for the commit */
	cr_assert_eq(d.calls, 0);
	sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	cr_assert_eq(spool_scan(sp, NULL, NULL), 1);
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

static struct message *hooked;

static void
on_hook(void *arg, struct message *msg)
{
	message_free(hooked);
	hooked = msg;
}

static void
collect_line(void *arg, const char *line, size_t len)
{
	char *out = arg;

	strncat(out, line, len);
	strcat(out, "|");
}

Test(spool, hook_load_state_and_remove, .init = setup, .fini = teardown)
{
	char *err = NULL, lines[256] = "", path[512], id[17];
	struct spool *sp = spool_open(base, dir, CONFIG_DURABILITY_FSYNC, &err);
	struct message *m = make_message("Subject: t\r\n\r\nhi\r\n"), *loaded = NULL;
	struct done d = { 0 };
	struct stat st;

	cr_assert_not_null(sp);
	spool_set_queue_hook(sp, on_hook, NULL);
	m->body_type = SMTP_BODY_8BITMIME;
	m->smtputf8 = true;
	m->ret = SMTP_DSN_RET_HDRS;
	message_set_envid(m, "env+2B1");
	snprintf(id, sizeof(id), "%s", m->id);
	cr_assert_eq(spool_msg_begin(sp, m, "Received: y\r\n", 13), 0);
	cr_assert_not_null(spool_msg_commit(sp, m, on_commit, &d));
	event_base_dispatch(base);
	cr_assert(d.ok);
	cr_assert_not_null(hooked, "the queue hook gets the committed message");
	cr_assert_str_eq(hooked->id, id);
	cr_assert_eq(hooked->data_len, strlen("Received: y\r\nSubject: t\r\n\r\nhi\r\n"));

	cr_assert_eq(spool_load(sp, id, &loaded), 0);
	cr_assert_str_eq(loaded->from, "a@example.org");
	cr_assert_eq(loaded->nrcpts, 2);
	cr_assert_str_eq(loaded->rcpts[0].addr, "u@localhost");
	cr_assert_str_eq(loaded->rcpts[1].addr, "v@localhost");
	cr_assert_eq(loaded->rcpts[1].notify, 6);
	cr_assert_str_eq(loaded->rcpts[1].orcpt, "rfc822;v@localhost");
	cr_assert_eq(loaded->body_type, SMTP_BODY_8BITMIME);
	cr_assert(loaded->smtputf8);
	cr_assert_eq(loaded->ret, SMTP_DSN_RET_HDRS);
	cr_assert_str_eq(loaded->envid, "env+2B1");
	cr_assert_eq(loaded->data_offset, hooked->data_offset);
	cr_assert_eq(loaded->data_len, hooked->data_len);
	cr_assert_eq(loaded->arrival.tv_sec, hooked->arrival.tv_sec);
	message_free(loaded);

	cr_assert_eq(spool_state_append(sp, id, "0 delivered 1\n", 14), 0);
	cr_assert_eq(spool_state_append(sp, id, "1 deferred 1 1 61\n", 18), 0);
	snprintf(path, sizeof(path), "%s/state/%s", dir, id);
	{
		/* a torn line (no newline) after a crash is ignored */
		FILE *f = fopen(path, "a");
		fputs("1 deliv", f);
		fclose(f);
	}
	cr_assert_eq(spool_state_read(sp, id, collect_line, lines), 0);
	cr_assert_str_eq(lines, "0 delivered 1|1 deferred 1 1 61|");

	spool_remove(sp, hooked, true);
	cr_assert_eq(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/queue/%s", dir, id);
	cr_assert_eq(stat(path, &st), -1);
	cr_assert_eq(spool_load(sp, id, &loaded), -1);
	cr_assert_eq(spool_state_read(sp, id, collect_line, lines), 0, "no journal is no error");
	spool_close(sp);
	message_free(hooked);
	hooked = NULL;
}

/* Remove the committed message `id` as the scheduler does (with its length). */
static void
remove_loaded(struct spool *sp, const char *id)
{
	struct message *m = NULL;

	cr_assert_eq(spool_load(sp, id, &m), 0);
	spool_remove(sp, m, false);
	message_free(m);
}

/* Commit `m` and return the inode and contents of its queue file. */
static char *
commit_and_read(struct spool *sp, struct message *m, char *id, ino_t *ino, size_t *len)
{
	struct done d = { 0 };
	char path[512];
	struct stat st;

	snprintf(id, MESSAGE_ID_LEN + 1, "%s", m->id);
	cr_assert_eq(spool_msg_begin(sp, m, "", 0), 0);
	cr_assert_not_null(spool_msg_commit(sp, m, on_commit, &d));
	event_base_dispatch(base);
	cr_assert(d.ok);
	snprintf(path, sizeof(path), "%s/queue/%s", dir, id);
	cr_assert_eq(stat(path, &st), 0);
	*ino = st.st_ino;
	return slurp(path, len);
}

/* A finished message's file is reused for the next one, cut to the new message's length when
 * it was longer, and written over without a cut when it was not. */
Test(spool, removed_files_are_recycled_exactly, .init = setup, .fini = teardown)
{
	char *err = NULL, path[512], id1[MESSAGE_ID_LEN + 1], id2[MESSAGE_ID_LEN + 1],
	     id3[MESSAGE_ID_LEN + 1], *data;
	struct spool *sp = spool_open(base, dir, CONFIG_DURABILITY_NONE, &err);
	struct message *big = make_message("a long first message body that is longer\r\n");
	struct message *small = make_message("short\r\n");
	struct message *bigger = make_message("and now a message longer than the short one\r\n");
	struct stat st;
	ino_t ino1, ino2, ino3;
	size_t len;

	cr_assert_not_null(sp);
	free(commit_and_read(sp, big, id1, &ino1, &len));
	remove_loaded(sp, id1);
	snprintf(path, sizeof(path), "%s/queue/%s", dir, id1);
	cr_assert_eq(stat(path, &st), -1, "gone from queue/");
	snprintf(path, sizeof(path), "%s/free/f0", dir);
	cr_assert_eq(stat(path, &st), 0, "kept in free/");
	cr_assert_eq(st.st_ino, ino1);

	data = commit_and_read(sp, small, id2, &ino2, &len);
	cr_assert_eq(stat(path, &st), -1, "taken from free/");
	cr_assert_eq(ino1, ino2, "the same inode, reused");
	cr_assert(len >= 7 && memcmp(data + len - 7, "short\r\n", 7) == 0,
	          "cut to the new length: no tail of the old message");
	cr_assert_null(strstr(data, "longer"));
	free(data);

	/* Longer than what the file held: written over, nothing left of the old one. */
	remove_loaded(sp, id2);
	data = commit_and_read(sp, bigger, id3, &ino3, &len);
	cr_assert_eq(ino3, ino1, "the same inode again");
	cr_assert(len >= 45 && memcmp(data + len - 45,
	                              "and now a message longer than the short one\r\n", 45) == 0);
	cr_assert_null(strstr(data, "short\r\n"));
	cr_assert_null(strstr(data, id2), "nothing of the old envelope");
	free(data);
	spool_close(sp);
	/* free/ is emptied at the next start */
	sp = spool_open(base, dir, CONFIG_DURABILITY_NONE, &err);
	cr_assert_eq(spool_scan(sp, NULL, NULL), 1);
	spool_close(sp);
}
