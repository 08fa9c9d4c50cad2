/*
 * main.c - the `troop` program: one binary, one subcommand per role
 * (DESIGN.md section 2).  This file only dispatches; each command parses
 * its own flags and wires modules together.
 */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "commands.h"
#include "log.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "coordinator", cmd_coordinator, "run a coordinator (registry, tickets, credits)" },
	{ "worker", cmd_worker, "donate a local engine's GPU time to the troop" },
	{ "up", cmd_up, "run the local OpenAI-compatible proxy on 127.0.0.1:9000" },
	{ "chat", cmd_chat, "send one chat prompt and stream the answer" },
	{ "balance", cmd_balance, "show your credit balance" },
	{ "account", cmd_account, "your name on the leaderboard; redeem an invite code" },
	{ "nodes", cmd_nodes, "list live worker nodes" },
	{ "models", cmd_models, "list the models the troop serves" },
	{ "transactions", cmd_transactions, "list your credit movements" },
	{ "id", cmd_id, "print your account id (creating the identity on first use)" },
	{ "admin", cmd_admin, "operator commands: suspend, list, audit, invite, rate-limit" },
	{ "demo", cmd_demo, "run a whole troop on this machine" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: troop <command> [options]\n\n"
	    "Monkey Troop: donate idle GPU time, run LLM inference on the troop's GPUs.\n\n"
	    "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'troop <command> --help' for a command's options.\n"
	    "Global: troop --help, troop --version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("troop %s\n", TROOP_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		if (sodium_init() < 0) {
			fprintf(stderr, "troop: libsodium failed to initialise\n");
			return 1;
		}
		curl_global_init(CURL_GLOBAL_DEFAULT);
		log_init();
		int rc = commands[i].run(argc - 1, argv + 1);
		curl_global_cleanup();
		return rc;
	}
	if (argv[1][0] == '-')
		fprintf(stderr, "troop: unknown option '%s'\n", argv[1]);
	else
		fprintf(stderr, "troop: unknown command '%s'\n", argv[1]);
	fprintf(stderr, "usage: troop <command> [options]   (see 'troop --help')\n");
	return EXIT_USAGE;
}
