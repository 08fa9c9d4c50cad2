/*
 * test_ticket_keys.c - the ring of ticket signing keys over a real SQLite
 * ledger: the signer changes at the new key's activation and not before;
 * the old key stays published until its tickets have expired, then goes;
 * one rotation at a time; a second coordinator sharing the ledger picks
 * the ring up on reload; a rotation against a changed ring is refused
 * (compare and set); the stored form round-trips and a damaged one is
 * refused without changing what is held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "error.h"
#include "identity.h"
#include "ledger.h"
#include "ticket_keys.h"

#define T0 1800000000LL
#define LEAD 120
#define TTL 300

typedef struct {
	char dir[64], url[128];
	ledger *l;
	ledger_conn *c;
	troop_identity first;
	ticket_keys *a, *b;      /* two coordinators sharing the ledger */
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	if (!f || sodium_init() < 0)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/troop-tkeys-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->url, sizeof(f->url), "sqlite:%s/ledger.db", f->dir);
	if (ledger_open(&f->l, f->url) != 0 || ledger_conn_open(&f->c, f->l) != 0)
		return -1;
	identity_generate(&f->first);
	if (ticket_keys_new(&f->a, &f->first) != 0 || ticket_keys_new(&f->b, &f->first) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];

	ticket_keys_free(f->a);
	ticket_keys_free(f->b);
	ledger_conn_close(f->c);
	ledger_close(f->l);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void signer_pk(ticket_keys *k, int64_t now, unsigned char pk[TROOP_PK_LEN])
{
	troop_identity s;

	ticket_keys_signer(k, &s, now);
	memcpy(pk, s.pk, TROOP_PK_LEN);
	identity_wipe(&s);
}

static void test_rotation(void **state)
{
	fixture *f = *state;
	ticket_keys_pub pub[TICKET_KEYS_MAX], next;
	unsigned char pk[TROOP_PK_LEN];
	size_t n;

	/* before any rotation: the first key signs, alone, forever */
	signer_pk(f->a, T0, pk);
	assert_memory_equal(pk, f->first.pk, TROOP_PK_LEN);
	n = ticket_keys_published(f->a, pub, TICKET_KEYS_MAX, T0);
	assert_int_equal(n, 1);
	assert_int_equal(pub[0].retires_at, 0);

	assert_int_equal(ticket_keys_rotate(f->a, f->c, T0, LEAD, TTL, &next), 0);
	assert_int_equal(next.activates_at, T0 + LEAD);
	/* published at once, both; the old key still signs until the lead ends */
	n = ticket_keys_published(f->a, pub, TICKET_KEYS_MAX, T0);
	assert_int_equal(n, 2);
	assert_string_equal(pub[1].pub.kid, next.pub.kid);
	assert_int_equal(pub[0].retires_at, T0 + LEAD + TTL + TICKET_KEYS_RETIRE_MARGIN_S);
	signer_pk(f->a, T0 + LEAD - 1, pk);
	assert_memory_equal(pk, f->first.pk, TROOP_PK_LEN);
	signer_pk(f->a, T0 + LEAD, pk);
	assert_memory_equal(pk, next.pub.pk, TROOP_PK_LEN);

	/* one rotation at a time */
	assert_int_equal(ticket_keys_rotate(f->a, f->c, T0 + 1, LEAD, TTL, NULL), TROOP_ECONFLICT);
	assert_non_null(strstr(troop_error_msg(), "under way"));

	/* the other coordinator: its own first key until it reloads */
	n = ticket_keys_published(f->b, pub, TICKET_KEYS_MAX, T0);
	assert_int_equal(n, 1);
	assert_int_equal(ticket_keys_reload(f->b, f->c), 0);
	n = ticket_keys_published(f->b, pub, TICKET_KEYS_MAX, T0);
	assert_int_equal(n, 2);
	assert_string_equal(pub[1].pub.kid, next.pub.kid);
	signer_pk(f->b, T0 + LEAD, pk);
	assert_memory_equal(pk, next.pub.pk, TROOP_PK_LEN);

	/* the old key's tickets have all expired: it is no longer published */
	n = ticket_keys_published(f->a, pub, TICKET_KEYS_MAX,
	    T0 + LEAD + TTL + TICKET_KEYS_RETIRE_MARGIN_S);
	assert_int_equal(n, 1);
	assert_string_equal(pub[0].pub.kid, next.pub.kid);
}

