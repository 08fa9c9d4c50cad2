/*
 * gpu.h - what GPUs this machine has, how busy they are, and whether the
 * owner is using them (DESIGN.md section 8, "GPU idle detection").
 *
 * Sources, tried in order on every probe:
 *   1. NVML, loaded at run time with dlopen("libnvidia-ml.so.1") (the path
 *      can be overridden with $TROOP_NVML_LIB, used by the tests).  There
 *      is no build-time dependency on nvml.h or the CUDA toolkit.
 *   2. `nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total,name
 *      --format=csv,noheader,nounits`, run from $PATH without a shell.
 *   3. Neither: a CPU-only node (source "none", count 0).
 *
 * On top of the samples sits the donate policy: with `--donate idle` (the
 * default) a node whose GPU is in use by its owner heartbeats BUSY; with
 * `--donate always` it never does.  The policy is a pure function over a
 * small state (gpu_policy_step), so it is tested without any GPU; the
 * gpu_sampler wraps probe + policy for the heartbeat loop.
 */
#ifndef TROOP_GPU_H
#define TROOP_GPU_H

#include <stdbool.h>
#include <stddef.h>

#define GPU_MAX 16          /* devices described per probe; more are counted only */
#define GPU_NAME_MAX 96     /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
#define GPU_BUSY_THRESHOLD_DEFAULT 30  /* percent */
#define GPU_BUSY_SAMPLES 2  /* high samples in a row, with no troop job, to go BUSY */
#define GPU_SMI_TIMEOUT_MS 5000        /* nvidia-smi can be slow to start */
#define GPU_SMI_OUTPUT_MAX (64 * 1024)

/* One device.  Unknown values (NVML "not supported", nvidia-smi "[N/A]")
 * are -1. */
typedef struct gpu_device {
	char name[GPU_NAME_MAX];
	long vram_total_mb;
	long vram_used_mb;
	long vram_free_mb;
	int util_percent;   /* 0..100, or -1 */
} gpu_device;

/* One probe of the whole machine. */
typedef struct gpu_info {
	int count;            /* GPUs present (may exceed GPU_MAX) */
	int ndevices;         /* entries filled in devices[]: min(count, GPU_MAX) */
	char name[GPU_NAME_MAX];  /* devices[0].name, "" when count is 0 */
	/* Totals over devices[] whose value is known; -1 if GPUs exist but no
	 * device reported the value; 0 when count is 0. */
	long vram_total_mb;
	long vram_free_mb;
	int util_percent;     /* max over devices[]; -1 unknown (or no GPU) */
	const char *source;   /* "nvml", "nvidia-smi" or "none"; static string */
	gpu_device devices[GPU_MAX];
} gpu_info;

/* ---- probing ------------------------------------------------------------ */

/* Fill *out from the first source that answers (NVML, nvidia-smi, none).
 * Always returns 0: a machine without a usable GPU source is a CPU-only
 * node (out->source "none", count 0), not an error; why each source was
 * passed over is logged at debug level.  Blocks for at most about
 * GPU_SMI_TIMEOUT_MS.  Thread-safe apart from NVML's own global state
 * (NVML init/shutdown are reference counted by the library). */
int gpu_probe(gpu_info *out);

/* NVML only, from the library at `libpath` (NULL: $TROOP_NVML_LIB, else
 * "libnvidia-ml.so.1").  Returns 0, TROOP_ENOTFOUND (library or required
 * symbols missing) or TROOP_EUNAVAIL (nvmlInit or the device count
 * failed, e.g. no driver), message set.  Per-device failures leave that
 * device's fields at -1. */
int gpu_probe_nvml(gpu_info *out, const char *libpath);

/* nvidia-smi only (looked up on $PATH).  Returns 0, TROOP_ENOTFOUND (not
 * installed), TROOP_ETIMEOUT, TROOP_EUNAVAIL (non-zero exit: no driver, no
 * device), TROOP_ETOOLARGE or TROOP_EINVAL (output not understood),
 * message set. */
int gpu_probe_smi(gpu_info *out);

/* Parse the CSV printed by the nvidia-smi query above: one line per GPU,
 * "util, used MiB, total MiB, name", values possibly "[N/A]",
 * "[Not Supported]" or any other "[...]" (unknown, -1).  The name is the
 * rest of the line, so a comma inside it is kept.  Blank lines are
 * skipped; any other malformed line fails the whole parse.  `text` need
 * not be NUL-terminated.  Returns 0 (out->source "nvidia-smi") or
 * TROOP_EINVAL naming the line.  Pure; thread-safe. */
int gpu_parse_smi_csv(gpu_info *out, const char *text, size_t len);

