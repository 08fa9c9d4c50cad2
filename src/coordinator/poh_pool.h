/*
 * poh_pool.h - a bounded pool of threads for the coordinator's expensive
 * proof-of-hardware checks, so that recomputing a reveal's rows never runs
 * on a request-serving thread (issue 16 item 2: one cheap fake proof made
 * the coordinator recompute for seconds on the thread that also answers
 * /health).
 *
 * A server thread reserves a slot (poh_pool_reserve: TROOP_ERATE when the
 * queue is full, so the handler can answer 429 before it consumes
 * anything), then submits a job.  A pool thread runs job->work; the job
 * then goes back to the submitting server thread through its port (an
 * event activated on that thread's event_base), where job->done runs: it
 * may touch the http_req and the thread's ledger connection.
 *
 * Threading: poh_pool_new / poh_pool_free on one thread, around the
 * server's life.  A port belongs to one server thread: create it in the
 * thread's init hook, free it in its fini hook (before the base goes);
 * reserve/submit only on that thread.  Pool threads run at a lower
 * scheduling priority (nice +10) than the server threads.
 */
#ifndef TROOP_POH_POOL_H
#define TROOP_POH_POOL_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
typedef struct poh_pool poh_pool;
typedef struct poh_pool_port poh_pool_port;

typedef struct poh_job poh_job;
struct poh_job {
	/* set by the caller */
	void (*work)(poh_job *job);   /* on a pool thread */
	/* On the port's thread, once per submitted job: after work, or with
	 * cancelled set (work may not have run) when the port is freed
	 * first.  Owns the job: frees it. */
	void (*done)(poh_job *job);
	bool cancelled;
	/* the pool's */
	poh_job *next;
	poh_pool_port *port;
};

/* `workers` threads (>= 1), at most `queue_max` (>= 1) jobs waiting or
 * reserved.  Returns 0, TROOP_EINVAL or TROOP_ERR (thread start). */
int poh_pool_new(poh_pool **out, int workers, int queue_max);

/* Stop the threads (a job running finishes first) and free.  Every port
 * must have been freed.  NULL is fine. */
void poh_pool_free(poh_pool *p);

/* A port on `base` for the calling server thread.  Pool threads wake
 * `base` from their own threads: libevent threading must be on
 * (evthread_use_pthreads before the base was made; http_server does it).
 * 0 or TROOP_ENOMEM. */
int poh_pool_port_new(poh_pool_port **out, poh_pool *p, struct event_base *base);

/* On the port's thread: jobs of this port still waiting are cancelled, a
 * running one is waited for, then every job not yet delivered gets its
 * done call with cancelled set.  NULL is fine. */
void poh_pool_port_free(poh_pool_port *port);

/* Reserve a place in the queue: 0, or TROOP_ERATE ("busy") when waiting
 * and reserved jobs fill it.  A reservation is used by poh_pool_submit or
 * returned by poh_pool_unreserve. */
int poh_pool_reserve(poh_pool_port *port);
void poh_pool_unreserve(poh_pool_port *port);

/* Queue `job` on a reservation (never fails). */
void poh_pool_submit(poh_pool_port *port, poh_job *job);

/* Jobs waiting, reserved or running (for metrics and tests). */
size_t poh_pool_load(poh_pool *p);

#endif
