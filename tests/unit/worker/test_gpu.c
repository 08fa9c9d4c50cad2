/*
 * test_gpu.c - GPU probing and the donate policy, without a GPU.
 *
 * The nvidia-smi path runs fake `nvidia-smi` scripts written into a
 * temporary directory put first on $PATH; the NVML path loads fake
 * libnvidia-ml.so.1 libraries that this test compiles with `cc -shared`
 * (one exporting the versioned _v2 symbols, one only the old names, one
 * exporting nothing) and whose answers come from FAKE_NVML_* variables.
 * The policy is a pure function and is driven sample by sample.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "gpu.h"
#include "subproc.h"

/* ---- helpers ------------------------------------------------------------- */

static char tmp_root[256];
static char *saved_path;
static bool have_cc;

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static char *read_fixture(const char *name)
{
	const char *dir = getenv("TROOP_FIXTURES");
	char path[512];
	static char buf[8192];

	if (!dir)
		fail_msg("TROOP_FIXTURES is not set (run through ctest)");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* A directory under tmp_root for one test. */
static void make_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmp_root, name);
	if (mkdir(out, 0700) != 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", out, strerror(errno));
}

static void path_prepend(const char *dir)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s:%s", dir, saved_path ? saved_path : "/usr/bin:/bin");
	setenv("PATH", buf, 1);
}

static void path_restore(void)
{
	if (saved_path)
		setenv("PATH", saved_path, 1);
	else
		unsetenv("PATH");
}

/* Write a fake nvidia-smi into dir/name/ that checks its arguments and runs
 * `body`; returns that directory (static buffer). */
static const char *fake_smi(const char *name, const char *body)
{
	static char dir[512];
	char file[600];
	char script[12000];

	make_dir(dir, sizeof(dir), name);
	snprintf(file, sizeof(file), "%s/nvidia-smi", dir);
	snprintf(script, sizeof(script),
	    "#!/bin/sh\n"
	    "[ \"$1\" = \"--query-gpu=utilization.gpu,memory.used,memory.total,name\" ] || exit 64\n"
	    "[ \"$2\" = \"--format=csv,noheader,nounits\" ] || exit 64\n"
	    "[ $# -eq 2 ] || exit 64\n"
	    "%s\n", body);
	write_file(file, script, 0755);
	return dir;
}

/* The fake NVML.  FAKE_V2: the versioned names and the v2 memory struct
 * (the version field is checked); FAKE_V1: only the old names; FAKE_EMPTY:
 * no NVML symbols at all.  Values: FAKE_NVML_COUNT, FAKE_NVML_UTIL (comma
 * list per device; negative = not supported), FAKE_NVML_TOTAL_MB,
 * FAKE_NVML_USED_MB, FAKE_NVML_RESERVED_MB (v2 only), FAKE_NVML_NAME,
 * FAKE_NVML_INIT_FAIL; FAKE_NVML_LOG names a file that gets "init" and
 * "shutdown" lines. */
