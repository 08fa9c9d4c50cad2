/*
 * bench_crypto.c - single-thread throughput of the signing primitives:
 * raw Ed25519 sign/verify (libsodium) against ticket_sign/ticket_verify
 * over a ticket-sized message, and httpsig sign/verify for reference; and
 * the reply digest (sha256.h) over 200-byte stream events, on the
 * processor's SHA extensions against libsodium's portable SHA-256.
 * Each figure runs for about one second.  Built and run by
 * bench/bench_crypto.sh; not part of the test suite.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpsig.h"
#include "identity.h"
#include "sha256.h"
#include "ticket.h"

#define NOW ((int64_t)1764000000)
#define BATCH 64

static volatile unsigned sink;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef void (*op_fn)(void *ctx);

/* Operations per second of `op`, run in batches for about `secs`. */
static double rate(op_fn op, void *ctx, double secs)
{
	double t0, t;
	long n = 0;

	for (int i = 0; i < BATCH; i++)  /* warm up */
		op(ctx);
	t0 = now_s();
	do {
		for (int i = 0; i < BATCH; i++)
			op(ctx);
		n += BATCH;
		t = now_s();
	} while (t - t0 < secs);
	return (double)n / (t - t0);
}

struct bctx {
	troop_identity key;
	ticket_key tkey;
	ticket_claims claims;
	char *token;
	const unsigned char *msg;   /* header.payload of token */
	size_t msg_len;
	unsigned char sig[64];
	httpsig_headers hs;
	const char *body;
};

static void op_raw_sign(void *p)
{
	struct bctx *c = p;
	unsigned char sig[64];

	crypto_sign_detached(sig, NULL, c->msg, c->msg_len, c->key.sk);
	sink += sig[0];
}

static void op_ticket_sign(void *p)
{
	struct bctx *c = p;
	char *tok = NULL;

	if (ticket_sign(&tok, &c->claims, &c->key) != 0)
		abort();
	sink += (unsigned char)tok[0];
	free(tok);
}

static void op_raw_verify(void *p)
{
	struct bctx *c = p;

	if (crypto_sign_verify_detached(c->sig, c->msg, c->msg_len, c->key.pk) != 0)
		abort();
	sink++;
}

static void op_ticket_verify(void *p)
{
	struct bctx *c = p;
	ticket_claims out;

	if (ticket_verify(&out, c->token, &c->tkey, 1, NOW) != 0)
		abort();
	sink += (unsigned)out.max_seconds;
}

static void op_httpsig_sign(void *p)
{
	struct bctx *c = p;
	httpsig_headers h;

	if (httpsig_sign(&h, &c->key, "POST", "/authorize", NULL, c->body, strlen(c->body),
	    NOW) != 0)
		abort();
	sink += (unsigned char)h.signature[8];
}

static void op_httpsig_verify(void *p)
{
	struct bctx *c = p;
	char keyid[TROOP_ID_LEN + 1];

	if (httpsig_verify(keyid, "POST", "/authorize", NULL, c->body, strlen(c->body),
	    c->hs.content_digest, c->hs.signature_input, c->hs.signature, NOW, NULL,
	    NULL) != 0)
		abort();
	sink += (unsigned char)keyid[0];
}

/* A streamed reply's digest: one update per ~200-byte SSE event. */
static unsigned char event[200];

static void op_digest(void *p)
{
	sha256_ctx *c = p;

	sha256_update(c, event, sizeof(event));
}

static void op_sodium_digest(void *p)
{
	crypto_hash_sha256_update(p, event, sizeof(event));
}

