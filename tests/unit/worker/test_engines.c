/*
 * test_engines.c - the engine drivers' pure parts: every parser against
 * the recorded engine replies in $TROOP_FIXTURES (expected values are read
 * from the same fixture files), error-body normalisation into the OpenAI
 * shape, engine priority and model merging, and `--engine TYPE=URL`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engines/engine.h"
#include "error.h"

/* ---- helpers ---------------------------------------------------------- */

static const char *fixtures_dir(void)
{
	const char *d = getenv("TROOP_FIXTURES");

	if (!d || !*d)
		fail_msg("TROOP_FIXTURES is not set (run through ctest)");
	return d;
}

/* The raw bytes of a fixture; *len its length.  Caller frees. */
static char *fixture_bytes(const char *name, size_t *len)
{
	char path[1024];
	FILE *f;
	long n;
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", fixtures_dir(), name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static json_t *fixture_json(const char *name)
{
	size_t len;
	char *raw = fixture_bytes(name, &len);
	json_error_t jerr;
	json_t *v = json_loadb(raw, len, 0, &jerr);

	free(raw);
	if (!v)
		fail_msg("fixture %s is not JSON: %s", name, jerr.text);
	return v;
}

static const char *str_at(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	assert_non_null(s);
	return s;
}

/* Normalise an error fixture; checks the shape and returns the "error"
 * object (borrowed from *root, which the caller frees). */
static json_t *normalize_checked(json_t **root, int status, const char *body,
    size_t len, int *status_out)
{
	json_t *err;
	int rc = engine_error_normalize(status, body, len, root);

	assert_true(rc >= 400 && rc <= 599);
	assert_non_null(*root);
	assert_int_equal(json_object_size(*root), 1);
	err = json_object_get(*root, "error");
	assert_true(json_is_object(err));
	assert_int_equal(json_object_size(err), 3);
	assert_true(json_is_string(json_object_get(err, "message")));
	assert_true(json_is_string(json_object_get(err, "type")));
	assert_true(json_is_string(json_object_get(err, "code")));
	assert_true(strlen(str_at(err, "message")) > 0);
	*status_out = rc;
	return err;
}

static json_t *normalize_fixture(json_t **root, int status, const char *name,
    int *status_out)
{
	size_t len;
	char *raw = fixture_bytes(name, &len);
	json_t *err = normalize_checked(root, status, raw, len, status_out);

	free(raw);
	return err;
}

/* ---- Ollama ------------------------------------------------------------ */

static void test_ollama_version(void **state)
{
	json_t *body = fixture_json("ollama_version.json");
	char v[ENGINE_VERSION_MAX];

	assert_int_equal(ollama_parse_version(v, sizeof(v), body), 0);
	assert_string_equal(v, str_at(body, "version"));
	json_decref(body);

	body = json_pack("{s:i}", "version", 3);
	assert_int_equal(ollama_parse_version(v, sizeof(v), body), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "version"));
	json_decref(body);
}

static void check_ollama_models(const char *fixture,
    int (*parse)(engine_model_list *, const json_t *))
{
	json_t *body = fixture_json(fixture);
	json_t *models = json_object_get(body, "models");
	engine_model_list list = { 0 };
	json_t *item;
	size_t i;

	assert_int_equal(parse(&list, body), 0);
	assert_int_equal(list.count, json_array_size(models));
	assert_true(list.count > 0);
	json_array_foreach(models, i, item) {
		char hash[ENGINE_HASH_MAX];

		snprintf(hash, sizeof(hash), "sha256:%s", str_at(item, "digest"));
		assert_string_equal(list.items[i].name, str_at(item, "name"));
		assert_string_equal(list.items[i].content_hash, hash);
		assert_int_equal(list.items[i].size_bytes,
		    json_integer_value(json_object_get(item, "size")));
		assert_int_equal(list.items[i].engine, ENGINE_OLLAMA);
	}
	engine_model_list_clear(&list);
	json_decref(body);
}

static void test_ollama_tags(void **state)
{
	check_ollama_models("ollama_tags.json", ollama_parse_tags);
}

static void test_ollama_ps(void **state)
{
	check_ollama_models("ollama_ps.json", ollama_parse_ps);
}

