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
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

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

/*
 * Files that tls: and auth: name must be readable when the config is loaded (config.c does not
 * parse them, so any content will do): a fresh directory with tls/fullchain.pem,
 * tls/privkey.pem and users, removed by test_config_files_remove().
 */
struct test_config_files {
	char dir[64];
	char tls_dir[80];
	char certificate[128];
	char key[128];
	char users[128];
};

static void
test_config_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_geq(fputs(text, f), 0, "%s", path);
	cr_assert_eq(fclose(f), 0, "%s", path);
}

static void
test_config_files_make(struct test_config_files *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/petrel-test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir), "mkdtemp: %s", strerror(errno));
	snprintf(f->tls_dir, sizeof(f->tls_dir), "%s/tls", f->dir);
	cr_assert_eq(mkdir(f->tls_dir, 0700), 0, "%s: %s", f->tls_dir, strerror(errno));
	snprintf(f->certificate, sizeof(f->certificate), "%s/fullchain.pem", f->tls_dir);
	snprintf(f->key, sizeof(f->key), "%s/privkey.pem", f->tls_dir);
	snprintf(f->users, sizeof(f->users), "%s/users", f->dir);
	test_config_write(f->certificate, "-----BEGIN CERTIFICATE-----\n(not parsed by "
	                                  "config.c)\n-----END CERTIFICATE-----\n");
	test_config_write(f->key, "-----BEGIN PRIVATE KEY-----\n(not parsed by config.c)\n"
	                          "-----END PRIVATE KEY-----\n");
	test_config_write(f->users, "# not parsed by config.c\nalice:$6$salt$hash\n");
}

static void
test_config_files_remove(const struct test_config_files *f)
{
	unlink(f->certificate);
	unlink(f->key);
	unlink(f->users);
	rmdir(f->tls_dir);
	rmdir(f->dir);
}

/* `text` with @CERT@, @KEY@, @USERS@ and @DIR@ replaced by the paths in `f` (caller frees). */
static char *
test_config_subst(const char *text, const struct test_config_files *f)
{
	const struct {
		const char *token;
		const char *value;
	} subst[] = {
		{ "@CERT@", f->certificate },
		{ "@KEY@", f->key },
		{ "@USERS@", f->users },
		{ "@DIR@", f->dir },
	};
	const size_t nsubst = sizeof(subst) / sizeof(subst[0]);
	char *out = NULL;
	size_t len = 0, i;
	FILE *m;

	m = open_memstream(&out, &len);
	cr_assert_not_null(m);
	while (*text != '\0') {
		for (i = 0; i < nsubst; i++) {
			if (strncmp(text, subst[i].token, strlen(subst[i].token)) == 0)
				break;
		}
		if (i < nsubst) {
			fputs(subst[i].value, m);
			text += strlen(subst[i].token);
		} else {
			fputc(*text++, m);
		}
	}
	cr_assert_eq(fclose(m), 0);
	return out;
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

/* tls: and auth: left out: no TLS, no AUTH, and the documented defaults. */
static void
test_config_expect_tls_auth_defaults(const struct petrel_config *cfg)
{
	size_t i;

	cr_expect_null(cfg->tls_certificate);
	cr_expect_null(cfg->tls_key);
	cr_expect_eq(cfg->tls_min_version, TLS1_2_VERSION);
	cr_expect_null(cfg->tls_ciphers);
	cr_expect_null(cfg->auth_users_file);
	cr_expect(cfg->auth_require_tls);
	cr_expect_not(cfg->auth_sender_login_match);
	cr_expect_eq(cfg->auth_max_failures, 5);
	cr_expect_eq(cfg->auth_failure_window, 15 * 60);
	for (i = 0; i < cfg->nlisten; i++) {
		cr_expect_eq(cfg->listen[i].tls, CONFIG_LISTEN_TLS_DEFAULT, "listen[%zu]", i);
		cr_expect_eq(config_listen_tls_effective(cfg, &cfg->listen[i]),
		             CONFIG_LISTEN_TLS_NONE, "listen[%zu]", i);
	}
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

/* One route, with the fields its kind does not use at their defaults too. */
static void
test_config_expect_route(const struct config_route *r, const char *domain,
                         enum config_route_kind kind, const char *target, unsigned port,
                         enum config_route_tls tls)
{
	cr_assert_not_null(r);
	cr_assert_not_null(r->domain);
	cr_expect_str_eq(r->domain, domain);
	cr_expect_eq(r->kind, kind, "%s: kind %d", domain, r->kind);
	cr_expect_eq(r->tls, tls, "%s: tls %d", domain, r->tls);
	switch (kind) {
	case CONFIG_ROUTE_MX:
		cr_expect_eq(r->mx_port, port, "%s: mx_port %u", domain, r->mx_port);
		cr_expect_null(r->relay_host, "%s", domain);
		cr_expect_null(r->maildir, "%s", domain);
		break;
	case CONFIG_ROUTE_RELAY:
		cr_assert_not_null(r->relay_host, "%s", domain);
		cr_expect_str_eq(r->relay_host, target, "%s: relay_host", domain);
		cr_expect_eq(r->relay_port, port, "%s: relay_port %u", domain, r->relay_port);
		cr_expect_null(r->maildir, "%s", domain);
		break;
	case CONFIG_ROUTE_MAILDIR:
		cr_assert_not_null(r->maildir, "%s", domain);
		cr_expect_str_eq(r->maildir, target, "%s: maildir", domain);
		cr_expect_null(r->relay_host, "%s", domain);
		break;
	case CONFIG_ROUTE_DISCARD:
		cr_expect_null(r->relay_host, "%s", domain);
		cr_expect_null(r->maildir, "%s", domain);
		break;
	}
}

static void
test_config_expect_queue_defaults(const struct petrel_config *cfg)
{
	static const unsigned retry[] = { 60, 300, 900, 1800, 3600, 7200, 14400 };
	size_t i;

	cr_assert_eq(cfg->nretry, 7);
	for (i = 0; i < 7; i++)
		cr_expect_eq(cfg->retry[i], retry[i], "retry[%zu] = %u", i, cfg->retry[i]);
	cr_expect_eq(cfg->max_lifetime, 5 * 86400);
	cr_expect_eq(cfg->delay_warning, 4 * 3600);
	cr_expect_eq(cfg->concurrency, 500);
	cr_expect_eq(cfg->concurrency_per_destination, 20);
	cr_expect_eq(cfg->npriorities, 0);
	cr_expect_null(cfg->priorities);
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

	cr_assert_eq(cfg->nroutes, 1);
	test_config_expect_route(&cfg->routes[0], "*", CONFIG_ROUTE_MX, NULL, 25,
	                         CONFIG_TLS_OPPORTUNISTIC);
	cr_expect_null(cfg->routes[0].auth_user);
	cr_expect_null(cfg->routes[0].auth_password_file);
	cr_expect_null(cfg->routes[0].ca_file);
	test_config_expect_queue_defaults(cfg);
	cr_expect_null(cfg->nameservers);
	test_config_expect_tls_auth_defaults(cfg);
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
		"queue:\ndns:\n",
		"queue: {}\ndns: {}\n",
		"queue:\n  # retry: [1m]\n",
		"tls:\nauth:\n",
		"tls: {}\nauth: {}\n",
		"tls:\n  # certificate: /etc/petrel/tls/fullchain.pem\n",
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
	struct test_config_files files;
	char *errors = NULL, cwd[PATH_MAX];
	int rc;

	/* The file names its tls: and auth: files relative to the working directory. */
	test_config_files_make(&files);
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(files.dir), 0);
	rc = config_load(TEST_DATA_DIR "/config_full.yaml", &cfg, &errors);
	cr_assert_eq(chdir(cwd), 0);
	test_config_files_remove(&files);
	cr_assert_eq(rc, 0, "%s", errors);
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
	cr_expect_eq(cfg->listen[0].line, 8);
	cr_expect_eq(cfg->listen[1].line, 11);
	cr_expect_eq(cfg->listen[2].line, 12);
	cr_expect_eq(cfg->listen[3].line, 15);
	cr_expect_eq(cfg->listen[0].tls, CONFIG_LISTEN_TLS_STARTTLS);
	cr_expect_eq(cfg->listen[1].tls, CONFIG_LISTEN_TLS_DEFAULT);
	cr_expect_eq(cfg->listen[2].tls, CONFIG_LISTEN_TLS_NONE);
	cr_expect_eq(cfg->listen[3].tls, CONFIG_LISTEN_TLS_IMPLICIT);
	cr_expect_eq(config_listen_tls_effective(cfg, &cfg->listen[1]), CONFIG_LISTEN_TLS_STARTTLS);

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

	cr_assert_eq(cfg->nroutes, 5);
	test_config_expect_route(&cfg->routes[0], "localhost", CONFIG_ROUTE_MAILDIR,
	                         "./var/mail/%d/%u%%", 0, CONFIG_TLS_OPPORTUNISTIC);
	test_config_expect_route(&cfg->routes[1], "example.net", CONFIG_ROUTE_RELAY,
	                         "smtp.example.net", 587, CONFIG_TLS_REQUIRE);
	cr_expect_str_eq(cfg->routes[1].auth_user, "relayuser");
	cr_expect_str_eq(cfg->routes[1].auth_password_file, "/etc/petrel/relay.pass");
	cr_expect_str_eq(cfg->routes[1].ca_file, "/etc/ssl/my-ca.pem");
	test_config_expect_route(&cfg->routes[2], ".example.com", CONFIG_ROUTE_DISCARD, NULL, 0,
	                         CONFIG_TLS_OPPORTUNISTIC);
	test_config_expect_route(&cfg->routes[3], "v6.example", CONFIG_ROUTE_RELAY, "2001:db8::25",
	                         25, CONFIG_TLS_NONE);
	cr_expect_null(cfg->routes[3].auth_user);
	cr_expect_null(cfg->routes[3].ca_file);
	test_config_expect_route(&cfg->routes[4], "*", CONFIG_ROUTE_MX, NULL, 2526,
	                         CONFIG_TLS_REQUIRE);
	cr_expect_str_eq(cfg->routes[4].ca_file, "/etc/ssl/test-ca.pem");
	cr_expect_eq(cfg->routes[0].line, 34);
	cr_expect_eq(cfg->routes[1].line, 36);
	cr_expect_eq(cfg->routes[4].line, 46);

	cr_assert_eq(cfg->nretry, 3);
	cr_expect_eq(cfg->retry[0], 30);
	cr_expect_eq(cfg->retry[1], 120);
	cr_expect_eq(cfg->retry[2], 5400);
	cr_expect_eq(cfg->max_lifetime, 2 * 86400);
	cr_expect_eq(cfg->delay_warning, 0);
	cr_expect_eq(cfg->concurrency, 50);
	cr_expect_eq(cfg->concurrency_per_destination, 50);
	cr_assert_eq(cfg->npriorities, 5);
	cr_expect_str_eq(cfg->priorities[0].sender_domain, "example.org");
	cr_expect_null(cfg->priorities[0].recipient_domain);
	cr_expect_eq(cfg->priorities[0].priority, 10);
	cr_expect_null(cfg->priorities[1].sender_domain);
	cr_expect_str_eq(cfg->priorities[1].recipient_domain, "bulk.example");
	cr_expect_eq(cfg->priorities[1].priority, -10);
	cr_expect_str_eq(cfg->priorities[2].sender_domain, "news.example");
	cr_expect_str_eq(cfg->priorities[2].recipient_domain, "vip.example");
	cr_expect_eq(cfg->priorities[2].priority, -100);
	cr_expect_eq(cfg->priorities[3].priority, 42);
	cr_expect_eq(cfg->priorities[4].priority, 0);

	cr_expect_str_eq(cfg->nameservers,
	                 "127.0.0.1:5353,[::1]:53,192.0.2.53:53,[2001:db8::35]:5300");

	/* Kept as written: relative to the directory petrel runs in. */
	cr_expect_str_eq(cfg->tls_certificate, "tls/fullchain.pem");
	cr_expect_str_eq(cfg->tls_key, "tls/privkey.pem");
	cr_expect_eq(cfg->tls_min_version, TLS1_3_VERSION);
	cr_expect_str_eq(cfg->tls_ciphers, "HIGH:!aNULL:!MD5");
	cr_expect_str_eq(cfg->auth_users_file, "./users");
	cr_expect_not(cfg->auth_require_tls);
	cr_expect(cfg->auth_sender_login_match);
	cr_expect_eq(cfg->auth_max_failures, 1000);
	cr_expect_eq(cfg->auth_failure_window, 5400);
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

	/* Out of the box: local mail into ./var/mail, everything else by MX. */
	cr_assert_eq(cfg->nroutes, 2);
	test_config_expect_route(&cfg->routes[0], "localhost", CONFIG_ROUTE_MAILDIR,
	                         "./var/mail/%u", 0, CONFIG_TLS_OPPORTUNISTIC);
	test_config_expect_route(&cfg->routes[1], "*", CONFIG_ROUTE_MX, NULL, 25,
	                         CONFIG_TLS_OPPORTUNISTIC);
	cr_expect_eq(config_route_for(cfg, "LocalHost.", 10), &cfg->routes[0]);
	cr_expect_eq(config_route_for(cfg, "example.org", 11), &cfg->routes[1]);
	test_config_expect_queue_defaults(cfg);
	cr_expect_null(cfg->nameservers);
	/* tls: and auth: are commented out: it runs without a certificate or a users file. */
	test_config_expect_tls_auth_defaults(cfg);
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
	struct test_config_files files;
	struct petrel_config *cfg;
	char *text;

	cfg = test_config_ok("relay:\n  networks: []\n  local_domains: []\n");
	cr_expect_eq(cfg->nrelay_networks, 0);
	cr_expect_eq(cfg->nlocal_domains, 0);
	cr_expect_eq(cfg->nlisten, 1); /* untouched */
	cr_expect_not(config_is_local_domain(cfg, "localhost", 9));
	config_free(cfg);

	/* A submission listener needs auth.users_file. */
	test_config_files_make(&files);
	text = test_config_subst(
	        "listen:\n  - address: 192.0.2.1:25\n    role: submission\n"
	        "relay:\n  networks: [192.0.2.0/24]\n"
	        "  local_domains:\n    - Example.ORG.\n    - \"MAIL.example.net\"\n"
	        "auth:\n  users_file: @USERS@\n",
	        &files);
	cfg = test_config_ok(text);
	free(text);
	test_config_files_remove(&files);
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
 * routes:, queue:, dns:
 */

Test(config, routes_values)
{
	static const struct {
		const char *yaml; /* one route item, after "routes:\n  - " */
		const char *domain;
		enum config_route_kind kind;
		const char *target; /* relay host or maildir template */
		unsigned port;      /* relay_port or mx_port */
		enum config_route_tls tls;
	} cases[] = {
		{ "domain: \"*\"\n    mx: true", "*", CONFIG_ROUTE_MX, NULL, 25,
		  CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: '*', mx: Yes, port: 1, tls: none}", "*", CONFIG_ROUTE_MX, NULL, 1,
		  CONFIG_TLS_NONE },
		{ "{domain: Example.ORG., discard: TRUE}", "example.org", CONFIG_ROUTE_DISCARD,
		  NULL, 0, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: .Sub.Example.ORG., discard: yes}", ".sub.example.org",
		  CONFIG_ROUTE_DISCARD, NULL, 0, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: localhost, maildir: /srv/mail}", "localhost", CONFIG_ROUTE_MAILDIR,
		  "/srv/mail", 0, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: localhost, maildir: '/m/%d/%u/100%%'}", "localhost",
		  CONFIG_ROUTE_MAILDIR, "/m/%d/%u/100%%", 0, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: a.example, relay: Smtp.Example.NET}", "a.example", CONFIG_ROUTE_RELAY,
		  "smtp.example.net", 25, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: a.example, relay: 'mx.example.net.:26', tls: require}", "a.example",
		  CONFIG_ROUTE_RELAY, "mx.example.net", 26, CONFIG_TLS_REQUIRE },
		{ "{domain: a.example, relay: 192.0.2.25:587}", "a.example", CONFIG_ROUTE_RELAY,
		  "192.0.2.25", 587, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: a.example, relay: '[2001:db8::25]:65535'}", "a.example",
		  CONFIG_ROUTE_RELAY, "2001:db8::25", 65535, CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: a.example, relay: '[::1]'}", "a.example", CONFIG_ROUTE_RELAY, "::1", 25,
		  CONFIG_TLS_OPPORTUNISTIC },
		{ "{domain: a.example, relay: mail}", "a.example", CONFIG_ROUTE_RELAY, "mail", 25,
		  CONFIG_TLS_OPPORTUNISTIC },
	};
	struct petrel_config *cfg;
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "routes:\n  - %s\n", cases[i].yaml);
		cfg = test_config_ok(text);
		cr_assert_eq(cfg->nroutes, 1, "%s", text);
		test_config_expect_route(&cfg->routes[0], cases[i].domain, cases[i].kind,
		                         cases[i].target, cases[i].port, cases[i].tls);
		cr_expect_eq(cfg->routes[0].line, 2, "%s", text);
		config_free(cfg);
	}

	/* An empty list is allowed: config_route_for() falls back to MX for everything. */
	cfg = test_config_ok("routes: []\n");
	cr_expect_eq(cfg->nroutes, 0);
	test_config_expect_route(config_route_for(cfg, "example.org", 11), "*", CONFIG_ROUTE_MX,
	                         NULL, 25, CONFIG_TLS_OPPORTUNISTIC);
	config_free(cfg);
}

