/*
 * thread.h - starting a helper thread that leaves SIGINT and SIGTERM to
 * the threads that handle them (http_server_run's): the signal handler
 * writes to the server's wake-up pipe, which the main thread closes when
 * the server is freed, so the handler must not run on a thread that is
 * still going then (a sweeper, a pool worker, a writer).
 */
#ifndef TROOP_THREAD_H
#define TROOP_THREAD_H

#include <pthread.h>

/* pthread_create with SIGINT and SIGTERM blocked in the new thread (the
 * caller's mask is left as it was).  Returns pthread_create's result. */
int thread_start(pthread_t *th, void *(*fn)(void *), void *arg);

#endif
