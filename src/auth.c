/*
 * auth.c: SMTP AUTH credentials: the users file, password checks with crypt(3), base64, the SASL
 * PLAIN message, and per-IP failure throttling.
 *
 * Owns: the parsed users file (a sorted array, read-only once loaded, so checks may run on any
 * thread) and the throttle table. Does not own: the SASL exchange, replies and logging (the
 * session's job). Nothing here logs; error strings never contain a password or a hash.
 *
 * Start reading at auth_users_load(), then auth_users_check(). Unknown names run crypt against
 * a dummy hash made at load time with the setting (method, cost and salt) of the strongest entry,
 * so they cost what a real user costs. The throttle is a tsearch(3) tree keyed by the 16-byte
 * address (balanced, so no hash flooding from attacker-chosen IPv6 addresses) plus a list by
 * last failure for expiry and eviction.
 */
#include "petrel/auth.h"

#include <crypt.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_FILE_LINE_MAX  4096 /* a users file line: name, ':' and hash fit easily */
#define AUTH_DUMMY_RANDOM   24   /* random bytes in the dummy hash's password */
#define AUTH_DUMMY_DEFAULT  "$6$"
#define AUTH_BCRYPT_LEN     60 /* "$2b$NN$" + 22 salt + 31 hash */
#define AUTH_BCRYPT_COST_AT 4
#define AUTH_DES_LEN        13 /* traditional DES: 2 salt + 11 hash, refused */
#define AUTH_BSDI_LEN       20 /* BSDi extended DES: "_" + 19, refused */
#define AUTH_ADDR_LEN       16 /* IPv6, and IPv4 as ::ffff:a.b.c.d */
#define AUTH_V4MAPPED_AT    12

/* One line of the users file. name and hash share one allocation, both NUL-terminated. */
struct auth_user {
	char *name;
	size_t name_len;
	const char *hash;
	size_t hash_len;
	size_t line;     /* for the duplicate-name error */
	size_t strength; /* index in auth_methods[]: 0 is the strongest */
};

struct auth_users {
	unsigned refs;           /* auth_users_ref / auth_users_free; main thread only */
	struct auth_user *users; /* sorted by name (bytes, then length) */
	size_t count;
	char dummy[CRYPT_OUTPUT_SIZE]; /* crypt of a random password: the hash of unknown names */
	size_t dummy_len;
};

/* Heap scratch for one crypt call: struct crypt_data is 32 KiB, too big for a worker's stack. */
struct auth_crypt_work {
	struct crypt_data data;
	char pass[AUTH_PASS_MAX + 1];
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
};

/*
 * The methods the users file may use, strongest first (this order picks the dummy's setting).
 * tail: characters after the last '$' (0: bcrypt, fixed length instead). dollars: '$' count of a
 * complete hash ($5$/$6$ have one more with "rounds=").
 */
static const struct auth_method {
	const char *prefix;
	size_t tail;
	unsigned dollars;
} auth_methods[] = {
	{ "$y$", 43, 4 },  /* yescrypt (Debian's default) */
	{ "$gy$", 43, 4 }, /* gost-yescrypt */
	{ "$7$", 43, 3 },  /* scrypt */
	{ "$2b$", 0, 3 },  /* bcrypt */
	{ "$2y$", 0, 3 },  /* bcrypt as PHP names it */
	{ "$2a$", 0, 3 },  /* bcrypt, older */
	{ "$6$", 86, 3 },  /* sha512crypt: `openssl passwd -6` */
	{ "$5$", 43, 3 },  /* sha256crypt */
};

#define AUTH_METHODS (sizeof(auth_methods) / sizeof(auth_methods[0]))

struct auth_throttle_entry {
	uint8_t addr[AUTH_ADDR_LEN];               /* the tree key: keep first */
	time_t first;                              /* start of the window (first failure in it) */
	time_t last;                               /* latest failure */
	time_t blocked_until;                      /* 0: not blocked */
	time_t expires;                            /* forgotten from then on */
	unsigned failures;                         /* in the current window */
	struct auth_throttle_entry *older, *newer; /* by latest failure */
};

