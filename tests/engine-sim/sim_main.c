/*
 * sim_main.c - engine-sim: options, the listening socket, request routing,
 * the listing/version/health endpoints of each imitated engine, the error
 * shapes, /sim/stats, and shutdown.  A test tool, not an engine; see sim.h
 * and --help.
 */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#define SIM_OLLAMA_VERSION "0.12.6"
#define SIM_VLLM_VERSION "0.11.0"
#define SIM_LLAMACPP_BUILD "b6942-engine-sim"

static const char usage_text[] =
"usage: engine-sim [options]\n"
"\n"
"A TEST TOOL that imitates the HTTP APIs of LLM inference engines for the\n"
"Monkey Troop tests and benchmarks.  It is not an inference engine: the\n"
"completion is a fixed function of the prompt (words from a fixed list,\n"
"chosen by a hash of the last user message or prompt).\n"
"\n"
"options:\n"
"  --listen HOST:PORT         address to listen on (default 127.0.0.1:0; port 0\n"
"                             picks a free port).  Prints\n"
"                             \"listening on HOST:PORT\" on stdout once bound.\n"
"  --models A,B,...           models served (default llama3:8b,qwen2.5:7b-instruct)\n"
"  --tokens-per-second N      token pacing (default 200; 0 = as fast as the\n"
"                             client reads)\n"
"  --ttft-ms N                delay before the first token (default 0)\n"
"  --fault KIND               none | 500 | hang | die-mid-stream | die-process |\n"
"                             slow (default none); faults apply to inference\n"
"                             endpoints only, listings always answer:\n"
"                               500            answer 500 with an error body\n"
"                               hang           accept the request, never answer\n"
"                               die-mid-stream after --fault-after events, close\n"
"                                              the connection with no final chunk\n"
"                               die-process    after --fault-after events, exit(1)\n"
"                               slow           1 token per second, first token\n"
"                                              after at least 1 s\n"
"  --fault-after N            events (stream chunks) written before a die-*\n"
"                             fault fires (default 2)\n"
"  --fault-rate PERCENT       the share of inference requests the 500 fault hits,\n"
"                             spread evenly (1..100, default 100): a flaky engine\n"
"  --version-kind KIND        all | ollama | vllm | llamacpp | lmstudio\n"
"                             (default all).  Which engine-specific endpoints\n"
"                             answer (others are 404) and the shape of /v1 errors:\n"
"                               ollama    /api/version /api/tags /api/ps /api/chat\n"
"                               vllm      /version /health (empty 200)\n"
"                               llamacpp  /health /props\n"
"                               lmstudio  /api/v0/models\n"
"                               all       all of the above; /health as llama.cpp\n"
"                             The OpenAI-compatible endpoints always answer:\n"
"                             /v1/models, /v1/chat/completions, /v1/completions,\n"
"                             /v1/embeddings.\n"
"  --loading-ms N             for N ms after start /health answers 503 (llama.cpp\n"
"                             \"Loading model\") and every other endpoint 503\n"
"  --context N                the context length reported, in each engine's\n"
"                             format: llama.cpp /props n_ctx, vLLM max_model_len,\n"
"                             LM Studio max_context_length, Ollama /api/show\n"
"                             model_info (default 8192 for llama.cpp and Ollama,\n"
"                             32768 for the others)\n"
"  --capabilities LIST        tools,vision,embeddings or none: what the models\n"
"                             take, in each engine's format: llama.cpp /props\n"
"                             modalities.vision and chat_template_caps, Ollama\n"
"                             /api/show capabilities, LM Studio type and\n"
"                             capabilities (vLLM says nothing).  Without it: what\n"
"                             each engine says of a plain chat model, and no\n"
"                             capabilities list from Ollama or LM Studio\n"
"  --deterministic            the text is a function of the request's \"seed\"\n"
"                             (0 when absent), the whole prompt and the model's\n"
"                             digest, as a temperature-0 engine would give; a\n"
"                             temperature above 0 without a seed gives other\n"
"                             text each time (sampling)\n"
"  --cheat KIND               none | other | smaller:K (default none): a worker\n"
"                             that does not run the model it advertises (its\n"
"                             digest stays the honest one):\n"
"                               other      other text from the first token\n"
"                               smaller:K  the honest text for the first K\n"
"                                          tokens, then other text (a smaller\n"
"                                          model that agrees only at first)\n"
"  --help                     this text\n"
"\n"
"Generation: max_tokens (or max_completion_tokens, or options.num_predict for\n"
"/api/chat) sets the number of tokens exactly (default 16; finish_reason\n"
"\"length\" when the client set it, else \"stop\").  prompt_tokens counts the\n"
"whitespace-separated words of all messages (or the prompt / input).\n"
"\n"
"Simulator-only endpoint (no real engine has it):\n"
"  GET /sim/stats  {\"requests\",\"chat_requests\",\"completion_requests\",\n"
"                  \"embedding_requests\",\"active\",\"completed\",\"disconnects\",\n"
"                  \"faults\"}; /sim/ requests are not counted in \"requests\".\n"
"\n"
"Request bodies are limited to 4 MiB (413).  SIGTERM or SIGINT stops it.\n";

