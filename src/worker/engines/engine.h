/*
 * engine.h - the inference engines a worker sits next to.
 *
 * One driver per engine kind (Ollama, vLLM, LM Studio, llama.cpp server,
 * any OpenAI-compatible URL), each a table of pure parsing functions over
 * the engine's JSON replies: which version it runs and which models it
 * serves.  The parsers never touch the network; detect.c fetches the
 * replies with the blocking HTTP client and hands them here, so every
 * parser can be tested against recorded replies.
 *
 * Also here: the priority between engine kinds when two serve one model,
 * the `--engine TYPE=URL` syntax, and engine_error_normalize, which turns
 * any engine's error body into the one OpenAI error shape the worker
 * answers with.
 *
 * Everything in this header is pure and thread-safe unless noted; the
 * driver tables are immutable.
 */
#ifndef TROOP_ENGINE_H
#define TROOP_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	ENGINE_OLLAMA = 0,
	ENGINE_VLLM,
	ENGINE_LMSTUDIO,
	ENGINE_LLAMACPP,
	ENGINE_OPENAI,
	ENGINE_TYPE_COUNT_
} engine_type;

#define ENGINE_NAME_MAX 256      /* model name, NUL included */
#define ENGINE_HASH_MAX 80       /* "sha256:" + 64 hex + NUL fits */
#define ENGINE_VERSION_MAX 64
#define ENGINE_URL_MAX 512
#define ENGINE_MAX_MODELS 256    /* models read from one engine */
#define ENGINE_MAX_PORTS 4
#define ENGINE_KEY_MAX 256       /* engine API key, NUL included */

/* One model an engine serves. */
typedef struct {
	char name[ENGINE_NAME_MAX];         /* what clients put in "model" */
	char engine_name[ENGINE_NAME_MAX];  /* what the engine calls it, when that
	                                     * differs from name (a llama.cpp file
	                                     * name "x.gguf" or path); else "" */
	char content_hash[ENGINE_HASH_MAX]; /* "sha256:<64 hex>" (Ollama), else "" */
	uint64_t size_bytes;                /* 0 when the engine does not say */
	bool loaded;     /* in memory now; false only where the engine says so
	                  * (LM Studio "not-loaded", which it loads on first use) */
	engine_type engine;                 /* set by the parser */
} engine_model;

/* A growable list of models, at most ENGINE_MAX_MODELS long.  Zero-init
 * ({0}) is an empty list; free with engine_model_list_clear. */
typedef struct {
	engine_model *items;
	size_t count;
	size_t cap_;
} engine_model_list;

/* ---- drivers -------------------------------------------------------------- */

struct engine_driver {
	engine_type type;
	const char *name;                  /* "ollama", "vllm", ... */
	int default_ports[ENGINE_MAX_PORTS]; /* 0-terminated; none for openai */
	int priority;                      /* 0 wins over 1 wins over 2 ... */
	/* Paths probed by detect.c, relative to the base URL; NULL if none. */
	const char *health_path;           /* readiness (llama.cpp /health) */
	const char *version_path;          /* /api/version, /version, /props */
	const char *models_path;           /* /api/tags, /v1/models, ... */

	/* Readiness from the health reply: *ready is true when the engine can
	 * serve now (llama.cpp answers 503 while loading).  NULL: always ready
	 * once the models reply is good. */
	int (*parse_health)(bool *ready, int http_status, const json_t *body);
	/* Version from the reply to version_path into out (size outlen,
	 * always NUL-terminated).  Returns 0, or TROOP_EINVAL (message set)
	 * when the reply lacks it.  NULL for engines without a version. */
	int (*parse_version)(char *out, size_t outlen, const json_t *body);
	/* Append the models in the reply to models_path to *out.  Returns 0,
	 * TROOP_EINVAL (message names the field) on a malformed reply,
	 * TROOP_ETOOLARGE past ENGINE_MAX_MODELS, TROOP_ENOMEM.  On error *out
	 * keeps the models appended before the error. */
	int (*parse_models)(engine_model_list *out, const json_t *body);
};

/* The driver for `t`, never NULL for a valid type (NULL otherwise). */
const struct engine_driver *engine_driver_get(engine_type t);

/* "ollama", "vllm", "lmstudio", "llamacpp", "openai"; "unknown" for an
 * invalid value.  Static string. */
const char *engine_type_name(engine_type t);