struct auth_throttle {
	void *root; /* tsearch tree of entries */
	struct auth_throttle_entry *oldest, *newest;
	size_t count;
	size_t max_entries;
	unsigned max_failures;
	unsigned window;
};

static char *auth_error(const char *path, size_t line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static const char *auth_users_parse_line(char *line, size_t len, struct auth_user *out);
static const char *auth_users_check_name(const char *name, size_t len);
static const char *auth_users_check_hash(const char *hash, size_t len, size_t *strength);
static int auth_users_name_cmp(const char *name, size_t len, const struct auth_user *e);
static int auth_users_cmp(const void *a, const void *b);
static const struct auth_user *auth_users_find(const struct auth_users *u, const char *name,
                                               size_t len);
static int auth_users_make_dummy(struct auth_users *u);
static int auth_base64_value(unsigned char c);
static bool auth_throttle_key(const struct sockaddr *sa, uint8_t key[AUTH_ADDR_LEN]);
static int auth_throttle_cmp(const void *a, const void *b);
static struct auth_throttle_entry *auth_throttle_find(struct auth_throttle *t,
                                                      const uint8_t key[AUTH_ADDR_LEN]);
static void auth_throttle_remove(struct auth_throttle *t, struct auth_throttle_entry *e);
static void auth_throttle_expire(struct auth_throttle *t, time_t now);
static void auth_throttle_unlink(struct auth_throttle *t, struct auth_throttle_entry *e);
static void auth_throttle_link_newest(struct auth_throttle *t, struct auth_throttle_entry *e);
static time_t auth_time_add(time_t a, time_t b);
static time_t auth_throttle_step(unsigned failures);

/* ---- users file ---- */

/* "FILE:LINE: message" (line 0: "FILE: message"), malloc'd; NULL if out of memory. */
static char *
auth_error(const char *path, size_t line, const char *fmt, ...)
{
	char msg[256];
	char *out = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		n = asprintf(&out, "%s:%zu: %s", path, line, msg);
	else
		n = asprintf(&out, "%s: %s", path, msg);
	return n < 0 ? NULL : out;
}

static const char *
auth_users_check_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0)
		return "empty name";
	if (len > AUTH_NAME_MAX)
		return "name longer than 255 octets";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= ' ' || c == 0x7f)
			return "name contains a blank or a control character";
	}
	return NULL;
}

/* A complete hash of a method we accept; sets *strength. Returns NULL or the error. */
static const char *
auth_users_check_hash(const char *hash, size_t len, size_t *strength)
{
	const struct auth_method *m = NULL;
	const char *last;
	unsigned dollars = 0;
	size_t i;

	if (len == 0)
		return "empty hash";
	if (len >= CRYPT_OUTPUT_SIZE)
		return "hash too long";
	for (i = 0; i < len; i++) {
		char c = hash[i];

		if (c == '$')
			dollars++;
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '.' || c == '/' || c == '=' || c == ',' ||
		           (c == '_' && i == 0)))
			return "hash is not a crypt(3) string";
	}
	for (i = 0; i < AUTH_METHODS; i++) {
		if (strncmp(hash, auth_methods[i].prefix, strlen(auth_methods[i].prefix)) == 0) {
			m = &auth_methods[i];
			break;
		}
	}
	if (m == NULL) {
		/* Without '$' only DES (13 characters) and BSDi ("_" and 19) are hashes: anything
		 * else there is more likely a password typed in clear. */
		if (hash[0] != '$' && len != AUTH_DES_LEN &&
		    !(hash[0] == '_' && len == AUTH_BSDI_LEN))
			return "hash is not a crypt(3) string";
		if (crypt_checksalt(hash) == CRYPT_SALT_METHOD_LEGACY)
			return "weak legacy hash method (use $y$ or $6$)";
		return "hash is not a crypt(3) string of a supported method";
	}
	/* $5$ counts as legacy for libxcrypt; the table is our policy, so only refuse junk. */
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_METHOD_LEGACY:
		break;
	case CRYPT_SALT_METHOD_DISABLED:
		return "hash method disabled in libcrypt";
	default:
		return "hash is not a crypt(3) string";
	}
	if (m->tail == 0) {
		/* bcrypt: "$2b$NN$" then salt and hash without a separator. */
		if (len != AUTH_BCRYPT_LEN || dollars != m->dollars ||
		    hash[AUTH_BCRYPT_COST_AT + 2] != '$')
			return "incomplete or malformed hash";
	} else {
		unsigned want = m->dollars;

		if (m->prefix[1] == '5' || m->prefix[1] == '6')
			want += strncmp(hash + 3, "rounds=", 7) == 0;
		last = strrchr(hash, '$');
		if (dollars != want || (size_t)(hash + len - last - 1) != m->tail)
			return "incomplete or malformed hash";
	}
	*strength = (size_t)(m - auth_methods);
	return NULL;
}

