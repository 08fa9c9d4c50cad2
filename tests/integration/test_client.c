/*
 * test_client.c - the client CLI (`troop balance`, `transactions`,
 * `nodes`, `models`, `chat`) as a user runs it: real `troop` processes
 * against a real coordinator (--allow-unverified) on loopback, checking
 * the tables people read, the --json scripts read, exit codes and the
 * one-line errors.  Nodes are announced with signed heartbeats from the
 * test; for `troop chat` they point at the engine simulator (which, unlike
 * a worker, ignores the ticket), so the CLI's streaming and failover are
 * tested on their own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <curl/curl.h>

#include "harness.h"
#include "http_client.h"
#include "identity.h"
#include "json.h"

static char tmp[256];
static char home[300];
static harness_proc coord, sim, sim500, simhang;

/* ---- processes ------------------------------------------------------------- */

static void start_coordinator(harness_proc *p, const char *name, const char *extra)
{
	char data[300];
	/* jobs without receipts hold --reserve-seconds */
	const char *args[] = { "--threads", "2", "--node-ttl", "3600", "--allow-unverified",
	    "--reserve-seconds", "10", extra, NULL };

	snprintf(data, sizeof(data), "%s/%s", tmp, name);
	assert_int_equal(harness_start_coordinator(p, data, args), 0);
}

static void start_sim(harness_proc *p, const char *name, const char *fault)
{
	char log[300];
	const char *args[] = { "--models", "llama3:8b,qwen2.5:7b", "--tokens-per-second", "500",
	    fault ? "--fault" : NULL, fault, NULL };

	snprintf(log, sizeof(log), "%s/%s.log", tmp, name);
	assert_int_equal(harness_start_sim(p, log, args), 0);
}

/* A loopback port with nobody listening. */
static int dead_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static char *slurp(const char *path)
{
	char *buf = harness_read_file(path);

	assert_non_null(buf);
	return buf;
}

typedef struct {
	int rc;
	char *out;
	char *err;
} run_result;

static void run_free(run_result *r)
{
	free(r->out);
	free(r->err);
}

/* Run `troop ARGS...` (NULL-terminated) with TROOP_HOME and
 * TROOP_COORDINATOR set, stdin from `input` (NULL: /dev/null). */
static run_result run_troop_in(const char *coord_url, const char *input, ...)
{
	static int seq;
	char outp[320], errp[320], inp[320];
	const char *argv[32];
	run_result r = { 0 };
	va_list ap;
	int i = 0, status;
	pid_t pid;

	snprintf(outp, sizeof(outp), "%s/run%d.out", tmp, seq);
	snprintf(errp, sizeof(errp), "%s/run%d.err", tmp, seq);
	snprintf(inp, sizeof(inp), "%s/run%d.in", tmp, seq++);
	if (input) {
		FILE *f = fopen(inp, "w");
		assert_non_null(f);
		fputs(input, f);
		fclose(f);
	}
	argv[i++] = harness_troop();
	va_start(ap, input);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && i < 31;)
		argv[i++] = a;
	va_end(ap);
	argv[i] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int in = open(input ? inp : "/dev/null", O_RDONLY);
		dup2(o, 1);
		dup2(e, 2);
		dup2(in, 0);
		setenv("TROOP_HOME", home, 1);
		if (coord_url)
			setenv("TROOP_COORDINATOR", coord_url, 1);
		unsetenv("COORDINATOR_URL");
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r.out = slurp(outp);
	r.err = slurp(errp);
	return r;
}

#define run_troop(...) run_troop_in(coord.url, NULL, __VA_ARGS__, (const char *)NULL)

static void expect_rc(const run_result *r, int rc)
{
	if (r->rc != rc)
		fprintf(stderr, "exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\n", r->rc, rc,
		    r->out, r->err);
	assert_int_equal(r->rc, rc);
}

static json_t *parse_out(const run_result *r)
{
	json_error_t e;
	json_t *v = json_loads(r->out, 0, &e);

	if (!v)
		fprintf(stderr, "not JSON (%s):\n%s\n", e.text, r->out);
	assert_non_null(v);
	return v;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The line of `text` that contains `needle`, copied into out. */
static bool line_with(char *out, size_t len, const char *text, const char *needle)
{
	const char *p = strstr(text, needle), *b, *e;

	if (!p)
		return false;
	for (b = p; b > text && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	if (!e)
		e = p + strlen(p);
	snprintf(out, len, "%.*s", (int)(e - b), b);
	return true;
}

/* ---- the coordinator side ------------------------------------------------------ */

static troop_identity me;  /* the identity the CLI uses (TROOP_HOME) */

static void heartbeat_to(const char *url, const troop_identity *node, const char *name,
    int port, const char *status, int active, int max_jobs, const char *model2)
{
	http_client *c;
	json_t *b, *out = NULL, *models;
	int st = 0;

	models = json_pack("[{s:s, s:s, s:I, s:s}]", "name", "llama3:8b", "content_hash",
	    "sha256:0123456789abcdef0123456789abcdef", "size_bytes", (json_int_t)4661224676LL,
	    "engine", "ollama");
	if (model2)
		json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s}", "name", model2,
		    "content_hash", "", "size_bytes", (json_int_t)0, "engine", "vllm"));
	b = json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:{s:i, s:i}, s:s}",
	    "node_id", node->id, "name", name, "tailscale_ip", "127.0.0.1", "port", port,
	    "status", status, "models", models, "load", "active_jobs", active,
	    "max_jobs", max_jobs, "version", "troop/test");
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_signed(c, &st, &out, node, "POST", url, "/heartbeat", b), 0);
	if (st != 200)
		fprintf(stderr, "heartbeat: %d\n", st);
	assert_int_equal(st, 200);
	json_decref(out);
	json_decref(b);
	http_client_free(c);
}

static void heartbeat(const troop_identity *node, const char *name, int port,
    const char *status, int active, int max_jobs, const char *model2)
{
	heartbeat_to(coord.url, node, name, port, status, active, max_jobs, model2);
}

