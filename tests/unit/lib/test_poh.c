/*
 * test_poh.c - proof-of-hardware math (src/lib/poh.c) and the worker's
 * device choice (src/worker/poh_cuda.c, poh_worker.c):
 *   - the matrices are the seed's ChaCha20 stream, from any offset;
 *   - every CPU kernel, on any thread count and any row subset, gives what
 *     a naive whole-matrix implementation written here gives;
 *   - Merkle roots and paths agree with a tree built here, and any
 *     tampering with a path, a leaf, an index or the root is refused;
 *   - without the CUDA libraries (or without a GPU) the worker falls back
 *     to the CPU and gets the same root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "poh.h"
#include "poh_cuda.h"
#include "poh_worker.h"

static const char *const kernel_names[] = { "generic", "avx2", "avx512-vnni" };

static void seed_of(uint8_t seed[POH_SEED_LEN], unsigned v)
{
	for (int i = 0; i < POH_SEED_LEN; i++)
		seed[i] = (uint8_t)(v * 31u + (unsigned)i * 7u + 1u);
}

/* The whole key stream from byte 0, straight from libsodium. */
static uint8_t *whole_stream(const uint8_t seed[POH_SEED_LEN], size_t len)
{
	static const unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
	uint8_t *s = malloc(len);

	assert_non_null(s);
	assert_int_equal(crypto_stream_chacha20_ietf(s, len, nonce, seed), 0);
	return s;
}

/* The mapping, written with arithmetic instead of bit operations. */
static int8_t map_arith(int32_t c)
{
	int64_t u = ((int64_t)c % 4294967296LL + 4294967296LL) % 4294967296LL;
	int64_t v = (u / 128) % 256;

	return (int8_t)(v >= 128 ? v - 256 : v);
}

/* Naive reference: all of A through every round, full matrices. */
static int8_t *naive_chain(const uint8_t seed[POH_SEED_LEN], size_t n, unsigned rounds)
{
	uint8_t *s = whole_stream(seed, 2 * n * n);
	int8_t *a = malloc(n * n), *b = malloc(n * n), *next = malloc(n * n);

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(next);
	for (size_t i = 0; i < n * n; i++) {
		a[i] = (int8_t)s[i];
		b[i] = (int8_t)s[n * n + i];
	}
	for (unsigned r = 0; r < rounds; r++) {
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++) {
				int64_t c = 0;
				for (size_t k = 0; k < n; k++)
					c += (int64_t)a[i * n + k] * b[k * n + j];
				assert_true(c >= INT32_MIN && c <= INT32_MAX);
				next[i * n + j] = map_arith((int32_t)c);
			}
		memcpy(a, next, n * n);
	}
	free(s);
	free(b);
	free(next);
	return a;
}

/* ---- generation ---------------------------------------------------------------- */

static void test_stream_offsets(void **state)
{
	uint8_t seed[POH_SEED_LEN], *whole, buf[700];
	const uint64_t offs[] = { 0, 1, 63, 64, 65, 127, 4095, 4096, 4097, 8191, 9000 };
	const size_t lens[] = { 0, 1, 5, 63, 64, 65, 200, 699 };

	(void)state;
	seed_of(seed, 1);
	whole = whole_stream(seed, 10000);
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			memset(buf, 0xa5, sizeof(buf));
			poh_stream(buf, seed, offs[i], lens[j]);
			assert_memory_equal(buf, whole + offs[i], lens[j]);
			assert_int_equal(buf[lens[j]], 0xa5);   /* nothing past len */
		}
	free(whole);
}

static void test_generation_deterministic(void **state)
{
	const size_t n = 64;
	uint8_t seed[POH_SEED_LEN], seed2[POH_SEED_LEN], *whole;
	int8_t *a1 = malloc(n * n), *a2 = malloc(n * n), *b1 = malloc(n * n), *b2 = malloc(n * n);

	(void)state;
	seed_of(seed, 2);
	seed_of(seed2, 3);
	whole = whole_stream(seed, 2 * n * n);
	poh_gen_a_rows(a1, seed, n, 0, n);
	poh_gen_a_rows(a2, seed, n, 0, n);
	assert_memory_equal(a1, a2, n * n);
	assert_memory_equal(a1, whole, n * n);              /* A = first n*n bytes */
	poh_gen_b(b1, seed, n);
	poh_gen_b(b2, seed, n);
	assert_memory_equal(b1, b2, n * n);
	assert_memory_equal(b1, whole + n * n, n * n);      /* B = the next n*n */
	/* any row on its own is the same as in the whole matrix */
	for (size_t r = 0; r < n; r += 7) {
		poh_gen_a_rows(a2, seed, n, r, 1);
		assert_memory_equal(a2, a1 + r * n, n);
	}
	/* another seed, other matrices */
	poh_gen_a_rows(a2, seed2, n, 0, n);
	assert_memory_not_equal(a1, a2, n * n);
	/* B transposed in the context */
	{
		poh_ctx *ctx;
		assert_int_equal(poh_ctx_new(&ctx, seed, n, 1, 2), 0);
		for (size_t k = 0; k < n; k++)
			for (size_t j = 0; j < n; j++)
				assert_int_equal(poh_ctx_bt(ctx)[j * n + k], b1[k * n + j]);
		assert_int_equal(poh_ctx_n(ctx), n);
		assert_int_equal(poh_ctx_rounds(ctx), 1);
		poh_ctx_free(ctx);
	}
	free(whole);
	free(a1);
	free(a2);
	free(b1);
	free(b2);
}

