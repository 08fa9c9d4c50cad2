/*
 * harness.h - process control for integration tests: the one place that
 * starts a coordinator, an engine simulator, a worker and `troop up` (or
 * any program) on 127.0.0.1:0 with its log and TROOP_HOME in the test's
 * temp directory, learns the port it bound from its log, stops it, and
 * at exit stops whatever is still running and removes the temp
 * directories (ledgers and identity keys with them).  The shell tests
 * and benchmarks have the same in troop_chain.sh.
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

/* rm -rf dir (harness_tmpdir's directories go at exit on their own). */
void harness_rmtree(const char *dir);

/* Path of the troop binary ($TROOP_BIN). */
const char *harness_troop(void);

/* Path of the engine simulator ($TROOP_BUILD_DIR/engine-sim). */
const char *harness_sim_path(void);

/* The whole file at `path`, NUL-terminated (malloc'd; the caller frees),
 * or NULL when it cannot be read. */
char *harness_read_file(const char *path);

/* Start argv (NULL-terminated) with output appended to `log`; then wait
 * up to timeout_ms for a line containing `marker` and a "port=N" field in
 * the log's new part.  The process is tracked (harness_stop_all).  Returns
 * 0 or -1 (the log is printed to stderr on failure). */
int harness_start(harness_proc *p, const char *const *argv, const char *log,
    const char *marker, int timeout_ms);

/* The typed starters below fill *p, track the process (see
 * harness_stop_all) and return 0, or -1 with the log printed to stderr.
 * `extra` is a NULL-terminated argument list appended to the defaults (may
 * be NULL).  Not thread-safe. */

/* `troop coordinator --listen 127.0.0.1:0 --data-dir DIR EXTRA...` plus
 * the backend options of harness_backend_args; its log is DIR.log.  An
 * EXTRA "--listen ADDR" replaces the default listen address (a restart on
 * the same port). */
int harness_start_coordinator(harness_proc *p, const char *dir, const char *const *extra);

/* A fresh temporary directory into tmp[tmplen] (harness_tmpdir) and a
 * coordinator in tmp/coordinator, as harness_start_coordinator. */
int harness_start_coordinator_tmp(harness_proc *p, char *tmp, size_t tmplen,
    const char *const *extra);

/* `engine-sim --listen 127.0.0.1:0 EXTRA...` with its output to `log`;
 * the port comes from its "listening on HOST:PORT" line. */
int harness_start_sim(harness_proc *p, const char *log, const char *const *extra);

/* `troop worker --coordinator URL --listen 127.0.0.1:0 --advertise
 * 127.0.0.1 [--engine ENGINE] EXTRA...` with TROOP_HOME=DIR (its identity
 * key is DIR/identity.key) and its log DIR.log.  `engine` NULL: the
 * engines are in EXTRA. */
int harness_start_worker(harness_proc *p, const char *dir, const char *coordinator_url,
    const char *engine, const char *const *extra);

/* `troop up --listen 127.0.0.1:0 --coordinator URL EXTRA...` with
 * TROOP_HOME=DIR (several may share one home) and its log at `log`. */
int harness_start_up(harness_proc *p, const char *dir, const char *log,
    const char *coordinator_url, const char *const *extra);

/* Stop every process this program started through the harness (or
 * tracked) that is still running, the latest first, with SIGTERM (then
 * SIGKILL after 10 s); a forked child stops only its own.  Also runs when
 * the program exits, so no process outlives a test that failed half-way.
 * Not thread-safe. */
void harness_stop_all(void);

/* Track a process started otherwise for harness_stop_all (harness_start
 * and the typed starters track theirs; tracking twice is harmless). */
void harness_track(const harness_proc *p);

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
