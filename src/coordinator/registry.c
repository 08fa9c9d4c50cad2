/*
 * registry.c - the registry front end: picks a backend from the URL,
 * checks every argument once (so all backends refuse the same inputs with
 * the same messages), fills in defaults, then dispatches through struct
 * registry_ops.  Also the record helpers (copy, clear, status names).
 * See registry.h for the contract.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "registry.h"

#define TRY(expr) do { int rc_ = (expr); if (rc_ != 0) return rc_; } while (0)

#ifdef TROOP_HAVE_HIREDIS
extern const struct registry_ops registry_redis_ops;  /* registry_redis.c */
#endif

/* ---- argument checks ----------------------------------------------------- */

static int check_str(const char *what, const char *s, size_t max)
{
	if (s == NULL || s[0] == '\0')
		return troop_error_set(TROOP_EINVAL, "registry: %s is required", what);
	if (strnlen(s, max + 1) > max)
		return troop_error_set(TROOP_ETOOLARGE, "registry: %s is longer than %zu bytes",
		    what, max);
	return 0;
}

/* A fixed-size field of a caller's struct: must be NUL-terminated inside
 * it; empty allowed unless `required`. */
static int check_field(const char *what, const char *field, size_t size, bool required)
{
	size_t n = strnlen(field, size);
	if (n == size)
		return troop_error_set(TROOP_ETOOLARGE, "registry: %s is longer than %zu bytes",
		    what, size - 1);
	if (required && n == 0)
		return troop_error_set(TROOP_EINVAL, "registry: %s is required", what);
	return 0;
}

static int check_reg(const registry *r)
{
	if (r == NULL || r->ops == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: not open");
	return 0;
}

static int check_ttl(const char *what, int64_t ttl)
{
	if (ttl < 1 || ttl > ((int64_t)1 << 40))
		return troop_error_set(TROOP_EINVAL, "registry: %s must be at least 1 second, "
		    "got %lld", what, (long long)ttl);
	return 0;
}

static int check_facts(const registry_facts *f)
{
	if (!(f->multiplier >= 0 && f->multiplier <= 1000) ||
	    !(f->reputation >= 0 && f->reputation <= 1) || f->verified_at < 0)
		return troop_error_set(TROOP_EINVAL, "registry: node facts out of range "
		    "(multiplier 0..1000, reputation 0..1, verified_at >= 0)");
	if (!(f->rep_availability >= 0 && f->rep_availability <= 1) ||
	    !(f->rep_reliability >= 0 && f->rep_reliability <= 1) ||
	    !(f->rep_speed >= 0 && f->rep_speed <= 1) ||
	    !(f->rep_audits >= 0 && f->rep_audits <= 1) ||
	    !(f->ttft_ms >= 0 && f->ttft_ms < 1e9) ||
	    !(f->tokens_per_s >= 0 && f->tokens_per_s < 1e9) || f->failovers < 0 ||
	    f->served_jobs < 0)
		return troop_error_set(TROOP_EINVAL, "registry: reputation facts out of range "
		    "(components 0..1, speeds and counts >= 0)");
	return 0;
}

static int check_node(const registry_node *n)
{
	TRY(check_facts(&n->facts));
	TRY(check_field("node name", n->name, sizeof n->name, false));
	TRY(check_field("node ip", n->ip, sizeof n->ip, true));
	TRY(check_field("encryption_public_key", n->encryption_public_key,
	    sizeof n->encryption_public_key, false));
	TRY(check_field("seal_key", n->seal_key, sizeof n->seal_key, false));
	TRY(check_field("owner", n->owner, sizeof n->owner, false));
	TRY(check_field("version", n->version, sizeof n->version, false));
	if (n->port < 1 || n->port > 65535)
		return troop_error_set(TROOP_EINVAL, "registry: port must be 1..65535, got %d",
		    n->port);
	if ((unsigned)n->status > NODE_OFFLINE)
		return troop_error_set(TROOP_EINVAL, "registry: unknown node status %d",
		    (int)n->status);
	if (n->active_jobs < 0 || n->max_jobs < 0)
		return troop_error_set(TROOP_EINVAL, "registry: active_jobs and max_jobs must "
		    "not be negative");
	if (n->n_models > REGISTRY_MODELS_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "registry: node lists %zu models, at "
		    "most %d", n->n_models, REGISTRY_MODELS_MAX);
	if (n->n_models > 0 && n->models == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: n_models is %zu but models is NULL",
		    n->n_models);
	for (size_t i = 0; i < n->n_models; i++) {
		const registry_model *m = &n->models[i];
		TRY(check_field("model name", m->name, sizeof m->name, true));
		TRY(check_field("model content_hash", m->content_hash, sizeof m->content_hash,
		    false));
		TRY(check_field("model engine", m->engine, sizeof m->engine, false));
		if (m->size_bytes < 0)
			return troop_error_set(TROOP_EINVAL, "registry: model %s has a negative size",
			    m->name);
		if (m->context_length < 0 || m->context_length > REGISTRY_CONTEXT_MAX ||
		    m->caps > REGISTRY_BITS_MAX || m->caps_known > REGISTRY_BITS_MAX ||
		    m->endpoints > REGISTRY_BITS_MAX)
			return troop_error_set(TROOP_EINVAL, "registry: model %s has a context "
			    "length or capability bits out of range", m->name);
	}
	if (n->extra_json != NULL && strnlen(n->extra_json, REGISTRY_EXTRA_MAX + 1) >
	    REGISTRY_EXTRA_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "registry: node JSON is longer than %d "
		    "bytes", REGISTRY_EXTRA_MAX);
	return 0;
}

/* ---- lifetime ------------------------------------------------------------- */

/* A quarter of this machine's physical memory over `bytes`, at least `min`. */
static size_t quarter_of_memory(size_t bytes, size_t min)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	size_t n = 0;
	if (pages > 0 && page > 0)
		n = (size_t)pages / 4 * (size_t)page / bytes;
	return n > min ? n : min;
}

