/*
 * ledger.c - the ledger front end: picks a backend from the URL, checks
 * every argument once (so all backends refuse the same inputs with the
 * same messages), then dispatches through struct ledger_ops.  Also the
 * helpers shared by backends: the charge formula, reputation, status
 * names.  See ledger.h for the contract.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ledger.h"

/* ---- argument checks ----------------------------------------------------- */

/* A required string: non-NULL, non-empty, at most `max` bytes. */
static int check_str(const char *what, const char *s, size_t max)
{
	if (s == NULL || s[0] == '\0')
		return troop_error_set(TROOP_EINVAL, "ledger: %s is required", what);
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return troop_error_set(TROOP_ETOOLARGE, "ledger: %s is longer than %zu bytes",
		    what, max);
	return 0;
}

/* An optional string: NULL or "" are fine. */
static int check_opt_str(const char *what, const char *s, size_t max)
{
	if (s == NULL)
		return 0;
	if (strnlen(s, max + 1) > max)
		return troop_error_set(TROOP_ETOOLARGE, "ledger: %s is longer than %zu bytes",
		    what, max);
	return 0;
}

static int check_range(const char *what, int64_t v, int64_t min, int64_t max)
{
	if (v < min || v > max)
		return troop_error_set(TROOP_EINVAL,
		    "ledger: %s must be between %lld and %lld, got %lld", what,
		    (long long)min, (long long)max, (long long)v);
	return 0;
}

static int check_multiplier(double m)
{
	if (!isfinite(m) || m <= 0.0 || m > LEDGER_MULTIPLIER_MAX)
		return troop_error_set(TROOP_EINVAL,
		    "ledger: multiplier must be in (0, %g], got %g", LEDGER_MULTIPLIER_MAX, m);
	return 0;
}

static int check_conn(const ledger_conn *c)
{
	if (c == NULL || c->ops == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no connection");
	return 0;
}

#define TRY(expr) do { int rc_ = (expr); if (rc_ != 0) return rc_; } while (0)

/* ---- opening -------------------------------------------------------------- */

struct backend {
	const char *prefix;            /* URL prefix, removed before open */
	const struct ledger_ops *ops;  /* NULL: known scheme, not built in */
};

#ifdef TROOP_HAVE_PQ
extern const struct ledger_ops ledger_pg_ops;  /* ledger_pg.c */
#define PG_OPS (&ledger_pg_ops)
#else
#define PG_OPS NULL
#endif

/* Longer prefixes first: "sqlite://" before "sqlite:". */
static const struct backend backends[] = {
	{ "sqlite://", &ledger_sqlite_ops },
	{ "sqlite:", &ledger_sqlite_ops },
	{ "postgresql://", PG_OPS },
	{ "postgres://", PG_OPS },
};

int ledger_open(ledger **out, const char *url)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output handle");
	*out = NULL;
	TRY(check_str("database URL", url, LEDGER_URL_MAX));

	const struct ledger_ops *ops = NULL;
	const char *target = NULL;
	for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
		size_t n = strlen(backends[i].prefix);
		if (strncmp(url, backends[i].prefix, n) != 0)
			continue;
		if (backends[i].ops == NULL)
			return troop_error_set(TROOP_EINVAL,
			    "database URL: the %.*s backend is not built into this program",
			    (int)(n - 3), backends[i].prefix);
		ops = backends[i].ops;
		target = url + n;
		/* SQLAlchemy style: sqlite:///rel.db is relative, sqlite:////abs.db
		 * absolute; after "sqlite://" one more '/' separates the (empty)
		 * host from the path. */
		if (strcmp(backends[i].prefix, "sqlite://") == 0) {
			if (*target != '/')
				return troop_error_set(TROOP_EINVAL,
				    "database URL '%s': expected sqlite:///relative/path or "
				    "sqlite:////absolute/path", url);
			target++;
		}
		break;
	}
	if (ops == NULL) {
		if (strstr(url, "://") != NULL)
			return troop_error_set(TROOP_EINVAL,
			    "database URL '%s': unknown scheme (expected a file path, "
			    "sqlite:PATH or postgres://...)", url);
		ops = &ledger_sqlite_ops;
		target = url;
	}
	if (*target == '\0')
		return troop_error_set(TROOP_EINVAL, "database URL '%s' names no database", url);
	return ops->open(out, target);
}