static void test_big_b_threaded(void **state)
{
	/* 1 MiB and more: B is generated on several threads in 64-byte aligned parts */
	const size_t n = 1040;
	uint8_t seed[POH_SEED_LEN], *whole;
	poh_ctx *ctx;

	(void)state;
	seed_of(seed, 4);
	whole = whole_stream(seed, 2 * n * n);
	assert_int_equal(poh_ctx_new(&ctx, seed, n, 1, 3), 0);
	for (size_t k = 0; k < n; k += 13)
		for (size_t j = 0; j < n; j++)
			assert_int_equal(poh_ctx_bt(ctx)[j * n + k], (int8_t)whole[n * n + k * n + j]);
	poh_ctx_free(ctx);
	free(whole);
}

static void test_map(void **state)
{
	const int32_t vals[] = { 0, 1, 127, 128, 255, 256, 32767, 32768, 16384, -1, -128, -129,
	    -32768, -32769, INT32_MAX, INT32_MIN, 123456789, -123456789, 268435456, -268435456 };

	(void)state;
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		assert_int_equal(poh_map(vals[i]), map_arith(vals[i]));
	for (int32_t c = -70000; c <= 70000; c += 3)
		assert_int_equal(poh_map(c), map_arith(c));
}

static void test_params(void **state)
{
	(void)state;
	assert_int_equal(poh_params_check(16, 1), 0);
	assert_int_equal(poh_params_check(POH_N_MAX, POH_ROUNDS_MAX), 0);
	assert_int_equal(poh_params_check(0, 1), TROOP_EINVAL);
	assert_int_equal(poh_params_check(8, 1), TROOP_EINVAL);
	assert_int_equal(poh_params_check(17, 1), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "matrix_size"));
	assert_int_equal(poh_params_check(POH_N_MAX + 16, 1), TROOP_EINVAL);
	assert_int_equal(poh_params_check(64, 0), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "rounds"));
	assert_int_equal(poh_params_check(64, POH_ROUNDS_MAX + 1), TROOP_EINVAL);
	assert_true(poh_ops(256, 8) == 2.0 * 256 * 256 * 256 * 8);
}

/* ---- the chain ---------------------------------------------------------------- */

static void test_chain_matches_naive(void **state)
{
	const size_t sizes[] = { 16, 32, 48, 64 };
	const unsigned rounds[] = { 1, 2, 5 };
	const int threads[] = { 1, 3 };
	int kernels_run = 0;

	(void)state;
	for (size_t kn = 0; kn < sizeof(kernel_names) / sizeof(kernel_names[0]); kn++) {
		int rc = poh_cpu_kernel_select(kernel_names[kn]);
		if (rc == TROOP_EUNAVAIL)
			continue;       /* this CPU lacks it */
		assert_int_equal(rc, 0);
		assert_string_equal(poh_cpu_kernel(), kernel_names[kn]);
		kernels_run++;
		for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
			for (size_t ri = 0; ri < sizeof(rounds) / sizeof(rounds[0]); ri++) {
				size_t n = sizes[si];
				uint8_t seed[POH_SEED_LEN];
				int8_t *want, *got = malloc(n * n);
				poh_ctx *ctx;
				seed_of(seed, (unsigned)(n + ri));
				want = naive_chain(seed, n, rounds[ri]);
				assert_int_equal(poh_ctx_new(&ctx, seed, n, rounds[ri], 1), 0);
				for (size_t ti = 0; ti < 2; ti++) {
					memset(got, 0, n * n);
					assert_int_equal(poh_compute_rows(got, ctx, NULL, n, threads[ti],
					    NULL, NULL), 0);
					assert_memory_equal(got, want, n * n);
				}
				poh_ctx_free(ctx);
				free(want);
				free(got);
			}
	}
	assert_true(kernels_run >= 1);
	assert_int_equal(poh_cpu_kernel_select("nonsense"), TROOP_EINVAL);
	assert_int_equal(poh_cpu_kernel_select(NULL), 0);
}

