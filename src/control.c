/*
 * control.c: queue control (protocol and commands: control.h).
 *
 * Owns: the control socket <spool>/control.sock and its connections (server side, on the loop),
 * and the whole `petrel queue ...` process (client side). Does not own the queue: every change
 * goes through the scheduler's API (scheduler_flush/delete/hold/release), and what the queue
 * looks like comes from scheduler_foreach/lookup or, with petrel stopped, from the spool files
 * read-only. It never writes a spool file itself.
 *
 * Start reading at control_conn_handle() (one request, one answer) for the server, and at
 * control_cli() for the client. The formatting in between (control_list_*, control_format_show)
 * is shared by both, so the answer reads the same whoever produced it.
 */
#include "petrel/control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "petrel/log.h"
#include "petrel/spool.h"

#define CONTROL_MAX_CONNS       16 /* control connections at once */
#define CONTROL_BACKLOG         16
#define CONTROL_IDLE_TIMEOUT    60                /* seconds: a silent client, a stuck reader */
#define CONTROL_OUTPUT_HIGH     (1024 * 1024)     /* stop reading requests above this output */
#define CONTROL_HEADERS_MAX     (64 * 1024)       /* `show`: bytes of the header section read */
#define CONTROL_CLIENT_TIMEOUT  30                /* seconds the CLI waits for the daemon */
#define CONTROL_CLIENT_LINE_MAX (4 * 1024 * 1024) /* longest answer line the CLI takes */
#define CONTROL_DOMAIN_BUCKETS  1024
#define CONTROL_DOMAIN_MAX      256 /* octets of a domain name kept */

/* One connection to the control socket. */
struct control_conn {
	struct control_conn *prev, *next; /* all connections of the server */
	struct control_server *srv;
	struct bufferevent *bev;
	unsigned uid;    /* the client's (SO_PEERCRED), for the log */
	bool eof;        /* the client has sent all it will: answer what is buffered, then close */
	bool discarding; /* skipping the rest of a request line that was too long */
};

struct control_server {
	struct event_base *base;
	struct scheduler *sched; /* borrowed */
	struct evconnlistener *lev;
	int dirfd;   /* the spool directory, where the socket's name lives */
	int slotsfd; /* slots/ and state/, for `show` */
	int statefd;
	bool bound; /* the socket file is ours: remove it at the end */
	char *path; /* <spool>/control.sock, for messages */
	struct control_conn *conns;
	unsigned nconns;
};

/* A destination domain in `list --by-domain`. */
struct control_domain {
	struct control_domain *next; /* hash chain */
	char *name;                  /* lower case */
	size_t messages;             /* with a pending recipient there */
	size_t rcpts;                /* pending recipients there */
	time_t oldest;               /* arrival of the oldest of those messages */
	size_t seen;                 /* the message (list sequence) counted last */
	char error_id[MESSAGE_ID_LEN + 1];
	char *error; /* the last error of the newest message that has one, or NULL */
};

struct control_list {
	struct control_out *o;
	bool by_domain;
	bool oom;
	time_t now;
	size_t n;         /* messages added */
	uint64_t bytes;   /* their sizes */
	uint64_t pending; /* their pending recipients */
	size_t ndomains;
	struct control_domain *domains[CONTROL_DOMAIN_BUCKETS];
};

/* In enum control_verb order (control_verbs[verb].name is the verb's name). */
static const struct {
	const char *name;
	enum control_verb verb;
	bool id; /* takes a message id */
} control_verbs[] = {
	{ "list", CONTROL_LIST, false },   { "show", CONTROL_SHOW, true },
	{ "flush", CONTROL_FLUSH, false }, { "delete", CONTROL_DELETE, true },
	{ "hold", CONTROL_HOLD, true },    { "release", CONTROL_RELEASE, true },
};

static const char *const control_msg_states[] = {
	[SCHEDULER_MSG_ACTIVE] = "active",
	[SCHEDULER_MSG_DEFERRED] = "deferred",
	[SCHEDULER_MSG_HELD] = "held",
};

static const char *const control_rcpt_states[] = {
	[SCHEDULER_RCPT_PENDING] = "pending",
	[SCHEDULER_RCPT_DELIVERED] = "delivered",
	[SCHEDULER_RCPT_BOUNCED] = "bounced",
	[SCHEDULER_RCPT_EXPIRED] = "expired",
};

/* output */
static void control_line(struct control_out *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void control_journal_cb(void *arg, const char *line, size_t len);
static int control_domain_add(struct control_list *l, const struct scheduler_msg_summary *sum,
                              size_t i);
static void control_list_write_domains(struct control_list *l);
/* server */
static void control_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                              int salen, void *arg);
static void control_read_cb(struct bufferevent *bev, void *arg);
static void control_write_cb(struct bufferevent *bev, void *arg);
static void control_event_cb(struct bufferevent *bev, short what, void *arg);
static void control_conn_process(struct control_conn *c);
static void control_conn_handle(struct control_conn *c, const char *line, size_t len);
static void control_conn_free(struct control_conn *c);
/* both */
static int control_sockaddr(const char *dir, int dirfd, struct sockaddr_un *sun, socklen_t *len);

/* ---- requests ---- */

enum control_parse_result
control_parse(const char *line, size_t len, struct control_request *req)
{
	const char *w[3];
	size_t wl[3], nw = 0, i = 0, v;

	memset(req, 0, sizeof(*req));
	if (len > CONTROL_MAX_REQUEST)
		return CONTROL_PARSE_TOO_LONG;
	while (i < len) {
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == len)
			break;
		if (nw == 3)
			return CONTROL_PARSE_USAGE;
		w[nw] = line + i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		wl[nw] = (size_t)(line + i - w[nw]);
		nw++;
	}
	if (nw == 0)
		return CONTROL_PARSE_EMPTY;
	for (v = 0; v < sizeof(control_verbs) / sizeof(control_verbs[0]); v++)
		if (wl[0] == strlen(control_verbs[v].name) &&
		    memcmp(w[0], control_verbs[v].name, wl[0]) == 0)
			break;
	if (v == sizeof(control_verbs) / sizeof(control_verbs[0]))
		return CONTROL_PARSE_UNKNOWN;
	req->verb = control_verbs[v].verb;
	if (req->verb == CONTROL_LIST) {
		if (nw == 2 && wl[1] == 11 && memcmp(w[1], "--by-domain", 11) == 0)
			req->by_domain = true;
		else if (nw != 1)
			return CONTROL_PARSE_USAGE;
		return CONTROL_PARSE_OK;
	}
	if (!control_verbs[v].id)
		return nw == 1 ? CONTROL_PARSE_OK : CONTROL_PARSE_USAGE;
	if (nw != 2)
		return CONTROL_PARSE_USAGE;
	if (wl[1] != MESSAGE_ID_LEN)
		return CONTROL_PARSE_BAD_ID;
	memcpy(req->id, w[1], MESSAGE_ID_LEN);
	req->id[MESSAGE_ID_LEN] = '\0';
	return message_id_valid(req->id) ? CONTROL_PARSE_OK : CONTROL_PARSE_BAD_ID;
}

