/*
 * fuzz_proto_node.c - libFuzzer harness for the node record decoder
 * (src/lib/proto.h), what /peers and /nodes/{id} write and clients read.
 * Any bytes: parsed as a body is (json_parse_object), then decoded;
 * whatever decodes must encode to JSON that decodes to the same record
 * (abort() otherwise).  Replayed by ctest over fuzz/corpus/proto_node/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_node a, b;
	json_t *in = NULL, *out;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_node_decode(&a, in) == 0) {
		out = proto_node_encode(&a);
		if (!out || proto_node_decode(&b, out) != 0)
			abort();
		if (strcmp(a.hb.node_id, b.hb.node_id) || a.hb.n_models != b.hb.n_models ||
		    (a.hb.n_models && memcmp(a.hb.models, b.hb.models,
		    a.hb.n_models * sizeof(*a.hb.models))) ||
		    a.hb.has_hardware != b.hb.has_hardware ||
		    memcmp(&a.hb.hardware, &b.hb.hardware, sizeof(a.hb.hardware)) ||
		    a.hb.n_engines != b.hb.n_engines || a.live != b.live ||
		    a.multiplier != b.multiplier || a.reputation != b.reputation ||
		    strcmp(a.hb.tailscale_ip, b.hb.tailscale_ip) || a.hb.port != b.hb.port ||
		    strcmp(a.hb.seal_key, b.hb.seal_key))
			abort();
		json_decref(out);
		proto_node_clear(&a);
		proto_node_clear(&b);
	}
	json_decref(in);
	return 0;
}
