/* The herd command: `herd demo` runs the cluster HTTP demo of the seed
 * program; `herd --help`, `herd --version`. */
#include "cli.h"

#include <herd.h>
#include <stdio.h>
#include <string.h>

void herd_cli_usage(void* fp) {
  FILE* f = fp;
  fprintf(
      f,
      "usage: herd demo [--host ADDR] [--port N] [--workers N|auto]\n"
      "                 [--policy rr|shared|reuseport]\n"
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
      "                   or reuseport (HERD_SCHED_POLICY, else reuseport)\n");
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "demo") == 0)
    return herd_cli_demo(argc - 1, argv + 1);
  if (argc == 2 &&
      (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    herd_cli_usage(stdout);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    printf("herd %s\n", HERD_VERSION_STRING);
    return 0;
  }
  if (argc >= 2)
    fprintf(stderr, "herd: unknown command or option '%s'\n", argv[1]);
  herd_cli_usage(stderr);
  return 2;
}
