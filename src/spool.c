/*
 * spool.c: the on-disk spool and its group commit (format and layout: spool.h).
 *
 * Owns: the spool directory fds, the sync thread, and every message from spool_msg_commit()
 * until its file is in queue/. Does not own the queue (which messages to deliver when).
 *
 * Threads: everything runs on the loop thread except spool_sync_main(), which only takes
 * batches of committed jobs, syncs them, renames them into queue/, and hands them back through
 * the done list and a pipe whose read end is an event on the loop. Jobs carry the id and the
 * caller's callback; a caller that goes away cancels its job instead of leaving a dangling arg.
 */
#include "petrel/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "petrel/log.h"
#include "petrel/message.h"
#include "petrel/stats.h"

#define SPOOL_IOV 64

struct spool_job {
	struct spool_job *next;
	struct message *msg; /* the committed envelope, for the queue hook; NULL for syncs */
	char id[MESSAGE_ID_LEN + 1];
	int workfd;                    /* where the file was written: tmp/ or free/ */
	char work[MESSAGE_ID_LEN + 1]; /* its name there (the id, or "f<n>") */
	spool_commit_cb cb;            /* NULL once cancelled */
	void *arg;
	bool ok;
	bool batch_head;  /* the first job of a sync batch: carries the batch's time */
	uint64_t sync_ns; /* batch_head: syncfs to fsync of queue/, measured by the thread */
};

struct spool {
	struct event_base *base;
	char *dir;
	int dirfd;
	int tmpfd;
	int queuefd;
	enum config_durability durability;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;                             /* under lock */
	struct spool_job *pending, **pending_tail; /* under lock: waiting for the thread */
	struct spool_job *done, **done_tail;       /* under lock: back to the loop */
	int wake[2];                               /* thread → loop */
	struct event *wake_ev;
	struct event *done_ev;    /* durability none: commits finished on the loop itself */
	struct spool_stats stats; /* loop thread only */
	spool_queue_hook hook;    /* takes every committed message */
	void *hook_arg;
	int statefd;          /* state/ */
	int freefd;           /* free/: finished message files kept for reuse */
	uint32_t *free_names; /* loop thread: the files in free/ ("f<n>"), used as a stack */
	uint64_t *free_sizes; /* their lengths */
	size_t nfree;
	uint32_t free_next; /* next name for a file put into free/ */
};

/*
 * File recycling. Creating and deleting a file per message costs an inode allocation and a
 * free every time; on ext4 the allocator then walks past every recently freed inode, which
 * grew to most of the CPU time under load (see bench/RESULTS.md). A finished message's file
 * is therefore renamed into free/ and the next message is written over it where it is (cut to
 * its length if the old one was longer), then renamed into queue/ at the commit: two renames
 * per message and no inode allocated. free/ holds no acknowledged mail: it is emptied at
 * start-up.
 */
#define SPOOL_FREE_MAX 4096

static void spool_wake_cb(evutil_socket_t fd, short what, void *arg);
static void spool_done_cb(evutil_socket_t fd, short what, void *arg);
static void *spool_sync_main(void *arg);

static int
spool_mkdirat(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) == -1 && errno != EEXIST)
		return -1;
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* mkdir -p for the spool root. */
static int
spool_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t i, len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		buf[i] = path[i];
	}
	return 0;
}

/* Remove every file of a directory (free/ at start-up). */
static void
spool_clean_dir(int dirfd)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			unlinkat(dirfd, de->d_name, 0);
	closedir(d);
}

