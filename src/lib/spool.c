/*
 * spool.c - durable outbox and sender threads for signed job messages
 * (spool.h): the worker's receipts, the clients' delivery reports.
 *
 * The queue is a FIFO under one mutex, served by SPOOL_SENDERS threads,
 * each with its own connection.  Sender i works only while more than i
 * messages wait, so a spool that keeps up uses one thread and one
 * connection, and a backlog is sent by up to SPOOL_SENDERS at once: each
 * settlement waits for the coordinator's durable commit, and one message
 * at a time fell behind a busy worker (its receipts 15-30 ms late at 130
 * jobs/s, its slots counted busy meanwhile).  A sender takes the first
 * message whose job no other sender is working on (a job's messages stay
 * in order: the started notice before the receipt), works on it without
 * the lock (disk, network), and either drops it (accepted or refused for
 * good) or puts it back at the head and has every sender wait out the
 * backoff: while the coordinator is unreachable there is no point trying
 * the rest.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"
#include "error.h"
#include "http_client.h"
#include "json.h"
#include "log.h"
#include "proto.h"

#define SPOOL_TIMEOUT_MS 5000
#define SPOOL_NICE 10      /* the sender thread's niceness */
#define SPOOL_EV_MAX (SPOOL_KIND_MAX + 10)

struct pending {
	struct pending *next;
	char job_id[SPOOL_ID_MAX + 1];
	char *body;              /* JSON text */
	bool spooled;            /* its spool file exists */
	bool synced;             /* ... and was fsync'd */
	char notice[SPOOL_KIND_MAX + 1];  /* spool_notice: its kind; "" for a message */
};

struct sender {
	struct spool *r;
	int idx;                 /* works while more than idx messages wait */
	bool started;
	pthread_t thr;
	http_client *c;
	char job[SPOOL_ID_MAX + 1];  /* the job it is working on; "" none */
	pthread_cond_t cv;       /* its own: a message wakes one sender, not all */
	bool waiting;            /* in pthread_cond_(timed)wait, not yet woken */
};

struct spool {
	pthread_mutex_t mu;
	struct pending *head, *tail;
	size_t queued;           /* in the queue */
	size_t n;                /* queued + the ones being worked on */
	size_t sent;
	bool stop;
	int64_t retry_at_ms;     /* monotonic; 0: no backoff */
	int backoff_s;
	struct sender senders[SPOOL_SENDERS];
	char *coordinator;
	troop_identity id;
	char dir[PATH_MAX];
	char kind[SPOOL_KIND_MAX + 1];
	spool_accepted_fn on_accepted;
	/* log event names: "<kind>_spool", ... */
	char ev_spool[SPOOL_EV_MAX], ev_dropped[SPOOL_EV_MAX], ev_retry[SPOOL_EV_MAX],
	    ev_settled[SPOOL_EV_MAX], ev_lost[SPOOL_EV_MAX];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	free(p->body);
	free(p);
}

bool spool_id_valid(const char *id)
{
	size_t n = 0;

	if (!id)
		return false;
	for (; id[n]; n++) {
		char ch = id[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
		if (n >= SPOOL_ID_MAX)
			return false;
	}
	return n > 0;
}

/* mkdir -p with mode 0700 for what it creates. */
static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(tmp))
		return troop_error_set(TROOP_EINVAL, "spool path is empty or too long");
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return troop_error_set(TROOP_EIO, "cannot create %s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return troop_error_set(TROOP_EIO, "cannot create %s: %s", tmp, strerror(errno));
	return 0;
}

/* ---- spool files ------------------------------------------------------------- */

static void spool_path(char *out, size_t len, const spool *r, const char *id, bool tmp)
{
	snprintf(out, len, "%s/%s%s.json%s", r->dir, tmp ? "." : "", id, tmp ? ".tmp" : "");
}

static int spool_write(spool *r, const struct pending *p)
{
	char path[PATH_MAX + 80], tmp[PATH_MAX + 80];
	size_t len = strlen(p->body), off = 0;
	int fd, rc = 0;

	spool_path(path, sizeof(path), r, p->job_id, false);
	spool_path(tmp, sizeof(tmp), r, p->job_id, true);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(errno));
	while (off < len) {
		ssize_t k = write(fd, p->body + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(errno));
			break;
		}
		off += (size_t)k;
	}
	close(fd);
	if (!rc && rename(tmp, path) != 0)
		rc = troop_error_set(TROOP_EIO, "cannot rename %s: %s", tmp, strerror(errno));
	if (rc)
		unlink(tmp);
	return rc;
}

