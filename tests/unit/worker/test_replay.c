/*
 * test_replay.c - the worker's jti replay cache (replay.h): each ticket id once, until
 * its ticket could no longer be accepted anyway; its journal (reload,
 * compaction, a torn last line, forget, later lines winning, the cap), so
 * a restart forgets nothing; threads racing on the same ids.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <ftw.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "ticket.h"

/* ---- replay cache ----------------------------------------------------------------------- */

static void test_replay_cache(void **state)
{
	replay_cache *c;
	char id[32];

	assert_int_equal(replay_cache_new(&c, 1000), 0);
	assert_int_equal(replay_cache_check(c, "jti-1", 200, 100), 0);
	assert_int_equal(replay_cache_check(c, "jti-1", 200, 150), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "jti-2", 200, 150), 0);
	/* expired: the entry no longer blocks (the ticket itself is expired) */
	assert_int_equal(replay_cache_check(c, "jti-1", 400, 200), 0);
	assert_int_equal(replay_cache_check(c, "jti-1", 400, 201), TROOP_ETICKET);
	/* forget */
	replay_cache_forget(c, "jti-2");
	assert_int_equal(replay_cache_check(c, "jti-2", 400, 201), 0);
	/* bad ids */
	assert_int_equal(replay_cache_check(c, "", 400, 201), TROOP_EINVAL);
	{
		char longid[REPLAY_ID_MAX + 2];
		memset(longid, 'x', sizeof(longid) - 1);
		longid[sizeof(longid) - 1] = '\0';
		assert_int_equal(replay_cache_check(c, longid, 400, 201), TROOP_EINVAL);
	}
	/* many: grows, every one remembered */
	for (int i = 0; i < 900; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(replay_cache_check(c, id, 1000, 300), 0);
	}
	for (int i = 0; i < 900; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(replay_cache_check(c, id, 1000, 300), TROOP_ETICKET);
	}
	/* full of live entries: refused, not forgotten */
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "more-%d", i);
		(void)replay_cache_check(c, id, 1000, 300);
	}
	assert_true(replay_cache_size(c) <= 1000);
	assert_int_equal(replay_cache_check(c, "one-too-many", 1000, 300), TROOP_ERATE);
	/* once they expire there is room again */
	assert_int_equal(replay_cache_check(c, "later", 2000, 1500), 0);
	assert_true(replay_cache_size(c) < 10);
	replay_cache_free(c);
}

/* A cache full of live entries refuses each new id at the cost of one
 * lookup: a full table sweep per check (as once written) made every
 * refusal O(entries) under the mutex, about 10 ms each at 1M entries. */
static void test_replay_full_is_cheap(void **state)
{
	enum { N = 200000, TRIES = 5000 };
	struct timespec t0, t;
	replay_cache *c;
	char id[32];

	(void)state;
	assert_int_equal(replay_cache_new(&c, N), 0);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "live-%d", i);
		assert_int_equal(replay_cache_check(c, id, 5000, 1000), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < TRIES; i++) {
		snprintf(id, sizeof(id), i % 2 ? "live-%d" : "more-%d", i);
		assert_int_equal(replay_cache_check(c, id, 5000, 1000 + i / 1000),
		    i % 2 ? TROOP_ETICKET : TROOP_ERATE);
		clock_gettime(CLOCK_MONOTONIC, &t);
		/* ~2 ms in all here; the sweeping cache needed over 10 s */
		assert_true((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < 2.0);
	}
	replay_cache_free(c);
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

/* Lines as written by hand, read back: a later line wins (also with a
 * shorter expiry), "0 <id>" forgets, the cap holds, and a reload
 * compacts to the live entries. */
/* The machine's start, for the tickets a power cut may have taken: read
 * from /proc/stat for a journal, none for a cache in memory only; every
 * line synced instead where it is unknown (0), and the journal still
 * holds them. */
static void test_replay_boot_time(void **state)
{
	char path[400];
	replay_cache *c;
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	long long btime = 0;

	(void)state;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &btime) == 1)
			break;
	if (f)
		fclose(f);
	assert_int_equal(replay_cache_new(&c, 0), 0);
	assert_int_equal(replay_cache_boot_time(c), 0);
	replay_cache_free(c);
	journal_path(path, sizeof(path));
	assert_int_equal(replay_cache_open(&c, 0, path, 1000), 0);
	assert_int_equal(replay_cache_boot_time(c), btime);
	replay_cache_set_boot_time(c, 0);
	assert_int_equal(replay_cache_boot_time(c), 0);
	assert_int_equal(replay_cache_check(c, "synced", 2000, 1000), 0);
	replay_cache_set_boot_time(c, 12345);
	assert_int_equal(replay_cache_boot_time(c), 12345);
	assert_int_equal(replay_cache_check(c, "written", 2000, 1000), 0);
	replay_cache_free(c);
	assert_int_equal(replay_cache_open(&c, 0, path, 1001), 0);
	assert_int_equal(replay_cache_check(c, "synced", 2000, 1001), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "written", 2000, 1001), TROOP_ETICKET);
	replay_cache_free(c);
}

