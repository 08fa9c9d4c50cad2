/*
 * test_harness.c - the integration harness itself (harness.c): a test
 * program that exits, passing or failing half-way, leaves no coordinator,
 * simulator, worker or `troop up` running and, when it passed, no temp
 * directory (ledgers and identity keys) behind; a worker's TROOP_HOME is
 * its own, not the test program's; a coordinator restarts on the port it
 * had.  The exits are those of a forked child that starts a whole troop
 * through the typed starters and then calls exit() without stopping
 * anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char tmp[256];

/* What the child reports: its temp dir and the pids it started. */
typedef struct {
	char dir[256];
	pid_t pids[4];
} troop_report;

static bool alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno != ESRCH;
}

static bool dir_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* In a forked child: a coordinator, a simulator, a worker and troop up in
 * a temp dir of its own; report them on fd, then exit(status) with all of
 * them still running. */
static void child_troop(int fd, int status)
{
	static const char *const no_verify[] = { "--no-verify", NULL };
	static const char *const unverified[] = { "--allow-unverified", NULL };
	harness_proc coord, sim, worker, up;
	troop_report r = { .pids = { 0 } };
	char dir[300], log[300], engine[96];

	harness_tmpdir(r.dir, sizeof(r.dir));
	snprintf(dir, sizeof(dir), "%s/coord", r.dir);
	if (harness_start_coordinator(&coord, dir, unverified) != 0)
		_exit(90);
	snprintf(log, sizeof(log), "%s/sim.log", r.dir);
	if (harness_start_sim(&sim, log, NULL) != 0)
		_exit(91);
	snprintf(dir, sizeof(dir), "%s/worker", r.dir);
	snprintf(engine, sizeof(engine), "ollama=%s", sim.url);
	if (harness_start_worker(&worker, dir, coord.url, engine, no_verify) != 0)
		_exit(92);
	snprintf(dir, sizeof(dir), "%s/client", r.dir);
	snprintf(log, sizeof(log), "%s/up.log", r.dir);
	if (harness_start_up(&up, dir, log, coord.url, NULL) != 0)
		_exit(93);
	r.pids[0] = coord.pid;
	r.pids[1] = sim.pid;
	r.pids[2] = worker.pid;
	r.pids[3] = up.pid;
	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(94);
	exit(status);
}

/* Run child_troop(status) and collect its report once it has exited. */
static void run_child(troop_report *r, int status)
{
	int fds[2], st;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child_troop(fds[1], status);
	}
	close(fds[1]);
	memset(r, 0, sizeof(*r));
	assert_int_equal(read(fds[0], r, sizeof(*r)), (ssize_t)sizeof(*r));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), status);
}

static void test_passing_exit_stops_and_removes(void **state)
{
	troop_report r;

	(void)state;
	run_child(&r, 0);
	for (int i = 0; i < 4; i++) {
		assert_true(r.pids[i] > 0);
		if (alive(r.pids[i]))
			fail_msg("process %d (%d of 4) outlived its test program", (int)r.pids[i], i + 1);
	}
	/* the ledger, the worker's and the client's keys went with it */
	assert_false(dir_exists(r.dir));
	/* our own temp dir is not the child's to remove */
	assert_true(dir_exists(tmp));
}

static void test_failing_exit_stops_and_keeps(void **state)
{
	troop_report r;
	char key[400];

	(void)state;
	run_child(&r, 1);
	for (int i = 0; i < 4; i++)
		if (alive(r.pids[i]))
			fail_msg("process %d (%d of 4) outlived a failed test program", (int)r.pids[i],
			    i + 1);
	/* kept for reading after a failure; each identity in its own home */
	assert_true(dir_exists(r.dir));
	snprintf(key, sizeof(key), "%s/worker/identity.key", r.dir);
	assert_int_equal(access(key, R_OK), 0);
	snprintf(key, sizeof(key), "%s/client/identity.key", r.dir);
	assert_int_equal(access(key, R_OK), 0);
	harness_rmtree(r.dir);
	assert_false(dir_exists(r.dir));
}

/* The worker's TROOP_HOME is set in its process only; a coordinator given
 * "--listen" comes back on the port it had. */
static void test_home_and_listen(void **state)
{
	static const char *const no_verify[] = { "--no-verify", NULL };
	const char *home = getenv("TROOP_HOME");
	const char *args[] = { "--allow-unverified", NULL, NULL, NULL };
	char before[512], dir[300], log[300], engine[96], listen[64], key[400];
	harness_proc coord, sim, worker;
	int port;

	(void)state;
	snprintf(before, sizeof(before), "%s", home ? home : "(unset)");
	snprintf(dir, sizeof(dir), "%s/coord", tmp);
	assert_int_equal(harness_start_coordinator(&coord, dir, args), 0);
	port = coord.port;
	snprintf(log, sizeof(log), "%s/sim.log", tmp);
	assert_int_equal(harness_start_sim(&sim, log, NULL), 0);
	snprintf(dir, sizeof(dir), "%s/worker", tmp);
	snprintf(engine, sizeof(engine), "ollama=%s", sim.url);
	assert_int_equal(harness_start_worker(&worker, dir, coord.url, engine, no_verify), 0);
	snprintf(key, sizeof(key), "%s/worker/identity.key", tmp);
	assert_int_equal(access(key, R_OK), 0);
	home = getenv("TROOP_HOME");
	assert_string_equal(home ? home : "(unset)", before);

	/* a restart on the same port: the worker's coordinator URL holds */
	assert_int_equal(harness_stop(&coord, SIGTERM), 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	args[1] = "--listen";
	args[2] = listen;
	snprintf(dir, sizeof(dir), "%s/coord", tmp);
	assert_int_equal(harness_start_coordinator(&coord, dir, args), 0);
	assert_int_equal(coord.port, port);
	harness_stop_all();
	assert_int_equal(coord.pid > 0 && kill(coord.pid, 0) == 0, 0);
}

static int setup(void **state)
{
	(void)state;
	harness_tmpdir(tmp, sizeof(tmp));
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_passing_exit_stops_and_removes),
		cmocka_unit_test(test_failing_exit_stops_and_keeps),
		cmocka_unit_test(test_home_and_listen),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
