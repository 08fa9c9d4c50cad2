/*
 * fuzz_proto_poh_result.c - libFuzzer harness for the proof-of-hardware result decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_poh_result/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_poh_result, proto_poh_result_decode, proto_poh_result_encode)
