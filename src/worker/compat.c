/*
 * compat.c - the reply translator of compat.h: reads the engine's chat
 * completions reply (an event stream through the SSE parser, or a JSON
 * body collected whole) and drives the per-API event builders of
 * compat_responses.c and compat_messages.c.
 */
#include "compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "sse.h"

struct compat_reply {
	api_kind kind;
	bool sse;
	char id[128];
	char model[256];
	int64_t created;
	sse_parser *parser;
	dynbuf body;          /* a JSON reply, collected */
	dynbuf text;          /* the answer so far */
	dynbuf *out;          /* during feed and finish */
	char finish[32];
	int64_t in_tok, out_tok;
	long seq;             /* Responses sequence_number */
	bool started;         /* the opening events went out */
	bool ended;           /* closed, or failed: nothing more goes out */
	int err;              /* the first output failure */
	bool native;          /* compat_native_new: revise, not translate */
	long out_index;       /* native Responses: the current output item */
	long content_index;   /* ... and content part */
	const compat_api_ops *ops;
	int nblocks;          /* output blocks started (text, tool calls) */
	int text_index;       /* the text block's place, -1 none */
	int open;             /* the block being streamed: -1 none, -2 the
	                       * text, else a tool (index into tools) */
	struct tool {
		compat_tool t;
		int chat_index;   /* the engine's tool_calls[].index */
		dynbuf args;
		bool started, ended;
	} tools[COMPAT_MAX_TOOLS];
	compat_tool views[COMPAT_MAX_TOOLS];
	size_t ntools;
};

int compat_request(api_kind kind, const json_t *in, json_t **out)
{
	*out = NULL;
	if (!json_is_object(in))
		return troop_error_set(TROOP_EINVAL, "the request body must be a JSON object");
	if (kind == API_RESPONSES)
		return compat_responses_request(in, out);
	if (kind == API_MESSAGES)
		return compat_messages_request(in, out);
	return troop_error_set(TROOP_EINVAL, "no translation for this API");
}

static compat_state state_of(compat_reply *c)
{
	compat_state s = { c->id, c->model, c->created, dynbuf_ptr(&c->text),
		dynbuf_len(&c->text), c->text_index, c->views, c->ntools, c->finish,
		c->in_tok, c->out_tok };

	for (size_t i = 0; i < c->ntools; i++) {
		c->views[i] = c->tools[i].t;
		c->views[i].args = dynbuf_ptr(&c->tools[i].args);
		c->views[i].args_len = dynbuf_len(&c->tools[i].args);
	}
	return s;
}

/* compat_emit_fn: one SSE event into c->out. */
static int emit(void *arg, const char *event, json_t *data)
{
	compat_reply *c = arg;
	char *text;
	int rc;

	if (!data)
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a reply");
	if (c->kind == API_RESPONSES)
		json_object_set_new(data, "sequence_number", json_integer(c->seq++));
	text = json_dump_compact(data, NULL);
	json_decref(data);
	if (!text)
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a reply");
	rc = dynbuf_addf(c->out, "event: %s\ndata: %s\n\n", event, text);
	free(text);
	return rc;
}

static int start(compat_reply *c)
{
	compat_state s;

	if (c->started)
		return 0;
	c->started = true;
	s = state_of(c);
	return c->ops->start(&s, emit, c);
}

/* Close the block being streamed. */
static int close_open(compat_reply *c)
{
	compat_state s = state_of(c);
	int which = c->open;

	c->open = -1;
	if (which == -2)
		return c->ops->text_end(&s, emit, c);
	if (which >= 0) {
		c->tools[which].ended = true;
		return c->ops->tool_end(&s, &c->views[which], emit, c);
	}
	return 0;
}

static int end(compat_reply *c)
{
	compat_state s;
	int rc;

	if (c->ended)
		return 0;
	if ((rc = start(c)) != 0 || (rc = close_open(c)) != 0)
		return rc;
	if (c->text_index < 0 && c->ntools == 0) {
		/* nothing at all: an empty text block, as a reply has one */
		c->text_index = c->nblocks++;
		s = state_of(c);
		if ((rc = c->ops->text_start(&s, emit, c)) != 0 ||
		    (rc = c->ops->text_end(&s, emit, c)) != 0)
			return rc;
	}
	c->ended = true;
	s = state_of(c);
	return c->ops->end(&s, emit, c);
}