size_t registry_default_max_nodes(void)
{
	return quarter_of_memory(REGISTRY_NODE_BYTES, REGISTRY_MIN_DEFAULT_NODES);
}

size_t registry_default_max_kv(size_t max_nodes)
{
	size_t n = max_nodes <= SIZE_MAX / REGISTRY_KV_PER_NODE ?
	    max_nodes * REGISTRY_KV_PER_NODE : SIZE_MAX;
	return n > REGISTRY_MIN_DEFAULT_KV ? n : REGISTRY_MIN_DEFAULT_KV;
}

static bool url_in_process(const char *url)
{
	return url == NULL || url[0] == '\0' || strcmp(url, "memory:") == 0 ||
	    strcmp(url, "memory") == 0;
}

size_t registry_default_max_nonces(const char *url)
{
	if (!url_in_process(url))
		return REGISTRY_MIN_DEFAULT_NONCES;
	return quarter_of_memory(REGISTRY_NONCE_BYTES, REGISTRY_MIN_DEFAULT_NONCES);
}

int registry_open(registry **out, const char *url, const registry_opts *opts)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no output handle");
	*out = NULL;
	registry_opts o = { 0 };
	if (opts != NULL)
		o = *opts;
	if (o.max_nodes == 0)
		o.max_nodes = registry_default_max_nodes();
	if (o.max_nonces == 0)
		o.max_nonces = registry_default_max_nonces(url);
	if (o.max_rate == 0)
		o.max_rate = 1000000;
	if (o.max_kv == 0)
		o.max_kv = registry_default_max_kv(o.max_nodes);
	if (o.nonce_quota_signer == 0)
		o.nonce_quota_signer = o.max_nonces / 20 ? o.max_nonces / 20 : 1;
	if (o.nonce_quota_addr == 0)
		o.nonce_quota_addr = o.max_nonces / 4 ? o.max_nonces / 4 : 1;
	if (o.kv_quota_owner == 0)
		o.kv_quota_owner = o.max_kv / 100 ? o.max_kv / 100 : 1;
	if (o.kv_quota_addr == 0)
		o.kv_quota_addr = o.max_kv / 4 ? o.max_kv / 4 : 1;

	if (url_in_process(url))
		return registry_memory_ops.open(out, NULL, &o);
	if (strnlen(url, REGISTRY_URL_MAX + 1) > REGISTRY_URL_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "registry URL is longer than %d bytes",
		    REGISTRY_URL_MAX);
	if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0 ||
	    strncmp(url, "unix://", 7) == 0)
