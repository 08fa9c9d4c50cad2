/*
 * sealed.c - opening sealed requests and sealing replies on the worker
 * (sealed.h).
 */
#include "sealed.h"

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "error.h"

/*
 * The job keys of clients that keep one ephemeral key for many jobs (they
 * offer a256gcm2, whose replies are bound to each ticket): the X25519
 * agreement, 37 us here and the largest part of what sealing adds to a
 * request's first byte on this side, runs once per client key instead of
 * once per job.  Per thread (each proxy loop has its own), a fixed number
 * of entries, the oldest replaced; an entry lives no longer than a client
 * keeps its key, and only a request under a valid ticket and a current
 * sealing key gets here.  The entries hold derived keys: wiped when
 * replaced.
 */
#define KX_CACHE 64

static __thread struct kx_entry {
	uint8_t epk[SEAL_PK_LEN], spk[SEAL_PK_LEN];
	uint8_t req_key[SEAL_KEY_LEN], resp_key[SEAL_KEY_LEN];
	int64_t at;
} kx_cache[KX_CACHE];
static __thread unsigned kx_next;

static bool kx_cached(seal_job *sj, const uint8_t epk[SEAL_PK_LEN],
    const uint8_t spk[SEAL_PK_LEN], int64_t now)
{
	for (int i = 0; i < KX_CACHE; i++) {
		struct kx_entry *e = &kx_cache[i];
		if (!e->at)
			continue;
		if (now - e->at > SEAL_KEY_REUSE_S || now < e->at) {
			sodium_memzero(e, sizeof(*e));   /* past its time: wiped */
			continue;
		}
		if (memcmp(e->epk, epk, SEAL_PK_LEN) == 0 && memcmp(e->spk, spk, SEAL_PK_LEN) == 0) {
			memcpy(sj->epk, epk, SEAL_PK_LEN);
			memcpy(sj->seal_pk, spk, SEAL_PK_LEN);
			memcpy(sj->req_key, e->req_key, SEAL_KEY_LEN);
			memcpy(sj->resp_key, e->resp_key, SEAL_KEY_LEN);
			return true;
		}
	}
	return false;
}

static void kx_remember(const seal_job *sj, int64_t now)
{
	struct kx_entry *e = &kx_cache[kx_next++ % KX_CACHE];

	sodium_memzero(e, sizeof(*e));
	memcpy(e->epk, sj->epk, SEAL_PK_LEN);
	memcpy(e->spk, sj->seal_pk, SEAL_PK_LEN);
	memcpy(e->req_key, sj->req_key, SEAL_KEY_LEN);
	memcpy(e->resp_key, sj->resp_key, SEAL_KEY_LEN);
	e->at = now;
}

int sealed_request_open(dynbuf *plain, seal_job *sj, seal_keys *keys, const char *header,
    const char *jti, const char *node_id, const void *body, size_t len, int64_t now)
{
	uint8_t epk[SEAL_PK_LEN], spk[SEAL_PK_LEN];
	seal_keypair kp;
	int rc, reply = SEAL_REPLY_SS;
	bool hit;

	memset(sj, 0, sizeof(*sj));
	if (!keys)
		return troop_error_set(TROOP_EINVAL, "this node does not accept sealed requests "
		    "(it advertises no sealing key)");
	if (seal_header_parse(epk, spk, &reply, header) != 0)
		return troop_error_set(TROOP_EINVAL, "malformed " SEAL_HEADER " header: expected "
		    "\"v1; epk=<base64url>; key=<base64url>\"");
	if (seal_keys_find(keys, &kp, spk, now) != 0)
		return troop_error_set(TROOP_EINVAL, "the request is sealed to a key this node "
		    "does not hold (rotated away, or another node's): authorize again");
	/* a client that offers a256gcm2 may send this key again */
	hit = reply == SEAL_REPLY_GCM2 && kx_cached(sj, epk, spk, now);
	rc = hit ? 0 : seal_server_begin(sj, &kp, epk);
	sodium_memzero(&kp, sizeof(kp));
	if (rc)
		return troop_error_set(TROOP_EINVAL, "the request's ephemeral key is unusable");
	sj->reply = (uint8_t)reply;   /* the client's offer taken: the best it reads */
	rc = seal_request_open(plain, sj, jti, node_id, body, len);
	if (rc == 0 && reply == SEAL_REPLY_GCM2 && !hit)
		kx_remember(sj, now);
	if (rc == TROOP_EAUTH || rc == TROOP_EINVAL)
		rc = troop_error_set(TROOP_EINVAL, "the sealed body does not open: altered, cut, "
		    "or sealed for another ticket or node");
	if (rc)
		seal_job_wipe(sj);
	return rc;
}

int sealed_reply_init(sealed_reply *s, const seal_job *sj)
{
	memset(s, 0, sizeof(*s));
	s->keys = *sj;
	/* a chunk's frames plus the stream header */
	dynbuf_init(&s->out, 64u * 1024 * 1024);
	return 0;
}

int sealed_reply_push(sealed_reply *s, const char *data, size_t len, bool end,
    const char **out, size_t *out_len)
{
	int rc = 0;

	dynbuf_reset(&s->out);
	*out = NULL;
	*out_len = 0;
	if (s->w.finished)
		return len ? troop_error_set(TROOP_EINVAL, "sealed reply: bytes after its end") : 0;
	if ((len > 0 || end) && !s->w.started)
		rc = seal_writer_begin(&s->w, &s->out, &s->keys);
	while (rc == 0 && len > 0) {
		size_t n = len < SEALED_CHUNK_MAX ? len : SEALED_CHUNK_MAX;

		rc = seal_writer_push(&s->w, &s->out, data, n, end && n == len);
		data += n;
		len -= n;
	}
	if (rc == 0 && end && !s->w.finished)
		rc = seal_writer_push(&s->w, &s->out, NULL, 0, true);
	if (rc)
		return rc;
	*out = dynbuf_ptr(&s->out);
	*out_len = dynbuf_len(&s->out);
	return 0;
}

void sealed_reply_free(sealed_reply *s)
{
	seal_writer_free(&s->w);
	dynbuf_free(&s->out);
	sodium_memzero(s, sizeof(*s));
}
