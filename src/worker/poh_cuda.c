/*
 * poh_cuda.c - proof-of-hardware rounds on an NVIDIA GPU through cuBLAS,
 * with libcudart / libcublas / libcuda loaded by dlopen (poh_cuda.h).
 *
 * Layout.  cuBLAS is column-major; our matrices are row-major.  A
 * row-major buffer read as column-major is the transpose, so with BT the
 * row-major buffer of B transposed (BT[j][k] = B[k][j], what poh_ctx
 * holds) and A row-major:
 *   cublasGemmEx(T, N, m=n, n=n, k=n, X=BT, ldx=n, Y=A, ldy=n, Z=C, ldz=n)
 * computes Z = op(X) op(Y) = (B)^T (A^T) = (A B)^T column-major, which is
 * A B row-major: exactly C.  This is the "TN" form cuBLAS's int8 tensor-core
 * kernels want, and n is a multiple of 16 (POH_N_ALIGN), so every
 * dimension and leading dimension meets the int8 alignment rules.
 *
 * Mapping between rounds.  A 20-line PTX kernel (below; it is what nvcc
 * emits for the CUDA C in its comment) maps C to the next A on the device
 * when libcuda can JIT it: no build-time CUDA needed.  Otherwise C is
 * copied to the host, mapped there (poh_map_buffer) and A copied back:
 * 5*n*n bytes over PCIe per round (for n = 8192, 320 MiB: ~15 ms at
 * 25 GB/s) plus the host mapping, which then dominates the GEMM itself.
 *
 * The types and enum values used are declared here (stable ABI values
 * from cuda_runtime_api.h, cublas_api.h, library_types.h and cuda.h).
 */
#include "poh_cuda.h"

#include <dlfcn.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

/* ---- the few CUDA declarations we need ------------------------------------------- */

typedef poh_cuda_err cuda_err;
typedef int cublas_status;               /* cublasStatus_t: 0 = success */
typedef int cu_result;                   /* CUresult: 0 = CUDA_SUCCESS */
typedef unsigned long long cu_devptr;    /* CUdeviceptr */

enum {
	CUDA_MEMCPY_H2D = POH_CUDA_MEMCPY_H2D,
	CUDA_MEMCPY_D2H = POH_CUDA_MEMCPY_D2H,
	CUBLAS_OP_N_ = 0,
	CUBLAS_OP_T_ = 1,
	CUDA_R_8I_ = POH_CUDA_R_8I,
	CUDA_R_32I_ = POH_CUDA_R_32I,
	CUBLAS_COMPUTE_32I_ = POH_CUBLAS_COMPUTE_32I,
	CUBLAS_GEMM_DEFAULT_ = -1,
};

struct poh_cuda {
	poh_cuda_api api;
	int device;
	char name[256];
	void *blas;
	void *blas_lib;     /* dlopen handle of cuBLAS (poh_cuda_open), unloaded at close */
	/* device-side mapping */
	bool have_driver;
	int cu_dev;
	void *cu_ctx;
	void *module;
	void *map_fn;
	bool use_kernel;
};

/* The mapping kernel, for `.target sm_50` and PTX ISA 6.0 so that any
 * driver since CUDA 9 can JIT it for its GPU.  Source:
 *   extern "C" __global__ void troop_poh_map(const int *c, signed char *a,
 *       unsigned long long count) {
 *     unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x
 *         + threadIdx.x;
 *     if (i < count) a[i] = (signed char)(((unsigned)c[i] >> 7) & 0xffu);
 *   }
 * (ptxas of CUDA 13 assembles it for sm_75 .. sm_120.) */