/* fsync the spool file of `id` and the directory (its name). */
static void spool_sync(spool *r, const char *id)
{
	char path[PATH_MAX + 80];
	int fd;

	spool_path(path, sizeof(path), r, id, false);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) != 0)
			log_warn(r->ev_spool, "error=\"cannot sync %s: %s\"", path, strerror(errno));
		close(fd);
	}
	fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static void spool_remove(spool *r, const char *id)
{
	char path[PATH_MAX + 80];

	spool_path(path, sizeof(path), r, id, false);
	if (unlink(path) != 0 && errno != ENOENT)
		log_warn(r->ev_spool, "error=\"cannot remove %s: %s\"", path, strerror(errno));
}

static char *read_small_file(const char *path, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	size_t used = 0;

	if (fd < 0)
		return NULL;
	buf = malloc(max + 1);
	while (buf) {
		ssize_t k = read(fd, buf + used, max + 1 - used);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 || (k > 0 && used + (size_t)k > max)) {
			free(buf);
			buf = NULL;
			break;
		}
		if (k == 0)
			break;
		used += (size_t)k;
	}
	close(fd);
	if (buf)
		buf[used] = '\0';
	return buf;
}

static void enqueue_locked(spool *r, struct pending *p, bool front)
{
	if (front) {
		p->next = r->head;
		r->head = p;
		if (!r->tail)
			r->tail = p;
	} else {
		p->next = NULL;
		if (r->tail)
			r->tail->next = p;
		else
			r->head = p;
		r->tail = p;
	}
	r->queued++;
}

/* Queue every message already in the spool. */
static void spool_load(spool *r)
{
	DIR *d = opendir(r->dir);
	struct dirent *de;
	size_t loaded = 0;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char id[SPOOL_ID_MAX + 8], path[PATH_MAX + 300];
		size_t n = strlen(de->d_name);
		struct pending *p;
		json_t *body;
		const char *bid;
		char *text;

		if (de->d_name[0] == '.') {
			/* a temporary file left by a crash mid-write */
			if (n > 5 && strcmp(de->d_name + n - 4, ".tmp") == 0) {
				snprintf(path, sizeof(path), "%s/%s", r->dir, de->d_name);
				unlink(path);
			}
			continue;
		}
		if (n <= 5 || strcmp(de->d_name + n - 5, ".json") != 0 || n - 5 > SPOOL_ID_MAX)
			continue;
		memcpy(id, de->d_name, n - 5);
		id[n - 5] = '\0';
		snprintf(path, sizeof(path), "%s/%s", r->dir, de->d_name);
		text = spool_id_valid(id) ? read_small_file(path, SPOOL_FILE_MAX) : NULL;
		body = text ? json_loads(text, 0, NULL) : NULL;
		bid = json_string_value(json_object_get(body, "job_id"));
		if (!bid || strcmp(bid, id) != 0) {
			log_warn(r->ev_spool, "file=%s error=\"not a %s; left in place\"", path, r->kind);
			json_decref(body);
			free(text);
			continue;
		}
		json_decref(body);
		p = calloc(1, sizeof(*p));
		if (!p || r->n >= SPOOL_MAX_PENDING) {
			free(p);
			free(text);
			break;
		}
		memcpy(p->job_id, id, n - 4);  /* n - 5 chars and the NUL */
		p->body = text;
		p->spooled = true;
		p->synced = true;
		enqueue_locked(r, p, false);
		r->n++;
		loaded++;
	}
	closedir(d);
	if (loaded)
		log_info(r->ev_spool, "dir=%s loaded=%zu", r->dir, loaded);
}

/* ---- sending ---------------------------------------------------------------- */

enum send_result { SENT, DROPPED, RETRY };

static bool definitive(int status)
{
	return status == 400 || status == 403 || status == 404 || status == 409 ||
	    status == 410 || status == 413 || status == 422;
}

static enum send_result send_one(spool *r, http_client *c, struct pending *p)
{
	char path[SPOOL_ID_MAX + SPOOL_KIND_MAX + 16];
	json_t *body = json_loads(p->body, 0, NULL), *reply = NULL;
	int status = 0, rc;
	enum send_result res;