static const char props_template[] =
	"{\"default_generation_settings\":{\"params\":{\"n_predict\":-1,\"seed\":42"
	"94967295,\"temperature\":0.800000011920929,\"dynatemp_range\":0.0,\"dyn"
	"atemp_exponent\":1.0,\"top_k\":40,\"top_p\":0.949999988079071,\"min_p\":0"
	".05000000074505806,\"top_n_sigma\":-1.0,\"xtc_probability\":0.0,\"xtc_t"
	"hreshold\":0.10000000149011612,\"typical_p\":1.0,\"repeat_last_n\":64,\""
	"repeat_penalty\":1.0,\"presence_penalty\":0.0,\"frequency_penalty\":0.0"
	",\"dry_multiplier\":0.0,\"dry_base\":1.75,\"dry_allowed_length\":2,\"dry_"
	"penalty_last_n\":8192,\"mirostat\":0,\"mirostat_tau\":5.0,\"mirostat_eta"
	"\":0.10000000149011612,\"max_tokens\":-1,\"n_keep\":0,\"n_discard\":0,\"ig"
	"nore_eos\":false,\"stream\":true,\"n_probs\":0,\"min_keep\":0,\"chat_forma"
	"t\":\"Content-only\",\"reasoning_format\":\"auto\",\"reasoning_in_content\""
	":false,\"generation_prompt\":\"\",\"samplers\":[\"penalties\",\"dry\",\"top_n"
	"_sigma\",\"top_k\",\"typ_p\",\"top_p\",\"min_p\",\"xtc\",\"temperature\"],\"spec"
	"ulative.n_max\":16,\"speculative.n_min\":0,\"speculative.p_min\":0.75,\""
	"timings_per_token\":false,\"post_sampling_probs\":false,\"lora\":[]},\"n"
	"_ctx\":8192},\"total_slots\":4,\"model_alias\":\"\",\"model_ftype\":\"Q8_0\","
	"\"model_path\":\"\",\"modalities\":{\"vision\":false,\"video\":false,\"audio\""
	":false},\"media_marker\":\"<__media_sim__>\",\"endpoint_slots\":true,\"en"
	"dpoint_props\":false,\"endpoint_metrics\":false,\"ui\":true,\"ui_setting"
	"s\":{},\"chat_template\":\"{%- for message in messages %}{{- message.r"
	"ole + \\\": \\\" + message.content }}{%- endfor %}\",\"chat_template_cap"
	"s\":{\"supports_tools\":false,\"supports_tool_calls\":false,\"supports_s"
	"ystem_role\":true,\"supports_parallel_tool_calls\":false,\"supports_pr"
	"eserve_reasoning\":false},\"bos_token\":\"<|endoftext|>\",\"eos_token\":\""
	"<|im_end|>\",\"build_info\":\"\",\"is_sleeping\":false,\"cors_proxy_enable"
	"d\":false}";

/* ==== helpers ============================================================== */

uint64_t sim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool sim_has_model(const struct sim *sim, const char *name)
{
	for (size_t i = 0; i < sim->n_models; i++)
		if (strcmp(sim->models[i], name) == 0)
			return true;
	return false;
}

void sim_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	if (buf && text)
		evbuffer_add(buf, text, strlen(text));
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", buf);
	free(text);
	if (buf)
		evbuffer_free(buf);
}

