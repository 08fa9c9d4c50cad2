/*
 * heartbeat.c - the worker's control loop (heartbeat.h).
 *
 * The loop sleeps on a condition variable until the next thing is due: a
 * heartbeat, a GPU sample, an engine re-read, or the one-second status
 * check; heartbeat_offline wakes it to stop.  All its network calls use
 * one blocking http_client owned by the thread (after the join, by
 * heartbeat_offline).
 */
#include "heartbeat.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "endpoints.h"
#include "engines/detect.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "worker_metrics.h"

#define STATUS_CHECK_MS 1000
#define DETECT_TIMEOUT_MS 2000
/* how often each engine gets one cheap request to see whether it died or
 * came back (a change triggers a full re-read at once) */
#define ENGINE_PING_MS 3000

struct heartbeat {
	heartbeat_opts o;
	troop_identity id;
	char *coordinator, *name, *address, *owner;
	engine_spec *specs;
	http_client *c;
	gpu_sampler *gpu;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	atomic_int abort_calls; /* set on shutdown: a call to a hung coordinator ends */
	bool started;
	bool offline_sent;
	bool registered;        /* under mu */
	int fails;
	int next_s;             /* from the last reply */
	char last_status[8];
	int64_t last_status_hb_ms;
	long trimmed_at;        /* jobs_done at the last malloc_trim */
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ms +- 10%. */
static int64_t jitter(int64_t ms)
{
	int64_t span = ms / 5;

	if (span <= 0)
		return ms;
	return ms - span / 2 + (int64_t)randombytes_uniform((uint32_t)span + 1);
}

/* ---- engines ------------------------------------------------------------------ */

int heartbeat_read_engines(catalog *cat, http_client *c, const engine_spec *specs,
    size_t nspecs, bool *changed)
{
	engine_info *infos = NULL;
	size_t n = 0;
	int rc;

	if (changed)
		*changed = false;
	if (nspecs == 0) {
		rc = engine_autodetect(&infos, &n, c, NULL);
		if (rc)
			return rc;
	} else {
		infos = calloc(nspecs, sizeof(*infos));
		if (!infos)
			return troop_error_set(TROOP_ENOMEM, "out of memory reading engines");
		for (n = 0; n < nspecs; n++) {
			const struct engine_driver *d = engine_driver_get(specs[n].type);

			if (engine_detect(&infos[n], c, d, specs[n].url, specs[n].api_key) != 0) {
				log_warn("engine_unavailable", "type=%s url=%s error=\"%s\"", d->name,
				    specs[n].url, troop_error_msg());
				memset(&infos[n], 0, sizeof(infos[n]));
				infos[n].type = specs[n].type;
				snprintf(infos[n].url, sizeof(infos[n].url), "%s", specs[n].url);
				infos[n].port = engine_url_port(specs[n].url);
				snprintf(infos[n].api_key, sizeof(infos[n].api_key), "%s",
				    specs[n].api_key);
				infos[n].ready = false;
			}
		}
	}
	/* which APIs each engine serves natively (the rest are translated) */
	for (size_t i = 0; i < n; i++)
		if (infos[i].ready)
			infos[i].endpoints = endpoints_probe(c, infos[i].url, infos[i].api_key);
	rc = catalog_set(cat, infos, n, changed);
	engine_info_array_free(infos, n);
	return rc;
}

/* ---- the body ------------------------------------------------------------------ */

/* Clamp a GPU figure into the range the heartbeat decoder accepts. */
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

json_t *heartbeat_body(const heartbeat_opts *o, const char *status, const gpu_info *gpu,
    int active_jobs)
{
	unsigned char xpk[crypto_scalarmult_curve25519_BYTES];
	proto_heartbeat hb;
	proto_hardware *hw = &hb.hardware;
	json_t *models, *engines, *b = NULL;
	size_t i;
	json_t *v;

	memset(&hb, 0, sizeof(hb));
	/* the catalog's lists, through the decoder: what the coordinator would
	 * refuse is left out here and logged, not sent */
	models = catalog_models_json(o->cat);
	engines = catalog_engines_json(o->cat);
	if (!models || !engines)
		goto out;
	if (json_array_size(models) > PROTO_MODELS_MAX) {
		log_warn("heartbeat_models", "models=%zu advertised=%d error=\"over the "
		    "protocol's limit; the rest are left out\"", json_array_size(models),
		    PROTO_MODELS_MAX);
		while (json_array_size(models) > PROTO_MODELS_MAX)
			json_array_remove(models, json_array_size(models) - 1);
	}
	if (proto_models_decode(&hb.models, &hb.n_models, models) != 0) {
		log_warn("heartbeat_models", "error=\"%s\"", troop_error_msg());
		if (troop_error_last() == TROOP_ENOMEM)
			goto out;
	}
	json_array_foreach(engines, i, v) {
		proto_engine *e;
		if (hb.n_engines == PROTO_ENGINES_MAX)
			break;
		e = &hb.engines[hb.n_engines++];
		snprintf(e->type, sizeof(e->type), "%s",
		    json_string_value(json_object_get(v, "type")) ?: "");
		snprintf(e->version, sizeof(e->version), "%s",
		    json_string_value(json_object_get(v, "version")) ?: "");
		e->port = (int)clamp64(json_integer_value(json_object_get(v, "port")), 0, 65535);
	}
	snprintf(hb.node_id, sizeof(hb.node_id), "%s", o->id->id);
	snprintf(hb.name, sizeof(hb.name), "%s", o->name ? o->name : "");
	snprintf(hb.tailscale_ip, sizeof(hb.tailscale_ip), "%s", o->address ? o->address : "");
	hb.port = o->port;
	hb.status = strcmp(status, "OFFLINE") == 0 ? PROTO_OFFLINE :
	    strcmp(status, "BUSY") == 0 ? PROTO_BUSY : PROTO_IDLE;
	/* the X25519 key that goes with the node key, for prompt encryption */
	if (crypto_sign_ed25519_pk_to_curve25519(xpk, o->id->pk) == 0)
		sodium_bin2base64(hb.encryption_public_key, sizeof(hb.encryption_public_key), xpk,
		    sizeof(xpk), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	/* the signed statement of the sealing key (rotated here when due) */
	if (o->seal && seal_keys_statement(o->seal, hb.seal_key, sizeof(hb.seal_key),
	    (int64_t)time(NULL)) != 0)
		hb.seal_key[0] = '\0';
	hb.has_hardware = true;
	if (gpu && gpu->count > 0) {
		snprintf(hw->gpu, sizeof(hw->gpu), "%s", gpu->name);
		hw->gpu_count = clamp64(gpu->count, 0, PROTO_GPU_COUNT_MAX);
		hw->vram_total = clamp64(gpu->vram_total_mb, -1, PROTO_VRAM_MAX);
		hw->vram_free = clamp64(gpu->vram_free_mb, -1, PROTO_VRAM_MAX);
		hw->gpu_util = clamp64(gpu->util_percent, -1, 100);
		hw->has_vram = hw->has_util = true;
		snprintf(hw->source, sizeof(hw->source), "%s", gpu->source);
	} else {
		snprintf(hw->source, sizeof(hw->source), "none");
	}
	hb.active_jobs = (int)clamp64(active_jobs, 0, PROTO_JOBS_MAX);
	hb.max_jobs = (int)clamp64(o->max_jobs, 0, PROTO_JOBS_MAX);
	snprintf(hb.owner, sizeof(hb.owner), "%s", o->owner ? o->owner : "");
	snprintf(hb.version, sizeof(hb.version), "troop/%s", TROOP_VERSION);
	b = proto_heartbeat_encode(&hb);
out:
	json_decref(models);
	json_decref(engines);
	proto_heartbeat_clear(&hb);
	return b;
}

/* ---- the loop ------------------------------------------------------------------ */

static int active_now(heartbeat *h)
{
	return h->o.active_jobs ? h->o.active_jobs(h->o.active_arg) : 0;
}

/* BUSY only while the owner uses the GPU.  Full job slots are not a status:
 * the coordinator counts the node's jobs itself (one more at each ticket,
 * one less at each receipt) and stops picking it at max_jobs, so a node is
 * free again the moment its last receipt arrives, not at its next
 * heartbeat. */
static const char *status_now(heartbeat *h)
{
	return gpu_sampler_busy(h->gpu) ? "BUSY" : "IDLE";
}

/* One signed heartbeat.  Returns 0 when the coordinator accepted it. */
static int send_heartbeat(heartbeat *h, const char *status)
{
	int active = active_now(h);
	json_t *body = heartbeat_body(&h->o, status, gpu_sampler_last(h->gpu), active);
	json_t *reply = NULL;
	proto_heartbeat_reply rep;
	int st = 0, rc;

	if (!body)
		return troop_error_set(TROOP_ENOMEM, "out of memory building a heartbeat");
	rc = http_request_signed(h->c, &st, &reply, &h->id, "POST", h->coordinator,
	    "/heartbeat", body);
	json_decref(body);
	if (rc == 0 && st != 200) {
		proto_error e;
		if (proto_error_decode(&e, reply) != 0 || !e.message[0])
			snprintf(e.message, sizeof(e.message), "no message");
		rc = troop_error_set(st == 401 || st == 403 ? TROOP_EAUTH : TROOP_EUPSTREAM,
		    "coordinator answered %d: %.300s", st, e.message);
	}
	if (rc == 0 && proto_heartbeat_reply_decode(&rep, reply) != 0)
		rc = troop_error_set(TROOP_EUPSTREAM, "coordinator's heartbeat reply: %s",
		    troop_error_msg());
	if (rc == 0) {
		int64_t next = rep.next_heartbeat;
		h->next_s = next >= 1 && next <= 300 ? (int)next : HEARTBEAT_DEFAULT_S;
		if (h->fails)
			log_info("heartbeat", "coordinator=%s status=%s result=ok after_failures=%d",
			    h->coordinator, status, h->fails);
		else
			log_debug("heartbeat", "status=%s active=%d next=%d", status, active,
			    h->next_s);
		h->fails = 0;
		snprintf(h->last_status, sizeof(h->last_status), "%s", status);
		/* a ticket key we do not know yet: a rotation, learnt before the
		 * key signs (one fetch per heartbeat at most) */
		if (h->o.keys && rep.ticket_kid[0] && !keyring_has(h->o.keys, rep.ticket_kid)) {
			if (keyring_fetch(h->o.keys, h->c, h->coordinator) != 0)
				log_warn("coordinator_key", "kid=%s error=\"%s\"", rep.ticket_kid,
				    troop_error_msg());
			else
				log_info("coordinator_key", "kid=%s learnt=%d keys=%zu", rep.ticket_kid,
				    keyring_has(h->o.keys, rep.ticket_kid),
				    keyring_count(h->o.keys));
		}
	} else {
		h->fails++;
		log_warn("heartbeat", "coordinator=%s status=%s failures=%d error=\"%s\"",
		    h->coordinator, status, h->fails, troop_error_msg());
	}
	pthread_mutex_lock(&h->mu);
	h->registered = rc == 0;
	pthread_mutex_unlock(&h->mu);
	json_decref(reply);
	return rc;
}

/* Heartbeat now, then say when the next is due. */
static int64_t beat(heartbeat *h)
{
	int64_t delay;

	if (h->o.keys && keyring_count(h->o.keys) == 0 &&
	    keyring_fetch(h->o.keys, h->c, h->coordinator) != 0)
		log_warn("coordinator_key", "error=\"%s\"", troop_error_msg());
	if (send_heartbeat(h, status_now(h)) == 0) {
		delay = (int64_t)h->next_s * 1000;
	} else {
		int shift = h->fails < 7 ? h->fails - 1 : 6;
		delay = (int64_t)1000 << shift;
		if (delay > HEARTBEAT_BACKOFF_MAX_S * 1000)
			delay = HEARTBEAT_BACKOFF_MAX_S * 1000;
	}
	h->last_status_hb_ms = mono_ms();
	return mono_ms() + jitter(delay);
}

/* Ping every engine; true when one died or came back (its answer differs
 * from its readiness in the catalog). */
static bool engines_changed_state(heartbeat *h)
{
	engine_info *infos = NULL;
	size_t n = 0;
	bool changed = false;

	/* auto-detected engines that went away are not in the catalog: look
	 * for them again while nothing is served */
	if (h->o.nspecs == 0 && catalog_model_count(h->o.cat) == 0)
		return true;
	if (catalog_engines_copy(h->o.cat, &infos, &n) != 0)
		return false;
	for (size_t i = 0; i < n && !changed; i++) {
		bool alive = engine_ping(&infos[i], h->c);

		if (alive != infos[i].ready) {
			log_info("engine_check", "type=%s url=%s reason=%s",
			    engine_type_name(infos[i].type), infos[i].url,
			    alive ? "came_back" : "gone");
			changed = true;
		}
	}
	engine_info_array_free(infos, n);
	return changed;
}

static void *loop_main(void *arg)
{
	heartbeat *h = arg;
	int64_t now = mono_ms();
	int64_t next_hb = now + jitter((int64_t)h->next_s * 1000);
	int64_t next_sample = now + (int64_t)h->o.gpu_sample_s * 1000;
	int64_t next_refresh = now + (int64_t)h->o.model_refresh_s * 1000;
	int64_t next_ping = now + ENGINE_PING_MS;

	if (h->fails)
		next_hb = now + 1000;
	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		int64_t due = next_hb, wait;
		struct timespec ts;

		if (next_sample < due)
			due = next_sample;
		if (next_refresh < due)
			due = next_refresh;
		if (next_ping < due)
			due = next_ping;
		now = mono_ms();
		if (due > now + STATUS_CHECK_MS)
			due = now + STATUS_CHECK_MS;
		wait = due - now;
		if (wait > 0) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&h->cv, &h->mu, &ts);
			if (h->stop)
				break;
		}
		pthread_mutex_unlock(&h->mu);

