/*
 * config.h: petrel's YAML configuration (libyaml) → struct petrel_config.
 *
 * The config is immutable after load: a reload builds a new one and swaps it between events.
 * Every key has a default, so an empty file is a valid config. Unknown keys, wrong types and bad
 * values are errors that name the file, line, column and key ("petrel.yaml:7:5: limits.max_errors:
 * expected a whole number, got 'ten'"). All errors of a file are reported, not just the first.
 */
#ifndef PETREL_CONFIG_H
#define PETREL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "petrel/net/cidr.h"

enum config_durability {
	CONFIG_DURABILITY_FSYNC = 0, /* 250 only after the message is synced to disk (default) */
	CONFIG_DURABILITY_NONE,      /* written, not synced: benchmarks only, unsafe */
};

enum config_role {
	CONFIG_ROLE_RELAY = 0,  /* port-25 style: anyone may send to local domains */
	CONFIG_ROLE_SUBMISSION, /* AUTH required for everything */
};

enum config_log_target {
	CONFIG_LOG_STDERR = 0, /* one line per event on stderr (journald collects it) */
	CONFIG_LOG_SYSLOG,     /* syslog(3), facility mail, ident "petrel" */
};

enum config_log_level {
	CONFIG_LOG_ERROR = 0,
	CONFIG_LOG_WARN,
	CONFIG_LOG_INFO, /* default */
	CONFIG_LOG_DEBUG,
};

enum config_listen_tls {
	CONFIG_LISTEN_TLS_DEFAULT = 0, /* starttls when tls.certificate is set, else none */
	CONFIG_LISTEN_TLS_NONE,        /* no STARTTLS offered */
	CONFIG_LISTEN_TLS_STARTTLS,    /* STARTTLS offered (RFC 3207); needs tls.certificate */
	CONFIG_LISTEN_TLS_IMPLICIT,    /* TLS from the first byte (RFC 8314, port 465) */
};

struct config_listen {
	char *address;                /* as written: "127.0.0.1:2525", "[::1]:2525", "*:25" */
	struct sockaddr_storage addr; /* resolved numerically (no DNS) */
	socklen_t addrlen;
	enum config_role role;
	enum config_listen_tls tls; /* key `tls:` none|starttls|implicit */
	unsigned line;              /* line of the entry in the file, for messages */
};

/* routes: — where mail for a domain goes (first match wins). */
enum config_route_kind {
	CONFIG_ROUTE_MX = 0,  /* mx: true — MX lookup (the default route) */
	CONFIG_ROUTE_RELAY,   /* relay: host:port — a smarthost */
	CONFIG_ROUTE_MAILDIR, /* maildir: template — local delivery */
	CONFIG_ROUTE_DISCARD, /* discard: true — accept and drop (tests, sinks) */
};

enum config_route_tls {
	CONFIG_TLS_OPPORTUNISTIC = 0, /* default: STARTTLS when offered, plain otherwise */
	CONFIG_TLS_NONE,
	CONFIG_TLS_REQUIRE,
};

struct config_route {
	char *domain; /* lower case; "*" = any; ".example.net" = any subdomain of it;
	               * "example.net" = that domain only */
	enum config_route_kind kind;
	char *maildir;       /* MAILDIR: template with %u (local part), %d (domain), %% */
	char *relay_host;    /* RELAY: host name (lower case) or numeric address (no brackets) */
	unsigned relay_port; /* RELAY: default 25 */
	unsigned mx_port;    /* MX: port to connect to, default 25 (key `port:`, tests use it) */
	enum config_route_tls tls; /* key `tls:` none|opportunistic|require; RELAY and MX only */
	char *auth_user;           /* key `auth: { user: …, password_file: … }` (TLS issue);
	                            * RELAY only; both or neither are set */
	char *auth_password_file;
	char *ca_file; /* key `ca_file:` (TLS issue); RELAY and MX only; NULL: system store */
	unsigned line; /* line of the entry, for messages */
};

/* queue.priorities: — the first rule (file order) whose given fields all match wins; a
 * recipient_domain rule matches if any recipient of the message is in that domain. At least one
 * of the two domains is set. */
struct config_priority {
	char *sender_domain;    /* match on the sender's domain (lower case), or NULL */
	char *recipient_domain; /* match on a recipient's domain (lower case), or NULL */
	int priority;           /* key `priority:` high (10) | normal (0) | low (-10) | integer
	                         * -100..100; higher goes first */
};

