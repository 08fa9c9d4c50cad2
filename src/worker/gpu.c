/*
 * gpu.c - the probe chain (NVML, nvidia-smi, none), the summary of a
 * probe, and the donate policy with its sampler.  The two sources live in
 * gpu_nvml.c and gpu_smi.c; see gpu.h for the contract.
 */
#include "gpu.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "log.h"

/* ---- gpu_info ------------------------------------------------------------ */

void gpu_info_init_none(gpu_info *out)
{
	memset(out, 0, sizeof(*out));
	out->util_percent = -1;
	out->source = "none";
	for (int i = 0; i < GPU_MAX; i++) {
		out->devices[i].vram_total_mb = -1;
		out->devices[i].vram_used_mb = -1;
		out->devices[i].vram_free_mb = -1;
		out->devices[i].util_percent = -1;
	}
}

void gpu_info_summarize(gpu_info *out)
{
	long total = 0, free_mb = 0;
	bool have_total = false, have_free = false;
	int util = -1;

	if (out->ndevices > GPU_MAX)
		out->ndevices = GPU_MAX;
	if (out->ndevices < 0)
		out->ndevices = 0;
	for (int i = 0; i < out->ndevices; i++) {
		const gpu_device *d = &out->devices[i];

		if (d->vram_total_mb >= 0) {
			total += d->vram_total_mb;
			have_total = true;
		}
		if (d->vram_free_mb >= 0) {
			free_mb += d->vram_free_mb;
			have_free = true;
		}
		if (d->util_percent > util)
			util = d->util_percent;
	}
	out->vram_total_mb = have_total ? total : (out->count > 0 ? -1 : 0);
	out->vram_free_mb = have_free ? free_mb : (out->count > 0 ? -1 : 0);
	out->util_percent = util;
	memcpy(out->name, out->ndevices > 0 ? out->devices[0].name : "",
	    out->ndevices > 0 ? sizeof(out->name) : 1);
	out->name[sizeof(out->name) - 1] = '\0';
}

/* ---- probe chain --------------------------------------------------------- */

int gpu_probe(gpu_info *out)
{
	int rc = gpu_probe_nvml(out, NULL);

	if (rc == 0)
		return 0;
	log_debug("gpu_probe", "source=nvml skipped=\"%s\"", troop_error_msg());
	rc = gpu_probe_smi(out);
	if (rc == 0)
		return 0;
	log_debug("gpu_probe", "source=nvidia-smi skipped=\"%s\"", troop_error_msg());
	gpu_info_init_none(out);
	troop_error_clear();
	return 0;
}

/* ---- donate policy ------------------------------------------------------- */

int gpu_parse_donate(gpu_donate_mode *out, const char *s)
{
	if (s && strcasecmp(s, "idle") == 0) {
		*out = GPU_DONATE_IDLE;
		return 0;
	}
	if (s && strcasecmp(s, "always") == 0) {
		*out = GPU_DONATE_ALWAYS;
		return 0;
	}
	return troop_error_set(TROOP_EINVAL,
	    "--donate: expected 'idle' or 'always', got '%s'", s ? s : "");
}

int gpu_check_threshold(long percent)
{
	if (percent < 1 || percent > 100)
		return troop_error_set(TROOP_EINVAL,
		    "--busy-threshold: expected a percentage between 1 and 100, got %ld",
		    percent);
	return 0;
}

bool gpu_policy_step(gpu_policy_state *st, const gpu_policy *p,
    int util_percent, int active_jobs)
{
	int threshold = p->busy_threshold;

	if (threshold < 1)
		threshold = 1;
	if (threshold > 100)
		threshold = 100;

	if (p->donate == GPU_DONATE_ALWAYS) {
		st->busy = false;
		st->high_streak = 0;
		return false;
	}
	if (util_percent < 0 || util_percent < threshold) {
		st->busy = false;
		st->high_streak = 0;
		return false;
	}
	if (active_jobs > 0) {
		/* Our own load: no evidence either way. */
		st->high_streak = 0;
		return st->busy;
	}
	if (st->high_streak < GPU_BUSY_SAMPLES)
		st->high_streak++;
	if (st->high_streak >= GPU_BUSY_SAMPLES)
		st->busy = true;
	return st->busy;
}

/* ---- sampler ------------------------------------------------------------- */

struct gpu_sampler {
	gpu_policy policy;
	gpu_policy_state state;
	gpu_nvml *nvml;        /* kept open between samples when it works */
	bool nvml_missing;     /* library not there: do not dlopen every sample */
	gpu_info last;
};

int gpu_sampler_new(gpu_sampler **out, const gpu_policy *p)
{
	gpu_sampler *s;
	int rc;

	*out = NULL;
	if (p->donate != GPU_DONATE_IDLE && p->donate != GPU_DONATE_ALWAYS)
		return troop_error_set(TROOP_EINVAL, "--donate: unknown mode %d", (int)p->donate);
	rc = gpu_check_threshold(p->busy_threshold);
	if (rc != 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return troop_error_set(TROOP_ENOMEM, "gpu sampler: out of memory");
	s->policy = *p;
	gpu_info_init_none(&s->last);
	*out = s;
	return 0;
}

/* One reading: the kept NVML session, else (re)open NVML, else nvidia-smi,
 * else none. */
static void sampler_read(gpu_sampler *s, gpu_info *info)
{
	if (!s->nvml && !s->nvml_missing) {
		int rc = gpu_nvml_open(&s->nvml, NULL);
		if (rc == TROOP_ENOTFOUND)
			s->nvml_missing = true;
		if (rc != 0)
			log_debug("gpu_sample", "source=nvml skipped=\"%s\"", troop_error_msg());
	}
	if (s->nvml) {
		if (gpu_nvml_query(s->nvml, info) == 0)
			return;
		/* The driver went away (GPU lost, driver reload): drop the
		 * session and try again next time. */
		log_warn("gpu_sample", "source=nvml error=\"%s\"", troop_error_msg());
		gpu_nvml_close(s->nvml);
		s->nvml = NULL;
	}
	if (gpu_probe_smi(info) == 0)
		return;
	log_debug("gpu_sample", "source=nvidia-smi skipped=\"%s\"", troop_error_msg());
	gpu_info_init_none(info);
	troop_error_clear();
}

bool gpu_sampler_sample(gpu_sampler *s, int active_jobs, gpu_info *info)
{
	bool was_busy = s->state.busy;

	sampler_read(s, &s->last);
	bool busy = gpu_policy_step(&s->state, &s->policy, s->last.util_percent, active_jobs);
	if (busy != was_busy)
		log_info("gpu_owner", "state=%s util=%d threshold=%d source=%s",
		    busy ? "busy" : "idle", s->last.util_percent,
		    s->policy.busy_threshold, s->last.source);
	if (info)
		*info = s->last;
	return busy;
}

bool gpu_sampler_busy(const gpu_sampler *s)
{
	return s->state.busy;
}

const gpu_info *gpu_sampler_last(const gpu_sampler *s)
{
	return &s->last;
}

void gpu_sampler_free(gpu_sampler *s)
{
	if (!s)
		return;
	gpu_nvml_close(s->nvml);
	free(s);
}
