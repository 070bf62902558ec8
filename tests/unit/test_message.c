/*
 * test_message.c: message ids (unique, sortable, well-formed), envelopes, the trace header.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "petrel/message.h"

Test(message, ids_increase_even_if_clock_steps_back)
{
	char a[MESSAGE_ID_LEN + 1], b[MESSAGE_ID_LEN + 1], c[MESSAGE_ID_LEN + 1];
	struct timeval t1 = { 1763932800, 500000 }, t0 = { 1763932700, 0 };

	message_id_new(a, &t1);
	message_id_new(b, &t1);
	message_id_new(c, &t0);
	cr_assert(message_id_valid(a) && message_id_valid(b) && message_id_valid(c));
	cr_assert_lt(strcmp(a, b), 0);
	cr_assert_lt(strcmp(b, c), 0);
}

Test(message, many_ids_unique_and_sorted)
{
	char prev[MESSAGE_ID_LEN + 1] = "", cur[MESSAGE_ID_LEN + 1];
	int i;

	for (i = 0; i < 100000; i++) {
		message_id_new(cur, NULL);
		cr_assert_lt(strcmp(prev, cur), 0, "id %d: %s after %s", i, cur, prev);
		memcpy(prev, cur, sizeof(cur));
	}
}

Test(message, id_validation)
{
	cr_assert(message_id_valid("0123456789abcdef"));
	cr_assert_not(message_id_valid("0123456789ABCDEF"));
	cr_assert_not(message_id_valid("0123456789abcde"));
	cr_assert_not(message_id_valid("0123456789abcdef0"));
	cr_assert_not(message_id_valid("../../etc/passwd"));
}

Test(message, envelope_and_received_header)
{
	struct message *m = message_new();
	char buf[1024];
	size_t n;

	cr_assert_not_null(m);
	cr_assert_eq(message_set_from(m, "a@example.org"), 0);
	cr_assert_eq(message_set_helo(m, "client.example.org", 18), 0);
	cr_assert_eq(message_add_rcpt(m, "u@localhost", 0, NULL), 0);
	snprintf(m->client_addr, sizeof(m->client_addr), "127.0.0.1");
	n = message_received_header(m, "mx.example.org", NULL, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert(strncmp(buf, "Received: from client.example.org ([127.0.0.1])\r\n", 49) == 0,
	          "%s", buf);
	cr_assert(strstr(buf, "by mx.example.org (petrel) with ESMTP id ") != NULL);
	cr_assert(strstr(buf, m->id) != NULL);
	cr_assert(strstr(buf, "for <u@localhost>;") != NULL);
	cr_assert(strcmp(buf + n - 2, "\r\n") == 0);
	/* Two recipients: no "for". */
	cr_assert_eq(message_add_rcpt(m, "v@localhost", 0, "rfc822;v@localhost"), 0);
	n = message_received_header(m, "mx.example.org", NULL, buf, sizeof(buf));
	cr_assert(strstr(buf, "for <") == NULL);
	cr_assert_str_eq(m->rcpts[1].orcpt, "rfc822;v@localhost");
	cr_assert_eq(message_received_header(m, "mx.example.org", NULL, buf, 10), 0);
	message_free(m);
}

Test(message, many_recipients)
{
	struct message *m = message_new();
	char addr[64];
	int i;

	for (i = 0; i < 1000; i++) {
		snprintf(addr, sizeof(addr), "user%d@localhost", i);
		cr_assert_eq(message_add_rcpt(m, addr, 0, NULL), 0);
	}
	cr_assert_eq(m->nrcpts, 1000);
	cr_assert_str_eq(m->rcpts[999].addr, "user999@localhost");
	message_free(m);
	message_free(NULL);
}
