/*
 * bench_client_load.c - the load generator of bench/bench_client.sh: an
 * OpenAI-style app issuing streamed chat completions (libcurl multi, one
 * keep-alive pool), timing them and checking every event.
 *
 *   bench_client_load ttfb N URL...
 *       N requests to each URL, one at a time, interleaved across the
 *       URLs: the time from sending each to its first body byte (the
 *       app's time to first byte).
 *   bench_client_load stream URL STREAMS TOKENS REF_URL
 *       first STREAMS streams at once straight to REF_URL (the engine) as
 *       the reference, then STREAMS at once to URL with the same prompts
 *       (one per stream, all different): each must carry exactly the
 *       reference's content deltas, in order, and end with [DONE].
 *       Lost, extra or reordered events are counted per stream.
 *   bench_client_load throughput STREAMS TOKENS ROUNDS URL...
 *       STREAMS streams of TOKENS tokens at once, as fast as they come,
 *       to each URL in turn, ROUNDS times: median tokens per second.
 *
 * Prints one JSON object on stdout.  Not part of the product: a bench
 * tool built by the script against the build's libtroop (for the SSE
 * parser).
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sse.h"

#define MAX_STREAMS 4096

typedef struct {
	CURL *e;
	struct curl_slist *hdrs;
	char body[512];
	sse_parser *sse;
	int64_t t_start, t_first, t_end;
	uint64_t bytes;
	size_t events;          /* non-empty content deltas (tokens) */
	char **deltas;          /* recorded (reference) or NULL */
	size_t ndeltas, cap;
	bool record;
	bool done;              /* [DONE] seen, and no error event */
	long status;
	bool failed;            /* an error event came */
	/* checking against a reference */
	char **ref;
	size_t nref;
	size_t pos;             /* next expected delta */
	size_t mismatches;
} stream;

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int on_event(void *arg, const char *event, const char *data, size_t len,
    const char *id)
{
	stream *s = arg;
	json_t *v;
	const char *c;

	(void)event;
	(void)id;
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		s->done = !s->failed;
		return 0;
	}
	v = json_loadb(data, len, 0, NULL);
	if (json_object_get(v, "error")) {
		/* a relay's error event: the stream failed, whatever follows */
		s->failed = true;
		fprintf(stderr, "bench_client_load: error event: %.*s\n", (int)len, data);
	}
	c = json_string_value(json_object_get(json_object_get(json_array_get(
	    json_object_get(v, "choices"), 0), "delta"), "content"));
	if (c) {
		if (*c)
			s->events++;
		if (s->record) {
			if (s->ndeltas == s->cap) {
				s->cap = s->cap ? s->cap * 2 : 64;
				s->deltas = realloc(s->deltas, s->cap * sizeof(*s->deltas));
			}
			s->deltas[s->ndeltas++] = strdup(c);
		} else if (s->ref) {
			if (s->pos >= s->nref || strcmp(s->ref[s->pos], c) != 0)
				s->mismatches++;
			s->pos++;
		}
	}
	json_decref(v);
	return 0;
}

static size_t on_write(char *data, size_t sz, size_t n, void *arg)
{
	stream *s = arg;

	if (!s->t_first)
		s->t_first = now_us();
	s->bytes += sz * n;
	if (sse_parser_feed(s->sse, data, sz * n) != 0)
		return 0;
	return sz * n;
}

