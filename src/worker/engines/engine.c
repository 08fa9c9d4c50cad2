/*
 * engine.c - the engine kinds, their driver tables, model lists, the
 * `--engine TYPE=URL` syntax and the normalisation of engine error bodies
 * into the OpenAI error shape.  Pure functions only: the network side is in
 * detect.c.  See engine.h.
 */
#include "engines/engine.h"

#include "error.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ==== driver tables ======================================================== */

static const struct engine_driver drivers[ENGINE_TYPE_COUNT_] = {
	[ENGINE_OLLAMA] = {
		.type = ENGINE_OLLAMA, .name = "ollama",
		.default_ports = { 11434, 0 }, .priority = 2,
		.health_path = NULL, .version_path = "/api/version",
		.models_path = "/api/tags",
		.parse_health = NULL, .parse_version = ollama_parse_version,
		.parse_models = ollama_parse_tags,
	},
	[ENGINE_VLLM] = {
		.type = ENGINE_VLLM, .name = "vllm",
		.default_ports = { 8000, 0 }, .priority = 0,
		.health_path = NULL, .version_path = "/version",
		.models_path = "/v1/models",
		.parse_health = NULL, .parse_version = vllm_parse_version,
		.parse_models = vllm_parse_models,
	},
	[ENGINE_LMSTUDIO] = {
		.type = ENGINE_LMSTUDIO, .name = "lmstudio",
		.default_ports = { 1234, 0 }, .priority = 3,
		.health_path = NULL, .version_path = NULL,
		.models_path = "/api/v0/models",
		.parse_health = NULL, .parse_version = NULL,
		.parse_models = lmstudio_parse_models,
	},
	[ENGINE_LLAMACPP] = {
		.type = ENGINE_LLAMACPP, .name = "llamacpp",
		.default_ports = { 8080, 9931, 0 }, .priority = 1,
		.health_path = "/health", .version_path = "/props",
		.models_path = "/v1/models",
		.parse_health = llamacpp_parse_health,
		.parse_version = llamacpp_parse_version,
		.parse_models = llamacpp_parse_models,
	},
	[ENGINE_OPENAI] = {
		.type = ENGINE_OPENAI, .name = "openai",
		.default_ports = { 0 }, .priority = 4,
		.health_path = NULL, .version_path = NULL,
		.models_path = "/v1/models",
		.parse_health = NULL, .parse_version = NULL,
		.parse_models = openai_parse_models,
	},
};

const struct engine_driver *engine_driver_get(engine_type t)
{
	if ((int)t < 0 || t >= ENGINE_TYPE_COUNT_)
		return NULL;
	return &drivers[t];
}

const char *engine_type_name(engine_type t)
{
	const struct engine_driver *d = engine_driver_get(t);

	return d ? d->name : "unknown";
}

static const struct {
	const char *alias;
	engine_type type;
} type_aliases[] = {
	{ "llama.cpp", ENGINE_LLAMACPP },
	{ "llama-cpp", ENGINE_LLAMACPP },
	{ "llama_cpp", ENGINE_LLAMACPP },
	{ "lm-studio", ENGINE_LMSTUDIO },
	{ "lm_studio", ENGINE_LMSTUDIO },
	{ "openai-compatible", ENGINE_OPENAI },
};

int engine_type_parse(engine_type *out, const char *s)
{
	if (!s || !*s)
		return troop_error_set(TROOP_EINVAL, "engine type is empty "
		    "(expected ollama, vllm, lmstudio, llamacpp or openai)");
	for (int t = 0; t < ENGINE_TYPE_COUNT_; t++) {
		if (strcasecmp(s, drivers[t].name) == 0) {
			*out = (engine_type)t;
			return 0;
		}
	}
	for (size_t i = 0; i < sizeof(type_aliases) / sizeof(type_aliases[0]); i++) {
		if (strcasecmp(s, type_aliases[i].alias) == 0) {
			*out = type_aliases[i].type;
			return 0;
		}
	}
	return troop_error_set(TROOP_EINVAL, "unknown engine type '%.64s' "
	    "(expected ollama, vllm, lmstudio, llamacpp or openai)", s);
}

int engine_priority(engine_type t)
{
	const struct engine_driver *d = engine_driver_get(t);

	return d ? d->priority : ENGINE_TYPE_COUNT_;
}

bool engine_prefer(engine_type a, engine_type b)
{
	return engine_priority(a) < engine_priority(b);
}

/* ==== model lists ========================================================== */