/* A text delta of the stream. */
static int text_delta(compat_reply *c, const char *delta)
{
	compat_state s;
	int rc;

	if ((rc = start(c)) != 0 || (rc = dynbuf_add(&c->text, delta, strlen(delta))) != 0)
		return rc;
	if (c->open != -2) {
		/* text after a tool call: kept for the whole reply, not streamed
		 * (a block cannot be reopened) */
		if (c->text_index >= 0)
			return 0;
		if ((rc = close_open(c)) != 0)
			return rc;
		c->text_index = c->nblocks++;
		c->open = -2;
		s = state_of(c);
		if ((rc = c->ops->text_start(&s, emit, c)) != 0)
			return rc;
	}
	s = state_of(c);
	return c->ops->text_delta(&s, delta, emit, c);
}

/* The tool call of the engine's index `idx`, made when new (NULL when
 * there are too many). */
static struct tool *tool_of(compat_reply *c, int idx)
{
	struct tool *t;

	for (size_t i = 0; i < c->ntools; i++)
		if (c->tools[i].chat_index == idx)
			return &c->tools[i];
	if (c->ntools >= COMPAT_MAX_TOOLS)
		return NULL;
	t = &c->tools[c->ntools++];
	memset(t, 0, sizeof(*t));
	t->chat_index = idx;
	t->t.out_index = -1;
	dynbuf_init(&t->args, COMPAT_MAX_BODY);
	snprintf(t->t.id, sizeof(t->t.id), "call_%.80s_%d", c->id, idx);
	return t;
}

/* One element of a chunk's delta.tool_calls (or of a whole message's
 * tool_calls when !stream). */
static int tool_delta(compat_reply *c, const json_t *tc, size_t pos, bool stream)
{
	const json_t *ix = json_object_get(tc, "index");
	const json_t *fn = json_object_get(tc, "function");
	const char *id = json_string_value(json_object_get(tc, "id"));
	const char *name = json_string_value(json_object_get(fn, "name"));
	const char *args = json_string_value(json_object_get(fn, "arguments"));
	struct tool *t = tool_of(c, json_is_integer(ix) && json_integer_value(ix) >= 0 &&
	    json_integer_value(ix) < 1024 ? (int)json_integer_value(ix) : (int)pos);
	compat_state s;
	int rc;

	if (!t)
		return troop_error_set(TROOP_ETOOLARGE, "more than %d tool calls in a reply",
		    COMPAT_MAX_TOOLS);
	if (id && id[0] && !t->started)
		snprintf(t->t.id, sizeof(t->t.id), "%s", id);
	if (name && name[0] && !t->started)
		snprintf(t->t.name, sizeof(t->t.name), "%s", name);
	if (args && (rc = dynbuf_add(&t->args, args, strlen(args))) != 0)
		return rc;
	if (!stream) {
		t->t.out_index = c->nblocks++;
		t->started = t->ended = true;
		return 0;
	}
	if (!t->started) {
		if (!t->t.name[0])
			return 0;  /* its name comes later */
		if ((rc = start(c)) != 0 || (rc = close_open(c)) != 0)
			return rc;
		t->started = true;
		t->t.out_index = c->nblocks++;
		c->open = (int)(t - c->tools);
		s = state_of(c);
		if ((rc = c->ops->tool_start(&s, &c->views[c->open], emit, c)) != 0)
			return rc;
		/* what came before the name */
		if (dynbuf_len(&t->args))
			return c->ops->tool_delta(&s, &c->views[c->open], dynbuf_ptr(&t->args),
			    emit, c);
		return 0;
	}
	if (!args || !args[0] || c->open != (int)(t - c->tools))
		return 0;  /* a closed block's arguments: kept for the whole reply */
	s = state_of(c);
	return c->ops->tool_delta(&s, &c->views[c->open], args, emit, c);
}

/* The usage object of a chat reply, when it is one. */
static void take_usage(compat_reply *c, const json_t *u)
{
	const json_t *p = json_object_get(u, "prompt_tokens");
	const json_t *q = json_object_get(u, "completion_tokens");

	if (json_is_integer(p) && json_integer_value(p) >= 0)
		c->in_tok = json_integer_value(p);
	if (json_is_integer(q) && json_integer_value(q) >= 0)
		c->out_tok = json_integer_value(q);
}

static void take_finish(compat_reply *c, const json_t *choice)
{
	const char *f = json_string_value(json_object_get(choice, "finish_reason"));

	if (f && f[0])
		snprintf(c->finish, sizeof(c->finish), "%s", f);
}

/* An error the engine reported: the API's error event, and the end. */
static int stream_error(compat_reply *c, const json_t *e)
{
	const char *msg = json_string_value(json_object_get(e, "message"));
	char *ev;
	int rc;

	if (!msg)
		msg = json_string_value(e);
	ev = api_error_event(c->kind, TROOP_EUPSTREAM, msg ? msg : "the engine failed",
	    c->seq++);
	c->ended = true;
	if (!ev)
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a reply");
	rc = dynbuf_add(c->out, ev, strlen(ev));
	free(ev);
	return rc;
}

