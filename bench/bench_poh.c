/*
 * bench_poh.c - proof-of-hardware cost on both sides of one challenge:
 * the worker computing every row (poh_engine_compute on the CPU: rows,
 * Merkle tree) against the coordinator checking k of them (Merkle paths,
 * B, the k rows through every round: what /hardware/reveal does), in CPU
 * time, and the ratio against the bound 2*k/n (DESIGN.md section 9: the
 * check must cost at most 2k/n of the worker's work).
 *
 * With a coordinator URL and pid (bench/bench_poh.sh passes them) it also
 * runs whole challenges against the real process and reads the
 * coordinator's CPU time from /proc: everything it spends per proof
 * (signatures, JSON, registry, ledger, the check).
 *
 * Usage: bench_poh [--url URL --pid PID] [--runs N]
 * Exit status 1 when a ratio is over its bound.  Not part of the tests.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "encoding.h"
#include "error.h"
#include "http_client.h"
#include "identity.h"
#include "log.h"
#include "poh.h"
#include "poh_worker.h"

#define K 16

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* What the coordinator does with a reveal, minus HTTP and JSON: check k
 * Merkle paths, build B, recompute the k rows, compare. */
static int verify_like_coordinator(const uint8_t seed[POH_SEED_LEN], size_t n,
    unsigned rounds, const poh_computed *pc, const uint32_t *idx, size_t k)
{
	uint8_t path[POH_PATH_MAX * POH_HASH_LEN], leaf[POH_HASH_LEN];
	int8_t *mine = malloc(k * n);
	poh_ctx *ctx = NULL;
	int rc = 0;

	for (size_t i = 0; i < k && rc == 0; i++) {
		size_t plen = 0;
		rc = poh_tree_path(path, POH_PATH_MAX, &plen, pc->tree, idx[i]);
		poh_leaf_hash(leaf, idx[i], pc->rows + (size_t)idx[i] * n, n);
		if (rc == 0)
			rc = poh_path_verify(poh_tree_root(pc->tree), n, idx[i], leaf, path, plen);
	}
	if (rc == 0)
		rc = poh_ctx_new(&ctx, seed, n, rounds, 1);
	if (rc == 0)
		rc = poh_compute_rows(mine, ctx, idx, k, 1, NULL, NULL);
	for (size_t i = 0; i < k && rc == 0; i++)
		if (memcmp(mine + i * n, pc->rows + (size_t)idx[i] * n, n) != 0)
			rc = TROOP_EFORBIDDEN;
	poh_ctx_free(ctx);
	free(mine);
	return rc;
}

