/*
 * fuzz_proto_heartbeat_reply.c - libFuzzer harness for the heartbeat reply decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_heartbeat_reply/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_heartbeat_reply, proto_heartbeat_reply_decode, proto_heartbeat_reply_encode)
