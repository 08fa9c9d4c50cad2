/*
 * fuzz_proto_jwks.c - libFuzzer harness for the coordinator key set reader
 * (proto_jwks_decode, src/lib/proto.h; workers read it from
 * GET /.well-known/jwks.json): any bytes parsed as a reply body is, then
 * decoded; whatever decodes must encode to a set that decodes to the same
 * keys, in order (abort() otherwise), and never more than PROTO_JWKS_MAX.
 * Replayed by ctest over fuzz/corpus/proto_jwks/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_public_key a[PROTO_JWKS_MAX], b[PROTO_JWKS_MAX];
	size_t na = 0, nb = 0;
	json_t *in = NULL, *out;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	if (proto_jwks_decode(a, &na, in) == 0) {
		if (na > PROTO_JWKS_MAX)
			abort();
		out = proto_jwks_encode(a, na);
		if (!out || proto_jwks_decode(b, &nb, out) != 0 || nb != na ||
		    memcmp(a, b, na * sizeof(a[0])) != 0)
			abort();
		json_decref(out);
	}
	json_decref(in);
	return 0;
}