static void test_rows_subset_and_reference(void **state)
{
	const size_t n = 128;
	const unsigned rounds = 4;
	const uint32_t pick[] = { 127, 0, 5, 5, 64, 33, 1 };   /* any order, repeats, not 4k */
	const size_t k = sizeof(pick) / sizeof(pick[0]);
	uint8_t seed[POH_SEED_LEN];
	int8_t *all = malloc(n * n), *some = malloc(k * n), row[128];
	poh_ctx *ctx;

	(void)state;
	seed_of(seed, 9);
	assert_int_equal(poh_ctx_new(&ctx, seed, n, rounds, 0), 0);
	assert_int_equal(poh_compute_rows(all, ctx, NULL, n, 2, NULL, NULL), 0);
	assert_int_equal(poh_compute_rows(some, ctx, pick, k, 2, NULL, NULL), 0);
	for (size_t i = 0; i < k; i++) {
		assert_memory_equal(some + i * n, all + (size_t)pick[i] * n, n);
		assert_int_equal(poh_reference_row(row, seed, n, rounds, pick[i]), 0);
		assert_memory_equal(row, all + (size_t)pick[i] * n, n);
	}
	/* rows are not all alike (the mapping does not collapse) */
	assert_memory_not_equal(all, all + n, n);
	{
		const uint32_t bad[] = { 3, 128 };
		assert_int_equal(poh_compute_rows(some, ctx, bad, 2, 1, NULL, NULL), TROOP_EINVAL);
		assert_int_equal(poh_compute_rows(some, ctx, NULL, n + 1, 1, NULL, NULL),
		    TROOP_EINVAL);
	}
	poh_ctx_free(ctx);
	free(all);
	free(some);
}

struct prog {
	uint64_t last_done, total;
	int calls;
	int cancel_after;
};

static int on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct prog *p = arg;

	assert_true(done >= p->last_done);   /* never goes back */
	assert_true(done <= total);
	p->last_done = done;
	p->total = total;
	p->calls++;
	return p->cancel_after > 0 && p->calls >= p->cancel_after;
}

static void test_progress_and_cancel(void **state)
{
	const size_t n = 512;
	uint8_t seed[POH_SEED_LEN];
	int8_t *out = malloc(n * n);
	poh_ctx *ctx;
	struct prog p = { 0, 0, 0, 0 };

	(void)state;
	seed_of(seed, 11);
	assert_int_equal(poh_ctx_new(&ctx, seed, 64, 2, 1), 0);
	assert_int_equal(poh_compute_rows(out, ctx, NULL, 64, 2, on_progress, &p), 0);
	assert_true(p.calls >= 1);
	assert_int_equal(p.last_done, 64 * 2);   /* the final call reports all */
	assert_int_equal(p.total, 64 * 2);
	poh_ctx_free(ctx);

	/* long enough to be cancelled by the first progress call */
	memset(&p, 0, sizeof(p));
	p.cancel_after = 1;
	assert_int_equal(poh_ctx_new(&ctx, seed, n, 400, 1), 0);
	assert_int_equal(poh_compute_rows(out, ctx, NULL, n, 2, on_progress, &p), TROOP_ERR);
	assert_non_null(strstr(troop_error_msg(), "cancelled"));
	assert_true(p.last_done < (uint64_t)n * 400);
	poh_ctx_free(ctx);
	free(out);
}

/* Interoperability: the roots an independent implementation written from
 * docs/PROTOCOL-POH.md alone (tests/data/poh/reference.py: pyca ChaCha20,
 * hashlib BLAKE2b, Python integers) gives for seed 00 01 .. 1f. */
static void test_known_answers(void **state)
{
	static const struct {
		size_t n;
		unsigned rounds;
		const char *root;
		int8_t row0[8];
	} kat[] = {
		{ 16, 2, "ff55486c1b144b89e2692edad359c8797d45c07c77fcae03b86250b50abce686",
		  { 68, 111, 93, 48, -104, 70, -83, -16 } },
		{ 48, 3, "fc6219fdd7309ed29d4b6a1f285f63ae72b6e8c4cabd1f48ededf327eeff5e4a",
		  { 111, 127, -37, -96, -97, 67, -68, -91 } },
	};
	uint8_t seed[POH_SEED_LEN];

	(void)state;
	for (int i = 0; i < POH_SEED_LEN; i++)
		seed[i] = (uint8_t)i;
	for (size_t t = 0; t < sizeof(kat) / sizeof(kat[0]); t++) {
		size_t n = kat[t].n;
		int8_t *rows = malloc(n * n);
		char hex[2 * POH_HASH_LEN + 1];
		poh_ctx *ctx;
		poh_tree *tree;
		assert_int_equal(poh_ctx_new(&ctx, seed, n, kat[t].rounds, 1), 0);
		assert_int_equal(poh_compute_rows(rows, ctx, NULL, n, 2, NULL, NULL), 0);
		assert_memory_equal(rows, kat[t].row0, 8);
		assert_int_equal(poh_tree_build(&tree, rows, n, n, 1), 0);
		sodium_bin2hex(hex, sizeof(hex), poh_tree_root(tree), POH_HASH_LEN);
		assert_string_equal(hex, kat[t].root);
		poh_tree_free(tree);
		poh_ctx_free(ctx);
		free(rows);
	}
}

/* ---- Merkle ----------------------------------------------------------------------- */

static void node_of(uint8_t out[32], const uint8_t *l, const uint8_t *r)
{
	uint8_t buf[65];

	buf[0] = 1;
	memcpy(buf + 1, l, 32);
	memcpy(buf + 33, r, 32);
	crypto_generichash(out, 32, buf, sizeof(buf), NULL, 0);
}