/* Parse a type name (case-insensitive; also accepts "llama.cpp",
 * "llama-cpp", "lm-studio", "openai-compatible").  Returns 0 or
 * TROOP_EINVAL with a message listing the valid names. */
int engine_type_parse(engine_type *out, const char *s);

/* Rank of `t` when two engines serve one model: lower wins.  vLLM 0,
 * llama.cpp 1, Ollama 2, LM Studio 3, openai 4; invalid types rank last. */
int engine_priority(engine_type t);

/* True when a model served by `a` should be chosen over the same model
 * served by `b` (strictly better rank). */
bool engine_prefer(engine_type a, engine_type b);

/* ---- model lists -------------------------------------------------------- */

/* Append a copy of *m.  Names longer than ENGINE_NAME_MAX - 1 or empty are
 * TROOP_EINVAL; a list already holding ENGINE_MAX_MODELS is
 * TROOP_ETOOLARGE; TROOP_ENOMEM.  Not thread-safe on one list. */
int engine_model_list_add(engine_model_list *list, const engine_model *m);

/* Index of the model named `name` (exact match), or -1. */
long engine_model_list_find(const engine_model_list *list, const char *name);

/* Free the items; the list is then empty and reusable.  NULL is fine. */
void engine_model_list_clear(engine_model_list *list);

/* The models to advertise from several engines: every distinct name once,
 * taken from the engine with the best engine_priority (ties: the earlier
 * list).  *out is cleared first.  Returns 0, TROOP_ETOOLARGE, TROOP_ENOMEM. */
int engine_models_merge(engine_model_list *out, const engine_model_list *lists,
    size_t n);

/* ---- per-engine parsers (ollama.c, vllm.c, lmstudio.c, llamacpp.c,
 * openai.c); the driver tables point at these, tests call them directly ---- */

/* Ollama GET /api/version: {"version":"0.6.2"}. */
int ollama_parse_version(char *out, size_t outlen, const json_t *body);
/* Ollama GET /api/tags: models[].name, digest (64 hex) -> content_hash
 * "sha256:<digest>", size -> size_bytes.  A model whose digest is not 64
 * hex digits (optionally already "sha256:"-prefixed) is kept with an empty
 * hash. */
int ollama_parse_tags(engine_model_list *out, const json_t *body);
/* Ollama GET /api/ps: the models loaded now, same fields as /api/tags. */
int ollama_parse_ps(engine_model_list *out, const json_t *body);

/* vLLM GET /version: {"version":"0.11.0"}. */
int vllm_parse_version(char *out, size_t outlen, const json_t *body);
/* vLLM GET /v1/models (OpenAI list): data[].id. */
int vllm_parse_models(engine_model_list *out, const json_t *body);

/* LM Studio GET /api/v0/models: data[] of type "llm", "vlm" and
 * "embeddings", whatever their state ("loaded" or "not-loaded": LM Studio
 * loads a model on its first request, so every downloaded model can be
 * served); `loaded` reflects state.  Other types are skipped. */
int lmstudio_parse_models(engine_model_list *out, const json_t *body);

/* llama.cpp GET /health: 200 {"status":"ok"} is ready; 503 (loading, body
 * {"error":{"code":503,...}}) or any other status or body is not ready.
 * Returns 0 in all these cases; TROOP_EINVAL never. */
int llamacpp_parse_health(bool *ready, int http_status, const json_t *body);
/* llama.cpp GET /props: build_info ("b6942-3d0a1d4c7") as the version. */
int llamacpp_parse_version(char *out, size_t outlen, const json_t *body);
/* llama.cpp GET /props: the model name: model_alias when set, else the
 * file name of model_path without its directory and ".gguf". */
int llamacpp_parse_props_model(char *out, size_t outlen, const json_t *body);
/* The clean name of a llama.cpp model id into out (capacity outlen): an id
 * ending in ".gguf" loses its directory and that suffix; any other id is
 * copied as it is.  Returns 0, or TROOP_EINVAL when nothing is left or it
 * does not fit. */
int llamacpp_clean_name(char *out, size_t outlen, const char *id);
/* llama.cpp GET /v1/models (OpenAI list): data[].id, size from
 * data[].meta.size when present.  An id that is a model file ("x.gguf",
 * "/models/x.gguf": llama-server without --alias) is advertised as its
 * base name without ".gguf" ("x"), the id kept as engine_name, so that the
 * worker's directory layout does not leak and clients can say "x". */
int llamacpp_parse_models(engine_model_list *out, const json_t *body);