struct petrel_config {
	unsigned refs;  /* config_ref / config_free; 1 after load. Main thread only */
	char *path;     /* the file it was read from */
	char *hostname; /* default: gethostname() */
	char *spool;    /* default: "./var/spool"; relative to the working directory */
	enum config_durability durability;
	enum config_log_level log_level;   /* key: log_level: error|warn|info|debug */
	enum config_log_target log_target; /* key: log_target: stderr (default) | syslog */
	char *user;  /* user: the user to run as once the listeners are bound (started as root);
	              * checked at load: exists, not uid 0 (priv.h). NULL = do not switch */
	char *group; /* group: its group; NULL = the user's primary group. Needs user: */

	struct config_listen *listen; /* default: one entry 127.0.0.1:2525 relay */
	size_t nlisten;

	/* relay: */
	struct cidr *relay_networks; /* default: 127.0.0.0/8 and ::1/128 */
	size_t nrelay_networks;
	char **local_domains; /* lower-cased; default: ["localhost"] */
	size_t nlocal_domains;

	/* limits: */
	uint64_t max_message_size;       /* bytes; default 35 MiB (35M). 0 = no limit advertised */
	unsigned max_recipients;         /* default 1000; at least 100 (RFC 5321 §4.5.3.1.8) */
	unsigned max_connections;        /* default 10000 */
	unsigned max_connections_per_ip; /* default 100 */
	unsigned max_errors;             /* default 10 */
	unsigned timeout_command;        /* seconds; limits.timeouts.command; default 300 */
	unsigned timeout_data;           /* seconds; limits.timeouts.data; default 600 */

	/* routes: — default one route {domain: "*", mx: true} */
	struct config_route *routes;
	size_t nroutes;

	/* queue: */
	unsigned *retry; /* seconds, each >= 1, nretry >= 1; then the last one repeats;
	                  * default [1m, 5m, 15m, 30m, 1h, 2h, 4h] */
	size_t nretry;
	unsigned max_lifetime;                /* seconds, >= 60; default 5d */
	unsigned delay_warning;               /* seconds; default 4h; 0 = never, else >= 60 and
	                                       * < max_lifetime */
	unsigned concurrency;                 /* outbound sessions in all; default 500 */
	unsigned concurrency_per_destination; /* per next-hop domain/host, <= concurrency;
	                                       * default 20, or concurrency if that is smaller */
	struct config_priority *priorities;   /* default none */
	size_t npriorities;

	/* dns: */
	char *nameservers; /* "127.0.0.1:5353,[::1]:53" joined from the list, or NULL
	                    * for /etc/resolv.conf; key dns.nameservers: [..] */

	/* tls: — the server certificate (inbound STARTTLS and implicit TLS). The loader checks
	 * that the files (and auth.users_file) can be read, not what they hold: tls and auth do. */
	char *tls_certificate; /* tls.certificate: PEM chain (leaf first); NULL = no TLS */
	char *tls_key;         /* tls.key: PEM private key; required with certificate */
	int tls_min_version;   /* tls.min_version: TLSv1.2 (default) | TLSv1.3, as the
	                        * OpenSSL constant TLS1_2_VERSION / TLS1_3_VERSION */
	char *tls_ciphers;     /* tls.ciphers: OpenSSL cipher list for TLS <= 1.2, NULL = default */

	/* auth: — SMTP AUTH for clients (RFC 4954) */
	char *auth_users_file; /* auth.users_file: "name:crypt-hash" lines; NULL = no AUTH */
	bool auth_require_tls; /* auth.require_tls: default true (AUTH only after STARTTLS) */
	bool auth_sender_login_match; /* auth.sender_login_match: default false */
	unsigned auth_max_failures;   /* auth.max_failures: failures per IP before 421, default 5;
	                               * 1..1000 */
	unsigned auth_failure_window; /* auth.failure_window: seconds, default 15m; >= 1 */

	/* stats: — the HTTP endpoint (/metrics, /stats, /healthz, /); off without the section */
	char *stats_address;                /* stats.address as written; NULL = no endpoint */
	struct sockaddr_storage stats_addr; /* resolved numerically (no DNS) */
	socklen_t stats_addrlen;
	char *stats_token;        /* stats.token: "Authorization: Bearer <token>" required on
	                           * /metrics, /stats and /healthz when set; NULL = none */
	struct cidr *stats_allow; /* stats.allow: who may connect; default 127.0.0.0/8, ::1/128 */
	size_t nstats_allow;
};

