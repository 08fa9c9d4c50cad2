/*
 * test_tailnet.c - choosing the advertised address from fake interface
 * lists, range boundaries, the loopback rule, and the `tailscale ip -4`
 * fallback through a fake `tailscale` script on $PATH that prints the
 * address from the tailscale_status.json fixture.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "subproc.h"
#include "tailnet.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char tmp_root[256];
static char *saved_path;

/* ---- helpers ------------------------------------------------------------- */

struct fake_ip {
	const char *addr;   /* NULL: fail */
	int calls;
};

static int fake_ip_fn(char *out, size_t outlen, void *arg)
{
	struct fake_ip *f = arg;

	f->calls++;
	if (!f->addr)
		return troop_error_set(TROOP_ENOTFOUND, "fake tailscale: none");
	snprintf(out, outlen, "%s", f->addr);
	return 0;
}

/* The fixture's first tailnet IPv4 address (Self.TailscaleIPs). */
static void fixture_ipv4(char *out, size_t len)
{
	const char *dir = getenv("TROOP_FIXTURES");
	char path[512];
	json_error_t jerr;

	if (!dir)
		fail_msg("TROOP_FIXTURES is not set (run through ctest)");
	snprintf(path, sizeof(path), "%s/tailscale_status.json", dir);
	json_t *root = json_load_file(path, 0, &jerr);
	if (!root)
		fail_msg("%s: %s", path, jerr.text);
	json_t *ips = json_object_get(json_object_get(root, "Self"), "TailscaleIPs");
	out[0] = '\0';
	for (size_t i = 0; i < json_array_size(ips); i++) {
		const char *s = json_string_value(json_array_get(ips, i));
		if (s && strchr(s, '.')) {
			snprintf(out, len, "%s", s);
			break;
		}
	}
	json_decref(root);
	assert_true(out[0] != '\0');
}

static void write_script(const char *dir, const char *name, const char *body)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

static void fake_tailscale_dir(char *dir, size_t len, const char *name, const char *body)
{
	char script[1024];

	snprintf(dir, len, "%s/%s", tmp_root, name);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", dir, strerror(errno));
	/* Answer only the exact command the worker runs. */
	snprintf(script, sizeof(script),
	    "[ \"$1\" = ip ] && [ \"$2\" = -4 ] && [ $# -eq 2 ] || exit 64\n%s", body);
	write_script(dir, "tailscale", script);
	char p[4096];
	snprintf(p, sizeof(p), "%s:%s", dir, saved_path ? saved_path : "/usr/bin:/bin");
	setenv("PATH", p, 1);
}

static int group_setup(void **state)
{
	const char *t = getenv("TMPDIR");

	snprintf(tmp_root, sizeof(tmp_root), "%s/troop-test-tailnet-XXXXXX",
	    t && *t ? t : "/tmp");
	if (!mkdtemp(tmp_root))
		return -1;
	const char *p = getenv("PATH");
	saved_path = p ? strdup(p) : NULL;
	return 0;
}

static int group_teardown(void **state)
{
	char out[16];
	int status;

	if (saved_path)
		setenv("PATH", saved_path, 1);
	free(saved_path);
	const char *argv[] = { "rm", "-rf", "--", tmp_root, NULL };
	subproc_capture(out, sizeof(out), NULL, argv, 10000, &status);
	return 0;
}

static int test_setup(void **state)
{
	if (saved_path)
		setenv("PATH", saved_path, 1);
	troop_error_clear();
	return 0;
}

/* ---- ranges ---------------------------------------------------------------- */