/* Root built here: leaves hashed with a one-shot BLAKE2b, levels reduced
 * pairwise, an odd last node carried up. */
static void my_root(uint8_t root[32], const int8_t *rows, size_t n, size_t len)
{
	uint8_t (*lvl)[32] = calloc(n, 32);
	uint8_t *buf = malloc(5 + len);
	size_t m = n;

	for (size_t i = 0; i < n; i++) {
		buf[0] = 0;
		buf[1] = (uint8_t)i;
		buf[2] = (uint8_t)(i >> 8);
		buf[3] = (uint8_t)(i >> 16);
		buf[4] = (uint8_t)(i >> 24);
		memcpy(buf + 5, rows + i * len, len);
		crypto_generichash(lvl[i], 32, buf, 5 + len, NULL, 0);
	}
	while (m > 1) {
		size_t w = 0;
		for (size_t p = 0; p < m; p += 2, w++) {
			if (p + 1 < m)
				node_of(lvl[w], lvl[p], lvl[p + 1]);
			else
				memcpy(lvl[w], lvl[p], 32);
		}
		m = w;
	}
	memcpy(root, lvl[0], 32);
	free(lvl);
	free(buf);
}

static void test_merkle_all_sizes(void **state)
{
	const size_t len = 16;
	int8_t rows[70 * 16];
	uint8_t path[POH_PATH_MAX * 32], root[32], leaf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(rows); i++)
		rows[i] = (int8_t)(i * 37 + 11);
	for (size_t n = 1; n <= 70; n++) {
		poh_tree *t;
		assert_int_equal(poh_tree_build(&t, rows, n, len, 1), 0);
		my_root(root, rows, n, len);
		assert_memory_equal(poh_tree_root(t), root, 32);
		for (size_t i = 0; i < n; i++) {
			size_t plen;
			assert_int_equal(poh_tree_path(path, POH_PATH_MAX, &plen, t, i), 0);
			assert_int_equal(plen, poh_path_len(n, i));
			poh_leaf_hash(leaf, (uint32_t)i, rows + i * len, len);
			assert_int_equal(poh_path_verify(root, n, i, leaf, path, plen), 0);
			/* the same row claimed at another index fails */
			if (n > 1)
				assert_int_not_equal(poh_path_verify(root, n, (i + 1) % n, leaf, path,
				    plen), 0);
		}
		if (n == 1) {
			poh_leaf_hash(leaf, 0, rows, len);
			assert_memory_equal(root, leaf, 32);   /* one leaf is the root */
			assert_int_equal(poh_path_len(1, 0), 0);
		}
		poh_tree_free(t);
	}
}

