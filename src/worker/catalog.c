/*
 * catalog.c - engines and models served here (catalog.h).
 */
#include "catalog.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct catalog {
	pthread_mutex_t mu;
	engine_info *infos;
	size_t n;
	engine_model_list merged;   /* what is advertised */
	atomic_bool refresh_wanted; /* catalog_want_refresh */
};

int catalog_new(catalog **out)
{
	catalog *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the model catalog");
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void catalog_free(catalog *c)
{
	if (!c)
		return;
	engine_info_array_free(c->infos, c->n);
	engine_model_list_clear(&c->merged);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int engine_info_copy(engine_info *dst, const engine_info *src)
{
	int rc;

	*dst = *src;
	memset(&dst->models, 0, sizeof(dst->models));
	for (size_t i = 0; i < src->models.count; i++) {
		rc = engine_model_list_add(&dst->models, &src->models.items[i]);
		if (rc) {
			engine_info_clear(dst);
			return rc;
		}
	}
	return 0;
}

static bool same_models(const engine_model_list *a, const engine_model_list *b)
{
	if (a->count != b->count)
		return false;
	for (size_t i = 0; i < a->count; i++) {
		const engine_model *x = &a->items[i], *y = &b->items[i];
		if (strcmp(x->name, y->name) != 0 || strcmp(x->content_hash, y->content_hash) != 0 ||
		    x->size_bytes != y->size_bytes || x->engine != y->engine)
			return false;
	}
	return true;
}

int catalog_set(catalog *c, const engine_info *infos, size_t n, bool *changed)
{
	engine_info *copy = NULL;
	engine_model_list *lists = NULL, merged = { 0 };
	size_t done = 0;
	int rc = 0;

	if (n) {
		copy = calloc(n, sizeof(*copy));
		lists = calloc(n, sizeof(*lists));
		if (!copy || !lists) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory updating the model catalog");
			goto out;
		}
	}
	for (; done < n; done++) {
		rc = engine_info_copy(&copy[done], &infos[done]);
		if (rc)
			goto out;
		/* an engine that is not ready serves nothing now */
		if (copy[done].ready)
			lists[done] = copy[done].models;
	}
	rc = engine_models_merge(&merged, lists, n);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->mu);
	if (changed)
		*changed = !same_models(&merged, &c->merged);
	engine_info_array_free(c->infos, c->n);
	engine_model_list_clear(&c->merged);
	c->infos = copy;
	c->n = n;
	c->merged = merged;
	pthread_mutex_unlock(&c->mu);
	copy = NULL;
	done = 0;
	memset(&merged, 0, sizeof(merged));
out:
	if (copy) {
		for (size_t i = 0; i < done; i++)
			engine_info_clear(&copy[i]);
		free(copy);
	}
	engine_model_list_clear(&merged);
	free(lists);  /* borrowed the copies' items */
	return rc;
}

/* The model of e that `model` names, or NULL. */
static const engine_model *served(const engine_info *e, const char *model)
{
	if (!e->ready)
		return NULL;
	for (size_t i = 0; i < e->models.count; i++) {
		const engine_model *m = &e->models.items[i];
		if (strcmp(m->name, model) == 0 ||
		    (m->content_hash[0] && strcmp(m->content_hash, model) == 0))
			return m;
	}
	return NULL;
}

int catalog_resolve(catalog *c, const char *model, catalog_target *out)
{
	const engine_info *best = NULL;
	const engine_model *bm = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n; i++) {
		const engine_info *e = &c->infos[i];
		const engine_model *m = served(e, model);

		if (m && (!best || engine_prefer(e->type, best->type))) {
			best = e;
			bm = m;
		}
	}
	if (best) {
		snprintf(out->url, sizeof(out->url), "%s", best->url);
		out->type = best->type;
		snprintf(out->engine_name, sizeof(out->engine_name), "%s", bm->engine_name);
		snprintf(out->api_key, sizeof(out->api_key), "%s", best->api_key);
		out->endpoints = best->endpoints;
	} else {
		rc = TROOP_ENOMODEL;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc)
		return troop_error_set(rc, "model '%.200s' is not served here", model);
	return 0;
}

int catalog_lookup(catalog *c, const char *model, char *url, size_t urllen,
    engine_type *type)
{
	catalog_target t;
	int rc = catalog_resolve(c, model, &t);

	if (rc)
		return rc;
	snprintf(url, urllen, "%s", t.url);
	if (type)
		*type = t.type;
	sodium_memzero(&t, sizeof(t));
	return 0;
}

json_t *catalog_models_json(catalog *c)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; arr && i < c->merged.count; i++) {
		const engine_model *m = &c->merged.items[i];
		json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:s}", "name", m->name,
		    "content_hash", m->content_hash, "size_bytes", (json_int_t)m->size_bytes,
		    "engine", engine_type_name(m->engine)));
	}
	pthread_mutex_unlock(&c->mu);
	return arr;
}

json_t *catalog_engines_json(catalog *c)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; arr && i < c->n; i++) {
		const engine_info *e = &c->infos[i];
		json_array_append_new(arr, json_pack("{s:s, s:s, s:i}", "type",
		    engine_type_name(e->type), "version", e->version, "port", e->port));
	}
	pthread_mutex_unlock(&c->mu);
	return arr;
}

void catalog_want_refresh(catalog *c)
{
	atomic_store(&c->refresh_wanted, true);
}

bool catalog_take_refresh(catalog *c)
{
	return atomic_exchange(&c->refresh_wanted, false);
}

size_t catalog_model_count(catalog *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->merged.count;
	pthread_mutex_unlock(&c->mu);
	return n;
}

int catalog_engines_copy(catalog *c, engine_info **out, size_t *n)
{
	engine_info *copy = NULL;
	size_t i = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&c->mu);
	if (c->n) {
		copy = calloc(c->n, sizeof(*copy));
		if (!copy)
			rc = troop_error_set(TROOP_ENOMEM, "out of memory copying engines");
	}
	for (; !rc && i < c->n; i++)
		rc = engine_info_copy(&copy[i], &c->infos[i]);
	if (!rc) {
		*out = copy;
		*n = c->n;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc) {
		engine_info_array_free(copy, i);
		return rc;
	}
	return 0;
}
