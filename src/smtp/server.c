/*
 * smtp/server.c: the inbound SMTP service: listeners in, sessions out, limits at the door.
 *
 * A connection over max_connections or max_connections_per_ip is answered "421 4.7.0" with a
 * single non-blocking send() and closed at once: no session is allocated for it and it never
 * hangs. Shutdown closes the listeners and lets sessions that hold a message finish it.
 */
#include "petrel/smtp/server.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "petrel/auth.h"
#include "petrel/log.h"
#include "petrel/net/conn_table.h"
#include "petrel/net/listener.h"
#include "petrel/smtp/reply.h"
#include "petrel/smtp/session.h"

struct smtp_server *
smtp_server_new(struct event_base *base, struct petrel_config *cfg, struct spool *spool)
{
	struct smtp_server *srv;

	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return NULL;
	if ((srv->per_ip = conn_table_new()) == NULL) {
		free(srv);
		return NULL;
	}
	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->spool = spool;
	return srv;
}

/* Refuse at the door: one reply, no session. The socket is fresh, so the send cannot block. */
static void
smtp_server_refuse(evutil_socket_t fd, enum smtp_reply_id id)
{
	const struct smtp_reply *r = smtp_reply_get(id);

	(void)!send(fd, r->line, r->len, MSG_NOSIGNAL | MSG_DONTWAIT);
	evutil_closesocket(fd);
}

static void
smtp_server_accept(void *arg, evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen,
                   const struct config_listen *entry)
{
	struct smtp_server *srv = arg;
	const struct petrel_config *cfg = srv->cfg;

	if (srv->shutting_down) {
		smtp_server_refuse(fd, SMTP_REPLY_SHUTDOWN);
		return;
	}
	if (srv->nsessions >= cfg->max_connections) {
		srv->stats.refused_limit++;
		log_warn("smtp refused reason=max_connections limit=%u", cfg->max_connections);
		smtp_server_refuse(fd, SMTP_REPLY_TOO_MANY_CONNECTIONS);
		return;
	}
	if (!conn_table_acquire(srv->per_ip, sa, cfg->max_connections_per_ip)) {
		srv->stats.refused_limit++;
		log_warn("smtp refused reason=max_connections_per_ip limit=%u",
		         cfg->max_connections_per_ip);
		smtp_server_refuse(fd, SMTP_REPLY_TOO_MANY_FROM_IP);
		return;
	}
	if (smtp_session_new(srv, fd, sa, salen, entry) == NULL) {
		conn_table_release(srv->per_ip, sa);
		log_error("smtp session allocation failed");
	}
}

int
smtp_server_bind(struct smtp_server *srv, char **err)
{
	const struct petrel_config *cfg = srv->cfg;
	size_t i;

	srv->listeners = calloc(cfg->nlisten, sizeof(*srv->listeners));
	if (srv->listeners == NULL && cfg->nlisten > 0) {
		*err = strdup("out of memory");
		return -1;
	}
	for (i = 0; i < cfg->nlisten; i++) {
		srv->listeners[i] =
		        listener_new(srv->base, &cfg->listen[i], smtp_server_accept, srv, err);
		if (srv->listeners[i] == NULL)
			return -1;
		srv->nlisteners++;
	}
	return 0;
}

int
smtp_server_start(struct smtp_server *srv, char **err)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++) {
		if (listener_start(srv->listeners[i], err) == -1)
			return -1;
	}
	return 0;
}

static void
smtp_server_close_listeners(struct smtp_server *srv)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++)
		listener_free(srv->listeners[i]);
	free(srv->listeners);
	srv->listeners = NULL;
	srv->nlisteners = 0;
}

static void
smtp_server_each(struct smtp_server *srv, bool now)
{
	struct smtp_session *s, *next;

	/* Sessions are not freed here (only flagged or given their last reply), so the walk
	 * stays valid. */
	for (s = srv->sessions; s != NULL; s = next) {
		next = smtp_session_next(s);
		smtp_session_shutdown(s, now);
	}
}

