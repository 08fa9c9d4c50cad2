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
static int ntmpdirs;

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
	if (ntmpdirs == 0)
		on_exit(tmpdirs_cleanup, NULL);
	if (ntmpdirs < HARNESS_MAX_TMPDIRS && strlen(out) < sizeof(tmpdirs[0]))
		snprintf(tmpdirs[ntmpdirs++], sizeof(tmpdirs[0]), "%s", out);
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

static char *read_file(const char *path)
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
	char *s = read_file(p->log);
	bool found = s && strstr(s, needle);

	free(s);
	return found;
}

void harness_dump_log(const harness_proc *p)
{
	char *s = read_file(p->log);

	fprintf(stderr, "---- %s ----\n%s\n---- end ----\n", p->log, s ? s : "(none)");
	free(s);
}

int harness_start(harness_proc *p, const char *const *argv, const char *log,
    const char *marker, int timeout_ms)
{
	size_t skip = 0;

	memset(p, 0, sizeof(*p));
	snprintf(p->log, sizeof(p->log), "%s", log);
	/* a restarted process appends to its old log: look past the old lines */
	{
		char *old = read_file(log);
		skip = old ? strlen(old) : 0;
		free(old);
	}
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
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		char *s = read_file(log);
		char *m = s && strlen(s) >= skip ? strstr(s + skip, marker) : NULL;
		char *pp = m ? strstr(m, "port=") : NULL;
		if (pp) {
			p->port = atoi(pp + 5);
			snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
			free(s);
			return p->port > 0 ? 0 : -1;
		}
		free(s);
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			p->pid = 0;
			break;
		}
		harness_sleep_ms(20);
	}
	harness_dump_log(p);
	return -1;
}

int harness_stop(harness_proc *p, int sig)
{
	int status = -1;

	if (p->pid <= 0)
		return -1;
	kill(p->pid, sig ? sig : SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			return status;
		}
		harness_sleep_ms(20);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	return status;
}
