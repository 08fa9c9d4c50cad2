/*
 * fuzz_proto_receipt.c - libFuzzer harness for the receipt decoder
 * (src/lib/proto.h): the round trip of fuzz_proto.h.  Replayed by ctest
 * over fuzz/corpus/proto_receipt/.
 */
#include "fuzz_proto.h"

FUZZ_PROTO_ROUNDTRIP(proto_receipt, proto_receipt_decode, proto_receipt_encode)