void
smtp_server_shutdown(struct smtp_server *srv, void (*drained)(void *arg), void *arg)
{
	srv->shutting_down = true;
	srv->drained_cb = drained;
	srv->drained_arg = arg;
	smtp_server_close_listeners(srv);
	log_info("smtp shutdown sessions=%u", srv->nsessions);
	if (srv->nsessions == 0) {
		srv->drained_cb = NULL;
		drained(arg);
		return;
	}
	smtp_server_each(srv, false);
}

/* What a reload will do to the listeners: for each of cfg->listen[], the listener that serves
 * it (kept or new); for each old listener, whether it stays. */
struct smtp_server_plan {
	struct listener **listeners; /* cfg->nlisten of them, in cfg's order */
	bool *fresh;                 /* listeners[i] was opened by the plan */
	bool *kept;                  /* srv->listeners[j] serves some new entry */
	size_t n;
};

void
smtp_server_plan_free(struct smtp_server_plan *plan)
{
	size_t i;

	if (plan == NULL)
		return;
	for (i = 0; i < plan->n; i++)
		if (plan->fresh[i])
			listener_free(plan->listeners[i]);
	free(plan->listeners);
	free(plan->fresh);
	free(plan->kept);
	free(plan);
}

int
smtp_server_prepare(struct smtp_server *srv, const struct petrel_config *cfg,
                    struct smtp_server_plan **out, char **err)
{
	struct smtp_server_plan *plan;
	size_t i, j;

	*out = NULL;
	if ((plan = calloc(1, sizeof(*plan))) == NULL ||
	    (plan->listeners = calloc(cfg->nlisten + 1, sizeof(*plan->listeners))) == NULL ||
	    (plan->fresh = calloc(cfg->nlisten + 1, sizeof(*plan->fresh))) == NULL ||
	    (plan->kept = calloc(srv->nlisteners + 1, sizeof(*plan->kept))) == NULL) {
		smtp_server_plan_free(plan);
		*err = strdup("out of memory");
		return -1;
	}
	for (i = 0; i < cfg->nlisten; i++) {
		const struct config_listen *entry = &cfg->listen[i];

		for (j = 0; j < srv->nlisteners; j++)
			if (!plan->kept[j] &&
			    config_same_address(&listener_entry(srv->listeners[j])->addr,
			                        &entry->addr))
				break;
		if (j < srv->nlisteners) {
			plan->kept[j] = true;
			plan->listeners[i] = srv->listeners[j];
		} else {
			plan->listeners[i] =
			        listener_new(srv->base, entry, smtp_server_accept, srv, err);
			if (plan->listeners[i] == NULL) {
				smtp_server_plan_free(plan);
				return -1;
			}
			plan->fresh[i] = true;
			if (listener_start(plan->listeners[i], err) == -1) {
				plan->n = i + 1;
				smtp_server_plan_free(plan);
				return -1;
			}
		}
		plan->n = i + 1;
	}
	*out = plan;
	return 0;
}

void
smtp_server_commit(struct smtp_server *srv, struct smtp_server_plan *plan,
                   struct petrel_config *cfg, struct auth_users *users)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++)
		if (!plan->kept[i]) {
			log_info("listener closed address=%s (not in the new config)",
			         listener_entry(srv->listeners[i])->address);
			listener_free(srv->listeners[i]);
		}
	free(srv->listeners);
	for (i = 0; i < plan->n; i++)
		listener_set_entry(plan->listeners[i], &cfg->listen[i]);
	srv->listeners = plan->listeners;
	srv->nlisteners = plan->n;
	plan->listeners = NULL;
	plan->n = 0;
	smtp_server_plan_free(plan);

	config_free(srv->cfg);
	srv->cfg = config_ref(cfg);
	auth_users_free(srv->users);
	srv->users = users != NULL ? auth_users_ref(users) : NULL;
}

void
smtp_server_abort_all(struct smtp_server *srv)
{
	smtp_server_each(srv, true);
}

void
smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	smtp_server_close_listeners(srv);
	conn_table_free(srv->per_ip);
	auth_users_free(srv->users);
	config_free(srv->cfg);
	free(srv);
}
