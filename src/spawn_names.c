/* Node's spellings of spawn's values: signal names (kill(), killSignal,
 * the signal of a result) and the stdio option's strings ('pipe',
 * ['ignore', 'inherit', null, 'ipc', 4], ...), turned into herd's numbers
 * and herd_stdio_t entries. */
#include "process-int.h"

#include <ctype.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* os.constants.signals of Node on Linux, in its order. The first name of a
 * number is the one Node's signo_string() reports (SIGABRT before SIGIOT,
 * SIGIO before SIGPOLL). */
static const struct {
  const char* name;
  int signum;
} signals[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP},   {"SIGABRT", SIGABRT},
    {"SIGIOT", SIGIOT},   {"SIGBUS", SIGBUS},     {"SIGFPE", SIGFPE},
    {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1},   {"SIGSEGV", SIGSEGV},
    {"SIGUSR2", SIGUSR2}, {"SIGPIPE", SIGPIPE},   {"SIGALRM", SIGALRM},
    {"SIGTERM", SIGTERM}, {"SIGCHLD", SIGCHLD},   {"SIGSTKFLT", SIGSTKFLT},
    {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},   {"SIGTSTP", SIGTSTP},
    {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},   {"SIGURG", SIGURG},
    {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},   {"SIGVTALRM", SIGVTALRM},
    {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
    {"SIGPOLL", SIGPOLL}, {"SIGPWR", SIGPWR},     {"SIGSYS", SIGSYS},
};

int herd_signal_number(const char* name) {
  if (name == NULL)
    return UV_EINVAL;
  /* Node's child_process upper-cases the name (convertToValidSignal()). */
  for (size_t i = 0; i < HERD_ARRAY_SIZE(signals); i++)
    if (strcasecmp(name, signals[i].name) == 0)
      return signals[i].signum;
  return UV_EINVAL;
}

const char* herd_signal_name(int signum) {
  for (size_t i = 0; i < HERD_ARRAY_SIZE(signals); i++)
    if (signals[i].signum == signum)
      return signals[i].name;
  return NULL;
}

int herd__signal_valid(int signum) {
  return signum > 0 && signum < NSIG;
}

/* One item of a stdio spec, [p, p + len) without quotes or blanks, into
 * `e`. Returns 1 for the four words Node also takes as the whole option
 * ('pipe', 'overlapped', 'ignore', 'inherit'), 0 for the other items, or
 * UV_EINVAL. */
static int stdio_item(const char* p, size_t len, herd_stdio_t* e) {
  static const struct {
    const char* word;
    herd_stdio_kind_t kind;
    int whole;
  } words[] = {{"pipe", HERD_STDIO_PIPE, 1},
               {"overlapped", HERD_STDIO_OVERLAPPED, 1},
               {"ignore", HERD_STDIO_IGNORE, 1},
               {"inherit", HERD_STDIO_INHERIT, 1},
               {"ipc", HERD_STDIO_IPC, 0},
               {"null", HERD_STDIO_DEFAULT, 0},
               {"undefined", HERD_STDIO_DEFAULT, 0},
               {"", HERD_STDIO_DEFAULT, 0}};
  char num[16];
  char* end;
  long v;

  e->fd = 0;
  for (size_t i = 0; i < HERD_ARRAY_SIZE(words); i++) {
    if (strlen(words[i].word) == len && memcmp(p, words[i].word, len) == 0) {
      e->kind = words[i].kind;
      return words[i].whole;
    }
  }
  /* A number: an fd of the parent, or (negative) a pipe. */
  if (len >= sizeof(num))
    return UV_EINVAL;
  memcpy(num, p, len);
  num[len] = '\0';
  if (!isdigit((unsigned char)num[0]) && num[0] != '-')
    return UV_EINVAL;
  errno = 0;
  v = strtol(num, &end, 10);
  if (*end != '\0' || errno != 0 || v < INT_MIN || v > INT_MAX)
    return UV_EINVAL;
  if (v < 0) {
    e->kind = HERD_STDIO_PIPE;
  } else {
    e->kind = HERD_STDIO_FD;
    e->fd = (int)v;
  }
  return 0;
}

int herd_stdio_parse(const char* spec, herd_stdio_t* stdio, int max) {
  const char* p = spec;
  herd_stdio_t first = {HERD_STDIO_DEFAULT, 0};
  int array = 0, whole = 0, n = 0;

  if (spec == NULL || max < 0 || (max > 0 && stdio == NULL))
    return UV_EINVAL;
  while (isspace((unsigned char)*p))
    p++;
  if (*p == '[') {
    array = 1;
    p++;
  }
  for (;;) {
    const char *w, *wend;
    char quote = 0;
    herd_stdio_t e;
    int r;
    while (isspace((unsigned char)*p))
      p++;
    if (array && *p == ']' && n == 0)
      break; /* [] */
    if (*p == '\'' || *p == '"')
      quote = *p++;
    w = p;
    if (quote) {
      while (*p != '\0' && *p != quote)
        p++;
      if (*p != quote)
        return UV_EINVAL;
      wend = p++;
    } else {
      while (*p != '\0' && *p != ',' && *p != ']' &&
             !isspace((unsigned char)*p))
        p++;
      wend = p;
    }
    if (array && !quote && w == wend && n > 0) {
      /* A trailing comma, as JavaScript ignores it: ['pipe',]. */
      const char* q = p;
      while (isspace((unsigned char)*q))
        q++;
      if (*q == ']') {
        p = q;
        break;
      }
    }
    r = stdio_item(w, (size_t)(wend - w), &e);
    if (r < 0 || n == INT_MAX)
      return UV_EINVAL;
    if (n == 0) {
      first = e;
      whole = r;
    }
    if (n < max)
      stdio[n] = e;
    n++;
    while (isspace((unsigned char)*p))
      p++;
    if (*p != ',')
      break;
    p++;
  }
  if (array) {
    if (*p != ']')
      return UV_EINVAL;
    p++;
  }
  while (isspace((unsigned char)*p))
    p++;
  if (*p != '\0')
    return UV_EINVAL;
  if (!array && n == 1) {
    /* Node's string form: one of the four shorthands for all of fds 0-2
     * (its stdioStringToArray(); 'inherit' there is [0, 1, 2]). */
    if (!whole)
      return UV_EINVAL;
    for (int i = 0; i < 3 && i < max; i++)
      stdio[i] = first;
    return 3;
  }
  return n;
}
