/*
 * test_sse.c - the SSE parser and NDJSON splitter: the WHATWG event-stream
 * rules one by one, limits, and the property the streaming path relies on:
 * every engine fixture gives the same events whichever byte a chunk ends
 * at (split at every offset, and byte by byte), with LF, CRLF and CR line
 * ends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "json.h"
#include "sse.h"

/* ---- recording events --------------------------------------------------- */

struct ev {
	char *event;
	char *data;
	size_t data_len;
	char *id;
};

struct ev_list {
	struct ev *v;
	size_t n, cap;
	size_t stop_after;   /* return 7 from the callback after this many (0: never) */
};

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	assert_non_null(d);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static int ev_push(struct ev_list *l, const char *event, const char *data,
    size_t data_len, const char *id)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		assert_non_null(l->v);
	}
	l->v[l->n].event = dupn(event, strlen(event));
	l->v[l->n].data = dupn(data, data_len);
	l->v[l->n].data_len = data_len;
	l->v[l->n].id = dupn(id, strlen(id));
	l->n++;
	if (l->stop_after && l->n >= l->stop_after)
		return 7;
	return 0;
}

static int on_event(void *arg, const char *event, const char *data, size_t data_len,
    const char *id)
{
	assert_non_null(event);
	assert_non_null(data);
	assert_non_null(id);
	assert_int_equal(data[data_len], '\0');
	return ev_push(arg, event, data, data_len, id);
}

static void ev_list_free(struct ev_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].event);
		free(l->v[i].data);
		free(l->v[i].id);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static void assert_same_events(const struct ev_list *a, const struct ev_list *b,
    const char *what, size_t at)
{
	if (a->n != b->n)
		fail_msg("%s (split %zu): %zu events vs %zu", what, at, a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->v[i].event, b->v[i].event) != 0 ||
		    strcmp(a->v[i].id, b->v[i].id) != 0 ||
		    a->v[i].data_len != b->v[i].data_len ||
		    memcmp(a->v[i].data, b->v[i].data, a->v[i].data_len) != 0)
			fail_msg("%s (split %zu): event %zu differs: '%s' vs '%s'",
			    what, at, i, a->v[i].data, b->v[i].data);
	}
}

/* Feed `buf` in the chunks that end at cuts[0..ncut), then the rest, then
 * finish.  Returns the first non-zero feed result, else 0. */
static int sse_run(struct ev_list *out, size_t max_event, const char *buf, size_t len,
    const size_t *cuts, size_t ncut)
{
	sse_parser *p = NULL;
	size_t at = 0;
	int rc = 0;

	assert_int_equal(sse_parser_new(&p, max_event, on_event, out), 0);
	for (size_t i = 0; i < ncut && rc == 0; i++) {
		rc = sse_parser_feed(p, buf + at, cuts[i] - at);
		at = cuts[i];
	}
	if (rc == 0)
		rc = sse_parser_feed(p, buf + at, len - at);
	if (rc == 0)
		assert_int_equal(sse_parser_finish(p), 0);
	sse_parser_free(p);
	return rc;
}

static int sse_whole(struct ev_list *out, size_t max, const char *buf, size_t len)
{
	return sse_run(out, max, buf, len, NULL, 0);
}

static int sse_split(struct ev_list *out, size_t max, const char *buf, size_t len,
    size_t k)
{
	return sse_run(out, max, buf, len, &k, 1);
}

static int sse_bytewise(struct ev_list *out, size_t max, const char *buf, size_t len)
{
	sse_parser *p = NULL;
	int rc = 0;

	assert_int_equal(sse_parser_new(&p, max, on_event, out), 0);
	for (size_t i = 0; i < len && rc == 0; i++)
		rc = sse_parser_feed(p, buf + i, 1);
	if (rc == 0)
		sse_parser_finish(p);
	sse_parser_free(p);
	return rc;
}

/* Whole, every two-chunk split and byte by byte all agree (events and
 * result); the whole-feed events are left in *whole. */
