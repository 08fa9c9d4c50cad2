/*
 * poh.c - int8-gemm-chain-v1: matrix generation from the seed's ChaCha20
 * stream, the CPU kernels and their thread pool, and the BLAKE2b Merkle
 * tree (see poh.h and docs/PROTOCOL-POH.md).
 *
 * The kernels are one loop nest compiled three times with different
 * target attributes and picked at run time from the CPU's features.  The
 * loops are written so that GCC vectorises them at -O3 (the inner loop is
 * a plain int8 x int8 -> int32 dot product over a row of A and a row of
 * B transposed; pmaddwd / vpdpwssd do it), hence the optimize("O3")
 * attribute: the project builds at -O2, where GCC 12 leaves reductions
 * like this scalar (measured here: 2.4 GMAC/s at -O2 against 14 to 48
 * GMAC/s vectorised).  Integer arithmetic is exact, so every kernel gives
 * the same bytes.
 */
#include "poh.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"
#include "error.h"

#if defined(__GNUC__) && !defined(__clang__)
#define POH_O3 __attribute__((optimize("O3")))
#else
#define POH_O3
#endif

#define ROW_BLOCK 16  /* rows a kernel call advances together */

static const unsigned char stream_nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

int poh_params_check(size_t n, unsigned rounds)
{
	if (n < POH_N_MIN || n > POH_N_MAX || n % POH_N_ALIGN != 0)
		return troop_error_set(TROOP_EINVAL, "field 'matrix_size' must be a multiple of %d "
		    "between %d and %d, got %zu", POH_N_ALIGN, POH_N_MIN, POH_N_MAX, n);
	if (rounds < POH_ROUNDS_MIN || rounds > POH_ROUNDS_MAX)
		return troop_error_set(TROOP_EINVAL, "field 'rounds' must be between %d and %d, "
		    "got %u", POH_ROUNDS_MIN, POH_ROUNDS_MAX, rounds);
	return 0;
}

double poh_ops(size_t n, unsigned rounds)
{
	return 2.0 * (double)n * (double)n * (double)n * (double)rounds;
}

int poh_cpu_count(void)
{
	long c = sysconf(_SC_NPROCESSORS_ONLN);

	return c < 1 ? 1 : (c > 1024 ? 1024 : (int)c);
}

/* ---- generation ------------------------------------------------------------------- */

void poh_stream(uint8_t *out, const uint8_t seed[POH_SEED_LEN], uint64_t offset, size_t len)
{
	static const uint8_t zeros[4096];
	uint64_t block = offset / 64;
	size_t skip = (size_t)(offset % 64);

	if (skip != 0 && len > 0) {
		uint8_t tmp[64];
		size_t take = 64 - skip < len ? 64 - skip : len;
		crypto_stream_chacha20_ietf_xor_ic(tmp, zeros, sizeof(tmp), stream_nonce,
		    (uint32_t)block, seed);
		memcpy(out, tmp + skip, take);
		sodium_memzero(tmp, sizeof(tmp));
		out += take;
		len -= take;
		block++;
	}
	while (len > 0) {
		size_t take = len < sizeof(zeros) ? len : sizeof(zeros);
		crypto_stream_chacha20_ietf_xor_ic(out, zeros, take, stream_nonce, (uint32_t)block,
		    seed);
		out += take;
		len -= take;
		block += sizeof(zeros) / 64;
	}
}

void poh_gen_a_rows(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n, size_t row0,
    size_t count)
{
	poh_stream((uint8_t *)out, seed, (uint64_t)row0 * n, count * n);
}

void poh_gen_b(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n)
{
	poh_stream((uint8_t *)out, seed, (uint64_t)n * n, n * n);
}

/* ---- a tiny parallel-for ---------------------------------------------------------- */

typedef void (*par_fn)(void *arg, int index, int count);

struct par_arg {
	par_fn fn;
	void *arg;
	int index, count;
};

static void *par_main(void *p)
{
	struct par_arg *a = p;

	a->fn(a->arg, a->index, a->count);
	return NULL;
}

