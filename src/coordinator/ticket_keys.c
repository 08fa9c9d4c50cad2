/*
 * ticket_keys.c - the ring of ticket signing keys (ticket_keys.h).
 */
#include "ticket_keys.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"

#define RING_MAGIC "troop-ticket-keys 1\n"
#define RING_TEXT_MAX 2048

typedef struct {
	troop_identity id;
	ticket_key pub;
	int64_t activates_at, retires_at;
} ring_key;

struct ticket_keys {
	pthread_mutex_t mu;
	ring_key keys[TICKET_KEYS_MAX]; /* oldest first */
	size_t n;
};

static void fill_pub(ring_key *r)
{
	memcpy(r->pub.pk, r->id.pk, TROOP_PK_LEN);
	ticket_kid(r->pub.kid, r->pub.pk);
}

int ticket_keys_new(ticket_keys **out, const troop_identity *initial)
{
	ticket_keys *k = calloc(1, sizeof(*k));

	*out = NULL;
	if (!k)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the ticket keys");
	pthread_mutex_init(&k->mu, NULL);
	k->keys[0].id = *initial;
	fill_pub(&k->keys[0]);
	k->n = 1;
	*out = k;
	return 0;
}

void ticket_keys_free(ticket_keys *k)
{
	if (!k)
		return;
	sodium_memzero(k->keys, sizeof(k->keys));
	pthread_mutex_destroy(&k->mu);
	free(k);
}

/* The index of the signer at `now`: the newest key whose time has come
 * (the oldest when none has, which a stored ring never holds). */
static size_t signer_at(const ticket_keys *k, int64_t now)
{
	size_t best = 0;

	for (size_t i = 0; i < k->n; i++)
		if (k->keys[i].activates_at <= now)
			best = i;
	return best;
}

void ticket_keys_signer(ticket_keys *k, troop_identity *out, int64_t now)
{
	pthread_mutex_lock(&k->mu);
	*out = k->keys[signer_at(k, now)].id;
	pthread_mutex_unlock(&k->mu);
}

static bool published(const ring_key *r, int64_t now)
{
	return r->retires_at == 0 || r->retires_at > now;
}

size_t ticket_keys_published(ticket_keys *k, ticket_keys_pub *out, size_t cap, int64_t now)
{
	size_t n = 0;

	pthread_mutex_lock(&k->mu);
	for (size_t i = 0; i < k->n && n < cap; i++) {
		if (!published(&k->keys[i], now))
			continue;
		out[n].pub = k->keys[i].pub;
		out[n].activates_at = k->keys[i].activates_at;
		out[n].retires_at = k->keys[i].retires_at;
		n++;
	}
	pthread_mutex_unlock(&k->mu);
	return n;
}

/* ---- the stored form ----------------------------------------------------------- */

static int encode_keys(const ring_key *keys, size_t n, char *out, size_t cap)
{
	size_t off = 0;
	int w = snprintf(out, cap, "%s", RING_MAGIC);

	if (w < 0 || (size_t)w >= cap)
		return troop_error_set(TROOP_ETOOLARGE, "ticket key ring: no room");
	off = (size_t)w;
	for (size_t i = 0; i < n; i++) {
		char sk[128];

		b64_encode(sk, sizeof(sk), keys[i].id.sk, sizeof(keys[i].id.sk));
		w = snprintf(out + off, cap - off, "%s %" PRId64 " %" PRId64 "\n", sk,
		    keys[i].activates_at, keys[i].retires_at);
		sodium_memzero(sk, sizeof(sk));
		if (w < 0 || (size_t)w >= cap - off) {
			sodium_memzero(out, cap);
			return troop_error_set(TROOP_ETOOLARGE, "ticket key ring: no room");
		}
		off += (size_t)w;
	}
	return 0;
}