static void stream_setup(stream *s, const char *url, const char *authz, int idx,
    long tokens)
{
	memset(s->body, 0, sizeof(s->body));
	snprintf(s->body, sizeof(s->body), "{\"model\":\"llama3:8b\",\"stream\":true,"
	    "\"max_tokens\":%ld,\"messages\":[{\"role\":\"user\",\"content\":"
	    "\"bench stream %d says hello\"}]}", tokens, idx);
	if (!s->e)
		s->e = curl_easy_init();
	curl_slist_free_all(s->hdrs);
	s->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (authz)
		s->hdrs = curl_slist_append(s->hdrs, authz);
	sse_parser_free(s->sse);
	sse_parser_new(&s->sse, 1 << 20, on_event, s);
	curl_easy_setopt(s->e, CURLOPT_URL, url);
	curl_easy_setopt(s->e, CURLOPT_HTTPHEADER, s->hdrs);
	curl_easy_setopt(s->e, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(s->e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(s->e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(s->e, CURLOPT_TIMEOUT, 300L);
	s->t_start = s->t_first = s->t_end = 0;
	s->bytes = 0;
	s->events = 0;
	s->done = false;
	s->failed = false;
	s->pos = 0;
	s->mismatches = 0;
}

/* Run the streams at once; returns when all are done. */
static void run_all(CURLM *m, stream *ss, int n)
{
	int running = 0;

	for (int i = 0; i < n; i++) {
		ss[i].t_start = now_us();
		curl_multi_add_handle(m, ss[i].e);
	}
	do {
		CURLMsg *msg;
		int left;
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			for (int i = 0; i < n; i++)
				if (ss[i].e == msg->easy_handle) {
					ss[i].t_end = now_us();
					curl_easy_getinfo(ss[i].e, CURLINFO_RESPONSE_CODE, &ss[i].status);
					if (msg->data.result != CURLE_OK)
						ss[i].status = -(long)msg->data.result;
				}
			curl_multi_remove_handle(m, msg->easy_handle);
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	} while (running);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, int n, double p)
{
	int i = (int)(p * (n - 1) + 0.5);

	return v[i < n ? i : n - 1];
}

/* N requests to each URL, one at a time, interleaved (url1, url2, ...,
 * url1, ...) so that every path sees the same machine; each URL keeps its
 * own keep-alive connection. */
static int mode_ttfb(int n, int nurls, char **urls)
{
	CURLM *m = curl_multi_init();
	stream *s = calloc((size_t)nurls, sizeof(*s));
	int64_t **ttfb = calloc((size_t)nurls, sizeof(*ttfb));
	int *bad = calloc((size_t)nurls, sizeof(*bad));
	int anybad = 0;

	for (int u = 0; u < nurls; u++)
		ttfb[u] = calloc((size_t)n, sizeof(int64_t));
	for (int i = 0; i < 20 + n; i++) {   /* 20 to warm up */
		for (int u = 0; u < nurls; u++) {
			stream_setup(&s[u], urls[u], NULL, i, 4);
			run_all(m, &s[u], 1);
			if (s[u].status != 200 || !s[u].done)
				bad[u]++;
			if (i >= 20)
				ttfb[u][i - 20] = s[u].t_first - s[u].t_start;
		}
	}
	printf("[");
	for (int u = 0; u < nurls; u++) {
		qsort(ttfb[u], (size_t)n, sizeof(int64_t), cmp_i64);
		printf("%s{\"url\":\"%s\",\"requests\":%d,\"failed\":%d,\"ttfb_p50_us\":%lld,"
		    "\"ttfb_p90_us\":%lld,\"ttfb_p99_us\":%lld}", u ? "," : "", urls[u], n, bad[u],
		    (long long)pct(ttfb[u], n, 0.5), (long long)pct(ttfb[u], n, 0.9),
		    (long long)pct(ttfb[u], n, 0.99));
		anybad |= bad[u];
		curl_easy_cleanup(s[u].e);
		curl_slist_free_all(s[u].hdrs);
		sse_parser_free(s[u].sse);
		free(ttfb[u]);
	}
	printf("]\n");
	curl_multi_cleanup(m);
	free(ttfb);
	free(bad);
	free(s);
	return anybad ? 1 : 0;
}

static int mode_stream(const char *url, int n, long tokens, const char *ref_url)
{
	CURLM *m = curl_multi_init();
	stream *ref = calloc((size_t)n, sizeof(*ref)), *ss = calloc((size_t)n, sizeof(*ss));
	size_t lost = 0, extra = 0, reordered = 0, bad_streams = 0, events = 0, expected = 0;
	int64_t t0, t1;

	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	for (int i = 0; i < n; i++) {
		ref[i].record = true;
		stream_setup(&ref[i], ref_url, NULL, i, tokens);
	}
	run_all(m, ref, n);
	for (int i = 0; i < n; i++) {
		stream_setup(&ss[i], url, NULL, i, tokens);
		ss[i].ref = ref[i].deltas;
		ss[i].nref = ref[i].ndeltas;
	}
	t0 = now_us();
	run_all(m, ss, n);
	t1 = now_us();
	for (int i = 0; i < n; i++) {
		stream *s = &ss[i];
		expected += ref[i].ndeltas;
		events += s->events;
		if (s->pos < s->nref)
			lost += s->nref - s->pos;
		if (s->pos > s->nref)
			extra += s->pos - s->nref;
		/* a delta in the wrong place that was not simply missing at the end */
		reordered += s->mismatches;
		if (s->status != 200 || !s->done || s->mismatches || s->pos != s->nref ||
		    ref[i].status != 200 || !ref[i].done)
			bad_streams++;
	}
	printf("{\"streams\":%d,\"tokens\":%ld,\"events_expected\":%zu,\"events_received\":%zu,"
	    "\"lost\":%zu,\"extra\":%zu,\"out_of_place\":%zu,\"bad_streams\":%zu,"
	    "\"wall_ms\":%.1f}\n", n, tokens, expected, events, lost, extra, reordered,
	    bad_streams, (double)(t1 - t0) / 1000.0);
	curl_multi_cleanup(m);
	return bad_streams ? 1 : 0;
}

/* ROUNDS rounds; in each, STREAMS streams of TOKENS tokens at once to
 * each URL in turn.  Reports the median tokens/s per URL. */
static int mode_throughput(int n, long tokens, int rounds, int nurls, char **urls)
{
	CURLM *m = curl_multi_init();
	stream *ss = calloc((size_t)n, sizeof(*ss));
	int64_t *rate = calloc((size_t)(nurls * rounds), sizeof(*rate));
	double *mbs = calloc((size_t)(nurls * rounds), sizeof(*mbs));
	int bad = 0;

	for (int r = -1; r < rounds; r++) {      /* round -1 warms up */
		for (int u = 0; u < nurls; u++) {
			uint64_t bytes = 0, events = 0;
			int64_t t0, t1;
			for (int i = 0; i < n; i++)
				stream_setup(&ss[i], urls[u], NULL, i, r < 0 ? 4 : tokens);
			t0 = now_us();
			run_all(m, ss, n);
			t1 = now_us();
			for (int i = 0; i < n; i++) {
				bytes += ss[i].bytes;
				events += ss[i].events;
				if (ss[i].status != 200 || !ss[i].done ||
				    ss[i].events != (size_t)(r < 0 ? 4 : tokens)) {
					bad++;
					fprintf(stderr, "bench_client_load: %s: status %ld, %zu tokens, "
					    "%s\n", urls[u], ss[i].status, ss[i].events,
					    ss[i].done ? "[DONE]" : "no [DONE]");
				}
			}
			if (r >= 0) {
				rate[u * rounds + r] = (int64_t)((double)events * 1e6 / (double)(t1 - t0));
				mbs[u * rounds + r] = (double)bytes / (double)(t1 - t0);
			}
		}
	}
	printf("[");
	for (int u = 0; u < nurls; u++) {
		int64_t *v = rate + u * rounds;
		qsort(v, (size_t)rounds, sizeof(*v), cmp_i64);
		printf("%s{\"url\":\"%s\",\"streams\":%d,\"tokens\":%ld,\"rounds\":%d,"
		    "\"tokens_per_s_median\":%lld,\"tokens_per_s_min\":%lld,\"tokens_per_s_max\":%lld}",
		    u ? "," : "", urls[u], n, tokens, rounds, (long long)v[rounds / 2],
		    (long long)v[0], (long long)v[rounds - 1]);
	}
	printf("]\n");
	if (bad)
		fprintf(stderr, "bench_client_load: %d streams failed or came short\n", bad);
	curl_multi_cleanup(m);
	free(rate);
	free(mbs);
	free(ss);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (argc >= 4 && strcmp(argv[1], "ttfb") == 0)
		rc = mode_ttfb(atoi(argv[2]), argc - 3, argv + 3);
	else if (argc >= 6 && strcmp(argv[1], "stream") == 0)
		rc = mode_stream(argv[2], atoi(argv[3]), atol(argv[4]), argv[5]);
	else if (argc >= 6 && strcmp(argv[1], "throughput") == 0)
		rc = mode_throughput(atoi(argv[2]), atol(argv[3]), atoi(argv[4]), argc - 5, argv + 5);
	else
		fprintf(stderr, "usage: bench_client_load ttfb N URL...\n"
		    "       bench_client_load stream URL STREAMS TOKENS REF_URL\n"
		    "       bench_client_load throughput STREAMS TOKENS ROUNDS URL...\n");
	curl_global_cleanup();
	return rc;
}