static const char map_ptx[] =
	".version 6.0\n"
	".target sm_50\n"
	".address_size 64\n"
	".visible .entry troop_poh_map(\n"
	"	.param .u64 troop_poh_map_c,\n"
	"	.param .u64 troop_poh_map_a,\n"
	"	.param .u64 troop_poh_map_count\n"
	")\n"
	"{\n"
	"	.reg .pred %p<2>;\n"
	"	.reg .b32 %r<6>;\n"
	"	.reg .b64 %rd<12>;\n"
	"	ld.param.u64 %rd2, [troop_poh_map_c];\n"
	"	ld.param.u64 %rd3, [troop_poh_map_a];\n"
	"	ld.param.u64 %rd4, [troop_poh_map_count];\n"
	"	mov.u32 %r1, %ctaid.x;\n"
	"	mov.u32 %r2, %ntid.x;\n"
	"	mul.wide.u32 %rd5, %r1, %r2;\n"
	"	mov.u32 %r3, %tid.x;\n"
	"	cvt.u64.u32 %rd6, %r3;\n"
	"	add.s64 %rd1, %rd5, %rd6;\n"
	"	setp.ge.u64 %p1, %rd1, %rd4;\n"
	"	@%p1 bra DONE;\n"
	"	cvta.to.global.u64 %rd7, %rd2;\n"
	"	shl.b64 %rd8, %rd1, 2;\n"
	"	add.s64 %rd9, %rd7, %rd8;\n"
	"	ld.global.u32 %r4, [%rd9];\n"
	"	shr.u32 %r5, %r4, 7;\n"
	"	cvta.to.global.u64 %rd10, %rd3;\n"
	"	add.s64 %rd11, %rd10, %rd1;\n"
	"	st.global.u8 [%rd11], %r5;\n"
	"DONE:\n"
	"	ret;\n"
	"}\n";

#define MAP_BLOCK 256

/* ---- loading --------------------------------------------------------------------- */

static void *open_first(const char *given, const char *const *defaults, char *tried,
    size_t tried_len)
{
	const char *single[2] = { given, NULL };
	const char *const *names = given ? single : defaults;

	for (size_t i = 0; names[i]; i++) {
		void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		if (h)
			return h;
		if (i == 0)
			snprintf(tried, tried_len, "%s", names[i]);
	}
	return NULL;
}

#define SYM(h, field, name) \
	(*(void **)(&api->field) = dlsym(h, name), api->field != NULL)

/* Load the CUDA runtime, and cuBLAS only when the runtime sees a device:
 * cuBLAS maps about 150 MB, which a machine without a GPU (or with the
 * libraries and no driver) must not pay.  On success *blas_lib is the
 * cuBLAS handle (poh_cuda_close unloads it); on failure nothing of cuBLAS
 * stays loaded.  The runtime itself (under 1 MB) stays loaded: CUDA does
 * not support unloading it while the process may use the device again. */
