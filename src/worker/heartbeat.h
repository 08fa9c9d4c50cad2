/*
 * heartbeat.h - the worker's control loop towards the coordinator
 * (DESIGN.md sections 6 and 8): signed POST /heartbeat with the node
 * record, engine re-reads, GPU sampling for the donate policy, and the
 * OFFLINE heartbeat at shutdown.
 *
 * One thread of its own, so nothing here ever blocks a proxy loop:
 *   - heartbeats every `next_heartbeat` seconds from the coordinator's
 *     reply (default 10), +-10% jitter so a fleet restarted together does
 *     not beat in step;
 *   - while the coordinator is unreachable or refuses, exponential backoff
 *     from 1 s up to HEARTBEAT_BACKOFF_MAX_S (the proxy goes on serving
 *     tickets already issued meanwhile);
 *   - the engines are re-read every model_refresh_s; a change in the
 *     advertised models sends a heartbeat at once;
 *   - the GPU is sampled every gpu_sample_s (gpu_sampler); the status is
 *     BUSY while the node is at max_jobs or the owner uses the GPU (per
 *     --donate), else IDLE; a change of status is heartbeated at once (at
 *     most once a second);
 *   - while no coordinator key is known, it is fetched with every
 *     heartbeat (keyring_fetch);
 *   - when idle after jobs, freed memory is given back (malloc_trim).
 */
#ifndef TROOP_WORKER_HEARTBEAT_H
#define TROOP_WORKER_HEARTBEAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "catalog.h"
#include "engines/engine.h"
#include "gpu.h"
#include "identity.h"
#include "keyring.h"
#include "seal_keys.h"

#define HEARTBEAT_DEFAULT_S 10
#define HEARTBEAT_BACKOFF_MAX_S 60
#define HEARTBEAT_TIMEOUT_MS 5000
/* the OFFLINE heartbeat on shutdown is best effort (the node's TTL ends it
 * anyway): short, so that a hung coordinator cannot hold up the exit */
#define HEARTBEAT_OFFLINE_TIMEOUT_MS 700

typedef struct http_client http_client;
typedef struct heartbeat heartbeat;

typedef struct {
	const char *coordinator;       /* base URL */
	const troop_identity *id;      /* node key (copied) */
	const char *name;              /* node name shown in /peers */
	const char *address;           /* advertised address (tailscale_ip) */
	int port;                      /* proxy port */
	const char *owner;             /* account credited; NULL or "": the node */
	int max_jobs;
	catalog *cat;                  /* read and refreshed here */
	keyring *keys;                 /* filled while empty; may be NULL */
	seal_keys *seal;               /* its statement is heartbeated (and the key
	                                  rotated when due); NULL: no sealing */
	/* Troop jobs running now, and finished since start (thread-safe;
	 * both get active_arg; jobs_done may be NULL). */
	int (*active_jobs)(void *arg);
	long (*jobs_done)(void *arg);
	void *active_arg;
	const engine_spec *specs;      /* --engine values; nspecs 0: autodetect */
	size_t nspecs;
	int model_refresh_s;
	gpu_policy policy;
	int gpu_sample_s;
} heartbeat_opts;

/* Read the engines (the --engine specs, or auto-detection when nspecs is
 * 0) and store them in `cat`; *changed (may be NULL) says whether the
 * advertised models changed.  An engine that does not answer is kept, not
 * ready and with no models, and logged.  Blocks for a few seconds at most
 * per engine.  Returns 0 or TROOP_ENOMEM. */
int heartbeat_read_engines(catalog *cat, http_client *c, const engine_spec *specs,
    size_t nspecs, bool *changed);

/* The heartbeat body of DESIGN.md section 6 for status `status` ("IDLE",
 * "BUSY", "OFFLINE"), hardware from `gpu` (may be NULL: no GPU), load
 * {active_jobs, max_jobs}.  New reference, NULL when out of memory. */
json_t *heartbeat_body(const heartbeat_opts *o, const char *status, const gpu_info *gpu,
    int active_jobs);

/* Copy the options, send the first heartbeat (waiting for it, at most
 * HEARTBEAT_TIMEOUT_MS; a coordinator that is down is not an error: the
 * loop backs off and retries), then start the thread.  The strings in `o`
 * are copied; cat, keys and active_arg must outlive the heartbeat.
 * Returns 0, or TROOP_EINVAL (bad policy), TROOP_ENOMEM, TROOP_ERR. */
int heartbeat_start(heartbeat **out, const heartbeat_opts *o);

/* Whether the last heartbeat was accepted. */
bool heartbeat_registered(heartbeat *h);

/* Stop the loop and send the OFFLINE heartbeat (at most
 * HEARTBEAT_OFFLINE_TIMEOUT_MS), so the coordinator drops the node at
 * once.  Idempotent; thread-safe against the loop (it joins it). */
void heartbeat_offline(heartbeat *h);

/* heartbeat_offline if not done, then free; NULL is fine. */
void heartbeat_free(heartbeat *h);

#endif
