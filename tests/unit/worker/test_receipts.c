/*
 * test_receipts.c - the worker's job records and receipts (job.h, receipts.h): receipt
 * bodies and job ids, and the spool (files appear, are loaded back, are
 * removed once the coordinator accepts).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sodium.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "encoding.h"
#include "error.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "keyring.h"
#include "receipts.h"
#include "replay.h"
#include "ticket.h"

/* ---- records ---------------------------------------------------------------------- */

static void test_receipt_body_and_ids(void **state)
{
	worker_job j = { .prompt_tokens = 3, .completion_tokens = 9, .duration_ms = 1234,
		.started_at_ms = 1764000000123LL, .ended_at_ms = 1764000001357LL,
		.outcome = JOB_CUT_OFF };
	json_t *b;

	snprintf(j.job_id, sizeof(j.job_id), "AbC-_09");
	snprintf(j.requester, sizeof(j.requester), "requester");
	snprintf(j.model, sizeof(j.model), "llama3:8b");
	b = job_receipt_body(&j, "node");
	assert_string_equal(json_string_value(json_object_get(b, "job_id")), "AbC-_09");
	assert_string_equal(json_string_value(json_object_get(b, "node_id")), "node");
	assert_string_equal(json_string_value(json_object_get(b, "requester")), "requester");
	assert_string_equal(json_string_value(json_object_get(b, "model")), "llama3:8b");
	assert_string_equal(json_string_value(json_object_get(b, "outcome")), "cut_off");
	assert_int_equal(json_integer_value(json_object_get(b, "duration_ms")), 1234);
	assert_int_equal(json_integer_value(json_object_get(b, "prompt_tokens")), 3);
	assert_int_equal(json_integer_value(json_object_get(b, "completion_tokens")), 9);
	assert_int_equal(json_integer_value(json_object_get(b, "started_at")), 1764000000);
	assert_int_equal(json_integer_value(json_object_get(b, "ended_at")), 1764000001);
	json_decref(b);
	/* an engine that failed before any output: nothing to charge */
	j.outcome = JOB_ENGINE_ERROR;
	b = job_receipt_body(&j, "node");
	assert_string_equal(json_string_value(json_object_get(b, "outcome")), "engine_error");
	assert_int_equal(json_integer_value(json_object_get(b, "duration_ms")), 0);
	json_decref(b);

	assert_true(job_id_valid("AbC-_09"));
	assert_false(job_id_valid(""));
	assert_false(job_id_valid(NULL));
	assert_false(job_id_valid("../etc"));
	assert_false(job_id_valid("a.b"));
	assert_false(job_id_valid("a/b"));
	{
		char longid[JOB_ID_MAX + 2];
		memset(longid, 'a', sizeof(longid) - 1);
		longid[JOB_ID_MAX + 1] = '\0';
		assert_false(job_id_valid(longid));
		longid[JOB_ID_MAX] = '\0';
		assert_true(job_id_valid(longid));
	}
	assert_string_equal(job_outcome_name(JOB_CLIENT_GONE), "client_gone");
	assert_string_equal(job_outcome_name(JOB_REJECTED), "rejected");
}

/* ---- receipt spool -------------------------------------------------------------------------- */

static int count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(p);
	return 0;
}

static void test_receipt_spool(void **state)
{
	char dir[256], root[256], path[400];
	troop_identity id;
	receipts *r;
	worker_job j = { .outcome = JOB_OK, .duration_ms = 5 };
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/troop-spool-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") :
	    "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(root, sizeof(root), "%s", dir);
	strcat(dir, "/a/b");  /* created with its parents */
	identity_generate(&id);
	/* nothing listens on port 1: every send fails, receipts stay */
	assert_int_equal(receipts_start(&r, "http://127.0.0.1:1", &id, dir), 0);
	snprintf(j.job_id, sizeof(j.job_id), "job-one");
	snprintf(j.model, sizeof(j.model), "m");
	assert_int_equal(receipts_submit(r, &j), 0);
	snprintf(j.job_id, sizeof(j.job_id), "job-two");
	assert_int_equal(receipts_submit(r, &j), 0);
	snprintf(j.job_id, sizeof(j.job_id), "bad/id");
	assert_int_equal(receipts_submit(r, &j), TROOP_EINVAL);
	assert_int_equal(receipts_pending(r), 2);
	for (int i = 0; i < 400 && count_files(dir, ".json") < 1; i++)
		usleep(10000);
	assert_true(count_files(dir, ".json") >= 1);
	receipts_stop(r, 200);
	/* both are on disk after the stop */
	assert_int_equal(count_files(dir, ".json"), 2);
	snprintf(path, sizeof(path), "%s/job-one.json", dir);
	{
		json_t *b = json_load_file(path, 0, NULL);
		assert_non_null(b);
		assert_string_equal(json_string_value(json_object_get(b, "job_id")), "job-one");
		assert_string_equal(json_string_value(json_object_get(b, "node_id")), id.id);
		json_decref(b);
	}
	/* a stray temporary file and a file that is not a receipt */
	snprintf(path, sizeof(path), "%s/.job-x.json.tmp", dir);
	f = fopen(path, "w");
	fputs("{", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/garbage.json", dir);
	f = fopen(path, "w");
	fputs("not json", f);
	fclose(f);
	/* loaded back at start */
	assert_int_equal(receipts_start(&r, "http://127.0.0.1:1", &id, dir), 0);
	assert_int_equal(receipts_pending(r), 2);
	receipts_stop(r, 0);
	assert_int_equal(count_files(dir, ".tmp"), 0);
	assert_int_equal(count_files(dir, ".json"), 3);  /* the garbage is left alone */
	identity_wipe(&id);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_receipt_body_and_ids),
		cmocka_unit_test(test_receipt_spool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
