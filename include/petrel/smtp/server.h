/*
 * smtp/server.h: the inbound SMTP service: listeners, connection limits, the set of live
 * sessions, and graceful shutdown. Sessions (smtp/session.h) do the protocol.
 *
 * Owns: its listeners, the per-IP table, every session (through the session list), and a
 * reference to the current config and users file. Each session takes its own references when
 * it starts, so a reload (smtp_server_prepare/commit) applies to new sessions while live ones
 * finish on what they started with. Borrows the spool, which outlives it.
 */
#ifndef PETREL_SMTP_SERVER_H
#define PETREL_SMTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "petrel/config.h"

struct event_base;
struct spool;
struct smtp_session;
struct tls_server;
struct auth_users;
struct auth_throttle;
struct worker_pool;

struct smtp_server_stats {
	uint64_t connections;   /* accepted and served */
	uint64_t refused_limit; /* refused by max_connections / per-IP limit */
	uint64_t messages;      /* accepted with 250 */
	uint64_t bytes;         /* message bytes accepted */
	uint64_t rejected;      /* transactions refused after DATA/BDAT */
};

struct smtp_server {
	struct event_base *base;
	struct petrel_config *cfg;      /* a reference: the current config */
	struct spool *spool;            /* borrowed; set before the loop runs (main.c binds the
	                                 * listeners first, as root, then opens the spool) */
	struct tls_server *tls;         /* borrowed, may be swapped (reload); NULL: no TLS */
	struct auth_users *users;       /* a reference; NULL: no AUTH */
	struct auth_throttle *throttle; /* borrowed; with users */
	struct worker_pool *workers;    /* borrowed; password checks run there */
	struct listener **listeners;
	size_t nlisteners;
	struct conn_table *per_ip;
	struct smtp_session *sessions; /* doubly linked list of live sessions */
	unsigned nsessions;
	uint64_t next_session_id;
	bool shutting_down;
	void (*drained_cb)(void *arg); /* called once when shutting down and empty */
	void *drained_arg;
	struct smtp_server_stats stats;
};

/* Takes a reference to cfg. */
struct smtp_server *smtp_server_new(struct event_base *base, struct petrel_config *cfg,
                                    struct spool *spool);

/*
 * Bind every `listen:` entry, without accepting yet (clients are refused until
 * smtp_server_start): main.c binds as root, and listens once the spool and queue are ready.
 * Returns 0, or -1 with *err (malloc'd).
 */
int smtp_server_bind(struct smtp_server *srv, char **err);

/* Listen on every bound entry and accept from now on. Returns 0, or -1 with *err. */
int smtp_server_start(struct smtp_server *srv, char **err);

/*
 * Graceful stop: close the listeners, tell idle sessions 421 and close them, let sessions that
 * are receiving or committing a message finish that message (then 421). `drained` runs once,
 * from the loop, when no session is left.
 */
void smtp_server_shutdown(struct smtp_server *srv, void (*drained)(void *arg), void *arg);

/*
 * Reload, in two steps so that nothing changes unless everything can:
 * smtp_server_prepare() binds and listens on each `listen:` address of cfg that no listener
 * has yet (the same family, address and port, 0 included, keeps its socket and its accepted
 * queue); on failure it closes what it opened and returns -1 with *err (malloc'd), and nothing
 * changed. smtp_server_commit() then makes cfg (a new reference) and users (a new reference, or
 * NULL: AUTH off) current for the next connections, points the kept listeners at cfg's entries
 * (their role and tls: apply to the next connections) and closes the listeners whose address
 * is gone; sessions already running keep theirs. smtp_server_plan_free() drops a prepared plan
 * instead (closing its new listeners).
 */
struct smtp_server_plan;
int smtp_server_prepare(struct smtp_server *srv, const struct petrel_config *cfg,
                        struct smtp_server_plan **plan, char **err);
void smtp_server_commit(struct smtp_server *srv, struct smtp_server_plan *plan,
                        struct petrel_config *cfg, struct auth_users *users);
void smtp_server_plan_free(struct smtp_server_plan *plan);

/* Close every session at once (421) — the end of the shutdown grace period. */
void smtp_server_abort_all(struct smtp_server *srv);

/* Free (sessions must be gone: shutdown + drained, or abort_all). */
void smtp_server_free(struct smtp_server *srv);

#endif
