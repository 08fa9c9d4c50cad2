/*
 * fuzz_usage.c - libFuzzer harness for the worker's token counter
 * (src/worker/job.h), which reads engine replies as they stream past.
 * For an event stream and for a JSON body alike, it must survive any
 * input and give the same counts whether the input comes whole, in two
 * chunks split at data[0] % size, or byte by byte; abort() otherwise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct counts {
	int64_t prompt, completion;
	bool reported;
};

static struct counts run(const char *p, size_t n, bool sse, int how)
{
	struct counts c = { 0, 0, false };
	usage_counter *u;

	if (usage_counter_new(&u, sse) != 0)
		abort();
	if (how == 0) {
		usage_counter_feed(u, p, n);
	} else if (how == 1) {
		size_t cut = n ? (unsigned char)p[0] % n : 0;
		usage_counter_feed(u, p, cut);
		usage_counter_feed(u, p + cut, n - cut);
	} else {
		for (size_t i = 0; i < n; i++)
			usage_counter_feed(u, p + i, 1);
	}
	usage_counter_result(u, &c.prompt, &c.completion, &c.reported);
	usage_counter_free(u);
	if (c.prompt < 0 || c.completion < 0)
		abort();
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;

	if (size > 256 * 1024)
		return 0;
	for (int sse = 0; sse < 2; sse++) {
		struct counts a = run(p, size, sse, 0);
		for (int how = 1; how < 3; how++) {
			struct counts b = run(p, size, sse, how);
			if (a.prompt != b.prompt || a.completion != b.completion ||
			    a.reported != b.reported)
				abort();
		}
	}
	return 0;
}
