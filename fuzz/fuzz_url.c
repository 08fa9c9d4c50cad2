/*
 * fuzz_url.c - libFuzzer harness for the storage URL parsers that read
 * operator configuration (DATABASE_URL, REDIS_URL): the Redis registry's
 * URL parser (registry_redis_url_check) and the PostgreSQL ledger's
 * (ledger_pg_url_check, over libpq's PQconninfoParse), without any
 * connection.  Properties: no crash or leak on any bytes; an accepted
 * URL's description is NUL-terminated, fits its buffer, and never holds
 * the password given in the URL.  Replayed by ctest over
 * fuzz/corpus/url/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_driver.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The password part of "scheme://user:PASS@host": NULL when none. */
static char *password_of(const char *url)
{
	const char *s = strstr(url, "://"), *at, *colon;

	if (!s)
		return NULL;
	s += 3;
	at = strchr(s, '@');
	colon = strchr(s, ':');
	if (!at || !colon || colon > at || at - colon < 5)
		return NULL;   /* short passwords match too much by chance */
	/* userinfo is part of the authority, which ends at '/', '?' or '#'
	 * (RFC 3986): an '@' after one of them is not a credential's end */
	if (strcspn(s, "/?#") < (size_t)(at - s))
		return NULL;
	return strndup(colon + 1, (size_t)(at - colon - 1));
}

/* Whether the user name of "scheme://USER:pass@host" holds `pw`. */
static int user_holds(const char *url, const char *pw)
{
	const char *s = strstr(url, "://") + 3;
	char *user = strndup(s, strcspn(s, ":"));
	int in = user != NULL && strstr(user, pw) != NULL;

	free(user);
	return in;
}

static void check_desc(const char *url, const char *desc, size_t cap)
{
	char *pw = password_of(url);

	if (strnlen(desc, cap) >= cap)
		abort();
	/* a leak is the password showing up in the description when the
	 * rest of the URL (after the '@') does not hold the same text */
	if (pw && strstr(desc, pw) && !strstr(strchr(strstr(url, "://"), '@') + 1, pw) &&
	    /* nor text the description writes itself */
	    !strstr("localhost:5432/6379(database)(default)(host)(port)", pw) &&
	    /* nor the user name (shown as the database when none is given)
	     * holding the same text */
	    !user_holds(url, pw))
		abort();
	free(pw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *url, desc[256];

	if (size > 4096)
		return 0;
	url = malloc(size + 1);
	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
#ifdef TROOP_HAVE_HIREDIS
	desc[0] = '\0';
	if (registry_redis_url_check(url, desc, sizeof(desc)) == 0)
		check_desc(url, desc, sizeof(desc));
#endif
#ifdef TROOP_HAVE_PQ
	desc[0] = '\0';
	if (strncmp(url, "postgres", 8) == 0) {
		const char *rest = strstr(url, "://");
		if (rest && ledger_pg_url_check(rest + 3, desc, sizeof(desc)) == 0)
			check_desc(url, desc, sizeof(desc));
	}
#endif
	free(url);
	return 0;
}
