/*
 * config_fixed.c: what a reload may not change. The spool directory and its durability, the
 * account petrel runs as, the log target, the resolver's name servers and the stats address are
 * used once at the start (the spool is open and locked, privileges are dropped, the resolver and
 * the stats socket exist); a reload keeps the running values and says which keys need a restart.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/config.h"

static bool
config_fixed_str_equal(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* fresh's string becomes a copy of running's. 0, or -1 (memory). */
static int
config_fixed_str_keep(char **fresh, const char *running)
{
	char *copy = NULL;

	if (running != NULL && (copy = strdup(running)) == NULL)
		return -1;
	free(*fresh);
	*fresh = copy;
	return 0;
}

static void
config_fixed_note(char *changed, size_t size, int n, const char *key)
{
	size_t len = strlen(changed);

	if (len < size)
		snprintf(changed + len, size - len, "%s%s", n > 0 ? ", " : "", key);
}

int
config_keep_fixed(struct petrel_config *fresh, const struct petrel_config *running, char *changed,
                  size_t size)
{
	struct {
		const char *key;
		char **fresh;
		const char *running;
	} strs[] = {
		{ "spool", &fresh->spool, running->spool },
		{ "user", &fresh->user, running->user },
		{ "group", &fresh->group, running->group },
		{ "dns.nameservers", &fresh->nameservers, running->nameservers },
		{ "stats.address", &fresh->stats_address, running->stats_address },
	};
	size_t i;
	int n = 0;

	if (size > 0)
		changed[0] = '\0';
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (config_fixed_str_equal(*strs[i].fresh, strs[i].running))
			continue;
		if (config_fixed_str_keep(strs[i].fresh, strs[i].running) == -1)
			return -1;
		if (strs[i].fresh == &fresh->stats_address) {
			fresh->stats_addr = running->stats_addr;
			fresh->stats_addrlen = running->stats_addrlen;
		}
		config_fixed_note(changed, size, n++, strs[i].key);
	}
	if (fresh->durability != running->durability) {
		fresh->durability = running->durability;
		config_fixed_note(changed, size, n++, "durability");
	}
	if (fresh->log_target != running->log_target) {
		fresh->log_target = running->log_target;
		config_fixed_note(changed, size, n++, "log_target");
	}
	return n;
}
