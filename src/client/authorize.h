/*
 * authorize.h - the client's side of POST /authorize and of failover,
 * shared by `troop up` (up_job.c, asynchronous) and `troop chat`
 * (cli_chat.c, blocking).  The callers do the I/O; this module decides:
 *
 *   1. client_auth_body: the next /authorize body (model, max_seconds, the
 *      nodes that failed so far as "exclude").
 *   2. client_auth_reply: what the coordinator's answer means: a ticket
 *      (decoded and checked by proto.h), or which kind of failure.
 *   3. client_auth_worker_failed / client_auth_failover: whether the
 *      worker's answer is worth another node, and if another try is left.
 *
 * Failover rule (DESIGN.md section 10): when the worker cannot be reached,
 * times out before its first byte, or answers 5xx or 429 of its own (not
 * an error its engine answered), and nothing has reached the user yet,
 * authorize again excluding that node, at most CLIENT_AUTH_TRIES
 * authorizations in all.
 *
 * A client_auth is a plain value owned by one request; not thread-safe.
 */
#ifndef TROOP_CLIENT_AUTHORIZE_H
#define TROOP_CLIENT_AUTHORIZE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define CLIENT_AUTH_TRIES 3
#define CLIENT_AUTH_WHY_MAX 400

typedef struct {
	proto_authorize_req req;        /* model, max_seconds; exclude grows */
	int attempt;                    /* authorizations started */
	int tries;                      /* authorizations allowed */
	char why[CLIENT_AUTH_WHY_MAX];  /* the last failover reason, "" before any */
	proto_authorize_reply ticket;   /* after CLIENT_AUTH_OK: the current ticket */
	bool delivery_report;           /* promise a delivery report for each job
	                                   ("delivery_report": true; report.h) */
} client_auth;

typedef enum {
	CLIENT_AUTH_OK,           /* a->ticket holds a well-formed ticket */
	CLIENT_AUTH_NO_CREDITS,   /* 402: err holds the coordinator's message */
	CLIENT_AUTH_EXHAUSTED,    /* 503 after a failover: no other node; a->why says
	                             what failed before */
	CLIENT_AUTH_BAD_SIGNATURE,/* 401: the coordinator refused our signature
	                             (a clock off by more than 60 s, a wrong key) */
	CLIENT_AUTH_ERROR,        /* another error with an error body (err) */
	CLIENT_AUTH_BAD_REPLY,    /* no error body, or a 200 that is no ticket:
	                             not a troop coordinator; err.message says what */
} client_auth_result;

/* Start the authorizations of one request for `model` (at most
 * PROTO_MODEL_MAX bytes; longer is cut), asking for max_seconds (0: the
 * coordinator's default), at most `tries` authorizations (0: the default). */
void client_auth_init(client_auth *a, const char *model, int64_t max_seconds, int tries);

/* Derive what the app's request `body` (an OpenAI, Responses or
 * Anthropic Messages body) needs of a node into a->req.require:
 *   vision   an image in the input: a content part of type "image_url"
 *            (chat), "input_image" (Responses) or "image" (Messages);
 *   tools    a non-empty "tools" (or legacy "functions") list;
 *   context  the prompt's estimated tokens plus the most it may generate
 *            (max_tokens, max_completion_tokens or max_output_tokens).
 *            The estimate is the prompt's JSON size in bytes / 4 (about
 *            what English text takes per token; no tokenizer is at hand),
 *            the prompt being messages, prompt, input, system and tools.
 * Nothing is required of an embedding model or of the endpoint: the
 * worker serves embeddings and chat through every engine. */
void client_auth_require(client_auth *a, const json_t *body);

/* The body of the next /authorize (compact JSON, malloc'd, caller frees;
 * NULL when out of memory) and its length; counts the attempt. */
char *client_auth_body(client_auth *a, size_t *len);

/* Classify the coordinator's answer (`body` its parsed JSON, may be
 * NULL).  *err (may be NULL) gets the error body when there is one. */
client_auth_result client_auth_reply(client_auth *a, int status, const json_t *body,
    proto_error *err);

/* Whether a worker's HTTP status before any byte reached the user is a
 * reason to try another node: 5xx, 429 (busy at max_jobs) and 401 (a
 * ticket for another node: the address is not the node's).  But an error
 * the worker's engine answered (engine_status: its X-Troop-Engine-Status
 * header, 0 when absent) is the user's answer, not the node's failure:
 * only an engine that is loading or overloaded (503, 429) is worth
 * another node. */
bool client_auth_worker_failed(int status, int engine_status);

/* The current ticket's node failed before anything reached the user:
 * remember `why` (NULL or a->why itself: keep what the caller wrote in
 * a->why) and exclude the node.  Returns true when another authorization
 * is allowed, false when the tries are spent. */
bool client_auth_failover(client_auth *a, const char *why);

#endif