static int load_runtime(poh_cuda_api *api, const poh_cuda_libs *libs, void **blas_lib)
{
	static const char *const rt_names[] = { "libcudart.so", "libcudart.so.13",
	    "libcudart.so.12", "libcudart.so.11.0", NULL };
	static const char *const blas_names[] = { "libcublas.so", "libcublas.so.13",
	    "libcublas.so.12", "libcublas.so.11", NULL };
	char tried[256] = "";
	void *rt, *blas;
	int count = 0;
	cuda_err e;

	*blas_lib = NULL;
	rt = open_first(libs ? libs->cudart : NULL, rt_names, tried, sizeof(tried));
	if (!rt)
		return troop_error_set(TROOP_EUNAVAIL, "cannot load the CUDA runtime (%s): %s",
		    tried, dlerror());
	if (!SYM(rt, get_device_count, "cudaGetDeviceCount") ||
	    !SYM(rt, set_device, "cudaSetDevice") ||
	    !SYM(rt, malloc_, "cudaMalloc") ||
	    !SYM(rt, free_, "cudaFree") ||
	    !SYM(rt, memcpy_, "cudaMemcpy") ||
	    !SYM(rt, synchronize, "cudaDeviceSynchronize") ||
	    !SYM(rt, mem_get_info, "cudaMemGetInfo") ||
	    !SYM(rt, error_string, "cudaGetErrorString") ||
	    !SYM(rt, runtime_version, "cudaRuntimeGetVersion"))
		return troop_error_set(TROOP_EUNAVAIL, "the CUDA runtime lacks a needed function");
	/* no device, no cuBLAS (35 cudaErrorInsufficientDriver, 100 NoDevice) */
	e = api->get_device_count(&count);
	if (e != 0 || count <= 0)
		return troop_error_set(TROOP_EUNAVAIL, "no NVIDIA GPU with a working driver on "
		    "this machine (CUDA: %s)", e != 0 ? api->error_string(e) : "no device found");
	blas = open_first(libs ? libs->cublas : NULL, blas_names, tried, sizeof(tried));
	if (!blas)
		return troop_error_set(TROOP_EUNAVAIL, "cannot load cuBLAS (%s): %s", tried,
		    dlerror());
	if (!SYM(blas, blas_create, "cublasCreate_v2") ||
	    !SYM(blas, blas_destroy, "cublasDestroy_v2") ||
	    !SYM(blas, gemm_ex, "cublasGemmEx")) {
		dlclose(blas);
		return troop_error_set(TROOP_EUNAVAIL, "cuBLAS lacks cublasGemmEx (too old)");
	}
	*blas_lib = blas;
	return 0;
}

static bool load_driver(poh_cuda_api *api, const poh_cuda_libs *libs)
{
	static const char *const names[] = { "libcuda.so.1", "libcuda.so", NULL };
	char tried[256] = "";
	void *h = open_first(libs ? libs->cuda : NULL, names, tried, sizeof(tried));

	if (!h)
		return false;
	if (!SYM(h, cu_primary_release, "cuDevicePrimaryCtxRelease_v2") &&
	    !SYM(h, cu_primary_release, "cuDevicePrimaryCtxRelease"))
		return false;
	return SYM(h, cu_init, "cuInit") && SYM(h, cu_device_get, "cuDeviceGet") &&
	    SYM(h, cu_device_get_name, "cuDeviceGetName") &&
	    SYM(h, cu_primary_retain, "cuDevicePrimaryCtxRetain") &&
	    SYM(h, cu_ctx_set_current, "cuCtxSetCurrent") &&
	    SYM(h, cu_module_load_data, "cuModuleLoadData") &&
	    SYM(h, cu_module_unload, "cuModuleUnload") &&
	    SYM(h, cu_module_get_function, "cuModuleGetFunction") &&
	    SYM(h, cu_launch_kernel, "cuLaunchKernel");
}

/* Make the device (and its primary context) current on this thread. */
static int make_current(poh_cuda *g)
{
	cuda_err e = g->api.set_device(g->device);

	if (e != 0)
		return troop_error_set(TROOP_ERR, "cudaSetDevice(%d): %s", g->device,
		    g->api.error_string(e));
	if (g->cu_ctx && g->api.cu_ctx_set_current(g->cu_ctx) != 0)
		return troop_error_set(TROOP_ERR, "cuCtxSetCurrent failed");
	return 0;
}

static bool have_driver(const poh_cuda_api *a)
{
	return a->cu_init && a->cu_device_get && a->cu_device_get_name && a->cu_primary_retain &&
	    a->cu_primary_release && a->cu_ctx_set_current && a->cu_module_load_data &&
	    a->cu_module_unload && a->cu_module_get_function && a->cu_launch_kernel;
}

