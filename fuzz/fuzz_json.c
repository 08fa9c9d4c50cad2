/*
 * fuzz_json.c - libFuzzer harness for the JSON helpers: parse the input as
 * a request body, run every getter on the fields the services read, and
 * check that what parses also dumps and parses back to an equal value and
 * that any input quoted in an error message still gives a valid error
 * body.  abort() on a broken property so the fuzzer reports it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_getters(const json_t *o)
{
	const char *s = NULL;
	int64_t n = 0;
	double d = 0;
	bool b = false;
	json_t *a = NULL, *obj = NULL;

	(void)json_get_str(&s, o, "model", true);
	(void)json_get_strn(&s, o, "node_id", false, 64);
	(void)json_get_int(&n, o, "port", true, 1, 65535);
	n = -1;
	if (json_get_int(&n, o, "port", false, 1, 65535) == 0 && n != -1 &&
	    (n < 1 || n > 65535))
		abort();
	(void)json_get_int(&n, o, "max_seconds", false, 0, 0);
	(void)json_get_double(&d, o, "temperature", false);
	(void)json_get_bool(&b, o, "stream", false);
	if (json_get_array(&a, o, "models", false, 8) == 0 && a) {
		if (json_array_size(a) > 8)
			abort();
		for (size_t i = 0; i < json_array_size(a); i++) {
			json_t *m = json_array_get(a, i);
			(void)json_get_str(&s, m, "name", true);
			(void)json_get_int(&n, m, "size_bytes", false, 0, INT64_MAX);
		}
	}
	if (json_get_object(&obj, o, "hardware", false) == 0 && obj) {
		(void)json_get_int(&n, obj, "vram_total", false, 0, 1 << 30);
		(void)json_get_str(&s, obj, "gpu", false);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *o = NULL, *back = NULL, *err = NULL;
	char *text = NULL, msg[256];
	size_t len = 0;

	if (json_parse_object(&o, (const char *)data, size) == 0) {
		if (!json_is_object(o))
			abort();
		run_getters(o);
		text = json_dump_compact(o, &len);
		if (!text || json_parse_object(&back, text, len) != 0 || !json_equal(o, back))
			abort();
		json_decref(back);
		free(text);
		json_decref(o);
	}

	/* error bodies quote arbitrary bytes and must still serialise */
	len = size < sizeof(msg) - 1 ? size : sizeof(msg) - 1;
	memcpy(msg, data, len);
	msg[len] = '\0';
	err = json_error_body(TROOP_EINVAL, msg);
	if (!err)
		abort();
	text = json_dump_compact(err, NULL);
	if (!text)
		abort();
	free(text);
	json_decref(err);
	return 0;
}