Test(config, route_for)
{
	static const struct {
		const char *domain; /* NULL: a NULL pointer */
		size_t len;         /* 0: strlen */
		int route;          /* index in cfg->routes */
	} cases[] = {
		{ "example.org", 0, 0 },
		{ "EXAMPLE.Org", 0, 0 },
		{ "example.org.", 0, 0 },     /* trailing dot ignored */
		{ "example.org..", 0, 5 },    /* only one */
		{ "mail.example.org", 0, 1 }, /* subdomain: the "." route */
		{ "A.B.Example.ORG.", 0, 1 },
		{ "xexample.org", 0, 5 }, /* not a subdomain, only a suffix */
		{ "example.or", 0, 5 },
		{ "example.orgx", 0, 5 },
		{ "sub.example.net", 0, 5 }, /* ".sub.example.net" is not sub.example.net itself */
		{ "a.sub.example.net", 0, 2 },
		{ "b.a.sub.example.net", 0, 2 },
		{ "exact.example.net", 0, 4 }, /* exact match */
		{ "x.exact.example.net", 0, 5 },
		{ "a.a.sub.example.net", 0, 2 }, /* route 3 (exact) is after route 2: first wins */
		{ "a.a.sub.example.net.", 0, 2 },
		{ "example.orgXYZ", 11, 0 }, /* only len bytes count */
		{ "example.org", 7, 5 },     /* "example" */
		{ "localhost", 0, 5 },
		{ "", 0, 5 },
		{ ".", 0, 5 },
		{ NULL, 0, 5 },
	};
	struct petrel_config *cfg;
	const struct config_route *r;
	size_t i, len;

	cfg = test_config_ok("routes:\n"
	                     "  - {domain: Example.ORG, maildir: /m/%u}\n"
	                     "  - {domain: .example.org, discard: true}\n"
	                     "  - {domain: .sub.example.net, relay: smtp.example.net}\n"
	                     "  - {domain: a.a.sub.example.net, discard: true}\n"
	                     "  - {domain: exact.example.net, relay: 192.0.2.1}\n"
	                     "  - {domain: '*', mx: true, port: 2526}\n"
	                     "  - {domain: after.example, discard: true}\n");
	cr_assert_eq(cfg->nroutes, 7);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = cases[i].domain == NULL ? 0
		      : cases[i].len != 0     ? cases[i].len
		                              : strlen(cases[i].domain);
		r = config_route_for(cfg, cases[i].domain, len);
		cr_expect_eq(r, &cfg->routes[cases[i].route], "\"%.*s\": got %s, want %s", (int)len,
		             cases[i].domain != NULL ? cases[i].domain : "(null)", r->domain,
		             cfg->routes[cases[i].route].domain);
	}
	cr_expect_eq(config_route_for(cfg, "after.example", 13), &cfg->routes[5]); /* "*" first */
	config_free(cfg);
}

/* A routes: list without "*": what matches nothing goes by MX, to port 25. */
Test(config, route_for_implicit_default)
{
	struct petrel_config *cfg;
	const struct config_route *r;

	cfg = test_config_ok("routes:\n"
	                     "  - {domain: localhost, maildir: ./var/mail/%u}\n"
	                     "  - {domain: .example.com, relay: smtp.example.com, tls: none}\n");
	cr_assert_eq(cfg->nroutes, 2);
	cr_expect_eq(config_route_for(cfg, "LOCALHOST.", 10), &cfg->routes[0]);
	cr_expect_eq(config_route_for(cfg, "a.example.com", 13), &cfg->routes[1]);

	r = config_route_for(cfg, "example.com", 11);
	cr_assert_not_null(r);
	cr_expect(r < cfg->routes || r >= cfg->routes + cfg->nroutes, "implicit route in the list");
	test_config_expect_route(r, "*", CONFIG_ROUTE_MX, NULL, 25, CONFIG_TLS_OPPORTUNISTIC);
	cr_expect_null(r->auth_user);
	cr_expect_null(r->ca_file);
	cr_expect_eq(config_route_for(cfg, "other.example", 13), r);
	cr_expect_eq(config_route_for(cfg, "", 0), r);
	cr_expect_eq(config_route_for(NULL, "example.com", 11), r);
	config_free(cfg);
}

