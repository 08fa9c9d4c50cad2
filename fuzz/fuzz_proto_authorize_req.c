/*
 * fuzz_proto_authorize_req.c - libFuzzer harness for the authorize request decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_authorize_req/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_authorize_req, proto_authorize_req_decode, proto_authorize_req_encode)
