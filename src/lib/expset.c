/*
 * expset.c - the expiring set of expset.h: one chained hash table of
 * entries, one of owner keys (with their live counts), and a min-heap of
 * entries by expiry, all under one mutex.  An owner record lives while
 * some entry counts against it.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "expset.h"

#define MIN_BUCKETS 64

/* The head of every table element. */
struct link {
	struct link *next;
	uint64_t h;
	const char *key;  /* in the element's own allocation */
};

struct table {
	struct link **b;
	size_t nb;  /* power of two */
	size_t n;
};

struct owner {
	struct link l;  /* first; key: "<slot>:<owner key>" */
	size_t live;
};

struct ent {
	struct link l;  /* first */
	int64_t at;
	size_t pos;     /* index in the heap */
	struct owner *own[EXPSET_OWNERS];
	int64_t count;
	size_t len;
	unsigned char *val;
};

struct expset {
	pthread_mutex_t mu;
	size_t max, quota[EXPSET_OWNERS];
	char what[32];
	unsigned char seed[crypto_shorthash_KEYBYTES];
	struct table ents, owners;
	struct ent **heap;
	size_t hn, hcap;
};

/* ---- hash table ------------------------------------------------------------- */

static uint64_t hash_of(const expset *s, const char *key)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)key, strlen(key), s->seed);
	memcpy(&h, out, sizeof(h));
	return h;
}

static int table_init(struct table *t)
{
	t->b = calloc(MIN_BUCKETS, sizeof(*t->b));
	t->nb = MIN_BUCKETS;
	t->n = 0;
	return t->b ? 0 : TROOP_ENOMEM;
}

static struct link *table_find(const struct table *t, const char *key, uint64_t h)
{
	for (struct link *e = t->b[h & (t->nb - 1)]; e; e = e->next)
		if (e->h == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void table_add(struct table *t, struct link *e)
{
	if (t->n >= t->nb) {
		size_t nb = t->nb * 2;
		struct link **b = calloc(nb, sizeof(*b));
		if (b) {  /* else keep the old table: only slower */
			for (size_t i = 0; i < t->nb; i++) {
				struct link *x = t->b[i];
				while (x) {
					struct link *next = x->next;
					x->next = b[x->h & (nb - 1)];
					b[x->h & (nb - 1)] = x;
					x = next;
				}
			}
			free(t->b);
			t->b = b;
			t->nb = nb;
		}
	}
	e->next = t->b[e->h & (t->nb - 1)];
	t->b[e->h & (t->nb - 1)] = e;
	t->n++;
}

static void table_del(struct table *t, struct link *e)
{
	struct link **pp = &t->b[e->h & (t->nb - 1)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	t->n--;
}

/* An element of `size` bytes followed by a copy of key; NULL if no memory. */
static void *elem_new(size_t size, const char *key, uint64_t h)
{
	size_t kl = strlen(key) + 1;
	struct link *l = calloc(1, size + kl);

	if (!l)
		return NULL;
	memcpy((char *)l + size, key, kl);
	l->key = (char *)l + size;
	l->h = h;
	return l;
}

/* ---- heap by expiry -------------------------------------------------------------- */

static void heap_set(expset *s, size_t i, struct ent *e)
{
	s->heap[i] = e;
	e->pos = i;
}

static void heap_up(expset *s, size_t i)
{
	struct ent *e = s->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (s->heap[p]->at <= e->at)
			break;
		heap_set(s, i, s->heap[p]);
		i = p;
	}
	heap_set(s, i, e);
}

static void heap_down(expset *s, size_t i)
{
	struct ent *e = s->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->hn)
			break;
		if (c + 1 < s->hn && s->heap[c + 1]->at < s->heap[c]->at)
			c++;
		if (e->at <= s->heap[c]->at)
			break;
		heap_set(s, i, s->heap[c]);
		i = c;
	}
	heap_set(s, i, e);
}

static int heap_reserve(expset *s)
{
	if (s->hn < s->hcap)
		return 0;
	size_t cap = s->hcap ? s->hcap * 2 : MIN_BUCKETS;
	struct ent **a = realloc(s->heap, cap * sizeof(*a));
	if (!a)
		return TROOP_ENOMEM;
	s->heap = a;
	s->hcap = cap;
	return 0;
}

static void heap_remove(expset *s, struct ent *e)
{
	size_t i = e->pos;
	struct ent *last = s->heap[--s->hn];

	if (i == s->hn)
		return;
	heap_set(s, i, last);
	heap_up(s, i);
	heap_down(s, last->pos);
}

static void heap_fix(expset *s, struct ent *e)
{
	heap_up(s, e->pos);
	heap_down(s, e->pos);
}

/* ---- entries and owners (lock held) ---------------------------------------------- */