Test(config, queue_values)
{
	struct petrel_config *cfg;

	cfg = test_config_ok("queue:\n  retry: [1s]\n  max_lifetime: 1m\n  delay_warning: 0\n"
	                     "  concurrency: 1\n  concurrency_per_destination: 1\n");
	cr_assert_eq(cfg->nretry, 1);
	cr_expect_eq(cfg->retry[0], 1);
	cr_expect_eq(cfg->max_lifetime, 60);
	cr_expect_eq(cfg->delay_warning, 0);
	cr_expect_eq(cfg->concurrency, 1);
	cr_expect_eq(cfg->concurrency_per_destination, 1);
	config_free(cfg);

	cfg = test_config_ok("queue:\n  retry: [1m, 5m, 15m, 30m, 1h, 2h, 4h]\n"
	                     "  max_lifetime: 1h\n  delay_warning: 59m59s\n"
	                     "  concurrency: 100000\n  concurrency_per_destination: 100000\n");
	cr_expect_eq(cfg->nretry, 7);
	cr_expect_eq(cfg->retry[6], 14400);
	cr_expect_eq(cfg->max_lifetime, 3600);
	cr_expect_eq(cfg->delay_warning, 3599);
	cr_expect_eq(cfg->concurrency, 100000);
	cr_expect_eq(cfg->concurrency_per_destination, 100000);
	config_free(cfg);

	/* delay_warning: 0 allows any max_lifetime; the default per-destination limit follows a
	 * smaller concurrency. */
	cfg = test_config_ok("queue:\n  max_lifetime: 1m\n  delay_warning: 0\n  concurrency: 5\n");
	cr_expect_eq(cfg->concurrency, 5);
	cr_expect_eq(cfg->concurrency_per_destination, 5);
	config_free(cfg);

	cfg = test_config_ok("queue:\n  max_lifetime: 4h1s\n  concurrency: 20\n");
	cr_expect_eq(cfg->delay_warning, 4 * 3600);
	cr_expect_eq(cfg->concurrency_per_destination, 20);
	config_free(cfg);
}

Test(config, priority_values)
{
	static const struct {
		const char *value;
		int priority;
	} cases[] = {
		{ "high", 10 }, { "normal", 0 },  { "low", -10 }, { "0", 0 },
		{ "-0", 0 },    { "+7", 7 },      { "100", 100 }, { "-100", -100 },
		{ "'-5'", -5 }, { "\"50\"", 50 }, { "007", 7 },
	};
	struct petrel_config *cfg;
	char text[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text),
		         "queue:\n  priorities:\n    - {recipient_domain: a.example, priority: "
		         "%s}\n",
		         cases[i].value);
		cfg = test_config_ok(text);
		cr_assert_eq(cfg->npriorities, 1);
		cr_expect_eq(cfg->priorities[0].priority, cases[i].priority, "%s → %d",
		             cases[i].value, cfg->priorities[0].priority);
		config_free(cfg);
	}
	cfg = test_config_ok("queue:\n  priorities: []\n");
	cr_expect_eq(cfg->npriorities, 0);
	config_free(cfg);
}

Test(config, priority_for)
{
	static const struct {
		const char *sender; /* NULL: the null reverse path */
		const char *rcpts[3];
		size_t nrcpts;
		int priority;
	} cases[] = {
		{ "example.org", { "x.example" }, 1, 10 },
		{ "EXAMPLE.ORG.", { NULL }, 0, 10 },
		{ "sub.example.org", { "x.example" }, 1, 0 }, /* exact domains only */
		{ "example.or", { "x.example" }, 1, 0 },
		{ NULL, { "bulk.example" }, 1, -10 },
		{ "a.example", { "x.example", "Bulk.Example." }, 2, -10 }, /* any recipient */
		{ "a.example", { "x.example", "y.example", "z.example" }, 3, 0 },
		{ "a.example", { "sub.bulk.example" }, 1, 0 },
		{ "example.org", { "bulk.example" }, 1, 10 }, /* first rule wins */
		{ "news.example", { "vip.example" }, 1, 50 }, /* both fields must match */
		{ "News.Example", { "other.example", "VIP.example." }, 2, 50 },
		{ "news.example", { "other.example" }, 1, -100 },
		{ "news.example", { NULL }, 0, -100 },
		{ "vip.example", { "news.example" }, 1, 0 },
		{ NULL, { NULL }, 0, 0 },
		{ "", { "" }, 1, 0 },
	};
	struct petrel_config *cfg;
	size_t i;

	cfg = test_config_ok("queue:\n  priorities:\n"
	                     "    - {sender_domain: example.org, priority: high}\n"
	                     "    - {recipient_domain: bulk.example, priority: low}\n"
	                     "    - {sender_domain: news.example, recipient_domain: vip.example,"
	                     " priority: 50}\n"
	                     "    - {sender_domain: news.example, priority: -100}\n");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_expect_eq(
		        config_priority_for(cfg, cases[i].sender, cases[i].rcpts, cases[i].nrcpts),
		        cases[i].priority, "case %zu (sender %s)", i,
		        cases[i].sender != NULL ? cases[i].sender : "<>");
	}
	cr_expect_eq(config_priority_for(cfg, "a.example", NULL, 3), 0);
	cr_expect_eq(config_priority_for(cfg, "example.org", NULL, 0), 10);
	cr_expect_eq(config_priority_for(NULL, "example.org", NULL, 0), 0);
	config_free(cfg);

	cfg = test_config_ok("");
	cr_expect_eq(config_priority_for(cfg, "example.org", NULL, 0), 0);
	config_free(cfg);
}

Test(config, nameservers_joined)
{
	static const struct {
		const char *list;
		const char *joined;
	} cases[] = {
		{ "[127.0.0.1]", "127.0.0.1:53" },
		{ "[127.0.0.1:5353]", "127.0.0.1:5353" },
		{ "['[::1]']", "[::1]:53" },
		{ "['[::1]:5353']", "[::1]:5353" },
		{ "[127.0.0.1:5353, '[::1]:53']", "127.0.0.1:5353,[::1]:53" },
		{ "[192.0.2.1, 192.0.2.2:00053, '[2001:DB8:0::0001]:65535', 198.51.100.1:1]",
		  "192.0.2.1:53,192.0.2.2:53,[2001:db8::1]:65535,198.51.100.1:1" },
		{ "['[::ffff:192.0.2.1]']", "[::ffff:192.0.2.1]:53" },
	};
	struct petrel_config *cfg;
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "dns:\n  nameservers: %s\n", cases[i].list);
		cfg = test_config_ok(text);
		cr_expect_str_eq(cfg->nameservers, cases[i].joined, "%s", cases[i].list);
		config_free(cfg);
	}

	/* A later dns: section would be a duplicate key; the list replaces nothing but NULL. */
	cfg = test_config_ok("dns:\n  nameservers:\n    - 127.0.0.1\n    - 127.0.0.2\n");
	cr_expect_str_eq(cfg->nameservers, "127.0.0.1:53,127.0.0.2:53");
	config_free(cfg);
}

