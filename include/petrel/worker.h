/*
 * worker.h: a small pool of threads for blocking work (local Maildir delivery), with each
 * completion delivered back on the event loop. The loop never waits on the disk.
 *
 * work() runs on a pool thread and must not touch loop-owned state; done() runs on the loop
 * thread afterwards, with the same arg. worker_pool_free() waits for running work and drops
 * completions that have not run yet (their done() is called with cancelled = true).
 */
#ifndef PETREL_WORKER_H
#define PETREL_WORKER_H

#include <stdbool.h>

struct event_base;
struct worker_pool;

typedef void (*worker_fn)(void *arg);
typedef void (*worker_done_fn)(void *arg, bool cancelled);

struct worker_pool *worker_pool_new(struct event_base *base, unsigned nthreads);
void worker_pool_free(struct worker_pool *wp);

/* Queue work; 0 or -1 (ENOMEM). done() is never called from inside this call. */
int worker_submit(struct worker_pool *wp, worker_fn work, worker_done_fn done, void *arg);

#endif
