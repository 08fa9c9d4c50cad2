/*
 * sse.h - incremental Server-Sent Events parser (WHATWG event-stream
 * rules: "data:"/"event:"/"id:" fields, optional single space after the
 * colon, comments, LF / CRLF / CR line ends, multi-line data joined with
 * "\n", an event dispatched at a blank line).
 *
 * Feed bytes in any split: the events are the same whichever byte a chunk
 * ends at.  Memory is bounded by max_event (bytes buffered for one event);
 * over it feed returns TROOP_ETOOLARGE.  Not thread-safe (one per stream).
 */
#ifndef TROOP_SSE_H
#define TROOP_SSE_H

#include <stddef.h>

/* One event.  `event` is "" when no event field was given ("message" by
 * the spec); `data` is NUL-terminated; `id` is the stream's last event id,
 * "" if none was seen.  All three are borrowed for the call only.  Return
 * non-zero to stop feeding (feed then returns that value). */
typedef int (*sse_event_fn)(void *arg, const char *event, const char *data,
    size_t data_len, const char *id);

typedef struct sse_parser sse_parser;

/* New parser in *out (free with sse_parser_free; NULL is fine).  Returns
 * 0, TROOP_EINVAL for a NULL fn or max_event 0, or TROOP_ENOMEM. */
int sse_parser_new(sse_parser **out, size_t max_event, sse_event_fn fn, void *arg);
void sse_parser_free(sse_parser *p);
/* Returns 0, TROOP_ETOOLARGE (a line or an event's data over max_event),
 * or the callback's non-zero value.  A failure is sticky: later feeds
 * return it again without parsing. */
int sse_parser_feed(sse_parser *p, const char *buf, size_t len);
/* End of stream: a pending event without its blank line is discarded, as
 * the spec says.  Returns 0. */
int sse_parser_finish(sse_parser *p);

#endif
