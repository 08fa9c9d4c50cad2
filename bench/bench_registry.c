/*
 * bench_registry.c - memory and speed of the node registry at scale
 * (issue "Speed under concurrency", item 3: 1,000,000 live nodes in under
 * 300 MB on the in-process registry).
 *
 *   bench_registry [--url URL] [--nodes N] [--lookups K] [--ttl S]
 *
 * Puts N nodes (default 1,000,000) into registry_open(URL) (default
 * "memory:") with records shaped like real heartbeats (DESIGN.md section
 * 6): a name, a tailnet IPv4 address, one or two models with sha256
 * content hashes out of a pool of 40, hardware and engine extras as
 * proto_heartbeat_extra_encode writes them, a 43-char encryption key, a
 * sealing key statement of the real length (155 chars), an owner (the
 * node itself for half of them, one of 10,000 accounts for the rest), a
 * version and ledger facts (half of the nodes verified with reputation
 * figures).  Records are made on the fly and freed at once, so the
 * process's growth in resident memory is the registry's.
 *
 * Prints the resident set size before and after, bytes per node, the
 * CPU time per put (of a new node, and again of a known one: a
 * heartbeat), per get (one node by id, with models and extras) and per
 * find (registry_find_nodes by model, 20 nodes, with models), per models
 * aggregate (registry_models: /v1/models) and live count (/metrics), then
 * "RESULT ..." lines (bench/run.sh) with the 300 MB target scaled to N.
 * Exits non-zero if a put fails.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/registry.h"
#include "error.h"
#include "proto.h"

#define MODEL_POOL 40
#define OWNER_POOL 10000
#define TARGET_BYTES_PER_NODE 300.0  /* 300 MB per 1,000,000 nodes */

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: per-call figures stay comparable on a machine
 * shared with other work (the benchmark is single-threaded). */
static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	if (f != NULL)
		fclose(f);
	return kb;
}

/* Deterministic bytes: (a, b) -> len bytes. */
static void det_bytes(unsigned char *out, size_t len, uint64_t a, uint64_t b)
{
	unsigned char key[crypto_shorthash_KEYBYTES] = { 0 };
	unsigned char in[16], h[crypto_shorthash_BYTES];
	memcpy(in, &a, 8);
	for (size_t off = 0; off < len; off += sizeof h, b++) {
		memcpy(in + 8, &b, 8);
		crypto_shorthash(h, in, sizeof in, key);
		memcpy(out + off, h, len - off < sizeof h ? len - off : sizeof h);
	}
}