static int sse_check_splits(struct ev_list *whole, size_t max, const char *buf,
    size_t len, const char *what)
{
	int rc = sse_whole(whole, max, buf, len);

	for (size_t k = 0; k <= len; k++) {
		struct ev_list l = { 0 };
		int r = sse_split(&l, max, buf, len, k);
		if (r != rc)
			fail_msg("%s: split at %zu returned %d, whole %d", what, k, r, rc);
		assert_same_events(whole, &l, what, k);
		ev_list_free(&l);
	}
	struct ev_list b = { 0 };
	assert_int_equal(sse_bytewise(&b, max, buf, len), rc);
	assert_same_events(whole, &b, what, (size_t)-1);
	ev_list_free(&b);
	return rc;
}

#define S(lit) lit, sizeof(lit) - 1

/* ---- fixtures ----------------------------------------------------------------- */

static void fixtures_dir(char *buf, size_t len)
{
	const char *d = getenv("TROOP_FIXTURES");
	const char *src = getenv("TROOP_SOURCE_DIR");

	if (d && *d)
		snprintf(buf, len, "%s", d);
	else
		snprintf(buf, len, "%s/../shared/fixtures/engines", src ? src : ".");
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static char *read_fixture(const char *name, size_t *len)
{
	char dir[1024], path[2048];

	fixtures_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return read_file(path, len);
}

/* Rewrite every LF of buf as `eol` (CRLF or CR). */
static char *with_eol(const char *buf, size_t len, const char *eol, size_t *outlen)
{
	size_t el = strlen(eol), o = 0;
	char *out = malloc(len * el + 1);

	assert_non_null(out);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			memcpy(out + o, eol, el);
			o += el;
		} else {
			out[o++] = buf[i];
		}
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

#define FIXTURE_MAX (64 * 1024)

static void test_fixtures_split_invariant(void **state)
{
	char dir[1024];
	DIR *d;
	struct dirent *e;
	size_t nfiles = 0, nsse = 0;

	(void)state;
	fixtures_dir(dir, sizeof(dir));
	d = opendir(dir);
	if (!d)
		fail_msg("fixtures directory %s not found (set TROOP_FIXTURES)", dir);
	while ((e = readdir(d))) {
		char path[2048];
		struct stat st;
		size_t len;
		char *buf;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		buf = read_file(path, &len);
		nfiles++;

		struct ev_list whole = { 0 };
		assert_int_equal(sse_check_splits(&whole, FIXTURE_MAX, buf, len, e->d_name), 0);
		if (ends_with(e->d_name, ".sse")) {
			nsse++;
			assert_true(whole.n > 0);
			/* the same stream with CRLF and CR line ends */
			const char *eols[] = { "\r\n", "\r" };
			for (size_t i = 0; i < 2; i++) {
				size_t vlen;
				char *v = with_eol(buf, len, eols[i], &vlen);
				struct ev_list ve = { 0 };
				assert_int_equal(sse_check_splits(&ve, FIXTURE_MAX, v, vlen,
				    e->d_name), 0);
				assert_same_events(&whole, &ve, e->d_name, (size_t)-1);
				ev_list_free(&ve);
				free(v);
			}
		}
		ev_list_free(&whole);

		free(buf);
	}
	closedir(d);
	assert_true(nfiles > 0);
	assert_true(nsse > 0);
}

/* The OpenAI stream: as many events as the file has data blocks (counted
 * here line by line, independently of the parser), each a JSON chunk, and
 * the last one "[DONE]". */
static void test_openai_stream_events(void **state)
{
	size_t len;
	char *buf = read_fixture("openai_chat_stream.sse", &len);
	char last[256] = "";
	size_t blocks = 0;
	bool in_block = false;
	struct ev_list l = { 0 };

	(void)state;
	for (char *line = buf, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);   /* the fixture ends with a blank line */
		*nl = '\0';
		if (*line == '\0') {
			blocks += in_block;
			in_block = false;
		} else if (strncmp(line, "data:", 5) == 0) {
			const char *v = line + 5 + (line[5] == ' ');
			in_block = true;
			snprintf(last, sizeof(last), "%s", v);
		}
		*nl = '\n';
	}
	assert_true(blocks > 1);
	assert_string_equal(last, "[DONE]");

	assert_int_equal(sse_whole(&l, FIXTURE_MAX, buf, len), 0);
	assert_int_equal(l.n, blocks);
	assert_string_equal(l.v[l.n - 1].data, "[DONE]");
	for (size_t i = 0; i + 1 < l.n; i++) {
		json_t *o = NULL;
		const char *obj = NULL;
		assert_string_equal(l.v[i].event, "");
		assert_int_equal(json_parse_object(&o, l.v[i].data, l.v[i].data_len), 0);
		assert_int_equal(json_get_str(&obj, o, "object", true), 0);
		assert_string_equal(obj, "chat.completion.chunk");
		json_decref(o);
	}
	ev_list_free(&l);
	free(buf);
}

