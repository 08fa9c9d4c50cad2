/*
 * test_reputation.c - node reputation (reputation.h): the components from
 * counts and observations, the slots a node earns by serving well, the
 * weights and the weighted draw of node choice, and the observations kept
 * in an in-process registry (once per job): the value written as text is
 * the JSON object json_pack wrote (any JSON reader gets the same numbers
 * back), and a value in another shape (another version's key order,
 * integers as reals, extra keys) is still read.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "registry.h"
#include "reputation.h"

static reputation_report report(const char *outcome, int64_t ms, int64_t ttfb,
    int64_t tokens, int running)
{
	reputation_report r = { .outcome = outcome, .duration_ms = ms, .ttfb_ms = ttfb,
		.tokens = tokens, .running = running };
	return r;
}

/* A new node is neutral on speed and audits, whole on availability, and
 * at the ledger's prior on reliability. */
static void test_components_new(void **state)
{
	reputation_inputs in = { 0 };
	registry_facts f;

	(void)state;
	memset(&f, 0, sizeof(f));
	reputation_fill(&f, &in);
	assert_float_equal(f.rep_availability, 1.0, 1e-9);
	assert_float_equal(f.rep_reliability, 0.5, 1e-9);
	assert_float_equal(f.rep_speed, 0.5, 1e-9);
	assert_float_equal(f.rep_audits, 1.0, 1e-9);
	assert_float_equal(f.reputation, 0.25, 1e-9);
	assert_true(reputation_is_new(&f));
}

/* Fast beats slow, reliable beats flaky, failovers and failed audits
 * count against a node, gaps in heartbeats lower availability. */
static void test_components_order(void **state)
{
	reputation_stats fast, slow, gappy;
	reputation_inputs in = { .jobs_ok = 100 };
	registry_facts ff, fs, fl, fg, fa;

	(void)state;
	memset(&fast, 0, sizeof(fast));
	memset(&slow, 0, sizeof(slow));
	for (int i = 0; i < 50; i++) {
		reputation_report a = report("complete", 120, 20, 16, 1);
		reputation_report b = report("complete", 700, 300, 16, 1);
		reputation_report_add(&fast, &a);
		reputation_report_add(&slow, &b);
	}
	assert_int_equal(fast.speed_n, 50);
	assert_float_equal(fast.ttft_ms, 20, 1e-6);
	assert_float_equal(fast.tps, 160, 1e-6);      /* 16 tokens in 100 ms */
	assert_float_equal(slow.tps, 40, 1e-6);
	memset(&ff, 0, sizeof(ff));
	memset(&fs, 0, sizeof(fs));
	in.stats = &fast;
	reputation_fill(&ff, &in);
	in.stats = &slow;
	reputation_fill(&fs, &in);
	assert_true(ff.rep_speed > fs.rep_speed + 0.2);
	assert_true(ff.reputation > fs.reputation * 1.3);
	assert_float_equal(ff.ttft_ms, 20, 1e-6);
	assert_float_equal(ff.tokens_per_s, 160, 1e-6);

	/* 30 failovers reported by clients and 20 failed jobs: flaky */
	for (int i = 0; i < 30; i++) {
		reputation_report x = report("engine_error", 5, -1, 0, 1);
		reputation_report_add(&fast, &x);
	}
	assert_int_equal(fast.failovers, 30);
	in.stats = &fast;
	in.jobs_failed = 20;
	memset(&fl, 0, sizeof(fl));
	reputation_fill(&fl, &in);
	assert_int_equal(fl.failovers, 30);
	assert_true(fl.rep_reliability < 0.7);
	assert_true(ff.reputation > fl.reputation * 1.3);

	/* failed audits */
	in.jobs_failed = 0;
	in.stats = NULL;
	in.audits_failed = 3;
	memset(&fa, 0, sizeof(fa));
	reputation_fill(&fa, &in);
	assert_float_equal(fa.rep_audits, 0.25, 1e-9);

	/* heartbeats every 10 s for an hour, then an hour away */
	memset(&gappy, 0, sizeof(gappy));
	for (int64_t t = 1000; t <= 4600; t += 10)
		reputation_heartbeat(&gappy, 30, t);
	in.audits_failed = 0;
	in.stats = &gappy;
	memset(&fg, 0, sizeof(fg));
	reputation_fill(&fg, &in);
	assert_true(fg.rep_availability > 0.99);
	reputation_heartbeat(&gappy, 30, 4600 + 3600);
	reputation_fill(&fg, &in);
	assert_true(fg.rep_availability < 0.6);
	assert_true(fg.rep_availability > 0.4);
}