Test(config, errors_routes_queue_dns)
{
	static const struct {
		const char *what;
		const char *yaml;
		const char *errors;
	} cases[] = {
		/* routes: shape */
		{ "routes: nothing", "routes:\n",
		  "t.yaml:1:8: routes: expected a list, got nothing (write [] for an empty "
		  "list)\n" },
		{ "routes: mapping", "routes:\n  domain: a.example\n",
		  "t.yaml:2:3: routes: expected a list, got a mapping\n" },
		{ "route: scalar", "routes:\n  - example.org\n",
		  "t.yaml:2:5: routes[0]: expected a mapping, got 'example.org'\n" },
		{ "route: empty item", "routes:\n  -\n",
		  "t.yaml:2:4: routes[0]: missing key 'domain'\n"
		  "t.yaml:2:4: routes[0]: needs exactly one of mx, relay, maildir, discard\n" },
		{ "route: missing domain", "routes:\n  - mx: true\n",
		  "t.yaml:2:5: routes[0]: missing key 'domain'\n" },
		{ "route: unknown key",
		  "routes:\n  - domain: a.example\n    mx: true\n    prt: 25\n",
		  "t.yaml:4:5: routes[0].prt: unknown key, did you mean 'port'?\n" },

		/* routes: the kind */
		{ "route: no kind", "routes:\n  - domain: example.org\n    tls: require\n",
		  "t.yaml:2:5: routes[0]: needs exactly one of mx, relay, maildir, discard\n" },
		{ "route: two kinds",
		  "routes:\n  - domain: example.org\n    mx: true\n    relay: smtp.example.org\n",
		  "t.yaml:4:5: routes[0].relay: exactly one of mx, relay, maildir, discard (mx is "
		  "at line 3)\n" },
		{ "route: three kinds, one false",
		  "routes:\n  - {domain: a.example, discard: yes, maildir: /m, mx: no}\n",
		  "t.yaml:2:39: routes[0].maildir: exactly one of mx, relay, maildir, discard "
		  "(discard is at line 2)\n"
		  "t.yaml:2:52: routes[0].mx: exactly one of mx, relay, maildir, discard (discard "
		  "is at line 2)\n" },
		{ "route: mx false", "routes:\n  - domain: \"*\"\n    mx: false\n",
		  "t.yaml:3:9: routes[0].mx: must be true (it names the kind of route)\n" },
		{ "route: discard no", "routes:\n  - domain: a.example\n    discard: NO\n",
		  "t.yaml:3:14: routes[0].discard: must be true (it names the kind of route)\n" },
		{ "route: not a boolean", "routes:\n  - domain: a.example\n    mx: maybe\n",
		  "t.yaml:3:9: routes[0].mx: expected true or false, got 'maybe'\n" },
		{ "route: boolean as 1", "routes:\n  - domain: a.example\n    discard: 1\n",
		  "t.yaml:3:14: routes[0].discard: expected true or false, got '1'\n" },
		{ "route: boolean nothing", "routes:\n  - domain: a.example\n    mx:\n",
		  "t.yaml:3:8: routes[0].mx: expected true or false, got nothing\n" },
		{ "route: boolean list", "routes:\n  - {domain: a.example, mx: [true]}\n",
		  "t.yaml:2:29: routes[0].mx: expected true or false, got a list\n" },

		/* routes: domain */
		{ "route domain: wildcard", "routes:\n  - domain: '*.example.org'\n    mx: true\n",
		  "t.yaml:2:13: routes[0].domain: bad route domain '*.example.org': write * alone "
		  "for every domain, or .example.org for every subdomain of example.org\n" },
		{ "route domain: bad name", "routes:\n  - domain: ex_ample.org\n    mx: true\n",
		  "t.yaml:2:13: routes[0].domain: bad route domain 'ex_ample.org': only letters, "
		  "digits, '-' and '.' are allowed\n" },
		{ "route domain: dot", "routes:\n  - domain: .\n    mx: true\n",
		  "t.yaml:2:13: routes[0].domain: bad route domain '.': empty\n" },
		{ "route domain: two dots", "routes:\n  - domain: ..example.org\n    mx: true\n",
		  "t.yaml:2:13: routes[0].domain: bad route domain '..example.org': empty "
		  "label\n" },
		{ "route domain: list", "routes:\n  - domain: [a]\n    mx: true\n",
		  "t.yaml:2:13: routes[0].domain: expected a route domain, got a list\n" },
		{ "route domain: empty", "routes:\n  - domain: ''\n    mx: true\n",
		  "t.yaml:2:13: routes[0].domain: must not be empty\n" },
		{ "route domain: duplicate",
		  "routes:\n  - domain: Example.org\n    mx: true\n"
		  "  - {domain: '*', mx: true}\n"
		  "  - domain: example.ORG.\n    discard: true\n",
		  "t.yaml:5:13: routes[2].domain: duplicate route domain 'example.org' (also at "
		  "line 2)\n" },
		{ "route domain: duplicate *",
		  "routes:\n  - {domain: '*', mx: true}\n  - {domain: \"*\", discard: true}\n",
		  "t.yaml:3:14: routes[1].domain: duplicate route domain '*' (also at line 2)\n" },
		{ "route domain: subdomains and domain are different",
		  "routes:\n  - {domain: .a.example, mx: true}\n  - {domain: a.example, mx: true}\n"
		  "  - {domain: .a.example, mx: true}\n",
		  "t.yaml:4:14: routes[2].domain: duplicate route domain '.a.example' (also at "
		  "line 2)\n" },

		/* routes: relay */
		{ "relay: port 0", "routes:\n  - {domain: a.example, relay: smtp.example.net:0}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address 'smtp.example.net:0': port out "
		  "of range, must be 1 to 65535\n" },
		{ "relay: port too big",
		  "routes:\n  - {domain: a.example, relay: 192.0.2.1:65536}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '192.0.2.1:65536': port out of "
		  "range, must be 1 to 65535\n" },
		{ "relay: no port after :", "routes:\n  - {domain: a.example, relay: 'smtp.a:'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address 'smtp.a:': missing port\n" },
		{ "relay: port by name", "routes:\n  - {domain: a.example, relay: 'smtp.a:smtp'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address 'smtp.a:smtp': the port is not "
		  "a number\n" },
		{ "relay: v6 without brackets",
		  "routes:\n  - {domain: a.example, relay: '::1:25'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '::1:25': an IPv6 address needs "
		  "brackets, as in [::1]\n" },
		{ "relay: unclosed bracket", "routes:\n  - {domain: a.example, relay: '[::1'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '[::1': missing ']'\n" },
		{ "relay: junk after bracket",
		  "routes:\n  - {domain: a.example, relay: '[::1]x'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '[::1]x': expected ':' and a "
		  "port after ']'\n" },
		{ "relay: v4 in brackets",
		  "routes:\n  - {domain: a.example, relay: '[192.0.2.1]'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '[192.0.2.1]': not a numeric "
		  "IPv6 address\n" },
		{ "relay: bad name", "routes:\n  - {domain: a.example, relay: 'smtp_1.a:25'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address 'smtp_1.a:25': only letters, "
		  "digits, '-' and '.' are allowed\n" },
		{ "relay: bad IPv4", "routes:\n  - {domain: a.example, relay: 300.1.1.1}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '300.1.1.1': the last label is "
		  "all digits\n" },
		{ "relay: no host", "routes:\n  - {domain: a.example, relay: ':25'}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address ':25': missing host\n" },
		{ "relay: empty", "routes:\n  - {domain: a.example, relay: ''}\n",
		  "t.yaml:2:32: routes[0].relay: bad relay address '': missing host\n" },
		{ "relay: nothing", "routes:\n  - {domain: a.example, relay: }\n",
		  "t.yaml:2:32: routes[0].relay: expected a relay address, got nothing\n" },

		/* routes: maildir */
		{ "maildir: unknown escape", "routes:\n  - {domain: a.example, maildir: /m/%x}\n",
		  "t.yaml:2:34: routes[0].maildir: bad maildir template '/m/%x': only %u, %d and "
		  "%% may follow a '%'\n" },
		{ "maildir: % at the end", "routes:\n  - {domain: a.example, maildir: '/m/%u%'}\n",
		  "t.yaml:2:34: routes[0].maildir: bad maildir template '/m/%u%': only %u, %d and "
		  "%% may follow a '%'\n" },
		{ "maildir: %U", "routes:\n  - {domain: a.example, maildir: /m/%U}\n",
		  "t.yaml:2:34: routes[0].maildir: bad maildir template '/m/%U': only %u, %d and "
		  "%% may follow a '%'\n" },
		{ "maildir: empty", "routes:\n  - {domain: a.example, maildir: ''}\n",
		  "t.yaml:2:34: routes[0].maildir: must not be empty\n" },

		/* routes: options per kind, in file order */
		{ "options on a maildir route",
		  "routes:\n  - domain: localhost\n    maildir: /m\n    tls: require\n"
		  "    ca_file: /ca.pem\n    auth: {user: u, password_file: /p}\n    port: 25\n",
		  "t.yaml:4:5: routes[0].tls: only on relay or mx routes\n"
		  "t.yaml:5:5: routes[0].ca_file: only on relay or mx routes\n"
		  "t.yaml:6:5: routes[0].auth: only on relay routes\n"
		  "t.yaml:7:5: routes[0].port: only on mx routes (a relay's port goes in relay: "
		  "host:port)\n" },
		{ "tls on a discard route",
		  "routes:\n  - {domain: a.example, discard: true, tls: none}\n",
		  "t.yaml:2:40: routes[0].tls: only on relay or mx routes\n" },
		{ "auth on an mx route",
		  "routes:\n  - domain: '*'\n    mx: true\n    tls: require\n    ca_file: /ca\n"
		  "    auth: {user: u, password_file: /p}\n",
		  "t.yaml:6:5: routes[0].auth: only on relay routes\n" },
		{ "port on a relay route",
		  "routes:\n  - {domain: a.example, relay: smtp.a.example, port: 587}\n",
		  "t.yaml:2:48: routes[0].port: only on mx routes (a relay's port goes in relay: "
		  "host:port)\n" },
		{ "port: 0", "routes:\n  - {domain: '*', mx: true, port: 0}\n",
		  "t.yaml:2:35: routes[0].port: must not be 0\n" },
		{ "port: too big", "routes:\n  - {domain: '*', mx: true, port: 65536}\n",
		  "t.yaml:2:35: routes[0].port: must be at most 65535, got '65536'\n" },
		{ "tls: unknown", "routes:\n  - {domain: '*', mx: true, tls: yes}\n",
		  "t.yaml:2:34: routes[0].tls: unknown value 'yes' (expected none, opportunistic "
		  "or "
		  "require)\n" },
		{ "auth: no password_file",
		  "routes:\n  - domain: a.example\n    relay: smtp.a.example\n    auth: {user: "
		  "u}\n",
		  "t.yaml:4:11: routes[0].auth: missing key 'password_file'\n" },
		{ "auth: nothing",
		  "routes:\n  - domain: a.example\n    relay: smtp.a.example\n    auth:\n",
		  "t.yaml:4:10: routes[0].auth: missing key 'user'\n"
		  "t.yaml:4:10: routes[0].auth: missing key 'password_file'\n" },
		{ "auth: scalar",
		  "routes:\n  - domain: a.example\n    relay: smtp.a.example\n    auth: u:p\n",
		  "t.yaml:4:11: routes[0].auth: expected a mapping, got 'u:p'\n" },
		{ "auth: unknown key",
		  "routes:\n  - domain: a.example\n    relay: smtp.a.example\n"
		  "    auth: {user: u, password_file: /p, pasword: x}\n",
		  "t.yaml:4:40: routes[0].auth.pasword: unknown key\n" },
		{ "auth: empty user",
		  "routes:\n  - domain: a.example\n    relay: smtp.a.example\n"
		  "    auth: {user: '', password_file: /p}\n",
		  "t.yaml:4:18: routes[0].auth.user: must not be empty\n" },
		{ "duplicate kind key",
		  "routes:\n  - domain: a.example\n    mx: true\n    mx: true\n",
		  "t.yaml:4:5: routes[0].mx: duplicate key (first at line 3)\n" },

		/* queue: */
		{ "queue: list", "queue: [1m]\n",
		  "t.yaml:1:8: queue: expected a mapping, got a list\n" },
		{ "queue: unknown key", "queue:\n  retri: [1m]\n",
		  "t.yaml:2:3: queue.retri: unknown key, did you mean 'retry'?\n" },
		{ "retry: empty", "queue:\n  retry: []\n",
		  "t.yaml:2:10: queue.retry: must not be empty\n" },
		{ "retry: scalar", "queue:\n  retry: 5m\n",
		  "t.yaml:2:10: queue.retry: expected a list, got '5m'\n" },
		{ "retry: nothing", "queue:\n  retry:\n",
		  "t.yaml:2:9: queue.retry: expected a list, got nothing\n" },
		{ "retry: bad steps", "queue:\n  retry: [1m, 0s, 5x, 0]\n",
		  "t.yaml:2:15: queue.retry[1]: must not be 0\n"
		  "t.yaml:2:19: queue.retry[2]: expected a duration such as 300s, 5m or 1h30m, got "
		  "'5x'\n"
		  "t.yaml:2:23: queue.retry[3]: must not be 0\n" },
		{ "max_lifetime: below 1m", "queue:\n  max_lifetime: 59s\n",
		  "t.yaml:2:17: queue.max_lifetime: must be at least 60 seconds (1m), got "
		  "'59s'\n" },
		{ "max_lifetime: 0", "queue:\n  max_lifetime: 0\n",
		  "t.yaml:2:17: queue.max_lifetime: must be at least 60 seconds (1m), got '0'\n" },
		{ "delay_warning: below 1m", "queue:\n  delay_warning: 30s\n",
		  "t.yaml:2:18: queue.delay_warning: must be 0 or at least 60 seconds (1m), got "
		  "'30s'\n" },
		{ "delay_warning: not below max_lifetime", "queue:\n  delay_warning: 5d\n",
		  "t.yaml:2:18: queue.delay_warning: must be shorter than max_lifetime (5d), got "
		  "'5d'\n" },
		{ "delay_warning: above max_lifetime",
		  "queue:\n  max_lifetime: 1h\n  delay_warning: 1h30m\n",
		  "t.yaml:3:18: queue.delay_warning: must be shorter than max_lifetime (1h), got "
		  "'1h30m'\n" },
		{ "max_lifetime: not above the default delay_warning",
		  "queue:\n  max_lifetime: 2h\n",
		  "t.yaml:2:17: queue.max_lifetime: must be longer than delay_warning (4h by "
		  "default), got '2h'\n" },
		{ "max_lifetime and delay_warning: bad ones are not compared",
		  "queue:\n  max_lifetime: 1h\n  delay_warning: soon\n",
		  "t.yaml:3:18: queue.delay_warning: expected a duration such as 300s, 5m or "
		  "1h30m, got 'soon'\n" },
		{ "concurrency: 0", "queue:\n  concurrency: 0\n  concurrency_per_destination: 0\n",
		  "t.yaml:2:16: queue.concurrency: must not be 0\n"
		  "t.yaml:3:32: queue.concurrency_per_destination: must not be 0\n" },
		{ "concurrency: too many", "queue:\n  concurrency: 100001\n",
		  "t.yaml:2:16: queue.concurrency: must be at most 100000, got '100001'\n" },
		{ "per destination above the default concurrency",
		  "queue:\n  concurrency_per_destination: 501\n",
		  "t.yaml:2:32: queue.concurrency_per_destination: must be at most concurrency "
		  "(500), got '501'\n" },
		{ "per destination above concurrency",
		  "queue:\n  concurrency_per_destination: 11\n  concurrency: 10\n",
		  "t.yaml:2:32: queue.concurrency_per_destination: must be at most concurrency "
		  "(10), got '11'\n" },
		{ "per destination: a bad concurrency is not compared",
		  "queue:\n  concurrency: many\n  concurrency_per_destination: 30\n",
		  "t.yaml:2:16: queue.concurrency: expected a whole number, got 'many'\n" },

		/* queue.priorities: */
		{ "priorities: nothing", "queue:\n  priorities:\n",
		  "t.yaml:2:14: queue.priorities: expected a list, got nothing (write [] for an "
		  "empty list)\n" },
		{ "priority: no domain", "queue:\n  priorities:\n    - {priority: high}\n",
		  "t.yaml:3:7: queue.priorities[0]: needs sender_domain or recipient_domain (or "
		  "both)\n" },
		{ "priority: missing priority",
		  "queue:\n  priorities:\n    - {sender_domain: a.example}\n",
		  "t.yaml:3:7: queue.priorities[0]: missing key 'priority'\n" },
		{ "priority: empty item", "queue:\n  priorities:\n    -\n",
		  "t.yaml:3:6: queue.priorities[0]: missing key 'priority'\n"
		  "t.yaml:3:6: queue.priorities[0]: needs sender_domain or recipient_domain (or "
		  "both)\n" },
		{ "priority: scalar item", "queue:\n  priorities:\n    - high\n",
		  "t.yaml:3:7: queue.priorities[0]: expected a mapping, got 'high'\n" },
		{ "priority: unknown name",
		  "queue:\n  priorities:\n    - {sender_domain: a.example, priority: urgent}\n",
		  "t.yaml:3:44: queue.priorities[0].priority: expected high, normal, low or a "
		  "number from -100 to 100, got 'urgent'\n" },
		{ "priority: case matters",
		  "queue:\n  priorities:\n    - {sender_domain: a.example, priority: High}\n",
		  "t.yaml:3:44: queue.priorities[0].priority: expected high, normal, low or a "
		  "number from -100 to 100, got 'High'\n" },
		{ "priority: out of range",
		  "queue:\n  priorities:\n    - {sender_domain: a.example, priority: 101}\n"
		  "    - {sender_domain: b.example, priority: -101}\n"
		  "    - {sender_domain: c.example, priority: 99999999999999999999999}\n",
		  "t.yaml:3:44: queue.priorities[0].priority: must be from -100 to 100, got "
		  "'101'\n"
		  "t.yaml:4:44: queue.priorities[1].priority: must be from -100 to 100, got "
		  "'-101'\n"
		  "t.yaml:5:44: queue.priorities[2].priority: must be from -100 to 100, got "
		  "'99999999999999999999999'\n" },
		{ "priority: fraction and signs",
		  "queue:\n  priorities:\n    - {sender_domain: a.example, priority: 1.5}\n"
		  "    - {sender_domain: b.example, priority: --1}\n",
		  "t.yaml:3:44: queue.priorities[0].priority: expected high, normal, low or a "
		  "number from -100 to 100, got '1.5'\n"
		  "t.yaml:4:44: queue.priorities[1].priority: expected high, normal, low or a "
		  "number from -100 to 100, got '--1'\n" },
		{ "priority: bad domains",
		  "queue:\n  priorities:\n"
		  "    - {sender_domain: a_b.example, recipient_domain: .x.example, priority: 1}\n",
		  "t.yaml:3:23: queue.priorities[0].sender_domain: bad domain name 'a_b.example': "
		  "only letters, digits, '-' and '.' are allowed\n"
		  "t.yaml:3:54: queue.priorities[0].recipient_domain: bad domain name "
		  "'.x.example': empty label\n" },

		/* dns: */
		{ "dns: scalar", "dns: 127.0.0.1\n",
		  "t.yaml:1:6: dns: expected a mapping, got '127.0.0.1'\n" },
		{ "dns: misspelt key", "dns:\n  nameserver: [127.0.0.1]\n",
		  "t.yaml:2:3: dns.nameserver: unknown key, did you mean 'nameservers'?\n" },
		{ "nameservers: empty", "dns:\n  nameservers: []\n",
		  "t.yaml:2:16: dns.nameservers: must not be empty\n" },
		{ "nameservers: scalar", "dns:\n  nameservers: 127.0.0.1\n",
		  "t.yaml:2:16: dns.nameservers: expected a list, got '127.0.0.1'\n" },
		{ "nameservers: nothing", "dns:\n  nameservers:\n",
		  "t.yaml:2:15: dns.nameservers: expected a list, got nothing\n" },
		{ "nameservers: bad ones",
		  "dns:\n  nameservers:\n    - localhost\n    - '::1'\n    - '[::1]:0'\n"
		  "    - 127.0.0.1:99999\n    - '[::g]'\n    - '*'\n    - [1]\n    - 127.0.0.1\n",
		  "t.yaml:3:7: dns.nameservers[0]: bad nameserver address 'localhost': not a "
		  "numeric IPv4 address, names are not resolved\n"
		  "t.yaml:4:7: dns.nameservers[1]: bad nameserver address '::1': an IPv6 address "
		  "needs brackets, as in [::1]\n"
		  "t.yaml:5:7: dns.nameservers[2]: bad nameserver address '[::1]:0': port out of "
		  "range, must be 1 to 65535\n"
		  "t.yaml:6:7: dns.nameservers[3]: bad nameserver address '127.0.0.1:99999': port "
		  "out of range, must be 1 to 65535\n"
		  "t.yaml:7:7: dns.nameservers[4]: bad nameserver address '[::g]': not a numeric "
		  "IPv6 address\n"
		  "t.yaml:8:7: dns.nameservers[5]: bad nameserver address '*': not a numeric IPv4 "
		  "address, names are not resolved\n"
		  "t.yaml:9:7: dns.nameservers[6]: expected a nameserver address, got a list\n" },
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

Test(config, errors_file_routes_queue_dns)
{
	struct petrel_config *cfg = NULL;
	char *errors = NULL;

#define F TEST_DATA_DIR "/config_errors_routes.yaml"
	cr_assert_eq(config_load(F, &cfg, &errors), -1);
	cr_expect_null(cfg);
	cr_expect_str_eq(errors, F
	                 ":5:14: routes[0].maildir: bad maildir template './var/mail/%x': only "
	                 "%u, %d and %% may follow a '%'\n" F
	                 ":6:5: routes[0].tls: only on relay or mx routes\n" F
	                 ":8:12: routes[1].relay: bad relay address 'smtp.example.net:0': port "
	                 "out of range, must be 1 to 65535\n" F
	                 ":9:5: routes[1].mx: exactly one of mx, relay, maildir, discard (relay "
	                 "is at line 8)\n" F
	                 ":11:14: routes[2].discard: must be true (it names the kind of route)\n" F
	                 ":10:13: routes[2].domain: duplicate route domain 'localhost' (also at "
	                 "line 4)\n" F ":12:5: routes[3]: missing key 'domain'\n" F
	                 ":13:5: routes[3].port: only on mx routes (a relay's port goes in relay: "
	                 "host:port)\n" F ":15:15: queue.retry[1]: must not be 0\n" F
	                 ":16:17: queue.max_lifetime: must be at least 60 seconds (1m), got "
	                 "'30s'\n" F
	                 ":20:7: queue.priorities[0]: needs sender_domain or recipient_domain (or "
	                 "both)\n" F
	                 ":21:47: queue.priorities[1].priority: must be from -100 to 100, got "
	                 "'101'\n" F
	                 ":18:32: queue.concurrency_per_destination: must be at most concurrency "
	                 "(10), got '11'\n" F
	                 ":23:33: dns.nameservers[1]: bad nameserver address 'localhost': not a "
	                 "numeric IPv4 address, names are not resolved\n");
#undef F
	free(errors);
}

/*
 * tls:, auth:, listen[].tls
 */

/* The example of the documentation, as config_load_string() and config_load() read it. */
Test(config, tls_auth_example)
{
	static const char example[] = "tls:\n"
	                              "  certificate: @CERT@\n"
	                              "  key: @KEY@\n"
	                              "  min_version: TLSv1.2\n"
	                              "  ciphers: \"HIGH:!aNULL:!MD5\"\n"
	                              "auth:\n"
	                              "  users_file: @USERS@\n"
	                              "  require_tls: true\n"
	                              "  sender_login_match: false\n"
	                              "  max_failures: 5\n"
	                              "  failure_window: 15m\n"
	                              "listen:\n"
	                              "  - { address: \"0.0.0.0:25\",  role: relay,      tls: "
	                              "starttls }\n"
	                              "  - { address: \"0.0.0.0:587\", role: submission, tls: "
	                              "starttls }\n"
	                              "  - { address: \"0.0.0.0:465\", role: submission, tls: "
	                              "implicit }\n";
	struct test_config_files files;
	struct petrel_config *cfg;
	char *text, path[160], *errors = NULL;
	int pass;

	test_config_files_make(&files);
	text = test_config_subst(example, &files);
	snprintf(path, sizeof(path), "%s/petrel.yaml", files.dir);
	test_config_write(path, text);
	for (pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			cfg = test_config_ok(text);
		} else {
			cfg = NULL;
			cr_assert_eq(config_load(path, &cfg, &errors), 0, "%s", errors);
		}
		cr_expect_str_eq(cfg->tls_certificate, files.certificate, "pass %d", pass);
		cr_expect_str_eq(cfg->tls_key, files.key, "pass %d", pass);
		cr_expect_eq(cfg->tls_min_version, TLS1_2_VERSION, "pass %d", pass);
		cr_expect_str_eq(cfg->tls_ciphers, "HIGH:!aNULL:!MD5", "pass %d", pass);
		cr_expect_str_eq(cfg->auth_users_file, files.users, "pass %d", pass);
		cr_expect(cfg->auth_require_tls, "pass %d", pass);
		cr_expect_not(cfg->auth_sender_login_match, "pass %d", pass);
		cr_expect_eq(cfg->auth_max_failures, 5, "pass %d", pass);
		cr_expect_eq(cfg->auth_failure_window, 900, "pass %d", pass);
		cr_assert_eq(cfg->nlisten, 3, "pass %d", pass);
		test_config_expect_addr(&cfg->listen[0], "0.0.0.0:25", AF_INET, "0.0.0.0", 25,
		                        CONFIG_ROLE_RELAY);
		test_config_expect_addr(&cfg->listen[1], "0.0.0.0:587", AF_INET, "0.0.0.0", 587,
		                        CONFIG_ROLE_SUBMISSION);
		test_config_expect_addr(&cfg->listen[2], "0.0.0.0:465", AF_INET, "0.0.0.0", 465,
		                        CONFIG_ROLE_SUBMISSION);
		cr_expect_eq(cfg->listen[0].tls, CONFIG_LISTEN_TLS_STARTTLS, "pass %d", pass);
		cr_expect_eq(cfg->listen[1].tls, CONFIG_LISTEN_TLS_STARTTLS, "pass %d", pass);
		cr_expect_eq(cfg->listen[2].tls, CONFIG_LISTEN_TLS_IMPLICIT, "pass %d", pass);
		config_free(cfg);
	}
	unlink(path);
	free(text);
	test_config_files_remove(&files);
}

Test(config, tls_auth_values)
{
	static const char *const order[] = {
		/* listen: first, tls: and auth: after it, and the other way round */
		"listen:\n  - {address: 127.0.0.1:587, role: submission, tls: implicit}\n"
		"tls: {certificate: @CERT@, key: @KEY@}\nauth: {users_file: @USERS@}\n",
		"auth: {users_file: @USERS@}\ntls: {certificate: @CERT@, key: @KEY@}\n"
		"listen:\n  - {address: 127.0.0.1:587, role: submission, tls: implicit}\n",
	};
	struct test_config_files files;
	struct petrel_config *cfg;
	char *text;
	size_t i;

	test_config_files_make(&files);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		text = test_config_subst(order[i], &files);
		cfg = test_config_ok(text);
		cr_expect_eq(cfg->listen[0].tls, CONFIG_LISTEN_TLS_IMPLICIT, "order %zu", i);
		cr_expect_eq(cfg->listen[0].role, CONFIG_ROLE_SUBMISSION, "order %zu", i);
		cr_expect_str_eq(cfg->tls_certificate, files.certificate, "order %zu", i);
		cr_expect_str_eq(cfg->auth_users_file, files.users, "order %zu", i);
		config_free(cfg);
		free(text);
	}

	/* Only min_version (or ciphers) without a certificate: allowed, and no TLS. tls: none
	 * needs no certificate; a relay listener needs no users file. */
	cfg = test_config_ok("tls:\n  min_version: TLSv1.3\n  ciphers: ECDHE+AESGCM\n"
	                     "listen:\n  - address: 127.0.0.1:25\n    tls: none\n");
	cr_expect_eq(cfg->tls_min_version, TLS1_3_VERSION);
	cr_expect_str_eq(cfg->tls_ciphers, "ECDHE+AESGCM");
	cr_expect_null(cfg->tls_certificate);
	cr_expect_eq(cfg->listen[0].tls, CONFIG_LISTEN_TLS_NONE);
	config_free(cfg);

	/* auth: without a users file: its other keys are kept, but there is no AUTH. */
	cfg = test_config_ok("auth:\n  require_tls: No\n  sender_login_match: yes\n"
	                     "  max_failures: 1\n  failure_window: 1s\n");
	cr_expect_null(cfg->auth_users_file);
	cr_expect_not(cfg->auth_require_tls);
	cr_expect(cfg->auth_sender_login_match);
	cr_expect_eq(cfg->auth_max_failures, 1);
	cr_expect_eq(cfg->auth_failure_window, 1);
	config_free(cfg);

	/* A relay listener with tls: left out: STARTTLS once there is a certificate. */
	text = test_config_subst("tls:\n  certificate: @CERT@\n  key: '@KEY@'\n"
	                         "auth:\n  users_file: \"@USERS@\"\n  failure_window: 1h30m\n"
	                         "  max_failures: \"1000\"\n",
	                         &files);
	cfg = test_config_ok(text);
	cr_expect_str_eq(cfg->tls_key, files.key);
	cr_expect_str_eq(cfg->auth_users_file, files.users);
	cr_expect_eq(cfg->auth_failure_window, 5400);
	cr_expect_eq(cfg->auth_max_failures, 1000);
	cr_expect_eq(cfg->listen[0].tls, CONFIG_LISTEN_TLS_DEFAULT);
	cr_expect_eq(config_listen_tls_effective(cfg, &cfg->listen[0]), CONFIG_LISTEN_TLS_STARTTLS);
	config_free(cfg);
	free(text);
	test_config_files_remove(&files);
}

