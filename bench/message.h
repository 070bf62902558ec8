/*
 * message.h - what petrel-bench sends: the size distribution, the prebuilt bodies and the
 * per-message header block.
 *
 * Pure (libc only), so the Criterion suite can check it byte by byte. A body is built
 * once per distinct size and reused for every message of that size: the sender adds it
 * to its output by reference, so a message costs one short header formatted per send.
 */
#ifndef PETREL_BENCH_MESSAGE_H
#define PETREL_BENCH_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESSAGE_SIZES_MAX     16
#define MESSAGE_BODY_MAX      (64u * 1024 * 1024)
#define MESSAGE_LINE_MAX      78 /* characters per body line, CRLF excluded */
#define MESSAGE_HEADER_MAX    1024
#define MESSAGE_ADDRESS_MAX   256
#define MESSAGE_RUN_ID_MAX    32
#define MESSAGE_MARKER_HEADER "X-Petrel-Bench"

/* A weighted choice of body sizes, parsed from "1024", "10k" or "1k:70,10k:25,100k:5". */
struct message_sizes {
	size_t count;                       /* entries used */
	uint64_t total_weight;              /* sum of weights, > 0 */
	size_t size[MESSAGE_SIZES_MAX];     /* body bytes, CRLFs included */
	uint64_t weight[MESSAGE_SIZES_MAX]; /* relative frequency */
};

/*
 * Parses spec into out. Sizes take an optional k/K (1024) or m/M (1048576) suffix and must
 * be 0 or 2..MESSAGE_BODY_MAX bytes (a body is whole CRLF lines). Returns 0, or -1 with a
 * message in err.
 */
int message_sizes_parse(const char *spec, struct message_sizes *out, char *err, size_t errlen);

/* Maps a uniform random number onto an entry index, following the weights. */
size_t message_sizes_pick(const struct message_sizes *sizes, uint64_t random);

/*
 * One body of a given size, in both wire forms: raw (what the recipient gets; for BDAT)
 * and dot-stuffed (for DATA: every line starting with '.' gets one more). Lines are at most
 * MESSAGE_LINE_MAX characters plus CRLF, and include lines starting with '.', a lone '.',
 * and empty lines, so a receiver's dot handling is exercised.
 */
struct message_body {
	size_t size;        /* raw length, as requested */
	char *raw;          /* size bytes */
	char *stuffed;      /* stuffed_len bytes */
	size_t stuffed_len; /* size + number of lines starting with '.' */
};

/* Fills body for size bytes. Returns 0, or -1 (errno ENOMEM or EINVAL for a size of 1). */
int message_body_build(struct message_body *body, size_t size);

/* Frees the bytes owned by body (not body itself); safe on a zeroed body. */
void message_body_release(struct message_body *body);

/* The fields of one message's header block. Strings are borrowed for the call. */
struct message_header {
	const char *run_id; /* [A-Za-z0-9._-], also the marker the sink checks */
	uint64_t seq;       /* unique within the run */
	size_t body_size;   /* raw body length, carried in the marker for the sink */
	const char *from;   /* envelope sender, no angle brackets */
	const char *to;     /* first recipient */
	const char *date;   /* RFC 5322 date, formatted once per run */
};

/*
 * Writes the header block (ending with the empty line) into buf and returns its length,
 * or 0 if it does not fit. The marker line is "X-Petrel-Bench: <run-id> <seq> <body-size>"
 * and the Message-ID is "<run-id.seq@petrel-bench>", so both are unique per run and seq.
 */
size_t message_header_format(char *buf, size_t cap, const struct message_header *hdr);

/*
 * Checks that s is usable in a header and an SMTP path: 1..MESSAGE_ADDRESS_MAX printable
 * ASCII characters without spaces, '<' or '>'.
 */
bool message_address_valid(const char *s);

/* A recipient template such as "user%d@example.com": "%d" (at most once) becomes a number. */
struct message_template {
	char prefix[MESSAGE_ADDRESS_MAX + 1]; /* text before %d (or all of it) */
	char suffix[MESSAGE_ADDRESS_MAX + 1]; /* text after %d */
	bool numbered;                        /* whether %d was present */
};

/* Parses tmpl ("%%" is not supported: '%' must start "%d"). Returns 0, or -1 with err. */
int message_template_parse(const char *tmpl, struct message_template *out, char *err,
                           size_t errlen);

/* Writes the address for number n into buf; returns its length, or 0 if it does not fit. */
size_t message_template_format(const struct message_template *t, uint64_t n, char *buf, size_t cap);

/* Checks a run id: 1..MESSAGE_RUN_ID_MAX characters of [A-Za-z0-9._-]. */
bool message_run_id_valid(const char *s);

#endif /* PETREL_BENCH_MESSAGE_H */
