/*
 * up_prefetch.c - tickets fetched ahead (up_prefetch.h).
 *
 * A key is (model, capabilities, endpoint).  The context a request needs
 * grows over a conversation, so a ticket fetched ahead asks for more than
 * the last request did (half as much again, plus 1024 tokens), and a
 * request takes it only when it needs no more than that: the node it names
 * was chosen for at least that much.
 */
#include "up_prefetch.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct {
	bool used;                  /* the slot holds a key */
	char model[PROTO_MODEL_MAX + 1];
	uint32_t caps, endpoints;
	int64_t context;            /* what the next fetch asks for */
	int64_t last_seen;          /* the key's last request, unix seconds */
	bool fetching;
	bool ready;
	int64_t ticket_context;     /* what the ready ticket was asked for */
	proto_authorize_reply ticket;
} entry;

struct up_prefetch {
	pthread_mutex_t mu;
	int64_t idle_s;
	entry e[UP_PREFETCH_MAX];
};

int up_prefetch_new(up_prefetch **out, int64_t idle_s)
{
	up_prefetch *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the ticket pool");
	pthread_mutex_init(&p->mu, NULL);
	p->idle_s = idle_s;
	*out = p;
	return 0;
}

void up_prefetch_free(up_prefetch *p)
{
	if (!p)
		return;
	sodium_memzero(p->e, sizeof(p->e));
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static bool same_key(const entry *e, const proto_authorize_req *req)
{
	return e->used && e->caps == req->require.caps &&
	    e->endpoints == req->require.endpoints && strcmp(e->model, req->model) == 0;
}

static void drop_ticket(entry *e)
{
	sodium_memzero(&e->ticket, sizeof(e->ticket));
	e->ready = false;
}

/* The key's entry; with `make`, a new one (the least recently used slot
 * when full).  NULL when absent and not made. */
static entry *find(up_prefetch *p, const proto_authorize_req *req, bool make)
{
	entry *free_slot = NULL, *oldest = NULL;

	for (size_t i = 0; i < UP_PREFETCH_MAX; i++) {
		entry *e = &p->e[i];
		if (same_key(e, req))
			return e;
		if (!e->used && !free_slot)
			free_slot = e;
		if (e->used && !e->fetching && (!oldest || e->last_seen < oldest->last_seen))
			oldest = e;
	}
	if (!make)
		return NULL;
	if (!free_slot) {
		if (!oldest)
			return NULL;
		drop_ticket(oldest);
		free_slot = oldest;
	}
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->used = true;
	memcpy(free_slot->model, req->model, sizeof(free_slot->model));
	free_slot->caps = req->require.caps;
	free_slot->endpoints = req->require.endpoints;
	return free_slot;
}

bool up_prefetch_take(up_prefetch *p, const proto_authorize_req *req,
    proto_authorize_reply *out, int64_t now)
{
	bool got = false;
	entry *e;
	int64_t want;

	pthread_mutex_lock(&p->mu);
	e = find(p, req, true);
	if (e) {
		e->last_seen = now;
		if (e->ready && e->ticket.expires_at - now < UP_PREFETCH_MIN_LEFT_S)
			drop_ticket(e);
		if (e->ready && req->require.context <= e->ticket_context) {
			*out = e->ticket;
			drop_ticket(e);
			got = true;
		}
		/* the next fetch: room for the conversation to grow */
		want = req->require.context + req->require.context / 2 + 1024;
		if (req->require.context == 0)
			want = 0;
		if (want > PROTO_CONTEXT_MAX)
			want = PROTO_CONTEXT_MAX;
		if (want > e->context || req->require.context == 0)
			e->context = want;
		/* a ticket that no longer fits what the session needs */
		if (e->ready && e->ticket_context < req->require.context)
			drop_ticket(e);
	}
	pthread_mutex_unlock(&p->mu);
	return got;
}

bool up_prefetch_want(up_prefetch *p, const proto_authorize_req *req, int64_t now)
{
	bool want = false;
	entry *e;

	pthread_mutex_lock(&p->mu);
	e = find(p, req, false);
	if (e && !e->ready && !e->fetching && now - e->last_seen <= p->idle_s) {
		e->fetching = true;
		want = true;
	}
	pthread_mutex_unlock(&p->mu);
	return want;
}

/* The context the fetch for `req` asks for (0: none), read under the lock
 * by the caller building the fetch's body. */
static int64_t key_context(up_prefetch *p, const proto_authorize_req *req)
{
	entry *e = find(p, req, false);

	return e ? e->context : 0;
}

void up_prefetch_put(up_prefetch *p, const proto_authorize_req *req,
    const proto_authorize_reply *t, int64_t now)
{
	entry *e;

	(void)now;
	pthread_mutex_lock(&p->mu);
	e = find(p, req, false);
	if (e) {
		e->fetching = false;
		drop_ticket(e);
		e->ticket = *t;
		e->ticket_context = req->require.context;
		e->ready = true;
	}
	pthread_mutex_unlock(&p->mu);
}

void up_prefetch_failed(up_prefetch *p, const proto_authorize_req *req)
{
	entry *e;

	pthread_mutex_lock(&p->mu);
	e = find(p, req, false);
	if (e)
		e->fetching = false;
	pthread_mutex_unlock(&p->mu);
}

void up_prefetch_held(up_prefetch *p, int64_t *tickets, int64_t *credits)
{
	*tickets = 0;
	*credits = 0;
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < UP_PREFETCH_MAX; i++)
		if (p->e[i].used && p->e[i].ready) {
			(*tickets)++;
			*credits += p->e[i].ticket.estimated_cost;
		}
	pthread_mutex_unlock(&p->mu);
}

int64_t up_prefetch_context(up_prefetch *p, const proto_authorize_req *req)
{
	int64_t c;

	pthread_mutex_lock(&p->mu);
	c = key_context(p, req);
	pthread_mutex_unlock(&p->mu);
	return c;
}
