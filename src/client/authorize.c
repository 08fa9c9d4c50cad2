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

/* Whether `v` (any part of a request) holds an image content part,
 * looking at most `depth` levels down. */
static bool has_image(const json_t *v, int depth)
{
	const char *k;
	json_t *x;
	size_t i;

	if (depth <= 0)
		return false;
	if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (has_image(x, depth - 1))
				return true;
		return false;
	}
	if (!json_is_object(v))
		return false;
	k = json_string_value(json_object_get(v, "type"));
	if (k && (strcmp(k, "image_url") == 0 || strcmp(k, "input_image") == 0 ||
	    strcmp(k, "image") == 0))
		return true;
	json_object_foreach((json_t *)v, k, x)
		if ((json_is_array(x) || json_is_object(x)) && has_image(x, depth - 1))
			return true;
	return false;
}

/* The JSON size of field `name` of `body` in bytes, 0 when absent. */
static int64_t field_bytes(const json_t *body, const char *name)
{
	const json_t *v = json_object_get(body, name);
	size_t n;

	if (!v)
		return 0;
	if (json_is_string(v))
		return (int64_t)json_string_length(v);
	n = json_dumpb(v, NULL, 0, JSON_COMPACT);
	return (int64_t)n;
}

void client_auth_require(client_auth *a, const json_t *body)
{
	static const char *const prompt[] = { "messages", "prompt", "input", "system",
		"instructions", "tools", "functions" };
	static const char *const limits[] = { "max_tokens", "max_completion_tokens",
		"max_output_tokens" };
	proto_require *rq = &a->req.require;
	const json_t *tools = json_object_get(body, "tools");
	int64_t bytes = 0, out = 0;

	memset(rq, 0, sizeof(*rq));
	if (!json_is_object(body))
		return;
	if ((json_is_array(tools) && json_array_size(tools) > 0) ||
	    (json_is_array(json_object_get(body, "functions")) &&
	    json_array_size(json_object_get(body, "functions")) > 0))
		rq->caps |= PROTO_CAP_TOOLS;
	if (has_image(json_object_get(body, "messages"), 8) ||
	    has_image(json_object_get(body, "input"), 8))
		rq->caps |= PROTO_CAP_VISION;
	for (size_t i = 0; i < sizeof(prompt) / sizeof(prompt[0]); i++)
		bytes += field_bytes(body, prompt[i]);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]) && out == 0; i++) {
		const json_t *v = json_object_get(body, limits[i]);
		if (json_is_integer(v) && json_integer_value(v) > 0)
			out = json_integer_value(v);
	}
	if (out > PROTO_CONTEXT_MAX)
		out = PROTO_CONTEXT_MAX;
	rq->context = bytes / 4 + out;
	if (rq->context > PROTO_CONTEXT_MAX)
		rq->context = PROTO_CONTEXT_MAX;
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