/* ---- tests: account -------------------------------------------------------------- */

static void test_balance_and_transactions(void **state)
{
	run_result r;
	json_t *j, *tx;
	char line[512];

	(void)state;
	r = run_troop("balance");
	expect_rc(&r, 0);
	assert_non_null(strstr(r.out, me.id));
	assert_true(line_with(line, sizeof(line), r.out, "available"));
	assert_non_null(strstr(line, "3600 s"));
	assert_non_null(strstr(line, "(1.00 h)"));
	assert_true(line_with(line, sizeof(line), r.out, "reserved"));
	assert_non_null(strstr(line, " 0 s"));
	/* starter credits are trial credits */
	assert_true(line_with(line, sizeof(line), r.out, "trial "));
	assert_non_null(strstr(line, "3600 s"));
	assert_true(line_with(line, sizeof(line), r.out, "pending "));
	assert_non_null(strstr(line, " 0 s"));
	run_free(&r);

	r = run_troop("balance", "--json");
	expect_rc(&r, 0);
	j = parse_out(&r);
	assert_string_equal(json_string_value(json_object_get(j, "public_key")), me.id);
	assert_int_equal(json_integer_value(json_object_get(j, "available_seconds")), 3600);
	assert_int_equal(json_integer_value(json_object_get(j, "balance_seconds")), 3600);
	assert_int_equal(json_integer_value(json_object_get(j, "trial_seconds")), 3600);
	assert_int_equal(json_integer_value(json_object_get(j, "pending_seconds")), 0);
	json_decref(j);
	run_free(&r);

	r = run_troop("transactions");
	expect_rc(&r, 0);
	assert_int_equal(count_lines(r.out), 2);
	assert_true(line_with(line, sizeof(line), r.out, "ID"));
	assert_non_null(strstr(line, "TYPE"));
	assert_non_null(strstr(line, "CREDITS"));
	assert_non_null(strstr(line, "JOB"));
	assert_true(line_with(line, sizeof(line), r.out, "grant"));
	assert_non_null(strstr(line, "+3600"));
	run_free(&r);

	r = run_troop("transactions", "--json", "--limit", "5");
	expect_rc(&r, 0);
	j = parse_out(&r);
	tx = json_object_get(j, "transactions");
	assert_int_equal(json_array_size(tx), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(tx, 0), "type")),
	    "grant");
	json_decref(j);
	run_free(&r);
}

/* ---- tests: discovery ----------------------------------------------------------- */

