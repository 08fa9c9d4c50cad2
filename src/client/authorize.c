/*
 * authorize.c - /authorize bodies, reply classification and the failover
 * rule shared by troop up and troop chat (authorize.h).
 */
#include "authorize.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "json.h"

void client_auth_init(client_auth *a, const char *model, int64_t max_seconds, int tries)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->req.model, sizeof(a->req.model), "%s", model ? model : "");
	a->req.max_seconds = max_seconds > 0 ? max_seconds : 0;
	a->tries = tries > 0 ? tries : CLIENT_AUTH_TRIES;
}

char *client_auth_body(client_auth *a, size_t *len)
{
	json_t *b = proto_authorize_req_encode(&a->req);
	char *text;

	if (b && a->delivery_report)
		json_object_set_new(b, "delivery_report", json_true());
	text = b ? json_dump_compact(b, len) : NULL;

	json_decref(b);
	a->attempt++;
	memset(&a->ticket, 0, sizeof(a->ticket));
	return text;
}

client_auth_result client_auth_reply(client_auth *a, int status, const json_t *body,
    proto_error *err)
{
	proto_error e;
	bool has_error;

	memset(&e, 0, sizeof(e));
	has_error = body && proto_error_decode(&e, body) == 0 && e.message[0];
	if (err)
		*err = e;
	if (status == 200) {
		if (proto_authorize_reply_decode(&a->ticket, body) == 0)
			return CLIENT_AUTH_OK;
		if (err)
			snprintf(err->message, sizeof(err->message), "%s", troop_error_msg());
		return CLIENT_AUTH_BAD_REPLY;
	}
	if (status == 402 || strcmp(e.code, "insufficient_credits") == 0)
		return CLIENT_AUTH_NO_CREDITS;
	if (status == 503 && a->why[0])
		return CLIENT_AUTH_EXHAUSTED;
	if (status == 401)
		return CLIENT_AUTH_BAD_SIGNATURE;
	if (has_error)
		return CLIENT_AUTH_ERROR;
	if (err)
		snprintf(err->message, sizeof(err->message), "HTTP %d and no error body", status);
	return CLIENT_AUTH_BAD_REPLY;
}

bool client_auth_worker_failed(int status, int engine_status)
{
	if (engine_status)
		return engine_status == 503 || engine_status == 429;
	/* 401: "not my ticket": the address belongs to another node */
	return status >= 500 || status == 429 || status == 401;
}

bool client_auth_failover(client_auth *a, const char *why)
{
	if (why && why != a->why)
		snprintf(a->why, sizeof(a->why), "%s", why);
	if (a->ticket.node_id[0])
		(void)proto_authorize_req_exclude(&a->req, a->ticket.node_id);
	return a->attempt < a->tries;
}
