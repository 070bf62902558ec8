/*
 * spool.h: the durable spool. A message acknowledged with 250 is a committed slot file.
 *
 * Layout under the spool directory:
 *   slots/<n>    slot files (n decimal). Each holds one message at a time, or none: a finished
 *                message's file is marked free and written over by a later message where it
 *                lies, so a message costs no file creation, rename or unlink (the directory is
 *                touched only when the spool grows). Whether a slot holds a message is in the
 *                file itself, in its first line (the commit record, below).
 *   state/<id>   the message's per-recipient journal (spool_state_append, below)
 *   control.sock the running daemon's control socket (control.h), removed when it exits
 *
 * File format (text, greppable):
 *   petrel-spool 2 Q 018f3a5c2b7d4e00 0000000000000400 9c1f0e3a5b7d2c11
 *                                       the commit record: exactly SPOOL_RECORD_LEN bytes;
 *                                       version 2, state (Q: queued, F: free), id, the length
 *                                       of everything after the record, and its XXH3-64
 *                                       checksum (both 16 lowercase hex digits)
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
 *   (then, in a recycled file, whatever an older message left beyond the recorded length)
 *
 * A slot holds a message when its record says Q, its id matches the id line, and the checksum
 * matches the recorded length of bytes: a file torn by a crash while it was written (its client
 * never had a 250) fails that test and is a free slot at the next start. Removing a message is
 * one write of 'F' over the state byte.
 *
 * Durability (durability: fsync): the file is written from the body chain with writev (a small
 * message, record included, in one system call), then a helper thread that does nothing but
 * sync commits whole batches at once (group commit): one syncfs(2) for all the files of the
 * batch, plus one fsync(2) of slots/ when the batch created a slot file. Only then does the loop
 * hear "committed" and the session send 250. The loop never waits on the disk. With durability:
 * none nothing is synced (benchmarks only).
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
 * Open (creating if needed) the spool at dir, read every slot file (committed messages are kept
 * for spool_recover, torn or free ones become free slots), start the sync thread. Returns NULL
 * and sets *err (malloc'd) on failure.
 */
struct spool *spool_open(struct event_base *base, const char *dir,
                         enum config_durability durability, char **err);

/* Wait for every pending commit to complete (callbacks run), stop the thread, free. */
void spool_close(struct spool *sp);

/*
 * Take a slot for msg (a free one, or a new file) and put the envelope and `header` (the
 * Received: line) in front of msg->body, to be written with it by the next spool_msg_write
 * or the commit (a small message's file is one writev). Returns 0 or -1 (errno set).
 */
int spool_msg_begin(struct spool *sp, struct message *msg, const char *header, size_t hlen);

/* Append and drain everything in msg->body (writev from the chain). 0 or -1 (errno set). */
int spool_msg_write(struct spool *sp, struct message *msg);

/*
 * Called on the loop thread when the commit is done: ok is true when the message is durable,
 * false when it failed (its slot is free again then).
 */
typedef void (*spool_commit_cb)(void *arg, const char *id, bool ok);

/*
 * Finish msg: write what remains in msg->body and the commit record, and queue it for sync.
 * Takes ownership of msg (the queue hook gets it, or it is freed). cb runs later, from the
 * event loop, never from inside this call. Returns a job handle (owned by the spool) for
 * spool_job_cancel(), or NULL if the write failed at once (then msg is freed, its slot is free
 * again, and cb is not called).
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

/* Drop a message being received (connection lost, message refused): its slot is free again.
 * Frees msg. */
void spool_msg_abort(struct spool *sp, struct message *msg);

/*
 * The committed messages found by spool_open, in id order (arrival), each handed to cb, which
 * takes ownership. Each message comes once: a second call hands nothing. Returns the count.
 */
typedef void (*spool_message_cb)(void *arg, struct message *msg);
long spool_recover(struct spool *sp, spool_message_cb cb, void *arg);

/*
 * Read-only access for readers that must not open the spool (the queue CLI with petrel stopped:
 * spool_open would start a thread and take over torn slots), given the slots/ directory fd.
 *
 * spool_list: every committed message, in id order, to cb (which owns it). Files that are not
 * a committed message (free, or torn by a crash: never acknowledged) are skipped.
 * Returns the count, or -1 (errno) when the directory cannot be read.
 * spool_find: the committed message with this id. 0, or -1 (errno ENOENT: none; EINVAL: not
 * an id).
 */
long spool_list(int slotsfd, spool_message_cb cb, void *arg);
int spool_find(int slotsfd, const char *id, struct message **out);

/* The committed message id in slots/<slot> (the daemon knows where its messages are: no walk
 * of the directory). 0, or -1 (errno ENOENT: the slot holds no such message). */
int spool_read_at(int slotsfd, uint32_t slot, const char *id, struct message **out);

/* Delete message id from a spool that no petrel runs on (the queue CLI): its slot is marked
 * free and state/<id> removed (statefd may be -1). 0, or -1 (errno: ENOENT none, EINVAL). */
int spool_delete_stopped(int slotsfd, int statefd, const char *id);

/* Open a committed message's file for reading (slots/<n> of msg->spool_slot); the caller
 * closes it, or hands it to evbuffer_add_file. The data is at msg->data_offset, data_len
 * bytes. -1 with errno on error. */
int spool_open_data(int slotsfd, const struct message *msg);
int spool_slots_fd(const struct spool *sp);

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

/* The same from a state/ directory fd (read-only; see spool_list). */
int spool_read_state(int statefd, const char *id,
                     void (*cb)(void *arg, const char *line, size_t len), void *arg);

/*
 * The message is finished: mark its slot free and remove state/<id> (made durable by the next
 * commit's sync, not at once: a crash before it can only cause a repeat, never a loss). The
 * slot is written over by a later message: call this only when nobody still reads the file.
 * Takes msg->fd if it is open (msg->fd is -1 after). has_state: state/<id> was ever written
 * (else nothing to unlink, and no failing unlinkat per message).
 */
void spool_remove(struct spool *sp, struct message *msg, bool has_state);

/*
 * Mark the slot free and remove state/<id> at once, but do not hand the slot to a later message:
 * for a message whose file may still be open and read, such as one deleted by `petrel queue
 * delete` while a delivery of it is under way. spool_remove() recycles it once nobody reads it.
 */
void spool_discard(struct spool *sp, const struct message *msg);

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