static void test_nodes_and_models(void **state)
{
	troop_identity a, b;
	char sa[9], sb[9], line[512], addr[64];
	run_result r;
	json_t *j;

	(void)state;
	identity_generate(&a);
	identity_generate(&b);
	snprintf(sa, sizeof(sa), "%.8s", a.id);
	snprintf(sb, sizeof(sb), "%.8s", b.id);
	heartbeat(&a, "box-a", 18001, "IDLE", 1, 4, "mistral:7b");
	heartbeat(&b, "box-b\033[31m", 18002, "BUSY", 4, 4, NULL);

	r = run_troop("nodes");
	expect_rc(&r, 0);
	assert_true(line_with(line, sizeof(line), r.out, "ADDRESS"));
	assert_non_null(strstr(line, "STATUS"));
	assert_non_null(strstr(line, "MODELS"));
	assert_non_null(strstr(line, "VERIFIED"));
	assert_non_null(strstr(line, "ESTABLISHED"));
	assert_non_null(strstr(line, "DISPUTES"));
	assert_non_null(strstr(line, "SEALED"));
	assert_true(line_with(line, sizeof(line), r.out, sa));
	assert_non_null(strstr(line, "box-a"));
	assert_non_null(strstr(line, "127.0.0.1:18001"));
	assert_non_null(strstr(line, "IDLE"));
	assert_non_null(strstr(line, "llama3:8b,mistral:7b"));
	assert_non_null(strstr(line, "1/4"));
	assert_non_null(strstr(line, "x1.00"));
	assert_true(line_with(line, sizeof(line), r.out, sb));
	assert_non_null(strstr(line, "BUSY"));
	/* a node's name cannot drive the terminal */
	assert_null(strchr(r.out, '\033'));
	/* columns line up: ADDRESS starts at the same offset on every line */
	{
		const char *hdr = r.out, *row;
		size_t col;
		assert_true(line_with(line, sizeof(line), r.out, "ADDRESS"));
		col = (size_t)(strstr(line, "ADDRESS") - line);
		row = strstr(r.out, sa);
		while (row > hdr && row[-1] != '\n')
			row--;
		snprintf(addr, sizeof(addr), "%.*s", 15, row + col);
		assert_string_equal(addr, "127.0.0.1:18001");
	}
	run_free(&r);

	r = run_troop("nodes", "--model", "mistral:7b");
	expect_rc(&r, 0);
	assert_non_null(strstr(r.out, sa));
	assert_null(strstr(r.out, sb));
	run_free(&r);

	r = run_troop("nodes", "--model", "no-such-model", "--json");
	expect_rc(&r, 0);
	j = parse_out(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
	json_decref(j);
	run_free(&r);

	r = run_troop("nodes", "--json");
	expect_rc(&r, 0);
	j = parse_out(&r);
	assert_true(json_integer_value(json_object_get(j, "count")) >= 2);
	assert_int_equal(json_array_size(json_object_get(j, "nodes")),
	    (size_t)json_integer_value(json_object_get(j, "count")));
	json_decref(j);
	run_free(&r);

	r = run_troop("models");
	expect_rc(&r, 0);
	assert_true(line_with(line, sizeof(line), r.out, "MODEL"));
	assert_non_null(strstr(line, "NODES"));
	assert_non_null(strstr(line, "CONTENT HASH"));
	assert_true(line_with(line, sizeof(line), r.out, "llama3:8b"));
	assert_non_null(strstr(line, "4.3 GiB"));
	assert_non_null(strstr(line, "sha256:0123456789ab"));
	assert_null(strstr(line, "sha256:0123456789abc")); /* shortened */
	assert_true(line_with(line, sizeof(line), r.out, "mistral:7b"));
	run_free(&r);

	r = run_troop("models", "--json");
	expect_rc(&r, 0);
	j = parse_out(&r);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
	{
		size_t i;
		json_t *m;
		bool found = false;
		json_array_foreach(json_object_get(j, "data"), i, m)
			if (strcmp(json_string_value(json_object_get(m, "id")), "llama3:8b") == 0) {
				found = true;
				assert_string_equal(json_string_value(json_object_get(m, "content_hash")),
				    "sha256:0123456789abcdef0123456789abcdef");
			}
		assert_true(found);
	}
	json_decref(j);
	run_free(&r);

	heartbeat(&a, "box-a", 18001, "OFFLINE", 0, 4, NULL);
	heartbeat(&b, "box-b", 18002, "OFFLINE", 0, 4, NULL);
}

/* ---- tests: errors and usage ---------------------------------------------------- */

static void test_errors_and_usage(void **state)
{
	char down[64];
	run_result r;
	const char *cmds[] = { "balance", "nodes", "models", "transactions" };

	(void)state;
	snprintf(down, sizeof(down), "http://127.0.0.1:%d", dead_port());
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		r = run_troop_in(down, NULL, cmds[i], (const char *)NULL);
		expect_rc(&r, 1);
		assert_int_equal(count_lines(r.err), 1);
		assert_non_null(strstr(r.err, "cannot reach the coordinator"));
		assert_non_null(strstr(r.err, down));
		assert_non_null(strstr(r.err, "TROOP_COORDINATOR"));
		assert_string_equal(r.out, "");
		run_free(&r);
	}
	/* --coordinator wins over the environment */
	r = run_troop_in(down, NULL, "models", "--coordinator", coord.url, (const char *)NULL);
	expect_rc(&r, 0);
	run_free(&r);
	r = run_troop_in(down, NULL, "chat", "-m", "llama3:8b", "hi", (const char *)NULL);
	expect_rc(&r, 1);
	assert_non_null(strstr(r.err, "cannot reach the coordinator"));
	run_free(&r);

	/* bad usage: exit 2 and a usage line */
	r = run_troop("nodes", "--bogus");
	expect_rc(&r, 2);
	assert_non_null(strstr(r.err, "--bogus"));
	assert_non_null(strstr(r.err, "usage: troop nodes"));
	run_free(&r);
	r = run_troop("transactions", "--limit", "0");
	expect_rc(&r, 2);
	assert_non_null(strstr(r.err, "--limit"));
	run_free(&r);
	r = run_troop("balance", "extra");
	expect_rc(&r, 2);
	run_free(&r);
	r = run_troop("chat", "hello");
	expect_rc(&r, 2);
	assert_non_null(strstr(r.err, "-m MODEL"));
	assert_non_null(strstr(r.err, "usage: troop chat"));
	run_free(&r);
	r = run_troop_in(coord.url, "", "chat", "-m", "llama3:8b", (const char *)NULL);
	expect_rc(&r, 2);
	assert_non_null(strstr(r.err, "empty"));
	run_free(&r);
	r = run_troop("balance", "--coordinator", "ftp://x");
	expect_rc(&r, 2);
	run_free(&r);
	r = run_troop("nodes", "--help");
	expect_rc(&r, 0);
	assert_non_null(strstr(r.out, "--model"));
	assert_non_null(strstr(r.out, "TROOP_COORDINATOR"));
	run_free(&r);

	/* a coordinator error is one line that says what to do */
	r = run_troop("chat", "-m", "no-such-model", "hi");
	expect_rc(&r, 1);
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.err, "no-such-model"));
	assert_non_null(strstr(r.err, "troop models"));
	run_free(&r);
}

/* ---- tests: chat ------------------------------------------------------------------ */

/* What the simulator answers to this prompt, asked directly. */
static char *direct_answer(const char *prompt)
{
	http_client *c;
	json_t *body, *out = NULL;
	char url[128];
	char *text;
	int st;

	snprintf(url, sizeof(url), "%s/v1/chat/completions", sim.url);
	body = json_pack("{s:s, s:[{s:s, s:s}]}", "model", "llama3:8b", "messages",
	    "role", "user", "content", prompt);
	assert_int_equal(http_client_new(&c), 0);
	assert_int_equal(http_request_json(c, &st, &out, "POST", url, NULL, body), 0);
	assert_int_equal(st, 200);
	text = strdup(json_string_value(json_object_get(json_object_get(
	    json_array_get(json_object_get(out, "choices"), 0), "message"), "content")));
	json_decref(out);
	json_decref(body);
	http_client_free(c);
	return text;
}