static const char fake_nvml_src[] =
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"typedef struct { unsigned int gpu, memory; } util_t;\n"
	"typedef struct { unsigned long long total, free, used; } mem1_t;\n"
	"typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } mem2_t;\n"
	"typedef struct dev *dev_t_;\n"
	"static int inited;\n"
	"static long envl(const char *n, long d) { const char *s = getenv(n); return s ? strtol(s, 0, 10) : d; }\n"
	"static long nth(const char *n, unsigned i, long d) {\n"
	"  const char *s = getenv(n); if (!s) return d;\n"
	"  for (unsigned k = 0; k < i; k++) { s = strchr(s, ','); if (!s) return d; s++; }\n"
	"  return strtol(s, 0, 10); }\n"
	"static void note(const char *what) { const char *f = getenv(\"FAKE_NVML_LOG\");\n"
	"  if (f) { FILE *o = fopen(f, \"a\"); if (o) { fprintf(o, \"%s\\n\", what); fclose(o); } } }\n"
	"static unsigned idx(dev_t_ d) { return (unsigned)((unsigned long)d - 1); }\n"
	"static int init(void) { if (envl(\"FAKE_NVML_INIT_FAIL\", 0)) return 9; inited++; note(\"init\"); return 0; }\n"
	"static int count(unsigned *c) { if (!inited) return 1; *c = (unsigned)envl(\"FAKE_NVML_COUNT\", 1); return 0; }\n"
	"static int handle(unsigned i, dev_t_ *h) { if (!inited) return 1;\n"
	"  if (i >= (unsigned)envl(\"FAKE_NVML_COUNT\", 1)) return 2; *h = (dev_t_)(unsigned long)(i + 1); return 0; }\n"
	"#define MB 1048576ull\n"
	"#ifndef FAKE_EMPTY\n"
	"int nvmlShutdown(void) { inited--; note(\"shutdown\"); return 0; }\n"
	"const char *nvmlErrorString(int r) { return r == 9 ? \"Driver Not Loaded\" : \"Unknown Error\"; }\n"
	"int nvmlDeviceGetName(dev_t_ d, char *b, unsigned len) {\n"
	"  const char *n = getenv(\"FAKE_NVML_NAME\"); snprintf(b, len, \"%s %u\", n ? n : \"Fake GPU\", idx(d)); return 0; }\n"
	"int nvmlDeviceGetUtilizationRates(dev_t_ d, util_t *u) {\n"
	"  long v = nth(\"FAKE_NVML_UTIL\", idx(d), 0); if (v < 0) return 3; u->gpu = (unsigned)v; u->memory = 0; return 0; }\n"
	"#endif\n"
	"#ifdef FAKE_V2\n"
	"int nvmlInit_v2(void) { return init(); }\n"
	"int nvmlDeviceGetCount_v2(unsigned *c) { return count(c); }\n"
	"int nvmlDeviceGetHandleByIndex_v2(unsigned i, dev_t_ *h) { return handle(i, h); }\n"
	"int nvmlDeviceGetMemoryInfo_v2(dev_t_ d, mem2_t *m) {\n"
	"  if (m->version != (unsigned)(sizeof(mem2_t) | (2u << 24))) return 25;\n"
	"  m->total = envl(\"FAKE_NVML_TOTAL_MB\", 0) * MB; m->used = envl(\"FAKE_NVML_USED_MB\", 0) * MB;\n"
	"  m->reserved = envl(\"FAKE_NVML_RESERVED_MB\", 0) * MB; m->free = m->total - m->used - m->reserved; return 0; }\n"
	"#endif\n"
	"#ifdef FAKE_V1\n"
	"int nvmlInit(void) { return init(); }\n"
	"int nvmlDeviceGetCount(unsigned *c) { return count(c); }\n"
	"int nvmlDeviceGetHandleByIndex(unsigned i, dev_t_ *h) { return handle(i, h); }\n"
	"int nvmlDeviceGetMemoryInfo(dev_t_ d, mem1_t *m) { (void)d;\n"
	"  m->total = envl(\"FAKE_NVML_TOTAL_MB\", 0) * MB; m->used = envl(\"FAKE_NVML_USED_MB\", 0) * MB;\n"
	"  m->free = m->total - m->used; return 0; }\n"
	"#endif\n";

static char lib_v2[600], lib_v1[600], lib_empty[600];

/* Compile the fake NVML with `-D<define>` into dir/libnvidia-ml.so.1. */
static bool build_fake_nvml(char *out, size_t outlen, const char *dirname, const char *define)
{
	char dir[512], src[600], def[64];
	char log[4096];
	int status = -1;

	make_dir(dir, sizeof(dir), dirname);
	snprintf(src, sizeof(src), "%s/fake_nvml.c", dir);
	snprintf(out, outlen, "%s/libnvidia-ml.so.1", dir);
	snprintf(def, sizeof(def), "-D%s", define);
	write_file(src, fake_nvml_src, 0644);
	const char *argv[] = { "cc", "-shared", "-fPIC", "-O0", def, "-o", out, src, NULL };
	int rc = subproc_capture(log, sizeof(log), NULL, argv, 60000, &status);
	return rc == 0 && status == 0 && access(out, R_OK) == 0;
}

