/*
 * poh_worker.h - the worker's side of proof-of-hardware (DESIGN.md
 * section 9, docs/PROTOCOL-POH.md): a compute engine (GPU through cuBLAS
 * when it loads and passes its self-test, else the CPU kernels), and the
 * three signed calls challenge -> verify -> reveal.
 *
 * How the worker agent uses it:
 *   - at first registration (after its first heartbeat: the coordinator
 *     only challenges nodes it knows), every --reverify hours (default 24),
 *     and when the GPU changes, call poh_run_challenge from a thread that
 *     may block for the challenge's duration (seconds; never the proxy's
 *     event loop).  Keep one poh_engine open across calls (it remembers
 *     what the GPU has earned: device or host mapping, or the CPU) and
 *     poh_engine_release it after each, or pass engine = NULL to open one
 *     per call.
 *   - a 429 (TROOP_ERATE) means the coordinator's per-node window (default
 *     one challenge per 10 minutes) has not passed: retry later.
 *   - `troop worker --benchmark` is poh_benchmark_main (or, when the worker
 *     has parsed its own flags, poh_benchmark_run).
 *
 * Threading: a poh_engine is used by one thread at a time.  The other
 * functions are thread-safe given distinct arguments.
 */
#ifndef TROOP_POH_WORKER_H
#define TROOP_POH_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_client.h"
#include "identity.h"
#include "poh.h"
#include "poh_cuda.h"

/* ---- the compute engine ----------------------------------------------------------- */

typedef enum {
	POH_DEVICE_AUTO = 0,   /* GPU if usable, else CPU */
	POH_DEVICE_CPU,
	POH_DEVICE_GPU,        /* GPU or fail */
} poh_device;

/* Parse "auto", "cpu", "gpu".  0 or TROOP_EINVAL. */
int poh_device_parse(poh_device *out, const char *s);

typedef struct {
	poh_device device;
	int threads;                    /* CPU threads; 0: one per online core */
	int gpu_index;                  /* CUDA device ordinal */
	const poh_cuda_libs *cuda_libs; /* NULL: default library names */
	const poh_cuda_api *cuda_api;   /* tests: entry points instead of the libraries */
} poh_engine_opts;

typedef struct poh_engine poh_engine;

/* Open an engine.  With POH_DEVICE_AUTO a GPU that cannot be used (no
 * library, no device, failed self-test) is logged once and the CPU is
 * used; with POH_DEVICE_GPU that is TROOP_EUNAVAIL.  Returns 0 and *out
 * (free with poh_engine_close), TROOP_EUNAVAIL or TROOP_ENOMEM. */
int poh_engine_open(poh_engine **out, const poh_engine_opts *o);
void poh_engine_close(poh_engine *e);

/* Give the GPU back between challenges (cuBLAS unloaded, the device's
 * context released); the next poh_engine_compute opens it again, at the
 * mapping it had earned.  A CPU engine: nothing to do. */
void poh_engine_release(poh_engine *e);

/* Whether challenges run on a GPU. */
bool poh_engine_is_gpu(const poh_engine *e);

/* "cuda: NVIDIA H100 (device mapping)" or "cpu: avx2, 8 threads".  Owned by e. */
const char *poh_engine_describe(const poh_engine *e);

/* A computed challenge: every final row and the Merkle tree over them. */
typedef struct {
	int8_t *rows;          /* n*n bytes, row-major */
	size_t n;
	unsigned rounds;
	poh_tree *tree;
	double compute_s;      /* local wall time: generation, rounds, tree */
	bool used_gpu;
} poh_computed;

/* Compute the challenge (seed, n, rounds) on the engine.  A GPU that
 * fails mid-way is logged, dropped for the rest of the process, and the
 * CPU computes instead.  progress may be NULL.  Returns 0 and *out (free
 * with poh_computed_clear), TROOP_EINVAL (bad parameters), TROOP_ENOMEM,
 * TROOP_ERR (cancelled). */
int poh_engine_compute(poh_computed *out, poh_engine *e, const uint8_t seed[POH_SEED_LEN],
    size_t n, unsigned rounds, poh_progress_fn progress, void *arg);
