/*
 * demo.c - `troop demo`: a whole troop on this machine.
 *
 * Starts, as child processes of this same binary: a coordinator (SQLite in
 * the demo directory), a worker next to the first real engine it finds on
 * its default port (or, when there is none, the engine simulator from the
 * build directory, announced in a banner: it is a test tool, not an
 * engine; next to this binary in a build tree, or PREFIX/lib/monkey-troop
 * once installed), and `troop up` on 127.0.0.1:9000.  Waits until the worker is
 * live, streams one chat completion through the local proxy to the
 * terminal, prints what to try next, and keeps running until Ctrl-C; then
 * stops the children in order (client, worker, coordinator, simulator).
 * The children's logs go to files in the demo directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "engines/detect.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "sse.h"

#define DEMO_MAX_CHILDREN 4

static const config_opt demo_opts[] = {
	{ "dir", 'd', OPT_STRING, "TROOP_DEMO_DIR", NULL, NULL, "DIR",
	  "where the demo keeps its ledger, node identity and logs "
	  "(default: $TROOP_HOME/demo)", 0, 0 },
	{ "coordinator-port", 0, OPT_INT, NULL, NULL, "8420", "PORT", "coordinator port", 1, 65535 },
	{ "worker-port", 0, OPT_INT, NULL, NULL, "8421", "PORT", "worker proxy port", 1, 65535 },
	{ "client-port", 0, OPT_INT, NULL, NULL, "9000", "PORT", "troop up port", 1, 65535 },
	{ "simulator", 0, OPT_BOOL, NULL, NULL, NULL, NULL,
	  "use the engine simulator even when a real engine is running", 0, 0 },
	{ "prompt", 'p', OPT_STRING, NULL, NULL,
	  "Say hello to the troop in one sentence.", "TEXT", "the demo's chat prompt", 0, 0 },
	{ "no-wait", 0, OPT_BOOL, NULL, NULL, NULL, NULL,
	  "stop everything after the demo completion instead of waiting for Ctrl-C", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

struct child {
	const char *name;
	pid_t pid;
	char log[PATH_MAX];
};

static struct child children[DEMO_MAX_CHILDREN];
static int nchildren;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Start argv with output to `log`; extra environment "K=V" or NULL.  The
 * log is removed and created afresh here, before the child starts, so that
 * wait_port never reads a line a previous run left in it. */
static struct child *spawn(const char *name, char *const argv[], const char *log,
    const char *env)
{
	struct child *c = &children[nchildren];
	pid_t pid;
	int fd;

	if (nchildren >= DEMO_MAX_CHILDREN)
		return NULL;
	if (unlink(log) != 0 && errno != ENOENT) {
		fprintf(stderr, "troop demo: cannot remove the old %s: %s\n", log, strerror(errno));
		return NULL;
	}
	fd = open(log, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "troop demo: cannot create %s: %s\n", log, strerror(errno));
		return NULL;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(fd);
		return NULL;
	}
	if (pid == 0) {
		/* its own process group: Ctrl-C reaches the demo, which stops
		 * the children in order; and die with the demo */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fd, 1);
		dup2(fd, 2);
		if (env)
			putenv((char *)env);
		execv(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	c->name = name;
	c->pid = pid;
	snprintf(c->log, sizeof(c->log), "%s", log);
	nchildren++;
	return c;
}

/* Wait until `log` has a line with `marker` and a "port=N" (or
 * "listening on HOST:N") field; returns the port, or -1 (child died,
 * timeout, or stop requested). */
static int wait_port(struct child *c, const char *marker, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms && !stop_requested; waited += 50) {
		FILE *f = fopen(c->log, "r");
		char line[2048];
		int port = -1;
		while (f && fgets(line, sizeof(line), f)) {
			char *m = strstr(line, marker), *p;
			if (!m)
				continue;
			if ((p = strstr(m, "port=")))
				port = atoi(p + 5);
			else if ((p = strrchr(m, ':')))
				port = atoi(p + 1);
		}
		if (f)
			fclose(f);
		if (port > 0)
			return port;
		if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
			c->pid = 0;
			break;
		}
		sleep_ms(50);
	}
	return -1;
}

