/*
 * error.c - per-thread last-error message and the code -> wire code /
 * HTTP status table.  See error.h.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[512];
static _Thread_local int err_last;

struct err_row {
	int err;
	int status;
	const char *code;
	const char *type;
};

static const struct err_row err_table[] = {
	{ TROOP_OK, 200, "ok", "ok" },
	{ TROOP_ERR, 500, "internal_error", "server_error" },
	{ TROOP_ENOMEM, 500, "internal_error", "server_error" },
	{ TROOP_EINVAL, 400, "bad_request", "invalid_request_error" },
	{ TROOP_ETOOLARGE, 413, "too_large", "invalid_request_error" },
	{ TROOP_EAUTH, 401, "bad_signature", "authentication_error" },
	{ TROOP_ETICKET, 401, "invalid_ticket", "authentication_error" },
	{ TROOP_EFORBIDDEN, 403, "forbidden", "permission_error" },
	{ TROOP_ENOTFOUND, 404, "not_found", "invalid_request_error" },
	{ TROOP_ENOMODEL, 404, "model_not_found", "invalid_request_error" },
	{ TROOP_ECREDITS, 402, "insufficient_credits", "insufficient_quota" },
	{ TROOP_ECAPACITY, 503, "no_capacity", "server_error" },
	{ TROOP_ERATE, 429, "rate_limited", "rate_limit_error" },
	{ TROOP_ECONFLICT, 409, "conflict", "invalid_request_error" },
	{ TROOP_EGONE, 410, "expired", "invalid_request_error" },
	{ TROOP_EUNAVAIL, 503, "unavailable", "server_error" },
	{ TROOP_EUPSTREAM, 502, "upstream_error", "server_error" },
	{ TROOP_ETIMEOUT, 504, "timeout", "server_error" },
	{ TROOP_EIO, 500, "internal_error", "server_error" },
	{ TROOP_ENOKEY, 401, "invalid_ticket", "authentication_error" },
	{ TROOP_EMETHOD, 405, "method_not_allowed", "invalid_request_error" },
};

static const struct err_row *err_row(int err)
{
	for (size_t i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++)
		if (err_table[i].err == err)
			return &err_table[i];
	return &err_table[1];
}

int troop_error_set(int err, const char *fmt, ...)
{
	char msg[sizeof(err_msg)];
	va_list ap;

	/* formatted aside first: callers wrap the message already set
	 * ("challenge: %s", troop_error_msg()), and vsnprintf must not read
	 * the buffer it writes */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(err_msg, msg, sizeof(err_msg));
	err_last = err;
	return err;
}

const char *troop_error_msg(void)
{
	return err_msg;
}

int troop_error_last(void)
{
	return err_last;
}

void troop_error_clear(void)
{
	err_msg[0] = '\0';
	err_last = 0;
}

const char *troop_err_code(int err)
{
	return err_row(err)->code;
}

const char *troop_err_type(int err)
{
	return err_row(err)->type;
}

int troop_err_status(int err)
{
	return err_row(err)->status;
}