static void clear_fake_env(void)
{
	unsetenv("FAKE_NVML_COUNT");
	unsetenv("FAKE_NVML_UTIL");
	unsetenv("FAKE_NVML_TOTAL_MB");
	unsetenv("FAKE_NVML_USED_MB");
	unsetenv("FAKE_NVML_RESERVED_MB");
	unsetenv("FAKE_NVML_NAME");
	unsetenv("FAKE_NVML_INIT_FAIL");
	unsetenv("FAKE_NVML_LOG");
}

static int group_setup(void **state)
{
	const char *t = getenv("TMPDIR");

	snprintf(tmp_root, sizeof(tmp_root), "%s/troop-test-gpu-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(tmp_root))
		return -1;
	const char *p = getenv("PATH");
	saved_path = p ? strdup(p) : NULL;
	have_cc = build_fake_nvml(lib_v2, sizeof(lib_v2), "nvml-v2", "FAKE_V2") &&
	    build_fake_nvml(lib_v1, sizeof(lib_v1), "nvml-v1", "FAKE_V1") &&
	    build_fake_nvml(lib_empty, sizeof(lib_empty), "nvml-empty", "FAKE_EMPTY");
	if (!have_cc)
		fprintf(stderr, "test_gpu: cannot build the fake NVML with cc; NVML tests skip\n");
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[400];
	int status;
	char out[16];

	path_restore();
	free(saved_path);
	if (tmp_root[0] && strncmp(tmp_root, "/", 1) == 0) {
		snprintf(cmd, sizeof(cmd), "%s", tmp_root);
		const char *argv[] = { "rm", "-rf", "--", cmd, NULL };
		subproc_capture(out, sizeof(out), NULL, argv, 10000, &status);
	}
	return 0;
}

static int test_setup(void **state)
{
	clear_fake_env();
	setenv("TROOP_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
	path_restore();
	return 0;
}

/* ---- CSV parser ---------------------------------------------------------- */

static void test_csv_fixture(void **state)
{
	const char *csv = read_fixture("nvidia_smi_query.csv");
	gpu_info g;

	assert_int_equal(gpu_parse_smi_csv(&g, csv, strlen(csv)), 0);
	assert_string_equal(g.source, "nvidia-smi");
	assert_int_equal(g.count, 2);
	assert_int_equal(g.ndevices, 2);
	assert_string_equal(g.devices[0].name, "NVIDIA H100 80GB HBM3");
	assert_string_equal(g.devices[1].name, "NVIDIA GeForce RTX 4090");
	assert_string_equal(g.name, "NVIDIA H100 80GB HBM3");
	assert_int_equal(g.devices[0].util_percent, 37);
	assert_int_equal(g.devices[1].util_percent, 0);
	assert_int_equal(g.devices[0].vram_used_mb, 18432);
	assert_int_equal(g.devices[0].vram_total_mb, 81559);
	assert_int_equal(g.devices[0].vram_free_mb, 81559 - 18432);
	assert_int_equal(g.devices[1].vram_free_mb, 24564 - 1);
	assert_int_equal(g.util_percent, 37);
	assert_int_equal(g.vram_total_mb, 81559 + 24564);
	assert_int_equal(g.vram_free_mb, (81559 - 18432) + (24564 - 1));
}

static void test_csv_not_available(void **state)
{
	const char csv[] =
	    "[N/A], [N/A], [N/A], NVIDIA GH200 480GB\r\n"
	    "\n"
	    "12, [Not Supported], 16384, Tesla T4\r\n"
	    "[Not Supported], 100, 200, [N/A]\n";
	gpu_info g;

	assert_int_equal(gpu_parse_smi_csv(&g, csv, strlen(csv)), 0);
	assert_int_equal(g.count, 3);
	assert_int_equal(g.devices[0].util_percent, -1);
	assert_int_equal(g.devices[0].vram_total_mb, -1);
	assert_int_equal(g.devices[0].vram_free_mb, -1);
	assert_string_equal(g.devices[0].name, "NVIDIA GH200 480GB");
	assert_int_equal(g.devices[1].util_percent, 12);
	assert_int_equal(g.devices[1].vram_used_mb, -1);
	assert_int_equal(g.devices[1].vram_total_mb, 16384);
	assert_int_equal(g.devices[1].vram_free_mb, -1);
	assert_string_equal(g.devices[1].name, "Tesla T4");
	assert_string_equal(g.devices[2].name, "");
	assert_int_equal(g.devices[2].vram_free_mb, 100);
	/* Max over the known ones; totals over the known ones. */
	assert_int_equal(g.util_percent, 12);
	assert_int_equal(g.vram_total_mb, 16384 + 200);
	assert_int_equal(g.vram_free_mb, 100);

	const char all_na[] = "[N/A], [N/A], [N/A], X\n";
	assert_int_equal(gpu_parse_smi_csv(&g, all_na, strlen(all_na)), 0);
	assert_int_equal(g.util_percent, -1);
	assert_int_equal(g.vram_total_mb, -1);
	assert_int_equal(g.vram_free_mb, -1);
}

static void test_csv_name_with_comma_and_many_gpus(void **state)
{
	char csv[4096] = "";
	gpu_info g;

	const char one[] = "5, 1, 2, Acme, Inc. Accelerator\n";
	assert_int_equal(gpu_parse_smi_csv(&g, one, strlen(one)), 0);
	assert_string_equal(g.name, "Acme, Inc. Accelerator");

	for (int i = 0; i < GPU_MAX + 4; i++) {
		char line[64];
		snprintf(line, sizeof(line), "%d, 10, 100, GPU%d\n", i, i);
		strcat(csv, line);
	}
	assert_int_equal(gpu_parse_smi_csv(&g, csv, strlen(csv)), 0);
	assert_int_equal(g.count, GPU_MAX + 4);
	assert_int_equal(g.ndevices, GPU_MAX);
	assert_string_equal(g.devices[GPU_MAX - 1].name, "GPU15");
	assert_int_equal(g.util_percent, GPU_MAX - 1);
	assert_int_equal(g.vram_total_mb, 100L * GPU_MAX);
}

static void test_csv_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"\n\n",
		"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
		"No devices were found\n",
		"37, 100\n",
		"37, x, 100, name\n",
		"37, 1.5, 100, name\n",
		"101, 1, 2, name\n",
		"-1, 1, 2, name\n",
		"[N/A, 1, 2, name\n",
		", 1, 2, name\n",
		"37, 99999999999999999999999, 2, name\n",
		"37, 1, 2, ok\nbroken line\n",
		"37, 1, 2, bad\x01name\n",
	};
	gpu_info g;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		troop_error_clear();
		int rc = gpu_parse_smi_csv(&g, bad[i], strlen(bad[i]));
		if (rc != TROOP_EINVAL)
			fail_msg("case %zu parsed (rc %d): %s", i, rc, bad[i]);
		assert_string_equal(g.source, "none");
		assert_int_equal(g.count, 0);
		assert_non_null(strstr(troop_error_msg(), "nvidia-smi"));
	}
	/* Not NUL-terminated input: only len bytes are read. */
	const char cut[] = "42, 1, 2, abcXXXX";
	assert_int_equal(gpu_parse_smi_csv(&g, cut, strlen(cut) - 4), 0);
	assert_string_equal(g.name, "abc");
}

