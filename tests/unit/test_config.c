/*
 * test_config.c: config.c, the YAML loader and its value parsers.
 *
 * Error messages are part of the interface (an administrator reads them), so the error tests
 * compare whole reports, line:column and key included. Tables are looped over inside one Test()
 * each (Criterion's ParameterizedTest crashes with `const char *` fields pointing at literals);
 * every failure names its row. Fixture files are in tests/unit/data/config_*.yaml.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "petrel/config.h"

#ifndef TEST_DATA_DIR
#error "build with -DTEST_DATA_DIR=\"…/tests/unit/data\""
#endif

#define TEST_EXAMPLE_CONFIG TEST_DATA_DIR "/../../../config/petrel.yaml"

/* Load `text` as "t.yaml" and expect success. */
static struct petrel_config *
test_config_ok(const char *text)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;
	int rc;

	rc = config_load_string("t.yaml", text, strlen(text), &cfg, &errors);
	cr_assert_eq(rc, 0, "config rejected:\n%s\n--- errors:\n%s", text,
	             errors != NULL ? errors : "(none)");
	cr_assert_not_null(cfg);
	cr_assert_null(errors);
	return cfg;
}

/* Load `text` as "t.yaml", expect failure, return the report (caller frees). */
static char *
test_config_fail(const char *text)
{
	struct petrel_config *cfg = (struct petrel_config *)&cfg;
	char *errors = NULL;
	int rc;

	rc = config_load_string("t.yaml", text, strlen(text), &cfg, &errors);
	cr_assert_eq(rc, -1, "config accepted:\n%s", text);
	cr_assert_null(cfg);
	cr_assert_not_null(errors);
	return errors;
}

static void
test_config_expect_addr(const struct config_listen *l, const char *address, int family,
                        const char *host, unsigned port, enum config_role role)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->addr;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->addr;
	char buf[INET6_ADDRSTRLEN];

	cr_expect_str_eq(l->address, address);
	cr_assert_eq(l->addr.ss_family, family, "%s: family", address);
	if (family == AF_INET) {
		cr_expect_eq(l->addrlen, sizeof(*sin));
		cr_expect_eq(ntohs(sin->sin_port), port, "%s: port", address);
		inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
	} else {
		cr_expect_eq(l->addrlen, sizeof(*sin6));
		cr_expect_eq(ntohs(sin6->sin6_port), port, "%s: port", address);
		inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
	}
	cr_expect_str_eq(buf, host, "%s: host", address);
	cr_expect_eq(l->role, role, "%s: role", address);
}

static void
test_config_expect_net(const struct cidr *net, const char *text)
{
	struct cidr want;

	cr_assert_eq(cidr_parse(text, &want), 0);
	cr_expect_eq(net->family, want.family, "%s: family", text);
	cr_expect_eq(net->prefix, want.prefix, "%s: prefix", text);
	cr_expect_eq(memcmp(net->addr, want.addr, sizeof(want.addr)), 0, "%s: address", text);
}

static void
test_config_expect_defaults(const struct petrel_config *cfg)
{
	char host[256];

	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	cr_expect_str_eq(cfg->hostname, host[0] != '\0' ? host : "localhost");
	cr_expect_str_eq(cfg->spool, "./var/spool");
	cr_expect_eq(cfg->durability, CONFIG_DURABILITY_FSYNC);
	cr_expect_eq(cfg->log_level, CONFIG_LOG_INFO);

	cr_assert_eq(cfg->nlisten, 1);
	test_config_expect_addr(&cfg->listen[0], "127.0.0.1:2525", AF_INET, "127.0.0.1", 2525,
	                        CONFIG_ROLE_RELAY);

	cr_assert_eq(cfg->nrelay_networks, 2);
	test_config_expect_net(&cfg->relay_networks[0], "127.0.0.0/8");
	test_config_expect_net(&cfg->relay_networks[1], "::1/128");
	cr_assert_eq(cfg->nlocal_domains, 1);
	cr_expect_str_eq(cfg->local_domains[0], "localhost");

	cr_expect_eq(cfg->max_message_size, 35 * 1024 * 1024);
	cr_expect_eq(cfg->max_recipients, 1000);
	cr_expect_eq(cfg->max_connections, 10000);
	cr_expect_eq(cfg->max_connections_per_ip, 100);
	cr_expect_eq(cfg->max_errors, 10);
	cr_expect_eq(cfg->timeout_command, 300);
	cr_expect_eq(cfg->timeout_data, 600);
}

/*
 * Loading valid files.
 */

Test(config, defaults_from_empty_string)
{
	struct petrel_config *cfg = test_config_ok("");

	test_config_expect_defaults(cfg);
	cr_expect_str_eq(cfg->path, "t.yaml");
	config_free(cfg);
}

Test(config, defaults_from_empty_documents)
{
	static const char *const texts[] = {
		"\n",
		"   \n\n",
		"# only a comment\n",
		"---\n",
		"--- # empty\n...\n",
		"~\n",
		"null\n",
		"{}\n",
		"limits:\nrelay:\n",
		"limits: {}\nrelay: {}\n",
		"limits:\n  # max_errors: 3\n  timeouts:\n",
	};
	struct petrel_config *cfg;
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		cfg = test_config_ok(texts[i]);
		test_config_expect_defaults(cfg);
		config_free(cfg);
	}
}

Test(config, defaults_from_empty_file)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load(TEST_DATA_DIR "/config_empty.yaml", &cfg, &errors), 0, "%s",
	             errors);
	test_config_expect_defaults(cfg);
	cr_expect_str_eq(cfg->path, TEST_DATA_DIR "/config_empty.yaml");
	config_free(cfg);
}

