/*
 * gpu_nvml.c - NVML loaded at run time with dlopen, no nvml.h needed.
 *
 * Only the handful of NVML types and calls the worker uses are declared
 * here, with the layouts of NVIDIA's public nvml.h.  Versioned entry
 * points are preferred and the older names are the fallback, so both
 * current drivers and old ones (which lack the _v2 names) work:
 *   nvmlInit_v2                    -> nvmlInit
 *   nvmlDeviceGetCount_v2          -> nvmlDeviceGetCount
 *   nvmlDeviceGetHandleByIndex_v2  -> nvmlDeviceGetHandleByIndex
 *   nvmlDeviceGetMemoryInfo_v2     -> nvmlDeviceGetMemoryInfo
 * nvmlDeviceGetMemoryInfo_v2 takes an nvmlMemory_v2_t whose first field
 * must hold NVML_STRUCT_VERSION(Memory, 2) = sizeof | 2 << 24; the v1 call
 * takes the plain {total, free, used} struct.
 */
#include "gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

/* ---- the subset of nvml.h we use ---------------------------------------- */

typedef int nvml_return;           /* nvmlReturn_t */
#define NVML_SUCCESS 0
typedef struct nvml_device_st *nvml_device;  /* nvmlDevice_t */

typedef struct {                   /* nvmlUtilization_t */
	unsigned int gpu;
	unsigned int memory;
} nvml_utilization;

typedef struct {                   /* nvmlMemory_t (v1) */
	unsigned long long total;
	unsigned long long free;
	unsigned long long used;
} nvml_memory_v1;

typedef struct {                   /* nvmlMemory_v2_t */
	unsigned int version;
	unsigned long long total;
	unsigned long long reserved;
	unsigned long long free;
	unsigned long long used;
} nvml_memory_v2;

#define NVML_MEMORY_V2_VERSION ((unsigned int)(sizeof(nvml_memory_v2) | (2u << 24)))

typedef nvml_return (*nvml_init_fn)(void);
typedef nvml_return (*nvml_shutdown_fn)(void);
typedef nvml_return (*nvml_count_fn)(unsigned int *);
typedef nvml_return (*nvml_handle_fn)(unsigned int, nvml_device *);
typedef nvml_return (*nvml_name_fn)(nvml_device, char *, unsigned int);
typedef nvml_return (*nvml_util_fn)(nvml_device, nvml_utilization *);
typedef nvml_return (*nvml_mem_v1_fn)(nvml_device, nvml_memory_v1 *);
typedef nvml_return (*nvml_mem_v2_fn)(nvml_device, nvml_memory_v2 *);
typedef const char *(*nvml_errstr_fn)(nvml_return);

struct gpu_nvml {
	void *dl;
	bool inited;
	nvml_shutdown_fn shutdown;
	nvml_count_fn count;
	nvml_handle_fn handle;
	nvml_name_fn name;
	nvml_util_fn util;
	nvml_mem_v2_fn mem_v2;
	nvml_mem_v1_fn mem_v1;
	nvml_errstr_fn errstr;
};

#define MIB (1024ull * 1024ull)

/* dlsym into a function pointer without the object/function pointer cast
 * warning; NULL when absent. */
static void *sym(void *dl, const char *name)
{
	dlerror();
	return dlsym(dl, name);
}

#define LOAD(dst, name) memcpy(&(dst), &(void *){ sym(n->dl, (name)) }, sizeof(dst))

static const char *nvml_err(const gpu_nvml *n, nvml_return r)
{
	static _Thread_local char buf[32];

	if (n->errstr) {
		const char *s = n->errstr(r);
		if (s)
			return s;
	}
	snprintf(buf, sizeof(buf), "NVML error %d", r);
	return buf;
}

static const char *nvml_libpath(const char *libpath)
{
	if (libpath && *libpath)
		return libpath;
	const char *env = getenv("TROOP_NVML_LIB");
	if (env && *env)
		return env;
	return "libnvidia-ml.so.1";
}