		now = mono_ms();
		if (now >= next_sample) {
			/* the sampler logs owner-use changes itself */
			(void)gpu_sampler_sample(h->gpu, active_now(h), NULL);
			worker_metrics_gpu(gpu_sampler_last(h->gpu), gpu_sampler_busy(h->gpu));
			next_sample = mono_ms() + (int64_t)h->o.gpu_sample_s * 1000;
		}
		if (catalog_take_refresh(h->o.cat)) {
			log_info("engine_check", "reason=job_failed");
			next_refresh = now;
		}
		if (now >= next_ping) {
			http_client_set_limits(h->c, DETECT_TIMEOUT_MS, 64 * 1024);
			if (engines_changed_state(h))
				next_refresh = now;
			http_client_set_limits(h->c, HEARTBEAT_TIMEOUT_MS, 256 * 1024);
			next_ping = mono_ms() + ENGINE_PING_MS;
		}
		if (now >= next_refresh) {
			bool changed = false;
			int rrc;

			http_client_set_limits(h->c, DETECT_TIMEOUT_MS, 8 * 1024 * 1024);
			rrc = heartbeat_read_engines(h->o.cat, h->c, h->specs, h->o.nspecs, &changed);
			http_client_set_limits(h->c, HEARTBEAT_TIMEOUT_MS, 256 * 1024);
			if (rrc == 0 && changed) {
				log_info("models_changed", "models=%zu", catalog_model_count(h->o.cat));
				next_hb = now;
			}
			next_refresh = mono_ms() + (int64_t)h->o.model_refresh_s * 1000;
		}
		now = mono_ms();
		if (now < next_hb && h->fails == 0 &&
		    strcmp(status_now(h), h->last_status) != 0 &&
		    now - h->last_status_hb_ms >= 1000)
			next_hb = now;
		if (now >= next_hb) {
			next_hb = beat(h);
			/* give the memory of a burst of jobs back once idle (glibc
			 * keeps freed stream buffers otherwise) */
			if (active_now(h) == 0) {
				long done = h->o.jobs_done ? h->o.jobs_done(h->o.active_arg) : 0;
				if (done != h->trimmed_at) {
					malloc_trim(0);
					h->trimmed_at = done;
				}
			}
		}

