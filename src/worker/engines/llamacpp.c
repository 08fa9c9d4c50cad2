/*
 * llamacpp.c - the llama.cpp server driver's parsers: GET /health
 * (200 {"status":"ok"} when ready, 503 with an error body while the model
 * loads), GET /props (build_info as the version, model_alias or the file
 * name of model_path as the model) and the OpenAI model list at
 * GET /v1/models.  One llama.cpp server serves one model (router mode
 * lists several in /v1/models).
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

int llamacpp_parse_models(engine_model_list *out, const json_t *body)
{
	return engine_parse_openai_list(out, body, ENGINE_LLAMACPP);
}