/* ---- nvidia-smi through a fake binary ------------------------------------ */

static void test_probe_fake_smi(void **state)
{
	const char *csv = read_fixture("nvidia_smi_query.csv");
	char body[9000];
	gpu_info g;

	snprintf(body, sizeof(body), "cat <<'EOF'\n%sEOF\n", csv);
	path_prepend(fake_smi("smi-ok", body));
	assert_int_equal(gpu_probe(&g), 0);
	assert_string_equal(g.source, "nvidia-smi");
	assert_int_equal(g.count, 2);
	assert_int_equal(g.util_percent, 37);
	assert_string_equal(g.devices[1].name, "NVIDIA GeForce RTX 4090");
	assert_int_equal(g.vram_total_mb, 81559 + 24564);
}

static void test_probe_fake_smi_na(void **state)
{
	gpu_info g;

	path_prepend(fake_smi("smi-na", "echo '[N/A], [N/A], 81559, NVIDIA H100 80GB HBM3'"));
	assert_int_equal(gpu_probe_smi(&g), 0);
	assert_int_equal(g.count, 1);
	assert_int_equal(g.util_percent, -1);
	assert_int_equal(g.vram_total_mb, 81559);
	assert_int_equal(g.vram_free_mb, -1);
	assert_int_equal(gpu_probe(&g), 0);
	assert_string_equal(g.source, "nvidia-smi");
}

