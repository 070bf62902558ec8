/*
 * queue.h: the in-memory delivery queue: a binary min-heap of intrusive items ordered by next
 * attempt time, then priority (higher first), then insertion order. O(log n) push, pop, remove
 * and reschedule; O(1) peek. The scheduler arms one timer for the head; nothing polls.
 *
 * Pure: no I/O, no clock (times are given). Items are owned by the caller; the queue only holds
 * pointers and keeps each item's heap index up to date.
 */
#ifndef PETREL_QUEUE_H
#define PETREL_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_NOT_QUEUED ((size_t)-1)

struct queue_item {
	uint64_t when; /* next attempt, milliseconds since the epoch */
	int priority;  /* higher goes first among items due at the same time */
	uint64_t seq;  /* set by queue_push: FIFO among equals */
	size_t index;  /* position in the heap, QUEUE_NOT_QUEUED when not queued */
};

struct queue {
	struct queue_item **heap;
	size_t len;
	size_t cap;
	uint64_t next_seq;
};

void queue_init(struct queue *q);
void queue_release(struct queue *q); /* frees the array, not the items */

/* Add an item (not already queued). 0, or -1 on allocation failure. */
int queue_push(struct queue *q, struct queue_item *it);

/* The item due first, or NULL. */
struct queue_item *queue_peek(const struct queue *q);

/* Remove and return the item due first, or NULL. */
struct queue_item *queue_pop(struct queue *q);

/* Remove a queued item wherever it is. No-op if not queued. */
void queue_remove(struct queue *q, struct queue_item *it);

/* Change an item's time/priority and restore the order (it must be queued). */
void queue_update(struct queue *q, struct queue_item *it, uint64_t when, int priority);

/*
 * Every item due later than `when` becomes due at `when` (queue flush): the heap is rebuilt
 * in O(n). Items keep their priority and insertion order. Returns how many items moved.
 */
size_t queue_advance(struct queue *q, uint64_t when);

static inline size_t
queue_len(const struct queue *q)
{
	return q->len;
}

/*
 * The delay before attempt number `attempt` (1 = the first retry) from a schedule of steps in
 * seconds: steps[attempt-1], the last step repeating. 0 steps → 300 s.
 */
unsigned queue_retry_delay(const unsigned *steps, size_t nsteps, unsigned attempt);

#endif
