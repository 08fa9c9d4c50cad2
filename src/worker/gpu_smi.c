/*
 * gpu_smi.c - the nvidia-smi fallback: run the CSV query and parse it.
 *
 * Used when NVML cannot be loaded (containers that ship nvidia-smi but not
 * the library on the loader path, unusual driver installs).  The program
 * is run with fixed arguments through subproc_capture, never a shell.
 */
#include "gpu.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "subproc.h"

static const char *const smi_argv[] = {
	"nvidia-smi",
	"--query-gpu=utilization.gpu,memory.used,memory.total,name",
	"--format=csv,noheader,nounits",
	NULL,
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Trim [*b, *e) of blanks on both ends. */
static void trim(const char **b, const char **e)
{
	while (*b < *e && is_space(**b))
		(*b)++;
	while (*e > *b && is_space((*e)[-1]))
		(*e)--;
}

/* One numeric field: a decimal integer in [0, max], or any "[...]" token
 * (nvidia-smi's "[N/A]", "[Not Supported]", "[Unknown Error]", ...) for
 * unknown (-1).  Returns false for anything else. */
static bool parse_field(long *out, const char *b, const char *e, long max)
{
	trim(&b, &e);
	if (b == e)
		return false;
	if (*b == '[') {
		if (e[-1] != ']')
			return false;
		*out = -1;
		return true;
	}
	long v = 0;
	for (const char *p = b; p < e; p++) {
		if (*p < '0' || *p > '9')
			return false;
		if (v > (max - (*p - '0')) / 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

/* Parse one non-blank line into *d.  Returns false when malformed. */
static bool parse_line(gpu_device *d, const char *b, const char *e)
{
	const char *f[3];
	const char *fe[3];
	const char *p = b;

	for (int i = 0; i < 3; i++) {
		const char *c = memchr(p, ',', (size_t)(e - p));
		if (!c)
			return false;
		f[i] = p;
		fe[i] = c;
		p = c + 1;
	}
	long util, used, total;
	if (!parse_field(&util, f[0], fe[0], 100) ||
	    !parse_field(&used, f[1], fe[1], LONG_MAX / 2) ||
	    !parse_field(&total, f[2], fe[2], LONG_MAX / 2))
		return false;

	const char *nb = p, *ne = e;
	trim(&nb, &ne);
	size_t nlen = (size_t)(ne - nb);
	for (size_t i = 0; i < nlen; i++)
		if ((unsigned char)nb[i] < 0x20 || nb[i] == 0x7f)
			return false;
	if (nlen >= 2 && nb[0] == '[' && nb[nlen - 1] == ']')
		nlen = 0;  /* "[N/A]": name unknown */
	if (nlen >= sizeof(d->name))
		nlen = sizeof(d->name) - 1;
	memcpy(d->name, nb, nlen);
	d->name[nlen] = '\0';

	d->util_percent = (int)util;
	d->vram_used_mb = used;
	d->vram_total_mb = total;
	d->vram_free_mb = (used >= 0 && total >= 0 && total >= used) ? total - used : -1;
	return true;
}

int gpu_parse_smi_csv(gpu_info *out, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	int lineno = 0;

	gpu_info_init_none(out);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *b = p, *e = le;

		lineno++;
		p = nl ? nl + 1 : end;
		trim(&b, &e);
		if (b == e)
			continue;
		if (memchr(b, '\0', (size_t)(e - b))) {
			gpu_info_init_none(out);
			return troop_error_set(TROOP_EINVAL,
			    "nvidia-smi output line %d: contains a NUL byte", lineno);
		}

		gpu_device scratch;
		gpu_device *d = out->ndevices < GPU_MAX ? &out->devices[out->ndevices] : &scratch;
		if (!parse_line(d, b, e)) {
			gpu_info_init_none(out);
			return troop_error_set(TROOP_EINVAL,
			    "nvidia-smi output line %d: expected 'utilization, memory.used, "
			    "memory.total, name'", lineno);
		}
		if (out->count < INT_MAX)
			out->count++;
		if (d != &scratch)
			out->ndevices++;
	}
	if (out->count == 0)
		return troop_error_set(TROOP_EINVAL, "nvidia-smi output: no GPU lines");
	out->source = "nvidia-smi";
	gpu_info_summarize(out);
	return 0;
}

int gpu_probe_smi(gpu_info *out)
{
	char *buf = NULL;
	size_t n = 0;
	int status = -1;
	int rc;

	gpu_info_init_none(out);
	buf = malloc(GPU_SMI_OUTPUT_MAX);
	if (!buf)
		return troop_error_set(TROOP_ENOMEM, "nvidia-smi: out of memory");
	rc = subproc_capture(buf, GPU_SMI_OUTPUT_MAX, &n, smi_argv, GPU_SMI_TIMEOUT_MS, &status);
	if (rc != 0)
		goto done;
	if (status != 0) {
		rc = troop_error_set(TROOP_EUNAVAIL, "nvidia-smi: exited with status %d", status);
		goto done;
	}
	rc = gpu_parse_smi_csv(out, buf, n);
done:
	free(buf);
	return rc;
}