	if (!body) {
		log_error(r->ev_dropped, "job=%s error=\"spooled %s is not JSON\"",
		    p->job_id, r->kind);
		return DROPPED;
	}
	snprintf(path, sizeof(path), "/jobs/%s/%s", p->job_id, p->notice[0] ? p->notice : r->kind);
	rc = http_request_signed(c, &status, &reply, &r->id, "POST", r->coordinator,
	    path, body);
	json_decref(body);
	if (p->notice[0]) {
		/* a notice: success or not, there is nothing to retry or settle */
		log_debug("job_notice", "job=%s kind=%s status=%d", p->job_id, p->notice,
		    rc ? 0 : status);
		json_decref(reply);
		return rc == 0 && status >= 200 && status < 300 ? SENT : DROPPED;
	}
	if (rc) {
		log_warn(r->ev_retry, "job=%s error=\"%s\"", p->job_id, troop_error_msg());
		res = RETRY;
	} else if (status >= 200 && status < 300) {
		/* the settlement so far ("claimed", "recorded": held until the
		 * other witness comes) */
		const char *how = json_string_value(json_object_get(reply, "status"));
		log_info(r->ev_settled, "job=%s status=%s charged=%lld refunded=%lld", p->job_id,
		    how ? how : "settled",
		    (long long)json_integer_value(json_object_get(reply, "charged")),
		    (long long)json_integer_value(json_object_get(reply, "refunded")));
		if (r->on_accepted)
			r->on_accepted(reply);
		res = SENT;
	} else if (definitive(status)) {
		proto_error e;
		if (proto_error_decode(&e, reply) != 0)
			memset(&e, 0, sizeof(e));
		log_warn(r->ev_dropped, "job=%s status=%d code=%s message=\"%s\"", p->job_id,
		    status, e.code[0] ? e.code : "-", e.message[0] ? e.message : "-");
		res = DROPPED;
	} else {
		log_warn(r->ev_retry, "job=%s status=%d", p->job_id, status);
		res = RETRY;
	}
	json_decref(reply);
	return res;
}

/* Spool (if not yet) and send one message.  Unlocked. */
static enum send_result process(spool *r, http_client *c, struct pending *p)
{
	enum send_result res;

	/* a notice is worth something only now: never spooled, sent once */
	if (p->notice[0])
		return send_one(r, c, p);
	/* on disk before the first try: a crash or restart keeps it */
	if (!p->spooled) {
		if (spool_write(r, p) == 0)
			p->spooled = true;
		else
			log_warn(r->ev_spool, "job=%s error=\"%s\"", p->job_id, troop_error_msg());
	}
	res = send_one(r, c, p);
	if (res == RETRY && p->spooled && !p->synced) {
		/* it will wait a while: make it survive a power loss too */
		spool_sync(r, p->job_id);
		p->synced = true;
	}
	if (res != RETRY && p->spooled)
		spool_remove(r, p->job_id);
	return res;
}

/* Wake the first waiting sender that has work now (sender i works while
 * more than i messages wait): one per message queued or finished, where a
 * broadcast woke all of them to find that most had nothing to do.  Locked. */
static void wake_one_locked(spool *r)
{
	for (int i = 0; i < SPOOL_SENDERS; i++) {
		struct sender *s = &r->senders[i];
		if (r->queued <= (size_t)i)
			return;
		if (s->waiting) {
			s->waiting = false;
			pthread_cond_signal(&s->cv);
			return;
		}
	}
}

/* Wake every sender (stopping).  Locked. */
static void wake_all_locked(spool *r)
{
	for (int i = 0; i < SPOOL_SENDERS; i++) {
		r->senders[i].waiting = false;
		pthread_cond_signal(&r->senders[i].cv);
	}
}

/* The first queued message whose job no other sender works on, taken
 * out of the queue; NULL when none.  Locked. */
static struct pending *take_locked(spool *r)
{
	struct pending *prev = NULL;

	for (struct pending *p = r->head; p; prev = p, p = p->next) {
		bool busy = false;
		for (int i = 0; i < SPOOL_SENDERS && !busy; i++)
			busy = strcmp(r->senders[i].job, p->job_id) == 0;
		if (busy)
			continue;
		if (prev)
			prev->next = p->next;
		else
			r->head = p->next;
		if (r->tail == p)
			r->tail = prev;
		p->next = NULL;
		r->queued--;
		return p;
	}
	return NULL;
}

