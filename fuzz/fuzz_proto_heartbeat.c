/*
 * fuzz_proto_heartbeat.c - libFuzzer harness for the heartbeat decoder (src/lib/proto.h).
 * Any bytes: parsed as a request body is (json_parse_object), then
 * decoded; whatever decodes must encode to JSON that decodes to the same
 * struct (abort() otherwise).  Replayed by ctest over
 * fuzz/corpus/proto_heartbeat/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const proto_heartbeat *a, const proto_heartbeat *b)
{
	if (strcmp(a->node_id, b->node_id) || strcmp(a->name, b->name) ||
	    strcmp(a->tailscale_ip, b->tailscale_ip) || a->port != b->port ||
	    a->status != b->status || a->n_models != b->n_models ||
	    (a->n_models && memcmp(a->models, b->models, a->n_models * sizeof(*a->models))) ||
	    a->has_hardware != b->has_hardware ||
	    memcmp(&a->hardware, &b->hardware, sizeof(a->hardware)) ||
	    a->n_engines != b->n_engines ||
	    memcmp(a->engines, b->engines, sizeof(a->engines)) ||
	    strcmp(a->encryption_public_key, b->encryption_public_key) ||
	    strcmp(a->seal_key, b->seal_key) ||
	    a->active_jobs != b->active_jobs || a->max_jobs != b->max_jobs ||
	    strcmp(a->owner, b->owner) || strcmp(a->version, b->version))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_heartbeat a, b;
	json_t *in = NULL, *out, *extra;
	char *text;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_heartbeat_decode(&a, in, NULL) == 0) {
		out = proto_heartbeat_encode(&a);
		if (!out || proto_heartbeat_decode(&b, out, a.node_id) != 0)
			abort();
		same(&a, &b);
		/* what /peers republishes is bounded whatever was sent */
		extra = proto_heartbeat_extra_encode(&a);
		text = extra ? json_dump_compact(extra, NULL) : NULL;
		if (!text || strlen(text) > 16384)
			abort();
		free(text);
		json_decref(extra);
		json_decref(out);
		proto_heartbeat_clear(&a);
		proto_heartbeat_clear(&b);
	}
	json_decref(in);
	return 0;
}