static void test_ollama_tags_odd_digests(void **state)
{
	engine_model_list list = { 0 };
	json_t *body = json_loads("{\"models\":["
	    "{\"name\":\"a\",\"digest\":\"sha256:ABCDEF0123456789abcdef0123456789"
	    "abcdef0123456789abcdef0123456789\",\"size\":5},"
	    "{\"name\":\"b\",\"digest\":\"not-hex\",\"size\":-1},"
	    "{\"model\":\"c\"}]}", 0, NULL);

	assert_non_null(body);
	assert_int_equal(ollama_parse_tags(&list, body), 0);
	assert_int_equal(list.count, 3);
	assert_string_equal(list.items[0].content_hash,
	    "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_int_equal(list.items[0].size_bytes, 5);
	assert_string_equal(list.items[1].content_hash, "");
	assert_int_equal(list.items[1].size_bytes, 0);
	assert_string_equal(list.items[2].name, "c");
	engine_model_list_clear(&list);
	json_decref(body);

	/* empty and null model lists are an engine with nothing pulled */
	body = json_loads("{\"models\":null}", 0, NULL);
	assert_int_equal(ollama_parse_tags(&list, body), 0);
	assert_int_equal(list.count, 0);
	json_decref(body);

	body = json_loads("{\"models\":{}}", 0, NULL);
	assert_int_equal(ollama_parse_tags(&list, body), TROOP_EINVAL);
	json_decref(body);
	body = json_loads("{\"models\":[{\"name\":7}]}", 0, NULL);
	assert_int_equal(ollama_parse_tags(&list, body), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "models[0]"));
	json_decref(body);
	engine_model_list_clear(&list);
}

/* ---- vLLM, OpenAI ------------------------------------------------------- */

static void test_vllm_version(void **state)
{
	json_t *body = fixture_json("vllm_version.json");
	char v[ENGINE_VERSION_MAX];

	assert_int_equal(vllm_parse_version(v, sizeof(v), body), 0);
	assert_string_equal(v, str_at(body, "version"));
	json_decref(body);
}

static void check_openai_list(int (*parse)(engine_model_list *, const json_t *),
    engine_type want)
{
	json_t *body = fixture_json("openai_models.json");
	json_t *data = json_object_get(body, "data");
	engine_model_list list = { 0 };
	json_t *item;
	size_t i;

	assert_int_equal(parse(&list, body), 0);
	assert_int_equal(list.count, json_array_size(data));
	json_array_foreach(data, i, item) {
		assert_string_equal(list.items[i].name, str_at(item, "id"));
		assert_string_equal(list.items[i].content_hash, "");
		assert_int_equal(list.items[i].size_bytes, 0);
		assert_int_equal(list.items[i].engine, want);
		assert_true(list.items[i].loaded);
	}
	engine_model_list_clear(&list);
	json_decref(body);
}

static void test_vllm_models(void **state)
{
	check_openai_list(vllm_parse_models, ENGINE_VLLM);
}

static void test_openai_models(void **state)
{
	check_openai_list(openai_parse_models, ENGINE_OPENAI);
}

static void test_openai_list_malformed(void **state)
{
	engine_model_list list = { 0 };
	const char *bad[] = {
		"[]", "{}", "{\"data\":{}}", "{\"data\":[{\"id\":1}]}",
		"{\"data\":[{\"object\":\"model\"}]}", "{\"data\":[{\"id\":\"\"}]}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *body = json_loads(bad[i], JSON_DECODE_ANY, NULL);

		assert_non_null(body);
		assert_int_equal(openai_parse_models(&list, body), TROOP_EINVAL);
		json_decref(body);
	}
	assert_int_equal(list.count, 0);
	engine_model_list_clear(&list);
}

static void test_too_many_models(void **state)
{
	json_t *data = json_array();
	json_t *body;
	engine_model_list list = { 0 };

	for (int i = 0; i <= ENGINE_MAX_MODELS; i++) {
		char id[32];

		snprintf(id, sizeof(id), "m%d", i);
		json_array_append_new(data, json_pack("{s:s}", "id", id));
	}
	body = json_pack("{s:o}", "data", data);
	assert_int_equal(vllm_parse_models(&list, body), TROOP_ETOOLARGE);
	assert_int_equal(list.count, ENGINE_MAX_MODELS);
	engine_model_list_clear(&list);
	assert_int_equal(list.count, 0);
	json_decref(body);
}

/* ---- LM Studio ---------------------------------------------------------- */

static void test_lmstudio_models(void **state)
{
	json_t *body = fixture_json("lmstudio_models_v0.json");
	json_t *data = json_object_get(body, "data");
	engine_model_list list = { 0 };
	json_t *item;
	size_t i, want = 0;

	assert_int_equal(lmstudio_parse_models(&list, body), 0);
	json_array_foreach(data, i, item) {
		const char *type = str_at(item, "type");
		long at = engine_model_list_find(&list, str_at(item, "id"));

		if (strcmp(type, "llm") && strcmp(type, "vlm") && strcmp(type, "embeddings")) {
			assert_int_equal(at, -1);
			continue;
		}
		want++;
		assert_true(at >= 0);
		assert_int_equal(list.items[at].loaded,
		    strcmp(str_at(item, "state"), "loaded") == 0);
		assert_string_equal(list.items[at].content_hash, "");
		assert_int_equal(list.items[at].engine, ENGINE_LMSTUDIO);
	}
	assert_int_equal(list.count, want);
	assert_true(want > 0);
	engine_model_list_clear(&list);
	json_decref(body);

	/* unknown types are skipped */
	body = json_loads("{\"data\":[{\"id\":\"x\",\"type\":\"tts\",\"state\":\"loaded\"}]}",
	    0, NULL);
	assert_int_equal(lmstudio_parse_models(&list, body), 0);
	assert_int_equal(list.count, 0);
	json_decref(body);
}

