/*
 * poh_cuda.h - the GPU path of proof-of-hardware int8-gemm-chain-v1: each
 * round is one cuBLAS int8 GEMM (cublasGemmEx, CUDA_R_8I inputs, CUDA_R_32I
 * output, CUBLAS_COMPUTE_32I), then the same int8 mapping as the CPU
 * (poh_map) done on the device by a small PTX kernel, or on the host when
 * the driver cannot load it.
 *
 * libcudart, libcublas and (for the mapping kernel) libcuda are loaded
 * with dlopen: the program has no link-time dependency on CUDA and runs
 * unchanged where there is none.  cuBLAS (about 150 MB mapped) is loaded
 * only once the runtime has found a device, and unloaded by
 * poh_cuda_close and on every failure; the runtime and the driver (small)
 * stay loaded for the rest of the process once opened (CUDA does not
 * support unloading them).
 *
 * Status: compiled and unit-tested for the "no library / no device" paths
 * only; it has not been run on a GPU (docs/PROTOCOL-POH.md).  poh_cuda_open
 * therefore runs a small self-test against the CPU before it reports a
 * device usable, and the worker spot-checks GPU results (poh_worker.c).
 *
 * A poh_cuda is used by one thread at a time (not thread-safe); it may
 * move between threads.
 */
#ifndef TROOP_POH_CUDA_H
#define TROOP_POH_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "poh.h"

typedef struct poh_cuda poh_cuda;

/* Library file names to dlopen instead of the defaults (any member may be
 * NULL for its default list: libcudart.so[.13|.12|.11.0], libcublas.so[.13
 * |.12|.11], libcuda.so.1). */
typedef struct {
	const char *cudart;
	const char *cublas;
	const char *cuda;     /* driver; only for the device-side mapping kernel */
} poh_cuda_libs;

/* Load the libraries, open CUDA device `device`, create a cuBLAS handle,
 * load the mapping kernel if the driver allows, and run a self-test (a
 * 64 x 64 chain compared with the CPU).  Returns 0 and *out, or
 * TROOP_EUNAVAIL with a message saying why (library missing, no device,
 * driver too old, self-test mismatch); *out is then NULL.  Thread-safe. */
int poh_cuda_open(poh_cuda **out, int device, const poh_cuda_libs *libs);

/* Release the device resources and unload cuBLAS.  NULL is fine. */
void poh_cuda_close(poh_cuda *g);

/* The device's name ("NVIDIA GeForce RTX 4090", or "CUDA device 0"). */
const char *poh_cuda_name(const poh_cuda *g);

/* Whether rounds are mapped on the device (true) or on the host. */
bool poh_cuda_maps_on_device(const poh_cuda *g);

/* Compute every final row of the challenge in `ctx` into out (n*n bytes,
 * row-major).  A is generated on the host with `threads` threads and
 * copied over with B transposed; each round runs on the GPU.  `progress`
 * (may be NULL) is called after each round with row-rounds done; non-zero
 * cancels.  Returns 0, TROOP_ENOMEM (host or device memory), TROOP_ERR (a
 * CUDA or cuBLAS call failed: the message names it; or cancelled). */
int poh_cuda_compute(int8_t *out, poh_cuda *g, const poh_ctx *ctx, int threads,
    poh_progress_fn progress, void *arg);

/* Stop using the device-side mapping kernel (host mapping from then on);
 * the worker does it after a failed spot check. */
void poh_cuda_disable_kernel(poh_cuda *g);

/* ---- the entry points, as a table ------------------------------------------------ */
/*
 * poh_cuda_open fills this table from the libraries; tests fill it with a
 * host-memory fake that follows cuBLAS's documented (column-major)
 * semantics, so that the layout, the mapping and the fallbacks run
 * without a GPU.  Values are the ABI ones of cuda_runtime_api.h,
 * cublas_api.h, library_types.h and cuda.h.  Return codes: 0 success.
 * The driver members (cu_*) may all be NULL: rounds are then mapped on
 * the host.
 */
typedef int poh_cuda_err;

#define POH_CUDA_MEMCPY_H2D 1      /* cudaMemcpyHostToDevice */
#define POH_CUDA_MEMCPY_D2H 2      /* cudaMemcpyDeviceToHost */
#define POH_CUBLAS_OP_N 0
#define POH_CUBLAS_OP_T 1
#define POH_CUDA_R_8I 3
#define POH_CUDA_R_32I 10
#define POH_CUBLAS_COMPUTE_32I 72

typedef struct {
	poh_cuda_err (*get_device_count)(int *count);          /* cudaGetDeviceCount */
	poh_cuda_err (*set_device)(int dev);                   /* cudaSetDevice */
	poh_cuda_err (*malloc_)(void **p, size_t size);        /* cudaMalloc */
	poh_cuda_err (*free_)(void *p);                        /* cudaFree */
	poh_cuda_err (*memcpy_)(void *dst, const void *src, size_t count, int kind);
	poh_cuda_err (*synchronize)(void);                     /* cudaDeviceSynchronize */
	poh_cuda_err (*mem_get_info)(size_t *free_b, size_t *total_b);
	const char *(*error_string)(poh_cuda_err e);           /* cudaGetErrorString */
	poh_cuda_err (*runtime_version)(int *v);               /* cudaRuntimeGetVersion */
	int (*blas_create)(void **handle);                     /* cublasCreate_v2 */
	int (*blas_destroy)(void *handle);                     /* cublasDestroy_v2 */
	int (*gemm_ex)(void *handle, int transa, int transb, int m, int n, int k,
	    const void *alpha, const void *a, int atype, int lda, const void *b, int btype,
	    int ldb, const void *beta, void *c, int ctype, int ldc, int compute, int algo);
	/* driver API (libcuda), for the device-side mapping kernel */
	int (*cu_init)(unsigned flags);
	int (*cu_device_get)(int *dev, int ordinal);
	int (*cu_device_get_name)(char *name, int len, int dev);
	int (*cu_primary_retain)(void **ctx, int dev);
	int (*cu_primary_release)(int dev);
	int (*cu_ctx_set_current)(void *ctx);
	int (*cu_module_load_data)(void **mod, const void *image);
	int (*cu_module_unload)(void *mod);
	int (*cu_module_get_function)(void **fn, void *mod, const char *name);
	int (*cu_launch_kernel)(void *fn, unsigned gx, unsigned gy, unsigned gz,
	    unsigned bx, unsigned by, unsigned bz, unsigned shmem, void *stream, void **params,
	    void **extra);
} poh_cuda_api;

/* As poh_cuda_open, with the entry points given (copied) instead of
 * loaded.  The mapping kernel is the PTX function "troop_poh_map" taking
 * (const int32 *c, int8 *a, uint64 count), launched with 1-D blocks. */
int poh_cuda_open_with(poh_cuda **out, int device, const poh_cuda_api *api);

#endif
