/*
 * poh_worker.c - the worker's side of proof-of-hardware: the compute
 * engine (GPU with CPU spot checks, or CPU), the challenge -> verify ->
 * reveal exchange with the coordinator, progress display, and the
 * `--benchmark` command (poh_worker.h).
 */
#include "poh_worker.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "encoding.h"
#include "error.h"
#include "json.h"
#include "log.h"
#include "proto.h"

#define SPOT_CHECK_ROWS 2
#define CHALLENGE_ID_MAX 64

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int poh_device_parse(poh_device *out, const char *s)
{
	if (s && strcmp(s, "auto") == 0)
		*out = POH_DEVICE_AUTO;
	else if (s && strcmp(s, "cpu") == 0)
		*out = POH_DEVICE_CPU;
	else if (s && strcmp(s, "gpu") == 0)
		*out = POH_DEVICE_GPU;
	else
		return troop_error_set(TROOP_EINVAL, "device must be auto, cpu or gpu, got '%s'",
		    s ? s : "");
	return 0;
}

/* ---- the engine -------------------------------------------------------------------- */

/* What the GPU has earned: the device-side mapping, the host mapping after
 * one failed spot check, the CPU after a second or a failed run.  The
 * GPU itself (cuBLAS loaded, a context on the device) is open only while a
 * challenge runs: poh_engine_release gives it back between challenges and
 * the next compute opens it again at the level it had. */
enum gpu_level { GPU_NONE = 0, GPU_HOST_MAP, GPU_DEVICE_MAP };

struct poh_engine {
	int threads;
	poh_engine_opts o;
	enum gpu_level level;
	poh_cuda *gpu;       /* open now (NULL between challenges, or the CPU) */
	char gpu_name[128];
	char desc[160];
};

static void describe(poh_engine *e)
{
	if (e->level != GPU_NONE)
		snprintf(e->desc, sizeof(e->desc), "cuda: %s (%s mapping)", e->gpu_name,
		    e->level == GPU_DEVICE_MAP ? "device" : "host");
	else
		snprintf(e->desc, sizeof(e->desc), "cpu: %s, %d thread%s", poh_cpu_kernel(),
		    e->threads, e->threads == 1 ? "" : "s");
}

static int gpu_open(poh_engine *e)
{
	const poh_engine_opts *o = &e->o;

	return o->cuda_api ? poh_cuda_open_with(&e->gpu, o->gpu_index, o->cuda_api) :
	    poh_cuda_open(&e->gpu, o->gpu_index, o->cuda_libs);
}

/* Drop to `level`: close the GPU for GPU_NONE. */
static void gpu_demote(poh_engine *e, enum gpu_level level)
{
	e->level = level;
	if (level == GPU_NONE) {
		poh_cuda_close(e->gpu);
		e->gpu = NULL;
	} else if (level == GPU_HOST_MAP && e->gpu) {
		poh_cuda_disable_kernel(e->gpu);
	}
	describe(e);
}

/* The GPU open for a challenge, at the level earned; false: the CPU. */
static bool gpu_acquire(poh_engine *e)
{
	if (e->level == GPU_NONE)
		return false;
	if (!e->gpu) {
		if (gpu_open(e) != 0) {
			log_error("poh_gpu_failed", "device=\"%s\" error=\"%s\" fallback=cpu",
			    e->gpu_name, troop_error_msg());
			gpu_demote(e, GPU_NONE);
			return false;
		}
		if (e->level == GPU_HOST_MAP)
			poh_cuda_disable_kernel(e->gpu);
	}
	return true;
}

int poh_engine_open(poh_engine **out, const poh_engine_opts *o)
{
	poh_engine *e;
	poh_engine_opts def = { POH_DEVICE_AUTO, 0, 0, NULL, NULL };

	*out = NULL;
	if (!o)
		o = &def;
	e = calloc(1, sizeof(*e));
	if (!e)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	e->o = *o;
	e->threads = o->threads > 0 ? o->threads : poh_cpu_count();
	if (o->device != POH_DEVICE_CPU) {
		int rc = gpu_open(e);
		if (rc != 0 && o->device == POH_DEVICE_GPU) {
			free(e);
			return rc;
		}
		if (rc != 0) {
			log_info("poh_device", "device=cpu reason=\"%s\" hint=\"the proof-of-hardware "
			    "runs on the CPU; nothing to do unless this machine has an NVIDIA GPU\"",
			    troop_error_msg());
		} else {
			e->level = poh_cuda_maps_on_device(e->gpu) ? GPU_DEVICE_MAP : GPU_HOST_MAP;
			snprintf(e->gpu_name, sizeof(e->gpu_name), "%s", poh_cuda_name(e->gpu));
			/* known usable; opened again for each challenge */
			poh_engine_release(e);
		}
	}
	describe(e);
	*out = e;
	return 0;
}

