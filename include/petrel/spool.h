/*
 * spool.h: the durable spool. A message acknowledged with 250 is a file under queue/.
 *
 * Layout under the spool directory:
 *   tmp/<id>     a message being received or waiting for its sync; never delivered, removed at
 *                start-up (its client never got a 250)
 *   free/f<n>    a finished message's file kept to be written over by a later message (no
 *                inode allocated per message), or such a message being received in it; emptied
 *                at start-up like tmp/
 *   queue/<id>   a committed message: the file is synced and its directory entry too
 *   state/<id>   the message's per-recipient journal (spool_state_append, below)
 *   control.sock the running daemon's control socket (control.h), removed when it exits
 *
 * File format (text, greppable; "petrel-spool 1" is the version line):
 *   petrel-spool 1
 *   id 018f3a5c2b7d4e00
 *   arrival 1763932800.123456
 *   client 127.0.0.1
 *   helo client.example.org
 *   protocol ESMTP
 *   from <sender@example.org>            ("from <>" for the null reverse path)
 *   body 8BITMIME                        (optional: 7BIT | 8BITMIME)
 *   smtputf8                             (optional)
 *   ret FULL                             (optional: FULL | HDRS)
 *   envid xtext                          (optional)
 *   rcpt notify=SUCCESS,FAILURE orcpt=rfc822;a@b <a@b>   (one line per recipient; the
 *                                        key=value words are optional, the path comes last)
 *   <empty line>
 *   the message exactly as it came in DATA: CRLF lines, dot-stuffed, without the final
 *   ".\r\n", starting with petrel's Received: header. BDAT content is stored in the same
 *   form (stuffed at the edge), so relaying sends the file as it is.
 *
 * Durability (durability: fsync): the file is written in tmp/ (or over a file in free/) from
 * the body chain with
 * writev(), then a helper thread that does nothing but sync commits whole batches at once
 * (group commit): one syncfs(2) for all the files of the batch, rename(2) of each into queue/,
 * one fsync(2) of queue/. Only then does the loop hear "committed" and the session send 250.
 * The loop never waits on the disk. With durability: none the rename happens at once and
 * nothing is synced (benchmarks only).
 */
#ifndef PETREL_SPOOL_H
#define PETREL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "petrel/config.h"

struct event_base;
struct evbuffer;
struct message;
struct spool;
struct spool_job;

/*
 * Open (creating if needed) the spool at cfg->spool, remove what tmp/ holds, start the sync
 * thread. Returns NULL and sets *err (malloc'd) on failure.
 */
struct spool *spool_open(struct event_base *base, const char *dir,
                         enum config_durability durability, char **err);

/* Wait for every pending commit to complete (callbacks run), stop the thread, free. */
void spool_close(struct spool *sp);

/*
 * Open msg's file (tmp/<id>, or a recycled free/f<n>) and put the envelope and `header` (the
 * Received: line) in front of msg->body, to be written with it by the next spool_msg_write
 * or the commit (a small message's file is one writev). Keeps the file open in msg-private
 * state inside the spool; returns 0 or -1 (errno set).
 */
int spool_msg_begin(struct spool *sp, struct message *msg, const char *header, size_t hlen);

/* Append and drain everything in msg->body (writev from the chain). 0 or -1 (errno set). */
int spool_msg_write(struct spool *sp, struct message *msg);

/*
 * Called on the loop thread when the commit is done: ok is true when the message is durable in
 * queue/, false when it failed (nothing is left on disk then).
 */
typedef void (*spool_commit_cb)(void *arg, const char *id, bool ok);

/*
 * Finish msg: write what remains in msg->body, close the file, and queue it for sync. Takes
 * ownership of msg (it is freed by the spool). cb runs later, from the event loop, never from
 * inside this call. Returns a job handle (owned by the spool) for spool_job_cancel(), or NULL if
 * the write failed at once (then nothing is on disk, msg is freed, and cb is not called).
 */
struct spool_job *spool_msg_commit(struct spool *sp, struct message *msg, spool_commit_cb cb,
                                   void *arg);

