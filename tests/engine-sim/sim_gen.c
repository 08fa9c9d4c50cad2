/*
 * sim_gen.c - engine-sim's inference endpoints: Ollama /api/chat (NDJSON
 * stream or one JSON), OpenAI /v1/chat/completions and /v1/completions
 * (SSE "data: {json}\n\n" chunks, an optional usage chunk, "data: [DONE]",
 * or one JSON) and /v1/embeddings, in the shapes of the recorded replies in
 * shared/fixtures/engines.  A test tool, not an engine.
 *
 * Text: token i of a reply is a word from a fixed list picked by a hash of
 * the prompt and i, so a reply is a fixed function of the prompt and the
 * token count.  With --deterministic the hash also covers the request's
 * seed, the whole prompt and the model's digest (what a temperature-0
 * engine's output depends on); with --cheat the tokens from the first
 * (other) or the K-th (smaller:K) on come from another hash, as from
 * other weights.  Pacing: each stream owns an evtimer; the first token comes
 * --ttft-ms after the request, then one event per 1/--tokens-per-second.
 * With 0 tokens per second, events are written as fast as the client reads
 * them (the next batch goes out when the connection's output has drained).
 * A stream never queues more than SIM_MAX_PENDING bytes for a slow reader.
 *
 * Lifetime: a stream lives from its request until its reply ends or its
 * client goes away (evhttp close callback).  When libevent fails a
 * connection in the middle of a reply it detaches the request (its
 * connection becomes NULL) and leaves it to us to free.
 */
#include "sim.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#define SIM_MAX_PENDING (256 * 1024) /* queued output before we wait */
#define SIM_BATCH_PENDING (16 * 1024) /* unpaced: refill below this */
#define SIM_EMBED_DIM 16
#define SIM_MAX_INPUTS 2048

enum phase {
	PH_WAIT_FIRST,  /* before the first token (ttft) */
	PH_TOKENS,      /* writing tokens */
	PH_KILL,        /* die-* fault: data flushed, now kill */
	PH_HANG,        /* never answered */
};

struct sim_stream {
	struct sim *sim;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;
	enum sim_api api;
	enum phase phase;
	bool stream;
	bool include_usage;
	bool length_limited;     /* the client set max_tokens */
	bool waiting_drain;      /* paused until the output drains */
	bool kill_on_drain;
	uint64_t seed;
	uint64_t cheat_seed;     /* --cheat: the other weights' text */
	long cheat_from;         /* first token from cheat_seed; -1 never */
	long n_tokens;
	long emitted;
	long events;
	long prompt_tokens;
	long interval_us;        /* between tokens; 0 = unpaced */
	uint64_t first_ns;       /* when the first token is due (monotonic) */
	uint64_t t0_ns;
	long long created;
	char id[48];
	char *model_json;        /* the model as a JSON string, quoted */
	char *model;
	struct sim_stream *prev, *next;
};

/* ==== deterministic text ================================================ */