void poh_engine_release(poh_engine *e)
{
	if (e && e->gpu) {
		poh_cuda_close(e->gpu);
		e->gpu = NULL;
	}
}

void poh_engine_close(poh_engine *e)
{
	if (!e)
		return;
	poh_cuda_close(e->gpu);
	free(e);
}

bool poh_engine_is_gpu(const poh_engine *e)
{
	return e->level != GPU_NONE;
}

const char *poh_engine_describe(const poh_engine *e)
{
	return e->desc;
}

void poh_computed_clear(poh_computed *c)
{
	if (!c)
		return;
	free(c->rows);
	poh_tree_free(c->tree);
	memset(c, 0, sizeof(*c));
}

int poh_engine_check(poh_engine *e, const uint8_t seed[POH_SEED_LEN],
    const poh_computed *pc, const uint32_t *asked, size_t n_asked)
{
	uint32_t idx[SPOT_CHECK_ROWS];
	size_t k = 0, n = pc->n;
	int8_t *mine = NULL;
	poh_ctx *ctx = NULL;
	int rc = 0;

	if (!pc->used_gpu || n_asked == 0)
		return 0;
	for (; k < SPOT_CHECK_ROWS && k < n_asked; k++)
		idx[k] = asked[randombytes_uniform((uint32_t)n_asked)];
	mine = malloc(k * n);
	if (!mine)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	if ((rc = poh_ctx_new(&ctx, seed, n, pc->rounds, e->threads)) != 0 ||
	    (rc = poh_compute_rows(mine, ctx, idx, k, e->threads, NULL, NULL)) != 0)
		goto out;
	for (size_t i = 0; i < k; i++) {
		if (memcmp(mine + i * n, pc->rows + (size_t)idx[i] * n, n) == 0)
			continue;
		log_error("poh_gpu_mismatch", "row=%u device=\"%s\" mapping=%s", idx[i],
		    e->gpu_name, e->level == GPU_DEVICE_MAP ? "device" : "host");
		/* next time: host mapping, and after a second failure the CPU */
		gpu_demote(e, e->level == GPU_DEVICE_MAP ? GPU_HOST_MAP : GPU_NONE);
		rc = troop_error_set(TROOP_ERR, "row %u computed on the GPU differs from the CPU's: "
		    "not revealed (the next challenge uses %s)", idx[i], e->desc);
		break;
	}
out:
	poh_ctx_free(ctx);
	free(mine);
	return rc;
}

int poh_engine_compute(poh_computed *out, poh_engine *e, const uint8_t seed[POH_SEED_LEN],
    size_t n, unsigned rounds, poh_progress_fn progress, void *arg)
{
	poh_ctx *ctx = NULL;
	double t0 = mono_s();
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = poh_params_check(n, rounds)) != 0)
		return rc;
	if ((rc = poh_ctx_new(&ctx, seed, n, rounds, e->threads)) != 0)
		return rc;
	out->rows = malloc(n * n);
	if (!out->rows) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory for %zu x %zu rows", n, n);
		goto out;
	}
	out->n = n;
	out->rounds = rounds;
	if (gpu_acquire(e)) {
		rc = poh_cuda_compute(out->rows, e->gpu, ctx, e->threads, progress, arg);
		if (rc == 0) {
			out->used_gpu = true;
		} else if (strcmp(troop_error_msg(), "cancelled") == 0) {
			goto out;
		} else {
			log_error("poh_gpu_failed", "device=\"%s\" error=\"%s\" fallback=cpu",
			    e->gpu_name, troop_error_msg());
			gpu_demote(e, GPU_NONE);    /* not trusted again in this process */
		}
	}
	if (!out->used_gpu &&
	    (rc = poh_compute_rows(out->rows, ctx, NULL, n, e->threads, progress, arg)) != 0)
		goto out;
	rc = poh_tree_build(&out->tree, out->rows, n, n, e->threads);
	out->compute_s = mono_s() - t0;
