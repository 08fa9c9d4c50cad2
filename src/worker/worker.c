/*
 * worker.c - `troop worker`: parse the flags and wire the worker's modules
 * together (DESIGN.md section 8).
 *
 *   identity ($TROOP_HOME/identity.key)  -> node id, signs heartbeats and
 *                                           receipts
 *   engines (--engine or auto-detection) -> catalog
 *   address (--advertise / tailnet)      -> what the coordinator hands out
 *   proxy (--listen)                     -> tickets in, engine replies out
 *   receipts (spool under $TROOP_HOME)   -> the coordinator settles jobs
 *   heartbeat thread                     -> registration, GPU, models
 *
 * Shutdown (SIGTERM / SIGINT): cancel a proof-of-hardware computation
 * under way, stop accepting, heartbeat OFFLINE, let jobs in flight finish
 * up to --drain-timeout (default 30 s), flush receipts (up to 5 s, only
 * when some are pending), exit 0.  With no job in flight the worker exits
 * within about a second of the signal, whatever else it was doing.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "engines/engine.h"
#include "error.h"
#include "gpu.h"
#include "heartbeat.h"
#include "http_client.h"
#include "identity.h"
#include "keyring.h"
#include "log.h"
#include "proxy.h"
#include "receipts.h"
#include "replay.h"
#include "seal_keys.h"
#include "tailnet.h"
#include "verifier.h"
#include "worker_metrics.h"
#include "metrics_server.h"

#define WORKER_MAX_ENGINES 16
#define RECEIPT_FLUSH_MS 5000
#define START_TIMEOUT_MS 2000

static const config_opt worker_opts[] = {
	{ "coordinator", 'c', OPT_STRING, "TROOP_COORDINATOR", "COORDINATOR_URL",
	  "http://127.0.0.1:8420", "URL", "the coordinator to register with", 0, 0 },
	{ "listen", 'l', OPT_STRING, "TROOP_WORKER_LISTEN", NULL, "0.0.0.0:8421", "ADDR:PORT",
	  "address the proxy serves tickets on", 0, 0 },
	{ "advertise", 'a', OPT_STRING, "TROOP_ADVERTISE", NULL, NULL, "ADDR",
	  "address clients reach this worker at (default: the tailnet address)", 0, 0 },
	{ "advertise-port", 0, OPT_INT, "TROOP_ADVERTISE_PORT", NULL, "0", "PORT",
	  "port clients reach this worker at, when a forwarder sits in front of "
	  "--listen (0: the port it listens on)", 0, 65535 },
	{ "seal-rotate-hours", 0, OPT_DOUBLE, "TROOP_SEAL_ROTATE_HOURS", NULL, "24", "HOURS",
	  "replace the sealing key this often (the previous one still opens "
	  "requests for 15 minutes)", 0.02, 8760 },
	{ "no-seal", 0, OPT_BOOL, "TROOP_NO_SEAL", NULL, NULL, NULL,
	  "advertise no sealing key: requests reach this worker unsealed", 0, 0 },
	{ "engine", 'e', OPT_LIST, "TROOP_ENGINE", NULL, NULL, "TYPE=URL",
	  "an engine to serve (ollama, vllm, lmstudio, llamacpp, openai); "
	  "default: auto-detect on the default ports", 0, 0 },
	{ "engine-key-file", 0, OPT_STRING, "TROOP_ENGINE_KEY_FILE", NULL, NULL, "FILE",
	  "API keys of the engines (llama-server/vLLM --api-key), mode 0600: lines "
	  "'KEY' (every --engine) or 'URL KEY'; TROOP_ENGINE_KEY=KEY also works", 0, 0 },
	{ "first-token-timeout", 0, OPT_INT, "TROOP_FIRST_TOKEN_TIMEOUT", NULL, "120", "SECONDS",
	  "a stream's first token may take this long after the engine accepted the "
	  "request, plus 1 s per KiB of prompt", 1, 86400 },
	{ "model-refresh", 0, OPT_INT, "TROOP_MODEL_REFRESH", NULL, "60", "SECONDS",
	  "how often the engines' models are re-read", 1, 86400 },
	{ "max-jobs", 'j', OPT_INT, "TROOP_MAX_JOBS", NULL, "4", "N",
	  "jobs served at once; more get 429", 1, 4096 },
	{ "donate", 0, OPT_STRING, "TROOP_DONATE", NULL, "idle", "idle|always",
	  "idle: go BUSY while the owner uses the GPU; always: never", 0, 0 },
	{ "busy-threshold", 0, OPT_INT, "TROOP_BUSY_THRESHOLD", NULL, "30", "PERCENT",
	  "GPU utilisation that counts as the owner using it", 1, 100 },
	{ "gpu-sample", 0, OPT_INT, "TROOP_GPU_SAMPLE", NULL, "5", "SECONDS",
	  "how often the GPU is sampled for --donate idle", 1, 3600 },
	{ "drain-timeout", 0, OPT_INT, "TROOP_DRAIN_TIMEOUT", NULL, "30", "SECONDS",
	  "on SIGTERM, how long jobs in flight may run on", 0, 86400 },
	{ "name", 'n', OPT_STRING, "TROOP_NODE_NAME", NULL, NULL, "NAME",
	  "node name shown in 'troop nodes' (default: the host name)", 0, 0 },
	{ "owner", 0, OPT_STRING, "TROOP_OWNER", NULL, NULL, "ACCOUNT",
	  "account credited for this node's work (default: the node's own)", 0, 0 },
	{ "reverify", 0, OPT_DOUBLE, "TROOP_REVERIFY", NULL, "24", "HOURS",
	  "run the proof-of-hardware again this often (0: only at start)", 0, 8760 },
	{ "poh-device", 0, OPT_STRING, "TROOP_POH_DEVICE", NULL, "auto", "auto|cpu|gpu",
	  "where the proof-of-hardware runs", 0, 0 },
	{ "no-verify", 0, OPT_BOOL, "TROOP_NO_VERIFY", NULL, NULL, NULL,
	  "do not run the proof-of-hardware (the node stays unverified)", 0, 0 },
	{ "benchmark", 0, OPT_BOOL, NULL, NULL, NULL, NULL,
	  "run the proof-of-hardware once against --coordinator, print the result, "
	  "exit (see 'troop worker --benchmark --help')", 0, 0 },
	{ "threads", 't', OPT_INT, "TROOP_WORKER_THREADS", NULL, "0", "N",
	  "proxy threads (0: one per core)", 0, 256 },
	{ "log-level", 0, OPT_STRING, "TROOP_LOG_LEVEL", NULL, "info", "LEVEL",
	  "debug, info, warn or error", 0, 0 },
	{ "metrics-listen", 0, OPT_STRING, "TROOP_METRICS_LISTEN", NULL, NULL, "ADDR:PORT",
	  "serve Prometheus metrics on GET /metrics here (off by default; loopback only "
	  "unless --metrics-listen-allow-remote)", 0, 0 },
	{ "metrics-listen-allow-remote", 0, OPT_BOOL, "TROOP_METRICS_ALLOW_REMOTE", NULL, NULL,
	  NULL, "allow a non-loopback --metrics-listen address", 0, 0 },
	{ NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0 },
};

static const char summary[] =
	"Donate a local inference engine's GPU time to the troop: register with the\n"
	"coordinator, serve ticketed requests on --listen, and send signed receipts.";

struct shutdown_ctx {
	heartbeat *hb;
	verifier *ver;
};

/* First thing on SIGTERM: cancel a proof-of-hardware computation (so that
 * it does not hold up the exit), then tell the coordinator we are going. */
