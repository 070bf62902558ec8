/*
 * net/listener.c: listening sockets over libevent's evconnlistener (accept4, non-blocking,
 * close-on-exec). Owns the listening socket; accepted sockets go to the caller.
 */
#include "petrel/net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "petrel/log.h"

struct listener {
	struct evconnlistener *evl;
	struct event *pause_ev; /* re-enables accept after EMFILE */
	const struct config_listen *entry;
	listener_accept_cb cb;
	void *arg;
};

static void
listener_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
                void *arg)
{
	struct listener *l = arg;

	l->cb(l->arg, fd, sa, (socklen_t)salen, l->entry);
}

const struct config_listen *
listener_entry(const struct listener *l)
{
	return l->entry;
}

void
listener_set_entry(struct listener *l, const struct config_listen *entry)
{
	l->entry = entry;
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	evconnlistener_enable(l->evl);
}

static void
listener_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { 0, 100000 };
	int err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		log_warn("listener accept paused address=%s error=\"%s\"", l->entry->address,
		         strerror(err));
		evconnlistener_disable(l->evl);
		event_add(l->pause_ev, &tv);
		return;
	}
	log_warn("listener accept failed address=%s error=\"%s\"", l->entry->address,
	         strerror(err));
}

static void
listener_log_bound(int fd, const struct config_listen *entry)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
			port = ntohs(sin->sin_port);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
			port = ntohs(sin6->sin6_port);
		}
	}
	log_info("listening address=%s%s%s:%u role=%s", ss.ss_family == AF_INET6 ? "[" : "", host,
	         ss.ss_family == AF_INET6 ? "]" : "", port,
	         entry->role == CONFIG_ROLE_SUBMISSION ? "submission" : "relay");
}

/* listener_socket() up to the bind: -1 with errno and *what on failure. */
static int
listener_bind(const struct sockaddr *sa, socklen_t salen, const char **what)
{
	int fd, one = 1, saved;

	*what = "create socket for";
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	*what = "bind";
	if (bind(fd, sa, salen) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
listener_socket(const struct sockaddr *sa, socklen_t salen, int backlog, const char **what)
{
	int fd, saved;

	if ((fd = listener_bind(sa, salen, what)) == -1)
		return -1;
	*what = "listen on";
	if (listen(fd, backlog) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

struct listener *
listener_new(struct event_base *base, const struct config_listen *entry, listener_accept_cb cb,
             void *arg, char **err)
{
	struct listener *l = NULL;
	int fd = -1;
	const char *what = "allocate";

	*err = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		goto fail;
	l->entry = entry;
	l->cb = cb;
	l->arg = arg;
	fd = listener_bind((const struct sockaddr *)&entry->addr, entry->addrlen, &what);
	if (fd == -1)
		goto fail;
	listener_log_bound(fd, entry);
	if ((l->pause_ev = evtimer_new(base, listener_resume, l)) == NULL)
		goto fail;
	/* Backlog 0: libevent does not listen(); listener_start() does, then enables it. */
	l->evl = evconnlistener_new(base, listener_accept, l,
	                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, 0, fd);
	if (l->evl == NULL)
		goto fail;
	evconnlistener_set_error_cb(l->evl, listener_error);
	return l;
fail:
	if (asprintf(err, "cannot %s %s: %s", what, entry->address, strerror(errno)) == -1)
		*err = NULL;
	if (fd >= 0 && (l == NULL || l->evl == NULL))
		close(fd);
	if (l != NULL) {
		if (l->pause_ev)
			event_free(l->pause_ev);
		free(l);
	}
	return NULL;
}

int
listener_start(struct listener *l, char **err)
{
	*err = NULL;
	if (listen(evconnlistener_get_fd(l->evl), LISTENER_BACKLOG) == 0 &&
	    evconnlistener_enable(l->evl) == 0)
		return 0;
	if (asprintf(err, "cannot listen on %s: %s", l->entry->address, strerror(errno)) == -1)
		*err = NULL;
	return -1;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	evconnlistener_free(l->evl);
	event_free(l->pause_ev);
	free(l);
}
