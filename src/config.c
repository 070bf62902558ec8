/*
 * config.c: petrel.yaml → struct petrel_config, with every error of the file reported.
 *
 * Owns: reading the file, libyaml's document API, the defaults, validation and the error report.
 * Does not: create the spool, bind sockets or resolve names (addresses are numeric only).
 *
 * Start reading at the key tables (config_root_keys and below). Each YAML mapping of the file is
 * one table of struct config_key rows {name, kind, offset, …}: config_walk_mapping() matches a
 * mapping's keys against its table (unknown and duplicate keys, required keys) and
 * config_apply() stores each value by its kind at base + offset. Adding a section:
 *   1. add its fields to struct petrel_config (flat, or a sub-struct) and their defaults to
 *      config_new_defaults();
 *   2. write a `static const struct config_key config_<section>_keys[]` table, using the kinds
 *      below (MAP for a nested mapping, LIST with a struct config_list for a list, CUSTOM for
 *      anything irregular);
 *   3. add one CONFIG_KIND_MAP row to config_root_keys (.offset = the sub-struct, or 0 if flat),
 *      with a .post function if some keys must be checked against each other (queue:, tls:);
 *   4. checks between sections (a listener's tls: needs tls.certificate) go in
 *      config_root_post(), which runs once the whole file was walked, whatever the key order.
 * A list of mappings (listen:, routes:) walks each item with its own table in its .parse
 * function, which then checks the item as a whole (the kind of a route, duplicates).
 * A STRING row with .readable names a file that must be readable when the file is loaded
 * (tls.certificate, auth.users_file); its content is left to the module that uses it.
 *
 * Errors never stop the walk: each is appended as "FILE:LINE:COL: KEY: message" (KEY is the
 * dotted path, list indexes count from 0: "listen[1].address") and the config is thrown away at
 * the end if there was any. A YAML syntax error stops libyaml, so it is the only line reported.
 * Anchors and aliases are resolved by libyaml (an error in aliased content points at the
 * anchor); merge keys ("<<") are not supported and are reported as unknown keys.
 */
#include "petrel/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "petrel/priv.h"

#define CONFIG_MAX_ERRORS     100           /* lines in one report; the rest are counted */
#define CONFIG_MAX_FILE       (1024 * 1024) /* a config is small: refuse anything bigger */
#define CONFIG_PATH_MAX       256           /* "limits.timeouts.command", "listen[3].role" */
#define CONFIG_QUOTE_MAX      64            /* bytes of user text quoted in one message */
#define CONFIG_MSG_MAX        512           /* one error message */
#define CONFIG_SUGGEST_MAX    32            /* keys longer than this get no "did you mean" */
#define CONFIG_DOMAIN_MAX     253           /* RFC 1035 2.3.4, without the trailing dot */
#define CONFIG_LABEL_MAX      63
#define CONFIG_DEFAULT_SPOOL  "./var/spool"
#define CONFIG_DEFAULT_LISTEN "127.0.0.1:2525"
#define CONFIG_DEFAULT_DOMAIN "localhost"
#define CONFIG_WHAT_ADDRESS   "an address such as 127.0.0.1:25, [::1]:25 or *:25"
#define CONFIG_WHAT_LISTEN    "a listen address"
#define CONFIG_WHAT_NETWORK   "a network such as 10.0.0.0/8, \"::1/128\" or 192.0.2.7"
#define CONFIG_WHAT_DOMAIN    "a domain name"
#define CONFIG_RFC_RECIPIENTS " (RFC 5321 section 4.5.3.1.8)"
#define CONFIG_WHAT_BOOL      "true or false"
#define CONFIG_WHAT_ROUTE     "a route domain"
#define CONFIG_WHAT_RELAY     "a relay address"
#define CONFIG_WHAT_MAILDIR   "a maildir template"
#define CONFIG_WHAT_FILE      "a file name"
#define CONFIG_WHAT_PRIORITY  "high, normal, low or a number from -100 to 100"
#define CONFIG_WHAT_NS        "a nameserver address"
#define CONFIG_WHAT_CIPHERS   "an OpenSSL cipher list"
#define CONFIG_WHAT_TOKEN     "a token"
#define CONFIG_HINT_MINUTE    " seconds (1m)"
#define CONFIG_PORT_SMTP      25
#define CONFIG_PORT_DNS       53
#define CONFIG_PRIORITY_MAX   100
#define CONFIG_CONC_MAX       100000
#define CONFIG_NS_MAX         (INET6_ADDRSTRLEN + 8) /* "[v6]:65535" */
#define CONFIG_AUTH_FAILS_MAX 1000

/* The state of one load: the document being walked and the report being written. */
struct config_loader {
	const char *name;     /* file name for messages */
	yaml_document_t *doc; /* the document being walked, NULL outside the walk */
	char *errors;         /* the report: "FILE:LINE:COL: KEY: message\n" lines */
	size_t errlen;
	size_t errcap;
	unsigned nerrors; /* including those past CONFIG_MAX_ERRORS */
	bool oom;         /* an allocation failed: the report says only that */
};

enum config_kind {
	CONFIG_KIND_MAP,      /* nested mapping: rows of .map, relative to base + offset */
	CONFIG_KIND_STRING,   /* char * at offset; .check may refuse or rewrite the copy */
	CONFIG_KIND_UINT,     /* unsigned at offset, decimal, .min to .max */
	CONFIG_KIND_SIZE,     /* uint64_t bytes at offset, K/M/G suffixes, .min to .max */
	CONFIG_KIND_DURATION, /* unsigned seconds at offset, s/m/h/d/w units, .min to .max */
	CONFIG_KIND_ENUM,     /* an enum at offset, one of .names */
	CONFIG_KIND_BOOL,     /* bool at offset: true/false/yes/no, any case */
	CONFIG_KIND_LIST,     /* array pointer at offset + count, items parsed by .list */
	CONFIG_KIND_CUSTOM,   /* anything else: .custom does all the work */
};

struct config_enum_name {
	const char *name;
	int value;
};

struct config_key;

/* Parses `node` into the fields at `base`; reports its own errors. */
typedef void config_custom_fn(struct config_loader *ld, const struct config_key *key,
                              yaml_node_t *node, const char *path, void *base);
/* Parses list item `node` into items[i] (zeroed); returns -1 after reporting an error. */
typedef int config_item_fn(struct config_loader *ld, yaml_node_t *node, const char *path,
                           void *items, size_t i);
/* Frees what one item owns (not the item itself); must accept a zeroed or half-parsed item. */
typedef void config_item_free_fn(void *item);
/* Checks (and may rewrite in place) a string value: NULL if fine, else the reason. */
typedef const char *config_check_fn(char *value);
/* MAP: runs after the mapping `node` (maybe null or not a mapping) was walked into `base`;
 * checks keys against each other and reports its own errors. */
typedef void config_post_fn(struct config_loader *ld, yaml_node_t *node, const char *path,
                            void *base);

/* A list value: a malloc'd array at key->offset, its size_t count at count_offset. A list in the
 * file replaces the default list as a whole. */
struct config_list {
	size_t item_size;
	size_t count_offset;
	size_t min_items;
	config_item_fn *parse;
	config_item_free_fn *free_item; /* NULL: items own nothing */
};

/* One key of a mapping. Offsets are relative to the base the mapping is walked with. */
struct config_key {
	const char *name;
	enum config_kind kind;
	size_t offset;
	bool required;                /* "missing key" if absent from its mapping */
	const char *what;             /* STRING: "a host name", for "expected …, got …" */
	uint64_t min;                 /* UINT, SIZE, DURATION */
	uint64_t max;                 /* UINT, SIZE, DURATION */
	bool zero_ok;                 /* UINT, DURATION: 0 ("off") is allowed below .min */
	const char *hint;             /* appended to the "must be at least" message */
	const struct config_key *map; /* MAP */
	config_post_fn *post;         /* MAP, optional */
	const struct config_enum_name *names; /* ENUM */
	config_check_fn *check;               /* STRING */
	bool readable;                        /* STRING: a file that must be readable now */
	const struct config_list *list;       /* LIST */
	config_custom_fn *custom;             /* CUSTOM */
};

enum config_num {
	CONFIG_NUM_OK,
	CONFIG_NUM_SYNTAX,
	CONFIG_NUM_RANGE,
};

/* Enums are stored through an int; make sure they are int-sized. */
_Static_assert(sizeof(enum config_durability) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_role) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_route_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_listen_tls) == sizeof(int), "enum size");

/*
 * A route while its mapping is walked: the route, and the values of the two keys that only name
 * its kind. Both start true, so that only an explicit "mx: false" is reported as such.
 */
struct config_route_item {
	struct config_route r;
	bool mx;
	bool discard;
};

/* The keys that choose a route's kind, in the order of enum config_route_kind. */
static const char *const config_route_kinds[] = {
	[CONFIG_ROUTE_MX] = "mx",
	[CONFIG_ROUTE_RELAY] = "relay",
	[CONFIG_ROUTE_MAILDIR] = "maildir",
	[CONFIG_ROUTE_DISCARD] = "discard",
};

/* Duration units, largest first: parsing and the durations quoted in messages. */
static const struct {
	char unit;
	uint64_t seconds;
} config_duration_units[] = {
	{ 'w', 7 * 86400 }, { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 },
};

/* Default queue.retry: 1m, 5m, 15m, 30m, 1h, 2h, 4h, then 4h again and again. */
static const unsigned config_default_retry[] = { 60, 300, 900, 1800, 3600, 7200, 14400 };

/* the walk */
static void config_walk_mapping(struct config_loader *ld, yaml_node_t *node, const char *path,
                                const struct config_key *keys, void *base);
static const struct config_key *config_walk_pair(struct config_loader *ld, yaml_node_t *node,
                                                 yaml_node_pair_t *pair, const char *path,
                                                 const struct config_key *keys, void *base);
static void config_apply(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                         const char *path, void *base);
static void config_apply_string(struct config_loader *ld, const struct config_key *key,
                                yaml_node_t *node, const char *path, void *base);
static void config_apply_number(struct config_loader *ld, const struct config_key *key,
                                yaml_node_t *node, const char *path, void *base);
static void config_apply_enum(struct config_loader *ld, const struct config_key *key,
                              yaml_node_t *node, const char *path, void *base);
static void config_apply_list(struct config_loader *ld, const struct config_key *key,
                              yaml_node_t *node, const char *path, void *base);
static void config_apply_bool(struct config_loader *ld, const struct config_key *key,
                              yaml_node_t *node, const char *path, void *base);
static bool config_number_ok(struct config_loader *ld, yaml_node_t *node,
                             const struct config_key *keys, const char *name);
static const char *config_scalar(struct config_loader *ld, yaml_node_t *node, const char *path,
                                 const char *what);
static const char *config_file_unreadable(const char *path);
static bool config_node_is_null(const yaml_node_t *node);
static yaml_node_t *config_find_duplicate(struct config_loader *ld, yaml_node_t *node,
                                          yaml_node_pair_t *pair);
static yaml_node_t *config_mapping_value(struct config_loader *ld, yaml_node_t *node,
                                         const char *name);
static yaml_node_t *config_mapping_key(struct config_loader *ld, yaml_node_t *node,
                                       const char *name);
static const struct config_key *config_key_named(const struct config_key *keys, const char *name);
static const struct config_key *config_suggest(const struct config_key *keys, const char *name);
static size_t config_distance(const char *a, const char *b);

/* sections with their own code */
static void config_listen_address(struct config_loader *ld, const struct config_key *key,
                                  yaml_node_t *node, const char *path, void *base);
static int config_listen_item(struct config_loader *ld, yaml_node_t *node, const char *path,
                              void *items, size_t i);
static void config_listen_free_item(void *item);
static int config_network_item(struct config_loader *ld, yaml_node_t *node, const char *path,
                               void *items, size_t i);
static int config_domain_item(struct config_loader *ld, yaml_node_t *node, const char *path,
                              void *items, size_t i);
static void config_string_free_item(void *item);
static const char *config_check_hostname(char *value);
static const char *config_check_domain(char *value);
static int config_route_item(struct config_loader *ld, yaml_node_t *node, const char *path,
                             void *items, size_t i);
static int config_route_kind(struct config_loader *ld, yaml_node_t *node, const char *path,
                             struct config_route_item *item);