const char *
control_parse_error(enum control_parse_result r)
{
	switch (r) {
	case CONTROL_PARSE_OK:
		return "ok";
	case CONTROL_PARSE_EMPTY:
		return "empty request";
	case CONTROL_PARSE_UNKNOWN:
		return "unknown request (list [--by-domain], show ID, flush, delete ID, hold ID, "
		       "release ID)";
	case CONTROL_PARSE_USAGE:
		return "usage: list [--by-domain] | show ID | flush | delete ID | hold ID | "
		       "release ID";
	case CONTROL_PARSE_BAD_ID:
		return "bad message id (16 lowercase hex digits, as queue list shows them)";
	case CONTROL_PARSE_TOO_LONG:
		return "request too long";
	}
	return "bad request";
}

/* ---- the journal ---- */

struct control_journal *
control_journal_new(size_t nrcpts)
{
	struct control_journal *j;
	size_t n = nrcpts ? nrcpts : 1;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return NULL;
	j->nrcpts = nrcpts;
	j->npending = (unsigned)nrcpts;
	j->state = calloc(n, sizeof(*j->state));
	j->text = calloc(n, sizeof(*j->text));
	j->at = calloc(n, sizeof(*j->at));
	j->attempts = calloc(n, sizeof(*j->attempts));
	j->next = calloc(n, sizeof(*j->next));
	if (!j->state || !j->text || !j->at || !j->attempts || !j->next) {
		control_journal_free(j);
		return NULL;
	}
	return j;
}

void
control_journal_free(struct control_journal *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; j->text != NULL && i < j->nrcpts; i++)
		free(j->text[i]);
	free(j->text);
	free(j->state);
	free(j->at);
	free(j->attempts);
	free(j->next);
	free(j);
}

void
control_journal_line(struct control_journal *j, const char *line, size_t len)
{
	static const struct {
		const char *word;
		enum scheduler_rcpt_state state;
	} finals[] = { { "delivered", SCHEDULER_RCPT_DELIVERED },
		       { "bounced", SCHEDULER_RCPT_BOUNCED },
		       { "expired", SCHEDULER_RCPT_EXPIRED } };
	char word[16];
	unsigned idx, attempts;
	long long t, next;
	int end = 0, more = 0;
	size_t k;

	if (strncmp(line, "- ", 2) == 0) {
		if (strncmp(line + 2, "held ", 5) == 0)
			j->held = true;
		else if (strncmp(line + 2, "released ", 9) == 0)
			j->held = false;
		else if (strncmp(line + 2, "warned ", 7) == 0)
			j->warned = true;
		return;
	}
	if (sscanf(line, "%u %15s %lld%n", &idx, word, &t, &end) != 3 || idx >= j->nrcpts ||
	    j->state[idx] != SCHEDULER_RCPT_PENDING)
		return; /* unknown, or final already: the first final line wins */
	if (strcmp(word, "deferred") == 0) {
		if (sscanf(line + end, " %u %lld%n", &attempts, &next, &more) != 2)
			return;
		end += more;
		j->attempts[idx] = attempts;
		j->next[idx] = (time_t)next;
	} else {
		for (k = 0; k < sizeof(finals) / sizeof(finals[0]); k++)
			if (strcmp(word, finals[k].word) == 0)
				break;
		if (k == sizeof(finals) / sizeof(finals[0]))
			return;
		j->state[idx] = (uint8_t)finals[k].state;
		j->npending--;
	}
	j->at[idx] = (time_t)t;
	if ((size_t)end + 1 < len && line[end] == ' ') {
		char *text = strndup(line + end + 1, len - (size_t)end - 1);
		if (text != NULL) {
			free(j->text[idx]);
			j->text[idx] = text;
		}
	}
}

static void
control_journal_cb(void *arg, const char *line, size_t len)
{
	control_journal_line(arg, line, len);
}

/* ---- output helpers ---- */

static void
control_line(struct control_out *o, const char *fmt, ...)
{
	va_list ap;

	evbuffer_add(o->buf, o->prefix, strlen(o->prefix));
	va_start(ap, fmt);
	evbuffer_add_vprintf(o->buf, fmt, ap);
	va_end(ap);
	evbuffer_add(o->buf, "\n", 1);
}

/* The length of the valid UTF-8 sequence at s that is not a C1 control, or 0. */
static size_t
control_utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	if (n < len)
		return 0;
	cp = s[0] & (0x3fu >> (len - 1));
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
		return 0;
	return len;
}

/* How the byte(s) at s[0] are shown: sets *out to their display length, returns how many
 * input bytes they are. */
static size_t
control_escape_unit(const unsigned char *s, size_t n, size_t *out)
{
	size_t u;

	if ((s[0] >= 0x20 && s[0] < 0x7f) || s[0] == '\t') {
		*out = 1;
		return 1;
	}
	if (s[0] >= 0x80 && (u = control_utf8_len(s, n)) > 0) {
		*out = u;
		return u;
	}
	*out = 4; /* \xHH */
	return 1;
}

char *
control_escape(char *dst, size_t dstsize, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0, i, n, shown, total = 0, budget;

	if (dstsize == 0)
		return dst;
	for (i = 0; i < len; i += n) {
		n = control_escape_unit(s + i, len - i, &shown);
		total += shown;
	}
	/* All of it, or as much as leaves room for "..." */
	budget = total < dstsize ? total : dstsize >= 4 ? dstsize - 4 : 0;
	for (i = 0; i < len; i += n) {
		n = control_escape_unit(s + i, len - i, &shown);
		if (o + shown > budget)
			break;
		if (shown == 4 && n == 1 && !(s[i] >= 0x20 && s[i] < 0x7f)) {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[s[i] >> 4];
			dst[o++] = hex[s[i] & 15];
		} else {
			memcpy(dst + o, s + i, n);
			o += n;
		}
	}
	if (i < len && dstsize >= 4) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

char *
control_iso_time(char *buf, size_t size, time_t t)
{
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "-");
	return buf;
}

char *
control_age(char *buf, size_t size, long long s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, size, "%llds", s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm", s / 60);
	else if (s < 86400)
		snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
	return buf;
}

/* ---- list ---- */

struct control_list *
control_list_new(struct control_out *o, bool by_domain, time_t now)
{
	struct control_list *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->o = o;
	l->by_domain = by_domain;
	l->now = now;
	return l;
}

