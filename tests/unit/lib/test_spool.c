/*
 * test_spool.c - the signed outbox (spool.h) against a coordinator that
 * takes its time: a plain HTTP server on loopback that holds each request
 * 60 ms, as a coordinator waiting for its durable commit under load does.
 *
 *   side_by_side  a backlog of messages about different jobs is sent by
 *                 several senders at once (SPOOL_SENDERS at most), not one
 *                 after another: one at a time, a busy worker's receipts
 *                 fell behind its jobs and the coordinator counted its
 *                 slots busy meanwhile (at most one request in flight
 *                 before, and this failed);
 *   job_order     a job's own messages still arrive in the order queued:
 *                 the started notice before the receipt;
 *   keeping_up    a spool that keeps up uses one connection (a worker is
 *                 one of many that the coordinator holds connections for).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "identity.h"
#include "json.h"
#include "spool.h"

#define HOLD_MS 60
#define SEEN_MAX 256

/* ---- a slow coordinator ----------------------------------------------------------- */

static struct {
	int fd, port;
	pthread_mutex_t mu;
	int inflight, max_inflight, accepted;
	char seen[SEEN_MAX][96];   /* request paths in arrival order */
	int nseen;
} srv = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* One connection: requests until the client closes it. */
static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16384];
	size_t used = 0;

	for (;;) {
		char *end, *cl, path[96] = "";
		size_t head, body = 0;
		ssize_t k;
		static const char answer[] = "{\"status\":\"settled\",\"charged\":1,\"refunded\":0}";
		char reply[256];
		int rlen;

		while (!(end = memmem(buf, used, "\r\n\r\n", 4))) {
			if (used == sizeof(buf) ||
			    (k = read(fd, buf + used, sizeof(buf) - used)) <= 0)
				goto out;
			used += (size_t)k;
		}
		head = (size_t)(end - buf) + 4;
		buf[head - 1] = '\0';
		if ((cl = strcasestr(buf, "\r\ncontent-length:")) != NULL)
			body = strtoul(cl + 17, NULL, 10);
		if (head + body > sizeof(buf))
			goto out;
		while (used < head + body) {
			if ((k = read(fd, buf + used, sizeof(buf) - used)) <= 0)
				goto out;
			used += (size_t)k;
		}
		sscanf(buf, "POST %95s", path);
		pthread_mutex_lock(&srv.mu);
		if (srv.nseen < SEEN_MAX)
			snprintf(srv.seen[srv.nseen++], sizeof(srv.seen[0]), "%s", path);
		if (++srv.inflight > srv.max_inflight)
			srv.max_inflight = srv.inflight;
		pthread_mutex_unlock(&srv.mu);
		usleep(HOLD_MS * 1000);
		pthread_mutex_lock(&srv.mu);
		srv.inflight--;
		pthread_mutex_unlock(&srv.mu);
		rlen = snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Type: "
		    "application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(answer), answer);
		if (write(fd, reply, (size_t)rlen) != (ssize_t)rlen)
			goto out;
		memmove(buf, buf + head + body, used - head - body);
		used -= head + body;
	}
out:
	close(fd);
	return NULL;
}

static void *accept_main(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(srv.fd, NULL, NULL);
		pthread_t t;
		if (c < 0)
			return NULL;
		pthread_mutex_lock(&srv.mu);
		srv.accepted++;
		pthread_mutex_unlock(&srv.mu);
		if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}

static void srv_reset(void)
{
	pthread_mutex_lock(&srv.mu);
	srv.max_inflight = 0;
	srv.nseen = 0;
	srv.accepted = 0;
	pthread_mutex_unlock(&srv.mu);
}