/* Reset *out to "no GPU": count 0, source "none", util -1. */
void gpu_info_init_none(gpu_info *out);

/* Recompute the summary fields (name, totals, max utilisation) from
 * out->devices[0..ndevices-1].  Used by the sources; exposed for tests. */
void gpu_info_summarize(gpu_info *out);

/* ---- donate policy ------------------------------------------------------ */

typedef enum {
	GPU_DONATE_IDLE = 0,  /* donate only while the owner is not using the GPU */
	GPU_DONATE_ALWAYS,    /* donate regardless of owner use */
} gpu_donate_mode;

typedef struct gpu_policy {
	gpu_donate_mode donate;
	int busy_threshold;   /* percent, 1..100 */
} gpu_policy;

/* Policy state; zero-initialise (idle, no streak). */
typedef struct gpu_policy_state {
	bool busy;
	int high_streak;      /* consecutive owner-use samples so far */
} gpu_policy_state;

/* Parse "idle" / "always" for --donate.  Returns 0 or TROOP_EINVAL with a
 * message naming --donate. */
int gpu_parse_donate(gpu_donate_mode *out, const char *s);

/* Check a --busy-threshold value (1..100).  Returns 0 or TROOP_EINVAL
 * naming the flag. */
int gpu_check_threshold(long percent);

/* Feed one sample to the policy and return whether the node is BUSY
 * (owner using the GPU) afterwards.  The hysteresis is exactly:
 *   - donate ALWAYS: never busy; the streak stays 0.
 *   - util_percent < threshold, or unknown (-1): the GPU is idle, or we
 *     cannot see owner use; not busy, streak 0.  One low sample is enough
 *     to leave BUSY.
 *   - util_percent >= threshold while active_jobs > 0: the load may be
 *     ours, so it is no evidence of owner use; streak 0, busy unchanged
 *     (an already-BUSY node stays BUSY until a low sample).
 *   - util_percent >= threshold with active_jobs == 0: streak + 1; once it
 *     reaches GPU_BUSY_SAMPLES (2), busy.  Two in a row are required so a
 *     single sample still averaging the tail of a just-finished troop job
 *     does not flip the node.
 * A threshold outside 1..100 is clamped.  Pure; thread-safe on distinct
 * states. */
bool gpu_policy_step(gpu_policy_state *st, const gpu_policy *p,
    int util_percent, int active_jobs);

/* ---- sampler ------------------------------------------------------------ */

typedef struct gpu_sampler gpu_sampler;

/* New sampler with policy `p` (copied).  NVML, when present, is opened
 * once and kept loaded between samples.  Returns 0, TROOP_EINVAL (bad
 * policy, message set) or TROOP_ENOMEM. */
int gpu_sampler_new(gpu_sampler **out, const gpu_policy *p);

/* Take one sample and step the policy.  active_jobs: troop jobs running on
 * this worker right now.  *info (may be NULL) receives the sample; the
 * return value is whether the node is BUSY.  Blocks for at most about
 * GPU_SMI_TIMEOUT_MS (nvidia-smi); call it from the heartbeat thread, not
 * from an event loop that serves requests.  Not thread-safe: one thread
 * per sampler. */
bool gpu_sampler_sample(gpu_sampler *s, int active_jobs, gpu_info *info);

/* The BUSY state after the last sample (false before the first). */
bool gpu_sampler_busy(const gpu_sampler *s);

/* The last sample taken (count 0, source "none" before the first).  The
 * pointer lives as long as the sampler. */
const gpu_info *gpu_sampler_last(const gpu_sampler *s);

/* Free; NULL is fine.  Shuts NVML down if the sampler opened it. */
void gpu_sampler_free(gpu_sampler *s);

/* ---- NVML session (used by gpu_probe and the sampler) ------------------- */

typedef struct gpu_nvml gpu_nvml;

/* dlopen NVML (libpath as for gpu_probe_nvml), resolve its symbols
 * (versioned first: nvmlInit_v2, nvmlDeviceGetCount_v2,
 * nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetMemoryInfo_v2; then the v1
 * names) and call nvmlInit.  Returns 0, TROOP_ENOTFOUND, TROOP_EUNAVAIL or
 * TROOP_ENOMEM, message set. */
int gpu_nvml_open(gpu_nvml **out, const char *libpath);

/* Query every device into *out (source "nvml").  Returns 0 or
 * TROOP_EUNAVAIL when the device count cannot be read.  Not thread-safe
 * per session. */
int gpu_nvml_query(gpu_nvml *n, gpu_info *out);

/* nvmlShutdown and dlclose; NULL is fine. */
void gpu_nvml_close(gpu_nvml *n);

#endif