static void config_route_options(struct config_loader *ld, yaml_node_t *node, const char *path,
                                 const struct config_route *r);
static void config_route_relay(struct config_loader *ld, const struct config_key *key,
                               yaml_node_t *node, const char *path, void *base);
static void config_route_free_item(void *item);
static const char *config_check_route_domain(char *value);
static const char *config_check_maildir(char *value);
static int config_retry_item(struct config_loader *ld, yaml_node_t *node, const char *path,
                             void *items, size_t i);
static void config_queue_post(struct config_loader *ld, yaml_node_t *node, const char *path,
                              void *base);
static int config_priority_item(struct config_loader *ld, yaml_node_t *node, const char *path,
                                void *items, size_t i);
static void config_priority_value(struct config_loader *ld, const struct config_key *key,
                                  yaml_node_t *node, const char *path, void *base);
static void config_priority_free_item(void *item);
static void config_dns_nameservers(struct config_loader *ld, const struct config_key *key,
                                   yaml_node_t *node, const char *path, void *base);
static void config_tls_post(struct config_loader *ld, yaml_node_t *node, const char *path,
                            void *base);
static void config_stats_address(struct config_loader *ld, const struct config_key *key,
                                 yaml_node_t *node, const char *path, void *base);
static const char *config_check_token(char *value);
static const char *config_check_user(char *value);
static const char *config_check_group(char *value);
static void config_root_post(struct config_loader *ld, yaml_node_t *node, const char *path,
                             void *base);
static bool config_section_has(struct config_loader *ld, yaml_node_t *root, const char *section,
                               const char *name);

/* value syntax */
static enum config_num config_digits(const char **sp, uint64_t *out);
static enum config_num config_uint_parse(const char *s, uint64_t *out);
static enum config_num config_size_parse(const char *s, uint64_t *out);
static enum config_num config_duration_parse(const char *s, uint64_t *out);
static const char *config_address_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
static const char *config_hostport_split(const char *s, const char **host, size_t *hlen,
                                         const char **port, bool *bracketed);
static const char *config_port_parse(const char *s, unsigned dflt, unsigned *out);
static const char *config_relay_parse(const char *s, char *host, size_t size, unsigned *port);
static const char *config_nameserver_parse(const char *s, char *out, size_t size);
static void config_duration_format(uint64_t seconds, char *buf, size_t size);
static bool config_domain_equal(const char *want, const char *domain, size_t len);
static bool config_domain_is(const char *want, const char *domain);
static bool config_sockaddr_equal(const struct sockaddr_storage *a,
                                  const struct sockaddr_storage *b);