static void reply_text(struct evhttp_request *req, int status, const char *text)
{
	struct evbuffer *buf = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; charset=utf-8");
	if (buf)
		evbuffer_add(buf, text, strlen(text));
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", buf);
	if (buf)
		evbuffer_free(buf);
}

static const char *vllm_error_type(int status)
{
	switch (status) {
	case 400: return "BadRequestError";
	case 404: return "NotFoundError";
	case 405: return "MethodNotAllowedError";
	case 413: return "RequestEntityTooLargeError";
	case 503: return "ServiceUnavailableError";
	default: return status >= 500 ? "InternalServerError" : "BadRequestError";
	}
}

void sim_reply_error(const struct sim *sim, struct evhttp_request *req, bool native,
    int status, bool model_missing, const char *msg)
{
	json_t *body;

	if (native) {
		sim_reply_json(req, status, json_pack("{s:s}", "error", msg));
		return;
	}
	switch (sim->kind) {
	case SIM_KIND_OLLAMA:
		/* Ollama's /v1: code null, snake_case types */
		body = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg,
		    "type", status == 404 ? "not_found_error" :
		    status >= 500 ? "api_error" : "invalid_request_error",
		    "param", "code");
		break;
	case SIM_KIND_LLAMACPP:
		body = json_pack("{s:{s:i,s:s,s:s}}", "error", "code", status,
		    "message", msg, "type", status == 404 ? "not_found_error" :
		    status == 503 ? "unavailable_error" :
		    status >= 500 ? "server_error" : "invalid_request_error");
		break;
	case SIM_KIND_LMSTUDIO:
		if (model_missing)
			body = json_pack("{s:{s:s,s:s,s:s,s:s}}", "error", "message", msg,
			    "type", "invalid_request_error", "param", "model",
			    "code", "model_not_found");
		else /* LM Studio's other errors are a bare string */
			body = json_pack("{s:s}", "error", msg);
		break;
	default:
		/* vLLM ErrorResponse: code is the HTTP status */
		body = json_pack("{s:{s:s,s:s,s:n,s:i}}", "error", "message", msg,
		    "type", vllm_error_type(status), "param", "code", status);
		break;
	}
	sim_reply_json(req, status, body);
}

void sim_model_digest(char out[65], const char *name)
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, (const unsigned char *)name, strlen(name));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static uint64_t model_size(const char *name)
{
	char d[65];

	sim_model_digest(d, name);
	return 1000000000ULL + strtoull(d + 56, NULL, 16) % 4000000000ULL;
}

/* "llama3:8b" -> family "llama3"; used for details.family. */
static void model_family(char *out, size_t len, const char *name)
{
	size_t n = strcspn(name, ":/.-");

	if (n == 0 || n >= len)
		n = strlen(name) < len ? strlen(name) : len - 1;
	memcpy(out, name, n);
	out[n] = '\0';
}

static void rfc3339_now(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%09ldZ", sec, ts.tv_nsec);
}

/* ==== listing endpoints ==================================================== */

static json_t *ollama_model_record(const char *name, bool ps)
{
	char digest[65], family[64], when[64];
	uint64_t size = model_size(name);
	json_t *details, *m;

	sim_model_digest(digest, name);
	model_family(family, sizeof(family), name);
	rfc3339_now(when, sizeof(when));
	details = json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "",
	    "format", "gguf", "family", family, "families", family,
	    "parameter_size", "7.6B", "quantization_level", "Q4_K_M");
	if (ps)
		m = json_pack("{s:s,s:s,s:I,s:s,s:o,s:s,s:I,s:i}", "name", name,
		    "model", name, "size", (json_int_t)size, "digest", digest,
		    "details", details, "expires_at", when, "size_vram", (json_int_t)size,
		    "context_length", 4096);
	else
		m = json_pack("{s:s,s:s,s:s,s:I,s:s,s:o}", "name", name, "model", name,
		    "modified_at", when, "size", (json_int_t)size, "digest", digest,
		    "details", details);
	return m;
}

static void get_ollama_models(struct sim *sim, struct evhttp_request *req, bool ps)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < sim->n_models; i++)
		json_array_append_new(arr, ollama_model_record(sim->models[i], ps));
	sim_reply_json(req, 200, json_pack("{s:o}", "models", arr));
}