/* ---- the rules one by one ------------------------------------------------------ */

static void test_basic_fields(void **state)
{
	struct ev_list l = { 0 };
	const char in[] =
	    "event: delta\n"
	    "data: one\n"
	    "\n"
	    "data:two\n"        /* no space after the colon */
	    "\n"
	    "data:  three\n"    /* only one space is stripped */
	    "retry: 100\n"
	    "x-unknown: y\n"
	    "\n";

	(void)state;
	assert_int_equal(sse_check_splits(&l, 1024, S(in), "basic"), 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].event, "delta");
	assert_string_equal(l.v[0].data, "one");
	assert_string_equal(l.v[1].event, "");   /* event type reset after dispatch */
	assert_string_equal(l.v[1].data, "two");
	assert_string_equal(l.v[2].data, " three");
	ev_list_free(&l);
}

static void test_multiline_data(void **state)
{
	struct ev_list l = { 0 };
	const char in[] = "data: a\ndata:b\ndata\n\ndata\n\n";

	(void)state;
	assert_int_equal(sse_check_splits(&l, 1024, S(in), "multiline"), 0);
	assert_int_equal(l.n, 2);
	/* "a", "b", "" joined by LF; only the final LF is removed */
	assert_int_equal(l.v[0].data_len, 4);
	assert_string_equal(l.v[0].data, "a\nb\n");
	/* "data" alone is a data field with an empty value: an empty event */
	assert_int_equal(l.v[1].data_len, 0);
	assert_string_equal(l.v[1].data, "");
	ev_list_free(&l);
}

static void test_comments_and_empty(void **state)
{
	struct ev_list l = { 0 };
	const char in[] =
	    ": keep-alive\n\n"
	    ":\n\n"
	    "event: lonely\n\n"      /* no data: nothing dispatched, type reset */
	    "data: x\n: comment inside\ndata: y\n\n";

	(void)state;
	assert_int_equal(sse_check_splits(&l, 1024, S(in), "comments"), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].event, "");
	assert_string_equal(l.v[0].data, "x\ny");
	ev_list_free(&l);
}

static void test_id_persists(void **state)
{
	struct ev_list l = { 0 };
	const char in[] =
	    "data: a\n\n"
	    "id: 7\ndata: b\n\n"
	    "data: c\n\n"
	    "id\ndata: d\n\n"
	    "id: 9\n\n"            /* no data, but the id still changes */
	    "data: e\n\n"
	    "id: x\0y\ndata: f\n\n";  /* an id with NUL is ignored */

	(void)state;
	assert_int_equal(sse_check_splits(&l, 1024, S(in), "id"), 0);
	assert_int_equal(l.n, 6);
	assert_string_equal(l.v[0].id, "");
	assert_string_equal(l.v[1].id, "7");
	assert_string_equal(l.v[2].id, "7");
	assert_string_equal(l.v[3].id, "");
	assert_string_equal(l.v[4].id, "9");
	assert_string_equal(l.v[5].id, "9");
	ev_list_free(&l);
}

