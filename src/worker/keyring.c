/*
 * keyring.c - coordinator public keys for ticket checks (keyring.h).
 */
#include "keyring.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "proto.h"

struct keyring {
	pthread_mutex_t mu;
	ticket_key keys[KEYRING_MAX];
	size_t n;
	int64_t last_refetch; /* unix seconds of the last unknown-kid refetch */
};

int keyring_new(keyring **out)
{
	keyring *k = calloc(1, sizeof(*k));

	*out = NULL;
	if (!k)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the keyring");
	pthread_mutex_init(&k->mu, NULL);
	*out = k;
	return 0;
}

void keyring_free(keyring *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->mu);
	free(k);
}

int keyring_parse(ticket_key *out, const json_t *body)
{
	proto_public_key k;
	size_t n = 0;
	int rc;

	if ((rc = proto_public_key_decode(&k, body)) != 0)
		return troop_error_set(rc, "coordinator /public-key reply: %s", troop_error_msg());
	if (b64url_decode(out->pk, sizeof(out->pk), &n, k.public_key, strlen(k.public_key)) != 0 ||
	    n != TROOP_PK_LEN)
		return troop_error_set(TROOP_EINVAL, "coordinator /public-key reply: field "
		    "'public_key' must be 32 bytes of base64url");
	memcpy(out->kid, k.kid, sizeof(out->kid));
	return 0;
}

int keyring_add(keyring *k, const ticket_key *key)
{
	size_t i;

	pthread_mutex_lock(&k->mu);
	for (i = 0; i < k->n; i++)
		if (strcmp(k->keys[i].kid, key->kid) == 0)
			break;
	if (i == k->n) {
		if (k->n == KEYRING_MAX) {
			memmove(&k->keys[0], &k->keys[1], (KEYRING_MAX - 1) * sizeof(k->keys[0]));
			i = KEYRING_MAX - 1;
		} else {
			k->n++;
		}
	}
	k->keys[i] = *key;
	pthread_mutex_unlock(&k->mu);
	return 0;
}

size_t keyring_count(keyring *k)
{
	size_t n;

	pthread_mutex_lock(&k->mu);
	n = k->n;
	pthread_mutex_unlock(&k->mu);
	return n;
}

bool keyring_has(keyring *k, const char *kid)
{
	bool found = false;

	pthread_mutex_lock(&k->mu);
	for (size_t i = 0; i < k->n && !found; i++)
		found = strcmp(k->keys[i].kid, kid) == 0;
	pthread_mutex_unlock(&k->mu);
	return found;
}

/* GET url; its JSON body into *body when the answer is 200. */
static int get_json(json_t **body, http_client *c, const char *url)
{
	int status = 0, rc;

	*body = NULL;
	if ((rc = http_request_json(c, &status, body, "GET", url, NULL, NULL)) != 0)
		return rc;
	if (status != 200 || !*body) {
		json_decref(*body);
		*body = NULL;
		return troop_error_set(status == 404 ? TROOP_ENOTFOUND : TROOP_EUPSTREAM,
		    "GET %s answered %d", url, status);
	}
	return 0;
}

int keyring_add_reply(keyring *k, const json_t *body)
{
	proto_public_key keys[PROTO_JWKS_MAX];
	ticket_key key;
	size_t n = 0;
	int rc;

	if (!json_object_get(body, "keys")) {
		/* GET /public-key: one key */
		if ((rc = keyring_parse(&key, body)) != 0)
			return rc;
		return keyring_add(k, &key);
	}
	if ((rc = proto_jwks_decode(keys, &n, body)) != 0)
		return troop_error_set(rc, "coordinator key set: %s", troop_error_msg());
	if (n == 0)
		return troop_error_set(TROOP_EINVAL, "coordinator key set: no Ed25519 key");
	for (size_t i = 0; i < n; i++) {
		json_t *one = proto_public_key_encode(&keys[i]);

		rc = one ? keyring_parse(&key, one) : TROOP_ENOMEM;
		json_decref(one);
		if (rc != 0)
			return rc;
		keyring_add(k, &key);
	}
	return 0;
}

int keyring_fetch(keyring *k, http_client *c, const char *coordinator)
{
	char url[1024];
	json_t *body = NULL;
	int rc;

	/* the whole set: during a rotation, the next and the previous key;
	 * a coordinator without a key set: its one key */
	snprintf(url, sizeof(url), "%s%s", coordinator, KEYRING_SET_PATH);
	rc = get_json(&body, c, url);
	if (rc == TROOP_ENOTFOUND) {
		snprintf(url, sizeof(url), "%s/public-key", coordinator);
		rc = get_json(&body, c, url);
	}
	if (rc != 0)
		return rc;
	rc = keyring_add_reply(k, body);
	json_decref(body);
	return rc;
}

int keyring_verify(keyring *k, ticket_claims *out, const char *token, int64_t now)
{
	ticket_key keys[KEYRING_MAX];
	size_t n;
	int rc;

	pthread_mutex_lock(&k->mu);
	n = k->n;
	memcpy(keys, k->keys, n * sizeof(keys[0]));
	pthread_mutex_unlock(&k->mu);
	rc = ticket_verify(out, token, keys, n, now);
	return rc;
}

bool keyring_refetch_due(keyring *k, int64_t now)
{
	bool due;

	pthread_mutex_lock(&k->mu);
	due = k->last_refetch == 0 || now - k->last_refetch >= KEYRING_REFETCH_S;
	if (due)
		k->last_refetch = now;
	pthread_mutex_unlock(&k->mu);
	return due;
}
