/*
 * smtp/session.h: one inbound SMTP connection and its RFC 5321 state machine.
 *
 * Start reading at smtp_session_process() in session.c: the pipelining loop that takes
 * complete commands (or body bytes) out of the input chain while the session is not waiting.
 */
#ifndef PETREL_SMTP_SESSION_H
#define PETREL_SMTP_SESSION_H

#include <stdbool.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "petrel/config.h"

struct smtp_server;
struct smtp_session;

enum smtp_state {
	SMTP_STATE_GREET = 0, /* greeted, waiting for HELO/EHLO */
	SMTP_STATE_HELO,      /* HELO done, no transaction */
	SMTP_STATE_MAIL,      /* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,      /* at least one recipient accepted */
	SMTP_STATE_DATA,      /* receiving a DATA body */
	SMTP_STATE_BDAT,      /* receiving a BDAT chunk */
	SMTP_STATE_WAIT,      /* the message is being committed; input is held */
	SMTP_STATE_CLOSING,   /* last reply flushing, then freed */
	SMTP_STATE_COUNT
};

const char *smtp_state_name(enum smtp_state state);

/*
 * Start a session on an accepted socket (takes ownership of fd; on failure it is closed and
 * NULL returned). The caller has already counted the connection against the limits; the
 * session releases it when it ends.
 */
struct smtp_session *smtp_session_new(struct smtp_server *srv, evutil_socket_t fd,
                                      const struct sockaddr *sa, socklen_t salen,
                                      const struct config_listen *entry);

/*
 * The server is shutting down: an idle session gets 421 and closes now; one in the middle of
 * a message finishes it and closes after its reply. `now` closes it whatever its state.
 */
void smtp_session_shutdown(struct smtp_session *s, bool now);

/* Linked-list access for the server. */
struct smtp_session *smtp_session_next(const struct smtp_session *s);

#endif
