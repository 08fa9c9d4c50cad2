/*
 * harness.h - process control for integration tests: spawn `troop` (or
 * any program) with its log in a temp directory, learn the port it bound
 * from its "port=N" log field, wait for HTTP readiness, stop it.
 */
#ifndef TROOP_TEST_HARNESS_H
#define TROOP_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
	pid_t pid;
	int port;
	char log[512];   /* stderr+stdout of the process */
	char url[64];    /* http://127.0.0.1:PORT */
} harness_proc;

/* A fresh private temp directory (mkdtemp) into out.  It is removed with
 * everything in it when the program exits with status 0 (every test
 * passed), and kept (its path printed) after a failure or with
 * TROOP_KEEP_TMP=1.  Not thread-safe. */
void harness_tmpdir(char *out, size_t len);

/* Path of the troop binary ($TROOP_BIN). */
const char *harness_troop(void);

/* Start argv (NULL-terminated) with output to `log`; then wait up to
 * timeout_ms for a line containing `marker` and a "port=N" field in the
 * log.  Returns 0 or -1 (the log is printed to stderr on failure). */
int harness_start(harness_proc *p, const char *const *argv, const char *log,
    const char *marker, int timeout_ms);

/* SIGTERM (or `sig`), wait up to 10 s, then SIGKILL.  Returns the exit
 * status as waitpid reports it. */
int harness_stop(harness_proc *p, int sig);

/* Print the process log to stderr (for failures). */
void harness_dump_log(const harness_proc *p);

/* Whether `text` contains `needle` in the log. */
bool harness_log_contains(const harness_proc *p, const char *needle);

/* Append a spawned coordinator's storage backend options, taken from the
 * environment: TROOP_TEST_DATABASE_URL gives "--database-url URL" and
 * TROOP_TEST_REGISTRY_URL "--registry-url URL" (unset or empty: nothing,
 * so the coordinator keeps its embedded SQLite ledger and in-process
 * registry).  The pg-labelled scripts set them to run a suite on
 * PostgreSQL and Redis.  Writes argv[*n] onward (the strings are the
 * environment's own, not copies) and advances *n; the caller leaves room
 * for 4 more entries and the terminating NULL.  Not thread-safe
 * (getenv). */
void harness_backend_args(const char **argv, int *n);

/* Whether TROOP_TEST_DATABASE_URL names a PostgreSQL ledger. */
bool harness_backend_pg(void);

/* Sleep ms milliseconds. */
void harness_sleep_ms(int ms);

#endif
