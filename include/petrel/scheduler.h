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

#include <stdint.h>
#include <sys/time.h>

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
 * the route; NULL when out of memory).
 */
struct scheduler *scheduler_new(struct event_base *base, const struct petrel_config *cfg,
                                struct spool *sp, struct dns *dns, char **err);

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

/*
 * Effective priority of a message: the configured class (queue.priorities) times 4, plus a
 * size bonus inside the class: +2 under 64 KiB, +1 under 1 MiB, +0 above. Higher goes first
 * among messages due at the same time. Pure, exposed for tests.
 */
int scheduler_priority(const struct petrel_config *cfg, const struct message *msg);

#endif
