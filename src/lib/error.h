/*
 * error.h - the one error contract of libtroop.
 *
 * Every fallible function returns 0 on success or a negative troop_err.
 * A one-line, human-readable message describing the last error is kept per
 * thread (troop_error_set / troop_error_msg).  One table maps each code to
 * its stable wire code ("bad_request", ...) and to an HTTP status, so that
 * request handlers can turn any failure into the JSON error shape of
 * DESIGN.md section 6 without knowing where it came from.
 */
#ifndef TROOP_ERROR_H
#define TROOP_ERROR_H

#include <stddef.h>

typedef enum {
	TROOP_OK = 0,
	TROOP_ERR = -1,        /* internal error            500 internal_error */
	TROOP_ENOMEM = -2,     /* out of memory             500 internal_error */
	TROOP_EINVAL = -3,     /* malformed input           400 bad_request */
	TROOP_ETOOLARGE = -4,  /* over a size limit         413 too_large */
	TROOP_EAUTH = -5,      /* bad/missing signature     401 bad_signature */
	TROOP_ETICKET = -6,    /* bad/missing ticket        401 invalid_ticket */
	TROOP_EFORBIDDEN = -7, /* signed, but not allowed   403 forbidden */
	TROOP_ENOTFOUND = -8,  /* no such thing             404 not_found */
	TROOP_ENOMODEL = -9,   /* nobody serves the model   404 model_not_found */
	TROOP_ECREDITS = -10,  /* balance too low           402 insufficient_credits */
	TROOP_ECAPACITY = -11, /* everyone busy             503 no_capacity */
	TROOP_ERATE = -12,     /* too many requests         429 rate_limited */
	TROOP_ECONFLICT = -13, /* state conflict            409 conflict */
	TROOP_EGONE = -14,     /* expired                   410 expired */
	TROOP_EUNAVAIL = -15,  /* backend down (db, ...)    503 unavailable */
	TROOP_EUPSTREAM = -16, /* upstream failed           502 upstream_error */
	TROOP_ETIMEOUT = -17,  /* upstream timed out        504 timeout */
	TROOP_EIO = -18,       /* file or socket error      500 internal_error */
	TROOP_ENOKEY = -19,    /* ticket names unknown kid  401 invalid_ticket */
	TROOP_EMETHOD = -20,   /* wrong HTTP method         405 method_not_allowed */
	TROOP_ERR_MIN_ = -21
} troop_err;

/* Record `err` with a printf-style message for this thread; returns `err`
 * so that callers can write `return troop_error_set(TROOP_EINVAL, ...)`.
 * Thread-safe (the message buffer is thread-local). */
int troop_error_set(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread, or "" if none.  The pointer is
 * valid until the next troop_error_set on this thread. */
const char *troop_error_msg(void);

/* The code recorded with the last message on this thread (0 if none). */
int troop_error_last(void);

/* Forget the last error on this thread. */
void troop_error_clear(void);

/* Stable wire code for `err` ("bad_request", "bad_signature", ...).
 * Never NULL; unknown codes map to "internal_error". */
const char *troop_err_code(int err);

/* OpenAI-style error "type" for `err` ("invalid_request_error", ...). */
const char *troop_err_type(int err);

/* HTTP status for `err` (400, 401, ...); 200 for TROOP_OK. */
int troop_err_status(int err);

#endif