/*
 * One non-comment line (its end already trimmed) → *out (name and hash allocated together).
 * Returns NULL or the error; "" for out of memory.
 */
static const char *
auth_users_parse_line(char *line, size_t len, struct auth_user *out)
{
	const char *colon, *why;
	size_t name_len, hash_len, strength = 0;

	colon = memchr(line, ':', len);
	if (colon == NULL)
		return "missing ':' (expected name:hash)";
	name_len = (size_t)(colon - line);
	hash_len = len - name_len - 1;
	why = auth_users_check_name(line, name_len);
	if (why != NULL)
		return why;
	line[len] = '\0';
	why = auth_users_check_hash(colon + 1, hash_len, &strength);
	if (why != NULL)
		return why;
	out->name = malloc(len + 1);
	if (out->name == NULL)
		return "";
	memcpy(out->name, line, len + 1);
	out->name[name_len] = '\0';
	out->name_len = name_len;
	out->hash = out->name + name_len + 1;
	out->hash_len = hash_len;
	out->strength = strength;
	return NULL;
}

/* Names order by bytes, then by length. */
static int
auth_users_name_cmp(const char *name, size_t len, const struct auth_user *e)
{
	int c = memcmp(name, e->name, len < e->name_len ? len : e->name_len);

	if (c != 0)
		return c;
	return (len > e->name_len) - (len < e->name_len);
}

