/*
 * fuzz_proto_public_key.c - libFuzzer harness for the public key decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_public_key/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_public_key, proto_public_key_decode, proto_public_key_encode)
