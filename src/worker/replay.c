/*
 * replay.c - the jti replay cache of replay.h over an expiring set
 * (expset.h: keys the jtis, expiry each ticket's `until`, capped at
 * max_entries; expired ids are dropped in expiry order as new ones come
 * in).  A persisted cache appends to its journal under its own mutex,
 * which also orders the set's changes as the journal's lines; where the
 * machine's boot time cannot be read it also syncs each line, outside the
 * mutex (a concurrent check of the same id already finds it in memory);
 * the journal is rewritten from the set's live entries when it
 * has grown to several times their number.
 */
#include "replay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "expset.h"
#include "log.h"

#define REPLAY_DEFAULT_MAX 1000000
#define REPLAY_COMPACT_MIN 4096   /* journal lines before a rewrite is considered */
#define REPLAY_RETRY_S 10         /* after a failed rewrite, wait this long */
#define REPLAY_LINE_MAX (REPLAY_ID_MAX + 32)

struct replay_cache {
	/* orders the journal's lines as the set's changes; taken before the
	 * set's own lock */
	pthread_mutex_t mu;
	expset *ids;        /* key: jti; expiry: until */
	/* persistence (replay_cache_open); fd -1: memory only */
	int fd;
	char *path;
	size_t lines;       /* lines in the journal */
	int64_t retry_at;   /* no rewrite before this time (one failed) */
	int64_t boot_time;  /* when the machine started; 0: sync each line */
};

/* The machine's boot time from /proc/stat ("btime"), or 0. */
static int64_t read_boot_time(void)
{
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	long long t = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &t) == 1)
			break;
	fclose(f);
	return t > 0 ? (int64_t)t : 0;
}

