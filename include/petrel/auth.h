/*
 * auth.h: SMTP AUTH (RFC 4954) credentials: SASL PLAIN (RFC 4616) and LOGIN decoding, the users
 * file, constant-time-ish verification with crypt(3), and per-IP failure throttling.
 *
 * Pure apart from reading the users file and calling crypt_r: no sockets, no libevent. The
 * session drives the SASL exchange; this module decodes, verifies and throttles.
 *
 * Users file: one "name:hash" per line; '#' comments and blank lines ignored; hash is a crypt(3)
 * string ($6$ SHA-512 from `openssl passwd -6`, $y$ yescrypt, $5$, $2b$ where libcrypt has it).
 * Names are compared exactly (case-sensitive), at most 255 octets. Never logged: passwords,
 * hashes, AUTH payloads.
 */
#ifndef PETREL_AUTH_H
#define PETREL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define AUTH_NAME_MAX 255
#define AUTH_PASS_MAX 1024
#define AUTH_LINE_MAX 12288 /* RFC 4954 §4: an AUTH line (with its response) may be this long */

/* Buffer sizes for the base64 functions: encoded text of n bytes (with its NUL), and the most
 * bytes n characters of base64 can decode to. */
#define AUTH_BASE64_ENCODED_SIZE(n) ((((n) + 2) / 3) * 4 + 1)
#define AUTH_BASE64_DECODED_MAX(n)  (((n) / 4) * 3)

#define AUTH_THROTTLE_DELAY_MAX 60 /* seconds: the cap of the doubling delay */
#define AUTH_THROTTLE_MAX_ENTRIES                                                                  \
	100000 /* default table cap; the least recent entry goes first                             \
	        */

struct auth_users;

/*
 * Load the users file. Returns NULL and *err (malloc'd, "FILE:LINE: message") on failure: cannot
 * read, a line without ':', an empty name, a hash that is not a crypt string, a duplicate name.
 *
 * Details: a trailing CR and trailing blanks are dropped; a line whose first non-blank is '#' is
 * a comment. Names may not contain blanks or control characters. Accepted methods: $y$, $gy$,
 * $7$, $2b$/$2y$/$2a$, $6$, $5$ with a complete hash; weak legacy methods (DES, $1$ MD5, $3$ NT,
 * SunMD5, $sha1$) are refused. Only the first error is reported ("FILE: message" if the file
 * cannot be read); err may be NULL. The result is read-only: share it between threads freely.
 * Costs one crypt at load (the dummy hash for unknown names).
 */
struct auth_users *auth_users_load(const char *path, char **err);
/* Another reference (a session's AUTH check on a worker keeps the file it started with while
 * a reload installs a new one); take and drop references on the main thread. Returns u. */
struct auth_users *auth_users_ref(struct auth_users *u);
/* Drop one reference; the last one wipes and frees. NULL is ignored. */
void auth_users_free(struct auth_users *u);
size_t auth_users_count(const struct auth_users *u);

/*
 * Check name/password. Runs crypt for unknown names too (against a fixed dummy hash of the
 * same kind), and compares the computed hash with CRYPTO_memcmp, so timing does not reveal
 * whether the user exists. Returns true on success. Blocking CPU work (tens of ms for yescrypt):
 * the caller may run it on a worker thread.
 */
bool auth_users_check(const struct auth_users *u, const char *name, size_t name_len,
                      const char *pass, size_t pass_len);

/*
 * Base64 (RFC 4648, with padding; no whitespace) → bytes. Returns the decoded length or -1.
 * Strict: the length is a multiple of 4, '=' only as the last one or two characters, unused bits
 * zero ("QQ==" but not "QR=="). An empty input decodes to 0 bytes; "=" is invalid. out is not
 * NUL-terminated; outsize >= AUTH_BASE64_DECODED_MAX(len) is always enough. On failure the part
 * of out already written is wiped.
 */
long auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outsize);
/* Bytes → base64, NUL-terminated. Returns the length or -1 if out is too small (it needs
 * AUTH_BASE64_ENCODED_SIZE(len)). */
long auth_base64_encode(const unsigned char *in, size_t len, char *out, size_t outsize);

/*
 * SASL PLAIN message (decoded): authzid NUL authcid NUL passwd. Fills pointers into `msg`.
 * Returns 0, or -1 if malformed (missing NULs, empty authcid or passwd, too long). An authzid
 * that is non-empty and differs from authcid is refused by the caller (we do not proxy).
 *
 * Limits: authzid and authcid at most AUTH_NAME_MAX octets, passwd at most AUTH_PASS_MAX; a third
 * NUL (inside passwd) is malformed. The fields are bytes: UTF-8 is not checked here. The out
 * pointers are left alone on failure.
 */
int auth_plain_parse(const unsigned char *msg, size_t len, const char **authzid,
                     size_t *authzid_len, const char **authcid, size_t *authcid_len,
                     const char **passwd, size_t *passwd_len);

/*
 * Failure throttling per client IP: after each failure the next attempt from that address must
 * wait longer (1 s, 2 s, 4 s … capped at 60 s); after `max_failures` within `window` seconds
 * the address is refused (421) until the window passes. Success does not reset a bad address.
 *
 * Precisely: an address's window opens at its first failure and lasts `window` seconds; its count
 * and delay are forgotten when the window ends. The failure that reaches max_failures blocks the
 * address for `window` seconds from that failure (a failure while blocked restarts that). The
 * delay after the n-th failure is 2^(n-1) s (capped), counted from that failure. max_failures 0
 * never blocks; window 0 remembers nothing. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the
 * IPv4 address; other families (AF_UNIX) are not throttled. `now` is any seconds clock; if it
 * steps back, no delay is longer than its nominal value. Not thread-safe: use it from one thread.
 */
struct auth_throttle;

struct auth_throttle *auth_throttle_new(unsigned max_failures, unsigned window_seconds);
void auth_throttle_free(struct auth_throttle *t);
/* New limits (reload); the failures already counted are kept. */
void auth_throttle_configure(struct auth_throttle *t, unsigned max_failures,
                             unsigned window_seconds);

/* Cap the table at `max` entries (at least 1; default AUTH_THROTTLE_MAX_ENTRIES), evicting the
 * entries with the oldest failure now if it holds more. Expired entries are dropped as the
 * clock passes them. */
void auth_throttle_set_max_entries(struct auth_throttle *t, size_t max);
/* Addresses remembered (expired ones may linger until the next call that passes `now`). */
size_t auth_throttle_count(const struct auth_throttle *t);

/* Record a failure from sa at `now`. */
void auth_throttle_fail(struct auth_throttle *t, const struct sockaddr *sa, time_t now);

/* How long (seconds) an attempt from sa must still wait at `now` (0: go ahead), and whether
 * the address is over its limit (then the caller answers 421 and closes; the delay is then the
 * rest of the block). blocked may be NULL. */
unsigned auth_throttle_delay(struct auth_throttle *t, const struct sockaddr *sa, time_t now,
                             bool *blocked);

#endif