static void show_log_tail(const struct child *c)
{
	char cmd[PATH_MAX + 32];

	fprintf(stderr, "---- last lines of %s ----\n", c->log);
	fflush(stderr);
	snprintf(cmd, sizeof(cmd), "tail -n 15 '%s' >&2", c->log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log)\n");
}

static void stop_all(void)
{
	for (int i = nchildren - 1; i >= 0; i--) {
		struct child *c = &children[i];
		int status;
		if (c->pid <= 0)
			continue;
		printf("stopping %s ...\n", c->name);
		fflush(stdout);
		kill(c->pid, SIGTERM);
		for (int t = 0; t < 400; t++) {
			if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
				c->pid = 0;
				break;
			}
			sleep_ms(50);
		}
		if (c->pid > 0) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &status, 0);
			c->pid = 0;
		}
	}
}

/* Path of a program next to this binary (build/troop -> build/engine-sim). */
static void sibling(char *out, size_t len, const char *name)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0) {
		snprintf(out, len, "%s", name);
		return;
	}
	self[n] = '\0';
	snprintf(out, len, "%s/%s", dirname(self), name);
}

/* ---- the demo completion ------------------------------------------------------ */

static int on_event(void *arg, const char *event, const char *data, size_t len, const char *id)
{
	json_t *j, *delta;
	const char *text;

	(void)arg;
	(void)event;
	(void)id;
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
		return 0;
	j = json_loadb(data, len, 0, NULL);
	delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
	text = json_string_value(json_object_get(delta, "content"));
	if (text) {
		fputs(text, stdout);
		fflush(stdout);
	}
	if (json_object_get(j, "error"))
		fprintf(stderr, "\n[error event] %.*s\n", (int)len, data);
	json_decref(j);
	return 0;
}

static int on_data(void *arg, const char *data, size_t len)
{
	return sse_parser_feed(arg, data, len);
}

static int stream_completion(const char *base, const char *model, const char *prompt)
{
	http_client *hc = NULL;
	sse_parser *p = NULL;
	json_t *body;
	char *text, url[256];
	const char *h[] = { "Content-Type: application/json", "Accept: text/event-stream", NULL };
	int st = 0, rc;

	body = json_pack("{s:s, s:b, s:[{s:s, s:s}], s:i}", "model", model, "stream", 1,
	    "messages", "role", "user", "content", prompt, "max_tokens", 48);
	text = json_dump_compact(body, NULL);
	json_decref(body);
	snprintf(url, sizeof(url), "%s/v1/chat/completions", base);
	if (http_client_new(&hc) != 0 || sse_parser_new(&p, 1 << 20, on_event, NULL) != 0) {
		rc = TROOP_ENOMEM;
		goto out;
	}
	http_client_set_limits(hc, 60000, 0);
	rc = http_request_stream(hc, &st, "POST", url, h, text, strlen(text), on_data, p);
	sse_parser_finish(p);
	printf("\n");
	if (rc == 0 && st != 200) {
		fprintf(stderr, "the proxy answered HTTP %d\n", st);
		rc = TROOP_EUPSTREAM;
	}
out:
	sse_parser_free(p);
	http_client_free(hc);
	free(text);
	return rc;
}

/* The first model live in the troop, once a node has registered. */
static int wait_model(char *model, size_t len, const char *coord, int timeout_ms)
{
	http_client *hc = NULL;
	char url[256];
	int found = -1;

	snprintf(url, sizeof(url), "%s/v1/models", coord);
	if (http_client_new(&hc) != 0)
		return -1;
	http_client_set_limits(hc, 2000, 0);
	for (int waited = 0; waited < timeout_ms && !stop_requested && found < 0; waited += 250) {
		json_t *out = NULL;
		int st = 0;
		if (http_request_json(hc, &st, &out, "GET", url, NULL, NULL) == 0 && st == 200) {
			const char *id = json_string_value(json_object_get(
			    json_array_get(json_object_get(out, "data"), 0), "id"));
			if (id) {
				snprintf(model, len, "%s", id);
				found = 0;
			}
		}
		json_decref(out);
		if (found < 0)
			sleep_ms(250);
	}
	http_client_free(hc);
	return found;
}

/* ---- the command ------------------------------------------------------------- */