static void test_chat_streams(void **state)
{
	troop_identity node;
	char *want, *got_job, job[64];
	run_result r;
	json_t *j;

	(void)state;
	identity_generate(&node);
	heartbeat(&node, "sim", sim.port, "IDLE", 0, 8, NULL);
	want = direct_answer("tell me about monkeys");

	r = run_troop("chat", "-m", "llama3:8b", "tell", "me", "about", "monkeys");
	expect_rc(&r, 0);
	assert_true(strlen(r.out) > 1);
	assert_int_equal(r.out[strlen(r.out) - 1], '\n');
	r.out[strlen(r.out) - 1] = '\0';
	assert_string_equal(r.out, want);
	got_job = strstr(r.err, "job ");
	assert_non_null(got_job);
	assert_int_equal(sscanf(got_job, "job %63s", job), 1);
	run_free(&r);

	/* the prompt from stdin, with a system prompt */
	r = run_troop_in(coord.url, "tell me about monkeys\n", "chat", "-m", "llama3:8b", "-",
	    (const char *)NULL);
	expect_rc(&r, 0);
	r.out[strlen(r.out) - 1] = '\0';
	assert_string_equal(r.out, want);
	run_free(&r);

	/* the job shows in the ledger under the id chat printed */
	r = run_troop("transactions", "--json");
	expect_rc(&r, 0);
	j = parse_out(&r);
	{
		size_t i;
		json_t *t;
		bool found = false;
		json_array_foreach(json_object_get(j, "transactions"), i, t)
			found |= strcmp(json_string_value(json_object_get(t, "job_id")), job) == 0 &&
			    strcmp(json_string_value(json_object_get(t, "type")), "reserve") == 0;
		assert_true(found);
	}
	json_decref(j);
	run_free(&r);
	r = run_troop("transactions");
	expect_rc(&r, 0);
	{
		char line[512];
		assert_true(line_with(line, sizeof(line), r.out, job));
		assert_non_null(strstr(line, "reserve"));
		assert_non_null(strstr(line, "-10"));
		assert_non_null(strstr(line, "llama3:8b"));
	}
	run_free(&r);

	/* --verbose says where it ran */
	r = run_troop("chat", "-v", "-m", "llama3:8b", "--system", "be brief", "hello");
	expect_rc(&r, 0);
	assert_non_null(strstr(r.err, "first byte after"));
	run_free(&r);
	free(want);
	heartbeat(&node, "sim", sim.port, "OFFLINE", 0, 8, NULL);
}

static void test_chat_failover(void **state)
{
	troop_identity dead, broken, good;
	char *want;
	run_result r;

	(void)state;
	identity_generate(&dead);
	identity_generate(&broken);
	identity_generate(&good);
	want = direct_answer("failover please");
	for (int round = 0; round < 3; round++) {
		/* the least-loaded nodes are chosen first: the dead one, then the one
		 * answering 500, and only then the good one */
		heartbeat(&dead, "dead", dead_port(), "IDLE", 0, 8, NULL);
		heartbeat(&broken, "broken", sim500.port, "IDLE", 1, 8, NULL);
		heartbeat(&good, "good", sim.port, "IDLE", 2, 8, NULL);
		r = run_troop("chat", "-m", "llama3:8b", "failover please");
		expect_rc(&r, 0);
		r.out[strlen(r.out) - 1] = '\0';
		assert_string_equal(r.out, want);
		assert_non_null(strstr(r.err, "could not be reached"));
		assert_non_null(strstr(r.err, "HTTP 500"));
		assert_non_null(strstr(r.err, "trying another node"));
		run_free(&r);
	}

	/* with the good node gone, three failures end in one clear line */
	heartbeat(&good, "good", sim.port, "OFFLINE", 0, 8, NULL);
	heartbeat(&dead, "dead", dead_port(), "IDLE", 0, 8, NULL);
	heartbeat(&broken, "broken", sim500.port, "IDLE", 1, 8, NULL);
	r = run_troop("chat", "-m", "llama3:8b", "failover please");
	expect_rc(&r, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "no other node can serve 'llama3:8b'"));
	run_free(&r);

	/* every node busy: 503 from the coordinator, said plainly */
	heartbeat(&dead, "dead", dead_port(), "BUSY", 0, 8, NULL);
	heartbeat(&broken, "broken", sim500.port, "BUSY", 1, 8, NULL);
	r = run_troop("chat", "-m", "llama3:8b", "anyone?");
	expect_rc(&r, 1);
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.err, "busy"));
	assert_non_null(strstr(r.err, "try again"));
	run_free(&r);
	heartbeat(&dead, "dead", 1, "OFFLINE", 0, 8, NULL);
	heartbeat(&broken, "broken", 1, "OFFLINE", 0, 8, NULL);
	free(want);
}

static void test_chat_no_credits(void **state)
{
	harness_proc poor;
	troop_identity node;
	run_result r;

	(void)state;
	start_coordinator(&poor, "poor", "--starter-credits=0");
	identity_generate(&node);
	heartbeat_to(poor.url, &node, "sim", sim.port, "IDLE", 0, 8, NULL);
	r = run_troop_in(poor.url, NULL, "chat", "-m", "llama3:8b", "hi", (const char *)NULL);
	expect_rc(&r, 1);
	assert_string_equal(r.out, "");
	assert_int_equal(count_lines(r.err), 1);
	assert_non_null(strstr(r.err, "insufficient credits"));
	assert_non_null(strstr(r.err, "price"));
	assert_non_null(strstr(r.err, "troop balance"));
	run_free(&r);
	r = run_troop_in(poor.url, NULL, "balance", (const char *)NULL);
	expect_rc(&r, 0);
	{
		char line[256];
		assert_true(line_with(line, sizeof(line), r.out, "available"));
		assert_non_null(strstr(line, " 0 s"));
	}
	run_free(&r);
	harness_stop(&poor, SIGTERM);
}

/* ---- troop up ------------------------------------------------------------------ */

static harness_proc up;

static void start_up(harness_proc *p, const char *coord_url, const char *const *extra)
{
	char log[300];
	/* no ticket fetched ahead: each test sets up the nodes it means its
	 * requests to reach (a ticket ahead would go to the last test's) */
	const char *args[24] = { "--threads", "2", "--first-byte-timeout", "2",
		"--prefetch-idle", "0" };
	int i = 6;
	static int seq;

	snprintf(log, sizeof(log), "%s/up%d.log", tmp, seq++);
	for (; extra && *extra && i < 23; extra++)
		args[i++] = *extra;
	args[i] = NULL;
	assert_int_equal(harness_start_up(p, home, log, coord_url, args), 0);
}

typedef struct {
	long status;
	char *body;
	size_t len;
	char job[64];
	char ctype[128];
} http_result;

