/*
 * poh_pool.c - the proof-of-hardware check pool of poh_pool.h: one mutex
 * guards the FIFO queue, the counts and every port's list of finished
 * jobs; workers wait on one condition, a port being freed on another.
 * A worker activates the port's event while holding the mutex, so that a
 * port freed meanwhile (which takes the mutex and waits for its running
 * jobs) never sees its event touched after it is gone.
 */
#include "poh_pool.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "thread.h"
#include "error.h"
#include "log.h"

#define POOL_NICE 10

struct poh_pool_port {
	poh_pool *pool;
	struct event *ev;
	poh_job *done_head, *done_tail;  /* finished, not yet delivered */
	int running;
};

struct poh_pool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;    /* a job queued, or stop */
	pthread_cond_t idle_cv;    /* a job finished */
	poh_job *head, *tail;
	size_t queued, reserved, running, queue_max;
	bool stop;
	pthread_t *threads;
	int n_threads;
};

static void *worker_main(void *arg)
{
	poh_pool *p = arg;

	/* below the server threads: a flood of checks slows checks, not /health */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), POOL_NICE) != 0)
		log_debug("poh_pool", "nice=failed");
	pthread_mutex_lock(&p->mu);
	for (;;) {
		poh_job *j;

		while (!p->stop && !p->head)
			pthread_cond_wait(&p->work_cv, &p->mu);
		if (p->stop)
			break;
		j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		p->queued--;
		p->running++;
		j->port->running++;
		pthread_mutex_unlock(&p->mu);

		j->work(j);

		pthread_mutex_lock(&p->mu);
		j->next = NULL;
		if (j->port->done_tail)
			j->port->done_tail->next = j;
		else
			j->port->done_head = j;
		j->port->done_tail = j;
		event_active(j->port->ev, EV_READ, 0);
		j->port->running--;
		p->running--;
		pthread_cond_broadcast(&p->idle_cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int poh_pool_new(poh_pool **out, int workers, int queue_max)
{
	poh_pool *p;

	*out = NULL;
	if (workers < 1 || queue_max < 1)
		return troop_error_set(TROOP_EINVAL, "poh_pool: workers and queue must be >= 1");
	p = calloc(1, sizeof(*p));
	if (!p || !(p->threads = calloc((size_t)workers, sizeof(*p->threads)))) {
		free(p);
		return troop_error_set(TROOP_ENOMEM, "out of memory for the check pool");
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->idle_cv, NULL);
	p->queue_max = (size_t)queue_max;
	for (int i = 0; i < workers; i++) {
		if (thread_start(&p->threads[i], worker_main, p) != 0) {
			poh_pool_free(p);
			return troop_error_set(TROOP_ERR, "cannot start the check pool's threads");
		}
		p->n_threads++;
	}
	*out = p;
	return 0;
}

void poh_pool_free(poh_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->work_cv);
	pthread_cond_destroy(&p->idle_cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}

/* On the port's thread: deliver the finished jobs. */
static void port_cb(evutil_socket_t fd, short what, void *arg)
{
	poh_pool_port *port = arg;
	poh_job *j;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&port->pool->mu);
	j = port->done_head;
	port->done_head = port->done_tail = NULL;
	pthread_mutex_unlock(&port->pool->mu);
	while (j) {
		poh_job *next = j->next;
		j->done(j);
		j = next;
	}
}

int poh_pool_port_new(poh_pool_port **out, poh_pool *p, struct event_base *base)
{
	poh_pool_port *port = calloc(1, sizeof(*port));

	*out = NULL;
	if (!port)
		return troop_error_set(TROOP_ENOMEM, "out of memory for a check pool port");
	port->pool = p;
	port->ev = event_new(base, -1, 0, port_cb, port);
	if (!port->ev) {
		free(port);
		return troop_error_set(TROOP_ENOMEM, "out of memory for a check pool port");
	}
	*out = port;
	return 0;
}

void poh_pool_port_free(poh_pool_port *port)
{
	poh_pool *p;
	poh_job *cancelled = NULL, **pp, *j;

	if (!port)
		return;
	p = port->pool;
	pthread_mutex_lock(&p->mu);
	/* take this port's waiting jobs out of the queue */
	p->tail = NULL;
	for (pp = &p->head; *pp;) {
		j = *pp;
		if (j->port == port) {
			*pp = j->next;
			p->queued--;
			j->next = cancelled;
			cancelled = j;
		} else {
			p->tail = j;
			pp = &j->next;
		}
	}
	while (port->running > 0)
		pthread_cond_wait(&p->idle_cv, &p->mu);
	j = port->done_head;
	port->done_head = port->done_tail = NULL;
	pthread_mutex_unlock(&p->mu);
	event_free(port->ev);
	while (j) {
		poh_job *next = j->next;
		j->next = cancelled;
		cancelled = j;
		j = next;
	}
	while (cancelled) {
		poh_job *next = cancelled->next;
		cancelled->cancelled = true;
		cancelled->done(cancelled);
		cancelled = next;
	}
	free(port);
}

int poh_pool_reserve(poh_pool_port *port)
{
	poh_pool *p = port->pool;
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	if (p->queued + p->reserved >= p->queue_max)
		rc = troop_error_set(TROOP_ERATE, "the coordinator is busy checking other proofs "
		    "(%zu waiting): try again shortly", p->queued + p->reserved);
	else
		p->reserved++;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void poh_pool_unreserve(poh_pool_port *port)
{
	poh_pool *p = port->pool;

	pthread_mutex_lock(&p->mu);
	if (p->reserved > 0)
		p->reserved--;
	pthread_mutex_unlock(&p->mu);
}

void poh_pool_submit(poh_pool_port *port, poh_job *job)
{
	poh_pool *p = port->pool;

	job->port = port;
	job->next = NULL;
	job->cancelled = false;
	pthread_mutex_lock(&p->mu);
	if (p->reserved > 0)
		p->reserved--;
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->queued++;
	pthread_cond_signal(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
}

size_t poh_pool_load(poh_pool *p)
{
	size_t n;

	pthread_mutex_lock(&p->mu);
	n = p->queued + p->reserved + p->running;
	pthread_mutex_unlock(&p->mu);
	return n;
}