static void get_v1_models(struct sim *sim, struct evhttp_request *req)
{
	json_t *arr = json_array();
	json_int_t now = (json_int_t)time(NULL);
	const char *owner = sim->kind == SIM_KIND_OLLAMA ? "library" :
	    sim->kind == SIM_KIND_LLAMACPP ? "llamacpp" :
	    sim->kind == SIM_KIND_LMSTUDIO ? "organization_owner" : "vllm";

	for (size_t i = 0; i < sim->n_models; i++) {
		const char *name = sim->models[i];
		char permid[40], digest[65];

		sim_model_digest(digest, name);
		snprintf(permid, sizeof(permid), "modelperm-%.16s", digest);
		json_array_append_new(arr, json_pack(
		    "{s:s,s:s,s:I,s:s,s:s,s:n,s:i,s:[{s:s,s:s,s:I,s:b,s:b,s:b,s:b,s:b,s:b,"
		    "s:s,s:n,s:b}]}",
		    "id", name, "object", "model", "created", now, "owned_by", owner,
		    "root", name, "parent", "max_model_len", sim->context ? (int)sim->context : 32768,
		    "permission",
		    "id", permid, "object", "model_permission", "created", now,
		    "allow_create_engine", 0, "allow_sampling", 1, "allow_logprobs", 1,
		    "allow_search_indices", 0, "allow_view", 1, "allow_fine_tuning", 0,
		    "organization", "*", "group", "is_blocking", 0));
	}
	sim_reply_json(req, 200, json_pack("{s:s,s:o}", "object", "list", "data", arr));
}

static void get_lmstudio_models(struct sim *sim, struct evhttp_request *req)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < sim->n_models; i++) {
		char family[64];

		model_family(family, sizeof(family), sim->models[i]);
		json_t *m = json_pack(
		    "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i}", "id", sim->models[i],
		    "object", "model", "type", !sim->caps_set ? "llm" :
		    (sim->caps & SIM_CAP_EMBEDDINGS) ? "embeddings" :
		    (sim->caps & SIM_CAP_VISION) ? "vlm" : "llm", "publisher", "engine-sim",
		    "arch", family, "compatibility_type", "gguf",
		    "quantization", "Q4_K_M", "state", "loaded",
		    "max_context_length", sim->context ? (int)sim->context : 32768);

		if (sim->caps_set)
			json_object_set_new(m, "capabilities", (sim->caps & SIM_CAP_TOOLS) ?
			    json_pack("[s]", "tool_use") : json_array());
		json_array_append_new(arr, m);
	}
	sim_reply_json(req, 200, json_pack("{s:s,s:o}", "object", "list", "data", arr));
}

static void get_props(struct sim *sim, struct evhttp_request *req)
{
	json_t *props = json_loads(props_template, 0, NULL);
	char path[512];

	if (!props) {
		sim_reply_error(sim, req, false, 500, false, "props template is broken");
		return;
	}
	snprintf(path, sizeof(path), "/models/%s.gguf", sim->models[0]);
	json_object_set_new(props, "model_alias", json_string(sim->models[0]));
	json_object_set_new(props, "model_path", json_string(path));
	json_object_set_new(props, "build_info", json_string(SIM_LLAMACPP_BUILD));
	if (sim->context)
		json_object_set_new(json_object_get(props, "default_generation_settings"), "n_ctx",
		    json_integer(sim->context));
	if (sim->caps_set) {
		json_object_set_new(json_object_get(props, "modalities"), "vision",
		    json_boolean(sim->caps & SIM_CAP_VISION));
		json_object_set_new(json_object_get(props, "chat_template_caps"), "supports_tools",
		    json_boolean(sim->caps & SIM_CAP_TOOLS));
	}
	sim_reply_json(req, 200, props);
}

/* Ollama POST /api/show {"model"}: model_info with the context length;
 * "capabilities" only with --capabilities (an Ollama before 0.6.4 has
 * none). */
