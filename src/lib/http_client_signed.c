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

int http_request_signed(http_client *c, int *status, json_t **out,
    const struct troop_identity *id, const char *method, const char *base,
    const char *path_query, const json_t *body)
{
	char h_digest[sizeof(((httpsig_headers *)0)->content_digest) + 32];
	char h_input[sizeof(((httpsig_headers *)0)->signature_input) + 32];
	char h_sig[sizeof(((httpsig_headers *)0)->signature) + 32];
	const char *hv[6];
	http_response resp = { 0 };
	httpsig_headers sig;
	json_error_t jerr;
	char *path = NULL, *url = NULL, *text = NULL, *q;
	const char *query = "";
	size_t blen = 0, baselen, n = 0;
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
	rc = httpsig_sign(&sig, id, method, path, query, text, blen, (int64_t)time(NULL));
	if (rc)
		goto out;

	if (sig.content_digest[0]) {
		snprintf(h_digest, sizeof(h_digest), "Content-Digest: %s", sig.content_digest);
		hv[n++] = h_digest;
	}
	snprintf(h_input, sizeof(h_input), "Signature-Input: %s", sig.signature_input);
	snprintf(h_sig, sizeof(h_sig), "Signature: %s", sig.signature);
	hv[n++] = h_input;
	hv[n++] = h_sig;
	if (text)
		hv[n++] = "Content-Type: application/json";
	hv[n++] = "Accept: application/json";
	hv[n] = NULL;

	rc = http_request(c, &resp, method, url, hv, text, blen);
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