out:
	poh_ctx_free(ctx);
	if (rc != 0)
		poh_computed_clear(out);
	return rc;
}

/* ---- progress ---------------------------------------------------------------------- */

struct progress {
	poh_progress_mode mode;
	const atomic_int *cancel;     /* may be NULL */
	double start, last;
	int last_pct;
	bool drawn;
};

static int on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	double now = mono_s();
	int pct = total ? (int)(done * 100 / total) : 100;

	if (p->cancel && atomic_load(p->cancel))
		return 1;
	if (p->mode == POH_PROGRESS_BAR) {
		char bar[31];
		int fill = pct * 30 / 100;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(30 - fill));
		bar[30] = '\0';
		fprintf(stderr, "\rproof-of-hardware [%s] %3d%%  %5.1f s", bar, pct, now - p->start);
		fflush(stderr);
		p->drawn = true;
	} else if (p->mode == POH_PROGRESS_LOG && (now - p->last >= 2.0 || pct == 100) &&
	    pct != p->last_pct) {
		log_info("poh_progress", "percent=%d elapsed_ms=%lld", pct,
		    (long long)((now - p->start) * 1000));
		p->last = now;
		p->last_pct = pct;
	}
	return 0;
}

static void progress_end(struct progress *p)
{
	if (p->drawn)
		fputc('\n', stderr);
	p->drawn = false;
}

/* ---- the exchange -------------------------------------------------------------------- */

static int status_err(int status)
{
	switch (status) {
	case 400: return TROOP_EINVAL;
	case 401: return TROOP_EAUTH;
	case 403: return TROOP_EFORBIDDEN;
	case 404: return TROOP_ENOTFOUND;
	case 409: return TROOP_ECONFLICT;
	case 410: return TROOP_EGONE;
	case 413: return TROOP_ETOOLARGE;
	case 429: return TROOP_ERATE;
	case 503: return TROOP_EUNAVAIL;
	default: return TROOP_EUPSTREAM;
	}
}

/* One signed POST; non-2xx becomes a troop_err with the coordinator's
 * message.  *reply is a new reference on success. */
static int call(json_t **reply, poh_result *res, const poh_run_opts *o, const char *path,
    const json_t *body)
{
	int status = 0, rc;
	json_t *r = NULL;

	*reply = NULL;
	rc = http_request_signed(o->http, &status, &r, o->id, "POST", o->coordinator, path, body);
	res->http_status = status;
	if (rc != 0)
		return rc;
	if (status != 200) {
		proto_error e;
		if (proto_error_decode(&e, r) != 0 || !e.message[0])
			snprintf(e.message, sizeof(e.message), "(no error message)");
		rc = troop_error_set(status_err(status), "%s: %d %.400s", path, status, e.message);
		json_decref(r);
		return rc;
	}
	if (!json_is_object(r)) {
		json_decref(r);
		return troop_error_set(TROOP_EINVAL, "%s: the reply is not a JSON object", path);
	}
	*reply = r;
	return 0;
}

struct challenge {
	char id[CHALLENGE_ID_MAX + 1];
	uint8_t seed[POH_SEED_LEN];
	size_t n;
	unsigned rounds;
};

static int parse_challenge(struct challenge *ch, const json_t *r)
{
	proto_poh_challenge pc;
	int rc;

	if ((rc = proto_poh_challenge_decode(&pc, r)) != 0)
		return troop_error_set(rc, "challenge: %s", troop_error_msg());
	snprintf(ch->id, sizeof(ch->id), "%s", pc.challenge_id);
	memcpy(ch->seed, pc.seed, sizeof(ch->seed));
	ch->n = (size_t)pc.matrix_size;
	ch->rounds = (unsigned)pc.rounds;
	sodium_memzero(&pc, sizeof(pc));
	return 0;
}

