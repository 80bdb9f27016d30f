/* The herd command: `herd demo` runs the cluster HTTP demo of the seed
 * program, `herd run` supervises any program as a pool of workers;
 * `herd --help`, `herd --version`. */
#include "cli.h"

#include <getopt.h>
#include <herd.h>
#include <stdio.h>
#include <string.h>

void herd_cli_usage(FILE* f) {
  fprintf(
      f,
      "usage: herd demo [--host ADDR] [--port N] [--workers N|auto]\n"
      "                 [--policy rr|shared|reuseport]\n"
      "       herd run [OPTIONS] [--] PROGRAM [ARGS...]\n"
      "       herd --help | --version\n"
      "\n"
      "demo: a primary forks one worker per CPU (auto) that answer HTTP\n"
      "requests with \"123123\\n\" and report each one to the primary,\n"
      "which prints \"requests = N\" once a second. SIGINT or SIGTERM\n"
      "stops the workers gracefully and prints \"total requests = N\".\n"
      "\n"
      "  --host ADDR      numeric IPv4/IPv6 address to bind (127.0.0.1)\n"
      "  --port N         TCP port, 0 picks a free one (8000)\n"
      "  --workers N      number of workers, or auto: one per CPU (auto)\n"
      "  --policy P       how connections reach the workers: rr, shared\n"
      "                   or reuseport (HERD_SCHED_POLICY, else reuseport)\n"
      "\n"
      "run: runs PROGRAM as a supervised pool of workers that share the\n"
      "addresses herd listens on; `herd run --help` lists its options.\n");
}

int main(int argc, char** argv) {
  static const struct option options[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  int c;

  /* "+": stop at the subcommand; its options are its own. */
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
    switch (c) {
      case 'h':
        herd_cli_usage(stdout);
        return 0;
      case 'V':
        printf("herd %s\n", HERD_VERSION_STRING);
        return 0;
      default:
        fprintf(stderr, "herd: unknown command or option '%s'\n",
                cli_bad_option(argv, optind, optopt));
        herd_cli_usage(stderr);
        return 2;
    }
  }
  if (optind < argc) {
    const char* cmd = argv[optind];
    /* The subcommand parses from a fresh getopt state (optind 0 makes GNU
     * getopt start over). */
    argc -= optind;
    argv += optind;
    optind = 0;
    if (strcmp(cmd, "demo") == 0)
      return herd_cli_demo(argc, argv);
    if (strcmp(cmd, "run") == 0)
      return herd_cli_run(argc, argv);
    fprintf(stderr, "herd: unknown command or option '%s'\n", cmd);
  }
  herd_cli_usage(stderr);
  return 2;
}