static void setup_kernel(poh_cuda *g)
{
	poh_cuda_api *api = &g->api;
	cu_result r;

	if (!have_driver(api)) {
		log_info("poh_cuda", "mapping=host reason=\"libcuda not loadable\"");
		return;
	}
	if ((r = api->cu_init(0)) != 0 || (r = api->cu_device_get(&g->cu_dev, g->device)) != 0) {
		log_info("poh_cuda", "mapping=host reason=\"cuInit/cuDeviceGet: %d\"", r);
		return;
	}
	g->have_driver = true;
	if (api->cu_device_get_name(g->name, (int)sizeof(g->name), g->cu_dev) != 0)
		g->name[0] = '\0';
	if ((r = api->cu_primary_retain(&g->cu_ctx, g->cu_dev)) != 0) {
		g->cu_ctx = NULL;
		log_info("poh_cuda", "mapping=host reason=\"cuDevicePrimaryCtxRetain: %d\"", r);
		return;
	}
	if ((r = api->cu_ctx_set_current(g->cu_ctx)) != 0 ||
	    (r = api->cu_module_load_data(&g->module, map_ptx)) != 0) {
		g->module = NULL;
		log_info("poh_cuda", "mapping=host reason=\"cannot load the PTX kernel: %d\"", r);
		return;
	}
	if ((r = api->cu_module_get_function(&g->map_fn, g->module, "troop_poh_map")) != 0) {
		log_info("poh_cuda", "mapping=host reason=\"cuModuleGetFunction: %d\"", r);
		return;
	}
	g->use_kernel = true;
}

/* Compute a 64 x 64, 3-round chain on the GPU and on the CPU: equal? */
static int self_test(poh_cuda *g)
{
	uint8_t seed[POH_SEED_LEN];
	const size_t n = 64;
	int8_t gpu[64 * 64], cpu[64 * 64];
	poh_ctx *ctx = NULL;
	int rc;

	randombytes_buf(seed, sizeof(seed));
	if ((rc = poh_ctx_new(&ctx, seed, n, 3, 1)) != 0)
		return rc;
	rc = poh_compute_rows(cpu, ctx, NULL, n, 1, NULL, NULL);
	if (rc == 0)
		rc = poh_cuda_compute(gpu, g, ctx, 1, NULL, NULL);
	if (rc == 0 && memcmp(gpu, cpu, sizeof(cpu)) != 0)
		rc = troop_error_set(TROOP_ERR, "the GPU's results differ from the CPU's");
	poh_ctx_free(ctx);
	return rc;
}

static bool have_runtime(const poh_cuda_api *a)
{
	return a->get_device_count && a->set_device && a->malloc_ && a->free_ && a->memcpy_ &&
	    a->synchronize && a->mem_get_info && a->error_string && a->runtime_version &&
	    a->blas_create && a->blas_destroy && a->gemm_ex;
}

int poh_cuda_open(poh_cuda **out, int device, const poh_cuda_libs *libs)
{
	poh_cuda_api api;
	int rc;

	void *blas_lib;

	*out = NULL;
	memset(&api, 0, sizeof(api));
	if ((rc = load_runtime(&api, libs, &blas_lib)) != 0)
		return rc;
	if (!load_driver(&api, libs)) {
		/* the mapping kernel needs all of the driver's entry points */
		api.cu_init = NULL;
	}
	if ((rc = poh_cuda_open_with(out, device, &api)) != 0) {
		dlclose(blas_lib);
		return rc;
	}
	(*out)->blas_lib = blas_lib;
	return 0;
}

