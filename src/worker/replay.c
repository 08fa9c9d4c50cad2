/*
 * replay.c - the jti replay cache of replay.h: separate chaining over a
 * power-of-two table that doubles as it fills; a full sweep of expired
 * entries runs at most every REPLAY_SWEEP_S seconds, or at once when the
 * cache is full.
 */
#include "replay.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define REPLAY_MIN_BUCKETS 256
#define REPLAY_SWEEP_S 10
#define REPLAY_DEFAULT_MAX 1000000

struct entry {
	struct entry *next;
	int64_t until;
	char id[REPLAY_ID_MAX + 1];
};

struct replay_cache {
	pthread_mutex_t mu;
	struct entry **b;
	size_t nb;          /* buckets, a power of two */
	size_t n;           /* entries */
	size_t max;
	int64_t last_sweep;
};

static uint64_t hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

int replay_cache_new(replay_cache **out, size_t max_entries)
{
	replay_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the replay cache");
	c->nb = REPLAY_MIN_BUCKETS;
	c->b = calloc(c->nb, sizeof(*c->b));
	if (!c->b) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory for the replay cache");
	}
	c->max = max_entries ? max_entries : REPLAY_DEFAULT_MAX;
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void replay_cache_free(replay_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nb; i++) {
		struct entry *e = c->b[i];
		while (e) {
			struct entry *nx = e->next;
			free(e);
			e = nx;
		}
	}
	free(c->b);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void sweep(replay_cache *c, int64_t now)
{
	for (size_t i = 0; i < c->nb; i++) {
		struct entry **pp = &c->b[i];
		while (*pp) {
			struct entry *e = *pp;
			if (e->until <= now) {
				*pp = e->next;
				free(e);
				c->n--;
			} else {
				pp = &e->next;
			}
		}
	}
	c->last_sweep = now;
}

static void grow(replay_cache *c)
{
	size_t nb = c->nb * 2;
	struct entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return;  /* stay at this size: chains get longer, nothing breaks */
	for (size_t i = 0; i < c->nb; i++) {
		struct entry *e = c->b[i];
		while (e) {
			struct entry *nx = e->next;
			size_t k = hash(e->id) & (nb - 1);
			e->next = b[k];
			b[k] = e;
			e = nx;
		}
	}
	free(c->b);
	c->b = b;
	c->nb = nb;
}

int replay_cache_check(replay_cache *c, const char *id, int64_t until, int64_t now)
{
	size_t len = id ? strlen(id) : 0, k;
	struct entry *e;
	int rc = 0;

	if (len == 0 || len > REPLAY_ID_MAX)
		return troop_error_set(TROOP_EINVAL, "ticket jti is empty or longer than %d",
		    REPLAY_ID_MAX);
	pthread_mutex_lock(&c->mu);
	if (now - c->last_sweep >= REPLAY_SWEEP_S || c->n >= c->max)
		sweep(c, now);
	k = hash(id) & (c->nb - 1);
	for (e = c->b[k]; e; e = e->next) {
		if (strcmp(e->id, id) == 0) {
			if (e->until > now) {
				rc = troop_error_set(TROOP_ETICKET, "ticket already used (jti seen before)");
			} else {
				e->until = until;  /* expired entry: reuse it */
			}
			goto out;
		}
	}
	if (c->n >= c->max) {
		rc = troop_error_set(TROOP_ERATE, "too many tickets in use; try again shortly");
		goto out;
	}
	e = malloc(sizeof(*e));
	if (!e) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory recording a ticket");
		goto out;
	}
	memcpy(e->id, id, len + 1);
	e->until = until;
	e->next = c->b[k];
	c->b[k] = e;
	c->n++;
	if (c->n > c->nb * 2)
		grow(c);
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void replay_cache_forget(replay_cache *c, const char *id)
{
	struct entry **pp;

	if (!c || !id)
		return;
	pthread_mutex_lock(&c->mu);
	for (pp = &c->b[hash(id) & (c->nb - 1)]; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			struct entry *e = *pp;
			*pp = e->next;
			free(e);
			c->n--;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
}

size_t replay_cache_size(replay_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->n;
	pthread_mutex_unlock(&c->mu);
	return n;
}