void ledger_close(ledger *l)
{
	if (l != NULL && l->ops != NULL)
		l->ops->close(l);
}

const char *ledger_backend_name(const ledger *l)
{
	return (l != NULL && l->ops != NULL) ? l->ops->name : "none";
}

int ledger_conn_open(ledger_conn **out, ledger *l)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output handle");
	*out = NULL;
	if (l == NULL || l->ops == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: not open");
	return l->ops->conn_open(out, l);
}

void ledger_conn_close(ledger_conn *c)
{
	if (c != NULL && c->ops != NULL)
		c->ops->conn_close(c);
}

int ledger_schema_version(int *out, ledger_conn *c)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the schema version");
	return c->ops->schema_version(out, c);
}

/* ---- accounts ------------------------------------------------------------- */

int ledger_ensure_account(bool *created, ledger_conn *c, const char *account,
    int64_t starter_credits, int64_t now)
{
	bool dummy;
	TRY(check_conn(c));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("starter credits", starter_credits, 0, LEDGER_CREDITS_MAX));
	return c->ops->ensure_account(created ? created : &dummy, c, account,
	    starter_credits, now);
}

int ledger_balance_get(ledger_balance *out, ledger_conn *c, const char *account)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the balance");
	TRY(check_str("account", account, LEDGER_ID_MAX));
	return c->ops->balance_get(out, c, account);
}

int ledger_admin_grant(int64_t *tx_id, ledger_conn *c, const char *account,
    int64_t credits, const char *reason, const char *admin_id, int64_t now)
{
	int64_t dummy;
	TRY(check_conn(c));
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("credits", credits, 1, LEDGER_CREDITS_MAX));
	TRY(check_opt_str("reason", reason, LEDGER_NOTE_MAX));
	TRY(check_str("admin id", admin_id, LEDGER_ID_MAX));
	return c->ops->admin_grant(tx_id ? tx_id : &dummy, c, account, credits,
	    reason ? reason : "", admin_id, now);
}

/* ---- reservations and settlement -------------------------------------------- */