int engine_model_list_add(engine_model_list *list, const engine_model *m)
{
	size_t n = strnlen(m->name, ENGINE_NAME_MAX);

	if (n == 0)
		return troop_error_set(TROOP_EINVAL, "model name is empty");
	if (n >= ENGINE_NAME_MAX)
		return troop_error_set(TROOP_EINVAL, "model name longer than %d bytes",
		    ENGINE_NAME_MAX - 1);
	if (list->count >= ENGINE_MAX_MODELS)
		return troop_error_set(TROOP_ETOOLARGE,
		    "engine lists more than %d models", ENGINE_MAX_MODELS);
	if (list->count == list->cap_) {
		size_t cap = list->cap_ ? list->cap_ * 2 : 8;
		engine_model *items;

		if (cap > ENGINE_MAX_MODELS)
			cap = ENGINE_MAX_MODELS;
		items = realloc(list->items, cap * sizeof(*items));
		if (!items)
			return troop_error_set(TROOP_ENOMEM, "out of memory for models");
		list->items = items;
		list->cap_ = cap;
	}
	list->items[list->count] = *m;
	list->items[list->count].content_hash[ENGINE_HASH_MAX - 1] = '\0';
	list->items[list->count].engine_name[ENGINE_NAME_MAX - 1] = '\0';
	list->count++;
	return 0;
}

long engine_model_list_find(const engine_model_list *list, const char *name)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->items[i].name, name) == 0)
			return (long)i;
	return -1;
}

void engine_model_list_clear(engine_model_list *list)
{
	if (!list)
		return;
	free(list->items);
	list->items = NULL;
	list->count = 0;
	list->cap_ = 0;
}

int engine_models_merge(engine_model_list *out, const engine_model_list *lists,
    size_t n)
{
	int rc = 0;

	engine_model_list_clear(out);
	for (size_t l = 0; l < n; l++) {
		for (size_t i = 0; i < lists[l].count; i++) {
			const engine_model *m = &lists[l].items[i];
			long at = engine_model_list_find(out, m->name);

			if (at < 0) {
				rc = engine_model_list_add(out, m);
				if (rc < 0)
					goto out;
			} else if (engine_prefer(m->engine, out->items[at].engine)) {
				out->items[at] = *m;
			}
		}
	}
out:
	return rc;
}

void engine_info_clear(engine_info *info)
{
	if (!info)
		return;
	engine_model_list_clear(&info->models);
	sodium_memzero(info->api_key, sizeof(info->api_key));
}

void engine_info_array_free(engine_info *infos, size_t n)
{
	if (!infos)
		return;
	for (size_t i = 0; i < n; i++)
		engine_info_clear(&infos[i]);
	free(infos);
}