		pthread_mutex_lock(&h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* ---- API ----------------------------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

int heartbeat_start(heartbeat **out, const heartbeat_opts *o)
{
	heartbeat *h;
	int rc;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the heartbeat");
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->o = *o;
	h->id = *o->id;
	h->o.id = &h->id;
	h->coordinator = dup_or_empty(o->coordinator);
	h->name = dup_or_empty(o->name);
	h->address = dup_or_empty(o->address);
	h->owner = dup_or_empty(o->owner);
	h->o.coordinator = h->coordinator;
	h->o.name = h->name;
	h->o.address = h->address;
	h->o.owner = h->owner;
	h->next_s = HEARTBEAT_DEFAULT_S;
	if (h->o.model_refresh_s < 1)
		h->o.model_refresh_s = 60;
	if (h->o.gpu_sample_s < 1)
		h->o.gpu_sample_s = 5;
	if (o->nspecs) {
		h->specs = calloc(o->nspecs, sizeof(*h->specs));
		if (h->specs)
			memcpy(h->specs, o->specs, o->nspecs * sizeof(*h->specs));
	}
	h->o.specs = h->specs;
	if (!h->coordinator || !h->name || !h->address || !h->owner ||
	    (o->nspecs && !h->specs) || http_client_new(&h->c) != 0) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory for the heartbeat");
		goto fail;
	}
	http_client_set_limits(h->c, HEARTBEAT_TIMEOUT_MS, 256 * 1024);
	atomic_init(&h->abort_calls, 0);
	http_client_set_abort(h->c, &h->abort_calls);
	rc = gpu_sampler_new(&h->gpu, &o->policy);
	if (rc)
		goto fail;
	(void)gpu_sampler_sample(h->gpu, 0, NULL);
	h->last_status_hb_ms = mono_ms();
	(void)beat(h);
	if (pthread_create(&h->thr, NULL, loop_main, h) != 0) {
		rc = troop_error_set(TROOP_ERR, "cannot start the heartbeat thread");
		goto fail;
	}
	h->started = true;
	*out = h;
	return 0;
fail:
	h->offline_sent = true;  /* never registered by us: nothing to withdraw */
	heartbeat_free(h);
	return rc;
}

bool heartbeat_registered(heartbeat *h)
{
	bool r;

	pthread_mutex_lock(&h->mu);
	r = h->registered;
	pthread_mutex_unlock(&h->mu);
	return r;
}

void heartbeat_offline(heartbeat *h)
{
	if (!h || h->offline_sent)
		return;
	if (h->started) {
		pthread_mutex_lock(&h->mu);
		h->stop = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
		atomic_store(&h->abort_calls, 1);   /* within about a second */
		pthread_join(h->thr, NULL);
		atomic_store(&h->abort_calls, 0);
		h->started = false;
	}
	h->offline_sent = true;
	http_client_set_limits(h->c, HEARTBEAT_OFFLINE_TIMEOUT_MS, 64 * 1024);
	if (send_heartbeat(h, "OFFLINE") == 0)
		log_info("heartbeat", "status=OFFLINE result=ok");
}

void heartbeat_free(heartbeat *h)
{
	if (!h)
		return;
	heartbeat_offline(h);
	gpu_sampler_free(h->gpu);
	http_client_free(h->c);
	if (h->specs)
		sodium_memzero(h->specs, h->o.nspecs * sizeof(*h->specs));
	free(h->specs);
	free(h->coordinator);
	free(h->name);
	free(h->address);
	free(h->owner);
	identity_wipe(&h->id);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
