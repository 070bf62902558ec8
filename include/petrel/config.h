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

enum config_log_level {
	CONFIG_LOG_ERROR = 0,
	CONFIG_LOG_WARN,
	CONFIG_LOG_INFO, /* default */
	CONFIG_LOG_DEBUG,
};

struct config_listen {
	char *address;                /* as written: "127.0.0.1:2525", "[::1]:2525", "*:25" */
	struct sockaddr_storage addr; /* resolved numerically (no DNS) */
	socklen_t addrlen;
	enum config_role role;
	unsigned line; /* line of the entry in the file, for messages */
};

struct petrel_config {
	char *path;     /* the file it was read from */
	char *hostname; /* default: gethostname() */
	char *spool;    /* default: "./var/spool"; relative to the working directory */
	enum config_durability durability;
	enum config_log_level log_level; /* key: log_level: error|warn|info|debug */

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

void config_free(struct petrel_config *cfg);

/* "35M" → 36700160. K/M/G are powers of 1024, optional "B"/"iB" suffix ("35MB", "35MiB"), no
 * suffix = bytes. Returns 0 or -1 on syntax error or overflow. */
int config_parse_size(const char *s, uint64_t *out);

/* "300s", "5m", "1h", "2d", "90" (seconds) → seconds. Returns 0 or -1. */
int config_parse_duration(const char *s, uint64_t *out_seconds);

/* "127.0.0.1:2525", "[::1]:25", "*:25" (all IPv4+IPv6? no: "*" = 0.0.0.0), "[::]:25".
 * Numeric only. Returns 0 or -1. */
int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Is `domain` (case-insensitive, trailing dot ignored) one of the local domains? */
bool config_is_local_domain(const struct petrel_config *cfg, const char *domain, size_t len);

#endif