static void test_cgnat_boundaries(void **state)
{
	assert_false(tailnet_in_range(AF_INET, "100.63.255.255"));
	assert_true(tailnet_in_range(AF_INET, "100.64.0.0"));
	assert_true(tailnet_in_range(AF_INET, "100.101.42.17"));
	assert_true(tailnet_in_range(AF_INET, "100.127.255.255"));
	assert_false(tailnet_in_range(AF_INET, "100.128.0.0"));
	assert_false(tailnet_in_range(AF_INET, "10.0.0.1"));
	assert_false(tailnet_in_range(AF_INET, "not an address"));
	assert_false(tailnet_in_range(AF_INET6, "100.64.0.1"));
	assert_false(tailnet_in_range(AF_INET, NULL));

	/* The same boundaries through the choice, on a non-tailscale0
	 * interface. */
	static const struct { const char *a; bool in; } cases[] = {
		{ "100.63.255.255", false }, { "100.64.0.0", true },
		{ "100.127.255.255", true }, { "100.128.0.0", false },
	};
	for (size_t i = 0; i < N(cases); i++) {
		tailnet_if_addr e = { "utun3", AF_INET, "" };
		char out[TAILNET_ADDR_MAX];

		snprintf(e.addr, sizeof(e.addr), "%s", cases[i].a);
		int rc = tailnet_pick_iface(out, sizeof(out), &e, 1);
		if (cases[i].in) {
			assert_int_equal(rc, 0);
			assert_string_equal(out, cases[i].a);
		} else {
			assert_int_equal(rc, TROOP_ENOTFOUND);
		}
	}
}

static void test_ula_prefix(void **state)
{
	assert_true(tailnet_in_range(AF_INET6, "fd7a:115c:a1e0::d301:2a11"));
	assert_true(tailnet_in_range(AF_INET6, "fd7a:115c:a1e0::"));
	assert_true(tailnet_in_range(AF_INET6, "fd7a:115c:a1e0:ffff:ffff:ffff:ffff:ffff"));
	assert_false(tailnet_in_range(AF_INET6, "fd7a:115c:a1e1::1"));
	assert_false(tailnet_in_range(AF_INET6, "fd7a:115c:a1df:ffff::1"));
	assert_false(tailnet_in_range(AF_INET6, "fd00::1"));
	assert_false(tailnet_in_range(AF_INET, "fd7a:115c:a1e0::1"));

	tailnet_if_addr list[] = {
		{ "eth0", AF_INET6, "2001:db8::5" },
		{ "eth0", AF_INET, "192.168.1.50" },
		{ "utun4", AF_INET6, "fd7a:115c:a1e0::d301:2a11" },
	};
	char out[TAILNET_ADDR_MAX];
	assert_int_equal(tailnet_pick_iface(out, sizeof(out), list, N(list)), 0);
	assert_string_equal(out, "fd7a:115c:a1e0::d301:2a11");
}

/* ---- interface preference ------------------------------------------------- */

static void test_tailscale0_wins(void **state)
{
	tailnet_if_addr list[] = {
		{ "lo", AF_INET, "127.0.0.1" },
		{ "wwan0", AF_INET, "100.70.1.2" },  /* carrier NAT, also in range */
		{ "tailscale0", AF_INET6, "fe80::1234" },
		{ "tailscale0", AF_INET6, "fd7a:115c:a1e0::d301:2a11" },
		{ "tailscale0", AF_INET, "100.101.42.17" },
		{ "utun2", AF_INET, "100.99.0.1" },
	};
	char out[TAILNET_ADDR_MAX];

	assert_int_equal(tailnet_pick_iface(out, sizeof(out), list, N(list)), 0);
	assert_string_equal(out, "100.101.42.17");

	/* Without its IPv4 address, tailscale0's ULA still beats wwan0;
	 * its link-local address never counts. */
	assert_int_equal(tailnet_pick_iface(out, sizeof(out), list, 4), 0);
	assert_string_equal(out, "fd7a:115c:a1e0::d301:2a11");
	assert_int_equal(tailnet_pick_iface(out, sizeof(out), list, 3), 0);
	assert_string_equal(out, "100.70.1.2");

	/* Ties go to the earlier entry. */
	tailnet_if_addr two[] = {
		{ "utun2", AF_INET, "100.99.0.1" },
		{ "wwan0", AF_INET, "100.70.1.2" },
	};
	assert_int_equal(tailnet_pick_iface(out, sizeof(out), two, N(two)), 0);
	assert_string_equal(out, "100.99.0.1");

	/* Nothing usable. */
	tailnet_if_addr none[] = {
		{ "lo", AF_INET, "127.0.0.1" },
		{ "lo", AF_INET6, "::1" },
		{ "tailscale0", AF_INET6, "fe80::1" },
		{ "eth0", AF_INET, "192.168.1.50" },
		{ "eth0", AF_INET, "garbage" },
	};
	assert_int_equal(tailnet_pick_iface(out, sizeof(out), none, N(none)), TROOP_ENOTFOUND);

	/* Too small an output buffer is an error, not a truncation. */
	char tiny[8];
	assert_int_equal(tailnet_pick_iface(tiny, sizeof(tiny), list, N(list)), TROOP_ETOOLARGE);
}

