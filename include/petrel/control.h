/*
 * control.h: queue control, what a Postfix (postqueue, postsuper) or OpenSMTPD (smtpctl) admin
 * expects: `petrel [-c FILE] queue list [--by-domain] | show ID | flush | delete ID | hold ID |
 * release ID`.
 *
 * Transport: a unix stream socket, <spool>/control.sock, mode 0600, created by the running
 * daemon after its listeners and removed when it exits. At start a stale socket (nobody accepts
 * on it: a crash) is replaced; a live one stops the start, since another petrel runs on this
 * spool. Only root and the user petrel runs as are served (SO_PEERCRED), and the spool
 * directory (0700) already keeps everyone else out.
 *
 * Protocol (text, one request per line; try `echo list | socat - UNIX:<spool>/control.sock`):
 * the client sends a request line (LF or CRLF, at most CONTROL_MAX_REQUEST octets); the server
 * answers with zero or more data lines, each starting with one space (so no data line can look
 * like the end), then one final line, "ok" or "error: <reason>". Several requests on one
 * connection are answered in order; a line too long gets "error: request too long" and is
 * skipped up to its end. Data lines never hold control characters (escaped \xHH).
 *   list                 a header, one line per message, a total ("queue is empty" if so)
 *   list --by-domain     one line per destination domain of pending recipients
 *   show ID              envelope, each recipient with its state, the header section
 *   flush                every deferred delivery is due now (held messages stay held)
 *   delete ID            remove a message from the queue and the spool, without any DSN
 *   hold ID, release ID  stop / resume delivering a message (the hold survives restarts)
 *
 * Without the daemon (no socket, or connection refused), `list` and `show` read the spool
 * directly and read-only (slots/ and state/ only: never spool_open(), which starts a thread and
 * frees torn slots); flush, delete, hold and release need the daemon and say so.
 *
 * The formatting is shared by both paths, so the answer looks the same whether the daemon or
 * the spool answered; it is pure (evbuffer in, no I/O) and tested in tests/unit/test_control.c.
 */
#ifndef PETREL_CONTROL_H
#define PETREL_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "petrel/message.h"
#include "petrel/scheduler.h"

#define CONTROL_SOCKET      "control.sock" /* under the spool directory */
#define CONTROL_MAX_REQUEST 512            /* octets of a request line, line end excluded */
#define CONTROL_ERROR_SHOWN 60             /* `list` cuts a last error to this many octets */

struct evbuffer;
struct event_base;
struct control_server;

/* ---- requests ---- */

enum control_verb {
	CONTROL_LIST,
	CONTROL_SHOW,
	CONTROL_FLUSH,
	CONTROL_DELETE,
	CONTROL_HOLD,
	CONTROL_RELEASE,
};

struct control_request {
	enum control_verb verb;
	bool by_domain;              /* list --by-domain */
	char id[MESSAGE_ID_LEN + 1]; /* show, delete, hold, release */
};

enum control_parse_result {
	CONTROL_PARSE_OK,
	CONTROL_PARSE_EMPTY,    /* nothing but spaces */
	CONTROL_PARSE_UNKNOWN,  /* not a verb we know */
	CONTROL_PARSE_USAGE,    /* a missing or extra argument, an unknown option */
	CONTROL_PARSE_BAD_ID,   /* not 16 lowercase hex digits */
	CONTROL_PARSE_TOO_LONG, /* over CONTROL_MAX_REQUEST */
};

/* Parse one request line (without its line end; words separated by spaces or tabs). Pure. */
enum control_parse_result control_parse(const char *line, size_t len, struct control_request *req);

/* The text of a parse error, for "error: ..." (static). */
const char *control_parse_error(enum control_parse_result r);

/* ---- the journal, state/<id> (format: scheduler.c), as the CLI shows it ---- */

struct control_journal {
	size_t nrcpts;
	uint8_t *state;     /* enum scheduler_rcpt_state per recipient */
	char **text;        /* pending: its last temporary error; final: the deciding reply */
	time_t *at;         /* final: when; pending: the last failed attempt; 0 if unknown */
	unsigned *attempts; /* failed attempts so far */
	time_t *next;       /* pending: the next attempt written with its last deferral, or 0 */
	unsigned npending;
	bool held;   /* the last of "- held" / "- released" was a hold */
	bool warned; /* a "delayed" DSN went out */
};

/* A journal for nrcpts recipients, all pending. NULL when out of memory. */
struct control_journal *control_journal_new(size_t nrcpts);
void control_journal_free(struct control_journal *j);

