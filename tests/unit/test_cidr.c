/*
 * test_cidr.c: net/cidr.c, parsing and matching tables.
 *
 * Tables are looped over inside one Test() each (Criterion's ParameterizedTest crashes with
 * `const char *` fields pointing at literals); every failure names the row.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "petrel/net/cidr.h"

/* A peer address as a socket address: "::1" → sockaddr_in6, "10.0.0.1" → sockaddr_in. */
static socklen_t
test_cidr_peer(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strchr(s, ':') != NULL) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
		cr_assert_eq(inet_pton(AF_INET6, s, &sin6->sin6_addr), 1, "bad test peer %s", s);
		return sizeof(*sin6);
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons(40000);
	cr_assert_eq(inet_pton(AF_INET, s, &sin->sin_addr), 1, "bad test peer %s", s);
	return sizeof(*sin);
}

Test(cidr, parse_good)
{
	static const struct {
		const char *in;
		int family;
		const char *net; /* expected network, host bits cleared */
		unsigned prefix;
	} cases[] = {
		{ "10.0.0.0/8", AF_INET, "10.0.0.0", 8 },
		{ "127.0.0.0/8", AF_INET, "127.0.0.0", 8 },
		{ "10.1.2.3/8", AF_INET, "10.0.0.0", 8 },
		{ "192.168.1.1", AF_INET, "192.168.1.1", 32 },
		{ "192.168.1.1/32", AF_INET, "192.168.1.1", 32 },
		{ "192.168.1.255/31", AF_INET, "192.168.1.254", 31 },
		{ "172.16.255.1/12", AF_INET, "172.16.0.0", 12 },
		{ "172.31.255.1/13", AF_INET, "172.24.0.0", 13 },
		{ "0.0.0.0/0", AF_INET, "0.0.0.0", 0 },
		{ "1.2.3.4/0", AF_INET, "0.0.0.0", 0 },
		{ "255.255.255.255", AF_INET, "255.255.255.255", 32 },
		{ "::1/128", AF_INET6, "::1", 128 },
		{ "::1", AF_INET6, "::1", 128 },
		{ "::/0", AF_INET6, "::", 0 },
		{ "2001:db8::/32", AF_INET6, "2001:db8::", 32 },
		{ "2001:db8:ffff::1/33", AF_INET6, "2001:db8:8000::", 33 },
		{ "2001:DB8::1/64", AF_INET6, "2001:db8::", 64 },
		{ "fe80::1/10", AF_INET6, "fe80::", 10 },
		{ "::ffff:10.0.0.0/104", AF_INET6, "::ffff:10.0.0.0", 104 },
		{ "::ffff:192.0.2.7", AF_INET6, "::ffff:192.0.2.7", 128 },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/127", AF_INET6,
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 127 },
	};
	struct cidr net;
	char buf[INET6_ADDRSTRLEN];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&net, 0xa5, sizeof(net));
		cr_assert_eq(cidr_parse(cases[i].in, &net), 0, "cidr_parse(\"%s\") failed",
		             cases[i].in);
		cr_expect_eq(net.family, cases[i].family, "%s: family", cases[i].in);
		cr_expect_eq(net.prefix, cases[i].prefix, "%s: prefix %u", cases[i].in, net.prefix);
		cr_assert_not_null(inet_ntop(net.family, net.addr, buf, sizeof(buf)));
		cr_expect_str_eq(buf, cases[i].net, "%s: network", cases[i].in);
	}
}

Test(cidr, parse_bad)
{
	static const char *const cases[] = {
		"",
		"/8",
		"/",
		"10.0.0.0/",
		"10.0.0.0/33",
		"10.0.0.0/99",
		"10.0.0.0/1000",
		"10.0.0.0/4294967304",
		"10.0.0.0/-1",
		"10.0.0.0/+8",
		"10.0.0.0/08",
		"10.0.0.0/8/8",
		"10.0.0.0/8 ",
		" 10.0.0.0/8",
		"10.0.0.0 /8",
		"10.0.0.0/ 8",
		"10.0.0.0/8\n",
		"10.0.0.0/0x8",
		"10.0.0/8",
		"10.0.0.0.0",
		"256.0.0.0/8",
		"10.0.0.-1",
		"010.0.0.0/8",
		"junk",
		"localhost",
		"::1/129",
		"::1/256",
		"[::1]/128",
		"[::1]",
		"::1%lo/128",
		"fe80::1%eth0",
		"1:2:3:4:5:6:7:8:9",
		"2001:db8:::1",
		"::ffff:10.0.0.256",
		"0123456789012345678901234567890123456789012345678901234567890123/8",
	};
	struct cidr net, before;
	size_t i;

	memset(&before, 0x5a, sizeof(before));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		net = before;
		cr_expect_eq(cidr_parse(cases[i], &net), -1, "cidr_parse(\"%s\") accepted",
		             cases[i]);
		cr_expect_eq(memcmp(&net, &before, sizeof(net)), 0, "\"%s\": out was written",
		             cases[i]);
	}
	cr_expect_eq(cidr_parse(NULL, &net), -1);
}