/* Set "model" of obj to the advertised name where it has one. */
static void set_model(compat_reply *c, json_t *obj)
{
	if (json_is_string(json_object_get(obj, "model")))
		json_object_set_new(obj, "model", json_string(c->model));
}

static void set_default_int(json_t *obj, const char *key, long v)
{
	if (!json_is_integer(json_object_get(obj, key)))
		json_object_set_new(obj, key, json_integer(v));
}

/* One event of a native reply, revised (compat_native_new), into c->out. */
static int native_event(compat_reply *c, const char *event, const char *data, size_t len)
{
	json_t *ev = json_loadb(data, len, 0, NULL);
	const char *type;
	char *text;
	int rc;

	if (!json_is_object(ev)) {
		json_decref(ev);
		return dynbuf_addf(c->out, "%s%s%sdata: %.*s\n\n", event[0] ? "event: " : "", event,
		    event[0] ? "\n" : "", (int)len, data);
	}
	type = json_string_value(json_object_get(ev, "type"));
	set_model(c, json_object_get(ev, "response"));
	set_model(c, json_object_get(ev, "message"));
	if (c->kind == API_RESPONSES && type) {
		json_t *r = json_object_get(ev, "response");

		if (json_is_object(r) && !json_object_get(r, "output"))
			json_object_set_new(r, "output", json_array());
		if (strcmp(type, "response.output_item.added") == 0 &&
		    !json_is_integer(json_object_get(ev, "output_index"))) {
			c->out_index++;
			c->content_index = -1;
		}
		if (strcmp(type, "response.content_part.added") == 0 &&
		    !json_is_integer(json_object_get(ev, "content_index")))
			c->content_index++;
		if (strncmp(type, "response.output_item.", 21) == 0 ||
		    strncmp(type, "response.content_part.", 22) == 0 ||
		    strncmp(type, "response.output_text.", 21) == 0)
			set_default_int(ev, "output_index", c->out_index < 0 ? 0 : c->out_index);
		if (strncmp(type, "response.content_part.", 22) == 0 ||
		    strncmp(type, "response.output_text.", 21) == 0)
			set_default_int(ev, "content_index",
			    c->content_index < 0 ? 0 : c->content_index);
		if (json_is_integer(json_object_get(ev, "sequence_number")))
			c->seq = (long)json_integer_value(json_object_get(ev, "sequence_number")) + 1;
		else
			json_object_set_new(ev, "sequence_number", json_integer(c->seq++));
	}
	text = json_dump_compact(ev, NULL);
	json_decref(ev);
	if (!text)
		return troop_error_set(TROOP_ENOMEM, "out of memory revising a reply");
	rc = dynbuf_addf(c->out, "%s%s%sdata: %s\n\n", event[0] ? "event: " : "", event,
	    event[0] ? "\n" : "", text);
	free(text);
	return rc;
}

static int on_event(void *arg, const char *event, const char *data, size_t len,
    const char *id)
{
	compat_reply *c = arg;
	json_t *ev, *choice;
	const char *delta;
	int rc = 0;

	(void)id;
	if (c->native) {
		if (!c->err)
			c->err = native_event(c, event, data, len);
		return 0;
	}
	if (c->ended || c->err)
		return 0;
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		c->err = end(c);
		return 0;
	}
	ev = json_loadb(data, len, 0, NULL);
	if (!json_is_object(ev)) {
		json_decref(ev);
		return 0;  /* not a chunk: nothing to say */
	}
	if (json_object_get(ev, "error")) {
		c->err = stream_error(c, json_object_get(ev, "error"));
		json_decref(ev);
		return 0;
	}
	choice = json_array_get(json_object_get(ev, "choices"), 0);
	delta = json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
	if (delta && delta[0])
		rc = text_delta(c, delta);
	{
		const json_t *tcs = json_object_get(json_object_get(choice, "delta"), "tool_calls");
		const json_t *tc;
		size_t i;

		json_array_foreach(tcs, i, tc)
			if (rc == 0)
				rc = tool_delta(c, tc, i, true);
	}
	take_finish(c, choice);
	take_usage(c, json_object_get(ev, "usage"));
	json_decref(ev);
	c->err = rc;
	return 0;
}