int ticket_keys_encode(const ticket_keys *k, char *out, size_t cap)
{
	ticket_keys *m = (ticket_keys *)k;
	int rc;

	pthread_mutex_lock(&m->mu);
	rc = encode_keys(m->keys, m->n, out, cap);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* Parse a stored ring into keys[]; *n gets the count.  0 or TROOP_EINVAL. */
static int decode_keys(ring_key *keys, size_t *n, const char *text)
{
	const char *p = text;

	*n = 0;
	if (strncmp(p, RING_MAGIC, strlen(RING_MAGIC)) != 0)
		return troop_error_set(TROOP_EINVAL, "the stored ticket key ring has no "
		    "'troop-ticket-keys 1' header");
	p += strlen(RING_MAGIC);
	while (*p) {
		char sk[128];
		unsigned char raw[TROOP_SK_LEN];
		long long act, ret;
		size_t got = 0;
		int used = 0;
		ring_key *r;

		if (*n == TICKET_KEYS_MAX)
			return troop_error_set(TROOP_EINVAL, "the stored ticket key ring has more "
			    "than %d keys", TICKET_KEYS_MAX);
		if (sscanf(p, "%127s %lld %lld%n", sk, &act, &ret, &used) != 3 || p[used] != '\n' ||
		    b64_decode(raw, sizeof(raw), &got, sk, strlen(sk)) != 0 ||
		    got != TROOP_SK_LEN || act < 0 || ret < 0) {
			sodium_memzero(sk, sizeof(sk));
			sodium_memzero(raw, sizeof(raw));
			return troop_error_set(TROOP_EINVAL, "the stored ticket key ring has a "
			    "malformed line %zu", *n + 1);
		}
		r = &keys[(*n)++];
		memset(r, 0, sizeof(*r));
		memcpy(r->id.sk, raw, TROOP_SK_LEN);
		memcpy(r->id.pk, raw + 32, TROOP_PK_LEN);
		account_id_encode(r->id.id, r->id.pk);
		fill_pub(r);
		r->activates_at = act;
		r->retires_at = ret;
		sodium_memzero(sk, sizeof(sk));
		sodium_memzero(raw, sizeof(raw));
		p += used + 1;
	}
	if (*n == 0)
		return troop_error_set(TROOP_EINVAL, "the stored ticket key ring is empty");
	return 0;
}

int ticket_keys_decode(ticket_keys *k, const char *text)
{
	ring_key keys[TICKET_KEYS_MAX];
	size_t n = 0;
	int rc = decode_keys(keys, &n, text);

	if (rc == 0) {
		pthread_mutex_lock(&k->mu);
		sodium_memzero(k->keys, sizeof(k->keys));
		memcpy(k->keys, keys, n * sizeof(keys[0]));
		k->n = n;
		pthread_mutex_unlock(&k->mu);
	}
	sodium_memzero(keys, sizeof(keys));
	return rc;
}

int ticket_keys_reload(ticket_keys *k, ledger_conn *db)
{
	char text[RING_TEXT_MAX];
	int rc = ledger_kv_get(text, sizeof(text), NULL, db, TICKET_KEYS_KV);

	if (rc == TROOP_ENOTFOUND)
		return 0;
	if (rc == 0)
		rc = ticket_keys_decode(k, text);
	sodium_memzero(text, sizeof(text));
	return rc;
}

/* ---- rotation ------------------------------------------------------------------ */

int ticket_keys_rotate(ticket_keys *k, ledger_conn *db, int64_t now, int64_t lead,
    int64_t ttl, ticket_keys_pub *next)
{
	ring_key keys[TICKET_KEYS_MAX];
	char before[RING_TEXT_MAX], after[RING_TEXT_MAX];
	size_t n = 0, cur;
	bool stored;
	int rc;

	if (lead < 0 || lead > 86400 || ttl < 1 || ttl > 86400)
		return troop_error_set(TROOP_EINVAL, "a rotation's lead and the ticket TTL must be "
		    "0 .. 86400 s");
	/* what is stored now (another coordinator may have rotated), else
	 * the ring held since start */
	rc = ledger_kv_get(before, sizeof(before), NULL, db, TICKET_KEYS_KV);
	stored = rc == 0;
	if (rc == 0)
		rc = decode_keys(keys, &n, before);
	else if (rc == TROOP_ENOTFOUND) {
		pthread_mutex_lock(&k->mu);
		n = k->n;
		memcpy(keys, k->keys, n * sizeof(keys[0]));
		pthread_mutex_unlock(&k->mu);
		rc = 0;
	}
	if (rc != 0)
		goto out;
	/* a key still waiting for its time: one rotation at a time */
	for (size_t i = 0; i < n; i++)
		if (keys[i].activates_at > now) {
			rc = troop_error_set(TROOP_ECONFLICT, "a rotation is under way: key %s signs "
			    "from %" PRId64 " (in %" PRId64 " s); rotate again after that",
			    keys[i].pub.kid, keys[i].activates_at, keys[i].activates_at - now);
			goto out;
		}
	/* retired keys go; the signer retires after the last ticket it signs */
	{
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (published(&keys[i], now))
				keys[m++] = keys[i];
		n = m;
	}
	if (n == 0) {
		rc = troop_error_set(TROOP_ERR, "the ticket key ring has no live key");
		goto out;
	}
	if (n == TICKET_KEYS_MAX) {
		rc = troop_error_set(TROOP_ECONFLICT, "the ticket key ring is full: wait until "
		    "the previous key retires (at %" PRId64 ")", keys[0].retires_at);
		goto out;
	}
	cur = n - 1;
	{
		size_t s = 0;
		for (size_t i = 0; i < n; i++)
			if (keys[i].activates_at <= now)
				s = i;
		cur = s;
	}
	memset(&keys[n], 0, sizeof(keys[n]));
	if ((rc = identity_generate(&keys[n].id)) != 0)
		goto out;
	fill_pub(&keys[n]);
	keys[n].activates_at = now + lead;
	keys[cur].retires_at = now + lead + ttl + TICKET_KEYS_RETIRE_MARGIN_S;
	n++;
	if ((rc = encode_keys(keys, n, after, sizeof(after))) != 0)
		goto out;
	if (stored) {
		rc = ledger_kv_replace(db, TICKET_KEYS_KV, before, after);
	} else {
		bool inserted = false;
		rc = ledger_kv_put_if_absent(&inserted, db, TICKET_KEYS_KV, after, now);
		if (rc == 0 && !inserted)
			rc = troop_error_set(TROOP_ECONFLICT, "another coordinator rotated the "
			    "ticket key at the same moment: read the key set again");
	}
	if (rc != 0)
		goto out;
	pthread_mutex_lock(&k->mu);
	sodium_memzero(k->keys, sizeof(k->keys));
	memcpy(k->keys, keys, n * sizeof(keys[0]));
	k->n = n;
	pthread_mutex_unlock(&k->mu);
	if (next) {
		next->pub = keys[n - 1].pub;
		next->activates_at = keys[n - 1].activates_at;
		next->retires_at = 0;
	}
out:
	sodium_memzero(keys, sizeof(keys));
	sodium_memzero(before, sizeof(before));
	sodium_memzero(after, sizeof(after));
	return rc;
}
