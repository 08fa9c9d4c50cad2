/*
 * fuzz_proto.h - the round trip every flat proto.h message must survive,
 * written once for the fuzz_proto_*.c harnesses: any bytes are parsed as
 * a request body is (json_parse_object), then decoded; whatever decodes
 * must encode to JSON that decodes to the same struct, byte for byte
 * (abort() otherwise).  For messages without pointers inside (the
 * decoders zero the whole struct first, padding included).
 *
 *   FUZZ_PROTO_ROUNDTRIP(proto_receipt, proto_receipt_decode, proto_receipt_encode)
 *
 * defines LLVMFuzzerTestOneInput.
 */
#ifndef TROOP_FUZZ_PROTO_H
#define TROOP_FUZZ_PROTO_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_PROTO_ROUNDTRIP(TYPE, DECODE, ENCODE)                                      \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                    \
	{                                                                               \
		TYPE a, b;                                                              \
		json_t *in = NULL, *out;                                                \
                                                                                        \
		if (json_parse_object(&in, (const char *)data, size) != 0)              \
			return 0;                                                       \
		if (DECODE(&a, in) == 0) {                                              \
			out = ENCODE(&a);                                               \
			if (!out || DECODE(&b, out) != 0 || memcmp(&a, &b, sizeof(a)) != 0) \
				abort();                                                \
			json_decref(out);                                               \
		}                                                                       \
		json_decref(in);                                                        \
		return 0;                                                               \
	}

#endif