/* the report */
static void config_error(struct config_loader *ld, const yaml_mark_t *mark, const char *path,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void config_error_expected(struct config_loader *ld, yaml_node_t *node, const char *path,
                                  const char *what, const char *why);
static void config_error_yaml(struct config_loader *ld, const yaml_parser_t *parser,
                              const char *text, size_t len);
static void config_append(struct config_loader *ld, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void config_quote(const char *s, size_t len, char *buf, size_t size);
static void config_path(char *buf, size_t size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static char *config_report(struct config_loader *ld);

/* the object */
static struct petrel_config *config_new_defaults(const char *name);
static int config_default_hostname(struct petrel_config *cfg);
static void config_load_document(struct config_loader *ld, yaml_parser_t *parser, const char *text,
                                 size_t len, struct petrel_config *cfg);
static int config_read_file(struct config_loader *ld, const char *path, char **text, size_t *len);

/*
 * The key tables. Defaults live in config_new_defaults() and are documented in config.h and in
 * config/petrel.yaml.
 */
#define CONFIG_OFF(field)        offsetof(struct petrel_config, field)
#define CONFIG_LISTEN_OFF(field) offsetof(struct config_listen, field)
#define CONFIG_ROUTE_OFF(field)  offsetof(struct config_route_item, r.field)
#define CONFIG_PRIO_OFF(field)   offsetof(struct config_priority, field)

static const struct config_enum_name config_durability_names[] = {
	{ "fsync", CONFIG_DURABILITY_FSYNC },
	{ "none", CONFIG_DURABILITY_NONE },
	{ NULL, 0 },
};

static const struct config_enum_name config_log_level_names[] = {
	{ "error", CONFIG_LOG_ERROR },
	{ "warn", CONFIG_LOG_WARN },
	{ "info", CONFIG_LOG_INFO },
	{ "debug", CONFIG_LOG_DEBUG },
	{ NULL, 0 },
};

static const struct config_enum_name config_log_target_names[] = {
	{ "stderr", CONFIG_LOG_STDERR },
	{ "syslog", CONFIG_LOG_SYSLOG },
	{ NULL, 0 },
};

static const struct config_enum_name config_role_names[] = {
	{ "relay", CONFIG_ROLE_RELAY },
	{ "submission", CONFIG_ROLE_SUBMISSION },
	{ NULL, 0 },
};

static const struct config_enum_name config_listen_tls_names[] = {
	{ "none", CONFIG_LISTEN_TLS_NONE },
	{ "starttls", CONFIG_LISTEN_TLS_STARTTLS },
	{ "implicit", CONFIG_LISTEN_TLS_IMPLICIT },
	{ NULL, 0 },
};

/* listen: [ {address, role, tls}, … ] */
static const struct config_key config_listen_keys[] = {
	{ .name = "address",
	  .kind = CONFIG_KIND_CUSTOM,
	  .required = true,
	  .custom = config_listen_address },
	{ .name = "role",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_LISTEN_OFF(role),
	  .names = config_role_names },
	{ .name = "tls",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_LISTEN_OFF(tls),
	  .names = config_listen_tls_names },
	{ .name = NULL },
};

static const struct config_list config_listen_list = {
	.item_size = sizeof(struct config_listen),
	.count_offset = CONFIG_OFF(nlisten),
	.min_items = 1,
	.parse = config_listen_item,
	.free_item = config_listen_free_item,
};

/* relay: */
static const struct config_list config_networks_list = {
	.item_size = sizeof(struct cidr),
	.count_offset = CONFIG_OFF(nrelay_networks),
	.parse = config_network_item,
};

static const struct config_list config_domains_list = {
	.item_size = sizeof(char *),
	.count_offset = CONFIG_OFF(nlocal_domains),
	.parse = config_domain_item,
	.free_item = config_string_free_item,
};

static const struct config_key config_relay_keys[] = {
	{ .name = "networks",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(relay_networks),
	  .list = &config_networks_list },
	{ .name = "local_domains",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(local_domains),
	  .list = &config_domains_list },
	{ .name = NULL },
};

/* limits: */
static const struct config_key config_timeouts_keys[] = {
	{ .name = "command",
	  .kind = CONFIG_KIND_DURATION,
	  .offset = CONFIG_OFF(timeout_command),
	  .min = 1,
	  .max = UINT_MAX },
	{ .name = "data",
	  .kind = CONFIG_KIND_DURATION,
	  .offset = CONFIG_OFF(timeout_data),
	  .min = 1,
	  .max = UINT_MAX },
	{ .name = NULL },
};

static const struct config_key config_limits_keys[] = {
	{ .name = "max_message_size",
	  .kind = CONFIG_KIND_SIZE,
	  .offset = CONFIG_OFF(max_message_size),
	  .min = 0,
	  .max = UINT64_MAX },
	{ .name = "max_recipients",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(max_recipients),
	  .min = 100,
	  .max = UINT_MAX,
	  .hint = CONFIG_RFC_RECIPIENTS },
	{ .name = "max_connections",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(max_connections),
	  .min = 1,
	  .max = UINT_MAX },
	{ .name = "max_connections_per_ip",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(max_connections_per_ip),
	  .min = 1,
	  .max = UINT_MAX },
	{ .name = "max_errors",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(max_errors),
	  .min = 1,
	  .max = UINT_MAX },
	{ .name = "timeouts", .kind = CONFIG_KIND_MAP, .map = config_timeouts_keys },
	{ .name = NULL },
};

/* routes: [ {domain, mx | relay | maildir | discard, port, tls, auth, ca_file}, … ] */
static const struct config_enum_name config_route_tls_names[] = {
	{ "none", CONFIG_TLS_NONE },
	{ "opportunistic", CONFIG_TLS_OPPORTUNISTIC },
	{ "require", CONFIG_TLS_REQUIRE },
	{ NULL, 0 },
};

/* routes[i].auth: walked with the route item as its base (.offset 0). */
static const struct config_key config_route_auth_keys[] = {
	{ .name = "user",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_ROUTE_OFF(auth_user),
	  .required = true,
	  .what = "a user name" },
	{ .name = "password_file",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_ROUTE_OFF(auth_password_file),
	  .required = true,
	  .what = CONFIG_WHAT_FILE },
	{ .name = NULL },
};

/* Offsets are into struct config_route_item. Which keys go with which kind:
 * config_route_options(). */
static const struct config_key config_route_keys[] = {
	{ .name = "domain",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_ROUTE_OFF(domain),
	  .required = true,
	  .what = CONFIG_WHAT_ROUTE,
	  .check = config_check_route_domain },
	{ .name = "mx",
	  .kind = CONFIG_KIND_BOOL,
	  .offset = offsetof(struct config_route_item, mx) },
	{ .name = "relay", .kind = CONFIG_KIND_CUSTOM, .custom = config_route_relay },
	{ .name = "maildir",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_ROUTE_OFF(maildir),
	  .what = CONFIG_WHAT_MAILDIR,
	  .check = config_check_maildir },
	{ .name = "discard",
	  .kind = CONFIG_KIND_BOOL,
	  .offset = offsetof(struct config_route_item, discard) },
	{ .name = "port",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_ROUTE_OFF(mx_port),
	  .min = 1,
	  .max = 65535 },
	{ .name = "tls",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_ROUTE_OFF(tls),
	  .names = config_route_tls_names },
	{ .name = "auth", .kind = CONFIG_KIND_MAP, .map = config_route_auth_keys },
	{ .name = "ca_file",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_ROUTE_OFF(ca_file),
	  .what = CONFIG_WHAT_FILE },
	{ .name = NULL },
};

static const struct config_list config_routes_list = {
	.item_size = sizeof(struct config_route),
	.count_offset = CONFIG_OFF(nroutes),
	.parse = config_route_item,
	.free_item = config_route_free_item,
};

/* queue: */
static const struct config_key config_retry_step = {
	.name = "retry",
	.kind = CONFIG_KIND_DURATION,
	.min = 1,
	.max = UINT_MAX,
};

static const struct config_list config_retry_list = {
	.item_size = sizeof(unsigned),
	.count_offset = CONFIG_OFF(nretry),
	.min_items = 1,
	.parse = config_retry_item,
};

static const struct config_key config_priority_keys[] = {
	{ .name = "sender_domain",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_PRIO_OFF(sender_domain),
	  .what = CONFIG_WHAT_DOMAIN,
	  .check = config_check_domain },
	{ .name = "recipient_domain",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_PRIO_OFF(recipient_domain),
	  .what = CONFIG_WHAT_DOMAIN,
	  .check = config_check_domain },
	{ .name = "priority",
	  .kind = CONFIG_KIND_CUSTOM,
	  .required = true,
	  .custom = config_priority_value },
	{ .name = NULL },
};

static const struct config_list config_priorities_list = {
	.item_size = sizeof(struct config_priority),
	.count_offset = CONFIG_OFF(npriorities),
	.parse = config_priority_item,
	.free_item = config_priority_free_item,
};

static const struct config_key config_queue_keys[] = {
	{ .name = "retry",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(retry),
	  .list = &config_retry_list },
	{ .name = "max_lifetime",
	  .kind = CONFIG_KIND_DURATION,
	  .offset = CONFIG_OFF(max_lifetime),
	  .min = 60,
	  .max = UINT_MAX,
	  .hint = CONFIG_HINT_MINUTE },
	{ .name = "delay_warning",
	  .kind = CONFIG_KIND_DURATION,
	  .offset = CONFIG_OFF(delay_warning),
	  .min = 60,
	  .max = UINT_MAX,
	  .zero_ok = true,
	  .hint = CONFIG_HINT_MINUTE },
	{ .name = "concurrency",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(concurrency),
	  .min = 1,
	  .max = CONFIG_CONC_MAX },
	{ .name = "concurrency_per_destination",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(concurrency_per_destination),
	  .min = 1,
	  .max = CONFIG_CONC_MAX },
	{ .name = "priorities",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(priorities),
	  .list = &config_priorities_list },
	{ .name = NULL },
};

/* dns: */
static const struct config_key config_dns_keys[] = {
	{ .name = "nameservers", .kind = CONFIG_KIND_CUSTOM, .custom = config_dns_nameservers },
	{ .name = NULL },
};

/* tls: the server's certificate; a listener's tls: says where it is used. */
static const struct config_enum_name config_tls_version_names[] = {
	{ "TLSv1.2", TLS1_2_VERSION },
	{ "TLSv1.3", TLS1_3_VERSION },
	{ NULL, 0 },
};

static const struct config_key config_tls_keys[] = {
	{ .name = "certificate",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(tls_certificate),
	  .what = CONFIG_WHAT_FILE,
	  .readable = true },
	{ .name = "key",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(tls_key),
	  .what = CONFIG_WHAT_FILE,
	  .readable = true },
	{ .name = "min_version",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_OFF(tls_min_version),
	  .names = config_tls_version_names },
	{ .name = "ciphers",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(tls_ciphers),
	  .what = CONFIG_WHAT_CIPHERS },
	{ .name = NULL },
};

/* auth: SMTP AUTH for clients (not routes[i].auth, which is petrel logging in to a relay). */
static const struct config_key config_auth_keys[] = {
	{ .name = "users_file",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(auth_users_file),
	  .what = CONFIG_WHAT_FILE,
	  .readable = true },
	{ .name = "require_tls", .kind = CONFIG_KIND_BOOL, .offset = CONFIG_OFF(auth_require_tls) },
	{ .name = "sender_login_match",
	  .kind = CONFIG_KIND_BOOL,
	  .offset = CONFIG_OFF(auth_sender_login_match) },
	{ .name = "max_failures",
	  .kind = CONFIG_KIND_UINT,
	  .offset = CONFIG_OFF(auth_max_failures),
	  .min = 1,
	  .max = CONFIG_AUTH_FAILS_MAX },
	{ .name = "failure_window",
	  .kind = CONFIG_KIND_DURATION,
	  .offset = CONFIG_OFF(auth_failure_window),
	  .min = 1,
	  .max = UINT_MAX },
	{ .name = NULL },
};

/* stats: the HTTP endpoint; the section turns it on, so its address is required. */
static const struct config_list config_stats_allow_list = {
	.item_size = sizeof(struct cidr),
	.count_offset = CONFIG_OFF(nstats_allow),
	.min_items = 1,
	.parse = config_network_item,
};

static const struct config_key config_stats_keys[] = {
	{ .name = "address",
	  .kind = CONFIG_KIND_CUSTOM,
	  .required = true,
	  .custom = config_stats_address },
	{ .name = "token",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(stats_token),
	  .what = CONFIG_WHAT_TOKEN,
	  .check = config_check_token },
	{ .name = "allow",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(stats_allow),
	  .list = &config_stats_allow_list },
	{ .name = NULL },
};

/* the top level; checks between its sections: config_root_post() */
static const struct config_key config_root_keys[] = {
	{ .name = "hostname",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(hostname),
	  .what = "a host name",
	  .check = config_check_hostname },
	{ .name = "spool",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(spool),
	  .what = "a directory" },
	{ .name = "durability",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_OFF(durability),
	  .names = config_durability_names },
	{ .name = "log_level",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_OFF(log_level),
	  .names = config_log_level_names },
	{ .name = "log_target",
	  .kind = CONFIG_KIND_ENUM,
	  .offset = CONFIG_OFF(log_target),
	  .names = config_log_target_names },
	{ .name = "user",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(user),
	  .what = "a user name",
	  .check = config_check_user },
	{ .name = "group",
	  .kind = CONFIG_KIND_STRING,
	  .offset = CONFIG_OFF(group),
	  .what = "a group name",
	  .check = config_check_group },
	{ .name = "listen",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(listen),
	  .list = &config_listen_list },
	{ .name = "relay", .kind = CONFIG_KIND_MAP, .map = config_relay_keys },
	{ .name = "limits", .kind = CONFIG_KIND_MAP, .map = config_limits_keys },
	{ .name = "routes",
	  .kind = CONFIG_KIND_LIST,
	  .offset = CONFIG_OFF(routes),
	  .list = &config_routes_list },
	{ .name = "queue",
	  .kind = CONFIG_KIND_MAP,
	  .map = config_queue_keys,
	  .post = config_queue_post },
	{ .name = "dns", .kind = CONFIG_KIND_MAP, .map = config_dns_keys },
	{ .name = "tls", .kind = CONFIG_KIND_MAP, .map = config_tls_keys, .post = config_tls_post },
	{ .name = "auth", .kind = CONFIG_KIND_MAP, .map = config_auth_keys },
	{ .name = "stats", .kind = CONFIG_KIND_MAP, .map = config_stats_keys },
	{ .name = NULL },
};

/*
 * The walk.
 */

/* Match the keys of a mapping against `keys` and apply each value; report what is missing. */
static void
config_walk_mapping(struct config_loader *ld, yaml_node_t *node, const char *path,
                    const struct config_key *keys, void *base)
{
	const struct config_key *key;
	yaml_node_pair_t *pair;
	uint64_t seen = 0;
	size_t i;

	/* "limits:" with every key commented out is an empty mapping, not an error. */
	if (!config_node_is_null(node)) {
		if (node->type != YAML_MAPPING_NODE) {
			config_error_expected(ld, node, path, "a mapping", NULL);
			return;
		}
		for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top;
		     pair++) {
			key = config_walk_pair(ld, node, pair, path, keys, base);
			if (key != NULL && key - keys < 64)
				seen |= UINT64_C(1) << (key - keys);
		}
	}
	for (i = 0, key = keys; key->name != NULL; i++, key++) {
		if (key->required && i < 64 && !(seen & (UINT64_C(1) << i)))
			config_error(ld, &node->start_mark, path, "missing key '%s'", key->name);
	}
}

/* One "key: value" of a mapping: the row it was applied with, or NULL after an error. */
static const struct config_key *
config_walk_pair(struct config_loader *ld, yaml_node_t *node, yaml_node_pair_t *pair,
                 const char *path, const struct config_key *keys, void *base)
{
	char kpath[CONFIG_PATH_MAX], quoted[CONFIG_QUOTE_MAX + 4];
	const struct config_key *key, *hint;
	yaml_node_t *k, *v, *prev;
	const char *name;

	k = yaml_document_get_node(ld->doc, pair->key);
	v = yaml_document_get_node(ld->doc, pair->value);
	if (k == NULL || v == NULL)
		return NULL;
	if (k->type != YAML_SCALAR_NODE) {
		config_error(ld, &k->start_mark, path, "expected a key name, got %s",
		             k->type == YAML_MAPPING_NODE ? "a mapping" : "a list");
		return NULL;
	}
	name = (const char *)k->data.scalar.value;
	config_quote(name, k->data.scalar.length, quoted, sizeof(quoted));
	config_path(kpath, sizeof(kpath), "%s%s%s", path, *path != '\0' ? "." : "", quoted);

	prev = config_find_duplicate(ld, node, pair);
	if (prev != NULL) {
		config_error(ld, &k->start_mark, kpath, "duplicate key (first at line %zu)",
		             prev->start_mark.line + 1);
		return NULL;
	}
	for (key = keys; key->name != NULL; key++) {
		if (strlen(key->name) == k->data.scalar.length && strcmp(key->name, name) == 0)
			break;
	}
	if (key->name == NULL) {
		hint = config_suggest(keys, name);
		if (hint != NULL)
			config_error(ld, &k->start_mark, kpath, "unknown key, did you mean '%s'?",
			             hint->name);
		else
			config_error(ld, &k->start_mark, kpath, "unknown key");
		return NULL;
	}
	config_apply(ld, key, v, kpath, base);
	return key;
}

static void
config_apply(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
             const char *path, void *base)
{
	switch (key->kind) {
	case CONFIG_KIND_MAP:
		config_walk_mapping(ld, node, path, key->map, (char *)base + key->offset);
		if (key->post != NULL)
			key->post(ld, node, path, (char *)base + key->offset);
		break;
	case CONFIG_KIND_STRING:
		config_apply_string(ld, key, node, path, base);
		break;
	case CONFIG_KIND_UINT:
	case CONFIG_KIND_SIZE:
	case CONFIG_KIND_DURATION:
		config_apply_number(ld, key, node, path, base);
		break;
	case CONFIG_KIND_ENUM:
		config_apply_enum(ld, key, node, path, base);
		break;
	case CONFIG_KIND_BOOL:
		config_apply_bool(ld, key, node, path, base);
		break;
	case CONFIG_KIND_LIST:
		config_apply_list(ld, key, node, path, base);
		break;
	case CONFIG_KIND_CUSTOM:
		key->custom(ld, key, node, path, base);
		break;
	}
}

static void
config_apply_string(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                    const char *path, void *base)
{
	const char *what = key->what != NULL ? key->what : "a string";
	char **field = (char **)((char *)base + key->offset);
	const char *s, *why;
	char *copy;

	s = config_scalar(ld, node, path, what);
	if (s == NULL)
		return;
	if (*s == '\0') {
		config_error(ld, &node->start_mark, path, "must not be empty");
		return;
	}
	copy = strdup(s);
	if (copy == NULL) {
		ld->oom = true;
		return;
	}
	why = key->check != NULL ? key->check(copy) : NULL;
	if (why != NULL) {
		config_error_expected(ld, node, path, what, why);
		free(copy);
		return;
	}
	why = key->readable ? config_file_unreadable(copy) : NULL;
	if (why != NULL) {
		config_error(ld, &node->start_mark, path, "cannot read: %s", why);
		free(copy);
		return;
	}
	free(*field);
	*field = copy;
}

static void
config_apply_number(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                    const char *path, void *base)
{
	/* What each number kind looks like, and its parser. */
	static const struct {
		const char *what;
		enum config_num (*parse)(const char *s, uint64_t *out);
	} kinds[] = {
		[CONFIG_KIND_UINT] = { "a whole number", config_uint_parse },
		[CONFIG_KIND_SIZE] = { "a size such as 35M", config_size_parse },
		[CONFIG_KIND_DURATION] = { "a duration such as 300s, 5m or 1h30m",
		                           config_duration_parse },
	};
	const char *what = kinds[key->kind].what, *s;
	char *field = (char *)base + key->offset;
	char quoted[CONFIG_QUOTE_MAX + 4];
	enum config_num r;
	unsigned u;
	uint64_t v;

	s = config_scalar(ld, node, path, what);
	if (s == NULL)
		return;
	r = kinds[key->kind].parse(s, &v);
	config_quote(s, strlen(s), quoted, sizeof(quoted));
	if (r == CONFIG_NUM_SYNTAX) {
		config_error_expected(ld, node, path, what, NULL);
		return;
	}
	if (r == CONFIG_NUM_RANGE) {
		config_error(ld, &node->start_mark, path, "'%s' is too large", quoted);
		return;
	}
	if (v > key->max) {
		config_error(ld, &node->start_mark, path, "must be at most %" PRIu64 ", got '%s'",
		             key->max, quoted);
		return;
	}
	if (v < key->min && !(key->zero_ok && v == 0)) {
		if (key->min == 1)
			config_error(ld, &node->start_mark, path, "must not be 0");
		else
			config_error(ld, &node->start_mark, path,
			             "must be %sat least %" PRIu64 "%s, got '%s'",
			             key->zero_ok ? "0 or " : "", key->min,
			             key->hint != NULL ? key->hint : "", quoted);
		return;
	}
	if (key->kind == CONFIG_KIND_SIZE) {
		memcpy(field, &v, sizeof(v));
	} else {
		u = (unsigned)v;
		memcpy(field, &u, sizeof(u));
	}
}

static void
config_apply_enum(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                  const char *path, void *base)
{
	char expected[CONFIG_MSG_MAX / 2], quoted[CONFIG_QUOTE_MAX + 4];
	const struct config_enum_name *n;
	const char *s, *sep;
	size_t used = 0;

	/* "fsync or none", "error, warn, info or debug" */
	expected[0] = '\0';
	for (n = key->names; n->name != NULL && used < sizeof(expected); n++) {
		if (n == key->names)
			sep = "";
		else if (n[1].name != NULL)
			sep = ", ";
		else
			sep = " or ";
		used += (size_t)snprintf(expected + used, sizeof(expected) - used, "%s%s", sep,
		                         n->name);
	}
	s = config_scalar(ld, node, path, expected);
	if (s == NULL)
		return;
	for (n = key->names; n->name != NULL; n++) {
		if (strcmp(n->name, s) == 0) {
			memcpy((char *)base + key->offset, &n->value, sizeof(n->value));
			return;
		}
	}
	config_quote(s, strlen(s), quoted, sizeof(quoted));
	config_error(ld, &node->start_mark, path, "unknown value '%s' (expected %s)", quoted,
	             expected);
}

static void
config_apply_bool(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                  const char *path, void *base)
{
	static const struct {
		const char *name;
		bool value;
	} names[] = {
		{ "true", true },
		{ "yes", true },
		{ "false", false },
		{ "no", false },
	};
	const char *s;
	size_t i;

	s = config_scalar(ld, node, path, CONFIG_WHAT_BOOL);
	if (s == NULL)
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(names[i].name, s) == 0) {
			memcpy((char *)base + key->offset, &names[i].value, sizeof(bool));
			return;
		}
	}
	config_error_expected(ld, node, path, CONFIG_WHAT_BOOL, NULL);
}