/* ---- llama.cpp ------------------------------------------------------------ */

static void test_llamacpp_health(void **state)
{
	json_t *ok = fixture_json("llamacpp_health.json");
	json_t *loading = fixture_json("llamacpp_health_loading.json");
	bool ready = false;

	assert_int_equal(llamacpp_parse_health(&ready, 200, ok), 0);
	assert_true(ready);
	assert_int_equal(llamacpp_parse_health(&ready, 503, loading), 0);
	assert_false(ready);
	ready = true;
	assert_int_equal(llamacpp_parse_health(&ready, 503, ok), 0);
	assert_false(ready);
	ready = true;
	assert_int_equal(llamacpp_parse_health(&ready, 200, NULL), 0);
	assert_false(ready);
	json_decref(ok);
	json_decref(loading);
}

static void test_llamacpp_props(void **state)
{
	json_t *props = fixture_json("llamacpp_props.json");
	char v[ENGINE_VERSION_MAX], name[ENGINE_NAME_MAX];
	char want[ENGINE_NAME_MAX];
	const char *path, *base;

	assert_int_equal(llamacpp_parse_version(v, sizeof(v), props), 0);
	assert_string_equal(v, str_at(props, "build_info"));
	assert_int_equal(llamacpp_parse_props_model(name, sizeof(name), props), 0);
	assert_string_equal(name, str_at(props, "model_alias"));

	/* without an alias: the file name of model_path, minus .gguf */
	path = str_at(props, "model_path");
	base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	snprintf(want, sizeof(want), "%.*s", (int)(strlen(base) - 5), base);
	json_object_set_new(props, "model_alias", json_string(""));
	assert_int_equal(llamacpp_parse_props_model(name, sizeof(name), props), 0);
	assert_string_equal(name, want);

	json_object_del(props, "model_path");
	assert_int_equal(llamacpp_parse_props_model(name, sizeof(name), props),
	    TROOP_EINVAL);
	json_object_del(props, "build_info");
	assert_int_equal(llamacpp_parse_version(v, sizeof(v), props), TROOP_EINVAL);
	json_decref(props);
}

static void test_llamacpp_models(void **state)
{
	engine_model_list list = { 0 };
	json_t *body;

	check_openai_list(llamacpp_parse_models, ENGINE_LLAMACPP);
	body = json_loads("{\"object\":\"list\",\"data\":[{\"id\":\"m.gguf\","
	    "\"object\":\"model\",\"owned_by\":\"llamacpp\",\"meta\":{\"size\":4683073184}}]}",
	    0, NULL);
	assert_int_equal(llamacpp_parse_models(&list, body), 0);
	assert_int_equal(list.count, 1);
	assert_int_equal(list.items[0].size_bytes, 4683073184ULL);
	engine_model_list_clear(&list);
	json_decref(body);
}

/* ---- error normalisation ------------------------------------------------ */

static void test_error_openai_vllm(void **state)
{
	json_t *fx = fixture_json("openai_error.json");
	json_t *out = NULL, *err;
	int st;

	err = normalize_fixture(&out, 404, "openai_error.json", &st);
	assert_int_equal(st, 404);
	assert_string_equal(str_at(err, "message"),
	    str_at(json_object_get(fx, "error"), "message"));
	assert_string_equal(str_at(err, "code"), "model_not_found");
	assert_string_equal(str_at(err, "type"), "invalid_request_error");
	json_decref(out);

	/* an error object inside a 200 reply: its numeric code is the status */
	err = normalize_fixture(&out, 200, "openai_error.json", &st);
	assert_int_equal(st, json_integer_value(json_object_get(
	    json_object_get(fx, "error"), "code")));
	json_decref(out);
	json_decref(fx);
}

