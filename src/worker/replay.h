/*
 * replay.h - the worker's memory of ticket ids (jti) already used, so a
 * ticket serves one job only (DESIGN.md section 5).  An id is remembered
 * until its ticket can no longer be accepted anyway (exp + skew); after
 * that the ticket is refused as expired, so the entry can go.
 *
 * An expiring set (expset.h) bounded by max_entries; expired entries are
 * dropped as new ones come in.  Thread-safe (the proxy threads share it:
 * one mutex orders the journal, the set has its own).
 *
 * Persistence (replay_cache_open): so that a restarted worker still
 * refuses every ticket it served, each id is appended to a journal in the
 * worker's state directory ("<until> <id>\n"; a forgotten id is
 * "0 <id>\n") with write(2) before replay_cache_check returns 0, i.e.
 * before the job goes to the engine.  Once written, a line survives the
 * worker's own crash (the kernel holds it); a power cut or a crash of the
 * machine may lose the lines not yet on disk, but only lines written
 * before the machine last started: replay_cache_boot_time says when that
 * was, and the worker refuses every ticket issued before it (plus the
 * clock skew it allows), so no ticket the lost lines held can run again.
 * Where the boot time cannot be read, each line is fdatasync'd before the
 * check returns instead.  The journal is read back at start (later lines
 * win) and rewritten without expired entries then and whenever it holds
 * many more lines than live entries.
 */
#ifndef TROOP_WORKER_REPLAY_H
#define TROOP_WORKER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_ID_MAX 64  /* longest id kept (longer ones are refused) */

typedef struct replay_cache replay_cache;

/* New empty cache holding at most max_entries ids (0: 1,000,000), in
 * memory only.  Returns 0 or TROOP_ENOMEM. */
int replay_cache_new(replay_cache **out, size_t max_entries);

/* A cache persisted in the journal file `path` (created 0600, its
 * directory 0700 if missing): the ids still live at `now` are loaded, the
 * journal compacted.  A malformed line is skipped with a warning (a torn
 * last write).  Returns 0, TROOP_ENOMEM, or TROOP_EIO when the file cannot
 * be read or written (message set). */
int replay_cache_open(replay_cache **out, size_t max_entries, const char *path, int64_t now);

/* When the machine last started (unix seconds), for a persisted cache
 * whose lines are not synced one by one: tickets issued before it may
 * have been recorded in lines a power cut lost, so they must be refused.
 * 0 when every line is synced before the check returns, or for a cache
 * in memory only (which forgets everything at a restart anyway). */
int64_t replay_cache_boot_time(const replay_cache *c);

/* Tests: pretend the machine started at `t` (0: sync every line instead,
 * as where the boot time cannot be read). */
void replay_cache_set_boot_time(replay_cache *c, int64_t t);
void replay_cache_free(replay_cache *c);

/* Record `id` as used until unix time `until` (entries with until <= now
 * are gone).  Returns 0 when the id was not in use (now recorded),
 * TROOP_ETICKET "ticket already used" when it was, TROOP_ERATE when the
 * cache is full of live entries, TROOP_EINVAL for an empty or over-long
 * id (or one with a space or control character), TROOP_EUNAVAIL when a
 * persisted cache could not write its journal (the id is then not
 * recorded, and the job must not run).  Messages set. */
int replay_cache_check(replay_cache *c, const char *id, int64_t until, int64_t now);

/* Forget `id` (a job that never started may use its ticket again).  No-op
 * when absent. */
void replay_cache_forget(replay_cache *c, const char *id);

/* Live entries (some may have expired since the last check).  O(1). */
size_t replay_cache_size(replay_cache *c);

#endif
