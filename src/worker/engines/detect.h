/*
 * detect.h - the network side of the engine drivers: fetch an engine's
 * health, version and model list over HTTP with the blocking client and
 * parse them with the driver's pure parsers (engine.h).  Used by the
 * worker at start-up and on its 60 s model refresh.
 *
 * Functions here block for up to the client's timeout per request; set
 * short limits (http_client_set_limits, e.g. 2 s) before auto-detection.
 * Not thread-safe on one http_client (as the client itself).
 */
#ifndef TROOP_ENGINE_DETECT_H
#define TROOP_ENGINE_DETECT_H

#include "engines/engine.h"

#include <stddef.h>

typedef struct http_client http_client;

/* Probe the engine of driver `d` at `base_url` ("http://127.0.0.1:11434",
 * no trailing '/').  On success *out is filled (type, url, port, version,
 * ready, models; the caller frees with engine_info_clear) and 0 returned.
 * A llama.cpp server still loading its model is a success with ready false
 * and no models.  Nothing listening, a transport error, or replies that do
 * not look like that engine: TROOP_EUPSTREAM / TROOP_ETIMEOUT /
 * TROOP_EINVAL with a message naming the URL; *out is then empty.
 * `api_key` (NULL or "": none) is sent as "Authorization: Bearer" on every
 * probe and kept in out->api_key; it never appears in a message. */
int engine_detect(engine_info *out, http_client *c, const struct engine_driver *d,
    const char *base_url, const char *api_key);

/* Try every driver on each of its default ports (ollama 11434, vllm 8000,
 * lmstudio 1234, llamacpp 8080 and 9931) on `host` ("127.0.0.1" when
 * NULL).  *out is a new array of the *count engines found (possibly 0;
 * free with engine_info_array_free).  A port answers for at most one
 * engine kind.  Returns 0 or TROOP_ENOMEM. */
int engine_autodetect(engine_info **out, size_t *count, http_client *c,
    const char *host);

/* Re-read the models (and readiness) of an engine found before, replacing
 * info->models.  Returns 0 or an error as engine_detect; on error the old
 * models are kept and info->ready is set false. */
int engine_refresh(engine_info *info, http_client *c);

/* One cheap request to see whether an engine found before still serves:
 * llama.cpp GET /health, else the version path, else the models path.
 * True when it answered 200 (llama.cpp: and is ready).  Blocks for at
 * most the client's timeout. */
bool engine_ping(const engine_info *info, http_client *c);

#endif
