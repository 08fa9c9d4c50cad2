/*
 * poh_state.c - proof-of-hardware configuration, challenge records,
 * clocks, sampling and the multiplier for the coordinator (poh_state.h).
 */
#include "poh_state.h"

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "encoding.h"
#include "error.h"
#include "json.h"
#include "log.h"

/* ---- configuration ------------------------------------------------------------- */

static int check_class(const char *flag_n, const char *flag_r, size_t n, unsigned rounds)
{
	if (poh_params_check(n, rounds) != 0)
		return troop_error_set(TROOP_EINVAL, "--%s / --%s: %s", flag_n, flag_r,
		    troop_error_msg());
	return 0;
}

/* Largest reveal body for class n: every sampled row in base64 with its
 * path, and some JSON around each. */
static size_t reveal_size(size_t n, unsigned samples)
{
	size_t per = b64_len(n) + POH_PATH_MAX * (b64_len(POH_HASH_LEN) + 3) + 64;

	return (size_t)samples * per + 256;
}

int poh_config_load(poh_config *out, const struct config *cfg, size_t max_body)
{
	long cpus = poh_cpu_count();
	int rc;

	memset(out, 0, sizeof(*out));
	out->gpu_n = (size_t)config_int(cfg, "poh-matrix-size");
	out->gpu_rounds = (unsigned)config_int(cfg, "poh-rounds");
	out->cpu_n = (size_t)config_int(cfg, "poh-cpu-matrix-size");
	out->cpu_rounds = (unsigned)config_int(cfg, "poh-cpu-rounds");
	out->samples = (unsigned)config_int(cfg, "poh-samples");
	out->reference_ops = config_double(cfg, "poh-reference-ops");
	out->rate_limit_s = config_int(cfg, "poh-rate-limit");
	out->challenge_ttl_s = config_int(cfg, "poh-challenge-ttl");
	out->verify_threads = cpus < 4 ? (int)cpus : 4;
	out->pool_workers = (int)config_int(cfg, "poh-check-workers");
	out->pool_queue = (int)config_int(cfg, "poh-check-queue");
	out->min_node_age_s = config_int(cfg, "poh-min-node-age");
	out->owner_limit = config_int(cfg, "poh-owner-limit");
	out->address_limit = config_int(cfg, "poh-address-limit");

	if ((rc = check_class("poh-matrix-size", "poh-rounds", out->gpu_n, out->gpu_rounds)) ||
	    (rc = check_class("poh-cpu-matrix-size", "poh-cpu-rounds", out->cpu_n,
	    out->cpu_rounds)))
		return rc;
	if (out->samples < 1 || out->samples > POH_K_MAX || out->samples > out->cpu_n ||
	    out->samples > out->gpu_n)
		return troop_error_set(TROOP_EINVAL, "--poh-samples: must be between 1 and %d and "
		    "at most the matrix size, got %u", POH_K_MAX, out->samples);
	if (reveal_size(out->gpu_n, out->samples) > max_body ||
	    reveal_size(out->cpu_n, out->samples) > max_body)
		return troop_error_set(TROOP_EINVAL, "--poh-samples: %u rows of the matrix size "
		    "do not fit in a %zu-byte request body", out->samples, max_body);
	if (!(out->reference_ops > 0))
		return troop_error_set(TROOP_EINVAL, "--poh-reference-ops: must be above 0");
	if (out->challenge_ttl_s < 1)
		return troop_error_set(TROOP_EINVAL, "--poh-challenge-ttl: must be at least 1");
	if (out->gpu_rounds < POH_ROUNDS_ADVISED || out->cpu_rounds < POH_ROUNDS_ADVISED)
		log_warn("poh_config", "rounds=%u/%u advised_min=%d reason=\"with fewer rounds, "
		    "generating B costs the verifier more than 2k/n of the worker's work\"",
		    out->gpu_rounds, out->cpu_rounds, POH_ROUNDS_ADVISED);
	return 0;
}

double poh_verify_cost(const poh_config *pc, size_t n, unsigned rounds)
{
	return (double)pc->samples * rounds * (double)n * (double)n;
}

/* ---- clocks and identity of this process ----------------------------------------- */

int64_t poh_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t poh_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pthread_once_t instance_once = PTHREAD_ONCE_INIT;
static char instance_hex[POH_INSTANCE_LEN + 1];

static void instance_init(void)
{
	unsigned char raw[POH_INSTANCE_LEN / 2];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(instance_hex, sizeof(instance_hex), raw, sizeof(raw));
}

const char *poh_instance(void)
{
	pthread_once(&instance_once, instance_init);
	return instance_hex;
}

int64_t poh_elapsed_ms(const poh_challenge *c, int64_t now_ms, int64_t now_mono_ms)
{
	int64_t d;

	if (strcmp(c->instance, poh_instance()) == 0)
		d = now_mono_ms - c->issued_mono_ms;
	else
		d = now_ms - c->issued_ms;
	return d < 1 ? 1 : d;
}

/* ---- records ------------------------------------------------------------------ */

void poh_challenge_init(poh_challenge *c, const char *node, size_t n, unsigned rounds,
    unsigned samples)
{
	unsigned char id[POH_CHALLENGE_ID_BYTES];

	memset(c, 0, sizeof(*c));
	randombytes_buf(id, sizeof(id));
	b64url_encode(c->id, sizeof(c->id), id, sizeof(id));
	snprintf(c->node, sizeof(c->node), "%s", node);
	randombytes_buf(c->seed, sizeof(c->seed));
	c->n = n;
	c->rounds = rounds;
	c->samples = samples;
	c->issued_ms = poh_wall_ms();
	c->issued_mono_ms = poh_mono_ms();
	snprintf(c->instance, sizeof(c->instance), "%s", poh_instance());
}

