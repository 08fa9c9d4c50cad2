/*
 * fuzz_proto_poh_verify.c - libFuzzer harness for the proof-of-hardware verify request decoder (src/lib/proto.h).
 * Any bytes: parsed as a request body is (json_parse_object), then
 * decoded; whatever decodes must encode to JSON that decodes to the same
 * struct (abort() otherwise).  Replayed by ctest over
 * fuzz/corpus/proto_poh_verify/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_poh_verify_req a, b;
	json_t *in = NULL, *out;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_poh_verify_req_decode(&a, in) == 0) {
		out = proto_poh_verify_req_encode(&a);
		if (!out || proto_poh_verify_req_decode(&b, out) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
			abort();
		json_decref(out);
	}
	json_decref(in);
	return 0;
}
