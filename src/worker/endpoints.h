/*
 * endpoints.h - which API endpoints beyond chat completions an engine
 * serves natively, found by probing it.
 *
 * Recent llama.cpp serves POST /v1/responses, /v1/messages and /tokenize;
 * vLLM, Ollama and LM Studio serve some of them, depending on version.
 * The worker passes a request for an endpoint its engine serves straight
 * through, and translates the others to chat completions (compat.h).
 *
 * The probe is one POST of an empty JSON object per endpoint, at each
 * catalog refresh: 404 or 405, 501..599 or no answer means not served;
 * any other status (400 and 422 for the missing fields, 200, and the 500
 * that llama.cpp answers for a missing "messages") means served.  An
 * empty object makes no engine generate anything.
 */
#ifndef TROOP_WORKER_ENDPOINTS_H
#define TROOP_WORKER_ENDPOINTS_H

#include <jansson.h>
#include <stdbool.h>

#include "http_client.h"

/* Bits of engine_info.endpoints / catalog_target.endpoints. */
#define ENDPOINT_RESPONSES    0x1u  /* POST /v1/responses */
#define ENDPOINT_MESSAGES     0x2u  /* POST /v1/messages */
#define ENDPOINT_COUNT_TOKENS 0x4u  /* POST /v1/messages/count_tokens */
#define ENDPOINT_TOKENIZE     0x8u  /* POST /tokenize */

/* The bit of a request path ("/v1/messages"), 0 for paths that every
 * engine serves (chat completions, ...) or unknown ones.  Pure. */
unsigned endpoints_bit(const char *path);

/* Whether a status answered to the probe means the endpoint is served.
 * Pure. */
bool endpoints_status_served(int status);

/* Probe the engine at base_url (with its API key, may be NULL or "") for
 * every endpoint above; returns the bits of those it serves.  Blocks for
 * at most four of the client's timeouts.  Never logs the key. */
unsigned endpoints_probe(http_client *c, const char *base_url, const char *api_key);

/* The endpoints as names ["responses","messages","count_tokens",
 * "tokenize"] (for the heartbeat and /v1/models).  New reference, NULL
 * when out of memory. */
json_t *endpoints_json(unsigned mask);

#endif