int poh_challenge_encode(char **out, size_t *len, const poh_challenge *c)
{
	char seed[64], root[64];
	json_t *o, *rows;
	int rc = 0;

	*out = NULL;
	b64url_encode(seed, sizeof(seed), c->seed, sizeof(c->seed));
	o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "id", c->id,
	    "node", c->node, "seed", seed, "n", (json_int_t)c->n, "rounds",
	    (json_int_t)c->rounds, "samples", (json_int_t)c->samples,
	    "issued_ms", (json_int_t)c->issued_ms, "issued_mono_ms",
	    (json_int_t)c->issued_mono_ms, "instance", c->instance);
	sodium_memzero(seed, sizeof(seed));
	if (!o)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	if (c->has_root) {
		rows = json_array();
		for (size_t i = 0; i < c->n_rows; i++)
			json_array_append_new(rows, json_integer(c->rows[i]));
		b64_encode(root, sizeof(root), c->root, sizeof(c->root));
		json_object_set_new(o, "root", json_string(root));
		json_object_set_new(o, "elapsed_ms", json_integer(c->elapsed_ms));
		json_object_set_new(o, "deadline_ms", json_integer(c->deadline_ms));
		json_object_set_new(o, "rows", rows);
	}
	*out = json_dump_compact(o, len);
	if (!*out)
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
	json_decref(o);
	return rc;
}

int poh_challenge_decode(poh_challenge *out, const char *buf, size_t len)
{
	json_t *o = NULL, *rows = NULL, *v;
	const char *id, *node, *seed, *inst, *root = NULL;
	int64_t n, rounds, samples, issued, mono, elapsed = 0, deadline = 0;
	size_t got = 0, i;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = json_parse_object(&o, buf, len)) != 0)
		return rc;
	if ((rc = json_get_strn(&id, o, "id", true, POH_CHALLENGE_ID_MAX)) ||
	    (rc = json_get_strn(&node, o, "node", true, TROOP_ID_LEN)) ||
	    (rc = json_get_str(&seed, o, "seed", true)) ||
	    (rc = json_get_int(&n, o, "n", true, POH_N_MIN, POH_N_MAX)) ||
	    (rc = json_get_int(&rounds, o, "rounds", true, POH_ROUNDS_MIN, POH_ROUNDS_MAX)) ||
	    (rc = json_get_int(&samples, o, "samples", true, 1, POH_K_MAX)) ||
	    (rc = json_get_int(&issued, o, "issued_ms", true, 0, INT64_MAX)) ||
	    (rc = json_get_int(&mono, o, "issued_mono_ms", true, INT64_MIN, INT64_MAX)) ||
	    (rc = json_get_strn(&inst, o, "instance", true, POH_INSTANCE_LEN)) ||
	    (rc = json_get_str(&root, o, "root", false)) ||
	    (rc = json_get_int(&elapsed, o, "elapsed_ms", false, 0, INT64_MAX)) ||
	    (rc = json_get_int(&deadline, o, "deadline_ms", false, 0, INT64_MAX)) ||
	    (rc = json_get_array(&rows, o, "rows", false, POH_K_MAX)))
		goto out;
	if (b64url_decode(out->seed, sizeof(out->seed), &got, seed, strlen(seed)) != 0 ||
	    got != POH_SEED_LEN) {
		rc = troop_error_set(TROOP_EINVAL, "challenge record: bad seed");
		goto out;
	}
	if (root) {
		if (b64_decode(out->root, sizeof(out->root), &got, root, strlen(root)) != 0 ||
		    got != POH_HASH_LEN) {
			rc = troop_error_set(TROOP_EINVAL, "challenge record: bad root");
			goto out;
		}
		out->has_root = true;
		json_array_foreach(rows, i, v) {
			json_int_t x = json_integer_value(v);
			if (!json_is_integer(v) || x < 0 || x >= n) {
				rc = troop_error_set(TROOP_EINVAL, "challenge record: bad row");
				goto out;
			}
			out->rows[out->n_rows++] = (uint32_t)x;
		}
	}
	snprintf(out->id, sizeof(out->id), "%s", id);
	snprintf(out->node, sizeof(out->node), "%s", node);
	snprintf(out->instance, sizeof(out->instance), "%s", inst);
	out->n = (size_t)n;
	out->rounds = (unsigned)rounds;
	out->samples = (unsigned)samples;
	out->issued_ms = issued;
	out->issued_mono_ms = mono;
	out->elapsed_ms = elapsed;
	out->deadline_ms = deadline;
out:
	json_decref(o);
	return rc;
}

/* ---- sampling and the multiplier --------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void poh_sample_rows(poh_challenge *c)
{
	size_t k = c->samples < c->n ? c->samples : c->n;

	c->n_rows = 0;
	while (c->n_rows < k) {
		uint32_t x = randombytes_uniform((uint32_t)c->n);
		bool dup = false;
		for (size_t i = 0; i < c->n_rows && !dup; i++)
			dup = c->rows[i] == x;
		if (!dup)
			c->rows[c->n_rows++] = x;
	}
	qsort(c->rows, c->n_rows, sizeof(c->rows[0]), cmp_u32);
}

double poh_multiplier(double ops, int64_t elapsed_ms, double reference_ops)
{
	double m;

	if (elapsed_ms < 1)
		elapsed_ms = 1;
	m = ops / ((double)elapsed_ms / 1000.0) / reference_ops;
	if (!(m >= POH_MULTIPLIER_MIN))    /* also NaN */
		m = POH_MULTIPLIER_MIN;
	if (m > POH_MULTIPLIER_MAX)
		m = POH_MULTIPLIER_MAX;
	return m;
}