static void
control_list_write_message(struct control_list *l, const struct scheduler_msg_summary *sum)
{
	const struct message *msg = sum->msg;
	char arrival[32], next[32], rcpts[32], from[300], sender[310],
	        error[CONTROL_ERROR_SHOWN + 1];

	if (l->n == 1)
		control_line(l->o, "%-16s %-20s %9s %-30s %-9s %-8s %-20s %s", "ID", "ARRIVAL",
		             "SIZE", "SENDER", "RCPTS", "STATE", "NEXT-ATTEMPT", "LAST-ERROR");
	control_iso_time(arrival, sizeof(arrival), msg->arrival.tv_sec);
	control_iso_time(next, sizeof(next),
	                 sum->state == SCHEDULER_MSG_DEFERRED ? sum->next_attempt : 0);
	snprintf(rcpts, sizeof(rcpts), "%u/%zu", sum->npending, msg->nrcpts);
	control_escape(from, sizeof(from), msg->from ? msg->from : "",
	               msg->from ? strlen(msg->from) : 0);
	snprintf(sender, sizeof(sender), "<%s>", from);
	if (sum->last_error != NULL)
		control_escape(error, sizeof(error), sum->last_error, strlen(sum->last_error));
	else
		snprintf(error, sizeof(error), "-");
	control_line(l->o, "%-16s %-20s %9llu %-30s %-9s %-8s %-20s %s", msg->id, arrival,
	             (unsigned long long)msg->data_len, sender, rcpts,
	             control_msg_states[sum->state], next, error);
}

int
control_list_add(struct control_list *l, const struct scheduler_msg_summary *sum)
{
	size_t i;

	if (l == NULL || l->oom)
		return -1;
	l->n++;
	l->bytes += sum->msg->data_len;
	l->pending += sum->npending;
	if (!l->by_domain) {
		control_list_write_message(l, sum);
		return 0;
	}
	for (i = 0; i < sum->msg->nrcpts; i++)
		if (sum->rcpt_state[i] == SCHEDULER_RCPT_PENDING &&
		    control_domain_add(l, sum, i) == -1) {
			l->oom = true;
			return -1;
		}
	return 0;
}

static unsigned
control_domain_hash(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h & (CONTROL_DOMAIN_BUCKETS - 1);
}

/* Count pending recipient i of a message under its domain. */
static int
control_domain_add(struct control_list *l, const struct scheduler_msg_summary *sum, size_t i)
{
	const struct message *msg = sum->msg;
	const char *addr = msg->rcpts[i].addr, *at = strrchr(addr, '@');
	const char *error = sum->rcpt_error ? sum->rcpt_error[i] : NULL;
	char name[CONTROL_DOMAIN_MAX];
	struct control_domain *d;
	unsigned h;
	size_t k;

	snprintf(name, sizeof(name), "%s", at != NULL && at[1] ? at + 1 : "(local)");
	for (k = 0; name[k]; k++)
		if (name[k] >= 'A' && name[k] <= 'Z')
			name[k] = (char)(name[k] - 'A' + 'a');
	h = control_domain_hash(name);
	for (d = l->domains[h]; d != NULL; d = d->next)
		if (strcmp(d->name, name) == 0)
			break;
	if (d == NULL) {
		if ((d = calloc(1, sizeof(*d))) == NULL || (d->name = strdup(name)) == NULL) {
			free(d);
			return -1;
		}
		d->next = l->domains[h];
		l->domains[h] = d;
		l->ndomains++;
	}
	d->rcpts++;
	if (d->seen != l->n) {
		d->seen = l->n;
		if (d->messages == 0 || msg->arrival.tv_sec < d->oldest)
			d->oldest = msg->arrival.tv_sec;
		d->messages++;
	}
	if (error != NULL && (d->error == NULL || strcmp(msg->id, d->error_id) > 0)) {
		char *copy = strdup(error);
		if (copy == NULL)
			return -1;
		free(d->error);
		d->error = copy;
		memcpy(d->error_id, msg->id, sizeof(d->error_id));
	}
	return 0;
}

