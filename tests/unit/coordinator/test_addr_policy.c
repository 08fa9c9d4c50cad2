/*
 * test_addr_policy.c - which addresses a node may advertise
 * (addr_policy.h): tailnet ranges by default, loopback only on a loopback
 * coordinator, --allow-addresses, and what is never allowed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "addr_policy.h"
#include "error.h"

/* ---- addr_policy --------------------------------------------------------------- */

static void test_addr_policy(void **state)
{
	static const char *const extra[] = { "192.168.0.0/16, 10.1.2.3", "fe80::/10" };
	addr_policy p;

	(void)state;
	assert_int_equal(addr_policy_init(&p, "0.0.0.0:8420", NULL, 0), 0);
	assert_int_equal(addr_policy_check(&p, "100.64.0.1"), 0);
	assert_int_equal(addr_policy_check(&p, "100.127.255.255"), 0);
	assert_int_equal(addr_policy_check(&p, "fd7a:115c:a1e0:ab12::1"), 0);
	assert_int_equal(addr_policy_check(&p, "100.128.0.0"), TROOP_EFORBIDDEN);
	assert_int_equal(addr_policy_check(&p, "100.63.255.255"), TROOP_EFORBIDDEN);
	assert_int_equal(addr_policy_check(&p, "fd7a:115c:a1e1::1"), TROOP_EFORBIDDEN);
	assert_int_equal(addr_policy_check(&p, "127.0.0.1"), TROOP_EFORBIDDEN);
	assert_int_equal(addr_policy_check(&p, "::1"), TROOP_EFORBIDDEN);
	assert_int_equal(addr_policy_check(&p, "::ffff:100.64.0.1"), 0);
	assert_int_equal(addr_policy_check(&p, "not an ip"), TROOP_EINVAL);
	assert_int_equal(addr_policy_check(&p, NULL), TROOP_EINVAL);

	/* loopback coordinators allow loopback nodes */
	assert_int_equal(addr_policy_init(&p, "127.0.0.1:0", NULL, 0), 0);
	assert_int_equal(addr_policy_check(&p, "127.0.0.1"), 0);
	assert_int_equal(addr_policy_check(&p, "127.9.9.9"), 0);
	assert_int_equal(addr_policy_check(&p, "::1"), 0);
	assert_int_equal(addr_policy_init(&p, "[::1]:8420", NULL, 0), 0);
	assert_int_equal(addr_policy_check(&p, "127.0.0.1"), 0);
	assert_int_equal(addr_policy_init(&p, "localhost:8420", NULL, 0), 0);
	assert_int_equal(addr_policy_check(&p, "::1"), 0);

	/* extra ranges; never multicast, broadcast or unspecified */
	assert_int_equal(addr_policy_init(&p, "0.0.0.0:8420", extra, 2), 0);
	assert_int_equal(addr_policy_check(&p, "192.168.44.1"), 0);
	assert_int_equal(addr_policy_check(&p, "10.1.2.3"), 0);
	assert_int_equal(addr_policy_check(&p, "10.1.2.4"), TROOP_EFORBIDDEN);
	assert_int_equal(addr_policy_check(&p, "fe80::1234"), 0);
	{
		static const char *const all[] = { "0.0.0.0/0", "::/0" };
		assert_int_equal(addr_policy_init(&p, "0.0.0.0:8420", all, 2), 0);
		assert_int_equal(addr_policy_check(&p, "8.8.8.8"), 0);
		assert_int_equal(addr_policy_check(&p, "224.0.0.1"), TROOP_EFORBIDDEN);
		assert_int_equal(addr_policy_check(&p, "255.255.255.255"), TROOP_EFORBIDDEN);
		assert_int_equal(addr_policy_check(&p, "0.0.0.0"), TROOP_EFORBIDDEN);
		assert_int_equal(addr_policy_check(&p, "0.1.2.3"), TROOP_EFORBIDDEN);
		assert_int_equal(addr_policy_check(&p, "::"), TROOP_EFORBIDDEN);
		assert_int_equal(addr_policy_check(&p, "ff02::1"), TROOP_EFORBIDDEN);
		assert_int_equal(addr_policy_check(&p, "::ffff:224.0.0.1"), TROOP_EFORBIDDEN);
	}
	/* bad ranges */
	{
		static const char *const bad[][1] = { { "10.0.0.0/33" }, { "10.0.0.0/" },
			{ "10.0.0/8" }, { "fe80::/129" }, { "x" }, { "10.0.0.0/8," } };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			if (addr_policy_init(&p, "0.0.0.0:1", bad[i], 1) != TROOP_EINVAL)
				fail_msg("'%s' was accepted", bad[i][0]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