static void post_ollama_show(struct sim *sim, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *body = len < 65536 ?
	    json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL) : NULL;
	const char *name = json_string_value(json_object_get(body, "model"));
	char family[64], key[96];
	json_t *reply, *caps;

	if (!name)
		name = json_string_value(json_object_get(body, "name"));
	if (!name || !sim_has_model(sim, name)) {
		sim_reply_error(sim, req, true, 404, true, "model not found");
		json_decref(body);
		return;
	}
	model_family(family, sizeof(family), name);
	snprintf(key, sizeof(key), "%s.context_length", family);
	reply = json_pack("{s:s, s:{s:s, s:s}, s:{s:s, s:I}}", "template", "{{ .Prompt }}",
	    "details", "format", "gguf", "family", family, "model_info",
	    "general.architecture", family, key,
	    (json_int_t)(sim->context ? sim->context : 8192));
	if (sim->caps_set) {
		caps = json_pack("[s]", "completion");
		if (sim->caps & SIM_CAP_TOOLS)
			json_array_append_new(caps, json_string("tools"));
		if (sim->caps & SIM_CAP_VISION)
			json_array_append_new(caps, json_string("vision"));
		if (sim->caps & SIM_CAP_EMBEDDINGS)
			json_array_append_new(caps, json_string("embedding"));
		json_object_set_new(reply, "capabilities", caps);
	}
	json_decref(body);
	sim_reply_json(req, 200, reply);
}

static bool loading(const struct sim *sim)
{
	return sim->loading_ms > 0 &&
	    sim_now_ms() - sim->started_ms < (uint64_t)sim->loading_ms;
}

static void get_health(struct sim *sim, struct evhttp_request *req)
{
	if (loading(sim)) {
		sim_reply_json(req, 503, json_pack("{s:{s:i,s:s,s:s}}", "error",
		    "code", 503, "message", "Loading model", "type", "unavailable_error"));
		return;
	}
	if (sim->kind == SIM_KIND_VLLM) {
		reply_text(req, 200, ""); /* vLLM: 200 with an empty body */
		return;
	}
	sim_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void get_stats(struct sim *sim, struct evhttp_request *req)
{
	const struct sim_stats *s = &sim->stats;

	sim_reply_json(req, 200, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
	    "requests", (json_int_t)s->requests,
	    "chat_requests", (json_int_t)s->chat_requests,
	    "completion_requests", (json_int_t)s->completion_requests,
	    "embedding_requests", (json_int_t)s->embedding_requests,
	    "active", (json_int_t)s->active, "completed", (json_int_t)s->completed,
	    "disconnects", (json_int_t)s->disconnects, "faults", (json_int_t)s->faults));
}

/* ==== routing ============================================================== */

#define K_OLLAMA (1u << SIM_KIND_OLLAMA)
#define K_VLLM (1u << SIM_KIND_VLLM)
#define K_LLAMACPP (1u << SIM_KIND_LLAMACPP)
#define K_LMSTUDIO (1u << SIM_KIND_LMSTUDIO)
#define K_ANY (K_OLLAMA | K_VLLM | K_LLAMACPP | K_LMSTUDIO)

enum route_id {
	R_API_VERSION, R_API_TAGS, R_API_PS, R_API_CHAT, R_V1_MODELS, R_V1_CHAT,
	R_V1_COMPLETIONS, R_V1_EMBEDDINGS, R_VERSION, R_HEALTH, R_PROPS, R_LMS_MODELS,
	R_API_SHOW,
};

static const struct route {
	const char *path;
	enum evhttp_cmd_type method;
	unsigned kinds;
	enum route_id id;
} routes[] = {
	{ "/api/version", EVHTTP_REQ_GET, K_OLLAMA, R_API_VERSION },
	{ "/api/tags", EVHTTP_REQ_GET, K_OLLAMA, R_API_TAGS },
	{ "/api/ps", EVHTTP_REQ_GET, K_OLLAMA, R_API_PS },
	{ "/api/show", EVHTTP_REQ_POST, K_OLLAMA, R_API_SHOW },
	{ "/api/chat", EVHTTP_REQ_POST, K_OLLAMA, R_API_CHAT },
	{ "/v1/models", EVHTTP_REQ_GET, K_ANY, R_V1_MODELS },
	{ "/v1/chat/completions", EVHTTP_REQ_POST, K_ANY, R_V1_CHAT },
	{ "/v1/completions", EVHTTP_REQ_POST, K_ANY, R_V1_COMPLETIONS },
	{ "/v1/embeddings", EVHTTP_REQ_POST, K_ANY, R_V1_EMBEDDINGS },
	{ "/version", EVHTTP_REQ_GET, K_VLLM, R_VERSION },
	{ "/health", EVHTTP_REQ_GET, K_VLLM | K_LLAMACPP, R_HEALTH },
	{ "/props", EVHTTP_REQ_GET, K_LLAMACPP, R_PROPS },
	{ "/api/v0/models", EVHTTP_REQ_GET, K_LMSTUDIO, R_LMS_MODELS },
};