static size_t collect_body(char *data, size_t sz, size_t n, void *arg)
{
	http_result *r = arg;
	char *nb = realloc(r->body, r->len + sz * n + 1);

	assert_non_null(nb);
	r->body = nb;
	memcpy(r->body + r->len, data, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static size_t collect_header(char *data, size_t sz, size_t n, void *arg)
{
	http_result *r = arg;
	size_t len = sz * n;

	if (len > 13 && strncasecmp(data, "X-Troop-Job: ", 13) == 0)
		snprintf(r->job, sizeof(r->job), "%.*s", (int)strcspn(data + 13, "\r\n"), data + 13);
	if (len > 14 && strncasecmp(data, "Content-Type: ", 14) == 0)
		snprintf(r->ctype, sizeof(r->ctype), "%.*s", (int)strcspn(data + 14, "\r\n"),
		    data + 14);
	return len;
}

/* One request with libcurl (method POST when body != NULL). */
static http_result http_do(const char *url, const char *body, const char *authz)
{
	http_result r = { 0 };
	CURL *e = curl_easy_init();
	struct curl_slist *h = NULL;

	assert_non_null(e);
	r.body = calloc(1, 1);
	h = curl_slist_append(h, "Content-Type: application/json");
	if (authz)
		h = curl_slist_append(h, authz);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, collect_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	assert_int_equal(curl_easy_perform(e), CURLE_OK);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return r;
}

/* Stop a troop process with SIGTERM; it must exit 0 (a clean drain, and
 * no sanitizer report in sanitizer builds). */
static void stop_clean(harness_proc *p)
{
	int st = harness_stop(p, SIGTERM);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		harness_dump_log(p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void http_result_free(http_result *r)
{
	free(r->body);
}

static http_result up_post(const harness_proc *p, const char *path, const char *body)
{
	char url[256];

	snprintf(url, sizeof(url), "%s%s", p->url, path);
	return http_do(url, body, NULL);
}

static const char *err_code_of(const http_result *r)
{
	static char code[64];
	json_t *v = json_loads(r->body, 0, NULL);
	const char *c = json_string_value(json_object_get(json_object_get(v, "error"), "code"));

	snprintf(code, sizeof(code), "%s", c ? c : "");
	if (!json_is_string(json_object_get(json_object_get(v, "error"), "message")))
		snprintf(code, sizeof(code), "(no error message)");
	json_decref(v);
	return code;
}

/* The text of an SSE chat stream; checks every event is JSON and the
 * stream ends with [DONE]. */
static char *sse_text(const char *body)
{
	size_t cap = strlen(body) + 1, o = 0;
	char *text = calloc(1, cap);
	const char *p = body;
	bool done = false;

	while ((p = strstr(p, "data: ")) != NULL) {
		const char *e = strstr(p, "\n\n");
		json_t *v;
		const char *c;
		assert_non_null(e);
		p += 6;
		if (strncmp(p, "[DONE]", 6) == 0) {
			done = true;
			break;
		}
		v = json_loadb(p, (size_t)(e - p), 0, NULL);
		assert_non_null(v);
		c = json_string_value(json_object_get(json_object_get(json_array_get(
		    json_object_get(v, "choices"), 0), "delta"), "content"));
		if (c) {
			memcpy(text + o, c, strlen(c));
			o += strlen(c);
		}
		json_decref(v);
		p = e;
	}
	assert_true(done);
	return text;
}

static bool has_tx(const char *job, const char *type)
{
	run_result r = run_troop("transactions", "--json", "--limit", "500");
	json_t *j, *t;
	size_t i;
	bool found = false;

	expect_rc(&r, 0);
	j = parse_out(&r);
	json_array_foreach(json_object_get(j, "transactions"), i, t)
		found |= strcmp(json_string_value(json_object_get(t, "job_id")), job) == 0 &&
		    strcmp(json_string_value(json_object_get(t, "type")), type) == 0;
	json_decref(j);
	run_free(&r);
	return found;
}

static void test_up_routes(void **state)
{
	troop_identity node;
	http_result r;
	json_t *v;
	char *want, *got;

	(void)state;
	identity_generate(&node);
	heartbeat(&node, "sim", sim.port, "IDLE", 0, 64, "qwen2.5:7b");
	want = direct_answer("hello troop");

	/* health and the model list (OpenAI shape) */
	r = http_do(up.url, NULL, NULL);
	assert_int_equal(r.status, 404);
	http_result_free(&r);
	{
		char url[256];
		snprintf(url, sizeof(url), "%s/health", up.url);
		r = http_do(url, NULL, NULL);
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.body, "healthy"));
		http_result_free(&r);
		snprintf(url, sizeof(url), "%s/v1/models", up.url);
		r = http_do(url, NULL, NULL);
		assert_int_equal(r.status, 200);
		v = json_loads(r.body, 0, NULL);
		assert_string_equal(json_string_value(json_object_get(v, "object")), "list");
		{
			json_t *m0 = json_array_get(json_object_get(v, "data"), 0);
			assert_string_equal(json_string_value(json_object_get(m0, "object")), "model");
			assert_true(json_is_integer(json_object_get(m0, "created")));
			assert_true(json_is_string(json_object_get(m0, "owned_by")));
		}
		json_decref(v);
		http_result_free(&r);
		snprintf(url, sizeof(url), "%s/v1/models/qwen2.5:7b", up.url);
		r = http_do(url, NULL, NULL);
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.body, "\"id\":\"qwen2.5:7b\""));
		http_result_free(&r);
		snprintf(url, sizeof(url), "%s/v1/models/nope", up.url);
		r = http_do(url, NULL, NULL);
		assert_int_equal(r.status, 404);
		assert_string_equal(err_code_of(&r), "model_not_found");
		http_result_free(&r);
	}

	/* a streamed chat: the simulator's events, with the job named */
	r = up_post(&up, "/v1/chat/completions",
	    "{\"model\":\"llama3:8b\",\"stream\":true,\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hello troop\"}]}");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.ctype, "text/event-stream"));
	assert_true(strlen(r.job) > 10);
	got = sse_text(r.body);
	assert_string_equal(got, want);
	assert_true(has_tx(r.job, "reserve"));
	free(got);
	http_result_free(&r);

	/* whole replies: chat, completions, embeddings */
	r = up_post(&up, "/v1/chat/completions",
	    "{\"model\":\"llama3:8b\",\"messages\":[{\"role\":\"user\",\"content\":\"hello troop\"}]}");
	assert_int_equal(r.status, 200);
	v = json_loads(r.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(
	    json_object_get(v, "choices"), 0), "message"), "content")), want);
	json_decref(v);
	assert_true(strlen(r.job) > 10);
	http_result_free(&r);
	r = up_post(&up, "/v1/completions", "{\"model\":\"llama3:8b\",\"prompt\":\"hi\"}");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"text\""));
	http_result_free(&r);
	r = up_post(&up, "/v1/embeddings", "{\"model\":\"qwen2.5:7b\",\"input\":\"hi\"}");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"embedding\""));
	http_result_free(&r);

	/* the app's mistakes, in the OpenAI error shape */
	r = up_post(&up, "/v1/chat/completions", "{\"messages\":[]}");
	assert_int_equal(r.status, 400);
	assert_string_equal(err_code_of(&r), "bad_request");
	assert_non_null(strstr(r.body, "model"));
	http_result_free(&r);
	r = up_post(&up, "/v1/chat/completions", "not json");
	assert_int_equal(r.status, 400);
	http_result_free(&r);
	r = up_post(&up, "/v1/chat/completions", "{\"model\":\"no-such-model\",\"messages\":[]}");
	assert_int_equal(r.status, 404);
	assert_string_equal(err_code_of(&r), "model_not_found");
	http_result_free(&r);
	free(want);
	heartbeat(&node, "sim", sim.port, "OFFLINE", 0, 64, NULL);
}