static int
control_domain_cmp(const void *a, const void *b)
{
	const struct control_domain *x = *(const struct control_domain *const *)a;
	const struct control_domain *y = *(const struct control_domain *const *)b;

	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The per-domain table, most messages first; frees the domains. */
static void
control_list_write_domains(struct control_list *l)
{
	struct control_domain **v = NULL, *d;
	char name[CONTROL_DOMAIN_MAX * 4], age[32], error[CONTROL_ERROR_SHOWN + 1];
	size_t i, n = 0;

	if (l->ndomains > 0 && (v = calloc(l->ndomains, sizeof(*v))) == NULL)
		l->oom = true;
	for (i = 0; i < CONTROL_DOMAIN_BUCKETS; i++)
		for (d = l->domains[i]; d != NULL && v != NULL; d = d->next)
			v[n++] = d;
	if (v != NULL && !l->oom) {
		qsort(v, n, sizeof(*v), control_domain_cmp);
		if (n > 0)
			control_line(l->o, "%-30s %8s %6s %7s %s", "DOMAIN", "MESSAGES", "RCPTS",
			             "OLDEST", "LAST-ERROR");
		for (i = 0; i < n; i++) {
			d = v[i];
			control_escape(name, sizeof(name), d->name, strlen(d->name));
			control_age(age, sizeof(age), (long long)(l->now - d->oldest));
			if (d->error != NULL)
				control_escape(error, sizeof(error), d->error, strlen(d->error));
			else
				snprintf(error, sizeof(error), "-");
			control_line(l->o, "%-30s %8zu %6zu %7s %s", name, d->messages, d->rcpts,
			             age, error);
		}
		if (n > 0)
			control_line(l->o, "-- %zu domain%s, %zu message%s", n, n == 1 ? "" : "s",
			             l->n, l->n == 1 ? "" : "s");
		else if (l->n > 0)
			control_line(l->o, "no pending recipients (%zu message%s finishing)", l->n,
			             l->n == 1 ? "" : "s");
	}
	free(v);
	for (i = 0; i < CONTROL_DOMAIN_BUCKETS; i++)
		while ((d = l->domains[i]) != NULL) {
			l->domains[i] = d->next;
			free(d->name);
			free(d->error);
			free(d);
		}
}

int
control_list_end(struct control_list *l)
{
	int rc;

	if (l == NULL)
		return -1;
	if (l->by_domain)
		control_list_write_domains(l);
	if (l->n == 0 && !l->oom)
		control_line(l->o, "queue is empty");
	else if (!l->by_domain && !l->oom)
		control_line(l->o, "-- %zu message%s, %llu bytes, %llu recipient%s pending", l->n,
		             l->n == 1 ? "" : "s", (unsigned long long)l->bytes,
		             (unsigned long long)l->pending, l->pending == 1 ? "" : "s");
	rc = l->oom ? -1 : 0;
	free(l);
	return rc;
}

void
control_summary_from_journal(const struct message *msg, const struct control_journal *j, time_t now,
                             struct scheduler_msg_summary *sum)
{
	time_t next = 0;
	size_t i;

	memset(sum, 0, sizeof(*sum));
	sum->msg = msg;
	sum->npending = j->npending;
	sum->rcpt_state = j->state;
	sum->rcpt_error = j->text;
	/* As the scheduler's recovery does: the pending recipients wait for the latest next
	 * attempt written for any of them. */
	for (i = 0; i < j->nrcpts; i++) {
		if (j->state[i] != SCHEDULER_RCPT_PENDING)
			continue;
		if (j->next[i] > next)
			next = j->next[i];
		if (sum->last_error == NULL)
			sum->last_error = j->text[i];
	}
	sum->next_attempt = next;
	sum->state = j->held      ? SCHEDULER_MSG_HELD
	             : next > now ? SCHEDULER_MSG_DEFERRED
	                          : SCHEDULER_MSG_ACTIVE;
}

/* ---- show ---- */

int
control_show_load(int slotsfd, int statefd, const char *id, int64_t slot, time_t now,
                  struct control_show **out)
{
	struct scheduler_msg_summary sum;
	struct control_show *sh;
	size_t want, i;
	ssize_t n;
	int fd = -1, saved;

	*out = NULL;
	if ((sh = calloc(1, sizeof(*sh))) == NULL)
		return -1;
	if ((slot >= 0 ? spool_read_at(slotsfd, (uint32_t)slot, id, &sh->msg)
	               : spool_find(slotsfd, id, &sh->msg)) == -1)
		goto fail;
	if ((sh->j = control_journal_new(sh->msg->nrcpts)) == NULL ||
	    (sh->active = calloc(sh->msg->nrcpts ? sh->msg->nrcpts : 1, sizeof(bool))) == NULL)
		goto fail;
	if (statefd >= 0 && spool_read_state(statefd, id, control_journal_cb, sh->j) == -1)
		goto fail;
	want = sh->msg->data_len < CONTROL_HEADERS_MAX ? (size_t)sh->msg->data_len
	                                               : CONTROL_HEADERS_MAX;
	if ((sh->headers = malloc(want + 1)) == NULL)
		goto fail;
	if ((fd = spool_open_data(slotsfd, sh->msg)) == -1)
		goto fail;
	n = pread(fd, sh->headers, want, (off_t)sh->msg->data_offset);
	if (n < 0)
		goto fail;
	close(fd);
	fd = -1;
	/* The header section ends at the first empty line. */
	sh->truncated = (uint64_t)n < sh->msg->data_len;
	sh->headers_len = (size_t)n;
	for (i = 0; i < (size_t)n; i++) {
		if (i != 0 && sh->headers[i - 1] != '\n')
			continue;
		if (sh->headers[i] == '\n' ||
		    (sh->headers[i] == '\r' && i + 1 < (size_t)n && sh->headers[i + 1] == '\n')) {
			sh->headers_len = i;
			sh->truncated = false;
			break;
		}
	}
	sh->headers[sh->headers_len] = '\0';
	control_summary_from_journal(sh->msg, sh->j, now, &sum);
	sh->state = sum.state;
	*out = sh;
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	control_show_free(sh);
	errno = saved;
	return -1;
}

void
control_show_free(struct control_show *sh)
{
	if (sh == NULL)
		return;
	message_free(sh->msg);
	control_journal_free(sh->j);
	free(sh->active);
	free(sh->headers);
	free(sh);
}

void
control_show_live(struct control_show *sh, const struct scheduler_msg_summary *sum)
{
	struct control_journal *j = sh->j;
	size_t i;

	sh->live = true;
	sh->state = sum->state;
	j->held = sum->state == SCHEDULER_MSG_HELD;
	for (i = 0; i < j->nrcpts && i < sum->msg->nrcpts; i++) {
		if (sum->rcpt_state[i] != SCHEDULER_RCPT_PENDING) {
			/* final in memory, its journal line waits for a DSN to be on disk */
			if (j->state[i] == SCHEDULER_RCPT_PENDING) {
				j->state[i] = sum->rcpt_state[i];
				j->npending--;
			}
			continue;
		}
		if (j->state[i] != SCHEDULER_RCPT_PENDING)
			continue;
		if (sum->live != NULL) {
			j->attempts[i] = sum->live[i].attempts;
			j->next[i] = sum->live[i].next_attempt;
			sh->active[i] = sum->live[i].active;
		}
		if (sum->rcpt_error != NULL && sum->rcpt_error[i] != NULL) {
			char *text = strdup(sum->rcpt_error[i]);
			if (text != NULL) {
				free(j->text[i]);
				j->text[i] = text;
			}
		}
	}
}

static void
control_show_rcpt(struct control_out *o, const struct control_show *sh, size_t i, char *esc,
                  size_t escsize)
{
	const struct control_journal *j = sh->j;
	const struct message_rcpt *r = &sh->msg->rcpts[i];
	char addr[1100], when[32], params[600] = "";
	size_t pl = 0;

	control_escape(addr, sizeof(addr), r->addr, strlen(r->addr));
	if (r->notify != 0) {
		pl += (size_t)snprintf(params, sizeof(params), " notify=%s%s%s%s",
		                       r->notify & SMTP_DSN_NOTIFY_NEVER ? "NEVER," : "",
		                       r->notify & SMTP_DSN_NOTIFY_SUCCESS ? "SUCCESS," : "",
		                       r->notify & SMTP_DSN_NOTIFY_FAILURE ? "FAILURE," : "",
		                       r->notify & SMTP_DSN_NOTIFY_DELAY ? "DELAY," : "");
		if (params[pl - 1] == ',')
			params[--pl] = '\0';
	}
	if (r->orcpt != NULL && pl < sizeof(params) - 8) {
		memcpy(params + pl, " orcpt=", 7);
		control_escape(params + pl + 7, sizeof(params) - pl - 7, r->orcpt,
		               strlen(r->orcpt));
	}
	if (j->text[i] != NULL)
		control_escape(esc, escsize, j->text[i], strlen(j->text[i]));
	if (j->state[i] == SCHEDULER_RCPT_PENDING) {
		control_line(o, "recipient <%s>%s pending attempts=%u next=%s%s%s%s%s", addr,
		             params, j->attempts[i],
		             sh->state == SCHEDULER_MSG_HELD
		                     ? "held"
		                     : control_iso_time(when, sizeof(when), j->next[i]),
		             sh->active[i] ? " delivering" : "", j->text[i] ? " error=\"" : "",
		             j->text[i] ? esc : "", j->text[i] ? "\"" : "");
		return;
	}
	control_line(o, "recipient <%s>%s %s at=%s%s%s%s", addr, params,
	             control_rcpt_states[j->state[i]],
	             control_iso_time(when, sizeof(when), j->at[i]), j->text[i] ? " reply=\"" : "",
	             j->text[i] ? esc : "", j->text[i] ? "\"" : "");
}

int
control_format_show(struct control_out *o, const struct control_show *sh, time_t now)
{
	const struct message *msg = sh->msg;
	size_t i, start, end, cap = 1024;
	char when[32], age[32], from[1100], *esc;

	if ((esc = malloc(cap)) == NULL)
		return -1;
	control_line(o, "id: %s", msg->id);
	control_line(o, "arrival: %s (%s ago)",
	             control_iso_time(when, sizeof(when), msg->arrival.tv_sec),
	             control_age(age, sizeof(age), (long long)(now - msg->arrival.tv_sec)));
	control_line(o, "size: %llu", (unsigned long long)msg->data_len);
	control_escape(from, sizeof(from), msg->from, strlen(msg->from));
	control_line(o, "sender: <%s>", from);
	control_escape(esc, cap, msg->helo ? msg->helo : "", msg->helo ? strlen(msg->helo) : 0);
	control_line(o, "client: %s helo=%s", msg->client_addr, esc);
	if (msg->body_type != SMTP_BODY_UNSPEC || msg->smtputf8 ||
	    msg->ret != SMTP_DSN_RET_UNSPEC || msg->envid) {
		control_escape(esc, cap, msg->envid ? msg->envid : "",
		               msg->envid ? strlen(msg->envid) : 0);
		control_line(o, "options:%s%s%s%s%s",
		             msg->body_type == SMTP_BODY_8BITMIME ? " body=8BITMIME"
		             : msg->body_type == SMTP_BODY_7BIT   ? " body=7BIT"
		                                                  : "",
		             msg->smtputf8 ? " smtputf8" : "",
		             msg->ret == SMTP_DSN_RET_FULL   ? " ret=FULL"
		             : msg->ret == SMTP_DSN_RET_HDRS ? " ret=HDRS"
		                                             : "",
		             msg->envid ? " envid=" : "", esc);
	}
	control_line(o, "state: %s%s", control_msg_states[sh->state],
	             sh->live ? "" : " (read from the spool: petrel is not running)");
	control_line(o, "recipients: %u pending of %zu", sh->j->npending, msg->nrcpts);
	for (i = 0; i < msg->nrcpts; i++)
		control_show_rcpt(o, sh, i, esc, cap);
	control_line(o, "%s", "");
	/* The header section, one line per stored line: CRLF off, unstuffed, escaped. */
	for (start = 0; start < sh->headers_len; start = end + 1) {
		const char *line = sh->headers + start;
		size_t len;

		end = start;
		while (end < sh->headers_len && sh->headers[end] != '\n')
			end++;
		len = end - start;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len > 0 && line[0] == '.') {
			line++;
			len--;
		}
		if (len * 4 + 4 > cap) {
			char *grown = realloc(esc, len * 4 + 4);
			if (grown == NULL) {
				free(esc);
				return -1;
			}
			esc = grown;
			cap = len * 4 + 4;
		}
		control_line(o, "%s", control_escape(esc, cap, line, len));
	}
	if (sh->truncated)
		control_line(o, "[the header section goes on past %d bytes]", CONTROL_HEADERS_MAX);
	free(esc);
	return 0;
}

