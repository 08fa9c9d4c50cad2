/*
 * auth.c - signed-request checking and counted replies for the
 * coordinator's handlers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "httpsig.h"
#include "json.h"
#include "log.h"

static void count_status(coord *c, int status)
{
	if (status < 400)
		METRIC_ADD(&c->metrics, req_2xx, 1);
	else if (status < 500)
		METRIC_ADD(&c->metrics, req_4xx, 1);
	else
		METRIC_ADD(&c->metrics, req_5xx, 1);
}

void coord_reply_json(http_req *r, int status, json_t *body)
{
	count_status(coord_thread_of(r)->c, status);
	http_reply_json(r, status, body);
}

void coord_reply_text(http_req *r, int status, const char *content_type, const char *body,
    size_t len)
{
	count_status(coord_thread_of(r)->c, status);
	http_reply(r, status, content_type, body, len);
}

void coord_reply_error(http_req *r, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	count_status(coord_thread_of(r)->c, troop_err_status(err));
	http_reply_error(r, err, "%s", msg);
}

/* Messages from a backend ("registry: node_id is required") describe our
 * internals, not the client's request: they are logged, and the client
 * gets a plain sentence for the error's class instead. */
static const char *const internal_prefixes[] = { "registry: ", "ledger: ", "redis: ",
	"sqlite: ", "postgres: ", NULL };

static const char *client_message(int err)
{
	switch (err) {
	case TROOP_EINVAL:
	case TROOP_ETOOLARGE:
		return "the request has a field the coordinator cannot use; see docs/PROTOCOL.md";
	case TROOP_ENOTFOUND:
		return "no such object";
	case TROOP_EUNAVAIL:
		return "a coordinator backend is unavailable; try again shortly";
	case TROOP_ERATE:
		return "too many requests; try again shortly";
	default:
		return "internal error in the coordinator";
	}
}

void coord_reply_last_error(http_req *r, int err)
{
	const char *msg = troop_error_msg();

	for (size_t i = 0; internal_prefixes[i]; i++)
		if (strncmp(msg, internal_prefixes[i], strlen(internal_prefixes[i])) == 0) {
			log_warn("internal_error", "path=%s code=%s error=\"%s\"", http_req_path(r),
			    troop_err_code(err), msg);
			coord_reply_error(r, err, "%s", client_message(err));
			return;
		}
	coord_reply_error(r, err, "%s", msg[0] ? msg : troop_err_code(err));
}

/* The nonce store, told the request's source address: a nonce counts
 * against its signer's and its address's quotas (registry.h).  Loopback
 * is this machine (benchmarks and tests drive many identities through
 * it): only the per-signer quota applies there. */
struct nonce_ctx {
	registry *reg;
	const char *addr;
};

static int nonce_from(void *arg, const char *keyid, const char *nonce, int64_t now)
{
	struct nonce_ctx *n = arg;

	return registry_nonce_check_from(n->reg, keyid, nonce, n->addr, now);
}

int coord_authenticate(http_req *r, char account[TROOP_ID_LEN + 1])
{
	coord *c = coord_thread_of(r)->c;
	size_t len;
	const char *body = http_req_body(r, &len);
	const char *peer = http_req_peer(r);
	struct nonce_ctx nc = { c->reg, peer };
	int rc;

	if (peer && (strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::1") == 0))
		nc.addr = NULL;
	rc = httpsig_verify(account, http_req_method(r), http_req_path(r),
	    http_req_query(r), body, len, http_req_header(r, "Content-Digest"),
	    http_req_header(r, "Signature-Input"), http_req_header(r, "Signature"),
	    (int64_t)time(NULL), nonce_from, &nc);
	if (rc == 0) {
		http_req_set_account(r, account);
		return 0;
	}
	if (rc == TROOP_EAUTH) {
		METRIC_ADD(&c->metrics, bad_signatures, 1);
		coord_reply_last_error(r, TROOP_EAUTH);
	} else {
		/* the nonce store failed or is full: not the caller's fault */
		coord_reply_last_error(r, rc);
	}
	return rc;
}

int coord_anon_allowed(http_req *r)
{
	coord *c = coord_thread_of(r)->c;
	const char *peer = http_req_peer(r);
	char key[96];
	int rc;

	if (c->anon_rate <= 0 || !peer || !peer[0])
		return 0;
	snprintf(key, sizeof(key), "anon:%s", peer);
	rc = registry_rate_check(c->reg, key, 1, c->anon_rate, (int64_t)time(NULL));
	if (rc == TROOP_ERATE) {
		http_reply_header(r, "Retry-After", "1");
		coord_reply_error(r, TROOP_ERATE, "more than %lld anonymous requests a second from "
		    "%s; slow down (Retry-After: 1)", (long long)c->anon_rate, peer);
		return rc;
	}
	/* the registry failing must not close the public endpoints */
	return 0;
}
