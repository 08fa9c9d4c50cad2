/*
 * test_expset.c - the expiring set: expiry boundaries, NX and replace,
 * one-shot take, counters, the cap on live entries, per-owner quotas in
 * two slots (one owner at its quota does not block another), the walk
 * over live entries, and concurrent use from several threads.
 */
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
#include "expset.h"

#define NOW 1764000000

static void test_put_get_expiry(void **state)
{
	expset *s;
	char buf[16];
	size_t len = 0;

	(void)state;
	assert_int_equal(expset_new(&s, NULL), 0);
	assert_int_equal(expset_put(s, "k", NULL, "value", 5, NOW + 10, 0, NOW), 0);
	assert_int_equal(expset_get(buf, sizeof buf, &len, s, "k", NOW + 9, false), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "value", 5);
	/* live while now < at */
	assert_int_equal(expset_get(buf, sizeof buf, &len, s, "k", NOW + 10, false),
	    TROOP_ENOTFOUND);
	/* too small a buffer: the length, nothing taken */
	assert_int_equal(expset_put(s, "k", NULL, "value", 5, NOW + 10, 0, NOW), 0);
	assert_int_equal(expset_get(buf, 2, &len, s, "k", NOW, true), TROOP_ETOOLARGE);
	assert_int_equal(len, 5);
	assert_int_equal(expset_get(NULL, 0, &len, s, "k", NOW, false), TROOP_ETOOLARGE);
	/* take: once */
	assert_int_equal(expset_get(buf, sizeof buf, &len, s, "k", NOW, true), 0);
	assert_int_equal(expset_get(buf, sizeof buf, &len, s, "k", NOW, true), TROOP_ENOTFOUND);
	/* NX keeps a live key; an expired one is replaced */
	assert_int_equal(expset_put(s, "n", NULL, "a", 1, NOW + 5, EXPSET_NX, NOW), 0);
	assert_int_equal(expset_put(s, "n", NULL, "b", 1, NOW + 5, EXPSET_NX, NOW + 4),
	    TROOP_ECONFLICT);
	assert_int_equal(expset_put(s, "n", NULL, "c", 1, NOW + 20, EXPSET_NX, NOW + 5), 0);
	assert_int_equal(expset_get(buf, sizeof buf, &len, s, "n", NOW + 19, false), 0);
	assert_memory_equal(buf, "c", 1);
	/* plain put replaces, expiry included */
	assert_int_equal(expset_put(s, "n", NULL, NULL, 0, NOW + 30, 0, NOW + 6), 0);
	assert_int_equal(expset_get(buf, sizeof buf, &len, s, "n", NOW + 29, false), 0);
	assert_int_equal(len, 0);
	assert_int_equal(expset_del(s, "n", NOW + 6), 0);
	assert_int_equal(expset_del(s, "n", NOW + 6), TROOP_ENOTFOUND);
	/* bad input */
	assert_int_equal(expset_put(s, "", NULL, NULL, 0, NOW + 1, 0, NOW), TROOP_EINVAL);
	assert_int_equal(expset_put(s, "x", NULL, NULL, 0, NOW, 0, NOW), TROOP_EINVAL);
	expset_free(s);
	expset_free(NULL);
}

static void test_incr_and_sweep(void **state)
{
	expset *s;
	int64_t c = 0;

	(void)state;
	assert_int_equal(expset_new(&s, NULL), 0);
	assert_int_equal(expset_incr(&c, s, "w", NULL, 1, NOW + 60, NOW), 0);
	assert_int_equal(c, 1);
	assert_int_equal(expset_incr(&c, s, "w", NULL, 2, NOW + 999, NOW + 1), 0);
	assert_int_equal(c, 3);   /* the window keeps its first expiry */
	assert_int_equal(expset_incr(&c, s, "w", NULL, 1, NOW + 120, NOW + 60), 0);
	assert_int_equal(c, 1);   /* a new window */
	for (int i = 0; i < 100; i++) {
		char k[16];
		snprintf(k, sizeof k, "e%d", i);
		assert_int_equal(expset_put(s, k, NULL, NULL, 0, NOW + 10 + i, 0, NOW), 0);
	}
	/* e0 .. e50 expire at NOW + 10 .. NOW + 60 */
	assert_int_equal(expset_sweep(s, NOW + 60), 51);
	assert_int_equal(expset_sweep(s, NOW + 60), 0);
	/* the other 49 and the window */
	assert_int_equal(expset_sweep(s, NOW + 1000), 50);
	expset_free(s);
}

