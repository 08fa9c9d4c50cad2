/*
 * keys.c - the engines' API keys (llama-server --api-key, vLLM --api-key,
 * LM Studio's auth token), read from the file given to --engine-key-file.
 * A key sits in a file only the worker's user can read rather than on the
 * command line, where every user of the machine sees it in ps.  See
 * engine_keys_load in engine.h.
 */
#include "engines/engine.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS_FILE_MAX 65536

static bool key_ok(const char *k, size_t n)
{
	if (n == 0 || n >= ENGINE_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] <= ' ' || (unsigned char)k[i] >= 0x7f)
			return false;
	return true;
}

/* Apply one "KEY" or "URL KEY" line (NUL-terminated, trimmed). */
static int apply_line(engine_spec *specs, size_t n, char *line, int lineno)
{
	char *sp = strpbrk(line, " \t");
	const char *url = NULL, *key = line;
	size_t ulen = 0;
	bool hit = false;

	if (sp) {
		url = line;
		ulen = (size_t)(sp - line);
		key = sp + strspn(sp, " \t");
		while (ulen > 0 && url[ulen - 1] == '/')
			ulen--;
	}
	if (!key_ok(key, strlen(key)))
		return troop_error_set(TROOP_EINVAL, "--engine-key-file: line %d: expected "
		    "KEY or URL KEY (a key of 1..%d printable characters, no spaces)", lineno,
		    ENGINE_KEY_MAX - 1);
	for (size_t i = 0; i < n; i++) {
		if (url && (strlen(specs[i].url) != ulen ||
		    strncasecmp(specs[i].url, url, ulen) != 0))
			continue;
		snprintf(specs[i].api_key, sizeof(specs[i].api_key), "%s", key);
		hit = true;
	}
	if (!hit)
		return troop_error_set(TROOP_EINVAL, "--engine-key-file: line %d: %s", lineno,
		    url ? "the URL is not one given with --engine TYPE=URL" :
		    "no --engine TYPE=URL to give the key to");
	return 0;
}

int engine_keys_load(engine_spec *specs, size_t n, const char *path)
{
	char buf[KEYS_FILE_MAX + 1];
	struct stat st;
	ssize_t got;
	size_t len = 0;
	int fd, rc = 0, lineno = 0;
	char *line, *save = NULL;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return troop_error_set(TROOP_EIO, "--engine-key-file: cannot open %.200s: %s",
		    path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return troop_error_set(TROOP_EIO, "--engine-key-file: %.200s is not a regular "
		    "file", path);
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		close(fd);
		return troop_error_set(TROOP_EFORBIDDEN, "--engine-key-file: %.200s can be read "
		    "or written by other users (mode %03o); chmod 600 it", path,
		    (unsigned)(st.st_mode & 0777));
	}
	while (len < KEYS_FILE_MAX &&
	    (got = read(fd, buf + len, KEYS_FILE_MAX - len)) > 0)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t l;

		lineno++;
		line += strspn(line, " \t\r");
		l = strlen(line);
		while (l > 0 && (line[l - 1] == ' ' || line[l - 1] == '\t' ||
		    line[l - 1] == '\r'))
			line[--l] = '\0';
		if (l == 0 || line[0] == '#')
			continue;
		rc = apply_line(specs, n, line, lineno);
		if (rc)
			break;
	}
	sodium_memzero(buf, sizeof(buf));
	return rc;
}
