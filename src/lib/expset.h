/*
 * expset.h - an expiring set: string keys, each with an expiry, an
 * optional value or counter, and up to EXPSET_OWNERS owner keys; a cap on
 * live entries and an optional quota of live entries per owner key (at
 * most Q entries counted against one identity, one address, ...), so that
 * one party cannot fill a set shared by all.  Replay caches, nonce
 * stores, rate-limit windows and one-shot values are built on it.
 *
 * An entry put with expiry `at` is live while now < at.  Expired entries
 * are dropped when the set needs room or an owner's count, on access,
 * and by expset_sweep; every one is dropped once, in expiry order
 * (a heap), so the cost is amortised O(log n) per entry.
 *
 * Keys and owners come from the network: the table hashes with SipHash
 * under a random key chosen at creation.
 *
 * Thread-safety: every function may be called from any thread on a
 * shared set; one mutex per set serialises them (each call is O(1)
 * besides the amortised expiry work).  expset_free must not race any
 * other call.
 *
 * Errors: 0 or a negative troop_err with troop_error_set.
 */
#ifndef TROOP_EXPSET_H
#define TROOP_EXPSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXPSET_OWNERS 2        /* owner keys per entry (e.g. identity, address) */
#define EXPSET_KEY_MAX 1024    /* bytes of a key or an owner key */

#define EXPSET_NX 0x1u         /* put only if the key is not live */

typedef struct expset expset;

/* Owner keys come in slots (owners[0], owners[1]: e.g. the signer and
 * the source address), each slot its own namespace with its own quota. */
typedef struct {
	size_t max;                          /* live entries; 0: 1,000,000 */
	size_t owner_quota[EXPSET_OWNERS];   /* live entries per owner key of slot i;
	                                        0: no quota for that slot */
	const char *what;                    /* name in messages ("nonces"); NULL: "entries" */
} expset_opts;

/* A new empty set (opts may be NULL for the defaults).  0 and *out (free
 * with expset_free), or TROOP_ENOMEM. */
int expset_new(expset **out, const expset_opts *opts);

/* Free the set and its entries.  NULL is fine. */
void expset_free(expset *s);

/* Insert `key` with `len` bytes of value (copied; val may be NULL when len
 * is 0), live until `at` (> now), counted against each non-NULL, non-empty
 * owners[i] (owners may be NULL) in slot i.  A live key is replaced (value, expiry
 * and owners), unless flags has EXPSET_NX: then it is kept and
 * TROOP_ECONFLICT returned.  Other errors: TROOP_ERATE (an owner already
 * has its slot's quota of live entries: "too many live <what> for one
 * owner"),
 * TROOP_EUNAVAIL (max live entries), TROOP_EINVAL (key empty or over
 * EXPSET_KEY_MAX, at <= now), TROOP_ENOMEM.  On error nothing changed. */
int expset_put(expset *s, const char *key, const char *const owners[EXPSET_OWNERS],
    const void *val, size_t len, int64_t at, unsigned flags, int64_t now);

/* Add `delta` to the counter of live `key`, or create it with counter
 * `delta`, expiring at `at` and counted against `owners` (as expset_put).
 * *count gets the counter after the call.  Errors as expset_put. */
int expset_incr(int64_t *count, expset *s, const char *key,
    const char *const owners[EXPSET_OWNERS], int64_t delta, int64_t at, int64_t now);

/* Copy the value of live `key` into buf (cap bytes; buf may be NULL when
 * cap is 0); *len (may be NULL) gets its length, also when it does not
 * fit.  With `take` the entry is removed in the same step (one-shot
 * values: of two takers only one succeeds).  TROOP_ENOTFOUND (absent or
 * expired), TROOP_ETOOLARGE (len > cap: nothing copied, nothing taken). */
int expset_get(void *buf, size_t cap, size_t *len, expset *s, const char *key, int64_t now,
    bool take);

/* Remove `key`.  TROOP_ENOTFOUND if it was not live. */
int expset_del(expset *s, const char *key, int64_t now);

/* Drop every expired entry; returns how many. */
size_t expset_sweep(expset *s, int64_t now);

/* Entries held: the live ones, plus any that expired since the last call
 * given a `now` (call expset_sweep first for an exact live count). */
size_t expset_size(expset *s);

/* Called once per live entry by expset_foreach: its key, expiry, value
 * and value length (val NULL when len is 0).  A non-zero return stops the
 * walk. */
typedef int (*expset_fn)(const char *key, int64_t at, const void *val, size_t len,
    void *arg);

/* Drop the entries expired at `now`, then call fn(..., arg) for each live
 * entry, in no particular order.  fn runs under the set's lock: it must
 * not call back into the set (that deadlocks) and should be short, as
 * every other call on the set waits for the walk.  Returns 0, or the
 * first non-zero value fn returned. */
int expset_foreach(expset *s, int64_t now, expset_fn fn, void *arg);

#endif
