/* test_queue.c: the delivery heap against a brute-force model, and the retry schedule. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "petrel/queue.h"

#define N 2000

static struct queue_item items[N];

/* The item the model says is due first among those queued. */
static struct queue_item *
model_first(const bool *queued)
{
	struct queue_item *best = NULL;
	size_t i;

	for (i = 0; i < N; i++) {
		struct queue_item *it = &items[i];
		if (!queued[i])
			continue;
		if (best == NULL || it->when < best->when ||
		    (it->when == best->when &&
		     (it->priority > best->priority ||
		      (it->priority == best->priority && it->seq < best->seq))))
			best = it;
	}
	return best;
}

Test(queue, random_operations_match_model)
{
	static bool queued[N];
	struct queue q;
	size_t i, n = 0;
	unsigned seed = 12345;

	queue_init(&q);
	for (i = 0; i < N; i++) {
		items[i].index = QUEUE_NOT_QUEUED;
		queued[i] = false;
	}
	for (i = 0; i < 50000; i++) {
		size_t k = (size_t)rand_r(&seed) % N;
		int op = rand_r(&seed) % 4;
		struct queue_item *it = &items[k];

		if (op == 0 && !queued[k]) {
			it->when = (uint64_t)(rand_r(&seed) % 100);
			it->priority = rand_r(&seed) % 3 - 1;
			cr_assert_eq(queue_push(&q, it), 0);
			queued[k] = true;
			n++;
		} else if (op == 1 && queued[k]) {
			queue_remove(&q, it);
			cr_assert_eq(it->index, QUEUE_NOT_QUEUED);
			queued[k] = false;
			n--;
		} else if (op == 2 && queued[k]) {
			queue_update(&q, it, (uint64_t)(rand_r(&seed) % 100),
			             rand_r(&seed) % 3 - 1);
		} else if (op == 3 && n > 0) {
			struct queue_item *want = model_first(queued);
			cr_assert_eq(queue_peek(&q), want, "step %zu", i);
			if (rand_r(&seed) % 2) {
				cr_assert_eq(queue_pop(&q), want);
				queued[want - items] = false;
				n--;
			}
		}
		cr_assert_eq(queue_len(&q), n);
	}
	while (n > 0) {
		struct queue_item *want = model_first(queued);
		cr_assert_eq(queue_pop(&q), want);
		queued[want - items] = false;
		n--;
	}
	cr_assert_null(queue_pop(&q));
	queue_release(&q);
}

Test(queue, priority_then_fifo_among_equal_times)
{
	struct queue_item a = { .when = 10, .priority = 0 }, b = { .when = 10, .priority = 5 },
	                  c = { .when = 10, .priority = 0 }, d = { .when = 5, .priority = -5 };
	struct queue q;

	queue_init(&q);
	queue_push(&q, &a);
	queue_push(&q, &b);
	queue_push(&q, &c);
	queue_push(&q, &d);
	cr_assert_eq(queue_pop(&q), &d, "earliest first, whatever its priority");
	cr_assert_eq(queue_pop(&q), &b, "then the higher priority");
	cr_assert_eq(queue_pop(&q), &a, "then first in");
	cr_assert_eq(queue_pop(&q), &c);
	queue_release(&q);
}

Test(queue, remove_not_queued_is_noop)
{
	struct queue_item a = { .when = 1, .index = QUEUE_NOT_QUEUED };
	struct queue q;

	queue_init(&q);
	queue_remove(&q, &a);
	cr_assert_eq(queue_len(&q), 0);
	queue_release(&q);
}

Test(queue, retry_schedule)
{
	static const unsigned steps[] = { 60, 300, 900 };

	cr_assert_eq(queue_retry_delay(steps, 3, 1), 60);
	cr_assert_eq(queue_retry_delay(steps, 3, 2), 300);
	cr_assert_eq(queue_retry_delay(steps, 3, 3), 900);
	cr_assert_eq(queue_retry_delay(steps, 3, 4), 900, "the last step repeats");
	cr_assert_eq(queue_retry_delay(steps, 3, 1000), 900);
	cr_assert_eq(queue_retry_delay(steps, 3, 0), 60);
	cr_assert_eq(queue_retry_delay(NULL, 0, 3), 300);
}

Test(queue, advance_makes_later_items_due_and_keeps_the_heap)
{
	static struct queue_item its[300];
	struct queue q;
	struct queue_item *prev = NULL, *it;
	size_t i, popped = 0;

	queue_init(&q);
	for (i = 0; i < 300; i++) {
		its[i].when = 1000 + (i * 7919) % 5000; /* 1000..5999, scattered */
		its[i].priority = (int)(i % 3);
		its[i].index = QUEUE_NOT_QUEUED;
		cr_assert_eq(queue_push(&q, &its[i]), 0);
	}
	cr_assert_eq(queue_advance(&q, 3000), 178, "items due after 3000 move");
	cr_assert_eq(queue_advance(&q, 3000), 0, "nothing left to move");
	while ((it = queue_pop(&q)) != NULL) {
		cr_assert_leq(it->when, 3000);
		if (prev != NULL)
			cr_assert(prev->when < it->when || (prev->when == it->when &&
			                                    (prev->priority > it->priority ||
			                                     (prev->priority == it->priority &&
			                                      prev->seq < it->seq))),
			          "heap order after advance");
		prev = it;
		popped++;
	}
	cr_assert_eq(popped, 300);
	queue_release(&q);
}
