/*
 * replay.c - the jti replay cache of replay.h: separate chaining over a
 * power-of-two table that doubles as it fills; a full sweep of expired
 * entries runs at most every REPLAY_SWEEP_S seconds, or at once when the
 * cache is full.  A persisted cache appends to its journal under the
 * mutex and syncs it outside (a concurrent check of the same id already
 * finds it in memory); the sweep rewrites the journal when it has grown
 * to several times the live entries.
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
#include "log.h"

#define REPLAY_MIN_BUCKETS 256
#define REPLAY_SWEEP_S 10
#define REPLAY_DEFAULT_MAX 1000000
#define REPLAY_COMPACT_MIN 4096   /* journal lines before a rewrite is considered */
#define REPLAY_LINE_MAX (REPLAY_ID_MAX + 32)

struct entry {
	struct entry *next;
	int64_t until;
	char id[REPLAY_ID_MAX + 1];
};

struct replay_cache {
	pthread_mutex_t mu;
	struct entry **b;
	size_t nb;          /* buckets, a power of two */
	size_t n;           /* entries */
	size_t max;
	int64_t last_sweep;
	/* persistence (replay_cache_open); fd -1: memory only */
	int fd;
	char *path;
	size_t lines;       /* lines in the journal */
};

static uint64_t hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