/* Served well at k jobs at once: counted up to 2k, within the class cap;
 * a job far slower than usual does not count as served well. */
static void test_slots(void **state)
{
	reputation_stats s;

	(void)state;
	assert_int_equal(reputation_slots(0, 16, 4, 0), 0);
	assert_int_equal(reputation_slots(100000, 16, 4, 0), 4);
	assert_int_equal(reputation_slots(100000, 16, 0, 0), 16);
	assert_int_equal(reputation_slots(100000, 0, 4, 0), 100000);  /* no class cap */
	assert_int_equal(reputation_slots(100000, 16, 4, 3), 6);
	assert_int_equal(reputation_slots(100000, 16, 4, 50), 16);
	assert_int_equal(reputation_slots(2, 16, 4, 50), 2);

	memset(&s, 0, sizeof(s));
	{
		reputation_report a = report("complete", 100, 0, 100, 3);
		reputation_report slow = report("complete", 10000, 0, 100, 9);
		reputation_report cut = report("cut", 100, 0, 100, 12);
		reputation_report_add(&s, &a);
		assert_int_equal(s.served, 3);
		reputation_report_add(&s, &slow);   /* 10 tokens/s against 1000 */
		assert_int_equal(s.served, 3);
		reputation_report_add(&s, &cut);
		assert_int_equal(s.served, 3);
	}
}

/* Weights: the reputation, a new node lifted to the fair share, never
 * below the floor; the draw follows the weights. */
static void test_weights_draw(void **state)
{
	registry_facts f;
	double w[3] = { 1, 0, 3 };
	int hits[3] = { 0 };

	(void)state;
	memset(&f, 0, sizeof(f));
	f.reputation = 0.1;
	f.jobs = 5;
	assert_float_equal(reputation_weight(&f, 0.6), 0.6, 1e-9);
	f.jobs = 500;
	assert_float_equal(reputation_weight(&f, 0.6), 0.1, 1e-9);
	f.reputation = 0;
	assert_float_equal(reputation_weight(&f, 0.6), REP_WEIGHT_MIN, 1e-9);

	for (int i = 0; i < 4000; i++)
		hits[reputation_draw(w, 3, (double)i / 4000.0)]++;
	assert_int_equal(hits[0], 1000);
	assert_int_equal(hits[1], 0);
	assert_int_equal(hits[2], 3000);
	assert_int_equal(reputation_draw(w, 0, 0.5), -1);
	assert_int_equal(reputation_draw(w, 3, 0.999999999), 2);
}

/* The registry copy: heartbeats and reports kept, a repeated report of
 * one job counted once. */
static void test_registry_copy(void **state)
{
	registry *reg = NULL;
	reputation_stats s;
	reputation_report a = report("complete", 200, 100, 10, 2);
	reputation_report b = report("unreachable", 0, -1, 0, 1);

	(void)state;
	assert_int_equal(registry_open(&reg, "memory:", NULL), 0);
	assert_int_equal(reputation_get(&s, reg, "node-a", 1000), 0);
	assert_int_equal(s.speed_n, 0);
	assert_int_equal(reputation_note_heartbeat(NULL, reg, "node-a", 30, 1000), 0);
	assert_int_equal(reputation_note_heartbeat(&s, reg, "node-a", 30, 1010), 0);
	assert_int_equal(s.hb_last, 1010);
	assert_float_equal(s.up_s, 10, 1e-3);
	assert_int_equal(reputation_note_report(reg, "node-a", "job1", &a, 600, 1011), 0);
	assert_int_equal(reputation_note_report(reg, "node-a", "job1", &a, 600, 1012), 0);
	assert_int_equal(reputation_note_report(reg, "node-a", "job2", &b, 600, 1012), 0);
	assert_int_equal(reputation_get(&s, reg, "node-a", 1013), 0);
	assert_int_equal(s.speed_n, 1);
	assert_int_equal(s.delivered, 1);
	assert_int_equal(s.failovers, 1);
	assert_int_equal(s.served, 2);
	assert_float_equal(s.ttft_ms, 100, 1e-6);
	assert_float_equal(s.tps, 100, 1e-6);
	assert_int_equal(reputation_get(&s, reg, "node-b", 1013), 0);
	assert_int_equal(s.delivered, 0);
	registry_close(reg);
}

