/*
 * test_poh_cuda_load.c - cuBLAS (about 150 MB mapped) is loaded only when
 * the CUDA runtime finds a device, and unloaded on every failure and when
 * the GPU is closed (src/worker/poh_cuda.c).
 *
 * Fake libcudart.so and libcublas.so, compiled here with `cc -shared`,
 * stand in for CUDA: the runtime reports FAKE_CUDA_COUNT devices, and
 * cublasCreate_v2 fails (so an open that got as far as cuBLAS fails after
 * loading it).  Whether the fake cuBLAS is loaded is read from
 * /proc/self/maps.  Where the real CUDA libraries are installed without a
 * GPU (this build machine), the same is checked for the real libcublas.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "poh_cuda.h"
#include "poh_worker.h"
#include "subproc.h"

static const char fake_cudart_src[] =
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"int cudaGetDeviceCount(int *c) { const char *s = getenv(\"FAKE_CUDA_COUNT\");\n"
	"  *c = s ? atoi(s) : 0; return *c > 0 ? 0 : 100; }\n"
	"int cudaSetDevice(int d) { (void)d; return 0; }\n"
	"int cudaMalloc(void **p, size_t n) { *p = malloc(n ? n : 1); return *p ? 0 : 2; }\n"
	"int cudaFree(void *p) { free(p); return 0; }\n"
	"int cudaMemcpy(void *d, const void *s, size_t n, int k) { (void)k; memcpy(d, s, n);\n"
	"  return 0; }\n"
	"int cudaDeviceSynchronize(void) { return 0; }\n"
	"int cudaMemGetInfo(size_t *f, size_t *t) { *f = *t = 1u << 30; return 0; }\n"
	"const char *cudaGetErrorString(int e) { return e == 100 ? \"no CUDA-capable device "
	"is detected\" : \"fake error\"; }\n"
	"int cudaRuntimeGetVersion(int *v) { *v = 12040; return 0; }\n";

static const char fake_cublas_src[] =
	"int cublasCreate_v2(void **h) { *h = 0; return 1; }\n"
	"int cublasDestroy_v2(void *h) { (void)h; return 0; }\n"
	"int cublasGemmEx(void) { return 13; }\n";

static char dir[256], cudart[400], cublas[400];

static bool build(const char *out, const char *src_text, const char *name)
{
	char src[400], log[4096];
	int status = -1;
	FILE *f;

	snprintf(src, sizeof(src), "%s/%s.c", dir, name);
	f = fopen(src, "w");
	if (!f)
		return false;
	fputs(src_text, f);
	fclose(f);
	const char *argv[] = { "cc", "-shared", "-fPIC", "-O0", "-o", out, src, NULL };
	return subproc_capture(log, sizeof(log), NULL, argv, 60000, &status) == 0 &&
	    status == 0 && access(out, R_OK) == 0;
}

/* Whether a mapping of this process's names `needle`. */
static bool mapped(const char *needle)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			found = true;
	fclose(f);
	return found;
}

static int group_setup(void **state)
{
	const char *t = getenv("TMPDIR");

	(void)state;
	snprintf(dir, sizeof(dir), "%s/troop-test-cuda-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cudart, sizeof(cudart), "%s/libfakecudart.so", dir);
	snprintf(cublas, sizeof(cublas), "%s/libfakecublas.so", dir);
	if (!build(cudart, fake_cudart_src, "cudart") || !build(cublas, fake_cublas_src, "cublas")) {
		fprintf(stderr, "cannot compile the fake CUDA libraries with cc\n");
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[400];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_no_device_no_cublas(void **state)
{
	poh_cuda_libs libs = { cudart, cublas, "libtroop-no-such-cuda.so.1" };
	poh_cuda *g = NULL;

	(void)state;
	setenv("FAKE_CUDA_COUNT", "0", 1);
	assert_int_equal(poh_cuda_open(&g, 0, &libs), TROOP_EUNAVAIL);
	assert_null(g);
	assert_non_null(strstr(troop_error_msg(), "no NVIDIA GPU"));
	assert_true(mapped("libfakecudart.so"));
	assert_false(mapped("libfakecublas.so"));
}

static void test_failure_unloads_cublas(void **state)
{
	poh_cuda_libs libs = { cudart, cublas, "libtroop-no-such-cuda.so.1" };
	poh_cuda *g = NULL;

	(void)state;
	/* a device: cuBLAS is loaded, cublasCreate fails, cuBLAS goes again */
	setenv("FAKE_CUDA_COUNT", "1", 1);
	assert_int_equal(poh_cuda_open(&g, 0, &libs), TROOP_EUNAVAIL);
	assert_null(g);
	assert_non_null(strstr(troop_error_msg(), "cublasCreate"));
	assert_false(mapped("libfakecublas.so"));
}

static void test_engine_without_gpu_maps_no_cublas(void **state)
{
	poh_cuda_libs libs = { cudart, cublas, "libtroop-no-such-cuda.so.1" };
	poh_engine_opts o = { .device = POH_DEVICE_AUTO, .threads = 1, .cuda_libs = &libs };
	poh_engine *e = NULL;

	(void)state;
	setenv("FAKE_CUDA_COUNT", "0", 1);
	assert_int_equal(poh_engine_open(&e, &o), 0);
	assert_false(poh_engine_is_gpu(e));
	assert_false(mapped("libfakecublas.so"));
	poh_engine_close(e);
}

/* The real libraries, where installed: with no GPU, no libcublas mapped. */
static void test_real_libraries_without_gpu(void **state)
{
	poh_cuda *g = NULL;

	(void)state;
	if (poh_cuda_open(&g, 0, NULL) == 0) {
		/* a real GPU: opened, and closed again without cuBLAS left */
		poh_cuda_close(g);
		assert_false(mapped("libcublas.so"));
		return;
	}
	assert_null(g);
	assert_false(mapped("libcublas.so"));
	assert_false(mapped("libcublasLt.so"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_device_no_cublas),
		cmocka_unit_test(test_failure_unloads_cublas),
		cmocka_unit_test(test_engine_without_gpu_maps_no_cublas),
		cmocka_unit_test(test_real_libraries_without_gpu),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