static const char *const words[] = {
	"the", "sky", "looks", "blue", "because", "light", "scatters", "in", "air",
	"and", "short", "waves", "bend", "more", "than", "long", "ones", "so",
	"we", "see", "a", "bright", "dome", "over", "fields", "of", "green",
	"grass", "while", "clouds", "drift", "slowly", "across", "quiet", "hills",
	"river", "stones", "warm", "morning", "sun", "rises", "early", "birds",
	"sing", "soft", "songs", "wind", "moves", "through", "tall", "trees",
	"every", "leaf", "turns", "gold", "when", "autumn", "comes", "back",
	"again", "people", "walk", "home", "together",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Token i of n for `seed` into out: "Word", " word", last one ends ".". */
static size_t token_text(char *out, size_t len, uint64_t seed, long i, long n)
{
	const char *w = words[splitmix(seed + (uint64_t)i) % N_WORDS];
	int k = snprintf(out, len, "%s%s%s", i ? " " : "", w, i == n - 1 ? "." : "");

	if (i == 0)
		out[0] = (char)toupper((unsigned char)out[0]);
	return k > 0 && (size_t)k < len ? (size_t)k : 0;
}

/* Token i of stream s: the honest text, or the cheat's from cheat_from. */
static size_t stream_token(char *out, size_t len, const struct sim_stream *s, long i)
{
	uint64_t seed = s->cheat_from >= 0 && i >= s->cheat_from ? s->cheat_seed : s->seed;

	return token_text(out, len, seed, i, s->n_tokens);
}

static long count_words(const char *s)
{
	long n = 0;
	bool in = false;

	for (; s && *s; s++) {
		bool sp = isspace((unsigned char)*s) != 0;
		if (!sp && !in)
			n++;
		in = !sp;
	}
	return n;
}

/* Words of a message "content": a string, or a list of {"type":"text",
 * "text":...} parts. */
static long content_words(const json_t *content, const char **last_text)
{
	long n = 0;
	size_t i;
	json_t *part;

	if (json_is_string(content)) {
		*last_text = json_string_value(content);
		return count_words(json_string_value(content));
	}
	json_array_foreach(content, i, part) {
		const char *t = json_string_value(json_object_get(part, "text"));
		if (t) {
			n += count_words(t);
			*last_text = t;
		}
	}
	return n;
}

/* ==== output =============================================================== */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void rfc3339_now(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%09ldZ", sec, ts.tv_nsec);
}

static size_t pending_output(const struct sim_stream *s)
{
	struct bufferevent *bev = s->conn ? evhttp_connection_get_bufferevent(s->conn)
	    : NULL;

	return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void stream_free(struct sim_stream *s)
{
	struct sim *sim;

	if (!s)
		return;
	sim = s->sim;
	if (s->timer)
		event_free(s->timer);
	if (s->req) {
		struct evhttp_connection *conn = evhttp_request_get_connection(s->req);

		if (conn)
			evhttp_connection_set_closecb(conn, NULL, NULL);
		else
			evhttp_request_free(s->req); /* detached by libevent: ours */
	}
	if (s->prev)
		s->prev->next = s->next;
	else
		sim->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	sim->stats.active--;
	free(s->model_json);
	free(s->model);
	free(s);
}

/* The client went away (or its connection failed) before the end. */
static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct sim_stream *s = arg;

	/* still attached: libevent frees the request right after this call */
	if (s->req && evhttp_request_get_connection(s->req) != NULL)
		s->req = NULL;
	s->conn = NULL;
	s->sim->stats.disconnects++;
	stream_free(s);
}

static void schedule(struct sim_stream *s, long us)
{
	struct timeval tv = { us / 1000000, us % 1000000 };

	evtimer_add(s->timer, &tv);
}

static void on_drained(struct evhttp_connection *conn, void *arg)
{
	struct sim_stream *s = arg;

	if (s->kill_on_drain) {
		/* never free a connection inside its own callback */
		s->kill_on_drain = false;
		s->phase = PH_KILL;
		schedule(s, 0);
	} else if (s->waiting_drain) {
		s->waiting_drain = false;
		schedule(s, 0);
	}
}

/* Write one event as its own HTTP chunk.  Returns false when a die-* fault
 * has just fired (no more writes). */
static bool write_event(struct sim_stream *s, const char *data, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	enum sim_fault f = s->sim->fault;

	if (!buf)
		return false;
	evbuffer_add(buf, data, len);
	evhttp_send_reply_chunk_with_cb(s->req, buf, on_drained, s);
	evbuffer_free(buf);
	s->events++;
	if ((f == SIM_FAULT_DIE_STREAM || f == SIM_FAULT_DIE_PROCESS) &&
	    s->events >= s->sim->fault_after) {
		s->kill_on_drain = true;
		return false;
	}
	return true;
}

static bool write_fmt(struct sim_stream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool write_fmt(struct sim_stream *s, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return false;
	return write_event(s, buf, (size_t)n);
}

static const char *finish_reason(const struct sim_stream *s)
{
	return s->length_limited ? "length" : "stop";
}

/* ==== streamed replies ===================================================== */

static bool write_token(struct sim_stream *s, long i)
{
	char tok[64];

	stream_token(tok, sizeof(tok), s, i);
	switch (s->api) {
	case SIM_API_OLLAMA_CHAT: {
		char when[48];

		rfc3339_now(when, sizeof(when));
		return write_fmt(s, "{\"model\":%s,\"created_at\":\"%s\",\"message\":"
		    "{\"role\":\"assistant\",\"content\":\"%s\"},\"done\":false}\n",
		    s->model_json, when, tok);
	}
	case SIM_API_CHAT:
		return write_fmt(s, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\","
		    "\"created\":%lld,\"model\":%s,\"choices\":[{\"index\":0,\"delta\":"
		    "{\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
		    s->id, s->created, s->model_json, tok);
	default:
		return write_fmt(s, "data: {\"id\":\"%s\",\"object\":\"text_completion\","
		    "\"created\":%lld,\"model\":%s,\"choices\":[{\"index\":0,\"text\":\"%s\","
		    "\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}]}\n\n",
		    s->id, s->created, s->model_json, tok);
	}
}

/* The closing events; false when a fault fired in between. */
static bool write_tail(struct sim_stream *s)
{
	long pt = s->prompt_tokens, ct = s->emitted;

	if (s->api == SIM_API_OLLAMA_CHAT) {
		char when[48];
		uint64_t total = now_ns() - s->t0_ns;

		rfc3339_now(when, sizeof(when));
		return write_fmt(s, "{\"model\":%s,\"created_at\":\"%s\",\"message\":"
		    "{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
		    "\"done_reason\":\"%s\",\"total_duration\":%" PRIu64 ",\"load_duration\":"
		    "%d,\"prompt_eval_count\":%ld,\"prompt_eval_duration\":%" PRIu64 ","
		    "\"eval_count\":%ld,\"eval_duration\":%" PRIu64 "}\n", s->model_json, when,
		    finish_reason(s), total, 1000000, pt, total / 10, ct, total - total / 10);
	}
	if (s->api == SIM_API_CHAT) {
		if (!write_fmt(s, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\","
		    "\"created\":%lld,\"model\":%s,\"choices\":[{\"index\":0,\"delta\":"
		    "{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"%s\","
		    "\"stop_reason\":null}]}\n\n", s->id, s->created, s->model_json,
		    finish_reason(s)))
			return false;
	} else {
		if (!write_fmt(s, "data: {\"id\":\"%s\",\"object\":\"text_completion\","
		    "\"created\":%lld,\"model\":%s,\"choices\":[{\"index\":0,\"text\":\"\","
		    "\"logprobs\":null,\"finish_reason\":\"%s\",\"stop_reason\":null}]}\n\n",
		    s->id, s->created, s->model_json, finish_reason(s)))
			return false;
	}
	if (s->include_usage &&
	    !write_fmt(s, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,"
	    "\"model\":%s,\"choices\":[],\"usage\":{\"prompt_tokens\":%ld,"
	    "\"total_tokens\":%ld,\"completion_tokens\":%ld}}\n\n", s->id,
	    s->api == SIM_API_CHAT ? "chat.completion.chunk" : "text_completion",
	    s->created, s->model_json, pt, pt + ct, ct))
		return false;
	return write_event(s, "data: [DONE]\n\n", 14);
}

static void stream_end(struct sim_stream *s)
{
	struct evhttp_request *req = s->req;

	evhttp_connection_set_closecb(s->conn, NULL, NULL);
	s->req = NULL;
	evhttp_send_reply_end(req);
	s->sim->stats.completed++;
	stream_free(s);
}

static void kill_stream(struct sim_stream *s)
{
	struct evhttp_connection *conn = s->conn;

	s->sim->stats.faults++;
	if (s->sim->fault == SIM_FAULT_DIE_PROCESS) {
		fprintf(stderr, "engine-sim: fault die-process after %ld events\n", s->events);
		_exit(1);
	}
	/* drop the connection: the client sees the stream end with no final
	 * chunk; libevent frees the request with the connection */
	evhttp_connection_set_closecb(conn, NULL, NULL);
	s->req = NULL;
	s->conn = NULL;
	evhttp_connection_free(conn);
	stream_free(s);
}

/* ==== one-piece replies =================================================== */

static char *full_text(const struct sim_stream *s)
{
	size_t cap = (size_t)s->n_tokens * 24 + 1, len = 0;
	char *text = malloc(cap);

	if (!text)
		return NULL;
	text[0] = '\0';
	for (long i = 0; i < s->n_tokens; i++)
		len += stream_token(text + len, cap - len, s, i);
	return text;
}

static json_t *usage_json(long pt, long ct, bool details)
{
	if (details)
		return json_pack("{s:i,s:i,s:i,s:n}", "prompt_tokens", (int)pt,
		    "total_tokens", (int)(pt + ct), "completion_tokens", (int)ct,
		    "prompt_tokens_details");
	return json_pack("{s:i,s:i,s:i}", "prompt_tokens", (int)pt,
	    "total_tokens", (int)(pt + ct), "completion_tokens", (int)ct);
}

static void reply_whole(struct sim_stream *s)
{
	struct evhttp_request *req = s->req;
	char *text = full_text(s);
	long pt = s->prompt_tokens, ct = s->n_tokens;
	json_t *body = NULL;

	/* the request is libevent's again once the reply is sent */
	evhttp_connection_set_closecb(s->conn, NULL, NULL);
	s->req = NULL;

	if (!text) {
		sim_reply_error(s->sim, req, s->api == SIM_API_OLLAMA_CHAT, 500, false,
		    "out of memory");
		goto sent;
	}
	if (s->api == SIM_API_OLLAMA_CHAT) {
		char when[48];
		uint64_t total = now_ns() - s->t0_ns;

		rfc3339_now(when, sizeof(when));
		body = json_pack("{s:s,s:s,s:{s:s,s:s},s:b,s:s,s:I,s:I,s:i,s:I,s:i,s:I}",
		    "model", s->model, "created_at", when, "message", "role", "assistant",
		    "content", text, "done", 1, "done_reason", finish_reason(s),
		    "total_duration", (json_int_t)total, "load_duration", (json_int_t)1000000,
		    "prompt_eval_count", (int)pt, "prompt_eval_duration",
		    (json_int_t)(total / 10), "eval_count", (int)ct, "eval_duration",
		    (json_int_t)(total - total / 10));
	} else if (s->api == SIM_API_CHAT) {
		body = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s,s:n,s:n,s:n,s:n,s:[],"
		    "s:n},s:n,s:s,s:n,s:n}],s:n,s:n,s:o,s:n,s:n,s:n}",
		    "id", s->id, "object", "chat.completion", "created", (json_int_t)s->created,
		    "model", s->model, "choices", "index", 0, "message", "role", "assistant",
		    "content", text, "refusal", "annotations", "audio", "function_call",
		    "tool_calls", "reasoning", "logprobs", "finish_reason", finish_reason(s),
		    "stop_reason", "token_ids", "service_tier", "system_fingerprint",
		    "usage", usage_json(pt, ct, true), "prompt_logprobs", "prompt_token_ids",
		    "kv_transfer_params");
	} else {
		body = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:s,s:n,s:s,s:n,s:n}],s:n,s:n,"
		    "s:o,s:n}", "id", s->id, "object", "text_completion",
		    "created", (json_int_t)s->created, "model", s->model, "choices",
		    "index", 0, "text", text, "logprobs", "finish_reason", finish_reason(s),
		    "stop_reason", "prompt_logprobs", "service_tier", "system_fingerprint",
		    "usage", usage_json(pt, ct, true), "kv_transfer_params");
	}
	if (body)
		sim_reply_json(req, 200, body);
	else
		sim_reply_error(s->sim, req, s->api == SIM_API_OLLAMA_CHAT, 500, false,
		    "cannot build the reply");
	s->sim->stats.completed++;
