/*
 * api_kind.c - request paths to APIs, and error bodies and stream error
 * events in each API's shape (api_kind.h).
 */
#include "api_kind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"

api_kind api_kind_of_path(const char *path)
{
	if (!path)
		return API_OPENAI;
	if (strcmp(path, "/v1/responses") == 0)
		return API_RESPONSES;
	if (strcmp(path, "/v1/messages") == 0 || strcmp(path, "/v1/messages/count_tokens") == 0)
		return API_MESSAGES;
	return API_OPENAI;
}

const char *api_anthropic_type(int status)
{
	switch (status) {
	case 400: case 405: case 409: case 415: case 422: return "invalid_request_error";
	case 401: return "authentication_error";
	case 402: return "billing_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 429: return "rate_limit_error";
	case 503: case 529: return "overloaded_error";
	case 504: return "timeout_error";
	default: return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
	}
}

json_t *api_error_body(api_kind kind, int status, const char *type, const char *code,
    const char *message)
{
	if (!message)
		message = "";
	if (kind == API_MESSAGES)
		return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
		    api_anthropic_type(status), "message", message);
	return json_pack("{s:{s:s, s:s, s:s}}", "error", "message", message, "type",
	    type ? type : "server_error", "code", code ? code : "error");
}

int api_error_convert(api_kind kind, int status, const char *body, size_t len,
    json_t **out)
{
	json_t *in = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *e = json_object_get(in, "error");
	const char *msg = NULL, *type = NULL, *code = NULL;
	char text[512];

	*out = NULL;
	if (json_is_object(e)) {
		msg = json_string_value(json_object_get(e, "message"));
		type = json_string_value(json_object_get(e, "type"));
		code = json_string_value(json_object_get(e, "code"));
	} else if (json_is_string(e)) {
		msg = json_string_value(e);
	}
	if (!msg) {
		/* not an error body we know: its text is the message */
		size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;

		if (body)
			memcpy(text, body, n);
		text[body ? n : 0] = '\0';
		msg = text[0] ? text : "error";
	}
	if (!code && type && kind != API_MESSAGES)
		code = type;
	*out = api_error_body(kind, status, type ? type : status < 500 ?
	    "invalid_request_error" : "server_error", code ? code : status < 500 ?
	    "bad_request" : "upstream_error", msg);
	json_decref(in);
	return *out ? 0 : troop_error_set(TROOP_ENOMEM, "out of memory for an error body");
}

char *api_error_event(api_kind kind, int err, const char *msg, long seq)
{
	json_t *body;
	char *text, *ev = NULL;
	size_t n;

	if (!err)
		err = TROOP_EUPSTREAM;
	if (!msg)
		msg = "";
	switch (kind) {
	case API_MESSAGES:
		body = api_error_body(kind, troop_err_status(err), NULL, NULL, msg);
		break;
	case API_RESPONSES: {
		json_t *e = json_error_body(err, msg);

		body = json_pack("{s:s, s:s, s:s, s:n, s:I, s:O}", "type", "error", "code",
		    troop_err_code(err), "message", msg, "param", "sequence_number",
		    (json_int_t)seq, "error", json_object_get(e, "error"));
		json_decref(e);
		break;
	}
	default:
		body = json_error_body(err, msg);
		break;
	}
	text = body ? json_dump_compact(body, &n) : NULL;
	json_decref(body);
	if (!text)
		return NULL;
	ev = malloc(n + 32);
	if (ev)
		snprintf(ev, n + 32, "%s%s\n\n", kind == API_OPENAI ? "data: " : "event: error\ndata: ",
		    text);
	free(text);
	return ev;
}
