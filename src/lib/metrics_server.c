/*
 * metrics_server.c - the private /metrics listener of metrics_server.h.
 */
#include "metrics_server.h"

#include <stdlib.h>

#include "config.h"
#include "error.h"
#include "http_server.h"
#include "prom.h"

struct metrics_server {
	http_server *srv;
	metrics_render_fn render;
	void *arg;
};

static void h_metrics(http_req *r, void *arg)
{
	metrics_server *m = arg;
	dynbuf b;
	int rc;

	dynbuf_init(&b, PROM_MAX_PAGE);
	rc = m->render(&b, m->arg);
	if (rc != 0) {
		dynbuf_free(&b);
		http_reply_error(r, rc, "cannot render the metrics");
		return;
	}
	http_reply(r, 200, PROM_CONTENT_TYPE, dynbuf_ptr(&b), dynbuf_len(&b));
	dynbuf_free(&b);
}

int metrics_server_start(metrics_server **out, const char *listen, bool allow_remote,
    const char *flag, metrics_render_fn render, void *arg)
{
	http_server_opts so = { 0 };
	metrics_server *m;
	int rc;

	*out = NULL;
	if (!allow_remote && !config_listen_is_loopback(listen))
		return troop_error_set(TROOP_EINVAL, "%s %s is not a loopback address: the "
		    "metrics reveal this machine's usage (to serve them to other machines, "
		    "add %s-allow-remote)", flag, listen, flag);
	m = calloc(1, sizeof(*m));
	if (!m)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	m->render = render;
	m->arg = arg;
	so.listen = listen;
	so.threads = 1;
	so.max_body = 1024;
	so.name = "metrics";
	so.quiet = true;
	so.max_conns = 64;
	if ((rc = http_server_new(&m->srv, &so)) != 0 ||
	    (rc = http_server_route(m->srv, "GET", "/metrics", h_metrics, m)) != 0 ||
	    (rc = http_server_start(m->srv)) != 0) {
		http_server_free(m->srv);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int metrics_server_port(const metrics_server *m)
{
	return http_server_port(m->srv);
}

void metrics_server_stop(metrics_server *m)
{
	if (!m)
		return;
	http_server_stop(m->srv);
	http_server_free(m->srv);
	free(m);
}
