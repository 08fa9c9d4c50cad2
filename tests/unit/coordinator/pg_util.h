/*
 * pg_util.h - what the ledger unit tests that also run on PostgreSQL need
 * of libpq: one statement run on a server, and a URL pointed at another
 * database (each test run creates and drops its own).  Header-only, for
 * tests; only with TROOP_HAVE_PQ.
 */
#ifndef TROOP_TEST_PG_UTIL_H
#define TROOP_TEST_PG_UTIL_H

#ifdef TROOP_HAVE_PQ
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* Run one statement on the database at `url`; 0 or -1 (message printed). */
static inline int pg_exec(const char *url, const char *sql)
{
	PGconn *db = PQconnectdb(url);
	int rc = -1;
	if (PQstatus(db) == CONNECTION_OK) {
		PGresult *r = PQexec(db, sql);
		ExecStatusType st = PQresultStatus(r);
		rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
		PQclear(r);
	}
	if (rc != 0)
		fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(db));
	PQfinish(db);
	return rc;
}

/* `base` with its database name replaced by `dbname`. */
static inline void pg_url_with_db(char *out, size_t cap, const char *base, const char *dbname)
{
	const char *hostpart = strstr(base, "://");
	hostpart = hostpart ? hostpart + 3 : base;
	const char *path = strchr(hostpart, '/');
	const char *query = strchr(hostpart, '?');
	if (path == NULL || (query != NULL && path > query))
		path = query ? query : base + strlen(base);
	snprintf(out, cap, "%.*s/%s%s", (int)(path - base), base, dbname, query ? query : "");
}
#endif

#endif
