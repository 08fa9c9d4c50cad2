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

/* A function_call item: a tool call of the assistant message before it
 * (or of a new one). */
static int function_call(json_t *msgs, const json_t *item)
{
	const char *id = json_string_value(json_object_get(item, "call_id"));
	const char *name = json_string_value(json_object_get(item, "name"));
	const char *args = json_string_value(json_object_get(item, "arguments"));
	json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
	json_t *calls = json_object_get(last, "tool_calls");

	if (!id || !name || !args)
		return troop_error_set(TROOP_EINVAL, "a function_call item needs string \"call_id\", "
		    "\"name\" and \"arguments\"");
	if (!json_is_array(calls) || strcmp(json_string_value(json_object_get(last, "role")),
	    "assistant") != 0) {
		calls = json_array();
		if (json_array_append_new(msgs, json_pack("{s:s, s:n, s:o}", "role", "assistant",
		    "content", "tool_calls", calls)) != 0)
			return troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
	}
	return json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id,
	    "type", "function", "function", "name", name, "arguments", args)) == 0 ? 0 :
	    troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
}

/* A function_call_output item: a "tool" message. */
static int function_output(json_t *msgs, const json_t *item)
{
	const char *id = json_string_value(json_object_get(item, "call_id"));
	const json_t *out = json_object_get(item, "output");
	json_t *content;

	if (!id)
		return troop_error_set(TROOP_EINVAL, "a function_call_output item needs a string "
		    "\"call_id\"");
	content = content_of(out);
	if (!content)
		return TROOP_EINVAL;
	return json_array_append_new(msgs, json_pack("{s:s, s:s, s:o}", "role", "tool",
	    "tool_call_id", id, "content", content)) == 0 ? 0 :
	    troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
}

