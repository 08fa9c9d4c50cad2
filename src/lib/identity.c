/*
 * identity.c - Ed25519 identities: generation, key files and account ids.
 *
 * A key file is one line: the standard base64 of the 64-byte libsodium
 * secret key (seed || public key).  Files are written atomically (temporary
 * file in the same directory, fsync, then rename, or link when an existing
 * file must not be replaced) with mode 0600, and refused on load when group
 * or others have any access, the way ssh treats private keys.  Loading
 * re-derives the public key from the seed, so a file whose halves do not
 * belong together is caught rather than used to sign with a wrong id.
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "encoding.h"
#include "error.h"

/* a key file is 88 base64 chars and a newline; anything much larger is not one */
#define KEYFILE_MAX 512
#define PATH_MAX_LEN 4096

int identity_generate(troop_identity *out)
{
	if (!out)
		return troop_error_set(TROOP_EINVAL, "identity_generate: no output");
	if (crypto_sign_keypair(out->pk, out->sk) != 0)
		return troop_error_set(TROOP_ERR, "could not generate an Ed25519 key pair");
	return account_id_encode(out->id, out->pk);
}

void identity_wipe(troop_identity *id)
{
	if (id)
		sodium_memzero(id, sizeof(*id));
}

/* ---- account ids ---------------------------------------------------------- */

int account_id_encode(char out[TROOP_ID_LEN + 1], const unsigned char pk[TROOP_PK_LEN])
{
	if (b64url_encode(out, TROOP_ID_LEN + 1, pk, TROOP_PK_LEN) != TROOP_ID_LEN)
		return troop_error_set(TROOP_ERR, "could not encode an account id");
	return 0;
}

int account_id_decode(unsigned char pk[TROOP_PK_LEN], const char *id)
{
	size_t n = 0;

	if (!id || strnlen(id, TROOP_ID_LEN + 1) != TROOP_ID_LEN)
		return troop_error_set(TROOP_EINVAL,
		    "account id must be %d base64url characters", TROOP_ID_LEN);
	if (b64url_decode(pk, TROOP_PK_LEN, &n, id, TROOP_ID_LEN) != 0 || n != TROOP_PK_LEN)
		return troop_error_set(TROOP_EINVAL,
		    "account id is not valid base64url of a 32-byte public key");
	return 0;
}

void account_id_short(char out[9], const char *id)
{
	size_t n = id ? strnlen(id, 8) : 0;

	if (n)
		memcpy(out, id, n);
	out[n] = '\0';
}

/* ---- key files ------------------------------------------------------------- */

/* Derive the public key from the seed half of `sk` and compare it with the
 * stored half; fills out->pk and out->id on success. */
static int identity_from_sk(troop_identity *out, const unsigned char sk[TROOP_SK_LEN],
    const char *path)
{
	unsigned char pk[TROOP_PK_LEN], sk2[TROOP_SK_LEN];
	int rc = 0;

	if (crypto_sign_seed_keypair(pk, sk2, sk) != 0) {
		rc = troop_error_set(TROOP_ERR, "%s: could not derive the key pair", path);
		goto out;
	}
	if (sodium_memcmp(pk, sk + 32, TROOP_PK_LEN) != 0) {
		rc = troop_error_set(TROOP_EINVAL, "%s: the public key stored in the file "
		    "does not match its secret key (file corrupt)", path);
		goto out;
	}
	memcpy(out->sk, sk, TROOP_SK_LEN);
	memcpy(out->pk, pk, TROOP_PK_LEN);
	rc = account_id_encode(out->id, out->pk);
out:
	sodium_memzero(sk2, sizeof(sk2));
	return rc;
}