static void test_probe_fake_smi_fails(void **state)
{
	gpu_info g;

	path_prepend(fake_smi("smi-fail",
	    "echo 'NVIDIA-SMI has failed because it could not communicate with the driver'\nexit 1"));
	assert_int_equal(gpu_probe_smi(&g), TROOP_EUNAVAIL);
	assert_non_null(strstr(troop_error_msg(), "status 1"));
	assert_int_equal(gpu_probe(&g), 0);
	assert_string_equal(g.source, "none");
	assert_int_equal(g.count, 0);
	assert_int_equal(g.util_percent, -1);
	assert_int_equal(g.vram_total_mb, 0);
}

static void test_probe_nothing(void **state)
{
	char dir[512];
	gpu_info g;

	/* Only an empty directory on PATH: no nvidia-smi, no NVML. */
	make_dir(dir, sizeof(dir), "empty-bin");
	setenv("PATH", dir, 1);
	assert_int_equal(gpu_probe_smi(&g), TROOP_ENOTFOUND);
	assert_int_equal(gpu_probe_nvml(&g, NULL), TROOP_ENOTFOUND);
	assert_non_null(strstr(troop_error_msg(), "/nonexistent/libnvidia-ml.so.1"));
	assert_int_equal(gpu_probe(&g), 0);
	assert_string_equal(g.source, "none");
	assert_int_equal(g.count, 0);
	assert_string_equal(g.name, "");
}

/* ---- NVML through fake libraries ----------------------------------------- */

static int count_lines(const char *path, const char *word)
{
	char line[64];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, word, strlen(word)) == 0 && line[strlen(word)] == '\n')
			n++;
	fclose(f);
	return n;
}

static void test_nvml_v2(void **state)
{
	char log[600];
	gpu_info g;

	if (!have_cc)
		skip();
	snprintf(log, sizeof(log), "%s/nvml-v2.log", tmp_root);
	unlink(log);
	setenv("FAKE_NVML_LOG", log, 1);
	setenv("TROOP_NVML_LIB", lib_v2, 1);
	setenv("FAKE_NVML_COUNT", "2", 1);
	setenv("FAKE_NVML_UTIL", "15,64", 1);
	setenv("FAKE_NVML_TOTAL_MB", "24576", 1);
	setenv("FAKE_NVML_USED_MB", "1000", 1);
	setenv("FAKE_NVML_RESERVED_MB", "300", 1);
	setenv("FAKE_NVML_NAME", "Fake RTX", 1);

	assert_int_equal(gpu_probe(&g), 0);
	assert_string_equal(g.source, "nvml");
	assert_int_equal(g.count, 2);
	assert_string_equal(g.name, "Fake RTX 0");
	assert_string_equal(g.devices[1].name, "Fake RTX 1");
	assert_int_equal(g.devices[0].util_percent, 15);
	assert_int_equal(g.devices[1].util_percent, 64);
	assert_int_equal(g.util_percent, 64);
	/* The v2 struct was accepted (its version field checked) and its
	 * reserved memory is not counted as free. */
	assert_int_equal(g.devices[0].vram_total_mb, 24576);
	assert_int_equal(g.devices[0].vram_used_mb, 1000);
	assert_int_equal(g.devices[0].vram_free_mb, 24576 - 1000 - 300);
	assert_int_equal(g.vram_total_mb, 2 * 24576);
	assert_int_equal(g.vram_free_mb, 2 * (24576 - 1000 - 300));
	/* One probe: one init, one shutdown. */
	assert_int_equal(count_lines(log, "init"), 1);
	assert_int_equal(count_lines(log, "shutdown"), 1);
}

