/*
 * notify.c: sd_notify(3) for petrel, without libsystemd (the protocol and what is sent when:
 * notify.h). One datagram per call on a fresh AF_UNIX socket; the address comes from
 * $NOTIFY_SOCKET each time, so nothing is cached and nothing needs freeing.
 *
 * Does not: watchdog keep-alives, file descriptor passing, or the vsock: addresses of newer
 * systemd versions (reported as EAFNOSUPPORT).
 */
#include "petrel/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "petrel/log.h"

#define NOTIFY_MSG_MAX  (NOTIFY_STATUS_MAX + 128) /* head lines + "STATUS=" + the text */
#define NOTIFY_NAME_LOG 160                       /* the socket name as quoted in a log line */

static int notify_address(const char *name, struct sockaddr_un *sun, socklen_t *len);
static int notify_with_status(const char *head, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

/* "/path" or "@abstract" → sockaddr_un and its length. 0, or -1 with errno set. */
static int
notify_address(const char *name, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(name);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (name[0] != '/' && name[0] != '@') {
		errno = EAFNOSUPPORT;
		return -1;
	}
	/* A path keeps its terminating NUL; an abstract name is exactly its bytes ('@' → NUL). */
	if ((name[0] == '/' && n >= sizeof(sun->sun_path)) ||
	    (name[0] == '@' && (n < 2 || n > sizeof(sun->sun_path)))) {
		errno = n < 2 ? EINVAL : ENAMETOOLONG;
		return -1;
	}
	memcpy(sun->sun_path, name, n);
	if (name[0] == '@') {
		sun->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

int
notify_send(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	char quoted[NOTIFY_NAME_LOG];
	struct sockaddr_un sun;
	struct msghdr mh;
	struct iovec iov;
	socklen_t len;
	int fd = -1, saved;

	if (name == NULL || *name == '\0')
		return 0;
	if (notify_address(name, &sun, &len) == -1)
		goto fail;
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	iov.iov_base = (void *)state;
	iov.iov_len = strlen(state);
	memset(&mh, 0, sizeof(mh));
	mh.msg_name = &sun;
	mh.msg_namelen = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	/* Never block the loop: a full receive queue loses this message (and says so). */
	if (sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		goto fail;
	close(fd);
	return 1;

fail:
	saved = errno;
	log_warn("notify failed socket=\"%s\" error=\"%s\"",
	         log_escape(quoted, sizeof(quoted), name, strlen(name)), strerror(saved));
	if (fd != -1)
		close(fd);
	errno = saved;
	return -1;
}

/* `head` (complete "KEY=VALUE\n" lines) followed by STATUS=<fmt…>. */
static int
notify_with_status(const char *head, const char *fmt, va_list ap)
{
	char status[NOTIFY_STATUS_MAX + 1], msg[NOTIFY_MSG_MAX];
	const char *name = getenv("NOTIFY_SOCKET");
	char *p;

	if (name == NULL || *name == '\0')
		return 0;
	vsnprintf(status, sizeof(status), fmt, ap);
	for (p = status; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
	snprintf(msg, sizeof(msg), "%sSTATUS=%s", head, status);
	return notify_send(msg);
}

int
notify_ready(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = notify_with_status("READY=1\n", fmt, ap);
	va_end(ap);
	return rc;
}

int
notify_reloading(const char *fmt, ...)
{
	char head[64];
	struct timespec ts;
	va_list ap;
	int rc;

	/* systemd compares it with the time it sent the reload signal (Type=notify-reload). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(head, sizeof(head), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	                 (unsigned long long)ts.tv_nsec / 1000);
	va_start(ap, fmt);
	rc = notify_with_status(head, fmt, ap);
	va_end(ap);
	return rc;
}

int
notify_stopping(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = notify_with_status("STOPPING=1\n", fmt, ap);
	va_end(ap);
	return rc;
}

int
notify_status(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = notify_with_status("", fmt, ap);
	va_end(ap);
	return rc;
}
