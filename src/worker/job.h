/*
 * job.h - what the worker records about each job it serves, and the token
 * counter that reads usage out of the engine's reply as it streams past.
 *
 * A job is one ticketed request relayed to an engine.  Its record (who
 * asked, which model, how long, how many tokens, how it ended) becomes the
 * signed receipt of DESIGN.md section 7 (receipts.h).
 *
 * Token counting never changes the request or the reply: the body goes to
 * the engine byte for byte, so a streamed chat carries a usage chunk only
 * when the client asked for one ("stream_options":{"include_usage":true}).
 *   - When the engine reports usage (the "usage" object of a JSON reply or
 *     of any SSE event), those counts are used (usage_reported true).
 *   - Otherwise, for an event stream, each event whose choices carry a
 *     non-empty "content" (chat) or "text" (completions) string counts as
 *     one completion token, and prompt tokens are 0.  Engines send one
 *     event per token, so this is the generated token count in practice.
 * The counter keeps bounded state: the SSE parser (one event at most,
 * JOB_MAX_EVENT bytes) and, for other bodies, the last JOB_TAIL bytes, in
 * which the usage object of an OpenAI reply sits (it is the last field).
 */
#ifndef TROOP_WORKER_JOB_H
#define TROOP_WORKER_JOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"

#define JOB_ID_MAX 64
#define JOB_MODEL_MAX 256
#define JOB_MAX_EVENT (1024u * 1024)
#define JOB_TAIL 16384

typedef enum {
	JOB_OK = 0,        /* the engine's reply was relayed to its end */
	JOB_ERROR,         /* the engine failed or answered an error */
	JOB_CUT_OFF,       /* stopped at the ticket's max_seconds */
	JOB_CLIENT_GONE,   /* the requester disconnected first */
	JOB_REJECTED,      /* a valid ticket refused because the node was full */
	JOB_ENGINE_ERROR,  /* the engine answered an error, or failed, before
	                    * producing any output: not charged */
} job_outcome;

typedef struct {
	char job_id[JOB_ID_MAX + 1];          /* the ticket's jti */
	char requester[TROOP_ID_LEN + 1];     /* the ticket's sub */
	char model[JOB_MODEL_MAX];
	int64_t started_at_ms;                /* unix time, milliseconds */
	int64_t ended_at_ms;
	int64_t duration_ms;                  /* monotonic clock */
	int64_t prompt_tokens;
	int64_t completion_tokens;
	bool usage_reported;                  /* counts came from the engine */
	int status;                           /* HTTP status sent, 0 if none */
	job_outcome outcome;
	char response_digest[65];             /* SHA-256, lowercase hex, of the body
	                                         sent to the requester; "" none */
} worker_job;

/* "ok", "error", "cut_off", "client_gone", "rejected", "engine_error".
 * Static string. */
const char *job_outcome_name(job_outcome o);

/* Whether `id` is a usable job id: 1..JOB_ID_MAX characters of
 * [A-Za-z0-9_-] (it names a spool file).  Pure. */
bool job_id_valid(const char *id);

/* The receipt body of DESIGN.md section 7 for `job`, signed by `node_id`:
 * {"job_id","node_id","requester","model","duration_ms","prompt_tokens",
 *  "completion_tokens","outcome","started_at","ended_at"} with the times
 * in unix seconds, and "response_digest" when the job has one.  duration_ms is the time charged for: 0 for a job that
 * produced nothing (outcomes "rejected" and "engine_error"), whatever
 * the job took.  New reference, or NULL when out of memory. */
json_t *job_receipt_body(const worker_job *job, const char *node_id);

/* ---- token counter --------------------------------------------------------- */

typedef struct usage_counter usage_counter;

/* A counter for a reply whose body is an event stream (event_stream true)
 * or anything else (JSON).  Returns 0 or TROOP_ENOMEM.  Not thread-safe
 * (one per job, on the job's thread). */
int usage_counter_new(usage_counter **out, bool event_stream);
/* Feed body bytes in any split. */
void usage_counter_feed(usage_counter *u, const char *data, size_t len);
/* The counts so far (call at the end).  *reported: usage came from the
 * engine.  All out pointers are required. */
void usage_counter_result(usage_counter *u, int64_t *prompt, int64_t *completion,
    bool *reported);
void usage_counter_free(usage_counter *u);

/* What one event's data holds, as the counter reads it: `usage`, a
 * "usage" member whose value is not null; `token`, a "content", "text" or
 * "delta" member whose value is a non-empty string (every occurrence of
 * the quoted key counts: the event is not parsed).  usage_scan_event runs
 * for every event of every stream at both hops: on x86-64 it finds the
 * quotes that could open such a key 16 bytes at a time (about 2.5 times
 * the speed of _search, which looks for each key with memmem and is the
 * reference: the tests check that both agree). */
void usage_scan_event(const char *s, size_t n, bool *usage, bool *token);
void usage_scan_event_search(const char *s, size_t n, bool *usage, bool *token);

#endif