static void test_merkle_tampering(void **state)
{
	const size_t n = 37, len = 32;
	int8_t rows[37 * 32];
	uint8_t path[POH_PATH_MAX * 32], leaf[32], bad[32], root[32];
	size_t plen;
	poh_tree *t;

	(void)state;
	randombytes_buf(rows, sizeof(rows));
	assert_int_equal(poh_tree_build(&t, rows, n, len, 2), 0);
	memcpy(root, poh_tree_root(t), 32);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(poh_tree_path(path, POH_PATH_MAX, &plen, t, i), 0);
		poh_leaf_hash(leaf, (uint32_t)i, rows + i * len, len);
		assert_int_equal(poh_path_verify(root, n, i, leaf, path, plen), 0);
		/* every bit of every path hash matters */
		for (size_t h = 0; h < plen; h++)
			for (int bit = 0; bit < 256; bit += 51) {
				path[h * 32 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
				assert_int_equal(poh_path_verify(root, n, i, leaf, path, plen),
				    TROOP_EFORBIDDEN);
				path[h * 32 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
			}
		/* a changed row byte */
		{
			int8_t row[32];
			memcpy(row, rows + i * len, len);
			row[i % len] ^= 0x40;
			poh_leaf_hash(bad, (uint32_t)i, row, len);
			assert_int_equal(poh_path_verify(root, n, i, bad, path, plen), TROOP_EFORBIDDEN);
		}
		/* short, long, reordered paths */
		if (plen > 0)
			assert_int_equal(poh_path_verify(root, n, i, leaf, path, plen - 1), TROOP_EINVAL);
		assert_int_equal(poh_path_verify(root, n, i, leaf, path, plen + 1), TROOP_EINVAL);
		if (plen > 1) {
			uint8_t tmp[32];
			memcpy(tmp, path, 32);
			memcpy(path, path + 32, 32);
			memcpy(path + 32, tmp, 32);
			assert_int_equal(poh_path_verify(root, n, i, leaf, path, plen), TROOP_EFORBIDDEN);
		}
	}
	/* a different root, out-of-range index */
	root[5] ^= 1;
	assert_int_equal(poh_tree_path(path, POH_PATH_MAX, &plen, t, 3), 0);
	poh_leaf_hash(leaf, 3, rows + 3 * len, len);
	assert_int_equal(poh_path_verify(root, n, 3, leaf, path, plen), TROOP_EFORBIDDEN);
	root[5] ^= 1;
	assert_int_equal(poh_path_verify(root, n, n, leaf, path, plen), TROOP_EINVAL);
	assert_int_equal(poh_tree_path(path, POH_PATH_MAX, &plen, t, n), TROOP_EINVAL);
	assert_int_equal(poh_tree_path(path, 1, &plen, t, 3), TROOP_ETOOLARGE);
	poh_tree_free(t);
	assert_int_equal(poh_tree_build(&t, rows, 0, len, 1), TROOP_EINVAL);
}

/* ---- the worker's device choice ---------------------------------------------------- */

static void test_cuda_missing_libraries(void **state)
{
	poh_cuda *g = NULL;
	poh_cuda_libs libs = { "libtroop-no-such-cudart.so", "libtroop-no-such-cublas.so",
	    "libtroop-no-such-cuda.so.1" };

	(void)state;
	assert_int_equal(poh_cuda_open(&g, 0, &libs), TROOP_EUNAVAIL);
	assert_null(g);
	assert_non_null(strstr(troop_error_msg(), "libtroop-no-such-cudart.so"));
	poh_cuda_close(NULL);
}

static void test_cuda_default_libraries_no_crash(void **state)
{
	/* Where the CUDA libraries and a GPU exist this opens the device;
	 * elsewhere (this build machine has the libraries but no GPU or
	 * driver) it must fail cleanly with TROOP_EUNAVAIL. */
	poh_cuda *g = NULL;
	int rc;

	(void)state;
	rc = poh_cuda_open(&g, 0, NULL);
	if (rc == 0) {
		assert_non_null(g);
		assert_true(strlen(poh_cuda_name(g)) > 0);
		poh_cuda_close(g);
	} else {
		assert_int_equal(rc, TROOP_EUNAVAIL);
		assert_null(g);
		assert_true(strlen(troop_error_msg()) > 0);
	}
}

static void test_worker_falls_back_to_cpu(void **state)
{
	const size_t n = 64;
	const unsigned rounds = 3;
	uint8_t seed[POH_SEED_LEN];
	poh_cuda_libs libs = { "libtroop-no-such-cudart.so", "libtroop-no-such-cublas.so",
	    "libtroop-no-such-cuda.so.1" };
	poh_engine *auto_e = NULL, *cpu_e = NULL;
	poh_computed a, c;
	poh_engine_opts o;

	(void)state;
	seed_of(seed, 21);
	memset(&o, 0, sizeof(o));
	o.device = POH_DEVICE_AUTO;
	o.threads = 2;
	o.cuda_libs = &libs;
	assert_int_equal(poh_engine_open(&auto_e, &o), 0);
	assert_false(poh_engine_is_gpu(auto_e));
	assert_non_null(strstr(poh_engine_describe(auto_e), "cpu"));
	o.device = POH_DEVICE_CPU;
	o.cuda_libs = NULL;
	assert_int_equal(poh_engine_open(&cpu_e, &o), 0);

	assert_int_equal(poh_engine_compute(&a, auto_e, seed, n, rounds, NULL, NULL), 0);
	assert_int_equal(poh_engine_compute(&c, cpu_e, seed, n, rounds, NULL, NULL), 0);
	assert_memory_equal(poh_tree_root(a.tree), poh_tree_root(c.tree), POH_HASH_LEN);
	assert_memory_equal(a.rows, c.rows, n * n);
	poh_computed_clear(&a);
	poh_computed_clear(&c);

	/* asking for the GPU explicitly fails when there is none */
	o.device = POH_DEVICE_GPU;
	o.cuda_libs = &libs;
	{
		poh_engine *g = NULL;
		assert_int_equal(poh_engine_open(&g, &o), TROOP_EUNAVAIL);
		assert_null(g);
	}
	poh_engine_close(auto_e);
	poh_engine_close(cpu_e);
}

/* ---- the GPU path against a fake CUDA ------------------------------------------------- */
/*
 * A host-memory CUDA with cuBLAS's documented semantics (column-major,
 * op(X) = X or X^T, leading dimensions), and a "kernel launch" that does
 * what the PTX kernel does.  It checks the layout reasoning of
 * poh_cuda.c, the device and host mappings, and every fallback, on a
 * machine without a GPU.
 */
enum { GEMM_OK, GEMM_IGNORES_TRANS, GEMM_CORRUPT_BIG };
static int fake_gemm_mode, fake_map_wrong, fake_launches, fake_gemms;
static size_t fake_free_mem = (size_t)1 << 34;

static poh_cuda_err f_count(int *c) { *c = 1; return 0; }
static poh_cuda_err f_set(int d) { return d == 0 ? 0 : 101; }
static poh_cuda_err f_malloc(void **p, size_t n) { *p = malloc(n ? n : 1); return *p ? 0 : 2; }
static poh_cuda_err f_free(void *p) { free(p); return 0; }
static poh_cuda_err f_sync(void) { return 0; }
static const char *f_errstr(poh_cuda_err e) { (void)e; return "fake error"; }
static poh_cuda_err f_version(int *v) { *v = 12040; return 0; }
static int f_blas_create(void **h) { *h = malloc(1); return 0; }
static int f_blas_destroy(void *h) { free(h); return 0; }

static poh_cuda_err f_memcpy(void *d, const void *src, size_t n, int kind)
{
	assert_true(kind == POH_CUDA_MEMCPY_H2D || kind == POH_CUDA_MEMCPY_D2H);
	memcpy(d, src, n);
	return 0;
}

static poh_cuda_err f_meminfo(size_t *fr, size_t *total)
{
	*fr = fake_free_mem;
	*total = (size_t)1 << 34;
	return 0;
}

static int f_gemm(void *h, int ta, int tb, int m, int n, int k, const void *alpha,
    const void *A, int at, int lda, const void *B, int bt, int ldb, const void *beta, void *C,
    int ct, int ldc, int compute, int algo)
{
	const int8_t *a = A, *b = B;
	int32_t *c = C, al = *(const int32_t *)alpha, be = *(const int32_t *)beta;

	(void)h;
	(void)algo;
	if (at != POH_CUDA_R_8I || bt != POH_CUDA_R_8I || ct != POH_CUDA_R_32I ||
	    compute != POH_CUBLAS_COMPUTE_32I)
		return 7;   /* CUBLAS_STATUS_INVALID_VALUE */
	if (fake_gemm_mode == GEMM_IGNORES_TRANS)
		ta = POH_CUBLAS_OP_N;
	fake_gemms++;
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			int64_t sum = 0;
			for (int p = 0; p < k; p++) {
				int8_t x = ta == POH_CUBLAS_OP_N ? a[i + p * lda] : a[p + i * lda];
				int8_t y = tb == POH_CUBLAS_OP_N ? b[p + j * ldb] : b[j + p * ldb];
				sum += (int64_t)x * y;
			}
			/* beta == 0: C is not read (it may be uninitialised) */
			c[i + j * ldc] = (int32_t)(al * sum) + (be ? be * c[i + j * ldc] : 0);
		}
	if (fake_gemm_mode == GEMM_CORRUPT_BIG && m >= 128)
		c[0] ^= 1 << 9;    /* element (0, 0): row 0 of the result */
	return 0;
}