static void test_up_failover(void **state)
{
	troop_identity dead, broken, hung, good;
	http_result r;
	char *want, *got;
	const char *req = "{\"model\":\"llama3:8b\",\"stream\":true,\"messages\":[{\"role\":"
	    "\"user\",\"content\":\"failover please\"}]}";

	(void)state;
	identity_generate(&dead);
	identity_generate(&broken);
	identity_generate(&hung);
	identity_generate(&good);
	want = direct_answer("failover please");
	for (int round = 0; round < 2; round++) {
		heartbeat(&dead, "dead", dead_port(), "IDLE", 0, 8, NULL);
		heartbeat(&broken, "broken", sim500.port, "IDLE", 1, 8, NULL);
		heartbeat(&good, "good", sim.port, "IDLE", 2, 8, NULL);
		r = up_post(&up, "/v1/chat/completions", req);
		assert_int_equal(r.status, 200);
		got = sse_text(r.body);
		assert_string_equal(got, want);
		free(got);
		assert_true(harness_log_contains(&up, "failover"));
		http_result_free(&r);
	}
	/* a worker that never answers: the first-byte timeout (2 s here) moves on */
	heartbeat(&hung, "hung", simhang.port, "IDLE", 0, 8, NULL);
	heartbeat(&good, "good", sim.port, "IDLE", 1, 8, NULL);
	heartbeat(&dead, "dead", 1, "OFFLINE", 0, 8, NULL);
	heartbeat(&broken, "broken", 1, "OFFLINE", 0, 8, NULL);
	r = up_post(&up, "/v1/chat/completions", req);
	assert_int_equal(r.status, 200);
	got = sse_text(r.body);
	assert_string_equal(got, want);
	free(got);
	http_result_free(&r);
	heartbeat(&hung, "hung", 1, "OFFLINE", 0, 8, NULL);

	/* no good node left: 503 no_capacity naming what failed */
	heartbeat(&good, "good", 1, "OFFLINE", 0, 8, NULL);
	heartbeat(&dead, "dead", dead_port(), "IDLE", 0, 8, NULL);
	heartbeat(&broken, "broken", sim500.port, "IDLE", 1, 8, NULL);
	r = up_post(&up, "/v1/chat/completions", req);
	assert_int_equal(r.status, 503);
	assert_string_equal(err_code_of(&r), "no_capacity");
	assert_non_null(strstr(r.body, "HTTP 500"));
	http_result_free(&r);

	/* three failing nodes: three tries, then 503 */
	heartbeat(&hung, "hung", dead_port(), "IDLE", 2, 8, NULL);
	r = up_post(&up, "/v1/chat/completions", req);
	assert_int_equal(r.status, 503);
	assert_string_equal(err_code_of(&r), "no_capacity");
	assert_non_null(strstr(r.body, "after 3 tries"));
	http_result_free(&r);

	/* every worker busy: 503 */
	heartbeat(&dead, "dead", dead_port(), "BUSY", 0, 8, NULL);
	heartbeat(&broken, "broken", sim500.port, "BUSY", 0, 8, NULL);
	heartbeat(&hung, "hung", dead_port(), "BUSY", 0, 8, NULL);
	r = up_post(&up, "/v1/chat/completions", req);
	assert_int_equal(r.status, 503);
	assert_string_equal(err_code_of(&r), "no_capacity");
	http_result_free(&r);
	heartbeat(&dead, "dead", 1, "OFFLINE", 0, 8, NULL);
	heartbeat(&broken, "broken", 1, "OFFLINE", 0, 8, NULL);
	heartbeat(&hung, "hung", 1, "OFFLINE", 0, 8, NULL);
	free(want);
}