static void det_b64(char *out, size_t cap, size_t nbytes, uint64_t a, uint64_t b)
{
	unsigned char bin[128];
	det_bytes(bin, nbytes, a, b);
	sodium_bin2base64(out, cap, bin, nbytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static char g_model_names[MODEL_POOL][64];
static char g_model_hashes[MODEL_POOL][80];
static char g_owners[OWNER_POOL][TROOP_ID_LEN + 1];

static void pools_init(void)
{
	static const char *const fam[] = { "llama3", "qwen2.5", "mistral", "gemma2", "phi3",
		"deepseek-r1", "llama3.1", "codellama" };
	static const char *const size[] = { "1b", "3b", "7b", "8b", "14b" };
	for (int i = 0; i < MODEL_POOL; i++) {
		unsigned char h[32];
		snprintf(g_model_names[i], sizeof g_model_names[i], "%s:%s", fam[i % 8],
		    size[i / 8]);
		det_bytes(h, sizeof h, 7, (uint64_t)i);
		strcpy(g_model_hashes[i], "sha256:");
		sodium_bin2hex(g_model_hashes[i] + 7, sizeof g_model_hashes[i] - 7, h, sizeof h);
	}
	for (int i = 0; i < OWNER_POOL; i++)
		det_b64(g_owners[i], sizeof g_owners[i], 32, 3, (uint64_t)i);
}

static void node_id_of(char *out, size_t cap, size_t i)
{
	det_b64(out, cap, 32, 1, (uint64_t)i);
}

/* Fill *n (models in `models`, extra_json malloc'd) for node i. */
static int make_node(registry_node *n, registry_model models[2], size_t i)
{
	proto_heartbeat hb;
	unsigned char r[8];

	det_bytes(r, sizeof r, 9, (uint64_t)i);
	memset(n, 0, sizeof *n);
	memset(models, 0, 2 * sizeof *models);
	node_id_of(n->node_id, sizeof n->node_id, i);
	snprintf(n->name, sizeof n->name, "gpu-box-%zu", i);
	snprintf(n->ip, sizeof n->ip, "100.%d.%d.%d", 64 + r[0] % 64, r[1], r[2]);
	n->port = 8421;
	n->status = r[3] % 4 == 0 ? NODE_BUSY : NODE_IDLE;
	n->n_models = 1 + r[4] % 2;
	for (size_t k = 0; k < n->n_models; k++) {
		int pick = (r[5] + (int)k * 7) % MODEL_POOL;
		registry_model *m = &models[k];
		snprintf(m->name, sizeof m->name, "%s", g_model_names[pick]);
		snprintf(m->content_hash, sizeof m->content_hash, "%s", g_model_hashes[pick]);
		m->size_bytes = 4661224676LL + pick * 1000003LL;
		snprintf(m->engine, sizeof m->engine, "%s", pick % 5 == 0 ? "vllm" : "ollama");
		m->context_length = 8192 << (pick % 4);
		m->caps = 0x3;
		m->caps_known = 0x7;
		m->endpoints = 0x3;
	}
	n->models = models;
	n->active_jobs = r[6] % 3;
	n->max_jobs = 4;
	det_b64(n->encryption_public_key, sizeof n->encryption_public_key, 32, 2, (uint64_t)i);
	{	/* "TSK1" || pk || not_before || not_after || signature, as seal.c makes it */
		unsigned char bin[4 + 32 + 8 + 8 + 64];
		det_bytes(bin, sizeof bin, 4, (uint64_t)i);
		memcpy(bin, "TSK1", 4);
		sodium_bin2base64(n->seal_key, sizeof n->seal_key, bin, sizeof bin,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	}
	if (i % 2 == 0)
		snprintf(n->owner, sizeof n->owner, "%s", n->node_id);
	else
		snprintf(n->owner, sizeof n->owner, "%s", g_owners[i % OWNER_POOL]);
	snprintf(n->version, sizeof n->version, "troop/0.1.%d", r[7] % 3);

	registry_facts *f = &n->facts;
	if (i % 2 == 0) {
		f->verified = true;
		f->verified_at = 1765000000 + (int64_t)(i % 100000);
		f->multiplier = 0.5 + (double)r[0] / 200.0;
		snprintf(f->hw_class, sizeof f->hw_class, "gpu");
		f->rep_availability = 0.9 + (double)r[1] / 2560.0;
		f->rep_reliability = 0.95 + (double)r[2] / 5120.0;
		f->rep_speed = 0.8 + (double)r[3] / 1280.0;
		f->rep_audits = 1.0;
		f->reputation = f->rep_availability * f->rep_reliability * f->rep_speed;
		f->jobs = r[4] * 10;
		f->established = r[5] % 2;
		f->audits_passed = r[6] % 4;
		f->ttft_ms = 120.0 + r[7];
		f->tokens_per_s = 40.0 + r[0] / 3.0;
		f->served_jobs = 1 + r[1] % 4;
	} else {
		f->multiplier = 1.0;
		f->rep_availability = f->rep_reliability = f->rep_speed = f->rep_audits = 1.0;
		f->reputation = 1.0;
	}

	memset(&hb, 0, sizeof hb);
	hb.has_hardware = true;
	snprintf(hb.hardware.gpu, sizeof hb.hardware.gpu, "%s",
	    r[2] % 3 == 0 ? "NVIDIA GeForce RTX 4090" : "NVIDIA GeForce RTX 3090");
	hb.hardware.gpu_count = 1;
	hb.hardware.vram_total = 24564;
	hb.hardware.vram_free = 20480 - r[3] * 16;
	hb.hardware.gpu_util = r[4] % 100;
	hb.hardware.has_vram = hb.hardware.has_util = true;
	snprintf(hb.hardware.source, sizeof hb.hardware.source, "nvml");
	hb.n_engines = 1;
	snprintf(hb.engines[0].type, sizeof hb.engines[0].type, "ollama");
	snprintf(hb.engines[0].version, sizeof hb.engines[0].version, "0.6.2");
	hb.engines[0].port = 11434;
	json_t *extra = proto_heartbeat_extra_encode(&hb);
	n->extra_json = extra ? json_dumps(extra, JSON_COMPACT) : NULL;
	json_decref(extra);
	return n->extra_json ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *url = "memory:";
	size_t nodes = 1000000, lookups = 200000;
	int64_t ttl = 3600;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
			url = argv[++i];
		else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
			nodes = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--lookups") == 0 && i + 1 < argc)
			lookups = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc)
			ttl = strtoll(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: bench_registry [--url URL] [--nodes N] "
			    "[--lookups K] [--ttl S]\n");
			return 2;
		}
	}
	if (sodium_init() < 0 || nodes == 0)
		return 2;
	pools_init();

	registry *reg = NULL;
	/* the default cap: 1,000,000 live nodes must fit it */
	if (registry_open(&reg, url, NULL) != 0) {
		fprintf(stderr, "bench_registry: %s\n", troop_error_msg());
		return 1;
	}
	int64_t now = (int64_t)time(NULL);
	registry_node n;
	registry_model models[2];
	size_t extra_total = 0, seal_len = 0;

	long rss0 = rss_kb();
	double t0 = mono_s(), t_put = 0;
	for (size_t i = 0; i < nodes; i++) {
		if (make_node(&n, models, i) != 0) {
			fprintf(stderr, "bench_registry: out of memory\n");
			return 1;
		}
		extra_total += strlen(n.extra_json);
		seal_len = strlen(n.seal_key);
		double a = cpu_s();
		int rc = registry_put_node(reg, &n, ttl, now);
		t_put += cpu_s() - a;
		free(n.extra_json);
		if (rc != 0) {
			fprintf(stderr, "bench_registry: put %zu: %s\n", i, troop_error_msg());
			return 1;
		}
	}
	double t_fill = mono_s() - t0;
	long rss1 = rss_kb();
	size_t live = 0;
	registry_count_nodes(&live, reg, now);

	/* heartbeats of known nodes: the record replaced */
	size_t beats = lookups < nodes ? lookups : nodes;
	double t_beat = 0;
	for (size_t k = 0; k < beats; k++) {
		if (make_node(&n, models, (k * 7919) % nodes) != 0)
			return 1;
		double a = cpu_s();
		int rc = registry_put_node(reg, &n, ttl, now);
		t_beat += cpu_s() - a;
		free(n.extra_json);
		if (rc != 0) {
			fprintf(stderr, "bench_registry: heartbeat %zu: %s\n", k, troop_error_msg());
			return 1;
		}
	}

	/* lookups: by id (every field) and by model (20 nodes with their models) */
	double a = cpu_s();
	size_t found = 0;
	for (size_t k = 0; k < lookups; k++) {
		char id[REGISTRY_ID_MAX + 1];
		registry_node out;
		node_id_of(id, sizeof id, (k * 7919) % nodes);
		if (registry_get_node(&out, reg, id, now, REGISTRY_WITH_ALL) == 0)
			found++;
		registry_node_clear(&out);
	}
	double t_get = cpu_s() - a;
	size_t finds = lookups / 10 ? lookups / 10 : 1, got = 0;
	a = cpu_s();
	for (size_t k = 0; k < finds; k++) {
		registry_node *arr = NULL;
		size_t cnt = 0;
		if (registry_find_nodes(&arr, &cnt, reg, g_model_names[k % MODEL_POOL], now, 20,
		    REGISTRY_WITH_MODELS) == 0)
			got += cnt;
		registry_nodes_free(arr, cnt);
	}
	double t_find = cpu_s() - a;
	/* /peers pages: the 100 nodes after a random cursor in id order (101
	 * asked, as /peers asks), of one model (MODEL_POOL models: about 3% of
	 * the nodes each) and of all nodes, every field */
	size_t pages = 100, pages_all = 10, paged = 0;
	double t_page = 0, t_page_all = 0;
	for (int all = 0; all < 2; all++) {
		size_t np = all ? pages_all : pages;
		a = cpu_s();
		for (size_t k = 0; k < np; k++) {
			char id[REGISTRY_ID_MAX + 1];
			registry_node *arr = NULL;
			size_t cnt = 0;
			node_id_of(id, sizeof id, (k * 104729) % nodes);
			if (registry_list_nodes(&arr, &cnt, reg, all ? NULL :
			    g_model_names[k % MODEL_POOL], id, now, 101, REGISTRY_WITH_ALL) == 0)
				paged += cnt;
			registry_nodes_free(arr, cnt);
		}
		*(all ? &t_page_all : &t_page) = (cpu_s() - a) / (double)np;
	}
	/* what /v1/models and /metrics read: every model's aggregate, and the
	 * live count (each a pass over the nodes) */
	size_t aggs = 5, nmodels = 0;
	a = cpu_s();
	for (size_t k = 0; k < aggs; k++) {
		registry_model_info *mi = NULL;
		if (registry_models(&mi, &nmodels, reg, now) != 0)
			nmodels = 0;
		free(mi);
	}
	double t_models = (cpu_s() - a) / (double)aggs;
	a = cpu_s();
	for (size_t k = 0; k < aggs; k++)
		registry_count_nodes(&live, reg, now);
	double t_count = (cpu_s() - a) / (double)aggs;

	double per_node = (double)(rss1 - rss0) * 1024.0 / (double)nodes;
	double target = TARGET_BYTES_PER_NODE;
	printf("registry %s (%s): %zu nodes put in %.1f s (%zu live), extra_json %.0f bytes "
	    "and seal_key %zu chars per node\n", registry_backend_name(reg), url, nodes, t_fill,
	    live, (double)extra_total / (double)nodes, seal_len);
	printf("rss before %ld kB, after %ld kB: %.0f bytes per node\n", rss0, rss1, per_node);
	printf("get by id: %zu of %zu found; find by model: %zu nodes in %zu calls\n", found,
	    lookups, got, finds);
	printf("RESULT registry %s: %.0f bytes/node RSS at %zu nodes (%.1f MB; target %.1f MB at "
	    "%zu nodes = %.0f bytes/node; ratio %.2f of target)\n", registry_backend_name(reg),
	    per_node, nodes, (double)(rss1 - rss0) / 1024.0, target * (double)nodes / 1e6, nodes,
	    target, per_node / target);
	printf("RESULT registry %s: CPU per call (this process's): put (new node) %.2f us, put "
	    "(known node) %.2f us, get %.2f us, find(20) %.2f us; wall per node filling it "
	    "(making the records included) %.2f us\n", registry_backend_name(reg),
	    t_put / (double)nodes * 1e6, t_beat / (double)beats * 1e6,
	    t_get / (double)lookups * 1e6, t_find / (double)finds * 1e6,
	    t_fill / (double)nodes * 1e6);
	printf("RESULT registry %s: models aggregate (/v1/models) %.2f ms for %zu models, live "
	    "count (/metrics) %.2f ms, at %zu nodes (CPU per call; the aggregate takes the read "
	    "lock per model)\n", registry_backend_name(reg), t_models * 1e3, nmodels,
	    t_count * 1e3, nodes);
	printf("RESULT registry %s: a /peers page in id order (101 records after a random "
	    "cursor) %.3f ms of one model (of %d), %.3f ms of all nodes, at %zu nodes (CPU per "
	    "call; %zu records listed)\n", registry_backend_name(reg), t_page * 1e3, MODEL_POOL,
	    t_page_all * 1e3, nodes, paged);
	fflush(stdout);
	if (getenv("BENCH_REGISTRY_KEEP") == NULL)
		registry_close(reg);
	return 0;
}
