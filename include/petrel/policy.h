/*
 * policy.h: who may send to whom. Never an open relay: a recipient in a non-local domain is
 * accepted only from a client inside relay.networks (or, later, an authenticated one).
 *
 * Pure: decides from the config, the client's address and the parsed path.
 */
#ifndef PETREL_POLICY_H
#define PETREL_POLICY_H

#include <stdbool.h>
#include <sys/socket.h>

#include "petrel/config.h"
#include "petrel/smtp/parser.h"

enum policy_verdict {
	POLICY_ACCEPT = 0,
	POLICY_RELAY_DENIED, /* 554 5.7.1 */
};

/* May this client relay to any domain? */
bool policy_client_may_relay(const struct petrel_config *cfg, const struct sockaddr *peer,
                             bool authenticated);

/*
 * Verdict for one RCPT path. A local recipient is accepted from anyone, unless it hides another
 * destination: a source route, or '%', '!' or '@' in the local part ("user%other@local",
 * "\"user@other\"@local") — such tricks are accepted only from clients that may relay anyway.
 * <postmaster> (no domain) is always accepted (RFC 5321 §4.5.1).
 */
enum policy_verdict policy_check_rcpt(const struct petrel_config *cfg, bool may_relay,
                                      const struct smtp_path *path);

#endif