sent:
	free(text);
	stream_free(s);
}

/* ==== the timer ============================================================ */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sim_stream *s = arg;
	int batch = 0;

	if (s->phase == PH_KILL) {
		kill_stream(s);
		return;
	}
	if (!s->stream) {
		/* the whole reply's generation time has passed */
		if (s->sim->fault == SIM_FAULT_DIE_STREAM ||
		    s->sim->fault == SIM_FAULT_DIE_PROCESS) {
			kill_stream(s);
			return;
		}
		reply_whole(s);
		return;
	}
	s->phase = PH_TOKENS;
	while (s->emitted < s->n_tokens) {
		if (pending_output(s) > SIM_MAX_PENDING) {
			s->waiting_drain = true; /* resumed by on_drained */
			return;
		}
		if (!write_token(s, s->emitted++))
			return; /* fault: killed once the data is out */
		if (s->interval_us > 0) {
			if (s->emitted < s->n_tokens) {
				/* deadlines from the first token, so timer latency does
				 * not add up over a long stream */
				uint64_t due = s->first_ns +
				    (uint64_t)s->emitted * (uint64_t)s->interval_us * 1000u;
				uint64_t now = now_ns();

				schedule(s, due > now ? (long)((due - now) / 1000u) : 0);
				return;
			}
			break;
		}
		/* unpaced: fill the socket, then wait for it to drain */
		if (pending_output(s) >= SIM_BATCH_PENDING || ++batch >= 64) {
			if (s->emitted < s->n_tokens) {
				s->waiting_drain = true;
				return;
			}
			break;
		}
	}
	if (!write_tail(s))
		return;
	stream_end(s);
}