static void test_error_variants(void **state)
{
	static const struct {
		const char *fixture;
		int status;
		const char *code;
		const char *type;
	} cases[] = {
		{ "openai_error_llamacpp.json", 400, "bad_request", "invalid_request_error" },
		{ "openai_error_lmstudio.json", 404, NULL, "invalid_request_error" },
		{ "openai_error_ollama.json", 404, "model_not_found", "invalid_request_error" },
		{ "ollama_error.json", 404, "model_not_found", "invalid_request_error" },
		{ "lmstudio_error_string.json", 400, "bad_request", "invalid_request_error" },
		{ "llamacpp_health_loading.json", 503, "engine_loading", "server_error" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *fx = fixture_json(cases[i].fixture);
		json_t *fe = json_object_get(fx, "error");
		json_t *out = NULL, *err;
		const char *want_msg, *want_code = cases[i].code;
		int st;

		err = normalize_fixture(&out, cases[i].status, cases[i].fixture, &st);
		assert_int_equal(st, cases[i].status);
		want_msg = json_is_string(fe) ? json_string_value(fe) : str_at(fe, "message");
		assert_string_equal(str_at(err, "message"), want_msg);
		if (!want_code) /* the engine's own string code is kept */
			want_code = str_at(fe, "code");
		assert_string_equal(str_at(err, "code"), want_code);
		assert_string_equal(str_at(err, "type"), cases[i].type);
		json_decref(out);
		json_decref(fx);
	}
}

static void test_error_not_json(void **state)
{
	static const char html[] = "<html>\r\n<head><title>502 Bad Gateway</title></head>"
	    "\r\n</html>\r\n";
	static const char bad_utf8[] = "bad \xff\xfe bytes \x01 here";
	json_t *out = NULL, *err;
	char big[4096];
	int st;

	err = normalize_checked(&out, 502, html, sizeof(html) - 1, &st);
	assert_int_equal(st, 502);
	assert_string_equal(str_at(err, "code"), "engine_error");
	assert_string_equal(str_at(err, "type"), "server_error");
	assert_non_null(strstr(str_at(err, "message"), "502 Bad Gateway"));
	assert_null(strchr(str_at(err, "message"), '\n'));
	json_decref(out);

	err = normalize_checked(&out, 500, NULL, 0, &st);
	assert_string_equal(str_at(err, "message"), "engine returned HTTP 500");
	json_decref(out);

	err = normalize_checked(&out, 503, "   \n", 4, &st);
	assert_string_equal(str_at(err, "message"), "engine returned HTTP 503");
	assert_string_equal(str_at(err, "code"), "engine_error");
	json_decref(out);

	err = normalize_checked(&out, 400, bad_utf8, sizeof(bad_utf8) - 1, &st);
	assert_non_null(strstr(str_at(err, "message"), "bytes"));
	json_decref(out);

	memset(big, 'x', sizeof(big));
	err = normalize_checked(&out, 500, big, sizeof(big), &st);
	assert_true(strlen(str_at(err, "message")) <= 512);
	json_decref(out);

	/* a JSON body of another shape: the status speaks */
	err = normalize_checked(&out, 0, "{\"foo\":1}", 9, &st);
	assert_int_equal(st, 500);
	assert_string_equal(str_at(err, "message"), "engine returned HTTP 500");
	json_decref(out);
}

static void test_error_other_shapes(void **state)
{
	json_t *out = NULL, *err;
	const char *old_vllm = "{\"object\":\"error\",\"message\":\"bad temperature\","
	    "\"type\":\"BadRequestError\",\"param\":null,\"code\":400}";
	const char *fastapi = "{\"detail\":[{\"loc\":[\"body\",\"messages\"],"
	    "\"msg\":\"field required\",\"type\":\"value_error.missing\"}]}";
	const char *weird_code = "{\"error\":{\"message\":\"slow down\",\"code\":\"Not A Slug!\"}}";
	const char *no_model = "{\"error\":\"no such route\"}";
	int st;

	err = normalize_checked(&out, 0, old_vllm, strlen(old_vllm), &st);
	assert_int_equal(st, 400);
	assert_string_equal(str_at(err, "message"), "bad temperature");
	assert_string_equal(str_at(err, "code"), "bad_request");
	json_decref(out);

	err = normalize_checked(&out, 422, fastapi, strlen(fastapi), &st);
	assert_string_equal(str_at(err, "message"), "field required");
	assert_string_equal(str_at(err, "code"), "bad_request");
	json_decref(out);

	err = normalize_checked(&out, 429, weird_code, strlen(weird_code), &st);
	assert_string_equal(str_at(err, "code"), "rate_limited");
	assert_string_equal(str_at(err, "type"), "rate_limit_error");
	json_decref(out);

	err = normalize_checked(&out, 404, no_model, strlen(no_model), &st);
	assert_string_equal(str_at(err, "code"), "not_found");
	json_decref(out);

	err = normalize_checked(&out, 401, "{\"error\":\"bad key\"}", 19, &st);
	assert_string_equal(str_at(err, "code"), "unauthorized");
	assert_string_equal(str_at(err, "type"), "authentication_error");
	json_decref(out);
}

/* ---- priority, merging ------------------------------------------------- */

static void test_priority(void **state)
{
	static const engine_type order[] = {
		ENGINE_VLLM, ENGINE_LLAMACPP, ENGINE_OLLAMA, ENGINE_LMSTUDIO, ENGINE_OPENAI,
	};

	for (size_t i = 0; i + 1 < sizeof(order) / sizeof(order[0]); i++) {
		assert_true(engine_priority(order[i]) < engine_priority(order[i + 1]));
		assert_true(engine_prefer(order[i], order[i + 1]));
		assert_false(engine_prefer(order[i + 1], order[i]));
		assert_false(engine_prefer(order[i], order[i]));
	}
	assert_true(engine_prefer(ENGINE_OPENAI, (engine_type)99));
}

static void add_model(engine_model_list *l, const char *name, engine_type t,
    const char *hash)
{
	engine_model m = { .engine = t, .loaded = true };

	snprintf(m.name, sizeof(m.name), "%s", name);
	snprintf(m.content_hash, sizeof(m.content_hash), "%s", hash);
	assert_int_equal(engine_model_list_add(l, &m), 0);
}

static void test_merge(void **state)
{
	engine_model_list lists[3] = { { 0 } };
	engine_model_list out = { 0 };
	long at;

	add_model(&lists[0], "llama3:8b", ENGINE_OLLAMA, "sha256:aa");
	add_model(&lists[0], "only-ollama", ENGINE_OLLAMA, "sha256:bb");
	add_model(&lists[1], "llama3:8b", ENGINE_VLLM, "");
	add_model(&lists[1], "shared", ENGINE_VLLM, "");
	add_model(&lists[2], "shared", ENGINE_LMSTUDIO, "");
	add_model(&lists[2], "llama3:8b", ENGINE_LMSTUDIO, "");

	assert_int_equal(engine_models_merge(&out, lists, 3), 0);
	assert_int_equal(out.count, 3);
	at = engine_model_list_find(&out, "llama3:8b");
	assert_true(at >= 0);
	assert_int_equal(out.items[at].engine, ENGINE_VLLM);
	at = engine_model_list_find(&out, "only-ollama");
	assert_int_equal(out.items[at].engine, ENGINE_OLLAMA);
	assert_string_equal(out.items[at].content_hash, "sha256:bb");
	at = engine_model_list_find(&out, "shared");
	assert_int_equal(out.items[at].engine, ENGINE_VLLM);
	assert_int_equal(engine_model_list_find(&out, "nope"), -1);

	/* equal rank: the earlier list wins */
	add_model(&lists[2], "dup", ENGINE_LMSTUDIO, "first");
	add_model(&lists[0], "dup", ENGINE_LMSTUDIO, "zeroth");
	assert_int_equal(engine_models_merge(&out, lists, 3), 0);
	at = engine_model_list_find(&out, "dup");
	assert_string_equal(out.items[at].content_hash, "zeroth");

	for (int i = 0; i < 3; i++)
		engine_model_list_clear(&lists[i]);
	engine_model_list_clear(&out);
	engine_model_list_clear(NULL);
}

static void test_model_list_limits(void **state)
{
	engine_model_list l = { 0 };
	engine_model m = { 0 };

	assert_int_equal(engine_model_list_add(&l, &m), TROOP_EINVAL);
	memset(m.name, 'a', sizeof(m.name));
	assert_int_equal(engine_model_list_add(&l, &m), TROOP_EINVAL);
	assert_int_equal(l.count, 0);
	engine_model_list_clear(&l);
}

/* ---- types and --engine ----------------------------------------------- */

static void test_type_names(void **state)
{
	for (int t = 0; t < ENGINE_TYPE_COUNT_; t++) {
		engine_type back;
		const struct engine_driver *d = engine_driver_get((engine_type)t);

		assert_non_null(d);
		assert_int_equal(d->type, t);
		assert_int_equal(engine_type_parse(&back, engine_type_name((engine_type)t)), 0);
		assert_int_equal(back, t);
		assert_non_null(d->parse_models);
		assert_non_null(d->models_path);
	}
	assert_null(engine_driver_get(ENGINE_TYPE_COUNT_));
	assert_string_equal(engine_type_name((engine_type)-1), "unknown");
	{
		engine_type t;
		assert_int_equal(engine_type_parse(&t, "llama.cpp"), 0);
		assert_int_equal(t, ENGINE_LLAMACPP);
		assert_int_equal(engine_type_parse(&t, "LM-Studio"), 0);
		assert_int_equal(t, ENGINE_LMSTUDIO);
		assert_int_equal(engine_type_parse(&t, "tgi"), TROOP_EINVAL);
		assert_int_equal(engine_type_parse(&t, ""), TROOP_EINVAL);
	}
}

static void test_default_ports(void **state)
{
	const struct engine_driver *d;

	d = engine_driver_get(ENGINE_OLLAMA);
	assert_int_equal(d->default_ports[0], 11434);
	assert_int_equal(d->default_ports[1], 0);
	d = engine_driver_get(ENGINE_VLLM);
	assert_int_equal(d->default_ports[0], 8000);
	d = engine_driver_get(ENGINE_LMSTUDIO);
	assert_int_equal(d->default_ports[0], 1234);
	d = engine_driver_get(ENGINE_LLAMACPP);
	assert_int_equal(d->default_ports[0], 8080);
	assert_int_equal(d->default_ports[1], 9931);
	assert_int_equal(d->default_ports[2], 0);
	d = engine_driver_get(ENGINE_OPENAI);
	assert_int_equal(d->default_ports[0], 0);
}

/* llama-server without --alias: "x.gguf" (or a path) is advertised as "x",
 * the engine's id kept; other ids stay as they are */
static void test_llamacpp_clean_names(void **state)
{
	engine_model_list list = { 0 };
	json_t *body = json_loads("{\"object\":\"list\",\"data\":["
	    "{\"id\":\"tiny-llama.gguf\"},{\"id\":\"/srv/models/Qwen2.5-7B.Q4_K_M.GGUF\"},"
	    "{\"id\":\"org/alias\"},{\"id\":\".gguf\"}]}", 0, NULL);
	char out[64];

	assert_int_equal(llamacpp_parse_models(&list, body), 0);
	assert_int_equal(list.count, 4);
	assert_string_equal(list.items[0].name, "tiny-llama");
	assert_string_equal(list.items[0].engine_name, "tiny-llama.gguf");
	assert_string_equal(list.items[1].name, "Qwen2.5-7B.Q4_K_M");
	assert_string_equal(list.items[1].engine_name, "/srv/models/Qwen2.5-7B.Q4_K_M.GGUF");
	assert_string_equal(list.items[2].name, "org/alias");
	assert_string_equal(list.items[2].engine_name, "");
	/* nothing left of the name: kept as the engine says it */
	assert_string_equal(list.items[3].name, ".gguf");
	assert_int_equal(llamacpp_clean_name(out, sizeof(out), "C:\\m\\a.gguf"), 0);
	assert_string_equal(out, "a");
	assert_int_equal(llamacpp_clean_name(out, 3, "abcd.gguf"), TROOP_EINVAL);
	engine_model_list_clear(&list);
	json_decref(body);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* --engine-key-file: per-URL and default keys, mode 0600 required, keys
 * never in messages */
static void test_engine_keys(void **state)
{
	char path[] = "/tmp/troop-test-keys-XXXXXX";
	engine_spec specs[2];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(engine_spec_parse(&specs[0], "llamacpp=http://127.0.0.1:8080/"), 0);
	assert_int_equal(engine_spec_parse(&specs[1], "vllm=http://127.0.0.1:8000"), 0);
	assert_string_equal(specs[0].api_key, "");

	write_file(path, "# keys\n\nsk-all\nhttp://127.0.0.1:8080/  sk-llama \r\n", 0600);
	assert_int_equal(engine_keys_load(specs, 2, path), 0);
	assert_string_equal(specs[0].api_key, "sk-llama");
	assert_string_equal(specs[1].api_key, "sk-all");

	/* readable by others: refused, and the message names no key */
	write_file(path, "sk-secret-1\n", 0644);
	assert_int_equal(engine_keys_load(specs, 2, path), TROOP_EFORBIDDEN);
	assert_null(strstr(troop_error_msg(), "sk-secret-1"));
	assert_non_null(strstr(troop_error_msg(), "chmod 600"));

	/* a URL that is no --engine, a key with a control character */
	write_file(path, "http://127.0.0.1:9999 sk-secret-2\n", 0600);
	assert_int_equal(engine_keys_load(specs, 2, path), TROOP_EINVAL);
	assert_null(strstr(troop_error_msg(), "sk-secret-2"));
	write_file(path, "http://127.0.0.1:8000 sk\x01x\n", 0600);
	assert_int_equal(engine_keys_load(specs, 2, path), TROOP_EINVAL);
	assert_int_equal(engine_keys_load(specs, 2, "/nonexistent/keys"), TROOP_EIO);
	unlink(path);
}

static void test_spec_valid(void **state)
{
	engine_spec s;

	assert_int_equal(engine_spec_parse(&s, "ollama=http://127.0.0.1:11434/"), 0);
	assert_int_equal(s.type, ENGINE_OLLAMA);
	assert_string_equal(s.url, "http://127.0.0.1:11434");
	assert_int_equal(engine_url_port(s.url), 11434);

	assert_int_equal(engine_spec_parse(&s, "llama.cpp=http://gpu-box:9931"), 0);
	assert_int_equal(s.type, ENGINE_LLAMACPP);
	assert_string_equal(s.url, "http://gpu-box:9931");

	assert_int_equal(engine_spec_parse(&s, "openai=https://api.example.com/v2//"), 0);
	assert_int_equal(s.type, ENGINE_OPENAI);
	assert_string_equal(s.url, "https://api.example.com/v2");
	assert_int_equal(engine_url_port(s.url), 443);

	assert_int_equal(engine_spec_parse(&s, "VLLM=http://[::1]:8000"), 0);
	assert_int_equal(s.type, ENGINE_VLLM);
	assert_int_equal(engine_url_port(s.url), 8000);
	assert_int_equal(engine_url_port("http://h"), 80);
	assert_int_equal(engine_url_port("gopher://h"), 0);
}

static void test_spec_invalid(void **state)
{
	static const struct {
		const char *spec;
		const char *in_msg;
	} bad[] = {
		{ "tgi=http://127.0.0.1:80", "unknown engine type 'tgi'" },
		{ "ollama", "missing URL" },
		{ "ollama=", "missing URL" },
		{ "=http://127.0.0.1:1", "engine type" },
		{ "", "TYPE=URL" },
		{ "ollama=ftp://127.0.0.1", "http://" },
		{ "ollama=127.0.0.1:11434", "http://" },
		{ "ollama=http://", "no host" },
		{ "ollama=http://:80", "no host" },
		{ "ollama=http://h:0", "port" },
		{ "ollama=http://h:70000", "port" },
		{ "ollama=http://h:12a", "port" },
		{ "ollama=http://h:", "port" },
		{ "ollama=http://h x", "space" },
		{ "vllm=http://user:pw@h:8000", "credentials" },
		{ "vllm=http://h:8000/?x=1", "query" },
		{ "vllm=http://[zz]:1", "IPv6" },
		{ "vllm=http://h!x", "bad character" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		engine_spec s;

		troop_error_clear();
		assert_int_equal(engine_spec_parse(&s, bad[i].spec), TROOP_EINVAL);
		if (!strstr(troop_error_msg(), bad[i].in_msg) ||
		    !strstr(troop_error_msg(), "--engine"))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].spec,
			    troop_error_msg(), bad[i].in_msg);
	}
}

/* ---- capabilities ------------------------------------------------------------ */

/* A capability fixture: these live only in the source tree's
 * tests/data/engines. */
static json_t *caps_fixture(const char *name)
{
	const char *src = getenv("TROOP_SOURCE_DIR");
	char path[1024];
	json_error_t jerr;
	json_t *v;

	if (!src || !*src)
		fail_msg("TROOP_SOURCE_DIR is not set (run through ctest)");
	snprintf(path, sizeof(path), "%s/tests/data/engines/%s", src, name);
	v = json_load_file(path, 0, &jerr);
	if (!v)
		fail_msg("fixture %s: %s", path, jerr.text);
	return v;
}

static void test_caps_llamacpp_props(void **state)
{
	json_t *body = fixture_json("llamacpp_props.json");
	engine_model m = { .engine = ENGINE_LLAMACPP };

	(void)state;
	assert_int_equal(llamacpp_parse_props_caps(&m, body), 0);
	assert_int_equal(m.context_length, 8192);
	/* a template without tools: tools unknown (generic tool calls) */
	assert_int_equal(m.caps_known, PROTO_CAP_VISION);
	assert_int_equal(m.caps, 0);
	json_decref(body);

	/* the real server's reply: -c 512, no vision, a template without tools */
	body = caps_fixture("llamacpp_props_b1.json");
	memset(&m, 0, sizeof(m));
	assert_int_equal(llamacpp_parse_props_caps(&m, body), 0);
	assert_int_equal(m.context_length, 512);
	assert_int_equal(m.caps_known, PROTO_CAP_VISION);
	assert_int_equal(m.caps, 0);

	/* a vision model (mmproj) with a tool-calling template */
	json_object_set_new(json_object_get(body, "modalities"), "vision", json_true());
	json_object_set_new(json_object_get(body, "chat_template_caps"), "supports_tools",
	    json_true());
	memset(&m, 0, sizeof(m));
	assert_int_equal(llamacpp_parse_props_caps(&m, body), 0);
	assert_int_equal(m.caps, PROTO_CAP_VISION | PROTO_CAP_TOOLS);
	assert_int_equal(m.caps_known, PROTO_CAP_VISION | PROTO_CAP_TOOLS);

	/* an older build that says none of it: unknown, not "no" */
	json_object_del(body, "modalities");
	json_object_del(body, "chat_template_caps");
	json_object_del(body, "default_generation_settings");
	memset(&m, 0, sizeof(m));
	assert_int_equal(llamacpp_parse_props_caps(&m, body), 0);
	assert_int_equal(m.context_length, 0);
	assert_int_equal(m.caps_known, 0);
	json_decref(body);
}

static void test_caps_openai_lists(void **state)
{
	json_t *body = fixture_json("openai_models.json");
	engine_model_list list = { 0 };

	(void)state;
	/* vLLM: max_model_len */
	assert_int_equal(vllm_parse_models(&list, body), 0);
	assert_int_equal(list.count, 1);
	assert_int_equal(list.items[0].context_length, 32768);
	assert_int_equal(list.items[0].caps_known, 0);
	engine_model_list_clear(&list);
	json_decref(body);

	/* llama.cpp: meta.n_ctx; absent: unknown */
	body = json_pack("{s:[{s:s, s:{s:i, s:i}}, {s:s}]}", "data", "id", "a.gguf", "meta",
	    "n_ctx", 4096, "n_ctx_train", 32768, "id", "b");
	assert_int_equal(llamacpp_parse_models(&list, body), 0);
	assert_int_equal(list.count, 2);
	assert_int_equal(list.items[0].context_length, 4096);
	assert_int_equal(list.items[1].context_length, 0);
	engine_model_list_clear(&list);
	json_decref(body);

	/* out of range is unknown */
	body = json_pack("{s:[{s:s, s:I}]}", "data", "id", "x", "max_model_len",
	    (json_int_t)-5);
	assert_int_equal(vllm_parse_models(&list, body), 0);
	assert_int_equal(list.items[0].context_length, 0);
	engine_model_list_clear(&list);
	json_decref(body);
}

static void test_caps_ollama_show(void **state)
{
	json_t *body = caps_fixture("ollama_show.json");
	engine_model m = { .engine = ENGINE_OLLAMA };

	(void)state;
	assert_int_equal(ollama_parse_show(&m, body), 0);
	assert_int_equal(m.context_length, 131072);
	assert_int_equal(m.caps_known, PROTO_CAP_ALL);
	assert_int_equal(m.caps, PROTO_CAP_TOOLS);
	json_decref(body);

	/* before "capabilities": the architecture's context length only, the
	 * capabilities unknown */
	body = caps_fixture("ollama_show_old.json");
	memset(&m, 0, sizeof(m));
	assert_int_equal(ollama_parse_show(&m, body), 0);
	assert_int_equal(m.context_length, 2048);
	assert_int_equal(m.caps_known, 0);
	json_decref(body);

	body = json_pack("{s:[s, s]}", "capabilities", "embedding", "vision");
	memset(&m, 0, sizeof(m));
	assert_int_equal(ollama_parse_show(&m, body), 0);
	assert_int_equal(m.caps, PROTO_CAP_EMBEDDINGS | PROTO_CAP_VISION);
	json_decref(body);

	body = json_string("nope");
	assert_int_equal(ollama_parse_show(&m, body), TROOP_EINVAL);
	json_decref(body);
}

static void test_caps_lmstudio(void **state)
{
	json_t *body = fixture_json("lmstudio_models_v0.json");
	engine_model_list list = { 0 };
	long at;

	(void)state;
	assert_int_equal(lmstudio_parse_models(&list, body), 0);
	at = engine_model_list_find(&list, "qwen2.5-7b-instruct");
	assert_true(at >= 0);
	assert_int_equal(list.items[at].context_length, 32768);
	/* llm: no images, no embeddings; no "capabilities": tools unknown */
	assert_int_equal(list.items[at].caps_known, PROTO_CAP_VISION | PROTO_CAP_EMBEDDINGS);
	assert_int_equal(list.items[at].caps, 0);
	at = engine_model_list_find(&list, "text-embedding-nomic-embed-text-v1.5");
	assert_true(at >= 0);
	assert_int_equal(list.items[at].caps, PROTO_CAP_EMBEDDINGS);
	assert_int_equal(list.items[at].context_length, 2048);
	engine_model_list_clear(&list);
	json_decref(body);

	body = caps_fixture("lmstudio_models_v0_caps.json");
	assert_int_equal(lmstudio_parse_models(&list, body), 0);
	at = engine_model_list_find(&list, "qwen2.5-vl-7b-instruct");
	assert_true(at >= 0);
	assert_int_equal(list.items[at].caps_known, PROTO_CAP_ALL);
	assert_int_equal(list.items[at].caps, PROTO_CAP_VISION | PROTO_CAP_TOOLS);
	assert_int_equal(list.items[at].context_length, 128000);
	at = engine_model_list_find(&list, "gemma-3-1b-it");
	assert_true(at >= 0);
	assert_int_equal(list.items[at].caps_known, PROTO_CAP_ALL);
	assert_int_equal(list.items[at].caps, 0);
	engine_model_list_clear(&list);
	json_decref(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ollama_version),
		cmocka_unit_test(test_ollama_tags),
		cmocka_unit_test(test_ollama_ps),
		cmocka_unit_test(test_ollama_tags_odd_digests),
		cmocka_unit_test(test_vllm_version),
		cmocka_unit_test(test_vllm_models),
		cmocka_unit_test(test_openai_models),
		cmocka_unit_test(test_openai_list_malformed),
		cmocka_unit_test(test_too_many_models),
		cmocka_unit_test(test_lmstudio_models),
		cmocka_unit_test(test_llamacpp_health),
		cmocka_unit_test(test_llamacpp_props),
		cmocka_unit_test(test_llamacpp_models),
		cmocka_unit_test(test_llamacpp_clean_names),
		cmocka_unit_test(test_caps_llamacpp_props),
		cmocka_unit_test(test_caps_openai_lists),
		cmocka_unit_test(test_caps_ollama_show),
		cmocka_unit_test(test_caps_lmstudio),
		cmocka_unit_test(test_engine_keys),
		cmocka_unit_test(test_error_openai_vllm),
		cmocka_unit_test(test_error_variants),
		cmocka_unit_test(test_error_not_json),
		cmocka_unit_test(test_error_other_shapes),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_model_list_limits),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_default_ports),
		cmocka_unit_test(test_spec_valid),
		cmocka_unit_test(test_spec_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
