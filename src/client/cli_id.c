/*
 * cli_id.c - `troop id`: print this machine's account id, creating the
 * identity key in $TROOP_HOME on first use (DESIGN.md section 4).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "identity.h"

#define ID_USAGE "usage: troop id [--json]"

static void id_help(void)
{
	printf(ID_USAGE "\n\n"
	    "Print your account id: the base64url of your Ed25519 public key.\n"
	    "The key lives in $TROOP_HOME/identity.key (default\n"
	    "~/.config/monkey-troop/identity.key) and is created on first use.\n\n"
	    "Options:\n"
	    "  --json      print {\"account_id\": ..., \"public_key_path\": ...}\n"
	    "  -h, --help  show this help\n\n"
	    "Environment: TROOP_HOME (directory of the identity key), HOME\n");
}

static int print_json(const char *id, const char *path)
{
	json_t *o = json_pack("{s:s, s:s}", "account_id", id, "public_key_path", path);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int rc = 0;

	if (!s) {
		fprintf(stderr, "troop id: out of memory\n");
		rc = 1;
	} else {
		printf("%s\n", s);
	}
	free(s);
	json_decref(o);
	return rc;
}

int cmd_id(int argc, char **argv)
{
	char path[4096];
	troop_identity id;
	bool json = false, created = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			id_help();
			return 0;
		}
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
			continue;
		}
		if (argv[i][0] == '-')
			fprintf(stderr, "troop id: unknown option '%s'\n", argv[i]);
		else
			fprintf(stderr, "troop id: unexpected argument '%s'\n", argv[i]);
		fprintf(stderr, ID_USAGE "\n");
		return EXIT_USAGE;
	}
	if (identity_default_path(path, sizeof(path)) != 0) {
		fprintf(stderr, "troop id: %s\n", troop_error_msg());
		return 1;
	}
	rc = identity_load_or_create(&id, path, &created);
	if (rc != 0) {
		fprintf(stderr, "troop id: %s\n", troop_error_msg());
		return 1;
	}
	if (created)
		fprintf(stderr, "created a new identity at %s\n", path);
	rc = json ? print_json(id.id, path) : (printf("%s\n", id.id), 0);
	identity_wipe(&id);
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
