/*
 * poh_state.h - the coordinator's proof-of-hardware state (DESIGN.md
 * section 9, docs/PROTOCOL-POH.md): its configuration, the challenge
 * record kept in the registry between the three calls, the clock that
 * times a node, row sampling and the multiplier.
 *
 * A challenge lives in the registry's key/value store (shared by every
 * coordinator of a network when the registry is Redis):
 *   poh:c:<id>   issued, waiting for /hardware/verify (one-shot)
 *   poh:r:<id>   verified root and sampled rows, waiting for the reveal
 *                (one-shot)
 *   poh:u:<id>, poh:v:<id>   tombstones: verify / reveal already used
 *   poh:rl:<node>            the node's rate-limit window
 * The record is JSON text (poh_challenge_encode).
 *
 * Time: the coordinator times a node from issuing its challenge to
 * receiving its root.  Both instants are taken on the coordinator: with a
 * monotonic clock when the same process issued and verified it, else with
 * the wall clock (several coordinators behind one Redis).
 *
 * All functions are thread-safe.
 */
#ifndef TROOP_POH_STATE_H
#define TROOP_POH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "poh.h"

struct config;

#define POH_CHALLENGE_ID_BYTES 16
#define POH_CHALLENGE_ID_MAX 64
#define POH_INSTANCE_LEN 32   /* hex chars of the process's random instance id */

typedef struct {
	size_t gpu_n;              /* challenge class "gpu" */
	unsigned gpu_rounds;
	size_t cpu_n;              /* challenge class "cpu" */
	unsigned cpu_rounds;
	unsigned samples;          /* k: rows asked for in the reveal */
	double reference_ops;      /* ops/s of the reference GPU: multiplier 1.0 */
	int64_t rate_limit_s;      /* one challenge per node per this; 0: no limit */
	int64_t challenge_ttl_s;   /* issue -> verify and verify -> reveal, each */
	int verify_threads;        /* threads recomputing the sampled rows, per check */
	int pool_workers;          /* checks run at once, off the request threads */
	int pool_queue;            /* checks waiting beyond those; more get 429 */
	int64_t min_node_age_s;    /* a node heartbeats this long before a challenge */
	int64_t owner_limit;       /* challenges per owner account per rate_limit_s; 0: any */
	int64_t address_limit;     /* challenges per source address per rate_limit_s; 0: any */
} poh_config;

/* Below this many rounds the verifier's fixed cost (generating and
 * transposing B, 2*n*n bytes) outweighs k rows and the check costs more
 * than 2k/n of the worker's work (bench/bench_poh.sh); allowed, with a
 * warning at start. */
#define POH_ROUNDS_ADVISED 8

#define POH_MULTIPLIER_MIN 0.01
#define POH_MULTIPLIER_MAX 20.0

/* Read the --poh-* options from `cfg` (declared in coordinator.c) and
 * check them: both classes valid (poh_params_check), 1 <= samples <=
 * min(POH_K_MAX, n), a reveal of that size fits in `max_body` bytes,
 * reference_ops > 0.  Returns 0 or TROOP_EINVAL naming the flag. */
int poh_config_load(poh_config *out, const struct config *cfg, size_t max_body);

/* Multiply-adds the coordinator spends to check one reveal of class n,
 * rounds: samples * rounds * n * n. */
double poh_verify_cost(const poh_config *pc, size_t n, unsigned rounds);

typedef struct {
	char id[POH_CHALLENGE_ID_MAX + 1];
	char node[TROOP_ID_LEN + 1];
	uint8_t seed[POH_SEED_LEN];
	size_t n;
	unsigned rounds;
	unsigned samples;
	int64_t issued_ms;             /* wall clock, ms */
	int64_t issued_mono_ms;        /* monotonic clock of the issuing process */
	char instance[POH_INSTANCE_LEN + 1];
	/* after /hardware/verify */
	bool has_root;
	uint8_t root[POH_HASH_LEN];
	int64_t elapsed_ms;
	int64_t deadline_ms;           /* wall clock: reveal must come before */
	uint32_t rows[POH_K_MAX];      /* sampled row indexes, ascending */
	size_t n_rows;
} poh_challenge;

/* A new challenge for `node`: random id and seed, issue times now. */
void poh_challenge_init(poh_challenge *c, const char *node, size_t n, unsigned rounds,
    unsigned samples);

/* JSON text of the record (malloc'd, NUL-terminated, *len its length).
 * Returns 0 or TROOP_ENOMEM. */
int poh_challenge_encode(char **out, size_t *len, const poh_challenge *c);

/* Parse a record made by poh_challenge_encode.  0 or TROOP_EINVAL. */
int poh_challenge_decode(poh_challenge *out, const char *buf, size_t len);

/* Clocks, in milliseconds. */
int64_t poh_wall_ms(void);
int64_t poh_mono_ms(void);

/* This process's random instance id (hex), fixed for its lifetime. */
const char *poh_instance(void);

/* Milliseconds from the challenge's issue to (now_ms, now_mono_ms), on the
 * monotonic clock when this process issued it; at least 1. */
int64_t poh_elapsed_ms(const poh_challenge *c, int64_t now_ms, int64_t now_mono_ms);

/* Fill c->rows with c->samples distinct uniformly random indexes below
 * c->n (randombytes_uniform), sorted. */
void poh_sample_rows(poh_challenge *c);

/* (ops / elapsed seconds) / reference_ops, clamped to
 * [POH_MULTIPLIER_MIN, POH_MULTIPLIER_MAX]. */
double poh_multiplier(double ops, int64_t elapsed_ms, double reference_ops);

#endif
