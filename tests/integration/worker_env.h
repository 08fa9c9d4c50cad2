/*
 * worker_env.h - helpers shared by the worker integration tests: start the
 * engine simulator, a coordinator and workers as real processes on
 * loopback with the worker tests' defaults (the starting, tracking and
 * clean-up are harness.h's), get real tickets from /authorize, read
 * /sim/stats and /peers.  Header-only (static inline) so each test
 * program takes what it uses.
 */
#ifndef TROOP_TEST_WORKER_ENV_H
#define TROOP_TEST_WORKER_ENV_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"

/* Track a process started with harness_start (harness_track). */
static inline void wenv_track(harness_proc *p)
{
	harness_track(p);
}

/* Stop every process the test started (harness_stop_all). */
static inline void wenv_stop_all(void)
{
	harness_stop_all();
}

static inline const char *wenv_sim_path(void)
{
	return harness_sim_path();
}

static inline char *wenv_read_file(const char *path)
{
	return harness_read_file(path);
}

/* Start engine-sim on 127.0.0.1:0 with `extra` arguments (NULL-terminated,
 * may be NULL); see harness_start_sim. */
static inline int wenv_start_sim(harness_proc *p, const char *log, const char *const *extra)
{
	return harness_start_sim(p, log, extra);
}

/* A coordinator on 127.0.0.1:`port` (0: any) with data in tmp/name, one
 * thread, nodes unverified. */
static inline int wenv_start_coordinator(harness_proc *p, const char *tmp, const char *name,
    int port, const char *const *extra)
{
	char data[400], listen[64];
	const char *args[40];
	int i = 0;

	snprintf(data, sizeof(data), "%s/%s", tmp, name);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	if (port > 0) {
		args[i++] = "--listen";
		args[i++] = listen;
	}
	args[i++] = "--threads";
	args[i++] = "1";
	args[i++] = "--allow-unverified";
	for (int k = 0; extra && extra[k] && i < 39; k++)
		args[i++] = extra[k];
	args[i] = NULL;
	return harness_start_coordinator(p, data, args);
}

/* A worker with TROOP_HOME tmp/name-home (log tmp/name-home.log), serving
 * the simulator at sim_port as an Ollama engine (sim_port 0: the engines
 * are in `extra`), advertising 127.0.0.1, without proof-of-hardware. */
static inline int wenv_start_worker(harness_proc *p, const char *tmp, const char *name,
    const char *coord_url, int sim_port, const char *const *extra)
{
	char home[400], engine[128];
	const char *args[40] = { "--threads", "2", "--no-verify" };
	int i = 3;

	snprintf(home, sizeof(home), "%s/%s-home", tmp, name);
	snprintf(engine, sizeof(engine), "ollama=http://127.0.0.1:%d", sim_port);
	for (int k = 0; extra && extra[k] && i < 39; k++)
		args[i++] = extra[k];
	args[i] = NULL;
	return harness_start_worker(p, home, coord_url, sim_port > 0 ? engine : NULL, args);
}

/* A coordinator as wenv_start_coordinator (data tmp/coord) signing tickets
 * with a fresh key, tmp/ticket.key, kept in *ckey (the worker tests make
 * tickets of their own with it). */
static inline int wenv_start_ticket_coordinator(harness_proc *p, troop_identity *ckey,
    const char *tmp)
{
	char keypath[400], flag[450];
	const char *cargs[] = { flag, NULL };

	snprintf(keypath, sizeof(keypath), "%s/ticket.key", tmp);
	identity_generate(ckey);
	if (identity_save(ckey, keypath) != 0)
		return -1;
	snprintf(flag, sizeof(flag), "--ticket-key=%s", keypath);
	return wenv_start_coordinator(p, tmp, "coord", 0, cargs);
}

/* SIGTERM; 0 when it exits with status 0 (in ASan builds: also no
 * sanitizer report), else -1 with its log printed. */
static inline int wenv_stop_clean(harness_proc *p)
{
	int st = harness_stop(p, SIGTERM);

	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	harness_dump_log(p);
	return -1;
}

/* The node id of the worker whose TROOP_HOME is tmp/name-home. */
static inline int wenv_worker_id(char out[TROOP_ID_LEN + 1], const char *tmp,
    const char *name)
{
	char path[500];
	troop_identity id;

	snprintf(path, sizeof(path), "%s/%s-home/identity.key", tmp, name);
	if (identity_load(&id, path) != 0)
		return -1;
	memcpy(out, id.id, TROOP_ID_LEN + 1);
	identity_wipe(&id);
	return 0;
}

/* GET url+path as JSON (new reference or NULL). */
static inline json_t *wenv_get_json(const char *url, const char *path, int *status)
{
	http_client *c;
	json_t *out = NULL;
	char full[600];
	int st = 0;

	snprintf(full, sizeof(full), "%s%s", url, path);
	if (http_client_new(&c) != 0)
		return NULL;
	if (http_request_json(c, &st, &out, "GET", full, NULL, NULL) != 0)
		out = NULL;
	http_client_free(c);
	if (status)
		*status = st;
	return out;
}

/* A /sim/stats field. */
static inline long wenv_sim_stat(const harness_proc *sim, const char *field)
{
	json_t *s = wenv_get_json(sim->url, "/sim/stats", NULL);
	long v = s ? (long)json_integer_value(json_object_get(s, field)) : -1;

	json_decref(s);
	return v;
}

