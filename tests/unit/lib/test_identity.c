/*
 * test_identity.c - identities and key files: account id codec, save/load
 * round trips, file and directory modes, refusal of key files others can
 * read, corrupt and mismatched files, the default path, and `troop id`.
 * Every test works in its own temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "encoding.h"
#include "error.h"
#include "identity.h"

typedef struct {
	char dir[256];
	char key[512];   /* dir/sub/identity.key: the sub directory does not exist yet */
} fixture;

static int rm_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return 0;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char p[1024];
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
			rm_tree(p);
		}
		if (d)
			closedir(d);
		return rmdir(path);
	}
	return unlink(path);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/troop-test-identity-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->key, sizeof(f->key), "%s/home/sub/identity.key", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	rm_tree(f->dir);
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* ---- account ids ---------------------------------------------------------- */

static void test_account_id_round_trip(void **state)
{
	troop_identity id;
	unsigned char pk[TROOP_PK_LEN];
	char enc[TROOP_ID_LEN + 1];

	(void)state;
	assert_int_equal(identity_generate(&id), 0);
	assert_int_equal(strlen(id.id), TROOP_ID_LEN);
	assert_null(strpbrk(id.id, "+/="));
	assert_int_equal(account_id_decode(pk, id.id), 0);
	assert_memory_equal(pk, id.pk, TROOP_PK_LEN);
	assert_int_equal(account_id_encode(enc, pk), 0);
	assert_string_equal(enc, id.id);
	/* the pk is the tail of the libsodium secret key */
	assert_memory_equal(id.sk + 32, id.pk, TROOP_PK_LEN);
	identity_wipe(&id);
	assert_int_equal(id.sk[0] | id.sk[63] | id.id[0], 0);
}

static void test_account_id_rejects(void **state)
{
	troop_identity id;
	unsigned char pk[TROOP_PK_LEN];
	char bad[64];

	(void)state;
	assert_int_equal(identity_generate(&id), 0);
	assert_int_equal(account_id_decode(pk, NULL), TROOP_EINVAL);
	assert_int_equal(account_id_decode(pk, ""), TROOP_EINVAL);
	/* 42 and 44 characters */
	snprintf(bad, sizeof(bad), "%.42s", id.id);
	assert_int_equal(account_id_decode(pk, bad), TROOP_EINVAL);
	snprintf(bad, sizeof(bad), "%sA", id.id);
	assert_int_equal(account_id_decode(pk, bad), TROOP_EINVAL);
	/* standard-alphabet character */
	snprintf(bad, sizeof(bad), "%s", id.id);
	bad[5] = '+';
	assert_int_equal(account_id_decode(pk, bad), TROOP_EINVAL);
	/* padding */
	snprintf(bad, sizeof(bad), "%s", id.id);
	bad[42] = '=';
	assert_int_equal(account_id_decode(pk, bad), TROOP_EINVAL);
	/* non-canonical last char: the low 2 bits of the 43rd char are unused */
	snprintf(bad, sizeof(bad), "%s", id.id);
	bad[42] = bad[42] == 'B' ? 'C' : 'B';  /* 'B' and 'C' have low bits set */
	assert_int_equal(account_id_decode(pk, bad), TROOP_EINVAL);
	identity_wipe(&id);
}

static void test_account_id_short(void **state)
{
	char out[9];

	(void)state;
	account_id_short(out, "AbCdEfGhIjKlMnOp");
	assert_string_equal(out, "AbCdEfGh");
	account_id_short(out, "abc");
	assert_string_equal(out, "abc");
	account_id_short(out, NULL);
	assert_string_equal(out, "");
}

/* ---- key files ------------------------------------------------------------- */