Test(config, defaults_from_comments_only_file)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load(TEST_DATA_DIR "/config_comments.yaml", &cfg, &errors), 0, "%s",
	             errors);
	test_config_expect_defaults(cfg);
	config_free(cfg);
}

Test(config, full_file)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load(TEST_DATA_DIR "/config_full.yaml", &cfg, &errors), 0, "%s",
	             errors);
	cr_assert_null(errors);
	cr_expect_str_eq(cfg->hostname, "MX1.Example.ORG"); /* case kept, trailing dot dropped */
	cr_expect_str_eq(cfg->spool, "/var/spool/petrel");
	cr_expect_eq(cfg->durability, CONFIG_DURABILITY_NONE);
	cr_expect_eq(cfg->log_level, CONFIG_LOG_DEBUG);

	cr_assert_eq(cfg->nlisten, 4);
	test_config_expect_addr(&cfg->listen[0], "*:25", AF_INET, "0.0.0.0", 25, CONFIG_ROLE_RELAY);
	test_config_expect_addr(&cfg->listen[1], "[::]:25", AF_INET6, "::", 25, CONFIG_ROLE_RELAY);
	test_config_expect_addr(&cfg->listen[2], "192.0.2.10:587", AF_INET, "192.0.2.10", 587,
	                        CONFIG_ROLE_SUBMISSION);
	test_config_expect_addr(&cfg->listen[3], "[2001:db8::1]:0", AF_INET6, "2001:db8::1", 0,
	                        CONFIG_ROLE_SUBMISSION);
	cr_expect_eq(cfg->listen[0].line, 7);
	cr_expect_eq(cfg->listen[1].line, 9);
	cr_expect_eq(cfg->listen[2].line, 10);
	cr_expect_eq(cfg->listen[3].line, 12);

	cr_assert_eq(cfg->nrelay_networks, 3);
	test_config_expect_net(&cfg->relay_networks[0], "10.0.0.0/8");
	test_config_expect_net(&cfg->relay_networks[1], "2001:db8::/32");
	test_config_expect_net(&cfg->relay_networks[2], "192.0.2.7/32");
	cr_assert_eq(cfg->nlocal_domains, 3);
	cr_expect_str_eq(cfg->local_domains[0], "example.org");
	cr_expect_str_eq(cfg->local_domains[1], "mail.example.net");
	cr_expect_str_eq(cfg->local_domains[2], "localhost");

	cr_expect_eq(cfg->max_message_size, 10 * 1024 * 1024);
	cr_expect_eq(cfg->max_recipients, 100);
	cr_expect_eq(cfg->max_connections, 500);
	cr_expect_eq(cfg->max_connections_per_ip, 5);
	cr_expect_eq(cfg->max_errors, 3);
	cr_expect_eq(cfg->timeout_command, 300);
	cr_expect_eq(cfg->timeout_data, 5400);
	config_free(cfg);
}

/* config/petrel.yaml is what scripts/run uses: it must load, with the documented values. */
Test(config, shipped_example)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load(TEST_EXAMPLE_CONFIG, &cfg, &errors), 0, "%s", errors);
	cr_expect_str_eq(cfg->spool, "./var/spool");
	cr_expect_eq(cfg->durability, CONFIG_DURABILITY_FSYNC);
	cr_expect_eq(cfg->log_level, CONFIG_LOG_INFO);
	cr_assert_eq(cfg->nlisten, 2);
	test_config_expect_addr(&cfg->listen[0], "127.0.0.1:2525", AF_INET, "127.0.0.1", 2525,
	                        CONFIG_ROLE_RELAY);
	test_config_expect_addr(&cfg->listen[1], "[::1]:2525", AF_INET6, "::1", 2525,
	                        CONFIG_ROLE_RELAY);
	cr_assert_eq(cfg->nrelay_networks, 2);
	test_config_expect_net(&cfg->relay_networks[0], "127.0.0.0/8");
	test_config_expect_net(&cfg->relay_networks[1], "::1/128");
	cr_assert_eq(cfg->nlocal_domains, 1);
	cr_expect_str_eq(cfg->local_domains[0], "localhost");
	cr_expect_eq(cfg->max_message_size, 35 * 1024 * 1024);
	cr_expect_eq(cfg->max_recipients, 1000);
	cr_expect_eq(cfg->max_connections, 10000);
	cr_expect_eq(cfg->max_connections_per_ip, 100);
	cr_expect_eq(cfg->max_errors, 10);
	cr_expect_eq(cfg->timeout_command, 300);
	cr_expect_eq(cfg->timeout_data, 600);
	config_free(cfg);
}

Test(config, string_loader_uses_name_and_length)
{
	/* Not NUL-terminated after `len`: the loader must read exactly len bytes. */
	static const char text[] = "limits:\n  max_errors: 7\nlimits: broken";
	size_t len = strlen("limits:\n  max_errors: 7\n");
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load_string("inline", text, len, &cfg, &errors), 0, "%s", errors);
	cr_expect_eq(cfg->max_errors, 7);
	cr_expect_str_eq(cfg->path, "inline");
	config_free(cfg);

	cr_assert_eq(config_load_string("inline", "limits: 3\n", 10, &cfg, &errors), -1);
	cr_expect_str_eq(errors, "inline:1:9: limits: expected a mapping, got '3'\n");
	free(errors);

	/* errors may be NULL: the caller only wants to know. */
	cr_expect_eq(config_load_string("inline", "limits: 3\n", 10, &cfg, NULL), -1);
	cr_expect_null(cfg);
}