/* Remove leftovers of messages that were never acknowledged. */
static void
spool_clean_tmp(struct spool *sp)
{
	struct dirent *de;
	DIR *d;
	int fd;
	unsigned n = 0;

	if ((fd = dup(sp->tmpfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(sp->tmpfd, de->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	if (n > 0)
		log_info("spool removed unacknowledged files count=%u dir=%s/tmp", n, sp->dir);
}

struct spool *
spool_open(struct event_base *base, const char *dir, enum config_durability durability, char **err)
{
	struct spool *sp;
	const char *what = "allocate";

	*err = NULL;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		goto fail;
	sp->dirfd = sp->tmpfd = sp->queuefd = sp->statefd = sp->freefd = -1;
	sp->wake[0] = sp->wake[1] = -1;
	sp->base = base;
	sp->durability = durability;
	sp->pending_tail = &sp->pending;
	sp->done_tail = &sp->done;
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->cond, NULL);
	if ((sp->dir = strdup(dir)) == NULL)
		goto fail;
	what = "create";
	if (spool_mkdir_p(dir) == -1)
		goto fail;
	what = "open";
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	what = "create tmp/ in";
	if ((sp->tmpfd = spool_mkdirat(sp->dirfd, "tmp")) == -1)
		goto fail;
	what = "create queue/ in";
	if ((sp->queuefd = spool_mkdirat(sp->dirfd, "queue")) == -1)
		goto fail;
	what = "create state/ in";
	if ((sp->statefd = spool_mkdirat(sp->dirfd, "state")) == -1)
		goto fail;
	what = "create free/ in";
	if ((sp->freefd = spool_mkdirat(sp->dirfd, "free")) == -1 ||
	    (sp->free_names = calloc(SPOOL_FREE_MAX, sizeof(*sp->free_names))) == NULL ||
	    (sp->free_sizes = calloc(SPOOL_FREE_MAX, sizeof(*sp->free_sizes))) == NULL)
		goto fail;
	what = "write to";
	if (faccessat(sp->dirfd, "queue", W_OK, AT_EACCESS) == -1)
		goto fail;
	spool_clean_tmp(sp);
	spool_clean_dir(sp->freefd);
	what = "create a pipe for";
	if (pipe2(sp->wake, O_NONBLOCK | O_CLOEXEC) == -1)
		goto fail;
	if ((sp->wake_ev = event_new(base, sp->wake[0], EV_READ | EV_PERSIST, spool_wake_cb, sp)) ==
	            NULL ||
	    event_add(sp->wake_ev, NULL) == -1 ||
	    (sp->done_ev = event_new(base, -1, 0, spool_done_cb, sp)) == NULL)
		goto fail;
	what = "start the sync thread of";
	if (durability == CONFIG_DURABILITY_FSYNC) {
		if ((errno = pthread_create(&sp->thread, NULL, spool_sync_main, sp)) != 0)
			goto fail;
		sp->thread_started = true;
	}
	return sp;
fail:
	if (asprintf(err, "cannot %s spool %s: %s", what, dir, strerror(errno)) == -1)
		*err = NULL;
	spool_close(sp);
	return NULL;
}

/* Run the callbacks of every finished job. Loop thread. */
static void
spool_run_done(struct spool *sp)
{
	struct spool_job *job, *next;

	pthread_mutex_lock(&sp->lock);
	job = sp->done;
	sp->done = NULL;
	sp->done_tail = &sp->done;
	pthread_mutex_unlock(&sp->lock);
	for (; job != NULL; job = next) {
		next = job->next;
		if (job->batch_head)
			stats_observe(STATS_HIST_SPOOL_SYNC, job->sync_ns);
		if (job->msg != NULL) {
			if (job->ok)
				sp->stats.commits++;
			else
				sp->stats.failures++;
		}
		if (job->cb)
			job->cb(job->arg, job->id, job->ok);
		if (job->msg != NULL && job->ok && sp->hook != NULL)
			sp->hook(sp->hook_arg, job->msg); /* the queue owns it now */
		else
			message_free(job->msg);
		free(job);
	}
}

static void
spool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	spool_run_done(arg);
}

static void
spool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	char buf[256];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	spool_run_done(sp);
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->thread_started) {
		pthread_mutex_lock(&sp->lock);
		sp->stopping = true;
		pthread_cond_signal(&sp->cond);
		pthread_mutex_unlock(&sp->lock);
		pthread_join(sp->thread, NULL);
	}
	spool_run_done(sp);
	if (sp->wake_ev)
		event_free(sp->wake_ev);
	if (sp->done_ev)
		event_free(sp->done_ev);
	if (sp->wake[0] >= 0)
		close(sp->wake[0]);
	if (sp->wake[1] >= 0)
		close(sp->wake[1]);
	if (sp->queuefd >= 0)
		close(sp->queuefd);
	if (sp->statefd >= 0)
		close(sp->statefd);
	if (sp->freefd >= 0)
		close(sp->freefd);
	free(sp->free_names);
	free(sp->free_sizes);
	if (sp->tmpfd >= 0)
		close(sp->tmpfd);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_cond_destroy(&sp->cond);
	pthread_mutex_destroy(&sp->lock);
	free(sp->dir);
	free(sp);
}

