/*
 * notify.h: the systemd readiness protocol (sd_notify(3)) without libsystemd.
 *
 * Each call sends one datagram of "KEY=VALUE\n" lines to the AF_UNIX SOCK_DGRAM socket named by
 * $NOTIFY_SOCKET: an absolute path ("/run/systemd/notify") or, with a leading '@', a name in the
 * abstract namespace. Without NOTIFY_SOCKET (not started by systemd with Type=notify) every
 * call does nothing and returns 0. A failure to send is logged once per call (warn) and
 * otherwise ignored: notification never stops petrel.
 *
 * What petrel sends, and when (main.c):
 *   READY=1                 listeners bound, spool recovered: the loop is about to run
 *   RELOADING=1             SIGHUP received (with MONOTONIC_USEC, as systemd >= 253 wants for
 *                           Type=notify-reload; Type=notify takes it as well), then READY=1
 *   STOPPING=1              SIGTERM or SIGINT: graceful shutdown begins
 * each with a STATUS= line, shown by `systemctl status`.
 *
 * The socket is opened for each message and closed again (rare events, no state to keep), so
 * the calls are safe before and after the privilege drop; systemd checks the sender by PID.
 */
#ifndef PETREL_NOTIFY_H
#define PETREL_NOTIFY_H

#define NOTIFY_STATUS_MAX 256 /* bytes of STATUS= text kept; the rest is cut */

/*
 * Send `state` (one or more "KEY=VALUE" lines, '\n'-separated) as it is. Returns 1 if sent, 0
 * if NOTIFY_SOCKET is unset or empty, -1 on failure (errno set; EAFNOSUPPORT for an address
 * that is neither absolute nor abstract, ENAMETOOLONG if it does not fit a sockaddr_un).
 */
int notify_send(const char *state);

/* READY=1 and STATUS=<fmt…>. Returns as notify_send(). */
int notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1, MONOTONIC_USEC=<CLOCK_MONOTONIC now> and STATUS=<fmt…>; READY=1 must follow
 * when the reload is done (or failed and the old state is kept). */
int notify_reloading(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1 and STATUS=<fmt…>. */
int notify_stopping(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STATUS=<fmt…> alone. A newline in the text is sent as a space (it would end the line). */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
