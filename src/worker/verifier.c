/*
 * verifier.c - the proof-of-hardware schedule of a worker.  See
 * verifier.h.
 */
#include "verifier.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "gpu.h"
#include "http_client.h"
#include "log.h"

#define VERIFIER_RATE_RETRY_S 45   /* after a 429 from the coordinator */

struct verifier {
	verifier_opts o;
	troop_identity id;
	char coordinator[1024];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	atomic_int cancel;      /* set with stop: cancels a challenge under way */
	bool verified;
	double multiplier;
};

/* Sleep up to `s` seconds, waking early on stop.  Returns true to go on. */
static bool nap(verifier *v, int s)
{
	struct timespec until;
	bool go;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += s;
	pthread_mutex_lock(&v->mu);
	while (!v->stop) {
		if (pthread_cond_timedwait(&v->cv, &v->mu, &until) == ETIMEDOUT)
			break;
	}
	go = !v->stop;
	pthread_mutex_unlock(&v->mu);
	return go;
}

static void gpu_signature(char *out, size_t len)
{
	gpu_info g;

	memset(&g, 0, sizeof(g));
	gpu_probe(&g);
	snprintf(out, len, "%d:%s", g.count, g.name);
}

static void *verifier_main(void *arg)
{
	verifier *v = arg;
	http_client *hc = NULL;
	poh_engine *engine = NULL;
	poh_engine_opts eo = { .device = v->o.device };
	char gpu_seen[GPU_NAME_MAX + 16], gpu_now[GPU_NAME_MAX + 16];
	time_t next = 0;
	int check_s = v->o.gpu_check_s > 0 ? v->o.gpu_check_s : 300;
	int retry_s = v->o.retry_s > 0 ? v->o.retry_s : 600;

	if (http_client_new(&hc) != 0)
		return NULL;
	http_client_set_limits(hc, 30000, 1 << 20);
	/* the coordinator only challenges nodes it knows */
	while (!heartbeat_registered(v->o.hb))
		if (!nap(v, 1))
			goto out;
	if (poh_engine_open(&engine, &eo) != 0) {
		log_warn("poh", "error=\"%s\" hint=\"proof-of-hardware is off for this run\"",
		    troop_error_msg());
		goto out;
	}
	gpu_signature(gpu_seen, sizeof(gpu_seen));
	for (;;) {
		time_t now = time(NULL);
		if (now >= next) {
			poh_result res;
			poh_run_opts ro = {
				.coordinator = v->coordinator, .id = &v->id, .http = hc,
				.engine = engine, .progress = POH_PROGRESS_LOG,
				.cancel = &v->cancel,
			};
			int rc = poh_run_challenge(&res, &ro);
			poh_engine_release(engine);    /* cuBLAS unloaded until the next one */
			pthread_mutex_lock(&v->mu);
			if (rc == 0) {
				v->verified = true;
				v->multiplier = res.multiplier;
			}
			pthread_mutex_unlock(&v->mu);
			if (rc == 0) {
				log_info("poh_verified", "multiplier=%.4f ops_per_s=%.3g elapsed_ms=%lld "
				    "compute_ms=%.0f device=\"%s\" next_in_h=%.1f", res.multiplier,
				    res.ops_per_s, (long long)res.elapsed_ms, res.compute_s * 1000,
				    res.device, v->o.reverify_hours);
				next = now + (time_t)(v->o.reverify_hours * 3600);
			} else if (atomic_load(&v->cancel)) {
				break;
			} else if (rc == TROOP_ERATE) {
				/* a restart soon after a proof: the coordinator keeps the
				 * result it has; try again when it allows */
				const char *w = strstr(res.message, "try again in ");
				int wait = w ? atoi(w + 13) + 1 : 0;
				if (wait <= 0 || wait > retry_s)
					wait = retry_s;
				log_info("poh_deferred", "reason=\"the coordinator ran a proof for this "
				    "node recently; its result stands until the next one\" "
				    "next_in_s=%d", wait);
				next = now + wait;
			} else {
				/* a 429 is the coordinator's limits (a node must heartbeat
				 * a while before its first challenge): sooner than a failure */
				int wait = res.http_status == 429 && retry_s > VERIFIER_RATE_RETRY_S ?
				    VERIFIER_RATE_RETRY_S : retry_s;
				log_warn("poh_failed", "status=%d error=\"%s\" retry_in_s=%d",
				    res.http_status, res.message, wait);
				next = now + wait;
			}
		}
		if (!nap(v, check_s))
			break;
		gpu_signature(gpu_now, sizeof(gpu_now));
		if (strcmp(gpu_now, gpu_seen) != 0) {
			log_info("poh_gpu_changed", "was=\"%s\" now=\"%s\"", gpu_seen, gpu_now);
			snprintf(gpu_seen, sizeof(gpu_seen), "%s", gpu_now);
			poh_engine_close(engine);
			engine = NULL;
			if (poh_engine_open(&engine, &eo) != 0)
				break;
			next = 0;
		}
	}
out:
	poh_engine_close(engine);
	http_client_free(hc);
	return NULL;
}

int verifier_start(verifier **out, const verifier_opts *o)
{
	verifier *v = calloc(1, sizeof(*v));

	if (!v)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	v->o = *o;
	v->id = *o->id;
	snprintf(v->coordinator, sizeof(v->coordinator), "%s", o->coordinator);
	v->o.coordinator = v->coordinator;
	v->o.id = &v->id;
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->cv, NULL);
	atomic_init(&v->cancel, 0);
	if (pthread_create(&v->thread, NULL, verifier_main, v) != 0) {
		identity_wipe(&v->id);
		free(v);
		return troop_error_set(TROOP_ERR, "cannot start the proof-of-hardware thread");
	}
	*out = v;
	return 0;
}

bool verifier_verified(verifier *v, double *multiplier)
{
	bool ok;

	pthread_mutex_lock(&v->mu);
	ok = v->verified;
	if (multiplier)
		*multiplier = v->multiplier;
	pthread_mutex_unlock(&v->mu);
	return ok;
}

void verifier_cancel(verifier *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->mu);
	v->stop = true;
	atomic_store(&v->cancel, 1);
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
}

void verifier_stop(verifier *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->mu);
	v->stop = true;
	atomic_store(&v->cancel, 1);
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->thread, NULL);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->cv);
	identity_wipe(&v->id);
	free(v);
}
