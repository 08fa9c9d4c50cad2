/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void harness_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Temp directories made by harness_tmpdir: removed when the test program
 * exits with status 0 (every test passed), kept for reading otherwise or
 * when TROOP_KEEP_TMP=1.  They hold ledgers and identity keys. */
#define HARNESS_MAX_TMPDIRS 64
static char tmpdirs[HARNESS_MAX_TMPDIRS][256];
static pid_t tmpdir_owner[HARNESS_MAX_TMPDIRS];  /* a forked child leaves them be */
static int ntmpdirs;
static pid_t tmpdirs_hooked;                     /* the process that has the exit hook */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void tmpdirs_cleanup(int status, void *arg)
{
	const char *keep = getenv("TROOP_KEEP_TMP");

	(void)arg;
	for (int i = 0; i < ntmpdirs; i++) {
		if (tmpdir_owner[i] != getpid())
			continue;
		if (status != 0 || (keep && strcmp(keep, "1") == 0))
			fprintf(stderr, "harness: kept %s\n", tmpdirs[i]);
		else
			nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

void harness_tmpdir(char *out, size_t len)
{
	const char *base = getenv("TMPDIR");

	snprintf(out, len, "%s/troop-test-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(out)) {
		perror("mkdtemp");
		abort();
	}
	if (tmpdirs_hooked != getpid()) {
		tmpdirs_hooked = getpid();
		on_exit(tmpdirs_cleanup, NULL);
	}
	if (ntmpdirs < HARNESS_MAX_TMPDIRS && strlen(out) < sizeof(tmpdirs[0])) {
		tmpdir_owner[ntmpdirs] = getpid();
		snprintf(tmpdirs[ntmpdirs++], sizeof(tmpdirs[0]), "%s", out);
	}
}

void harness_rmtree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void harness_backend_args(const char **argv, int *n)
{
	const char *db = getenv("TROOP_TEST_DATABASE_URL");
	const char *reg = getenv("TROOP_TEST_REGISTRY_URL");

	if (db && *db) {
		argv[(*n)++] = "--database-url";
		argv[(*n)++] = db;
	}
	if (reg && *reg) {
		argv[(*n)++] = "--registry-url";
		argv[(*n)++] = reg;
	}
}

bool harness_backend_pg(void)
{
	const char *db = getenv("TROOP_TEST_DATABASE_URL");

	return db && strncmp(db, "postgres", 8) == 0;
}

const char *harness_troop(void)
{
	const char *b = getenv("TROOP_BIN");

	return b && *b ? b : "./build/troop";
}

const char *harness_sim_path(void)
{
	static char path[512];
	const char *b = getenv("TROOP_BUILD_DIR");

	snprintf(path, sizeof(path), "%s/engine-sim", b && *b ? b : "./build");
	return path;
}

char *harness_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

bool harness_log_contains(const harness_proc *p, const char *needle)
{
	char *s = harness_read_file(p->log);
	bool found = s && strstr(s, needle);

	free(s);
	return found;
}

void harness_dump_log(const harness_proc *p)
{
	char *s = harness_read_file(p->log);

	fprintf(stderr, "---- %s ----\n%s\n---- end ----\n", p->log, s ? s : "(none)");
	free(s);
}

/* Processes to stop at exit: pids (not harness_proc pointers, which may
 * live on a finished test's stack), 0 once stopped, each with the process
 * that started it (a forked child stops only its own). */
#define HARNESS_MAX_PROCS 128
static struct {
	pid_t pid, owner;
} procs[HARNESS_MAX_PROCS];
static int nprocs;
static pid_t procs_hooked;  /* the process that has the exit hook */

static void procs_atexit(int status, void *arg)
{
	(void)status, (void)arg;
	harness_stop_all();
}

void harness_track(const harness_proc *p)
{
	if (p->pid <= 0)
		return;
	if (procs_hooked != getpid()) {
		procs_hooked = getpid();
		on_exit(procs_atexit, NULL);
	}
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid == p->pid)
			return;
	if (nprocs == HARNESS_MAX_PROCS) {  /* drop the stopped ones, keeping the order */
		int n = 0;

		for (int i = 0; i < nprocs; i++)
			if (procs[i].pid > 0)
				procs[n++] = procs[i];
		nprocs = n;
	}
	if (nprocs < HARNESS_MAX_PROCS) {
		procs[nprocs].pid = p->pid;
		procs[nprocs++].owner = getpid();
	}
}

static void untrack(pid_t pid)
{
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid == pid)
			procs[i].pid = 0;
}

void harness_stop_all(void)
{
	for (int i = nprocs - 1; i >= 0; i--) {
		harness_proc p = { .pid = procs[i].pid };

		if (p.pid > 0 && procs[i].owner == getpid())
			harness_stop(&p, SIGTERM);
	}
}

/* Where the port is: a "port=N" field after the marker, or (colon_port)
 * the number after the last ':' of the marker's line.  0: not yet. */
static int find_port(const char *m, bool colon_port)
{
	const char *pp, *nl, *colon = NULL;

	if (!colon_port) {
		pp = strstr(m, "port=");
		return pp ? (atoi(pp + 5) > 0 ? atoi(pp + 5) : -1) : 0;
	}
	nl = strchr(m, '\n');
	if (!nl)
		return 0;
	for (const char *q = m; q < nl; q++)
		if (*q == ':')
			colon = q;
	return colon && atoi(colon + 1) > 0 ? atoi(colon + 1) : -1;
}