int engine_parse_openai_list(engine_model_list *out, const json_t *body,
    engine_type t)
{
	json_t *data, *item;
	size_t i;
	int rc;

	if (!json_is_object(body))
		return troop_error_set(TROOP_EINVAL, "%s models reply is not a JSON object",
		    engine_type_name(t));
	data = json_object_get(body, "data");
	if (!json_is_array(data))
		return troop_error_set(TROOP_EINVAL,
		    "%s models reply: field 'data' must be an array", engine_type_name(t));
	json_array_foreach(data, i, item) {
		engine_model m = { .engine = t, .loaded = true };
		const char *id = json_string_value(json_object_get(item, "id"));
		json_t *size = json_object_get(json_object_get(item, "meta"), "size");
		/* vLLM says max_model_len; llama.cpp meta.n_ctx */
		json_t *ctx = json_object_get(item, "max_model_len");

		if (!id)
			return troop_error_set(TROOP_EINVAL,
			    "%s models reply: data[%zu].id must be a string",
			    engine_type_name(t), i);
		if (strlen(id) >= sizeof(m.name))
			return troop_error_set(TROOP_EINVAL,
			    "%s models reply: data[%zu].id is too long", engine_type_name(t), i);
		strcpy(m.name, id);
		if (json_is_integer(size) && json_integer_value(size) > 0)
			m.size_bytes = (uint64_t)json_integer_value(size);
		if (!ctx)
			ctx = json_object_get(json_object_get(item, "meta"), "n_ctx");
		if (json_is_integer(ctx) && json_integer_value(ctx) > 0 &&
		    json_integer_value(ctx) <= PROTO_CONTEXT_MAX)
			m.context_length = json_integer_value(ctx);
		rc = engine_model_list_add(out, &m);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ==== --engine TYPE=URL ==================================================== */

/* Checks `url` and returns the length of the scheme prefix ("http://" 7,
 * "https://" 8), or a negative troop_err.  *port gets the explicit port or
 * the scheme's. */
static int url_check(const char *url, int *port)
{
	size_t skip;
	const char *p, *host;
	int def_port;

	if (strncasecmp(url, "http://", 7) == 0) {
		skip = 7;
		def_port = 80;
	} else if (strncasecmp(url, "https://", 8) == 0) {
		skip = 8;
		def_port = 443;
	} else {
		return troop_error_set(TROOP_EINVAL,
		    "URL '%.128s' must start with http:// or https://", url);
	}
	for (p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return troop_error_set(TROOP_EINVAL,
			    "URL contains a space or control character");
	if (strlen(url) >= ENGINE_URL_MAX)
		return troop_error_set(TROOP_EINVAL, "URL is longer than %d bytes",
		    ENGINE_URL_MAX - 1);
	if (strpbrk(url, "?#@\\"))
		return troop_error_set(TROOP_EINVAL, "URL '%.128s' must be a base URL "
		    "(no query, fragment or credentials)", url);

	host = url + skip;
	p = host;
	if (*p == '[') {
		p++;
		while (*p && (isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
			p++;
		if (*p != ']' || p == host + 1)
			return troop_error_set(TROOP_EINVAL,
			    "URL '%.128s' has a bad IPv6 address", url);
		p++;
	} else {
		while (*p && (isalnum((unsigned char)*p) || *p == '.' || *p == '-' ||
		    *p == '_'))
			p++;
		if (p == host)
			return troop_error_set(TROOP_EINVAL, "URL '%.128s' has no host", url);
	}
	*port = def_port;
	if (*p == ':') {
		long v = 0;
		const char *d = ++p;

		while (isdigit((unsigned char)*p) && p - d < 6)
			v = v * 10 + (*p++ - '0');
		if (p == d || v < 1 || v > 65535 || (*p != '\0' && *p != '/'))
			return troop_error_set(TROOP_EINVAL,
			    "URL '%.128s' has a bad port (expected 1..65535)", url);
		*port = (int)v;
	}
	if (*p != '\0' && *p != '/')
		return troop_error_set(TROOP_EINVAL,
		    "URL '%.128s' has a bad character after the host", url);
	return (int)skip;
}

int engine_url_port(const char *url)
{
	int port = 0;

	if (!url || url_check(url, &port) < 0)
		return 0;
	return port;
}

/* Re-set the last error with "--engine: " in front. */
static int engine_flag_error(int rc)
{
	char msg[400];

	snprintf(msg, sizeof(msg), "%s", troop_error_msg());
	return troop_error_set(rc, "--engine: %s", msg);
}

int engine_spec_parse(engine_spec *out, const char *s)
{
	const char *eq;
	char type[32];
	size_t tlen, ulen;
	int rc, port;

	/* every field, the API key included, starts empty: a key is only ever
	 * one that engine_keys_load or the environment put there */
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return troop_error_set(TROOP_EINVAL, "--engine: expected TYPE=URL, got ''");
	eq = strchr(s, '=');
	if (!eq)
		return troop_error_set(TROOP_EINVAL,
		    "--engine: missing URL in '%.128s' (expected TYPE=URL, e.g. "
		    "ollama=http://127.0.0.1:11434)", s);
	tlen = (size_t)(eq - s);
	if (tlen == 0 || tlen >= sizeof(type))
		return troop_error_set(TROOP_EINVAL,
		    "--engine: missing or too long engine type in '%.128s'", s);
	memcpy(type, s, tlen);
	type[tlen] = '\0';
	rc = engine_type_parse(&out->type, type);
	if (rc < 0)
		return engine_flag_error(rc);
	if (eq[1] == '\0')
		return troop_error_set(TROOP_EINVAL, "--engine: missing URL after '%s='",
		    type);
	rc = url_check(eq + 1, &port);
	if (rc < 0)
		return engine_flag_error(rc);
	ulen = strlen(eq + 1);
	memcpy(out->url, eq + 1, ulen + 1);
	while (ulen > (size_t)rc && out->url[ulen - 1] == '/')
		out->url[--ulen] = '\0';
	return 0;
}

/* ==== error normalisation ================================================== */

#define ERR_MSG_MAX 512

/* True for a plain identifier-like code an engine may send. */
static bool is_slug(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (!(islower(c) || isdigit(c) || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return n > 0 && n <= 64;
}

static bool contains_ci(const char *hay, const char *needle)
{
	return hay && strcasestr(hay, needle) != NULL;
}

static const char *type_for_status(int status)
{
	if (status == 401)
		return "authentication_error";
	if (status == 403)
		return "permission_error";
	if (status == 429)
		return "rate_limit_error";
	if (status >= 500)
		return "server_error";
	return "invalid_request_error";
}

static const char *code_for_status(int status, const char *msg)
{
	switch (status) {
	case 400:
	case 422:
		return "bad_request";
	case 401:
		return "unauthorized";
	case 403:
		return "forbidden";
	case 404:
		return contains_ci(msg, "model") ? "model_not_found" : "not_found";
	case 408:
		return "timeout";
	case 409:
		return "conflict";
	case 413:
		return "too_large";
	case 429:
		return "rate_limited";
	case 503:
		if (contains_ci(msg, "loading"))
			return "engine_loading";
		return "engine_error";
	default:
		return status >= 500 ? "engine_error" : "bad_request";
	}
}

/* Copy text into a JSON-safe message: whitespace runs collapse to one
 * space, other control bytes and (when the text is not valid UTF-8)
 * non-ASCII bytes become '?', cut to ERR_MSG_MAX bytes. */
static json_t *message_string(const char *s, size_t len)
{
	char buf[ERR_MSG_MAX + 1];
	size_t n = 0;
	json_t *v;

	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	for (size_t i = 0; i < len && n < ERR_MSG_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (isspace(c)) {
			if (n > 0 && buf[n - 1] != ' ')
				buf[n++] = ' ';
		} else {
			buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		}
	}
	/* do not end inside a UTF-8 sequence (the text was cut) */
	if (n > 0) {
		size_t lead = n;
		unsigned char c;
		size_t want;

		while (lead > 0 && n - lead < 4 &&
		    ((unsigned char)buf[lead - 1] & 0xc0) == 0x80)
			lead--;
		c = lead > 0 ? (unsigned char)buf[lead - 1] : 0;
		want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		if (c >= 0xc0 && n - (lead - 1) < want)
			n = lead - 1;
	}
	buf[n] = '\0';
	v = json_stringn(buf, n);
	if (!v) {
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] >= 0x80)
				buf[i] = '?';
		v = json_stringn(buf, n);
	}
	return v;
}

/* Message from a FastAPI "detail": a string, or a list of {"msg":...}. */
static const char *detail_message(const json_t *detail)
{
	if (json_is_string(detail))
		return json_string_value(detail);
	if (json_is_array(detail)) {
		const json_t *first = json_array_get(detail, 0);
		const char *m = json_string_value(json_object_get(first, "msg"));
		if (m)
			return m;
	}
	return NULL;
}

int engine_error_normalize(int http_status, const char *body, size_t len,
    json_t **out)
{
	json_t *root = NULL, *err = NULL, *msg = NULL, *jcode = NULL;
	const char *text = NULL, *code = NULL;
	char fallback[64];
	int status = http_status;
	int rc;

	*out = NULL;
	if (body && len > 0)
		root = json_loadb(body, len, JSON_DECODE_ANY, NULL);

	if (json_is_object(root)) {
		json_t *e = json_object_get(root, "error");

		if (json_is_string(e)) {
			text = json_string_value(e);
		} else if (json_is_object(e)) {
			text = json_string_value(json_object_get(e, "message"));
			if (!text)
				text = json_string_value(json_object_get(e, "error"));
			jcode = json_object_get(e, "code");
		} else if (json_is_string(json_object_get(root, "message"))) {
			/* vLLM before 0.6: {"object":"error","message",...,"code":404} */
			text = json_string_value(json_object_get(root, "message"));
			jcode = json_object_get(root, "code");
		} else {
			text = detail_message(json_object_get(root, "detail"));
		}
	} else if (json_is_string(root)) {
		text = json_string_value(root);
	}

	if (status < 400 || status > 599) {
		json_int_t c = json_is_integer(jcode) ? json_integer_value(jcode) : 0;
		status = (c >= 400 && c <= 599) ? (int)c : 500;
	}

	if (text) {
		msg = message_string(text, strlen(text));
	} else if (!root && body && len > 0) {
		/* plain text or HTML from a proxy in front of the engine */
		msg = message_string(body, len);
		if (msg && json_string_length(msg) == 0) {
			json_decref(msg);
			msg = NULL;
		}
	}
	if (!msg) {
		snprintf(fallback, sizeof(fallback), "engine returned HTTP %d", status);
		msg = json_string(fallback);
	}
	if (!msg)
		goto nomem;

	if (json_is_string(jcode) && is_slug(json_string_value(jcode)))
		code = json_string_value(jcode);
	else
		code = code_for_status(status, json_string_value(msg));

	err = json_pack("{s:{s:o,s:s,s:s}}", "error", "message", msg,
	    "type", type_for_status(status), "code", code);
	msg = NULL; /* stolen by json_pack, even on failure */
	if (!err)
		goto nomem;
	*out = err;
	rc = status;
	goto done;
nomem:
	json_decref(msg);
	rc = troop_error_set(TROOP_ENOMEM, "out of memory normalising an engine error");
done:
	json_decref(root);
	return rc;
}
