/*
 * http_client_signed.c - signed JSON requests (DESIGN.md section 4) on the
 * blocking client.  Kept apart from http_client.c so that programs and
 * tests that never sign do not pull in the signing code.
 *
 * The body is serialised once; those exact bytes are digested, signed and
 * sent, so the coordinator's Content-Digest check sees what we hashed.
 */
#include "http_client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "httpsig.h"

#define SIGNED_URL_MAX 4096

int http_signed_headers_build(http_signed_headers *h, const struct troop_identity *id,
    const char *method, const char *path, const char *query, const char *body, size_t len,
    int64_t now)
{
	httpsig_headers sig;
	size_t n = 0;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = httpsig_sign(&sig, id, method, path, query ? query : "", body, body ? len : 0, now);
	if (rc)
		return rc;
	if (sig.content_digest[0]) {
		snprintf(h->digest, sizeof(h->digest), "Content-Digest: %s", sig.content_digest);
		h->list[n++] = h->digest;
	}
	snprintf(h->input, sizeof(h->input), "Signature-Input: %s", sig.signature_input);
	snprintf(h->sig, sizeof(h->sig), "Signature: %s", sig.signature);
	h->list[n++] = h->input;
	h->list[n++] = h->sig;
	if (body)
		h->list[n++] = "Content-Type: application/json";
	h->list[n++] = "Accept: application/json";
	h->list[n] = NULL;
	return 0;
}

int http_request_signed(http_client *c, int *status, json_t **out,
    const struct troop_identity *id, const char *method, const char *base,
    const char *path_query, const json_t *body)
{
	http_signed_headers hs;
	http_response resp = { 0 };
	json_error_t jerr;
	char *path = NULL, *url = NULL, *text = NULL, *q;
	const char *query = "";
	size_t blen = 0, baselen;
	int rc;

	if (out)
		*out = NULL;
	if (status)
		*status = 0;
	if (!c || !id || !method || !base || !path_query)
		return troop_error_set(TROOP_EINVAL, "signed request is missing an argument");
	if (path_query[0] != '/')
		return troop_error_set(TROOP_EINVAL, "signed request path must start with '/'");

	baselen = strlen(base);
	while (baselen > 0 && base[baselen - 1] == '/')
		baselen--;
	if (baselen + strlen(path_query) >= SIGNED_URL_MAX)
		return troop_error_set(TROOP_EINVAL, "signed request URL over %d bytes", SIGNED_URL_MAX);
	url = malloc(baselen + strlen(path_query) + 1);
	path = strdup(path_query);
	if (!url || !path) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory building a signed request");
		goto out;
	}
	memcpy(url, base, baselen);
	strcpy(url + baselen, path_query);
	q = strchr(path, '?');
	if (q) {
		*q = '\0';
		query = q + 1;
	}

	if (body) {
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory serialising a request body");
			goto out;
		}
		blen = strlen(text);
	}
	rc = http_signed_headers_build(&hs, id, method, path, query, text, blen,
	    (int64_t)time(NULL));
	if (rc)
		goto out;
	rc = http_request(c, &resp, method, url, hs.list, text, blen);
	if (status)
		*status = resp.status;
	if (rc)
		goto out;
	if (out && resp.len)
		*out = json_loadb(resp.body, resp.len, 0, &jerr);
out:
	http_response_free(&resp);
	free(text);
	free(path);
	free(url);
	return rc;
}
