/*
 * worker.c: a thread pool for blocking jobs, completions posted back to the loop through a
 * pipe (the same pattern as the spool's sync thread).
 */
#include "petrel/worker.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

struct worker_job {
	struct worker_job *next;
	worker_fn work;
	worker_done_fn done;
	void *arg;
};

struct worker_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_job *todo, **todo_tail; /* under lock */
	struct worker_job *done, **done_tail; /* under lock */
	bool stopping;                        /* under lock */
	pthread_t *threads;
	unsigned nthreads;
	int wake[2];
	struct event *wake_ev;
};

static void
worker_push(struct worker_job ***tail, struct worker_job *job)
{
	job->next = NULL;
	**tail = job;
	*tail = &job->next;
}

static void *
worker_main(void *arg)
{
	struct worker_pool *wp = arg;
	struct worker_job *job;

	pthread_mutex_lock(&wp->lock);
	for (;;) {
		while (wp->todo == NULL && !wp->stopping)
			pthread_cond_wait(&wp->cond, &wp->lock);
		if (wp->todo == NULL)
			break;
		job = wp->todo;
		wp->todo = job->next;
		if (wp->todo == NULL)
			wp->todo_tail = &wp->todo;
		pthread_mutex_unlock(&wp->lock);
		job->work(job->arg);
		pthread_mutex_lock(&wp->lock);
		worker_push(&wp->done_tail, job);
		(void)!write(wp->wake[1], "", 1);
	}
	pthread_mutex_unlock(&wp->lock);
	return NULL;
}

static void
worker_run_done(struct worker_pool *wp, bool cancelled)
{
	struct worker_job *job, *next;

	pthread_mutex_lock(&wp->lock);
	job = wp->done;
	wp->done = NULL;
	wp->done_tail = &wp->done;
	pthread_mutex_unlock(&wp->lock);
	for (; job != NULL; job = next) {
		next = job->next;
		job->done(job->arg, cancelled);
		free(job);
	}
}

static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	worker_run_done(arg, false);
}

struct worker_pool *
worker_pool_new(struct event_base *base, unsigned nthreads)
{
	struct worker_pool *wp;
	unsigned i;

	if ((wp = calloc(1, sizeof(*wp))) == NULL)
		return NULL;
	wp->wake[0] = wp->wake[1] = -1;
	wp->todo_tail = &wp->todo;
	wp->done_tail = &wp->done;
	pthread_mutex_init(&wp->lock, NULL);
	pthread_cond_init(&wp->cond, NULL);
	if (pipe2(wp->wake, O_NONBLOCK | O_CLOEXEC) == -1 ||
	    (wp->wake_ev = event_new(base, wp->wake[0], EV_READ | EV_PERSIST, worker_wake_cb,
	                             wp)) == NULL ||
	    event_add(wp->wake_ev, NULL) == -1 ||
	    (wp->threads = calloc(nthreads, sizeof(*wp->threads))) == NULL)
		goto fail;
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&wp->threads[i], NULL, worker_main, wp) != 0)
			goto fail;
		wp->nthreads++;
	}
	return wp;
fail:
	worker_pool_free(wp);
	return NULL;
}

void
worker_pool_free(struct worker_pool *wp)
{
	struct worker_job *job, *next;
	unsigned i;

	if (wp == NULL)
		return;
	pthread_mutex_lock(&wp->lock);
	wp->stopping = true;
	job = wp->todo; /* never started: cancelled */
	wp->todo = NULL;
	wp->todo_tail = &wp->todo;
	pthread_cond_broadcast(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
	for (i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);
	for (; job != NULL; job = next) {
		next = job->next;
		job->done(job->arg, true);
		free(job);
	}
	worker_run_done(wp, true);
	if (wp->wake_ev)
		event_free(wp->wake_ev);
	if (wp->wake[0] >= 0)
		close(wp->wake[0]);
	if (wp->wake[1] >= 0)
		close(wp->wake[1]);
	pthread_cond_destroy(&wp->cond);
	pthread_mutex_destroy(&wp->lock);
	free(wp->threads);
	free(wp);
}

int
worker_submit(struct worker_pool *wp, worker_fn work, worker_done_fn done, void *arg)
{
	struct worker_job *job;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		return -1;
	job->work = work;
	job->done = done;
	job->arg = arg;
	pthread_mutex_lock(&wp->lock);
	worker_push(&wp->todo_tail, job);
	pthread_cond_signal(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
	return 0;
}