Test(config, lists_replace_defaults)
{
	struct petrel_config *cfg;

	cfg = test_config_ok("relay:\n  networks: []\n  local_domains: []\n");
	cr_expect_eq(cfg->nrelay_networks, 0);
	cr_expect_eq(cfg->nlocal_domains, 0);
	cr_expect_eq(cfg->nlisten, 1); /* untouched */
	cr_expect_not(config_is_local_domain(cfg, "localhost", 9));
	config_free(cfg);

	cfg = test_config_ok("listen:\n  - address: 192.0.2.1:25\n    role: submission\n"
	                     "relay:\n  networks: [192.0.2.0/24]\n"
	                     "  local_domains:\n    - Example.ORG.\n    - \"MAIL.example.net\"\n");
	cr_assert_eq(cfg->nlisten, 1);
	test_config_expect_addr(&cfg->listen[0], "192.0.2.1:25", AF_INET, "192.0.2.1", 25,
	                        CONFIG_ROLE_SUBMISSION);
	cr_expect_eq(cfg->listen[0].line, 2);
	cr_assert_eq(cfg->nrelay_networks, 1);
	test_config_expect_net(&cfg->relay_networks[0], "192.0.2.0/24");
	cr_assert_eq(cfg->nlocal_domains, 2);
	cr_expect_str_eq(cfg->local_domains[0], "example.org");
	cr_expect_str_eq(cfg->local_domains[1], "mail.example.net");
	config_free(cfg);
}

Test(config, scalars_plain_and_quoted)
{
	struct petrel_config *cfg;

	cfg = test_config_ok("hostname: 'mx.example.org'\nspool: \"/tmp/spool dir\"\n"
	                     "durability: \"none\"\nlog_level: 'warn'\n"
	                     "limits:\n  max_errors: '5'\n  max_recipients: \"100\"\n"
	                     "  max_message_size: '0'\n  timeouts: {command: \"90\", data: 1w}\n");
	cr_expect_str_eq(cfg->hostname, "mx.example.org");
	cr_expect_str_eq(cfg->spool, "/tmp/spool dir");
	cr_expect_eq(cfg->durability, CONFIG_DURABILITY_NONE);
	cr_expect_eq(cfg->log_level, CONFIG_LOG_WARN);
	cr_expect_eq(cfg->max_errors, 5);
	cr_expect_eq(cfg->max_recipients, 100);
	cr_expect_eq(cfg->max_message_size, 0); /* 0 = no limit: allowed */
	cr_expect_eq(cfg->timeout_command, 90);
	cr_expect_eq(cfg->timeout_data, 7 * 86400);
	config_free(cfg);

	cfg = test_config_ok("log_level: error\nhostname: mail\n");
	cr_expect_eq(cfg->log_level, CONFIG_LOG_ERROR);
	cr_expect_str_eq(cfg->hostname, "mail"); /* no dot: allowed */
	config_free(cfg);
}

/* Anchors and aliases are resolved by libyaml (documented in config.c and petrel.yaml). */
Test(config, aliases_are_resolved)
{
	struct petrel_config *cfg;

	cfg = test_config_ok("relay:\n  networks: &lan [10.0.0.0/8, \"::1/128\"]\n"
	                     "  local_domains: [&me example.org]\n"
	                     "hostname: *me\n"
	                     "limits:\n  timeouts: {command: &t 120s, data: *t}\n");
	cr_expect_str_eq(cfg->hostname, "example.org");
	cr_expect_eq(cfg->nrelay_networks, 2);
	cr_expect_eq(cfg->timeout_command, 120);
	cr_expect_eq(cfg->timeout_data, 120);
	config_free(cfg);
}

/*
 * Errors: exact reports.
 */

Test(config, missing_and_unreadable_file)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load(TEST_DATA_DIR "/config_does_not_exist.yaml", &cfg, &errors), -1);
	cr_expect_null(cfg);
	cr_expect_str_eq(errors, TEST_DATA_DIR
	                 "/config_does_not_exist.yaml: cannot open: No such file or directory\n");
	free(errors);

	cr_assert_eq(config_load(TEST_DATA_DIR, &cfg, &errors), -1);
	cr_expect_str_eq(errors, TEST_DATA_DIR ": cannot read: Is a directory\n");
	free(errors);

	cr_expect_eq(config_load(TEST_DATA_DIR "/config_does_not_exist.yaml", &cfg, NULL), -1);
}