static void owners_release(expset *s, struct ent *e)
{
	for (int i = 0; i < EXPSET_OWNERS; i++) {
		struct owner *o = e->own[i];
		if (!o)
			continue;
		e->own[i] = NULL;
		if (--o->live == 0) {
			table_del(&s->owners, &o->l);
			free(o);
		}
	}
}

static void ent_drop(expset *s, struct ent *e)
{
	table_del(&s->ents, &e->l);
	heap_remove(s, e);
	owners_release(s, e);
	free(e->val);
	free(e);
}

static size_t expire(expset *s, int64_t now)
{
	size_t k = 0;

	while (s->hn > 0 && s->heap[0]->at <= now) {
		ent_drop(s, s->heap[0]);
		k++;
	}
	return k;
}

/* The live entry of `key`, or NULL (expired ones were dropped already). */
static struct ent *ent_find(expset *s, const char *key)
{
	return (struct ent *)table_find(&s->ents, key, hash_of(s, key));
}

static bool owner_given(const char *o)
{
	return o != NULL && o[0] != '\0';
}

/* The owner table's key for owner key `o` of slot `slot`. */
static void slot_key(char out[EXPSET_KEY_MAX + 8], int slot, const char *o)
{
	snprintf(out, EXPSET_KEY_MAX + 8, "%d:%s", slot, o);
}

/* Check the owners' quotas for one more entry, skipping owners `keep`
 * already counts against (a replaced entry keeps its own share). */
static int quota_check(expset *s, const char *const owners[EXPSET_OWNERS],
    const struct ent *keep)
{
	char k[EXPSET_KEY_MAX + 8];

	for (int i = 0; owners && i < EXPSET_OWNERS; i++) {
		if (!owner_given(owners[i]) || s->quota[i] == 0)
			continue;
		slot_key(k, i, owners[i]);
		struct owner *o = (struct owner *)table_find(&s->owners, k, hash_of(s, k));
		bool mine = false;
		for (int j = 0; keep && j < EXPSET_OWNERS; j++)
			mine |= keep->own[j] == o && o != NULL;
		if (o && !mine && o->live >= s->quota[i])
			return troop_error_set(TROOP_ERATE, "too many live %s for one owner "
			    "(at most %zu)", s->what, s->quota[i]);
	}
	return 0;
}

/* Count `e` against `owners` (quotas already checked). */
static int owners_attach(expset *s, struct ent *e, const char *const owners[EXPSET_OWNERS])
{
	char k[EXPSET_KEY_MAX + 8];

	for (int i = 0; owners && i < EXPSET_OWNERS; i++) {
		if (!owner_given(owners[i]))
			continue;
		slot_key(k, i, owners[i]);
		uint64_t h = hash_of(s, k);
		struct owner *o = (struct owner *)table_find(&s->owners, k, h);
		if (!o) {
			if ((o = elem_new(sizeof(*o), k, h)) == NULL)
				return TROOP_ENOMEM;
			table_add(&s->owners, &o->l);
		}
		o->live++;
		e->own[i] = o;
	}
	return 0;
}

static int check_key(const expset *s, const char *key, int64_t at, int64_t now)
{
	(void)s;
	if (!key || !key[0] || strnlen(key, EXPSET_KEY_MAX + 1) > EXPSET_KEY_MAX)
		return troop_error_set(TROOP_EINVAL, "expset: key is empty or too long");
	if (at <= now)
		return troop_error_set(TROOP_EINVAL, "expset: expiry is not in the future");
	return 0;
}

static int check_owners(const char *const owners[EXPSET_OWNERS])
{
	for (int i = 0; owners && i < EXPSET_OWNERS; i++)
		if (owners[i] && strnlen(owners[i], EXPSET_KEY_MAX + 1) > EXPSET_KEY_MAX)
			return troop_error_set(TROOP_EINVAL, "expset: owner key is too long");
	return 0;
}

