/*
 * compat_responses.c - the OpenAI Responses API over chat completions
 * (compat.h): the request's instructions and input as chat messages, and
 * the Response object and its stream events built from the chat reply.
 */
#include "compat.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

/* ---- request -------------------------------------------------------------------- */

/* One content part of an input message as a chat content part (new
 * reference), or NULL with the error set. */
static json_t *part_of(const json_t *part)
{
	const char *type = json_string_value(json_object_get(part, "type"));
	const json_t *text = json_object_get(part, "text");

	if (!type) {
		troop_error_set(TROOP_EINVAL, "an input content part has no \"type\"");
		return NULL;
	}
	if (strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 ||
	    strcmp(type, "text") == 0) {
		if (!json_is_string(text)) {
			troop_error_set(TROOP_EINVAL, "an %s part needs a string \"text\"", type);
			return NULL;
		}
		return json_pack("{s:s, s:O}", "type", "text", "text", text);
	}
	if (strcmp(type, "input_image") == 0) {
		const json_t *url = json_object_get(part, "image_url");

		if (!json_is_string(url)) {
			troop_error_set(TROOP_EINVAL, "input_image parts are translated only with an "
			    "\"image_url\" (a URL or data: URL), not file_id");
			return NULL;
		}
		return json_pack("{s:s, s:{s:O}}", "type", "image_url", "image_url", "url", url);
	}
	troop_error_set(TROOP_EINVAL, "input content of type '%.64s' cannot be translated to chat "
	    "completions for this engine (it does not serve /v1/responses natively)", type);
	return NULL;
}

/* A content value (string or array of parts) as chat content. */
static json_t *content_of(const json_t *content)
{
	json_t *parts;
	size_t i;
	const json_t *p;

	if (json_is_string(content))
		return json_copy((json_t *)content);
	if (!json_is_array(content)) {
		troop_error_set(TROOP_EINVAL, "a message's \"content\" must be a string or an array "
		    "of content parts");
		return NULL;
	}
	parts = json_array();
	json_array_foreach(content, i, p) {
		json_t *c = part_of(p);

		if (!c || json_array_append_new(parts, c) != 0) {
			json_decref(parts);
			return NULL;
		}
	}
	return parts;
}

static int add_message(json_t *msgs, const char *role, json_t *content)
{
	if (!content)
		return TROOP_EINVAL;
	if (json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", role, "content",
	    content)) != 0)
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
	return 0;
}

static int input_items(json_t *msgs, const json_t *input)
{
	size_t i;
	const json_t *item;

	json_array_foreach(input, i, item) {
		const char *type = json_string_value(json_object_get(item, "type"));
		const char *role = json_string_value(json_object_get(item, "role"));
		int rc;

		if (type && strcmp(type, "message") != 0)
			return troop_error_set(TROOP_EINVAL, "input items of type '%.64s' (tool "
			    "calls, tool outputs, reasoning, references) cannot be translated to chat "
			    "completions for this engine", type);
		if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0 &&
		    strcmp(role, "system") != 0 && strcmp(role, "developer") != 0))
			return troop_error_set(TROOP_EINVAL, "input message %zu needs a \"role\" of "
			    "user, assistant, system or developer", i);
		rc = add_message(msgs, strcmp(role, "developer") == 0 ? "system" : role,
		    content_of(json_object_get(item, "content")));
		if (rc)
			return rc;
	}
	return 0;
}

/* Copy a number field under another name, when present. */
static int copy_number(json_t *out, const json_t *in, const char *from, const char *to)
{
	const json_t *v = json_object_get(in, from);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return troop_error_set(TROOP_EINVAL, "\"%s\" must be a number", from);
	return json_object_set(out, to, (json_t *)v) == 0 ? 0 :
	    troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
}

int compat_responses_request(const json_t *in, json_t **out)
{
	const json_t *input = json_object_get(in, "input");
	const json_t *instr = json_object_get(in, "instructions");
	const json_t *tools = json_object_get(in, "tools");
	const json_t *text = json_object_get(in, "text");
	const json_t *stream = json_object_get(in, "stream");
	json_t *chat, *msgs;
	int rc = 0;

	*out = NULL;
	if (json_is_array(tools) && json_array_size(tools) > 0)
		return troop_error_set(TROOP_EINVAL, "\"tools\" cannot be translated to chat "
		    "completions for this engine (it does not serve /v1/responses natively); "
		    "use /v1/chat/completions with tools, or a node whose engine serves the "
		    "Responses API");
	if (json_object_get(in, "previous_response_id") &&
	    !json_is_null(json_object_get(in, "previous_response_id")))
		return troop_error_set(TROOP_EINVAL, "\"previous_response_id\" is not supported: "
		    "the troop stores no responses; send the whole conversation as \"input\"");
	{
		const char *ft = json_string_value(json_object_get(json_object_get(text, "format"),
		    "type"));
		if (ft && strcmp(ft, "text") != 0)
			return troop_error_set(TROOP_EINVAL, "text.format '%.64s' cannot be translated "
			    "to chat completions for this engine", ft);
	}
	if (!json_is_string(input) && !json_is_array(input))
		return troop_error_set(TROOP_EINVAL, "\"input\" must be a string or an array of "
		    "messages");
	if (instr && !json_is_null(instr) && !json_is_string(instr))
		return troop_error_set(TROOP_EINVAL, "\"instructions\" must be a string");
	if (stream && !json_is_boolean(stream))
		return troop_error_set(TROOP_EINVAL, "\"stream\" must be a boolean");
	chat = json_object();
	msgs = json_array();
	if (!chat || !msgs) {
		json_decref(chat);
		json_decref(msgs);
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
	}
	json_object_set_new(chat, "messages", msgs);
	json_object_set(chat, "model", json_object_get(in, "model"));
	if (json_is_string(instr))
		rc = add_message(msgs, "system", json_copy((json_t *)instr));
	if (!rc && json_is_string(input))
		rc = add_message(msgs, "user", json_copy((json_t *)input));
	else if (!rc)
		rc = input_items(msgs, input);
	if (!rc)
		rc = copy_number(chat, in, "max_output_tokens", "max_tokens");
	if (!rc)
		rc = copy_number(chat, in, "temperature", "temperature");
	if (!rc)
		rc = copy_number(chat, in, "top_p", "top_p");
	if (!rc && json_is_true(stream)) {
		json_object_set_new(chat, "stream", json_true());
		json_object_set_new(chat, "stream_options", json_pack("{s:b}", "include_usage", 1));
	}
	if (rc) {
		json_decref(chat);
		return rc;
	}
	*out = chat;
	return 0;
}

