/*
 * web_assets.c - looking up the built-in pages of web_assets.h and the
 * headers every page is served with.
 */
#include "web_assets.h"

#include <string.h>

const char *web_asset(const char *name, size_t *len)
{
	for (const struct troop_web_asset *a = troop_web_assets; a->name; a++) {
		if (strcmp(a->name, name) == 0) {
			if (len)
				*len = a->len;
			return a->data;
		}
	}
	return NULL;
}

void web_reply_page(http_req *r, const char *page, size_t len)
{
	http_reply_header(r, "Content-Security-Policy", "default-src 'none'; "
	    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
	    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
	http_reply_header(r, "X-Content-Type-Options", "nosniff");
	http_reply_header(r, "X-Frame-Options", "DENY");
	http_reply_header(r, "Referrer-Policy", "no-referrer");
	http_reply_header(r, "Cache-Control", "no-store");
	http_reply(r, 200, "text/html; charset=utf-8", page, len);
}