/* The reveal body: the asked rows with their Merkle paths. */
static int build_reveal(json_t **out, const struct challenge *ch, const poh_computed *pc,
    const proto_poh_verify_reply *asked)
{
	proto_poh_reveal rv;
	int rc = 0;

	*out = NULL;
	memset(&rv, 0, sizeof(rv));
	snprintf(rv.challenge_id, sizeof(rv.challenge_id), "%s", ch->id);
	rv.n = pc->n;
	rv.rows = calloc(asked->n_indices, sizeof(*rv.rows));
	if (!rv.rows)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	for (size_t i = 0; i < asked->n_indices; i++) {
		proto_poh_row *row = &rv.rows[i];
		size_t idx = asked->indices[i];
		if (idx >= pc->n) {
			rc = troop_error_set(TROOP_EINVAL, "verify: indices[%zu] is not a row index", i);
			goto out;
		}
		if ((rc = poh_tree_path(&row->path[0][0], POH_PATH_MAX, &row->path_len, pc->tree,
		    idx)) != 0)
			goto out;
		row->index = (uint32_t)idx;
		row->row = pc->rows + idx * pc->n;
		rv.n_rows++;
	}
	*out = proto_poh_reveal_encode(&rv);
	if (!*out)
		rc = troop_error_set(TROOP_ENOMEM, "out of memory");
out:
	free(rv.rows);
	return rc;
}

static int run(poh_result *res, const poh_run_opts *o, poh_engine *e)
{
	struct challenge ch;
	struct progress prog;
	poh_computed pc;
	json_t *req = NULL, *reply = NULL;
	proto_poh_challenge_req creq;
	proto_poh_verify_req vreq;
	proto_poh_verify_reply asked;
	const char *cls = o->challenge_class ? o->challenge_class :
	    (poh_engine_is_gpu(e) ? "gpu" : "cpu");
	int rc;

	memset(&pc, 0, sizeof(pc));
	memset(&ch, 0, sizeof(ch));
	memset(&prog, 0, sizeof(prog));
	prog.mode = o->progress;
	prog.cancel = o->cancel;
	if (prog.mode == POH_PROGRESS_AUTO)
		prog.mode = isatty(2) ? POH_PROGRESS_BAR : POH_PROGRESS_LOG;

	memset(&creq, 0, sizeof(creq));
	snprintf(creq.class_, sizeof(creq.class_), "%s", cls);
	req = proto_poh_challenge_req_encode(&creq);
	rc = call(&reply, res, o, "/hardware/challenge", req);
	json_decref(req);
	req = NULL;
	if (rc != 0 || (rc = parse_challenge(&ch, reply)) != 0)
		goto out;
	json_decref(reply);
	reply = NULL;
	snprintf(res->challenge_id, sizeof(res->challenge_id), "%s", ch.id);
	res->n = ch.n;
	res->rounds = ch.rounds;
	log_info("poh_challenge", "n=%zu rounds=%u class=%s device=\"%s\"", ch.n, ch.rounds,
	    cls, poh_engine_describe(e));

	prog.start = prog.last = mono_s();
	prog.last_pct = -1;
	rc = poh_engine_compute(&pc, e, ch.seed, ch.n, ch.rounds,
	    prog.mode == POH_PROGRESS_NONE && !prog.cancel ? NULL : on_progress, &prog);
	progress_end(&prog);
	if (rc != 0)
		goto out;
	if (o->cancel && atomic_load(o->cancel)) {
		rc = troop_error_set(TROOP_ERR, "cancelled");
		goto out;
	}
	res->compute_s = pc.compute_s;
	snprintf(res->device, sizeof(res->device), "%s", poh_engine_describe(e));

	memset(&vreq, 0, sizeof(vreq));
	snprintf(vreq.challenge_id, sizeof(vreq.challenge_id), "%s", ch.id);
	memcpy(vreq.merkle_root, poh_tree_root(pc.tree), POH_HASH_LEN);
	req = proto_poh_verify_req_encode(&vreq);
	if ((rc = call(&reply, res, o, "/hardware/verify", req)) != 0)
		goto out;
	json_decref(req);
	req = NULL;
	if ((rc = proto_poh_verify_reply_decode(&asked, reply, ch.n)) != 0) {
		rc = troop_error_set(rc, "verify: %s", troop_error_msg());
		goto out;
	}
	res->samples = asked.n_indices;
	/* the clock has stopped: spot-check GPU rows before revealing them */
	if ((rc = poh_engine_check(e, ch.seed, &pc, asked.indices, asked.n_indices)) != 0)
		goto out;
	if (o->cancel && atomic_load(o->cancel)) {
		rc = troop_error_set(TROOP_ERR, "cancelled");
		goto out;
	}
	if ((rc = build_reveal(&req, &ch, &pc, &asked)) != 0)
		goto out;
	json_decref(reply);
	reply = NULL;
	if ((rc = call(&reply, res, o, "/hardware/reveal", req)) != 0)
		goto out;
	{
		proto_poh_result pr;
		if ((rc = proto_poh_result_decode(&pr, reply)) != 0) {
			rc = troop_error_set(rc, "reveal: %s", troop_error_msg());
			goto out;
		}
		res->verified = pr.verified;
		res->multiplier = pr.multiplier;
		res->ops_per_s = pr.ops_per_s;
		res->elapsed_ms = pr.elapsed_ms;
		if (!pr.verified)
			rc = troop_error_set(TROOP_EFORBIDDEN, "the coordinator did not verify the proof");
	}
out:
	sodium_memzero(ch.seed, sizeof(ch.seed));
	json_decref(req);
	json_decref(reply);
	poh_computed_clear(&pc);
	return rc;
}