/* Fork argv with output appended to `log` and, when home is set,
 * TROOP_HOME=home in the child only; wait for the marker and the port. */
static int spawn(harness_proc *p, const char *const *argv, const char *log, const char *home,
    const char *marker, bool colon_port, int timeout_ms)
{
	size_t skip = 0;

	memset(p, 0, sizeof(*p));
	snprintf(p->log, sizeof(p->log), "%s", log);
	/* a restarted process appends to its old log: look past the old lines */
	{
		char *old = harness_read_file(log);
		skip = old ? strlen(old) : 0;
		free(old);
	}
	if (home)
		mkdir(home, 0700);
	p->pid = fork();
	if (p->pid < 0)
		return -1;
	if (p->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		if (home)
			setenv("TROOP_HOME", home, 1);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		char *s = harness_read_file(log);
		char *m = s && strlen(s) >= skip ? strstr(s + skip, marker) : NULL;
		int port = m ? find_port(m, colon_port) : 0;

		free(s);
		if (port != 0) {
			p->port = port;
			snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
			return port > 0 ? 0 : -1;
		}
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			p->pid = 0;
			break;
		}
		harness_sleep_ms(20);
	}
	harness_dump_log(p);
	return -1;
}

static int started(harness_proc *p, int rc)
{
	harness_track(p);
	return rc;
}

int harness_start(harness_proc *p, const char *const *argv, const char *log,
    const char *marker, int timeout_ms)
{
	return started(p, spawn(p, argv, log, NULL, marker, false, timeout_ms));
}

/* argv = head..., "--listen", "127.0.0.1:0" (unless extra has a --listen),
 * mid..., extra...; at most n entries with the NULL. */
#define HARNESS_MAX_ARGS 64
static int build_argv(const char **argv, const char *const *head, const char *const *extra)
{
	bool listen = false;
	int n = 0;

	for (int k = 0; extra && extra[k]; k++)
		if (strcmp(extra[k], "--listen") == 0)
			listen = true;
	for (; *head; head++)
		argv[n++] = *head;
	if (!listen) {
		argv[n++] = "--listen";
		argv[n++] = "127.0.0.1:0";
	}
	for (int k = 0; extra && extra[k] && n < HARNESS_MAX_ARGS - 6; k++)
		argv[n++] = extra[k];
	return n;
}

int harness_start_coordinator(harness_proc *p, const char *dir, const char *const *extra)
{
	const char *head[] = { harness_troop(), "coordinator", "--data-dir", dir, NULL };
	const char *argv[HARNESS_MAX_ARGS];
	char log[512];
	int n = build_argv(argv, head, extra);

	harness_backend_args(argv, &n);
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s.log", dir);
	return started(p, spawn(p, argv, log, NULL, "coordinator_started", false, 10000));
}

int harness_start_coordinator_tmp(harness_proc *p, char *tmp, size_t tmplen,
    const char *const *extra)
{
	char data[4096];

	harness_tmpdir(tmp, tmplen);
	snprintf(data, sizeof(data), "%s/coordinator", tmp);
	return harness_start_coordinator(p, data, extra);
}

int harness_start_sim(harness_proc *p, const char *log, const char *const *extra)
{
	const char *head[] = { harness_sim_path(), NULL };
	const char *argv[HARNESS_MAX_ARGS];
	int n = build_argv(argv, head, extra);

	argv[n] = NULL;
	return started(p, spawn(p, argv, log, NULL, "listening on ", true, 10000));
}

int harness_start_worker(harness_proc *p, const char *dir, const char *coordinator_url,
    const char *engine, const char *const *extra)
{
	const char *head[] = { harness_troop(), "worker", "--coordinator", coordinator_url,
	    "--advertise", "127.0.0.1", engine ? "--engine" : NULL, engine, NULL };
	const char *argv[HARNESS_MAX_ARGS];
	char log[512];
	int n = build_argv(argv, head, extra);

	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s.log", dir);
	return started(p, spawn(p, argv, log, dir, "worker_started", false, 15000));
}

int harness_start_up(harness_proc *p, const char *dir, const char *log,
    const char *coordinator_url, const char *const *extra)
{
	const char *head[] = { harness_troop(), "up", "--coordinator", coordinator_url, NULL };
	const char *argv[HARNESS_MAX_ARGS];
	int n = build_argv(argv, head, extra);

	argv[n] = NULL;
	return started(p, spawn(p, argv, log, dir, "client_started", false, 10000));
}

int harness_stop(harness_proc *p, int sig)
{
	int status = -1;

	if (p->pid <= 0)
		return -1;
	untrack(p->pid);
	kill(p->pid, sig ? sig : SIGTERM);
	for (int i = 0; i < 500; i++) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);

		if (r == p->pid || (r < 0 && errno == ECHILD)) {  /* ECHILD: reaped elsewhere */
			p->pid = 0;
			return r > 0 ? status : -1;
		}
		harness_sleep_ms(20);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	return status;
}