static int setup(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	pthread_t t;

	(void)state;
	if (sodium_init() < 0)
		return -1;
	srv.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (srv.fd < 0 || bind(srv.fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(srv.fd, 64) != 0 || getsockname(srv.fd, (struct sockaddr *)&a, &len) != 0)
		return -1;
	srv.port = ntohs(a.sin_port);
	if (pthread_create(&t, NULL, accept_main, NULL) != 0)
		return -1;
	pthread_detach(t);
	return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(p);
	return 0;
}

/* A spool in a new directory, sending to the server, which forgets what
 * it saw. */
static spool *start(char dir[256], troop_identity *id)
{
	char url[64];
	spool *s = NULL;

	srv_reset();
	snprintf(dir, 256, "%s/troop-spool-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(dir));
	identity_generate(id);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
	assert_int_equal(spool_start(&s, "receipt", url, id, dir, NULL), 0);
	return s;
}

static void finish(spool *s, char dir[256], troop_identity *id)
{
	spool_stop(s, 0);
	identity_wipe(id);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Wait until `n` messages were accepted (10 s at most). */
static void wait_sent(spool *s, size_t n)
{
	for (int i = 0; i < 1000 && spool_sent(s) < n; i++)
		usleep(10000);
	assert_int_equal(spool_sent(s), n);
	assert_int_equal(spool_pending(s), 0);
}

/* Queue a message about job "<prefix>-<i>". */
static void submit_job(spool *s, const char *prefix, int i)
{
	char job[32];
	json_t *b;

	snprintf(job, sizeof(job), "%s-%02d", prefix, i);
	b = json_pack("{s:s}", "job_id", job);
	assert_int_equal(spool_submit(s, job, b), 0);
	json_decref(b);
}

/* What the server saw: requests, most in flight at once, connections. */
static void server_saw(int *seen, int *most, int *accepted)
{
	pthread_mutex_lock(&srv.mu);
	*seen = srv.nseen;
	*most = srv.max_inflight;
	*accepted = srv.accepted;
	pthread_mutex_unlock(&srv.mu);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_side_by_side(void **state)
{
	char dir[256];
	troop_identity id;
	int seen, most, accepted;
	spool *s;

	(void)state;
	s = start(dir, &id);
	for (int i = 0; i < 32; i++)
		submit_job(s, "job", i);
	wait_sent(s, 32);
	server_saw(&seen, &most, &accepted);
	fprintf(stderr, "32 messages, %d requests, at most %d in flight at once\n", seen, most);
	assert_int_equal(seen, 32);
	assert_true(most >= 2);
	assert_true(most <= SPOOL_SENDERS);
	finish(s, dir, &id);
}

static void test_job_order(void **state)
{
	static char seen[SEEN_MAX][96];
	char dir[256], job[32], want[2][96];
	troop_identity id;
	int nseen;
	spool *s;

	(void)state;
	s = start(dir, &id);
	for (int i = 0; i < 16; i++) {
		snprintf(job, sizeof(job), "order-%02d", i);
		assert_int_equal(spool_notice(s, job, "started"), 0);
		submit_job(s, "order", i);
	}
	wait_sent(s, 16);   /* notices are not counted as sent */
	pthread_mutex_lock(&srv.mu);
	nseen = srv.nseen;
	memcpy(seen, srv.seen, sizeof(seen));
	pthread_mutex_unlock(&srv.mu);
	assert_int_equal(nseen, 32);
	for (int i = 0; i < 16; i++) {
		int at[2] = { -1, -1 };
		snprintf(want[0], sizeof(want[0]), "/jobs/order-%02d/started", i);
		snprintf(want[1], sizeof(want[1]), "/jobs/order-%02d/receipt", i);
		for (int k = 0; k < nseen; k++)
			for (int w = 0; w < 2; w++)
				if (strcmp(seen[k], want[w]) == 0)
					at[w] = k;
		assert_true(at[0] >= 0 && at[1] >= 0);
		assert_true(at[0] < at[1]);
	}
	finish(s, dir, &id);
}

static void test_keeping_up(void **state)
{
	char dir[256];
	troop_identity id;
	int seen, most, accepted;
	spool *s;

	(void)state;
	s = start(dir, &id);
	for (int i = 0; i < 10; i++) {
		submit_job(s, "steady", i);
		wait_sent(s, (size_t)i + 1);
	}
	server_saw(&seen, &most, &accepted);
	fprintf(stderr, "10 messages one at a time: %d connection(s), at most %d in flight\n",
	    accepted, most);
	assert_int_equal(seen, 10);
	assert_int_equal(most, 1);
	assert_int_equal(accepted, 1);
	finish(s, dir, &id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_side_by_side),
		cmocka_unit_test(test_job_order),
		cmocka_unit_test(test_keeping_up),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