static bool route_enabled(const struct sim *sim, const struct route *r)
{
	return sim->kind == SIM_KIND_ALL || (r->kinds & (1u << sim->kind));
}

/* TCP_NODELAY on a request's connection: an engine writes each token as it
 * comes, and without it the last small write of a reply can wait for the
 * peer's delayed ACK (40 ms) behind an unacknowledged one (Nagle). */
static void conn_nodelay(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	int one = 1;

	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void handle_request(struct evhttp_request *req, void *arg)
{
	struct sim *sim = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const struct route *r = NULL;
	bool native;

	conn_nodelay(req);
	if (!path || !*path)
		path = "/";
	if (strcmp(path, "/sim/stats") == 0) {
		get_stats(sim, req);
		return;
	}
	sim->stats.requests++;
	native = strncmp(path, "/v1/", 4) != 0;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(routes[i].path, path) == 0 && route_enabled(sim, &routes[i])) {
			r = &routes[i];
			break;
		}
	}
	if (!r) {
		if (native)
			reply_text(req, 404, "404 page not found");
		else
			sim_reply_error(sim, req, false, 404, false, "Not Found");
		return;
	}
	if (method != r->method) {
		sim_reply_error(sim, req, native && r->id == R_API_CHAT, 405, false,
		    "Method Not Allowed");
		return;
	}
	if (r->id != R_HEALTH && loading(sim)) {
		sim_reply_error(sim, req, r->id == R_API_CHAT, 503, false, "Loading model");
		return;
	}

	switch (r->id) {
	case R_API_VERSION:
		sim_reply_json(req, 200, json_pack("{s:s}", "version", SIM_OLLAMA_VERSION));
		break;
	case R_VERSION:
		sim_reply_json(req, 200, json_pack("{s:s}", "version", SIM_VLLM_VERSION));
		break;
	case R_API_TAGS:
		get_ollama_models(sim, req, false);
		break;
	case R_API_PS:
		get_ollama_models(sim, req, true);
		break;
	case R_V1_MODELS:
		get_v1_models(sim, req);
		break;
	case R_HEALTH:
		get_health(sim, req);
		break;
	case R_PROPS:
		get_props(sim, req);
		break;
	case R_LMS_MODELS:
		get_lmstudio_models(sim, req);
		break;
	case R_API_SHOW:
		post_ollama_show(sim, req);
		break;
	case R_API_CHAT:
		sim_handle_inference(sim, req, SIM_API_OLLAMA_CHAT);
		break;
	case R_V1_CHAT:
		sim_handle_inference(sim, req, SIM_API_CHAT);
		break;
	case R_V1_COMPLETIONS:
		sim_handle_inference(sim, req, SIM_API_COMPLETIONS);
		break;
	case R_V1_EMBEDDINGS:
		sim_handle_inference(sim, req, SIM_API_EMBEDDINGS);
		break;
	}
}

/* ==== options ============================================================== */

static int parse_long(long *out, const char *flag, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "engine-sim: %s: expected an integer between %ld and %ld, "
		    "got '%s'\n", flag, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_models(struct sim *sim, const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");

		if (n == 0 || n > 255) {
			fprintf(stderr, "engine-sim: --models: empty or too long model name\n");
			return -1;
		}
		if (sim->n_models == SIM_MAX_MODELS) {
			fprintf(stderr, "engine-sim: --models: more than %d models\n",
			    SIM_MAX_MODELS);
			return -1;
		}
		sim->models[sim->n_models] = strndup(p, n);
		if (!sim->models[sim->n_models])
			return -1;
		sim->n_models++;
		p += n;
		if (*p == ',')
			p++;
	}
	if (sim->n_models == 0) {
		fprintf(stderr, "engine-sim: --models: no model given\n");
		return -1;
	}
	return 0;
}

