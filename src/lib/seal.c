/*
 * seal.c - sealed jobs (seal.h): the worker's signed sealing key, the
 * sealed request, and the sealed response stream: libsodium (crypto_sign,
 * crypto_kx, crypto_aead_xchacha20poly1305_ietf, BLAKE2b and
 * crypto_secretstream_xchacha20poly1305) and, for the a256gcm and
 * a256gcm2 reply suites, OpenSSL's AES-256-GCM (its AES-NI/VAES code runs 3 times as fast
 * as secretstream over the 16-64 KiB frames a busy stream carries).
 */
#include "seal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "error.h"

#define STMT_MAGIC "TSK1"
#define STMT_SIG_CONTEXT "troop-seal-key-v1"
#define REQ_AD_CONTEXT "troop-seal-v1"
#define GCM_KEY_CONTEXT "troop-seal-a256gcm-v1"
#define GCM2_KEY_CONTEXT "troop-seal-a256gcm-v2"
#define STMT_SKEW_S 60

static void put_be64(uint8_t *p, int64_t v)
{
	uint64_t u = (uint64_t)v;

	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)(u & 0xff);
		u >>= 8;
	}
}

static int64_t get_be64(const uint8_t *p)
{
	uint64_t u = 0;

	for (int i = 0; i < 8; i++)
		u = (u << 8) | p[i];
	return (int64_t)u;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int b64_decode_exact(uint8_t *out, size_t want, const char *s, size_t slen)
{
	size_t got = 0;

	if (sodium_base642bin(out, want, s, slen, NULL, &got, NULL,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || got != want)
		return -1;
	return 0;
}

/* ---- key statement ------------------------------------------------------------- */

int seal_keypair_generate(seal_keypair *kp, int64_t now, int64_t lifetime_s)
{
	if (lifetime_s <= 0)
		return troop_error_set(TROOP_EINVAL, "seal: a key's lifetime must be positive");
	crypto_box_keypair(kp->pk, kp->sk);
	kp->not_before = now;
	kp->not_after = now + lifetime_s;
	return 0;
}

/* What the node signs: context || node_pk || "TSK1" || pk || nb || na. */
static void stmt_message(uint8_t *msg, size_t *mlen, const uint8_t node_pk[TROOP_PK_LEN],
    const uint8_t *body)
{
	size_t n = 0;

	memcpy(msg, STMT_SIG_CONTEXT, sizeof(STMT_SIG_CONTEXT) - 1);
	n += sizeof(STMT_SIG_CONTEXT) - 1;
	memcpy(msg + n, node_pk, TROOP_PK_LEN);
	n += TROOP_PK_LEN;
	memcpy(msg + n, body, 4 + SEAL_PK_LEN + 16);
	n += 4 + SEAL_PK_LEN + 16;
	*mlen = n;
}

int seal_statement_make(char *out, size_t len, const troop_identity *node,
    const seal_keypair *kp)
{
	uint8_t bin[SEAL_STMT_BIN_LEN];
	uint8_t msg[sizeof(STMT_SIG_CONTEXT) + TROOP_PK_LEN + sizeof(bin)];
	size_t mlen;

	if (len < SEAL_STMT_MAX || kp->not_after <= kp->not_before)
		return troop_error_set(TROOP_EINVAL, "seal: statement buffer or validity");
	memcpy(bin, STMT_MAGIC, 4);
	memcpy(bin + 4, kp->pk, SEAL_PK_LEN);
	put_be64(bin + 4 + SEAL_PK_LEN, kp->not_before);
	put_be64(bin + 4 + SEAL_PK_LEN + 8, kp->not_after);
	stmt_message(msg, &mlen, node->pk, bin);
	crypto_sign_detached(bin + 4 + SEAL_PK_LEN + 16, NULL, msg, mlen, node->sk);
	sodium_bin2base64(out, len, bin, sizeof(bin), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return 0;
}

int seal_statement_verify(uint8_t pk[SEAL_PK_LEN], int64_t *not_after, const char *stmt,
    const char *node_id, int64_t now)
{
	uint8_t bin[SEAL_STMT_BIN_LEN], node_pk[TROOP_PK_LEN];
	uint8_t msg[sizeof(STMT_SIG_CONTEXT) + TROOP_PK_LEN + sizeof(bin)];
	size_t mlen, slen = stmt ? strnlen(stmt, SEAL_STMT_MAX) : 0;
	int64_t nb, na;

	if (slen == 0 || slen >= SEAL_STMT_MAX || b64_decode_exact(bin, sizeof(bin), stmt, slen) ||
	    memcmp(bin, STMT_MAGIC, 4) != 0)
		return troop_error_set(TROOP_EINVAL, "seal: the node's key statement is malformed");
	if (!node_id || account_id_decode(node_pk, node_id) != 0)
		return troop_error_set(TROOP_EINVAL, "seal: not a node id");
	stmt_message(msg, &mlen, node_pk, bin);
	if (crypto_sign_verify_detached(bin + 4 + SEAL_PK_LEN + 16, msg, mlen, node_pk) != 0)
		return troop_error_set(TROOP_EAUTH, "the sealing key offered for node %.8s is not "
		    "signed by that node: someone between you and it substituted a key", node_id);
	nb = get_be64(bin + 4 + SEAL_PK_LEN);
	na = get_be64(bin + 4 + SEAL_PK_LEN + 8);
	if (na <= nb || now < nb - STMT_SKEW_S || now > na + STMT_SKEW_S)
		return troop_error_set(TROOP_EGONE, "the sealing key of node %.8s is not valid now",
		    node_id);
	memcpy(pk, bin + 4, SEAL_PK_LEN);
	if (not_after)
		*not_after = na;
	return 0;
}

/* ---- request ---------------------------------------------------------------------- */

int seal_client_begin(seal_job *j, const uint8_t seal_pk[SEAL_PK_LEN])
{
	return seal_client_begin_seed(j, seal_pk, NULL);
}

int seal_client_begin_seed(seal_job *j, const uint8_t seal_pk[SEAL_PK_LEN],
    const uint8_t seed[32])
{
	uint8_t esk[SEAL_SK_LEN];
	int rc = 0;

	if (seed)
		crypto_kx_seed_keypair(j->epk, esk, seed);
	else
		crypto_kx_keypair(j->epk, esk);
	memcpy(j->seal_pk, seal_pk, SEAL_PK_LEN);
	j->reply = SEAL_REPLY_GCM2;
	j->jti[0] = '\0';
	/* client rx = response key, client tx = request key */
	if (crypto_kx_client_session_keys(j->resp_key, j->req_key, j->epk, esk, seal_pk) != 0)
		rc = troop_error_set(TROOP_EINVAL, "seal: the worker's sealing key is unusable");
	sodium_memzero(esk, sizeof(esk));
	return rc;
}

int seal_server_begin(seal_job *j, const seal_keypair *kp, const uint8_t epk[SEAL_PK_LEN])
{
	memcpy(j->epk, epk, SEAL_PK_LEN);
	memcpy(j->seal_pk, kp->pk, SEAL_PK_LEN);
	j->reply = SEAL_REPLY_SS;   /* the caller sets what the client offered */
	j->jti[0] = '\0';
	/* server rx = request key, server tx = response key */
	if (crypto_kx_server_session_keys(j->req_key, j->resp_key, kp->pk, kp->sk, epk) != 0)
		return troop_error_set(TROOP_EAUTH, "seal: the client's key is unusable");
	return 0;
}

void seal_job_wipe(seal_job *j)
{
	sodium_memzero(j, sizeof(*j));
}

int seal_header_format(char *out, size_t len, const seal_job *j)
{
	char e[SEAL_B64_PK_MAX], k[SEAL_B64_PK_MAX];
	int n;

	sodium_bin2base64(e, sizeof(e), j->epk, SEAL_PK_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2base64(k, sizeof(k), j->seal_pk, SEAL_PK_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	n = snprintf(out, len, "v1; epk=%s; key=%s%s", e, k,
	    j->reply == SEAL_REPLY_GCM2 ? "; reply=" SEAL_GCM2_NAME "," SEAL_GCM_NAME :
	    j->reply == SEAL_REPLY_GCM ? "; reply=" SEAL_GCM_NAME : "");
	return n > 0 && (size_t)n < len ? 0 : troop_error_set(TROOP_EINVAL, "seal: header buffer");
}

/* The value after "NAME=" in a "; "-separated parameter list, its length
 * in *len; NULL when the list has no such parameter. */
static const char *param_value(const char *v, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	const char *p = v;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == v || p[-1] == ' ' || p[-1] == ';') && p[nl] == '=') {
			*len = strcspn(p + nl + 1, "; \t");
			return p + nl + 1;
		}
		p += nl;
	}
	return NULL;
}

/* A key parameter (32 bytes, base64url) of the list into out. */
static int header_param(uint8_t out[SEAL_PK_LEN], const char *v, const char *name)
{
	size_t l = 0;
	const char *s = param_value(v, name, &l);

	return s ? b64_decode_exact(out, SEAL_PK_LEN, s, l) : -1;
}

/* The best reply suite that the parameter list `v` names in reply=<list>:
 * SEAL_REPLY_GCM2, SEAL_REPLY_GCM, else SEAL_REPLY_SS. */
static int reply_named(const char *v)
{
	size_t l = 0;
	const char *s = param_value(v, "reply", &l);
	int best = SEAL_REPLY_SS;

	for (size_t at = 0; s && at < l; ) {
		size_t w = strcspn(s + at, ",; \t");
		if (w > l - at)
			w = l - at;
		if (w == sizeof(SEAL_GCM2_NAME) - 1 && memcmp(s + at, SEAL_GCM2_NAME, w) == 0)
			best = SEAL_REPLY_GCM2;
		else if (w == sizeof(SEAL_GCM_NAME) - 1 && memcmp(s + at, SEAL_GCM_NAME, w) == 0 &&
		    best == SEAL_REPLY_SS)
			best = SEAL_REPLY_GCM;
		at += w + 1;
	}
	return best;
}

int seal_header_parse(uint8_t epk[SEAL_PK_LEN], uint8_t seal_pk[SEAL_PK_LEN], int *reply,
    const char *value)
{
	if (!value || strnlen(value, 256) >= 256 || strncmp(value, "v1", 2) != 0 ||
	    (value[2] != ';' && value[2] != '\0') ||
	    header_param(epk, value, "epk") != 0 || header_param(seal_pk, value, "key") != 0)
		return troop_error_set(TROOP_EINVAL, "the X-Troop-Seal header must be "
		    "'v1; epk=<key>; key=<key>' (base64url, 32 bytes each)");
	if (reply)
		*reply = reply_named(value);
	return 0;
}

int seal_reply_take(seal_job *j, const char *ct)
{
	const size_t n = sizeof(SEAL_CONTENT_TYPE) - 1;

	if (!ct || strncasecmp(ct, SEAL_CONTENT_TYPE, n) != 0 ||
	    (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t' && ct[n] != '\r'))
		return -1;
	j->reply = (uint8_t)reply_named(ct + n);
	return 0;
}

const char *seal_reply_content_type(const seal_job *j)
{
	return j->reply == SEAL_REPLY_GCM2 ? SEAL_CONTENT_TYPE_GCM2 :
	    j->reply == SEAL_REPLY_GCM ? SEAL_CONTENT_TYPE_GCM : SEAL_CONTENT_TYPE;
}

/* Record the job's ticket id (the a256gcm2 reply is bound to it). */
static int job_set_jti(seal_job *j, const char *jti)
{
	size_t n = jti ? strnlen(jti, SEAL_JTI_MAX + 1) : 0;

	if (n > SEAL_JTI_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "seal: a ticket id over %d characters",
		    SEAL_JTI_MAX);
	memcpy(j->jti, jti ? jti : "", n);
	j->jti[n] = '\0';
	return 0;
}

/* context NUL jti NUL node_id, into ad (REQ_AD_MAX bytes, on the caller's
 * stack: no allocation per job) */
#define REQ_AD_MAX 1024

static int request_ad(uint8_t *ad, size_t *adlen, const char *jti, const char *node_id)
{
	size_t cl = sizeof(REQ_AD_CONTEXT), jl, nl;

	*adlen = 0;
	if (!jti || !node_id || !jti[0] || !node_id[0])
		return troop_error_set(TROOP_EINVAL, "seal: a sealed request needs its ticket id "
		    "and node id");
	jl = strnlen(jti, REQ_AD_MAX) + 1;
	nl = strnlen(node_id, REQ_AD_MAX);
	if (cl + jl + nl > REQ_AD_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "seal: ticket id or node id too long");
	memcpy(ad, REQ_AD_CONTEXT, cl);
	memcpy(ad + cl, jti, jl);
	memcpy(ad + cl + jl, node_id, nl);
	*adlen = cl + jl + nl;
	return 0;
}

int seal_request_seal_nonce(dynbuf *out, seal_job *j, const char *jti,
    const char *node_id, const void *body, size_t len, const uint8_t nonce[24])
{
	uint8_t ad[REQ_AD_MAX];
	size_t adlen, at = dynbuf_len(out);
	unsigned long long clen = 0;
	void *ct;
	int rc;

	if ((rc = request_ad(ad, &adlen, jti, node_id)) != 0 || (rc = job_set_jti(j, jti)) != 0)
		return rc;
	if ((rc = dynbuf_add(out, nonce, 24)) != 0 ||
	    (rc = dynbuf_extend(out, len + crypto_aead_xchacha20poly1305_ietf_ABYTES, &ct)) != 0) {
		dynbuf_setlen(out, at);
		return rc;
	}
	crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, body, len, ad, adlen, NULL, nonce,
	    j->req_key);
	dynbuf_setlen(out, at + 24 + (size_t)clen);
	return 0;
}

int seal_request_seal(dynbuf *out, seal_job *j, const char *jti, const char *node_id,
    const void *body, size_t len)
{
	uint8_t nonce[24];

	randombytes_buf(nonce, sizeof(nonce));
	return seal_request_seal_nonce(out, j, jti, node_id, body, len, nonce);
}

int seal_request_open(dynbuf *out, seal_job *j, const char *jti, const char *node_id,
    const void *sealed, size_t len)
{
	const uint8_t *s = sealed;
	uint8_t ad[REQ_AD_MAX];
	size_t at = dynbuf_len(out), plen, adlen;
	unsigned long long mlen = 0;
	void *pt = NULL;
	int rc;

	if (len < SEAL_REQUEST_OVERHEAD)
		return troop_error_set(TROOP_EINVAL, "the sealed request is shorter than its "
		    "nonce and tag");
	if ((rc = request_ad(ad, &adlen, jti, node_id)) != 0 || (rc = job_set_jti(j, jti)) != 0)
		return rc;
	plen = len - SEAL_REQUEST_OVERHEAD;
	if (plen && (rc = dynbuf_extend(out, plen, &pt)) != 0)
		return rc;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &mlen, NULL, s + 24, len - 24, ad,
	    adlen, s, j->req_key) != 0) {
		if (plen)
			sodium_memzero(pt, plen);
		dynbuf_setlen(out, at);
		return troop_error_set(TROOP_EAUTH, "the sealed request does not open with this "
		    "job's key: altered, or sealed for another ticket or node");
	}
	dynbuf_setlen(out, at + (size_t)mlen);
	return 0;
}

/* ---- response stream -------------------------------------------------------------- */

/*
 * a256gcm: the stream's header is a random 16-byte salt; the stream key is
 * BLAKE2b-256(key = response key, "troop-seal-a256gcm-v1" || salt); frame
 * i (from 0) is AES-256-GCM under it with nonce 00000000 || i (uint64 BE)
 * and additional data the frame's own 4-byte length field, whose top bit
 * marks the final frame.  A frame moved, dropped, replayed or unmarked as
 * final fails its tag; a stream without a final frame is cut short.
 *
 * a256gcm2: the same frames; the stream key is BLAKE2b-256(key = response
 * key, "troop-seal-a256gcm-v2" || salt || jti), so a reply opens only for
 * the ticket it answers, even where several jobs share one job key.
 */

static bool suite_gcm(int suite)
{
	return suite == SEAL_REPLY_GCM || suite == SEAL_REPLY_GCM2;
}

static const EVP_CIPHER *gcm_cipher;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;

static void gcm_fetch(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	/* fetched once: EVP_aes_256_gcm() would look it up again per stream */
	gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
#endif
	if (!gcm_cipher)
		gcm_cipher = EVP_aes_256_gcm();
}

/* Key s for suite `suite`: the salt (a256gcm, a256gcm2) or the header
 * (secretstream) in hdr, the ticket id `jti` (a256gcm2); `encrypt` for
 * the writer. */
static int stream_start(seal_stream *s, int suite, const uint8_t *hdr,
    const uint8_t key[SEAL_KEY_LEN], const char *jti, bool encrypt)
{
	_Static_assert(sizeof(GCM_KEY_CONTEXT) == sizeof(GCM2_KEY_CONTEXT), "contexts");
	uint8_t msg[sizeof(GCM_KEY_CONTEXT) - 1 + SEAL_GCM_SALT_LEN + SEAL_JTI_MAX], k[32];
	const size_t cl = sizeof(GCM_KEY_CONTEXT) - 1;
	size_t ml = cl + SEAL_GCM_SALT_LEN;
	int ok;

	s->suite = suite;
	s->counter = 0;
	s->gcm = NULL;
	if (!suite_gcm(suite))
		return 0;
	pthread_once(&gcm_once, gcm_fetch);
	memcpy(msg, suite == SEAL_REPLY_GCM2 ? GCM2_KEY_CONTEXT : GCM_KEY_CONTEXT, cl);
	memcpy(msg + cl, hdr, SEAL_GCM_SALT_LEN);
	if (suite == SEAL_REPLY_GCM2) {
		size_t jl = strnlen(jti, SEAL_JTI_MAX + 1);
		if (jl == 0 || jl > SEAL_JTI_MAX)
			return troop_error_set(TROOP_EINVAL, "seal: an a256gcm2 stream needs its "
			    "ticket id");
		memcpy(msg + ml, jti, jl);
		ml += jl;
	}
	crypto_generichash(k, sizeof(k), msg, ml, key, SEAL_KEY_LEN);
	if (!(s->gcm = EVP_CIPHER_CTX_new()))
		return troop_error_set(TROOP_ENOMEM, "seal: out of memory");
	ok = encrypt ? EVP_EncryptInit_ex(s->gcm, gcm_cipher, NULL, k, NULL) :
	    EVP_DecryptInit_ex(s->gcm, gcm_cipher, NULL, k, NULL);
	sodium_memzero(k, sizeof(k));
	if (ok != 1) {
		EVP_CIPHER_CTX_free(s->gcm);
		s->gcm = NULL;
		return troop_error_set(TROOP_ERR, "seal: AES-256-GCM would not start");
	}
	return 0;
}

static void stream_free(seal_stream *s)
{
	if (s->gcm)
		EVP_CIPHER_CTX_free(s->gcm);   /* clears its key schedule */
	sodium_memzero(s, sizeof(*s));
}

static void gcm_nonce(uint8_t nonce[12], uint64_t counter)
{
	memset(nonce, 0, 4);
	put_be64(nonce + 4, (int64_t)counter);
}

/* Seal len bytes into ct (len + tag); `lenfield` is the frame's length
 * field, the additional data. */
static int gcm_seal(seal_stream *s, uint8_t *ct, const uint8_t lenfield[4], const void *data,
    size_t len)
{
	uint8_t nonce[12];
	int ol = 0, fl = 0;

	gcm_nonce(nonce, s->counter);
	if (EVP_EncryptInit_ex(s->gcm, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(s->gcm, NULL, &ol, lenfield, 4) != 1 ||
	    (len && EVP_EncryptUpdate(s->gcm, ct, &ol, data, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(s->gcm, ct + len, &fl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->gcm, EVP_CTRL_AEAD_GET_TAG, SEAL_GCM_TAG_LEN,
	    ct + len) != 1)
		return troop_error_set(TROOP_ERR, "seal: AES-256-GCM failed");
	s->counter++;
	return 0;
}

/* Open frame ct (clen bytes, tag included) into m; 0 or -1 (does not open). */
static int gcm_open(seal_stream *s, uint8_t *m, const uint8_t lenfield[4], const uint8_t *ct,
    size_t clen)
{
	size_t len = clen - SEAL_GCM_TAG_LEN;
	uint8_t nonce[12], tag[SEAL_GCM_TAG_LEN];
	int ol = 0;

	memcpy(tag, ct + len, sizeof(tag));
	gcm_nonce(nonce, s->counter);
	if (EVP_DecryptInit_ex(s->gcm, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(s->gcm, NULL, &ol, lenfield, 4) != 1 ||
	    (len && EVP_DecryptUpdate(s->gcm, m, &ol, ct, (int)len) != 1) ||
	    EVP_CIPHER_CTX_ctrl(s->gcm, EVP_CTRL_AEAD_SET_TAG, SEAL_GCM_TAG_LEN, tag) != 1 ||
	    EVP_DecryptFinal_ex(s->gcm, m + len, &ol) != 1)
		return -1;
	s->counter++;
	return 0;
}

static size_t suite_abytes(int suite)
{
	return suite_gcm(suite) ? SEAL_GCM_TAG_LEN : crypto_secretstream_xchacha20poly1305_ABYTES;
}

static size_t suite_header_len(int suite)
{
	return suite_gcm(suite) ? SEAL_GCM_SALT_LEN : SEAL_STREAM_HEADER_LEN;
}

/* The suite a job's reply uses (an unknown value: secretstream). */
static int job_suite(const seal_job *j)
{
	return suite_gcm(j->reply) ? j->reply : SEAL_REPLY_SS;
}

int seal_writer_begin_salt(seal_writer *w, dynbuf *out, const seal_job *j,
    const uint8_t salt[SEAL_GCM_SALT_LEN])
{
	uint8_t header[SEAL_STREAM_HEADER_LEN];
	int suite = job_suite(j);
	int rc;

	memset(w, 0, sizeof(*w));
	if (suite_gcm(suite)) {
		memcpy(header, salt, SEAL_GCM_SALT_LEN);
		rc = stream_start(&w->s, suite, header, j->resp_key, j->jti, true);
	} else {
		rc = stream_start(&w->s, suite, NULL, j->resp_key, NULL, true);
		crypto_secretstream_xchacha20poly1305_init_push(&w->s.st, header, j->resp_key);
	}
	if (rc == 0)
		rc = dynbuf_add(out, header, suite_header_len(suite));
	if (rc == 0)
		w->started = true;
	else
		stream_free(&w->s);
	return rc;
}

int seal_writer_begin(seal_writer *w, dynbuf *out, const seal_job *j)
{
	uint8_t salt[SEAL_GCM_SALT_LEN];

	randombytes_buf(salt, sizeof(salt));
	return seal_writer_begin_salt(w, out, j, salt);
}

void seal_writer_free(seal_writer *w)
{
	stream_free(&w->s);
	w->started = w->finished = false;
}

int seal_writer_push(seal_writer *w, dynbuf *out, const void *data, size_t len, bool final)
{
	size_t ab = suite_abytes(w->s.suite), clen = len + ab, at = dynbuf_len(out);
	uint8_t *frame;
	void *f;
	int rc;

	if (!w->started || w->finished)
		return troop_error_set(TROOP_EINVAL, "seal: the stream is not open");
	if (len > SEAL_FRAME_MAX - ab)
		return troop_error_set(TROOP_ETOOLARGE, "seal: a chunk over %u bytes",
		    SEAL_FRAME_MAX);
	if ((rc = dynbuf_extend(out, 4 + clen, &f)) != 0)
		return rc;
	frame = f;
	if (suite_gcm(w->s.suite)) {
		put_be32(frame, (uint32_t)clen | (final ? SEAL_GCM_FINAL : 0));
		if ((rc = gcm_seal(&w->s, frame + 4, frame, data, len)) != 0) {
			dynbuf_setlen(out, at);
			return rc;
		}
	} else {
		put_be32(frame, (uint32_t)clen);
		crypto_secretstream_xchacha20poly1305_push(&w->s.st, frame + 4, NULL, data, len,
		    NULL, 0, final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL :
		    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	}
	if (final)
		w->finished = true;
	return 0;
}

void seal_reader_init(seal_reader *r, const seal_job *j, seal_chunk_fn on_chunk, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->s.suite = job_suite(j);
	memcpy(r->key, j->resp_key, SEAL_KEY_LEN);
	memcpy(r->jti, j->jti, sizeof(r->jti));
	dynbuf_init(&r->in, SEAL_FRAME_MAX + 8);
	dynbuf_init(&r->plain, SEAL_FRAME_MAX);
	r->on_chunk = on_chunk;
	r->arg = arg;
}

void seal_reader_init_sink(seal_reader *r, const seal_job *j, dynbuf *sink)
{
	seal_reader_init(r, j, NULL, NULL);
	r->sink = sink;
}

static int reader_fail(seal_reader *r, int rc)
{
	r->failed = true;
	return rc;
}

/* Open one whole frame (its 4-byte length field at lf, fl bytes after it)
 * into the sink, or into the scratch buffer for on_chunk. */
static int reader_open(seal_reader *r, const uint8_t *lf, size_t fl)
{
	const uint8_t *frame = lf + 4;
	size_t ml = fl - suite_abytes(r->s.suite);
	dynbuf *to = r->sink ? r->sink : &r->plain;
	size_t at = dynbuf_len(to);
	unsigned long long got = 0;
	unsigned char tag = 0;
	bool final;
	void *m = NULL;
	int rc, bad;

	if (!r->sink)
		dynbuf_reset(to);
	if (ml && (rc = dynbuf_extend(to, ml, &m)) != 0)
		return reader_fail(r, rc);
	if (suite_gcm(r->s.suite)) {
		bad = gcm_open(&r->s, m, lf, frame, fl);
		got = ml;
		final = (get_be32(lf) & SEAL_GCM_FINAL) != 0;
	} else {
		bad = crypto_secretstream_xchacha20poly1305_pull(&r->s.st, m, &got, &tag, frame,
		    fl, NULL, 0);
		final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
	}
	if (bad) {
		if (ml)
			sodium_memzero(m, ml);
		dynbuf_setlen(to, at);
		return reader_fail(r, troop_error_set(TROOP_EAUTH, "a sealed response chunk does "
		    "not open: altered, dropped, reordered or not this job's"));
	}
	dynbuf_setlen(to, at + (size_t)got);
	if (final)
		r->finished = true;
	if (r->sink)
		return 0;
	rc = got && r->on_chunk ? r->on_chunk(r->arg, m, (size_t)got) : 0;
	if (ml)
		sodium_memzero(m, ml);
	return rc ? reader_fail(r, rc) : 0;
}

/* The length of the frame at p (4 bytes), checked. */
static int frame_len(seal_reader *r, size_t *fl, const uint8_t *p)
{
	uint32_t v = get_be32(p);

	if (suite_gcm(r->s.suite))
		v &= ~SEAL_GCM_FINAL;
	if (v < suite_abytes(r->s.suite) || v > SEAL_FRAME_MAX)
		return reader_fail(r, troop_error_set(TROOP_EINVAL, "a sealed frame of %u bytes "
		    "(at most %u)", v, SEAL_FRAME_MAX));
	*fl = v;
	return 0;
}

int seal_reader_feed(seal_reader *r, const void *data, size_t len)
{
	const uint8_t *p = data;
	int rc;

	if (r->failed)
		return troop_error_set(TROOP_EAUTH, "seal: the response stream already failed");
	while (len > 0 || (r->in.len > 0 && !r->finished)) {
		size_t have = r->in.len, take, fl = 0;
		const uint8_t *b;

		if (r->finished)
			return reader_fail(r, troop_error_set(TROOP_EINVAL, "bytes after the end of "
			    "the sealed response"));
		/* the usual case: whole frames in what came, opened where they lie */
		if (r->started && have == 0 && len >= 4) {
			if ((rc = frame_len(r, &fl, p)) != 0)
				return rc;
			if (len >= 4 + fl) {
				if ((rc = reader_open(r, p, fl)) != 0)
					return rc;
				p += 4 + fl;
				len -= 4 + fl;
				continue;
			}
		}
		/* how much more is needed: the header, then frame length + frame */
		size_t need;
		if (!r->started) {
			need = suite_header_len(r->s.suite);
		} else if (have < 4) {
			need = 4;
		} else {
			if ((rc = frame_len(r, &fl, (const uint8_t *)r->in.buf)) != 0)
				return rc;
			need = 4 + fl;
		}
		if (have < need) {
			if (len == 0)
				return 0;
			take = need - have < len ? need - have : len;
			if ((rc = dynbuf_add(&r->in, p, take)) != 0)
				return reader_fail(r, rc);
			p += take;
			len -= take;
			if (r->in.len < need)
				continue;
		}
		b = (const uint8_t *)r->in.buf;
		if (!r->started) {
			rc = 0;
			if (suite_gcm(r->s.suite))
				rc = stream_start(&r->s, r->s.suite, b, r->key, r->jti, false);
			else if (crypto_secretstream_xchacha20poly1305_init_pull(&r->s.st, b,
			    r->key) != 0)
				rc = troop_error_set(TROOP_EAUTH, "the sealed response's header is "
				    "invalid");
			if (rc)
				return reader_fail(r, rc);
			r->started = true;
			dynbuf_setlen(&r->in, 0);
			continue;
		}
		if (need == 4)
			continue;   /* the length is in: go round for the frame */
		rc = reader_open(r, b, need - 4);
		dynbuf_setlen(&r->in, 0);
		if (rc)
			return rc;
	}
	return 0;
}

int seal_reader_finish(seal_reader *r)
{
	if (r->failed)
		return troop_error_set(TROOP_EAUTH, "the sealed response failed to open");
	if (!r->finished)
		return troop_error_set(TROOP_EUPSTREAM, "the sealed response was cut short (no "
		    "final chunk)");
	return 0;
}

void seal_reader_free(seal_reader *r)
{
	sodium_memzero(r->key, sizeof(r->key));
	sodium_memzero(r->jti, sizeof(r->jti));
	stream_free(&r->s);
	dynbuf_free(&r->in);
	dynbuf_free(&r->plain);
}
