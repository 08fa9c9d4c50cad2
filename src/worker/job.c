/*
 * job.c - job records, receipt bodies and the token counter of job.h.
 *
 * The counter sits on the hot path of every streamed reply, so an event
 * is only parsed as JSON when it mentions "usage"; the content-delta test
 * is a scan for a non-empty "content" / "text" string value.
 */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "error.h"
#include "proto.h"
#include "sse.h"

const char *job_outcome_name(job_outcome o)
{
	switch (o) {
	case JOB_OK: return "ok";
	case JOB_ERROR: return "error";
	case JOB_CUT_OFF: return "cut_off";
	case JOB_CLIENT_GONE: return "client_gone";
	case JOB_REJECTED: return "rejected";
	case JOB_ENGINE_ERROR: return "engine_error";
	}
	return "error";
}

bool job_id_valid(const char *id)
{
	size_t n = 0;

	if (!id)
		return false;
	for (; id[n]; n++) {
		char c = id[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
		if (n >= JOB_ID_MAX)
			return false;
	}
	return n > 0;
}

json_t *job_receipt_body(const worker_job *job, const char *node_id)
{
	proto_receipt r;

	memset(&r, 0, sizeof(r));
	snprintf(r.job_id, sizeof(r.job_id), "%s", job->job_id);
	snprintf(r.node_id, sizeof(r.node_id), "%s", node_id);
	snprintf(r.requester, sizeof(r.requester), "%s", job->requester);
	snprintf(r.model, sizeof(r.model), "%s", job->model);
	/* the time charged for: nothing for a job that produced nothing */
	r.duration_ms = job->duration_ms < 0 || job->outcome == JOB_ENGINE_ERROR ||
	    job->outcome == JOB_REJECTED ? 0 : job->duration_ms;
	r.prompt_tokens = job->prompt_tokens;
	r.completion_tokens = job->completion_tokens;
	snprintf(r.outcome, sizeof(r.outcome), "%s", job_outcome_name(job->outcome));
	r.started_at = job->started_at_ms / 1000;
	r.ended_at = job->ended_at_ms / 1000;
	snprintf(r.response_digest, sizeof(r.response_digest), "%s", job->response_digest);
	return proto_receipt_encode(&r);
}

/* ---- token counter --------------------------------------------------------- */

struct usage_counter {
	bool sse;
	sse_parser *parser;
	int64_t prompt, completion, deltas;
	bool reported;
	char tail[JOB_TAIL];
	size_t tail_len;
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* After a quoted key at q: its value (past white space, ':', white
 * space), or NULL when no ':' follows (not a member's key). */
static const char *member_value(const char *q, const char *end)
{
	while (q < end && is_ws(*q))
		q++;
	if (q >= end || *q != ':')
		return NULL;
	q++;
	while (q < end && is_ws(*q))
		q++;
	return q;
}

/* Whether `s` holds `key` (quoted, e.g. "\"content\"") as a member whose
 * value is a non-empty string. */
static bool has_nonempty_string(const char *s, size_t n, const char *key)
{
	size_t kl = strlen(key);
	const char *end = s + n, *p = s;

	while ((p = memmem(p, (size_t)(end - p), key, kl)) != NULL) {
		const char *q = member_value(p + kl, end);

		p += kl;
		if (q && q + 1 < end && q[0] == '"' && q[1] != '"')
			return true;
	}
	return false;
}

/* Whether `s` has a "usage" member that is not null. */
static bool usage_present(const char *s, size_t n)
{
	const char *end = s + n, *p = s;

	while ((p = memmem(p, (size_t)(end - p), "\"usage\"", 7)) != NULL) {
		const char *q = member_value(p + 7, end);

		p += 7;
		if (q && q < end && *q != 'n')
			return true;
	}
	return false;
}

void usage_scan_event_search(const char *s, size_t n, bool *usage, bool *token)
{
	*usage = usage_present(s, n);
	*token = has_nonempty_string(s, n, "\"content\"") ||
	    has_nonempty_string(s, n, "\"text\"") || has_nonempty_string(s, n, "\"delta\"");
}

#if defined(__SSE2__)
/* The key looked for that starts at q (after its opening quote): 1
 * "usage", 2 a token key ("content", "text", "delta"), 0 none; *after:
 * just past its closing quote. */
static int key_at(const char *q, const char *end, const char **after)
{
	size_t left = (size_t)(end - q);

#define KEY(text, kind) \
	if (left >= sizeof(text) - 1 && memcmp(q, text, sizeof(text) - 1) == 0) { \
		*after = q + sizeof(text) - 1; \
		return kind; \
	} \
	break
	switch (q[0]) {
	case 'u': KEY("usage\"", 1);
	case 'c': KEY("content\"", 2);
	case 't': KEY("text\"", 2);
	case 'd': KEY("delta\"", 2);
	}
#undef KEY
	return 0;
}

void usage_scan_event(const char *s, size_t n, bool *usage, bool *token)
{
	const char *end = s + n, *skip = s;
	const __m128i quote = _mm_set1_epi8('"'), u = _mm_set1_epi8('u'),
	    c = _mm_set1_epi8('c'), t = _mm_set1_epi8('t'), d = _mm_set1_epi8('d');

	*usage = *token = false;
	for (size_t at = 0; at < n; at += 16) {
		unsigned mask = 0;

		/* bit k: s[at + k] is a quote followed by u, c, t or d */
		if (at + 17 <= n) {
			__m128i next = _mm_loadu_si128((const __m128i *)(s + at + 1));
			__m128i first = _mm_or_si128(
			    _mm_or_si128(_mm_cmpeq_epi8(next, u), _mm_cmpeq_epi8(next, c)),
			    _mm_or_si128(_mm_cmpeq_epi8(next, t), _mm_cmpeq_epi8(next, d)));
			__m128i q = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(s + at)),
			    quote);
			mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(q, first));
		} else {
			for (size_t k = 0; at + k + 1 < n; k++) {
				char x = s[at + k + 1];
				if (s[at + k] == '"' && (x == 'u' || x == 'c' || x == 't' || x == 'd'))
					mask |= 1u << k;
			}
		}
		while (mask) {
			const char *p = s + at + __builtin_ctz(mask), *q;
			int kind;

			mask &= mask - 1;
			/* a match resumes after its key, as the searches do */
			if (p < skip || (kind = key_at(p + 1, end, &q)) == 0)
				continue;
			skip = q;
			if ((q = member_value(q, end)) == NULL)
				continue;
			if (kind == 1)
				*usage = *usage || (q < end && *q != 'n');
			else
				*token = *token || (q + 1 < end && q[0] == '"' && q[1] != '"');
			if (*usage && *token)
				return;
		}
	}
}
#else
void usage_scan_event(const char *s, size_t n, bool *usage, bool *token)
{
	usage_scan_event_search(s, n, usage, token);
}
#endif