#ifdef TROOP_HAVE_HIREDIS
		return registry_redis_ops.open(out, url, &o);
#else
		return troop_error_set(TROOP_EINVAL, "registry URL: the redis backend is not "
		    "built into this program");
#endif
	return troop_error_set(TROOP_EINVAL, "registry URL '%s': unknown (expected memory: "
	    "or redis://HOST:PORT)", url);
}

void registry_close(registry *r)
{
	if (r != NULL && r->ops != NULL)
		r->ops->close(r);
}

const char *registry_backend_name(const registry *r)
{
	return (r != NULL && r->ops != NULL) ? r->ops->name : "none";
}

/* ---- nodes ---------------------------------------------------------------- */

int registry_put_node(registry *r, const registry_node *rec, int64_t ttl, int64_t now)
{
	TRY(check_reg(r));
	if (rec == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no node record");
	TRY(check_field("node_id", rec->node_id, sizeof rec->node_id, true));
	if (rec->status == NODE_OFFLINE) {
		int err = r->ops->remove_node(r, rec->node_id);
		if (err == TROOP_ENOTFOUND)
			troop_error_clear();
		return err == TROOP_ENOTFOUND ? 0 : err;
	}
	TRY(check_node(rec));
	TRY(check_ttl("ttl", ttl));
	return r->ops->put_node(r, rec, ttl, now);
}

int registry_remove_node(registry *r, const char *node_id)
{
	TRY(check_reg(r));
	TRY(check_str("node_id", node_id, REGISTRY_ID_MAX));
	return r->ops->remove_node(r, node_id);
}

int registry_get_node(registry_node *out, registry *r, const char *node_id, int64_t now,
    unsigned with)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no output record");
	memset(out, 0, sizeof *out);
	TRY(check_reg(r));
	TRY(check_str("node_id", node_id, REGISTRY_ID_MAX));
	return r->ops->get_node(out, r, node_id, now, with);
}

