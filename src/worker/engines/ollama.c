/*
 * ollama.c - the Ollama driver's parsers: /api/version, /api/tags,
 * /api/ps and /api/show (context length and capabilities of one model).  Ollama is the one engine that names the exact weights it
 * serves: the digest of a model's manifest, advertised by the worker as
 * content_hash "sha256:<digest>" so clients can ask for identical weights.
 * Chat goes through Ollama's OpenAI-compatible /v1, so nothing here reads
 * /api/chat.
 */
#include "engines/engine.h"

#include "error.h"

#include <ctype.h>
#include <string.h>

int ollama_parse_version(char *out, size_t outlen, const json_t *body)
{
	const char *v = json_string_value(json_object_get(body, "version"));

	if (!v || !*v)
		return troop_error_set(TROOP_EINVAL,
		    "ollama /api/version reply: field 'version' must be a non-empty string");
	if (strlen(v) >= outlen)
		return troop_error_set(TROOP_EINVAL,
		    "ollama /api/version reply: field 'version' is too long");
	strcpy(out, v);
	return 0;
}

/* "sha256:<64 lowercase hex>" from a digest with or without the prefix;
 * false if it is not one. */
static bool digest_to_hash(char out[ENGINE_HASH_MAX], const char *digest)
{
	if (strncmp(digest, "sha256:", 7) == 0)
		digest += 7;
	if (strlen(digest) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)digest[i]))
			return false;
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 64; i++)
		out[7 + i] = (char)tolower((unsigned char)digest[i]);
	out[71] = '\0';
	return true;
}

/* /api/tags and /api/ps share the model record; `what` names the path in
 * messages. */
static int parse_model_array(engine_model_list *out, const json_t *body,
    const char *what, bool loaded)
{
	json_t *models, *item;
	size_t i;
	int rc;

	if (!json_is_object(body))
		return troop_error_set(TROOP_EINVAL, "ollama %s reply is not a JSON object",
		    what);
	models = json_object_get(body, "models");
	if (json_is_null(models) || !models)
		return 0; /* an Ollama with nothing pulled answers {"models":[]}, or null */
	if (!json_is_array(models))
		return troop_error_set(TROOP_EINVAL,
		    "ollama %s reply: field 'models' must be an array", what);
	json_array_foreach(models, i, item) {
		engine_model m = { .engine = ENGINE_OLLAMA, .loaded = loaded };
		const char *name = json_string_value(json_object_get(item, "name"));
		const char *digest = json_string_value(json_object_get(item, "digest"));
		json_t *size = json_object_get(item, "size");

		if (!name || !*name)
			name = json_string_value(json_object_get(item, "model"));
		if (!name || !*name)
			return troop_error_set(TROOP_EINVAL,
			    "ollama %s reply: models[%zu].name must be a string", what, i);
		if (strlen(name) >= sizeof(m.name))
			return troop_error_set(TROOP_EINVAL,
			    "ollama %s reply: models[%zu].name is too long", what, i);
		strcpy(m.name, name);
		if (!digest || !digest_to_hash(m.content_hash, digest))
			m.content_hash[0] = '\0';
		if (json_is_integer(size) && json_integer_value(size) > 0)
			m.size_bytes = (uint64_t)json_integer_value(size);
		rc = engine_model_list_add(out, &m);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int ollama_parse_tags(engine_model_list *out, const json_t *body)
{
	/* /api/tags lists what is pulled; Ollama loads a model on first use */
	return parse_model_array(out, body, "/api/tags", true);
}

int ollama_parse_ps(engine_model_list *out, const json_t *body)
{
	return parse_model_array(out, body, "/api/ps", true);
}

int ollama_parse_show(engine_model *m, const json_t *body)
{
	json_t *info, *caps, *v;
	const char *arch, *k;
	size_t i;

	if (!json_is_object(body))
		return troop_error_set(TROOP_EINVAL, "ollama /api/show reply is not a JSON object");
	info = json_object_get(body, "model_info");
	arch = json_string_value(json_object_get(info, "general.architecture"));
	json_object_foreach(json_is_object(info) ? info : NULL, k, v) {
		const char *dot = strrchr(k, '.');
		size_t alen = arch ? strlen(arch) : 0;

		if (!dot || strcmp(dot, ".context_length") != 0 || !json_is_integer(v))
			continue;
		/* "<architecture>.context_length"; without an architecture, any */
		if (arch && ((size_t)(dot - k) != alen || strncmp(k, arch, alen) != 0))
			continue;
		if (json_integer_value(v) > 0 && json_integer_value(v) <= PROTO_CONTEXT_MAX)
			m->context_length = json_integer_value(v);
		break;
	}
	caps = json_object_get(body, "capabilities");
	if (json_is_array(caps)) {
		m->caps_known |= PROTO_CAP_TOOLS | PROTO_CAP_VISION | PROTO_CAP_EMBEDDINGS;
		json_array_foreach(caps, i, v) {
			const char *s = json_string_value(v);
			if (!s)
				continue;
			if (strcmp(s, "tools") == 0)
				m->caps |= PROTO_CAP_TOOLS;
			else if (strcmp(s, "vision") == 0)
				m->caps |= PROTO_CAP_VISION;
			else if (strcmp(s, "embedding") == 0)
				m->caps |= PROTO_CAP_EMBEDDINGS;
		}
	}
	return 0;
}