/* The stored value: exact numbers both ways, readable as JSON, and
 * values in other shapes read as JSON. */
static void test_registry_value(void **state)
{
	registry *reg = NULL;
	reputation_stats s, t;
	reputation_report a = report("complete", 2345, 123, 77, 3);
	char buf[600];
	size_t len = 0;
	json_t *o;

	(void)state;
	assert_int_equal(registry_open(&reg, "memory:", NULL), 0);
	assert_int_equal(reputation_note_heartbeat(NULL, reg, "node-v", 30, 1000), 0);
	assert_int_equal(reputation_note_heartbeat(NULL, reg, "node-v", 30, 1007), 0);
	assert_int_equal(reputation_note_heartbeat(NULL, reg, "node-v", 30, 1100), 0);
	assert_int_equal(reputation_note_report(reg, "node-v", "j1", &a, 600, 1101), 0);
	assert_int_equal(reputation_get(&s, reg, "node-v", 1102), 0);
	assert_int_equal(s.hb_last, 1100);
	assert_int_equal(s.speed_n, 1);
	assert_int_equal(s.served, 3);

	/* the text is a JSON object with the same numbers, bit for bit */
	assert_int_equal(registry_kv_get(buf, sizeof(buf) - 1, &len, reg, "rep:node-v", 1102), 0);
	buf[len] = '\0';
	o = json_loadb(buf, len, 0, NULL);
	assert_non_null(o);
	assert_int_equal(json_object_size(o), 9);
	assert_int_equal(json_integer_value(json_object_get(o, "hb")), 1100);
	assert_true(json_is_real(json_object_get(o, "up")));
	assert_true(json_real_value(json_object_get(o, "up")) == s.up_s);
	assert_true(json_real_value(json_object_get(o, "down")) == s.down_s);
	assert_true(json_real_value(json_object_get(o, "ttft")) == s.ttft_ms);
	assert_true(json_real_value(json_object_get(o, "tps")) == s.tps);
	assert_true(s.down_s > 0 && s.tps > 0);
	assert_int_equal(json_integer_value(json_object_get(o, "srv")), 3);
	json_decref(o);

	/* a heartbeat in the same second as the last changes nothing */
	assert_int_equal(reputation_note_heartbeat(&t, reg, "node-v", 30, 1100), 0);
	assert_int_equal(t.hb_last, 1100);
	assert_true(t.up_s == s.up_s);

	/* another writer's shape: other key order, reals for integers, an
	 * extra key, negative and missing values read as 0 */
	snprintf(buf, sizeof(buf), "{\"up\": 12.5, \"hb\": 900.0, \"x\": [1], \"down\": -3, "
	    "\"srv\": 4, \"n\": 2, \"tps\": 1e2}");
	assert_int_equal(registry_kv_put(reg, "rep:node-w", buf, strlen(buf), 600, 0, 1000), 0);
	assert_int_equal(reputation_get(&t, reg, "node-w", 1000), 0);
	assert_int_equal(t.hb_last, 900);
	assert_float_equal(t.up_s, 12.5, 1e-12);
	assert_float_equal(t.down_s, 0, 1e-12);
	assert_float_equal(t.tps, 100, 1e-12);
	assert_int_equal(t.speed_n, 2);
	assert_int_equal(t.served, 4);
	assert_int_equal(t.delivered, 0);
	/* stats_write's shape with a number JSON does not allow: not JSON,
	 * started afresh */
	snprintf(buf, sizeof(buf), "{\"hb\":0x10,\"up\":1.0,\"down\":0.0,\"ttft\":0.0,"
	    "\"tps\":0.0,\"n\":0,\"ok\":0,\"fo\":0,\"srv\":0}");
	assert_int_equal(registry_kv_put(reg, "rep:node-x", buf, strlen(buf), 600, 0, 1000), 0);
	assert_int_equal(reputation_get(&t, reg, "node-x", 1000), 0);
	assert_int_equal(t.hb_last, 0);
	assert_float_equal(t.up_s, 0, 1e-12);
	registry_close(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_components_new),
		cmocka_unit_test(test_components_order),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_weights_draw),
		cmocka_unit_test(test_registry_copy),
		cmocka_unit_test(test_registry_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
