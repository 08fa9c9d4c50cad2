/*
 * api_kind.h - which public API an inference path speaks, and errors in
 * that API's own shape.
 *
 * The troop serves three request languages on the same proxies:
 *   - OpenAI (chat completions, completions, embeddings, /tokenize):
 *     errors {"error":{"message","type","code"}};
 *   - the OpenAI Responses API (POST /v1/responses): the same error shape
 *     for replies; in a stream, an "event: error" whose data is
 *     {"type":"error","code","message","param":null,"sequence_number",
 *      "error":{...the OpenAI error...}} (the OpenAI SDKs raise an event
 *     with an "error" member as an APIError);
 *   - the Anthropic Messages API (POST /v1/messages,
 *     /v1/messages/count_tokens): errors
 *     {"type":"error","error":{"type","message"}} with the Anthropic error
 *     types (invalid_request_error, authentication_error,
 *     billing_error, permission_error, not_found_error, rate_limit_error,
 *     api_error, timeout_error, overloaded_error), and
 *     in a stream "event: error" with that body.
 *
 * All functions are pure and thread-safe.
 */
#ifndef TROOP_API_KIND_H
#define TROOP_API_KIND_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
	API_OPENAI = 0,    /* /v1/chat/completions, /v1/completions, ... */
	API_RESPONSES,     /* /v1/responses */
	API_MESSAGES,      /* /v1/messages, /v1/messages/count_tokens */
} api_kind;

/* The API a request path speaks (anything unknown is API_OPENAI). */
api_kind api_kind_of_path(const char *path);

/* The Anthropic error type for an HTTP status (400 invalid_request_error,
 * 401 authentication_error, 402 billing_error, 403 permission_error, 404
 * not_found_error, 429 rate_limit_error, 503/529
 * overloaded_error, 504 timeout_error, others api_error).  Static
 * string. */
const char *api_anthropic_type(int status);

/* An error body in the shape of `kind` for an answer with HTTP `status`:
 * `type` and `code` are the OpenAI type and code (used by API_OPENAI and
 * API_RESPONSES; API_MESSAGES takes its type from the status).  New
 * reference, NULL when out of memory. */
json_t *api_error_body(api_kind kind, int status, const char *type, const char *code,
    const char *message);

/* Convert an error reply `body` (len bytes; OpenAI shape, or already the
 * Anthropic shape, or anything else, which becomes the message) into the
 * shape of `kind`.  *out is a new reference.  Returns 0 or TROOP_ENOMEM. */
int api_error_convert(api_kind kind, int status, const char *body, size_t len,
    json_t **out);

/* The text of one SSE event that reports an error mid-stream, in the
 * shape of `kind` (API_OPENAI: "data: {error}\n\n", no event name), for
 * the troop_err `err` and message `msg`; `seq` is the Responses
 * sequence_number.  Malloc'd, or NULL when out of memory. */
char *api_error_event(api_kind kind, int err, const char *msg, long seq);

#endif