static int find_engine(char *spec, size_t len, bool *simulated)
{
	http_client *hc = NULL;
	engine_info *found = NULL;
	size_t n = 0;

	*simulated = true;
	if (http_client_new(&hc) != 0)
		return -1;
	http_client_set_limits(hc, 800, 0);
	if (engine_autodetect(&found, &n, hc, "127.0.0.1") == 0) {
		for (size_t i = 0; i < n; i++) {
			if (found[i].ready && found[i].models.count > 0) {
				snprintf(spec, len, "%s=%s", engine_type_name(found[i].type), found[i].url);
				*simulated = false;
				break;
			}
		}
	}
	engine_info_array_free(found, n);
	http_client_free(hc);
	return 0;
}

int cmd_demo(int argc, char **argv)
{
	config *cfg = NULL;
	char dir[PATH_MAX - 64], path[PATH_MAX], log[PATH_MAX], engine[600], sim[PATH_MAX];
	char coord_url[80], coord_listen[64], worker_listen[64], client_listen[64];
	char client_url[80], model[300], troop[PATH_MAX], home_env[PATH_MAX + 16];
	bool simulated;
	int rc, ret = 1;
	struct child *c;

	rc = config_parse(&cfg, demo_opts, argc, argv);
	if (rc == CONFIG_HELP) {
		config_usage(stdout, "demo", "[options]",
		    "Run a whole troop on this machine: coordinator, worker and client proxy,\n"
		    "then stream one chat completion through it.", demo_opts);
		return 0;
	}
	if (rc != 0) {
		fprintf(stderr, "troop demo: %s\n(see 'troop demo --help')\n", troop_error_msg());
		return EXIT_USAGE;
	}
	if (config_str(cfg, "dir")) {
		snprintf(dir, sizeof(dir), "%s", config_str(cfg, "dir"));
	} else {
		char home[PATH_MAX - 128];
		if (config_troop_home(home, sizeof(home)) != 0) {
			fprintf(stderr, "troop demo: %s\n", troop_error_msg());
			goto out;
		}
		snprintf(dir, sizeof(dir), "%s/demo", home);
	}
	if (config_private_dir(dir) != 0) {
		fprintf(stderr, "troop demo: %s\n", troop_error_msg());
		goto out;
	}
	snprintf(coord_listen, sizeof(coord_listen), "127.0.0.1:%ld", config_int(cfg, "coordinator-port"));
	snprintf(coord_url, sizeof(coord_url), "http://%s", coord_listen);
	snprintf(worker_listen, sizeof(worker_listen), "127.0.0.1:%ld", config_int(cfg, "worker-port"));
	snprintf(client_listen, sizeof(client_listen), "127.0.0.1:%ld", config_int(cfg, "client-port"));
	snprintf(client_url, sizeof(client_url), "http://%s", client_listen);
	sibling(troop, sizeof(troop), "troop");

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	printf("Monkey Troop demo: everything runs on this machine; logs in %s\n\n", dir);

	/* 1. coordinator */
	snprintf(path, sizeof(path), "%s/coordinator", dir);
	snprintf(log, sizeof(log), "%s/coordinator.log", dir);
	{
		char *av[] = { troop, "coordinator", "--listen", coord_listen, "--data-dir", path,
			"--allow-unverified", NULL };
		c = spawn("coordinator", av, log, NULL);
	}
	if (!c || wait_port(c, "coordinator_started", 15000) < 0) {
		fprintf(stderr, "troop demo: the coordinator did not start (is port %s free?)\n",
		    coord_listen);
		if (c)
			show_log_tail(c);
		goto out;
	}
	printf("  coordinator   %s\n", coord_url);

	/* 2. an engine: a real one if one runs here, else the simulator */
	simulated = true;
	if (!config_bool(cfg, "simulator"))
		find_engine(engine, sizeof(engine), &simulated);
	if (simulated) {
		int port;
		sibling(sim, sizeof(sim), "engine-sim");
		if (access(sim, X_OK) != 0)    /* installed: PREFIX/lib/monkey-troop/ */
			sibling(sim, sizeof(sim), "../lib/monkey-troop/engine-sim");
		snprintf(log, sizeof(log), "%s/engine-sim.log", dir);
		{
			char *av[] = { sim, "--listen", "127.0.0.1:0", "--tokens-per-second", "30",
				"--ttft-ms", "150", NULL };
			c = access(sim, X_OK) == 0 ? spawn("engine simulator", av, log, NULL) : NULL;
		}
		if (!c || (port = wait_port(c, "listening on", 10000)) < 0) {
			fprintf(stderr, "troop demo: no engine found on the default ports, and the "
			    "engine simulator (%s) did not start; run 'make' first\n", sim);
			goto out;
		}
		snprintf(engine, sizeof(engine), "ollama=http://127.0.0.1:%d", port);
		printf("\n  +---------------------------------------------------------------+\n"
		       "  | No inference engine (Ollama, vLLM, LM Studio, llama.cpp) was  |\n"
		       "  | found on this machine, so the demo uses the ENGINE SIMULATOR: |\n"
		       "  | a test tool that speaks Ollama's API and answers with made-up |\n"
		       "  | words. Start a real engine to see real completions.           |\n"
		       "  +---------------------------------------------------------------+\n\n");
	}
	printf("  engine        %s\n", engine);

	/* 3. worker, with an identity of its own */
	snprintf(path, sizeof(path), "%s/worker-home", dir);
	if (config_private_dir(path) != 0) {
		fprintf(stderr, "troop demo: %s\n", troop_error_msg());
		goto out;
	}
	snprintf(home_env, sizeof(home_env), "TROOP_HOME=%s", path);
	snprintf(log, sizeof(log), "%s/worker.log", dir);
	{
		char *av[] = { troop, "worker", "--coordinator", coord_url, "--listen", worker_listen,
			"--advertise", "127.0.0.1", "--engine", engine, "--donate", "always",
			"--name", "demo-worker", NULL };
		c = spawn("worker", av, log, home_env);
	}
	if (!c || wait_port(c, "worker_started", 20000) < 0) {
		fprintf(stderr, "troop demo: the worker did not start (is port %s free?)\n",
		    worker_listen);
		if (c)
			show_log_tail(c);
		goto out;
	}
	printf("  worker        http://%s\n", worker_listen);

	/* 4. the client proxy, with your own identity */
	snprintf(log, sizeof(log), "%s/client.log", dir);
	{
		char *av[] = { troop, "up", "--coordinator", coord_url, "--listen", client_listen, NULL };
		c = spawn("client proxy", av, log, NULL);
	}
	if (!c || wait_port(c, "client_started", 15000) < 0) {
		fprintf(stderr, "troop demo: 'troop up' did not start (is port %s free?)\n",
		    client_listen);
		if (c)
			show_log_tail(c);
		goto out;
	}
	printf("  troop up      %s/v1   (point any OpenAI SDK here)\n\n", client_url);

	/* 5. wait for the worker to be live, then one streamed completion */
	printf("waiting for the worker to register ...\n");
	if (wait_model(model, sizeof(model), coord_url, 30000) != 0) {
		fprintf(stderr, "troop demo: the worker did not register with the coordinator\n");
		show_log_tail(&children[2]);
		goto out;
	}
	printf("model %s is live. Streaming a chat completion through the troop:\n\n> %s\n",
	    model, config_str(cfg, "prompt"));
	if (stream_completion(client_url, model, config_str(cfg, "prompt")) != 0) {
		fprintf(stderr, "troop demo: the completion failed: %s\n", troop_error_msg());
		show_log_tail(&children[nchildren - 1]);
		goto out;
	}

	printf("\nIt works. Try next (in another terminal):\n"
	    "  curl -N %s/v1/chat/completions -H 'Content-Type: application/json' \\\n"
	    "    -d '{\"model\":\"%s\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
	    "  %s balance --coordinator %s\n"
	    "  %s nodes --coordinator %s\n"
	    "  %s transactions --coordinator %s\n",
	    client_url, model, troop, coord_url, troop, coord_url, troop, coord_url);
	ret = 0;
	if (config_bool(cfg, "no-wait"))
		goto out;
	printf("\nThe troop keeps running; press Ctrl-C to stop it.\n");
	fflush(stdout);
	while (!stop_requested) {
		for (int i = 0; i < nchildren; i++) {
			if (children[i].pid > 0 && waitpid(children[i].pid, NULL, WNOHANG) ==
			    children[i].pid) {
				fprintf(stderr, "troop demo: the %s exited; see %s\n", children[i].name,
				    children[i].log);
				children[i].pid = 0;
				stop_requested = 1;
				ret = 1;
			}
		}
		sleep_ms(200);
	}
	printf("\n");
out:
	stop_all();
	config_free(cfg);
	return ret;
}
