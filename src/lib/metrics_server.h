/*
 * metrics_server.h - GET /metrics on a listener of its own, for the roles
 * whose numbers are private (the worker, `troop up`): they reveal what the
 * owner runs and spends, so the listener is loopback-only unless the
 * operator says otherwise, and it is off unless --metrics-listen is given.
 *
 * One server thread, quiet (no log line per scrape); the page is rendered
 * by the role's callback on each scrape.
 */
#ifndef TROOP_METRICS_SERVER_H
#define TROOP_METRICS_SERVER_H

#include <stdbool.h>

#include "dynbuf.h"

typedef struct metrics_server metrics_server;

/* Appends the role's metrics to b; returns 0 or a troop_err.  Called on
 * the server thread, concurrently with the role's own threads. */
typedef int (*metrics_render_fn)(dynbuf *b, void *arg);

/* Bind `listen` ("127.0.0.1:9101", port 0 for any) and serve GET /metrics
 * from `render`.  A non-loopback address is refused with TROOP_EINVAL
 * (and a message naming `flag`) unless allow_remote.  Returns 0 and *out
 * (free with metrics_server_stop), or TROOP_EINVAL / TROOP_EIO. */
int metrics_server_start(metrics_server **out, const char *listen, bool allow_remote,
    const char *flag, metrics_render_fn render, void *arg);

/* The bound port. */
int metrics_server_port(const metrics_server *m);

/* Stop and free; NULL is fine.  No scrape runs after it returns. */
void metrics_server_stop(metrics_server *m);

#endif
