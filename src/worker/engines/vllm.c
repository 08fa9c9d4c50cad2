/*
 * vllm.c - the vLLM driver's parsers: GET /version and the OpenAI model
 * list at GET /v1/models.  vLLM serves exactly the models it was started
 * with, all loaded; it names no content hash.
 */
#include "engines/engine.h"

#include "error.h"

#include <string.h>

int vllm_parse_version(char *out, size_t outlen, const json_t *body)
{
	const char *v = json_string_value(json_object_get(body, "version"));

	if (!v || !*v)
		return troop_error_set(TROOP_EINVAL,
		    "vllm /version reply: field 'version' must be a non-empty string");
	if (strlen(v) >= outlen)
		return troop_error_set(TROOP_EINVAL,
		    "vllm /version reply: field 'version' is too long");
	strcpy(out, v);
	return 0;
}

int vllm_parse_models(engine_model_list *out, const json_t *body)
{
	return engine_parse_openai_list(out, body, ENGINE_VLLM);
}