/*
 * Load and validate `path`. On success returns 0 and *out owns a new config (free with
 * config_free). On failure returns -1, *out is NULL, and *errors is a malloc'd string of one or
 * more lines "FILE:LINE:COL: KEY: message\n" (caller frees). A missing/unreadable file is one
 * error line "FILE: cannot open: strerror".
 *
 * Also: on success *errors is set to NULL; `errors` may be NULL (no report wanted); the report
 * itself is NULL if memory ran out while writing it. KEY is the dotted path of the key, list
 * items counted from 0 ("listen[1].address"); a YAML syntax error is reported as
 * "FILE:LINE:COL: syntax error: libyaml's message" and stops the load. Anchors and aliases are
 * resolved; merge keys ("<<") are not supported. At most 100 lines are reported, then a count.
 */
int config_load(const char *path, struct petrel_config **out, char **errors);

/* The same, from a string in memory; `name` stands for the file name in messages. */
int config_load_string(const char *name, const char *text, size_t len, struct petrel_config **out,
                       char **errors);

/* Another reference (a session, a delivery attempt, the stats endpoint keep the config they
 * started with while a reload installs a new one). Returns cfg. */
struct petrel_config *config_ref(struct petrel_config *cfg);

/* Drop one reference; the last one frees. NULL is ignored. */
void config_free(struct petrel_config *cfg);

/*
 * Reload (SIGHUP): the settings a running petrel cannot change, because they were used once at
 * the start (spool, durability, user, group, log_target, dns.nameservers, stats.address: the
 * spool and its sync thread are open, privileges are dropped, the resolver and the stats
 * socket exist). Where `fresh` differs from `running`, the running value is copied into fresh
 * (so that fresh describes what actually runs), and the key's name is appended to `changed`
 * ("spool, durability", NUL-terminated, truncated to size). Returns the number of keys kept,
 * or -1 when memory ran out (fresh is then unusable: free it).
 */
int config_keep_fixed(struct petrel_config *fresh, const struct petrel_config *running,
                      char *changed, size_t size);

/* "35M" → 36700160. K/M/G are powers of 1024, optional "B"/"iB" suffix ("35MB", "35MiB"), no
 * suffix = bytes. Returns 0 or -1 on syntax error or overflow. */
int config_parse_size(const char *s, uint64_t *out);

/* "300s", "5m", "1h", "2d", "90" (seconds) → seconds. Returns 0 or -1. */
int config_parse_duration(const char *s, uint64_t *out_seconds);

/* "127.0.0.1:2525", "[::1]:25", "*:25" (all IPv4+IPv6? no: "*" = 0.0.0.0), "[::]:25".
 * Numeric only. Returns 0 or -1. */
int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* The route for a recipient domain (case-insensitive): the first that matches; never NULL
 * (the default route list ends with "*" when the file has none; a file's list without "*"
 * falls back to an implicit {domain: "*", mx: true}).
 * Matching (len bytes of `domain`, one trailing dot ignored): "example.net" matches only itself;
 * ".example.net" matches a.example.net, b.a.example.net, … but not example.net; "*" matches
 * anything, "" and a NULL domain included. The result points into cfg->routes (valid until
 * config_free) or, for the fallback, at a static route {domain "*", MX, mx_port 25, tls
 * opportunistic}, valid forever; cfg may be NULL (the fallback). */
const struct config_route *config_route_for(const struct petrel_config *cfg, const char *domain,
                                            size_t len);

/* The priority for a message (sender domain, and each recipient domain): first matching rule,
 * else 0.
 * sender_domain may be NULL (null reverse path: only recipient_domain rules can match);
 * rcpt_domains may be NULL when nrcpt_domains is 0. Domains compare case-insensitively, one
 * trailing dot ignored, exactly (no subdomains). */
int config_priority_for(const struct petrel_config *cfg, const char *sender_domain,
                        const char *const *rcpt_domains, size_t nrcpt_domains);

/* What listener `l` of `cfg` speaks: its tls: as written, or for CONFIG_LISTEN_TLS_DEFAULT
 * (no tls: key) STARTTLS when cfg->tls_certificate is set, else NONE. Never returns DEFAULT.
 * cfg may be NULL (no certificate). */
enum config_listen_tls config_listen_tls_effective(const struct petrel_config *cfg,
                                                   const struct config_listen *l);

/* Same family, address and port (0 included), as listen: entries compare on reload. */
bool config_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* Is `domain` (case-insensitive, trailing dot ignored) one of the local domains? */
bool config_is_local_domain(const struct petrel_config *cfg, const char *domain, size_t len);

#endif