int registry_find_nodes(registry_node **out, size_t *n, registry *r, const char *model,
    int64_t now, size_t max, unsigned with)
{
	if (out == NULL || n == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no output array");
	*out = NULL;
	*n = 0;
	TRY(check_reg(r));
	if (model != NULL && model[0] == '\0')
		model = NULL;
	if (model != NULL)
		TRY(check_str("model", model, REGISTRY_MODEL_MAX));
	if (max < 1)
		return troop_error_set(TROOP_EINVAL, "registry: max must be at least 1");
	return r->ops->find_nodes(out, n, r, model, now, max, with);
}

int registry_list_nodes(registry_node **out, size_t *n, registry *r, const char *model,
    const char *after, int64_t now, size_t max, unsigned with)
{
	if (out == NULL || n == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no output array");
	*out = NULL;
	*n = 0;
	TRY(check_reg(r));
	if (model != NULL && model[0] == '\0')
		model = NULL;
	if (model != NULL)
		TRY(check_str("model", model, REGISTRY_MODEL_MAX));
	if (after != NULL && after[0] == '\0')
		after = NULL;
	if (after != NULL)
		TRY(check_str("after", after, REGISTRY_ID_MAX));
	if (max < 1)
		return troop_error_set(TROOP_EINVAL, "registry: max must be at least 1");
	return r->ops->list_nodes(out, n, r, model, after, now, max, with);
}

int registry_models(registry_model_info **out, size_t *n, registry *r, int64_t now)
{
	if (out == NULL || n == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no output array");
	*out = NULL;
	*n = 0;
	TRY(check_reg(r));
	return r->ops->models(out, n, r, now);
}

int registry_add_active_job(registry *r, const char *node_id, int delta)
{
	TRY(check_reg(r));
	TRY(check_str("node_id", node_id, REGISTRY_ID_MAX));
	return r->ops->add_active_job(r, node_id, delta);
}

int registry_set_node_facts(registry *r, const char *node_id, const registry_facts *f,
    int64_t now)
{
	TRY(check_reg(r));
	TRY(check_str("node_id", node_id, REGISTRY_ID_MAX));
	if (f == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no node facts");
	TRY(check_facts(f));
	return r->ops->set_facts(r, node_id, f, now);
}

int registry_count_nodes(size_t *out, registry *r, int64_t now)
{
	if (out == NULL)
		return troop_error_set(TROOP_EINVAL, "registry: no output count");
	*out = 0;
	TRY(check_reg(r));
	return r->ops->count_nodes(out, r, now);
}

int registry_sweep(size_t *removed, registry *r, int64_t now)
{
	size_t dummy;
	if (removed == NULL)
		removed = &dummy;
	*removed = 0;
	TRY(check_reg(r));
	return r->ops->sweep(removed, r, now);
}

/* ---- nonces and rate limits -------------------------------------------------- */

int registry_nonce_check(void *reg, const char *keyid, const char *nonce, int64_t now)
{
	return registry_nonce_check_from(reg, keyid, nonce, NULL, now);
}

/* An optional owner or address: NULL or "" for none, else bounded. */
static int check_owner(const char *what, const char **s)
{
	if (*s != NULL && (*s)[0] == '\0')
		*s = NULL;
	if (*s != NULL && strnlen(*s, REGISTRY_OWNER_MAX + 1) > REGISTRY_OWNER_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "registry: %s is longer than %d bytes",
		    what, REGISTRY_OWNER_MAX);
	return 0;
}

int registry_nonce_check_from(registry *r, const char *keyid, const char *nonce,
    const char *addr, int64_t now)
{
	TRY(check_reg(r));
	TRY(check_str("keyid", keyid, REGISTRY_NONCE_PART_MAX));
	TRY(check_str("nonce", nonce, REGISTRY_NONCE_PART_MAX));
	TRY(check_owner("address", &addr));
	return r->ops->nonce_check(r, keyid, nonce, addr, now);
}

int registry_rate_check(registry *r, const char *key, int64_t window_s, int64_t max,
    int64_t now)
{
	TRY(check_reg(r));
	TRY(check_str("rate key", key, REGISTRY_RATE_KEY_MAX));
	TRY(check_ttl("rate window", window_s));
	if (max < 1)
		return troop_error_set(TROOP_EINVAL, "registry: rate max must be at least 1");
	return r->ops->rate_check(r, key, window_s, max, now);
}

/* ---- key/value ---------------------------------------------------------------- */

int registry_kv_put(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, int64_t now)
{
	return registry_kv_put_owned(r, key, value, len, ttl_s, flags, NULL, NULL, now);
}

int registry_kv_put_owned(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, const char *owner, const char *addr, int64_t now)
{
	TRY(check_reg(r));
	TRY(check_owner("owner", &owner));
	TRY(check_owner("address", &addr));
	TRY(check_str("key", key, REGISTRY_KV_KEY_MAX));
	if (value == NULL && len > 0)
		return troop_error_set(TROOP_EINVAL, "registry: value is NULL");
	if (len > REGISTRY_KV_VALUE_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "registry: value of %zu bytes is over "
		    "the %d byte limit", len, REGISTRY_KV_VALUE_MAX);
	TRY(check_ttl("ttl", ttl_s));
	if (flags & ~REGISTRY_KV_NX)
		return troop_error_set(TROOP_EINVAL, "registry: unknown kv flags 0x%x", flags);
	return r->ops->kv_put(r, key, value, len, ttl_s, flags, owner, addr, now);
}

static int kv_get(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now, bool take)
{
	size_t dummy;
	if (len == NULL)
		len = &dummy;
	*len = 0;
	TRY(check_reg(r));
	TRY(check_str("key", key, REGISTRY_KV_KEY_MAX));
	if (buf == NULL && cap > 0)
		return troop_error_set(TROOP_EINVAL, "registry: no buffer for the value");
	return r->ops->kv_get(buf, cap, len, r, key, now, take);
}

int registry_kv_get(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now)
{
	return kv_get(buf, cap, len, r, key, now, false);
}

int registry_kv_take(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now)
{
	return kv_get(buf, cap, len, r, key, now, true);
}

/* ---- ordered sets ------------------------------------------------------------- */

static int check_set(const registry *r, const char *set, const char *member)
{
	TRY(check_reg(r));
	TRY(check_str("set name", set, REGISTRY_SET_NAME_MAX));
	if (member != NULL)
		TRY(check_str("set member", member, REGISTRY_SET_MEMBER_MAX));
	return 0;
}

int registry_set_add(registry *r, const char *set, const char *member, int64_t score,
    int64_t expires, size_t max, int64_t now)
{
	TRY(check_set(r, set, member));
	if (max < 1)
		return troop_error_set(TROOP_EINVAL, "registry: a set's bound must be >= 1");
	if (score < -((int64_t)1 << 52) || score > ((int64_t)1 << 52))
		return troop_error_set(TROOP_EINVAL, "registry: set score out of range");
	return r->ops->set_add(r, set, member, score, expires, max, now);
}

int registry_set_rank(int64_t *rank, size_t *count, registry *r, const char *set,
    const char *member, int64_t now)
{
	size_t dummy;
	*rank = -1;
	if (count == NULL)
		count = &dummy;
	*count = 0;
	TRY(check_set(r, set, member));
	return r->ops->set_rank(rank, count, r, set, member, now);
}

int registry_set_remove(registry *r, const char *set, const char *member)
{
	TRY(check_set(r, set, member));
	return r->ops->set_remove(r, set, member);
}

int registry_set_count(size_t *count, registry *r, const char *set, int64_t now)
{
	*count = 0;
	TRY(check_set(r, set, NULL));
	return r->ops->set_count(count, r, set, now);
}

int registry_set_take_expired(char ***out, size_t *n, registry *r, const char *set,
    int64_t now, size_t max)
{
	*out = NULL;
	*n = 0;
	TRY(check_set(r, set, NULL));
	if (max < 1)
		return troop_error_set(TROOP_EINVAL, "registry: max must be >= 1");
	return r->ops->set_take_expired(out, n, r, set, now, max);
}

/* ---- records ------------------------------------------------------------------ */

void registry_node_clear(registry_node *n)
{
	if (n == NULL)
		return;
	free(n->models);
	free(n->extra_json);
	memset(n, 0, sizeof *n);
}

void registry_nodes_free(registry_node *nodes, size_t n)
{
	if (nodes == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		registry_node_clear(&nodes[i]);
	free(nodes);
}

static const char *const status_names[] = { "IDLE", "BUSY", "OFFLINE" };

const char *registry_status_name(node_status s)
{
	if ((unsigned)s <= NODE_OFFLINE)
		return status_names[s];
	return "UNKNOWN";
}

int registry_status_parse(node_status *out, const char *s)
{
	for (unsigned i = 0; s != NULL && i <= NODE_OFFLINE; i++) {
		if (strcmp(s, status_names[i]) == 0) {
			*out = (node_status)i;
			return 0;
		}
	}
	return troop_error_set(TROOP_EINVAL, "registry: status must be IDLE, BUSY or OFFLINE, "
	    "got '%.32s'", s ? s : "(null)");
}