static void test_up_no_credits(void **state)
{
	harness_proc poor, pup;
	troop_identity node;
	http_result r;

	(void)state;
	start_coordinator(&poor, "poor-up", "--starter-credits=0");
	identity_generate(&node);
	heartbeat_to(poor.url, &node, "sim", sim.port, "IDLE", 0, 8, NULL);
	start_up(&pup, poor.url, NULL);
	r = up_post(&pup, "/v1/chat/completions",
	    "{\"model\":\"llama3:8b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
	assert_int_equal(r.status, 402);
	assert_string_equal(err_code_of(&r), "insufficient_credits");
	assert_non_null(strstr(r.body, "available 0"));
	assert_non_null(strstr(r.body, "price"));
	http_result_free(&r);
	stop_clean(&pup);
	harness_stop(&poor, SIGTERM);

	/* the coordinator down: a clear 503 */
	{
		char down[64];
		snprintf(down, sizeof(down), "http://127.0.0.1:%d", dead_port());
		start_up(&pup, down, NULL);
		r = up_post(&pup, "/v1/chat/completions",
		    "{\"model\":\"llama3:8b\",\"messages\":[]}");
		assert_int_equal(r.status, 503);
		assert_string_equal(err_code_of(&r), "coordinator_unreachable");
		assert_non_null(strstr(r.body, "cannot reach the coordinator"));
		http_result_free(&r);
		stop_clean(&pup);
	}
}

static void test_up_listen_policy(void **state)
{
	harness_proc p;
	run_result r;
	http_result h;
	const char *key = "0123456789abcdef-key";
	char url[256], authz[128];

	(void)state;
	r = run_troop("up", "--listen", "0.0.0.0:0");
	expect_rc(&r, 2);
	assert_non_null(strstr(r.err, "not a loopback address"));
	assert_non_null(strstr(r.err, "--allow-remote"));
	run_free(&r);
	r = run_troop("up", "--listen", "0.0.0.0:0", "--allow-remote");
	expect_rc(&r, 2);
	run_free(&r);
	r = run_troop("up", "--listen", "0.0.0.0:0", "--api-key", key);
	expect_rc(&r, 2);
	run_free(&r);
	r = run_troop("up", "--listen", "0.0.0.0:0", "--allow-remote", "--api-key", "short");
	expect_rc(&r, 2);
	assert_non_null(strstr(r.err, "16"));
	run_free(&r);

	{
		const char *extra[] = { "--listen", "0.0.0.0:0", "--allow-remote", "--api-key", key,
			NULL };
		/* later --listen wins over start_up's loopback one */
		start_up(&p, coord.url, extra);
	}
	snprintf(url, sizeof(url), "%s/v1/models", p.url);
	h = http_do(url, NULL, NULL);
	assert_int_equal(h.status, 401);
	assert_string_equal(err_code_of(&h), "invalid_api_key");
	http_result_free(&h);
	h = http_do(url, NULL, "Authorization: Bearer 0123456789abcdef-kez");
	assert_int_equal(h.status, 401);
	http_result_free(&h);
	snprintf(authz, sizeof(authz), "Authorization: Bearer %s", key);
	h = http_do(url, NULL, authz);
	assert_int_equal(h.status, 200);
	http_result_free(&h);
	snprintf(url, sizeof(url), "%s/v1/chat/completions", p.url);
	h = http_do(url, "{\"model\":\"x\"}", NULL);
	assert_int_equal(h.status, 401);
	http_result_free(&h);
	assert_false(harness_log_contains(&p, key));
	stop_clean(&p);
}

/* ---- a worker that answers headers and then stalls ------------------------------- */

typedef struct {
	int lfd;
	int port;
	int conns[16];
	atomic_int nconns;   /* written by the staller thread, read by the test */
	atomic_int stop;
	pthread_t th;
} staller;

static void *staller_main(void *arg)
{
	staller *st = arg;
	static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n";

	while (!atomic_load(&st->stop)) {
		struct pollfd p = { .fd = st->lfd, .events = POLLIN };
		char buf[8192];
		int fd;
		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(st->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (recv(fd, buf, sizeof(buf), 0) <= 0 || atomic_load(&st->nconns) == 16 ||
		    send(fd, hdr, sizeof(hdr) - 1, MSG_NOSIGNAL) < 0) {
			close(fd);
			continue;
		}
		st->conns[atomic_load(&st->nconns)] = fd;   /* held open, silent */
		atomic_fetch_add(&st->nconns, 1);
	}
	return NULL;
}

static void staller_start(staller *st)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	memset(st, 0, sizeof(*st));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	st->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(st->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(st->lfd, 16), 0);
	assert_int_equal(getsockname(st->lfd, (struct sockaddr *)&a, &len), 0);
	st->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&st->th, NULL, staller_main, st), 0);
}

static void staller_stop(staller *st)
{
	atomic_store(&st->stop, 1);
	pthread_join(st->th, NULL);
	for (int i = 0; i < atomic_load(&st->nconns); i++)
		close(st->conns[i]);
	close(st->lfd);
}

static void test_up_stalled_worker(void **state)
{
	troop_identity stall, good;
	staller st;
	http_result r;
	char *want, *got;

	(void)state;
	staller_start(&st);
	identity_generate(&stall);
	identity_generate(&good);
	want = direct_answer("stalled");
	/* the staller is least loaded: chosen first; it sends its headers and
	 * nothing more, so the first-byte timeout (2 s here) moves on */
	heartbeat(&stall, "stall", st.port, "IDLE", 0, 8, NULL);
	heartbeat(&good, "good", sim.port, "IDLE", 1, 8, NULL);
	r = up_post(&up, "/v1/chat/completions", "{\"model\":\"llama3:8b\",\"stream\":true,"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"stalled\"}]}");
	assert_int_equal(r.status, 200);
	got = sse_text(r.body);
	assert_string_equal(got, want);
	assert_true(harness_log_contains(&up, "sent its headers and then nothing"));
	assert_int_equal(atomic_load(&st.nconns), 1);
	free(got);
	http_result_free(&r);
	heartbeat(&stall, "stall", 1, "OFFLINE", 0, 8, NULL);
	heartbeat(&good, "good", 1, "OFFLINE", 0, 8, NULL);
	staller_stop(&st);
	free(want);
}

/* ---- a real worker ------------------------------------------------------------- */

/* `troop worker` in front of the simulator: the ticket is checked, the
 * job settled from the worker's signed receipt. */