static void shutdown_hook(void *arg)
{
	struct shutdown_ctx *s = arg;

	verifier_cancel(s->ver);
	heartbeat_offline(s->hb);
}

static int usage_error(const char *flag, const char *msg)
{
	fprintf(stderr, "troop worker: %s%s%s\n(see 'troop worker --help')\n",
	    flag ? flag : "", flag ? ": " : "", msg);
	return EXIT_USAGE;
}

/* Why the worker starts with no model, in words: no engine given or
 * found, an engine that did not answer as its kind (or is still loading),
 * or engines that answer but serve no model yet. */
static const char *no_models_hint(catalog *cat, size_t nspecs)
{
	engine_info *infos = NULL;
	size_t n = 0, down = 0;

	if (nspecs == 0)
		return "no engine found on the default ports; start one or pass "
		    "--engine TYPE=URL";
	if (catalog_engines_copy(cat, &infos, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			if (!infos[i].ready)
				down++;
		engine_info_array_free(infos, n);
	}
	if (down > 0)
		return "an engine did not answer as the kind given, or is still loading: see "
		    "the engine_unavailable line above; models are re-read every "
		    "--model-refresh seconds";
	return "the engines answer but serve no model yet; load one (they are re-read "
	    "every --model-refresh seconds)";
}

/* The coordinator URL without trailing '/', checked for a scheme. */
static int coordinator_url(char *out, size_t len, const char *s)
{
	size_t n = strlen(s);

	if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
		return -1;
	while (n > 8 && s[n - 1] == '/')
		n--;
	if (n >= len || strpbrk(s, " \t\r\n"))
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* The ticket replay cache, persisted in $TROOP_HOME/worker/replay.log so
 * that a restarted worker refuses every ticket it served before. */
static int replay_open(replay_cache **out)
{
	char home[PATH_MAX], path[PATH_MAX + 32];
	int rc = config_troop_home(home, sizeof(home));

	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/worker/replay.log", home);
	if ((rc = replay_cache_open(out, 0, path, (int64_t)time(NULL))) != 0)
		return rc;
	/* tests stand in for a power cut: a later start refuses more tickets */
	if (getenv("TROOP_TEST_BOOT_TIME") && atoll(getenv("TROOP_TEST_BOOT_TIME")) >
	    replay_cache_boot_time(*out))
		replay_cache_set_boot_time(*out, (int64_t)atoll(getenv("TROOP_TEST_BOOT_TIME")));
	return 0;
}

/* The sealing keys, in $TROOP_HOME/worker/seal.key beside the journal. */
static int seal_open(seal_keys **out, const troop_identity *id, double hours)
{
	char home[PATH_MAX], path[PATH_MAX + 32];
	int rc = config_troop_home(home, sizeof(home));

	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/worker/seal.key", home);
	return seal_keys_open(out, path, id, (int64_t)(hours * 3600), (int64_t)time(NULL));
}

int cmd_worker(int argc, char **argv)
{
	config *cfg = NULL;
	troop_identity id;
	engine_spec specs[WORKER_MAX_ENGINES];
	const char *const *engines;
	size_t nspecs;
	char coord[1024], address[TAILNET_ADDR_MAX], name[256], idpath[PATH_MAX];
	char spool[PATH_MAX], short_id[9];
	gpu_policy policy = { 0 };
	log_level lvl;
	http_client *hc = NULL;
	catalog *cat = NULL;
	keyring *keys = NULL;
	replay_cache *replay = NULL;
	seal_keys *seal = NULL;
	receipts *rcpt = NULL;
	proxy *px = NULL;
	heartbeat *hb = NULL;
	verifier *ver = NULL;
	metrics_server *ms = NULL;
	poh_device pohdev = POH_DEVICE_AUTO;
	const char *owner;
	bool created = false;
	int rc, ret = 1;

	memset(&id, 0, sizeof(id));
	/* --benchmark has its own small set of flags */
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--benchmark") == 0)
			return poh_benchmark_main(argc, argv);
	rc = config_parse(&cfg, worker_opts, argc, argv);
	if (rc == CONFIG_HELP) {
		config_usage(stdout, "worker", "[options]", summary, worker_opts);
		return 0;
	}
	if (rc != 0)
		return usage_error(NULL, troop_error_msg());
	if (config_npositional(cfg) > 0) {
		ret = usage_error(NULL, "unexpected argument");
		goto out;
	}
	if (log_parse_level(&lvl, config_str(cfg, "log-level")) != 0) {
		ret = usage_error("--log-level", troop_error_msg());
		goto out;
	}
	log_set_level(lvl);
	if (coordinator_url(coord, sizeof(coord), config_str(cfg, "coordinator")) != 0) {
		ret = usage_error("--coordinator", "expected an http:// or https:// URL");
		goto out;
	}
	nspecs = config_list(cfg, "engine", &engines);
	if (nspecs > WORKER_MAX_ENGINES) {
		ret = usage_error("--engine", "at most 16 engines");
		goto out;
	}
	for (size_t i = 0; i < nspecs; i++) {
		if (engine_spec_parse(&specs[i], engines[i]) != 0) {
			ret = usage_error(NULL, troop_error_msg());
			goto out;
		}
	}
	{
		/* engine API keys: the environment for all, then the file */
		const char *k = getenv("TROOP_ENGINE_KEY");

		if (k && *k) {
			if (nspecs == 0 || strlen(k) >= ENGINE_KEY_MAX || strpbrk(k, " \t\r\n")) {
				ret = usage_error("TROOP_ENGINE_KEY", nspecs == 0 ?
				    "needs --engine TYPE=URL (keys are not sent to auto-detected "
				    "engines)" : "expected one key without spaces");
				goto out;
			}
			for (size_t i = 0; i < nspecs; i++)
				snprintf(specs[i].api_key, sizeof(specs[i].api_key), "%s", k);
		}
		if (config_str(cfg, "engine-key-file") &&
		    engine_keys_load(specs, nspecs, config_str(cfg, "engine-key-file")) != 0) {
			ret = usage_error(NULL, troop_error_msg());
			goto out;
		}
	}
	if (gpu_parse_donate(&policy.donate, config_str(cfg, "donate")) != 0) {
		ret = usage_error(NULL, troop_error_msg());
		goto out;
	}
	policy.busy_threshold = (int)config_int(cfg, "busy-threshold");
	if (poh_device_parse(&pohdev, config_str(cfg, "poh-device")) != 0) {
		ret = usage_error("--poh-device", "expected auto, cpu or gpu");
		goto out;
	}
	owner = config_str(cfg, "owner");
	if (owner) {
		unsigned char pk[TROOP_PK_LEN];
		if (account_id_decode(pk, owner) != 0) {
			ret = usage_error("--owner", "expected an account id (43 base64url "
			    "characters; see 'troop id')");
			goto out;
		}
	}
	if (config_str(cfg, "name"))
		snprintf(name, sizeof(name), "%s", config_str(cfg, "name"));
	else if (gethostname(name, sizeof(name)) != 0)
		snprintf(name, sizeof(name), "worker");
	name[sizeof(name) - 1] = '\0';

	/* identity */
	if (identity_default_path(idpath, sizeof(idpath)) != 0 ||
	    identity_load_or_create(&id, idpath, &created) != 0) {
		fprintf(stderr, "troop worker: %s\n", troop_error_msg());
		goto out;
	}
	account_id_short(short_id, id.id);
	if (created)
		log_info("identity_created", "path=%s node=%s", idpath, short_id);

	/* address: refuse to start without one clients can reach */
	if (tailnet_resolve(address, sizeof(address), config_str(cfg, "advertise"), coord) != 0) {
		fprintf(stderr, "troop worker: %s\n", troop_error_msg());
		goto out;
	}

	/* engines and the coordinator key */
	if (catalog_new(&cat) != 0 || keyring_new(&keys) != 0 ||
	    replay_open(&replay) != 0 || http_client_new(&hc) != 0 ||
	    (!config_bool(cfg, "no-seal") &&
	    seal_open(&seal, &id, config_double(cfg, "seal-rotate-hours")) != 0)) {
		fprintf(stderr, "troop worker: %s\n", troop_error_msg());
		goto out;
	}
	http_client_set_limits(hc, START_TIMEOUT_MS, 8 * 1024 * 1024);
	if (heartbeat_read_engines(cat, hc, specs, nspecs, NULL) != 0) {
		fprintf(stderr, "troop worker: %s\n", troop_error_msg());
		goto out;
	}
	if (catalog_model_count(cat) == 0)
		log_warn("no_models", "engines=%zu hint=\"%s\"", nspecs, no_models_hint(cat, nspecs));
	if (keyring_fetch(keys, hc, coord) != 0)
		log_warn("coordinator_key", "coordinator=%s error=\"%s\" retry=with_heartbeats",
		    coord, troop_error_msg());

	/* receipts, proxy, heartbeats */
	if (receipts_default_dir(spool, sizeof(spool)) != 0 || config_private_dir(spool) != 0 ||
	    receipts_start(&rcpt, coord, &id, spool) != 0) {
		fprintf(stderr, "troop worker: %s\n", troop_error_msg());
		goto out;
	}
	{
		proxy_opts po = {
			.listen = config_str(cfg, "listen"),
			.threads = (int)config_int(cfg, "threads"),
			.max_jobs = (int)config_int(cfg, "max-jobs"),
			.node_id = id.id, .coordinator = coord, .cat = cat, .keys = keys,
			.replay = replay, .receipts = rcpt, .seal = seal,
			.first_token_s = (int)config_int(cfg, "first-token-timeout"),
		};
		if (proxy_new(&px, &po) != 0 || proxy_start(px) != 0) {
			fprintf(stderr, "troop worker: %s\n", troop_error_msg());
			goto out;
		}
	}
	{
		heartbeat_opts ho = {
			.coordinator = coord, .id = &id, .name = name, .address = address,
			.port = config_int(cfg, "advertise-port") > 0 ?
			    (int)config_int(cfg, "advertise-port") : proxy_port(px),
			.owner = owner,
			.max_jobs = (int)config_int(cfg, "max-jobs"), .cat = cat, .keys = keys,
			.seal = seal,
			.active_jobs = proxy_active_jobs_cb, .jobs_done = proxy_jobs_done_cb,
			.active_arg = px,
			.specs = specs, .nspecs = nspecs,
			.model_refresh_s = (int)config_int(cfg, "model-refresh"),
			.policy = policy, .gpu_sample_s = (int)config_int(cfg, "gpu-sample"),
		};
		if (heartbeat_start(&hb, &ho) != 0) {
			fprintf(stderr, "troop worker: %s\n", troop_error_msg());
			goto out;
		}
	}
	if (!config_bool(cfg, "no-verify")) {
		double h = config_double(cfg, "reverify");
		verifier_opts vo = {
			.coordinator = coord, .id = &id, .hb = hb,
			.reverify_hours = h > 0 ? h : 1e6, .device = pohdev,
		};
		if (verifier_start(&ver, &vo) != 0)
			log_warn("poh", "error=\"%s\"", troop_error_msg());
	}
	worker_metrics_bind(px, ver, (int)config_int(cfg, "max-jobs"));
	if (config_str(cfg, "metrics-listen")) {
		if (metrics_server_start(&ms, config_str(cfg, "metrics-listen"),
		    config_bool(cfg, "metrics-listen-allow-remote"), "--metrics-listen",
		    worker_metrics_render, NULL) != 0) {
			fprintf(stderr, "troop worker: %s\n", troop_error_msg());
			goto out;
		}
		log_info("metrics_started", "listen=%s port=%d", config_str(cfg, "metrics-listen"),
		    metrics_server_port(ms));
	}
	log_info("worker_started", "listen=%s port=%d node=%s advertise=%s models=%zu "
	    "max_jobs=%ld donate=%s coordinator=%s registered=%d", config_str(cfg, "listen"),
	    proxy_port(px), short_id, address, catalog_model_count(cat),
	    config_int(cfg, "max-jobs"), config_str(cfg, "donate"), coord,
	    heartbeat_registered(hb));

	{
		struct shutdown_ctx sc = { .hb = hb, .ver = ver };
		rc = proxy_run(px, (int)config_int(cfg, "drain-timeout") * 1000, shutdown_hook, &sc);
	}
	heartbeat_offline(hb);
	log_info("worker_stopped", "jobs=%ld receipts_pending=%zu", proxy_jobs_done(px),
	    receipts_pending(rcpt));
	ret = rc == 0 ? 0 : 1;
out:
	metrics_server_stop(ms);
	worker_metrics_unbind();
	verifier_stop(ver);
	heartbeat_free(hb);
	proxy_free(px);
	receipts_stop(rcpt, RECEIPT_FLUSH_MS);
	replay_cache_free(replay);
	seal_keys_free(seal);
	keyring_free(keys);
	catalog_free(cat);
	http_client_free(hc);
	identity_wipe(&id);
	sodium_memzero(specs, sizeof(specs));
	config_free(cfg);
	return ret;
}
