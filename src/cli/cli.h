/* The herd command: shared declarations of its subcommands and of the
 * option value parsers they share. */
#ifndef HERD_CLI_H
#define HERD_CLI_H

#include <herd.h>
#include <stdint.h>
#include <stdio.h>

/* `herd demo ...`: argv[0] is "demo". Returns the exit status. */
int herd_cli_demo(int argc, char** argv);
/* `herd run ...`: argv[0] is "run". Returns the exit status. */
int herd_cli_run(int argc, char** argv);
/* Prints the usage text of the herd command to `f`. */
void herd_cli_usage(FILE* f);

/* Value parsers (util.c); each returns 0, or -1 for a bad value. */

/* A decimal integer in [min, max], nothing else around it. */
int cli_parse_int(const char* s, int min, int max, int* out);
/* A duration: a decimal number with an optional unit, ms, s (the default),
 * m or h ("500ms", "30", "30s", "2m"), at most `max_ms`; in ms. */
int cli_parse_duration(const char* s, uint64_t max_ms, uint64_t* ms);
/* A signal: a name with or without SIG ("TERM", "SIGTERM", any case) or a
 * number, 1 to SIGRTMAX. */
int cli_parse_signal(const char* s, int* signum);
/* "SIGTERM" for SIGTERM; "SIG<n>" for one without a name. Static buffer. */
const char* cli_signal_name(int signum);

/* herd_cluster_default_policy() (HERD_SCHED_POLICY, then
 * NODE_CLUSTER_SCHED_POLICY, then reuseport), saying on stderr, in one
 * line, which set value it ignores as invalid and what is used instead:
 * an invalid value is ignored, as Node ignores an invalid
 * NODE_CLUSTER_SCHED_POLICY, but not silently. */
herd_sched_policy_t cli_default_policy(void);

/* The text of the option getopt_long() just stopped at (for messages): the
 * argument up to any '=', or "-c" for a short option. Static buffer. */
const char* cli_bad_option(char** argv, int optind, int optopt);
/* Whether the long option getopt_long() just stopped at ("--re",
 * "--re=3") abbreviates more than one of `options`: getopt_long() returns
 * '?' for that as for an unknown one. */
struct option;
int cli_option_ambiguous(char** argv, int optind, const struct option* options);

#endif /* HERD_CLI_H */