Test(config, error_table)
{
	static const struct {
		const char *what;
		const char *yaml;
		const char *errors;
	} cases[] = {
		/* unknown keys */
		{ "unknown key, suggestion", "hostname: a.example\n\nlimts:\n  max_errors: 3\n",
		  "t.yaml:3:1: limts: unknown key, did you mean 'limits'?\n" },
		{ "unknown key, case", "Hostname: a.example\n",
		  "t.yaml:1:1: Hostname: unknown key, did you mean 'hostname'?\n" },
		{ "unknown key, nothing close", "frobnicate: 1\n",
		  "t.yaml:1:1: frobnicate: unknown key\n" },
		{ "unknown nested key", "limits:\n  timeouts:\n    comand: 5s\n",
		  "t.yaml:3:5: limits.timeouts.comand: unknown key, did you mean 'command'?\n" },
		{ "unknown key in a list item",
		  "listen:\n  - address: 127.0.0.1:25\n    rol: relay\n",
		  "t.yaml:3:5: listen[0].rol: unknown key, did you mean 'role'?\n" },
		{ "merge keys are not supported", "limits:\n  <<: {max_errors: 3}\n",
		  "t.yaml:2:3: limits.<<: unknown key\n" },
		{ "non-scalar key", "? [a, b]\n: c\n",
		  "t.yaml:1:3: expected a key name, got a list\n" },

		/* wrong types */
		{ "number: word", "limits:\n  max_errors: ten\n",
		  "t.yaml:2:15: limits.max_errors: expected a whole number, got 'ten'\n" },
		{ "number: negative", "limits:\n  max_errors: -1\n",
		  "t.yaml:2:15: limits.max_errors: expected a whole number, got '-1'\n" },
		{ "number: hex", "limits:\n  max_connections: 0x10\n",
		  "t.yaml:2:20: limits.max_connections: expected a whole number, got '0x10'\n" },
		{ "number: fraction", "limits:\n  max_connections_per_ip: 1.5\n",
		  "t.yaml:2:27: limits.max_connections_per_ip: expected a whole number, got "
		  "'1.5'\n" },
		{ "number: list", "limits:\n  max_errors: [1]\n",
		  "t.yaml:2:15: limits.max_errors: expected a whole number, got a list\n" },
		{ "list: scalar", "listen: 127.0.0.1:25\n",
		  "t.yaml:1:9: listen: expected a list, got '127.0.0.1:25'\n" },
		{ "list: mapping", "listen:\n  address: 127.0.0.1:25\n",
		  "t.yaml:2:3: listen: expected a list, got a mapping\n" },
		{ "list: nothing", "relay:\n  networks:\n",
		  "t.yaml:2:12: relay.networks: expected a list, got nothing "
		  "(write [] for an empty list)\n" },
		{ "mapping: scalar", "limits: 5\n",
		  "t.yaml:1:9: limits: expected a mapping, got '5'\n" },
		{ "mapping: list", "relay: [a]\n",
		  "t.yaml:1:8: relay: expected a mapping, got a list\n" },
		{ "string: list", "hostname: [a, b]\n",
		  "t.yaml:1:11: hostname: expected a host name, got a list\n" },
		{ "string: nothing", "hostname:\nspool: ~\n",
		  "t.yaml:1:10: hostname: expected a host name, got nothing\n"
		  "t.yaml:2:8: spool: expected a directory, got nothing\n" },
		{ "string: empty", "spool: \"\"\n", "t.yaml:1:8: spool: must not be empty\n" },
		{ "string: NUL", "hostname: \"a\\0b\"\n",
		  "t.yaml:1:11: hostname: contains a NUL character\n" },
		{ "top level: list", "- a\n- b\n",
		  "t.yaml:1:1: expected a mapping of keys at the top level, got a list\n" },
		{ "top level: scalar", "hello\n",
		  "t.yaml:1:1: expected a mapping of keys at the top level, got 'hello'\n" },

		/* bad values */
		{ "hostname: underscore", "hostname: mx_1.example.org\n",
		  "t.yaml:1:11: hostname: bad host name 'mx_1.example.org': only letters, digits, "
		  "'-' and '.' are allowed\n" },
		{ "address: name", "listen:\n  - address: localhost:25\n",
		  "t.yaml:2:14: listen[0].address: bad listen address 'localhost:25': not a "
		  "numeric "
		  "IPv4 address, names are not resolved\n" },
		{ "address: no port", "listen:\n  - address: 127.0.0.1\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '127.0.0.1': missing ':' and "
		  "port\n" },
		{ "address: empty port", "listen:\n  - address: '127.0.0.1:'\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '127.0.0.1:': missing "
		  "port\n" },
		{ "address: port out of range", "listen:\n  - address: 127.0.0.1:65536\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '127.0.0.1:65536': port out "
		  "of "
		  "range, must be 0 to 65535\n" },
		{ "address: port by name", "listen:\n  - address: 127.0.0.1:smtp\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '127.0.0.1:smtp': the port "
		  "is "
		  "not a number\n" },
		{ "address: v6 without brackets", "listen:\n  - address: ::1:25\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '::1:25': an IPv6 address "
		  "needs "
		  "brackets, as in [::1]:25\n" },
		{ "address: v6 without port", "listen:\n  - address: \"[::1]\"\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '[::1]': expected ':' and a "
		  "port after ']'\n" },
		{ "address: bad v6", "listen:\n  - address: \"[::g]:25\"\n",
		  "t.yaml:2:14: listen[0].address: bad listen address '[::g]:25': not a numeric "
		  "IPv6 "
		  "address\n" },
		{ "address: missing host", "listen:\n  - address: :25\n",
		  "t.yaml:2:14: listen[0].address: bad listen address ':25': missing host, use * "
		  "for "
		  "any IPv4 address\n" },
		{ "listen: empty", "listen: []\n", "t.yaml:1:9: listen: must not be empty\n" },
		{ "listen: item not a mapping", "listen:\n  - 127.0.0.1:25\n",
		  "t.yaml:2:5: listen[0]: expected a mapping, got '127.0.0.1:25'\n" },
		{ "listen: missing address", "listen:\n  - role: submission\n",
		  "t.yaml:2:5: listen[0]: missing key 'address'\n" },
		{ "listen: empty item", "listen:\n  -\n",
		  "t.yaml:2:4: listen[0]: missing key 'address'\n" },
		{ "listen: duplicate address",
		  "listen:\n  - address: 127.0.0.1:25\n  - address: \"*:26\"\n"
		  "  - address: 127.0.0.1:25\n    role: submission\n",
		  "t.yaml:4:14: listen[2].address: duplicate listen address '127.0.0.1:25' (also "
		  "at "
		  "line 2)\n" },
		{ "listen: * is 0.0.0.0",
		  "listen:\n  - address: \"*:25\"\n  - address: 0.0.0.0:25\n",
		  "t.yaml:3:14: listen[1].address: duplicate listen address '0.0.0.0:25' (also at "
		  "line 2)\n" },
		{ "listen: unknown role", "listen:\n  - address: 127.0.0.1:25\n    role: mx\n",
		  "t.yaml:3:11: listen[0].role: unknown value 'mx' (expected relay or "
		  "submission)\n" },
		{ "durability: unknown", "durability: fast\n",
		  "t.yaml:1:13: durability: unknown value 'fast' (expected fsync or none)\n" },
		{ "log_level: unknown", "log_level: verbose\n",
		  "t.yaml:1:12: log_level: unknown value 'verbose' (expected error, warn, info or "
		  "debug)\n" },
		{ "enum: case matters", "durability: FSYNC\n",
		  "t.yaml:1:13: durability: unknown value 'FSYNC' (expected fsync or none)\n" },
		{ "cidr: prefix too long", "relay:\n  networks: [10.0.0.0/33]\n",
		  "t.yaml:2:14: relay.networks[0]: expected a network such as 10.0.0.0/8, "
		  "\"::1/128\" or 192.0.2.7, got '10.0.0.0/33'\n" },
		{ "cidr: several bad",
		  "relay:\n  networks:\n    - junk\n    - \"::1/128\"\n"
		  "    - \"/8\"\n    - [1]\n",
		  "t.yaml:3:7: relay.networks[0]: expected a network such as 10.0.0.0/8, "
		  "\"::1/128\" or 192.0.2.7, got 'junk'\n"
		  "t.yaml:5:7: relay.networks[2]: expected a network such as 10.0.0.0/8, "
		  "\"::1/128\" or 192.0.2.7, got '/8'\n"
		  "t.yaml:6:7: relay.networks[3]: expected a network such as 10.0.0.0/8, "
		  "\"::1/128\" or 192.0.2.7, got a list\n" },
		{ "domain: bad labels",
		  "relay:\n  local_domains: [a..b, -x.example, x-.example, x_y.example, 1.2.3.4, "
		  "\".\"]\n",
		  "t.yaml:2:19: relay.local_domains[0]: bad domain name 'a..b': empty label\n"
		  "t.yaml:2:25: relay.local_domains[1]: bad domain name '-x.example': a label "
		  "starts "
		  "with '-'\n"
		  "t.yaml:2:37: relay.local_domains[2]: bad domain name 'x-.example': a label ends "
		  "with '-'\n"
		  "t.yaml:2:49: relay.local_domains[3]: bad domain name 'x_y.example': only "
		  "letters, "
		  "digits, '-' and '.' are allowed\n"
		  "t.yaml:2:62: relay.local_domains[4]: bad domain name '1.2.3.4': the last label "
		  "is "
		  "all digits\n"
		  "t.yaml:2:71: relay.local_domains[5]: bad domain name '.': empty\n" },
		{ "domain: long label",
		  "relay:\n  local_domains: "
		  "[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example]\n",
		  "t.yaml:2:19: relay.local_domains[0]: bad domain name "
		  "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...': a label "
		  "is "
		  "longer "
		  "than 63 characters\n" },
		{ "size: bad suffix", "limits:\n  max_message_size: 35X\n",
		  "t.yaml:2:21: limits.max_message_size: expected a size such as 35M, got "
		  "'35X'\n" },
		{ "size: fraction", "limits:\n  max_message_size: 1.5G\n",
		  "t.yaml:2:21: limits.max_message_size: expected a size such as 35M, got "
		  "'1.5G'\n" },
		{ "size: overflow", "limits:\n  max_message_size: 17179869184G\n",
		  "t.yaml:2:21: limits.max_message_size: '17179869184G' is too large\n" },
		{ "duration: bad unit", "limits:\n  timeouts:\n    command: 5y\n",
		  "t.yaml:3:14: limits.timeouts.command: expected a duration such as 300s, 5m or "
		  "1h30m, got '5y'\n" },
		{ "duration: number after a unit", "limits:\n  timeouts: {data: 1h30}\n",
		  "t.yaml:2:20: limits.timeouts.data: expected a duration such as 300s, 5m or "
		  "1h30m, "
		  "got '1h30'\n" },
		{ "duration: overflow", "limits:\n  timeouts: {data: 99999999999999999999s}\n",
		  "t.yaml:2:20: limits.timeouts.data: '99999999999999999999s' is too large\n" },
		{ "duration: above unsigned", "limits:\n  timeouts: {data: 100000w}\n",
		  "t.yaml:2:20: limits.timeouts.data: must be at most 4294967295, got "
		  "'100000w'\n" },
		{ "max_recipients below 100", "limits:\n  max_recipients: 99\n",
		  "t.yaml:2:19: limits.max_recipients: must be at least 100 (RFC 5321 section "
		  "4.5.3.1.8), got '99'\n" },
		{ "zero not allowed",
		  "limits:\n  max_connections: 0\n  max_connections_per_ip: 0\n  max_errors: 00\n"
		  "  timeouts: {command: 0s, data: 0}\n",
		  "t.yaml:2:20: limits.max_connections: must not be 0\n"
		  "t.yaml:3:27: limits.max_connections_per_ip: must not be 0\n"
		  "t.yaml:4:15: limits.max_errors: must not be 0\n"
		  "t.yaml:5:23: limits.timeouts.command: must not be 0\n"
		  "t.yaml:5:33: limits.timeouts.data: must not be 0\n" },
		{ "number above unsigned", "limits:\n  max_errors: 4294967296\n",
		  "t.yaml:2:15: limits.max_errors: must be at most 4294967295, got "
		  "'4294967296'\n" },
		{ "duplicate key", "hostname: a.example\nspool: /s\nhostname: b.example\n",
		  "t.yaml:3:1: hostname: duplicate key (first at line 1)\n" },
		{ "duplicate nested key", "limits:\n  timeouts: {data: 1s, data: 2s}\n",
		  "t.yaml:2:24: limits.timeouts.data: duplicate key (first at line 2)\n" },
		{ "duplicate list key",
		  "listen:\n  - address: 127.0.0.1:1\n    address: 127.0.0.1:2\n",
		  "t.yaml:3:5: listen[0].address: duplicate key (first at line 2)\n" },
		{ "duplicate section", "relay: {}\nlimits: {}\nrelay:\n  networks: []\n",
		  "t.yaml:3:1: relay: duplicate key (first at line 1)\n" },

		/* YAML itself */
		{ "syntax: mapping in a scalar", "a: b: c\n",
		  "t.yaml:1:5: syntax error: mapping values are not allowed in this context\n" },
		{ "syntax: unclosed flow list", "relay:\n  networks: [1, 2\n",
		  "t.yaml:3:1: syntax error: did not find expected ',' or ']' (while parsing a "
		  "flow "
		  "sequence at 2:13)\n" },
		{ "syntax: tab indentation", "limits:\n\tmax_errors: 3\n",
		  "t.yaml:2:1: syntax error: found character that cannot start any token (while "
		  "scanning for the next token at 2:1)\n" },
		{ "syntax: unquoted *", "listen:\n  - address: *:25\n",
		  "t.yaml:2:15: syntax error: did not find expected alphabetic or numeric "
		  "character "
		  "(while scanning an alias at 2:14); quote a value that starts with '*'\n" },
		{ "syntax: undefined alias", "hostname: *nope\n",
		  "t.yaml:1:11: syntax error: found undefined alias\n" },
		{ "syntax: bad indentation", "limits:\n  max_errors: 3\n max_recipients: 100\n",
		  "t.yaml:3:2: syntax error: did not find expected key (while parsing a block "
		  "mapping at 1:1)\n" },
		{ "two documents", "hostname: a.example\n---\nhostname: b.example\n",
		  "t.yaml:2:1: only one YAML document is allowed\n" },
	};
	char *errors;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		errors = test_config_fail(cases[i].yaml);
		cr_expect_str_eq(errors, cases[i].errors, "%s:\n--- got:\n%s--- want:\n%s",
		                 cases[i].what, errors, cases[i].errors);
		free(errors);
	}
}

