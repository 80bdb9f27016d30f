/* The herd command: shared declarations of its subcommands. */
#ifndef HERD_CLI_H
#define HERD_CLI_H

/* `herd demo ...`: argv[0] is "demo". Returns the exit status. */
int herd_cli_demo(int argc, char** argv);
/* Prints the usage text to `f`. */
void herd_cli_usage(void* f);

#endif /* HERD_CLI_H */