/* qsort: by name, equal names by line (so a duplicate follows the line it repeats). */
static int
auth_users_cmp(const void *a, const void *b)
{
	const struct auth_user *x = a, *y = b;
	int c = auth_users_name_cmp(x->name, x->name_len, y);

	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

static const struct auth_user *
auth_users_find(const struct auth_users *u, const char *name, size_t len)
{
	size_t lo = 0, hi = u->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = auth_users_name_cmp(name, len, &u->users[mid]);

		if (c == 0)
			return &u->users[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/*
 * The dummy hash: a random password hashed with the setting of the strongest entry (same
 * method, cost and salt as a real user), or a fresh "$6$" setting for an empty file.
 */
static int
auth_users_make_dummy(struct auth_users *u)
{
	unsigned char rnd[AUTH_DUMMY_RANDOM];
	struct auth_crypt_work *w;
	const char *setting, *out;
	size_t i, best = 0;
	int rc = -1;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto fail;
	if (auth_base64_encode(rnd, sizeof(rnd), w->pass, sizeof(w->pass)) < 0)
		goto fail;
	for (i = 1; i < u->count; i++) {
		if (u->users[i].strength < u->users[best].strength)
			best = i;
	}
	if (u->count > 0) {
		setting = u->users[best].hash;
	} else {
		setting = crypt_gensalt_rn(AUTH_DUMMY_DEFAULT, 0, NULL, 0, w->setting,
		                           (int)sizeof(w->setting));
		if (setting == NULL)
			goto fail;
	}
	out = crypt_rn(w->pass, setting, &w->data, (int)sizeof(w->data));
	if (out == NULL || strlen(out) >= sizeof(u->dummy))
		goto fail;
	u->dummy_len = strlen(out);
	memcpy(u->dummy, out, u->dummy_len + 1);
	rc = 0;
fail:
	OPENSSL_cleanse(rnd, sizeof(rnd));
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
	return rc;
}

struct auth_users *
auth_users_load(const char *path, char **err)
{
	struct auth_users *u = NULL;
	struct auth_user entry, *grown;
	char *line = NULL, *msg = NULL;
	const char *why = NULL;
	size_t cap = 0, linecap = 0, lineno = 0, bad_line = 0, dup = 0, i;
	ssize_t n;
	FILE *f;

	if (err != NULL)
		*err = NULL;
	f = fopen(path, "re");
	if (f == NULL) {
		msg = auth_error(path, 0, "%s", strerror(errno));
		goto fail;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		goto fail_oom;
	u->refs = 1;
	while ((n = getline(&line, &linecap, f)) >= 0) {
		size_t len = (size_t)n, start = 0;

		lineno++;
		if (memchr(line, '\0', len) != NULL) {
			why = "NUL byte in line";
			break;
		}
		if (len > AUTH_FILE_LINE_MAX) {
			why = "line too long";
			break;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
		                   line[len - 1] == ' ' || line[len - 1] == '\t'))
			len--;
		while (start < len && (line[start] == ' ' || line[start] == '\t'))
			start++;
		if (start == len || line[start] == '#')
			continue;
		if (u->count == cap) {
			cap = cap ? cap * 2 : 16;
			grown = reallocarray(u->users, cap, sizeof(*grown));
			if (grown == NULL)
				goto fail_oom;
			u->users = grown;
		}
		memset(&entry, 0, sizeof(entry));
		why = auth_users_parse_line(line, len, &entry);
		if (why != NULL && why[0] == '\0')
			goto fail_oom;
		if (why != NULL)
			break;
		entry.line = lineno;
		u->users[u->count++] = entry;
	}
	if (why != NULL) {
		bad_line = lineno;
	} else if (ferror(f)) {
		msg = auth_error(path, 0, "read error: %s", strerror(errno));
		goto fail;
	}
	/* A duplicate before the first bad line is the first error in the file. */
	if (u->count > 1)
		qsort(u->users, u->count, sizeof(*u->users), auth_users_cmp);
	for (i = 1; i < u->count; i++) {
		const struct auth_user *a = &u->users[i - 1], *b = &u->users[i];

		if (auth_users_name_cmp(a->name, a->name_len, b) == 0 &&
		    (bad_line == 0 || b->line < bad_line)) {
			bad_line = b->line;
			dup = i;
		}
	}
	if (dup > 0) {
		msg = auth_error(path, bad_line, "duplicate name (first at line %zu)",
		                 u->users[dup - 1].line);
		goto fail;
	}
	if (why != NULL) {
		msg = auth_error(path, bad_line, "%s", why);
		goto fail;
	}
	if (auth_users_make_dummy(u) < 0) {
		msg = auth_error(path, 0, "cannot make the dummy hash");
		goto fail;
	}
	OPENSSL_cleanse(line, linecap);
	free(line);
	fclose(f);
	return u;

fail_oom:
	free(msg);
	msg = auth_error(path, 0, "out of memory");
fail:
	if (err != NULL)
		*err = msg;
	else
		free(msg);
	if (line != NULL)
		OPENSSL_cleanse(line, linecap);
	free(line);
	if (f != NULL)
		fclose(f);
	auth_users_free(u);
	return NULL;
}

void
auth_users_free(struct auth_users *u)
{
	size_t i;

	if (u == NULL || --u->refs > 0)
		return;
	for (i = 0; i < u->count; i++) {
		OPENSSL_cleanse(u->users[i].name, u->users[i].name_len + u->users[i].hash_len + 2);
		free(u->users[i].name);
	}
	free(u->users);
	OPENSSL_cleanse(u, sizeof(*u));
	free(u);
}

struct auth_users *
auth_users_ref(struct auth_users *u)
{
	u->refs++;
	return u;
}

size_t
auth_users_count(const struct auth_users *u)
{
	return u == NULL ? 0 : u->count;
}

bool
auth_users_check(const struct auth_users *u, const char *name, size_t name_len, const char *pass,
                 size_t pass_len)
{
	const struct auth_user *e;
	struct auth_crypt_work *w;
	const char *hash, *out;
	size_t hash_len;
	bool ok = false;

	/* Refusals that depend on the input alone reveal nothing about the users. */
	if (u == NULL || name == NULL || pass == NULL || name_len == 0 ||
	    name_len > AUTH_NAME_MAX || pass_len == 0 || pass_len > AUTH_PASS_MAX)
		return false;
	e = auth_users_find(u, name, name_len);
	hash = e != NULL ? e->hash : u->dummy;
	hash_len = e != NULL ? e->hash_len : u->dummy_len;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return false;
	memcpy(w->pass, pass, pass_len);
	w->pass[pass_len] = '\0';
	out = crypt_rn(w->pass, hash, &w->data, (int)sizeof(w->data));
	if (out != NULL && strlen(out) == hash_len)
		ok = CRYPTO_memcmp(out, hash, hash_len) == 0;
	/* A NUL inside the password would have cut it short: never a match. */
	ok = ok && e != NULL && memchr(pass, '\0', pass_len) == NULL;
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
	return ok;
}

/* ---- base64 ---- */

static const char auth_base64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * The 6-bit value of c, or -1. Without branches or a table on the character (it may be part of a
 * password): each range adds its offset under a mask that is all ones only inside the range.
 */
static int
auth_base64_value(unsigned char c)
{
	int ch = c, v = -1;

	v += (((('A' - 1) - ch) & (ch - ('Z' + 1))) >> 8) & (ch - 'A' + 1);
	v += (((('a' - 1) - ch) & (ch - ('z' + 1))) >> 8) & (ch - 'a' + 27);
	v += (((('0' - 1) - ch) & (ch - ('9' + 1))) >> 8) & (ch - '0' + 53);
	v += (((('+' - 1) - ch) & (ch - ('+' + 1))) >> 8) & 63;
	v += (((('/' - 1) - ch) & (ch - ('/' + 1))) >> 8) & 64;
	return v;
}

long
auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outsize)
{
	size_t i, o = 0, pad = 0, outlen;
	int bad = 0;

	if (len % 4 != 0 || len > LONG_MAX)
		return -1;
	if (len == 0)
		return 0;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	outlen = len / 4 * 3 - pad;
	if (outlen > outsize)
		return -1;
	for (i = 0; i < len; i += 4) {
		bool final = i + 4 == len;
		int a = auth_base64_value((unsigned char)in[i]);
		int b = auth_base64_value((unsigned char)in[i + 1]);
		int c = final && pad == 2 ? 0 : auth_base64_value((unsigned char)in[i + 2]);
		int d = final && pad >= 1 ? 0 : auth_base64_value((unsigned char)in[i + 3]);
		unsigned v;

		bad |= a | b | c | d; /* negative if any is -1 */
		v = ((unsigned)a & 63) << 18 | ((unsigned)b & 63) << 12 | ((unsigned)c & 63) << 6 |
		    ((unsigned)d & 63);
		out[o++] = (unsigned char)(v >> 16);
		if (final && pad == 2) {
			bad |= -(int)(v & 0xffff); /* the unused bits of b must be zero */
			break;
		}
		out[o++] = (unsigned char)(v >> 8);
		if (final && pad == 1) {
			bad |= -(int)(v & 0xff); /* the unused bits of c must be zero */
			break;
		}
		out[o++] = (unsigned char)v;
	}
	if (bad < 0) {
		OPENSSL_cleanse(out, o);
		return -1;
	}
	return (long)outlen;
}

long
auth_base64_encode(const unsigned char *in, size_t len, char *out, size_t outsize)
{
	size_t i, o = 0, need;

	if (len > (LONG_MAX - 1) / 4 * 3 - 3)
		return -1;
	need = AUTH_BASE64_ENCODED_SIZE(len);
	if (outsize < need)
		return -1;
	for (i = 0; i + 3 <= len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

		out[o++] = auth_base64_alphabet[v >> 18];
		out[o++] = auth_base64_alphabet[(v >> 12) & 63];
		out[o++] = auth_base64_alphabet[(v >> 6) & 63];
		out[o++] = auth_base64_alphabet[v & 63];
	}
	if (len - i > 0) {
		unsigned v = (unsigned)in[i] << 16;

		if (len - i == 2)
			v |= (unsigned)in[i + 1] << 8;
		out[o++] = auth_base64_alphabet[v >> 18];
		out[o++] = auth_base64_alphabet[(v >> 12) & 63];
		out[o++] = len - i == 2 ? auth_base64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return (long)o;
}

/* ---- SASL PLAIN (RFC 4616) ---- */

int
auth_plain_parse(const unsigned char *msg, size_t len, const char **authzid, size_t *authzid_len,
                 const char **authcid, size_t *authcid_len, const char **passwd, size_t *passwd_len)
{
	const unsigned char *nul1, *nul2, *end = msg + len;
	size_t zlen, clen, plen;

	if (msg == NULL)
		return -1;
	nul1 = memchr(msg, '\0', len);
	if (nul1 == NULL)
		return -1;
	nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
	if (nul2 == NULL)
		return -1;
	zlen = (size_t)(nul1 - msg);
	clen = (size_t)(nul2 - nul1 - 1);
	plen = (size_t)(end - nul2 - 1);
	if (zlen > AUTH_NAME_MAX || clen == 0 || clen > AUTH_NAME_MAX || plen == 0 ||
	    plen > AUTH_PASS_MAX || memchr(nul2 + 1, '\0', plen) != NULL)
		return -1;
	*authzid = (const char *)msg;
	*authzid_len = zlen;
	*authcid = (const char *)nul1 + 1;
	*authcid_len = clen;
	*passwd = (const char *)nul2 + 1;
	*passwd_len = plen;
	return 0;
}

/* ---- throttle ---- */

/* a + b for b >= 0, saturating (a fake clock may sit near the end of time_t). */
static time_t
auth_time_add(time_t a, time_t b)
{
	time_t max = (time_t)((((uintmax_t)1 << (sizeof(time_t) * CHAR_BIT - 2)) - 1) * 2 + 1);

	return a > max - b ? max : a + b;
}

/* The wait after the n-th failure (n >= 1): 1, 2, 4 … capped. */
static time_t
auth_throttle_step(unsigned failures)
{
	time_t d = 1;

	if (failures == 0)
		return 0;
	while (--failures > 0 && d < AUTH_THROTTLE_DELAY_MAX)
		d *= 2;
	return d < AUTH_THROTTLE_DELAY_MAX ? d : AUTH_THROTTLE_DELAY_MAX;
}

/* The address as 16 bytes, IPv4 as ::ffff:a.b.c.d; false for a family we do not throttle. */
static bool
auth_throttle_key(const struct sockaddr *sa, uint8_t key[AUTH_ADDR_LEN])
{
	memset(key, 0, AUTH_ADDR_LEN);
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + AUTH_V4MAPPED_AT, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, AUTH_ADDR_LEN);
		return true;
	}
	return false;
}

static int
auth_throttle_cmp(const void *a, const void *b)
{
	return memcmp(((const struct auth_throttle_entry *)a)->addr,
	              ((const struct auth_throttle_entry *)b)->addr, AUTH_ADDR_LEN);
}

static struct auth_throttle_entry *
auth_throttle_find(struct auth_throttle *t, const uint8_t key[AUTH_ADDR_LEN])
{
	struct auth_throttle_entry probe;
	void *node;

	memcpy(probe.addr, key, AUTH_ADDR_LEN);
	node = tfind(&probe, &t->root, auth_throttle_cmp);
	return node == NULL ? NULL : *(struct auth_throttle_entry **)node;
}

static void
auth_throttle_unlink(struct auth_throttle *t, struct auth_throttle_entry *e)
{
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	e->older = e->newer = NULL;
}

static void
auth_throttle_link_newest(struct auth_throttle *t, struct auth_throttle_entry *e)
{
	e->older = t->newest;
	e->newer = NULL;
	if (t->newest != NULL)
		t->newest->newer = e;
	else
		t->oldest = e;
	t->newest = e;
}

static void
auth_throttle_remove(struct auth_throttle *t, struct auth_throttle_entry *e)
{
	auth_throttle_unlink(t, e);
	tdelete(e, &t->root, auth_throttle_cmp);
	t->count--;
	free(e);
}

/* Drop expired entries from the old end (amortised: each entry goes once). */
static void
auth_throttle_expire(struct auth_throttle *t, time_t now)
{
	while (t->oldest != NULL && t->oldest->expires <= now)
		auth_throttle_remove(t, t->oldest);
}

struct auth_throttle *
auth_throttle_new(unsigned max_failures, unsigned window_seconds)
{
	struct auth_throttle *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->max_failures = max_failures;
	t->window = window_seconds;
	t->max_entries = AUTH_THROTTLE_MAX_ENTRIES;
	return t;
}

void
auth_throttle_configure(struct auth_throttle *t, unsigned max_failures, unsigned window_seconds)
{
	t->max_failures = max_failures;
	t->window = window_seconds;
}

void
auth_throttle_free(struct auth_throttle *t)
{
	if (t == NULL)
		return;
	tdestroy(t->root, free);
	free(t);
}

void
auth_throttle_set_max_entries(struct auth_throttle *t, size_t max)
{
	t->max_entries = max > 0 ? max : 1;
	while (t->count > t->max_entries)
		auth_throttle_remove(t, t->oldest);
}

size_t
auth_throttle_count(const struct auth_throttle *t)
{
	return t == NULL ? 0 : t->count;
}

void
auth_throttle_fail(struct auth_throttle *t, const struct sockaddr *sa, time_t now)
{
	uint8_t key[AUTH_ADDR_LEN];
	struct auth_throttle_entry *e;

	if (t == NULL || t->window == 0 || !auth_throttle_key(sa, key))
		return;
	auth_throttle_expire(t, now);
	e = auth_throttle_find(t, key);
	if (e == NULL) {
		if (t->count >= t->max_entries)
			auth_throttle_remove(t, t->oldest);
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			return; /* not remembered: this failure costs the client nothing more */
		memcpy(e->addr, key, AUTH_ADDR_LEN);
		if (tsearch(e, &t->root, auth_throttle_cmp) == NULL) {
			free(e);
			return;
		}
		t->count++;
		auth_throttle_link_newest(t, e);
	} else {
		auth_throttle_unlink(t, e);
		auth_throttle_link_newest(t, e);
	}
	if (e->failures == 0 || now >= e->expires) {
		/* A new window (a backwards clock only makes now < expires: the window goes on). */
		e->first = now;
		e->failures = 0;
		e->blocked_until = 0;
	}
	if (e->failures < UINT_MAX)
		e->failures++;
	e->last = now;
	if (t->max_failures > 0 && e->failures >= t->max_failures)
		e->blocked_until = auth_time_add(now, t->window);
	e->expires = auth_time_add(e->first, t->window);
	if (e->blocked_until > e->expires)
		e->expires = e->blocked_until;
}

unsigned
auth_throttle_delay(struct auth_throttle *t, const struct sockaddr *sa, time_t now, bool *blocked)
{
	uint8_t key[AUTH_ADDR_LEN];
	struct auth_throttle_entry *e;
	time_t step, until;

	if (blocked != NULL)
		*blocked = false;
	if (t == NULL || !auth_throttle_key(sa, key))
		return 0;
	auth_throttle_expire(t, now);
	e = auth_throttle_find(t, key);
	if (e == NULL)
		return 0;
	if (now >= e->expires) {
		auth_throttle_remove(t, e);
		return 0;
	}
	if (e->blocked_until > now) {
		if (blocked != NULL)
			*blocked = true;
		/* At most the window, whatever the clock did. */
		return (unsigned)(e->blocked_until - now < (time_t)t->window
		                          ? e->blocked_until - now
		                          : t->window);
	}
	step = auth_throttle_step(e->failures);
	until = auth_time_add(e->last, step);
	if (until <= now)
		return 0;
	return (unsigned)(until - now < step ? until - now : step);
}
