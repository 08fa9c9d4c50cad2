/*
 * lmstudio.c - the LM Studio driver's parser for GET /api/v0/models, the
 * REST API that, unlike /v1/models, says each model's type and whether it
 * is loaded.
 *
 * Choice: every model of type "llm", "vlm" or "embeddings" is listed,
 * loaded or not, because LM Studio loads a model on its first request
 * (just-in-time loading); `loaded` carries the state so the worker can
 * prefer loaded ones.  Other types (none known today) are skipped.
 */
#include "engines/engine.h"

#include "error.h"

#include <string.h>

/* What one data[] item says of the model: its type ("vlm" takes images,
 * "embeddings" is an embedding model; an older LM Studio without a type
 * says nothing), max_context_length, and "capabilities" (["tool_use"])
 * where this LM Studio writes it. */
static void lmstudio_caps(engine_model *m, const json_t *item, const char *type)
{
	json_t *ctx = json_object_get(item, "max_context_length");
	json_t *caps = json_object_get(item, "capabilities"), *v;
	size_t i;

	if (json_is_integer(ctx) && json_integer_value(ctx) > 0 &&
	    json_integer_value(ctx) <= PROTO_CONTEXT_MAX)
		m->context_length = json_integer_value(ctx);
	if (type) {
		m->caps_known |= PROTO_CAP_VISION | PROTO_CAP_EMBEDDINGS;
		if (strcmp(type, "vlm") == 0)
			m->caps |= PROTO_CAP_VISION;
		else if (strcmp(type, "embeddings") == 0)
			m->caps |= PROTO_CAP_EMBEDDINGS;
	}
	if (json_is_array(caps)) {
		m->caps_known |= PROTO_CAP_TOOLS;
		json_array_foreach(caps, i, v)
			if (json_is_string(v) && strcmp(json_string_value(v), "tool_use") == 0)
				m->caps |= PROTO_CAP_TOOLS;
	}
}

int lmstudio_parse_models(engine_model_list *out, const json_t *body)
{
	json_t *data, *item;
	size_t i;
	int rc;

	if (!json_is_object(body))
		return troop_error_set(TROOP_EINVAL,
		    "lmstudio /api/v0/models reply is not a JSON object");
	data = json_object_get(body, "data");
	if (!json_is_array(data))
		return troop_error_set(TROOP_EINVAL,
		    "lmstudio /api/v0/models reply: field 'data' must be an array");
	json_array_foreach(data, i, item) {
		engine_model m = { .engine = ENGINE_LMSTUDIO };
		const char *id = json_string_value(json_object_get(item, "id"));
		const char *type = json_string_value(json_object_get(item, "type"));
		const char *state = json_string_value(json_object_get(item, "state"));

		if (!id || !*id)
			return troop_error_set(TROOP_EINVAL,
			    "lmstudio /api/v0/models reply: data[%zu].id must be a string", i);
		/* a missing type is an older LM Studio: treat as llm */
		if (type && strcmp(type, "llm") != 0 && strcmp(type, "vlm") != 0 &&
		    strcmp(type, "embeddings") != 0)
			continue;
		if (strlen(id) >= sizeof(m.name))
			return troop_error_set(TROOP_EINVAL,
			    "lmstudio /api/v0/models reply: data[%zu].id is too long", i);
		strcpy(m.name, id);
		m.loaded = state && strcmp(state, "loaded") == 0;
		lmstudio_caps(&m, item, type);
		rc = engine_model_list_add(out, &m);
		if (rc < 0)
			return rc;
	}
	return 0;
}