static void test_line_ends(void **state)
{
	struct ev_list lf = { 0 }, crlf = { 0 }, cr = { 0 }, mixed = { 0 };

	(void)state;
	assert_int_equal(sse_check_splits(&lf, 1024,
	    S("data: a\ndata: b\n\ndata: c\n\n"), "lf"), 0);
	assert_int_equal(sse_check_splits(&crlf, 1024,
	    S("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"), "crlf"), 0);
	assert_int_equal(sse_check_splits(&cr, 1024,
	    S("data: a\rdata: b\r\rdata: c\r\r"), "cr"), 0);
	assert_int_equal(sse_check_splits(&mixed, 1024,
	    S("data: a\r\ndata: b\r\n\ndata: c\r\n"), "mixed"), 0);
	assert_int_equal(lf.n, 2);
	assert_string_equal(lf.v[0].data, "a\nb");
	assert_string_equal(lf.v[1].data, "c");
	assert_same_events(&lf, &crlf, "crlf", 0);
	assert_same_events(&lf, &cr, "cr", 0);
	/* "\r\n" then "\n": two line ends, hence a blank line */
	assert_int_equal(mixed.n, 1);
	assert_string_equal(mixed.v[0].data, "a\nb");
	ev_list_free(&lf);
	ev_list_free(&crlf);
	ev_list_free(&cr);
	ev_list_free(&mixed);
}

/* A CR ending one chunk and an LF starting the next are one line end; had
 * they been two, the blank line would have split "a" and "b" apart. */
static void test_cr_lf_across_chunks(void **state)
{
	struct ev_list l = { 0 };
	sse_parser *p = NULL;

	(void)state;
	assert_int_equal(sse_parser_new(&p, 1024, on_event, &l), 0);
	assert_int_equal(sse_parser_feed(p, S("data: a\r")), 0);
	assert_int_equal(sse_parser_feed(p, "", 0), 0);   /* empty chunk in between */
	assert_int_equal(sse_parser_feed(p, S("\ndata: b\r")), 0);
	assert_int_equal(sse_parser_feed(p, S("\n\r")), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].data, "a\nb");
	/* a CR then a non-LF: the CR alone was a line end */
	assert_int_equal(sse_parser_feed(p, S("data: c\r")), 0);
	assert_int_equal(sse_parser_feed(p, S("\r")), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[1].data, "c");
	sse_parser_free(p);
	ev_list_free(&l);
}

static void test_bom(void **state)
{
	struct ev_list a = { 0 }, b = { 0 }, c = { 0 };

	(void)state;
	assert_int_equal(sse_check_splits(&a, 1024,
	    S("\xef\xbb\xbf" "data: x\n\n"), "bom"), 0);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].data, "x");
	/* only one BOM is stripped: a second makes the field name unknown */
	assert_int_equal(sse_check_splits(&b, 1024,
	    S("\xef\xbb\xbf\xef\xbb\xbf" "data: x\n\ndata: y\n\n"), "bom2"), 0);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.v[0].data, "y");
	/* a partial BOM is part of the first line */
	assert_int_equal(sse_check_splits(&c, 1024,
	    S("\xef\xbb" "data: x\n\ndata: y\n\n"), "partial bom"), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.v[0].data, "y");
	ev_list_free(&a);
	ev_list_free(&b);
	ev_list_free(&c);
}

static void test_unterminated_event_dropped(void **state)
{
	struct ev_list a = { 0 }, b = { 0 };

	(void)state;
	assert_int_equal(sse_check_splits(&a, 1024, S("data: x\n\ndata: y\n"), "tail"), 0);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].data, "x");
	assert_int_equal(sse_check_splits(&b, 1024, S("data: x\n\ndata: y"), "tail2"), 0);
	assert_int_equal(b.n, 1);
	ev_list_free(&a);
	ev_list_free(&b);
}

/* Data of exactly the limit passes, one byte more is TROOP_ETOOLARGE, at
 * whichever byte the chunks end. */
