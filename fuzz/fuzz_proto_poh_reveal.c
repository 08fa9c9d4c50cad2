/*
 * fuzz_proto_poh_reveal.c - libFuzzer harness for the proof-of-hardware reveal decoder (src/lib/proto.h).
 * Any bytes: parsed as a request body is (json_parse_object), then
 * decoded; whatever decodes must encode to JSON that decodes to the same
 * struct (abort() otherwise).  Replayed by ctest over
 * fuzz/corpus/proto_poh_reveal/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_poh_reveal a, b;
	char id[PROTO_POH_ID_MAX + 1];
	json_t *in = NULL, *out;

	if (json_parse_object(&in, (const char *)data, size) != 0)
		return 0;
	(void)proto_poh_reveal_id(id, in);
	/* rows of 16 bytes (the smallest challenge), and of 32 */
	for (size_t n = 16; n <= 32; n += 16) {
		if (proto_poh_reveal_decode(&a, in, n) != 0)
			continue;
		out = proto_poh_reveal_encode(&a);
		if (!out || proto_poh_reveal_decode(&b, out, n) != 0 || a.n_rows != b.n_rows ||
		    strcmp(a.challenge_id, b.challenge_id) != 0)
			abort();
		for (size_t i = 0; i < a.n_rows; i++)
			if (a.rows[i].index != b.rows[i].index || a.rows[i].index >= n ||
			    a.rows[i].path_len != b.rows[i].path_len ||
			    memcmp(a.rows[i].row, b.rows[i].row, n) != 0 ||
			    memcmp(a.rows[i].path, b.rows[i].path,
			    a.rows[i].path_len * POH_HASH_LEN) != 0)
				abort();
		json_decref(out);
		proto_poh_reveal_clear(&a);
		proto_poh_reveal_clear(&b);
	}
	json_decref(in);
	return 0;
}