Test(config, listen_tls_effective)
{
	static const struct {
		bool certificate;
		enum config_listen_tls tls, effective;
	} cases[] = {
		{ false, CONFIG_LISTEN_TLS_DEFAULT, CONFIG_LISTEN_TLS_NONE },
		{ false, CONFIG_LISTEN_TLS_NONE, CONFIG_LISTEN_TLS_NONE },
		{ false, CONFIG_LISTEN_TLS_STARTTLS, CONFIG_LISTEN_TLS_STARTTLS },
		{ false, CONFIG_LISTEN_TLS_IMPLICIT, CONFIG_LISTEN_TLS_IMPLICIT },
		{ true, CONFIG_LISTEN_TLS_DEFAULT, CONFIG_LISTEN_TLS_STARTTLS },
		{ true, CONFIG_LISTEN_TLS_NONE, CONFIG_LISTEN_TLS_NONE },
		{ true, CONFIG_LISTEN_TLS_STARTTLS, CONFIG_LISTEN_TLS_STARTTLS },
		{ true, CONFIG_LISTEN_TLS_IMPLICIT, CONFIG_LISTEN_TLS_IMPLICIT },
	};
	char certificate[] = "/etc/petrel/tls/fullchain.pem";
	struct petrel_config cfg = { 0 };
	struct config_listen l = { 0 };
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cfg.tls_certificate = cases[i].certificate ? certificate : NULL;
		l.tls = cases[i].tls;
		cr_expect_eq(config_listen_tls_effective(&cfg, &l), cases[i].effective,
		             "case %zu: certificate %d, tls %d", i, cases[i].certificate,
		             cases[i].tls);
	}

	/* No config at all: no certificate. */
	l.tls = CONFIG_LISTEN_TLS_DEFAULT;
	cr_expect_eq(config_listen_tls_effective(NULL, &l), CONFIG_LISTEN_TLS_NONE);
	l.tls = CONFIG_LISTEN_TLS_IMPLICIT;
	cr_expect_eq(config_listen_tls_effective(NULL, &l), CONFIG_LISTEN_TLS_IMPLICIT);
}

