/*
 * registry_memory.c - the in-process registry backend (the embedded
 * default): everything lives in this process's memory.
 *
 * Nodes: a hash map node_id -> node, two index maps (model name -> nodes,
 * content hash -> nodes) and a min-heap on expiry, all under one
 * reader/writer lock (writer-preferring, so a stream of lookups cannot
 * starve heartbeats).  Lookups take the read lock; heartbeats the write
 * lock.  active_jobs is atomic so that authorize can bump it under the
 * read lock.  Each index bucket is an array of (node, model slot) refs;
 * every model slot remembers its position in the bucket, so removing a
 * node is O(its models) (swap with the last ref) and finding a model is
 * O(nodes listed under it), never a scan of all nodes.  A node is stored
 * in one allocation (record, model table and all strings), keeping 100k
 * nodes at a few hundred bytes each.  Listing a page in id order
 * (registry_list_nodes) is one pass over the nodes (or over one index
 * bucket), keeping the page's smallest ids in a heap of the page's size.
 *
 * Nonces, rate windows and key/values: three expiring sets (lib/expset),
 * each with a hard cap on live entries; nonces and key/values also count
 * against per-signer (per-owner) and per-address quotas, so that one
 * party cannot fill a store shared by all.
 *
 * Ordered sets (the wait queue, ticket holds): a map of small arrays
 * under a mutex of their own (an empty set is dropped); each call is O(members of that set), which
 * their callers bound (queue lengths, tickets in flight).
 *
 * Keys come from the network, so the maps hash with SipHash (libsodium
 * crypto_shorthash) under a random key chosen at open.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "error.h"
#include "expset.h"
#include "registry.h"

#define NONE SIZE_MAX
#define PUT_SWEEP 64        /* expired nodes dropped per put_node */
#define HASHES_TRACKED 16   /* distinct hashes counted per model name */

static int nomem(void)
{
	return troop_error_set(TROOP_ENOMEM, "registry: out of memory");
}

/* ---- hash map: string -> pointer -------------------------------------------- */

struct sent {
	struct sent *next;
	uint64_t h;
	void *val;
	char key[];
};

struct smap {
	struct sent **b;
	size_t nb;  /* power of two */
	size_t n;
};

static uint64_t shash(const unsigned char *seed, const char *key)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;
	crypto_shorthash(out, (const unsigned char *)key, strlen(key), seed);
	memcpy(&h, out, sizeof h);
	return h;
}

static int smap_init(struct smap *m, size_t nb)
{
	m->b = calloc(nb, sizeof *m->b);
	m->nb = nb;
	m->n = 0;
	return m->b ? 0 : nomem();
}

