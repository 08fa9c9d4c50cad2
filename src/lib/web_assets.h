/*
 * web_assets.h - the web pages built into the binary: every file under
 * src/web/ becomes a byte array (cmake/embed_web.cmake), so the pages work
 * on a network with no internet (no CDN, no external fonts, no build step).
 * The coordinator serves network.html at /, `troop up` serves ui.html at
 * /ui.
 */
#ifndef TROOP_WEB_ASSETS_H
#define TROOP_WEB_ASSETS_H

#include <stddef.h>

#include "http_server.h"

struct troop_web_asset {
	const char *name;      /* file name under src/web/ ("network.html") */
	const char *data;      /* the file, NUL-terminated */
	size_t len;            /* without the NUL */
};

/* Generated: the files, ending with a row whose name is NULL. */
extern const struct troop_web_asset troop_web_assets[];

/* The file `name` and its length, or NULL when the build has none.
 * Static storage; thread-safe. */
const char *web_asset(const char *name, size_t *len);

/* Answer 200 with an HTML page: text/html, no caching, and a Content
 * Security Policy that lets it reach only its own origin (inline script
 * and style allowed: the page is one file), never be framed.  Ends the
 * request. */
void web_reply_page(http_req *r, const char *page, size_t len);

#endif
