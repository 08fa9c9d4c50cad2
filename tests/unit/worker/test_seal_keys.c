/*
 * test_seal_keys.c - the worker's sealing keys (seal_keys.h): made once and
 * kept 0600 across restarts, statements that verify against the node id,
 * rotation on schedule with the previous key still opening requests until
 * its overlap ends, and a corrupt key file refused rather than replaced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "error.h"
#include "identity.h"
#include "seal.h"
#include "seal_keys.h"

#define T0 1800000000LL
#define ROT 3600

static void temp_path(char *dir, size_t dlen, char *path, size_t plen)
{
	snprintf(dir, dlen, "/tmp/troop-sealkeys-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, plen, "%s/worker/seal.key", dir);
}

static void cleanup(const char *dir, const char *path)
{
	char sub[600];

	unlink(path);
	snprintf(sub, sizeof(sub), "%s/worker", dir);
	rmdir(sub);
	rmdir(dir);
}

/* The statement's key, checked against the node id. */
static void stmt_key(uint8_t pk[SEAL_PK_LEN], seal_keys *k, const troop_identity *node,
    int64_t now)
{
	char stmt[SEAL_STMT_MAX];
	int64_t na = 0;

	assert_int_equal(seal_keys_statement(k, stmt, sizeof(stmt), now), 0);
	assert_int_equal(seal_statement_verify(pk, &na, stmt, node->id, now), 0);
	assert_true(na >= now);
}

static void test_persist_and_mode(void **state)
{
	char dir[64], path[600];
	troop_identity node;
	seal_keys *k;
	seal_keypair kp;
	uint8_t a[SEAL_PK_LEN], b[SEAL_PK_LEN];
	struct stat sb;

	(void)state;
	identity_generate(&node);
	temp_path(dir, sizeof(dir), path, sizeof(path));
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	stmt_key(a, k, &node, T0 + 10);
	assert_int_equal(seal_keys_find(k, &kp, a, T0 + 10), 0);
	assert_memory_equal(kp.pk, a, SEAL_PK_LEN);
	seal_keys_free(k);
	/* a restart keeps the key clients were told about */
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0 + 20), 0);
	stmt_key(b, k, &node, T0 + 20);
	assert_memory_equal(a, b, SEAL_PK_LEN);
	/* an unknown key is refused */
	b[0] ^= 1;
	assert_int_equal(seal_keys_find(k, &kp, b, T0 + 20), TROOP_ENOKEY);
	seal_keys_free(k);
	/* another node's identity cannot vouch for these statements */
	{
		troop_identity other;
		char stmt[SEAL_STMT_MAX];

		identity_generate(&other);
		assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0 + 30), 0);
		assert_int_equal(seal_keys_statement(k, stmt, sizeof(stmt), T0 + 30), 0);
		assert_int_equal(seal_statement_verify(b, NULL, stmt, other.id, T0 + 30),
		    TROOP_EAUTH);
		seal_keys_free(k);
	}
	cleanup(dir, path);
}

static void test_rotation_overlap(void **state)
{
	char dir[64], path[600];
	troop_identity node;
	seal_keys *k;
	seal_keypair kp;
	uint8_t a[SEAL_PK_LEN], b[SEAL_PK_LEN], c[SEAL_PK_LEN];

	(void)state;
	identity_generate(&node);
	temp_path(dir, sizeof(dir), path, sizeof(path));
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0), 0);
	stmt_key(a, k, &node, T0);
	/* not due yet */
	stmt_key(b, k, &node, T0 + ROT - 1);
	assert_memory_equal(a, b, SEAL_PK_LEN);
	/* due: a new key; the old one still opens requests */
	stmt_key(b, k, &node, T0 + ROT);
	assert_memory_not_equal(a, b, SEAL_PK_LEN);
	assert_int_equal(seal_keys_find(k, &kp, a, T0 + ROT + 1), 0);
	assert_int_equal(seal_keys_find(k, &kp, b, T0 + ROT + 1), 0);
	/* the rotation survives a restart, with the previous key */
	seal_keys_free(k);
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0 + ROT + 2), 0);
	assert_int_equal(seal_keys_find(k, &kp, a, T0 + ROT + 2), 0);
	stmt_key(c, k, &node, T0 + ROT + 2);
	assert_memory_equal(b, c, SEAL_PK_LEN);
	/* past the overlap the old key is gone */
	assert_int_equal(seal_keys_find(k, &kp, a, T0 + ROT + SEAL_KEYS_OVERLAP_S + 1),
	    TROOP_ENOKEY);
	/* two rotations later the first key is forgotten altogether */
	stmt_key(c, k, &node, T0 + 2 * ROT);
	assert_int_equal(seal_keys_find(k, &kp, a, T0 + 2 * ROT), TROOP_ENOKEY);
	assert_int_equal(seal_keys_find(k, &kp, b, T0 + 2 * ROT), 0);
	seal_keys_free(k);
	cleanup(dir, path);
}

static void test_corrupt_file(void **state)
{
	char dir[64], path[600];
	troop_identity node;
	seal_keys *k;
	FILE *f;

	(void)state;
	identity_generate(&node);
	temp_path(dir, sizeof(dir), path, sizeof(path));
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0), 0);
	seal_keys_free(k);
	/* a public key that is not the secret key's */
	f = fopen(path, "r+");
	assert_non_null(f);
	{
		/* two other base64 characters (writing fixed ones left a key
		 * that began with them as it was: one run in 4096) */
		int a = fgetc(f), b = fgetc(f);

		rewind(f);
		fputc(a == 'B' ? 'C' : 'B', f);
		fputc(b == 'B' ? 'C' : 'B', f);
	}
	fclose(f);
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0), TROOP_EINVAL);
	assert_null(k);
	f = fopen(path, "w");
	fputs("junk\n", f);
	fclose(f);
	assert_int_equal(seal_keys_open(&k, path, &node, ROT, T0), TROOP_EINVAL);
	/* a rotation period below the minimum */
	unlink(path);
	assert_int_equal(seal_keys_open(&k, path, &node, 1, T0), TROOP_EINVAL);
	cleanup(dir, path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_persist_and_mode),
		cmocka_unit_test(test_rotation_overlap),
		cmocka_unit_test(test_corrupt_file),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