/* Free the entries (not the values). */
static void smap_free(struct smap *m)
{
	for (size_t i = 0; m->b != NULL && i < m->nb; i++) {
		struct sent *e = m->b[i];
		while (e != NULL) {
			struct sent *next = e->next;
			free(e);
			e = next;
		}
	}
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

static struct sent *smap_find(const struct smap *m, const char *key, uint64_t h)
{
	for (struct sent *e = m->b[h & (m->nb - 1)]; e != NULL; e = e->next)
		if (e->h == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void smap_grow(struct smap *m)
{
	size_t nb = m->nb * 2;
	struct sent **b = calloc(nb, sizeof *b);
	if (b == NULL)
		return;  /* keep the old table: only slower */
	for (size_t i = 0; i < m->nb; i++) {
		struct sent *e = m->b[i];
		while (e != NULL) {
			struct sent *next = e->next;
			e->next = b[e->h & (nb - 1)];
			b[e->h & (nb - 1)] = e;
			e = next;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

/* Insert a key known to be absent.  Returns the entry or NULL (no memory). */
static struct sent *smap_add(struct smap *m, const char *key, uint64_t h, void *val)
{
	size_t klen = strlen(key);
	struct sent *e = malloc(sizeof *e + klen + 1);
	if (e == NULL)
		return NULL;
	e->h = h;
	e->val = val;
	memcpy(e->key, key, klen + 1);
	if (m->n >= m->nb)
		smap_grow(m);
	e->next = m->b[h & (m->nb - 1)];
	m->b[h & (m->nb - 1)] = e;
	m->n++;
	return e;
}

/* Unlink and free entry `e`; returns its value. */
static void *smap_del(struct smap *m, struct sent *e)
{
	struct sent **pp = &m->b[e->h & (m->nb - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	m->n--;
	void *val = e->val;
	free(e);
	return val;
}

/* ---- expiry heap ------------------------------------------------------------- */

struct hent {
	int64_t at;  /* expires at (live while now < at) */
	size_t pos;  /* index in the heap */
};

struct heap {
	struct hent **a;
	size_t n, cap;
};

static void heap_set(struct heap *h, size_t i, struct hent *e)
{
	h->a[i] = e;
	e->pos = i;
}

static void heap_up(struct heap *h, size_t i)
{
	struct hent *e = h->a[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->a[p]->at <= e->at)
			break;
		heap_set(h, i, h->a[p]);
		i = p;
	}
	heap_set(h, i, e);
}

static void heap_down(struct heap *h, size_t i)
{
	struct hent *e = h->a[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->a[c + 1]->at < h->a[c]->at)
			c++;
		if (e->at <= h->a[c]->at)
			break;
		heap_set(h, i, h->a[c]);
		i = c;
	}
	heap_set(h, i, e);
}

static int heap_push(struct heap *h, struct hent *e)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct hent **a = realloc(h->a, cap * sizeof *a);
		if (a == NULL)
			return nomem();
		h->a = a;
		h->cap = cap;
	}
	heap_set(h, h->n++, e);
	heap_up(h, h->n - 1);
	return 0;
}

static void heap_del(struct heap *h, struct hent *e)
{
	size_t i = e->pos;
	struct hent *last = h->a[--h->n];
	if (i == h->n)
		return;
	heap_set(h, i, last);
	heap_up(h, i);
	heap_down(h, last->pos);
}

/* Re-place `e` after its `at` changed. */
static void heap_fix(struct heap *h, struct hent *e)
{
	heap_up(h, e->pos);
	heap_down(h, e->pos);
}

/* The entry expiring first, if it has expired by `now`. */
static struct hent *heap_expired(const struct heap *h, int64_t now)
{
	return (h->n > 0 && h->a[0]->at <= now) ? h->a[0] : NULL;
}

/* ---- nodes ------------------------------------------------------------------ */

struct mmodel {
	const char *name, *hash, *engine;
	int64_t size;
	int64_t ctx;  /* context length, 0 unknown */
	uint32_t caps, caps_known, endpoints;
	size_t name_pos;  /* index in the by_name bucket, NONE if not indexed */
	size_t hash_pos;  /* likewise in by_hash */
};

/* One allocation: struct mnode, then n_models struct mmodel, then the
 * strings. */
struct mnode {
	struct hent h;  /* first: the heap stores &h */
	struct sent *ent;  /* its entry in the nodes map */
	const char *node_id, *name, *ip, *enc_key, *seal_key, *owner, *version;
	char *extra_json;  /* own allocation, or NULL */
	struct mmodel *models;
	size_t n_models;
	int port, max_jobs;
	node_status status;
	int64_t last_seen;
	atomic_int active;
	registry_facts facts;  /* written under the write lock */
};

struct iref {
	struct mnode *node;
	size_t mi;  /* model slot */
};

struct ibucket {
	struct iref *refs;
	size_t n, cap;
};

struct oent {
	char *member;
	int64_t score, expires;
};

struct oset {
	struct oent *e;
	size_t n, cap;
};

struct mem_registry {
	struct registry base;
	registry_opts opts;
	unsigned char seed[crypto_shorthash_KEYBYTES];
	pthread_rwlock_t lock;  /* guards nodes, by_name, by_hash, node_heap */
	struct smap nodes, by_name, by_hash;
	struct heap node_heap;
	expset *nonces, *rates, *kv;
	pthread_mutex_t sets_mu;  /* guards sets */
	struct smap sets;         /* name -> struct oset */
};

static struct mem_registry *mem_of(registry *r)
{
	return (struct mem_registry *)r;
}

static struct mnode *node_of(struct hent *h)
{
	return (struct mnode *)h;
}

static bool node_live(const struct mnode *n, int64_t now)
{
	return n->h.at > now;
}

/* Build a node from a validated record, outside any lock. */
static struct mnode *mnode_build(const registry_node *rec, int64_t ttl, int64_t now)
{
	const char *fixed[7] = { rec->node_id, rec->name, rec->ip,
		rec->encryption_public_key, rec->seal_key, rec->owner, rec->version };
	size_t slen = 0;
	for (int i = 0; i < 7; i++)
		slen += strlen(fixed[i]) + 1;
	for (size_t i = 0; i < rec->n_models; i++)
		slen += strlen(rec->models[i].name) + strlen(rec->models[i].content_hash) +
		    strlen(rec->models[i].engine) + 3;

	struct mnode *n = calloc(1, sizeof *n + rec->n_models * sizeof(struct mmodel) + slen);
	if (n == NULL)
		return NULL;
	if (rec->extra_json != NULL && (n->extra_json = strdup(rec->extra_json)) == NULL) {
		free(n);
		return NULL;
	}
	n->models = (struct mmodel *)(n + 1);
	n->n_models = rec->n_models;
	char *p = (char *)(n->models + rec->n_models);
	const char **dst[7] = { &n->node_id, &n->name, &n->ip, &n->enc_key, &n->seal_key,
		&n->owner, &n->version };
	for (int i = 0; i < 7; i++) {
		size_t l = strlen(fixed[i]) + 1;
		memcpy(p, fixed[i], l);
		*dst[i] = p;
		p += l;
	}
	for (size_t i = 0; i < rec->n_models; i++) {
		const registry_model *src = &rec->models[i];
		struct mmodel *m = &n->models[i];
		const char *s3[3] = { src->name, src->content_hash, src->engine };
		const char **d3[3] = { &m->name, &m->hash, &m->engine };
		for (int k = 0; k < 3; k++) {
			size_t l = strlen(s3[k]) + 1;
			memcpy(p, s3[k], l);
			*d3[k] = p;
			p += l;
		}
		m->size = src->size_bytes;
		m->ctx = src->context_length;
		m->caps = src->caps;
		m->caps_known = src->caps_known;
		m->endpoints = src->endpoints;
		m->name_pos = m->hash_pos = NONE;
	}
	n->h.at = now + ttl;
	n->port = rec->port;
	n->max_jobs = rec->max_jobs;
	n->status = rec->status;
	n->last_seen = now;
	n->facts = rec->facts;
	atomic_init(&n->active, rec->active_jobs);
	return n;
}

static void mnode_free(struct mnode *n)
{
	if (n == NULL)
		return;
	free(n->extra_json);
	free(n);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Copy a node out for a caller.  Under (at least) the read lock. */
static int mnode_export(registry_node *out, const struct mnode *n, unsigned with)
{
	memset(out, 0, sizeof *out);
	copy_str(out->node_id, sizeof out->node_id, n->node_id);
	copy_str(out->name, sizeof out->name, n->name);
	copy_str(out->ip, sizeof out->ip, n->ip);
	copy_str(out->encryption_public_key, sizeof out->encryption_public_key, n->enc_key);
	copy_str(out->seal_key, sizeof out->seal_key, n->seal_key);
	copy_str(out->owner, sizeof out->owner, n->owner);
	copy_str(out->version, sizeof out->version, n->version);
	out->port = n->port;
	out->status = n->status;
	out->active_jobs = atomic_load(&((struct mnode *)n)->active);
	out->max_jobs = n->max_jobs;
	out->last_seen = n->last_seen;
	out->expires_at = n->h.at;
	out->facts = n->facts;
	if ((with & REGISTRY_WITH_MODELS) && n->n_models > 0) {
		out->models = malloc(n->n_models * sizeof *out->models);
		if (out->models == NULL)
			goto fail;
		out->n_models = n->n_models;
		for (size_t i = 0; i < n->n_models; i++) {
			registry_model *m = &out->models[i];
			copy_str(m->name, sizeof m->name, n->models[i].name);
			copy_str(m->content_hash, sizeof m->content_hash, n->models[i].hash);
			copy_str(m->engine, sizeof m->engine, n->models[i].engine);
			m->size_bytes = n->models[i].size;
			m->context_length = n->models[i].ctx;
			m->caps = n->models[i].caps;
			m->caps_known = n->models[i].caps_known;
			m->endpoints = n->models[i].endpoints;
		}
	}
	if ((with & REGISTRY_WITH_EXTRA) && n->extra_json != NULL) {
		out->extra_json = strdup(n->extra_json);
		if (out->extra_json == NULL)
			goto fail;
	}
	return 0;
fail:
	registry_node_clear(out);
	return nomem();
}

/* ---- the model index (write lock held) ----------------------------------------- */

static size_t *slot_pos(struct mnode *n, size_t mi, bool by_name)
{
	return by_name ? &n->models[mi].name_pos : &n->models[mi].hash_pos;
}

static int index_add(struct mem_registry *m, struct smap *idx, bool by_name, const char *key,
    struct mnode *n, size_t mi)
{
	uint64_t h = shash(m->seed, key);
	struct sent *e = smap_find(idx, key, h);
	struct ibucket *b;
	if (e == NULL) {
		b = calloc(1, sizeof *b);
		if (b == NULL || smap_add(idx, key, h, b) == NULL) {
			free(b);
			return nomem();
		}
	} else {
		b = e->val;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4;
		struct iref *refs = realloc(b->refs, cap * sizeof *refs);
		if (refs == NULL) {
			if (b->n == 0) {  /* just made: do not leave an empty bucket */
				smap_del(idx, smap_find(idx, key, h));
				free(b->refs);
				free(b);
			}
			return nomem();
		}
		b->refs = refs;
		b->cap = cap;
	}
	b->refs[b->n] = (struct iref){ n, mi };
	*slot_pos(n, mi, by_name) = b->n++;
	return 0;
}

static void index_del(struct mem_registry *m, struct smap *idx, bool by_name, const char *key,
    struct mnode *n, size_t mi)
{
	size_t *pos = slot_pos(n, mi, by_name);
	if (*pos == NONE)
		return;
	uint64_t h = shash(m->seed, key);
	struct sent *e = smap_find(idx, key, h);
	if (e == NULL)
		return;  /* cannot happen */
	struct ibucket *b = e->val;
	size_t i = *pos;
	struct iref last = b->refs[--b->n];
	if (i != b->n) {
		b->refs[i] = last;
		*slot_pos(last.node, last.mi, by_name) = i;
	}
	*pos = NONE;
	if (b->n == 0) {
		smap_del(idx, e);
		free(b->refs);
		free(b);
	}
}

static void node_unindex(struct mem_registry *m, struct mnode *n)
{
	for (size_t i = 0; i < n->n_models; i++) {
		index_del(m, &m->by_name, true, n->models[i].name, n, i);
		index_del(m, &m->by_hash, false, n->models[i].hash, n, i);
	}
}

/* Index every model name and hash once per node.  On failure nothing of
 * this node stays indexed. */
static int node_index(struct mem_registry *m, struct mnode *n)
{
	for (size_t i = 0; i < n->n_models; i++) {
		struct mmodel *mm = &n->models[i];
		bool name_dup = false, hash_dup = mm->hash[0] == '\0';
		for (size_t j = 0; j < i && !(name_dup && hash_dup); j++) {
			if (!name_dup && strcmp(n->models[j].name, mm->name) == 0)
				name_dup = true;
			if (!hash_dup && strcmp(n->models[j].hash, mm->hash) == 0)
				hash_dup = true;
		}
		int err = 0;
		if (!name_dup)
			err = index_add(m, &m->by_name, true, mm->name, n, i);
		if (err == 0 && !hash_dup)
			err = index_add(m, &m->by_hash, false, mm->hash, n, i);
		if (err) {
			node_unindex(m, n);
			return err;
		}
	}
	return 0;
}

/* Take node `n` out of every structure and free it. */
static void node_drop(struct mem_registry *m, struct mnode *n)
{
	node_unindex(m, n);
	smap_del(&m->nodes, n->ent);
	heap_del(&m->node_heap, &n->h);
	mnode_free(n);
}

static size_t sweep_nodes(struct mem_registry *m, int64_t now, size_t limit)
{
	size_t k = 0;
	struct hent *h;
	while (k < limit && (h = heap_expired(&m->node_heap, now)) != NULL) {
		node_drop(m, node_of(h));
		k++;
	}
	return k;
}

static int mem_put_node(registry *r, const registry_node *rec, int64_t ttl, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	struct mnode *n = mnode_build(rec, ttl, now);
	if (n == NULL)
		return nomem();
	uint64_t h = shash(m->seed, n->node_id);
	int err = 0;

	pthread_rwlock_wrlock(&m->lock);
	sweep_nodes(m, now, PUT_SWEEP);
	struct sent *e = smap_find(&m->nodes, n->node_id, h);
	if (e != NULL) {
		/* replace: the new node takes over the map entry and heap slot */
		struct mnode *old = e->val;
		node_unindex(m, old);
		n->ent = e;
		e->val = n;
		n->h.pos = old->h.pos;
		m->node_heap.a[n->h.pos] = &n->h;
		heap_fix(&m->node_heap, &n->h);
		mnode_free(old);
	} else {
		if (m->nodes.n >= m->opts.max_nodes) {
			err = troop_error_set(TROOP_EUNAVAIL, "registry full: %zu live nodes",
			    m->nodes.n);
			goto out;
		}
		if ((n->ent = smap_add(&m->nodes, n->node_id, h, n)) == NULL) {
			err = nomem();
			goto out;
		}
		if ((err = heap_push(&m->node_heap, &n->h)) != 0) {
			smap_del(&m->nodes, n->ent);
			goto out;
		}
	}
	if ((err = node_index(m, n)) != 0) {
		node_drop(m, n);
		n = NULL;  /* freed */
		goto out;
	}
	n = NULL;  /* owned by the registry */
out:
	pthread_rwlock_unlock(&m->lock);
	mnode_free(n);
	return err;
}

static int mem_remove_node(registry *r, const char *node_id)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err = 0;
	pthread_rwlock_wrlock(&m->lock);
	struct sent *e = smap_find(&m->nodes, node_id, h);
	if (e != NULL)
		node_drop(m, e->val);
	else
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static int mem_get_node(registry_node *out, registry *r, const char *node_id, int64_t now,
    unsigned with)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err;
	pthread_rwlock_rdlock(&m->lock);
	struct sent *e = smap_find(&m->nodes, node_id, h);
	if (e != NULL && node_live(e->val, now))
		err = mnode_export(out, e->val, with);
	else
		err = troop_error_set(TROOP_ENOTFOUND, "no live node %s", node_id);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

/* Append node `n` to the output array (capacity checked by the caller). */
static int collect(registry_node *arr, size_t *k, const struct mnode *n, unsigned with)
{
	int err = mnode_export(&arr[*k], n, with);
	if (err == 0)
		(*k)++;
	return err;
}

static int mem_find_nodes(registry_node **out, size_t *nout, registry *r, const char *model,
    int64_t now, size_t max, unsigned with)
{
	struct mem_registry *m = mem_of(r);
	registry_node *arr = NULL;
	size_t k = 0;
	int err = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (model == NULL) {
		size_t cap = m->nodes.n < max ? m->nodes.n : max;
		if (cap == 0)
			goto out;
		if ((arr = calloc(cap, sizeof *arr)) == NULL) {
			err = nomem();
			goto out;
		}
		/* start at a random bucket so a capped listing is not always the same */
		size_t start = randombytes_uniform((uint32_t)(m->nodes.nb > UINT32_MAX ?
		    UINT32_MAX : m->nodes.nb));
		for (size_t i = 0; i < m->nodes.nb && k < cap && err == 0; i++) {
			for (struct sent *e = m->nodes.b[(start + i) & (m->nodes.nb - 1)];
			    e != NULL && k < cap && err == 0; e = e->next)
				if (node_live(e->val, now))
					err = collect(arr, &k, e->val, with);
		}
		goto out;
	}

	uint64_t h = shash(m->seed, model);
	struct sent *e = smap_find(&m->by_name, model, h);
	if (e == NULL)
		e = smap_find(&m->by_hash, model, h);
	if (e == NULL)
		goto out;
	struct ibucket *b = e->val;
	size_t cap = b->n < max ? b->n : max;
	if ((arr = calloc(cap, sizeof *arr)) == NULL) {
		err = nomem();
		goto out;
	}
	size_t start = b->n > max ? randombytes_uniform((uint32_t)(b->n > UINT32_MAX ?
	    UINT32_MAX : b->n)) : 0;
	for (size_t i = 0; i < b->n && k < cap && err == 0; i++) {
		const struct mnode *n = b->refs[(start + i) % b->n].node;
		if (node_live(n, now))
			err = collect(arr, &k, n, with);
	}
out:
	pthread_rwlock_unlock(&m->lock);
	if (err != 0 || k == 0) {
		registry_nodes_free(arr, k);
		arr = NULL;
		k = 0;
	}
	*out = arr;
	*nout = k;
	return err;
}

/* ---- listing in id order ---------------------------------------------------- */

/* The `cap` smallest ids after a cursor, as a max-heap on node_id: the
 * root is the largest kept, replaced by any smaller candidate. */
struct idheap {
	const struct mnode **a;
	size_t n, cap;
};

static void idheap_down(struct idheap *h, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, big = i;
		if (l < h->n && strcmp(h->a[l]->node_id, h->a[big]->node_id) > 0)
			big = l;
		if (r < h->n && strcmp(h->a[r]->node_id, h->a[big]->node_id) > 0)
			big = r;
		if (big == i)
			return;
		const struct mnode *t = h->a[i];
		h->a[i] = h->a[big];
		h->a[big] = t;
		i = big;
	}
}

static void idheap_offer(struct idheap *h, const struct mnode *n)
{
	if (h->n < h->cap) {
		size_t i = h->n++;
		h->a[i] = n;
		while (i > 0 && strcmp(h->a[(i - 1) / 2]->node_id, h->a[i]->node_id) < 0) {
			const struct mnode *t = h->a[i];
			h->a[i] = h->a[(i - 1) / 2];
			h->a[(i - 1) / 2] = t;
			i = (i - 1) / 2;
		}
	} else if (strcmp(n->node_id, h->a[0]->node_id) < 0) {
		h->a[0] = n;
		idheap_down(h, 0);
	}
}

static int cmp_mnode_id(const void *a, const void *b)
{
	return strcmp((*(const struct mnode *const *)a)->node_id,
	    (*(const struct mnode *const *)b)->node_id);
}

static void list_offer(struct idheap *h, const struct mnode *n, const char *after,
    int64_t now)
{
	if (node_live(n, now) && (after == NULL || strcmp(n->node_id, after) > 0))
		idheap_offer(h, n);
}

static int mem_list_nodes(registry_node **out, size_t *nout, registry *r, const char *model,
    const char *after, int64_t now, size_t max, unsigned with)
{
	struct mem_registry *m = mem_of(r);
	struct idheap h = { NULL, 0, 0 };
	registry_node *arr = NULL;
	const struct ibucket *b = NULL;
	size_t k = 0;
	int err = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (model != NULL) {
		uint64_t mh = shash(m->seed, model);
		struct sent *e = smap_find(&m->by_name, model, mh);
		if (e == NULL)
			e = smap_find(&m->by_hash, model, mh);
		if (e == NULL)
			goto out;
		b = e->val;
	}
	h.cap = b != NULL ? b->n : m->nodes.n;
	if (h.cap > max)
		h.cap = max;
	if (h.cap == 0)
		goto out;
	if ((h.a = malloc(h.cap * sizeof *h.a)) == NULL) {
		err = nomem();
		goto out;
	}
	if (b != NULL) {
		for (size_t i = 0; i < b->n; i++)
			list_offer(&h, b->refs[i].node, after, now);
	} else {
		for (size_t i = 0; i < m->nodes.nb; i++)
			for (struct sent *e = m->nodes.b[i]; e != NULL; e = e->next)
				list_offer(&h, e->val, after, now);
	}
	if (h.n == 0)
		goto out;
	qsort(h.a, h.n, sizeof *h.a, cmp_mnode_id);
	if ((arr = calloc(h.n, sizeof *arr)) == NULL) {
		err = nomem();
		goto out;
	}
	for (size_t i = 0; i < h.n && err == 0; i++)
		err = collect(arr, &k, h.a[i], with);
out:
	pthread_rwlock_unlock(&m->lock);
	free(h.a);
	if (err != 0 || k == 0) {
		registry_nodes_free(arr, k);
		arr = NULL;
		k = 0;
	}
	*out = arr;
	*nout = k;
	return err;
}

struct hash_tally {
	const char *hash;
	int64_t size;
	size_t count;
};

static int cmp_model_info(const void *a, const void *b)
{
	return strcmp(((const registry_model_info *)a)->name,
	    ((const registry_model_info *)b)->name);
}

static int mem_models(registry_model_info **out, size_t *nout, registry *r, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	registry_model_info *arr = NULL;
	size_t k = 0;
	int err = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (m->by_name.n > 0 && (arr = calloc(m->by_name.n, sizeof *arr)) == NULL)
		err = nomem();
	for (size_t i = 0; err == 0 && i < m->by_name.nb; i++) {
		for (struct sent *e = m->by_name.b[i]; e != NULL; e = e->next) {
			const struct ibucket *b = e->val;
			struct hash_tally t[HASHES_TRACKED];
			size_t nt = 0, live = 0;
			int64_t ctx = 0;
			uint32_t caps = 0, eps = 0;
			for (size_t j = 0; j < b->n; j++) {
				const struct mnode *n = b->refs[j].node;
				if (!node_live(n, now))
					continue;
				live++;
				const struct mmodel *mm = &n->models[b->refs[j].mi];
				size_t x = 0;
				if (mm->ctx > ctx)
					ctx = mm->ctx;
				caps |= mm->caps & mm->caps_known;
				eps |= mm->endpoints;
				while (x < nt && strcmp(t[x].hash, mm->hash) != 0)
					x++;
				if (x == nt && nt < HASHES_TRACKED)
					t[nt++] = (struct hash_tally){ mm->hash, mm->size, 0 };
				if (x < nt)
					t[x].count++;
			}
			if (live == 0)
				continue;
			/* the hash most nodes report; among equals, a non-empty one */
			size_t best = 0;
			for (size_t x = 1; x < nt; x++)
				if (t[x].count > t[best].count ||
				    (t[x].count == t[best].count && t[best].hash[0] == '\0'))
					best = x;
			registry_model_info *mi = &arr[k++];
			copy_str(mi->name, sizeof mi->name, e->key);
			if (nt > 0) {
				copy_str(mi->content_hash, sizeof mi->content_hash, t[best].hash);
				mi->size_bytes = t[best].size;
			}
			mi->node_count = live;
			mi->context_length = ctx;
			mi->caps = caps;
			mi->endpoints = eps;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	if (err != 0 || k == 0) {
		free(arr);
		arr = NULL;
		k = 0;
	} else {
		qsort(arr, k, sizeof *arr, cmp_model_info);
	}
	*out = arr;
	*nout = k;
	return err;
}

static int mem_add_active_job(registry *r, const char *node_id, int delta)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err = 0;
	pthread_rwlock_rdlock(&m->lock);
	struct sent *e = smap_find(&m->nodes, node_id, h);
	if (e != NULL) {
		struct mnode *n = e->val;
		int cur = atomic_load(&n->active), next;
		do {
			int64_t v = (int64_t)cur + delta;
			next = v < 0 ? 0 : v > INT32_MAX ? INT32_MAX : (int)v;
		} while (!atomic_compare_exchange_weak(&n->active, &cur, next));
	} else {
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	}
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static int mem_set_facts(registry *r, const char *node_id, const registry_facts *f,
    int64_t now)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err = 0;
	pthread_rwlock_wrlock(&m->lock);
	struct sent *e = smap_find(&m->nodes, node_id, h);
	if (e != NULL && node_live(e->val, now))
		((struct mnode *)e->val)->facts = *f;
	else
		err = troop_error_set(TROOP_ENOTFOUND, "no live node %s", node_id);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static int mem_count_nodes(size_t *out, registry *r, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	size_t live = 0;
	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = 0; i < m->node_heap.n; i++)
		if (m->node_heap.a[i]->at > now)
			live++;
	pthread_rwlock_unlock(&m->lock);
	*out = live;
	return 0;
}

/* ---- nonces, rate windows, key/values ---------------------------------------- */

static int mem_nonce_check(registry *r, const char *keyid, const char *nonce,
    const char *addr, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	const char *owners[EXPSET_OWNERS] = { keyid, addr };
	char key[2 * REGISTRY_NONCE_PART_MAX + 2];
	int err;

	snprintf(key, sizeof key, "%s\x1f%s", keyid, nonce);
	err = expset_put(m->nonces, key, owners, NULL, 0, now + REGISTRY_NONCE_WINDOW,
	    EXPSET_NX, now);
	if (err == TROOP_ECONFLICT)
		return troop_error_set(TROOP_EAUTH, "nonce already used");
	if (err == TROOP_EUNAVAIL)
		return troop_error_set(TROOP_ERATE, "registry: too many live nonces");
	return err;
}

static int mem_rate_check(registry *r, const char *key, int64_t window_s, int64_t max,
    int64_t now)
{
	struct mem_registry *m = mem_of(r);
	int64_t count = 0;
	int err = expset_incr(&count, m->rates, key, NULL, 1, now + window_s, now);

	if (err == TROOP_EUNAVAIL)
		return troop_error_set(TROOP_ERATE, "registry: too many live rate-limit keys");
	if (err == 0 && count > max)
		err = troop_error_set(TROOP_ERATE, "rate limit: %lld per %lld s",
		    (long long)max, (long long)window_s);
	return err;
}

static int mem_kv_put(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, const char *owner, const char *addr, int64_t now)
{
	const char *owners[EXPSET_OWNERS] = { owner, addr };

	return expset_put(mem_of(r)->kv, key, owners, value, len, now + ttl_s,
	    (flags & REGISTRY_KV_NX) ? EXPSET_NX : 0, now);
}

static int mem_kv_get(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now, bool take)
{
	return expset_get(buf, cap, len, mem_of(r)->kv, key, now, take);
}

static int mem_sweep(size_t *removed, registry *r, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	pthread_rwlock_wrlock(&m->lock);
	size_t k = sweep_nodes(m, now, SIZE_MAX);
	pthread_rwlock_unlock(&m->lock);
	k += expset_sweep(m->nonces, now);
	k += expset_sweep(m->rates, now);
	k += expset_sweep(m->kv, now);
	*removed = k;
	return 0;
}

/* ---- lifetime ------------------------------------------------------------- */

static void free_bucket_map(struct smap *idx)
{
	for (size_t i = 0; idx->b != NULL && i < idx->nb; i++)
		for (struct sent *e = idx->b[i]; e != NULL; e = e->next) {
			struct ibucket *b = e->val;
			free(b->refs);
			free(b);
		}
	smap_free(idx);
}

/* ---- ordered sets ------------------------------------------------------------- */

/* The set named `name` (created when `create`), or NULL.  Expired members
 * are dropped first unless `keep_expired`.  Under sets_mu. */
static struct oset *oset_get(struct mem_registry *m, const char *name, bool create,
    int64_t now, bool keep_expired)
{
	uint64_t h = shash(m->seed, name);
	struct sent *e = smap_find(&m->sets, name, h);
	struct oset *o = e ? e->val : NULL;

	if (o == NULL && create) {
		o = calloc(1, sizeof *o);
		if (o == NULL || smap_add(&m->sets, name, h, o) == NULL) {
			free(o);
			return NULL;
		}
	}
	if (o != NULL && !keep_expired) {
		size_t k = 0;
		for (size_t i = 0; i < o->n; i++) {
			if (o->e[i].expires > now)
				o->e[k++] = o->e[i];
			else
				free(o->e[i].member);
		}
		o->n = k;
	}
	return o;
}

/* Drop set `name` (o) if it is empty (keeps the map small).  Under sets_mu. */
static void oset_gc(struct mem_registry *m, const char *name, struct oset *o)
{
	if (o == NULL || o->n > 0)
		return;
	struct sent *e = smap_find(&m->sets, name, shash(m->seed, name));
	if (e != NULL && e->val == o) {
		smap_del(&m->sets, e);
		free(o->e);
		free(o);
	}
}

static ssize_t oset_find(const struct oset *o, const char *member)
{
	for (size_t i = 0; o != NULL && i < o->n; i++)
		if (strcmp(o->e[i].member, member) == 0)
			return (ssize_t)i;
	return -1;
}

static int mem_set_add(registry *r, const char *set, const char *member, int64_t score,
    int64_t expires, size_t max, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, true, now, false);
	ssize_t at = oset_find(o, member);
	if (o == NULL) {
		err = nomem();
	} else if (at >= 0) {
		o->e[at].score = score;
		o->e[at].expires = expires;
	} else if (o->n >= max) {
		err = troop_error_set(TROOP_ERATE, "registry: set %.64s is full (%zu)", set, max);
	} else {
		if (o->n == o->cap) {
			size_t cap = o->cap ? o->cap * 2 : 8;
			struct oent *e = realloc(o->e, cap * sizeof *e);
			if (e == NULL) {
				err = nomem();
				goto out;
			}
			o->e = e;
			o->cap = cap;
		}
		char *dup = strdup(member);
		if (dup == NULL) {
			err = nomem();
			goto out;
		}
		o->e[o->n++] = (struct oent){ dup, score, expires };
	}
out:
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return err;
}

static int mem_set_rank(int64_t *rank, size_t *count, registry *r, const char *set,
    const char *member, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, now, false);
	ssize_t at = oset_find(o, member);
	if (at < 0) {
		err = troop_error_set(TROOP_ENOTFOUND, "registry: not in the set");
	} else {
		const struct oent *me = &o->e[at];
		int64_t k = 0;
		for (size_t i = 0; i < o->n; i++)
			k += o->e[i].score < me->score || (o->e[i].score == me->score &&
			    strcmp(o->e[i].member, me->member) < 0);
		*rank = k;
		*count = o->n;
	}
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return err;
}

static int mem_set_remove(registry *r, const char *set, const char *member)
{
	struct mem_registry *m = mem_of(r);
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, 0, true);
	ssize_t at = oset_find(o, member);
	if (at < 0) {
		err = troop_error_set(TROOP_ENOTFOUND, "registry: not in the set");
	} else {
		free(o->e[at].member);
		o->e[at] = o->e[--o->n];
	}
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return err;
}

static int mem_set_count(size_t *count, registry *r, const char *set, int64_t now)
{
	struct mem_registry *m = mem_of(r);

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, now, false);
	*count = o ? o->n : 0;
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return 0;
}

static int mem_set_take_expired(char ***out, size_t *nout, registry *r, const char *set,
    int64_t now, size_t max)
{
	struct mem_registry *m = mem_of(r);
	char **arr = NULL;
	size_t n = 0;
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, 0, true);
	for (size_t i = 0; o != NULL && i < o->n && n < max;) {
		if (o->e[i].expires > now) {
			i++;
			continue;
		}
		if (arr == NULL && (arr = calloc(max, sizeof *arr)) == NULL) {
			err = nomem();
			break;
		}
		arr[n++] = o->e[i].member;
		o->e[i] = o->e[--o->n];
	}
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	*out = arr;
	*nout = n;
	return err;
}