static int f_cu_init(unsigned f) { (void)f; return 0; }
static int f_cu_dev(int *d, int o) { *d = o; return 0; }
static int f_cu_name(char *s, int len, int d)
{
	(void)d;
	snprintf(s, (size_t)len, "Fake GPU");
	return 0;
}
static int f_cu_retain(void **ctx, int d) { (void)d; *ctx = (void *)&fake_launches; return 0; }
static int f_cu_release(int d) { (void)d; return 0; }
static int f_cu_current(void *ctx) { assert_ptr_equal(ctx, &fake_launches); return 0; }
static int f_cu_load(void **mod, const void *image)
{
	assert_non_null(strstr(image, ".entry troop_poh_map("));
	*mod = (void *)&fake_gemms;
	return 0;
}
static int f_cu_unload(void *mod) { assert_ptr_equal(mod, &fake_gemms); return 0; }
static int f_cu_func(void **fn, void *mod, const char *name)
{
	assert_ptr_equal(mod, &fake_gemms);
	if (strcmp(name, "troop_poh_map") != 0)
		return 500;   /* CUDA_ERROR_NOT_FOUND */
	*fn = (void *)&fake_map_wrong;
	return 0;
}

static int f_cu_launch(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
    unsigned by, unsigned bz, unsigned shmem, void *stream, void **params, void **extra)
{
	const int32_t *c = (const int32_t *)(uintptr_t)*(unsigned long long *)params[0];
	int8_t *a = (int8_t *)(uintptr_t)*(unsigned long long *)params[1];
	unsigned long long count = *(unsigned long long *)params[2];

	(void)shmem;
	(void)stream;
	assert_ptr_equal(fn, &fake_map_wrong);
	assert_null(extra);
	assert_true(gy == 1 && gz == 1 && by == 1 && bz == 1);
	assert_true((unsigned long long)gx * bx >= count);   /* every element has a thread */
	fake_launches++;
	/* the PTX: ld.global.u32, shr.u32 7, st.global.u8 (keeps the low byte) */
	for (unsigned long long i = 0; i < count; i++)
		a[i] = (int8_t)(uint8_t)((uint32_t)c[i] >> (fake_map_wrong ? 8 : 7));
	return 0;
}