/* Run fn(arg, i, threads) for i in [0, threads) on that many threads (the
 * caller's included).  A thread that cannot be created has its share run
 * by the caller. */
static void par_run(int threads, par_fn fn, void *arg)
{
	pthread_t tid[64];
	struct par_arg pa[64];
	bool started[64];

	if (threads > 64)
		threads = 64;
	if (threads <= 1) {
		fn(arg, 0, 1);
		return;
	}
	for (int i = 1; i < threads; i++) {
		pa[i] = (struct par_arg){ fn, arg, i, threads };
		started[i] = thread_start(&tid[i], par_main, &pa[i]) == 0;
	}
	fn(arg, 0, threads);
	for (int i = 1; i < threads; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			fn(arg, i, threads);
	}
}

struct gen_a_arg {
	const uint8_t *seed;
	int8_t *a;
	size_t n;
};

static void gen_a_part(void *p, int index, int count)
{
	struct gen_a_arg *g = p;
	size_t from = g->n * (size_t)index / (size_t)count;
	size_t to = g->n * (size_t)(index + 1) / (size_t)count;

	if (from < to)
		poh_gen_a_rows(g->a + from * g->n, g->seed, g->n, from, to - from);
}

void poh_gen_a(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n, int threads)
{
	struct gen_a_arg g = { seed, out, n };

	if (threads <= 0)
		threads = poh_cpu_count();
	if (n * n < (1u << 20))
		threads = 1;
	par_run(threads, gen_a_part, &g);
}

struct map_arg {
	int8_t *out;
	const int32_t *c;
	size_t count;
};

static void map_part(void *p, int index, int count)
{
	struct map_arg *m = p;
	size_t from = m->count * (size_t)index / (size_t)count;
	size_t to = m->count * (size_t)(index + 1) / (size_t)count;

	for (size_t i = from; i < to; i++)
		m->out[i] = poh_map(m->c[i]);
}

void poh_map_buffer(int8_t *out, const int32_t *c, size_t count, int threads)
{
	struct map_arg m = { out, c, count };

	if (threads <= 0)
		threads = poh_cpu_count();
	if (count < (1u << 20))
		threads = 1;
	par_run(threads, map_part, &m);
}

/* ---- context -------------------------------------------------------------------- */

struct poh_ctx {
	size_t n;
	unsigned rounds;
	uint8_t seed[POH_SEED_LEN];
	int8_t *bt;
};

struct gen_b_arg {
	const uint8_t *seed;
	int8_t *b;
	size_t n;
};

static void gen_b_part(void *p, int index, int count)
{
	struct gen_b_arg *g = p;
	size_t total = g->n * g->n;
	/* chunks on 64-byte block boundaries */
	size_t per = ((total / (size_t)count) + 63) / 64 * 64;
	size_t from = per * (size_t)index;
	size_t to = from + per > total ? total : from + per;

	if (from < to)
		poh_stream((uint8_t *)g->b + from, g->seed, (uint64_t)total + from, to - from);
}

/* Transpose an 8 x 8 byte block held as eight little-endian words: swap
 * 2x2 blocks of bytes, then of 16-bit pairs, then of 32-bit halves. */
static inline void transpose8(uint64_t x[8])
{
	const uint64_t m1 = 0x00ff00ff00ff00ffULL, m2 = 0x0000ffff0000ffffULL,
	    m4 = 0x00000000ffffffffULL;
	uint64_t t;

	for (int r = 0; r < 8; r += 2) {
		t = ((x[r] >> 8) ^ x[r + 1]) & m1;
		x[r + 1] ^= t;
		x[r] ^= t << 8;
	}
	for (int r = 0; r < 8; r += (r % 4 == 1) ? 3 : 1) {
		t = ((x[r] >> 16) ^ x[r + 2]) & m2;
		x[r + 2] ^= t;
		x[r] ^= t << 16;
	}
	for (int r = 0; r < 4; r++) {
		t = ((x[r] >> 32) ^ x[r + 4]) & m4;
		x[r + 4] ^= t;
		x[r] ^= t << 32;
	}
}

