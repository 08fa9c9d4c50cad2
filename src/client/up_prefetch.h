/*
 * up_prefetch.h - tickets fetched ahead, so that the app's next request
 * of a session does not wait for the coordinator's round trip
 * (docs/ARCHITECTURE.md "Tickets fetched ahead").
 *
 * With --prefetch-idle N (off by default: it holds credits, see below),
 * when a request for a model has been authorized, `troop up` asks the
 * coordinator for one more ticket for the same model and the same
 * requirements (context, tools, images, endpoint), off the request's path,
 * and keeps it here.  The next request that asks exactly that takes it and
 * goes straight to the worker; taking it asks for the next one.  A model
 * no request asked for in --prefetch-idle seconds gets no new ticket.
 *
 * What it costs, bounded: at most one ticket per (model, requirements)
 * key, at most UP_PREFETCH_MAX keys (the least recently used goes), each
 * ticket holding its reservation (max_seconds at the node's multiplier)
 * until it is used or, unused, until it expires and the coordinator's
 * sweeper returns it (ticket TTL + max_seconds).  Its slot on the node is
 * held only for the coordinator's --unused-ticket seconds, like any
 * ticket's: a node does not look busy because of tickets waiting here.
 * A ticket whose node has gone or filled up meanwhile fails over like any
 * other (the worker is unreachable or answers 429), through a fresh
 * /authorize.
 *
 * Thread-safe: one mutex.
 */
#ifndef TROOP_UP_PREFETCH_H
#define TROOP_UP_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

#define UP_PREFETCH_MAX 16
#define UP_PREFETCH_MIN_LEFT_S 10  /* a ticket closer than this to expiry is not used */

typedef struct up_prefetch up_prefetch;

/* A pool whose keys stay active idle_s seconds after their last request.
 * 0, or TROOP_ENOMEM. */
int up_prefetch_new(up_prefetch **out, int64_t idle_s);

/* Wipe the tickets and free.  NULL is a no-op. */
void up_prefetch_free(up_prefetch *p);

/* A request `req` (its model and requirements; exclude and wait do not
 * count) arrives at `now`: if a ticket for it is ready, move it into *out,
 * leave the key empty and return true.  Either way the key is marked
 * active. */
bool up_prefetch_take(up_prefetch *p, const proto_authorize_req *req,
    proto_authorize_reply *out, int64_t now);

/* Whether a ticket should be fetched ahead for `req` now: the key is
 * active, holds no ticket and none is being fetched.  True marks it being
 * fetched: the caller then calls up_prefetch_put or up_prefetch_failed. */
bool up_prefetch_want(up_prefetch *p, const proto_authorize_req *req, int64_t now);

/* The ticket fetched ahead for `req` (copied; wiped from the pool when
 * taken or dropped). */
void up_prefetch_put(up_prefetch *p, const proto_authorize_req *req,
    const proto_authorize_reply *t, int64_t now);

/* The fetch for `req` failed (no capacity, no credits, ...): nothing is
 * kept; the next request asks normally. */
void up_prefetch_failed(up_prefetch *p, const proto_authorize_req *req);

/* Tickets held now and the credits they reserve (for /metrics and the
 * tests). */
void up_prefetch_held(up_prefetch *p, int64_t *tickets, int64_t *credits);

/* The context the next fetch for `req`'s key asks for (0: none). */
int64_t up_prefetch_context(up_prefetch *p, const proto_authorize_req *req);

#endif
