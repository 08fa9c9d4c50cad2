/*
 * test_keyring.c - the coordinator public keys a worker checks tickets with (keyring.h):
 * the key reply parser and the keyring.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "ticket.h"

/* ---- keyring ---------------------------------------------------------------------------- */

static json_t *pubkey_reply(const troop_identity *id, const char *alg, const char *kid)
{
	char pk[64], k[TICKET_KID_LEN + 1];

	b64url_encode(pk, sizeof(pk), id->pk, TROOP_PK_LEN);
	ticket_kid(k, id->pk);
	return json_pack("{s:s, s:s, s:s}", "public_key", pk, "kid", kid ? kid : k, "alg", alg);
}

static void test_keyring(void **state)
{
	troop_identity coord, other;
	keyring *k;
	ticket_key key;
	ticket_claims cl, out;
	char *tok = NULL;
	json_t *r;

	identity_generate(&coord);
	identity_generate(&other);
	r = pubkey_reply(&coord, "EdDSA", NULL);
	assert_int_equal(keyring_parse(&key, r), 0);
	json_decref(r);
	r = pubkey_reply(&coord, "HS256", NULL);
	assert_int_equal(keyring_parse(&key, r), TROOP_EINVAL);
	json_decref(r);
	r = pubkey_reply(&coord, "EdDSA", "not-the-kid");
	assert_int_equal(keyring_parse(&key, r), TROOP_EINVAL);
	json_decref(r);
	r = json_pack("{s:s, s:s, s:s}", "public_key", "short", "kid", "x", "alg", "EdDSA");
	assert_int_equal(keyring_parse(&key, r), TROOP_EINVAL);
	json_decref(r);

	memset(&cl, 0, sizeof(cl));
	snprintf(cl.iss, sizeof(cl.iss), "%s", coord.id);
	snprintf(cl.sub, sizeof(cl.sub), "%s", other.id);
	snprintf(cl.target_node, sizeof(cl.target_node), "%s", other.id);
	snprintf(cl.model, sizeof(cl.model), "m");
	ticket_new_jti(cl.jti);
	cl.iat = 1000;
	cl.exp = 1300;
	cl.max_seconds = 60;
	assert_int_equal(ticket_sign(&tok, &cl, &coord), 0);

	assert_int_equal(keyring_new(&k), 0);
	assert_int_equal(keyring_verify(k, &out, tok, 1100), TROOP_ENOKEY);
	r = pubkey_reply(&coord, "EdDSA", NULL);
	assert_int_equal(keyring_parse(&key, r), 0);
	json_decref(r);
	assert_int_equal(keyring_add(k, &key), 0);
	assert_int_equal(keyring_add(k, &key), 0);  /* same kid: replaced */
	assert_int_equal(keyring_count(k), 1);
	assert_int_equal(keyring_verify(k, &out, tok, 1100), 0);
	assert_string_equal(out.jti, cl.jti);
	/* more keys than kept: the oldest goes */
	for (int i = 0; i < KEYRING_MAX; i++) {
		troop_identity t;
		identity_generate(&t);
		r = pubkey_reply(&t, "EdDSA", NULL);
		assert_int_equal(keyring_parse(&key, r), 0);
		json_decref(r);
		keyring_add(k, &key);
	}
	assert_int_equal(keyring_count(k), KEYRING_MAX);
	assert_int_equal(keyring_verify(k, &out, tok, 1100), TROOP_ENOKEY);
	/* refetches at most once a minute */
	assert_true(keyring_refetch_due(k, 5000));
	assert_false(keyring_refetch_due(k, 5001));
	assert_false(keyring_refetch_due(k, 5000 + KEYRING_REFETCH_S - 1));
	assert_true(keyring_refetch_due(k, 5000 + KEYRING_REFETCH_S));
	free(tok);
	keyring_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