static void *sender_main(void *arg)
{
	struct sender *me = arg;
	spool *r = me->r;

	/* background work: never take CPU from the proxy's streams */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), SPOOL_NICE);

	pthread_mutex_lock(&r->mu);
	for (;;) {
		struct pending *p = NULL;
		enum send_result res;
		int64_t now;

		if (r->stop)
			break;
		now = mono_ms();
		if (r->queued > (size_t)me->idx && r->retry_at_ms > now) {
			struct timespec ts;
			int64_t wait = r->retry_at_ms - now;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			me->waiting = true;
			pthread_cond_timedwait(&me->cv, &r->mu, &ts);
			me->waiting = false;
			continue;
		}
		if (r->queued > (size_t)me->idx)
			p = take_locked(r);
		if (!p) {
			me->waiting = true;
			pthread_cond_wait(&me->cv, &r->mu);
			me->waiting = false;
			continue;
		}
		snprintf(me->job, sizeof(me->job), "%s", p->job_id);
		pthread_mutex_unlock(&r->mu);
		res = process(r, me->c, p);
		pthread_mutex_lock(&r->mu);
		me->job[0] = '\0';
		if (res == RETRY) {
			enqueue_locked(r, p, true);
			r->backoff_s = r->backoff_s ? r->backoff_s * 2 : 1;
			if (r->backoff_s > SPOOL_BACKOFF_MAX_S)
				r->backoff_s = SPOOL_BACKOFF_MAX_S;
			r->retry_at_ms = mono_ms() + (int64_t)r->backoff_s * 1000;
		} else {
			if (res == SENT && !p->notice[0])
				r->sent++;
			r->n--;
			r->backoff_s = 0;
			r->retry_at_ms = 0;
			pending_free(p);
		}
		/* the job's next message, if any, may go now (this sender looks
		 * first: it goes round; another one too when more wait) */
		if (r->queued > 1 || (size_t)me->idx >= r->queued)
			wake_one_locked(r);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* ---- API ---------------------------------------------------------------------- */

int spool_start(spool **out, const char *kind, const char *coordinator,
    const troop_identity *id, const char *dir, spool_accepted_fn on_accepted)
{
	spool *r;
	int rc;

	*out = NULL;
	if (!kind || !kind[0] || strlen(kind) > SPOOL_KIND_MAX)
		return troop_error_set(TROOP_EINVAL, "spool kind is empty or too long");
	if (strlen(dir) >= sizeof(r->dir) - 1)
		return troop_error_set(TROOP_EINVAL, "%s spool path is too long", kind);
	rc = mkdir_p(dir);
	if (rc)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return troop_error_set(TROOP_ENOMEM, "out of memory for the %s spool", kind);
	pthread_mutex_init(&r->mu, NULL);
	for (int i = 0; i < SPOOL_SENDERS; i++) {
		r->senders[i].r = r;
		r->senders[i].idx = i;
		pthread_cond_init(&r->senders[i].cv, NULL);
	}
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	snprintf(r->kind, sizeof(r->kind), "%s", kind);
	r->on_accepted = on_accepted;
	snprintf(r->ev_spool, sizeof(r->ev_spool), "%s_spool", kind);
	snprintf(r->ev_dropped, sizeof(r->ev_dropped), "%s_dropped", kind);
	snprintf(r->ev_retry, sizeof(r->ev_retry), "%s_retry", kind);
	snprintf(r->ev_settled, sizeof(r->ev_settled), "%s_settled", kind);
	snprintf(r->ev_lost, sizeof(r->ev_lost), "%s_lost", kind);
	r->id = *id;
	r->coordinator = strdup(coordinator);
	if (!r->coordinator) {
		rc = troop_error_set(TROOP_ENOMEM, "out of memory for the %s spool", kind);
		goto fail;
	}
	for (int i = 0; i < SPOOL_SENDERS; i++) {
		if (http_client_new(&r->senders[i].c) != 0) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory for the %s spool", kind);
			goto fail;
		}
		http_client_set_limits(r->senders[i].c, SPOOL_TIMEOUT_MS, 64 * 1024);
	}
	spool_load(r);
	for (int i = 0; i < SPOOL_SENDERS; i++) {
		if (thread_start(&r->senders[i].thr, sender_main, &r->senders[i]) != 0) {
			rc = troop_error_set(TROOP_ERR, "cannot start the %s threads", kind);
			goto fail;
		}
		r->senders[i].started = true;
	}
	*out = r;
	return 0;
fail:
	spool_stop(r, 0);
	return rc;
}

