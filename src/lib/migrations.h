/*
 * migrations.h - the SQL migrations in sql/, compiled into the binary by
 * cmake/embed_sql.cmake.  Ordered by version; the array ends with a row
 * whose version is 0.  One schema serves SQLite and PostgreSQL.
 */
#ifndef TROOP_MIGRATIONS_H
#define TROOP_MIGRATIONS_H

struct troop_migration {
	int version;        /* the NNNN prefix of the file name */
	const char *name;   /* file name, for logs */
	const char *sql;    /* whole file, NUL-terminated */
};

extern const struct troop_migration troop_migrations[];
extern const int troop_migrations_count;

#endif