static void test_cap(void **state)
{
	expset_opts o = { .max = 10, .what = "nonces" };
	expset *s;

	(void)state;
	assert_int_equal(expset_new(&s, &o), 0);
	for (int i = 0; i < 10; i++) {
		char k[16];
		snprintf(k, sizeof k, "e%d", i);
		assert_int_equal(expset_put(s, k, NULL, NULL, 0, NOW + 10 + i, 0, NOW), 0);
	}
	/* full of live entries: refused, nothing forgotten */
	assert_int_equal(expset_put(s, "more", NULL, NULL, 0, NOW + 100, 0, NOW), TROOP_EUNAVAIL);
	assert_non_null(strstr(troop_error_msg(), "nonces"));
	assert_int_equal(expset_put(s, "e3", NULL, NULL, 0, NOW + 100, EXPSET_NX, NOW),
	    TROOP_ECONFLICT);
	/* replacing a live key needs no room */
	assert_int_equal(expset_put(s, "e3", NULL, "x", 1, NOW + 100, 0, NOW), 0);
	/* once one expires there is room */
	assert_int_equal(expset_put(s, "more", NULL, NULL, 0, NOW + 100, 0, NOW + 10), 0);
	expset_free(s);
}

/* expset_foreach: what the walk saw. */
struct seen {
	int n, stop_at;
	int64_t at_sum;
	int with_value;
	char keys[256];
};

static int collect(const char *key, int64_t at, const void *val, size_t len, void *arg)
{
	struct seen *w = arg;

	w->n++;
	w->at_sum += at - NOW;
	if (len == 3 && memcmp(val, "val", 3) == 0)
		w->with_value++;
	else
		assert_null(val);
	strncat(w->keys, key, sizeof(w->keys) - strlen(w->keys) - 2);
	strcat(w->keys, ",");
	return w->n == w->stop_at ? 7 : 0;
}

static void test_foreach_and_size(void **state)
{
	struct seen w = { 0 };
	expset *s;

	(void)state;
	assert_int_equal(expset_new(&s, NULL), 0);
	assert_int_equal(expset_size(s), 0);
	assert_int_equal(expset_foreach(s, NOW, collect, &w), 0);
	assert_int_equal(w.n, 0);
	for (int i = 0; i < 20; i++) {
		char k[16];
		snprintf(k, sizeof k, "e%d", i);
		/* e0 .. e19 live until NOW + 1 .. NOW + 20; even ones carry a value */
		assert_int_equal(expset_put(s, k, NULL, i % 2 ? NULL : "val", i % 2 ? 0 : 3,
		    NOW + 1 + i, 0, NOW), 0);
	}
	assert_int_equal(expset_del(s, "e19", NOW), 0);
	assert_int_equal(expset_size(s), 19);
	/* at NOW + 10, e0 .. e9 have expired: the walk drops them, sees the others once */
	assert_int_equal(expset_foreach(s, NOW + 10, collect, &w), 0);
	assert_int_equal(w.n, 9);
	assert_int_equal(w.at_sum, 11 + 12 + 13 + 14 + 15 + 16 + 17 + 18 + 19);
	assert_int_equal(w.with_value, 5);   /* e10, e12, .. e18 */
	for (int i = 10; i < 19; i++) {
		char k[16];
		snprintf(k, sizeof k, "e%d,", i);
		assert_non_null(strstr(w.keys, k));
	}
	assert_null(strstr(w.keys, "e9,"));
	assert_null(strstr(w.keys, "e19,"));
	assert_int_equal(expset_size(s), 9);
	/* a non-zero return stops the walk and is returned */
	memset(&w, 0, sizeof(w));
	w.stop_at = 3;
	assert_int_equal(expset_foreach(s, NOW + 10, collect, &w), 7);
	assert_int_equal(w.n, 3);
	/* the set is usable after a walk (its lock was released) */
	assert_int_equal(expset_put(s, "after", NULL, NULL, 0, NOW + 100, EXPSET_NX, NOW + 10), 0);
	assert_int_equal(expset_size(s), 10);
	expset_free(s);
}