int poh_cuda_open_with(poh_cuda **out, int device, const poh_cuda_api *api)
{
	poh_cuda *g;
	int count = 0, rc, version = 0;
	cuda_err e;

	*out = NULL;
	if (!have_runtime(api))
		return troop_error_set(TROOP_EUNAVAIL, "the CUDA runtime or cuBLAS lacks a "
		    "needed function");
	g = calloc(1, sizeof(*g));
	if (!g)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	g->api = *api;
	g->device = device;
	e = g->api.get_device_count(&count);
	if (e != 0 || count <= 0) {
		/* 35 cudaErrorInsufficientDriver: no driver at all on a machine
		 * without an NVIDIA GPU; 100 cudaErrorNoDevice */
		if (e == 35 || e == 100 || e == 0)
			rc = troop_error_set(TROOP_EUNAVAIL, "no NVIDIA GPU with a working driver on "
			    "this machine (CUDA: %s)", e != 0 ? g->api.error_string(e) :
			    "no device found");
		else
			rc = troop_error_set(TROOP_EUNAVAIL, "no usable CUDA device: %s",
			    g->api.error_string(e));
		goto fail;
	}
	if (device < 0 || device >= count) {
		rc = troop_error_set(TROOP_EUNAVAIL, "CUDA device %d does not exist (%d found)",
		    device, count);
		goto fail;
	}
	if ((e = g->api.set_device(device)) != 0 || (e = g->api.free_(NULL)) != 0) {
		rc = troop_error_set(TROOP_EUNAVAIL, "cannot open CUDA device %d: %s", device,
		    g->api.error_string(e));
		goto fail;
	}
	g->api.runtime_version(&version);
	if (g->api.blas_create(&g->blas) != 0) {
		g->blas = NULL;
		rc = troop_error_set(TROOP_EUNAVAIL, "cublasCreate failed on device %d", device);
		goto fail;
	}
	setup_kernel(g);
	if (!g->name[0])
		snprintf(g->name, sizeof(g->name), "CUDA device %d", device);
	if ((rc = self_test(g)) != 0 && g->use_kernel) {
		log_warn("poh_cuda", "self_test=failed mapping=device error=\"%s\" "
		    "retry=host-mapping", troop_error_msg());
		g->use_kernel = false;
		rc = self_test(g);
	}
	if (rc != 0) {
		rc = troop_error_set(TROOP_EUNAVAIL, "GPU self-test failed on %s: %s", g->name,
		    troop_error_msg());
		goto fail;
	}
	log_info("poh_cuda", "device=\"%s\" runtime=%d mapping=%s", g->name, version,
	    g->use_kernel ? "device" : "host");
	*out = g;
	return 0;
fail:
	poh_cuda_close(g);
	return rc;
}

void poh_cuda_close(poh_cuda *g)
{
	if (!g)
		return;
	if (g->module && g->api.cu_module_unload)
		g->api.cu_module_unload(g->module);
	if (g->blas)
		g->api.blas_destroy(g->blas);
	if (g->cu_ctx && g->api.cu_primary_release)
		g->api.cu_primary_release(g->cu_dev);
	if (g->blas_lib)
		dlclose(g->blas_lib);
	free(g);
}

const char *poh_cuda_name(const poh_cuda *g)
{
	return g->name;
}

bool poh_cuda_maps_on_device(const poh_cuda *g)
{
	return g->use_kernel;
}

void poh_cuda_disable_kernel(poh_cuda *g)
{
	g->use_kernel = false;
}

/* ---- computing ------------------------------------------------------------------- */

#define CU_CHECK(call, what) do { \
	cuda_err e_ = (call); \
	if (e_ != 0) { \
		rc = troop_error_set(e_ == 2 ? TROOP_ENOMEM : TROOP_ERR, "%s: %s", what, \
		    g->api.error_string(e_)); \
		goto out; \
	} \
} while (0)

