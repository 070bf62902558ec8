/*
 * queue.c: a binary min-heap of intrusive items (see queue.h). Pure.
 */
#include "petrel/queue.h"

#include <stdbool.h>
#include <stdlib.h>

void
queue_init(struct queue *q)
{
	q->heap = NULL;
	q->len = 0;
	q->cap = 0;
	q->next_seq = 0;
}

void
queue_release(struct queue *q)
{
	size_t i;

	for (i = 0; i < q->len; i++)
		q->heap[i]->index = QUEUE_NOT_QUEUED;
	free(q->heap);
	queue_init(q);
}

/* Does a go before b? */
static bool
queue_before(const struct queue_item *a, const struct queue_item *b)
{
	if (a->when != b->when)
		return a->when < b->when;
	if (a->priority != b->priority)
		return a->priority > b->priority;
	return a->seq < b->seq;
}

static void
queue_set(struct queue *q, size_t i, struct queue_item *it)
{
	q->heap[i] = it;
	it->index = i;
}

static void
queue_sift_up(struct queue *q, size_t i)
{
	struct queue_item *it = q->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!queue_before(it, q->heap[parent]))
			break;
		queue_set(q, i, q->heap[parent]);
		i = parent;
	}
	queue_set(q, i, it);
}

static void
queue_sift_down(struct queue *q, size_t i)
{
	struct queue_item *it = q->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, best = i;
		struct queue_item *b = it;

		if (l < q->len && queue_before(q->heap[l], b)) {
			best = l;
			b = q->heap[l];
		}
		if (r < q->len && queue_before(q->heap[r], b)) {
			best = r;
			b = q->heap[r];
		}
		if (best == i)
			break;
		queue_set(q, i, b);
		i = best;
	}
	queue_set(q, i, it);
}

int
queue_push(struct queue *q, struct queue_item *it)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct queue_item **heap = realloc(q->heap, cap * sizeof(*heap));
		if (heap == NULL)
			return -1;
		q->heap = heap;
		q->cap = cap;
	}
	it->seq = q->next_seq++;
	queue_set(q, q->len++, it);
	queue_sift_up(q, it->index);
	return 0;
}

struct queue_item *
queue_peek(const struct queue *q)
{
	return q->len ? q->heap[0] : NULL;
}

void
queue_remove(struct queue *q, struct queue_item *it)
{
	size_t i = it->index;
	struct queue_item *last;

	if (i == QUEUE_NOT_QUEUED || i >= q->len || q->heap[i] != it)
		return;
	it->index = QUEUE_NOT_QUEUED;
	last = q->heap[--q->len];
	if (i == q->len)
		return;
	queue_set(q, i, last);
	if (i > 0 && queue_before(last, q->heap[(i - 1) / 2]))
		queue_sift_up(q, i);
	else
		queue_sift_down(q, i);
}

struct queue_item *
queue_pop(struct queue *q)
{
	struct queue_item *it = queue_peek(q);

	if (it)
		queue_remove(q, it);
	return it;
}

void
queue_update(struct queue *q, struct queue_item *it, uint64_t when, int priority)
{
	it->when = when;
	it->priority = priority;
	if (it->index == QUEUE_NOT_QUEUED || it->index >= q->len)
		return;
	queue_sift_up(q, it->index);
	queue_sift_down(q, it->index);
}

size_t
queue_advance(struct queue *q, uint64_t when)
{
	size_t i, moved = 0;

	for (i = 0; i < q->len; i++)
		if (q->heap[i]->when > when) {
			q->heap[i]->when = when;
			moved++;
		}
	/* Floyd's construction: sift down every inner node, the last one first. */
	for (i = q->len / 2; moved > 0 && i-- > 0;)
		queue_sift_down(q, i);
	return moved;
}

unsigned
queue_retry_delay(const unsigned *steps, size_t nsteps, unsigned attempt)
{
	if (nsteps == 0)
		return 300;
	if (attempt == 0)
		attempt = 1;
	if (attempt > nsteps)
		attempt = (unsigned)nsteps;
	return steps[attempt - 1];
}
