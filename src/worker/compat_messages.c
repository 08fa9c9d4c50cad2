/*
 * compat_messages.c - the Anthropic Messages API over chat completions
 * (compat.h): system prompt, messages and content blocks as chat
 * messages, and the Message object and its stream events built from the
 * chat reply.
 */
#include "compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- request -------------------------------------------------------------------- */

static json_t *block_of(const json_t *b)
{
	const char *type = json_string_value(json_object_get(b, "type"));
	const json_t *text = json_object_get(b, "text");

	if (!type) {
		troop_error_set(TROOP_EINVAL, "a content block has no \"type\"");
		return NULL;
	}
	if (strcmp(type, "text") == 0) {
		if (!json_is_string(text)) {
			troop_error_set(TROOP_EINVAL, "a text block needs a string \"text\"");
			return NULL;
		}
		return json_pack("{s:s, s:O}", "type", "text", "text", text);
	}
	if (strcmp(type, "image") == 0) {
		const json_t *src = json_object_get(b, "source");
		const char *st = json_string_value(json_object_get(src, "type"));
		const char *mt = json_string_value(json_object_get(src, "media_type"));
		const char *data = json_string_value(json_object_get(src, "data"));
		const char *url = json_string_value(json_object_get(src, "url"));

		if (st && strcmp(st, "url") == 0 && url)
			return json_pack("{s:s, s:{s:s}}", "type", "image_url", "image_url", "url", url);
		if (st && strcmp(st, "base64") == 0 && mt && data && strlen(mt) < 100 &&
		    !strpbrk(mt, ";,")) {
			json_t *part;
			size_t n = strlen(data) + strlen(mt) + 16;
			char *u = malloc(n);

			if (!u) {
				troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
				return NULL;
			}
			snprintf(u, n, "data:%s;base64,%s", mt, data);
			part = json_pack("{s:s, s:{s:s}}", "type", "image_url", "image_url", "url", u);
			free(u);
			return part;
		}
		troop_error_set(TROOP_EINVAL, "image blocks are translated only with a \"base64\" or "
		    "\"url\" source");
		return NULL;
	}
	troop_error_set(TROOP_EINVAL, "content blocks of type '%.64s' (documents, thinking, "
	    "server tool results, or tool blocks in the wrong role) cannot be translated to chat completions for this engine (it "
	    "does not serve /v1/messages natively)", type);
	return NULL;
}

static json_t *content_of(const json_t *content)
{
	json_t *parts;
	size_t i;
	const json_t *b;

	if (json_is_string(content))
		return json_copy((json_t *)content);
	if (!json_is_array(content)) {
		troop_error_set(TROOP_EINVAL, "a message's \"content\" must be a string or an array "
		    "of content blocks");
		return NULL;
	}
	parts = json_array();
	json_array_foreach(content, i, b) {
		json_t *p = block_of(b);

		if (!p || json_array_append_new(parts, p) != 0) {
			json_decref(parts);
			return NULL;
		}
	}
	return parts;
}

/* The system prompt: a string, or text blocks joined by blank lines. */
static json_t *system_of(const json_t *sys)
{
	json_t *s;
	size_t i;
	const json_t *b;

	if (json_is_string(sys))
		return json_copy((json_t *)sys);
	if (!json_is_array(sys)) {
		troop_error_set(TROOP_EINVAL, "\"system\" must be a string or an array of text "
		    "blocks");
		return NULL;
	}
	s = json_string("");
	json_array_foreach(sys, i, b) {
		const char *t = json_string_value(json_object_get(b, "text"));
		const char *type = json_string_value(json_object_get(b, "type"));
		const char *old = json_string_value(s);
		size_t n;
		char *cat;

		if (!type || strcmp(type, "text") != 0 || !t) {
			json_decref(s);
			troop_error_set(TROOP_EINVAL, "\"system\" blocks must be text blocks");
			return NULL;
		}
		n = strlen(old) + strlen(t) + 3;
		cat = malloc(n);
		if (!cat) {
			json_decref(s);
			troop_error_set(TROOP_ENOMEM, "out of memory translating a request");
			return NULL;
		}
		snprintf(cat, n, "%s%s%s", old, old[0] ? "\n\n" : "", t);
		json_string_set(s, cat);
		free(cat);
	}
	return s;
}

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

