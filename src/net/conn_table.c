/*
 * net/conn_table.c: per-IP connection counts in a chained hash table of fixed width.
 * An entry exists only while its count is above zero, so memory follows the live clients.
 */
#include "petrel/net/conn_table.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CONN_TABLE_BUCKETS 4096 /* power of two */

struct conn_entry {
	struct conn_entry *next;
	uint8_t key[16];
	unsigned count;
};

struct conn_table {
	struct conn_entry *buckets[CONN_TABLE_BUCKETS];
};

/* The address as 16 bytes: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
static void
conn_table_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

static unsigned
conn_table_hash(const uint8_t key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	int i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h & (CONN_TABLE_BUCKETS - 1);
}

struct conn_table *
conn_table_new(void)
{
	return calloc(1, sizeof(struct conn_table));
}

void
conn_table_free(struct conn_table *t)
{
	struct conn_entry *e, *next;
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < CONN_TABLE_BUCKETS; i++)
		for (e = t->buckets[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(t);
}

static struct conn_entry **
conn_table_find(const struct conn_table *t, const uint8_t key[16])
{
	struct conn_entry *const *pp = &t->buckets[conn_table_hash(key)];

	while (*pp != NULL && memcmp((*pp)->key, key, 16) != 0)
		pp = &(*pp)->next;
	return (struct conn_entry **)pp;
}

bool
conn_table_acquire(struct conn_table *t, const struct sockaddr *sa, unsigned limit)
{
	struct conn_entry **pp, *e;
	uint8_t key[16];

	conn_table_key(sa, key);
	pp = conn_table_find(t, key);
	if ((e = *pp) == NULL) {
		if (limit == 0 || (e = calloc(1, sizeof(*e))) == NULL)
			return false;
		memcpy(e->key, key, 16);
		*pp = e;
	}
	if (e->count >= limit)
		return false;
	e->count++;
	return true;
}

void
conn_table_release(struct conn_table *t, const struct sockaddr *sa)
{
	struct conn_entry **pp, *e;
	uint8_t key[16];

	conn_table_key(sa, key);
	pp = conn_table_find(t, key);
	if ((e = *pp) == NULL)
		return;
	if (--e->count == 0) {
		*pp = e->next;
		free(e);
	}
}

unsigned
conn_table_count(const struct conn_table *t, const struct sockaddr *sa)
{
	struct conn_entry **pp;
	uint8_t key[16];

	conn_table_key(sa, key);
	pp = conn_table_find(t, key);
	return *pp ? (*pp)->count : 0;
}