Test(config, errors_file_reports_all)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

#define F TEST_DATA_DIR "/config_errors.yaml"
	cr_assert_eq(config_load(F, &cfg, &errors), -1);
	cr_expect_null(cfg);
	cr_expect_str_eq(
	        errors, F
	        ":4:1: durabilty: unknown key, did you mean 'durability'?\n" F
	        ":5:12: log_level: unknown value 'loud' (expected error, warn, info or debug)\n" F
	        ":8:14: listen[1].address: duplicate listen address '127.0.0.1:2525' (also at "
	        "line 7)\n" F ":10:14: listen[2].address: bad listen address '[::1]:65536': port "
	        "out of range, must be 0 to 65535\n" F ":11:5: listen[3]: missing key 'address'\n" F
	        ":13:27: relay.networks[1]: expected a network such as 10.0.0.0/8, \"::1/128\" or "
	        "192.0.2.7, got '10.0.0.0/33'\n" F
	        ":14:30: relay.local_domains[1]: bad domain name "
	        "'bad domain': only letters, digits, '-' and '.' are allowed\n" F
	        ":16:21: limits.max_message_size: expected a size such as 35M, got '35Q'\n" F
	        ":17:19: limits.max_recipients: must be at least 100 (RFC 5321 section "
	        "4.5.3.1.8), got '10'\n" F ":18:20: limits.max_connections: must not be 0\n" F
	        ":19:15: limits.max_errors: expected a whole number, got 'ten'\n" F
	        ":20:3: limits.max_errors: duplicate key (first at line 19)\n" F
	        ":21:24: limits.timeouts.command: expected a duration such as 300s, 5m or 1h30m, "
	        "got '5 minutes'\n");