static void test_concurrent_rotations(void **state)
{
	fixture *f = *state;
	ticket_keys_pub next;
	size_t n;
	ticket_keys_pub pub[TICKET_KEYS_MAX];

	/* a rotates, then b (which has not reloaded) rotates later: b reads
	 * the stored ring, so it rotates a's new key, not its stale copy */
	assert_int_equal(ticket_keys_rotate(f->a, f->c, T0, LEAD, TTL, NULL), 0);
	assert_int_equal(ticket_keys_rotate(f->b, f->c, T0 + LEAD, LEAD, TTL, &next), 0);
	n = ticket_keys_published(f->b, pub, TICKET_KEYS_MAX, T0 + LEAD);
	assert_int_equal(n, 3);
	assert_int_equal(ticket_keys_reload(f->a, f->c), 0);
	n = ticket_keys_published(f->a, pub, TICKET_KEYS_MAX, T0 + LEAD);
	assert_int_equal(n, 3);
	assert_string_equal(pub[2].pub.kid, next.pub.kid);

	/* compare and set: a write over a ring that changed underneath */
	{
		char text[2048];
		assert_int_equal(ledger_kv_get(text, sizeof(text), NULL, f->c, TICKET_KEYS_KV), 0);
		assert_int_equal(ledger_kv_replace(f->c, TICKET_KEYS_KV, "stale", text),
		    TROOP_ECONFLICT);
		assert_int_equal(ledger_kv_replace(f->c, TICKET_KEYS_KV, text, text), 0);
	}
}

static void test_stored_form(void **state)
{
	fixture *f = *state;
	char text[2048], bad[2048];
	ticket_keys_pub pub[TICKET_KEYS_MAX];

	assert_int_equal(ticket_keys_rotate(f->a, f->c, T0, LEAD, TTL, NULL), 0);
	assert_int_equal(ticket_keys_encode(f->a, text, sizeof(text)), 0);
	assert_int_equal(strncmp(text, "troop-ticket-keys 1\n", 20), 0);
	assert_int_equal(ticket_keys_decode(f->b, text), 0);
	assert_int_equal(ticket_keys_published(f->b, pub, TICKET_KEYS_MAX, T0), 2);
	/* too small a buffer */
	assert_int_equal(ticket_keys_encode(f->a, text, 40), TROOP_ETOOLARGE);
	/* damaged: refused, and what is held stays */
	assert_int_equal(ticket_keys_decode(f->b, "troop-ticket-keys 2\n"), TROOP_EINVAL);
	assert_int_equal(ticket_keys_decode(f->b, "troop-ticket-keys 1\n"), TROOP_EINVAL);
	assert_int_equal(ticket_keys_decode(f->b, "troop-ticket-keys 1\nAAAA 0 0\n"),
	    TROOP_EINVAL);
	assert_int_equal(ticket_keys_encode(f->a, text, sizeof(text)), 0);
	snprintf(bad, sizeof(bad), "%s", text);
	bad[strlen(bad) - 1] = '\0';   /* a line without its newline */
	assert_int_equal(ticket_keys_decode(f->b, bad), TROOP_EINVAL);
	assert_int_equal(ticket_keys_published(f->b, pub, TICKET_KEYS_MAX, T0), 2);
	/* a lead out of range */
	assert_int_equal(ticket_keys_rotate(f->a, f->c, T0, -1, TTL, NULL), TROOP_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_rotations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stored_form, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
