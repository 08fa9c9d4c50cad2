/*
 * sim.h - shared state of engine-sim, a TEST TOOL that imitates the HTTP
 * APIs of LLM inference engines (Ollama's native API, the OpenAI-compatible
 * API of vLLM / llama.cpp / LM Studio / Ollama, and their version and
 * health endpoints) so that the worker, proxies and benchmarks can be
 * tested without a GPU.  It is not an engine: its text is a deterministic
 * function of the prompt.
 *
 * One single-threaded libevent loop: sim_main.c parses options, listens,
 * routes requests and answers the listing endpoints; sim_gen.c answers the
 * inference endpoints, pacing tokens with timers (never sleeps) so that any
 * number of streams run at once, and injects the faults.
 */
#ifndef TROOP_ENGINE_SIM_H
#define TROOP_ENGINE_SIM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp;
struct evhttp_request;

#define SIM_MAX_MODELS 64
#define SIM_MAX_BODY (4 * 1024 * 1024)
#define SIM_MAX_TOKENS 1000000
#define SIM_DEFAULT_TOKENS 16

/* Which engine the simulator pretends to be: selects the version/health
 * endpoints that answer and the shape of /v1 errors. */
enum sim_kind {
	SIM_KIND_ALL = 0, /* every endpoint, vLLM-shaped /v1 errors */
	SIM_KIND_OLLAMA,
	SIM_KIND_VLLM,
	SIM_KIND_LLAMACPP,
	SIM_KIND_LMSTUDIO,
};

enum sim_fault {
	SIM_FAULT_NONE = 0,
	SIM_FAULT_500,         /* inference requests answer 500 */
	SIM_FAULT_HANG,        /* inference requests are never answered */
	SIM_FAULT_DIE_STREAM,  /* the connection is closed mid-stream */
	SIM_FAULT_DIE_PROCESS, /* the process exits mid-stream */
	SIM_FAULT_SLOW,        /* 1 token per second, at least 1 s to the first */
};

/* --cheat: a worker that does not run the model it advertises (the digest
 * it reports stays the honest one) */
enum sim_cheat {
	SIM_CHEAT_NONE = 0,
	SIM_CHEAT_OTHER,       /* other text from the first token */
	SIM_CHEAT_SMALLER,     /* a "smaller model": agrees on the first
	                          --cheat's K tokens, then other text */
};

struct sim_stats {
	uint64_t requests;       /* every request except /sim/... */
	uint64_t chat_requests;  /* /api/chat and /v1/chat/completions */
	uint64_t completion_requests;
	uint64_t embedding_requests;
	uint64_t active;         /* inference requests not yet answered/ended */
	uint64_t completed;      /* inference replies sent to the end */
	uint64_t disconnects;    /* clients that left before the end */
	uint64_t faults;         /* faults injected */
};

struct sim_stream;

/* --capabilities: what the model takes, reported in each engine's format */
#define SIM_CAP_TOOLS 0x1u
#define SIM_CAP_VISION 0x2u
#define SIM_CAP_EMBEDDINGS 0x4u

struct sim {
	struct event_base *base;
	struct evhttp *http;
	enum sim_kind kind;
	enum sim_fault fault;
	long fault_after;        /* events written before a die-* fault */
	long fault_percent;      /* --fault-rate: share of requests a 500 fault hits,
	                            1 .. 100; 0 (not given): all */
	uint64_t fault_draws;    /* requests a 500 fault could have hit */
	long tokens_per_second;  /* 0: as fast as the client reads */
	long ttft_ms;
	long loading_ms;         /* /health answers 503 this long after start */
	long context;            /* --context: context length reported; 0 the defaults */
	unsigned caps;           /* --capabilities: SIM_CAP_* */
	bool deterministic;      /* --deterministic: text from seed, prompt, digest */
	enum sim_cheat cheat;    /* --cheat */
	long cheat_agree;        /* --cheat smaller:K: the K tokens that agree */
	bool caps_set;           /* --capabilities given (else each engine's default) */
	uint64_t started_ms;     /* monotonic */
	char *models[SIM_MAX_MODELS];
	size_t n_models;
	uint64_t id_counter;
	struct sim_stats stats;
	struct sim_stream *streams; /* in flight, doubly linked */
};

/* ---- sim_main.c ---- */

/* Milliseconds of the monotonic clock. */
uint64_t sim_now_ms(void);
/* True when `name` is one of --models. */
bool sim_has_model(const struct sim *sim, const char *name);
/* The digest a model is advertised with (Ollama's /api/tags "digest"):
 * SHA-256 of its name, 64 hex digits.  The same for honest and cheating
 * simulators: a cheat claims the weights it does not run. */
void sim_model_digest(char out[65], const char *name);
/* Send `body` (stolen) as JSON with `status`. */
void sim_reply_json(struct evhttp_request *req, int status, json_t *body);
/* Send an error in the shape of the engine being imitated: Ollama's
 * {"error":"..."} for /api/... paths (`native`), else the /v1 shape of
 * sim->kind.  `model_missing`: the error is an unknown model. */
void sim_reply_error(const struct sim *sim, struct evhttp_request *req, bool native,
    int status, bool model_missing, const char *msg);

/* ---- sim_gen.c ---- */

enum sim_api { SIM_API_OLLAMA_CHAT, SIM_API_CHAT, SIM_API_COMPLETIONS,
	SIM_API_EMBEDDINGS };

/* Answer one inference request (POST already checked). */
void sim_handle_inference(struct sim *sim, struct evhttp_request *req,
    enum sim_api api);
/* End every stream in flight (at shutdown, before evhttp_free). */
void sim_streams_free_all(struct sim *sim);

#endif