int poh_run_challenge(poh_result *out, const poh_run_opts *opts)
{
	poh_engine *e = opts ? opts->engine : NULL;
	bool own = false;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!opts || !opts->coordinator || !opts->id || !opts->http) {
		rc = troop_error_set(TROOP_EINVAL, "poh_run_challenge: coordinator, id and http "
		    "are required");
		goto out;
	}
	if (!e) {
		if ((rc = poh_engine_open(&e, &opts->engine_opts)) != 0)
			goto out;
		own = true;
	}
	snprintf(out->device, sizeof(out->device), "%s", poh_engine_describe(e));
	rc = run(out, opts, e);
	if (own)
		poh_engine_close(e);
out:
	if (rc == 0) {
		snprintf(out->message, sizeof(out->message), "verified");
	} else {
		snprintf(out->message, sizeof(out->message), "%s", troop_error_msg());
		troop_error_set(rc, "%s", out->message);
	}
	return rc;
}

/* ---- --benchmark ----------------------------------------------------------------------- */

int poh_benchmark_run(const poh_run_opts *opts, bool json)
{
	poh_result res;
	int rc = poh_run_challenge(&res, opts);

	if (json) {
		json_t *o = json_pack("{s:b, s:f, s:f, s:I, s:f, s:I, s:i, s:I, s:s, s:s, s:s}",
		    "verified", res.verified, "multiplier", res.multiplier,
		    "ops_per_s", res.ops_per_s, "elapsed_ms", (json_int_t)res.elapsed_ms,
		    "compute_s", res.compute_s, "matrix_size", (json_int_t)res.n,
		    "rounds", (int)res.rounds, "samples", (json_int_t)res.samples,
		    "device", res.device, "challenge_id", res.challenge_id,
		    "message", res.message);
		char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(o);
	} else {
		printf("proof-of-hardware  %s\n", POH_ALGORITHM);
		printf("  device           %s\n", res.device);
		if (res.n)
			printf("  challenge        n=%zu rounds=%u (%.3g ops)\n", res.n, res.rounds,
			    poh_ops(res.n, res.rounds));
		if (res.compute_s > 0)
			printf("  computed in      %.3f s (this machine's clock)\n", res.compute_s);
		if (rc == 0) {
			printf("  measured         %lld ms (the coordinator's clock)\n",
			    (long long)res.elapsed_ms);
			printf("  throughput       %.3e ops/s\n", res.ops_per_s);
			printf("  sampled rows     %zu\n", res.samples);
			printf("  result           verified, multiplier %.4f\n", res.multiplier);
		} else {
			printf("  result           NOT verified: %s\n", res.message);
			if (rc == TROOP_ENOTFOUND && res.http_status == 404)
				printf("  hint             start `troop worker` once so that this node "
				    "registers, then run the benchmark again\n");
		}
	}
	return rc == 0 ? 0 : 1;
}

