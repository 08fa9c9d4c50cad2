/*
 * compat.h - the OpenAI Responses API and the Anthropic Messages API on
 * an engine that serves only chat completions: the request translated to
 * POST /v1/chat/completions, and the engine's reply (a JSON body, or an
 * event stream) translated back, event by event, into the events of the
 * API the app speaks.
 *
 * What is translated: text content (strings or text parts), the system
 * prompt (Responses "instructions" and "system"/"developer" messages;
 * Anthropic "system"), multi-turn input, max_output_tokens / max_tokens,
 * temperature, top_p, top_k, stop_sequences, images given as URLs or
 * base64 data (image_url parts), function tools (Responses "function"
 * tools, Anthropic client tools with an input_schema) and tool_choice,
 * and the tool-call history (Responses function_call /
 * function_call_output items, Anthropic tool_use / tool_result blocks)
 * as chat tool_calls and "tool" messages; Responses reasoning items are
 * dropped.  Built-in / server tools, files, documents, thinking blocks,
 * previous_response_id and structured output formats are refused with
 * TROOP_EINVAL and a message saying so (engines that serve the API
 * natively get them unchanged: see endpoints.h).
 *
 * Replies:
 *   Responses JSON: {"id":"resp_<id>","object":"response","status",
 *     "output":[{"type":"message",...,"content":[{"type":"output_text",
 *     "text"}]}],"usage":{"input_tokens","output_tokens","total_tokens"}}
 *   Responses stream: response.created, response.in_progress,
 *     response.output_item.added, response.content_part.added,
 *     response.output_text.delta..., response.output_text.done,
 *     response.content_part.done, response.output_item.done,
 *     response.completed (response.incomplete when cut at
 *     max_output_tokens), each "event: <type>" with a sequence_number.
 *   Messages JSON: {"id":"msg_<id>","type":"message","role":"assistant",
 *     "content":[{"type":"text","text"}],"stop_reason","usage":
 *     {"input_tokens","output_tokens"}}
 *   Messages stream: message_start, content_block_start,
 *     content_block_delta (text_delta)..., content_block_stop,
 *     message_delta (stop_reason, usage), message_stop.
 *   Tool calls of the reply (message.tool_calls, streamed
 *   delta.tool_calls) become Responses "function_call" output items
 *   (response.function_call_arguments.delta / .done) and Anthropic
 *   "tool_use" blocks (input_json_delta; stop_reason "tool_use"); the text
 *   block comes first when there is text.
 *   An error event of the engine's ({"error":...} in the stream) becomes
 *   the API's own error event (api_kind.h) and ends the translation.
 *
 * Pure functions over buffers; a compat_reply is not thread-safe (one per
 * job).  Memory is bounded: one event (COMPAT_MAX_EVENT), the answer's
 * text and, for a JSON reply, the body (COMPAT_MAX_BODY).
 */
#ifndef TROOP_WORKER_COMPAT_H
#define TROOP_WORKER_COMPAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_kind.h"
#include "dynbuf.h"

#define COMPAT_MAX_EVENT (1024u * 1024)
#define COMPAT_MAX_BODY (64u * 1024 * 1024)

/* Translate a request body of `kind` (API_RESPONSES or API_MESSAGES) into
 * a chat completions body: *out is a new reference.  A streamed request
 * asks for usage (stream_options.include_usage).  Returns 0, TROOP_EINVAL
 * (what cannot be translated, message set) or TROOP_ENOMEM. */
int compat_request(api_kind kind, const json_t *in, json_t **out);

typedef struct compat_reply compat_reply;

/* A translator for one chat completions reply into `kind`: an event
 * stream when event_stream, else one JSON body.  `id` makes the ids of
 * the reply ("resp_<id>", "msg_<id>"), `model` is the model it names,
 * `created` the unix time it says.  Returns 0 or TROOP_ENOMEM. */
