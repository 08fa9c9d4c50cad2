/*
 * sealed.c - opening sealed requests and sealing replies on the worker
 * (sealed.h).
 */
#include "sealed.h"

#include <string.h>

#include <sodium.h>

#include "error.h"

int sealed_request_open(dynbuf *plain, seal_job *sj, seal_keys *keys, const char *header,
    const char *jti, const char *node_id, const void *body, size_t len, int64_t now)
{
	uint8_t epk[SEAL_PK_LEN], spk[SEAL_PK_LEN];
	seal_keypair kp;
	int rc, reply = SEAL_REPLY_SS;

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
	rc = seal_server_begin(sj, &kp, epk);
	sj->reply = (uint8_t)reply;   /* the client's offer taken: a256gcm if it can */
	sodium_memzero(&kp, sizeof(kp));
	if (rc)
		return troop_error_set(TROOP_EINVAL, "the request's ephemeral key is unusable");
	rc = seal_request_open(plain, sj, jti, node_id, body, len);
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