int replay_cache_new(replay_cache **out, size_t max_entries)
{
	replay_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the replay cache");
	c->nb = REPLAY_MIN_BUCKETS;
	c->b = calloc(c->nb, sizeof(*c->b));
	if (!c->b) {
		free(c);
		return troop_error_set(TROOP_ENOMEM, "out of memory for the replay cache");
	}
	c->max = max_entries ? max_entries : REPLAY_DEFAULT_MAX;
	c->fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void replay_cache_free(replay_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nb; i++) {
		struct entry *e = c->b[i];
		while (e) {
			struct entry *nx = e->next;
			free(e);
			e = nx;
		}
	}
	free(c->b);
	if (c->fd >= 0)
		close(c->fd);
	free(c->path);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void sweep(replay_cache *c, int64_t now)
{
	for (size_t i = 0; i < c->nb; i++) {
		struct entry **pp = &c->b[i];
		while (*pp) {
			struct entry *e = *pp;
			if (e->until <= now) {
				*pp = e->next;
				free(e);
				c->n--;
			} else {
				pp = &e->next;
			}
		}
	}
	c->last_sweep = now;
}

static void grow(replay_cache *c)
{
	size_t nb = c->nb * 2;
	struct entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return;  /* stay at this size: chains get longer, nothing breaks */
	for (size_t i = 0; i < c->nb; i++) {
		struct entry *e = c->b[i];
		while (e) {
			struct entry *nx = e->next;
			size_t k = hash(e->id) & (nb - 1);
			e->next = b[k];
			b[k] = e;
			e = nx;
		}
	}
	free(c->b);
	c->b = b;
	c->nb = nb;
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

/* Rewrite the journal with the live entries only: a temporary file,
 * fsync'd, renamed over the journal, the directory synced; then append to
 * the new file.  Called with the mutex held (or before the cache is
 * shared).  Returns 0 or TROOP_EIO (the old journal is kept). */
static int compact(replay_cache *c, int64_t now)
{
	char tmp[PATH_MAX], line[REPLAY_LINE_MAX], *slash;
	size_t lines = 0;
	int fd, dfd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", c->path) >= sizeof(tmp))
		return troop_error_set(TROOP_EIO, "replay journal path is too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(errno));
	for (size_t i = 0; i < c->nb; i++)
		for (struct entry *e = c->b[i]; e; e = e->next) {
			int n;
			if (e->until <= now)
				continue;
			n = snprintf(line, sizeof(line), "%" PRId64 " %s\n", e->until, e->id);
			if (write_all(fd, line, (size_t)n) != 0)
				goto fail;
			lines++;
		}
	if (fsync(fd) != 0 || rename(tmp, c->path) != 0)
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
	c->lines = lines;
	return 0;
fail:
	{
		int e = errno;
		close(fd);
		unlink(tmp);
		return troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(e));
	}
}

/* Insert or update without touching the journal (loading). */
static void put_loaded(replay_cache *c, const char *id, int64_t until)
{
	size_t k = hash(id) & (c->nb - 1);
	struct entry *e;

	for (e = c->b[k]; e; e = e->next)
		if (strcmp(e->id, id) == 0) {
			e->until = until;
			return;
		}
	if (until <= 0 || c->n >= c->max)
		return;
	e = malloc(sizeof(*e));
	if (!e)
		return;
	memcpy(e->id, id, strlen(id) + 1);
	e->until = until;
	e->next = c->b[k];
	c->b[k] = e;
	c->n++;
	if (c->n > c->nb * 2)
		grow(c);
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
		put_loaded(c, id, (int64_t)until);
	}
	fclose(f);
	sweep(c, now);
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
	log_info("replay_journal", "path=%s live=%zu", path, c->n);
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

int replay_cache_check(replay_cache *c, const char *id, int64_t until, int64_t now)
{
	size_t len = id ? strlen(id) : 0, k;
	struct entry *e;
	int rc = 0;

	bool sync = false;
	int fd = -1;

	if (!id_ok(id, len))
		return troop_error_set(TROOP_EINVAL, "ticket jti is empty, longer than %d or "
		    "holds a space or control character", REPLAY_ID_MAX);
	pthread_mutex_lock(&c->mu);
	if (now - c->last_sweep >= REPLAY_SWEEP_S || c->n >= c->max) {
		sweep(c, now);
		if (c->fd >= 0 && c->lines > REPLAY_COMPACT_MIN && c->lines > 4 * c->n &&
		    compact(c, now) != 0)
			log_warn("replay_journal", "path=%s error=\"%s\"", c->path,
			    troop_error_msg());
	}
	k = hash(id) & (c->nb - 1);
	for (e = c->b[k]; e; e = e->next) {
		if (strcmp(e->id, id) == 0) {
			if (e->until > now) {
				rc = troop_error_set(TROOP_ETICKET, "ticket already used (jti seen before)");
				goto out;
			}
			break;  /* expired entry: reuse it */
		}
	}
	if (!e && c->n >= c->max) {
		rc = troop_error_set(TROOP_ERATE, "too many tickets in use; try again shortly");
		goto out;
	}
	if (c->fd >= 0) {
		if (journal_append(c, id, until) != 0) {
			rc = troop_error_set(TROOP_EUNAVAIL, "cannot record the ticket in %s: %s",
			    c->path, strerror(errno));
			goto out;
		}
		sync = true;
		fd = dup(c->fd);  /* a compaction may replace c->fd meanwhile */
	}
	if (e) {
		e->until = until;
		goto out;
	}
	e = malloc(sizeof(*e));
	if (!e) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory recording a ticket");
		goto out;
	}
	memcpy(e->id, id, len + 1);
	e->until = until;
	e->next = c->b[k];
	c->b[k] = e;
	c->n++;
	if (c->n > c->nb * 2)
		grow(c);
out:
	pthread_mutex_unlock(&c->mu);
	if (sync) {
		/* on disk before the job reaches the engine */
		if (rc == 0 && (fd < 0 || fdatasync(fd) != 0)) {
			int e2 = errno;
			if (fd >= 0)
				close(fd);
			replay_cache_forget(c, id);
			return troop_error_set(TROOP_EUNAVAIL, "cannot record the ticket in %s: %s",
			    c->path, strerror(e2));
		}
		if (fd >= 0)
			close(fd);
	}
	return rc;
}

void replay_cache_forget(replay_cache *c, const char *id)
{
	struct entry **pp;

	if (!c || !id)
		return;
	pthread_mutex_lock(&c->mu);
	for (pp = &c->b[hash(id) & (c->nb - 1)]; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			struct entry *e = *pp;
			*pp = e->next;
			free(e);
			c->n--;
			/* no sync: at worst a restart refuses a ticket that never ran */
			if (c->fd >= 0 && journal_append(c, id, 0) != 0)
				log_warn("replay_journal", "path=%s error=\"%s\"", c->path,
				    strerror(errno));
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
}

size_t replay_cache_size(replay_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->n;
	pthread_mutex_unlock(&c->mu);
	return n;
}