static int parse_listen(char *host, size_t hostlen, long *port, const char *s)
{
	const char *colon = strrchr(s, ':');
	size_t n;

	if (!colon || colon == s) {
		fprintf(stderr, "engine-sim: --listen: expected HOST:PORT, got '%s'\n", s);
		return -1;
	}
	n = (size_t)(colon - s);
	if (s[0] == '[' && colon[-1] == ']') {
		s++;
		n -= 2;
	}
	if (n == 0 || n >= hostlen) {
		fprintf(stderr, "engine-sim: --listen: bad host in '%s'\n", s);
		return -1;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	return parse_long(port, "--listen", colon + 1, 0, 65535);
}

/* --capabilities tools,vision,embeddings | none */
static int parse_caps(struct sim *sim, const char *s)
{
	char buf[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	sim->caps = 0;
	sim->caps_set = true;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "tools") == 0)
			sim->caps |= SIM_CAP_TOOLS;
		else if (strcmp(t, "vision") == 0)
			sim->caps |= SIM_CAP_VISION;
		else if (strcmp(t, "embeddings") == 0)
			sim->caps |= SIM_CAP_EMBEDDINGS;
		else if (strcmp(t, "none") != 0) {
			fprintf(stderr, "engine-sim: --capabilities: expected tools, vision, "
			    "embeddings or none, got '%s'\n", t);
			return -1;
		}
	}
	return 0;
}

/* --cheat other | smaller:K */
static int parse_cheat(struct sim *sim, const char *s)
{
	if (strcmp(s, "none") == 0) {
		sim->cheat = SIM_CHEAT_NONE;
		return 0;
	}
	if (strcmp(s, "other") == 0) {
		sim->cheat = SIM_CHEAT_OTHER;
		return 0;
	}
	if (strncmp(s, "smaller:", 8) == 0) {
		sim->cheat = SIM_CHEAT_SMALLER;
		return parse_long(&sim->cheat_agree, "--cheat smaller:K", s + 8, 0, SIM_MAX_TOKENS);
	}
	fprintf(stderr, "engine-sim: --cheat: expected none, other or smaller:K, got '%s'\n", s);
	return -1;
}

static int parse_options(struct sim *sim, char *host, size_t hostlen, long *port,
    int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "models", required_argument, NULL, 'm' },
		{ "tokens-per-second", required_argument, NULL, 't' },
		{ "ttft-ms", required_argument, NULL, 'T' },
		{ "fault", required_argument, NULL, 'f' },
		{ "fault-after", required_argument, NULL, 'a' },
		{ "fault-rate", required_argument, NULL, 'F' },
		{ "version-kind", required_argument, NULL, 'k' },
		{ "loading-ms", required_argument, NULL, 'L' },
		{ "context", required_argument, NULL, 'c' },
		{ "capabilities", required_argument, NULL, 'C' },
		{ "deterministic", no_argument, NULL, 'D' },
		{ "cheat", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const kinds[] = { "all", "ollama", "vllm", "llamacpp",
		"lmstudio" };
	static const char *const faults[] = { "none", "500", "hang", "die-mid-stream",
		"die-process", "slow" };
	int c;
	bool found;

	snprintf(host, hostlen, "127.0.0.1");
	*port = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (parse_listen(host, hostlen, port, optarg) < 0)
				return -1;
			break;
		case 'm':
			if (parse_models(sim, optarg) < 0)
				return -1;
			break;
		case 't':
			if (parse_long(&sim->tokens_per_second, "--tokens-per-second", optarg,
			    0, 1000000) < 0)
				return -1;
			break;
		case 'T':
			if (parse_long(&sim->ttft_ms, "--ttft-ms", optarg, 0, 3600000) < 0)
				return -1;
			break;
		case 'a':
			if (parse_long(&sim->fault_after, "--fault-after", optarg, 0,
			    SIM_MAX_TOKENS) < 0)
				return -1;
			break;
		case 'L':
			if (parse_long(&sim->loading_ms, "--loading-ms", optarg, 0, 3600000) < 0)
				return -1;
			break;
		case 'c':
			if (parse_long(&sim->context, "--context", optarg, 1, 1L << 30) < 0)
				return -1;
			break;
		case 'C':
			if (parse_caps(sim, optarg) < 0)
				return -1;
			break;
		case 'k':
			found = false;
			for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
				if (strcasecmp(optarg, kinds[i]) == 0) {
					sim->kind = (enum sim_kind)i;
					found = true;
				}
			if (!found) {
				fprintf(stderr, "engine-sim: --version-kind: expected all, ollama, "
				    "vllm, llamacpp or lmstudio, got '%s'\n", optarg);
				return -1;
			}
			break;
		case 'f':
			found = false;
			for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
				if (strcasecmp(optarg, faults[i]) == 0) {
					sim->fault = (enum sim_fault)i;
					found = true;
				}
			if (!found) {
				fprintf(stderr, "engine-sim: --fault: expected none, 500, hang, "
				    "die-mid-stream, die-process or slow, got '%s'\n", optarg);
				return -1;
			}
			break;
		case 'D':
			sim->deterministic = true;
			break;
		case 'X':
			if (parse_cheat(sim, optarg) < 0)
				return -1;
			break;
		case 'F':
			if (parse_long(&sim->fault_percent, "--fault-rate", optarg, 1, 100) < 0)
				return -1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		default:
			fputs("engine-sim: see --help\n", stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "engine-sim: unexpected argument '%s' (see --help)\n",
		    argv[optind]);
		return -1;
	}
	if (sim->n_models == 0 && parse_models(sim, "llama3:8b,qwen2.5:7b-instruct") < 0)
		return -1;
	return 0;
}

