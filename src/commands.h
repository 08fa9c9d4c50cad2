/*
 * commands.h - the subcommands of `troop`.  Each takes the argv that
 * starts at the command's own name and returns the process exit code:
 * 0 success, 1 error, 2 bad usage.
 */
#ifndef TROOP_COMMANDS_H
#define TROOP_COMMANDS_H

#define EXIT_USAGE 2

int cmd_id(int argc, char **argv);
int cmd_coordinator(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_balance(int argc, char **argv);
int cmd_account(int argc, char **argv);
int cmd_nodes(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_transactions(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_admin(int argc, char **argv);

#endif