/* dst = src transposed; n is a multiple of 8.  64 x 64 tiles keep both
 * sides' cache lines whole; 8 x 8 blocks move as words. */
static void transpose(int8_t *restrict dst, const int8_t *restrict src, size_t n)
{
	for (size_t ti = 0; ti < n; ti += 64)
		for (size_t tj = 0; tj < n; tj += 64) {
			size_t ie = ti + 64 < n ? ti + 64 : n, je = tj + 64 < n ? tj + 64 : n;
			for (size_t i = ti; i < ie; i += 8)
				for (size_t j = tj; j < je; j += 8) {
					uint64_t x[8];
					for (int r = 0; r < 8; r++)
						memcpy(&x[r], src + (i + (size_t)r) * n + j, 8);
					transpose8(x);
					for (int r = 0; r < 8; r++)
						memcpy(dst + (j + (size_t)r) * n + i, &x[r], 8);
				}
		}
}

static void *aligned_alloc64(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 64, len ? len : 64) != 0)
		return NULL;
	return p;
}

int poh_ctx_new(poh_ctx **out, const uint8_t seed[POH_SEED_LEN], size_t n, unsigned rounds,
    int threads)
{
	poh_ctx *c = NULL;
	int8_t *b = NULL;
	int rc;

	*out = NULL;
	if ((rc = poh_params_check(n, rounds)) != 0)
		return rc;
	if (threads <= 0)
		threads = poh_cpu_count();
	if (n * n < (1u << 20))
		threads = 1;    /* not worth a thread below 1 MiB */
	c = calloc(1, sizeof(*c));
	b = aligned_alloc64(n * n);
	if (c)
		c->bt = aligned_alloc64(n * n);
	if (!c || !b || !c->bt) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory for a %zu x %zu challenge", n, n);
		goto fail;
	}
	c->n = n;
	c->rounds = rounds;
	memcpy(c->seed, seed, POH_SEED_LEN);
	{
		struct gen_b_arg g = { seed, b, n };
		par_run(threads, gen_b_part, &g);
	}
	transpose(c->bt, b, n);
	free(b);
	*out = c;
	return 0;
fail:
	free(b);
	poh_ctx_free(c);
	return rc;
}

void poh_ctx_free(poh_ctx *ctx)
{
	if (!ctx)
		return;
	free(ctx->bt);
	sodium_memzero(ctx->seed, sizeof(ctx->seed));
	free(ctx);
}

size_t poh_ctx_n(const poh_ctx *ctx) { return ctx->n; }
unsigned poh_ctx_rounds(const poh_ctx *ctx) { return ctx->rounds; }
const uint8_t *poh_ctx_seed(const poh_ctx *ctx) { return ctx->seed; }
const int8_t *poh_ctx_bt(const poh_ctx *ctx) { return ctx->bt; }

/* ---- kernels -------------------------------------------------------------------- */

/* One round for `rows` (<= ROW_BLOCK) rows (row r at a + r*n): out =
 * map(a x B), with bt = B transposed.  The column loop is outside so that
 * each column of B is read from memory once per round for the whole block
 * (it then stays in L1 while every group of four rows uses it); the four
 * rows of a group share each load of it. */
static inline __attribute__((always_inline)) void
round_body(int8_t *restrict out, const int8_t *restrict a, const int8_t *restrict bt,
    size_t n, size_t rows)
{
	for (size_t j = 0; j < n; j++) {
		const int8_t *b = bt + j * n;
		size_t r = 0;
		for (; r + 4 <= rows; r += 4) {
			const int8_t *a0 = a + r * n, *a1 = a0 + n, *a2 = a1 + n, *a3 = a2 + n;
			int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
			for (size_t k = 0; k < n; k++) {
				int32_t bk = b[k];
				s0 += a0[k] * bk;
				s1 += a1[k] * bk;
				s2 += a2[k] * bk;
				s3 += a3[k] * bk;
			}
			out[r * n + j] = poh_map(s0);
			out[(r + 1) * n + j] = poh_map(s1);
			out[(r + 2) * n + j] = poh_map(s2);
			out[(r + 3) * n + j] = poh_map(s3);
		}
		for (; r < rows; r++) {
			const int8_t *a0 = a + r * n;
			int32_t s = 0;
			for (size_t k = 0; k < n; k++)
				s += a0[k] * (int32_t)b[k];
			out[r * n + j] = poh_map(s);
		}
	}
}