/* ==== requests ============================================================= */

static bool want_stream(const json_t *body, bool def)
{
	json_t *v = json_object_get(body, "stream");

	return json_is_boolean(v) ? json_is_true(v) : def;
}

/* max tokens from the fields each API uses; -1 when absent, -2 when bad. */
static long max_tokens(const json_t *body, enum sim_api api)
{
	const char *keys[] = { "max_tokens", "max_completion_tokens" };
	json_t *v = NULL;

	if (api == SIM_API_OLLAMA_CHAT) {
		v = json_object_get(json_object_get(body, "options"), "num_predict");
	} else {
		for (size_t i = 0; i < 2 && (!v || json_is_null(v)); i++)
			v = json_object_get(body, keys[i]);
	}
	if (!v || json_is_null(v))
		return -1;
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > SIM_MAX_TOKENS)
		return -2;
	return (long)json_integer_value(v);
}

/* Prompt words and the text that seeds the reply.  -1 when malformed. */
static long read_prompt(const json_t *body, enum sim_api api, const char **seed_text)
{
	long n = 0;
	json_t *item;
	size_t i;

	*seed_text = "";
	if (api == SIM_API_OLLAMA_CHAT || api == SIM_API_CHAT) {
		json_t *msgs = json_object_get(body, "messages");

		if (!json_is_array(msgs))
			return -1;
		json_array_foreach(msgs, i, item) {
			const char *role = json_string_value(json_object_get(item, "role"));
			const char *last = NULL;

			if (!json_is_object(item))
				return -1;
			n += content_words(json_object_get(item, "content"), &last);
			if (last && (!role || strcmp(role, "user") == 0))
				*seed_text = last;
		}
		return n;
	} else {
		json_t *p = json_object_get(body, api == SIM_API_COMPLETIONS ? "prompt" :
		    "input");

		if (json_is_string(p)) {
			*seed_text = json_string_value(p);
			return count_words(*seed_text);
		}
		if (!json_is_array(p) || json_array_size(p) == 0 ||
		    json_array_size(p) > SIM_MAX_INPUTS)
			return -1;
		json_array_foreach(p, i, item) {
			if (json_is_string(item)) {
				n += count_words(json_string_value(item));
				*seed_text = json_string_value(item);
			} else if (json_is_integer(item)) {
				n++; /* token ids */
			} else if (json_is_array(item)) {
				n += (long)json_array_size(item);
			} else {
				return -1;
			}
		}
		return n;
	}
}