int main(int argc, char **argv)
{
	struct bctx c;
	troop_identity user, node;
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	double raw_sign, t_sign, raw_verify, t_verify, h_sign, h_verify;

	if (sodium_init() < 0 || secs <= 0)
		return 1;
	memset(&c, 0, sizeof(c));
	if (identity_generate(&c.key) || identity_generate(&user) || identity_generate(&node))
		return 1;
	ticket_kid(c.tkey.kid, c.key.pk);
	memcpy(c.tkey.pk, c.key.pk, TROOP_PK_LEN);
	/* claims as the coordinator fills them on /authorize */
	snprintf(c.claims.iss, sizeof(c.claims.iss), "%s", c.key.id);
	snprintf(c.claims.sub, sizeof(c.claims.sub), "%s", user.id);
	snprintf(c.claims.target_node, sizeof(c.claims.target_node), "%s", node.id);
	snprintf(c.claims.model, sizeof(c.claims.model), "llama3.1:8b-instruct-q4_K_M");
	ticket_new_jti(c.claims.jti);
	c.claims.iat = NOW;
	c.claims.exp = NOW + 300;
	c.claims.max_seconds = 120;
	if (ticket_sign(&c.token, &c.claims, &c.key) != 0)
		return 1;
	c.msg = (const unsigned char *)c.token;
	c.msg_len = (size_t)(strrchr(c.token, '.') - c.token);
	crypto_sign_detached(c.sig, NULL, c.msg, c.msg_len, c.key.sk);
	c.body = "{\"model\":\"llama3.1:8b-instruct-q4_K_M\",\"max_seconds\":120}";
	if (httpsig_sign(&c.hs, &c.key, "POST", "/authorize", NULL, c.body, strlen(c.body),
	    NOW) != 0)
		return 1;

	printf("libsodium %s, one thread, %.1f s per figure, ticket %zu bytes "
	    "(signed part %zu bytes)\n", sodium_version_string(), secs, strlen(c.token),
	    c.msg_len);
	raw_sign = rate(op_raw_sign, &c, secs);
	t_sign = rate(op_ticket_sign, &c, secs);
	raw_verify = rate(op_raw_verify, &c, secs);
	t_verify = rate(op_ticket_verify, &c, secs);
	h_sign = rate(op_httpsig_sign, &c, secs);
	h_verify = rate(op_httpsig_verify, &c, secs);
	printf("%-34s %10.0f /s\n", "raw crypto_sign_detached", raw_sign);
	printf("%-34s %10.0f /s   ratio %.3f\n", "ticket_sign", t_sign, t_sign / raw_sign);
	printf("%-34s %10.0f /s\n", "raw crypto_sign_verify_detached", raw_verify);
	printf("%-34s %10.0f /s   ratio %.3f\n", "ticket_verify", t_verify,
	    t_verify / raw_verify);
	printf("%-34s %10.0f /s   ratio %.3f (to raw sign)\n", "httpsig_sign (with body)",
	    h_sign, h_sign / raw_sign);
	printf("%-34s %10.0f /s   ratio %.3f (to raw verify)\n", "httpsig_verify (no nonce)",
	    h_verify, h_verify / raw_verify);
	{
		sha256_ctx d;
		crypto_hash_sha256_state st;
		unsigned char h[32];
		double ours, sod;

		memset(event, 'x', sizeof(event));
		sha256_init(&d);
		crypto_hash_sha256_init(&st);
		ours = rate(op_digest, &d, secs);
		sod = rate(op_sodium_digest, &st, secs);
		sha256_final(&d, h);
		crypto_hash_sha256_final(&st, h);
		printf("%-34s %10.0f MB/s (%s)\n", "reply digest, 200-byte events",
		    ours * sizeof(event) / 1e6, sha256_accelerated() ? "SHA extensions" :
		    "portable");
		printf("%-34s %10.0f MB/s   ratio %.2f\n", "libsodium crypto_hash_sha256",
		    sod * sizeof(event) / 1e6, ours / sod);
		printf("RESULT crypto: reply digest %.0f MB/s, %.2f x libsodium's SHA-256 "
		    "(%s)\n", ours * sizeof(event) / 1e6, ours / sod,
		    sha256_accelerated() ? "SHA extensions" : "portable");
	}
	free(c.token);
	identity_wipe(&c.key);
	return 0;
}
