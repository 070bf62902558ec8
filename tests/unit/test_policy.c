/* test_policy.c: never an open relay; address tricks only from clients that may relay. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "petrel/config.h"
#include "petrel/policy.h"
#include "petrel/smtp/parser.h"

static struct petrel_config *
load(const char *text)
{
	struct petrel_config *cfg = NULL;
	char *err = NULL;

	cr_assert_eq(config_load_string("test.yaml", text, strlen(text), &cfg, &err), 0, "%s",
	             err ? err : "");
	return cfg;
}

static struct smtp_path
rcpt(const char *line)
{
	struct smtp_cmd cmd;

	cr_assert_eq(smtp_parser_command(line, strlen(line), &cmd), SMTP_PARSE_OK, "%s", line);
	cr_assert_eq(cmd.verb, SMTP_VERB_RCPT);
	return cmd.u.rcpt.path;
}

static bool
may_relay(const struct petrel_config *cfg, const char *ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	inet_pton(AF_INET, ip, &sin.sin_addr);
	return policy_client_may_relay(cfg, (struct sockaddr *)&sin, false);
}

Test(policy, default_is_not_open)
{
	struct petrel_config *cfg = load("");
	struct smtp_path p = rcpt("RCPT TO:<someone@example.com>");

	cr_assert(may_relay(cfg, "127.0.0.1"));
	cr_assert_not(may_relay(cfg, "192.0.2.1"));
	cr_assert_eq(policy_check_rcpt(cfg, false, &p), POLICY_RELAY_DENIED);
	cr_assert_eq(policy_check_rcpt(cfg, true, &p), POLICY_ACCEPT);
	config_free(cfg);
}

Test(policy, local_domains_from_anyone)
{
	struct petrel_config *cfg = load("relay:\n  local_domains: [example.org, localhost]\n");
	struct smtp_path a = rcpt("RCPT TO:<user@example.org>");
	struct smtp_path b = rcpt("RCPT TO:<user@EXAMPLE.ORG>");
	struct smtp_path c = rcpt("RCPT TO:<user@sub.example.org>");

	cr_assert_eq(policy_check_rcpt(cfg, false, &a), POLICY_ACCEPT);
	cr_assert_eq(policy_check_rcpt(cfg, false, &b), POLICY_ACCEPT);
	cr_assert_eq(policy_check_rcpt(cfg, false, &c), POLICY_RELAY_DENIED);
	config_free(cfg);
}

Test(policy, postmaster_always)
{
	struct petrel_config *cfg = load("relay:\n  networks: []\n");
	struct smtp_path p = rcpt("RCPT TO:<Postmaster>");

	cr_assert_eq(policy_check_rcpt(cfg, false, &p), POLICY_ACCEPT);
	config_free(cfg);
}

Test(policy, address_tricks_refused_without_relay_right)
{
	static const char *const tricks[] = {
		"RCPT TO:<user%other.example@localhost>",
		"RCPT TO:<\"user@other.example\"@localhost>",
		"RCPT TO:<@relay.example,@b.example:user@localhost>",
		"RCPT TO:<other.example!user@localhost>",
	};
	struct petrel_config *cfg = load("");
	size_t i;

	for (i = 0; i < sizeof(tricks) / sizeof(tricks[0]); i++) {
		struct smtp_path p = rcpt(tricks[i]);
		cr_assert_eq(policy_check_rcpt(cfg, false, &p), POLICY_RELAY_DENIED, "%s",
		             tricks[i]);
		cr_assert_eq(policy_check_rcpt(cfg, true, &p), POLICY_ACCEPT, "%s", tricks[i]);
	}
	config_free(cfg);
}