static void test_event_limit(void **state)
{
	enum { MAX = 64, PER = 20 };
	char in[512];
	size_t n = 0;
	struct ev_list ok = { 0 }, big = { 0 }, line = { 0 };

	(void)state;
	/* 3 data lines of PER bytes: 3 * (PER + 1) = 63 buffered bytes */
	for (int i = 0; i < 3; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, "data:%.*s\n", PER,
		    "01234567890123456789012345");
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\n");
	assert_true(3 * (PER + 1) <= MAX);
	assert_int_equal(sse_check_splits(&ok, MAX, in, n, "limit ok"), 0);
	assert_int_equal(ok.n, 1);
	assert_int_equal(ok.v[0].data_len, 3 * (PER + 1) - 1);

	/* a fourth line goes over */
	n = 0;
	for (int i = 0; i < 4; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, "data:%.*s\n", PER,
		    "01234567890123456789012345");
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\n");
	assert_true(4 * (PER + 1) > MAX);
	assert_int_equal(sse_check_splits(&big, MAX, in, n, "limit over"),
	    TROOP_ETOOLARGE);
	assert_int_equal(big.n, 0);
	assert_non_null(strstr(troop_error_msg(), "64"));

	/* one line without an end, longer than the limit */
	memset(in, 'x', MAX + 1);
	assert_int_equal(sse_check_splits(&line, MAX, in, MAX + 1, "long line"),
	    TROOP_ETOOLARGE);
	/* ... and a line of exactly MAX bytes is fine */
	memcpy(in, "data:", 5);
	in[MAX] = '\n';
	in[MAX + 1] = '\n';
	ev_list_free(&line);
	assert_int_equal(sse_check_splits(&line, MAX, in, MAX + 2, "max line"), 0);
	assert_int_equal(line.n, 1);
	assert_int_equal(line.v[0].data_len, MAX - 5);
	ev_list_free(&ok);
	ev_list_free(&big);
	ev_list_free(&line);
}

static void test_error_is_sticky_and_stop(void **state)
{
	struct ev_list l = { 0 };
	sse_parser *p = NULL;
	char big[100];

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(sse_parser_new(&p, 50, on_event, &l), 0);
	assert_int_equal(sse_parser_feed(p, big, sizeof(big)), TROOP_ETOOLARGE);
	assert_int_equal(sse_parser_feed(p, S("\n\ndata: a\n\n")), TROOP_ETOOLARGE);
	assert_int_equal(l.n, 0);
	sse_parser_free(p);

	/* the callback stops the feed; its value comes back */
	l.stop_after = 1;
	assert_int_equal(sse_parser_new(&p, 50, on_event, &l), 0);
	assert_int_equal(sse_parser_feed(p, S("data: a\n\ndata: b\n\n")), 7);
	assert_int_equal(l.n, 1);
	assert_int_equal(sse_parser_feed(p, S("data: c\n\n")), 7);
	assert_int_equal(l.n, 1);
	sse_parser_free(p);
	ev_list_free(&l);

	assert_int_equal(sse_parser_new(&p, 0, on_event, &l), TROOP_EINVAL);
	assert_null(p);
	sse_parser_free(NULL);
	assert_int_equal(sse_parser_finish(NULL), 0);
}

/* Buffers are reused: a long stream of events keeps working. */
static void test_many_events(void **state)
{
	struct ev_list l = { 0 };
	sse_parser *p = NULL;
	char ev[64];

	(void)state;
	assert_int_equal(sse_parser_new(&p, 64, on_event, &l), 0);
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(ev, sizeof(ev), "data: %d\n\n", i);
		assert_int_equal(sse_parser_feed(p, ev, (size_t)n), 0);
	}
	assert_int_equal(l.n, 2000);
	assert_string_equal(l.v[1999].data, "1999");
	sse_parser_free(p);
	ev_list_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_split_invariant),
		cmocka_unit_test(test_openai_stream_events),
		cmocka_unit_test(test_basic_fields),
		cmocka_unit_test(test_multiline_data),
		cmocka_unit_test(test_comments_and_empty),
		cmocka_unit_test(test_id_persists),
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_cr_lf_across_chunks),
		cmocka_unit_test(test_bom),
		cmocka_unit_test(test_unterminated_event_dropped),
		cmocka_unit_test(test_event_limit),
		cmocka_unit_test(test_error_is_sticky_and_stop),
		cmocka_unit_test(test_many_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