static void test_nvml_v1_fallback(void **state)
{
	gpu_info g;

	if (!have_cc)
		skip();
	setenv("TROOP_NVML_LIB", lib_v1, 1);
	setenv("FAKE_NVML_COUNT", "1", 1);
	setenv("FAKE_NVML_UTIL", "88", 1);
	setenv("FAKE_NVML_TOTAL_MB", "8192", 1);
	setenv("FAKE_NVML_USED_MB", "2048", 1);
	setenv("FAKE_NVML_RESERVED_MB", "300", 1);  /* v1 has no reserved field */

	assert_int_equal(gpu_probe_nvml(&g, NULL), 0);
	assert_string_equal(g.source, "nvml");
	assert_int_equal(g.count, 1);
	assert_string_equal(g.name, "Fake GPU 0");
	assert_int_equal(g.util_percent, 88);
	assert_int_equal(g.vram_total_mb, 8192);
	assert_int_equal(g.devices[0].vram_used_mb, 2048);
	assert_int_equal(g.vram_free_mb, 8192 - 2048);
}

static void test_nvml_not_supported_util(void **state)
{
	gpu_info g;

	if (!have_cc)
		skip();
	setenv("FAKE_NVML_COUNT", "2", 1);
	setenv("FAKE_NVML_UTIL", "-1,-1", 1);
	setenv("FAKE_NVML_TOTAL_MB", "100", 1);
	assert_int_equal(gpu_probe_nvml(&g, lib_v2), 0);
	assert_int_equal(g.devices[0].util_percent, -1);
	assert_int_equal(g.util_percent, -1);
	assert_int_equal(g.vram_total_mb, 200);
}

static void test_nvml_unusable_falls_back(void **state)
{
	gpu_info g;

	if (!have_cc)
		skip();
	/* A library without the NVML symbols. */
	assert_int_equal(gpu_probe_nvml(&g, lib_empty), TROOP_ENOTFOUND);
	assert_non_null(strstr(troop_error_msg(), "nvmlInit"));

	/* nvmlInit fails (no driver): nvidia-smi is used instead. */
	setenv("TROOP_NVML_LIB", lib_v2, 1);
	setenv("FAKE_NVML_INIT_FAIL", "1", 1);
	assert_int_equal(gpu_probe_nvml(&g, NULL), TROOP_EUNAVAIL);
	assert_non_null(strstr(troop_error_msg(), "Driver Not Loaded"));
	path_prepend(fake_smi("smi-after-nvml", "echo '55, 10, 20, Smi GPU'"));
	assert_int_equal(gpu_probe(&g), 0);
	assert_string_equal(g.source, "nvidia-smi");
	assert_int_equal(g.util_percent, 55);
	assert_string_equal(g.name, "Smi GPU");
}

/* ---- donate policy --------------------------------------------------------- */