/* ---- the server ---- */

static int
control_sockaddr(const char *dir, int dirfd, struct sockaddr_un *sun, socklen_t *len)
{
	int n;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", dir, CONTROL_SOCKET);
	if (n < 0 || (size_t)n >= sizeof(sun->sun_path)) {
		/* A long spool path: reach the directory through its open fd instead. */
		if (dirfd < 0) {
			errno = ENAMETOOLONG;
			return -1;
		}
		n = snprintf(sun->sun_path, sizeof(sun->sun_path), "/proc/self/fd/%d/%s", dirfd,
		             CONTROL_SOCKET);
	}
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
	return 0;
}

/* Does a petrel answer on the control socket of dir (reached through dirfd)? 1 yes, 0 no
 * (no socket, or a stale one: refused), -1 on other errors (errno). */
static int
control_answers(const char *dir, int dirfd)
{
	struct sockaddr_un sun;
	socklen_t sunlen;
	int fd, rc, saved;

	if (control_sockaddr(dir, dirfd, &sun, &sunlen) == -1 ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	rc = connect(fd, (struct sockaddr *)&sun, sunlen);
	saved = errno;
	close(fd);
	if (rc == 0)
		return 1;
	errno = saved;
	return saved == ENOENT || saved == ECONNREFUSED ? 0 : -1;
}

int
control_probe(const char *spool_dir, char **err)
{
	int dirfd, rc;

	*err = NULL;
	if ((dirfd = open(spool_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1)
		return 0; /* no spool yet: nobody runs on it */
	rc = control_answers(spool_dir, dirfd);
	close(dirfd);
	if (rc != 1)
		return 0; /* an error is left to control_server_new, with its context */
	if (asprintf(err, "another petrel is running on spool %s (%s/%s answers)", spool_dir,
	             spool_dir, CONTROL_SOCKET) == -1)
		*err = NULL;
	return -1;
}

struct control_server *
control_server_new(struct event_base *base, const char *spool_dir, struct scheduler *sched,
                   char **err)
{
	struct control_server *srv;
	struct sockaddr_un sun;
	socklen_t sunlen;
	struct stat st;
	const char *what = "allocate";
	int fd = -1, probe, saved = 0;

	*err = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return NULL;
	srv->dirfd = srv->slotsfd = srv->statefd = -1;
	srv->base = base;
	srv->sched = sched;
	if (asprintf(&srv->path, "%s/%s", spool_dir, CONTROL_SOCKET) == -1) {
		srv->path = NULL;
		goto fail;
	}
	what = "open the spool for";
	if ((srv->dirfd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    (srv->slotsfd = openat(srv->dirfd, "slots", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	            -1 ||
	    (srv->statefd = openat(srv->dirfd, "state", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	            -1 ||
	    control_sockaddr(spool_dir, srv->dirfd, &sun, &sunlen) == -1)
		goto fail;
	if (fstatat(srv->dirfd, CONTROL_SOCKET, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		what = "replace";
		if (!S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			goto fail;
		}
		/* Someone answering there is another petrel on this spool: that must not be. */
		if ((probe = control_answers(spool_dir, srv->dirfd)) == 1) {
			if (asprintf(err, "another petrel is running on spool %s (%s answers)",
			             spool_dir, srv->path) == -1)
				*err = NULL;
			control_server_free(srv);
			return NULL;
		}
		if (probe == -1 || unlinkat(srv->dirfd, CONTROL_SOCKET, 0) == -1)
			goto fail;
		log_info("control removed a stale socket path=%s", srv->path);
	}
	what = "listen on";
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sun, sunlen) == -1)
		goto fail;
	srv->bound = true;
	/* Not umask(): it is per process, and worker threads may be creating Maildir files. The
	 * spool directory (0700) keeps everyone else out meanwhile. */
	if (fchmodat(srv->dirfd, CONTROL_SOCKET, 0600, 0) == -1)
		goto fail;
	if (listen(fd, CONTROL_BACKLOG) == -1)
		goto fail;
	srv->lev = evconnlistener_new(base, control_accept_cb, srv,
	                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (srv->lev == NULL)
		goto fail;
	log_info("control listening path=%s", srv->path);
	return srv;
fail:
	saved = errno;
	if (fd >= 0 && srv->lev == NULL)
		close(fd);
	if (asprintf(err, "cannot %s the control socket %s: %s", what,
	             srv->path ? srv->path : spool_dir,
	             saved == EEXIST ? "it exists and is not a socket" : strerror(saved)) == -1)
		*err = NULL;
	control_server_free(srv);
	return NULL;
}

void
control_server_free(struct control_server *srv)
{
	if (srv == NULL)
		return;
	while (srv->conns != NULL)
		control_conn_free(srv->conns);
	if (srv->lev != NULL)
		evconnlistener_free(srv->lev);
	if (srv->bound && unlinkat(srv->dirfd, CONTROL_SOCKET, 0) == -1 && errno != ENOENT)
		log_warn("control cannot remove path=%s error=\"%s\"", srv->path, strerror(errno));
	if (srv->statefd >= 0)
		close(srv->statefd);
	if (srv->slotsfd >= 0)
		close(srv->slotsfd);
	if (srv->dirfd >= 0)
		close(srv->dirfd);
	free(srv->path);
	free(srv);
}

/* Answer a connection we will not serve, without waiting for it, and close it. */
static void
control_refuse(evutil_socket_t fd, const char *answer)
{
	(void)!send(fd, answer, strlen(answer), MSG_NOSIGNAL | MSG_DONTWAIT);
	evutil_closesocket(fd);
}

static void
control_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg)
{
	struct control_server *srv = arg;
	struct timeval tv = { CONTROL_IDLE_TIMEOUT, 0 };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct control_conn *c;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		log_warn("control refused uid=%d (only root and petrel's own user)",
		         len == sizeof(cred) ? (int)cred.uid : -1);
		control_refuse(fd, "error: permission denied\n");
		return;
	}
	if (srv->nconns >= CONTROL_MAX_CONNS) {
		control_refuse(fd, "error: too many control connections, try again\n");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(c);
		control_refuse(fd, "error: out of memory\n");
		return;
	}
	c->srv = srv;
	c->uid = (unsigned)cred.uid;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	bufferevent_setcb(c->bev, control_read_cb, control_write_cb, control_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONTROL_MAX_REQUEST * 4);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
control_conn_free(struct control_conn *c)
{
	struct control_server *srv = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	bufferevent_free(c->bev);
	free(c);
}

static void
control_read_cb(struct bufferevent *bev, void *arg)
{
	control_conn_process(arg);
}

/* The answers went out: take the next requests, or close after the last one. */
static void
control_write_cb(struct bufferevent *bev, void *arg)
{
	control_conn_process(arg);
}

static void
control_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *c = arg;

	if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
		c->eof = true; /* a half-close (socat, nc -N): answer, then close */
		control_conn_process(c);
		return;
	}
	control_conn_free(c);
}

/*
 * Answer every complete request while the answers stay under CONTROL_OUTPUT_HIGH (reading
 * pauses above it and resumes from the write callback), in order. May free c.
 */
static void
control_conn_process(struct control_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len;
	char *line;

	while (evbuffer_get_length(out) < CONTROL_OUTPUT_HIGH) {
		if (c->discarding) { /* the rest of a line too long, up to its end */
			struct evbuffer_ptr eol =
			        evbuffer_search_eol(in, NULL, &len, EVBUFFER_EOL_LF);
			if (eol.pos < 0) {
				evbuffer_drain(in, evbuffer_get_length(in));
				break;
			}
			evbuffer_drain(in, (size_t)eol.pos + len);
			c->discarding = false;
		}
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > CONTROL_MAX_REQUEST) {
				evbuffer_drain(in, evbuffer_get_length(in));
				evbuffer_add_printf(out, "error: %s\n",
				                    control_parse_error(CONTROL_PARSE_TOO_LONG));
				c->discarding = true;
			}
			break;
		}
		control_conn_handle(c, line, len);
		free(line);
	}
	if (c->eof && evbuffer_get_length(out) == 0) {
		control_conn_free(c);
		return;
	}
	if (c->eof || evbuffer_get_length(out) >= CONTROL_OUTPUT_HIGH)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

/* scheduler_foreach: keep every summary (valid until we return to the loop) to sort them. */
struct control_collect {
	struct scheduler_msg_summary *v;
	size_t n, cap;
	bool oom;
};

static void
control_collect_cb(void *arg, const struct scheduler_msg_summary *sum)
{
	struct control_collect *cc = arg;
	struct scheduler_msg_summary *grown;

	if (cc->oom)
		return;
	if (cc->n == cc->cap) {
		size_t cap = cc->cap ? cc->cap * 2 : 256;
		if ((grown = realloc(cc->v, cap * sizeof(*grown))) == NULL) {
			cc->oom = true;
			return;
		}
		cc->v = grown;
		cc->cap = cap;
	}
	cc->v[cc->n++] = *sum;
}

static int
control_summary_cmp(const void *a, const void *b)
{
	const struct scheduler_msg_summary *x = a, *y = b;

	return strcmp(x->msg->id, y->msg->id);
}

static void
control_serve_list(struct control_conn *c, struct control_out *o, bool by_domain)
{
	struct control_collect cc = { 0 };
	struct control_list *l;
	size_t i;
	int rc;

	scheduler_foreach(c->srv->sched, control_collect_cb, &cc);
	if (cc.n > 1)
		qsort(cc.v, cc.n, sizeof(*cc.v), control_summary_cmp);
	l = cc.oom ? NULL : control_list_new(o, by_domain, time(NULL));
	for (i = 0; l != NULL && i < cc.n; i++)
		control_list_add(l, &cc.v[i]);
	rc = control_list_end(l);
	free(cc.v);
	evbuffer_add_printf(o->buf, rc == 0 ? "ok\n" : "error: out of memory\n");
}

struct control_show_ctx {
	struct control_show *sh;
	struct control_out *o;
	int rc;
};

static void
control_show_cb(void *arg, const struct scheduler_msg_summary *sum)
{
	struct control_show_ctx *ctx = arg;

	control_show_live(ctx->sh, sum);
	ctx->rc = control_format_show(ctx->o, ctx->sh, time(NULL));
}

static void
control_serve_show(struct control_conn *c, struct control_out *o, const char *id)
{
	struct control_show_ctx ctx = { .o = o, .rc = -1 };
	/* The queue knows the message's slot: one file read, never a walk of the spool. */
	int64_t slot = scheduler_msg_slot(c->srv->sched, id);

	if (slot < 0 || control_show_load(c->srv->slotsfd, c->srv->statefd, id, slot, time(NULL),
	                                  &ctx.sh) == -1) {
		if (slot < 0)
			errno = ENOENT;
		evbuffer_add_printf(o->buf, "error: %s%s\n",
		                    errno == ENOENT ? "no such message: " : "cannot read ",
		                    errno == ENOENT ? id : strerror(errno));
		return;
	}
	/* Not queued any more (out of memory in the lookup): show what the spool says. */
	if (scheduler_lookup(c->srv->sched, id, control_show_cb, &ctx) == -1)
		ctx.rc = control_format_show(o, ctx.sh, time(NULL));
	control_show_free(ctx.sh);
	evbuffer_add_printf(o->buf, ctx.rc == 0 ? "ok\n" : "error: out of memory\n");
}

/* One request line: parse, run, answer (data lines, then "ok" or "error: ..."). */
static void
control_conn_handle(struct control_conn *c, const char *line, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct control_out o = { .buf = out, .prefix = " " };
	struct control_request req;
	enum control_parse_result pr = control_parse(line, len, &req);
	struct scheduler *s = c->srv->sched;
	char esc[CONTROL_MAX_REQUEST + 4];
	size_t n;
	int r;

	log_escape(esc, sizeof(esc), line, len);
	if (pr != CONTROL_PARSE_OK) {
		log_info("control request=\"%s\" uid=%u error=\"%s\"", esc, c->uid,
		         control_parse_error(pr));
		evbuffer_add_printf(out, "error: %s\n", control_parse_error(pr));
		return;
	}
	if (req.verb == CONTROL_LIST || req.verb == CONTROL_SHOW)
		log_debug("control request=\"%s\" uid=%u", esc, c->uid);
	else
		log_info("control request=\"%s\" uid=%u", esc, c->uid);
	switch (req.verb) {
	case CONTROL_LIST:
		control_serve_list(c, &o, req.by_domain);
		return;
	case CONTROL_SHOW:
		control_serve_show(c, &o, req.id);
		return;
	case CONTROL_FLUSH:
		n = scheduler_flush(s);
		control_line(&o, "flushed: %zu deferred deliver%s due now", n,
		             n == 1 ? "y is" : "ies are");
		evbuffer_add_printf(out, "ok\n");
		return;
	case CONTROL_DELETE:
		r = scheduler_delete(s, req.id);
		if (r > 0)
			control_line(&o, "deleted %s (%d delivery attempt%s under way: %s)", req.id,
			             r, r == 1 ? "" : "s",
			             "it finishes and its result is ignored, no DSN");
		else if (r == 0)
			control_line(&o, "deleted %s", req.id);
		break;
	case CONTROL_HOLD:
		r = scheduler_hold(s, req.id);
		if (r >= 0)
			control_line(&o, r == 0 ? "held %s" : "%s was held already", req.id);
		break;
	case CONTROL_RELEASE:
		r = scheduler_release(s, req.id);
		if (r >= 0)
			control_line(&o, r == 0 ? "released %s (due now)" : "%s was not held",
			             req.id);
		break;
	default:
		r = -1;
		errno = EINVAL;
		break;
	}
	if (r >= 0)
		evbuffer_add_printf(out, "ok\n");
	else if (errno == ENOENT)
		evbuffer_add_printf(out, "error: no such message: %s\n", req.id);
	else
		evbuffer_add_printf(out, "error: %s: %s\n", req.id, strerror(errno));
}

/* ---- the client ---- */

static void
control_cli_usage(FILE *f)
{
	fprintf(f, "usage: petrel [-c FILE] queue list [--by-domain]\n"
	           "       petrel [-c FILE] queue show ID\n"
	           "       petrel [-c FILE] queue flush\n"
	           "       petrel [-c FILE] queue delete ID\n"
	           "       petrel [-c FILE] queue hold ID\n"
	           "       petrel [-c FILE] queue release ID\n");
}

/* Write what buf holds to f (and drain it). */
static void
control_cli_drain(struct evbuffer *buf, FILE *f)
{
	char chunk[16384];
	int n;

	while ((n = evbuffer_remove(buf, chunk, sizeof(chunk))) > 0)
		fwrite(chunk, 1, (size_t)n, f);
}

static int
control_cli_send(int fd, const char *line, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = send(fd, line, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		line += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Read the answer: data lines to stdout, the final line decides. Returns the exit status. */
static int
control_cli_answer(int fd, const char *path)
{
	char *buf = NULL, *grown, *nl;
	size_t len = 0, cap = 0, start = 0, llen;
	ssize_t n;
	int rc = -1;

	while (rc < 0) {
		while (rc < 0 && len > start &&
		       (nl = memchr(buf + start, '\n', len - start)) != NULL) {
			char *line = buf + start;

			llen = (size_t)(nl - line);
			start += llen + 1;
			if (llen > 0 && line[llen - 1] == '\r')
				llen--;
			if (llen > 0 && line[0] == ' ') {
				fwrite(line + 1, 1, llen - 1, stdout);
				fputc('\n', stdout);
			} else if (llen == 2 && memcmp(line, "ok", 2) == 0) {
				rc = 0;
			} else if (llen > 7 && memcmp(line, "error: ", 7) == 0) {
				fflush(stdout);
				fprintf(stderr, "petrel: %.*s\n", (int)(llen - 7), line + 7);
				rc = 1;
			} else {
				fflush(stdout);
				fprintf(stderr, "petrel: unexpected answer on %s: %.*s\n", path,
				        (int)(llen > 200 ? 200 : llen), line);
				rc = 1;
			}
		}
		if (rc >= 0)
			break;
		if (start > 0) {
			memmove(buf, buf + start, len - start);
			len -= start;
			start = 0;
		}
		if (len == cap) {
			if (cap >= CONTROL_CLIENT_LINE_MAX) {
				fprintf(stderr, "petrel: an answer line from %s is too long\n",
				        path);
				rc = 1;
				break;
			}
			cap = cap ? cap * 2 : 65536;
			if ((grown = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "petrel: out of memory\n");
				rc = 1;
				break;
			}
			buf = grown;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			fprintf(stderr, "petrel: no answer from petrel within %d s (%s)\n",
			        CONTROL_CLIENT_TIMEOUT, path);
			rc = 1;
		} else if (n < 0) {
			fprintf(stderr, "petrel: reading %s: %s\n", path, strerror(errno));
			rc = 1;
		} else if (n == 0) {
			fprintf(stderr, "petrel: %s closed before the end of the answer\n", path);
			rc = 1;
		} else {
			len += (size_t)n;
		}
	}
	free(buf);
	fflush(stdout);
	return rc;
}

struct control_cli_list {
	struct control_out *o;
	struct control_list *l;
	int statefd;
	time_t now;
	int rc;
};

static void
control_cli_list_one(void *arg, struct message *msg)
{
	struct control_cli_list *cl = arg;
	struct scheduler_msg_summary sum;
	struct control_journal *j = NULL;

	if (cl->rc == 0 && (j = control_journal_new(msg->nrcpts)) == NULL)
		cl->rc = 2; /* out of memory */
	if (j == NULL) {
		message_free(msg);
		return;
	}
	if (cl->statefd >= 0)
		spool_read_state(cl->statefd, msg->id, control_journal_cb, j);
	control_summary_from_journal(msg, j, cl->now, &sum);
	if (control_list_add(cl->l, &sum) == -1)
		cl->rc = 2;
	control_journal_free(j);
	message_free(msg);
	if (evbuffer_get_length(cl->o->buf) > 65536)
		control_cli_drain(cl->o->buf, stdout);
}

/* `list` with petrel stopped: every committed slot of slots/ with its journal, read-only. */
static int
control_cli_offline_list(int slotsfd, int statefd, bool by_domain, const char *spool_dir)
{
	struct evbuffer *buf = evbuffer_new();
	struct control_out o = { .buf = buf, .prefix = "" };
	struct control_cli_list cl = { .o = &o, .statefd = statefd, .now = time(NULL) };

	if (buf == NULL || (cl.l = control_list_new(&o, by_domain, cl.now)) == NULL) {
		fprintf(stderr, "petrel: out of memory\n");
		if (buf)
			evbuffer_free(buf);
		return 1;
	}
	if (slotsfd >= 0 && spool_list(slotsfd, control_cli_list_one, &cl) == -1) {
		fprintf(stderr, "petrel: cannot read %s/slots: %s\n", spool_dir, strerror(errno));
		cl.rc = 1;
	}
	if (control_list_end(cl.l) == -1)
		cl.rc = 2;
	control_cli_drain(buf, stdout);
	fflush(stdout);
	if (cl.rc == 2)
		fprintf(stderr, "petrel: out of memory\n");
	evbuffer_free(buf);
	return cl.rc != 0;
}

/* `delete` with petrel stopped: the slot is marked free, the journal removed. */
static int
control_cli_offline_delete(int slotsfd, int statefd, const char *id)
{
	if (slotsfd < 0 || spool_delete_stopped(slotsfd, statefd, id) == -1) {
		fprintf(stderr, "petrel: %s%s\n",
		        slotsfd < 0 || errno == ENOENT ? "no such message: " : "cannot delete: ",
		        slotsfd < 0 || errno == ENOENT ? id : strerror(errno));
		return 1;
	}
	printf("deleted %s\n", id);
	fflush(stdout);
	return 0;
}

/* `show` with petrel stopped. */
static int
control_cli_offline_show(int slotsfd, int statefd, const char *id)
{
	struct evbuffer *buf = evbuffer_new();
	struct control_out o = { .buf = buf, .prefix = "" };
	struct control_show *sh = NULL;
	int rc = 1;

	if (buf == NULL)
		fprintf(stderr, "petrel: out of memory\n");
	else if (slotsfd < 0 || control_show_load(slotsfd, statefd, id, -1, time(NULL), &sh) == -1)
		fprintf(stderr, "petrel: %s%s\n",
		        slotsfd < 0 || errno == ENOENT ? "no such message: " : "cannot read ",
		        slotsfd < 0 || errno == ENOENT ? id : strerror(errno));
	else if (control_format_show(&o, sh, time(NULL)) == -1)
		fprintf(stderr, "petrel: out of memory\n");
	else
		rc = 0;
	if (buf != NULL) {
		control_cli_drain(buf, stdout);
		evbuffer_free(buf);
	}
	fflush(stdout);
	control_show_free(sh);
	return rc;
}

static int
control_cli_offline(const char *spool_dir, int dirfd, const struct control_request *req,
                    const char *path)
{
	int slotsfd = -1, statefd = -1, rc;

	if (req->verb != CONTROL_LIST && req->verb != CONTROL_SHOW && req->verb != CONTROL_DELETE) {
		fprintf(stderr,
		        "petrel: petrel is not running (nothing answers on %s): queue %s "
		        "needs the running daemon\n",
		        path, control_verbs[req->verb].name);
		return 1;
	}
	fprintf(stderr, "petrel: petrel is not running: %s the spool %s\n",
	        req->verb == CONTROL_DELETE ? "writing to" : "reading", spool_dir);
	if (dirfd >= 0) {
		slotsfd = openat(dirfd, "slots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		statefd = openat(dirfd, "state", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (slotsfd < 0 && dirfd >= 0 && errno != ENOENT) {
		fprintf(stderr, "petrel: cannot open %s/slots: %s\n", spool_dir, strerror(errno));
		return 1;
	}
	if (req->verb == CONTROL_LIST)
		rc = control_cli_offline_list(slotsfd, statefd, req->by_domain, spool_dir);
	else if (req->verb == CONTROL_DELETE)
		rc = control_cli_offline_delete(slotsfd, statefd, req->id);
	else
		rc = control_cli_offline_show(slotsfd, statefd, req->id);
	if (slotsfd >= 0)
		close(slotsfd);
	if (statefd >= 0)
		close(statefd);
	return rc;
}

int
control_cli(const char *spool_dir, int argc, char **argv)
{
	struct timeval tv = { CONTROL_CLIENT_TIMEOUT, 0 };
	struct control_request req;
	enum control_parse_result pr;
	struct sockaddr_un sun;
	socklen_t sunlen;
	char line[CONTROL_MAX_REQUEST + 2] = "", *path = NULL;
	size_t len = 0, alen;
	int i, fd = -1, dirfd, rc = 1;

	for (i = 0; i < argc; i++) {
		alen = strlen(argv[i]);
		if (alen == 0 || strpbrk(argv[i], " \t\r\n") != NULL ||
		    len + alen + 1 > CONTROL_MAX_REQUEST) {
			len = 0;
			break;
		}
		if (i > 0)
			line[len++] = ' ';
		memcpy(line + len, argv[i], alen);
		len += alen;
	}
	pr = len == 0 && argc > 0 ? CONTROL_PARSE_USAGE : control_parse(line, len, &req);
	if (pr == CONTROL_PARSE_BAD_ID) {
		fprintf(stderr,
		        "petrel: bad message id '%s' (16 lowercase hex digits, as queue list "
		        "shows them)\n",
		        argc > 1 ? argv[1] : "");
		return 1;
	}
	if (pr != CONTROL_PARSE_OK) {
		if (pr == CONTROL_PARSE_UNKNOWN)
			fprintf(stderr, "petrel: unknown queue command '%s'\n", argv[0]);
		control_cli_usage(stderr);
		return 2;
	}
	line[len++] = '\n';
	if (asprintf(&path, "%s/%s", spool_dir, CONTROL_SOCKET) == -1) {
		fprintf(stderr, "petrel: out of memory\n");
		return 1;
	}
	dirfd = open(spool_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd == -1 && errno != ENOENT) {
		fprintf(stderr, "petrel: cannot open the spool %s: %s\n", spool_dir,
		        strerror(errno));
		goto done;
	}
	if (control_sockaddr(spool_dir, dirfd, &sun, &sunlen) == -1 ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1) {
		fprintf(stderr, "petrel: %s: %s\n", path, strerror(errno));
		goto done;
	}
	if (connect(fd, (struct sockaddr *)&sun, sunlen) == -1) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			rc = control_cli_offline(spool_dir, dirfd, &req, path);
		else
			fprintf(stderr, "petrel: cannot connect to %s: %s%s\n", path,
			        strerror(errno),
			        errno == EACCES ? " (run it as root or as petrel's user)" : "");
		goto done;
	}
	if (control_cli_send(fd, line, len) == -1) {
		fprintf(stderr, "petrel: writing to %s: %s\n", path, strerror(errno));
		goto done;
	}
	rc = control_cli_answer(fd, path);
done:
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	free(path);
	return rc;
}