/*
 * For checks across keys: is number key `name` of mapping `node` absent (so at its default) or
 * valid by its row in `keys`? Then the field holds what the file means. Reports nothing: the
 * walk already did.
 */
static bool
config_number_ok(struct config_loader *ld, yaml_node_t *node, const struct config_key *keys,
                 const char *name)
{
	const struct config_key *key = config_key_named(keys, name);
	yaml_node_t *v = config_mapping_value(ld, node, name);
	enum config_num r;
	const char *s;
	uint64_t n;

	if (v == NULL)
		return true;
	if (key == NULL || v->type != YAML_SCALAR_NODE || config_node_is_null(v))
		return false;
	s = (const char *)v->data.scalar.value;
	if (strlen(s) != v->data.scalar.length)
		return false;
	if (key->kind == CONFIG_KIND_DURATION)
		r = config_duration_parse(s, &n);
	else if (key->kind == CONFIG_KIND_UINT)
		r = config_uint_parse(s, &n);
	else
		return false;
	if (r != CONFIG_NUM_OK || n > key->max)
		return false;
	return n >= key->min || (key->zero_ok && n == 0);
}

static void
config_apply_list(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                  const char *path, void *base)
{
	const struct config_list *list = key->list;
	char *field = (char *)base + key->offset;
	char *count = (char *)base + list->count_offset;
	char *items = NULL, *old = NULL;
	char ipath[CONFIG_PATH_MAX];
	size_t n, i, oldn;
	yaml_node_item_t *it;
	yaml_node_t *item;
	bool bad = false;

	if (config_node_is_null(node) && list->min_items == 0) {
		config_error(ld, &node->start_mark, path,
		             "expected a list, got nothing (write [] for an empty list)");
		return;
	}
	if (node->type != YAML_SEQUENCE_NODE) {
		config_error_expected(ld, node, path, "a list", NULL);
		return;
	}
	n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	if (n < list->min_items) {
		config_error(ld, &node->start_mark, path, "must not be empty");
		return;
	}
	if (n > 0) {
		items = calloc(n, list->item_size);
		if (items == NULL) {
			ld->oom = true;
			return;
		}
	}
	for (i = 0, it = node->data.sequence.items.start; i < n; i++, it++) {
		item = yaml_document_get_node(ld->doc, *it);
		config_path(ipath, sizeof(ipath), "%s[%zu]", path, i);
		if (item == NULL || list->parse(ld, item, ipath, items, i) < 0)
			bad = true;
	}

	/* Install the new list (or throw it away) and free the one it replaces. */
	if (!bad) {
		memcpy(&old, field, sizeof(old));
		memcpy(&oldn, count, sizeof(oldn));
		memcpy(field, &items, sizeof(items));
		memcpy(count, &n, sizeof(n));
	} else {
		old = items;
		oldn = n;
	}
	for (i = 0; list->free_item != NULL && i < oldn; i++)
		list->free_item(old + i * list->item_size);
	free(old);
}

/* The string of a scalar node, or NULL after reporting a list, a mapping or a null. */
static const char *
config_scalar(struct config_loader *ld, yaml_node_t *node, const char *path, const char *what)
{
	if (node->type != YAML_SCALAR_NODE || config_node_is_null(node)) {
		config_error_expected(ld, node, path, what, NULL);
		return NULL;
	}
	if (strlen((const char *)node->data.scalar.value) != node->data.scalar.length) {
		config_error(ld, &node->start_mark, path, "contains a NUL character");
		return NULL;
	}
	return (const char *)node->data.scalar.value;
}

/*
 * NULL if `path` is a regular file that can be opened for reading now, else why not (strerror).
 * Opened rather than access()ed: that is the question the module reading it later asks.
 * O_NONBLOCK: a FIFO must not hang the load.
 */
static const char *
config_file_unreadable(const char *path)
{
	const char *why = NULL;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return strerror(errno);
	if (fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (S_ISDIR(st.st_mode))
		why = strerror(EISDIR);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	close(fd);
	return why;
}

/* `key:` with nothing after it, or a plain ~ / null. Quoted "" is an (empty) string. */
static bool
config_node_is_null(const yaml_node_t *node)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	size_t i;

	if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
		if (strcmp((const char *)node->data.scalar.value, nulls[i]) == 0)
			return true;
	}
	return false;
}

/* The key node of an earlier pair of `node` with the same key as `pair`, or NULL. */
static yaml_node_t *
config_find_duplicate(struct config_loader *ld, yaml_node_t *node, yaml_node_pair_t *pair)
{
	yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key), *pk;
	yaml_node_pair_t *prev;

	for (prev = node->data.mapping.pairs.start; prev < pair; prev++) {
		pk = yaml_document_get_node(ld->doc, prev->key);
		if (pk != NULL && pk->type == YAML_SCALAR_NODE &&
		    pk->data.scalar.length == k->data.scalar.length &&
		    memcmp(pk->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
			return pk;
	}
	return NULL;
}

/* The pair of key `name` in a mapping node (its first, if repeated), or NULL. */
static yaml_node_pair_t *
config_mapping_pair(struct config_loader *ld, yaml_node_t *node, const char *name)
{
	yaml_node_pair_t *pair;
	yaml_node_t *k;

	if (node->type != YAML_MAPPING_NODE)
		return NULL;
	for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
		k = yaml_document_get_node(ld->doc, pair->key);
		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, name) == 0)
			return pair;
	}
	return NULL;
}

/* The value of key `name` in a mapping node, or NULL. */
static yaml_node_t *
config_mapping_value(struct config_loader *ld, yaml_node_t *node, const char *name)
{
	yaml_node_pair_t *pair = config_mapping_pair(ld, node, name);

	return pair ? yaml_document_get_node(ld->doc, pair->value) : NULL;
}

/* The key node of key `name` in a mapping node (its first, if repeated), or NULL. */
static yaml_node_t *
config_mapping_key(struct config_loader *ld, yaml_node_t *node, const char *name)
{
	yaml_node_pair_t *pair = config_mapping_pair(ld, node, name);

	return pair ? yaml_document_get_node(ld->doc, pair->key) : NULL;
}

/* The row of `keys` named `name`, or NULL. */
static const struct config_key *
config_key_named(const struct config_key *keys, const char *name)
{
	const struct config_key *key;

	for (key = keys; key->name != NULL; key++) {
		if (strcmp(key->name, name) == 0)
			return key;
	}
	return NULL;
}

/* The known key closest to a misspelt one, if it is close enough to be the likely intent. */
static const struct config_key *
config_suggest(const struct config_key *keys, const char *name)
{
	const struct config_key *key, *best = NULL;
	size_t d, best_d = SIZE_MAX;

	for (key = keys; key->name != NULL; key++) {
		d = config_distance(name, key->name);
		if (d < best_d) {
			best_d = d;
			best = key;
		}
	}
	if (best == NULL || best_d > 2 || best_d * 2 >= strlen(best->name))
		return NULL;
	return best;
}