/* Client tools as chat function tools, and tool_choice.  Returns 0, or
 * TROOP_EINVAL for the server tools (web search, code execution...). */
static int tools_of(json_t *chat, const json_t *in)
{
	const json_t *tools = json_object_get(in, "tools");
	const json_t *choice = json_object_get(in, "tool_choice");
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
		const json_t *schema = json_object_get(t, "input_schema");
		json_t *fn;

		if (type && strcmp(type, "custom") != 0)
			return troop_error_set(TROOP_EINVAL, "tools of type '%.64s' cannot be "
			    "translated to chat completions for this engine (it does not serve "
			    "/v1/messages natively): only client tools with an input_schema can", type);
		if (!json_is_string(name) || !json_is_object(schema))
			return troop_error_set(TROOP_EINVAL, "tools.%zu needs a string \"name\" and "
			    "an object \"input_schema\"", i);
		fn = json_pack("{s:O, s:O}", "name", name, "parameters", schema);
		if (json_is_string(json_object_get(t, "description")))
			json_object_set(fn, "description", json_object_get(t, "description"));
		json_array_append_new(out, json_pack("{s:s, s:o}", "type", "function", "function", fn));
	}
	if (json_is_object(choice)) {
		const char *ct = json_string_value(json_object_get(choice, "type"));
		const char *name = json_string_value(json_object_get(choice, "name"));

		if (ct && strcmp(ct, "auto") == 0)
			json_object_set_new(chat, "tool_choice", json_string("auto"));
		else if (ct && strcmp(ct, "any") == 0)
			json_object_set_new(chat, "tool_choice", json_string("required"));
		else if (ct && strcmp(ct, "none") == 0)
			json_object_set_new(chat, "tool_choice", json_string("none"));
		else if (ct && strcmp(ct, "tool") == 0 && name)
			json_object_set_new(chat, "tool_choice", json_pack("{s:s, s:{s:s}}", "type",
			    "function", "function", "name", name));
		else
			return troop_error_set(TROOP_EINVAL, "this \"tool_choice\" cannot be "
			    "translated to chat completions for this engine");
		if (json_is_true(json_object_get(choice, "disable_parallel_tool_use")))
			json_object_set_new(chat, "parallel_tool_calls", json_false());
	}
	return 0;
}

/* A tool_result block's content as the text of a "tool" message. */
static json_t *result_text(const json_t *b)
{
	const json_t *c = json_object_get(b, "content");
	json_t *parts;

	if (!c || json_is_null(c))
		return json_string("");
	parts = content_of(c);
	if (!parts || json_is_string(parts))
		return parts;
	/* text blocks only: chat tool messages take text parts */
	for (size_t i = 0; i < json_array_size(parts); i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(parts, i), "type")),
		    "text") != 0) {
			json_decref(parts);
			troop_error_set(TROOP_EINVAL, "tool_result content other than text cannot be "
			    "translated to chat completions for this engine");
			return NULL;
		}
	return parts;
}

/* One message whose content blocks hold tool_use (assistant) or
 * tool_result (user) blocks: chat tool_calls on the assistant message,
 * "tool" messages before the user's other content. */
