/*
 * poh.h - the shared math of proof-of-hardware `int8-gemm-chain-v1`
 * (DESIGN.md section 9, docs/PROTOCOL-POH.md), used by the worker that
 * computes a challenge and by the coordinator that spot-checks it.
 *
 * A challenge is (seed, n, rounds).  A and B are n x n int8 matrices taken
 * from the ChaCha20 (IETF, 12 zero nonce bytes, counter 0) key stream of
 * the seed: A is bytes [0, n*n), B bytes [n*n, 2*n*n), both row-major, each
 * byte read as a two's-complement int8.  Each round computes C = A x B
 * exactly (int8 x int8 products summed in int32) and maps every C value to
 * the next A with poh_map.  Row i of round r+1 depends only on row i of
 * round r and B, so a verifier recomputes one row for rounds*n*n
 * multiply-adds while the worker does n times that.  The final rows are
 * the leaves of a BLAKE2b-256 Merkle tree:
 *   leaf(i) = BLAKE2b-256(0x00 || u32le(i) || row_i)
 *   node    = BLAKE2b-256(0x01 || left || right)
 * and a level with an odd number of nodes promotes its last node unchanged.
 *
 * The CPU path (poh_compute_rows) runs vectorised kernels (generic SSE2,
 * AVX2, AVX-512 VNNI, picked at run time) on a pool of threads, one block
 * of up to 16 rows at a time through every round: no synchronisation
 * between rounds at all.
 *
 * Errors are 0 or a negative troop_err (error.h) with a message.  Every
 * function is thread-safe unless it says otherwise; a poh_ctx and a
 * poh_tree are immutable after creation and may be shared by threads.
 */
#ifndef TROOP_POH_H
#define TROOP_POH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POH_ALGORITHM "int8-gemm-chain-v1"
#define POH_SEED_LEN 32
#define POH_HASH_LEN 32

/* Parameter limits (what a worker accepts from a coordinator, too). */
#define POH_N_MIN 16
#define POH_N_MAX 16384
#define POH_N_ALIGN 16      /* n must be a multiple of this */
#define POH_ROUNDS_MIN 1
#define POH_ROUNDS_MAX 4096
#define POH_K_MAX 256       /* most rows a verifier samples */
#define POH_PATH_MAX 32     /* most hashes in a Merkle path (log2 of POH_N_MAX + 1) */

/* The round mapping from an exact int32 product back to int8: bits 7..14
 * of the two's-complement value, read as int8.  The low 7 bits feed the
 * carries into these bits, so nothing can be skipped; the value spread of
 * a sum of n products (sigma ~ 5461 * sqrt(n) >= 2^14 for n >= 16) keeps
 * the result close to uniform. */
static inline int8_t poh_map(int32_t c)
{
	return (int8_t)(uint8_t)(((uint32_t)c >> 7) & 0xffu);
}

/* Check challenge parameters: n a multiple of POH_N_ALIGN in
 * [POH_N_MIN, POH_N_MAX], rounds in [POH_ROUNDS_MIN, POH_ROUNDS_MAX].
 * Returns 0 or TROOP_EINVAL naming the field ("matrix_size", "rounds"). */
int poh_params_check(size_t n, unsigned rounds);

/* Operations a challenge counts: 2 * n^3 * rounds (one multiply and one
 * add per product). */
double poh_ops(size_t n, unsigned rounds);

/* ---- the matrices ------------------------------------------------------------ */

/* Write `len` bytes of the seed's key stream starting at byte `offset`
 * (any offset; the counter limit of 2^32 blocks is far beyond 2*POH_N_MAX^2). */
void poh_stream(uint8_t *out, const uint8_t seed[POH_SEED_LEN], uint64_t offset, size_t len);

/* Rows row0 .. row0+count-1 of A (count*n bytes) into out. */
void poh_gen_a_rows(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n, size_t row0,
    size_t count);

/* B, row-major (n*n bytes), into out. */
void poh_gen_b(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n);

/* All of A (n*n bytes) into out, on `threads` threads (0: one per core). */
void poh_gen_a(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n, int threads);

/* out[i] = poh_map(c[i]) for i < count, on `threads` threads (0: one per
 * core); for devices that leave the mapping to the host. */
void poh_map_buffer(int8_t *out, const int32_t *c, size_t count, int threads);

/* A prepared challenge: the parameters and B transposed (the kernels read
 * columns of B as contiguous rows). */
typedef struct poh_ctx poh_ctx;

/* Check the parameters, generate B with `threads` threads (0: one per
 * online core) and transpose it.  Memory: n*n bytes.  Returns 0 and *out
 * (free with poh_ctx_free), TROOP_EINVAL (bad parameters) or TROOP_ENOMEM. */