/* Read the usage object if it is one: OpenAI {"prompt_tokens",
 * "completion_tokens"} (both replaced), or the Responses and Anthropic
 * {"input_tokens","output_tokens"} (each replaced when present: an
 * Anthropic stream gives the input count in message_start and the output
 * count in message_delta).  Returns true when it had at least one count. */
static bool take_usage(usage_counter *u, const json_t *usage)
{
	const json_t *pt = json_object_get(usage, "prompt_tokens");
	const json_t *ct = json_object_get(usage, "completion_tokens");
	const json_t *it = json_object_get(usage, "input_tokens");
	const json_t *ot = json_object_get(usage, "output_tokens");

	if (json_is_object(usage) && !json_is_integer(pt) && !json_is_integer(ct) &&
	    (json_is_integer(it) || json_is_integer(ot))) {
		if (json_is_integer(it)) {
			/* Anthropic counts cached input apart */
			const json_t *cr = json_object_get(usage, "cache_read_input_tokens");
			const json_t *cc = json_object_get(usage, "cache_creation_input_tokens");

			u->prompt = json_integer_value(it) >= 0 ? json_integer_value(it) : 0;
			if (json_is_integer(cr) && json_integer_value(cr) > 0 &&
			    json_integer_value(cr) < INT32_MAX)
				u->prompt += json_integer_value(cr);
			if (json_is_integer(cc) && json_integer_value(cc) > 0 &&
			    json_integer_value(cc) < INT32_MAX)
				u->prompt += json_integer_value(cc);
		}
		if (json_is_integer(ot))
			u->completion = json_integer_value(ot) >= 0 ? json_integer_value(ot) : 0;
		u->reported = true;
		return true;
	}
	if (!json_is_object(usage) || (!json_is_integer(pt) && !json_is_integer(ct)))
		return false;
	u->prompt = json_is_integer(pt) && json_integer_value(pt) >= 0 ?
	    json_integer_value(pt) : 0;
	u->completion = json_is_integer(ct) && json_integer_value(ct) >= 0 ?
	    json_integer_value(ct) : 0;
	u->reported = true;
	return true;
}