static void test_real_worker(void **state)
{
	static const char *const args[] = { "--donate", "always", "--name", "real-worker", NULL };
	harness_proc w;
	char engine[96], whome[300], *want;
	run_result r;
	http_result h;

	(void)state;
	snprintf(engine, sizeof(engine), "vllm=http://127.0.0.1:%d", sim.port);
	snprintf(whome, sizeof(whome), "%s/worker-home", tmp);
	assert_int_equal(harness_start_worker(&w, whome, coord.url, engine, args), 0);
	/* the worker's heartbeat puts it in the registry */
	for (int tries = 0; tries < 200; tries++) {
		r = run_troop("nodes", "--model", "llama3:8b");
		bool seen = strstr(r.out, "real-worker") != NULL;
		run_free(&r);
		if (seen)
			break;
		harness_sleep_ms(50);
	}
	want = direct_answer("a real worker");

	r = run_troop("chat", "-m", "llama3:8b", "a real worker");
	expect_rc(&r, 0);
	r.out[strlen(r.out) - 1] = '\0';
	assert_string_equal(r.out, want);
	run_free(&r);

	h = up_post(&up, "/v1/chat/completions",
	    "{\"model\":\"llama3:8b\",\"stream\":true,\"messages\":[{\"role\":\"user\","
	    "\"content\":\"a real worker\"}]}");
	assert_int_equal(h.status, 200);
	{
		char *got = sse_text(h.body);
		assert_string_equal(got, want);
		free(got);
	}
	assert_true(strlen(h.job) > 10);
	/* the receipt settles the job the header names */
	for (int tries = 0; tries < 100 && !has_tx(h.job, "settle"); tries++)
		harness_sleep_ms(100);
	assert_true(has_tx(h.job, "settle"));
	r = run_troop("transactions");
	expect_rc(&r, 0);
	{
		char line[512];
		char *p = strstr(r.out, h.job);
		assert_non_null(p);
		assert_true(line_with(line, sizeof(line), r.out, "charged from the hold"));
	}
	run_free(&r);
	http_result_free(&h);

	/* a forged ticket never reaches the engine: the worker answers 401 */
	{
		char url[128];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", w.port);
		h = http_do(url, "{\"model\":\"llama3:8b\",\"messages\":[]}",
		    "Authorization: Bearer eyJhbGciOiJub25lIn0.e30.");
		assert_int_equal(h.status, 401);
		http_result_free(&h);
	}
	stop_clean(&w);
	free(want);
}

/* A real worker whose engine answers 500: that answer is the answer.
 * `troop chat` shows the engine's status and message and tries no other
 * node, although a second node (more loaded, so picked second) would
 * have served it. */
static void test_real_worker_engine_error(void **state)
{
	static const char *const args[] = { "--donate", "always", "--name", "erring-worker",
	    NULL };
	harness_proc w;
	troop_identity good;
	char engine[96], whome[300];
	run_result r;

	(void)state;
	identity_generate(&good);
	snprintf(engine, sizeof(engine), "vllm=http://127.0.0.1:%d", sim500.port);
	snprintf(whome, sizeof(whome), "%s/erring-worker-home", tmp);
	assert_int_equal(harness_start_worker(&w, whome, coord.url, engine, args), 0);
	for (int tries = 0; tries < 200; tries++) {
		r = run_troop("nodes", "--model", "llama3:8b");
		bool seen = strstr(r.out, "erring-worker") != NULL;
		run_free(&r);
		if (seen)
			break;
		harness_sleep_ms(50);
	}
	/* a node that would answer, more loaded: picked only on failover */
	heartbeat(&good, "good", sim.port, "IDLE", 4, 8, NULL);
	for (int round = 0; round < 3; round++) {
		r = run_troop("chat", "-m", "llama3:8b", "an engine error");
		expect_rc(&r, 1);
		assert_string_equal(r.out, "");
		assert_non_null(strstr(r.err, "simulated engine failure"));
		assert_non_null(strstr(r.err, "500"));
		assert_null(strstr(r.err, "trying another node"));
		run_free(&r);
	}
	heartbeat(&good, "good", 1, "OFFLINE", 0, 8, NULL);
	stop_clean(&w);
}

/* ---- setup --------------------------------------------------------------------- */

static int setup(void **state)
{
	char path[400];
	bool created;

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* these are the failover and error paths: every troop up and troop chat
	 * here answers "all busy" at once instead of waiting in the
	 * coordinator's queue (that is test_queue.c and test_up_queue.sh) */
	setenv("TROOP_WAIT", "0", 1);
	harness_tmpdir(tmp, sizeof(tmp));
	snprintf(home, sizeof(home), "%s/home", tmp);
	snprintf(path, sizeof(path), "%s/identity.key", home);
	if (identity_load_or_create(&me, path, &created) != 0)
		return -1;
	start_coordinator(&coord, "coord", NULL);
	start_sim(&sim, "sim", NULL);
	start_sim(&sim500, "sim500", "500");
	start_sim(&simhang, "simhang", "hang");
	start_up(&up, coord.url, NULL);
	return 0;
}

static int teardown(void **state)
{
	int st;

	(void)state;
	st = harness_stop(&up, SIGTERM);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		harness_dump_log(&up);
		fprintf(stderr, "troop up did not exit cleanly (status %d)\n", st);
	}
	harness_stop_all();
	identity_wipe(&me);
	curl_global_cleanup();
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_balance_and_transactions),
		cmocka_unit_test(test_nodes_and_models),
		cmocka_unit_test(test_errors_and_usage),
		cmocka_unit_test(test_chat_streams),
		cmocka_unit_test(test_chat_failover),
		cmocka_unit_test(test_chat_no_credits),
		cmocka_unit_test(test_up_routes),
		cmocka_unit_test(test_up_failover),
		cmocka_unit_test(test_up_no_credits),
		cmocka_unit_test(test_up_listen_policy),
		cmocka_unit_test(test_up_stalled_worker),
		cmocka_unit_test(test_real_worker),
		cmocka_unit_test(test_real_worker_engine_error),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
