/*
 * fuzz_proto_authorize_reply.c - libFuzzer harness for the authorize reply decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_authorize_reply/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_authorize_reply, proto_authorize_reply_decode, proto_authorize_reply_encode)
