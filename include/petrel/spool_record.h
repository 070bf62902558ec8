/*
 * spool_record.h: the commit record that opens every spool slot file, and the checksum it
 * carries (pure: no I/O; the layout and what the record means are in spool.h).
 *
 *   "petrel-spool 2 Q 018f3a5c2b7d4e00 0000000000000400 9c1f0e3a5b7d2c11\n"
 *    version         state id          length           XXH3-64 of the length bytes after it
 */
#ifndef PETREL_SPOOL_RECORD_H
#define PETREL_SPOOL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "petrel/message.h"

#define SPOOL_RECORD_LEN       68 /* bytes, newline included */
#define SPOOL_RECORD_STATE_OFF 15 /* where the state byte is */

enum spool_slot_state {
	SPOOL_SLOT_QUEUED = 'Q', /* holds a committed message (if the checksum agrees) */
	SPOOL_SLOT_FREE = 'F',   /* its message is finished; the file waits to be written over */
};

struct spool_record {
	char state; /* enum spool_slot_state */
	char id[MESSAGE_ID_LEN + 1];
	uint64_t len; /* bytes after the record: envelope and message data */
	uint64_t sum; /* their XXH3-64 */
};

/* Write r as exactly SPOOL_RECORD_LEN bytes (no NUL) into out. */
void spool_record_format(char out[SPOOL_RECORD_LEN], const struct spool_record *r);

/*
 * Parse the first SPOOL_RECORD_LEN bytes of buf (n is what there is). 0, or -1 when they are
 * not a version 2 record with a known state, a valid id and hex numbers (a new file's zeros, a
 * torn write, another format).
 */
int spool_record_parse(const char *buf, size_t n, struct spool_record *r);

/* The running checksum of a slot file's content (an XXH3-64 streaming state). */
struct spool_sum;
struct spool_sum *spool_sum_new(void); /* NULL when out of memory */
void spool_sum_free(struct spool_sum *s);
void spool_sum_update(struct spool_sum *s, const void *data, size_t len);
uint64_t spool_sum_digest(const struct spool_sum *s);

/* The checksum of the first `len` bytes of iov[0..n) in one go, without allocating. */
uint64_t spool_sum_iov(const struct iovec *iov, int n, size_t len);

#endif
