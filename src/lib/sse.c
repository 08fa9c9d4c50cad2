/*
 * sse.c - incremental Server-Sent Events parser.
 *
 * It sits on the streaming path between an engine and a client, so it
 * work on the caller's chunk in place: whole lines inside a chunk are
 * handled straight from it (found with memchr, not byte by byte), and only
 * the unfinished tail of a chunk is copied into the line buffer.  Buffers
 * are allocated once and reused for every event; each is bounded by the
 * limit given at creation, over which feed fails with TROOP_ETOOLARGE.
 *
 * The SSE rules are those of the WHATWG HTML standard, section "Parsing an
 * event stream": one optional UTF-8 BOM at the very start; lines end at
 * CRLF, LF or CR (a CR ending one chunk and an LF starting the next are one
 * line end); a line starting with ':' is a comment; "name:value" with one
 * leading space of the value removed, or "name" alone with an empty value;
 * data lines are joined with "\n"; a blank line dispatches the event unless
 * its data is empty; the last event id persists across events.
 */
#include "sse.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "error.h"


/* Finds line ends in one chunk with memchr.  Streams from engines use LF,
 * so the next LF is looked up once and a CR is only searched for before
 * it; a CR-only stream then costs one memchr per line, not a rescan. */
struct eol_scan {
	const char *lf;      /* next LF at or after the cursor, or NULL */
	bool lf_known;
};

static const char *eol_next(struct eol_scan *sc, const char *p, const char *end)
{
	const char *cr;

	if (!sc->lf_known || (sc->lf && sc->lf < p)) {
		sc->lf = memchr(p, '\n', (size_t)(end - p));
		sc->lf_known = true;
	}
	cr = memchr(p, '\r', (size_t)((sc->lf ? sc->lf : end) - p));
	return cr ? cr : sc->lf;
}

/* ==== SSE ================================================================ */

struct sse_parser {
	size_t max_event;
	sse_event_fn fn;
	void *arg;
	dynbuf line;         /* unfinished line carried across chunks */
	dynbuf data;         /* data of the event being built, "\n"-joined */
	dynbuf event;        /* its event type */
	dynbuf id;           /* last event id; persists across events */
	unsigned bom_seen;   /* BOM bytes matched so far at stream start */
	bool started;        /* past the BOM check */
	bool skip_lf;        /* previous chunk ended with CR */
	int failed;          /* sticky result once feed failed or was stopped */
};

static const char sse_bom[3] = { '\xef', '\xbb', '\xbf' };

int sse_parser_new(sse_parser **out, size_t max_event, sse_event_fn fn, void *arg)
{
	sse_parser *p;

	*out = NULL;
	if (!fn || max_event == 0)
		return troop_error_set(TROOP_EINVAL,
		    "sse parser needs a callback and a non-zero max_event");
	p = calloc(1, sizeof(*p));
	if (!p)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	p->max_event = max_event;
	p->fn = fn;
	p->arg = arg;
	/* the limits are checked before each add, with messages of their own;
	 * the buffers' own limits are a backstop (the BOM may add 3 bytes) */
	dynbuf_init(&p->line, max_event + 3);
	dynbuf_init(&p->data, max_event);
	dynbuf_init(&p->event, max_event);
	dynbuf_init(&p->id, max_event);
	*out = p;
	return 0;
}

void sse_parser_free(sse_parser *p)
{
	if (!p)
		return;
	dynbuf_free(&p->line);
	dynbuf_free(&p->data);
	dynbuf_free(&p->event);
	dynbuf_free(&p->id);
	free(p);
}

static int sse_too_large(const sse_parser *p, const char *what)
{
	return troop_error_set(TROOP_ETOOLARGE,
	    "SSE %s is larger than %zu bytes", what, p->max_event);
}

static int sse_dispatch(sse_parser *p)
{
	int rc;

	if (dynbuf_len(&p->data) == 0) {
		dynbuf_reset(&p->event);
		return 0;
	}
	/* every data line appended a "\n"; the last one is not part of it */
	dynbuf_setlen(&p->data, dynbuf_len(&p->data) - 1);
	rc = p->fn(p->arg, dynbuf_ptr(&p->event), dynbuf_ptr(&p->data), dynbuf_len(&p->data),
	    dynbuf_ptr(&p->id));
	dynbuf_reset(&p->data);
	dynbuf_reset(&p->event);
	return rc;
}