/*
 * Every committed message goes to this hook (after the job's own callback), which takes
 * ownership of it: that is how the queue learns of new mail, whether or not the session that
 * received it is still there. Without a hook the message is freed.
 */
typedef void (*spool_queue_hook)(void *arg, struct message *msg);
void spool_set_queue_hook(struct spool *sp, spool_queue_hook hook, void *arg);

/* The caller goes away: cb will not be called for this job (the commit itself proceeds). */
void spool_job_cancel(struct spool_job *job);

/* Drop a message being received (connection lost, message refused): close, unlink. Frees msg. */
void spool_msg_abort(struct spool *sp, struct message *msg);

/* A message found in queue/ at start-up. */
struct spool_entry {
	char id[17];
	char from[260];
	unsigned nrcpts;
	uint64_t size; /* bytes of message data (after the envelope) */
};

typedef void (*spool_scan_cb)(void *arg, const struct spool_entry *e);

/* List queue/ (sorted by id). Returns the count, or -1 on error. Malformed files are logged
 * and skipped (never deleted). */
long spool_scan(struct spool *sp, spool_scan_cb cb, void *arg);

/* Parse the envelope of one spool file; 0 or -1. Exposed for tests and tools. */
int spool_read_entry(int dirfd, const char *name, struct spool_entry *e);

/*
 * Read a committed message's envelope (sender, recipients with their DSN parameters, flags)
 * from queue/<id> into a new message (body chain empty, data_offset/data_len set). 0 or -1.
 */
int spool_load(struct spool *sp, const char *id, struct message **out);

/*
 * The same, from a queue/ directory fd, without a struct spool: for readers that must not open
 * the spool (the queue CLI with petrel stopped: spool_open would start a thread and clean tmp/).
 * Read-only. 0, or -1 (errno: EINVAL for a bad id or a malformed file, else from open/read).
 */
int spool_read_message(int queuefd, const char *id, struct message **out);

/* Open queue/<id> for reading (the caller closes it, or hands it to evbuffer_add_file). */
int spool_open_data(struct spool *sp, const char *id);

/*
 * The per-recipient state journal, state/<id>: one line per event, appended (a torn last line
 * after a crash has no '\n' and is ignored). Written on the loop (page cache), made durable by
 * the next group commit. Lines are "<rcpt-index> <state> <unix-time> [<detail>]" or
 * "- <event> <unix-time>" for the message (see scheduler.c).
 */
int spool_state_append(struct spool *sp, const char *id, const char *line, size_t len);

/* Call cb for each complete line of state/<id> (without '\n'). 0 (also if there is none) or -1. */
int spool_state_read(struct spool *sp, const char *id,
                     void (*cb)(void *arg, const char *line, size_t len), void *arg);

/* The same from a state/ directory fd (read-only; see spool_read_message). */
int spool_read_state(int statefd, const char *id,
                     void (*cb)(void *arg, const char *line, size_t len), void *arg);

/* The message is finished: remove queue/<id> and state/<id> (made durable by the next commit's
 * sync, not at once: a crash before it can only cause a repeat, never a loss). The file is kept
 * in free/ and written over by a later message (see spool.c, "File recycling"): call this only
 * when nobody still reads it. has_state: state/<id> was ever written (else nothing to unlink,
 * and no failing unlinkat per message). */
void spool_remove(struct spool *sp, const struct message *msg, bool has_state);

/*
 * Remove queue/<id> and state/<id> for good, never recycling the file (spool_remove may hand it
 * to the next message, written over in place): for a message whose file may still be open and
 * read, such as one deleted by `petrel queue delete` while a delivery of it is under way.
 */
void spool_discard(struct spool *sp, const char *id);

/* Make whatever was written or removed durable at the next group commit (no callback). */
void spool_sync_soon(struct spool *sp);

/* Counters for logs and stats. */
struct spool_stats {
	uint64_t commits;  /* messages committed */
	uint64_t batches;  /* sync batches */
	uint64_t failures; /* commits that failed */
};
void spool_get_stats(const struct spool *sp, struct spool_stats *out);

#endif
