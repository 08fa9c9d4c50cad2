/*
 * fuzz_httpsig.c - libFuzzer harness for httpsig_verify.  The input is
 * split on '\n' into Signature-Input, Signature, Content-Digest and the
 * body (the rest); a missing part is a missing header.  The request is
 * POST /authorize?x=1 at FUZZ_NOW, with a small nonce store (an expset).  Also checks
 * the round-trip property: a request signed over the fuzzer's body
 * verifies.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "expset.h"
#include "httpsig.h"
#include "identity.h"

#define FUZZ_NOW ((int64_t)1764000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static troop_identity fuzz_key;
static expset *fuzz_cache;

static int fuzz_nonce(void *set, const char *keyid, const char *nonce, int64_t now)
{
	char key[600];
	int rc;

	snprintf(key, sizeof(key), "%s\n%s", keyid, nonce);
	rc = expset_put(set, key, NULL, NULL, 0, now + 121, EXPSET_NX, now);
	return rc == TROOP_ECONFLICT ? TROOP_EAUTH : rc;
}

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
	expset_opts o = { .max = 4096 };

	if (expset_new(&fuzz_cache, &o) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *part[3] = { NULL, NULL, NULL };
	char *p, *body;
	size_t body_len;
	char keyid[TROOP_ID_LEN + 1];
	httpsig_headers h;

	fuzz_init();
	if (size > 16384)
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	p = buf;
	for (int i = 0; i < 3 && p; i++) {
		char *nl = memchr(p, '\n', (size_t)(buf + size - p));
		part[i] = p;
		if (nl) {
			*nl = '\0';
			p = nl + 1;
		} else {
			p = NULL;
		}
	}
	body = p ? p : buf + size;
	body_len = (size_t)(buf + size - body);
	(void)httpsig_verify(keyid, "POST", "/authorize", "x=1", body, body_len,
	    part[2], part[0], part[1], FUZZ_NOW, fuzz_nonce, fuzz_cache);

	/* round trip over the same bytes as a body */
	if (httpsig_sign(&h, &fuzz_key, "POST", "/authorize", "x=1", data, size,
	    FUZZ_NOW) != 0)
		abort();
	if (httpsig_verify(keyid, "POST", "/authorize", "x=1", data, size,
	    h.content_digest[0] ? h.content_digest : NULL, h.signature_input,
	    h.signature, FUZZ_NOW, NULL, NULL) != 0)
		abort();
	free(buf);
	return 0;
}