/* ---- reply ---------------------------------------------------------------------- */

static json_t *output_item(const compat_state *s, bool done)
{
	json_t *content = done ? json_pack("[{s:s, s:s%, s:[]}]", "type", "output_text", "text",
	    s->text, s->text_len, "annotations") : json_array();
	char id[160];

	snprintf(id, sizeof(id), "msg_%s", s->id);
	return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "type", "message", "status",
	    done ? "completed" : "in_progress", "role", "assistant", "content", content);
}

/* The Response object: status "in_progress" (no output yet), else
 * "completed" or "incomplete" from the finish reason. */
static json_t *response_object(const compat_state *s, bool done)
{
	bool cut = done && strcmp(s->finish, "length") == 0;
	char id[160];
	json_t *r;

	snprintf(id, sizeof(id), "resp_%s", s->id);
	r = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:n, s:o, s:b, s:s, s:[], s:n}",
	    "id", id, "object", "response", "created_at", (json_int_t)s->created,
	    "status", !done ? "in_progress" : cut ? "incomplete" : "completed",
	    "model", s->model,
	    "output", done ? json_pack("[o]", output_item(s, true)) : json_array(),
	    "error",
	    "incomplete_details", cut ? json_pack("{s:s}", "reason", "max_output_tokens") :
	    json_null(),
	    "parallel_tool_calls", 0, "tool_choice", "auto", "tools", "usage");
	if (r && done)
		json_object_set_new(r, "usage", json_pack("{s:I, s:I, s:I, s:{s:i}, s:{s:i}}",
		    "input_tokens", (json_int_t)s->in_tok, "output_tokens", (json_int_t)s->out_tok,
		    "total_tokens", (json_int_t)(s->in_tok + s->out_tok),
		    "input_tokens_details", "cached_tokens", 0,
		    "output_tokens_details", "reasoning_tokens", 0));
	return r;
}

json_t *compat_responses_body(const compat_state *s)
{
	return response_object(s, true);
}

int compat_responses_start(const compat_state *s, compat_emit_fn emit, void *arg)
{
	char item[160];
	int rc;

	snprintf(item, sizeof(item), "msg_%s", s->id);
	if ((rc = emit(arg, "response.created", json_pack("{s:s, s:o}", "type",
	    "response.created", "response", response_object(s, false)))) != 0 ||
	    (rc = emit(arg, "response.in_progress", json_pack("{s:s, s:o}", "type",
	    "response.in_progress", "response", response_object(s, false)))) != 0 ||
	    (rc = emit(arg, "response.output_item.added", json_pack("{s:s, s:i, s:o}", "type",
	    "response.output_item.added", "output_index", 0, "item", output_item(s, false)))) != 0)
		return rc;
	return emit(arg, "response.content_part.added", json_pack("{s:s, s:s, s:i, s:i, "
	    "s:{s:s, s:s, s:[]}}", "type", "response.content_part.added", "item_id", item,
	    "output_index", 0, "content_index", 0, "part", "type", "output_text", "text", "",
	    "annotations"));
}

int compat_responses_delta(const compat_state *s, const char *delta, compat_emit_fn emit,
    void *arg)
{
	char item[160];

	snprintf(item, sizeof(item), "msg_%s", s->id);
	return emit(arg, "response.output_text.delta", json_pack("{s:s, s:s, s:i, s:i, s:s, "
	    "s:[]}", "type", "response.output_text.delta", "item_id", item, "output_index", 0,
	    "content_index", 0, "delta", delta, "logprobs"));
}

int compat_responses_end(const compat_state *s, compat_emit_fn emit, void *arg)
{
	bool cut = strcmp(s->finish, "length") == 0;
	char item[160];
	int rc;

	snprintf(item, sizeof(item), "msg_%s", s->id);
	if ((rc = emit(arg, "response.output_text.done", json_pack("{s:s, s:s, s:i, s:i, s:s%, "
	    "s:[]}", "type", "response.output_text.done", "item_id", item, "output_index", 0,
	    "content_index", 0, "text", s->text, s->text_len, "logprobs"))) != 0 ||
	    (rc = emit(arg, "response.content_part.done", json_pack("{s:s, s:s, s:i, s:i, "
	    "s:{s:s, s:s%, s:[]}}", "type", "response.content_part.done", "item_id", item,
	    "output_index", 0, "content_index", 0, "part", "type", "output_text", "text", s->text,
	    s->text_len, "annotations"))) != 0 ||
	    (rc = emit(arg, "response.output_item.done", json_pack("{s:s, s:i, s:o}", "type",
	    "response.output_item.done", "output_index", 0, "item", output_item(s, true)))) != 0)
		return rc;
	return emit(arg, cut ? "response.incomplete" : "response.completed",
	    json_pack("{s:s, s:o}", "type", cut ? "response.incomplete" : "response.completed",
	    "response", response_object(s, true)));
}
