/*
 * test_prom.c - the shared metrics code: counters and gauges, histogram
 * buckets (an observation on a bound counts in that bucket, the written
 * buckets are cumulative and end with +Inf equal to _count), the text
 * format's value spelling, family headers, the page limit, and updates
 * from several threads at once losing nothing.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "prom.h"

static void test_counter_gauge(void **state)
{
	prom_counter c = { 0 };
	prom_gauge g = { 0 };
	dynbuf b;

	(void)state;
	prom_counter_add(&c, 3);
	prom_counter_add(&c, 4);
	assert_int_equal(prom_counter_get(&c), 7);
	prom_gauge_set(&g, 0.25);
	prom_gauge_add(&g, 0.5);
	assert_true(prom_gauge_get(&g) == 0.75);
	dynbuf_init(&b, 4096);
	assert_int_equal(prom_counter_family(&b, "troop_x_total", "Things.", &c), 0);
	assert_int_equal(prom_write_gauge(&b, "troop_g", "a=\"b\"", &g), 0);
	assert_int_equal(prom_write_value(&b, "troop_inf", NULL, INFINITY), 0);
	assert_int_equal(prom_write_value(&b, "troop_nan", "", NAN), 0);
	assert_int_equal(prom_write_value(&b, "troop_big", NULL, 12345678901.0), 0);
	assert_string_equal(dynbuf_ptr(&b),
	    "# HELP troop_x_total Things.\n# TYPE troop_x_total counter\ntroop_x_total 7\n"
	    "troop_g{a=\"b\"} 0.75\ntroop_inf +Inf\ntroop_nan NaN\ntroop_big 12345678901\n");
	dynbuf_free(&b);
}

static const double bounds[] = { 0.1, 1, 10 };

static void test_histogram(void **state)
{
	prom_histogram h;
	dynbuf b;

	(void)state;
	memset(&h, 0, sizeof(h));
	prom_histogram_init(&h, bounds, 3);
	prom_histogram_observe(&h, 0.05);
	prom_histogram_observe(&h, 0.1);     /* on the bound: le="0.1" */
	prom_histogram_observe(&h, 5);
	prom_histogram_observe(&h, 100);     /* only +Inf */
	prom_histogram_observe(&h, -1);      /* ignored */
	prom_histogram_observe(&h, NAN);     /* ignored */
	dynbuf_init(&b, 4096);
	assert_int_equal(prom_write_histogram(&b, "troop_h_seconds", "k=\"v\"", &h), 0);
	assert_string_equal(dynbuf_ptr(&b),
	    "troop_h_seconds_bucket{k=\"v\",le=\"0.1\"} 2\n"
	    "troop_h_seconds_bucket{k=\"v\",le=\"1\"} 2\n"
	    "troop_h_seconds_bucket{k=\"v\",le=\"10\"} 3\n"
	    "troop_h_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"
	    "troop_h_seconds_sum{k=\"v\"} 105.15\n"
	    "troop_h_seconds_count{k=\"v\"} 4\n");
	dynbuf_reset(&b);
	assert_int_equal(prom_histogram_family(&b, "troop_h_seconds", "H.", &h), 0);
	assert_non_null(strstr(dynbuf_ptr(&b), "# TYPE troop_h_seconds histogram\n"
	    "troop_h_seconds_bucket{le=\"0.1\"} 2\n"));
	dynbuf_free(&b);
	/* more bounds than fit are clamped, never overrun */
	memset(&h, 0, sizeof(h));
	prom_histogram_init(&h, prom_buckets_latency, 1000);
	assert_int_equal(h.n, PROM_MAX_BUCKETS);
	/* the bucket sets are ascending */
	for (int i = 1; i < PROM_BUCKETS_LATENCY_N; i++)
		assert_true(prom_buckets_latency[i - 1] < prom_buckets_latency[i]);
	for (int i = 1; i < PROM_BUCKETS_OVERHEAD_N; i++)
		assert_true(prom_buckets_overhead[i - 1] < prom_buckets_overhead[i]);
	for (int i = 1; i < PROM_BUCKETS_RATE_N; i++)
		assert_true(prom_buckets_rate[i - 1] < prom_buckets_rate[i]);
}

static void test_page_limit(void **state)
{
	prom_counter c = { 0 };
	dynbuf b;
	int rc = 0;

	(void)state;
	dynbuf_init(&b, 64);
	for (int i = 0; i < 10 && rc == 0; i++)
		rc = prom_counter_family(&b, "troop_x_total", "Things.", &c);
	assert_int_equal(rc, TROOP_ETOOLARGE);
	dynbuf_free(&b);
}

#define THREADS 4
#define ROUNDS 100000

static prom_counter shared_c;
static prom_gauge shared_g;
static prom_histogram shared_h = PROM_HISTOGRAM(bounds, 3);

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		prom_counter_add(&shared_c, 1);
		prom_gauge_add(&shared_g, 1);
		prom_histogram_observe(&shared_h, (i % 3) == 0 ? 0.5 : 2);
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t t[THREADS];
	dynbuf b;
	char want[128];

	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(prom_counter_get(&shared_c), THREADS * ROUNDS);
	assert_true(prom_gauge_get(&shared_g) == (double)THREADS * ROUNDS);
	dynbuf_init(&b, 4096);
	assert_int_equal(prom_write_histogram(&b, "troop_t_seconds", NULL, &shared_h), 0);
	snprintf(want, sizeof(want), "troop_t_seconds_count %d\n", THREADS * ROUNDS);
	assert_non_null(strstr(dynbuf_ptr(&b), want));
	snprintf(want, sizeof(want), "troop_t_seconds_bucket{le=\"1\"} %d\n",
	    THREADS * ((ROUNDS + 2) / 3));
	assert_non_null(strstr(dynbuf_ptr(&b), want));
	dynbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_gauge),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_page_limit),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
