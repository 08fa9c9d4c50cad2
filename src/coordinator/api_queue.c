/*
 * api_queue.c - the wait queue as its clients see it (queue.h):
 *   GET /queue?model=M   signed by the asking account:
 *                        {"model","waiting","position"}, position being
 *                        where the account's latest waiting request for
 *                        M stands (1 = next), null when it has none.
 * `troop chat` asks while its /authorize waits, to show the position.
 */
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "error.h"
#include "json.h"
#include "proto.h"

static void h_queue(http_req *r, void *arg)
{
	coord *c = arg;
	char account[TROOP_ID_LEN + 1];
	const char *model;
	int64_t position = 0;
	size_t waiting = 0;
	int rc;

	if (coord_authenticate(r, account) != 0)
		return;
	model = http_req_query_param(r, "model");
	if (!model || !model[0] || strlen(model) > PROTO_MODEL_MAX) {
		coord_reply_error(r, TROOP_EINVAL, "query parameter 'model' is required (at most "
		    "%d bytes)", PROTO_MODEL_MAX);
		return;
	}
	rc = queue_position(&position, &waiting, c->reg, account, model, (int64_t)time(NULL));
	if (rc != 0) {
		coord_reply_last_error(r, rc);
		return;
	}
	coord_reply_json(r, 200, json_pack("{s:s, s:I, s:o}", "model", model,
	    "waiting", (json_int_t)waiting,
	    "position", position > 0 ? json_integer(position) : json_null()));
}

void api_queue_routes(http_server *s, coord *c)
{
	http_server_route(s, "GET", "/queue", h_queue, c);
}
