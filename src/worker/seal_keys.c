/*
 * seal_keys.c - the worker's sealing keys, their file and their rotation
 * (seal_keys.h).
 */
#include "seal_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "error.h"
#include "log.h"

#define SEAL_KEYS_LINE_MAX 256

struct seal_keys {
	pthread_mutex_t mu;
	char *path;
	troop_identity node;
	int64_t rotate_s;
	seal_keypair cur, prev;
	bool has_prev;
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void key_line(char *out, size_t len, const seal_keypair *kp)
{
	char pk[SEAL_B64_PK_MAX], sk[SEAL_B64_PK_MAX];

	sodium_bin2base64(pk, sizeof(pk), kp->pk, SEAL_PK_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2base64(sk, sizeof(sk), kp->sk, SEAL_SK_LEN,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(out, len, "%s %s %" PRId64 " %" PRId64 "\n", pk, sk, kp->not_before,
	    kp->not_after);
	sodium_memzero(sk, sizeof(sk));
}

/* Write the keys (mutex held, or before the object is shared): temporary
 * file 0600, fsync, rename, directory fsync. */
static int keys_save(seal_keys *k)
{
	char tmp[PATH_MAX + 8], buf[2 * SEAL_KEYS_LINE_MAX], dir[PATH_MAX], *slash;
	size_t n;
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", k->path);
	key_line(buf, SEAL_KEYS_LINE_MAX, &k->cur);
	n = strlen(buf);
	if (k->has_prev) {
		key_line(buf + n, sizeof(buf) - n, &k->prev);
		n = strlen(buf);
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fchmod(fd, 0600) != 0 || write_all(fd, buf, n) != 0 || fsync(fd) != 0)
		rc = troop_error_set(TROOP_EIO, "cannot write %s: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	sodium_memzero(buf, sizeof(buf));
	if (rc == 0 && rename(tmp, k->path) != 0)
		rc = troop_error_set(TROOP_EIO, "cannot rename %s: %s", tmp, strerror(errno));
	if (rc != 0) {
		(void)unlink(tmp);
		return rc;
	}
	snprintf(dir, sizeof(dir), "%s", k->path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			(void)fsync(fd);
			close(fd);
		}
	}
	return 0;
}

/* One line of the key file into kp.  Returns 0 or TROOP_EINVAL. */
static int key_parse(seal_keypair *kp, const char *line)
{
	char pk[64], sk[64];
	long long nb, na;
	size_t l1 = 0, l2 = 0;
	int rc = 0;

	if (sscanf(line, "%63s %63s %lld %lld", pk, sk, &nb, &na) != 4 ||
	    sodium_base642bin(kp->pk, SEAL_PK_LEN, pk, strlen(pk), NULL, &l1, NULL,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || l1 != SEAL_PK_LEN ||
	    sodium_base642bin(kp->sk, SEAL_SK_LEN, sk, strlen(sk), NULL, &l2, NULL,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || l2 != SEAL_SK_LEN ||
	    na <= nb)
		rc = TROOP_EINVAL;
	if (rc == 0) {
		/* the public key must be the secret key's */
		uint8_t check[SEAL_PK_LEN];

		crypto_scalarmult_base(check, kp->sk);
		if (sodium_memcmp(check, kp->pk, SEAL_PK_LEN) != 0)
			rc = TROOP_EINVAL;
	}
	kp->not_before = nb;
	kp->not_after = na;
	sodium_memzero(sk, sizeof(sk));
	return rc;
}

/* Read the file.  Returns 0, TROOP_ENOTFOUND (no file), TROOP_EINVAL
 * (corrupt) or TROOP_EIO. */
static int keys_load(seal_keys *k)
{
	struct stat sb;
	char line[SEAL_KEYS_LINE_MAX];
	int n = 0, rc = 0;
	FILE *f = fopen(k->path, "re");

	if (!f)
		return errno == ENOENT ? TROOP_ENOTFOUND :
		    troop_error_set(TROOP_EIO, "cannot read %s: %s", k->path, strerror(errno));
	if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
		log_warn("seal_keys", "path=%s mode=%o hint=\"should be 0600\"", k->path,
		    (unsigned)(sb.st_mode & 0777));
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		if (n == 0)
			rc = key_parse(&k->cur, line);
		else if (n == 1)
			rc = key_parse(&k->prev, line);
		n++;
	}
	sodium_memzero(line, sizeof(line));
	fclose(f);
	if (rc == 0 && (n < 1 || n > 2))
		rc = TROOP_EINVAL;
	if (rc)
		return troop_error_set(TROOP_EINVAL, "the sealing key file %s is corrupt; move it "
		    "away to have a new key made", k->path);
	k->has_prev = n == 2;
	return 0;
}

/* Rotate when the current key is due (mutex held).  Returns 0 (rotated or
 * not due) or the save's error, the old keys kept. */
static int maybe_rotate(seal_keys *k, int64_t now)
{
	seal_keypair old_cur = k->cur, old_prev = k->prev;
	bool old_has = k->has_prev;
	int rc;

	if (now < k->cur.not_before + k->rotate_s && now >= k->cur.not_before - 60)
		return 0;
	k->prev = k->cur;
	k->has_prev = true;
	(void)seal_keypair_generate(&k->cur, now, k->rotate_s + SEAL_KEYS_OVERLAP_S);
	rc = keys_save(k);
	if (rc) {
		k->cur = old_cur;
		k->prev = old_prev;
		k->has_prev = old_has;
	} else {
		char pk[SEAL_B64_PK_MAX];

		sodium_bin2base64(pk, sizeof(pk), k->cur.pk, SEAL_PK_LEN,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		log_info("seal_key_rotated", "key=%.8s not_after=%" PRId64, pk, k->cur.not_after);
	}
	sodium_memzero(&old_cur, sizeof(old_cur));
	sodium_memzero(&old_prev, sizeof(old_prev));
	return rc;
}

int seal_keys_open(seal_keys **out, const char *path, const troop_identity *node,
    int64_t rotate_s, int64_t now)
{
	seal_keys *k;
	char dir[PATH_MAX], *slash;
	int rc;

	*out = NULL;
	if (rotate_s < SEAL_KEYS_MIN_ROTATE_S || !path || !node)
		return troop_error_set(TROOP_EINVAL, "sealing keys: a path, the node key and a "
		    "rotation period of at least %d s are required", SEAL_KEYS_MIN_ROTATE_S);
	k = calloc(1, sizeof(*k));
	if (!k || !(k->path = strdup(path))) {
		free(k);
		return troop_error_set(TROOP_ENOMEM, "out of memory for the sealing keys");
	}
	pthread_mutex_init(&k->mu, NULL);
	k->node = *node;
	k->rotate_s = rotate_s;
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			rc = troop_error_set(TROOP_EIO, "cannot create %s: %s", dir, strerror(errno));
			goto fail;
		}
	}
	rc = keys_load(k);
	if (rc == TROOP_ENOTFOUND) {
		(void)seal_keypair_generate(&k->cur, now, rotate_s + SEAL_KEYS_OVERLAP_S);
		k->has_prev = false;
		if ((rc = keys_save(k)) != 0)
			goto fail;
		log_info("seal_key_created", "path=%s", path);
	} else if (rc) {
		goto fail;
	} else if ((rc = maybe_rotate(k, now)) != 0) {
		goto fail;
	}
	*out = k;
	return 0;
fail:
	seal_keys_free(k);
	return rc;
}

int seal_keys_statement(seal_keys *k, char *out, size_t len, int64_t now)
{
	int rc;

	pthread_mutex_lock(&k->mu);
	if (maybe_rotate(k, now) != 0)
		log_warn("seal_keys", "error=\"%s\" hint=\"the current key stays in use\"",
		    troop_error_msg());
	rc = seal_statement_make(out, len, &k->node, &k->cur);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

int seal_keys_find(seal_keys *k, seal_keypair *out, const uint8_t pk[SEAL_PK_LEN],
    int64_t now)
{
	int rc = TROOP_ENOKEY;

	pthread_mutex_lock(&k->mu);
	if (sodium_memcmp(pk, k->cur.pk, SEAL_PK_LEN) == 0 && now <= k->cur.not_after) {
		*out = k->cur;
		rc = 0;
	} else if (k->has_prev && sodium_memcmp(pk, k->prev.pk, SEAL_PK_LEN) == 0 &&
	    now <= k->prev.not_after) {
		*out = k->prev;
		rc = 0;
	}
	pthread_mutex_unlock(&k->mu);
	if (rc)
		return troop_error_set(rc, "the request is sealed to a key this node does not "
		    "hold (rotated away, or another node's): authorize again");
	return 0;
}

void seal_keys_current(seal_keys *k, uint8_t pk[SEAL_PK_LEN])
{
	pthread_mutex_lock(&k->mu);
	memcpy(pk, k->cur.pk, SEAL_PK_LEN);
	pthread_mutex_unlock(&k->mu);
}

void seal_keys_free(seal_keys *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->mu);
	free(k->path);
	sodium_memzero(k, sizeof(*k));
	free(k);
}