int gpu_nvml_open(gpu_nvml **out, const char *libpath)
{
	gpu_nvml *n = NULL;
	nvml_init_fn init = NULL;
	nvml_count_fn count_v2 = NULL, count_v1 = NULL;
	nvml_handle_fn handle_v2 = NULL, handle_v1 = NULL;
	const char *path = nvml_libpath(libpath);
	int rc;

	*out = NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return troop_error_set(TROOP_ENOMEM, "nvml: out of memory");

	n->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!n->dl) {
		const char *why = dlerror();
		rc = troop_error_set(TROOP_ENOTFOUND, "nvml: cannot load %s: %s",
		    path, why ? why : "unknown error");
		goto fail;
	}

	LOAD(init, "nvmlInit_v2");
	if (!init)
		LOAD(init, "nvmlInit");
	LOAD(n->shutdown, "nvmlShutdown");
	LOAD(count_v2, "nvmlDeviceGetCount_v2");
	LOAD(count_v1, "nvmlDeviceGetCount");
	LOAD(handle_v2, "nvmlDeviceGetHandleByIndex_v2");
	LOAD(handle_v1, "nvmlDeviceGetHandleByIndex");
	LOAD(n->name, "nvmlDeviceGetName");
	LOAD(n->util, "nvmlDeviceGetUtilizationRates");
	LOAD(n->mem_v2, "nvmlDeviceGetMemoryInfo_v2");
	LOAD(n->mem_v1, "nvmlDeviceGetMemoryInfo");
	LOAD(n->errstr, "nvmlErrorString");
	n->count = count_v2 ? count_v2 : count_v1;
	n->handle = handle_v2 ? handle_v2 : handle_v1;

	if (!init || !n->count || !n->handle) {
		rc = troop_error_set(TROOP_ENOTFOUND,
		    "nvml: %s lacks %s", path,
		    !init ? "nvmlInit" : !n->count ? "nvmlDeviceGetCount" :
		    "nvmlDeviceGetHandleByIndex");
		goto fail;
	}

	nvml_return r = init();
	if (r != NVML_SUCCESS) {
		rc = troop_error_set(TROOP_EUNAVAIL, "nvml: nvmlInit failed: %s",
		    nvml_err(n, r));
		goto fail;
	}
	n->inited = true;
	log_debug("gpu_nvml", "lib=%s count=%s handle=%s memory=%s", path,
	    count_v2 ? "v2" : "v1", handle_v2 ? "v2" : "v1",
	    n->mem_v2 ? "v2" : n->mem_v1 ? "v1" : "none");
	*out = n;
	return 0;

fail:
	gpu_nvml_close(n);
	return rc;
}

void gpu_nvml_close(gpu_nvml *n)
{
	if (!n)
		return;
	if (n->inited && n->shutdown)
		n->shutdown();
	if (n->dl)
		dlclose(n->dl);
	free(n);
}

/* Memory of one device in MiB, v2 first (it separates the driver's
 * reserved memory from "used"), then v1.  Leaves -1 when neither works. */
static void query_memory(gpu_nvml *n, nvml_device dev, gpu_device *d)
{
	if (n->mem_v2) {
		nvml_memory_v2 m;

		memset(&m, 0, sizeof(m));
		m.version = NVML_MEMORY_V2_VERSION;
		if (n->mem_v2(dev, &m) == NVML_SUCCESS) {
			d->vram_total_mb = (long)(m.total / MIB);
			d->vram_used_mb = (long)(m.used / MIB);
			d->vram_free_mb = (long)(m.free / MIB);
			return;
		}
	}
	if (n->mem_v1) {
		nvml_memory_v1 m;

		memset(&m, 0, sizeof(m));
		if (n->mem_v1(dev, &m) == NVML_SUCCESS) {
			d->vram_total_mb = (long)(m.total / MIB);
			d->vram_used_mb = (long)(m.used / MIB);
			d->vram_free_mb = (long)(m.free / MIB);
		}
	}
}

int gpu_nvml_query(gpu_nvml *n, gpu_info *out)
{
	unsigned int count = 0;

	gpu_info_init_none(out);
	nvml_return r = n->count(&count);
	if (r != NVML_SUCCESS)
		return troop_error_set(TROOP_EUNAVAIL, "nvml: device count: %s",
		    nvml_err(n, r));

	out->source = "nvml";
	out->count = count > 1000000 ? 1000000 : (int)count;
	out->ndevices = out->count < GPU_MAX ? out->count : GPU_MAX;
	for (int i = 0; i < out->ndevices; i++) {
		gpu_device *d = &out->devices[i];
		nvml_device dev = NULL;

		if (n->handle((unsigned int)i, &dev) != NVML_SUCCESS)
			continue;  /* fields stay unknown; e.g. a lost GPU */
		if (n->name) {
			char name[GPU_NAME_MAX];

			memset(name, 0, sizeof(name));
			if (n->name(dev, name, sizeof(name)) == NVML_SUCCESS) {
				name[sizeof(name) - 1] = '\0';
				memcpy(d->name, name, sizeof(d->name));
			}
		}
		if (n->util) {
			nvml_utilization u = { 0, 0 };

			if (n->util(dev, &u) == NVML_SUCCESS && u.gpu <= 100)
				d->util_percent = (int)u.gpu;
		}
		query_memory(n, dev, d);
	}
	gpu_info_summarize(out);
	return 0;
}

int gpu_probe_nvml(gpu_info *out, const char *libpath)
{
	gpu_nvml *n = NULL;
	int rc = gpu_nvml_open(&n, libpath);

	if (rc != 0) {
		gpu_info_init_none(out);
		return rc;
	}
	rc = gpu_nvml_query(n, out);
	gpu_nvml_close(n);
	return rc;
}