static void test_owner_quotas(void **state)
{
	expset_opts o = { .max = 1000, .owner_quota = { 5, 8 } };
	const char *mallory_a[EXPSET_OWNERS] = { "mallory", "10.0.0.66" };
	const char *mallory_b[EXPSET_OWNERS] = { "mallory-2", "10.0.0.66" };
	const char *alice[EXPSET_OWNERS] = { "alice", "10.0.0.1" };
	const char *same_name[EXPSET_OWNERS] = { "10.0.0.66", "10.0.0.2" };
	expset *s;
	char k[32];
	int i;

	(void)state;
	assert_int_equal(expset_new(&s, &o), 0);
	/* one identity fills its quota ... */
	for (i = 0; i < 5; i++) {
		snprintf(k, sizeof k, "m%d", i);
		assert_int_equal(expset_put(s, k, mallory_a, NULL, 0, NOW + 100 + i, 0, NOW), 0);
	}
	assert_int_equal(expset_put(s, "m-more", mallory_a, NULL, 0, NOW + 100, 0, NOW),
	    TROOP_ERATE);
	assert_non_null(strstr(troop_error_msg(), "for one owner"));
	/* ... and does not block another identity */
	assert_int_equal(expset_put(s, "a0", alice, NULL, 0, NOW + 100, 0, NOW), 0);
	/* a second identity from the same address counts against the address */
	for (i = 0; i < 3; i++) {
		snprintf(k, sizeof k, "m2-%d", i);
		assert_int_equal(expset_put(s, k, mallory_b, NULL, 0, NOW + 100, 0, NOW), 0);
	}
	assert_int_equal(expset_put(s, "m2-more", mallory_b, NULL, 0, NOW + 100, 0, NOW),
	    TROOP_ERATE);
	/* slots are separate namespaces: an identity named like the address is
	 * not that address */
	assert_int_equal(expset_put(s, "odd", same_name, NULL, 0, NOW + 100, 0, NOW), 0);
	assert_int_equal(expset_put(s, "a1", alice, NULL, 0, NOW + 100, 0, NOW), 0);
	/* replacing an entry keeps its share: no quota needed */
	assert_int_equal(expset_put(s, "m0", mallory_a, "v", 1, NOW + 200, 0, NOW), 0);
	/* taking or expiring entries gives the share back */
	assert_int_equal(expset_get(NULL, 0, NULL, s, "m1", NOW, true), 0);
	assert_int_equal(expset_put(s, "m-more", mallory_a, NULL, 0, NOW + 100, 0, NOW), 0);
	assert_int_equal(expset_put(s, "m-most", mallory_a, NULL, 0, NOW + 100, 0, NOW),
	    TROOP_ERATE);
	/* expiry gives it back: at NOW + 150 only m0 (to NOW + 200) is left */
	assert_int_equal(expset_put(s, "m-later", mallory_a, NULL, 0, NOW + 300, 0, NOW + 150),
	    0);
	/* counters count against their owners too */
	int64_t c;
	for (i = 0; i < 3; i++) {
		snprintf(k, sizeof k, "w%d", i);
		assert_int_equal(expset_incr(&c, s, k, mallory_a, 1, NOW + 300, NOW + 150), 0);
	}
	assert_int_equal(expset_incr(&c, s, "w9", mallory_a, 1, NOW + 300, NOW + 150),
	    TROOP_ERATE);
	assert_int_equal(expset_incr(&c, s, "w0", mallory_a, 1, NOW + 300, NOW + 150), 0);
	assert_int_equal(c, 2);
	expset_free(s);
}

#define THREADS 4
#define PER_THREAD 2000

struct tctx {
	expset *s;
	int id;
	int errors;
	int wins;
};

static void *worker(void *arg)
{
	struct tctx *t = arg;
	const char *own[EXPSET_OWNERS] = { NULL, "shared-addr" };
	char k[32];

	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(k, sizeof k, "t%d-%d", t->id, i);
		if (expset_put(t->s, k, own, "v", 1, NOW + 500 + i % 50, 0, NOW + i / 100) != 0)
			t->errors++;
		/* every thread races for the same one-shot key */
		snprintf(k, sizeof k, "shared-%d", i);
		int rc = expset_put(t->s, k, NULL, NULL, 0, NOW + 1000, EXPSET_NX, NOW);
		if (rc == 0)
			t->wins++;
		else if (rc != TROOP_ECONFLICT)
			t->errors++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	expset_opts o = { .max = 1000000, .owner_quota = { 0, 1000000 } };
	struct tctx t[THREADS];
	pthread_t th[THREADS];
	expset *s;
	int wins = 0;

	(void)state;
	assert_int_equal(expset_new(&s, &o), 0);
	for (int i = 0; i < THREADS; i++) {
		t[i] = (struct tctx){ .s = s, .id = i };
		pthread_create(&th[i], NULL, worker, &t[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].errors, 0);
		wins += t[i].wins;
	}
	assert_int_equal(wins, PER_THREAD);
	/* every entry made it in once and expires once */
	assert_int_equal(expset_sweep(s, NOW + 1000), THREADS * PER_THREAD + PER_THREAD);
	expset_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_expiry),
		cmocka_unit_test(test_incr_and_sweep),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_foreach_and_size),
		cmocka_unit_test(test_owner_quotas),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