/* Levenshtein distance, ASCII case-insensitive; SIZE_MAX for long strings. */
static size_t
config_distance(const char *a, const char *b)
{
	size_t row[CONFIG_SUGGEST_MAX + 1];
	size_t la = strlen(a), lb = strlen(b), i, j, diag, up, best;
	unsigned char ca, cb;

	if (la > CONFIG_SUGGEST_MAX || lb > CONFIG_SUGGEST_MAX)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			ca = (unsigned char)a[i - 1];
			cb = (unsigned char)b[j - 1];
			ca = (ca >= 'A' && ca <= 'Z') ? (unsigned char)(ca - 'A' + 'a') : ca;
			cb = (cb >= 'A' && cb <= 'Z') ? (unsigned char)(cb - 'A' + 'a') : cb;
			up = row[j];
			best = diag + (ca != cb);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/*
 * Sections with their own code.
 */

/* listen[i].address: kept as written and resolved numerically. */
static void
config_listen_address(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                      const char *path, void *base)
{
	struct config_listen *l = base;
	struct sockaddr_storage ss;
	const char *s, *why;
	socklen_t len;
	char *copy;

	(void)key;
	s = config_scalar(ld, node, path, CONFIG_WHAT_ADDRESS);
	if (s == NULL)
		return;
	why = config_address_parse(s, &ss, &len);
	if (why != NULL) {
		config_error_expected(ld, node, path, CONFIG_WHAT_LISTEN, why);
		return;
	}
	copy = strdup(s);
	if (copy == NULL) {
		ld->oom = true;
		return;
	}
	free(l->address);
	l->address = copy;
	l->addr = ss;
	l->addrlen = len;
}

static int
config_listen_item(struct config_loader *ld, yaml_node_t *node, const char *path, void *items,
                   size_t i)
{
	struct config_listen *all = items, *l = &all[i];
	char quoted[CONFIG_QUOTE_MAX + 4];
	char apath[CONFIG_PATH_MAX];
	unsigned before = ld->nerrors;
	yaml_node_t *address;
	size_t j;

	l->role = CONFIG_ROLE_RELAY;
	l->tls = CONFIG_LISTEN_TLS_DEFAULT;
	l->line = (unsigned)node->start_mark.line + 1;
	config_walk_mapping(ld, node, path, config_listen_keys, l);
	if (ld->nerrors != before || l->addrlen == 0)
		return -1;

	/* Port 0 binds a fresh ephemeral port each time, so it never collides. */
	for (j = 0; j < i; j++) {
		if (all[j].addrlen == 0 || !config_sockaddr_equal(&all[j].addr, &l->addr))
			continue;
		address = config_mapping_value(ld, node, "address");
		config_quote(l->address, strlen(l->address), quoted, sizeof(quoted));
		config_path(apath, sizeof(apath), "%s.address", path);
		config_error(ld, address != NULL ? &address->start_mark : &node->start_mark, apath,
		             "duplicate listen address '%s' (also at line %u)", quoted,
		             all[j].line);
		return -1;
	}
	return 0;
}

static void
config_listen_free_item(void *item)
{
	struct config_listen *l = item;

	free(l->address);
}

static int
config_network_item(struct config_loader *ld, yaml_node_t *node, const char *path, void *items,
                    size_t i)
{
	struct cidr *nets = items;
	const char *s;

	s = config_scalar(ld, node, path, CONFIG_WHAT_NETWORK);
	if (s == NULL)
		return -1;
	if (cidr_parse(s, &nets[i]) < 0) {
		config_error_expected(ld, node, path, CONFIG_WHAT_NETWORK, NULL);
		return -1;
	}
	return 0;
}

static int
config_domain_item(struct config_loader *ld, yaml_node_t *node, const char *path, void *items,
                   size_t i)
{
	char **domains = items;
	const char *s, *why;

	s = config_scalar(ld, node, path, CONFIG_WHAT_DOMAIN);
	if (s == NULL)
		return -1;
	domains[i] = strdup(s);
	if (domains[i] == NULL) {
		ld->oom = true;
		return -1;
	}
	why = config_check_domain(domains[i]);
	if (why != NULL) {
		config_error_expected(ld, node, path, CONFIG_WHAT_DOMAIN, why);
		return -1;
	}
	return 0;
}

static void
config_string_free_item(void *item)
{
	char **s = item;

	free(*s);
}

/* LDH labels (RFC 1123 2.1), 1..63 octets each, 253 in all; one trailing dot is dropped. */
static const char *
config_check_hostname(char *value)
{
	size_t len = strlen(value), label = 0, i;
	bool numeric = true;
	char c;

	if (len > 0 && value[len - 1] == '.')
		value[--len] = '\0';
	if (len == 0)
		return "empty";
	if (len > CONFIG_DOMAIN_MAX)
		return "longer than 253 characters";
	for (i = 0; i <= len; i++) {
		c = value[i];
		if (c == '.' || c == '\0') {
			if (label == 0)
				return "empty label";
			if (value[i - 1] == '-')
				return "a label ends with '-'";
			if (c == '\0' && numeric)
				return "the last label is all digits";
			label = 0;
			numeric = true;
			continue;
		}
		if (++label > CONFIG_LABEL_MAX)
			return "a label is longer than 63 characters";
		if (c == '-' && label == 1)
			return "a label starts with '-'";
		if (c >= '0' && c <= '9')
			continue;
		numeric = false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
			return "only letters, digits, '-' and '.' are allowed";
	}
	return NULL;
}

/* A host name, lower-cased: local domains are compared case-insensitively. */
static const char *
config_check_domain(char *value)
{
	char *p;

	for (p = value; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return config_check_hostname(value);
}

/*
 * routes: each item is walked into a struct config_route_item, then checked as a whole: exactly
 * one kind key, the options its kind allows, no domain twice.
 */
static int
config_route_item(struct config_loader *ld, yaml_node_t *node, const char *path, void *items,
                  size_t i)
{
	struct config_route *all = items;
	struct config_route_item item = { .mx = true, .discard = true };
	char quoted[CONFIG_QUOTE_MAX + 4], dpath[CONFIG_PATH_MAX];
	unsigned before = ld->nerrors;
	yaml_node_t *domain;
	size_t j;

	item.r.kind = CONFIG_ROUTE_MX;
	item.r.mx_port = CONFIG_PORT_SMTP;
	item.r.relay_port = CONFIG_PORT_SMTP;
	item.r.tls = CONFIG_TLS_OPPORTUNISTIC;
	item.r.line = (unsigned)node->start_mark.line + 1;
	config_walk_mapping(ld, node, path, config_route_keys, &item);
	all[i] = item.r; /* from here on the list frees what the route holds */
	if (node->type != YAML_MAPPING_NODE && !config_node_is_null(node))
		return -1;

	if (config_route_kind(ld, node, path, &item) == 0) {
		all[i].kind = item.r.kind;
		config_route_options(ld, node, path, &all[i]);
	}

	/* The first route for a domain would hide the second for good. */
	for (j = 0; all[i].domain != NULL && j < i; j++) {
		if (all[j].domain == NULL || strcmp(all[j].domain, all[i].domain) != 0)
			continue;
		domain = config_mapping_value(ld, node, "domain");
		config_quote(all[i].domain, strlen(all[i].domain), quoted, sizeof(quoted));
		config_path(dpath, sizeof(dpath), "%s.domain", path);
		config_error(ld, domain != NULL ? &domain->start_mark : &node->start_mark, dpath,
		             "duplicate route domain '%s' (also at line %u)", quoted, all[j].line);
		break;
	}
	return ld->nerrors == before ? 0 : -1;
}

/* Exactly one of mx, relay, maildir, discard; mx and discard must say true. 0 if the kind is
 * known (item->r.kind), -1 if not. */
static int
config_route_kind(struct config_loader *ld, yaml_node_t *node, const char *path,
                  struct config_route_item *item)
{
	size_t nkinds = sizeof(config_route_kinds) / sizeof(config_route_kinds[0]), n = 0, k;
	yaml_node_t *key, *first = NULL, *value;
	char kpath[CONFIG_PATH_MAX];
	yaml_node_pair_t *pair;
	size_t kind = 0;

	/* In file order, so that the second kind named is the one reported (an empty item `-` is
	 * a null node, with no pairs). */
	for (pair = node->type == YAML_MAPPING_NODE ? node->data.mapping.pairs.start : NULL;
	     pair != NULL && pair < node->data.mapping.pairs.top; pair++) {
		key = yaml_document_get_node(ld->doc, pair->key);
		if (key == NULL || key->type != YAML_SCALAR_NODE ||
		    config_find_duplicate(ld, node, pair) != NULL)
			continue;
		for (k = 0; k < nkinds; k++) {
			if (strcmp((const char *)key->data.scalar.value, config_route_kinds[k]) ==
			    0)
				break;
		}
		if (k == nkinds)
			continue;
		if (n++ == 0) {
			first = key;
			kind = k;
			continue;
		}
		config_path(kpath, sizeof(kpath), "%s.%s", path, config_route_kinds[k]);
		config_error(ld, &key->start_mark, kpath,
		             "exactly one of mx, relay, maildir, discard (%s is at line %zu)",
		             config_route_kinds[kind], first->start_mark.line + 1);
	}
	if (n == 0) {
		config_error(ld, &node->start_mark, path,
		             "needs exactly one of mx, relay, maildir, discard");
		return -1;
	}
	if (n > 1)
		return -1;
	item->r.kind = (enum config_route_kind)kind;
	if ((kind == CONFIG_ROUTE_MX && !item->mx) ||
	    (kind == CONFIG_ROUTE_DISCARD && !item->discard)) {
		value = config_mapping_value(ld, node, config_route_kinds[kind]);
		config_path(kpath, sizeof(kpath), "%s.%s", path, config_route_kinds[kind]);
		config_error(ld, value != NULL ? &value->start_mark : &node->start_mark, kpath,
		             "must be true (it names the kind of route)");
	}
	return 0;
}

/* The keys that only some kinds of route take, reported in file order. */
static void
config_route_options(struct config_loader *ld, yaml_node_t *node, const char *path,
                     const struct config_route *r)
{
#define CONFIG_KINDS(a, b) ((1u << (a)) | (1u << (b)))
	static const struct {
		const char *name;
		unsigned kinds; /* bit (1 << enum config_route_kind) set: allowed */
		const char *msg;
	} options[] = {
		{ "port", 1u << CONFIG_ROUTE_MX,
		  "only on mx routes (a relay's port goes in relay: host:port)" },
		{ "tls", CONFIG_KINDS(CONFIG_ROUTE_MX, CONFIG_ROUTE_RELAY),
		  "only on relay or mx routes" },
		{ "ca_file", CONFIG_KINDS(CONFIG_ROUTE_MX, CONFIG_ROUTE_RELAY),
		  "only on relay or mx routes" },
		{ "auth", 1u << CONFIG_ROUTE_RELAY, "only on relay routes" },
	};
#undef CONFIG_KINDS
	char kpath[CONFIG_PATH_MAX];
	yaml_node_pair_t *pair;
	yaml_node_t *key;
	size_t i;

	if (node->type != YAML_MAPPING_NODE)
		return;
	for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
		key = yaml_document_get_node(ld->doc, pair->key);
		if (key == NULL || key->type != YAML_SCALAR_NODE ||
		    config_find_duplicate(ld, node, pair) != NULL)
			continue;
		for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
			if (strcmp((const char *)key->data.scalar.value, options[i].name) == 0)
				break;
		}
		if (i == sizeof(options) / sizeof(options[0]) ||
		    (options[i].kinds & (1u << r->kind)))
			continue;
		config_path(kpath, sizeof(kpath), "%s.%s", path, options[i].name);
		config_error(ld, &key->start_mark, kpath, "%s", options[i].msg);
	}
}

/* routes[i].relay: "host:port" → relay_host (no brackets) and relay_port. */
static void
config_route_relay(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                   const char *path, void *base)
{
	struct config_route_item *item = base;
	char host[CONFIG_DOMAIN_MAX + 3];
	const char *s, *why;
	unsigned port;
	char *copy;

	(void)key;
	s = config_scalar(ld, node, path, CONFIG_WHAT_RELAY);
	if (s == NULL)
		return;
	why = config_relay_parse(s, host, sizeof(host), &port);
	if (why != NULL) {
		config_error_expected(ld, node, path, CONFIG_WHAT_RELAY, why);
		return;
	}
	copy = strdup(host);
	if (copy == NULL) {
		ld->oom = true;
		return;
	}
	free(item->r.relay_host);
	item->r.relay_host = copy;
	item->r.relay_port = port;
}

static void
config_route_free_item(void *item)
{
	struct config_route *r = item;

	free(r->domain);
	free(r->maildir);
	free(r->relay_host);
	free(r->auth_user);
	free(r->auth_password_file);
	free(r->ca_file);
}

/* "*", a host name, or "." + a host name (its subdomains); lower-cased, trailing dot dropped. */
static const char *
config_check_route_domain(char *value)
{
	if (strcmp(value, "*") == 0)
		return NULL;
	if (value[0] == '*')
		return "write * alone for every domain, or .example.org for every subdomain of "
		       "example.org";
	if (value[0] == '.')
		return config_check_domain(value + 1);
	return config_check_domain(value);
}

/* %u, %d and %% are the only escapes (delivery/maildir.h maildir_expand()). */
static const char *
config_check_maildir(char *value)
{
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p != 'u' && *p != 'd' && *p != '%')
			return "only %u, %d and %% may follow a '%'";
	}
	return NULL;
}

/* queue.retry[i]: a duration of at least 1s. */
static int
config_retry_item(struct config_loader *ld, yaml_node_t *node, const char *path, void *items,
                  size_t i)
{
	unsigned *steps = items, before = ld->nerrors;

	config_apply(ld, &config_retry_step, node, path, &steps[i]);
	return ld->nerrors == before ? 0 : -1;
}

/*
 * queue: checks between keys, on the values the walk stored (a key that was absent keeps its
 * default; a key that was bad was reported already and is left out of these checks).
 */
static void
config_queue_post(struct config_loader *ld, yaml_node_t *node, const char *path, void *base)
{
	struct petrel_config *cfg = base;
	char kpath[CONFIG_PATH_MAX], a[32], b[32];
	yaml_node_t *v;

	if (config_number_ok(ld, node, config_queue_keys, "max_lifetime") &&
	    config_number_ok(ld, node, config_queue_keys, "delay_warning") &&
	    cfg->delay_warning != 0 && cfg->delay_warning >= cfg->max_lifetime) {
		config_duration_format(cfg->max_lifetime, a, sizeof(a));
		config_duration_format(cfg->delay_warning, b, sizeof(b));
		v = config_mapping_value(ld, node, "delay_warning");
		if (v != NULL) {
			config_path(kpath, sizeof(kpath), "%s.delay_warning", path);
			config_error(ld, &v->start_mark, kpath,
			             "must be shorter than max_lifetime (%s), got '%s'", a, b);
		} else {
			v = config_mapping_value(ld, node, "max_lifetime");
			config_path(kpath, sizeof(kpath), "%s.max_lifetime", path);
			config_error(ld, v != NULL ? &v->start_mark : &node->start_mark, kpath,
			             "must be longer than delay_warning (%s by default), got '%s'",
			             b, a);
		}
	}

	if (!config_number_ok(ld, node, config_queue_keys, "concurrency") ||
	    !config_number_ok(ld, node, config_queue_keys, "concurrency_per_destination"))
		return;
	v = config_mapping_value(ld, node, "concurrency_per_destination");
	if (v == NULL) {
		/* The default (20) never asks for more than the total allows. */
		if (cfg->concurrency_per_destination > cfg->concurrency)
			cfg->concurrency_per_destination = cfg->concurrency;
	} else if (cfg->concurrency_per_destination > cfg->concurrency) {
		config_path(kpath, sizeof(kpath), "%s.concurrency_per_destination", path);
		config_error(ld, &v->start_mark, kpath,
		             "must be at most concurrency (%u), got '%u'", cfg->concurrency,
		             cfg->concurrency_per_destination);
	}
}

