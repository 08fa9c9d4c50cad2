/*
 * replay.h - the worker's memory of ticket ids (jti) already used, so a
 * ticket serves one job only (DESIGN.md section 5).  An id is remembered
 * until its ticket can no longer be accepted anyway (exp + skew); after
 * that the ticket is refused as expired, so the entry can go.
 *
 * A hash set with per-entry expiry, bounded by max_entries; expired
 * entries are swept as new ones come in.  Thread-safe (one mutex: the
 * proxy threads share it).
 */
#ifndef TROOP_WORKER_REPLAY_H
#define TROOP_WORKER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_ID_MAX 64  /* longest id kept (longer ones are refused) */

typedef struct replay_cache replay_cache;

/* New empty cache holding at most max_entries ids (0: 1,000,000).
 * Returns 0 or TROOP_ENOMEM. */
int replay_cache_new(replay_cache **out, size_t max_entries);
void replay_cache_free(replay_cache *c);

/* Record `id` as used until unix time `until` (entries with until <= now
 * are gone).  Returns 0 when the id was not in use (now recorded),
 * TROOP_ETICKET "ticket already used" when it was, TROOP_ERATE when the
 * cache is full of live entries, TROOP_EINVAL for an empty or over-long
 * id.  Messages set. */
int replay_cache_check(replay_cache *c, const char *id, int64_t until, int64_t now);

/* Forget `id` (a job that never started may use its ticket again).  No-op
 * when absent. */
void replay_cache_forget(replay_cache *c, const char *id);

/* Live entries (some may have expired since the last sweep). */
size_t replay_cache_size(replay_cache *c);

#endif
