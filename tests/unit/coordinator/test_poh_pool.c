/*
 * test_poh_pool.c - the proof check pool (poh_pool.h): a full queue
 * refuses, results come back on the submitting thread's loop, a freed port
 * cancels what waits and waits for what runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "poh_pool.h"

/* ---- the check pool ---------------------------------------------------------------- */

struct tjob {
	poh_job job;
	pthread_t worker;        /* the thread work ran on */
	pthread_t done_on;       /* the thread done ran on */
	atomic_int *done, *cancelled;
	int sleep_ms;
};

static void tjob_work(poh_job *job)
{
	struct tjob *j = (struct tjob *)job;

	j->worker = pthread_self();
	usleep((useconds_t)j->sleep_ms * 1000);
}

static pthread_t loop_thread;

static void tjob_done(poh_job *job)
{
	struct tjob *j = (struct tjob *)job;

	if (j->job.cancelled) {
		atomic_fetch_add(j->cancelled, 1);
	} else {
		assert_true(pthread_equal(pthread_self(), loop_thread));
		assert_false(pthread_equal(j->worker, loop_thread));
		atomic_fetch_add(j->done, 1);
	}
	free(j);
}

static void test_check_pool(void **state)
{
	struct event_base *base;
	atomic_int done = 0, cancelled = 0;
	poh_pool *p;
	poh_pool_port *port;

	(void)state;
	/* the pool's threads wake this base: libevent must be told it is
	 * shared, before the base exists, as the servers do */
	assert_int_equal(evthread_use_pthreads(), 0);
	base = event_base_new();
	assert_non_null(base);
	loop_thread = pthread_self();
	assert_int_equal(poh_pool_new(&p, 1, 2), 0);
	assert_int_equal(poh_pool_port_new(&port, p, base), 0);
	/* two places; the third is refused until one is used */
	assert_int_equal(poh_pool_reserve(port), 0);
	assert_int_equal(poh_pool_reserve(port), 0);
	assert_int_equal(poh_pool_reserve(port), TROOP_ERATE);
	poh_pool_unreserve(port);
	assert_int_equal(poh_pool_reserve(port), 0);
	for (int i = 0; i < 2; i++) {
		struct tjob *j = calloc(1, sizeof(*j));
		j->job.work = tjob_work;
		j->job.done = tjob_done;
		j->done = &done;
		j->cancelled = &cancelled;
		j->sleep_ms = 20;
		poh_pool_submit(port, &j->job);
	}
	while (atomic_load(&done) < 2)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(poh_pool_load(p), 0);

	/* freeing the port cancels what waits and waits for what runs */
	for (int i = 0; i < 2; i++) {
		struct tjob *j = calloc(1, sizeof(*j));
		assert_int_equal(poh_pool_reserve(port), 0);
		j->job.work = tjob_work;
		j->job.done = tjob_done;
		j->done = &done;
		j->cancelled = &cancelled;
		j->sleep_ms = 100;
		poh_pool_submit(port, &j->job);
	}
	usleep(20000);
	poh_pool_port_free(port);
	assert_int_equal(atomic_load(&cancelled), 2);
	assert_int_equal(atomic_load(&done), 2);
	poh_pool_free(p);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