static int bench_pair(size_t n, unsigned rounds, int threads, bool worker_too)
{
	uint8_t seed[POH_SEED_LEN];
	uint32_t idx[K];
	poh_engine *e = NULL;
	poh_engine_opts eo = { .device = POH_DEVICE_CPU, .threads = threads };
	poh_computed pc;
	double wcpu = 0, wwall = 0, v[7], bound = 2.0 * K / (double)n;
	int bad = 0;

	randombytes_buf(seed, sizeof(seed));
	for (int i = 0; i < K; i++)
		idx[i] = (uint32_t)((size_t)i * n / K + 3);
	if (poh_engine_open(&e, &eo) != 0)
		return 1;
	if (worker_too) {
		double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
		if (poh_engine_compute(&pc, e, seed, n, rounds, NULL, NULL) != 0) {
			fprintf(stderr, "compute: %s\n", troop_error_msg());
			return 1;
		}
		wcpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		wwall = clock_s(CLOCK_MONOTONIC) - w0;
		for (int r = 0; r < 7; r++) {
			double c1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
			if (verify_like_coordinator(seed, n, rounds, &pc, idx, K) != 0) {
				fprintf(stderr, "verification failed\n");
				return 1;
			}
			v[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c1;
		}
		qsort(v, 7, sizeof(v[0]), cmp_double);
		bad = v[3] / wcpu > bound;
		printf("%6zu %6u %8.3e %10.1f %10.1f %10.2f %9.4f %9.4f %9.4f  %s\n", n, rounds,
		    poh_ops(n, rounds), wwall * 1e3, wcpu * 1e3, v[3] * 1e3, v[3] / wcpu,
		    (double)K / (double)n, bound, bad ? "OVER" : "ok");
		poh_computed_clear(&pc);
	} else {
		/* the worker's rows are not needed to time the recomputation */
		poh_ctx *ctx = NULL;
		int8_t *mine = malloc((size_t)K * n);
		double c1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
		if (poh_ctx_new(&ctx, seed, n, rounds, 1) != 0 ||
		    poh_compute_rows(mine, ctx, idx, K, 1, NULL, NULL) != 0)
			return 1;
		v[0] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c1;
		printf("%6zu %6u %8.3e %10s %10s %10.2f %9s %9.4f %9.4f  (worker not run: "
		    "GPU class)\n", n, rounds, poh_ops(n, rounds), "-", "-", v[0] * 1e3, "-",
		    (double)K / (double)n, bound);
		poh_ctx_free(ctx);
		free(mine);
	}
	poh_engine_close(e);
	return bad;
}

/* ---- end to end against a running coordinator --------------------------------------- */

static double proc_cpu_s(long pid)
{
	char path[64], buf[2048], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	p = strrchr(buf, ')');
	/* fields after ")": state(3) ... utime(14) stime(15) */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
	    &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int end_to_end(const char *url, long pid, int runs, int threads)
{
	troop_identity node;
	http_client *http = NULL;
	poh_engine *e = NULL;
	poh_engine_opts eo = { .device = POH_DEVICE_CPU, .threads = threads };
	double c_cpu0, c_cpu1, w_cpu = 0, elapsed = 0;
	size_t n = 0, k = 0;
	int ok = 0;

	identity_generate(&node);
	if (http_client_new(&http) != 0 || poh_engine_open(&e, &eo) != 0)
		return 1;
	{
		json_t *hb = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[]}", "node_id", node.id,
		    "name", "bench", "tailscale_ip", "127.0.0.1", "port", 8421, "status", "IDLE",
		    "models"), *out = NULL;
		int st = 0;
		if (http_request_signed(http, &st, &out, &node, "POST", url, "/heartbeat", hb) != 0 ||
		    st != 200) {
			fprintf(stderr, "heartbeat failed: %d %s\n", st, troop_error_msg());
			return 1;
		}
		json_decref(hb);
		json_decref(out);
	}
	c_cpu0 = proc_cpu_s(pid);
	for (int i = 0; i < runs; i++) {
		poh_run_opts o;
		poh_result res;
		memset(&o, 0, sizeof(o));
		o.coordinator = url;
		o.id = &node;
		o.http = http;
		o.engine = e;
		o.progress = POH_PROGRESS_NONE;
		o.challenge_class = "cpu";
		double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		if (poh_run_challenge(&res, &o) != 0) {
			fprintf(stderr, "run %d: %s\n", i, res.message);
			break;
		}
		w_cpu += clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		elapsed += (double)res.elapsed_ms;
		n = res.n;
		k = res.samples;
		ok++;
	}
	c_cpu1 = proc_cpu_s(pid);
	if (ok == 0)
		return 1;
	printf("\nend to end, %d proofs of n=%zu k=%zu against the coordinator process:\n", ok,
	    n, k);
	printf("  worker CPU per proof        %8.2f ms (compute, tree, client side)\n",
	    w_cpu / ok * 1e3);
	printf("  coordinator CPU per proof   %8.2f ms (all three calls, /proc ticks of %.0f ms)\n",
	    (c_cpu1 - c_cpu0) / ok * 1e3, 1e3 / (double)sysconf(_SC_CLK_TCK));
	printf("  ratio                       %8.4f (k/n = %.4f, bound 2k/n = %.4f)\n",
	    (c_cpu1 - c_cpu0) / w_cpu, (double)k / (double)n, 2.0 * (double)k / (double)n);
	printf("  coordinator-timed elapsed   %8.1f ms per proof (mean)\n", elapsed / ok);
	poh_engine_close(e);
	http_client_free(http);
	return 0;
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	long pid = 0;
	int runs = 20, bad = 0, threads = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0)
			url = argv[i + 1];
		else if (strcmp(argv[i], "--pid") == 0)
			pid = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--runs") == 0)
			runs = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = atoi(argv[i + 1]);
	}
	if (sodium_init() < 0)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	log_set_level(LOG_WARN);
	if (threads <= 0)
		threads = poh_cpu_count();
	printf("int8-gemm-chain-v1, k=%d, CPU kernel %s, worker threads %d, verifier 1 thread\n"
	    "CPU times (worker: whole process; verifier: median of 7)\n\n", K, poh_cpu_kernel(),
	    threads);
	printf("%6s %6s %8s %10s %10s %10s %9s %9s %9s\n", "n", "rounds", "ops",
	    "worker_ms", "wcpu_ms", "verify_ms", "ratio", "k/n", "2k/n");
	bad |= bench_pair(256, 64, threads, true);     /* the integration tests' class */
	bad |= bench_pair(512, 32, threads, true);     /* default CPU class */
	bad |= bench_pair(1024, 16, threads, true);
	bad |= bench_pair(2048, 8, threads, true);
	bad |= bench_pair(8192, 32, threads, false);   /* default GPU class: check only */
	if (url && pid > 0)
		bad |= end_to_end(url, pid, runs, threads);
	curl_global_cleanup();
	return bad ? 1 : 0;
}