static const config_opt bench_opts[] = {
	{ "benchmark", 0, OPT_BOOL, NULL, NULL, NULL, NULL,
	  "run the proof-of-hardware challenge once and print the result", 0, 0 },
	{ "coordinator", 'c', OPT_STRING, "TROOP_COORDINATOR", "COORDINATOR_URL",
	  "http://127.0.0.1:8420", "URL", "coordinator to prove this node's hardware to", 0, 0 },
	{ "identity", 0, OPT_STRING, "TROOP_IDENTITY", NULL, NULL, "FILE",
	  "node key file (default: $TROOP_HOME/identity.key)", 0, 0 },
	{ "device", 0, OPT_STRING, "TROOP_POH_DEVICE", NULL, "auto", "DEVICE",
	  "auto, cpu or gpu", 0, 0 },
	{ "threads", 0, OPT_INT, "TROOP_POH_THREADS", NULL, "0", "N",
	  "CPU threads (0: one per core)", 0, 1024 },
	{ "gpu", 0, OPT_INT, "TROOP_POH_GPU", NULL, "0", "N", "CUDA device ordinal", 0, 64 },
	{ "class", 0, OPT_STRING, NULL, NULL, NULL, "CLASS",
	  "challenge class to ask for: gpu or cpu (default: by device)", 0, 0 },
	{ "json", 0, OPT_BOOL, NULL, NULL, NULL, NULL, "print the result as JSON", 0, 0 },
	{ "log-level", 0, OPT_STRING, "TROOP_LOG_LEVEL", NULL, "warn", "LEVEL",
	  "debug, info, warn or error", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

int poh_benchmark_main(int argc, char **argv)
{
	config *cfg = NULL;
	troop_identity id;
	http_client *http = NULL;
	poh_run_opts o;
	char path[1024];
	const char *cls;
	log_level lvl;
	int rc, ret = 1;

	memset(&id, 0, sizeof(id));
	memset(&o, 0, sizeof(o));
	rc = config_parse(&cfg, bench_opts, argc, argv);
	if (rc == CONFIG_HELP) {
		config_usage(stdout, "worker --benchmark", "[options]",
		    "Prove this machine's hardware to the coordinator once and print the result.",
		    bench_opts);
		return 0;
	}
	if (rc != 0) {
		fprintf(stderr, "troop worker --benchmark: %s\n", troop_error_msg());
		return 2;
	}
	cls = config_str(cfg, "class");
	if (log_parse_level(&lvl, config_str(cfg, "log-level")) != 0 ||
	    poh_device_parse(&o.engine_opts.device, config_str(cfg, "device")) != 0 ||
	    (cls && strcmp(cls, "gpu") != 0 && strcmp(cls, "cpu") != 0)) {
		fprintf(stderr, "troop worker --benchmark: %s\n",
		    cls && strcmp(cls, "gpu") != 0 && strcmp(cls, "cpu") != 0 ?
		    "--class must be gpu or cpu" : troop_error_msg());
		ret = 2;
		goto out;
	}
	log_set_level(lvl);
	if (config_str(cfg, "identity"))
		snprintf(path, sizeof(path), "%s", config_str(cfg, "identity"));
	else if (identity_default_path(path, sizeof(path)) != 0) {
		fprintf(stderr, "troop worker --benchmark: %s\n", troop_error_msg());
		goto out;
	}
	if (identity_load_or_create(&id, path, NULL) != 0) {
		fprintf(stderr, "troop worker --benchmark: %s\n", troop_error_msg());
		goto out;
	}
	if (http_client_new(&http) != 0) {
		fprintf(stderr, "troop worker --benchmark: out of memory\n");
		goto out;
	}
	http_client_set_limits(http, 60000, 0);
	o.coordinator = config_str(cfg, "coordinator");
	o.id = &id;
	o.http = http;
	o.engine_opts.threads = (int)config_int(cfg, "threads");
	o.engine_opts.gpu_index = (int)config_int(cfg, "gpu");
	o.progress = config_bool(cfg, "json") ? POH_PROGRESS_NONE : POH_PROGRESS_AUTO;
	o.challenge_class = cls;
	ret = poh_benchmark_run(&o, config_bool(cfg, "json"));
out:
	identity_wipe(&id);
	http_client_free(http);
	config_free(cfg);
	return ret;
}