/* Write all of buf to fd with writev from its chains (no copy), draining what was written. */
static int
spool_write_buffer(int fd, struct evbuffer *buf)
{
	struct iovec iov[SPOOL_IOV];
	int n;
	ssize_t w;

	while (evbuffer_get_length(buf) > 0) {
		n = evbuffer_peek(buf, -1, NULL, (struct evbuffer_iovec *)iov, SPOOL_IOV);
		if (n > SPOOL_IOV)
			n = SPOOL_IOV;
		w = writev(fd, iov, n);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		evbuffer_drain(buf, (size_t)w);
	}
	return 0;
}

static int
spool_envelope(struct evbuffer *env, const struct message *msg)
{
	static const char *const body_names[] = { [SMTP_BODY_7BIT] = "7BIT",
		                                  [SMTP_BODY_8BITMIME] = "8BITMIME",
		                                  [SMTP_BODY_BINARYMIME] = "BINARYMIME" };
	size_t i;
	int r = 0;

	r |= evbuffer_add_printf(env, "petrel-spool 1\nid %s\narrival %lld.%06ld\n", msg->id,
	                         (long long)msg->arrival.tv_sec, (long)msg->arrival.tv_usec) < 0;
	r |= evbuffer_add_printf(env, "client %s\nhelo %s\nprotocol %s\nfrom <%s>\n",
	                         msg->client_addr, msg->helo ? msg->helo : "", msg->protocol,
	                         msg->from ? msg->from : "") < 0;
	if (msg->body_type != SMTP_BODY_UNSPEC)
		r |= evbuffer_add_printf(env, "body %s\n", body_names[msg->body_type]) < 0;
	if (msg->smtputf8)
		r |= evbuffer_add_printf(env, "smtputf8\n") < 0;
	if (msg->ret != SMTP_DSN_RET_UNSPEC)
		r |= evbuffer_add_printf(env, "ret %s\n",
		                         msg->ret == SMTP_DSN_RET_FULL ? "FULL" : "HDRS") < 0;
	if (msg->envid)
		r |= evbuffer_add_printf(env, "envid %s\n", msg->envid) < 0;
	for (i = 0; i < msg->nrcpts; i++) {
		const struct message_rcpt *rc = &msg->rcpts[i];
		unsigned nf = rc->notify;

		r |= evbuffer_add(env, "rcpt ", 5);
		if (nf != 0) {
			/* "notify=SUCCESS,FAILURE ": the names joined by commas, no trailing one */
			static const struct {
				unsigned bit;
				const char *name;
			} names[] = { { SMTP_DSN_NOTIFY_NEVER, "NEVER" },
				      { SMTP_DSN_NOTIFY_SUCCESS, "SUCCESS" },
				      { SMTP_DSN_NOTIFY_FAILURE, "FAILURE" },
				      { SMTP_DSN_NOTIFY_DELAY, "DELAY" } };
			const char *sep = "notify=";
			size_t k;

			for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
				if (nf & names[k].bit) {
					r |= evbuffer_add_printf(env, "%s%s", sep, names[k].name) <
					     0;
					sep = ",";
				}
			r |= evbuffer_add(env, " ", 1);
		}
		if (rc->orcpt)
			r |= evbuffer_add_printf(env, "orcpt=%s ", rc->orcpt) < 0;
		r |= evbuffer_add_printf(env, "<%s>\n", rc->addr) < 0;
	}
	r |= evbuffer_add(env, "\n", 1);
	return r ? -1 : 0;
}

/* Where msg's file is while it is written: free/f<n> (recycled) or tmp/<id>. */
static void
spool_work_name(const struct spool *sp, const struct message *msg, int *dirfd, char *name,
                size_t size)
{
	if (msg->spool_free >= 0) {
		*dirfd = sp->freefd;
		snprintf(name, size, "f%" PRIu32, (uint32_t)msg->spool_free);
	} else {
		*dirfd = sp->tmpfd;
		snprintf(name, size, "%s", msg->id);
	}
}

static void
spool_unlink_work(const struct spool *sp, const struct message *msg)
{
	char name[MESSAGE_ID_LEN + 1];
	int dirfd;

	spool_work_name(sp, msg, &dirfd, name, sizeof(name));
	unlinkat(dirfd, name, 0);
}