typedef void (*round_fn)(int8_t *restrict out, const int8_t *restrict a,
    const int8_t *restrict bt, size_t n, size_t rows);

POH_O3 static void round_generic(int8_t *restrict out, const int8_t *restrict a,
    const int8_t *restrict bt, size_t n, size_t rows)
{
	round_body(out, a, bt, n, rows);
}

#if defined(__x86_64__) || defined(__i386__)
#define POH_X86 1
POH_O3 __attribute__((target("avx2"))) static void
round_avx2(int8_t *restrict out, const int8_t *restrict a, const int8_t *restrict bt,
    size_t n, size_t rows)
{
	round_body(out, a, bt, n, rows);
}

POH_O3 __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni,prefer-vector-width=512")))
static void round_avx512(int8_t *restrict out, const int8_t *restrict a,
    const int8_t *restrict bt, size_t n, size_t rows)
{
	round_body(out, a, bt, n, rows);
}
#endif

struct kernel {
	const char *name;
	round_fn fn;
};

static const struct kernel kernels[] = {
#ifdef POH_X86
	{ "avx512-vnni", round_avx512 },
	{ "avx2", round_avx2 },
#endif
	{ "generic", round_generic },
};

static bool kernel_supported(const struct kernel *k)
{
#ifdef POH_X86
	__builtin_cpu_init();
	if (k->fn == round_avx512)
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
		    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
		    __builtin_cpu_supports("avx512vnni");
	if (k->fn == round_avx2)
		return __builtin_cpu_supports("avx2");
#endif
	(void)k;
	return true;
}

static _Atomic(const struct kernel *) kernel_cur;

static const struct kernel *kernel_best(void)
{
	for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++)
		if (kernel_supported(&kernels[i]))
			return &kernels[i];
	return &kernels[sizeof(kernels) / sizeof(kernels[0]) - 1];
}

static const struct kernel *kernel_get(void)
{
	const struct kernel *k = atomic_load(&kernel_cur);

	if (!k) {
		k = kernel_best();
		atomic_store(&kernel_cur, k);
	}
	return k;
}

const char *poh_cpu_kernel(void)
{
	return kernel_get()->name;
}

int poh_cpu_kernel_select(const char *name)
{
	if (!name) {
		atomic_store(&kernel_cur, kernel_best());
		return 0;
	}
	for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++) {
		if (strcmp(kernels[i].name, name) != 0)
			continue;
		if (!kernel_supported(&kernels[i]))
			return troop_error_set(TROOP_EUNAVAIL, "this CPU cannot run the %s kernel", name);
		atomic_store(&kernel_cur, &kernels[i]);
		return 0;
	}
	return troop_error_set(TROOP_EINVAL, "unknown kernel '%s' (avx512-vnni, avx2, generic)",
	    name);
}

/* ---- the thread pool ------------------------------------------------------------ */

struct compute_job {
	const poh_ctx *ctx;
	const uint32_t *rows;
	size_t count;
	size_t block;           /* rows per block: ROW_BLOCK, less to feed every thread */
	size_t nblocks;
	int8_t *out;
	round_fn fn;
	atomic_size_t next;
	atomic_uint_fast64_t done;
	atomic_int cancel;
	atomic_int failed;      /* a thread ran out of memory */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int running;
};

