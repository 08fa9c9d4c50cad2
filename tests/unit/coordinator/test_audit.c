/*
 * test_audit.c - how the auditor compares answers (audit.h): agreement
 * position by position over the first N tokens, and the verdicts of one
 * audit (a strict majority passes, the others fail, no majority judges
 * nobody), including the "smaller model" that agrees on its first K
 * tokens only: caught when N is large enough for the threshold, passed
 * when N <= K.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "audit.h"

static const char honest[] = "The sky looks blue because light scatters in air and "
	"short waves bend more than long ones so we see a bright dome.";
/* the first 8 words of honest, then others */
static const char smaller[] = "The sky looks blue because light scatters in grass "
	"river stones warm morning sun rises early birds sing soft songs wind.";
static const char other[] = "Every leaf turns gold when autumn comes back again "
	"people walk home together while clouds drift slowly across quiet hills.";

static void test_agreement(void **state)
{
	(void)state;
	assert_true(audit_agreement(honest, honest, 16) == 1.0);
	/* whitespace does not matter, words do */
	assert_true(audit_agreement("a  b\tc\n", "a b c", 3) == 1.0);
	assert_true(audit_agreement(honest, smaller, 8) == 1.0);
	assert_true(audit_agreement(honest, smaller, 16) == 0.5);
	assert_true(audit_agreement(honest, other, 16) < 0.2);
	/* a missing position disagrees */
	assert_true(audit_agreement("a b", "a b c d", 4) == 0.5);
	assert_true(audit_agreement("", "a", 1) == 0.0);
	assert_true(audit_agreement(NULL, "a", 1) == 0.0);
	assert_true(audit_agreement("a", "b", 0) == 1.0);
}

static void test_verdicts(void **state)
{
	int v[4];

	(void)state;
	/* two honest, one cheat: the cheat fails */
	{
		const char *a[] = { honest, other, honest };
		assert_int_equal(audit_verdicts(v, a, 3, 16, 0.9), 2);
		assert_int_equal(v[0], 1);
		assert_int_equal(v[1], -1);
		assert_int_equal(v[2], 1);
	}
	/* the smaller model: caught over 16 tokens, passes over 8 (K = 8) */
	{
		const char *a[] = { smaller, honest, honest };
		assert_int_equal(audit_verdicts(v, a, 3, 16, 0.9), 2);
		assert_int_equal(v[0], -1);
		assert_int_equal(audit_verdicts(v, a, 3, 8, 0.9), 3);
		assert_int_equal(v[0], 1);
	}
	/* two that disagree: no majority, nobody judged */
	{
		const char *a[] = { honest, other };
		assert_int_equal(audit_verdicts(v, a, 2, 16, 0.9), 0);
		assert_int_equal(v[0], 0);
		assert_int_equal(v[1], 0);
	}
	/* two that agree: both pass */
	{
		const char *a[] = { honest, honest };
		assert_int_equal(audit_verdicts(v, a, 2, 16, 0.9), 2);
		assert_int_equal(v[0], 1);
		assert_int_equal(v[1], 1);
	}
	/* a node without an answer is not judged; the rest still are */
	{
		const char *a[] = { honest, NULL, honest, other };
		assert_int_equal(audit_verdicts(v, a, 4, 16, 0.9), 2);
		assert_int_equal(v[1], 0);
		assert_int_equal(v[3], -1);
	}
	/* all different: no majority */
	{
		const char *a[] = { honest, other, smaller };
		assert_int_equal(audit_verdicts(v, a, 3, 16, 0.9), 0);
		assert_int_equal(v[0] | v[1] | v[2], 0);
	}
	/* one answer only: nothing to compare */
	{
		const char *a[] = { honest, NULL };
		assert_int_equal(audit_verdicts(v, a, 2, 16, 0.9), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agreement),
		cmocka_unit_test(test_verdicts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
