/*
 * fuzz_proto_poh_verify.c - libFuzzer harness for the proof-of-hardware verify request decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_poh_verify/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_poh_verify_req, proto_poh_verify_req_decode, proto_poh_verify_req_encode)
