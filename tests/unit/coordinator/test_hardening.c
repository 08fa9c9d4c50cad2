/*
 * test_hardening.c - the small pieces behind issue 16's fixes, alone:
 * the advertised-address policy (addr_policy.h), the worker's persisted
 * replay journal (replay.h: reload, compaction, a torn last line, forget)
 * and the proof check pool (poh_pool.h: a full queue refuses, results
 * come back on the submitting thread's loop, a freed port cancels).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr_policy.h"
#include "error.h"
#include "poh_pool.h"
#include "replay.h"

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

/* ---- the replay journal ---------------------------------------------------------- */

static char dir[256];

static void journal_path(char *out, size_t len)
{
	snprintf(out, len, "%s/state/replay.log", dir);
}

static size_t file_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	int ch;

	if (!f)
		return 0;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static void test_replay_journal(void **state)
{
	char path[400], id[32];
	replay_cache *c;
	struct stat st;

	(void)state;
	journal_path(path, sizeof(path));
	assert_int_equal(replay_cache_open(&c, 0, path, 1000), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(replay_cache_check(c, "a", 2000, 1000), 0);
	assert_int_equal(replay_cache_check(c, "b", 1100, 1000), 0);
	assert_int_equal(replay_cache_check(c, "c", 2000, 1000), 0);
	replay_cache_forget(c, "c");
	/* ids the journal could not hold are refused */
	assert_int_equal(replay_cache_check(c, "with space", 2000, 1000), TROOP_EINVAL);
	assert_int_equal(replay_cache_check(c, "new\nline", 2000, 1000), TROOP_EINVAL);
	replay_cache_free(c);

	/* a restart: a and b are remembered, c was forgotten */
	assert_int_equal(replay_cache_open(&c, 0, path, 1050), 0);
	assert_int_equal(replay_cache_size(c), 2);
	assert_int_equal(replay_cache_check(c, "a", 2000, 1050), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "b", 2000, 1050), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "c", 2000, 1050), 0);
	replay_cache_free(c);

	/* later: b has expired and is compacted away; a torn last line is skipped */
	{
		int fd = open(path, O_WRONLY | O_APPEND);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "2000 tor", 8), 8);
		close(fd);
	}
	assert_int_equal(replay_cache_open(&c, 0, path, 1500), 0);
	assert_int_equal(replay_cache_size(c), 2);   /* a, c */
	assert_int_equal(file_lines(path), 2);
	assert_int_equal(replay_cache_check(c, "tor", 2000, 1500), 0);
	assert_int_equal(replay_cache_check(c, "a", 2000, 1500), TROOP_ETICKET);
	/* many short-lived ids: the journal is rewritten as they expire */
	for (int i = 0; i < 6000; i++) {
		snprintf(id, sizeof(id), "short-%d", i);
		assert_int_equal(replay_cache_check(c, id, 1501, 1500), 0);
	}
	assert_int_equal(replay_cache_check(c, "late", 2000, 1600), 0);
	assert_true(file_lines(path) < 100);
	replay_cache_free(c);
	assert_int_equal(replay_cache_open(&c, 0, path, 1600), 0);
	assert_int_equal(replay_cache_check(c, "late", 2000, 1600), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "short-5", 2000, 1600), 0);
	replay_cache_free(c);

	/* an unwritable place is an error at start, not a silent memory-only cache */
	assert_int_equal(replay_cache_open(&c, 0, "/proc/nonexistent/replay.log", 1), TROOP_EIO);
	assert_null(c);
}

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

static int setup(void **state)
{
	(void)state;
	/* tmpfs when there is one: thousands of fdatasyncs are then cheap */
	snprintf(dir, sizeof(dir), "/dev/shm/troop-hardening-XXXXXX");
	if (mkdtemp(dir))
		return 0;
	snprintf(dir, sizeof(dir), "/tmp/troop-hardening-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char path[400];

	(void)state;
	journal_path(path, sizeof(path));
	unlink(path);
	snprintf(path, sizeof(path), "%s/state", dir);
	rmdir(path);
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_policy),
		cmocka_unit_test(test_replay_journal),
		cmocka_unit_test(test_check_pool),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