int replay_cache_new(replay_cache **out, size_t max_entries)
{
	expset_opts o = { .max = max_entries ? max_entries : REPLAY_DEFAULT_MAX,
		.what = "ticket ids" };
	replay_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c || expset_new(&c->ids, &o) != 0) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory for the replay cache");
	}
	c->fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void replay_cache_free(replay_cache *c)
{
	if (!c)
		return;
	expset_free(c->ids);
	if (c->fd >= 0)
		close(c->fd);
	free(c->path);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* An id is kept in the journal as one space-separated token. */
static bool id_ok(const char *id, size_t len)
{
	if (len == 0 || len > REPLAY_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)id[i] <= ' ' || id[i] == 0x7f)
			return false;
	return true;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* One line of a journal being rewritten, per live entry (expset_fn). */
struct rewrite {
	int fd;
	size_t lines;
};

static int write_entry(const char *id, int64_t until, const void *val, size_t len, void *arg)
{
	struct rewrite *w = arg;
	char line[REPLAY_LINE_MAX];
	int n = snprintf(line, sizeof(line), "%" PRId64 " %s\n", until, id);

	(void)val;
	(void)len;
	if (write_all(w->fd, line, (size_t)n) != 0)
		return -1;
	w->lines++;
	return 0;
}

/* Rewrite the journal with the live entries only: a temporary file,
 * fsync'd, renamed over the journal, the directory synced; then append to
 * the new file.  Called with the mutex held (or before the cache is
 * shared).  Returns 0 or TROOP_EIO (the old journal is kept). */
static int compact(replay_cache *c, int64_t now)
{
	struct rewrite w = { .fd = -1 };
	char tmp[PATH_MAX], *slash;
	int fd, dfd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", c->path) >= sizeof(tmp))
		return troop_error_set(TROOP_EIO, "replay journal path is too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(errno));
	w.fd = fd;
	if (expset_foreach(c->ids, now, write_entry, &w) != 0 || fsync(fd) != 0 ||
	    rename(tmp, c->path) != 0)
		goto fail;
	slash = strrchr(tmp, '/');
	if (slash) {
		*slash = '\0';
		dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = fd;
	c->lines = w.lines;
	return 0;
fail:
	{
		int e = errno;
		close(fd);
		unlink(tmp);
		return troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(e));
	}
}

/* One journal line, without touching the journal (loading): a later
 * line replaces an earlier one; one already expired (a forgotten id's
 * "0 <id>" among them) removes the id.  Ids beyond the cap are left out. */
static void put_loaded(replay_cache *c, const char *id, int64_t until, int64_t now)
{
	if (until > now)
		(void)expset_put(c->ids, id, NULL, NULL, 0, until, 0, now);
	else
		(void)expset_del(c->ids, id, now);
}

static int load(replay_cache *c, int64_t now)
{
	char line[REPLAY_LINE_MAX + 2], id[REPLAY_ID_MAX + 2];
	size_t bad = 0, total = 0;
	FILE *f = fopen(c->path, "re");

	if (!f) {
		if (errno == ENOENT)
			return 0;
		return troop_error_set(TROOP_EIO, "cannot read %s: %s", c->path, strerror(errno));
	}
	while (fgets(line, sizeof(line), f)) {
		long long until;
		char extra;
		size_t n = strlen(line);

		total++;
		if (n == 0 || line[n - 1] != '\n' ||
		    sscanf(line, "%lld %65s %c", &until, id, &extra) != 2 ||
		    !id_ok(id, strlen(id))) {
			bad++;
			/* a line longer than the buffer: skip the rest of it */
			while (n > 0 && line[n - 1] != '\n' && fgets(line, sizeof(line), f))
				n = strlen(line);
			continue;
		}
		put_loaded(c, id, (int64_t)until, now);
	}
	fclose(f);
	if (bad)
		log_warn("replay_journal", "path=%s lines=%zu skipped=%zu", c->path, total, bad);
	return 0;
}

int replay_cache_open(replay_cache **out, size_t max_entries, const char *path, int64_t now)
{
	replay_cache *c = NULL;
	char dir[PATH_MAX], *slash;
	int rc;

	*out = NULL;
	if ((rc = replay_cache_new(&c, max_entries)) != 0)
		return rc;
	if (!(c->path = strdup(path))) {
		replay_cache_free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory for the replay cache");
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			rc = troop_error_set(TROOP_EIO, "cannot create %s: %s", dir, strerror(errno));
			replay_cache_free(c);
			return rc;
		}
	}
	if ((rc = load(c, now)) != 0 || (rc = compact(c, now)) != 0) {
		replay_cache_free(c);
		return rc;
	}
	c->boot_time = read_boot_time();
	log_info("replay_journal", "path=%s live=%zu boot_time=%lld%s", path,
	    expset_size(c->ids), (long long)c->boot_time,
	    c->boot_time ? "" : " (unknown: each ticket is synced to disk)");
	*out = c;
	return 0;
}

/* Append one line (mutex held).  Returns 0 or -1 (errno). */
static int journal_append(replay_cache *c, const char *id, int64_t until)
{
	char line[REPLAY_LINE_MAX];
	int n = snprintf(line, sizeof(line), "%" PRId64 " %s\n", until, id);

	if (write_all(c->fd, line, (size_t)n) != 0)
		return -1;
	c->lines++;
	return 0;
}

/* Rewrite the journal when it holds many more lines than live entries
 * (mutex held).  A failure is logged and tried again later: the journal
 * stays valid, only longer. */
static void maybe_compact(replay_cache *c, int64_t now)
{
	if (c->fd < 0 || c->lines <= REPLAY_COMPACT_MIN || now < c->retry_at)
		return;
	(void)expset_sweep(c->ids, now);
	if (c->lines <= 4 * expset_size(c->ids))
		return;
	if (compact(c, now) != 0) {
		log_warn("replay_journal", "path=%s error=\"%s\"", c->path, troop_error_msg());
		c->retry_at = now + REPLAY_RETRY_S;
	}
}

int replay_cache_check(replay_cache *c, const char *id, int64_t until, int64_t now)
{
	size_t len = id ? strlen(id) : 0;
	bool sync = false;
	int fd = -1, rc;

	if (!id_ok(id, len))
		return troop_error_set(TROOP_EINVAL, "ticket jti is empty, longer than %d or "
		    "holds a space or control character", REPLAY_ID_MAX);
	pthread_mutex_lock(&c->mu);
	maybe_compact(c, now);
	if (until <= now) {
		/* gone at once: nothing to record, but a live entry still counts */
		rc = expset_get(NULL, 0, NULL, c->ids, id, now, false) == 0 ? TROOP_ECONFLICT : 0;
	} else {
		rc = expset_put(c->ids, id, NULL, NULL, 0, until, EXPSET_NX, now);
		if (rc == TROOP_EUNAVAIL)
			rc = troop_error_set(TROOP_ERATE, "too many tickets in use; try again shortly");
		if (rc == 0 && c->fd >= 0) {
			if (journal_append(c, id, until) != 0) {
				int e = errno;
				(void)expset_del(c->ids, id, now);
				rc = troop_error_set(TROOP_EUNAVAIL, "cannot record the ticket in %s: "
				    "%s", c->path, strerror(e));
			} else if (c->boot_time == 0) {
				sync = true;
				fd = dup(c->fd);  /* a compaction may replace c->fd meanwhile */
			}
		}
	}
	if (rc == TROOP_ECONFLICT)
		rc = troop_error_set(TROOP_ETICKET, "ticket already used (jti seen before)");
	pthread_mutex_unlock(&c->mu);
	if (sync) {
		/* on disk before the job reaches the engine */
		if (fd < 0 || fdatasync(fd) != 0) {
			int e2 = errno;
			if (fd >= 0)
				close(fd);
			replay_cache_forget(c, id);
			return troop_error_set(TROOP_EUNAVAIL, "cannot record the ticket in %s: %s",
			    c->path, strerror(e2));
		}
		close(fd);
	}
	return rc;
}

int64_t replay_cache_boot_time(const replay_cache *c)
{
	return c && c->fd >= 0 ? c->boot_time : 0;
}

void replay_cache_set_boot_time(replay_cache *c, int64_t t)
{
	if (c)
		c->boot_time = t > 0 ? t : 0;
}

void replay_cache_forget(replay_cache *c, const char *id)
{
	if (!c || !id || !id[0])
		return;
	pthread_mutex_lock(&c->mu);
	/* no clock here: at INT64_MIN nothing counts as expired, so the id is
	 * found (and its "0 <id>" line written) even if it has just expired */
	if (expset_del(c->ids, id, INT64_MIN) == 0 && c->fd >= 0 &&
	    journal_append(c, id, 0) != 0)
		/* no sync: at worst a restart refuses a ticket that never ran */
		log_warn("replay_journal", "path=%s error=\"%s\"", c->path, strerror(errno));
	pthread_mutex_unlock(&c->mu);
}

size_t replay_cache_size(replay_cache *c)
{
	return expset_size(c->ids);
}