static int tool_message(json_t *msgs, const char *role, const json_t *content)
{
	json_t *rest = json_array(), *calls = json_array();
	const json_t *b;
	size_t i;
	int rc = 0;

	json_array_foreach(content, i, b) {
		const char *type = json_string_value(json_object_get(b, "type"));

		if (type && strcmp(type, "tool_use") == 0 && strcmp(role, "assistant") == 0) {
			const char *id = json_string_value(json_object_get(b, "id"));
			const char *name = json_string_value(json_object_get(b, "name"));
			const json_t *input = json_object_get(b, "input");
			char *args = json_is_object(input) ? json_dumps(input, JSON_COMPACT) : NULL;

			if (!id || !name || !args) {
				free(args);
				rc = troop_error_set(TROOP_EINVAL, "a tool_use block needs string \"id\", "
				    "\"name\" and an object \"input\"");
				break;
			}
			json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id,
			    "type", "function", "function", "name", name, "arguments", args));
			free(args);
		} else if (type && strcmp(type, "tool_result") == 0 && strcmp(role, "user") == 0) {
			const char *id = json_string_value(json_object_get(b, "tool_use_id"));
			json_t *text = result_text(b);

			if (!id || !text) {
				json_decref(text);
				rc = id ? TROOP_EINVAL : troop_error_set(TROOP_EINVAL, "a tool_result block "
				    "needs a string \"tool_use_id\"");
				break;
			}
			json_array_append_new(msgs, json_pack("{s:s, s:s, s:o}", "role", "tool",
			    "tool_call_id", id, "content", text));
		} else {
			json_t *p = block_of(b);

			if (!p) {
				rc = TROOP_EINVAL;
				break;
			}
			json_array_append_new(rest, p);
		}
	}
	if (!rc && json_array_size(calls) > 0)
		rc = json_array_append_new(msgs, json_pack("{s:s, s:O, s:O}", "role", role,
		    "content", json_array_size(rest) ? rest : json_null(), "tool_calls", calls));
	else if (!rc && json_array_size(rest) > 0)
		rc = json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", role, "content",
		    rest));
	json_decref(rest);
	json_decref(calls);
	return rc ? (rc == -1 ? troop_error_set(TROOP_ENOMEM, "out of memory translating a "
	    "request") : rc) : 0;
}

/* Whether a content array holds tool_use or tool_result blocks. */
static bool has_tool_blocks(const json_t *content)
{
	const json_t *b;
	size_t i;

	json_array_foreach(content, i, b) {
		const char *type = json_string_value(json_object_get(b, "type"));

		if (type && (strcmp(type, "tool_use") == 0 || strcmp(type, "tool_result") == 0))
			return true;
	}
	return false;
}

int compat_messages_request(const json_t *in, json_t **out)
{
	const json_t *msgs_in = json_object_get(in, "messages");
	const json_t *sys = json_object_get(in, "system");
	const json_t *stop = json_object_get(in, "stop_sequences");
	const json_t *stream = json_object_get(in, "stream");
	const json_t *m;
	json_t *chat, *msgs;
	size_t i;
	int rc = 0;

	*out = NULL;
	if (!json_is_array(msgs_in))
		return troop_error_set(TROOP_EINVAL, "\"messages\" must be an array");
	if (stop && !json_is_null(stop) && !json_is_array(stop))
		return troop_error_set(TROOP_EINVAL, "\"stop_sequences\" must be an array of strings");
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
	if (sys && !json_is_null(sys)) {
		json_t *s = system_of(sys);

		if (!s)
			rc = TROOP_EINVAL;
		else
			json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "system",
			    "content", s));
	}
	json_array_foreach(msgs_in, i, m) {
		const char *role = json_string_value(json_object_get(m, "role"));
		json_t *c;

		if (rc)
			break;
		if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)) {
			rc = troop_error_set(TROOP_EINVAL, "messages.%zu: \"role\" must be user or "
			    "assistant", i);
			break;
		}
		if (json_is_array(json_object_get(m, "content")) &&
		    has_tool_blocks(json_object_get(m, "content"))) {
			rc = tool_message(msgs, role, json_object_get(m, "content"));
			continue;
		}
		if (!(c = content_of(json_object_get(m, "content")))) {
			rc = TROOP_EINVAL;
			break;
		}
		json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", role, "content", c));
	}
	if (!rc && json_is_array(stop) && json_array_size(stop) > 0) {
		const json_t *s;
		size_t k;

		json_array_foreach(stop, k, s)
			if (!json_is_string(s))
				rc = troop_error_set(TROOP_EINVAL, "\"stop_sequences\" must be strings");
		if (!rc)
			json_object_set(chat, "stop", (json_t *)stop);
	}
	if (!rc)
		rc = tools_of(chat, in);
	if (!rc)
		rc = copy_number(chat, in, "max_tokens", "max_tokens");
	if (!rc)
		rc = copy_number(chat, in, "temperature", "temperature");
	if (!rc)
		rc = copy_number(chat, in, "top_p", "top_p");
	if (!rc)
		rc = copy_number(chat, in, "top_k", "top_k");
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

static const char *stop_reason(const compat_state *s)
{
	if (strcmp(s->finish, "length") == 0)
		return "max_tokens";
	if (strcmp(s->finish, "tool_calls") == 0 || s->ntools > 0)
		return "tool_use";
	return "end_turn";
}