static int input_items(json_t *msgs, const json_t *input)
{
	size_t i;
	const json_t *item;

	json_array_foreach(input, i, item) {
		const char *type = json_string_value(json_object_get(item, "type"));
		const char *role = json_string_value(json_object_get(item, "role"));
		int rc;

		if (type && strcmp(type, "function_call") == 0) {
			if ((rc = function_call(msgs, item)) != 0)
				return rc;
			continue;
		}
		if (type && strcmp(type, "function_call_output") == 0) {
			if ((rc = function_output(msgs, item)) != 0)
				return rc;
			continue;
		}
		if (type && strcmp(type, "reasoning") == 0)
			continue;  /* the model's own notes: chat has no place for them */
		if (type && strcmp(type, "message") != 0)
			return troop_error_set(TROOP_EINVAL, "input items of type '%.64s' (built-in "
			    "tool calls, references) cannot be translated to chat completions for "
			    "this engine", type);
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

/* Function tools as chat tools, and tool_choice.  Returns 0 or
 * TROOP_EINVAL for the built-in tools (web search, files, computer...). */
static int tools_of(json_t *chat, const json_t *in)
{
	const json_t *tools = json_object_get(in, "tools");
	const json_t *choice = json_object_get(in, "tool_choice");
	const json_t *par = json_object_get(in, "parallel_tool_calls");
	const json_t *t;
	json_t *out;
	size_t i;

	if (!tools || json_is_null(tools) || json_array_size(tools) == 0)
		return 0;
	if (!json_is_array(tools))
		return troop_error_set(TROOP_EINVAL, "\"tools\" must be an array");
	out = json_array();
	json_object_set_new(chat, "tools", out);
	json_array_foreach(tools, i, t) {
		const char *type = json_string_value(json_object_get(t, "type"));
		const json_t *name = json_object_get(t, "name");
		json_t *fn;

		if (!type || strcmp(type, "function") != 0)
			return troop_error_set(TROOP_EINVAL, "tools of type '%.64s' cannot be "
			    "translated to chat completions for this engine (it does not serve "
			    "/v1/responses natively): only function tools can", type ? type : "?");
		if (!json_is_string(name))
			return troop_error_set(TROOP_EINVAL, "tools.%zu needs a string \"name\"", i);
		fn = json_pack("{s:O}", "name", name);
		if (json_object_get(t, "description"))
			json_object_set(fn, "description", json_object_get(t, "description"));
		if (json_object_get(t, "parameters") && !json_is_null(json_object_get(t, "parameters")))
			json_object_set(fn, "parameters", json_object_get(t, "parameters"));
		if (json_is_boolean(json_object_get(t, "strict")))
			json_object_set(fn, "strict", json_object_get(t, "strict"));
		json_array_append_new(out, json_pack("{s:s, s:o}", "type", "function", "function", fn));
	}
	if (json_is_string(choice)) {
		json_object_set(chat, "tool_choice", (json_t *)choice);
	} else if (json_is_object(choice)) {
		const char *ct = json_string_value(json_object_get(choice, "type"));
		const char *name = json_string_value(json_object_get(choice, "name"));

		if (!ct || strcmp(ct, "function") != 0 || !name)
			return troop_error_set(TROOP_EINVAL, "this \"tool_choice\" cannot be "
			    "translated to chat completions for this engine");
		json_object_set_new(chat, "tool_choice", json_pack("{s:s, s:{s:s}}", "type",
		    "function", "function", "name", name));
	}
	if (json_is_boolean(par))
		json_object_set(chat, "parallel_tool_calls", (json_t *)par);
	return 0;
}

int compat_responses_request(const json_t *in, json_t **out)
{
	const json_t *input = json_object_get(in, "input");
	const json_t *instr = json_object_get(in, "instructions");
	const json_t *text = json_object_get(in, "text");
	const json_t *stream = json_object_get(in, "stream");
	json_t *chat, *msgs;
	int rc = 0;

	*out = NULL;
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
		rc = tools_of(chat, in);
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

static void item_id(char *out, size_t n, const compat_state *s)
{
	snprintf(out, n, "msg_%s", s->id);
}

static json_t *message_item(const compat_state *s, bool done)
{
	json_t *content = done ? json_pack("[{s:s, s:s%, s:[]}]", "type", "output_text", "text",
	    s->text, s->text_len, "annotations") : json_array();
	char id[160];

	item_id(id, sizeof(id), s);
	return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "type", "message", "status",
	    done ? "completed" : "in_progress", "role", "assistant", "content", content);
}

static json_t *call_item(const compat_state *s, const compat_tool *t, bool done)
{
	char id[200];

	snprintf(id, sizeof(id), "fc_%s_%d", s->id, t->out_index);
	return json_pack("{s:s, s:s, s:s, s:s, s:s%, s:s}", "id", id, "type", "function_call",
	    "call_id", t->id, "name", t->name, "arguments", done ? (t->args ? t->args : "") : "",
	    done ? t->args_len : 0, "status", done ? "completed" : "in_progress");
}

/* The output items, in their order. */
static json_t *output(const compat_state *s)
{
	json_t *out = json_array();
	int n = (s->text_index >= 0 ? 1 : 0) + (int)s->ntools;

	for (int i = 0; out && i < n; i++) {
		json_t *item = NULL;

		if (i == s->text_index)
			item = message_item(s, true);
		for (size_t k = 0; !item && k < s->ntools; k++)
			if (s->tools[k].out_index == i)
				item = call_item(s, &s->tools[k], true);
		if (item && json_array_append_new(out, item) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
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
	    "output", done ? output(s) : json_array(),
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

static json_t *body(const compat_state *s)
{
	return response_object(s, true);
}

static int start(const compat_state *s, compat_emit_fn emit, void *arg)
{
	int rc;

	if ((rc = emit(arg, "response.created", json_pack("{s:s, s:o}", "type",
	    "response.created", "response", response_object(s, false)))) != 0)
		return rc;
	return emit(arg, "response.in_progress", json_pack("{s:s, s:o}", "type",
	    "response.in_progress", "response", response_object(s, false)));
}

static int text_start(const compat_state *s, compat_emit_fn emit, void *arg)
{
	char item[160];
	int rc;

	item_id(item, sizeof(item), s);
	if ((rc = emit(arg, "response.output_item.added", json_pack("{s:s, s:i, s:o}", "type",
	    "response.output_item.added", "output_index", s->text_index, "item",
	    message_item(s, false)))) != 0)
		return rc;
	return emit(arg, "response.content_part.added", json_pack("{s:s, s:s, s:i, s:i, "
	    "s:{s:s, s:s, s:[]}}", "type", "response.content_part.added", "item_id", item,
	    "output_index", s->text_index, "content_index", 0, "part", "type", "output_text",
	    "text", "", "annotations"));
}

static int text_delta(const compat_state *s, const char *delta, compat_emit_fn emit,
    void *arg)
{
	char item[160];

	item_id(item, sizeof(item), s);
	return emit(arg, "response.output_text.delta", json_pack("{s:s, s:s, s:i, s:i, s:s, "
	    "s:[]}", "type", "response.output_text.delta", "item_id", item, "output_index",
	    s->text_index, "content_index", 0, "delta", delta, "logprobs"));
}

static int text_end(const compat_state *s, compat_emit_fn emit, void *arg)
{
	char item[160];
	int rc;

	item_id(item, sizeof(item), s);
	if ((rc = emit(arg, "response.output_text.done", json_pack("{s:s, s:s, s:i, s:i, s:s%, "
	    "s:[]}", "type", "response.output_text.done", "item_id", item, "output_index",
	    s->text_index, "content_index", 0, "text", s->text, s->text_len, "logprobs"))) != 0 ||
	    (rc = emit(arg, "response.content_part.done", json_pack("{s:s, s:s, s:i, s:i, "
	    "s:{s:s, s:s%, s:[]}}", "type", "response.content_part.done", "item_id", item,
	    "output_index", s->text_index, "content_index", 0, "part", "type", "output_text",
	    "text", s->text, s->text_len, "annotations"))) != 0)
		return rc;
	return emit(arg, "response.output_item.done", json_pack("{s:s, s:i, s:o}", "type",
	    "response.output_item.done", "output_index", s->text_index, "item",
	    message_item(s, true)));
}

static int tool_start(const compat_state *s, const compat_tool *t, compat_emit_fn emit,
    void *arg)
{
	return emit(arg, "response.output_item.added", json_pack("{s:s, s:i, s:o}", "type",
	    "response.output_item.added", "output_index", t->out_index, "item",
	    call_item(s, t, false)));
}

static int tool_delta(const compat_state *s, const compat_tool *t, const char *delta,
    compat_emit_fn emit, void *arg)
{
	char id[200];

	snprintf(id, sizeof(id), "fc_%s_%d", s->id, t->out_index);
	return emit(arg, "response.function_call_arguments.delta", json_pack("{s:s, s:s, s:i, "
	    "s:s}", "type", "response.function_call_arguments.delta", "item_id", id,
	    "output_index", t->out_index, "delta", delta));
}

static int tool_end(const compat_state *s, const compat_tool *t, compat_emit_fn emit,
    void *arg)
{
	char id[200];
	int rc;

	snprintf(id, sizeof(id), "fc_%s_%d", s->id, t->out_index);
	if ((rc = emit(arg, "response.function_call_arguments.done", json_pack("{s:s, s:s, s:i, "
	    "s:s, s:s%}", "type", "response.function_call_arguments.done", "item_id", id,
	    "output_index", t->out_index, "name", t->name, "arguments", t->args ? t->args : "",
	    t->args_len))) != 0)
		return rc;
	return emit(arg, "response.output_item.done", json_pack("{s:s, s:i, s:o}", "type",
	    "response.output_item.done", "output_index", t->out_index, "item",
	    call_item(s, t, true)));
}

static int end(const compat_state *s, compat_emit_fn emit, void *arg)
{
	bool cut = strcmp(s->finish, "length") == 0;

	return emit(arg, cut ? "response.incomplete" : "response.completed",
	    json_pack("{s:s, s:o}", "type", cut ? "response.incomplete" : "response.completed",
	    "response", response_object(s, true)));
}

const compat_api_ops compat_responses_ops = { start, text_start, text_delta, text_end,
	tool_start, tool_delta, tool_end, end, body };