Test(config, errors_tls_auth)
{
	static const struct {
		const char *what;
		const char *yaml;
		const char *errors;
	} cases[] = {
		/* tls: shape and keys */
		{ "tls: scalar", "tls: yes\n", "t.yaml:1:6: tls: expected a mapping, got 'yes'\n" },
		{ "tls: list", "tls: [@CERT@]\n",
		  "t.yaml:1:6: tls: expected a mapping, got a list\n" },
		{ "tls: unknown key, and so no certificate",
		  "tls:\n  certficate: @CERT@\n  key: @KEY@\n",
		  "t.yaml:2:3: tls.certficate: unknown key, did you mean 'certificate'?\n"
		  "t.yaml:2:3: tls: missing key 'certificate' (certificate and key go "
		  "together)\n" },

		/* certificate and key go together */
		{ "tls: certificate without key", "tls:\n  certificate: @CERT@\n",
		  "t.yaml:2:3: tls: missing key 'key' (certificate and key go together)\n" },
		{ "tls: key without certificate", "tls:\n  min_version: TLSv1.3\n  key: @KEY@\n",
		  "t.yaml:2:3: tls: missing key 'certificate' (certificate and key go "
		  "together)\n" },
		{ "tls: flow, key without certificate", "tls: {key: @KEY@}\n",
		  "t.yaml:1:6: tls: missing key 'certificate' (certificate and key go "
		  "together)\n" },
		{ "tls: certificate given but bad still counts",
		  "tls:\n  certificate: [@CERT@]\n  key: @KEY@\n",
		  "t.yaml:2:16: tls.certificate: expected a file name, got a list\n" },

		/* readable files */
		{ "tls: certificate missing",
		  "tls:\n  certificate: /nonexistent/petrel/fullchain.pem\n  key: @KEY@\n",
		  "t.yaml:2:16: tls.certificate: cannot read: No such file or directory\n" },
		{ "tls: key is a directory", "tls:\n  certificate: @CERT@\n  key: @DIR@\n",
		  "t.yaml:3:8: tls.key: cannot read: Is a directory\n" },
		{ "tls: key is not a regular file",
		  "tls:\n  certificate: @CERT@\n  key: /dev/null\n",
		  "t.yaml:3:8: tls.key: cannot read: not a regular file\n" },
		{ "tls: both missing",
		  "tls:\n  certificate: nonexistent-fullchain.pem\n  key: "
		  "nonexistent-privkey.pem\n",
		  "t.yaml:2:16: tls.certificate: cannot read: No such file or directory\n"
		  "t.yaml:3:8: tls.key: cannot read: No such file or directory\n" },
		{ "tls: certificate below a file", "tls:\n  certificate: @CERT@/x\n  key: @KEY@\n",
		  "t.yaml:2:16: tls.certificate: cannot read: Not a directory\n" },
		{ "tls: certificate empty", "tls:\n  certificate: ''\n  key: @KEY@\n",
		  "t.yaml:2:16: tls.certificate: must not be empty\n" },
		{ "tls: certificate nothing", "tls:\n  certificate:\n  key: @KEY@\n",
		  "t.yaml:2:15: tls.certificate: expected a file name, got nothing\n" },

		/* min_version, ciphers */
		{ "tls: min_version TLSv1.1", "tls:\n  min_version: TLSv1.1\n",
		  "t.yaml:2:16: tls.min_version: unknown value 'TLSv1.1' (expected TLSv1.2 or "
		  "TLSv1.3)\n" },
		{ "tls: min_version case", "tls:\n  min_version: tlsv1.3\n",
		  "t.yaml:2:16: tls.min_version: unknown value 'tlsv1.3' (expected TLSv1.2 or "
		  "TLSv1.3)\n" },
		{ "tls: min_version number", "tls:\n  min_version: 1.3\n",
		  "t.yaml:2:16: tls.min_version: unknown value '1.3' (expected TLSv1.2 or "
		  "TLSv1.3)\n" },
		{ "tls: ciphers empty", "tls:\n  ciphers: \"\"\n",
		  "t.yaml:2:12: tls.ciphers: must not be empty\n" },
		{ "tls: ciphers list", "tls:\n  ciphers: [HIGH, \"!aNULL\"]\n",
		  "t.yaml:2:12: tls.ciphers: expected an OpenSSL cipher list, got a list\n" },

		/* auth: */
		{ "auth: scalar", "auth: on\n",
		  "t.yaml:1:7: auth: expected a mapping, got 'on'\n" },
		{ "auth: unknown key", "auth:\n  user_file: @USERS@\n",
		  "t.yaml:2:3: auth.user_file: unknown key, did you mean 'users_file'?\n" },
		{ "auth: users_file missing", "auth:\n  users_file: /nonexistent/petrel/users\n",
		  "t.yaml:2:15: auth.users_file: cannot read: No such file or directory\n" },
		{ "auth: users_file a directory", "auth:\n  users_file: @DIR@\n",
		  "t.yaml:2:15: auth.users_file: cannot read: Is a directory\n" },
		{ "auth: users_file list", "auth:\n  users_file: [@USERS@]\n",
		  "t.yaml:2:15: auth.users_file: expected a file name, got a list\n" },
		{ "auth: require_tls not a boolean", "auth:\n  require_tls: maybe\n",
		  "t.yaml:2:16: auth.require_tls: expected true or false, got 'maybe'\n" },
		{ "auth: sender_login_match 1", "auth:\n  sender_login_match: 1\n",
		  "t.yaml:2:23: auth.sender_login_match: expected true or false, got '1'\n" },
		{ "auth: max_failures 0", "auth:\n  max_failures: 0\n",
		  "t.yaml:2:17: auth.max_failures: must not be 0\n" },
		{ "auth: max_failures 1001", "auth:\n  max_failures: 1001\n",
		  "t.yaml:2:17: auth.max_failures: must be at most 1000, got '1001'\n" },
		{ "auth: max_failures word", "auth:\n  max_failures: five\n",
		  "t.yaml:2:17: auth.max_failures: expected a whole number, got 'five'\n" },
		{ "auth: failure_window 0", "auth:\n  failure_window: 0s\n",
		  "t.yaml:2:19: auth.failure_window: must not be 0\n" },
		{ "auth: failure_window words", "auth:\n  failure_window: 15 minutes\n",
		  "t.yaml:2:19: auth.failure_window: expected a duration such as 300s, 5m or "
		  "1h30m, got '15 minutes'\n" },
		{ "auth: failure_window too large", "auth:\n  failure_window: 100000w\n",
		  "t.yaml:2:19: auth.failure_window: must be at most 4294967295, got "
		  "'100000w'\n" },

		/* listen[].tls */
		{ "listen tls: unknown", "listen:\n  - address: 127.0.0.1:25\n    tls: required\n",
		  "t.yaml:3:10: listen[0].tls: unknown value 'required' (expected none, starttls "
		  "or "
		  "implicit)\n" },
		{ "listen tls: boolean",
		  "listen:\n  - address: 127.0.0.1:25\n    tls: [starttls]\n",
		  "t.yaml:3:10: listen[0].tls: expected none, starttls or implicit, got a list\n" },
		{ "listen tls: starttls without certificate",
		  "listen:\n  - address: 127.0.0.1:25\n    tls: starttls\n",
		  "t.yaml:3:10: listen[0].tls: starttls needs tls.certificate\n" },
		{ "listen tls: implicit without certificate, tls: after",
		  "listen:\n  - address: 127.0.0.1:25\n  - {address: 127.0.0.1:465, tls: "
		  "implicit}\n"
		  "tls:\n  min_version: TLSv1.3\n",
		  "t.yaml:3:35: listen[1].tls: implicit needs tls.certificate\n" },
		{ "listen tls: certificate given but unreadable",
		  "listen:\n  - address: 127.0.0.1:25\n    tls: starttls\n"
		  "tls:\n  certificate: /nonexistent/petrel/fullchain.pem\n  key: @KEY@\n",
		  "t.yaml:5:16: tls.certificate: cannot read: No such file or directory\n" },
		{ "listen tls: another item bad, its list is not checked",
		  "listen:\n  - address: 127.0.0.1:25\n    tls: starttls\n  - address: nowhere\n",
		  "t.yaml:4:14: listen[1].address: bad listen address 'nowhere': missing ':' and "
		  "port\n" },

		/* submission needs auth.users_file */
		{ "submission without auth:",
		  "listen:\n  - address: 127.0.0.1:25\n  - address: 127.0.0.1:587\n"
		  "    role: submission\n",
		  "t.yaml:4:11: listen[1].role: submission needs auth.users_file\n" },
		{ "submission without users_file",
		  "auth:\n  require_tls: false\n"
		  "listen:\n  - {address: 127.0.0.1:587, role: submission, tls: none}\n",
		  "t.yaml:4:36: listen[0].role: submission needs auth.users_file\n" },
		{ "submission: users_file given but unreadable",
		  "listen:\n  - address: 127.0.0.1:587\n    role: submission\n"
		  "auth:\n  users_file: /nonexistent/petrel/users\n",
		  "t.yaml:5:15: auth.users_file: cannot read: No such file or directory\n" },
		{ "submission and starttls, neither set up",
		  "listen:\n  - address: 127.0.0.1:587\n    role: submission\n    tls: starttls\n"
		  "  - address: 127.0.0.1:465\n    tls: implicit\n    role: submission\n",
		  "t.yaml:4:10: listen[0].tls: starttls needs tls.certificate\n"
		  "t.yaml:3:11: listen[0].role: submission needs auth.users_file\n"
		  "t.yaml:6:10: listen[1].tls: implicit needs tls.certificate\n"
		  "t.yaml:7:11: listen[1].role: submission needs auth.users_file\n" },
		{ "submission with tls, without auth",
		  "tls: {certificate: @CERT@, key: @KEY@}\n"
		  "listen:\n  - address: 127.0.0.1:587\n    role: submission\n    tls: starttls\n",
		  "t.yaml:4:11: listen[0].role: submission needs auth.users_file\n" },
	};
	struct test_config_files files;
	char *text, *errors;
	size_t i;

	test_config_files_make(&files);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		text = test_config_subst(cases[i].yaml, &files);
		errors = test_config_fail(text);
		cr_expect_str_eq(errors, cases[i].errors, "%s:\n--- got:\n%s--- want:\n%s",
		                 cases[i].what, errors, cases[i].errors);
		free(errors);
		free(text);
	}
	test_config_files_remove(&files);
}

