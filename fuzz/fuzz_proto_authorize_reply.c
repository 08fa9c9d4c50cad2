/*
 * fuzz_proto_authorize_reply.c - libFuzzer harness for the authorize reply (ticket) decoder (src/lib/proto.h).
 * Any bytes: parsed as a request body is (json_parse_object), then
 * decoded; whatever decodes must encode to JSON that decodes to the same
 * struct (abort() otherwise).  Replayed by ctest over
 * fuzz/corpus/proto_authorize_reply/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_authorize_reply a, b;
	json_t *in = NULL, *out;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_authorize_reply_decode(&a, in) == 0) {
		out = proto_authorize_reply_encode(&a);
		if (!out || proto_authorize_reply_decode(&b, out) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
			abort();
		json_decref(out);
	}
	json_decref(in);
	return 0;
}
