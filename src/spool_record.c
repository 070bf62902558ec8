/*
 * spool_record.c: format and parse the commit record of a slot file; the XXH3-64 checksum.
 */
#include "petrel/spool_record.h"

#include <stdio.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack (spool_sum_iov) */
#include <xxhash.h>

static const char spool_record_magic[] = "petrel-spool 2 ";

void
spool_record_format(char out[SPOOL_RECORD_LEN], const struct spool_record *r)
{
	char buf[SPOOL_RECORD_LEN + 1];

	snprintf(buf, sizeof(buf), "%s%c %.16s %016llx %016llx\n", spool_record_magic, r->state,
	         r->id, (unsigned long long)r->len, (unsigned long long)r->sum);
	memcpy(out, buf, SPOOL_RECORD_LEN);
}

/* 16 lowercase hex digits → *v; 0 or -1. */
static int
spool_record_hex(const char *p, uint64_t *v)
{
	uint64_t x = 0;
	int i;

	for (i = 0; i < 16; i++) {
		char c = p[i];
		if (c >= '0' && c <= '9')
			x = x << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x = x << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

int
spool_record_parse(const char *buf, size_t n, struct spool_record *r)
{
	const char *p = buf + SPOOL_RECORD_STATE_OFF;

	memset(r, 0, sizeof(*r));
	if (n < SPOOL_RECORD_LEN ||
	    memcmp(buf, spool_record_magic, sizeof(spool_record_magic) - 1) != 0)
		return -1;
	if (p[0] != SPOOL_SLOT_QUEUED && p[0] != SPOOL_SLOT_FREE)
		return -1;
	if (p[1] != ' ' || p[2 + 16] != ' ' || p[2 + 16 + 1 + 16] != ' ' ||
	    buf[SPOOL_RECORD_LEN - 1] != '\n')
		return -1;
	memcpy(r->id, p + 2, MESSAGE_ID_LEN);
	r->id[MESSAGE_ID_LEN] = '\0';
	if (!message_id_valid(r->id) || spool_record_hex(p + 2 + 17, &r->len) == -1 ||
	    spool_record_hex(p + 2 + 17 + 17, &r->sum) == -1) {
		memset(r, 0, sizeof(*r));
		return -1;
	}
	r->state = p[0];
	return 0;
}

struct spool_sum {
	XXH3_state_t st;
};

struct spool_sum *
spool_sum_new(void)
{
	struct spool_sum *s = (struct spool_sum *)XXH3_createState();

	if (s != NULL)
		XXH3_64bits_reset(&s->st);
	return s;
}

void
spool_sum_free(struct spool_sum *s)
{
	if (s != NULL)
		XXH3_freeState(&s->st);
}

void
spool_sum_update(struct spool_sum *s, const void *data, size_t len)
{
	XXH3_64bits_update(&s->st, data, len);
}

uint64_t
spool_sum_digest(const struct spool_sum *s)
{
	return XXH3_64bits_digest(&s->st);
}

uint64_t
spool_sum_iov(const struct iovec *iov, int n, size_t len)
{
	XXH3_state_t st;
	int i;

	if (n == 1 && iov[0].iov_len >= len)
		return XXH3_64bits(iov[0].iov_base, len);
	XXH3_64bits_reset(&st);
	for (i = 0; i < n && len > 0; i++) {
		size_t k = iov[i].iov_len < len ? iov[i].iov_len : len;
		XXH3_64bits_update(&st, iov[i].iov_base, k);
		len -= k;
	}
	return XXH3_64bits_digest(&st);
}