int identity_load(troop_identity *out, const char *path)
{
	char buf[KEYFILE_MAX + 1];
	unsigned char sk[TROOP_SK_LEN];
	size_t len = 0, n = 0;
	struct stat st;
	int fd = -1, rc = 0;

	if (!out || !path || !*path)
		return troop_error_set(TROOP_EINVAL, "identity_load: no path");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return troop_error_set(TROOP_ENOTFOUND, "no identity key at %s", path);
		return troop_error_set(TROOP_EIO, "cannot open %s: %s", path, strerror(errno));
	}
	/* check the file we opened, not the name, so it cannot be swapped */
	if (fstat(fd, &st) != 0) {
		rc = troop_error_set(TROOP_EIO, "cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = troop_error_set(TROOP_EINVAL, "%s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = troop_error_set(TROOP_EFORBIDDEN, "identity key %s is accessible by "
		    "group or others (mode %04o); run chmod 600 %s", path,
		    (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof(buf) - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = troop_error_set(TROOP_EIO, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > KEYFILE_MAX) {
			rc = troop_error_set(TROOP_EINVAL, "%s is not an identity key file "
			    "(longer than %d bytes)", path, KEYFILE_MAX);
			goto out;
		}
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	    buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (b64_decode(sk, sizeof(sk), &n, buf, len) != 0 || n != TROOP_SK_LEN) {
		rc = troop_error_set(TROOP_EINVAL, "%s is not a valid identity key "
		    "(expected one line of base64 holding a 64-byte Ed25519 secret key)", path);
		goto out;
	}
	rc = identity_from_sk(out, sk, path);
out:
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(sk, sizeof(sk));
	if (fd >= 0)
		close(fd);
	return rc;
}

/* mkdir -p for the directory part of `path`, creating missing levels 0700. */
static int make_parent_dirs(const char *path)
{
	char dir[PATH_MAX_LEN];
	char *slash;
	size_t n = strlen(path);
	struct stat st;

	if (n >= sizeof(dir))
		return troop_error_set(TROOP_EINVAL, "path too long: %s", path);
	memcpy(dir, path, n + 1);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return troop_error_set(TROOP_EIO, "cannot create directory %s: %s",
			    dir, strerror(errno));
		*p = c;
		if (c == '\0')
			break;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return troop_error_set(TROOP_EIO, "%s is not a directory", dir);
	return 0;
}

static void fsync_parent(const char *path)
{
	char dir[PATH_MAX_LEN];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	int fd;

	if (!slash) {
		dir[0] = '.';
		n = 1;
	} else if (n == 0) {
		dir[0] = '/';
		n = 1;
	} else if (n < sizeof(dir)) {
		memcpy(dir, path, n);
	} else {
		return;
	}
	dir[n] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Write `id` to a temporary file next to `path` and move it into place:
 * rename when `replace`, otherwise link, which fails with EEXIST when
 * another process created the file first (*exists is then set). */
static int save_file(const troop_identity *id, const char *path, bool replace, bool *exists)
{
	char tmp[PATH_MAX_LEN];
	char line[TROOP_SK_LEN * 2 + 2];
	size_t n, off = 0;
	bool have_tmp = false;
	int fd = -1, rc = 0;

	if (exists)
		*exists = false;
	if (!id || !path || !*path)
		return troop_error_set(TROOP_EINVAL, "identity_save: no path");
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= sizeof(tmp))
		return troop_error_set(TROOP_EINVAL, "path too long: %s", path);
	rc = make_parent_dirs(path);
	if (rc)
		return rc;
	n = b64_encode(line, sizeof(line) - 1, id->sk, TROOP_SK_LEN);
	if (n == 0) {
		rc = troop_error_set(TROOP_ERR, "could not encode the secret key");
		goto out;
	}
	line[n++] = '\n';
	fd = mkstemp(tmp);  /* O_EXCL, mode 0600 */
	if (fd < 0) {
		rc = troop_error_set(TROOP_EIO, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	have_tmp = true;
	if (fchmod(fd, 0600) != 0) {
		rc = troop_error_set(TROOP_EIO, "cannot chmod %s: %s", tmp, strerror(errno));
		goto out;
	}
	while (off < n) {
		ssize_t w = write(fd, line + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		rc = troop_error_set(TROOP_EIO, "cannot fsync %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = troop_error_set(TROOP_EIO, "cannot close %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (!replace) {
		if (link(tmp, path) == 0)
			goto synced;
		if (errno == EEXIST) {
			if (exists)
				*exists = true;
			goto out;
		}
		/* filesystems without hard links fall back to rename */
		if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS) {
			rc = troop_error_set(TROOP_EIO, "cannot create %s: %s", path, strerror(errno));
			goto out;
		}
	}
	if (rename(tmp, path) != 0) {
		rc = troop_error_set(TROOP_EIO, "cannot rename %s to %s: %s", tmp, path,
		    strerror(errno));
		goto out;
	}
	have_tmp = false;
synced:
	fsync_parent(path);
out:
	sodium_memzero(line, sizeof(line));
	if (fd >= 0)
		close(fd);
	if (have_tmp)
		unlink(tmp);
	return rc;
}

int identity_save(const troop_identity *id, const char *path)
{
	return save_file(id, path, true, NULL);
}

int identity_load_or_create(troop_identity *out, const char *path, bool *created)
{
	troop_identity fresh;
	bool exists = false;
	int rc;

	if (created)
		*created = false;
	rc = identity_load(out, path);
	if (rc != TROOP_ENOTFOUND)
		return rc;
	rc = identity_generate(&fresh);
	if (rc == 0)
		rc = save_file(&fresh, path, false, &exists);
	if (rc == 0 && exists) {
		/* someone else created it between our load and our link: use theirs */
		rc = identity_load(out, path);
	} else if (rc == 0) {
		*out = fresh;
		if (created)
			*created = true;
	}
	identity_wipe(&fresh);
	return rc;
}

/* The same rule as config_troop_home (config.h), kept here so that this
 * module does not depend on the option parser. */
int identity_default_path(char *buf, size_t len)
{
	const char *home = getenv("TROOP_HOME");
	int n;

	if (!buf || len == 0)
		return troop_error_set(TROOP_EINVAL, "identity_default_path: no buffer");
	if (home && *home) {
		n = snprintf(buf, len, "%s/identity.key", home);
	} else {
		home = getenv("HOME");
		if (!home || !*home)
			return troop_error_set(TROOP_EINVAL, "neither TROOP_HOME nor HOME is set; "
			    "set TROOP_HOME to the directory for the identity key");
		n = snprintf(buf, len, "%s/.config/monkey-troop/identity.key", home);
	}
	if (n < 0 || (size_t)n >= len)
		return troop_error_set(TROOP_EINVAL, "identity key path is too long "
		    "(TROOP_HOME or HOME)");
	return 0;
}
