/*
 * scheduler.h: outbound delivery: the queue of spooled messages and everything that happens to
 * them after the 250 — routing, MX resolution, SMTP delivery with connection reuse, local
 * Maildir delivery, retries with back-off, expiry, DSNs, and removal from the spool.
 *
 * Owns: every queued message (from scheduler_add() on), the delivery heap, the destinations with
 * their idle connections, the DNS requests and the local-delivery workers. Borrows the config,
 * the spool and the DNS resolver.
 */
#ifndef PETREL_SCHEDULER_H
#define PETREL_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "petrel/config.h"

struct event_base;
struct spool;
struct dns;
struct message;
struct scheduler;

struct scheduler_stats {
	uint64_t queued;    /* messages in the queue now */
	uint64_t delivered; /* recipients */
	uint64_t deferred;  /* recipient attempts that failed temporarily */
	uint64_t bounced;   /* recipients that failed permanently */
	uint64_t expired;   /* recipients whose lifetime ran out */
	uint64_t dsns;      /* DSN messages generated */
	uint64_t inflight;  /* deliveries under way now */
};

/*
 * Also loads what outbound delivery needs from the routes: a TLS client context for the system
 * trust store and one per route with ca_file, and each auth password_file (its first line, kept
 * in memory, never logged). Returns NULL on failure, with *err (malloc'd, naming the file and
 * the route; NULL when out of memory). Takes a reference to cfg.
 */
struct scheduler *scheduler_new(struct event_base *base, struct petrel_config *cfg,
                                struct spool *sp, struct dns *dns, char **err);

/*
 * Reload: prepare loads what cfg's routes need (TLS contexts, AUTH passwords) without changing
 * anything; 0, or -1 with *err (malloc'd) naming the route. Commit makes it current: routes,
 * limits, retry schedule, priorities and host name apply from the next dispatch of each
 * recipient (deliveries under way finish with the config they started with; a message's
 * lifetime and priority stay those it was queued with). Drop frees a prepared one instead.
 */
struct sched_gen;
int scheduler_config_prepare(struct scheduler *s, struct petrel_config *cfg, struct sched_gen **gen,
                             char **err);
void scheduler_config_commit(struct scheduler *s, struct sched_gen *gen);
void scheduler_config_drop(struct sched_gen *gen);

/* Stop starting deliveries, close idle connections, free everything (in-flight deliveries are
 * abandoned: their recipients stay pending in the spool). */
void scheduler_free(struct scheduler *s);

/* Stop starting deliveries and close idle connections; `drained` runs (from the loop) once no
 * delivery is under way any more. */
void scheduler_shutdown(struct scheduler *s, void (*drained)(void *arg), void *arg);

/* A newly committed message (takes ownership): schedule its first attempt now. */
void scheduler_add(struct scheduler *s, struct message *msg);

/* At start-up: load every message of the spool with its per-recipient state. Returns the
 * number of messages queued, or -1. */
long scheduler_recover(struct scheduler *s);

void scheduler_get_stats(const struct scheduler *s, struct scheduler_stats *out);

/*
 * The arrival time of the oldest queued message, for the stats endpoint. Bounded work: it looks
 * at the SCHED_OLDEST_SCAN messages queued longest ago (queue order is arrival order but for
 * messages received side by side). Returns 0, or -1 when the queue is empty.
 */
int scheduler_oldest_arrival(const struct scheduler *s, struct timeval *out);

/* ---- queue control (control.c: petrel queue list|show|flush|delete|hold|release) ---- */

enum scheduler_msg_state {
	SCHEDULER_MSG_ACTIVE,   /* a delivery under way, or due now (waiting for a slot) */
	SCHEDULER_MSG_DEFERRED, /* every pending recipient waits for its next attempt */
	SCHEDULER_MSG_HELD,     /* queue hold: not delivered until released */
};

/* A recipient's fate; the values are the ones of scheduler.c's state array. */
enum scheduler_rcpt_state {
	SCHEDULER_RCPT_PENDING = 0,
	SCHEDULER_RCPT_DELIVERED,
	SCHEDULER_RCPT_BOUNCED,
	SCHEDULER_RCPT_EXPIRED,
};

/* What the queue knows now of one pending recipient (scheduler_lookup only). */
struct scheduler_rcpt_live {
	unsigned attempts;   /* failed attempts so far */
	time_t next_attempt; /* queued: its next attempt (unix time); else 0 */
	bool active;         /* being delivered, or waiting for a connection slot */
};

/*
 * One queued message, as the queue CLI shows it. Everything is borrowed from the scheduler
 * for the duration of the callback only (and stays valid until control returns to the loop).
 */
struct scheduler_msg_summary {
	const struct message *msg; /* envelope: id, arrival, from, rcpts[], data_len */
	enum scheduler_msg_state state;
	unsigned npending;         /* recipients not final yet */
	time_t next_attempt;       /* earliest queued attempt (unix time), or 0 for none */
	const char *last_error;    /* the last temporary error of a pending recipient, or NULL */
	const uint8_t *rcpt_state; /* enum scheduler_rcpt_state per msg->rcpts[] */
	char *const *rcpt_error;   /* last temporary error per msg->rcpts[] (NULL entries) */
	const struct scheduler_rcpt_live *live; /* per msg->rcpts[]; NULL from scheduler_foreach */
};

typedef void (*scheduler_msg_cb)(void *arg, const struct scheduler_msg_summary *sum);

/* Call cb for every queued message, oldest first. Work is O(messages + units), on the loop,
 * in memory (no disk access). Returns the number of messages. */
size_t scheduler_foreach(struct scheduler *s, scheduler_msg_cb cb, void *arg);

/* The spool slot of queued message `id`, or -1 when it is not queued. */
int64_t scheduler_msg_slot(struct scheduler *s, const char *id);

/* Call cb for message `id` (with `live` filled). 0, or -1 (errno ENOENT: not queued; ENOMEM). */
int scheduler_lookup(struct scheduler *s, const char *id, scheduler_msg_cb cb, void *arg);

/* Every unit waiting for a later attempt is due now; held messages stay held. Returns how many
 * units moved (deliveries start as the concurrency limits allow). */
size_t scheduler_flush(struct scheduler *s);

/*
 * Remove message `id` from the queue and the spool (its slot and state/) without any DSN. Units
 * waiting or resolving are dropped at once; a delivery already under way (SMTP transaction,
 * Maildir job) runs to its end, its result is logged with status=ignored and nothing else
 * happens. Returns the number of such deliveries (0: gone at once), or -1 (errno ENOENT, ENOMEM).
 */
int scheduler_delete(struct scheduler *s, const char *id);

/*
 * Hold message `id`: its units leave the heap and their destination's wait list (a DNS lookup
 * under way is cancelled); a delivery already under way finishes, and what it leaves pending is
 * held too. "- held <time>" in its journal keeps the hold across restarts. Returns 0, 1 when it
 * was held already, or -1 (errno ENOENT, ENOMEM, or the journal write's).
 */
int scheduler_hold(struct scheduler *s, const char *id);

/* Release a held message: journal "- released <time>" and make its units due now. Returns 0,
 * 1 when it was not held, or -1 (errno ENOENT, or the journal write's). */
int scheduler_release(struct scheduler *s, const char *id);

/*
 * Effective priority of a message: the configured class (queue.priorities) times 4, plus a
 * size bonus inside the class: +2 under 64 KiB, +1 under 1 MiB, +0 above. Higher goes first
 * among messages due at the same time. Pure, exposed for tests.
 */
int scheduler_priority(const struct petrel_config *cfg, const struct message *msg);

#endif
