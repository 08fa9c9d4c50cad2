/*
 * endpoints.c - probing an engine for the API endpoints it serves
 * natively (endpoints.h).
 */
#include "endpoints.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "engines/engine.h"

static const struct {
	unsigned bit;
	const char *path;
	const char *name;
} table[] = {
	{ ENDPOINT_RESPONSES, "/v1/responses", "responses" },
	{ ENDPOINT_MESSAGES, "/v1/messages", "messages" },
	{ ENDPOINT_COUNT_TOKENS, "/v1/messages/count_tokens", "count_tokens" },
	{ ENDPOINT_TOKENIZE, "/tokenize", "tokenize" },
};

#define NTABLE (sizeof(table) / sizeof(table[0]))

unsigned endpoints_bit(const char *path)
{
	for (size_t i = 0; path && i < NTABLE; i++)
		if (strcmp(path, table[i].path) == 0)
			return table[i].bit;
	return 0;
}

bool endpoints_status_served(int status)
{
	/* llama.cpp answers a body without "messages" with 500 */
	return status >= 200 && status <= 500 && status != 404 && status != 405;
}

unsigned endpoints_probe(http_client *c, const char *base_url, const char *api_key)
{
	char url[ENGINE_URL_MAX + 64], authz[ENGINE_KEY_MAX + 32] = "";
	const char *headers[3] = { "Content-Type: application/json", NULL, NULL };
	unsigned mask = 0;

	if (api_key && api_key[0]) {
		snprintf(authz, sizeof(authz), "Authorization: Bearer %s", api_key);
		headers[1] = authz;
	}
	for (size_t i = 0; i < NTABLE; i++) {
		http_response r = { 0 };

		if ((size_t)snprintf(url, sizeof(url), "%s%s", base_url, table[i].path) >= sizeof(url))
			break;
		if (http_request(c, &r, "POST", url, headers, "{}", 2) == 0 &&
		    endpoints_status_served(r.status))
			mask |= table[i].bit;
		http_response_free(&r);
	}
	sodium_memzero(authz, sizeof(authz));
	return mask;
}

json_t *endpoints_json(unsigned mask)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < NTABLE; i++)
		if ((mask & table[i].bit) && json_array_append_new(a, json_string(table[i].name)) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}