#undef F
	free(errors);
}

Test(config, errors_several_in_one_string)
{
	char *errors;

	errors = test_config_fail("hostnam: mx.example.org\n"
	                          "listen:\n"
	                          "  - address: 10.0.0.1:25\n"
	                          "    role: relay\n"
	                          "  - address: 10.0.0.1:25\n"
	                          "relay:\n"
	                          "  networks: [10.0.0.0/8, 300.0.0.0/8]\n"
	                          "limits:\n"
	                          "  max_errors: 0\n"
	                          "  timeouts: {command: 1h30, data: 10m}\n");
	cr_expect_str_eq(
	        errors,
	        "t.yaml:1:1: hostnam: unknown key, did you mean 'hostname'?\n"
	        "t.yaml:5:14: listen[1].address: duplicate listen address '10.0.0.1:25' "
	        "(also at line 3)\n"
	        "t.yaml:7:26: relay.networks[1]: expected a network such as 10.0.0.0/8, "
	        "\"::1/128\" or 192.0.2.7, got '300.0.0.0/8'\n"
	        "t.yaml:9:15: limits.max_errors: must not be 0\n"
	        "t.yaml:10:23: limits.timeouts.command: expected a duration such as 300s, 5m "
	        "or 1h30m, got '1h30'\n");
	free(errors);
}