void poh_computed_clear(poh_computed *c);

/* For rows computed on the GPU: recompute two of the `asked` rows on the
 * CPU and compare (poh_run_challenge does it after the root is sent, off
 * the coordinator's clock, before revealing).  A mismatch is logged, the
 * engine steps down (device mapping -> host mapping -> CPU) for later
 * challenges, and TROOP_ERR is returned.  0 for CPU rows (nothing to do). */
int poh_engine_check(poh_engine *e, const uint8_t seed[POH_SEED_LEN],
    const poh_computed *pc, const uint32_t *asked, size_t n_asked);

/* ---- the protocol ------------------------------------------------------------------- */

typedef enum {
	POH_PROGRESS_AUTO = 0,   /* a bar when stderr is a terminal, else log lines */
	POH_PROGRESS_BAR,
	POH_PROGRESS_LOG,
	POH_PROGRESS_NONE,
} poh_progress_mode;

typedef struct {
	const char *coordinator;       /* base URL, "http://100.64.0.1:8420" */
	const troop_identity *id;      /* the node's identity: signs the calls */
	http_client *http;             /* the caller's blocking client */
	poh_engine *engine;            /* NULL: open one for this call from the fields below */
	poh_engine_opts engine_opts;   /* used when engine is NULL */
	poh_progress_mode progress;
	const char *challenge_class;   /* "gpu" or "cpu"; NULL: by the engine */
	/* Non-NULL: another thread sets *cancel to non-zero to stop the
	 * exchange; the computation checks it about every 100 ms (and after
	 * every round of a row block) and poh_run_challenge then returns
	 * TROOP_ERR, "cancelled", without calling the coordinator again. */
	const atomic_int *cancel;
} poh_run_opts;

typedef struct {
	bool verified;             /* the coordinator accepted the proof */
	double multiplier;         /* the multiplier it recorded (when verified) */
	double ops_per_s;          /* ops / coordinator-measured time */
	int64_t elapsed_ms;        /* the coordinator's clock: challenge to verify */
	double compute_s;          /* this side's compute time */
	size_t n;
	unsigned rounds;
	size_t samples;            /* rows the coordinator asked for */
	int http_status;           /* status of the last call (0: none answered) */
	char challenge_id[65];
	char device[160];          /* poh_engine_describe */
	char message[512];         /* why it failed, or "verified" */
} poh_result;

/* Run one challenge against opts->coordinator: POST /hardware/challenge,
 * compute, POST /hardware/verify with the Merkle root, POST
 * /hardware/reveal with the sampled rows and their paths.  Blocks for the
 * whole exchange.  Returns 0 when the coordinator verified the proof
 * (out->verified, multiplier set), or a negative troop_err with
 * out->message (also troop_error_msg): TROOP_ERATE (429: too soon),
 * TROOP_ENOTFOUND (node unknown: heartbeat first), TROOP_EFORBIDDEN (proof
 * rejected), TROOP_EGONE (the challenge expired before verify),
 * TROOP_EAUTH, TROOP_EUPSTREAM / TROOP_ETIMEOUT (transport), TROOP_EINVAL
 * (the coordinator sent something malformed), TROOP_ERR ("cancelled": see
 * opts->cancel).  *out is always filled.  Logs nothing about the outcome:
 * the caller reports it once. */
int poh_run_challenge(poh_result *out, const poh_run_opts *opts);

/* `troop worker --benchmark`: run one challenge and print the result (a
 * table, or JSON with --json).  opts as for poh_run_challenge.  Returns
 * the exit code: 0 verified, 1 otherwise. */
int poh_benchmark_run(const poh_run_opts *opts, bool json);

/* The same from a command line: argv[0] is the command name; accepts
 * --benchmark (ignored, so that `troop worker`'s argv can be passed on),
 * --coordinator URL, --identity FILE, --device auto|cpu|gpu, --threads N,
 * --gpu N, --class cpu|gpu, --json, --log-level, --help.  Returns the exit
 * code (2 on bad usage). */
int poh_benchmark_main(int argc, char **argv);

#endif
