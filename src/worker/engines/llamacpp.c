/*
 * llamacpp.c - the llama.cpp server driver's parsers: GET /health
 * (200 {"status":"ok"} when ready, 503 with an error body while the model
 * loads), GET /props (build_info as the version, model_alias or the file
 * name of model_path as the model) and the OpenAI model list at
 * GET /v1/models.  One llama.cpp server serves one model (router mode
 * lists several in /v1/models).  Without --alias llama-server names its
 * model after the file ("x.gguf"; older builds the whole path): such ids
 * are advertised as "x" and the engine's id is kept for the requests.
 */
#include "engines/engine.h"

#include "error.h"

#include <string.h>
#include <strings.h>

int llamacpp_parse_health(bool *ready, int http_status, const json_t *body)
{
	const char *s = json_string_value(json_object_get(body, "status"));

	*ready = http_status == 200 && s && strcmp(s, "ok") == 0;
	return 0;
}

int llamacpp_parse_version(char *out, size_t outlen, const json_t *body)
{
	const char *v = json_string_value(json_object_get(body, "build_info"));

	if (!v || !*v)
		return troop_error_set(TROOP_EINVAL,
		    "llamacpp /props reply: field 'build_info' must be a non-empty string");
	if (strlen(v) >= outlen)
		return troop_error_set(TROOP_EINVAL,
		    "llamacpp /props reply: field 'build_info' is too long");
	strcpy(out, v);
	return 0;
}

int llamacpp_parse_props_caps(engine_model *m, const json_t *body)
{
	json_t *ctx = json_object_get(json_object_get(body, "default_generation_settings"),
	    "n_ctx");
	json_t *vision = json_object_get(json_object_get(body, "modalities"), "vision");
	json_t *tcaps = json_object_get(body, "chat_template_caps");

	if (json_is_integer(ctx) && json_integer_value(ctx) > 0 &&
	    json_integer_value(ctx) <= PROTO_CONTEXT_MAX)
		m->context_length = json_integer_value(ctx);
	if (json_is_boolean(vision)) {
		m->caps_known |= PROTO_CAP_VISION;
		if (json_is_true(vision))
			m->caps |= PROTO_CAP_VISION;
	}
	/* a template without tool support still takes tools: llama-server
	 * falls back to a generic tool-call format; only "yes" is news */
	if (json_is_true(json_object_get(tcaps, "supports_tools")) ||
	    json_is_true(json_object_get(tcaps, "supports_tool_calls"))) {
		m->caps_known |= PROTO_CAP_TOOLS;
		m->caps |= PROTO_CAP_TOOLS;
	}
	return 0;
}

int llamacpp_parse_props_model(char *out, size_t outlen, const json_t *body)
{
	const char *alias = json_string_value(json_object_get(body, "model_alias"));
	const char *path = json_string_value(json_object_get(body, "model_path"));
	const char *name;
	size_t n;

	if (alias && *alias) {
		name = alias;
		n = strlen(alias);
	} else if (path && *path) {
		const char *slash = strrchr(path, '/');
		const char *bslash = strrchr(path, '\\');

		if (bslash && (!slash || bslash > slash))
			slash = bslash;
		name = slash ? slash + 1 : path;
		n = strlen(name);
		if (n > 5 && strcasecmp(name + n - 5, ".gguf") == 0)
			n -= 5;
	} else {
		return troop_error_set(TROOP_EINVAL,
		    "llamacpp /props reply: neither 'model_alias' nor 'model_path' is set");
	}
	if (n == 0)
		return troop_error_set(TROOP_EINVAL,
		    "llamacpp /props reply: 'model_path' has no file name");
	if (n >= outlen)
		return troop_error_set(TROOP_EINVAL,
		    "llamacpp /props reply: model name is too long");
	memcpy(out, name, n);
	out[n] = '\0';
	return 0;
}

int llamacpp_clean_name(char *out, size_t outlen, const char *id)
{
	size_t n = strlen(id);
	const char *name = id;

	if (n > 5 && strcasecmp(id + n - 5, ".gguf") == 0) {
		const char *slash = strrchr(id, '/');
		const char *bslash = strrchr(id, '\\');

		if (bslash && (!slash || bslash > slash))
			slash = bslash;
		name = slash ? slash + 1 : id;
		n = strlen(name) - 5;
	}
	if (n == 0 || n >= outlen)
		return troop_error_set(TROOP_EINVAL,
		    "llamacpp model id '%.128s' gives no usable name", id);
	memcpy(out, name, n);
	out[n] = '\0';
	return 0;
}

int llamacpp_parse_models(engine_model_list *out, const json_t *body)
{
	size_t first = out->count;
	int rc = engine_parse_openai_list(out, body, ENGINE_LLAMACPP);

	if (rc < 0)
		return rc;
	for (size_t i = first; i < out->count; i++) {
		engine_model *m = &out->items[i];
		char clean[ENGINE_NAME_MAX];

		if (llamacpp_clean_name(clean, sizeof(clean), m->name) < 0 ||
		    strcmp(clean, m->name) == 0)
			continue;
		memcpy(m->engine_name, m->name, sizeof(m->engine_name));
		memcpy(m->name, clean, sizeof(m->name));
	}
	return 0;
}
