/* test_scheduler.c: the priority rule (class × 4 + size bonus). The rest of the scheduler is
 * exercised end to end by tests/integration/test_delivery*.py. */
#include <criterion/criterion.h>
#include <string.h>

#include "petrel/config.h"
#include "petrel/message.h"
#include "petrel/scheduler.h"

static struct petrel_config *
load(const char *text)
{
	struct petrel_config *cfg = NULL;
	char *err = NULL;

	cr_assert_eq(config_load_string("t.yaml", text, strlen(text), &cfg, &err), 0, "%s",
	             err ? err : "");
	return cfg;
}

Test(scheduler, priority_class_then_size)
{
	struct petrel_config *cfg =
	        load("queue:\n  priorities:\n"
	             "    - { sender_domain: vip.example, priority: high }\n"
	             "    - { recipient_domain: bulk.example, priority: low }\n");
	struct message *m = message_new();

	message_set_from(m, "boss@vip.example");
	message_add_rcpt(m, "a@elsewhere.example", 0, NULL);
	m->data_len = 1000;
	cr_assert_eq(scheduler_priority(cfg, m), 10 * 4 + 2);
	m->data_len = 200 * 1024;
	cr_assert_eq(scheduler_priority(cfg, m), 10 * 4 + 1);
	m->data_len = 5 * 1024 * 1024;
	cr_assert_eq(scheduler_priority(cfg, m), 10 * 4 + 0);
	message_set_from(m, "someone@else.example");
	cr_assert_eq(scheduler_priority(cfg, m), 0);
	message_add_rcpt(m, "list@bulk.example", 0, NULL);
	cr_assert_eq(scheduler_priority(cfg, m), -10 * 4);
	/* any class beats any size: a big high message before a small normal one */
	cr_assert_gt(10 * 4 + 0, 0 * 4 + 2);
	message_free(m);
	config_free(cfg);
}

Test(scheduler, null_sender_has_default_class)
{
	struct petrel_config *cfg = load("");
	struct message *m = message_new();

	message_set_from(m, "");
	message_add_rcpt(m, "a@b.example", 0, NULL);
	m->data_len = 10;
	cr_assert_eq(scheduler_priority(cfg, m), 2);
	message_free(m);
	config_free(cfg);
}
