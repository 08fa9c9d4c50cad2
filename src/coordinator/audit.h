/*
 * audit.h - the coordinator's auditor: spot checks that catch a worker
 * that does not run the model it advertises (docs/AUDITS.md).
 *
 * A thread of its own wakes every --audit-interval seconds, picks a model
 * whose content hash two or more live nodes advertise, and sends each of
 * those nodes (at most --audit-nodes) the same seeded, temperature-0
 * chat request through the normal path: a signed /authorize to this very
 * coordinator from the auditor's own account naming the node, then the
 * worker's /v1/chat/completions with the ticket.  It compares the first
 * --audit-tokens tokens (whitespace-separated words) of the answers: two
 * answers agree when at least --audit-threshold of those positions hold
 * the same token.  The nodes that agree with a strict majority of the
 * answers pass; the others fail.  Without a strict majority (two nodes
 * that disagree, or answers all different) nobody is judged.
 *
 * A verdict goes to the ledger in one transaction (ledger_node_audit: the
 * counts, the suspect flag, the forfeit of a failing node's pending
 * earnings, audit_log rows) and to the registry's copy of the node's facts
 * at once, so that node choice stops (or resumes) picking it without
 * waiting for its next heartbeat.
 */
#ifndef TROOP_AUDIT_H
#define TROOP_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#define AUDIT_TOKENS_MAX 1024
#define AUDIT_NODES_MAX 16
#define AUDIT_URL_MAX 300

/* The auditor's settings (--audit-*), fixed after start. */
typedef struct {
	int64_t interval_s;        /* seconds between audit rounds; 0: no audits */
	int tokens;                /* N: tokens compared, 1 .. AUDIT_TOKENS_MAX */
	double threshold;          /* share of the N positions that must agree, 0 .. 1 */
	int max_nodes;             /* nodes asked in one round, 2 .. AUDIT_NODES_MAX */
	char url[AUDIT_URL_MAX];   /* this coordinator, as the auditor calls it */
} audit_config;

/* The auditor's thread; auditor_start and auditor_stop are declared in
 * coordinator.h, next to the coordinator they run for. */
typedef struct auditor auditor;

/* Agreement of two answers: the share of the first `n` token positions
 * at which the whitespace-separated words of `a` and `b` are equal (a
 * position one answer lacks disagrees).  1.0 when n is 0.  Pure
 * function, thread-safe. */
double audit_agreement(const char *a, const char *b, int n);

/* The verdicts of one audit of k answers (k <= AUDIT_NODES_MAX; answers[i]
 * NULL when node i gave none: it is not judged): verdict[i] is 1 (agrees
 * with a strict majority of the answers given), -1 (disagrees with it) or
 * 0 (no answer, or no strict majority: nobody judged).  Returns the size
 * of the majority, 0 when there is none.  Pure function. */
int audit_verdicts(int verdict[], const char *const answers[], size_t k, int n,
    double threshold);

/* The nodes an audit round looks at: at most `max` (>= 1) live nodes in
 * id order from the first id after `start` ("" from the smallest),
 * wrapping round to the smallest ids when the largest come first, each
 * node once.  The auditor starts each round at a random id, so that in a
 * troop of more than `max` nodes every node can be drawn, not only the
 * `max` smallest ids.  *out and errors as registry_list_nodes. */
int audit_window(registry_node **out, size_t *n, registry *reg, const char *start,
    int64_t now, size_t max, unsigned with);

#endif
