/*
 * spool.c: the on-disk spool and its group commit (format and layout: spool.h).
 *
 * Owns: the spool directory fds, the free slots (a stack, the most recent ones kept open), the
 * sync thread, the messages found at start-up until spool_recover hands them over, and every
 * message from spool_msg_commit() until its commit is done. Does not own the queue (which
 * messages to deliver when).
 *
 * Threads: everything runs on the loop thread except spool_sync_main(), which only takes
 * batches of committed jobs, syncs them, and hands them back through the done list and a pipe
 * whose read end is an event on the loop. Jobs carry the id and the caller's callback; a caller
 * that goes away cancels its job instead of leaving a dangling arg.
 *
 * Slots. Creating, renaming and deleting a file per message costs directory updates (an ext4
 * directory block is scanned entry by entry for each) and an inode allocation and free; with
 * those, two renames per message were a third of petrel's CPU time under load (see
 * bench/RESULTS.md). So a message is written into a slot file that stays where it is: its
 * commit record (spool_record.h) says whether it holds a message, and the checksum in it tells
 * a complete file from one torn by a crash. Finishing a message is one pwrite of 'F' over the
 * state byte, and the slot is written over by a later message. The directory changes only when
 * the spool needs more slots than it has, or has too many free ones.
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
#include "petrel/spool_record.h"
#include "petrel/stats.h"

#define SPOOL_IOV      64
#define SPOOL_FREE_MAX 4096 /* free slot files kept; more are unlinked */
#define SPOOL_FREE_FDS 256  /* of those, kept open (no openat to reuse one) */
#define SPOOL_SHRINK                                                                               \
	(1024 * 1024)                /* a recycled file longer than its new message by more        \
	                              * than this is cut (else it keeps its length) */
#define SPOOL_READ_CHUNK (64 * 1024) /* checksum verification reads */
#define SPOOL_KEEP_MAX                                                                             \
	(32 * 1024) /* a message up to this size keeps its data in memory                          \
	             * after the commit (message.h: data_mem) */

struct spool_job {
	struct spool_job *next;
	struct message *msg; /* the committed envelope, for the queue hook; NULL for syncs */
	char id[MESSAGE_ID_LEN + 1];
	bool new_file;      /* its slot file was created: slots/ must be synced too */
	spool_commit_cb cb; /* NULL once cancelled */
	void *arg;
	bool ok;
	bool batch_head;  /* the first job of a sync batch: carries the batch's time */
	uint64_t sync_ns; /* batch_head: syncfs to the end of the batch, measured by the thread */
};

struct spool_free {
	uint32_t slot;
	int fd;        /* open for reading and writing, or -1 */
	uint64_t size; /* the file's length */
	bool unsynced; /* created, and its directory entry not synced yet */
};

struct spool {
	struct event_base *base;
	char *dir;
	int dirfd;
	int slotsfd;
	int statefd;
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

	struct spool_free *free; /* loop thread: free slots, used as a stack */
	size_t nfree;
	unsigned free_fds;  /* how many of them are open */
	uint32_t next_slot; /* the next slot file to create */

	struct message **found; /* committed messages read at start-up, by id, until recovered */
	size_t nfound;
};

static void spool_wake_cb(evutil_socket_t fd, short what, void *arg);
static void spool_done_cb(evutil_socket_t fd, short what, void *arg);
static void *spool_sync_main(void *arg);

static void
spool_slot_name(char name[16], uint32_t slot)
{
	snprintf(name, 16, "%" PRIu32, slot);
}