static void test_replay_journal_reload(void **state)
{
	char path[400];
	replay_cache *c;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	journal_path(path, sizeof(path));
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("2000 x\n0 x\n2000 x\n"      /* x: live again */
	    "2000 y\n0 y\n"                 /* y: forgotten */
	    "3000 z\n1200 z\n"              /* z: the later, shorter expiry */
	    "900 old\n"                     /* expired before the start */
	    "bogus\n2000 two words\n", f);  /* malformed: skipped */
	fclose(f);
	assert_int_equal(replay_cache_open(&c, 0, path, 1000), 0);
	assert_int_equal(replay_cache_size(c), 2);
	assert_int_equal(file_lines(path), 2);
	assert_int_equal(replay_cache_check(c, "x", 2000, 1100), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "z", 2000, 1100), TROOP_ETICKET);
	assert_int_equal(replay_cache_check(c, "y", 2000, 1100), 0);
	assert_int_equal(replay_cache_check(c, "old", 2000, 1100), 0);
	/* an expiry not after now records nothing, but a live id still counts */
	assert_int_equal(replay_cache_check(c, "stale", 1100, 1100), 0);
	assert_int_equal(replay_cache_check(c, "x", 1100, 1100), TROOP_ETICKET);
	assert_int_equal(replay_cache_size(c), 4);
	replay_cache_free(c);
	assert_int_equal(replay_cache_open(&c, 0, path, 1300), 0);
	assert_int_equal(replay_cache_check(c, "z", 2000, 1300), 0);   /* expired at 1200 */
	assert_int_equal(replay_cache_check(c, "stale", 2000, 1300), 0);
	assert_int_equal(replay_cache_check(c, "old", 2000, 1300), TROOP_ETICKET);
	replay_cache_free(c);
	/* a smaller cap: the journal's ids beyond it are left out */
	assert_int_equal(replay_cache_open(&c, 2, path, 1300), 0);
	assert_int_equal(replay_cache_size(c), 2);
	assert_int_equal(replay_cache_check(c, "new", 2000, 1300), TROOP_ERATE);
	replay_cache_free(c);
}

/* Several threads on one persisted cache, each offering the same ids:
 * each id is accepted once, and a restart refuses all of them. */
#define THREADS 4
#define THREAD_IDS 500

struct racer {
	replay_cache *c;
	int won[THREAD_IDS];
};

static void *race(void *arg)
{
	struct racer *r = arg;
	char id[32];

	for (int i = 0; i < THREAD_IDS; i++) {
		int rc;
		snprintf(id, sizeof(id), "race-%d", i);
		rc = replay_cache_check(r->c, id, 5000, 1000);
		assert_true(rc == 0 || rc == TROOP_ETICKET);
		r->won[i] = rc == 0;
		if (i % 50 == 0)
			(void)replay_cache_size(r->c);
	}
	return NULL;
}

static void test_replay_threads(void **state)
{
	static struct racer r[THREADS];
	pthread_t t[THREADS];
	char path[400], id[32];
	replay_cache *c;

	(void)state;
	journal_path(path, sizeof(path));
	assert_int_equal(replay_cache_open(&c, 0, path, 1000), 0);
	for (int i = 0; i < THREADS; i++) {
		r[i].c = c;
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int k = 0; k < THREAD_IDS; k++) {
		int won = 0;
		for (int i = 0; i < THREADS; i++)
			won += r[i].won[k];
		assert_int_equal(won, 1);
	}
	assert_int_equal(replay_cache_size(c), THREAD_IDS);
	replay_cache_free(c);
	assert_int_equal(replay_cache_open(&c, 0, path, 1001), 0);
	assert_int_equal(replay_cache_size(c), THREAD_IDS);
	for (int k = 0; k < THREAD_IDS; k += 37) {
		snprintf(id, sizeof(id), "race-%d", k);
		assert_int_equal(replay_cache_check(c, id, 5000, 1001), TROOP_ETICKET);
	}
	replay_cache_free(c);
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
		cmocka_unit_test(test_replay_cache),
		cmocka_unit_test(test_replay_full_is_cheap),
		cmocka_unit_test_setup_teardown(test_replay_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_journal_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_boot_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