static void test_advertise_wins(void **state)
{
	tailnet_if_addr list[] = { { "tailscale0", AF_INET, "100.101.42.17" } };
	struct fake_ip ip = { "100.100.100.100", 0 };
	char out[TAILNET_ADDR_MAX];

	assert_int_equal(tailnet_choose(out, sizeof(out), "gpu-box-1.tail4c2e91.ts.net",
	    list, N(list), fake_ip_fn, &ip, "http://coord.example:8420"), 0);
	assert_string_equal(out, "gpu-box-1.tail4c2e91.ts.net");
	assert_int_equal(tailnet_choose(out, sizeof(out), "10.1.2.3", list, N(list),
	    fake_ip_fn, &ip, NULL), 0);
	assert_string_equal(out, "10.1.2.3");
	assert_int_equal(tailnet_choose(out, sizeof(out), "[fd7a:115c:a1e0::1]", list, N(list),
	    fake_ip_fn, &ip, NULL), 0);
	assert_string_equal(out, "fd7a:115c:a1e0::1");
	assert_int_equal(ip.calls, 0);

	static const char *const bad[] = {
		"http://10.1.2.3", "10.1.2.3:8421", "host name", "a/b", "[]", "bad;rm",
	};
	for (size_t i = 0; i < N(bad); i++) {
		assert_int_equal(tailnet_choose(out, sizeof(out), bad[i], list, N(list),
		    NULL, NULL, NULL), TROOP_EINVAL);
		assert_non_null(strstr(troop_error_msg(), "--advertise"));
	}

	/* An empty --advertise means "not given". */
	assert_int_equal(tailnet_choose(out, sizeof(out), "", list, N(list), NULL, NULL, NULL), 0);
	assert_string_equal(out, "100.101.42.17");
}

/* ---- loopback rule and the error ----------------------------------------- */

static void test_loopback_coordinator(void **state)
{
	tailnet_if_addr list[] = { { "eth0", AF_INET, "192.168.1.50" } };
	char out[TAILNET_ADDR_MAX];
	static const char *const loop[] = {
		"http://127.0.0.1:8420", "http://localhost:8420", "http://[::1]:8420",
		"http://LOCALHOST:8420/", "https://127.3.4.5", "http://user:pw@localhost:1/x",
		"127.0.0.1:8420", "http://[::ffff:127.0.0.1]:8420",
	};
	static const char *const remote[] = {
		"http://coord.example:8420", "http://127.0.0.1.example:8420",
		"http://localhost.example:8420", "http://10.0.0.1:8420",
		"http://[fd7a:115c:a1e0::1]:8420", "http://coord.example/?h=127.0.0.1",
		"http://localhost@coord.example:8420", "", "http://[::1:8420",
	};

	for (size_t i = 0; i < N(loop); i++) {
		if (!tailnet_url_is_loopback(loop[i]))
			fail_msg("%s should be loopback", loop[i]);
		assert_int_equal(tailnet_choose(out, sizeof(out), NULL, list, N(list),
		    NULL, NULL, loop[i]), 0);
		assert_string_equal(out, "127.0.0.1");
	}
	for (size_t i = 0; i < N(remote); i++) {
		if (tailnet_url_is_loopback(remote[i]))
			fail_msg("%s should not be loopback", remote[i]);
		troop_error_clear();
		assert_int_equal(tailnet_choose(out, sizeof(out), NULL, list, N(list),
		    NULL, NULL, remote[i]), TROOP_EINVAL);
		assert_string_equal(out, "");
		assert_non_null(strstr(troop_error_msg(), "--advertise"));
		assert_non_null(strstr(troop_error_msg(), "tailscale up --login-server"));
	}
	assert_false(tailnet_url_is_loopback(NULL));

	/* A tailnet address still beats loopback when there is one. */
	tailnet_if_addr ts[] = { { "tailscale0", AF_INET, "100.101.42.17" } };
	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, ts, N(ts), NULL, NULL,
	    "http://127.0.0.1:8420"), 0);
	assert_string_equal(out, "100.101.42.17");
}

/* ---- tailscale ip -4 ------------------------------------------------------ */