Test(config, errors_are_capped)
{
	char *text, *errors, *p;
	size_t len = 0, lines = 0;
	int i;

	text = malloc(150 * 16);
	cr_assert_not_null(text);
	for (i = 0; i < 150; i++)
		len += (size_t)sprintf(text + len, "bogus%03d: 1\n", i);
	errors = test_config_fail(text);
	for (p = errors; *p != '\0'; p++)
		lines += *p == '\n';
	cr_expect_eq(lines, 101);
	cr_expect(strstr(errors, "t.yaml:100:1: bogus099: unknown key\n") != NULL);
	cr_expect(strstr(errors, "bogus100") == NULL);
	p = strstr(errors, "t.yaml: 50 more errors not shown\n");
	cr_expect(p != NULL && p[strlen("t.yaml: 50 more errors not shown\n")] == '\0', "%s",
	          errors);
	free(errors);
	free(text);
}

Test(config, errors_escape_user_text)
{
	struct petrel_config *cfg = NULL;
	static const char text[] = "limits:\n  max_errors: \"1\\x1b[31m\"\n";
	char *errors = NULL;

	cr_assert_eq(config_load_string("t.yaml", text, strlen(text), &cfg, &errors), -1);
	cr_expect_str_eq(errors,
	                 "t.yaml:2:15: limits.max_errors: expected a whole number, got '1?[31m'\n");
	free(errors);
}

Test(config, errors_raw_nul_and_bad_utf8)
{
	static const char nul[] = "hostname: a\0b\n";
	static const char utf8[] = "hostname: mx\n# caf\xff more\n";
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

	cr_assert_eq(config_load_string("t.yaml", nul, sizeof(nul) - 1, &cfg, &errors), -1);
	cr_expect_str_eq(errors, "t.yaml:1:12: syntax error: control characters are not allowed\n");
	free(errors);

	cr_assert_eq(config_load_string("t.yaml", utf8, sizeof(utf8) - 1, &cfg, &errors), -1);
	cr_expect_str_eq(errors, "t.yaml:2:6: syntax error: invalid leading UTF-8 octet\n");
	free(errors);
}

/*
 * Value parsers.
 */

Test(config, parse_size)
{
	static const struct {
		const char *in;
		uint64_t out;
	} good[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "007", 7 },
		{ "100B", 100 },
		{ "1K", 1024 },
		{ "1k", 1024 },
		{ "1KB", 1024 },
		{ "1KiB", 1024 },
		{ "1kib", 1024 },
		{ "35M", 36700160 },
		{ "35m", 36700160 },
		{ "35MB", 36700160 },
		{ "35MiB", 36700160 },
		{ "2G", UINT64_C(2147483648) },
		{ "2GiB", UINT64_C(2147483648) },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183G", UINT64_C(17179869183) << 30 },
		{ "18014398509481983K", UINT64_C(18014398509481983) << 10 },
	};
	static const char *const bad[] = {
		"",
		"M",
		"K1",
		"35X",
		"35 M",
		" 35M",
		"35M ",
		"-1",
		"+1",
		"1.5G",
		"1e6",
		"0x10",
		"1_000",
		"35MM",
		"35Mi",
		"35iB",
		"35MBB",
		"1T",
		"18446744073709551616",
		"17179869184G",
		"18014398509481984K",
		"99999999999999999999999",
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		cr_expect_eq(config_parse_size(good[i].in, &v), 0, "\"%s\" rejected", good[i].in);
		cr_expect_eq(v, good[i].out, "\"%s\" → %" PRIu64, good[i].in, v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		cr_expect_eq(config_parse_size(bad[i], &v), -1, "\"%s\" accepted", bad[i]);
		cr_expect_eq(v, 12345, "\"%s\": out was written", bad[i]);
	}
	cr_expect_eq(config_parse_size(NULL, &v), -1);
}