/* Not as root: root reads anything. */
Test(config, errors_tls_auth_permission)
{
	struct test_config_files files;
	char *text, *errors;

	if (geteuid() == 0)
		cr_skip_test("running as root: permissions do not apply");
	test_config_files_make(&files);
	cr_assert_eq(chmod(files.key, 0), 0);
	cr_assert_eq(chmod(files.users, 0200), 0);
	text = test_config_subst("tls:\n  certificate: @CERT@\n  key: @KEY@\n"
	                         "auth:\n  users_file: @USERS@\n",
	                         &files);
	errors = test_config_fail(text);
	cr_expect_str_eq(errors, "t.yaml:3:8: tls.key: cannot read: Permission denied\n"
	                         "t.yaml:5:15: auth.users_file: cannot read: Permission denied\n");
	free(errors);
	free(text);
	test_config_files_remove(&files);
}

/* config_load checks the files too, and names the config file in its report. */
Test(config, errors_tls_auth_file)
{
	struct petrel_config *cfg = NULL;
	struct test_config_files files;
	char path[160], want[1024];
	char *errors = NULL;

	test_config_files_make(&files);
	snprintf(path, sizeof(path), "%s/petrel.yaml", files.dir);
	test_config_write(path,
	                  "listen:\n"
	                  "  - { address: \"0.0.0.0:587\", role: submission, tls: starttls }\n"
	                  "tls:\n"
	                  "  certificate: tls/missing.pem\n"
	                  "auth:\n"
	                  "  users_file: /nonexistent/petrel/users\n");
	cr_assert_eq(config_load(path, &cfg, &errors), -1);
	cr_expect_null(cfg);
	snprintf(want, sizeof(want),
	         "%s:4:16: tls.certificate: cannot read: No such file or directory\n"
	         "%s:4:3: tls: missing key 'key' (certificate and key go together)\n"
	         "%s:6:15: auth.users_file: cannot read: No such file or directory\n",
	         path, path, path);
	cr_expect_str_eq(errors, want);
	free(errors);
	unlink(path);
	test_config_files_remove(&files);
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

/* stats: the HTTP endpoint, off unless the section is there. */
Test(config, stats_defaults)
{
	struct petrel_config *cfg = test_config_ok("");

	cr_expect_null(cfg->stats_address, "no endpoint without a stats: section");
	cr_expect_null(cfg->stats_token);
	cr_assert_eq(cfg->nstats_allow, 2);
	test_config_expect_net(&cfg->stats_allow[0], "127.0.0.0/8");
	test_config_expect_net(&cfg->stats_allow[1], "::1/128");
	config_free(cfg);

	/* The shipped example documents the section, commented out. */
	cr_assert_eq(config_load(TEST_EXAMPLE_CONFIG, &cfg, NULL), 0);
	cr_expect_null(cfg->stats_address);
	config_free(cfg);
}

Test(config, stats_values)
{
	const struct sockaddr_in6 *sin6;
	const struct sockaddr_in *sin;
	struct petrel_config *cfg;

	cfg = test_config_ok("stats:\n"
	                     "  address: 127.0.0.1:8025\n"
	                     "  token: \"s3cret-Token_~+/=\"\n"
	                     "  allow: [10.0.0.0/8, \"::1/128\", 192.0.2.7]\n");
	cr_assert_str_eq(cfg->stats_address, "127.0.0.1:8025");
	sin = (const struct sockaddr_in *)&cfg->stats_addr;
	cr_assert_eq(cfg->stats_addr.ss_family, AF_INET);
	cr_expect_eq(cfg->stats_addrlen, sizeof(*sin));
	cr_expect_eq(ntohs(sin->sin_port), 8025);
	cr_expect_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	cr_expect_str_eq(cfg->stats_token, "s3cret-Token_~+/=");
	cr_assert_eq(cfg->nstats_allow, 3, "the list replaces the default");
	test_config_expect_net(&cfg->stats_allow[0], "10.0.0.0/8");
	test_config_expect_net(&cfg->stats_allow[1], "::1/128");
	test_config_expect_net(&cfg->stats_allow[2], "192.0.2.7/32");
	config_free(cfg);

	/* IPv6, no token, default allow list; the listen list is not in the way. */
	cfg = test_config_ok("stats: {address: \"[::1]:2525\"}\n");
	sin6 = (const struct sockaddr_in6 *)&cfg->stats_addr;
	cr_assert_eq(cfg->stats_addr.ss_family, AF_INET6);
	cr_expect_eq(ntohs(sin6->sin6_port), 2525);
	cr_expect_null(cfg->stats_token);
	cr_expect_eq(cfg->nstats_allow, 2);
	config_free(cfg);
}

Test(config, errors_stats)
{
	static const struct {
		const char *what;
		const char *yaml;
		const char *errors;
	} cases[] = {
		{ "empty section", "stats:\n", "t.yaml:1:7: stats: missing key 'address'\n" },
		{ "no address", "stats: {token: x}\n",
		  "t.yaml:1:8: stats: missing key 'address'\n" },
		{ "not a mapping", "stats: 8025\n",
		  "t.yaml:1:8: stats: expected a mapping, got '8025'\n" },
		{ "address by name", "stats:\n  address: localhost:8025\n",
		  "t.yaml:2:12: stats.address: bad listen address 'localhost:8025': not a numeric "
		  "IPv4 address, names are not resolved\n" },
		{ "address list", "stats:\n  address: [127.0.0.1:8025]\n",
		  "t.yaml:2:12: stats.address: expected an address such as 127.0.0.1:25, [::1]:25 "
		  "or *:25, got a list\n" },
		{ "token with a space", "stats:\n  address: 127.0.0.1:8025\n  token: \"a b\"\n",
		  "t.yaml:3:10: stats.token: bad token 'a b': only visible ASCII characters, no "
		  "spaces\n" },
		{ "token not ASCII", "stats:\n  address: 127.0.0.1:8025\n  token: t\xc3\xa9st\n",
		  "t.yaml:3:10: stats.token: bad token 't\xc3\xa9st': only visible ASCII "
		  "characters, no spaces\n" },
		{ "token empty", "stats:\n  address: 127.0.0.1:8025\n  token: \"\"\n",
		  "t.yaml:3:10: stats.token: must not be empty\n" },
		{ "allow empty", "stats:\n  address: 127.0.0.1:8025\n  allow: []\n",
		  "t.yaml:3:10: stats.allow: must not be empty\n" },
		{ "allow bad network",
		  "stats:\n  address: 127.0.0.1:8025\n  allow: [10.0.0.0/33, \"::1/128\"]\n",
		  "t.yaml:3:11: stats.allow[0]: expected a network such as 10.0.0.0/8, \"::1/128\" "
		  "or 192.0.2.7, got '10.0.0.0/33'\n" },
		{ "misspelt key", "stats:\n  address: 127.0.0.1:8025\n  alow: [10.0.0.0/8]\n",
		  "t.yaml:3:3: stats.alow: unknown key, did you mean 'allow'?\n" },
		{ "same address as a listener",
		  "listen:\n  - address: 127.0.0.1:8025\nstats:\n  address: 127.0.0.1:8025\n",
		  "t.yaml:4:12: stats.address: 127.0.0.1:8025 is already a listen address\n" },
		{ "same address as the default listener", "stats: {address: \"127.0.0.1:2525\"}\n",
		  "t.yaml:1:18: stats.address: 127.0.0.1:2525 is already a listen address\n" },
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

/* user: and group: (priv.h): names that exist now, never root. Debian's nobody and nogroup. */
Test(config, user_group_defaults)
{
	struct petrel_config *cfg = test_config_ok("");

	cr_expect_null(cfg->user, "petrel stays who started it");
	cr_expect_null(cfg->group);
	config_free(cfg);

	/* The shipped example documents both keys, commented out. */
	cr_assert_eq(config_load(TEST_EXAMPLE_CONFIG, &cfg, NULL), 0);
	cr_expect_null(cfg->user);
	cr_expect_null(cfg->group);
	config_free(cfg);
}

Test(config, user_group_values)
{
	struct petrel_config *cfg;

	cfg = test_config_ok("user: nobody\n");
	cr_expect_str_eq(cfg->user, "nobody");
	cr_expect_null(cfg->group, "the user's primary group");
	config_free(cfg);

	/* Any order; group names the group explicitly. */
	cfg = test_config_ok("group: nogroup\nuser: daemon\n");
	cr_expect_str_eq(cfg->user, "daemon");
	cr_expect_str_eq(cfg->group, "nogroup");
	config_free(cfg);
}

Test(config, errors_user_group)
{
	static const struct {
		const char *what;
		const char *yaml;
		const char *errors;
	} cases[] = {
		{ "no such user", "user: petrel-no-such-user\n",
		  "t.yaml:1:7: user: bad user name 'petrel-no-such-user': no such user\n" },
		{ "root", "user: root\n",
		  "t.yaml:1:7: user: bad user name 'root': it is root (uid 0), which would drop "
		  "nothing\n" },
		{ "a number", "user: 65534\n",
		  "t.yaml:1:7: user: bad user name '65534': only letters, digits, '_', '.' and "
		  "'-', at most 32, starting with a letter or '_'\n" },
		{ "a space", "user: \"no body\"\n",
		  "t.yaml:1:7: user: bad user name 'no body': only letters, digits, '_', '.' and "
		  "'-', at most 32, starting with a letter or '_'\n" },
		{ "too long", "user: abcdefghijabcdefghijabcdefghijabc\n",
		  "t.yaml:1:7: user: bad user name 'abcdefghijabcdefghijabcdefghijabc': only "
		  "letters, digits, '_', '.' and '-', at most 32, starting with a letter or "
		  "'_'\n" },
		{ "empty", "user: \"\"\n", "t.yaml:1:7: user: must not be empty\n" },
		{ "a list", "user: [nobody]\n",
		  "t.yaml:1:7: user: expected a user name, got a list\n" },
		{ "group without user", "group: nogroup\n", "t.yaml:1:1: group: needs user:\n" },
		{ "group root", "user: nobody\ngroup: root\n",
		  "t.yaml:2:8: group: bad group name 'root': it is gid 0 (root's group), which "
		  "would drop nothing\n" },
		{ "no such group", "user: nobody\ngroup: petrel-no-such-group\n",
		  "t.yaml:2:8: group: bad group name 'petrel-no-such-group': no such group\n" },
		{ "misspelt key", "usr: nobody\n",
		  "t.yaml:1:1: usr: unknown key, did you mean 'user'?\n" },
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

Test(config, log_target)
{
	struct petrel_config *cfg = test_config_ok("");
	char *errors;

	cr_assert_eq(cfg->log_target, CONFIG_LOG_STDERR);
	config_free(cfg);
	cfg = test_config_ok("log_target: syslog\n");
	cr_assert_eq(cfg->log_target, CONFIG_LOG_SYSLOG);
	config_free(cfg);
	errors = test_config_fail("log_target: file\n");
	cr_assert(strstr(errors, "t.yaml:1:13: log_target:") != NULL, "%s", errors);
	free(errors);
}

/* ---- reload: references and what a reload keeps ---- */

Test(config, references)
{
	struct petrel_config *cfg = test_config_ok("hostname: ref.test\n");

	cr_assert_eq(cfg->refs, 1);
	cr_assert_eq(config_ref(cfg), cfg);
	cr_assert_eq(cfg->refs, 2);
	config_free(cfg); /* one reference left: still readable */
	cr_assert_str_eq(cfg->hostname, "ref.test");
	config_free(cfg);
	config_free(NULL);
}

Test(config, keep_fixed_nothing_changed)
{
	struct petrel_config *run = test_config_ok("spool: /var/a\nhostname: a.test\n");
	struct petrel_config *fresh = test_config_ok("spool: /var/a\nhostname: b.test\n"
	                                             "log_level: debug\n");
	char changed[128] = "junk";

	cr_assert_eq(config_keep_fixed(fresh, run, changed, sizeof(changed)), 0);
	cr_assert_str_eq(changed, "");
	cr_assert_str_eq(fresh->hostname, "b.test"); /* reloadable: as in the new file */
	cr_assert_eq(fresh->log_level, CONFIG_LOG_DEBUG);
	config_free(run);
	config_free(fresh);
}

Test(config, keep_fixed_restores_running_values)
{
	struct petrel_config *run = test_config_ok("spool: /var/a\ndurability: fsync\n"
	                                           "dns: { nameservers: [\"127.0.0.1:53\"] }\n"
	                                           "stats: { address: \"127.0.0.1:8025\" }\n");
	struct petrel_config *fresh =
	        test_config_ok("spool: /var/b\ndurability: none\nlog_target: syslog\n"
	                       "stats: { address: \"127.0.0.1:9025\" }\nhostname: c.test\n");
	char changed[128];

	cr_assert_eq(config_keep_fixed(fresh, run, changed, sizeof(changed)), 5);
	cr_assert_str_eq(changed, "spool, dns.nameservers, stats.address, durability, log_target");
	cr_assert_str_eq(fresh->spool, "/var/a");
	cr_assert_eq(fresh->durability, CONFIG_DURABILITY_FSYNC);
	cr_assert_eq(fresh->log_target, CONFIG_LOG_STDERR);
	cr_assert_str_eq(fresh->nameservers, run->nameservers);
	cr_assert_str_eq(fresh->stats_address, "127.0.0.1:8025");
	cr_assert_eq(fresh->stats_addrlen, run->stats_addrlen);
	cr_assert_eq(memcmp(&fresh->stats_addr, &run->stats_addr, run->stats_addrlen), 0);
	cr_assert_str_eq(fresh->hostname, "c.test");

	/* Applied once, nothing is left to keep. */
	cr_assert_eq(config_keep_fixed(fresh, run, changed, sizeof(changed)), 0);
	config_free(run);
	config_free(fresh);
}

Test(config, keep_fixed_truncates_the_note)
{
	struct petrel_config *run = test_config_ok("spool: /var/a\n");
	struct petrel_config *fresh = test_config_ok("spool: /var/bb\ndurability: none\n");
	char changed[8];

	cr_assert_eq(config_keep_fixed(fresh, run, changed, sizeof(changed)), 2);
	cr_assert_str_eq(changed, "spool, ");
	config_free(run);
	config_free(fresh);
}