/* --deterministic: the seed of a reply from the request's "seed", its
 * whole prompt (messages or prompt, as compact JSON) and the model's
 * digest; sampling (temperature above 0 without a seed) adds the request
 * counter so that two requests differ. */
static uint64_t deterministic_seed(struct sim *sim, const json_t *body, enum sim_api api,
    const char *model)
{
	const json_t *prompt = json_object_get(body, api == SIM_API_COMPLETIONS ? "prompt" :
	    "messages");
	const json_t *seed = json_object_get(body, "seed");
	const json_t *temp = json_object_get(body, "temperature");
	char digest[65], num[32];
	char *text = prompt ? json_dumps(prompt, JSON_ENCODE_ANY | JSON_COMPACT |
	    JSON_SORT_KEYS) : NULL;
	uint64_t h = 0xcbf29ce484222325ULL;

	if (api == SIM_API_OLLAMA_CHAT) {
		const json_t *opts = json_object_get(body, "options");
		if (json_object_get(opts, "seed"))
			seed = json_object_get(opts, "seed");
		if (json_object_get(opts, "temperature"))
			temp = json_object_get(opts, "temperature");
	}
	sim_model_digest(digest, model);
	h = fnv1a(h, digest, strlen(digest));
	snprintf(num, sizeof(num), "|%lld|", json_is_integer(seed) ?
	    (long long)json_integer_value(seed) : 0LL);
	h = fnv1a(h, num, strlen(num));
	if (text)
		h = fnv1a(h, text, strlen(text));
	free(text);
	if (json_number_value(temp) > 0 && !json_is_integer(seed))
		h = splitmix(h ^ sim->id_counter);
	return h;
}