/* A tool call's arguments as the "input" object ({} when they are not
 * one). */
static json_t *tool_input(const compat_tool *t)
{
	json_t *v = t->args_len ? json_loadb(t->args, t->args_len, 0, NULL) : NULL;

	if (!json_is_object(v)) {
		json_decref(v);
		v = json_object();
	}
	return v;
}

static json_t *body(const compat_state *s)
{
	json_t *content = json_array();
	int n = (s->text_index >= 0 ? 1 : 0) + (int)s->ntools;
	char id[160];

	for (int i = 0; content && i < n; i++) {
		json_t *b = NULL;

		if (i == s->text_index)
			b = json_pack("{s:s, s:s%}", "type", "text", "text", s->text, s->text_len);
		for (size_t k = 0; !b && k < s->ntools; k++)
			if (s->tools[k].out_index == i)
				b = json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id",
				    s->tools[k].id, "name", s->tools[k].name, "input",
				    tool_input(&s->tools[k]));
		if (b && json_array_append_new(content, b) != 0) {
			json_decref(content);
			return NULL;
		}
	}
	snprintf(id, sizeof(id), "msg_%s", s->id);
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:n, s:{s:I, s:I}}",
	    "id", id, "type", "message", "role", "assistant", "model", s->model,
	    "content", content, "stop_reason", stop_reason(s), "stop_sequence",
	    "usage", "input_tokens", (json_int_t)s->in_tok, "output_tokens",
	    (json_int_t)s->out_tok);
}

static int start(const compat_state *s, compat_emit_fn emit, void *arg)
{
	char id[160];

	snprintf(id, sizeof(id), "msg_%s", s->id);
	return emit(arg, "message_start", json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, "
	    "s:n, s:{s:I, s:i}}}", "type", "message_start", "message", "id", id, "type", "message",
	    "role", "assistant", "model", s->model, "content", "stop_reason", "stop_sequence",
	    "usage", "input_tokens", (json_int_t)s->in_tok, "output_tokens", 0));
}

static int text_start(const compat_state *s, compat_emit_fn emit, void *arg)
{
	return emit(arg, "content_block_start", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type",
	    "content_block_start", "index", s->text_index, "content_block", "type", "text",
	    "text", ""));
}

static int text_delta(const compat_state *s, const char *delta, compat_emit_fn emit,
    void *arg)
{
	return emit(arg, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type",
	    "content_block_delta", "index", s->text_index, "delta", "type", "text_delta",
	    "text", delta));
}

static int block_stop(int index, compat_emit_fn emit, void *arg)
{
	return emit(arg, "content_block_stop", json_pack("{s:s, s:i}", "type",
	    "content_block_stop", "index", index));
}

static int text_end(const compat_state *s, compat_emit_fn emit, void *arg)
{
	return block_stop(s->text_index, emit, arg);
}

static int tool_start(const compat_state *s, const compat_tool *t, compat_emit_fn emit,
    void *arg)
{
	(void)s;
	return emit(arg, "content_block_start", json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:{}}}",
	    "type", "content_block_start", "index", t->out_index, "content_block", "type",
	    "tool_use", "id", t->id, "name", t->name, "input"));
}

static int tool_delta(const compat_state *s, const compat_tool *t, const char *delta,
    compat_emit_fn emit, void *arg)
{
	(void)s;
	return emit(arg, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type",
	    "content_block_delta", "index", t->out_index, "delta", "type", "input_json_delta",
	    "partial_json", delta));
}

static int tool_end(const compat_state *s, const compat_tool *t, compat_emit_fn emit,
    void *arg)
{
	(void)s;
	return block_stop(t->out_index, emit, arg);
}

static int end(const compat_state *s, compat_emit_fn emit, void *arg)
{
	int rc;

	if ((rc = emit(arg, "message_delta", json_pack("{s:s, s:{s:s, s:n}, s:{s:I, s:I}}",
	    "type", "message_delta", "delta", "stop_reason", stop_reason(s),
	    "stop_sequence", "usage", "input_tokens", (json_int_t)s->in_tok, "output_tokens",
	    (json_int_t)s->out_tok))) != 0)
		return rc;
	return emit(arg, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

const compat_api_ops compat_messages_ops = { start, text_start, text_delta, text_end,
	tool_start, tool_delta, tool_end, end, body };