int compat_reply_new(compat_reply **out, api_kind kind, bool event_stream, const char *id,
    const char *model, int64_t created);

/* Feed reply bytes in any split; what the app gets is appended to out.
 * Returns 0, or TROOP_ENOMEM / TROOP_ETOOLARGE (out may hold part). */
int compat_reply_feed(compat_reply *c, const char *data, size_t len, dynbuf *out);

/* The reply ended (the engine's body is complete): append what closes
 * it (the last events; the whole JSON body).  Returns as feed. */
int compat_reply_finish(compat_reply *c, dynbuf *out);

/* A reviser for the reply of an engine that serves `kind` natively: the
 * reply passes through with only these changes, so that the official
 * SDKs can read it and the engine's own model name (llama.cpp: the
 * model's file path) does not leak:
 *   - "model" of the reply (of "response" / "message" in stream events)
 *     becomes `model`, the advertised name;
 *   - Responses stream events get what llama.cpp leaves out and the
 *     SDKs' stream helpers need: "sequence_number", "output_index" and
 *     "content_index" (counted from the output_item.added and
 *     content_part.added events), and "output":[] in the Response of
 *     response.created / response.in_progress.
 * Events that are not JSON objects, and bodies that are not JSON, pass
 * unchanged.  Returns 0 or TROOP_ENOMEM. */
int compat_native_new(compat_reply **out, api_kind kind, bool event_stream, const char *model);

/* The next Responses sequence_number (for an error event after the
 * last one translated). */
long compat_reply_seq(const compat_reply *c);

void compat_reply_free(compat_reply *c);

/* ---- per API (compat_responses.c, compat_messages.c), for compat.c ---- */

#define COMPAT_MAX_TOOLS 64

/* A tool call of the reply. */
typedef struct {
	char id[128];          /* the engine's call id, or one made up */
	char name[256];
	const char *args;      /* the arguments (JSON text) so far */
	size_t args_len;
	int out_index;         /* its place among the reply's output blocks */
} compat_tool;

typedef struct {
	const char *id;        /* the compat_reply's id */
	const char *model;
	int64_t created;
	const char *text;      /* the answer's text so far */
	size_t text_len;
	int text_index;        /* the text block's place, -1: none (yet) */
	const compat_tool *tools;
	size_t ntools;
	const char *finish;    /* chat finish_reason, "" none yet */
	int64_t in_tok, out_tok;
} compat_state;

int compat_responses_request(const json_t *in, json_t **out);
int compat_messages_request(const json_t *in, json_t **out);

/* Stream events: emit(arg, event name, data) takes the data reference
 * and returns 0 or a troop_err. */
typedef int (*compat_emit_fn)(void *arg, const char *event, json_t *data);

/* The events of one API, in stream order: start; then per output block
 * (the text, each tool call) its start, deltas and end; then end.  body
 * is the whole JSON reply (new reference, or NULL). */
typedef struct {
	int (*start)(const compat_state *s, compat_emit_fn emit, void *arg);
	int (*text_start)(const compat_state *s, compat_emit_fn emit, void *arg);
	int (*text_delta)(const compat_state *s, const char *delta, compat_emit_fn emit,
	    void *arg);
	int (*text_end)(const compat_state *s, compat_emit_fn emit, void *arg);
	int (*tool_start)(const compat_state *s, const compat_tool *t, compat_emit_fn emit,
	    void *arg);
	int (*tool_delta)(const compat_state *s, const compat_tool *t, const char *delta,
	    compat_emit_fn emit, void *arg);
	int (*tool_end)(const compat_state *s, const compat_tool *t, compat_emit_fn emit,
	    void *arg);
	int (*end)(const compat_state *s, compat_emit_fn emit, void *arg);
	json_t *(*body)(const compat_state *s);
} compat_api_ops;

extern const compat_api_ops compat_responses_ops;
extern const compat_api_ops compat_messages_ops;

#endif