static void compute_blocks(struct compute_job *j)
{
	size_t n = j->ctx->n;
	int8_t *buf = aligned_alloc64(2 * ROW_BLOCK * n);

	if (!buf) {
		atomic_store(&j->failed, 1);
		atomic_store(&j->cancel, 1);
		return;
	}
	for (;;) {
		size_t b = atomic_fetch_add(&j->next, 1), r0 = b * j->block, cnt;
		int8_t *cur = buf, *nxt = buf + ROW_BLOCK * n;

		if (b >= j->nblocks || atomic_load(&j->cancel))
			break;
		cnt = j->count - r0 < j->block ? j->count - r0 : j->block;
		for (size_t q = 0; q < cnt; q++) {
			size_t row = j->rows ? j->rows[r0 + q] : r0 + q;
			poh_gen_a_rows(cur + q * n, j->ctx->seed, n, row, 1);
		}
		for (unsigned round = 0; round < j->ctx->rounds; round++) {
			int8_t *t;
			j->fn(nxt, cur, j->ctx->bt, n, cnt);
			t = cur;
			cur = nxt;
			nxt = t;
			atomic_fetch_add(&j->done, cnt);
			if (atomic_load(&j->cancel))
				break;
		}
		memcpy(j->out + r0 * n, cur, cnt * n);
	}
	free(buf);
}

static void *compute_main(void *p)
{
	struct compute_job *j = p;

	compute_blocks(j);
	pthread_mutex_lock(&j->mu);
	j->running--;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int poh_compute_rows(int8_t *out, const poh_ctx *ctx, const uint32_t *rows, size_t count,
    int threads, poh_progress_fn progress, void *arg)
{
	struct compute_job j;
	pthread_t tid[256];
	int started = 0;
	uint64_t total = (uint64_t)count * ctx->rounds;
	bool cancelled = false;

	if (rows) {
		for (size_t i = 0; i < count; i++)
			if (rows[i] >= ctx->n)
				return troop_error_set(TROOP_EINVAL, "row index %u is out of range "
				    "(the matrix has %zu rows)", rows[i], ctx->n);
	} else if (count > ctx->n) {
		return troop_error_set(TROOP_EINVAL, "%zu rows asked of a %zu-row matrix", count,
		    ctx->n);
	}
	if (count == 0)
		return 0;
	memset(&j, 0, sizeof(j));
	j.ctx = ctx;
	j.rows = rows;
	j.count = count;
	if (threads <= 0)
		threads = poh_cpu_count();
	/* a few rows on several threads (a verifier): smaller blocks, >= 4 rows */
	j.block = ROW_BLOCK;
	if (count < (size_t)threads * ROW_BLOCK) {
		j.block = (count + (size_t)threads - 1) / (size_t)threads;
		j.block = (j.block + 3) / 4 * 4;
		if (j.block > ROW_BLOCK)
			j.block = ROW_BLOCK;
	}
	j.nblocks = (count + j.block - 1) / j.block;
	j.out = out;
	j.fn = kernel_get()->fn;
	atomic_init(&j.next, 0);
	atomic_init(&j.done, 0);
	atomic_init(&j.cancel, 0);
	atomic_init(&j.failed, 0);
	pthread_mutex_init(&j.mu, NULL);
	pthread_cond_init(&j.cv, NULL);
	if ((size_t)threads > j.nblocks)
		threads = (int)j.nblocks;
	if (threads > (int)(sizeof(tid) / sizeof(tid[0])))
		threads = (int)(sizeof(tid) / sizeof(tid[0]));

	if (threads <= 1 && !progress) {
		compute_blocks(&j);
	} else {
		pthread_mutex_lock(&j.mu);
		for (int i = 0; i < threads; i++) {
			if (thread_start(&tid[started], compute_main, &j) != 0)
				break;
			started++;
			j.running++;
		}
		pthread_mutex_unlock(&j.mu);
		if (started == 0)
			compute_blocks(&j);   /* no thread at all: do it here */
		pthread_mutex_lock(&j.mu);
		while (j.running > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&j.cv, &j.mu, &ts);
			if (progress && j.running > 0) {
				pthread_mutex_unlock(&j.mu);
				if (progress(arg, atomic_load(&j.done), total) != 0)
					atomic_store(&j.cancel, 1);
				pthread_mutex_lock(&j.mu);
			}
		}
		pthread_mutex_unlock(&j.mu);
		for (int i = 0; i < started; i++)
			pthread_join(tid[i], NULL);
	}
	pthread_mutex_destroy(&j.mu);
	pthread_cond_destroy(&j.cv);
	if (atomic_load(&j.failed))
		return troop_error_set(TROOP_ENOMEM, "out of memory for row buffers");
	cancelled = atomic_load(&j.cancel) != 0;
	if (cancelled)
		return troop_error_set(TROOP_ERR, "cancelled");
	if (progress)
		progress(arg, total, total);
	return 0;
}