static poh_cuda_api fake_api(bool driver)
{
	poh_cuda_api f;

	memset(&f, 0, sizeof(f));
	f.get_device_count = f_count;
	f.set_device = f_set;
	f.malloc_ = f_malloc;
	f.free_ = f_free;
	f.memcpy_ = f_memcpy;
	f.synchronize = f_sync;
	f.mem_get_info = f_meminfo;
	f.error_string = f_errstr;
	f.runtime_version = f_version;
	f.blas_create = f_blas_create;
	f.blas_destroy = f_blas_destroy;
	f.gemm_ex = f_gemm;
	if (driver) {
		f.cu_init = f_cu_init;
		f.cu_device_get = f_cu_dev;
		f.cu_device_get_name = f_cu_name;
		f.cu_primary_retain = f_cu_retain;
		f.cu_primary_release = f_cu_release;
		f.cu_ctx_set_current = f_cu_current;
		f.cu_module_load_data = f_cu_load;
		f.cu_module_unload = f_cu_unload;
		f.cu_module_get_function = f_cu_func;
		f.cu_launch_kernel = f_cu_launch;
	}
	return f;
}

static void fake_reset(void)
{
	fake_gemm_mode = GEMM_OK;
	fake_map_wrong = 0;
	fake_launches = 0;
	fake_gemms = 0;
	fake_free_mem = (size_t)1 << 34;
}

struct round_count {
	int calls;
	uint64_t last;
};

static int count_rounds(void *arg, uint64_t done, uint64_t total)
{
	struct round_count *rc = arg;

	assert_true(done > rc->last && done <= total);
	rc->last = done;
	rc->calls++;
	return 0;
}

/* GPU rows for (seed, n, rounds) on `g` equal the CPU's. */
static void gpu_matches_cpu(poh_cuda *g, size_t n, unsigned rounds)
{
	uint8_t seed[POH_SEED_LEN];
	int8_t *gpu = malloc(n * n), *cpu = malloc(n * n);
	struct round_count rc = { 0, 0 };
	poh_ctx *ctx;

	seed_of(seed, (unsigned)(n * 3 + rounds));
	assert_int_equal(poh_ctx_new(&ctx, seed, n, rounds, 1), 0);
	assert_int_equal(poh_compute_rows(cpu, ctx, NULL, n, 2, NULL, NULL), 0);
	assert_int_equal(poh_cuda_compute(gpu, g, ctx, 2, count_rounds, &rc), 0);
	assert_memory_equal(gpu, cpu, n * n);
	assert_int_equal(rc.calls, (int)rounds);            /* one report per round */
	assert_int_equal(rc.last, (uint64_t)rounds * n);
	poh_ctx_free(ctx);
	free(gpu);
	free(cpu);
}

static void test_cuda_fake_device_mapping(void **state)
{
	poh_cuda_api api = fake_api(true);
	poh_cuda *g = NULL;

	(void)state;
	fake_reset();
	assert_int_equal(poh_cuda_open_with(&g, 0, &api), 0);
	assert_true(poh_cuda_maps_on_device(g));
	assert_string_equal(poh_cuda_name(g), "Fake GPU");
	fake_launches = 0;
	fake_gemms = 0;
	gpu_matches_cpu(g, 128, 4);
	assert_int_equal(fake_gemms, 4);       /* one GEMM per round */
	assert_int_equal(fake_launches, 4);    /* one mapping launch per round */
	gpu_matches_cpu(g, 48, 1);
	/* asked to stop using the kernel: host mapping, same rows */
	poh_cuda_disable_kernel(g);
	assert_false(poh_cuda_maps_on_device(g));
	fake_launches = 0;
	gpu_matches_cpu(g, 64, 3);
	assert_int_equal(fake_launches, 0);
	poh_cuda_close(g);

	/* a device that does not exist */
	assert_int_equal(poh_cuda_open_with(&g, 3, &api), TROOP_EUNAVAIL);
	assert_null(g);
}

/* A machine without an NVIDIA GPU: the CUDA runtime is installed but no
 * driver (cudaErrorInsufficientDriver).  The message says so in words. */
static poh_cuda_err f_count_no_driver(int *n) { *n = 0; return 35; }

static void test_cuda_no_driver_message(void **state)
{
	poh_cuda_api api = fake_api(true);
	poh_cuda *g = NULL;

	(void)state;
	fake_reset();
	api.get_device_count = f_count_no_driver;
	assert_int_equal(poh_cuda_open_with(&g, 0, &api), TROOP_EUNAVAIL);
	assert_null(g);
	assert_non_null(strstr(troop_error_msg(), "no NVIDIA GPU with a working driver on this "
	    "machine"));
}

static void test_cuda_fake_host_mapping(void **state)
{
	poh_cuda_api api = fake_api(false);   /* no libcuda */
	poh_cuda *g = NULL;

	(void)state;
	fake_reset();
	assert_int_equal(poh_cuda_open_with(&g, 0, &api), 0);
	assert_false(poh_cuda_maps_on_device(g));
	assert_string_equal(poh_cuda_name(g), "CUDA device 0");
	gpu_matches_cpu(g, 96, 5);
	assert_int_equal(fake_launches, 0);
	/* not enough device memory for the challenge */
	fake_free_mem = 1 << 20;
	{
		uint8_t seed[POH_SEED_LEN] = { 0 };
		int8_t *out = malloc(512 * 512);
		poh_ctx *ctx;
		assert_int_equal(poh_ctx_new(&ctx, seed, 512, 1, 1), 0);
		assert_int_equal(poh_cuda_compute(out, g, ctx, 1, NULL, NULL), TROOP_ENOMEM);
		poh_ctx_free(ctx);
		free(out);
	}
	poh_cuda_close(g);
}