/* queue.priorities[i]: {sender_domain and/or recipient_domain, priority}. */
static int
config_priority_item(struct config_loader *ld, yaml_node_t *node, const char *path, void *items,
                     size_t i)
{
	struct config_priority *all = items;
	unsigned before = ld->nerrors;

	config_walk_mapping(ld, node, path, config_priority_keys, &all[i]);
	if ((node->type == YAML_MAPPING_NODE || config_node_is_null(node)) &&
	    config_mapping_key(ld, node, "sender_domain") == NULL &&
	    config_mapping_key(ld, node, "recipient_domain") == NULL)
		config_error(ld, &node->start_mark, path,
		             "needs sender_domain or recipient_domain (or both)");
	return ld->nerrors == before ? 0 : -1;
}

/* queue.priorities[i].priority: high (10), normal (0), low (-10) or -100..100. */
static void
config_priority_value(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                      const char *path, void *base)
{
	static const struct config_enum_name names[] = {
		{ "high", 10 },
		{ "normal", 0 },
		{ "low", -10 },
	};
	struct config_priority *p = base;
	char quoted[CONFIG_QUOTE_MAX + 4];
	const char *s, *digits;
	enum config_num r;
	uint64_t v;
	size_t i;

	(void)key;
	s = config_scalar(ld, node, path, CONFIG_WHAT_PRIORITY);
	if (s == NULL)
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(names[i].name, s) == 0) {
			p->priority = names[i].value;
			return;
		}
	}
	digits = s + (*s == '-' || *s == '+');
	r = config_uint_parse(digits, &v);
	if (r == CONFIG_NUM_SYNTAX) {
		config_error_expected(ld, node, path, CONFIG_WHAT_PRIORITY, NULL);
		return;
	}
	if (r == CONFIG_NUM_RANGE || v > CONFIG_PRIORITY_MAX) {
		config_quote(s, strlen(s), quoted, sizeof(quoted));
		config_error(ld, &node->start_mark, path, "must be from -%d to %d, got '%s'",
		             CONFIG_PRIORITY_MAX, CONFIG_PRIORITY_MAX, quoted);
		return;
	}
	p->priority = *s == '-' ? -(int)v : (int)v;
}

static void
config_priority_free_item(void *item)
{
	struct config_priority *p = item;

	free(p->sender_domain);
	free(p->recipient_domain);
}

/* dns.nameservers: a list of numeric addresses, kept as one "a:53,[b]:53" string (c-ares CSV). */
static void
config_dns_nameservers(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                       const char *path, void *base)
{
	struct petrel_config *cfg = base;
	char one[CONFIG_NS_MAX], ipath[CONFIG_PATH_MAX];
	char *joined = NULL;
	size_t n, i, used = 0;
	yaml_node_item_t *it;
	const char *s, *why;
	yaml_node_t *item;
	bool bad = false;

	(void)key;
	if (node->type != YAML_SEQUENCE_NODE) {
		config_error_expected(ld, node, path, "a list", NULL);
		return;
	}
	n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	if (n == 0) {
		config_error(ld, &node->start_mark, path, "must not be empty");
		return;
	}
	joined = malloc(n * sizeof(one));
	if (joined == NULL) {
		ld->oom = true;
		return;
	}
	for (i = 0, it = node->data.sequence.items.start; i < n; i++, it++) {
		item = yaml_document_get_node(ld->doc, *it);
		config_path(ipath, sizeof(ipath), "%s[%zu]", path, i);
		s = item != NULL ? config_scalar(ld, item, ipath, CONFIG_WHAT_NS) : NULL;
		if (s == NULL) {
			bad = true;
			continue;
		}
		why = config_nameserver_parse(s, one, sizeof(one));
		if (why != NULL) {
			config_error_expected(ld, item, ipath, CONFIG_WHAT_NS, why);
			bad = true;
			continue;
		}
		used += (size_t)snprintf(joined + used, n * sizeof(one) - used, "%s%s",
		                         used > 0 ? "," : "", one);
	}
	if (bad) {
		free(joined);
		return;
	}
	free(cfg->nameservers);
	cfg->nameservers = joined;
}

/* tls: certificate and key go together (one given but bad still counts as given). */
static void
config_tls_post(struct config_loader *ld, yaml_node_t *node, const char *path, void *base)
{
	bool certificate = config_mapping_key(ld, node, "certificate") != NULL;
	bool key = config_mapping_key(ld, node, "key") != NULL;

	(void)base;
	if (certificate != key)
		config_error(ld, &node->start_mark, path,
		             "missing key '%s' (certificate and key go together)",
		             certificate ? "key" : "certificate");
}

/* stats.address: the same syntax and messages as a listen address. */
static void
config_stats_address(struct config_loader *ld, const struct config_key *key, yaml_node_t *node,
                     const char *path, void *base)
{
	struct petrel_config *cfg = base;
	struct config_listen l = { .address = NULL };

	config_listen_address(ld, key, node, path, &l);
	if (l.address == NULL)
		return;
	free(cfg->stats_address);
	cfg->stats_address = l.address;
	cfg->stats_addr = l.addr;
	cfg->stats_addrlen = l.addrlen;
}

/* A bearer token goes in a header as it is: visible ASCII, no spaces. */
static const char *
config_check_token(char *value)
{
	const char *p;

	for (p = value; *p != '\0'; p++) {
		if (*p <= ' ' || *p > '~')
			return "only visible ASCII characters, no spaces";
	}
	return NULL;
}

/* user: and group: must exist now (like the files tls: names), so that --check finds a typo. */
static const char *
config_check_user(char *value)
{
	return priv_user_unusable(value);
}

static const char *
config_check_group(char *value)
{
	return priv_group_unusable(value);
}

/*
 * Checks between sections, once the whole file was walked (tls: and auth: may come after
 * listen:): a listener with tls: starttls or implicit needs tls.certificate, and a submission
 * listener needs auth.users_file. On the listen list as installed: if one of its items was bad,
 * the default list stays (it needs neither) and the bad item was reported already. A
 * certificate or users_file given but bad was reported too, so it counts as given here.
 */
static void
config_root_post(struct config_loader *ld, yaml_node_t *node, const char *path, void *base)
{
	struct petrel_config *cfg = base;
	const struct config_listen *l;
	char kpath[CONFIG_PATH_MAX];
	bool certificate, users;
	yaml_node_t *list, *item, *v;
	size_t i, n = 0;

	certificate =
	        cfg->tls_certificate != NULL || config_section_has(ld, node, "tls", "certificate");
	users = cfg->auth_users_file != NULL || config_section_has(ld, node, "auth", "users_file");
	list = config_mapping_value(ld, node, "listen");
	if (list != NULL && list->type == YAML_SEQUENCE_NODE)
		n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
	for (i = 0; i < cfg->nlisten && i < n; i++) {
		l = &cfg->listen[i];
		if (l->line == 0) /* a default, not from the file */
			break;
		item = yaml_document_get_node(ld->doc, list->data.sequence.items.start[i]);
		if (item == NULL)
			continue;
		if (!certificate && (l->tls == CONFIG_LISTEN_TLS_STARTTLS ||
		                     l->tls == CONFIG_LISTEN_TLS_IMPLICIT)) {
			v = config_mapping_value(ld, item, "tls");
			config_path(kpath, sizeof(kpath), "%slisten[%zu].tls", path, i);
			config_error(ld, v != NULL ? &v->start_mark : &item->start_mark, kpath,
			             "%s needs tls.certificate",
			             l->tls == CONFIG_LISTEN_TLS_IMPLICIT ? "implicit"
			                                                  : "starttls");
		}
		if (!users && l->role == CONFIG_ROLE_SUBMISSION) {
			v = config_mapping_value(ld, item, "role");
			config_path(kpath, sizeof(kpath), "%slisten[%zu].role", path, i);
			config_error(ld, v != NULL ? &v->start_mark : &item->start_mark, kpath,
			             "submission needs auth.users_file");
		}
	}

	/* The stats endpoint and a listener cannot both bind one address (default listen too). */
	v = config_mapping_value(ld, node, "stats");
	v = v != NULL ? config_mapping_value(ld, v, "address") : NULL;
	for (i = 0; v != NULL && cfg->stats_address != NULL && i < cfg->nlisten; i++) {
		if (!config_sockaddr_equal(&cfg->listen[i].addr, &cfg->stats_addr))
			continue;
		config_path(kpath, sizeof(kpath), "%sstats.address", path);
		config_error(ld, &v->start_mark, kpath, "%s is already a listen address",
		             cfg->stats_address);
		break;
	}

	/* group: only says which group the user: runs with. */
	v = config_mapping_key(ld, node, "group");
	if (v != NULL && config_mapping_key(ld, node, "user") == NULL) {
		config_path(kpath, sizeof(kpath), "%sgroup", path);
		config_error(ld, &v->start_mark, kpath, "needs user:");
	}
}

/* Does mapping `section` of the top level have key `name` (whatever its value)? */
static bool
config_section_has(struct config_loader *ld, yaml_node_t *root, const char *section,
                   const char *name)
{
	yaml_node_t *v = config_mapping_value(ld, root, section);

	return v != NULL && config_mapping_key(ld, v, name) != NULL;
}

/*
 * Value syntax.
 */

/* One or more decimal digits at *sp, advancing past them. */
static enum config_num
config_digits(const char **sp, uint64_t *out)
{
	const char *p = *sp;
	uint64_t v = 0, d;

	if (*p < '0' || *p > '9')
		return CONFIG_NUM_SYNTAX;
	for (; *p >= '0' && *p <= '9'; p++) {
		d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return CONFIG_NUM_RANGE;
		v = v * 10 + d;
	}
	*sp = p;
	*out = v;
	return CONFIG_NUM_OK;
}

static enum config_num
config_uint_parse(const char *s, uint64_t *out)
{
	enum config_num r;
	uint64_t v;

	r = config_digits(&s, &v);
	if (r != CONFIG_NUM_OK)
		return r;
	if (*s != '\0')
		return CONFIG_NUM_SYNTAX;
	*out = v;
	return CONFIG_NUM_OK;
}

static enum config_num
config_size_parse(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{ "", 0 },    { "b", 0 },    { "k", 10 }, { "kb", 10 }, { "kib", 10 }, { "m", 20 },
		{ "mb", 20 }, { "mib", 20 }, { "g", 30 }, { "gb", 30 }, { "gib", 30 },
	};
	enum config_num r;
	uint64_t v;
	size_t i;

	r = config_digits(&s, &v);
	if (r != CONFIG_NUM_OK)
		return r;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s, units[i].suffix) != 0)
			continue;
		if (v > (UINT64_MAX >> units[i].shift))
			return CONFIG_NUM_RANGE;
		*out = v << units[i].shift;
		return CONFIG_NUM_OK;
	}
	return CONFIG_NUM_SYNTAX;
}

/* "90" (seconds) or number+unit groups from the largest unit down: "1h30m", "2d", "1w1d". */
static enum config_num
config_duration_parse(const char *s, uint64_t *out)
{
	size_t next = 0, u,
	       nunits = sizeof(config_duration_units) / sizeof(config_duration_units[0]);
	uint64_t total = 0, v;
	enum config_num r;

	r = config_digits(&s, &v);
	if (r != CONFIG_NUM_OK)
		return r;
	if (*s == '\0') {
		*out = v;
		return CONFIG_NUM_OK;
	}
	for (;;) {
		for (u = next; u < nunits && config_duration_units[u].unit != *s; u++)
			;
		if (u == nunits)
			return CONFIG_NUM_SYNTAX;
		if (v > UINT64_MAX / config_duration_units[u].seconds ||
		    total > UINT64_MAX - v * config_duration_units[u].seconds)
			return CONFIG_NUM_RANGE;
		total += v * config_duration_units[u].seconds;
		next = u + 1;
		if (*++s == '\0')
			break;
		r = config_digits(&s, &v);
		if (r != CONFIG_NUM_OK)
			return r;
		if (*s == '\0')
			return CONFIG_NUM_SYNTAX; /* "1h30": a number needs its unit after a unit */
	}
	*out = total;
	return CONFIG_NUM_OK;
}

