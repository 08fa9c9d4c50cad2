/*
 * reputation.h - what the coordinator has seen of each node, made into a
 * reputation with visible components, and the choice of a node by it
 * (docs/SCHEDULING.md has the formula and the constants).
 *
 * Components, each in (0, 1]:
 *   availability  heartbeats kept over time: the seconds a node was live
 *                 against the seconds of the gaps past its TTL, decayed
 *                 with a half-life of REP_AVAIL_HALF_S;
 *   reliability   jobs settled ok against jobs failed, disputed, and
 *                 failovers away from it reported by clients;
 *   speed         time to first token and output tokens/s from clients'
 *                 delivery reports, smoothed (REP_EWMA);
 *   audits        audits passed against failed (neutral 1.0 without any).
 * The reputation is their product.
 *
 * Observations that are not in the ledger (availability, speed, client
 * failovers, the concurrency a node served well) are kept per node in
 * the registry's key/value store under "rep:<node id>", live
 * REP_STATS_TTL_S after the last change: shared by every coordinator on
 * one Redis, forgotten with an in-process registry's restart.  Each
 * heartbeat folds them, with the ledger's job counts, into the registry
 * record's facts (registry_facts), so that node choice reads the
 * registry's node records alone.
 *
 * Thread-safety: every function may be called from any thread.  Updates
 * are read-modify-write of one key, serialised within a process; two
 * coordinators updating one node's entry in the same instant may lose
 * one of the two observations (they are statistics, not money).
 */
#ifndef TROOP_COORD_REPUTATION_H
#define TROOP_COORD_REPUTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#define REP_STATS_TTL_S (30 * 86400)   /* observations kept after the last one */
#define REP_AVAIL_HALF_S 86400.0        /* availability's memory (half-life) */
#define REP_AVAIL_PRIOR_S 300.0         /* live seconds a new node is credited */
#define REP_EWMA 0.1                    /* weight of a new speed sample */
#define REP_TTFT_REF_MS 250.0           /* speed 0.5 in its half: TTFT this long */
#define REP_TPS_REF 50.0                /* speed 0.5 in its half: this many tokens/s */
#define REP_NEW_JOBS 50                 /* jobs before a node is judged on its own */
#define REP_WEIGHT_MIN 0.02             /* every eligible node keeps this weight */
#define REP_SERVED_GROWTH 2             /* slots earned per job served well at once */

/* A node's observations kept in the registry. */
typedef struct {
	int64_t hb_last;       /* unix time of its last heartbeat, 0 none */
	double up_s;           /* live seconds seen (decayed) */
	double down_s;         /* seconds of gaps past the TTL (decayed) */
	double ttft_ms;        /* smoothed time to first byte; valid when speed_n > 0 */
	double tps;            /* smoothed output tokens/s; valid when speed_n > 0 */
	int64_t speed_n;       /* speed samples */
	int64_t delivered;     /* client reports "complete" */
	int64_t failovers;     /* client reports that it failed before its answer:
	                          "unreachable", "engine_error", "refused" */
	int served;            /* most jobs it ran at once while serving well */
} reputation_stats;

/* One client delivery report, as the coordinator accepted it. */
typedef struct {
	const char *outcome;   /* the report's outcome (docs/PROTOCOL.md) */
	int64_t duration_ms;   /* request sent to the last byte */
	int64_t ttfb_ms;       /* request sent to the first body byte; -1 unknown */
	int64_t tokens;        /* completion tokens received */
	int running;           /* jobs the node had running when the report came */
} reputation_report;

/* What a node's reputation is made of: the registry facts' copy of the
 * ledger counts (audits_* from the auditor, docs/AUDITS.md) plus the
 * stats. */
typedef struct {
	int64_t jobs_ok, jobs_failed, disputes;
	int64_t audits_passed, audits_failed;
	const reputation_stats *stats;  /* NULL: nothing observed */
} reputation_inputs;

/* ---- pure functions ---------------------------------------------------------- */

/* Fill f's reputation fields (rep_* components, reputation, ttft_ms,
 * tokens_per_s, failovers, served_jobs, observed) from `in`.  f->jobs and
 * f->disputes are left as they are.  Pure, thread-safe. */
void reputation_fill(registry_facts *f, const reputation_inputs *in);

/* The heartbeat at `now` of a node live for `ttl` seconds, into *s. */
void reputation_heartbeat(reputation_stats *s, int64_t ttl, int64_t now);

/* A delivery report, into *s. */
void reputation_report_add(reputation_stats *s, const reputation_report *r);

/* The job slots a node is counted: `reported` (its heartbeat's max_jobs,
 * 0 none: returns 0), capped by `class_cap` (0: no cap, and then no
 * other) and by what it earned: max(new_cap, REP_SERVED_GROWTH x
 * served) (new_cap 0: not capped by what it served).  Pure. */
int reputation_slots(int reported, int class_cap, int new_cap, int served);

/* A node's weight in the choice (docs/SCHEDULING.md): its reputation,
 * at least `fair` (the mean weight of judged candidates) while it has
 * settled fewer than REP_NEW_JOBS jobs, and at least REP_WEIGHT_MIN.
 * Pure. */
double reputation_weight(const registry_facts *f, double fair);

/* Whether facts `f` are of a node still being judged (fewer than
 * REP_NEW_JOBS jobs settled).  Pure. */
bool reputation_is_new(const registry_facts *f);

/* Index into w[0..n-1] (weights >= 0, not all 0) drawn with probability
 * proportional to its weight, from `u` uniform in [0, 1).  -1 when n is
 * 0.  Pure. */
int reputation_draw(const double *w, size_t n, double u);

/* ---- the registry's copy ------------------------------------------------------ */

/* The stats of `node_id` into *out (zeros when none are kept).  Returns 0
 * or a registry error (out zeroed). */
int reputation_get(reputation_stats *out, registry *reg, const char *node_id, int64_t now);

/* Count a heartbeat of `node_id` (reputation_heartbeat, stored back).
 * *out (may be NULL) gets the stats after it.  Returns 0 or a registry
 * error. */
int reputation_note_heartbeat(reputation_stats *out, registry *reg, const char *node_id,
    int64_t ttl, int64_t now);

/* Count the delivery report of job `job_id` for `node_id`
 * (reputation_report_add, stored back), once per job: a repeated report
 * of the same job within `seen_ttl` seconds (>= 1: as long as the ledger
 * may still take a report of it, i.e. until its reservation closes)
 * changes nothing.  Returns 0 or a registry error. */
int reputation_note_report(registry *reg, const char *node_id, const char *job_id,
    const reputation_report *r, int64_t seen_ttl, int64_t now);

#endif