/* A slot file's name → its number; -1 for anything else (dot files, strays). */
static int64_t
spool_slot_parse(const char *name)
{
	uint64_t v = 0;
	const char *p;

	if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1] != '\0'))
		return -1;
	for (p = name; *p; p++) {
		if (*p < '0' || *p > '9' || p - name >= 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return v < UINT32_MAX ? (int64_t)v : -1;
}

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

static int
spool_envelope(struct evbuffer *env, const struct message *msg)
{
	static const char *const body_names[] = { [SMTP_BODY_7BIT] = "7BIT",
		                                  [SMTP_BODY_8BITMIME] = "8BITMIME",
		                                  [SMTP_BODY_BINARYMIME] = "BINARYMIME" };
	size_t i;
	int r = 0;

	r |= evbuffer_add_printf(env, "id %s\narrival %lld.%06ld\n", msg->id,
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

/* Write 'F' over a slot's state byte: whatever it held is no longer a message. */
static int
spool_mark_free(int fd)
{
	ssize_t w;

	do
		w = pwrite(fd, "F", 1, SPOOL_RECORD_STATE_OFF);
	while (w == -1 && errno == EINTR);
	return w == 1 ? 0 : -1;
}

/* Mark slots/<slot> free through a descriptor of its own (synced with `sync`). 0 or -1. */
static int
spool_slot_free_at(int slotsfd, uint32_t slot, bool sync)
{
	char name[16];
	int fd, rc = 0, saved;

	spool_slot_name(name, slot);
	if ((fd = openat(slotsfd, name, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	if (spool_mark_free(fd) == -1 || (sync && fsync(fd) == -1))
		rc = -1;
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Put a free slot on the stack (fd: open, or -1). Past SPOOL_FREE_MAX its file goes. */
static void
spool_free_push(struct spool *sp, uint32_t slot, int fd, uint64_t size, bool unsynced)
{
	char name[16];

	if (sp->nfree >= SPOOL_FREE_MAX) {
		if (fd >= 0)
			close(fd);
		spool_slot_name(name, slot);
		unlinkat(sp->slotsfd, name, 0);
		return;
	}
	if (fd >= 0 && sp->free_fds >= SPOOL_FREE_FDS) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0)
		sp->free_fds++;
	sp->free[sp->nfree++] =
	        (struct spool_free){ .slot = slot, .fd = fd, .size = size, .unsynced = unsynced };
}

/* The length of msg's slot file as far as we know: its old length or what was written. */
static uint64_t
spool_msg_file_size(const struct message *msg)
{
	uint64_t written = SPOOL_RECORD_LEN + msg->spool_written;

	return msg->spool_old_size > written ? msg->spool_old_size : written;
}

/* msg gives its slot back (marked free, then reused). Takes msg->fd. */
static void
spool_slot_release(struct spool *sp, struct message *msg)
{
	char name[16];
	int fd = msg->fd;

	if (msg->spool_slot < 0)
		return;
	msg->fd = -1;
	spool_slot_name(name, (uint32_t)msg->spool_slot);
	if (fd < 0)
		fd = openat(sp->slotsfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || spool_mark_free(fd) == -1) {
		/* Not reused: if the mark did not land, the file may still read as committed. */
		log_error("spool cannot mark slot free slot=%s/slots/%s id=%s error=\"%s\"",
		          sp->dir, name, msg->id, strerror(errno));
		if (fd >= 0)
			close(fd);
	} else {
		spool_free_push(sp, (uint32_t)msg->spool_slot, fd, spool_msg_file_size(msg),
		                msg->spool_new_file);
	}
	msg->spool_slot = -1;
}

/* Take a slot for msg: the most recently freed one, else a new file. 0 or -1 (errno). */
static int
spool_slot_take(struct spool *sp, struct message *msg)
{
	char name[16];
	int fd, tries;

	while (sp->nfree > 0) {
		struct spool_free f = sp->free[--sp->nfree];

		if (f.fd >= 0) {
			sp->free_fds--;
			fd = f.fd;
		} else if ((fd = openat(sp->slotsfd, (spool_slot_name(name, f.slot), name),
		                        O_RDWR | O_CLOEXEC)) == -1) {
			continue; /* gone (removed by hand?): the next one */
		}
		msg->fd = fd;
		msg->spool_slot = f.slot;
		msg->spool_old_size = f.size;
		msg->spool_new_file = f.unsynced;
		return 0;
	}
	for (tries = 0; tries < 1000; tries++) {
		uint32_t slot = sp->next_slot++;

		spool_slot_name(name, slot);
		fd = openat(sp->slotsfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			msg->fd = fd;
			msg->spool_slot = slot;
			msg->spool_old_size = 0;
			msg->spool_new_file = true;
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/*
 * Write msg->body into its slot after what is already there, draining it; with `record`, the
 * commit record goes first, at offset 0, in the same writev. Feeds msg->spool_sum if there is
 * one. 0 or -1 (errno).
 */
static int
spool_write_chain(struct message *msg, const char *record)
{
	struct iovec iov[SPOOL_IOV];
	size_t skip;
	ssize_t w;
	off_t off;
	int n, k, i;

	while (record != NULL || evbuffer_get_length(msg->body) > 0) {
		k = 0;
		off = (off_t)(SPOOL_RECORD_LEN + msg->spool_written);
		if (record != NULL) {
			iov[0].iov_base = (void *)record;
			iov[0].iov_len = SPOOL_RECORD_LEN;
			k = 1;
			off = 0;
		}
		n = evbuffer_peek(msg->body, -1, NULL, (struct evbuffer_iovec *)(iov + k),
		                  SPOOL_IOV - k);
		if (n > SPOOL_IOV - k)
			n = SPOOL_IOV - k;
		w = pwritev(msg->fd, iov, n + k, off);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (record != NULL) {
			if (w < SPOOL_RECORD_LEN) {
				errno = EIO; /* a short write inside the record: give up */
				return -1;
			}
			w -= SPOOL_RECORD_LEN;
			record = NULL;
		}
		if (msg->spool_sum != NULL)
			for (i = k, skip = (size_t)w; i < n + k && skip > 0; i++) {
				size_t len = iov[i].iov_len < skip ? iov[i].iov_len : skip;
				spool_sum_update(msg->spool_sum, iov[i].iov_base, len);
				skip -= len;
			}
		evbuffer_drain(msg->body, (size_t)w);
		msg->spool_written += (uint64_t)w;
	}
	return 0;
}

int
spool_msg_begin(struct spool *sp, struct message *msg, const char *header, size_t hlen)
{
	struct evbuffer *env;
	int saved;

	if (msg->spool_slot >= 0)
		return 0;
	if ((env = evbuffer_new()) == NULL)
		return -1;
	if (spool_envelope(env, msg) == -1 || evbuffer_add(env, header, hlen) == -1) {
		evbuffer_free(env);
		errno = ENOMEM;
		return -1;
	}
	msg->spool_written = 0;
	msg->data_offset = SPOOL_RECORD_LEN + evbuffer_get_length(env) - hlen;
	msg->data_len = hlen;
	if (spool_slot_take(sp, msg) == -1)
		goto fail;
	/* The envelope goes out with the first body bytes, in the same writev (one system call
	 * for a small message's whole file, commit record included). */
	if (evbuffer_prepend_buffer(msg->body, env) == -1) {
		errno = ENOMEM;
		goto fail;
	}
	evbuffer_free(env);
	return 0;
fail:
	saved = errno;
	evbuffer_free(env);
	spool_slot_release(sp, msg);
	errno = saved;
	return -1;
}

int
spool_msg_write(struct spool *sp, struct message *msg)
{
	(void)sp;
	if (msg->fd < 0) {
		errno = EBADF;
		return -1;
	}
	/* Written piecewise: the checksum runs along, the record comes last (commit). */
	if (msg->spool_sum == NULL && (msg->spool_sum = spool_sum_new()) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	return spool_write_chain(msg, NULL);
}

void
spool_msg_abort(struct spool *sp, struct message *msg)
{
	if (msg == NULL)
		return;
	spool_slot_release(sp, msg);
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

/*
 * Write the record and all of msg->body (n pieces in vec) at offset 0, then keep the message
 * data in memory: the envelope is drained and the rest of the chain becomes msg->data_mem, so
 * the first deliveries send it from there (no copy, no file read). 0 or -1 (errno).
 */
static int
spool_write_keep(struct message *msg, const char *record, const struct evbuffer_iovec *vec, int n)
{
	struct iovec iov[SPOOL_IOV + 1];
	struct iovec *p = iov;
	size_t total = SPOOL_RECORD_LEN, done = 0;
	ssize_t w;
	int i, cnt = n + 1;

	iov[0].iov_base = (void *)record;
	iov[0].iov_len = SPOOL_RECORD_LEN;
	for (i = 0; i < n; i++) {
		iov[i + 1].iov_base = vec[i].iov_base;
		iov[i + 1].iov_len = vec[i].iov_len;
		total += vec[i].iov_len;
	}
	while (done < total) {
		w = pwritev(msg->fd, p, cnt, (off_t)done);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
		while (cnt > 0 && (size_t)w >= p->iov_len) { /* a short write: go on after it */
			w -= (ssize_t)p->iov_len;
			p++;
			cnt--;
		}
		if (cnt > 0) {
			p->iov_base = (char *)p->iov_base + w;
			p->iov_len -= (size_t)w;
		}
	}
	msg->spool_written = total - SPOOL_RECORD_LEN;
	evbuffer_drain(msg->body, (size_t)(msg->data_offset - SPOOL_RECORD_LEN));
	msg->data_mem = msg->body;
	msg->body = NULL;
	return 0;
}

/* Write what is left of msg and its commit record. 0 or -1 (errno). */
static int
spool_msg_finish(struct message *msg)
{
	struct evbuffer_iovec vec[SPOOL_IOV];
	struct spool_record rec = { .state = SPOOL_SLOT_QUEUED };
	char record[SPOOL_RECORD_LEN];
	size_t left = evbuffer_get_length(msg->body);
	uint64_t total = msg->spool_written + left; /* bytes after the record */
	int n;

	memcpy(rec.id, msg->id, sizeof(rec.id));
	rec.len = total;
	msg->data_len = SPOOL_RECORD_LEN + total - msg->data_offset;
	if (msg->spool_sum == NULL) {
		/* Nothing written yet (the usual small message): checksum the chain, then record
		 * and chain in one writev. A chain in too many pieces is written piecewise. */
		n = evbuffer_peek(msg->body, -1, NULL, NULL, 0); /* how many pieces */
		if (n <= SPOOL_IOV) {
			n = evbuffer_peek(msg->body, -1, NULL, vec, n);
			rec.sum = spool_sum_iov((const struct iovec *)vec, n, left);
			spool_record_format(record, &rec);
			if (msg->data_len <= SPOOL_KEEP_MAX)
				return spool_write_keep(msg, record, vec, n);
			return spool_write_chain(msg, record);
		}
		if ((msg->spool_sum = spool_sum_new()) == NULL) {
			errno = ENOMEM;
			return -1;
		}
	}
	if (spool_write_chain(msg, NULL) == -1)
		return -1;
	rec.sum = spool_sum_digest(msg->spool_sum);
	spool_record_format(record, &rec);
	if (pwrite(msg->fd, record, SPOOL_RECORD_LEN, 0) != SPOOL_RECORD_LEN) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

struct spool_job *
spool_msg_commit(struct spool *sp, struct message *msg, spool_commit_cb cb, void *arg)
{
	struct spool_job *job;
	uint64_t end;
	int saved;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		goto fail;
	memcpy(job->id, msg->id, sizeof(job->id));
	job->cb = cb;
	job->arg = arg;
	job->ok = true;
	job->new_file = msg->spool_new_file;
	if (msg->fd < 0) {
		errno = EBADF;
		goto fail;
	}
	errno = 0;
	if (spool_msg_finish(msg) == -1)
		goto fail;
	spool_sum_free(msg->spool_sum);
	msg->spool_sum = NULL;
	/* A recycled file much longer than this message is cut (only then: a truncate costs a
	 * journaled inode update even when the length does not change). */
	end = SPOOL_RECORD_LEN + msg->spool_written;
	if (msg->spool_old_size > end + SPOOL_SHRINK) {
		if (ftruncate(msg->fd, (off_t)end) == -1)
			goto fail;
		msg->spool_old_size = end;
	}
	/* msg->fd stays open: the queue reads deliveries from it (message.h). */
	job->msg = msg;

	if (sp->durability == CONFIG_DURABILITY_NONE) {
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
 * The sync thread: take every pending job at once, make their files durable with one syncfs
 * (and slots/ with one fsync when a slot file was created), hand them back. A failure fails the
 * whole batch: no 250 is sent for them, and the loop frees their slots.
 */
static void *
spool_sync_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_job *batch, *job, **tail;
	uint64_t start;
	bool stop, new_file;

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
		new_file = false;
		for (job = batch; job != NULL; job = job->next)
			new_file |= job->new_file;
		if (syncfs(sp->slotsfd) == -1 || (new_file && fsync(sp->slotsfd) == -1)) {
			log_error("spool sync failed dir=%s error=\"%s\"", sp->dir,
			          strerror(errno));
			for (job = batch; job != NULL; job = job->next)
				job->ok = false;
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
			if (job->ok) {
				job->msg->spool_new_file = false; /* slots/ was synced with it */
				sp->stats.commits++;
			} else {
				sp->stats.failures++;
			}
		}
		if (job->cb)
			job->cb(job->arg, job->id, job->ok);
		if (job->msg != NULL && job->ok && sp->hook != NULL)
			sp->hook(sp->hook_arg, job->msg); /* the queue owns it now */
		else if (job->msg != NULL && !job->ok)
			spool_msg_abort(sp, job->msg); /* no 250 was sent: the slot is free again */
		else
			message_free(job->msg); /* committed, nobody to take it: it stays */
		free(job);
	}
}

static void
spool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	spool_run_done(arg);
}

static void
spool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	char buf[256];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	spool_run_done(sp);
}

/*
 * Parse the envelope of a slot file from f (positioned after the record) into msg; *header is
 * the envelope's length, empty line included. 0 or -1.
 */
static int
spool_parse_envelope(FILE *f, struct message *msg, uint64_t *header)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int ok = -1;

	*header = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		*header += (uint64_t)n;
		if (line[n - 1] != '\n')
			break;
		line[--n] = '\0';
		if (n == 0) {
			ok = 0;
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
	free(line);
	return ok;
}

/* Does the checksum of the `len` bytes after the record match? 0, or -1 (errno: EINVAL for a
 * mismatch or a short file, else from pread). */
static int
spool_verify_sum(int fd, const struct spool_record *rec)
{
	struct spool_sum *sum;
	char *buf;
	uint64_t done = 0;
	ssize_t n;
	int rc = -1;

	if ((sum = spool_sum_new()) == NULL || (buf = malloc(SPOOL_READ_CHUNK)) == NULL) {
		spool_sum_free(sum);
		errno = ENOMEM;
		return -1;
	}
	while (done < rec->len) {
		size_t want = rec->len - done < SPOOL_READ_CHUNK ? (size_t)(rec->len - done)
		                                                 : SPOOL_READ_CHUNK;
		n = pread(fd, buf, want, (off_t)(SPOOL_RECORD_LEN + done));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EINVAL; /* shorter than recorded: torn */
			goto done;
		}
		spool_sum_update(sum, buf, (size_t)n);
		done += (uint64_t)n;
	}
	if (spool_sum_digest(sum) == rec->sum)
		rc = 0;
	else
		errno = EINVAL;
done:
	free(buf);
	spool_sum_free(sum);
	return rc;
}

/* Read the commit record of an open slot file. 0, or -1 (errno ENOENT: not a record at all). */
static int
spool_read_record(int fd, struct spool_record *rec)
{
	char buf[SPOOL_RECORD_LEN];
	ssize_t n;

	do
		n = pread(fd, buf, sizeof(buf), 0);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if (spool_record_parse(buf, (size_t)n, rec) == -1) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

/*
 * Read slot file fd (slot number `slot`) as a committed message into *out (fd stays the
 * caller's; msg->fd is -1). 0, or -1 with errno: ENOENT when the slot is free (state F, or no
 * record: a new file's zeros), EINVAL when its record says queued but the file does not match it
 * (torn by a crash: never acknowledged), EBADMSG when it matches but holds no envelope petrel
 * can read (left alone), else from the system.
 */
static int
spool_read_slot(int fd, uint32_t slot, struct message **out)
{
	struct spool_record rec;
	struct message *msg = NULL;
	uint64_t header;
	struct stat st;
	FILE *f = NULL;
	int dupfd, saved;

	*out = NULL;
	if (spool_read_record(fd, &rec) == -1)
		return -1;
	if (rec.state != SPOOL_SLOT_QUEUED) {
		errno = ENOENT;
		return -1;
	}
	if (fstat(fd, &st) == -1 || spool_verify_sum(fd, &rec) == -1)
		return -1;
	if ((dupfd = dup(fd)) == -1)
		return -1;
	if (lseek(dupfd, SPOOL_RECORD_LEN, SEEK_SET) == -1 || (f = fdopen(dupfd, "r")) == NULL) {
		saved = errno;
		close(dupfd);
		errno = saved;
		return -1;
	}
	if ((msg = message_new()) == NULL) {
		fclose(f);
		errno = ENOMEM;
		return -1;
	}
	if (spool_parse_envelope(f, msg, &header) == -1 || strcmp(msg->id, rec.id) != 0 ||
	    msg->from == NULL || msg->nrcpts == 0 || header > rec.len) {
		/* Complete (the checksum agrees) but not an envelope petrel can read: not torn,
		 * so never taken for a free slot either. */
		fclose(f);
		message_free(msg);
		errno = EBADMSG;
		return -1;
	}
	fclose(f);
	msg->spool_slot = slot;
	msg->spool_old_size = (uint64_t)st.st_size;
	msg->spool_written = rec.len;
	msg->data_offset = SPOOL_RECORD_LEN + header;
	msg->data_len = rec.len - header;
	*out = msg;
	return 0;
}

/* Walk a directory given by fd (from the start; fd stays the caller's). NULL on error. */
static DIR *
spool_opendir(int dirfd)
{
	DIR *d;
	int fd;

	if ((fd = dup(dirfd)) == -1)
		return NULL;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return NULL;
	}
	rewinddir(d);
	return d;
}

static int
spool_msg_id_cmp(const void *a, const void *b)
{
	return strcmp((*(struct message *const *)a)->id, (*(struct message *const *)b)->id);
}

/* Append msg to a growing array. 0 or -1 (ENOMEM). */
static int
spool_msgs_add(struct message ***v, size_t *n, size_t *cap, struct message *msg)
{
	struct message **grown;

	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		if ((grown = realloc(*v, c * sizeof(**v))) == NULL)
			return -1;
		*v = grown;
		*cap = c;
	}
	(*v)[(*n)++] = msg;
	return 0;
}

/* Read every slot at start-up: committed messages into sp->found, the rest onto the free
 * stack (torn ones marked free first). 0 or -1 (errno). */
static int
spool_load_slots(struct spool *sp)
{
	struct message *msg;
	struct dirent *de;
	struct stat st;
	size_t cap = 0;
	unsigned torn = 0, unreadable = 0;
	int64_t slot;
	DIR *d;
	int fd;

	if ((d = spool_opendir(sp->slotsfd)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if ((slot = spool_slot_parse(de->d_name)) < 0)
			continue;
		if ((uint32_t)slot >= sp->next_slot)
			sp->next_slot = (uint32_t)slot + 1;
		if ((fd = openat(sp->slotsfd, de->d_name, O_RDWR | O_CLOEXEC)) == -1) {
			unreadable++;
			continue;
		}
		if (spool_read_slot(fd, (uint32_t)slot, &msg) == 0) {
			close(fd);
			if (spool_msgs_add(&sp->found, &sp->nfound, &cap, msg) == -1) {
				message_free(msg);
				closedir(d);
				errno = ENOMEM;
				return -1;
			}
			continue;
		}
		if (errno == EINVAL) {
			torn++; /* its client never had a 250 */
			if (spool_mark_free(fd) == -1) {
				close(fd);
				unreadable++;
				continue;
			}
		} else if (errno != ENOENT) {
			log_error("spool cannot read slot=%s/slots/%s error=\"%s\" (left as it is, "
			          "not queued)",
			          sp->dir, de->d_name, strerror(errno));
			close(fd);
			unreadable++;
			continue;
		}
		spool_free_push(sp, (uint32_t)slot, fd,
		                fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0, false);
	}
	closedir(d);
	if (sp->nfound > 1)
		qsort(sp->found, sp->nfound, sizeof(*sp->found), spool_msg_id_cmp);
	if (torn > 0)
		log_info("spool found unacknowledged messages count=%u dir=%s/slots (slots freed)",
		         torn, sp->dir);
	if (unreadable > 0)
		log_warn("spool unreadable slot files count=%u dir=%s/slots", unreadable, sp->dir);
	return 0;
}

/* A spool written by petrel before slot files (petrel-spool 1: queue/<id>) must not be taken
 * for an empty one. 0 (none, or an empty queue/), or -1 (errno ENOTEMPTY). */
static int
spool_check_old_layout(int dirfd)
{
	struct dirent *de;
	DIR *d;
	int fd, n = 0;

	if ((fd = openat(dirfd, "queue", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return 0;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d)) != NULL)
		if (message_id_valid(de->d_name))
			n++;
	closedir(d);
	if (n > 0) {
		errno = ENOTEMPTY;
		return -1;
	}
	return 0;
}

struct spool *
spool_open(struct event_base *base, const char *dir, enum config_durability durability, char **err)
{
	struct spool *sp;
	const char *what = "allocate";

	*err = NULL;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		goto fail;
	sp->dirfd = sp->slotsfd = sp->statefd = -1;
	sp->wake[0] = sp->wake[1] = -1;
	sp->base = base;
	sp->durability = durability;
	sp->pending_tail = &sp->pending;
	sp->done_tail = &sp->done;
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->cond, NULL);
	if ((sp->dir = strdup(dir)) == NULL ||
	    (sp->free = calloc(SPOOL_FREE_MAX, sizeof(*sp->free))) == NULL)
		goto fail;
	what = "create";
	if (spool_mkdir_p(dir) == -1)
		goto fail;
	what = "open";
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	what = "use the old layout (messages in queue/: deliver them with the petrel that wrote "
	       "them first) of";
	if (spool_check_old_layout(sp->dirfd) == -1)
		goto fail;
	what = "create slots/ in";
	if ((sp->slotsfd = spool_mkdirat(sp->dirfd, "slots")) == -1)
		goto fail;
	what = "create state/ in";
	if ((sp->statefd = spool_mkdirat(sp->dirfd, "state")) == -1)
		goto fail;
	what = "write to";
	if (faccessat(sp->dirfd, "slots", W_OK, AT_EACCESS) == -1)
		goto fail;
	what = "read the slots of";
	if (spool_load_slots(sp) == -1)
		goto fail;
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

void
spool_close(struct spool *sp)
{
	size_t i;

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
	for (i = 0; i < sp->nfree; i++)
		if (sp->free[i].fd >= 0)
			close(sp->free[i].fd);
	free(sp->free);
	for (i = 0; i < sp->nfound; i++)
		message_free(sp->found[i]);
	free(sp->found);
	if (sp->slotsfd >= 0)
		close(sp->slotsfd);
	if (sp->statefd >= 0)
		close(sp->statefd);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_cond_destroy(&sp->cond);
	pthread_mutex_destroy(&sp->lock);
	free(sp->dir);
	free(sp);
}

long
spool_recover(struct spool *sp, spool_message_cb cb, void *arg)
{
	struct message **found = sp->found;
	size_t i, n = sp->nfound;

	sp->found = NULL;
	sp->nfound = 0;
	for (i = 0; i < n; i++)
		cb(arg, found[i]);
	free(found);
	return (long)n;
}

long
spool_list(int slotsfd, spool_message_cb cb, void *arg)
{
	struct message **v = NULL, *msg;
	struct dirent *de;
	size_t n = 0, cap = 0, i;
	int64_t slot;
	DIR *d;
	int fd;

	if ((d = spool_opendir(slotsfd)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if ((slot = spool_slot_parse(de->d_name)) < 0 ||
		    (fd = openat(slotsfd, de->d_name, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		if (spool_read_slot(fd, (uint32_t)slot, &msg) == 0 &&
		    spool_msgs_add(&v, &n, &cap, msg) == -1)
			message_free(msg);
		close(fd);
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), spool_msg_id_cmp);
	for (i = 0; i < n; i++)
		cb(arg, v[i]);
	free(v);
	return (long)n;
}

int
spool_find(int slotsfd, const char *id, struct message **out)
{
	struct spool_record rec;
	struct dirent *de;
	int64_t slot;
	DIR *d;
	int fd, rc = -1, saved = ENOENT;

	*out = NULL;
	if (!message_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if ((d = spool_opendir(slotsfd)) == NULL)
		return -1;
	while (rc == -1 && (de = readdir(d)) != NULL) {
		if ((slot = spool_slot_parse(de->d_name)) < 0 ||
		    (fd = openat(slotsfd, de->d_name, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		if (spool_read_record(fd, &rec) == 0 && rec.state == SPOOL_SLOT_QUEUED &&
		    strcmp(rec.id, id) == 0) {
			rc = spool_read_slot(fd, (uint32_t)slot, out);
			saved = errno;
		}
		close(fd);
	}
	closedir(d);
	if (rc == -1)
		errno = saved == EINVAL ? ENOENT : saved; /* torn: never acknowledged */
	return rc;
}

int
spool_read_at(int slotsfd, uint32_t slot, const char *id, struct message **out)
{
	char name[16];
	int fd, rc, saved;

	*out = NULL;
	spool_slot_name(name, slot);
	if ((fd = openat(slotsfd, name, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	rc = spool_read_slot(fd, slot, out);
	saved = errno;
	close(fd);
	if (rc == 0 && strcmp((*out)->id, id) != 0) {
		message_free(*out);
		*out = NULL;
		rc = -1;
		saved = ENOENT;
	}
	errno = rc == 0 ? 0 : saved == EINVAL ? ENOENT : saved;
	return rc;
}

int
spool_delete_stopped(int slotsfd, int statefd, const char *id)
{
	struct message *msg;
	uint32_t slot;

	if (spool_find(slotsfd, id, &msg) == -1)
		return -1;
	slot = (uint32_t)msg->spool_slot;
	message_free(msg);
	if (spool_slot_free_at(slotsfd, slot, true) == -1)
		return -1;
	if (statefd >= 0)
		unlinkat(statefd, id, 0);
	return 0;
}

int
spool_open_data(int slotsfd, const struct message *msg)
{
	char name[16];

	if (msg->spool_slot < 0) {
		errno = EINVAL;
		return -1;
	}
	spool_slot_name(name, (uint32_t)msg->spool_slot);
	return openat(slotsfd, name, O_RDONLY | O_CLOEXEC);
}

int
spool_slots_fd(const struct spool *sp)
{
	return sp->slotsfd;
}

void
spool_get_stats(const struct spool *sp, struct spool_stats *out)
{
	*out = sp->stats;
	pthread_mutex_lock((pthread_mutex_t *)&sp->lock);
	out->batches = sp->stats.batches;
	pthread_mutex_unlock((pthread_mutex_t *)&sp->lock);
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

void
spool_remove(struct spool *sp, struct message *msg, bool has_state)
{
	/* Not synced on purpose: if a crash undid the removal, the message would only be sent
	 * again (never lost), and the next commit's syncfs makes it durable anyway. Syncing every
	 * removal would double the journal commits under load. */
	if (has_state)
		unlinkat(sp->statefd, msg->id, 0);
	spool_slot_release(sp, msg);
}

void
spool_discard(struct spool *sp, const struct message *msg)
{
	unlinkat(sp->statefd, msg->id, 0);
	if (msg->spool_slot >= 0 &&
	    spool_slot_free_at(sp->slotsfd, (uint32_t)msg->spool_slot, false) == -1)
		log_error("spool remove failed id=%s slot=%s/slots/%lld error=\"%s\"", msg->id,
		          sp->dir, (long long)msg->spool_slot, strerror(errno));
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
