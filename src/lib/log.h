/*
 * log.h - leveled, one-line, key=value logging to stderr.
 *
 * A line looks like
 *   2026-11-24T21:30:00.123Z INFO request method=GET path=/health status=200 us=45
 * The message part is printf-formatted by the caller as space-separated
 * key=value pairs.  Before the line is written, the logger redacts secrets:
 * the value of any key that names a secret (authorization, signature, token,
 * ticket, secret, password, private, key, api_key, seed, sk) and any value
 * that looks like a compact JWS ("eyJ...x.y") or a "Bearer" credential is
 * replaced by "[redacted]".  Callers should still never pass key material.
 *
 * All functions are thread-safe; each line is written with one write(2).
 */
#ifndef TROOP_LOG_H
#define TROOP_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level;

/* Set the minimum level written (default LOG_INFO, or $TROOP_LOG_LEVEL
 * read by log_init). */
void log_set_level(log_level level);
log_level log_get_level(void);

/* Parse "debug", "info", "warn", "error", "off" into *out.
 * Returns 0, or TROOP_EINVAL (message set) for anything else. */
int log_parse_level(log_level *out, const char *s);

/* Write lines to file descriptor `fd` (default 2).  Not for use while other
 * threads log. */
void log_set_fd(int fd);

/* Read TROOP_LOG_LEVEL from the environment if set. */
void log_init(void);

/* Write one line: `event` is a short word ("request", "heartbeat"), `fmt`
 * formats the key=value fields (may be NULL).  Secrets are redacted as
 * described above. */
void log_write(log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Redact the formatted key=value string `in` into `out` (size `outlen`,
 * always NUL-terminated).  Exposed for tests. */
void log_redact(char *out, size_t outlen, const char *in);

#define log_debug(ev, ...) do { if (log_get_level() <= LOG_DEBUG) \
	log_write(LOG_DEBUG, ev, __VA_ARGS__); } while (0)
#define log_info(ev, ...) log_write(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_write(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_write(LOG_ERROR, ev, __VA_ARGS__)

#endif