static void test_save_load_round_trip(void **state)
{
	fixture *f = *state;
	troop_identity a, b;
	struct stat st;
	char dir[600];

	assert_int_equal(identity_generate(&a), 0);
	assert_int_equal(identity_save(&a, f->key), 0);
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* the missing directories were created private */
	snprintf(dir, sizeof(dir), "%s/home/sub", f->dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(dir, sizeof(dir), "%s/home", f->dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	assert_int_equal(identity_load(&b, f->key), 0);
	assert_memory_equal(a.sk, b.sk, TROOP_SK_LEN);
	assert_memory_equal(a.pk, b.pk, TROOP_PK_LEN);
	assert_string_equal(a.id, b.id);
	identity_wipe(&a);
	identity_wipe(&b);
}

static void test_file_format_is_one_base64_line(void **state)
{
	fixture *f = *state;
	troop_identity a;
	char text[200], want[100];
	FILE *fp;
	size_t n;

	assert_int_equal(identity_generate(&a), 0);
	assert_int_equal(identity_save(&a, f->key), 0);
	fp = fopen(f->key, "r");
	assert_non_null(fp);
	n = fread(text, 1, sizeof(text) - 1, fp);
	fclose(fp);
	text[n] = '\0';
	assert_int_equal(b64_encode(want, sizeof(want), a.sk, TROOP_SK_LEN), 88);
	strcat(want, "\n");
	assert_string_equal(text, want);
	identity_wipe(&a);
}

static void test_save_replaces_and_leaves_no_temp(void **state)
{
	fixture *f = *state;
	troop_identity a, b, c;
	char dir[600];
	DIR *d;
	struct dirent *e;
	int files = 0;

	assert_int_equal(identity_generate(&a), 0);
	assert_int_equal(identity_generate(&b), 0);
	assert_int_equal(identity_save(&a, f->key), 0);
	assert_int_equal(identity_save(&b, f->key), 0);
	assert_int_equal(identity_load(&c, f->key), 0);
	assert_string_equal(c.id, b.id);
	snprintf(dir, sizeof(dir), "%s/home/sub", f->dir);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			files++;
	closedir(d);
	assert_int_equal(files, 1);
	identity_wipe(&a);
	identity_wipe(&b);
	identity_wipe(&c);
}

static void test_load_or_create(void **state)
{
	fixture *f = *state;
	troop_identity a, b;
	bool created = false;
	struct stat st;

	assert_int_equal(identity_load(&a, f->key), TROOP_ENOTFOUND);
	assert_int_equal(identity_load_or_create(&a, f->key, &created), 0);
	assert_true(created);
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(identity_load_or_create(&b, f->key, &created), 0);
	assert_false(created);
	assert_string_equal(a.id, b.id);
	assert_memory_equal(a.sk, b.sk, TROOP_SK_LEN);
	/* created may be NULL */
	assert_int_equal(identity_load_or_create(&b, f->key, NULL), 0);
	identity_wipe(&a);
	identity_wipe(&b);
}

static void test_refuses_group_or_other_access(void **state)
{
	fixture *f = *state;
	static const mode_t modes[] = { 0644, 0640, 0604, 0660, 0620, 0602, 0610, 0601 };
	troop_identity a, b;
	char want[600];
	bool created = true;

	assert_int_equal(identity_generate(&a), 0);
	assert_int_equal(identity_save(&a, f->key), 0);
	snprintf(want, sizeof(want), "chmod 600 %s", f->key);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		assert_int_equal(chmod(f->key, modes[i]), 0);
		assert_int_equal(identity_load(&b, f->key), TROOP_EFORBIDDEN);
		assert_non_null(strstr(troop_error_msg(), want));
		/* load_or_create must not paper over it by making a new key */
		assert_int_equal(identity_load_or_create(&b, f->key, &created), TROOP_EFORBIDDEN);
		assert_false(created);
	}
	assert_int_equal(chmod(f->key, 0400), 0);
	assert_int_equal(identity_load(&b, f->key), 0);
	assert_string_equal(a.id, b.id);
	identity_wipe(&a);
	identity_wipe(&b);
}

static void test_rejects_corrupt_files(void **state)
{
	fixture *f = *state;
	troop_identity a, b;
	char line[300], enc[100];
	char path[600];

	snprintf(path, sizeof(path), "%s/identity.key", f->dir);
	write_file(path, "not a key at all\n", 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), path));
	write_file(path, "", 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);

	assert_int_equal(identity_generate(&a), 0);
	assert_int_equal(b64_encode(enc, sizeof(enc), a.sk, TROOP_SK_LEN), 88);
	/* truncated */
	snprintf(line, sizeof(line), "%.60s\n", enc);
	write_file(path, line, 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);
	/* 32 bytes (a bare seed) is not accepted either */
	assert_int_equal(b64_encode(line, sizeof(line), a.sk, 32), 44);
	write_file(path, line, 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);
	/* two keys */
	snprintf(line, sizeof(line), "%s\n%s\n", enc, enc);
	write_file(path, line, 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);
	/* a directory */
	assert_int_equal(identity_load(&b, f->dir), TROOP_EINVAL);
	/* without the newline, and with CRLF, it is still the key */
	write_file(path, enc, 0600);
	assert_int_equal(identity_load(&b, path), 0);
	assert_string_equal(b.id, a.id);
	snprintf(line, sizeof(line), "%s\r\n", enc);
	write_file(path, line, 0600);
	assert_int_equal(identity_load(&b, path), 0);
	identity_wipe(&a);
	identity_wipe(&b);
}

static void test_rejects_big_file(void **state)
{
	fixture *f = *state;
	troop_identity b;
	char path[600], *big = malloc(100001);

	assert_non_null(big);
	memset(big, 'A', 100000);
	big[100000] = '\0';
	snprintf(path, sizeof(path), "%s/identity.key", f->dir);
	write_file(path, big, 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);
	free(big);
}