int poh_cuda_compute(int8_t *out, poh_cuda *g, const poh_ctx *ctx, int threads,
    poh_progress_fn progress, void *arg)
{
	size_t n = poh_ctx_n(ctx), nn = n * n;
	unsigned rounds = poh_ctx_rounds(ctx);
	void *d_a = NULL, *d_bt = NULL, *d_c = NULL;
	int8_t *h_a = NULL;
	int32_t *h_c = NULL;
	size_t free_b = 0, total_b = 0;
	const int32_t alpha = 1, beta = 0;
	int rc = 0;

	if ((rc = make_current(g)) != 0)
		return rc;
	if (g->api.mem_get_info(&free_b, &total_b) == 0 && free_b < 6 * nn + (64u << 20))
		return troop_error_set(TROOP_ENOMEM, "the GPU has %.1f MiB free; a %zu x %zu "
		    "challenge needs %.1f MiB and 64 MiB to spare", (double)free_b / 1048576.0, n, n,
		    6.0 * (double)nn / 1048576.0);
	h_a = malloc(nn);
	if (!h_a)
		return troop_error_set(TROOP_ENOMEM, "out of memory for A");
	if (!g->use_kernel && !(h_c = malloc(nn * sizeof(*h_c)))) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory for C");
		goto out;
	}
	poh_gen_a(h_a, poh_ctx_seed(ctx), n, threads);
	CU_CHECK(g->api.malloc_(&d_a, nn), "cudaMalloc(A)");
	CU_CHECK(g->api.malloc_(&d_bt, nn), "cudaMalloc(B)");
	CU_CHECK(g->api.malloc_(&d_c, nn * sizeof(int32_t)), "cudaMalloc(C)");
	CU_CHECK(g->api.memcpy_(d_a, h_a, nn, CUDA_MEMCPY_H2D), "cudaMemcpy(A)");
	CU_CHECK(g->api.memcpy_(d_bt, poh_ctx_bt(ctx), nn, CUDA_MEMCPY_H2D), "cudaMemcpy(B)");
	for (unsigned r = 0; r < rounds; r++) {
		cublas_status s = g->api.gemm_ex(g->blas, CUBLAS_OP_T_, CUBLAS_OP_N_, (int)n,
		    (int)n, (int)n, &alpha, d_bt, CUDA_R_8I_, (int)n, d_a, CUDA_R_8I_, (int)n,
		    &beta, d_c, CUDA_R_32I_, (int)n, CUBLAS_COMPUTE_32I_, CUBLAS_GEMM_DEFAULT_);
		if (s != 0) {
			rc = troop_error_set(TROOP_ERR, "cublasGemmEx (int8, %zu x %zu) failed: "
			    "status %d", n, n, s);
			goto out;
		}
		if (g->use_kernel) {
			cu_devptr pc = (cu_devptr)(uintptr_t)d_c, pa = (cu_devptr)(uintptr_t)d_a;
			unsigned long long count = nn;
			void *params[] = { &pc, &pa, &count };
			unsigned blocks = (unsigned)((nn + MAP_BLOCK - 1) / MAP_BLOCK);
			cu_result cr = g->api.cu_launch_kernel(g->map_fn, blocks, 1, 1, MAP_BLOCK, 1,
			    1, 0, NULL, params, NULL);
			if (cr != 0) {
				rc = troop_error_set(TROOP_ERR, "cuLaunchKernel(map): error %d", cr);
				goto out;
			}
		} else {
			CU_CHECK(g->api.memcpy_(h_c, d_c, nn * sizeof(int32_t), CUDA_MEMCPY_D2H),
			    "cudaMemcpy(C)");
			poh_map_buffer(h_a, h_c, nn, threads);
			CU_CHECK(g->api.memcpy_(d_a, h_a, nn, CUDA_MEMCPY_H2D), "cudaMemcpy(A)");
		}
		if (progress) {
			CU_CHECK(g->api.synchronize(), "cudaDeviceSynchronize");
			if (progress(arg, (uint64_t)(r + 1) * n, (uint64_t)rounds * n) != 0) {
				rc = troop_error_set(TROOP_ERR, "cancelled");
				goto out;
			}
		}
	}
	CU_CHECK(g->api.memcpy_(out, d_a, nn, CUDA_MEMCPY_D2H), "cudaMemcpy(result)");
out:
	if (d_a)
		g->api.free_(d_a);
	if (d_bt)
		g->api.free_(d_bt);
	if (d_c)
		g->api.free_(d_c);
	free(h_a);
	free(h_c);
	return rc;
}
