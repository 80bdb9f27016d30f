/* The herd command: parsers for option values shared by its subcommands. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cli_parse_int(const char* s, int min, int max, int* out) {
  char* end;
  long v;
  errno = 0;
  if (s == NULL || *s == '\0' || *s == ' ' || *s == '+')
    return -1;
  v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
    return -1;
  *out = (int)v;
  return 0;
}

int cli_parse_duration(const char* s, uint64_t max_ms, uint64_t* ms) {
  static const struct {
    const char* unit;
    uint64_t ms;
  } units[] = {
      {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  uint64_t v = 0;
  const char* p = s;
  if (s == NULL || *p < '0' || *p > '9')
    return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    v = v * 10 + (uint64_t)(*p - '0');
    if (v > max_ms)
      return -1;
  }
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(p, units[i].unit) == 0) {
      if (v > max_ms / units[i].ms)
        return -1;
      *ms = v * units[i].ms;
      return 0;
    }
  }
  return -1;
}

int cli_parse_signal(const char* s, int* signum) {
  if (s == NULL || *s == '\0')
    return -1;
  if (*s >= '0' && *s <= '9')
    return cli_parse_int(s, 1, SIGRTMAX, signum);
  if (strncasecmp(s, "SIG", 3) == 0)
    s += 3;
  for (int i = 1; i < NSIG; i++) {
    const char* name = sigabbrev_np(i);
    if (name != NULL && strcasecmp(name, s) == 0) {
      *signum = i;
      return 0;
    }
  }
  return -1;
}

const char* cli_signal_name(int signum) {
  static char buf[32];
  const char* name = sigabbrev_np(signum);
  if (name != NULL)
    snprintf(buf, sizeof(buf), "SIG%s", name);
  else
    snprintf(buf, sizeof(buf), "SIG%d", signum);
  return buf;
}

const char* cli_bad_option(char** argv, int optind, int optopt) {
  static char buf[64];
  const char* arg = optind > 0 ? argv[optind - 1] : "";
  if (optopt != 0 && strncmp(arg, "--", 2) != 0) {
    snprintf(buf, sizeof(buf), "-%c", optopt);
    return buf;
  }
  snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(arg, "="), arg);
  return buf;
}

int cli_option_ambiguous(char** argv, int optind,
                         const struct option* options) {
  const char* arg = optind > 0 ? argv[optind - 1] : "";
  size_t n;
  int matches = 0;
  if (strncmp(arg, "--", 2) != 0)
    return 0;
  arg += 2;
  n = strcspn(arg, "=");
  if (n == 0)
    return 0;
  for (; options->name != NULL; options++) {
    if (strncmp(options->name, arg, n) != 0)
      continue;
    if (strlen(options->name) == n)
      return 0;
    matches++;
  }
  return matches > 1;
}

herd_sched_policy_t cli_default_policy(void) {
  static const char* const vars[] = {"HERD_SCHED_POLICY",
                                     "NODE_CLUSTER_SCHED_POLICY"};
  herd_sched_policy_t policy = herd_cluster_default_policy();
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
    const char* v = getenv(vars[i]);
    int p = herd_sched_policy_parse(v);
    if (i == 0 && p > 0)
      break; /* valid: the next is not looked at */
    /* NODE_CLUSTER_SCHED_POLICY takes Node's values only. */
    if (v == NULL || v[0] == '\0' || (p > 0 && p != HERD_SCHED_REUSEPORT))
      continue;
    fprintf(stderr, "herd: %s='%s' is not a policy (%s): using %s\n", vars[i],
            v, i == 0 ? "rr, shared or reuseport" : "rr or none",
            herd_sched_policy_name(policy));
  }
  return policy;
}