static void test_rejects_pk_mismatch(void **state)
{
	fixture *f = *state;
	troop_identity a, other, b;
	unsigned char sk[TROOP_SK_LEN];
	char line[100];
	char path[600];

	assert_int_equal(identity_generate(&a), 0);
	assert_int_equal(identity_generate(&other), 0);
	memcpy(sk, a.sk, 32);
	memcpy(sk + 32, other.pk, 32);   /* a's seed with someone else's pk */
	assert_int_equal(b64_encode(line, sizeof(line) - 1, sk, sizeof(sk)), 88);
	strcat(line, "\n");
	snprintf(path, sizeof(path), "%s/identity.key", f->dir);
	write_file(path, line, 0600);
	assert_int_equal(identity_load(&b, path), TROOP_EINVAL);
	assert_non_null(strstr(troop_error_msg(), "does not match"));
	identity_wipe(&a);
	identity_wipe(&other);
}

static void test_default_path(void **state)
{
	char buf[512], small[8];
	char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	char *old_troop = getenv("TROOP_HOME") ? strdup(getenv("TROOP_HOME")) : NULL;

	(void)state;
	setenv("TROOP_HOME", "/srv/troop", 1);
	setenv("HOME", "/home/ann", 1);
	assert_int_equal(identity_default_path(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/srv/troop/identity.key");
	assert_int_equal(identity_default_path(small, sizeof(small)), TROOP_EINVAL);
	unsetenv("TROOP_HOME");
	assert_int_equal(identity_default_path(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/home/ann/.config/monkey-troop/identity.key");
	setenv("TROOP_HOME", "", 1);   /* empty counts as unset */
	assert_int_equal(identity_default_path(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/home/ann/.config/monkey-troop/identity.key");
	unsetenv("TROOP_HOME");
	unsetenv("HOME");
	assert_int_equal(identity_default_path(buf, sizeof(buf)), TROOP_EINVAL);

	if (old_home)
		setenv("HOME", old_home, 1);
	if (old_troop)
		setenv("TROOP_HOME", old_troop, 1);
	free(old_home);
	free(old_troop);
}

/* ---- troop id ---------------------------------------------------------------- */

/* Run cmd_id with stdout and stderr sent to files; returns its exit code
 * and the captured text. */
static int run_id(const fixture *f, char *out, size_t outlen, char *err, size_t errlen,
    int argc, char **argv)
{
	char opath[600], epath[600];
	int saved_out = dup(1), saved_err = dup(2), fd, rc;
	ssize_t n;

	snprintf(opath, sizeof(opath), "%s/stdout", f->dir);
	snprintf(epath, sizeof(epath), "%s/stderr", f->dir);
	fflush(stdout);
	fflush(stderr);
	fd = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	close(fd);
	fd = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	rc = cmd_id(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);

	fd = open(opath, O_RDONLY);
	n = read(fd, out, outlen - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	fd = open(epath, O_RDONLY);
	n = read(fd, err, errlen - 1);
	err[n > 0 ? n : 0] = '\0';
	close(fd);
	return rc;
}

static void test_cmd_id(void **state)
{
	fixture *f = *state;
	char home[600], path[700], out[1024], err[1024], want[800];
	char *plain[] = { "id", NULL };
	char *json[] = { "id", "--json", NULL };
	char *help[] = { "id", "--help", NULL };
	char *bogus[] = { "id", "--bogus", NULL };
	char *extra[] = { "id", "extra", NULL };
	troop_identity id;
	json_t *j;
	struct stat st;

	snprintf(home, sizeof(home), "%s/th", f->dir);
	assert_true(snprintf(path, sizeof(path), "%s/identity.key", home) < (int)sizeof(path));
	setenv("TROOP_HOME", home, 1);

	/* first use creates the key and says so on stderr */
	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 1, plain), 0);
	snprintf(want, sizeof(want), "created a new identity at %s", path);
	assert_non_null(strstr(err, want));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(identity_load(&id, path), 0);
	snprintf(want, sizeof(want), "%s\n", id.id);
	assert_string_equal(out, want);

	/* second use prints the same id and creates nothing */
	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 1, plain), 0);
	assert_string_equal(out, want);
	assert_null(strstr(err, "created"));

	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 2, json), 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "account_id")), id.id);
	assert_string_equal(json_string_value(json_object_get(j, "public_key_path")), path);
	json_decref(j);

	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 2, help), 0);
	assert_non_null(strstr(out, "usage: troop id"));

	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 2, bogus), EXIT_USAGE);
	assert_non_null(strstr(err, "usage: troop id"));
	assert_string_equal(out, "");
	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 2, extra), EXIT_USAGE);

	/* a key others can read: exit 1 with the fix in the message */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(run_id(f, out, sizeof(out), err, sizeof(err), 1, plain), 1);
	snprintf(want, sizeof(want), "chmod 600 %s", path);
	assert_non_null(strstr(err, want));
	assert_string_equal(out, "");

	unsetenv("TROOP_HOME");
	identity_wipe(&id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_account_id_round_trip),
		cmocka_unit_test(test_account_id_rejects),
		cmocka_unit_test(test_account_id_short),
		cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_format_is_one_base64_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_replaces_and_leaves_no_temp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_or_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_group_or_other_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejects_corrupt_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejects_big_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejects_pk_mismatch, setup, teardown),
		cmocka_unit_test(test_default_path),
		cmocka_unit_test_setup_teardown(test_cmd_id, setup, teardown),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