static void test_cuda_fake_self_test(void **state)
{
	poh_cuda_api api = fake_api(true);
	poh_cuda *g = NULL;

	(void)state;
	/* a wrong mapping kernel: the self-test falls back to host mapping */
	fake_reset();
	fake_map_wrong = 1;
	assert_int_equal(poh_cuda_open_with(&g, 0, &api), 0);
	assert_false(poh_cuda_maps_on_device(g));
	gpu_matches_cpu(g, 64, 2);
	poh_cuda_close(g);

	/* a GEMM that gets the layout wrong: the device is refused */
	fake_reset();
	fake_gemm_mode = GEMM_IGNORES_TRANS;
	assert_int_equal(poh_cuda_open_with(&g, 0, &api), TROOP_EUNAVAIL);
	assert_null(g);
	assert_non_null(strstr(troop_error_msg(), "self-test"));

	/* without cublasGemmEx there is nothing to run */
	fake_reset();
	api.gemm_ex = NULL;
	assert_int_equal(poh_cuda_open_with(&g, 0, &api), TROOP_EUNAVAIL);
}

static void test_engine_spot_check_steps_down(void **state)
{
	poh_cuda_api api = fake_api(true);
	poh_engine_opts o;
	poh_engine *e = NULL;
	poh_computed pc;
	uint8_t seed[POH_SEED_LEN];
	const uint32_t row0[] = { 0 }, row5[] = { 5 };

	(void)state;
	fake_reset();
	fake_gemm_mode = GEMM_CORRUPT_BIG;   /* right at 64 (the self-test), wrong at 128 */
	memset(&o, 0, sizeof(o));
	o.device = POH_DEVICE_AUTO;
	o.threads = 2;
	o.cuda_api = &api;
	assert_int_equal(poh_engine_open(&e, &o), 0);
	assert_true(poh_engine_is_gpu(e));
	assert_non_null(strstr(poh_engine_describe(e), "Fake GPU (device mapping)"));
	seed_of(seed, 77);

	assert_int_equal(poh_engine_compute(&pc, e, seed, 128, 2, NULL, NULL), 0);
	assert_true(pc.used_gpu);
	/* a row the corruption did not touch passes; row 0 does not */
	assert_int_equal(poh_engine_check(e, seed, &pc, row5, 1), 0);
	assert_int_equal(poh_engine_check(e, seed, &pc, row0, 1), TROOP_ERR);
	assert_non_null(strstr(troop_error_msg(), "not revealed"));
	assert_non_null(strstr(poh_engine_describe(e), "host mapping"));   /* step 1 */
	poh_computed_clear(&pc);

	assert_int_equal(poh_engine_compute(&pc, e, seed, 128, 2, NULL, NULL), 0);
	assert_true(pc.used_gpu);
	assert_int_equal(poh_engine_check(e, seed, &pc, row0, 1), TROOP_ERR);
	assert_false(poh_engine_is_gpu(e));                                 /* step 2: CPU */
	assert_non_null(strstr(poh_engine_describe(e), "cpu"));
	poh_computed_clear(&pc);

	assert_int_equal(poh_engine_compute(&pc, e, seed, 128, 2, NULL, NULL), 0);
	assert_false(pc.used_gpu);
	assert_int_equal(poh_engine_check(e, seed, &pc, row0, 1), 0);
	poh_computed_clear(&pc);
	poh_engine_close(e);

	/* a GPU that fails mid-challenge: the CPU finishes it */
	fake_reset();
	assert_int_equal(poh_engine_open(&e, &o), 0);
	fake_free_mem = 1 << 20;
	assert_int_equal(poh_engine_compute(&pc, e, seed, 512, 1, NULL, NULL), 0);
	assert_false(pc.used_gpu);
	assert_false(poh_engine_is_gpu(e));
	poh_computed_clear(&pc);
	poh_engine_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_offsets),
		cmocka_unit_test(test_generation_deterministic),
		cmocka_unit_test(test_big_b_threaded),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_chain_matches_naive),
		cmocka_unit_test(test_rows_subset_and_reference),
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_progress_and_cancel),
		cmocka_unit_test(test_merkle_all_sizes),
		cmocka_unit_test(test_merkle_tampering),
		cmocka_unit_test(test_cuda_missing_libraries),
		cmocka_unit_test(test_cuda_default_libraries_no_crash),
		cmocka_unit_test(test_worker_falls_back_to_cpu),
		cmocka_unit_test(test_cuda_fake_device_mapping),
		cmocka_unit_test(test_cuda_fake_host_mapping),
		cmocka_unit_test(test_cuda_no_driver_message),
		cmocka_unit_test(test_cuda_fake_self_test),
		cmocka_unit_test(test_engine_spot_check_steps_down),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
