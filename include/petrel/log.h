/*
 * log.h: one line per event, "key=value" style, to stderr (journald collects it).
 *
 * Lines look like: "2026-11-23T20:51:09.123Z info 0000000000000001 smtp connected address=…".
 * Client bytes must go through log_escape() first; no password or AUTH payload is ever logged.
 */
#ifndef PETREL_LOG_H
#define PETREL_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_set_level(enum log_level level);

/* Send every line to syslog(3) (facility mail, ident "petrel", with the pid) instead of
 * stderr. The connection to the log socket is opened at once, before privileges are dropped. */
void log_use_syslog(void);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LEVEL_DEBUG))                                                  \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

/*
 * Copy client bytes into dst for logging: printable ASCII kept, everything else (CR, LF, NUL,
 * 8-bit, '"', '\\') as \xHH, cut at dstsize-1 with "..." when too long. Returns dst.
 */
char *log_escape(char *dst, size_t dstsize, const char *src, size_t len);

#endif