/* Queue `p` for the senders; false (nothing queued) when
 * SPOOL_MAX_PENDING messages already wait. */
static bool enqueue(spool *r, struct pending *p)
{
	bool ok;

	pthread_mutex_lock(&r->mu);
	ok = r->n < SPOOL_MAX_PENDING;
	if (ok) {
		r->n++;
		enqueue_locked(r, p, false);
		wake_one_locked(r);
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
}

int spool_submit(spool *r, const char *job_id, const json_t *body)
{
	struct pending *p;

	if (!r)
		return 0;
	if (!spool_id_valid(job_id))
		return troop_error_set(TROOP_EINVAL, "job id is not usable in a %s", r->kind);
	p = calloc(1, sizeof(*p));
	if (p)
		p->body = json_dump_compact(body, NULL);
	if (!p || !p->body) {
		pending_free(p);
		log_error(r->ev_dropped, "job=%s error=\"out of memory\"", job_id);
		return troop_error_set(TROOP_ENOMEM, "out of memory queueing a %s", r->kind);
	}
	snprintf(p->job_id, sizeof(p->job_id), "%s", job_id);
	if (!enqueue(r, p)) {
		pending_free(p);
		log_error(r->ev_dropped, "job=%s error=\"%d already pending\"", job_id,
		    SPOOL_MAX_PENDING);
		return troop_error_set(TROOP_ETOOLARGE, "too many %ss pending", r->kind);
	}
	return 0;
}

int spool_notice(spool *r, const char *job_id, const char *kind)
{
	struct pending *p;

	if (!r)
		return 0;
	if (!spool_id_valid(job_id) || !kind || !kind[0] || strlen(kind) > SPOOL_KIND_MAX)
		return troop_error_set(TROOP_EINVAL, "job id or kind is not usable in a notice");
	p = calloc(1, sizeof(*p));
	if (!p || !(p->body = strdup("{}"))) {
		pending_free(p);
		return troop_error_set(TROOP_ENOMEM, "out of memory queueing a notice");
	}
	snprintf(p->job_id, sizeof(p->job_id), "%s", job_id);
	snprintf(p->notice, sizeof(p->notice), "%s", kind);
	if (!enqueue(r, p)) {
		pending_free(p);
		return troop_error_set(TROOP_ETOOLARGE, "too many %ss pending", r->kind);
	}
	return 0;
}

size_t spool_pending(spool *r)
{
	size_t n;

	pthread_mutex_lock(&r->mu);
	n = r->n;
	pthread_mutex_unlock(&r->mu);
	return n;
}

size_t spool_sent(spool *r)
{
	size_t n;

	pthread_mutex_lock(&r->mu);
	n = r->sent;
	pthread_mutex_unlock(&r->mu);
	return n;
}

void spool_stop(spool *r, int flush_ms)
{
	int64_t deadline;
	size_t left = 0;
	http_client *c;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	wake_all_locked(r);
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < SPOOL_SENDERS; i++)
		if (r->senders[i].started)
			pthread_join(r->senders[i].thr, NULL);
	/* best effort: one try each while time is left and the coordinator answers */
	c = r->senders[0].c;
	deadline = mono_ms() + (flush_ms > 0 ? flush_ms : 0);
	while (r->head) {
		struct pending *p = r->head;
		int64_t left_ms = deadline - mono_ms();

		if (left_ms <= 0 || !c)
			break;
		http_client_set_limits(c, left_ms < SPOOL_TIMEOUT_MS ? (long)left_ms :
		    SPOOL_TIMEOUT_MS, 64 * 1024);
		if (process(r, c, p) == RETRY) {
			/* make sure it is on disk for the next start */
			break;
		}
		r->head = p->next;
		pending_free(p);
	}
	while (r->head) {
		struct pending *p = r->head;
		if (!p->spooled && spool_write(r, p) != 0)
			log_error(r->ev_lost, "job=%s error=\"%s\"", p->job_id, troop_error_msg());
		else if (!p->synced)
			spool_sync(r, p->job_id);
		r->head = p->next;
		pending_free(p);
		left++;
	}
	if (left)
		log_info(r->ev_spool, "dir=%s unsent=%zu", r->dir, left);
	for (int i = 0; i < SPOOL_SENDERS; i++)
		http_client_free(r->senders[i].c);
	free(r->coordinator);
	identity_wipe(&r->id);
	for (int i = 0; i < SPOOL_SENDERS; i++)
		pthread_cond_destroy(&r->senders[i].cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
