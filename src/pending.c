/*
 * pending.c - commands whose modules have not been built yet.  Each says
 * so plainly and exits 1; nothing here pretends to work.  Entries leave
 * this file as their modules land.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static int pending(const char *cmd, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: troop %s\n\n'troop %s' is not built yet in this version; "
			    "see the README's 'What works' table.\n", cmd, cmd);
			return 0;
		}
	}
	fprintf(stderr, "troop %s: not built yet in this version; see the README's "
	    "'What works' table.\n", cmd);
	return 1;
}

#define PENDING(name) \
	int cmd_##name(int argc, char **argv) { return pending(#name, argc, argv); }

PENDING(demo)