Test(cidr, match_table)
{
	static const struct {
		const char *net;
		const char *peer;
		bool match;
	} cases[] = {
		/* IPv4 */
		{ "127.0.0.0/8", "127.0.0.1", true },
		{ "127.0.0.0/8", "127.255.255.255", true },
		{ "127.0.0.0/8", "128.0.0.1", false },
		{ "127.0.0.0/8", "126.255.255.255", false },
		{ "10.1.2.3", "10.1.2.3", true },
		{ "10.1.2.3/32", "10.1.2.3", true },
		{ "10.1.2.3/32", "10.1.2.4", false },
		{ "192.168.1.254/31", "192.168.1.255", true },
		{ "192.168.1.254/31", "192.168.1.253", false },
		{ "172.16.0.0/12", "172.31.255.255", true },
		{ "172.16.0.0/12", "172.32.0.0", false },
		{ "0.0.0.0/0", "1.2.3.4", true },
		{ "0.0.0.0/0", "255.255.255.255", true },
		{ "0.0.0.0/0", "::1", false },
		{ "0.0.0.0/0", "2001:db8::1", false },
		/* IPv4-mapped IPv6 peers (a dual-stack socket) match IPv4 networks */
		{ "127.0.0.0/8", "::ffff:127.0.0.1", true },
		{ "127.0.0.0/8", "::ffff:128.0.0.1", false },
		{ "10.0.0.0/8", "::ffff:10.20.30.40", true },
		{ "10.0.0.0/8", "::ffff:11.0.0.1", false },
		{ "10.1.2.3/32", "::ffff:10.1.2.3", true },
		{ "0.0.0.0/0", "::ffff:1.2.3.4", true },
		{ "10.0.0.0/8", "::10.0.0.1", false },        /* IPv4-compatible, not mapped */
		{ "10.0.0.0/8", "64:ff9b::10.0.0.1", false }, /* NAT64, not mapped */
		/* IPv6 */
		{ "::1/128", "::1", true },
		{ "::1/128", "::2", false },
		{ "::1/128", "::ffff:127.0.0.1", false },
		{ "::1/128", "127.0.0.1", false },
		{ "::/0", "::1", true },
		{ "::/0", "2001:db8::1", true },
		{ "::/0", "::ffff:1.2.3.4", true },
		{ "::/0", "1.2.3.4", false },
		{ "2001:db8::/32", "2001:db8:ffff:ffff::1", true },
		{ "2001:db8::/32", "2001:db9::1", false },
		{ "2001:db8::/33", "2001:db8:7fff::1", true },
		{ "2001:db8::/33", "2001:db8:8000::1", false },
		{ "2001:db8::/127", "2001:db8::1", true },
		{ "2001:db8::/127", "2001:db8::2", false },
		{ "::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true },
		{ "::ffff:10.0.0.0/104", "10.9.9.9", false },
	};
	struct sockaddr_storage ss;
	struct cidr net;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(cidr_parse(cases[i].net, &net), 0, "bad test network %s",
		             cases[i].net);
		test_cidr_peer(cases[i].peer, &ss);
		cr_expect_eq(cidr_match(&net, (struct sockaddr *)&ss), cases[i].match,
		             "%s in %s: expected %s", cases[i].peer, cases[i].net,
		             cases[i].match ? "match" : "no match");
	}
}

Test(cidr, match_other_families)
{
	struct sockaddr_un sun;
	struct cidr net;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	cr_assert_eq(cidr_parse("0.0.0.0/0", &net), 0);
	cr_expect_not(cidr_match(&net, (struct sockaddr *)&sun));
	cr_expect_not(cidr_match(&net, NULL));
	cr_assert_eq(cidr_parse("::/0", &net), 0);
	cr_expect_not(cidr_match(&net, (struct sockaddr *)&sun));
	cr_expect_not(cidr_match(NULL, (struct sockaddr *)&sun));
}

Test(cidr, match_any)
{
	static const struct {
		const char *peer;
		bool match;
	} cases[] = {
		{ "127.0.0.1", true },  { "::ffff:127.0.0.2", true }, { "::1", true },
		{ "10.200.0.1", true }, { "2001:db8::5", true },      { "11.0.0.1", false },
		{ "::2", false },       { "2001:db9::5", false },     { "::ffff:11.0.0.1", false },
		{ "192.0.2.1", false },
	};
	struct cidr nets[4];
	struct sockaddr_storage ss;
	size_t i;

	cr_assert_eq(cidr_parse("127.0.0.0/8", &nets[0]), 0);
	cr_assert_eq(cidr_parse("::1/128", &nets[1]), 0);
	cr_assert_eq(cidr_parse("10.0.0.0/8", &nets[2]), 0);
	cr_assert_eq(cidr_parse("2001:db8::/32", &nets[3]), 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		test_cidr_peer(cases[i].peer, &ss);
		cr_expect_eq(cidr_match_any(nets, 4, (struct sockaddr *)&ss), cases[i].match,
		             "%s: expected %s", cases[i].peer, cases[i].match ? "match" : "none");
	}

	/* No networks: nobody matches. */
	test_cidr_peer("127.0.0.1", &ss);
	cr_expect_not(cidr_match_any(NULL, 0, (struct sockaddr *)&ss));
	cr_expect_not(cidr_match_any(nets, 0, (struct sockaddr *)&ss));
}