static int sse_line(sse_parser *p, const char *s, size_t n)
{
	const char *colon, *val;
	size_t flen, vlen;

	if (n == 0)
		return sse_dispatch(p);
	if (n > p->max_event)
		return sse_too_large(p, "line");
	if (s[0] == ':')
		return 0;
	colon = memchr(s, ':', n);
	if (colon) {
		flen = (size_t)(colon - s);
		val = colon + 1;
		vlen = n - flen - 1;
		if (vlen && *val == ' ') {
			val++;
			vlen--;
		}
	} else {
		flen = n;
		val = s + n;
		vlen = 0;
	}
	switch (flen) {
	case 4:
		if (memcmp(s, "data", 4) == 0) {
			if (dynbuf_len(&p->data) + vlen + 1 > p->max_event)
				return sse_too_large(p, "event");
			int rc = dynbuf_add(&p->data, val, vlen);
			return rc != 0 ? rc : dynbuf_add(&p->data, "\n", 1);
		}
		break;
	case 5:
		if (memcmp(s, "event", 5) == 0) {
			dynbuf_reset(&p->event);
			return dynbuf_add(&p->event, val, vlen);
		}
		break;
	case 2:
		/* an id holding NUL is ignored, as the spec says */
		if (memcmp(s, "id", 2) == 0 && !memchr(val, '\0', vlen)) {
			dynbuf_reset(&p->id);
			return dynbuf_add(&p->id, val, vlen);
		}
		break;
	default:
		break;  /* "retry" and unknown fields: nothing to do here */
	}
	return 0;
}

int sse_parser_feed(sse_parser *p, const char *buf, size_t len)
{
	const char *s = buf, *end = buf + len;
	struct eol_scan sc = { NULL, false };
	int rc = 0;

	if (p->failed)
		return p->failed;
	if (!p->started) {
		while (s < end && p->bom_seen < 3 && *s == sse_bom[p->bom_seen]) {
			p->bom_seen++;
			s++;
		}
		if (p->bom_seen < 3 && s == end)
			return 0;   /* still could be a BOM */
		p->started = true;
		if (p->bom_seen < 3 && p->bom_seen > 0 &&
		    (rc = dynbuf_add(&p->line, sse_bom, p->bom_seen)) != 0)
			goto out;
	}
	if (p->skip_lf && s < end) {
		if (*s == '\n')
			s++;
		p->skip_lf = false;
	}
	while (s < end) {
		const char *eol = eol_next(&sc, s, end);

		if (!eol) {
			if (dynbuf_len(&p->line) + (size_t)(end - s) > p->max_event) {
				rc = sse_too_large(p, "line");
				goto out;
			}
			rc = dynbuf_add(&p->line, s, (size_t)(end - s));
			goto out;
		}
		if (dynbuf_len(&p->line)) {
			if (dynbuf_len(&p->line) + (size_t)(eol - s) > p->max_event) {
				rc = sse_too_large(p, "line");
				goto out;
			}
			if ((rc = dynbuf_add(&p->line, s, (size_t)(eol - s))) != 0)
				goto out;
			rc = sse_line(p, dynbuf_ptr(&p->line), dynbuf_len(&p->line));
			dynbuf_reset(&p->line);
		} else {
			rc = sse_line(p, s, (size_t)(eol - s));
		}
		if (*eol == '\r') {
			if (eol + 1 < end) {
				if (eol[1] == '\n')
					eol++;
			} else {
				p->skip_lf = true;
			}
		}
		s = eol + 1;
		if (rc != 0)
			goto out;
	}
out:
	if (rc != 0)
		p->failed = rc;
	return rc;
}

int sse_parser_finish(sse_parser *p)
{
	if (!p)
		return 0;
	/* an event without its blank line is dropped; the id is kept */
	dynbuf_reset(&p->line);
	dynbuf_reset(&p->data);
	dynbuf_reset(&p->event);
	return 0;
}
