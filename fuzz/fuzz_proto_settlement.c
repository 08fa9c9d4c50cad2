/*
 * fuzz_proto_settlement.c - libFuzzer harness for the settlement reply decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_settlement/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_settlement, proto_settlement_decode, proto_settlement_encode)