int ledger_reserve(int64_t *available, ledger_conn *c, const ledger_reserve_req *req)
{
	int64_t dummy;
	TRY(check_conn(c));
	if (req == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no reservation request");
	TRY(check_str("job id", req->job_id, LEDGER_ID_MAX));
	TRY(check_str("requester", req->requester, LEDGER_ID_MAX));
	TRY(check_str("node id", req->node_id, LEDGER_ID_MAX));
	TRY(check_str("worker account", req->worker, LEDGER_ID_MAX));
	TRY(check_str("model", req->model, LEDGER_MODEL_MAX));
	TRY(check_range("amount", req->amount, 1, LEDGER_CREDITS_MAX));
	TRY(check_range("max_seconds", req->max_seconds, 0, LEDGER_CREDITS_MAX));
	TRY(check_multiplier(req->multiplier));
	return c->ops->reserve(available ? available : &dummy, c, req);
}

int ledger_settle(ledger_settle_result *out, ledger_conn *c, const ledger_settle_req *req)
{
	TRY(check_conn(c));
	if (out == NULL || req == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no settlement request or output");
	TRY(check_str("job id", req->job_id, LEDGER_ID_MAX));
	TRY(check_str("signer node id", req->signer_node_id, LEDGER_ID_MAX));
	TRY(check_range("duration_ms", req->duration_ms, 0, INT64_MAX / 2));
	TRY(check_range("tokens_in", req->tokens_in, 0, INT64_MAX / 2));
	TRY(check_range("tokens_out", req->tokens_out, 0, INT64_MAX / 2));
	TRY(check_opt_str("outcome", req->outcome, LEDGER_OUTCOME_MAX));
	TRY(check_range("grace", req->grace_s, 0, INT64_MAX / 4));
	memset(out, 0, sizeof *out);
	return c->ops->settle(out, c, req);
}

int ledger_release_expired(int64_t *count, ledger_conn *c, int64_t now, int64_t grace_s)
{
	int64_t dummy;
	TRY(check_conn(c));
	TRY(check_range("grace", grace_s, 0, INT64_MAX / 4));
	if (count == NULL)
		count = &dummy;
	*count = 0;
	return c->ops->release_expired(count, c, now, grace_s);
}

int ledger_reservation_get(ledger_reservation *out, ledger_conn *c, const char *job_id)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the reservation");
	TRY(check_str("job id", job_id, LEDGER_ID_MAX));
	memset(out, 0, sizeof *out);
	return c->ops->reservation_get(out, c, job_id);
}

int64_t ledger_charge(int64_t duration_ms, double multiplier, int64_t reserved)
{
	if (reserved <= 0)
		return 0;
	if (duration_ms <= 0 || !isfinite(multiplier) || multiplier <= 0.0)
		return 0;
	if (multiplier > LEDGER_MULTIPLIER_MAX)
		multiplier = LEDGER_MULTIPLIER_MAX;
	/* Multiplier in millionths: 2.5 -> 2500000, exact for the values the
	 * proof of hardware produces to 6 decimals. */
	int64_t micro = llround(multiplier * 1e6);
	if (micro <= 0)
		micro = 1;
	/* ceil(duration_ms * micro / 1e9) without overflow: split duration. */
	const int64_t den = 1000000000;
	if (duration_ms > INT64_MAX / micro)
		return reserved;  /* astronomically long: the cap applies */
	int64_t prod = duration_ms * micro;
	int64_t charge = prod / den + (prod % den != 0);
	return charge < reserved ? charge : reserved;
}

/* ---- transaction log ------------------------------------------------------- */

int ledger_transactions(ledger_tx **out, size_t *n, int64_t *next, ledger_conn *c,
    const char *account, int limit, int64_t before_id)
{
	TRY(check_conn(c));
	if (out == NULL || n == NULL || next == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for transactions");
	*out = NULL;
	*n = 0;
	*next = 0;
	TRY(check_str("account", account, LEDGER_ID_MAX));
	TRY(check_range("limit", limit, 1, LEDGER_TX_LIMIT_MAX));
	TRY(check_range("before", before_id, 0, INT64_MAX));
	return c->ops->transactions(out, n, next, c, account, limit,
	    before_id == 0 ? INT64_MAX : before_id);
}

int ledger_totals_get(ledger_totals *out, ledger_conn *c)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for totals");
	memset(out, 0, sizeof *out);
	return c->ops->totals_get(out, c);
}

/* ---- nodes ------------------------------------------------------------------ */

int ledger_node_upsert(bool *created, ledger_conn *c, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	bool dummy;
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_str("owner", owner, LEDGER_ID_MAX));
	TRY(check_opt_str("node name", name, LEDGER_NAME_MAX));
	return c->ops->node_upsert(created ? created : &dummy, c, node_id, owner,
	    name ? name : "", now);
}

int ledger_node_get(ledger_node *out, ledger_conn *c, const char *node_id)
{
	TRY(check_conn(c));
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: no output for the node");
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	memset(out, 0, sizeof *out);
	return c->ops->node_get(out, c, node_id);
}

int ledger_node_touch(ledger_node *out, bool *created, ledger_conn *c, const char *node_id,
    const char *owner, const char *name, int64_t now)
{
	int rc;

	if (created)
		*created = false;
	TRY(check_str("owner", owner, LEDGER_ID_MAX));
	TRY(check_opt_str("node name", name, LEDGER_NAME_MAX));
	rc = ledger_node_get(out, c, node_id);
	if (rc != 0 && rc != TROOP_ENOTFOUND)
		return rc;
	/* the same test as the backends' upsert: nothing to write */
	if (rc == 0 && strcmp(out->owner, owner) == 0 && strcmp(out->name, name ? name : "") == 0 &&
	    now - out->last_seen < LEDGER_NODE_TOUCH_S && now >= out->last_seen)
		return 0;
	TRY(ledger_node_upsert(created, c, node_id, owner, name, now));
	return ledger_node_get(out, c, node_id);
}

int ledger_node_set_verification(ledger_conn *c, const char *node_id, double multiplier,
    bool verified, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("node id", node_id, LEDGER_ID_MAX));
	TRY(check_multiplier(multiplier));
	return c->ops->node_set_verification(c, node_id, multiplier, verified, now);
}

/* ---- key/value and audit -------------------------------------------------- */