int compat_reply_new(compat_reply **out, api_kind kind, bool event_stream, const char *id,
    const char *model, int64_t created)
{
	compat_reply *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a reply");
	c->kind = kind == API_MESSAGES ? API_MESSAGES : API_RESPONSES;
	c->ops = c->kind == API_MESSAGES ? &compat_messages_ops : &compat_responses_ops;
	c->text_index = -1;
	c->open = -1;
	c->sse = event_stream;
	snprintf(c->id, sizeof(c->id), "%s", id ? id : "0");
	snprintf(c->model, sizeof(c->model), "%s", model ? model : "");
	c->created = created;
	dynbuf_init(&c->body, COMPAT_MAX_BODY);
	dynbuf_init(&c->text, COMPAT_MAX_BODY);
	if (event_stream && sse_parser_new(&c->parser, COMPAT_MAX_EVENT, on_event, c) != 0) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a reply");
	}
	*out = c;
	return 0;
}

int compat_native_new(compat_reply **out, api_kind kind, bool event_stream, const char *model)
{
	int rc = compat_reply_new(out, kind, event_stream, NULL, model, 0);

	if (rc == 0) {
		(*out)->native = true;
		(*out)->out_index = -1;
		(*out)->content_index = -1;
	}
	return rc;
}

int compat_reply_feed(compat_reply *c, const char *data, size_t len, dynbuf *out)
{
	int rc;

	if (len == 0)
		return 0;
	if (!c->sse)
		return dynbuf_add(&c->body, data, len);
	c->out = out;
	rc = sse_parser_feed(c->parser, data, len);
	c->out = NULL;
	if (rc == 0)
		rc = c->err;
	c->err = 0;
	return rc;
}

/* A whole chat completion into the API's body, into out. */
static int finish_json(compat_reply *c, dynbuf *out)
{
	json_t *in = json_loadb(dynbuf_ptr(&c->body) ? dynbuf_ptr(&c->body) : "",
	    dynbuf_len(&c->body), 0, NULL);
	json_t *choice = json_array_get(json_object_get(in, "choices"), 0);
	const char *text = json_string_value(json_object_get(json_object_get(choice, "message"),
	    "content"));
	json_t *body;
	char *dump;
	compat_state s;
	int rc;

	if (c->native) {
		/* the engine's own body, with the advertised model name */
		if (!json_is_object(in) || !json_is_string(json_object_get(in, "model"))) {
			json_decref(in);
			return dynbuf_add(out, dynbuf_ptr(&c->body), dynbuf_len(&c->body));
		}
		set_model(c, in);
		dump = json_dump_compact(in, NULL);
		json_decref(in);
		if (!dump)
			return troop_error_set(TROOP_ENOMEM, "out of memory revising a reply");
		rc = dynbuf_add(out, dump, strlen(dump));
		free(dump);
		return rc;
	}
	if (!json_is_object(choice)) {
		json_decref(in);
		body = api_error_body(c->kind, 502, "server_error", "upstream_error",
		    "the engine's reply is not a chat completion");
	} else {
		const json_t *tcs = json_object_get(json_object_get(choice, "message"), "tool_calls");
		const json_t *tc;
		size_t i;

		if (text && (rc = dynbuf_add(&c->text, text, strlen(text))) != 0) {
			json_decref(in);
			return rc;
		}
		if ((text && text[0]) || json_array_size(tcs) == 0)
			c->text_index = c->nblocks++;
		json_array_foreach(tcs, i, tc) {
			if ((rc = tool_delta(c, tc, i, false)) != 0) {
				json_decref(in);
				return rc;
			}
		}
		take_finish(c, choice);
		take_usage(c, json_object_get(in, "usage"));
		json_decref(in);
		s = state_of(c);
		body = c->ops->body(&s);
	}
	dump = body ? json_dump_compact(body, NULL) : NULL;
	json_decref(body);
	if (!dump)
		return troop_error_set(TROOP_ENOMEM, "out of memory translating a reply");
	rc = dynbuf_add(out, dump, strlen(dump));
	free(dump);
	return rc;
}

int compat_reply_finish(compat_reply *c, dynbuf *out)
{
	int rc;

	if (!c->sse)
		return finish_json(c, out);
	c->out = out;
	/* a last event without its blank line still counts */
	rc = sse_parser_feed(c->parser, "\n\n", 2);
	if (rc == 0)
		rc = c->err;
	if (rc == 0 && !c->native)
		rc = end(c);
	c->out = NULL;
	c->err = 0;
	return rc;
}

long compat_reply_seq(const compat_reply *c)
{
	return c ? c->seq : 0;
}

void compat_reply_free(compat_reply *c)
{
	if (!c)
		return;
	sse_parser_free(c->parser);
	dynbuf_free(&c->body);
	dynbuf_free(&c->text);
	for (size_t i = 0; i < c->ntools; i++)
		dynbuf_free(&c->tools[i].args);
	free(c);
}