int poh_ctx_new(poh_ctx **out, const uint8_t seed[POH_SEED_LEN], size_t n, unsigned rounds,
    int threads);
void poh_ctx_free(poh_ctx *ctx);

size_t poh_ctx_n(const poh_ctx *ctx);
unsigned poh_ctx_rounds(const poh_ctx *ctx);
const uint8_t *poh_ctx_seed(const poh_ctx *ctx);
/* B transposed: element (j, k) at [j*n + k] is B[k][j].  Owned by ctx. */
const int8_t *poh_ctx_bt(const poh_ctx *ctx);

/* ---- computing rows ------------------------------------------------------------ */

/* Progress: `done` of `total` row-rounds are finished.  Called on the
 * thread that called poh_compute_rows, about every 100 ms and once at the
 * end.  Return non-zero to cancel (the computation then fails with
 * TROOP_ERR, "cancelled"). */
typedef int (*poh_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Compute the final (after all rounds) rows `rows[0..count-1]` into out
 * (row rows[i] at out + i*n); rows NULL means rows 0 .. count-1.  Indexes
 * must be < n.  `threads` (0: one per online core) share the work in
 * blocks of 4 to 16 rows; progress may be NULL.  Returns 0, TROOP_EINVAL (bad
 * index), TROOP_ENOMEM, or TROOP_ERR when cancelled. */
int poh_compute_rows(int8_t *out, const poh_ctx *ctx, const uint32_t *rows, size_t count,
    int threads, poh_progress_fn progress, void *arg);

/* The textbook computation, one row at a time with a plain triple loop
 * over the untransposed B: for tests and for anyone checking the kernels.
 * Slow; out gets the final row `row` (n bytes).  0 or TROOP_ENOMEM. */
int poh_reference_row(int8_t *out, const uint8_t seed[POH_SEED_LEN], size_t n,
    unsigned rounds, size_t row);

/* The CPU kernel in use: "avx512-vnni", "avx2" or "generic". */
const char *poh_cpu_kernel(void);

/* Pick a kernel by name (NULL: the best this CPU supports).  For tests and
 * benchmarks; not thread-safe with computations in flight.  Returns 0,
 * TROOP_EINVAL (unknown name) or TROOP_EUNAVAIL (CPU lacks it). */
int poh_cpu_kernel_select(const char *name);

/* Number of online cores (>= 1). */
int poh_cpu_count(void);

/* ---- Merkle tree --------------------------------------------------------------- */

/* leaf(i) = BLAKE2b-256(0x00 || u32le(i) || row). */
void poh_leaf_hash(uint8_t out[POH_HASH_LEN], uint32_t index, const int8_t *row,
    size_t row_len);

typedef struct poh_tree poh_tree;

/* Build the tree over n_rows rows of row_len bytes (rows back to back),
 * hashing leaves on `threads` threads (0: one per core).  Returns 0 and
 * *out (free with poh_tree_free), TROOP_EINVAL (no rows, or more than
 * POH_N_MAX) or TROOP_ENOMEM. */
int poh_tree_build(poh_tree **out, const int8_t *rows, size_t n_rows, size_t row_len,
    int threads);
void poh_tree_free(poh_tree *t);

/* The root (POH_HASH_LEN bytes), owned by the tree. */
const uint8_t *poh_tree_root(const poh_tree *t);

/* Number of sibling hashes in the path of leaf `index` of a tree of
 * n_leaves leaves (levels where the node is a promoted last node have no
 * sibling).  0 for a one-leaf tree. */
size_t poh_path_len(size_t n_leaves, size_t index);

/* The path of leaf `index`, leaf level first: poh_path_len hashes of
 * POH_HASH_LEN bytes into out (cap_hashes of room); *len gets the count.
 * TROOP_EINVAL for a bad index, TROOP_ETOOLARGE when it does not fit. */
int poh_tree_path(uint8_t *out, size_t cap_hashes, size_t *len, const poh_tree *t,
    size_t index);

/* Check that `leaf` at `index` with `path` (path_len hashes, leaf level
 * first) leads to `root` in a tree of n_leaves leaves.  Returns 0,
 * TROOP_EINVAL (index out of range, or path_len is not the expected
 * length) or TROOP_EFORBIDDEN (the hashes do not lead to the root). */
int poh_path_verify(const uint8_t root[POH_HASH_LEN], size_t n_leaves, size_t index,
    const uint8_t leaf[POH_HASH_LEN], const uint8_t *path, size_t path_len);

#endif
