/*
 * fuzz_proto_poh_verify_reply.c - libFuzzer harness for the proof-of-hardware verify reply decoder (src/lib/proto.h).
 * Any bytes: parsed as a request body is (json_parse_object), then
 * decoded; whatever decodes must encode to JSON that decodes to the same
 * struct (abort() otherwise).  Replayed by ctest over
 * fuzz/corpus/proto_poh_verify_reply/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_poh_verify_reply a, b;
	json_t *in = NULL, *out;
	/* the row count the indices must stay below: from the first byte */
	size_t n = size ? (size_t)data[0] * 64 + 1 : 1;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_poh_verify_reply_decode(&a, in, n) == 0) {
		for (size_t i = 0; i < a.n_indices; i++)
			if (a.indices[i] >= n)
				abort();
		out = proto_poh_verify_reply_encode(&a);
		if (!out || proto_poh_verify_reply_decode(&b, out, n) != 0 ||
		    memcmp(&a, &b, sizeof(a)) != 0)
			abort();
		json_decref(out);
	}
	json_decref(in);
	return 0;
}