static void test_policy_idle_to_busy(void **state)
{
	gpu_policy p = { GPU_DONATE_IDLE, GPU_BUSY_THRESHOLD_DEFAULT };
	gpu_policy_state st = { 0 };

	assert_false(gpu_policy_step(&st, &p, 5, 0));
	assert_false(gpu_policy_step(&st, &p, 90, 0));   /* one high sample */
	assert_false(st.busy);
	assert_true(gpu_policy_step(&st, &p, 90, 0));    /* two in a row */
	assert_true(gpu_policy_step(&st, &p, 100, 0));
	assert_false(gpu_policy_step(&st, &p, 10, 0));   /* one low: idle again */
	assert_false(gpu_policy_step(&st, &p, 90, 0));   /* and the count restarts */
	assert_true(gpu_policy_step(&st, &p, 90, 0));
}

static void test_policy_streak_broken(void **state)
{
	gpu_policy p = { GPU_DONATE_IDLE, 50 };
	gpu_policy_state st = { 0 };

	for (int i = 0; i < 5; i++) {
		assert_false(gpu_policy_step(&st, &p, 80, 0));
		assert_false(gpu_policy_step(&st, &p, 20, 0));
	}
	/* Exactly the threshold counts as high; one below does not. */
	assert_false(gpu_policy_step(&st, &p, 50, 0));
	assert_true(gpu_policy_step(&st, &p, 50, 0));
	assert_false(gpu_policy_step(&st, &p, 49, 0));
}

static void test_policy_troop_job_running(void **state)
{
	gpu_policy p = { GPU_DONATE_IDLE, 30 };
	gpu_policy_state st = { 0 };

	/* Our own job keeps the GPU at 100%: that is not owner use. */
	for (int i = 0; i < 6; i++)
		assert_false(gpu_policy_step(&st, &p, 100, 1));
	/* The job's last high sample does not count towards a streak. */
	assert_false(gpu_policy_step(&st, &p, 100, 0));
	assert_true(gpu_policy_step(&st, &p, 100, 0));
	/* Already BUSY when a job starts: stays BUSY while high... */
	assert_true(gpu_policy_step(&st, &p, 95, 2));
	/* ...and leaves on the first low sample. */
	assert_false(gpu_policy_step(&st, &p, 3, 2));
}

static void test_policy_unknown_and_always(void **state)
{
	gpu_policy idle = { GPU_DONATE_IDLE, 30 };
	gpu_policy always = { GPU_DONATE_ALWAYS, 30 };
	gpu_policy_state st = { 0 };

	assert_false(gpu_policy_step(&st, &idle, 90, 0));
	assert_true(gpu_policy_step(&st, &idle, 90, 0));
	assert_false(gpu_policy_step(&st, &idle, -1, 0));  /* cannot see: not busy */
	assert_false(gpu_policy_step(&st, &idle, -1, 0));

	memset(&st, 0, sizeof(st));
	for (int i = 0; i < 6; i++)
		assert_false(gpu_policy_step(&st, &always, 100, 0));
	assert_int_equal(st.high_streak, 0);
}

static void test_policy_flags(void **state)
{
	gpu_donate_mode m = GPU_DONATE_ALWAYS;

	assert_int_equal(gpu_parse_donate(&m, "idle"), 0);
	assert_int_equal(m, GPU_DONATE_IDLE);
	assert_int_equal(gpu_parse_donate(&m, "ALWAYS"), 0);
	assert_int_equal(m, GPU_DONATE_ALWAYS);
	assert_int_equal(gpu_parse_donate(&m, "never"), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "--donate"));
	assert_int_equal(gpu_parse_donate(&m, NULL), TROOP_EINVAL);

	assert_int_equal(gpu_check_threshold(1), 0);
	assert_int_equal(gpu_check_threshold(100), 0);
	assert_int_equal(gpu_check_threshold(0), TROOP_EINVAL);
	assert_int_equal(gpu_check_threshold(101), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "--busy-threshold"));

	gpu_sampler *s = (gpu_sampler *)&m;
	gpu_policy bad = { GPU_DONATE_IDLE, 0 };
	assert_int_equal(gpu_sampler_new(&s, &bad), TROOP_EINVAL);
	assert_null(s);
	gpu_sampler_free(NULL);
}

