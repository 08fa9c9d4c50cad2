/*
 * catalog.h - the engines this worker sits next to and the models they
 * serve, as last read; which engine answers a request for a model.
 *
 * The heartbeat thread re-reads the engines (detect.h) and replaces the
 * catalog's contents; proxy threads look models up concurrently.  A model
 * is found by its name or by its content hash ("sha256:..."); when several
 * engines serve it, the faster kind wins (engine_prefer), ties going to
 * the engine listed first, the same rule engine_models_merge applies to
 * what is advertised.
 *
 * Thread-safe (a mutex; lookups copy what they return).
 */
#ifndef TROOP_WORKER_CATALOG_H
#define TROOP_WORKER_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engines/engine.h"

typedef struct catalog catalog;

/* New empty catalog.  Returns 0 or TROOP_ENOMEM. */
int catalog_new(catalog **out);
/* Free; NULL is fine. */
void catalog_free(catalog *c);

/* Replace the engines with a copy of infos[0..n-1] (the caller keeps
 * its array).  *changed (may be NULL) tells whether the advertised models
 * (names, hashes, sizes, engine kinds) differ from before.  Returns 0,
 * TROOP_ETOOLARGE or TROOP_ENOMEM (the old contents are then kept). */
int catalog_set(catalog *c, const engine_info *infos, size_t n, bool *changed);

/* The engine serving `model` (a name, or a content hash): its base URL
 * into url (capacity urllen) and its kind into *type (may be NULL).
 * Returns 0, or TROOP_ENOMODEL when no ready engine serves it. */
int catalog_lookup(catalog *c, const char *model, char *url, size_t urllen,
    engine_type *type);

/* Where a request for a model goes. */
typedef struct {
	char url[ENGINE_URL_MAX];           /* the engine's base URL */
	engine_type type;
	char engine_name[ENGINE_NAME_MAX];  /* the engine's own name for the
	                                     * model when it differs from the
	                                     * advertised one (engine_model);
	                                     * else "" */
	char api_key[ENGINE_KEY_MAX];       /* the engine's API key, "" none;
	                                     * wipe after use */
	unsigned endpoints;                 /* engine_info.endpoints */
} catalog_target;

/* catalog_lookup with everything a request needs into *out.  Returns 0
 * or TROOP_ENOMODEL (message set). */
int catalog_resolve(catalog *c, const char *model, catalog_target *out);

/* Heartbeat fields: the advertised models
 * [{"name","content_hash","size_bytes","engine"}] and the engines
 * [{"type","version","port"}].  New references (NULL when out of memory). */
json_t *catalog_models_json(catalog *c);
json_t *catalog_engines_json(catalog *c);

/* Ask for the engines to be re-read soon: a job found its engine gone or
 * failing (the heartbeat loop takes the request within a second).
 * Lock-free; callable from any thread. */
void catalog_want_refresh(catalog *c);
/* Whether a re-read was asked for since the last call (and clear it). */
bool catalog_take_refresh(catalog *c);

/* Number of models advertised. */
size_t catalog_model_count(catalog *c);

/* A copy of the engines (type, url, version; models included), for the
 * refresh: *out is a new array of *n infos, freed with
 * engine_info_array_free.  Returns 0 or TROOP_ENOMEM. */
int catalog_engines_copy(catalog *c, engine_info **out, size_t *n);

/* Deep copy of one engine_info (models included) into *dst (which must be
 * empty).  Returns 0 or TROOP_ENOMEM.  Pure. */
int engine_info_copy(engine_info *dst, const engine_info *src);

#endif