int poh_reference_row(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n,
    unsigned rounds, size_t row)
{
	int8_t *b = malloc(n * n), *a = malloc(n);
	int32_t *c = malloc(n * sizeof(*c));

	if (!a || !b || !c) {
		free(a);
		free(b);
		free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	poh_gen_b(b, seed, n);
	poh_gen_a_rows(a, seed, n, row, 1);
	for (unsigned r = 0; r < rounds; r++) {
		for (size_t j = 0; j < n; j++) {
			int64_t s = 0;    /* wider than needed: checks int32 never overflows */
			for (size_t k = 0; k < n; k++)
				s += (int64_t)a[k] * (int64_t)b[k * n + j];
			c[j] = (int32_t)s;
		}
		for (size_t j = 0; j < n; j++)
			a[j] = poh_map(c[j]);
	}
	memcpy(out, a, n);
	free(a);
	free(b);
	free(c);
	return 0;
}

/* ---- Merkle tree ---------------------------------------------------------------- */

struct poh_tree {
	size_t n;                          /* leaves */
	size_t levels;                     /* level 0 = leaves, levels-1 = root */
	size_t off[POH_PATH_MAX + 2];      /* first node of each level, in hashes */
	size_t cnt[POH_PATH_MAX + 2];      /* nodes in each level */
	uint8_t *h;                        /* all nodes, POH_HASH_LEN bytes each */
};

void poh_leaf_hash(uint8_t out[POH_HASH_LEN], uint32_t index, const int8_t *row,
    size_t row_len)
{
	crypto_generichash_state st;
	uint8_t hdr[5] = { 0x00, (uint8_t)index, (uint8_t)(index >> 8), (uint8_t)(index >> 16),
	    (uint8_t)(index >> 24) };

	crypto_generichash_init(&st, NULL, 0, POH_HASH_LEN);
	crypto_generichash_update(&st, hdr, sizeof(hdr));
	crypto_generichash_update(&st, (const uint8_t *)row, row_len);
	crypto_generichash_final(&st, out, POH_HASH_LEN);
}

static void node_hash(uint8_t out[POH_HASH_LEN], const uint8_t *left, const uint8_t *right)
{
	crypto_generichash_state st;
	const uint8_t tag = 0x01;

	crypto_generichash_init(&st, NULL, 0, POH_HASH_LEN);
	crypto_generichash_update(&st, &tag, 1);
	crypto_generichash_update(&st, left, POH_HASH_LEN);
	crypto_generichash_update(&st, right, POH_HASH_LEN);
	crypto_generichash_final(&st, out, POH_HASH_LEN);
}

struct leaf_arg {
	poh_tree *t;
	const int8_t *rows;
	size_t row_len;
};

static void leaf_part(void *p, int index, int count)
{
	struct leaf_arg *a = p;
	size_t n = a->t->n;
	size_t from = n * (size_t)index / (size_t)count, to = n * (size_t)(index + 1) / (size_t)count;

	for (size_t i = from; i < to; i++)
		poh_leaf_hash(a->t->h + i * POH_HASH_LEN, (uint32_t)i, a->rows + i * a->row_len,
		    a->row_len);
}

int poh_tree_build(poh_tree **out, const int8_t *rows, size_t n_rows, size_t row_len,
    int threads)
{
	poh_tree *t;
	size_t total = 0, m;

	*out = NULL;
	if (n_rows == 0 || n_rows > POH_N_MAX)
		return troop_error_set(TROOP_EINVAL, "a tree needs 1 to %d leaves, got %zu",
		    POH_N_MAX, n_rows);
	t = calloc(1, sizeof(*t));
	if (!t)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	t->n = n_rows;
	for (m = n_rows;; m = (m + 1) / 2) {
		t->off[t->levels] = total;
		t->cnt[t->levels] = m;
		t->levels++;
		total += m;
		if (m == 1)
			break;
	}
	t->h = malloc(total * POH_HASH_LEN);
	if (!t->h) {
		free(t);
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	if (threads <= 0)
		threads = poh_cpu_count();
	if (n_rows * row_len < (1u << 20))
		threads = 1;
	{
		struct leaf_arg a = { t, rows, row_len };
		par_run(threads, leaf_part, &a);
	}
	for (size_t l = 1; l < t->levels; l++) {
		const uint8_t *below = t->h + t->off[l - 1] * POH_HASH_LEN;
		uint8_t *here = t->h + t->off[l] * POH_HASH_LEN;
		size_t bn = t->cnt[l - 1];
		for (size_t p = 0; p + 1 < bn; p += 2)
			node_hash(here + (p / 2) * POH_HASH_LEN, below + p * POH_HASH_LEN,
			    below + (p + 1) * POH_HASH_LEN);
		if (bn % 2 == 1)    /* odd: the last node moves up unchanged */
			memcpy(here + (bn / 2) * POH_HASH_LEN, below + (bn - 1) * POH_HASH_LEN,
			    POH_HASH_LEN);
	}
	*out = t;
	return 0;
}

void poh_tree_free(poh_tree *t)
{
	if (!t)
		return;
	free(t->h);
	free(t);
}

const uint8_t *poh_tree_root(const poh_tree *t)
{
	return t->h + t->off[t->levels - 1] * POH_HASH_LEN;
}

size_t poh_path_len(size_t n_leaves, size_t index)
{
	size_t len = 0, p = index;

	for (size_t m = n_leaves; m > 1; m = (m + 1) / 2, p /= 2)
		if ((p ^ 1) < m)
			len++;
	return len;
}

int poh_tree_path(uint8_t *out, size_t cap_hashes, size_t *len, const poh_tree *t,
    size_t index)
{
	size_t need, k = 0, p = index;

	*len = 0;
	if (index >= t->n)
		return troop_error_set(TROOP_EINVAL, "leaf %zu is out of range (%zu leaves)", index,
		    t->n);
	need = poh_path_len(t->n, index);
	if (need > cap_hashes)
		return troop_error_set(TROOP_ETOOLARGE, "a path of %zu hashes does not fit in %zu",
		    need, cap_hashes);
	for (size_t l = 0; l + 1 < t->levels; l++, p /= 2) {
		size_t sib = p ^ 1;
		if (sib < t->cnt[l])
			memcpy(out + (k++) * POH_HASH_LEN, t->h + (t->off[l] + sib) * POH_HASH_LEN,
			    POH_HASH_LEN);
	}
	*len = k;
	return 0;
}

int poh_path_verify(const uint8_t root[POH_HASH_LEN], size_t n_leaves, size_t index,
    const uint8_t leaf[POH_HASH_LEN], const uint8_t *path, size_t path_len)
{
	uint8_t cur[POH_HASH_LEN];
	size_t k = 0, p = index;

	if (n_leaves == 0 || index >= n_leaves)
		return troop_error_set(TROOP_EINVAL, "leaf %zu is out of range (%zu leaves)", index,
		    n_leaves);
	if (path_len != poh_path_len(n_leaves, index))
		return troop_error_set(TROOP_EINVAL, "the path of row %zu must have %zu hashes, "
		    "got %zu", index, poh_path_len(n_leaves, index), path_len);
	memcpy(cur, leaf, POH_HASH_LEN);
	for (size_t m = n_leaves; m > 1; m = (m + 1) / 2, p /= 2) {
		size_t sib = p ^ 1;
		if (sib >= m)
			continue;     /* promoted: no sibling at this level */
		if (p & 1)
			node_hash(cur, path + k * POH_HASH_LEN, cur);
		else
			node_hash(cur, cur, path + k * POH_HASH_LEN);
		k++;
	}
	if (sodium_memcmp(cur, root, POH_HASH_LEN) != 0)
		return troop_error_set(TROOP_EFORBIDDEN, "the Merkle path of row %zu does not lead "
		    "to the committed root", index);
	return 0;
}