/* NULL if `s` is a numeric listen address, else why not. */
static const char *
config_address_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_in6 *sin6;
	struct sockaddr_in *sin;
	const char *hend, *port;
	size_t hlen;
	uint64_t p;
	bool v6;

	if (s[0] == '[') {
		hend = strchr(s, ']');
		if (hend == NULL)
			return "missing ']'";
		if (hend[1] != ':')
			return "expected ':' and a port after ']'";
		s++;
		port = hend + 2;
		v6 = true;
	} else {
		hend = strrchr(s, ':');
		if (hend == NULL)
			return "missing ':' and port";
		if (memchr(s, ':', (size_t)(hend - s)) != NULL)
			return "an IPv6 address needs brackets, as in [::1]:25";
		port = hend + 1;
		v6 = false;
	}
	hlen = (size_t)(hend - s);
	if (hlen == 0)
		return "missing host, use * for any IPv4 address";
	if (config_uint_parse(port, &p) != CONFIG_NUM_OK || strlen(port) > 5)
		return *port == '\0' ? "missing port" : "the port is not a number";
	if (p > 65535)
		return "port out of range, must be 0 to 65535";
	if (hlen >= sizeof(host))
		return "not a numeric IP address";
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return "not a numeric IPv6 address";
		*len = sizeof(*sin6);
	} else {
		sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return "not a numeric IPv4 address, names are not resolved";
		*len = sizeof(*sin);
	}
	return NULL;
}

/*
 * "host", "host:port", "[v6]" or "[v6]:port" → the host (without brackets) and the port text
 * (NULL if none). Only the shape is checked here. NULL, or why not.
 */
static const char *
config_hostport_split(const char *s, const char **host, size_t *hlen, const char **port,
                      bool *bracketed)
{
	const char *hend;

	*port = NULL;
	*bracketed = s[0] == '[';
	if (*bracketed) {
		hend = strchr(s, ']');
		if (hend == NULL)
			return "missing ']'";
		if (hend[1] == ':')
			*port = hend + 2;
		else if (hend[1] != '\0')
			return "expected ':' and a port after ']'";
		s++;
	} else {
		hend = strrchr(s, ':');
		if (hend != NULL && memchr(s, ':', (size_t)(hend - s)) != NULL)
			return "an IPv6 address needs brackets, as in [::1]";
		if (hend != NULL)
			*port = hend + 1;
		else
			hend = s + strlen(s);
	}
	*host = s;
	*hlen = (size_t)(hend - s);
	return *hlen == 0 ? "missing host" : NULL;
}

/* A port 1..65535, or `dflt` when `s` is NULL (no ":port" given). NULL, or why not. */
static const char *
config_port_parse(const char *s, unsigned dflt, unsigned *out)
{
	uint64_t v;

	if (s == NULL) {
		*out = dflt;
		return NULL;
	}
	if (*s == '\0')
		return "missing port";
	if (config_uint_parse(s, &v) != CONFIG_NUM_OK || strlen(s) > 5)
		return "the port is not a number";
	if (v == 0 || v > 65535)
		return "port out of range, must be 1 to 65535";
	*out = (unsigned)v;
	return NULL;
}

/* A smarthost: host name (lower-cased), IPv4 or [IPv6], optional port (default 25). */
static const char *
config_relay_parse(const char *s, char *host, size_t size, unsigned *port)
{
	const char *h, *p, *why;
	unsigned char addr[sizeof(struct in6_addr)];
	bool bracketed;
	size_t hlen;

	why = config_hostport_split(s, &h, &hlen, &p, &bracketed);
	if (why == NULL)
		why = config_port_parse(p, CONFIG_PORT_SMTP, port);
	if (why != NULL)
		return why;
	if (hlen >= size)
		return "longer than 253 characters";
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (bracketed)
		return inet_pton(AF_INET6, host, addr) == 1 ? NULL : "not a numeric IPv6 address";
	if (inet_pton(AF_INET, host, addr) == 1)
		return NULL;
	return config_check_domain(host);
}

/* A numeric nameserver, port default 53 → "192.0.2.1:53" or "[2001:db8::1]:53" (canonical). */
static const char *
config_nameserver_parse(const char *s, char *out, size_t size)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char host[INET6_ADDRSTRLEN];
	const char *h, *p, *why;
	bool bracketed;
	unsigned port;
	size_t hlen;
	int family;

	why = config_hostport_split(s, &h, &hlen, &p, &bracketed);
	if (why == NULL)
		why = config_port_parse(p, CONFIG_PORT_DNS, &port);
	if (why != NULL)
		return why;
	family = bracketed ? AF_INET6 : AF_INET;
	if (hlen >= sizeof(host))
		return "not a numeric IP address";
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (inet_pton(family, host, addr) != 1)
		return bracketed ? "not a numeric IPv6 address"
		                 : "not a numeric IPv4 address, names are not resolved";
	inet_ntop(family, addr, host, sizeof(host));
	snprintf(out, size, bracketed ? "[%s]:%u" : "%s:%u", host, port);
	return NULL;
}

/* 14400 → "4h", 5400 → "1h30m", 0 → "0s": a duration as the file would write it. */
static void
config_duration_format(uint64_t seconds, char *buf, size_t size)
{
	size_t u, used = 0,
	          nunits = sizeof(config_duration_units) / sizeof(config_duration_units[0]);
	uint64_t n;

	snprintf(buf, size, "0s");
	for (u = 0; u < nunits && used < size; u++) {
		n = seconds / config_duration_units[u].seconds;
		if (n == 0)
			continue;
		seconds %= config_duration_units[u].seconds;
		used += (size_t)snprintf(buf + used, size - used, "%" PRIu64 "%c", n,
		                         config_duration_units[u].unit);
	}
}

bool
config_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)a;
	const struct sockaddr_in *b4 = (const struct sockaddr_in *)b;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
	const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)b;

	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return a4->sin_port == b4->sin_port && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		       memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
	return false;
}

/* Same family, address and (non-zero) port: two port 0 entries are two listeners. */
static bool
config_sockaddr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)a;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
	in_port_t port = a->ss_family == AF_INET6 ? a6->sin6_port : a4->sin_port;

	return port != 0 && config_same_address(a, b);
}

/*
 * The report.
 */

