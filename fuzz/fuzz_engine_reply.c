/*
 * fuzz_engine_reply.c - engine replies are untrusted input to the worker:
 * feed arbitrary bytes to engine_error_normalize (with a status taken from
 * the first byte) and, when they parse as JSON, to every driver's parsers
 * and the capability parsers (Ollama /api/show, llama.cpp /props).  The
 * normalised error must always be the OpenAI shape; capabilities stay in
 * range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engines/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[] = { 0, 200, 400, 401, 404, 422, 429, 500, 503 };
	int status = size ? statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))]
	    : 500;
	const char *body = size ? (const char *)data + 1 : NULL;
	size_t len = size ? size - 1 : 0;
	json_t *out = NULL, *root;
	int rc;

	rc = engine_error_normalize(status, body, len, &out);
	if (rc >= 0) {
		json_t *err = json_object_get(out, "error");

		if (rc < 400 || rc > 599 || !json_is_string(json_object_get(err, "message")) ||
		    !json_is_string(json_object_get(err, "type")) ||
		    !json_is_string(json_object_get(err, "code")))
			abort();
	}
	json_decref(out);

	root = body ? json_loadb(body, len, JSON_DECODE_ANY, NULL) : NULL;
	if (root) {
		char text[ENGINE_NAME_MAX];
		bool ready;

		for (int t = 0; t < ENGINE_TYPE_COUNT_; t++) {
			const struct engine_driver *d = engine_driver_get((engine_type)t);
			engine_model_list list = { 0 };

			if (d->parse_version)
				d->parse_version(text, sizeof(text), root);
			if (d->parse_health)
				d->parse_health(&ready, status, root);
			d->parse_models(&list, root);
			for (size_t i = 0; i < list.count; i++)
				if (!list.items[i].name[0] ||
				    strlen(list.items[i].content_hash) >= ENGINE_HASH_MAX)
					abort();
			engine_model_list_clear(&list);
		}
		{
			engine_model_list ps = { 0 };

			ollama_parse_ps(&ps, root);
			engine_model_list_clear(&ps);
		}
		llamacpp_parse_props_model(text, sizeof(text), root);
		{
			/* what a model takes: bounded, and never "has" what is not known */
			engine_model m = { .engine = ENGINE_OLLAMA }, l = { .engine = ENGINE_LLAMACPP };

			ollama_parse_show(&m, root);
			llamacpp_parse_props_caps(&l, root);
			if (m.context_length < 0 || m.context_length > PROTO_CONTEXT_MAX ||
			    l.context_length < 0 || l.context_length > PROTO_CONTEXT_MAX ||
			    (m.caps & ~m.caps_known) || (l.caps & ~l.caps_known) ||
			    (m.caps_known & ~PROTO_CAP_ALL) || (l.caps_known & ~PROTO_CAP_ALL))
				abort();
		}
		json_decref(root);
	}
	return 0;
}