static void reply_embeddings(struct sim *sim, struct evhttp_request *req,
    const json_t *body, const char *model, long pt)
{
	json_t *input = json_object_get(body, "input");
	size_t n = json_is_array(input) ? json_array_size(input) : 1;
	json_t *data = json_array();

	/* a list of token ids is one input */
	if (json_is_array(input) && json_is_integer(json_array_get(input, 0)))
		n = 1;
	for (size_t k = 0; k < n; k++) {
		json_t *item = json_is_array(input) ? json_array_get(input, k) : input;
		char *text = json_dumps(item, JSON_ENCODE_ANY | JSON_COMPACT);
		uint64_t seed = fnv1a(0xcbf29ce484222325ULL, text ? text : "", text ?
		    strlen(text) : 0);
		double v[SIM_EMBED_DIM], norm = 0;
		json_t *vec = json_array();

		free(text);
		for (int d = 0; d < SIM_EMBED_DIM; d++) {
			v[d] = (double)(splitmix(seed + (uint64_t)d) % 2000001) / 1e6 - 1.0;
			norm += v[d] * v[d];
		}
		norm = norm > 0 ? sqrt(norm) : 1;
		for (int d = 0; d < SIM_EMBED_DIM; d++)
			json_array_append_new(vec, json_real(v[d] / norm));
		json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding",
		    "index", (int)k, "embedding", vec));
	}
	sim->stats.completed++;
	sim_reply_json(req, 200, json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list",
	    "data", data, "model", model, "usage", "prompt_tokens", (int)pt,
	    "total_tokens", (int)pt));
}

/* --fault-rate: whether this request is one the 500 fault hits, spread
 * evenly (the hit count after n requests is n x percent / 100, rounded
 * down). */
static bool fault_hits(struct sim *sim)
{
	uint64_t n = sim->fault_draws++;

	if (sim->fault_percent <= 0)
		return true;
	return (n + 1) * (uint64_t)sim->fault_percent / 100 !=
	    n * (uint64_t)sim->fault_percent / 100;
}

static struct sim_stream *stream_new(struct sim *sim, struct evhttp_request *req,
    enum sim_api api, const char *model)
{
	struct sim_stream *s = calloc(1, sizeof(*s));
	json_t *mj;

	if (!s)
		return NULL;
	s->sim = sim;
	s->req = req;
	s->conn = evhttp_request_get_connection(req);
	s->api = api;
	s->cheat_from = -1;
	s->t0_ns = now_ns();
	s->created = (long long)time(NULL);
	s->model = strdup(model);
	mj = json_string(model);
	s->model_json = mj ? json_dumps(mj, JSON_ENCODE_ANY) : NULL;
	json_decref(mj);
	s->timer = evtimer_new(sim->base, on_timer, s);
	sim->id_counter++;
	snprintf(s->id, sizeof(s->id), "%s-%016" PRIx64,
	    api == SIM_API_COMPLETIONS ? "cmpl" : "chatcmpl",
	    splitmix(sim->id_counter ^ ((uint64_t)s->created << 20)));
	s->next = sim->streams;
	if (s->next)
		s->next->prev = s;
	sim->streams = s;
	sim->stats.active++;
	if (!s->model || !s->model_json || !s->timer || !s->conn) {
		s->req = NULL; /* not ours yet: the caller answers */
		stream_free(s);
		return NULL;
	}
	evhttp_connection_set_closecb(s->conn, on_close, s);
	return s;
}

