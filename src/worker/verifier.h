/*
 * verifier.h - the worker's proof-of-hardware schedule (DESIGN.md
 * section 9): a thread that runs the coordinator's challenge once the node
 * is registered, again every `reverify_hours`, and whenever the GPU seen by
 * gpu_probe changes (name or count, checked every few minutes).  A 429
 * (too soon) or a failure is retried after `retry_s`.  The challenge
 * computes for seconds on the GPU or the CPU; it never runs on the
 * proxy's threads.
 */
#ifndef TROOP_WORKER_VERIFIER_H
#define TROOP_WORKER_VERIFIER_H

#include "heartbeat.h"
#include "identity.h"
#include "poh_worker.h"

typedef struct verifier verifier;

typedef struct {
	const char *coordinator;   /* base URL */
	const troop_identity *id;  /* node key (copied) */
	heartbeat *hb;             /* to wait for registration; not owned */
	double reverify_hours;     /* > 0 */
	int retry_s;               /* after a failure or a 429; 0: 600 */
	int gpu_check_s;           /* how often the GPU is re-probed; 0: 300 */
	poh_device device;
} verifier_opts;

/* Start the thread.  Returns 0 and *out, or TROOP_ENOMEM / TROOP_ERR. */
int verifier_start(verifier **out, const verifier_opts *o);

/* Whether the last challenge was verified, and its multiplier (if so). */
bool verifier_verified(verifier *v, double *multiplier);

/* Ask the thread to stop without waiting: a proof-of-hardware computation
 * under way is cancelled within about 100 ms, and no further call goes to
 * the coordinator.  Safe from any thread; NULL is fine. */
void verifier_cancel(verifier *v);

/* Stop the thread (cancelling a computation under way, as verifier_cancel;
 * a call to the coordinator already sent finishes first, within the
 * client's timeout) and free.  NULL is fine. */
void verifier_stop(verifier *v);

#endif