static int on_event(void *arg, const char *event, const char *data, size_t len,
    const char *id)
{
	usage_counter *u = arg;
	bool usage, token;

	if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
		return 0;
	usage_scan_event(data, len, &usage, &token);
	/* usage: the chunk's own (chat, completions, Anthropic message_delta),
	 * the Response's (Responses response.completed) or the Message's
	 * (Anthropic message_start); a "usage":null is none */
	if (usage) {
		json_t *ev = json_loadb(data, len, 0, NULL);

		if (ev && (take_usage(u, json_object_get(ev, "usage")) ||
		    take_usage(u, json_object_get(json_object_get(ev, "response"), "usage")) ||
		    take_usage(u, json_object_get(json_object_get(ev, "message"), "usage")))) {
			json_decref(ev);
			return 0;
		}
		json_decref(ev);
	}
	/* a token event: chat "content", completions and Anthropic text_delta
	 * "text", Responses output_text.delta "delta" */
	if (token)
		u->deltas++;
	return 0;
}

int usage_counter_new(usage_counter **out, bool event_stream)
{
	usage_counter *u = calloc(1, sizeof(*u));

	*out = NULL;
	if (!u)
		return troop_error_set(TROOP_ENOMEM, "out of memory counting tokens");
	u->sse = event_stream;
	if (event_stream && sse_parser_new(&u->parser, JOB_MAX_EVENT, on_event, u) != 0) {
		free(u);
		return troop_error_set(TROOP_ENOMEM, "out of memory counting tokens");
	}
	*out = u;
	return 0;
}

void usage_counter_feed(usage_counter *u, const char *data, size_t len)
{
	if (!u || len == 0)
		return;
	if (u->sse) {
		/* an over-long event makes the parser stop; counting then stops */
		(void)sse_parser_feed(u->parser, data, len);
		return;
	}
	if (len >= JOB_TAIL) {
		memcpy(u->tail, data + len - JOB_TAIL, JOB_TAIL);
		u->tail_len = JOB_TAIL;
		return;
	}
	if (u->tail_len + len > JOB_TAIL) {
		size_t drop = u->tail_len + len - JOB_TAIL;
		memmove(u->tail, u->tail + drop, u->tail_len - drop);
		u->tail_len -= drop;
	}
	memcpy(u->tail + u->tail_len, data, len);
	u->tail_len += len;
}

/* The last "usage": {...} in the tail of a JSON body. */
static void tail_usage(usage_counter *u)
{
	const char *p = NULL, *s = u->tail, *end = u->tail + u->tail_len;

	for (const char *q = s; (q = memmem(q, (size_t)(end - q), "\"usage\"", 7)); q += 7)
		p = q;
	if (!p || (p = member_value(p + 7, end)) == NULL)
		return;
	{
		json_error_t e;
		json_t *v = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK, &e);
		(void)take_usage(u, v);
		json_decref(v);
	}
}

void usage_counter_result(usage_counter *u, int64_t *prompt, int64_t *completion,
    bool *reported)
{
	*prompt = *completion = 0;
	*reported = false;
	if (!u)
		return;
	if (!u->sse && !u->reported)
		tail_usage(u);
	if (u->reported) {
		*prompt = u->prompt;
		*completion = u->completion;
		*reported = true;
	} else {
		*completion = u->deltas;
	}
}

void usage_counter_free(usage_counter *u)
{
	if (!u)
		return;
	sse_parser_free(u->parser);
	free(u);
}