/* ==== main ================================================================= */

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	struct sim sim = {
		.fault_after = 2, .tokens_per_second = 200,
	};
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct event *sigterm = NULL, *sigint = NULL;
	struct event_config *cfg;
	char host[256], addr[INET6_ADDRSTRLEN];
	long port;
	int rc = 1, prc;

	prc = parse_options(&sim, host, sizeof(host), &port, argc, argv);
	if (prc != 0) {
		rc = prc > 0 ? 0 : 2;
		goto out;
	}
	if (sodium_init() < 0)
		goto out;
	signal(SIGPIPE, SIG_IGN);
	sim.started_ms = sim_now_ms();
	cfg = event_config_new();
	if (cfg) /* timerfd: token pacing to the microsecond, not the millisecond */
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	sim.base = cfg ? event_base_new_with_config(cfg) : NULL;
	if (cfg)
		event_config_free(cfg);
	sim.http = sim.base ? evhttp_new(sim.base) : NULL;
	if (!sim.http) {
		fprintf(stderr, "engine-sim: cannot create the event loop\n");
		goto out;
	}
	evhttp_set_max_body_size(sim.http, SIM_MAX_BODY);
	evhttp_set_max_headers_size(sim.http, 64 * 1024);
	/* a hanging or slow request must not be timed out by the simulator */
	evhttp_set_timeout(sim.http, 3600);
	evhttp_set_allowed_methods(sim.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(sim.http, handle_request, &sim);
	bound = evhttp_bind_socket_with_handle(sim.http, host, (ev_uint16_t)port);
	if (!bound) {
		fprintf(stderr, "engine-sim: cannot listen on %s:%ld: %s\n", host, port,
		    strerror(errno));
		goto out;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss,
	    &sslen) != 0)
		goto out;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
		printf("listening on [%s]:%u\n", addr, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
		printf("listening on %s:%u\n", addr, ntohs(s4->sin_port));
	}
	fflush(stdout);

	sigterm = evsignal_new(sim.base, SIGTERM, on_signal, sim.base);
	sigint = evsignal_new(sim.base, SIGINT, on_signal, sim.base);
	if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0)
		goto out;
	event_base_dispatch(sim.base);
	rc = 0;
out:
	sim_streams_free_all(&sim);
	if (sim.http)
		evhttp_free(sim.http);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sim.base)
		event_base_free(sim.base);
	for (size_t i = 0; i < sim.n_models; i++)
		free(sim.models[i]);
	return rc;
}