/* One line: "FILE:LINE:COL: PATH: message" (no position without a mark, no PATH at the top). */
static void
config_error(struct config_loader *ld, const yaml_mark_t *mark, const char *path, const char *fmt,
             ...)
{
	char msg[CONFIG_MSG_MAX];
	va_list ap;

	if (++ld->nerrors > CONFIG_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (mark != NULL)
		config_append(ld, "%s:%zu:%zu: ", ld->name, mark->line + 1, mark->column + 1);
	else
		config_append(ld, "%s: ", ld->name);
	if (path != NULL && *path != '\0')
		config_append(ld, "%s: ", path);
	config_append(ld, "%s\n", msg);
}

/* "expected WHAT, got 'value'" / "got a list" / "got nothing"; "bad NOUN 'value': WHY" if the
 * value has the right shape but is wrong (WHAT without its article is the NOUN). */
static void
config_error_expected(struct config_loader *ld, yaml_node_t *node, const char *path,
                      const char *what, const char *why)
{
	char quoted[CONFIG_QUOTE_MAX + 4], got[CONFIG_QUOTE_MAX + 16];
	const char *noun = what;

	if (node->type == YAML_MAPPING_NODE) {
		snprintf(got, sizeof(got), "a mapping");
	} else if (node->type == YAML_SEQUENCE_NODE) {
		snprintf(got, sizeof(got), "a list");
	} else if (config_node_is_null(node)) {
		snprintf(got, sizeof(got), "nothing");
	} else {
		config_quote((const char *)node->data.scalar.value, node->data.scalar.length,
		             quoted, sizeof(quoted));
		snprintf(got, sizeof(got), "'%s'", quoted);
	}
	if (why == NULL) {
		config_error(ld, &node->start_mark, path, "expected %s, got %s", what, got);
		return;
	}
	if (strncmp(noun, "a ", 2) == 0)
		noun += 2;
	else if (strncmp(noun, "an ", 3) == 0)
		noun += 3;
	config_error(ld, &node->start_mark, path, "bad %s %s: %s", noun, got, why);
}

/* libyaml's own message, at its position. */
static void
config_error_yaml(struct config_loader *ld, const yaml_parser_t *parser, const char *text,
                  size_t len)
{
	const char *problem = parser->problem != NULL ? parser->problem : "unknown error";
	yaml_mark_t mark = parser->problem_mark;
	size_t i;

	switch (parser->error) {
	case YAML_MEMORY_ERROR:
		ld->oom = true;
		return;
	case YAML_READER_ERROR:
		/* Bad encoding: the reader knows only a byte offset. */
		memset(&mark, 0, sizeof(mark));
		for (i = 0; i < parser->problem_offset && i < len; i++) {
			if (text[i] == '\n') {
				mark.line++;
				mark.column = 0;
			} else {
				mark.column++;
			}
		}
		config_error(ld, &mark, "syntax error", "%s", problem);
		return;
	default:
		break;
	}
	/* "address: *:25" reads as an alias named ":25": say what to do about it. */
	if (parser->context != NULL)
		config_error(ld, &mark, "syntax error", "%s (%s at %zu:%zu)%s", problem,
		             parser->context, parser->context_mark.line + 1,
		             parser->context_mark.column + 1,
		             strstr(parser->context, "alias") != NULL
		                     ? "; quote a value that starts with '*'"
		                     : "");
	else
		config_error(ld, &mark, "syntax error", "%s", problem);
}

static void
config_append(struct config_loader *ld, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *p;
	int n;

	if (ld->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (ld->errlen + (size_t)n + 1 > ld->errcap) {
		cap = ld->errcap > 0 ? ld->errcap : 256;
		while (ld->errlen + (size_t)n + 1 > cap)
			cap *= 2;
		p = realloc(ld->errors, cap);
		if (p == NULL) {
			ld->oom = true;
			return;
		}
		ld->errors = p;
		ld->errcap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(ld->errors + ld->errlen, ld->errcap - ld->errlen, fmt, ap);
	va_end(ap);
	ld->errlen += (size_t)n;
}

/* User text for a message: control bytes become '?', long text is cut (on a UTF-8 boundary). */
static void
config_quote(const char *s, size_t len, char *buf, size_t size)
{
	size_t n = len, i;

	if (n > size - 4)
		n = size - 4;
	while (n < len && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	for (i = 0; i < n; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (n < len) {
		memcpy(buf + n, "...", 4);
		return;
	}
	buf[n] = '\0';
}

/* A key path for messages ("limits.timeouts.data", "listen[2]"); cut if it does not fit. */
static void
config_path(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/* The report for the caller, or NULL if not even that could be allocated. */
static char *
config_report(struct config_loader *ld)
{
	char *report;

	if (ld->oom) {
		free(ld->errors);
		ld->errors = NULL;
		ld->errlen = ld->errcap = 0;
		ld->oom = false;
		ld->nerrors = 0;
		config_error(ld, NULL, NULL, "out of memory");
	} else if (ld->nerrors > CONFIG_MAX_ERRORS) {
		config_append(ld, "%s: %u more errors not shown\n", ld->name,
		              ld->nerrors - CONFIG_MAX_ERRORS);
	}
	report = ld->oom ? NULL : ld->errors;
	if (report == NULL)
		free(ld->errors);
	ld->errors = NULL;
	return report;
}

/*
 * The object.
 */

static struct petrel_config *
config_new_defaults(const char *name)
{
	struct petrel_config *cfg;
	struct config_listen *l;
	struct config_route *r;

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return NULL;
	cfg->refs = 1;
	cfg->path = strdup(name);
	cfg->spool = strdup(CONFIG_DEFAULT_SPOOL);
	cfg->listen = calloc(1, sizeof(*cfg->listen));
	cfg->relay_networks = calloc(2, sizeof(*cfg->relay_networks));
	cfg->stats_allow = calloc(2, sizeof(*cfg->stats_allow));
	cfg->local_domains = calloc(1, sizeof(*cfg->local_domains));
	cfg->routes = calloc(1, sizeof(*cfg->routes));
	cfg->retry = malloc(sizeof(config_default_retry));
	if (cfg->path == NULL || cfg->spool == NULL || cfg->listen == NULL ||
	    cfg->relay_networks == NULL || cfg->local_domains == NULL || cfg->routes == NULL ||
	    cfg->retry == NULL || cfg->stats_allow == NULL)
		goto fail;
	cfg->durability = CONFIG_DURABILITY_FSYNC;
	cfg->log_level = CONFIG_LOG_INFO;

	cfg->nlisten = 1;
	l = &cfg->listen[0];
	l->address = strdup(CONFIG_DEFAULT_LISTEN);
	if (l->address == NULL ||
	    config_address_parse(CONFIG_DEFAULT_LISTEN, &l->addr, &l->addrlen) != NULL)
		goto fail;
	l->role = CONFIG_ROLE_RELAY;

	cfg->nrelay_networks = 2;
	if (cidr_parse("127.0.0.0/8", &cfg->relay_networks[0]) < 0 ||
	    cidr_parse("::1/128", &cfg->relay_networks[1]) < 0)
		goto fail;
	cfg->nlocal_domains = 1;
	cfg->local_domains[0] = strdup(CONFIG_DEFAULT_DOMAIN);
	if (cfg->local_domains[0] == NULL)
		goto fail;

	cfg->max_message_size = UINT64_C(35) << 20;
	cfg->max_recipients = 1000;
	cfg->max_connections = 10000;
	cfg->max_connections_per_ip = 100;
	cfg->max_errors = 10;
	cfg->timeout_command = 300;
	cfg->timeout_data = 600;

	/* One route, {domain: "*", mx: true}: every domain by its MX records. */
	cfg->nroutes = 1;
	r = &cfg->routes[0];
	r->domain = strdup("*");
	if (r->domain == NULL)
		goto fail;
	r->kind = CONFIG_ROUTE_MX;
	r->mx_port = CONFIG_PORT_SMTP;
	r->relay_port = CONFIG_PORT_SMTP;
	r->tls = CONFIG_TLS_OPPORTUNISTIC;

	memcpy(cfg->retry, config_default_retry, sizeof(config_default_retry));
	cfg->nretry = sizeof(config_default_retry) / sizeof(config_default_retry[0]);
	cfg->max_lifetime = 5 * 86400;
	cfg->delay_warning = 4 * 3600;
	cfg->concurrency = 500;
	cfg->concurrency_per_destination = 20;

	/* No certificate (no TLS) and no users file (no AUTH) until the file names them. */
	cfg->tls_min_version = TLS1_2_VERSION;
	cfg->auth_require_tls = true;
	cfg->auth_sender_login_match = false;
	cfg->auth_max_failures = 5;
	cfg->auth_failure_window = 15 * 60;

	/* No stats endpoint until the file has a stats: section; loopback may scrape it. */
	cfg->nstats_allow = 2;
	if (cidr_parse("127.0.0.0/8", &cfg->stats_allow[0]) < 0 ||
	    cidr_parse("::1/128", &cfg->stats_allow[1]) < 0)
		goto fail;
	return cfg;

fail:
	config_free(cfg);
	return NULL;
}

/* gethostname(), used as is even without a dot; "localhost" if it fails or is empty. */
static int
config_default_hostname(struct petrel_config *cfg)
{
	char buf[256];

	if (gethostname(buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	buf[sizeof(buf) - 1] = '\0';
	cfg->hostname = strdup(buf[0] != '\0' ? buf : "localhost");
	return cfg->hostname != NULL ? 0 : -1;
}

/* Load the one document of the stream and walk it into `cfg`. */
static void
config_load_document(struct config_loader *ld, yaml_parser_t *parser, const char *text, size_t len,
                     struct petrel_config *cfg)
{
	yaml_document_t doc, extra;
	yaml_node_t *root;

	if (!yaml_parser_load(parser, &doc)) {
		config_error_yaml(ld, parser, text, len);
		return;
	}
	ld->doc = &doc;
	root = yaml_document_get_root_node(&doc);
	/* No document at all (empty file, only comments) or a bare "---": all defaults. */
	if (root != NULL && !config_node_is_null(root)) {
		if (root->type == YAML_MAPPING_NODE) {
			config_walk_mapping(ld, root, "", config_root_keys, cfg);
			config_root_post(ld, root, "", cfg);
		} else {
			config_error_expected(ld, root, "", "a mapping of keys at the top level",
			                      NULL);
		}
	}
	ld->doc = NULL;
	yaml_document_delete(&doc);

	if (root == NULL)
		return;
	if (!yaml_parser_load(parser, &extra)) {
		config_error_yaml(ld, parser, text, len);
		return;
	}
	if (yaml_document_get_root_node(&extra) != NULL)
		config_error(ld, &extra.start_mark, "", "only one YAML document is allowed");
	yaml_document_delete(&extra);
}

int
config_load_string(const char *name, const char *text, size_t len, struct petrel_config **out,
                   char **errors)
{
	struct config_loader ld = { .name = name };
	struct petrel_config *cfg = NULL;
	yaml_parser_t parser;

	*out = NULL;
	if (errors != NULL)
		*errors = NULL;
	if (!yaml_parser_initialize(&parser)) {
		ld.oom = true;
		goto fail;
	}
	cfg = config_new_defaults(name);
	if (cfg == NULL) {
		ld.oom = true;
		goto fail_parser;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	config_load_document(&ld, &parser, text, len, cfg);
	if (ld.nerrors > 0 || ld.oom)
		goto fail_parser;
	if (cfg->hostname == NULL && config_default_hostname(cfg) < 0) {
		ld.oom = true;
		goto fail_parser;
	}
	yaml_parser_delete(&parser);
	*out = cfg;
	return 0;

fail_parser:
	yaml_parser_delete(&parser);
fail:
	config_free(cfg);
	if (errors != NULL)
		*errors = config_report(&ld);
	else
		free(ld.errors);
	return -1;
}

/* The whole file into a malloc'd buffer (not NUL-terminated). */
static int
config_read_file(struct config_loader *ld, const char *path, char **text, size_t *len)
{
	size_t cap = 0, n = 0;
	char *buf = NULL, *p;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		config_error(ld, NULL, NULL, "cannot open: %s", strerror(errno));
		return -1;
	}
	for (;;) {
		if (n == cap) {
			if (cap > CONFIG_MAX_FILE) {
				config_error(ld, NULL, NULL, "larger than %d bytes",
				             CONFIG_MAX_FILE);
				goto fail;
			}
			cap = cap > 0 ? cap * 2 : 4096;
			p = realloc(buf, cap);
			if (p == NULL) {
				ld->oom = true;
				goto fail;
			}
			buf = p;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			config_error(ld, NULL, NULL, "cannot read: %s", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*text = buf;
	*len = n;
	return 0;

fail:
	free(buf);
	close(fd);
	return -1;
}

int
config_load(const char *path, struct petrel_config **out, char **errors)
{
	struct config_loader ld = { .name = path };
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (errors != NULL)
		*errors = NULL;
	if (config_read_file(&ld, path, &text, &len) < 0) {
		if (errors != NULL)
			*errors = config_report(&ld);
		else
			free(ld.errors);
		return -1;
	}
	rc = config_load_string(path, text, len, out, errors);
	free(text);
	return rc;
}

struct petrel_config *
config_ref(struct petrel_config *cfg)
{
	cfg->refs++;
	return cfg;
}

void
config_free(struct petrel_config *cfg)
{
	size_t i;

	if (cfg == NULL || --cfg->refs > 0)
		return;
	for (i = 0; i < cfg->nlisten; i++)
		config_listen_free_item(&cfg->listen[i]);
	free(cfg->listen);
	for (i = 0; i < cfg->nlocal_domains; i++)
		free(cfg->local_domains[i]);
	free(cfg->local_domains);
	free(cfg->relay_networks);
	for (i = 0; i < cfg->nroutes; i++)
		config_route_free_item(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->retry);
	for (i = 0; i < cfg->npriorities; i++)
		config_priority_free_item(&cfg->priorities[i]);
	free(cfg->priorities);
	free(cfg->nameservers);
	free(cfg->tls_certificate);
	free(cfg->tls_key);
	free(cfg->tls_ciphers);
	free(cfg->auth_users_file);
	free(cfg->stats_address);
	free(cfg->stats_token);
	free(cfg->stats_allow);
	free(cfg->spool);
	free(cfg->user);
	free(cfg->group);
	free(cfg->hostname);
	free(cfg->path);
	free(cfg);
}

/*
 * Public value parsers: the loader's, with the reason dropped.
 */

int
config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v;

	if (s == NULL || config_size_parse(s, &v) != CONFIG_NUM_OK)
		return -1;
	*out = v;
	return 0;
}

int
config_parse_duration(const char *s, uint64_t *out_seconds)
{
	uint64_t v;

	if (s == NULL || config_duration_parse(s, &v) != CONFIG_NUM_OK)
		return -1;
	*out_seconds = v;
	return 0;
}

int
config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_storage tmp;
	socklen_t tmplen;

	if (s == NULL || config_address_parse(s, &tmp, &tmplen) != NULL)
		return -1;
	*ss = tmp;
	*len = tmplen;
	return 0;
}

/* Is `domain` (len bytes, any case) exactly `want` (lower case, NUL-terminated)? */
static bool
config_domain_equal(const char *want, const char *domain, size_t len)
{
	size_t j;
	char c;

	for (j = 0; j < len; j++) {
		c = domain[j];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (want[j] == '\0' || want[j] != c)
			return false;
	}
	return want[len] == '\0';
}

/* The same for a NUL-terminated `domain` (NULL: no), one trailing dot ignored. */
static bool
config_domain_is(const char *want, const char *domain)
{
	size_t len;

	if (domain == NULL)
		return false;
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	return len > 0 && config_domain_equal(want, domain, len);
}

bool
config_is_local_domain(const struct petrel_config *cfg, const char *domain, size_t len)
{
	size_t i;

	if (cfg == NULL || domain == NULL)
		return false;
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0)
		return false;
	for (i = 0; i < cfg->nlocal_domains; i++) {
		if (config_domain_equal(cfg->local_domains[i], domain, len))
			return true;
	}
	return false;
}

enum config_listen_tls
config_listen_tls_effective(const struct petrel_config *cfg, const struct config_listen *l)
{
	if (l->tls != CONFIG_LISTEN_TLS_DEFAULT)
		return l->tls;
	return cfg != NULL && cfg->tls_certificate != NULL ? CONFIG_LISTEN_TLS_STARTTLS
	                                                   : CONFIG_LISTEN_TLS_NONE;
}

/* What a routes: list without "*" falls back to: {domain: "*", mx: true}, port 25. */
static char config_route_any[] = "*";
static const struct config_route config_route_implicit = {
	.domain = config_route_any,
	.kind = CONFIG_ROUTE_MX,
	.relay_port = CONFIG_PORT_SMTP,
	.mx_port = CONFIG_PORT_SMTP,
	.tls = CONFIG_TLS_OPPORTUNISTIC,
};

const struct config_route *
config_route_for(const struct petrel_config *cfg, const char *domain, size_t len)
{
	const struct config_route *r;
	size_t i, rlen;

	if (domain == NULL)
		len = 0;
	if (len > 0 && domain[len - 1] == '.')
		len--;
	for (i = 0; cfg != NULL && i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		if (strcmp(r->domain, "*") == 0)
			return r;
		if (r->domain[0] != '.') {
			if (len > 0 && config_domain_equal(r->domain, domain, len))
				return r;
			continue;
		}
		/* ".example.com" is compared with the tail of "a.example.com", dot included, and
		 * at least one character must come before it: example.com itself does not match. */
		rlen = strlen(r->domain);
		if (len > rlen && config_domain_equal(r->domain, domain + len - rlen, rlen))
			return r;
	}
	return &config_route_implicit;
}

int
config_priority_for(const struct petrel_config *cfg, const char *sender_domain,
                    const char *const *rcpt_domains, size_t nrcpt_domains)
{
	const struct config_priority *p;
	size_t i, j;

	for (i = 0; cfg != NULL && i < cfg->npriorities; i++) {
		p = &cfg->priorities[i];
		if (p->sender_domain != NULL && !config_domain_is(p->sender_domain, sender_domain))
			continue;
		if (p->recipient_domain != NULL) {
			for (j = 0; rcpt_domains != NULL && j < nrcpt_domains; j++) {
				if (config_domain_is(p->recipient_domain, rcpt_domains[j]))
					break;
			}
			if (rcpt_domains == NULL || j == nrcpt_domains)
				continue;
		}
		return p->priority;
	}
	return 0;
}
