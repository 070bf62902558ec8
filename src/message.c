/*
 * message.c: the in-flight message (envelope + body chain), its id and its trace header.
 *
 * Ids: 16 hex digits of (µs since the epoch << 8 | sequence). Sorting ids sorts by arrival;
 * the sequence byte and the "never go back" rule keep them unique in one process, and the
 * spool's O_EXCL create catches the impossible rest.
 */
#include "petrel/message.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "petrel/spool_record.h"

static uint64_t message_last_id;

void
message_id_new(char id[MESSAGE_ID_LEN + 1], const struct timeval *now)
{
	struct timeval tv;
	uint64_t v;

	if (now == NULL) {
		gettimeofday(&tv, NULL);
		now = &tv;
	}
	v = ((uint64_t)now->tv_sec * 1000000u + (uint64_t)now->tv_usec) << 8;
	if (v <= message_last_id)
		v = message_last_id + 1;
	message_last_id = v;
	snprintf(id, MESSAGE_ID_LEN + 1, "%016" PRIx64, v);
}

bool
message_id_valid(const char *id)
{
	size_t i;

	for (i = 0; i < MESSAGE_ID_LEN; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return id[MESSAGE_ID_LEN] == '\0';
}

struct message *
message_new(void)
{
	struct message *msg;

	if ((msg = calloc(1, sizeof(*msg))) == NULL)
		return NULL;
	if ((msg->body = evbuffer_new()) == NULL) {
		free(msg);
		return NULL;
	}
	gettimeofday(&msg->arrival, NULL);
	message_id_new(msg->id, &msg->arrival);
	msg->protocol = "ESMTP";
	msg->fd = -1;
	msg->spool_slot = -1;
	return msg;
}

void
message_free(struct message *msg)
{
	size_t i;

	if (msg == NULL)
		return;
	for (i = 0; i < msg->nrcpts; i++) {
		free(msg->rcpts[i].addr);
		free(msg->rcpts[i].orcpt);
	}
	free(msg->rcpts);
	free(msg->from);
	free(msg->helo);
	free(msg->envid);
	if (msg->body)
		evbuffer_free(msg->body);
	if (msg->data_mem)
		evbuffer_free(msg->data_mem);
	if (msg->fd >= 0)
		close(msg->fd);
	spool_sum_free(msg->spool_sum);
	free(msg);
}

static int
message_replace(char **field, const char *s, size_t len)
{
	char *copy;

	if ((copy = strndup(s, len)) == NULL)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

int
message_set_from(struct message *msg, const char *from)
{
	return message_replace(&msg->from, from, strlen(from));
}

int
message_set_helo(struct message *msg, const char *helo, size_t len)
{
	return message_replace(&msg->helo, helo, len);
}

int
message_set_envid(struct message *msg, const char *envid)
{
	return message_replace(&msg->envid, envid, strlen(envid));
}

int
message_add_rcpt(struct message *msg, const char *addr, unsigned notify, const char *orcpt)
{
	struct message_rcpt *r;

	if (msg->nrcpts == msg->rcpts_alloc) {
		size_t n = msg->rcpts_alloc ? msg->rcpts_alloc * 2 : 4;
		struct message_rcpt *grown = realloc(msg->rcpts, n * sizeof(*grown));
		if (grown == NULL)
			return -1;
		msg->rcpts = grown;
		msg->rcpts_alloc = n;
	}
	r = &msg->rcpts[msg->nrcpts];
	memset(r, 0, sizeof(*r));
	if ((r->addr = strdup(addr)) == NULL)
		return -1;
	if (orcpt != NULL && *orcpt != '\0' && (r->orcpt = strdup(orcpt)) == NULL) {
		free(r->addr);
		return -1;
	}
	r->notify = notify;
	msg->nrcpts++;
	return 0;
}

size_t
message_received_header(const struct message *msg, const char *by, const char *tls, char *buf,
                        size_t bufsize)
{
	char date[64];
	struct tm tm;
	time_t t = msg->arrival.tv_sec;
	int n;

	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (msg->nrcpts == 1)
		n = snprintf(buf, bufsize,
		             "Received: from %s ([%s])\r\n"
		             "\tby %s (petrel) with %s%s%s%s id %s\r\n"
		             "\tfor <%s>; %s\r\n",
		             msg->helo ? msg->helo : "unknown", msg->client_addr, by, msg->protocol,
		             tls ? " (using " : "", tls ? tls : "", tls ? ")" : "", msg->id,
		             msg->rcpts[0].addr, date);
	else
		n = snprintf(buf, bufsize,
		             "Received: from %s ([%s])\r\n"
		             "\tby %s (petrel) with %s%s%s%s id %s;\r\n"
		             "\t%s\r\n",
		             msg->helo ? msg->helo : "unknown", msg->client_addr, by, msg->protocol,
		             tls ? " (using " : "", tls ? tls : "", tls ? ")" : "", msg->id, date);
	if (n < 0 || (size_t)n >= bufsize)
		return 0;
	return (size_t)n;
}