/* A new entry for `key` (absent), counted against `owners`.  Lock held. */
static int ent_add(struct ent **out, expset *s, const char *key,
    const char *const owners[EXPSET_OWNERS], int64_t at)
{
	struct ent *e;
	int rc;

	if (s->ents.n >= s->max)
		return troop_error_set(TROOP_EUNAVAIL, "too many live %s (at most %zu)", s->what,
		    s->max);
	if ((rc = quota_check(s, owners, NULL)) != 0)
		return rc;
	if (heap_reserve(s) != 0 || (e = elem_new(sizeof(*e), key, hash_of(s, key))) == NULL)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	if (owners_attach(s, e, owners) != 0) {
		owners_release(s, e);
		free(e);
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	e->at = at;
	table_add(&s->ents, &e->l);
	heap_set(s, s->hn++, e);
	heap_up(s, e->pos);
	*out = e;
	return 0;
}

/* ---- API ---------------------------------------------------------------------------- */

int expset_new(expset **out, const expset_opts *opts)
{
	expset *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	s->max = opts && opts->max ? opts->max : 1000000;
	for (int i = 0; opts && i < EXPSET_OWNERS; i++)
		s->quota[i] = opts->owner_quota[i];
	snprintf(s->what, sizeof(s->what), "%s", opts && opts->what ? opts->what : "entries");
	crypto_shorthash_keygen(s->seed);
	if (table_init(&s->ents) != 0 || table_init(&s->owners) != 0) {
		free(s->ents.b);
		free(s->owners.b);
		free(s);
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&s->mu, NULL);
	*out = s;
	return 0;
}

void expset_free(expset *s)
{
	if (!s)
		return;
	while (s->hn > 0)
		ent_drop(s, s->heap[0]);
	free(s->heap);
	free(s->ents.b);
	free(s->owners.b);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int expset_put(expset *s, const char *key, const char *const owners[EXPSET_OWNERS],
    const void *val, size_t len, int64_t at, unsigned flags, int64_t now)
{
	unsigned char *copy = NULL;
	struct ent *e;
	int rc;

	if ((rc = check_key(s, key, at, now)) != 0 || (rc = check_owners(owners)) != 0)
		return rc;
	if (len > 0 && (copy = malloc(len)) == NULL)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	if (len > 0)
		memcpy(copy, val, len);
	pthread_mutex_lock(&s->mu);
	expire(s, now);
	e = ent_find(s, key);
	if (e && (flags & EXPSET_NX)) {
		rc = troop_error_set(TROOP_ECONFLICT, "key is already present");
	} else if (e) {
		/* replace: the entry keeps its slot; its owners may change */
		if ((rc = quota_check(s, owners, e)) == 0) {
			struct ent tmp = { .own = { NULL } };
			if ((rc = owners_attach(s, &tmp, owners)) != 0) {
				owners_release(s, &tmp);
				rc = troop_error_set(TROOP_ENOMEM, "out of memory");
			} else {
				owners_release(s, e);
				memcpy(e->own, tmp.own, sizeof(e->own));
				free(e->val);
				e->val = copy;
				e->len = len;
				e->count = 0;
				e->at = at;
				heap_fix(s, e);
				copy = NULL;
			}
		}
	} else if ((rc = ent_add(&e, s, key, owners, at)) == 0) {
		e->val = copy;
		e->len = len;
		copy = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	free(copy);
	return rc;
}

int expset_incr(int64_t *count, expset *s, const char *key,
    const char *const owners[EXPSET_OWNERS], int64_t delta, int64_t at, int64_t now)
{
	struct ent *e;
	int rc;

	if ((rc = check_key(s, key, at, now)) != 0 || (rc = check_owners(owners)) != 0)
		return rc;
	pthread_mutex_lock(&s->mu);
	expire(s, now);
	e = ent_find(s, key);
	if (!e)
		rc = ent_add(&e, s, key, owners, at);
	if (rc == 0) {
		e->count += delta;
		if (count)
			*count = e->count;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int expset_get(void *buf, size_t cap, size_t *len, expset *s, const char *key, int64_t now,
    bool take)
{
	struct ent *e;
	int rc = 0;

	if (len)
		*len = 0;
	if (!key || !key[0])
		return troop_error_set(TROOP_EINVAL, "expset: key is empty");
	pthread_mutex_lock(&s->mu);
	expire(s, now);
	e = ent_find(s, key);
	if (!e) {
		rc = troop_error_set(TROOP_ENOTFOUND, "no such key");
	} else {
		if (len)
			*len = e->len;
		if (e->len > cap) {
			rc = troop_error_set(TROOP_ETOOLARGE, "value of %zu bytes does not fit in %zu",
			    e->len, cap);
		} else {
			if (e->len)
				memcpy(buf, e->val, e->len);
			if (take)
				ent_drop(s, e);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int expset_del(expset *s, const char *key, int64_t now)
{
	struct ent *e;
	int rc = 0;

	if (!key || !key[0])
		return troop_error_set(TROOP_EINVAL, "expset: key is empty");
	pthread_mutex_lock(&s->mu);
	expire(s, now);
	if ((e = ent_find(s, key)) != NULL)
		ent_drop(s, e);
	else
		rc = troop_error_set(TROOP_ENOTFOUND, "no such key");
	pthread_mutex_unlock(&s->mu);
	return rc;
}

size_t expset_sweep(expset *s, int64_t now)
{
	size_t k;

	pthread_mutex_lock(&s->mu);
	k = expire(s, now);
	pthread_mutex_unlock(&s->mu);
	return k;
}

size_t expset_size(expset *s)
{
	size_t n;

	pthread_mutex_lock(&s->mu);
	n = s->ents.n;
	pthread_mutex_unlock(&s->mu);
	return n;
}

int expset_foreach(expset *s, int64_t now, expset_fn fn, void *arg)
{
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	expire(s, now);
	for (size_t i = 0; i < s->hn && rc == 0; i++) {
		const struct ent *e = s->heap[i];
		rc = fn(e->l.key, e->at, e->len ? e->val : NULL, e->len, arg);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}