Test(config, parse_duration)
{
	static const struct {
		const char *in;
		uint64_t out;
	} good[] = {
		{ "0", 0 },
		{ "90", 90 },
		{ "0s", 0 },
		{ "300s", 300 },
		{ "5m", 300 },
		{ "1h", 3600 },
		{ "2d", 172800 },
		{ "1w", 604800 },
		{ "1h30m", 5400 },
		{ "1h30s", 3630 },
		{ "1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5 },
		{ "90m", 5400 },
		{ "18446744073709551615", UINT64_MAX },
		{ "18446744073709551615s", UINT64_MAX },
		{ "307445734561825860m", UINT64_C(307445734561825860) * 60 },
	};
	static const char *const bad[] = {
		"",
		"s",
		"h1",
		"5y",
		"5S",
		"5M",
		"5H",
		"1h30",
		"30m1h",
		"1m1m",
		"5 m",
		" 5m",
		"5m ",
		"-5s",
		"+5s",
		"1.5h",
		"5ms",
		"5min",
		"18446744073709551616",
		"307445734561825861m",
		"30500000000000000w",
		"1m18446744073709551615s",
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		cr_expect_eq(config_parse_duration(good[i].in, &v), 0, "\"%s\" rejected",
		             good[i].in);
		cr_expect_eq(v, good[i].out, "\"%s\" → %" PRIu64, good[i].in, v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		cr_expect_eq(config_parse_duration(bad[i], &v), -1, "\"%s\" accepted", bad[i]);
		cr_expect_eq(v, 12345, "\"%s\": out was written", bad[i]);
	}
	cr_expect_eq(config_parse_duration(NULL, &v), -1);
}

Test(config, parse_address)
{
	static const struct {
		const char *in;
		int family;
		const char *host;
		unsigned port;
	} good[] = {
		{ "127.0.0.1:2525", AF_INET, "127.0.0.1", 2525 },
		{ "*:25", AF_INET, "0.0.0.0", 25 },
		{ "0.0.0.0:0", AF_INET, "0.0.0.0", 0 },
		{ "255.255.255.255:65535", AF_INET, "255.255.255.255", 65535 },
		{ "192.0.2.1:00025", AF_INET, "192.0.2.1", 25 },
		{ "[::1]:25", AF_INET6, "::1", 25 },
		{ "[::]:587", AF_INET6, "::", 587 },
		{ "[2001:db8::1]:65535", AF_INET6, "2001:db8::1", 65535 },
		{ "[2001:DB8::1]:1", AF_INET6, "2001:db8::1", 1 },
		{ "[::ffff:127.0.0.1]:25", AF_INET6, "::ffff:127.0.0.1", 25 },
	};
	static const char *const bad[] = {
		"",
		":",
		"127.0.0.1",
		"127.0.0.1:",
		":25",
		"127.0.0.1:65536",
		"127.0.0.1:99999",
		"127.0.0.1:000025",
		"127.0.0.1:-1",
		"127.0.0.1:+25",
		"127.0.0.1:0x19",
		"127.0.0.1:smtp",
		"127.0.0.1:25 ",
		" 127.0.0.1:25",
		"127.0.0.1 :25",
		"127.0.0.1:25:25",
		"localhost:25",
		"mx.example.org:25",
		"1.2.3:25",
		"256.1.1.1:25",
		"::1:25",
		"::1",
		"[::1]",
		"[::1]:",
		"[::1]25",
		"[::1:25",
		"::1]:25",
		"[]:25",
		"[*]:25",
		"[127.0.0.1]:25",
		"[fe80::1%eth0]:25",
		"[::1]:25:25",
		"[::1]:65536",
		"*",
		"*:",
		"**:25",
		"*.*:25",
	};
	struct sockaddr_storage ss, zero;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	char buf[INET6_ADDRSTRLEN];
	socklen_t len;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		len = 0;
		cr_assert_eq(config_parse_address(good[i].in, &ss, &len), 0, "\"%s\" rejected",
		             good[i].in);
		cr_assert_eq(ss.ss_family, good[i].family, "%s: family", good[i].in);
		if (good[i].family == AF_INET) {
			cr_expect_eq(len, sizeof(*sin), "%s: len", good[i].in);
			cr_expect_eq(ntohs(sin->sin_port), good[i].port, "%s: port", good[i].in);
			inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
		} else {
			cr_expect_eq(len, sizeof(*sin6), "%s: len", good[i].in);
			cr_expect_eq(ntohs(sin6->sin6_port), good[i].port, "%s: port", good[i].in);
			inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
		}
		cr_expect_str_eq(buf, good[i].host, "%s: host", good[i].in);
	}
	memset(&zero, 0, sizeof(zero));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&ss, 0, sizeof(ss));
		len = 0;
		cr_expect_eq(config_parse_address(bad[i], &ss, &len), -1, "\"%s\" accepted",
		             bad[i]);
		cr_expect_eq(len, 0, "\"%s\": len was written", bad[i]);
		cr_expect_eq(memcmp(&ss, &zero, sizeof(ss)), 0, "\"%s\": out was written", bad[i]);
	}
	cr_expect_eq(config_parse_address(NULL, &ss, &len), -1);
}

Test(config, is_local_domain)
{
	static const struct {
		const char *domain;
		size_t len; /* 0: strlen */
		bool local;
	} cases[] = {
		{ "example.org", 0, true },
		{ "EXAMPLE.ORG", 0, true },
		{ "Example.Org.", 0, true },
		{ "localhost", 0, true },
		{ "LOCALHOST.", 0, true },
		{ "example.org..", 0, false },
		{ "sub.example.org", 0, false },
		{ "example.or", 0, false },
		{ "example.orgg", 0, false },
		{ "xexample.org", 0, false },
		{ "example.net", 0, false },
		{ "example.orgXYZ", 11, true }, /* only len bytes count */
		{ "example.org", 7, false },    /* "example" */
		{ ".", 0, false },
		{ "", 0, false },
	};
	struct petrel_config *cfg;
	size_t i, len;

	cfg = test_config_ok("relay:\n  local_domains: [Example.ORG., localhost]\n");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].domain);
		cr_expect_eq(config_is_local_domain(cfg, cases[i].domain, len), cases[i].local,
		             "\"%.*s\": expected %s", (int)len, cases[i].domain,
		             cases[i].local ? "local" : "not local");
	}
	cr_expect_not(config_is_local_domain(NULL, "example.org", 11));
	cr_expect_not(config_is_local_domain(cfg, NULL, 0));
	config_free(cfg);
}

Test(config, free_null)
{
	config_free(NULL);
}