/* The status of node_id in /peers ("IDLE", "BUSY"), or "" when absent. */
static inline void wenv_peer_status(char *out, size_t len, const char *coord_url,
    const char *node_id)
{
	json_t *p = wenv_get_json(coord_url, "/peers", NULL), *n;
	size_t i;

	snprintf(out, len, "%s", "");
	json_array_foreach(json_object_get(p, "nodes"), i, n) {
		if (strcmp(json_string_value(json_object_get(n, "node_id")) ?: "", node_id) == 0)
			snprintf(out, len, "%s", json_string_value(json_object_get(n, "status")) ?: "?");
	}
	json_decref(p);
}

/* Poll /peers until node_id has status `want` ("" = absent); up to
 * timeout_ms.  Returns 0 when seen. */
static inline int wenv_wait_peer(const char *coord_url, const char *node_id,
    const char *want, int timeout_ms)
{
	char st[16];

	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		wenv_peer_status(st, sizeof(st), coord_url, node_id);
		if (strcmp(st, want) == 0)
			return 0;
		harness_sleep_ms(50);
	}
	return -1;
}

/* Signed POST /authorize for `model` on node_id (may be NULL) with
 * max_seconds (0: the coordinator's default).  *token is malloc'd.
 * Returns the HTTP status. */
static inline int wenv_authorize(char **token, char job_id[64], const troop_identity *user,
    const char *coord_url, const char *model, const char *node_id, int max_seconds)
{
	http_client *c;
	json_t *b = json_pack("{s:s}", "model", model), *out = NULL;
	int st = 0;

	*token = NULL;
	if (node_id)
		json_object_set_new(b, "node_id", json_string(node_id));
	if (max_seconds > 0)
		json_object_set_new(b, "max_seconds", json_integer(max_seconds));
	if (http_client_new(&c) != 0)
		return -1;
	if (http_request_signed(c, &st, &out, user, "POST", coord_url, "/authorize", b) != 0)
		st = -1;
	if (st == 200) {
		*token = strdup(json_string_value(json_object_get(out, "token")));
		if (job_id)
			snprintf(job_id, 64, "%s", json_string_value(json_object_get(out, "job_id")));
	}
	json_decref(b);
	json_decref(out);
	http_client_free(c);
	return st;
}

/* POST to the worker at url+path with "Authorization: Bearer token" (token
 * may be NULL: no header); the whole reply into *resp. */
static inline int wenv_post(http_response *resp, const char *url, const char *path,
    const char *token, const char *body)
{
	http_client *c;
	char full[600], *auth = NULL;
	const char *hdrs[3] = { "Content-Type: application/json", NULL, NULL };
	int rc;

	snprintf(full, sizeof(full), "%s%s", url, path);
	if (token) {
		size_t n = strlen(token) + 32;
		auth = malloc(n);
		snprintf(auth, n, "Authorization: Bearer %s", token);
		hdrs[1] = auth;
	}
	if (http_client_new(&c) != 0) {
		free(auth);
		return -1;
	}
	http_client_set_limits(c, 60000, 64 * 1024 * 1024);
	memset(resp, 0, sizeof(*resp));
	rc = http_request(c, resp, "POST", full, hdrs, body, strlen(body));
	http_client_free(c);
	free(auth);
	return rc;
}

/* Streamed POST: on_data gets each chunk (see http_request_stream). */
static inline int wenv_post_stream(int *status, const char *url, const char *path,
    const char *token, const char *body, http_data_fn on_data, void *arg)
{
	http_client *c;
	char full[600], *auth;
	const char *hdrs[3] = { "Content-Type: application/json", NULL, NULL };
	size_t n = strlen(token ? token : "") + 32;
	int rc;

	snprintf(full, sizeof(full), "%s%s", url, path);
	auth = malloc(n);
	snprintf(auth, n, "Authorization: Bearer %s", token ? token : "");
	hdrs[1] = token ? auth : NULL;
	if (http_client_new(&c) != 0) {
		free(auth);
		return -1;
	}
	http_client_set_limits(c, 60000, 0);
	rc = http_request_stream(c, status, "POST", full, hdrs, body, strlen(body), on_data, arg);
	http_client_free(c);
	free(auth);
	return rc;
}

/* Replace the values of "id" and "created" in SSE / JSON text (they
 * differ between two runs of the same deterministic completion), in
 * place. */
static inline void wenv_normalise(char *s)
{
	char *w = s, *r = s;

	while (*r) {
		if (strncmp(r, "\"id\":\"", 6) == 0) {
			memcpy(w, "\"id\":\"", 6);
			w += 6;
			r += 6;
			while (*r && *r != '"')
				r++;
			continue;
		}
		if (strncmp(r, "\"created\":", 10) == 0) {
			memcpy(w, "\"created\":", 10);
			w += 10;
			r += 10;
			while (*r >= '0' && *r <= '9')
				r++;
			continue;
		}
		*w++ = *r++;
	}
	*w = '\0';
}

/* Count of `needle` in `s`. */
static inline int wenv_count(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* rm -rf dir (harness_rmtree). */
static inline void wenv_rmtree(const char *dir)
{
	harness_rmtree(dir);
}

#endif