static void mem_close(registry *r)
{
	struct mem_registry *m = mem_of(r);
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->node_heap.n; i++)
		mnode_free(node_of(m->node_heap.a[i]));
	free(m->node_heap.a);
	smap_free(&m->nodes);
	free_bucket_map(&m->by_name);
	free_bucket_map(&m->by_hash);
	expset_free(m->nonces);
	expset_free(m->rates);
	expset_free(m->kv);
	for (size_t b = 0; m->sets.b != NULL && b < m->sets.nb; b++) {
		for (struct sent *e = m->sets.b[b]; e != NULL; e = e->next) {
			struct oset *o = e->val;
			for (size_t i = 0; i < o->n; i++)
				free(o->e[i].member);
			free(o->e);
			free(o);
		}
	}
	smap_free(&m->sets);
	pthread_mutex_destroy(&m->sets_mu);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static int mem_open(registry **out, const char *target, const registry_opts *opts)
{
	(void)target;
	if (sodium_init() < 0)
		return troop_error_set(TROOP_ERR, "registry: libsodium failed to initialise");
	struct mem_registry *m = calloc(1, sizeof *m);
	if (m == NULL)
		return nomem();
	m->base.ops = &registry_memory_ops;
	m->opts = *opts;
	crypto_shorthash_keygen(m->seed);

	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&m->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&m->sets_mu, NULL);

	expset_opts no = { .max = opts->max_nonces, .what = "nonces",
		.owner_quota = { opts->nonce_quota_signer, opts->nonce_quota_addr } };
	expset_opts ro = { .max = opts->max_rate, .what = "rate-limit keys" };
	expset_opts ko = { .max = opts->max_kv, .what = "key/value entries",
		.owner_quota = { opts->kv_quota_owner, opts->kv_quota_addr } };
	if (smap_init(&m->nodes, 1024) != 0 || smap_init(&m->by_name, 256) != 0 ||
	    smap_init(&m->by_hash, 256) != 0 || smap_init(&m->sets, 64) != 0 ||
	    expset_new(&m->nonces, &no) != 0 ||
	    expset_new(&m->rates, &ro) != 0 || expset_new(&m->kv, &ko) != 0) {
		mem_close(&m->base);
		return nomem();
	}
	*out = &m->base;
	return 0;
}

const struct registry_ops registry_memory_ops = {
	.name = "memory",
	.open = mem_open,
	.close = mem_close,
	.put_node = mem_put_node,
	.remove_node = mem_remove_node,
	.get_node = mem_get_node,
	.find_nodes = mem_find_nodes,
	.list_nodes = mem_list_nodes,
	.models = mem_models,
	.add_active_job = mem_add_active_job,
	.set_facts = mem_set_facts,
	.count_nodes = mem_count_nodes,
	.sweep = mem_sweep,
	.nonce_check = mem_nonce_check,
	.rate_check = mem_rate_check,
	.kv_put = mem_kv_put,
	.kv_get = mem_kv_get,
	.set_add = mem_set_add,
	.set_rank = mem_set_rank,
	.set_remove = mem_set_remove,
	.set_count = mem_set_count,
	.set_take_expired = mem_set_take_expired,
};