/* Any OpenAI-compatible GET /v1/models: data[].id. */
int openai_parse_models(engine_model_list *out, const json_t *body);

/* Shared by the OpenAI-list parsers: data[].id as models of kind `t`. */
int engine_parse_openai_list(engine_model_list *out, const json_t *body,
    engine_type t);

/* ---- --engine TYPE=URL ------------------------------------------------- */

typedef struct {
	engine_type type;
	char url[ENGINE_URL_MAX]; /* base URL, no trailing '/' */
	char api_key[ENGINE_KEY_MAX]; /* sent as "Authorization: Bearer"; "" none.
	                               * A secret: never logged */
} engine_spec;

/* Parse "TYPE=URL" as given to `--engine`: TYPE as engine_type_parse,
 * URL http:// or https://, a host, an optional port 1..65535, an
 * optional path; no spaces or control characters.  A trailing '/' is
 * dropped.  Returns 0 or TROOP_EINVAL with a message naming --engine and
 * what is wrong (unknown type, missing URL, bad URL). */
int engine_spec_parse(engine_spec *out, const char *s);

/* The port of a base URL as accepted by engine_spec_parse: the explicit
 * one, else 80 for http and 443 for https; 0 when `url` is not such a URL. */
int engine_url_port(const char *url);

/* Read the engine API keys file `path` (--engine-key-file) into the
 * specs[0..n-1] it names.  Each line that is not blank or a '#' comment
 * is either "KEY" (every engine) or "URL KEY" (the engine given as
 * --engine TYPE=URL with that URL; a later line wins).  The file must be
 * a regular file that neither group nor others can read or write (like
 * ssh keys): otherwise TROOP_EFORBIDDEN.  Keys are 1..ENGINE_KEY_MAX-1
 * printable ASCII characters without spaces.  Returns 0, TROOP_EIO,
 * TROOP_EFORBIDDEN or TROOP_EINVAL (message names the line, never the
 * key).  A key line naming no engine is TROOP_EINVAL. */
int engine_keys_load(engine_spec *specs, size_t n, const char *path);

/* ---- errors --------------------------------------------------------------- */

/* Convert an engine's error reply (status `http_status`, body `body` of
 * `len` bytes, may be NULL/0) into the OpenAI shape
 *   {"error":{"message":"...","type":"...","code":"..."}}
 * with string message, type and code.  Accepted shapes: {"error":"text"};
 * {"error":{"message","type","param","code"}} with code a number, string
 * or null; llama.cpp {"error":{"code":404,"message","type"}}; vLLM's old
 * top-level {"object":"error","message","code"}; FastAPI {"detail":...};
 * any other body (HTML, plain text, empty) becomes the message, trimmed
 * and cut to 512 bytes.
 *   code: the engine's own string code when it is a plain identifier
 *   ([a-z0-9_.-], up to 64), else from the status: 400/422 bad_request,
 *   401 unauthorized, 403 forbidden, 404 model_not_found when the message
 *   names a model (else not_found), 408 timeout, 409 conflict, 413
 *   too_large, 429 rate_limited, 503 while loading engine_loading, other
 *   5xx engine_error, other 4xx bad_request.
 *   type: from the status (invalid_request_error, authentication_error,
 *   permission_error, rate_limit_error, server_error).
 * When http_status is not an error status (< 400 or > 599, e.g. an error
 * inside a 200 stream) the error's numeric code is used if it is one, else
 * 500.  *out is a new reference.  Returns the HTTP status to answer with
 * (400..599), or TROOP_ENOMEM. */
int engine_error_normalize(int http_status, const char *body, size_t len,
    json_t **out);

/* ---- detection results (filled by detect.c; cleared here) ---------------- */

typedef struct {
	engine_type type;
	char url[ENGINE_URL_MAX];        /* base URL */
	int port;                        /* from the URL, 0 if none given */
	char version[ENGINE_VERSION_MAX]; /* "" when the engine has none */
	bool ready;                      /* serving now */
	engine_model_list models;
	char api_key[ENGINE_KEY_MAX];    /* from the engine_spec; "" none; never
	                                  * logged */
	unsigned endpoints;              /* ENDPOINT_* it serves natively
	                                  * (endpoints.h); 0 until probed */
} engine_info;

/* Free the models; NULL is fine. */
void engine_info_clear(engine_info *info);

/* Free an array of n infos from engine_autodetect; NULL is fine. */
void engine_info_array_free(engine_info *infos, size_t n);

#endif