/* ---- sampler end to end over the fake NVML ------------------------------- */

static void test_sampler_nvml(void **state)
{
	gpu_policy p = { GPU_DONATE_IDLE, 30 };
	gpu_sampler *s = NULL;
	gpu_info g;
	char log[600];

	if (!have_cc)
		skip();
	snprintf(log, sizeof(log), "%s/sampler.log", tmp_root);
	unlink(log);
	setenv("FAKE_NVML_LOG", log, 1);
	setenv("TROOP_NVML_LIB", lib_v2, 1);
	setenv("FAKE_NVML_TOTAL_MB", "1000", 1);
	setenv("FAKE_NVML_UTIL", "80", 1);

	assert_int_equal(gpu_sampler_new(&s, &p), 0);
	assert_false(gpu_sampler_busy(s));
	assert_string_equal(gpu_sampler_last(s)->source, "none");
	assert_false(gpu_sampler_sample(s, 0, &g));
	assert_string_equal(g.source, "nvml");
	assert_int_equal(g.util_percent, 80);
	assert_true(gpu_sampler_sample(s, 0, NULL));
	assert_true(gpu_sampler_busy(s));

	setenv("FAKE_NVML_UTIL", "4", 1);
	assert_false(gpu_sampler_sample(s, 0, &g));
	assert_int_equal(g.util_percent, 4);
	assert_int_equal(gpu_sampler_last(s)->util_percent, 4);

	setenv("FAKE_NVML_UTIL", "99", 1);
	assert_false(gpu_sampler_sample(s, 1, NULL));
	assert_false(gpu_sampler_sample(s, 1, NULL));
	gpu_sampler_free(s);

	/* NVML stayed loaded across the five samples: initialised once. */
	assert_int_equal(count_lines(log, "init"), 1);
	assert_int_equal(count_lines(log, "shutdown"), 1);
}

static void test_sampler_always(void **state)
{
	gpu_policy p = { GPU_DONATE_ALWAYS, 30 };
	gpu_sampler *s = NULL;

	path_prepend(fake_smi("smi-always", "echo '100, 10, 20, Busy GPU'"));
	assert_int_equal(gpu_sampler_new(&s, &p), 0);
	for (int i = 0; i < 4; i++)
		assert_false(gpu_sampler_sample(s, 0, NULL));
	assert_string_equal(gpu_sampler_last(s)->source, "nvidia-smi");
	assert_int_equal(gpu_sampler_last(s)->util_percent, 100);
	gpu_sampler_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_csv_fixture, test_setup),
		cmocka_unit_test_setup(test_csv_not_available, test_setup),
		cmocka_unit_test_setup(test_csv_name_with_comma_and_many_gpus, test_setup),
		cmocka_unit_test_setup(test_csv_garbage, test_setup),
		cmocka_unit_test_setup(test_probe_fake_smi, test_setup),
		cmocka_unit_test_setup(test_probe_fake_smi_na, test_setup),
		cmocka_unit_test_setup(test_probe_fake_smi_fails, test_setup),
		cmocka_unit_test_setup(test_probe_nothing, test_setup),
		cmocka_unit_test_setup(test_nvml_v2, test_setup),
		cmocka_unit_test_setup(test_nvml_v1_fallback, test_setup),
		cmocka_unit_test_setup(test_nvml_not_supported_util, test_setup),
		cmocka_unit_test_setup(test_nvml_unusable_falls_back, test_setup),
		cmocka_unit_test_setup(test_policy_idle_to_busy, test_setup),
		cmocka_unit_test_setup(test_policy_streak_broken, test_setup),
		cmocka_unit_test_setup(test_policy_troop_job_running, test_setup),
		cmocka_unit_test_setup(test_policy_unknown_and_always, test_setup),
		cmocka_unit_test_setup(test_policy_flags, test_setup),
		cmocka_unit_test_setup(test_sampler_nvml, test_setup),
		cmocka_unit_test_setup(test_sampler_always, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