void sim_handle_inference(struct sim *sim, struct evhttp_request *req,
    enum sim_api api)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	bool native = api == SIM_API_OLLAMA_CHAT;
	json_t *body = NULL;
	const char *model, *seed_text;
	struct sim_stream *s;
	long pt, mt;
	char msg[512];

	if (api == SIM_API_EMBEDDINGS)
		sim->stats.embedding_requests++;
	else if (api == SIM_API_COMPLETIONS)
		sim->stats.completion_requests++;
	else
		sim->stats.chat_requests++;

	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
	if (!json_is_object(body)) {
		sim_reply_error(sim, req, native, 400, false, "request body is not a JSON object");
		goto out;
	}
	model = json_string_value(json_object_get(body, "model"));
	if (!model || !*model) {
		sim_reply_error(sim, req, native, 400, false, "model is required");
		goto out;
	}
	if (!sim_has_model(sim, model)) {
		switch (native ? SIM_KIND_OLLAMA : sim->kind) {
		case SIM_KIND_LMSTUDIO:
			snprintf(msg, sizeof(msg), "Model \"%.200s\" not found. Please specify a "
			    "valid model.", model);
			break;
		case SIM_KIND_OLLAMA:
		case SIM_KIND_LLAMACPP:
			snprintf(msg, sizeof(msg), "model '%.200s' not found", model);
			break;
		default:
			snprintf(msg, sizeof(msg), "The model `%.200s` does not exist.", model);
			break;
		}
		sim_reply_error(sim, req, native, 404, true, msg);
		goto out;
	}
	pt = read_prompt(body, api, &seed_text);
	if (pt < 0) {
		sim_reply_error(sim, req, native, 400, false, api == SIM_API_EMBEDDINGS ?
		    "'input' must be a string or a non-empty list" :
		    api == SIM_API_COMPLETIONS ? "'prompt' must be a string or a non-empty list" :
		    "'messages' must be a list of messages");
		goto out;
	}
	mt = max_tokens(body, api);
	if (mt == -2) {
		sim_reply_error(sim, req, native, 400, false,
		    "max_tokens must be an integer between 1 and 1000000");
		goto out;
	}

	if (sim->fault == SIM_FAULT_500 && fault_hits(sim)) {
		sim->stats.faults++;
		sim_reply_error(sim, req, native, 500, false, "simulated engine failure");
		goto out;
	}
	if (api == SIM_API_EMBEDDINGS && sim->fault != SIM_FAULT_HANG) {
		reply_embeddings(sim, req, body, model, pt);
		goto out;
	}

	s = stream_new(sim, req, api, model);
	if (!s) {
		sim_reply_error(sim, req, native, 500, false, "out of memory");
		goto out;
	}
	if (sim->fault == SIM_FAULT_HANG) {
		sim->stats.faults++;
		s->phase = PH_HANG; /* answered never; freed when the client leaves */
		goto out;
	}
	s->seed = sim->deterministic ? deterministic_seed(sim, body, api, model) :
	    fnv1a(0xcbf29ce484222325ULL, seed_text, strlen(seed_text));
	s->cheat_seed = splitmix(s->seed ^ 0x5eed0fc4ea7ULL);
	s->cheat_from = sim->cheat == SIM_CHEAT_OTHER ? 0 :
	    sim->cheat == SIM_CHEAT_SMALLER ? sim->cheat_agree : -1;
	s->prompt_tokens = pt;
	s->length_limited = mt > 0;
	s->n_tokens = mt > 0 ? mt : SIM_DEFAULT_TOKENS;
	s->stream = want_stream(body, native);
	s->include_usage = json_is_true(json_object_get(json_object_get(body,
	    "stream_options"), "include_usage"));
	s->interval_us = sim->tokens_per_second > 0 ? 1000000 / sim->tokens_per_second : 0;
	if (s->interval_us == 0 && sim->tokens_per_second > 0)
		s->interval_us = 1;
	{
		long ttft_us = sim->ttft_ms * 1000;

		if (sim->fault == SIM_FAULT_SLOW) {
			s->interval_us = 1000000;
			if (ttft_us < 1000000)
				ttft_us = 1000000;
		}
		if (s->sim->fault == SIM_FAULT_DIE_STREAM ||
		    s->sim->fault == SIM_FAULT_DIE_PROCESS) {
			if (sim->fault_after == 0) {
				/* die before answering anything */
				s->phase = PH_KILL;
				schedule(s, ttft_us);
				goto out;
			}
		}
		if (!s->stream) {
			/* one-piece replies arrive when the generation would be done */
			schedule(s, ttft_us + s->interval_us * (s->n_tokens - 1));
			goto out;
		}
		s->first_ns = s->t0_ns + (uint64_t)ttft_us * 1000u;
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		    native ? "application/x-ndjson" : "text/event-stream; charset=utf-8");
		evhttp_send_reply_start(req, 200, "OK");
		if (api == SIM_API_CHAT &&
		    !write_fmt(s, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\","
		    "\"created\":%lld,\"model\":%s,\"choices\":[{\"index\":0,\"delta\":"
		    "{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
		    "\"finish_reason\":null}]}\n\n", s->id, s->created, s->model_json))
			goto out;
		schedule(s, ttft_us);
	}
out:
	json_decref(body);
}

void sim_streams_free_all(struct sim *sim)
{
	while (sim->streams)
		stream_free(sim->streams);
}
