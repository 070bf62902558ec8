/* test_conn_table.c: per-IP connection counting. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "petrel/net/conn_table.h"

static struct sockaddr_storage
addr(const char *s)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(s, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, s, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, s, &a->sin_addr), 1);
	}
	return ss;
}

Test(conn_table, limit_per_address)
{
	struct conn_table *t = conn_table_new();
	struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");

	cr_assert(conn_table_acquire(t, (struct sockaddr *)&a, 2));
	cr_assert(conn_table_acquire(t, (struct sockaddr *)&a, 2));
	cr_assert_not(conn_table_acquire(t, (struct sockaddr *)&a, 2));
	cr_assert(conn_table_acquire(t, (struct sockaddr *)&b, 2));
	cr_assert_eq(conn_table_count(t, (struct sockaddr *)&a), 2);
	conn_table_release(t, (struct sockaddr *)&a);
	cr_assert(conn_table_acquire(t, (struct sockaddr *)&a, 2));
	conn_table_release(t, (struct sockaddr *)&a);
	conn_table_release(t, (struct sockaddr *)&a);
	cr_assert_eq(conn_table_count(t, (struct sockaddr *)&a), 0);
	conn_table_free(t);
}

Test(conn_table, mapped_v6_is_the_v4_address)
{
	struct conn_table *t = conn_table_new();
	struct sockaddr_storage a = addr("192.0.2.7"), m = addr("::ffff:192.0.2.7");

	cr_assert(conn_table_acquire(t, (struct sockaddr *)&a, 1));
	cr_assert_not(conn_table_acquire(t, (struct sockaddr *)&m, 1));
	conn_table_free(t);
}

Test(conn_table, zero_limit_refuses_and_many_addresses)
{
	struct conn_table *t = conn_table_new();
	struct sockaddr_storage a = addr("2001:db8::1");
	char buf[64];
	int i;

	cr_assert_not(conn_table_acquire(t, (struct sockaddr *)&a, 0));
	for (i = 0; i < 20000; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		sin.sin_addr.s_addr = htonl(0x0a000000u + (unsigned)i);
		cr_assert(conn_table_acquire(t, (struct sockaddr *)&sin, 1));
	}
	for (i = 0; i < 20000; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		sin.sin_addr.s_addr = htonl(0x0a000000u + (unsigned)i);
		cr_assert_eq(conn_table_count(t, (struct sockaddr *)&sin), 1);
		conn_table_release(t, (struct sockaddr *)&sin);
	}
	(void)buf;
	conn_table_free(t);
}