/* Apply one complete journal line (NUL-terminated, no '\n'; len = strlen). Lines it does not
 * understand are skipped, as the scheduler's recovery does. Pure. */
void control_journal_line(struct control_journal *j, const char *line, size_t len);

/* ---- output ---- */

/* Where formatted lines go: each line is `prefix`, the text, '\n' (" " for the protocol). */
struct control_out {
	struct evbuffer *buf;
	const char *prefix;
};

/*
 * Copy src for display: valid UTF-8 is kept, every other byte and every control character
 * (C0, DEL, C1) becomes \xHH; cut at dstsize-1 octets with "..." (never inside an escape or a
 * UTF-8 sequence). Returns dst.
 */
char *control_escape(char *dst, size_t dstsize, const char *src, size_t len);

/* "2026-11-23T21:10:02Z" (UTC) into buf (at least 21 octets); "-" for t == 0. Returns buf. */
char *control_iso_time(char *buf, size_t size, time_t t);

/* A short age: "45s", "12m", "3h05m", "2d04h". Returns buf. */
char *control_age(char *buf, size_t size, long long seconds);

/*
 * `list`, streamed: new() (nothing written yet), add() each message in the order to show them,
 * end() writes the rest (the total line, or the whole per-domain table) and frees. Summaries
 * are borrowed for the add() call only. -1 only when out of memory (the list is then freed by
 * end(), which returns -1 too).
 */
struct control_list;
struct control_list *control_list_new(struct control_out *o, bool by_domain, time_t now);
int control_list_add(struct control_list *l, const struct scheduler_msg_summary *sum);
int control_list_end(struct control_list *l);

/* A summary of a message read from the spool (the daemon's rules: the state is held, or
 * deferred when a pending recipient's next attempt is later than now, else active). Borrows msg
 * and j, which must outlive sum. */
void control_summary_from_journal(const struct message *msg, const struct control_journal *j,
                                  time_t now, struct scheduler_msg_summary *sum);

/* `show`: a message read from the spool, possibly completed with what the daemon knows. */
struct control_show {
	struct message *msg;       /* the envelope (owned) */
	struct control_journal *j; /* its journal (owned) */
	bool *active;              /* per recipient: being delivered now (daemon only) */
	enum scheduler_msg_state state;
	bool live;     /* the daemon answered (states and times are its own) */
	char *headers; /* the header section as stored (CRLF, stuffed), owned */
	size_t headers_len;
	bool truncated; /* the header section is longer than what was read */
};

/* Read message <id> from its slot (envelope and header section, at most 64 KiB) and state/<id>
 * from directory fds, read-only: from slots/<slot> when the caller knows it (the daemon), else
 * (slot -1) found by reading every slot's record. 0, or -1 (errno: ENOENT no such message,
 * ENOMEM...). */
int control_show_load(int slotsfd, int statefd, const char *id, int64_t slot, time_t now,
                      struct control_show **out);
void control_show_free(struct control_show *sh);

/* Overlay what the daemon knows (scheduler_lookup's summary, with live). */
void control_show_live(struct control_show *sh, const struct scheduler_msg_summary *sum);

/* Write `show`. -1 when out of memory. */
int control_format_show(struct control_out *o, const struct control_show *sh, time_t now);

/* ---- the server, in the daemon ---- */

/*
 * Listen on <spool_dir>/control.sock on the loop (replacing a stale socket). Borrows sched (it
 * must outlive the server). NULL with *err (malloc'd; NULL when out of memory) on failure,
 * including when another petrel answers on the socket.
 */
struct control_server *control_server_new(struct event_base *base, const char *spool_dir,
                                          struct scheduler *sched, char **err);

/* Close every control connection, stop listening, remove the socket. NULL is a no-op. */
void control_server_free(struct control_server *srv);

/*
 * Before the spool is opened (spool_open empties tmp/, which belongs to a running petrel): -1
 * with *err (malloc'd) when another petrel answers on spool_dir's control socket, else 0.
 */
int control_probe(const char *spool_dir, char **err);

/* ---- the client, `petrel queue ...` ---- */

/*
 * Run `petrel queue ARGS...` against the daemon of spool_dir, or (list, show) its spool when
 * it is not running. Prints the answer on stdout, errors on stderr. Returns the exit status:
 * 0 done, 1 error (not running, no such message, bad id...), 2 usage.
 */
int control_cli(const char *spool_dir, int argc, char **argv);

#endif