static void test_ip_fn_only_when_needed(void **state)
{
	tailnet_if_addr ts[] = { { "tailscale0", AF_INET, "100.101.42.17" } };
	tailnet_if_addr lan[] = { { "eth0", AF_INET, "192.168.1.50" } };
	struct fake_ip ip = { "100.88.1.2", 0 };
	char out[TAILNET_ADDR_MAX];

	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, ts, N(ts), fake_ip_fn, &ip,
	    "http://coord.example:8420"), 0);
	assert_int_equal(ip.calls, 0);
	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, lan, N(lan), fake_ip_fn, &ip,
	    "http://coord.example:8420"), 0);
	assert_int_equal(ip.calls, 1);
	assert_string_equal(out, "100.88.1.2");

	/* Garbage or a loopback answer is not used. */
	ip.addr = "127.0.0.1";
	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, lan, N(lan), fake_ip_fn, &ip,
	    "http://coord.example:8420"), TROOP_EINVAL);
	ip.addr = NULL;
	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, lan, N(lan), fake_ip_fn, &ip,
	    "http://localhost:8420"), 0);
	assert_string_equal(out, "127.0.0.1");
}

static void test_fake_tailscale_binary(void **state)
{
	tailnet_if_addr lan[] = { { "eth0", AF_INET, "192.168.1.50" } };
	char want[TAILNET_ADDR_MAX], out[TAILNET_ADDR_MAX], dir[512], body[256];

	fixture_ipv4(want, sizeof(want));
	snprintf(body, sizeof(body), "echo %s", want);
	fake_tailscale_dir(dir, sizeof(dir), "ts-ok", body);
	assert_int_equal(tailnet_tailscale_ip(out, sizeof(out), NULL), 0);
	assert_string_equal(out, want);
	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, lan, N(lan),
	    tailnet_tailscale_ip, NULL, "http://coord.example:8420"), 0);
	assert_string_equal(out, want);

	/* Logged out: exits non-zero. */
	fake_tailscale_dir(dir, sizeof(dir), "ts-down", "echo 'Tailscale is stopped.'; exit 1");
	assert_int_equal(tailnet_tailscale_ip(out, sizeof(out), NULL), TROOP_EUNAVAIL);
	assert_int_equal(tailnet_choose(out, sizeof(out), NULL, lan, N(lan),
	    tailnet_tailscale_ip, NULL, "http://coord.example:8420"), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "--advertise"));

	/* Prints something that is not an address. */
	fake_tailscale_dir(dir, sizeof(dir), "ts-junk", "echo 'hello world'");
	assert_int_equal(tailnet_tailscale_ip(out, sizeof(out), NULL), TROOP_EINVAL);
}

/* ---- the real system inputs ----------------------------------------------- */

static void test_read_ifaces(void **state)
{
	tailnet_if_addr list[TAILNET_IFACES_MAX];
	size_t n = 99;

	int rc = tailnet_read_ifaces(list, N(list), &n);
	assert_true(rc == 0 || rc == TROOP_ETOOLARGE);
	assert_true(n <= N(list));
	/* Only candidates are kept, and each is a valid address. */
	for (size_t i = 0; i < n; i++) {
		unsigned char buf[16];
		assert_int_equal(inet_pton(list[i].family, list[i].addr, buf), 1);
		assert_true(strcmp(list[i].ifname, "tailscale0") == 0 ||
		    tailnet_in_range(list[i].family, list[i].addr));
	}

	/* --advertise short-circuits the system entirely. */
	char out[TAILNET_ADDR_MAX];
	assert_int_equal(tailnet_resolve(out, sizeof(out), "10.9.8.7", NULL), 0);
	assert_string_equal(out, "10.9.8.7");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cgnat_boundaries, test_setup),
		cmocka_unit_test_setup(test_ula_prefix, test_setup),
		cmocka_unit_test_setup(test_tailscale0_wins, test_setup),
		cmocka_unit_test_setup(test_advertise_wins, test_setup),
		cmocka_unit_test_setup(test_loopback_coordinator, test_setup),
		cmocka_unit_test_setup(test_ip_fn_only_when_needed, test_setup),
		cmocka_unit_test_setup(test_fake_tailscale_binary, test_setup),
		cmocka_unit_test_setup(test_read_ifaces, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