int
spool_msg_begin(struct spool *sp, struct message *msg, const char *header, size_t hlen)
{
	struct evbuffer *env;
	int saved;

	if (msg->fd >= 0)
		return 0;
	if ((env = evbuffer_new()) == NULL)
		return -1;
	if (spool_envelope(env, msg) == -1 || evbuffer_add(env, header, hlen) == -1) {
		evbuffer_free(env);
		errno = ENOMEM;
		return -1;
	}
	msg->fd = -1;
	msg->spool_old_size = 0;
	msg->spool_free = -1;
	while (msg->fd == -1 && sp->nfree > 0) {
		/* Reuse a finished message's file where it is (see "File recycling" above): the
		 * commit renames it into queue/ as it does a new file from tmp/. */
		char name[16];
		--sp->nfree;
		snprintf(name, sizeof(name), "f%" PRIu32, sp->free_names[sp->nfree]);
		if ((msg->fd = openat(sp->freefd, name, O_RDWR | O_CLOEXEC)) == -1) {
			unlinkat(sp->freefd, name, 0);
			continue;
		}
		msg->spool_free = sp->free_names[sp->nfree];
		msg->spool_old_size = sp->free_sizes[sp->nfree];
	}
	if (msg->fd == -1)
		msg->fd = openat(sp->tmpfd, msg->id, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	msg->data_offset = evbuffer_get_length(env) - hlen;
	msg->data_len = hlen;
	msg->spool_written = 0;
	/* The envelope goes out with the first body bytes, in the same writev (one system call
	 * for a small message's whole file). */
	if (msg->fd == -1 || evbuffer_prepend_buffer(msg->body, env) == -1)
		goto fail;
	evbuffer_free(env);
	return 0;
fail:
	saved = errno;
	evbuffer_free(env);
	if (msg->fd >= 0) {
		close(msg->fd);
		msg->fd = -1;
		spool_unlink_work(sp, msg);
	}
	errno = saved;
	return -1;
}

int
spool_msg_write(struct spool *sp, struct message *msg)
{
	size_t n = evbuffer_get_length(msg->body);

	if (msg->fd < 0) {
		errno = EBADF;
		return -1;
	}
	/* The body may start with the envelope (spool_msg_begin): data is what follows it. */
	msg->data_len = msg->spool_written + n - msg->data_offset;
	msg->spool_written += n;
	return spool_write_buffer(msg->fd, msg->body);
}

void
spool_msg_abort(struct spool *sp, struct message *msg)
{
	if (msg == NULL)
		return;
	if (msg->fd >= 0) {
		close(msg->fd);
		msg->fd = -1;
		spool_unlink_work(sp, msg);
	}
	message_free(msg);
}

/* Hand a finished job back to the loop. Takes the lock. */
static void
spool_post_done(struct spool *sp, struct spool_job *head, struct spool_job **tail)
{
	pthread_mutex_lock(&sp->lock);
	*sp->done_tail = head;
	sp->done_tail = tail;
	pthread_mutex_unlock(&sp->lock);
	(void)!write(sp->wake[1], "", 1);
}

struct spool_job *
spool_msg_commit(struct spool *sp, struct message *msg, spool_commit_cb cb, void *arg)
{
	struct spool_job *job;
	int saved;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		goto fail;
	memcpy(job->id, msg->id, sizeof(job->id));
	job->cb = cb;
	job->arg = arg;
	job->ok = true;
	spool_work_name(sp, msg, &job->workfd, job->work, sizeof(job->work));
	if (spool_msg_write(sp, msg) == -1)
		goto fail;
	/* A recycled file longer than this message is cut at what was written (only then: a
	 * truncate costs a journaled inode update even when the length does not change). */
	if (msg->spool_old_size > msg->data_offset + msg->data_len &&
	    ftruncate(msg->fd, (off_t)(msg->data_offset + msg->data_len)) == -1) {
		close(msg->fd);
		msg->fd = -1;
		spool_unlink_work(sp, msg);
		goto fail;
	}
	/* msg->fd stays open: the queue reads the first delivery from it (message.h). */
	job->msg = msg;

	if (sp->durability == CONFIG_DURABILITY_NONE) {
		if (renameat(job->workfd, job->work, sp->queuefd, job->id) == -1) {
			log_error("spool rename failed id=%s error=\"%s\"", job->id,
			          strerror(errno));
			unlinkat(job->workfd, job->work, 0);
			job->ok = false;
		}
		/* Done on the loop thread: its callback runs from the loop (never inside the
		 * caller's), without a write to the thread's pipe. */
		pthread_mutex_lock(&sp->lock);
		*sp->done_tail = job;
		sp->done_tail = &job->next;
		pthread_mutex_unlock(&sp->lock);
		event_active(sp->done_ev, 0, 0);
		return job;
	}
	pthread_mutex_lock(&sp->lock);
	*sp->pending_tail = job;
	sp->pending_tail = &job->next;
	pthread_cond_signal(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
	return job;
fail:
	saved = errno;
	log_error("spool write failed id=%s error=\"%s\"", msg->id, strerror(saved));
	free(job);
	spool_msg_abort(sp, msg);
	errno = saved;
	return NULL;
}

void
spool_job_cancel(struct spool_job *job)
{
	if (job != NULL)
		job->cb = NULL;
}

/*
 * The sync thread: take every pending job at once, make their files durable with one syncfs,
 * move them into queue/, make the renames durable with one fsync of queue/, hand them back.
 * A failure fails the whole batch, and the files are removed: no 250 was sent for them.
 */
static void *
spool_sync_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_job *batch, *job, **tail;
	uint64_t start;
	bool stop;

	for (;;) {
		pthread_mutex_lock(&sp->lock);
		while (sp->pending == NULL && !sp->stopping)
			pthread_cond_wait(&sp->cond, &sp->lock);
		batch = sp->pending;
		tail = sp->pending_tail;
		sp->pending = NULL;
		sp->pending_tail = &sp->pending;
		stop = sp->stopping;
		pthread_mutex_unlock(&sp->lock);
		if (batch == NULL) {
			if (stop)
				break;
			continue;
		}

		start = stats_now_ns(); /* only the clock: the registry belongs to the loop */
		if (syncfs(sp->tmpfd) == -1) {
			log_error("spool syncfs failed dir=%s error=\"%s\"", sp->dir,
			          strerror(errno));
			for (job = batch; job != NULL; job = job->next)
				job->ok = false;
		}
		for (job = batch; job != NULL; job = job->next) {
			if (job->msg == NULL)
				continue; /* a sync-only job: the syncfs was all it needed */
			if (job->ok &&
			    renameat(job->workfd, job->work, sp->queuefd, job->id) == -1) {
				log_error("spool rename failed id=%s error=\"%s\"", job->id,
				          strerror(errno));
				job->ok = false;
			}
			if (!job->ok)
				unlinkat(job->workfd, job->work, 0);
		}
		if (fsync(sp->queuefd) == -1) {
			/* The renames may not survive a crash: take the files back out, fail them.
			 */
			log_error("spool fsync failed dir=%s/queue error=\"%s\"", sp->dir,
			          strerror(errno));
			for (job = batch; job != NULL; job = job->next) {
				if (job->ok && job->msg != NULL)
					unlinkat(sp->queuefd, job->id, 0);
				job->ok = false;
			}
		}
		batch->batch_head = true;
		batch->sync_ns = stats_now_ns() - start;
		pthread_mutex_lock(&sp->lock);
		sp->stats.batches++;
		pthread_mutex_unlock(&sp->lock);
		spool_post_done(sp, batch, tail);
	}
	return NULL;
}

void
spool_get_stats(const struct spool *sp, struct spool_stats *out)
{
	*out = sp->stats;
	pthread_mutex_lock((pthread_mutex_t *)&sp->lock);
	out->batches = sp->stats.batches;
	pthread_mutex_unlock((pthread_mutex_t *)&sp->lock);
}

int
spool_read_entry(int dirfd, const char *name, struct spool_entry *e)
{
	struct message *msg;

	memset(e, 0, sizeof(*e));
	if (spool_read_message(dirfd, name, &msg) == -1)
		return -1;
	snprintf(e->id, sizeof(e->id), "%s", msg->id);
	snprintf(e->from, sizeof(e->from), "%s", msg->from);
	e->nrcpts = (unsigned)msg->nrcpts;
	e->size = msg->data_len;
	message_free(msg);
	return 0;
}

static int
spool_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

long
spool_scan(struct spool *sp, spool_scan_cb cb, void *arg)
{
	struct spool_entry e;
	struct dirent *de;
	char **names = NULL, **grown;
	size_t n = 0, cap = 0, i;
	long count = 0;
	DIR *d;
	int fd;

	if ((fd = dup(sp->queuefd)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!message_id_valid(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			if ((grown = realloc(names, cap * sizeof(*names))) == NULL)
				goto fail;
			names = grown;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto fail;
		n++;
	}
	closedir(d);
	d = NULL;
	if (n > 1)
		qsort(names, n, sizeof(*names), spool_name_cmp);
	for (i = 0; i < n; i++) {
		if (spool_read_entry(sp->queuefd, names[i], &e) == -1) {
			log_warn("spool malformed file=%s/queue/%s (kept, not listed)", sp->dir,
			         names[i]);
			continue;
		}
		count++;
		if (cb)
			cb(arg, &e);
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return count;
fail:
	if (d)
		closedir(d);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return -1;
}

void
spool_set_queue_hook(struct spool *sp, spool_queue_hook hook, void *arg)
{
	sp->hook = hook;
	sp->hook_arg = arg;
}

void
spool_sync_soon(struct spool *sp)
{
	struct spool_job *job;

	if (sp->durability == CONFIG_DURABILITY_NONE)
		return;
	if ((job = calloc(1, sizeof(*job))) == NULL)
		return; /* the next commit's syncfs covers it anyway */
	job->ok = true;
	pthread_mutex_lock(&sp->lock);
	*sp->pending_tail = job;
	sp->pending_tail = &job->next;
	pthread_cond_signal(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
}

int
spool_open_data(struct spool *sp, const char *id)
{
	if (!message_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	return openat(sp->queuefd, id, O_RDONLY | O_CLOEXEC);
}

/* "SUCCESS,FAILURE" → bits */
static unsigned
spool_parse_notify(const char *v)
{
	unsigned bits = 0;

	if (strstr(v, "NEVER"))
		bits |= SMTP_DSN_NOTIFY_NEVER;
	if (strstr(v, "SUCCESS"))
		bits |= SMTP_DSN_NOTIFY_SUCCESS;
	if (strstr(v, "FAILURE"))
		bits |= SMTP_DSN_NOTIFY_FAILURE;
	if (strstr(v, "DELAY"))
		bits |= SMTP_DSN_NOTIFY_DELAY;
	return bits;
}

/* "rcpt [notify=..] [orcpt=..] <addr>" */
static int
spool_parse_rcpt(struct message *msg, char *line)
{
	char *p = line + 5, *lt, *orcpt = NULL, *word;
	unsigned notify = 0;
	size_t len;

	if ((lt = strchr(p, '<')) == NULL)
		return -1;
	len = strlen(lt);
	if (len < 2 || lt[len - 1] != '>')
		return -1;
	lt[len - 1] = '\0';
	lt[-1] = '\0';
	for (word = strtok(p, " "); word != NULL && word < lt; word = strtok(NULL, " ")) {
		if (strncmp(word, "notify=", 7) == 0)
			notify = spool_parse_notify(word + 7);
		else if (strncmp(word, "orcpt=", 6) == 0)
			orcpt = word + 6;
	}
	return message_add_rcpt(msg, lt + 1, notify, orcpt);
}

int
spool_load(struct spool *sp, const char *id, struct message **out)
{
	return spool_read_message(sp->queuefd, id, out);
}

int
spool_read_message(int queuefd, const char *id, struct message **out)
{
	struct message *msg = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t header = 0;
	struct stat st;
	FILE *f = NULL;
	int fd, first = 1, ok = 0;

	*out = NULL;
	if (!message_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if ((fd = openat(queuefd, id, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1 || (f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	if ((msg = message_new()) == NULL)
		goto done;
	while ((n = getline(&line, &cap, f)) > 0) {
		header += (uint64_t)n;
		if (line[n - 1] != '\n')
			break;
		line[--n] = '\0';
		if (first) {
			if (strcmp(line, "petrel-spool 1") != 0)
				break;
			first = 0;
		} else if (n == 0) {
			ok = 1;
			break;
		} else if (strncmp(line, "id ", 3) == 0) {
			snprintf(msg->id, sizeof(msg->id), "%s", line + 3);
		} else if (strncmp(line, "arrival ", 8) == 0) {
			long long sec = 0;
			long usec = 0;
			sscanf(line + 8, "%lld.%ld", &sec, &usec);
			msg->arrival.tv_sec = (time_t)sec;
			msg->arrival.tv_usec = usec;
		} else if (strncmp(line, "client ", 7) == 0) {
			snprintf(msg->client_addr, sizeof(msg->client_addr), "%s", line + 7);
		} else if (strncmp(line, "helo ", 5) == 0) {
			if (message_set_helo(msg, line + 5, (size_t)n - 5) == -1)
				break;
		} else if (strncmp(line, "from <", 6) == 0 && line[n - 1] == '>') {
			line[n - 1] = '\0';
			if (message_set_from(msg, line + 6) == -1)
				break;
		} else if (strcmp(line, "body 8BITMIME") == 0) {
			msg->body_type = SMTP_BODY_8BITMIME;
		} else if (strcmp(line, "body 7BIT") == 0) {
			msg->body_type = SMTP_BODY_7BIT;
		} else if (strcmp(line, "smtputf8") == 0) {
			msg->smtputf8 = true;
		} else if (strcmp(line, "ret FULL") == 0) {
			msg->ret = SMTP_DSN_RET_FULL;
		} else if (strcmp(line, "ret HDRS") == 0) {
			msg->ret = SMTP_DSN_RET_HDRS;
		} else if (strncmp(line, "envid ", 6) == 0) {
			if (message_set_envid(msg, line + 6) == -1)
				break;
		} else if (strncmp(line, "rcpt ", 5) == 0) {
			if (spool_parse_rcpt(msg, line) == -1)
				break;
		}
	}
done:
	free(line);
	fclose(f);
	if (!ok || msg == NULL || strcmp(msg->id, id) != 0 || msg->from == NULL ||
	    msg->nrcpts == 0 || (uint64_t)st.st_size < header) {
		message_free(msg);
		errno = EINVAL;
		return -1;
	}
	msg->data_offset = header;
	msg->data_len = (uint64_t)st.st_size - header;
	*out = msg;
	return 0;
}

int
spool_state_append(struct spool *sp, const char *id, const char *line, size_t len)
{
	ssize_t w;
	int fd, saved;

	fd = openat(sp->statefd, id, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	w = write(fd, line, len);
	saved = errno;
	close(fd);
	if (w != (ssize_t)len) {
		errno = w < 0 ? saved : EIO;
		return -1;
	}
	spool_sync_soon(sp);
	return 0;
}

int
spool_state_read(struct spool *sp, const char *id,
                 void (*cb)(void *arg, const char *line, size_t len), void *arg)
{
	return spool_read_state(sp->statefd, id, cb, arg);
}

int
spool_read_state(int statefd, const char *id, void (*cb)(void *arg, const char *line, size_t len),
                 void *arg)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int fd;

	if ((fd = openat(statefd, id, O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break; /* torn by a crash: never completed, ignore */
		line[n - 1] = '\0';
		cb(arg, line, (size_t)n - 1);
	}
	free(line);
	fclose(f);
	return 0;
}

void
spool_discard(struct spool *sp, const char *id)
{
	if (unlinkat(sp->queuefd, id, 0) == -1 && errno != ENOENT)
		log_error("spool remove failed id=%s error=\"%s\"", id, strerror(errno));
	unlinkat(sp->statefd, id, 0);
}

void
spool_remove(struct spool *sp, const struct message *msg, bool has_state)
{
	const char *id = msg->id;
	char name[16];

	/* Not synced on purpose: if a crash undid the removal, the message would only be sent
	 * again (never lost), and the next commit's syncfs makes it durable anyway. Syncing every
	 * removal would double the journal commits under load. */
	if (has_state)
		unlinkat(sp->statefd, id, 0);
	if (sp->nfree < SPOOL_FREE_MAX) {
		snprintf(name, sizeof(name), "f%" PRIu32, sp->free_next);
		if (renameat(sp->queuefd, id, sp->freefd, name) == 0) {
			sp->free_sizes[sp->nfree] = msg->data_offset + msg->data_len;
			sp->free_names[sp->nfree++] = sp->free_next++;
			return;
		}
	}
	if (unlinkat(sp->queuefd, id, 0) == -1 && errno != ENOENT)
		log_error("spool remove failed id=%s error=\"%s\"", id, strerror(errno));
}