int ledger_kv_get(char *buf, size_t cap, size_t *len, ledger_conn *c, const char *key)
{
	size_t dummy;
	TRY(check_conn(c));
	if (buf == NULL || cap == 0)
		return troop_error_set(TROOP_EINVAL, "ledger: no buffer for the value");
	buf[0] = '\0';
	TRY(check_str("key", key, LEDGER_KV_KEY_MAX));
	return c->ops->kv_get(buf, cap, len ? len : &dummy, c, key);
}

int ledger_kv_put_if_absent(bool *inserted, ledger_conn *c, const char *key,
    const char *value, int64_t now)
{
	bool dummy;
	TRY(check_conn(c));
	TRY(check_str("key", key, LEDGER_KV_KEY_MAX));
	if (value == NULL)
		return troop_error_set(TROOP_EINVAL, "ledger: value is required");
	TRY(check_opt_str("value", value, LEDGER_KV_VALUE_MAX));
	return c->ops->kv_put_if_absent(inserted ? inserted : &dummy, c, key, value, now);
}

int ledger_audit(ledger_conn *c, const char *actor, const char *action,
    const char *detail, int64_t now)
{
	TRY(check_conn(c));
	TRY(check_str("actor", actor, LEDGER_ID_MAX));
	TRY(check_str("action", action, LEDGER_ACTION_MAX));
	TRY(check_opt_str("detail", detail, LEDGER_DETAIL_MAX));
	return c->ops->audit(c, actor, action, detail ? detail : "", now);
}

/* ---- helpers for backends --------------------------------------------------- */

void ledger_copy_str(char *dst, size_t cap, const char *src)
{
	if (cap == 0)
		return;
	if (src == NULL)
		src = "";
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

double ledger_reputation(int64_t jobs_ok, int64_t jobs_failed)
{
	if (jobs_ok < 0)
		jobs_ok = 0;
	if (jobs_failed < 0)
		jobs_failed = 0;
	return ((double)jobs_ok + 1.0) / ((double)jobs_ok + (double)jobs_failed + 2.0);
}

static const char *const res_status_names[] = { "open", "settled", "released" };

const char *ledger_res_status_name(ledger_res_status s)
{
	if ((unsigned)s < sizeof res_status_names / sizeof res_status_names[0])
		return res_status_names[s];
	return "unknown";
}

int ledger_res_status_parse(ledger_res_status *out, const char *s)
{
	for (size_t i = 0; s != NULL && i < sizeof res_status_names / sizeof res_status_names[0]; i++) {
		if (strcmp(s, res_status_names[i]) == 0) {
			*out = (ledger_res_status)i;
			return 0;
		}
	}
	return troop_error_set(TROOP_EINVAL, "ledger: unknown reservation status '%s'",
	    s ? s : "(null)");
}

int ledger_settle_decide(ledger_settle_result *out, int64_t *charge, int64_t *refund,
    const ledger_settle_req *q, const ledger_reservation *res)
{
	if (res == NULL)
		return troop_error_set(TROOP_ENOTFOUND, "no reservation for job %s", q->job_id);
	/* checked first, also for settled jobs: only the job's node learns
	 * anything about it */
	if (strcmp(res->node_id, q->signer_node_id) != 0)
		return troop_error_set(TROOP_EFORBIDDEN, "receipt for job %s is not signed by "
		    "the node that was given the job", q->job_id);
	memset(out, 0, sizeof *out);
	ledger_copy_str(out->requester, sizeof out->requester, res->requester);
	ledger_copy_str(out->worker, sizeof out->worker, res->worker);
	ledger_copy_str(out->model, sizeof out->model, res->model);
	if (res->status == LEDGER_RES_SETTLED) {
		out->charged = res->charged;
		out->refunded = res->refunded;
		out->already = true;
		return 1;
	}
	if (res->status == LEDGER_RES_RELEASED)
		return troop_error_set(TROOP_EGONE, "reservation for job %s expired and was "
		    "released", q->job_id);
	if (res->expires_at < q->now - q->grace_s)
		return troop_error_set(TROOP_EGONE, "reservation for job %s expired at %lld",
		    q->job_id, (long long)res->expires_at);
	*charge = ledger_charge(q->duration_ms, res->multiplier, res->amount);
	*refund = res->amount - *charge;
	return 0;
}
