/*
 * policy.c: the relay decision (see policy.h). Pure: no I/O, no state.
 */
#include "petrel/policy.h"

#include <string.h>

bool
policy_client_may_relay(const struct petrel_config *cfg, const struct sockaddr *peer,
                        bool authenticated)
{
	if (authenticated)
		return true;
	return cidr_match_any(cfg->relay_networks, cfg->nrelay_networks, peer);
}

/* Does the local part carry routing characters ('%', '!', or an '@' inside quotes)? */
static bool
policy_local_part_routes(const struct smtp_path *path)
{
	size_t local_len = path->domain_off > 0 ? path->domain_off - 1 : 0;

	return memchr(path->addr, '%', local_len) != NULL ||
	       memchr(path->addr, '!', local_len) != NULL ||
	       memchr(path->addr, '@', local_len) != NULL;
}

enum policy_verdict
policy_check_rcpt(const struct petrel_config *cfg, bool may_relay, const struct smtp_path *path)
{
	if (path->postmaster)
		return POLICY_ACCEPT;
	if (may_relay)
		return POLICY_ACCEPT;
	if (path->had_source_route || policy_local_part_routes(path))
		return POLICY_RELAY_DENIED;
	if (config_is_local_domain(cfg, path->addr + path->domain_off,
	                           path->len - path->domain_off))
		return POLICY_ACCEPT;
	return POLICY_RELAY_DENIED;
}
