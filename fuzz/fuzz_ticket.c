/*
 * fuzz_ticket.c - libFuzzer harness for ticket_verify on arbitrary bytes,
 * plus a sign/verify round-trip property: any input short enough to be a
 * model name that ticket_sign accepts must verify and come back intact.
 *
 * The key is derived from a fixed seed so that the seed corpus
 * (fuzz/corpus/ticket/, tokens signed with the same key at FUZZ_NOW) reaches
 * the claim checks.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "ticket.h"

#define FUZZ_NOW ((int64_t)1764000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static troop_identity fuzz_key;
static ticket_key fuzz_keys[1];

static void fuzz_init(void)
{
	static int done;
	unsigned char seed[32];

	if (done)
		return;
	done = 1;
	if (sodium_init() < 0)
		abort();
	memset(seed, 0x42, sizeof(seed));
	crypto_sign_seed_keypair(fuzz_key.pk, fuzz_key.sk, seed);
	account_id_encode(fuzz_key.id, fuzz_key.pk);
	ticket_kid(fuzz_keys[0].kid, fuzz_key.pk);
	memcpy(fuzz_keys[0].pk, fuzz_key.pk, TROOP_PK_LEN);
}

static void round_trip(const uint8_t *data, size_t size)
{
	ticket_claims in, out;
	char *tok = NULL;

	memset(&in, 0, sizeof(in));
	memcpy(in.model, data, size);  /* size < sizeof(in.model) */
	in.model[size] = '\0';
	if (!in.model[0])
		return;
	memcpy(in.iss, "fuzz", 5);
	memcpy(in.sub, fuzz_key.id, sizeof(in.sub));
	memcpy(in.target_node, fuzz_key.id, sizeof(in.target_node));
	memcpy(in.jti, "AAAAAAAAAAAAAAAAAAAAAA", 23);
	in.iat = FUZZ_NOW;
	in.exp = FUZZ_NOW + 300;
	in.max_seconds = 60;
	if (ticket_sign(&tok, &in, &fuzz_key) != 0)
		return;  /* not UTF-8: refused, fine */
	if (ticket_verify(&out, tok, fuzz_keys, 1, FUZZ_NOW) != 0 ||
	    strcmp(out.model, in.model) != 0)
		abort();
	free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ticket_claims out;
	char *tok;

	fuzz_init();
	if (size > TICKET_MAX_LEN * 2)
		return 0;
	tok = malloc(size + 1);
	if (!tok)
		return 0;
	memcpy(tok, data, size);
	tok[size] = '\0';
	(void)ticket_verify(&out, tok, fuzz_keys, 1, FUZZ_NOW);
	free(tok);
	if (size < sizeof(out.model))
		round_trip(data, size);
	return 0;
}
