/*
 * test_audit.c - how the auditor compares answers (audit.h): agreement
 * position by position over the first N tokens, and the verdicts of one
 * audit (a strict majority passes, the others fail, no majority judges
 * nobody), including the "smaller model" that agrees on its first K
 * tokens only: caught when N is large enough for the threshold, passed
 * when N <= K.  And the window of nodes a round looks at: from a random
 * id, wrapping round, so that every node of a troop larger than the
 * window can be drawn.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "error.h"

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

/* ids of the window from `start`, space-separated */
static void window_ids(char *out, size_t cap, registry *r, const char *start, size_t max)
{
	registry_node *w = NULL;
	size_t n = 0, len = 0;

	assert_int_equal(audit_window(&w, &n, r, start, 1000, max, REGISTRY_WITH_MODELS), 0);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(w[i].n_models, 1);
		len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", w[i].node_id);
	}
	registry_nodes_free(w, n);
}

/* The window a round looks at.  Before it started at a random id, a
 * round looked at the `max` smallest ids only: in a troop of more nodes,
 * a node whose id sorts late was never audited (the last assertion). */
static void test_window(void **state)
{
	registry *r = NULL;
	registry_node n;
	registry_model m;
	char got[256];
	bool seen[10] = { false };
	static const struct {
		const char *start;
		size_t max;
		const char *want;
	} cases[] = {
		{ "", 4, "n0 n1 n2 n3" },
		{ "n5", 4, "n6 n7 n8 n9" },
		{ "n7", 4, "n8 n9 n0 n1" },                       /* wraps */
		{ "n7", 50, "n8 n9 n0 n1 n2 n3 n4 n5 n6 n7" },    /* each once */
		{ "n4x", 50, "n5 n6 n7 n8 n9 n0 n1 n2 n3 n4" },   /* no such id */
		{ "z", 3, "n0 n1 n2" },                           /* after the last */
	};

	(void)state;
	assert_int_equal(registry_open(&r, "memory:", NULL), 0);
	for (int i = 0; i < 10; i++) {
		memset(&n, 0, sizeof(n));
		memset(&m, 0, sizeof(m));
		snprintf(n.node_id, sizeof(n.node_id), "n%d", (i * 7) % 10);
		snprintf(n.ip, sizeof(n.ip), "100.64.0.1");
		n.port = 8421;
		snprintf(m.name, sizeof(m.name), "m");
		snprintf(m.content_hash, sizeof(m.content_hash), "sha256:m");
		n.models = &m;
		n.n_models = 1;
		assert_int_equal(registry_put_node(r, &n, 3600, 0), 0);
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		window_ids(got, sizeof(got), r, cases[i].start, cases[i].max);
		assert_string_equal(got, cases[i].want);
	}
	/* from random starts, as the auditor draws them: every node is in
	 * some window of 3 */
	for (int k = 0; k < 200; k++) {
		char start[3] = { 'n', (char)('0' + randombytes_uniform(10)), '\0' };
		registry_node *w = NULL;
		size_t nw = 0;

		assert_int_equal(audit_window(&w, &nw, r, start, 1000, 3, 0), 0);
		assert_int_equal(nw, 3);
		for (size_t i = 0; i < nw; i++)
			seen[w[i].node_id[1] - '0'] = true;
		registry_nodes_free(w, nw);
	}
	for (int i = 0; i < 10; i++)
		assert_true(seen[i]);
	/* what a round saw before: the smallest ids, whatever happened */
	window_ids(got, sizeof(got), r, "", 3);
	assert_null(strstr(got, "n9"));
	registry_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agreement),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_window),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
