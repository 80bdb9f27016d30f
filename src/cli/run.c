/* `herd run [OPTIONS] [--] PROGRAM [ARGS...]`: the command line, checked
 * in full before anything starts: options, the listening addresses (bound
 * here, before any worker, so a bad or busy one fails at once), the
 * privilege drop, and the program (found and executable, as a shell would
 * find it). docs/run.md is the reference. */
#include "cli.h"
#include "run.h"

#include <herd.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <stddef.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char* const ready_names[] = {"auto", "listening", "notify",
                                          "delay"};

static void run_usage(FILE* f) {
  fprintf(
      f,
      "usage: herd run [OPTIONS] [--] PROGRAM [ARGS...]\n"
      "\n"
      "Runs PROGRAM as a pool of workers that share the addresses herd\n"
      "listens on, restarts them when they crash, replaces them one by one\n"
      "on SIGHUP and stops them gracefully on SIGTERM or SIGINT. Node\n"
      "programs get Node's cluster protocol; any other program gets its\n"
      "sockets as systemd passes them (fd 3 and up, LISTEN_FDS).\n"
      "\n"
      "  -w, --workers N|auto      workers, 1..1024 (auto: one per CPU)\n"
      "  -l, --listen ADDR         HOST:PORT, [V6]:PORT, :PORT, unix:PATH or\n"
      "                            unix:@NAME; repeatable\n"
      "      --policy P            rr (Node programs only), shared or\n"
      "                            reuseport (default: reuseport)\n"
      "      --name NAME           name in logs, status and LISTEN_FDNAMES\n"
      "                            (the program's name)\n"
      "      --ready MODE          auto, listening, notify or delay[:TIME]\n"
      "                            (auto)\n"
      "      --ready-timeout TIME  a worker not ready by then failed (30s)\n"
      "      --graceful-timeout TIME\n"
      "                            stop signal to SIGKILL of a worker's\n"
      "                            process group (10s)\n"
      "      --stop-signal SIG     the signal that stops a worker (TERM)\n"
      "      --max-restarts N      give up after more than N crashes ...\n"
      "      --restart-window TIME ... within TIME (10 in 60s)\n"
      "      --env K=V             add to the workers' environment;\n"
      "                            repeatable\n"
      "      --user USER[:GROUP]   bind, then run as USER (needs root)\n"
      "      --check               check everything, bind, print the plan,\n"
      "                            exit\n"
      "  -h, --help                this text\n"
      "\n"
      "TIME is a number with an optional unit: ms, s (default), m, h; at\n"
      "most 7 days. NAME: 1 to 64 printable ASCII characters, no space, '/'\n"
      "or ':' (the program's name with any other character as '_').\n"
      "Exit status: 0 after a clean stop; 128+N after a stop by signal N\n"
      "that had to kill workers (143 for SIGTERM, 131 for SIGQUIT); 1 on an\n"
      "error (an address that cannot be used: not bound, or its name not\n"
      "resolved; workers that keep crashing); 2 for bad usage; 126 for a\n"
      "program that is not executable (or whose interpreter is missing),\n"
      "127 for one not found.\n");
}

static int usage_error(const char* fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int usage_error(const char* fmt, ...) {
  va_list ap;
  fprintf(stderr, "herd: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  fprintf(stderr,
          "usage: herd run [OPTIONS] [--] PROGRAM [ARGS...]\n"
          "(herd run --help lists the options)\n");
  return 2;
}

static void options_free(run_options_t* o) {
  for (int i = 0; i < o->nlisten; i++)
    if (o->listen[i].fd >= 0)
      close(o->listen[i].fd);
  free(o->listen);
  free(o->env);
  free(o->user_name);
  free(o->path);
  herd_sd_names_free(o->fdnames);
}

/* Names herd sets in each worker's environment itself. */
static int reserved_env(const char* kv) {
  static const char* const names[] = {
      "LISTEN_FDS",      "LISTEN_PID",      "LISTEN_FDNAMES",
      "LISTEN_PIDFDID",  "NOTIFY_SOCKET",   "HERD_WORKER_ID",
      "NODE_UNIQUE_ID",  "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE",
      "HERD_PRIMARY_PID"};
  size_t n = strcspn(kv, "=");
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == n && strncmp(kv, names[i], n) == 0)
      return 1;
  return 0;
}

static int parse_ready(const char* s, run_options_t* o) {
  o->ready_delay_ms = DEFAULT_READY_DELAY_MS;
  if (strcmp(s, "auto") == 0)
    o->ready = READY_AUTO;
  else if (strcmp(s, "listening") == 0)
    o->ready = READY_LISTENING;
  else if (strcmp(s, "notify") == 0)
    o->ready = READY_NOTIFY;
  else if (strcmp(s, "delay") == 0)
    o->ready = READY_DELAY;
  else if (strncmp(s, "delay:", 6) == 0 &&
           cli_parse_duration(s + 6, MAX_DURATION_MS, &o->ready_delay_ms) == 0)
    o->ready = READY_DELAY;
  else
    return -1;
  return 0;
}

/* A character of a name: printable ASCII but space, '/' (the name is in
 * log prefixes and file names) and ':' (LISTEN_FDNAMES's separator: the
 * name is each socket's fd name, systemd's rule). */
static int name_char(unsigned char c) {
  return c > ' ' && c < 0x7f && c != '/' && c != ':';
}

static int valid_name(const char* s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME)
    return 0;
  for (; *s != '\0'; s++)
    if (!name_char((unsigned char)*s))
      return 0;
  return 1;
}

/* Without --name, the program's file name, made to follow the same rule:
 * each other byte becomes '_', and it is cut at MAX_NAME. */
static void default_name(run_options_t* o) {
  const char* base = strrchr(o->program, '/');
  size_t n = 0;
  base = base != NULL ? base + 1 : o->program;
  for (; base[n] != '\0' && n < MAX_NAME; n++)
    o->default_name[n] = name_char((unsigned char)base[n]) ? base[n] : '_';
  o->default_name[n] = '\0';
  if (n == 0)
    snprintf(o->default_name, sizeof(o->default_name), "herd");
  o->name = o->default_name;
}

static int add_listen(run_options_t* o, const char* text) {
  run_listen_t* l = realloc(o->listen, (size_t)(o->nlisten + 1) * sizeof(*l));
  int r;
  if (l == NULL)
    return UV_ENOMEM;
  o->listen = l;
  l = &o->listen[o->nlisten];
  memset(l, 0, sizeof(*l));
  l->text = text;
  l->fd = -1;
  r = herd_listen_parse(text, &l->addr);
  /* A bad text is bad usage; a name that does not resolve (or a resolver
   * that fails) is an address that cannot be used, reported with the
   * others that cannot be bound, in --listen order. */
  if (r == UV_EINVAL || r == UV_ENAMETOOLONG)
    return r;
  l->error = r;
  o->nlisten++;
  return 0;
}

static int parse_options(int argc, char** argv, run_options_t* o) {
  enum {
    OPT_POLICY = 256,
    OPT_NAME,
    OPT_READY,
    OPT_READY_TIMEOUT,
    OPT_GRACEFUL_TIMEOUT,
    OPT_STOP_SIGNAL,
    OPT_MAX_RESTARTS,
    OPT_RESTART_WINDOW,
    OPT_ENV,
    OPT_USER,
    OPT_CHECK
  };
  static const struct option options[] = {
      {"workers", required_argument, NULL, 'w'},
      {"listen", required_argument, NULL, 'l'},
      {"policy", required_argument, NULL, OPT_POLICY},
      {"name", required_argument, NULL, OPT_NAME},
      {"ready", required_argument, NULL, OPT_READY},
      {"ready-timeout", required_argument, NULL, OPT_READY_TIMEOUT},
      {"graceful-timeout", required_argument, NULL, OPT_GRACEFUL_TIMEOUT},
      {"stop-signal", required_argument, NULL, OPT_STOP_SIGNAL},
      {"max-restarts", required_argument, NULL, OPT_MAX_RESTARTS},
      {"restart-window", required_argument, NULL, OPT_RESTART_WINDOW},
      {"env", required_argument, NULL, OPT_ENV},
      {"user", required_argument, NULL, OPT_USER},
      {"check", no_argument, NULL, OPT_CHECK},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;

  o->ready_delay_ms = DEFAULT_READY_DELAY_MS;
  o->ready_timeout_ms = DEFAULT_READY_TIMEOUT_MS;
  o->graceful_timeout_ms = DEFAULT_GRACEFUL_TIMEOUT_MS;
  o->stop_signal = SIGTERM;
  o->max_restarts = DEFAULT_MAX_RESTARTS;
  o->restart_window_ms = DEFAULT_RESTART_WINDOW_MS;
  o->env = calloc((size_t)argc + 1, sizeof(*o->env));
  if (o->env == NULL)
    return usage_error("out of memory");
  opterr = 0;
  /* "+": the first argument that is not an option is the program; what
   * follows it is the program's, options included. */
  while ((c = getopt_long(argc, argv, "+:w:l:h", options, NULL)) != -1) {
    const char* v = optarg;
    int r;
    switch (c) {
      case 'w':
        if (strcmp(v, "auto") == 0)
          o->workers = 0;
        else if (cli_parse_int(v, 1, MAX_WORKERS, &o->workers) != 0)
          return usage_error("bad worker count '%s' (1..1024 or auto)", v);
        break;
      case 'l':
        r = add_listen(o, v);
        if (r == UV_ENAMETOOLONG)
          return usage_error("bad address '%s': %s", v,
                             "unix socket path longer than 107 bytes");
        if (r == UV_EINVAL && v[0] != '\0' &&
            strspn(v, "0123456789") == strlen(v))
          return usage_error("bad address '%s' (did you mean ':%s'?)", v, v);
        if (r == UV_EINVAL)
          return usage_error(
              "bad address '%s' (HOST:PORT, [V6]:PORT, :PORT, "
              "unix:PATH or unix:@NAME)",
              v);
        if (r != 0)
          return usage_error("bad address '%s': %s", v, herd_strerror(r));
        for (int i = 0; i < o->nlisten - 1; i++)
          if (o->listen[o->nlisten - 1].error == 0 && o->listen[i].error == 0 &&
              strcmp(o->listen[i].addr.text,
                     o->listen[o->nlisten - 1].addr.text) == 0 &&
              (o->listen[i].addr.family == AF_UNIX ||
               o->listen[i].addr.port != 0))
            return usage_error("address '%s' given twice", v);
        break;
      case OPT_POLICY: {
        int p = herd_sched_policy_parse(v);
        if (p < 0 || strcmp(v, "none") == 0)
          return usage_error("bad policy '%s' (rr, shared or reuseport)", v);
        o->policy = (herd_sched_policy_t)p;
        o->policy_set = 1;
        break;
      }
      case OPT_NAME:
        if (!valid_name(v))
          return usage_error(
              "bad name '%s' (1 to 64 printable ASCII "
              "characters, no space, '/' or ':')",
              v);
        o->name = v;
        break;
      case OPT_READY:
        if (parse_ready(v, o) != 0)
          return usage_error(
              "bad ready mode '%s' (auto, listening, notify or "
              "delay[:TIME], TIME at most 7 days)",
              v);
        break;
      case OPT_READY_TIMEOUT:
        if (cli_parse_duration(v, MAX_DURATION_MS, &o->ready_timeout_ms) != 0 ||
            o->ready_timeout_ms == 0)
          return usage_error(
              "bad --ready-timeout '%s' (e.g. 30s, 500ms; at most 7 days)", v);
        break;
      case OPT_GRACEFUL_TIMEOUT:
        if (cli_parse_duration(v, MAX_DURATION_MS, &o->graceful_timeout_ms) !=
            0)
          return usage_error(
              "bad --graceful-timeout '%s' (e.g. 10s, 0; at most 7 days)", v);
        break;
      case OPT_STOP_SIGNAL:
        if (cli_parse_signal(v, &o->stop_signal) != 0 ||
            o->stop_signal == SIGSTOP)
          return usage_error("bad signal '%s' (e.g. TERM, SIGINT, 15)", v);
        o->stop_signal_set = 1;
        break;
      case OPT_MAX_RESTARTS:
        if (cli_parse_int(v, 0, 1000000, &o->max_restarts) != 0)
          return usage_error("bad --max-restarts '%s' (0..1000000)", v);
        break;
      case OPT_RESTART_WINDOW:
        if (cli_parse_duration(v, MAX_DURATION_MS, &o->restart_window_ms) !=
                0 ||
            o->restart_window_ms == 0)
          return usage_error(
              "bad --restart-window '%s' (e.g. 60s; at most 7 days)", v);
        break;
      case OPT_ENV:
        if (strchr(v, '=') == NULL || v[0] == '=')
          return usage_error("bad --env '%s' (NAME=VALUE)", v);
        if (reserved_env(v))
          return usage_error("--env '%s': herd sets %s itself", v, v);
        o->env[o->nenv++] = v;
        break;
      case OPT_USER:
        if (v[0] == '\0' || v[0] == ':' || v[strlen(v) - 1] == ':')
          return usage_error("bad --user '%s' (USER or USER:GROUP)", v);
        o->user = v;
        break;
      case OPT_CHECK:
        o->check = 1;
        break;
      case 'h':
        run_usage(stdout);
        return -1;
      case ':':
        return usage_error("option '%s' needs a value",
                           cli_bad_option(argv, optind, optopt));
      default:
        return usage_error("%s option '%s'",
                           cli_option_ambiguous(argv, optind, options)
                               ? "ambiguous"
                               : "unknown",
                           cli_bad_option(argv, optind, optopt));
    }
  }
  if (optind >= argc)
    return usage_error("no PROGRAM to run");
  o->program = argv[optind];
  o->args = argv + optind + 1;
  return 0;
}

static const char* env_path(const run_options_t* o) {
  for (int i = o->nenv - 1; i >= 0; i--)
    if (strncmp(o->env[i], "PATH=", 5) == 0)
      return o->env[i] + 5;
  return getenv("PATH");
}

/* Whether a file without "#!" looks binary, as bash's check_binary_file()
 * decides before it would run a file execve() refused with ENOEXEC as a
 * shell script: ELF's magic, or a NUL byte in its first line (of the
 * first 80 bytes). execve()'s fallback to /bin/sh (glibc's execvp(),
 * herd_spawn()'s) would otherwise run such a file as a script, and every
 * worker would fail. */
static int looks_binary(const char* head, size_t len) {
  if (len >= 2 && head[0] == '#' && head[1] == '!')
    return 0;
  if (len >= 4 && memcmp(head, "\177ELF", 4) == 0)
    return 1;
  for (size_t i = 0; i < len && i < 80 && head[i] != '\n'; i++)
    if (head[i] == '\0')
      return 1;
  return 0;
}

/* Whether the kernel may run a binary-looking file rather than refuse it
 * with ENOEXEC, without running it: an ELF header it loads (an executable
 * or a shared object, for this machine or its compat one), or any other
 * format while binfmt_misc has formats registered (one may match). */
static int kernel_may_run(const char* head, size_t len) {
  static const char self_path[] = "/proc/self/exe";
  unsigned char self[20];
  const unsigned char* h = (const unsigned char*)head;
  unsigned type, mach, own;
  int fd, misc = 0;
  ssize_t got;

  if (len < 4 || memcmp(head, "\177ELF", 4) != 0) {
    DIR* d = opendir("/proc/sys/fs/binfmt_misc");
    struct dirent* ent;
    if (d == NULL)
      return 0;
    while ((ent = readdir(d)) != NULL)
      if (ent->d_name[0] != '.' && strcmp(ent->d_name, "status") != 0 &&
          strcmp(ent->d_name, "register") != 0)
        misc = 1;
    closedir(d);
    return misc;
  }
  if (len < 52 || (h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2))
    return 0; /* shorter than an ELF header, or no valid class/byte order */
  type = h[5] == 1 ? (unsigned)(h[16] | h[17] << 8)
                   : (unsigned)(h[16] << 8 | h[17]);
  mach = h[5] == 1 ? (unsigned)(h[18] | h[19] << 8)
                   : (unsigned)(h[18] << 8 | h[19]);
  if (type != 2 && type != 3)
    return 0; /* neither ET_EXEC nor ET_DYN */
  fd = open(self_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 1;
  got = read(fd, self, sizeof(self));
  close(fd);
  if (got != (ssize_t)sizeof(self))
    return 1;
  own = self[5] == 1 ? (unsigned)(self[18] | self[19] << 8)
                     : (unsigned)(self[18] << 8 | self[19]);
  /* x86-64 runs i386 (3), arm64 runs arm (40) */
  return mach == own || (own == 62 && mach == 3) || (own == 183 && mach == 40);
}

/* A script's "#!" interpreter must exist and be executable too: execve()
 * would fail with ENOENT or EACCES as if the script were missing, so it
 * is named here, as shells do ("bad interpreter"). Returns 0, 126 or 127
 * after a message (the statuses of an exec that fails so). */
static int check_interpreter(const run_options_t* o) {
  char line[256];
  const char* interp;
  size_t n;
  ssize_t got;
  int fd = open(o->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), e;
  if (fd < 0)
    return 0; /* executable but not readable: the kernel may still run it */
  got = read(fd, line, sizeof(line) - 1);
  close(fd);
  if (got >= 0 && looks_binary(line, (size_t)got) &&
      !kernel_may_run(line, (size_t)got)) {
    /* libuv has no name for ENOEXEC: its text, in herd's case. */
    fprintf(stderr, "herd: %s: cannot execute binary file: exec format error\n",
            o->program);
    return 126;
  }
  if (got < 3 || line[0] != '#' || line[1] != '!')
    return 0;
  line[got] = '\0';
  interp = line + 2 + strspn(line + 2, " \t");
  n = strcspn(interp, " \t\n");
  if (n == 0 || interp[n] == '\0')
    return 0; /* no path, or a line longer than the kernel reads */
  line[interp - line + (ptrdiff_t)n] = '\0';
  if (eaccess(interp, X_OK) == 0)
    return 0;
  e = errno;
  fprintf(stderr, "herd: %s: %s: bad interpreter: %s\n", o->program, interp,
          strerror(e));
  return (e == ENOENT || e == ENOTDIR) ? 127 : 126;
}

/* Finds the program as a shell does: a name with a slash is used as it
 * is, any other is looked up in PATH (the workers' PATH: --env PATH=...
 * wins over herd's own; unset, /bin:/usr/bin as herd_spawn() does). The
 * first executable regular file wins. Returns 0, 126 (found but not
 * executable, or a directory) or 127 (not found), after a message. */
static int find_program(run_options_t* o) {
  const char* prog = o->program;
  struct stat st;
  if (strchr(prog, '/') != NULL) {
    if (stat(prog, &st) != 0) {
      int e = errno;
      fprintf(stderr, "herd: %s: %s\n", prog, strerror(e));
      return (e == ENOENT || e == ENOTDIR) ? 127 : 126;
    }
    if (S_ISDIR(st.st_mode)) {
      fprintf(stderr, "herd: %s: %s\n", prog, strerror(EISDIR));
      return 126;
    }
    if (!S_ISREG(st.st_mode) || eaccess(prog, X_OK) != 0) {
      fprintf(stderr, "herd: %s: %s\n", prog, strerror(EACCES));
      return 126;
    }
    o->path = strdup(prog);
  } else {
    const char* path = env_path(o);
    const char* p;
    int denied = 0;
    if (path == NULL)
      path = "/bin:/usr/bin";
    if (prog[0] == '\0') {
      fprintf(stderr, "herd: '': command not found\n");
      return 127;
    }
    for (p = path;; p++) {
      size_t n = strcspn(p, ":");
      char cand[PATH_MAX];
      if (snprintf(cand, sizeof(cand), "%.*s%s%s", (int)n, n ? p : ".", "/",
                   prog) < (int)sizeof(cand) &&
          stat(cand, &st) == 0) {
        if (S_ISREG(st.st_mode) && eaccess(cand, X_OK) == 0) {
          o->path = strdup(cand);
          break;
        }
        denied = 1;
      }
      p += n;
      if (*p == '\0')
        break;
    }
    if (o->path == NULL && denied) {
      fprintf(stderr, "herd: %s: %s\n", prog, strerror(EACCES));
      return 126;
    }
    if (o->path == NULL && errno != ENOMEM) {
      fprintf(stderr, "herd: %s: command not found\n", prog);
      return 127;
    }
  }
  if (o->path == NULL) {
    fprintf(stderr, "herd: out of memory\n");
    return 1;
  }
  return check_interpreter(o);
}

/* Whether the program is Node (node, nodejs, through symlinks too): it
 * then gets Node's cluster protocol. */
static int is_node(const char* given, const char* path) {
  char real[PATH_MAX];
  const char* names[2];
  names[0] = strrchr(given, '/') ? strrchr(given, '/') + 1 : given;
  names[1] = NULL;
  if (realpath(path, real) != NULL)
    names[1] = strrchr(real, '/') + 1;
  for (int i = 0; i < 2; i++)
    if (names[i] != NULL &&
        (strcmp(names[i], "node") == 0 || strcmp(names[i], "nodejs") == 0))
      return 1;
  return 0;
}

/* --user USER[:GROUP]: names or numbers; the group defaults to the
 * user's. Returns 0 or 2 after a message. */
static int resolve_user(run_options_t* o) {
  char user[256];
  const char* colon = strchr(o->user, ':');
  size_t n = colon ? (size_t)(colon - o->user) : strlen(o->user);
  struct passwd* pw;
  int id;
  if (n >= sizeof(user))
    return usage_error("bad --user '%s'", o->user);
  memcpy(user, o->user, n);
  user[n] = '\0';
  errno = 0;
  pw = getpwnam(user);
  if (pw == NULL && cli_parse_int(user, 0, INT_MAX, &id) == 0)
    pw = getpwuid((uid_t)id);
  if (pw != NULL) {
    o->uid = pw->pw_uid;
    o->gid = pw->pw_gid;
    o->user_name = strdup(pw->pw_name);
    if (o->user_name == NULL)
      return usage_error("out of memory");
  } else if (cli_parse_int(user, 0, INT_MAX, &id) == 0 && colon != NULL) {
    o->uid = (uid_t)id; /* a uid without a passwd entry: no supplementary
                           groups */
  } else {
    return usage_error("--user '%s': no such user", o->user);
  }
  if (colon != NULL) {
    struct group* gr = getgrnam(colon + 1);
    if (gr != NULL)
      o->gid = gr->gr_gid;
    else if (cli_parse_int(colon + 1, 0, INT_MAX, &id) == 0)
      o->gid = (gid_t)id;
    else
      return usage_error("--user '%s': no such group", o->user);
  }
  return 0;
}

/* Drops to --user, for good: supplementary groups, then the group, then
 * the user (the order matters: without root, setgid() would fail), and
 * a check that root cannot be had back (CERT POS37-C). Returns 0 or 1
 * after a message. */
static int drop_privileges(const run_options_t* o) {
  if (geteuid() != 0) {
    if (getuid() == o->uid && geteuid() == o->uid && getgid() == o->gid &&
        getegid() == o->gid)
      return 0;
    fprintf(stderr, "herd: --user %s needs root (herd runs as uid %d)\n",
            o->user, (int)geteuid());
    return 1;
  }
  if ((o->user_name != NULL ? initgroups(o->user_name, o->gid)
                            : setgroups(0, NULL)) != 0) {
    fprintf(stderr, "herd: --user %s: cannot set the groups: %s\n", o->user,
            strerror(errno));
    return 1;
  }
  if (setgid(o->gid) != 0 || setuid(o->uid) != 0) {
    fprintf(stderr, "herd: --user %s: %s\n", o->user, strerror(errno));
    return 1;
  }
  if (getuid() != o->uid || geteuid() != o->uid || getgid() != o->gid ||
      getegid() != o->gid || (o->uid != 0 && setuid(0) == 0)) {
    fprintf(stderr, "herd: --user %s: privileges were not dropped\n", o->user);
    return 1;
  }
  return 0;
}

/* Sockets passed by a service manager (LISTEN_FDS): adopted instead of
 * --listen. Returns 0 or 1 after a message. */
static int adopt_inherited(run_options_t* o) {
  char** names = NULL;
  int n = herd_sd_listen_fds(HERD_SD_UNSET_ENV, &names);
  if (n < 0) {
    fprintf(stderr, "herd: bad socket activation variables: %s\n",
            herd_strerror(n));
    return 1;
  }
  if (n == 0)
    return 0;
  if (o->nlisten > 0)
    fprintf(stderr,
            "herd: %d socket%s inherited (LISTEN_FDS): --listen ignored\n", n,
            n == 1 ? "" : "s");
  for (int i = 0; i < o->nlisten; i++)
    if (o->listen[i].fd >= 0)
      close(o->listen[i].fd);
  free(o->listen);
  o->listen = calloc((size_t)n, sizeof(*o->listen));
  o->nlisten = 0;
  if (o->listen == NULL) {
    herd_sd_names_free(names);
    fprintf(stderr, "herd: out of memory\n");
    return 1;
  }
  for (int i = 0; i < n; i++) {
    run_listen_t* l = &o->listen[o->nlisten];
    int fd = HERD_SD_LISTEN_FDS_START + i;
    int r = herd_listen_addr_from_fd(fd, &l->addr);
    if (r != 0) {
      fprintf(
          stderr, "herd: inherited fd %d (%s): %s\n", fd, names[i],
          r == UV_EINVAL ? "not a listening stream socket" : herd_strerror(r));
      close(fd);
      herd_sd_names_free(names);
      return 1;
    }
    l->fd = fd;
    l->text = l->addr.text;
    o->nlisten++;
  }
  o->inherited = 1;
  /* Passed on to the workers, except systemd's placeholder. */
  for (int i = 0; i < n; i++) {
    if (strcmp(names[i], "unknown") == 0) {
      herd_sd_names_free(names);
      return 0;
    }
  }
  o->fdnames = names;
  return 0;
}

/* Binds every --listen address once, before any worker exists. Under
 * reuseport each slot gets a socket of its own later; the one bound here
 * is the first of its group. Returns 0 or 1 after a message naming the
 * address. */
/* Under reuseport a busy port would not fail: a socket with SO_REUSEPORT
 * joins any group of the same user on it, another herd's included. A
 * socket without it is refused by a port anyone listens on, so it probes
 * first. Returns 0 or a negative error. */
static int port_free(const herd_listen_addr_t* a) {
  int fd, on = 1, v6only = !(a->flags & HERD_LISTEN_ANY), r = 0;
  if (a->family == AF_UNIX || a->port == 0)
    return 0;
  fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0; /* the real bind reports it */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (a->family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
  if (bind(fd, (const struct sockaddr*)&a->sa, a->len) != 0 &&
      errno == EADDRINUSE)
    r = UV_EADDRINUSE;
  close(fd);
  return r;
}

/* Under --user, a unix socket file herd created is given to the user and
 * group, as systemd's SocketUser=/SocketGroup= do, before the privileges
 * go: herd, then running as the user, can remove it at exit (in a sticky
 * directory such as /tmp only the file's owner can), and it is the user's
 * as a socket the user bound would be. lchown: the file itself, after
 * checking it is still the one bound. Returns 0 or a negative error. */
static int chown_socket(const run_options_t* o, const herd_listen_addr_t* a) {
  const char* path = ((const struct sockaddr_un*)&a->sa)->sun_path;
  struct stat st;
  if (a->family != AF_UNIX || !(a->flags & HERD_LISTEN_OWNED))
    return 0; /* abstract, or not herd's file */
  if (lstat(path, &st) != 0)
    return -errno;
  if (st.st_dev != a->dev || st.st_ino != a->ino)
    return UV_ENOENT; /* replaced under herd: not the socket bound */
  if (lchown(path, o->uid, o->gid) != 0)
    return -errno;
  return 0;
}

static int bind_all(run_options_t* o) {
  if (o->inherited)
    return 0;
  for (int i = 0; i < o->nlisten; i++) {
    run_listen_t* l = &o->listen[i];
    herd_listen_options_t lo;
    int r;
    if (l->error != 0) {
      fprintf(stderr, "herd: cannot listen on %s: %s\n", l->text,
              herd_strerror(l->error));
      return 1;
    }
    memset(&lo, 0, sizeof(lo));
    if (o->policy == HERD_SCHED_REUSEPORT)
      lo.flags = HERD_LISTEN_REUSEPORT;
    r = o->policy == HERD_SCHED_REUSEPORT ? port_free(&l->addr) : 0;
    if (r == 0)
      r = herd_listen_bind(&l->addr, &lo, &l->fd);
    if (r != 0) {
      fprintf(stderr, "herd: cannot listen on %s: %s\n", l->text,
              herd_strerror(r));
      return 1;
    }
    if (o->user != NULL && (r = chown_socket(o, &l->addr)) != 0) {
      fprintf(stderr, "herd: cannot give %s to --user %s: %s\n", l->text,
              o->user, herd_strerror(r));
      return 1;
    }
  }
  return 0;
}

/* Closes the sockets and removes the unix socket files herd created. A
 * file that cannot be removed is said: after --user the directory may be
 * root's. It stays, and the next herd takes it over as stale. */
static void cleanup_listen(run_options_t* o) {
  for (int i = 0; i < o->nlisten; i++) {
    int r = herd_listen_cleanup(&o->listen[i].addr);
    if (r != 0)
      fprintf(stderr, "herd: cannot remove %s: %s%s%s%s\n", o->listen[i].text,
              herd_strerror(r), o->user != NULL ? " (as " : "",
              o->user != NULL ? o->user : "", o->user != NULL ? ")" : "");
    if (o->listen[i].fd >= 0)
      close(o->listen[i].fd);
    o->listen[i].fd = -1;
  }
}

static void print_plan(const run_options_t* o) {
  printf("program: %s\n", o->path);
  for (char** a = o->args; *a != NULL; a++)
    printf("arg: %s\n", *a);
  printf("protocol: %s\n", o->node ? "node-cluster" : "systemd");
  printf("name: %s\n", o->name);
  printf("workers: %d\n", o->workers);
  printf("policy: %s\n", herd_sched_policy_name(o->policy));
  for (int i = 0; i < o->nlisten; i++)
    printf("listen: %s%s\n", o->listen[i].addr.text,
           o->inherited ? " (inherited)" : "");
  if (o->ready == READY_DELAY)
    printf("ready: delay %llu ms\n", (unsigned long long)o->ready_delay_ms);
  else
    printf("ready: %s\n", ready_names[o->ready]);
  printf("ready-timeout: %llu ms\n", (unsigned long long)o->ready_timeout_ms);
  printf("graceful-timeout: %llu ms\n",
         (unsigned long long)o->graceful_timeout_ms);
  printf("stop-signal: %s\n", cli_signal_name(o->stop_signal));
  printf("max-restarts: %d in %llu ms\n", o->max_restarts,
         (unsigned long long)o->restart_window_ms);
  for (int i = 0; i < o->nenv; i++)
    printf("env: %s\n", o->env[i]);
  if (o->user != NULL)
    printf("user: %s (uid %d, gid %d)\n", o->user, (int)getuid(),
           (int)getgid());
  fflush(stdout);
}

int herd_cli_run(int argc, char** argv) {
  run_options_t o;
  int r;

  memset(&o, 0, sizeof(o));
  r = parse_options(argc, argv, &o);
  if (r != 0) {
    options_free(&o);
    return r < 0 ? 0 : r;
  }
  if (o.user != NULL && (r = resolve_user(&o)) != 0)
    goto done;
  /* The program first, so that a missing one fails before any socket
   * exists. */
  r = find_program(&o);
  if (r != 0)
    goto done;
  o.node = is_node(o.program, o.path);
  /* rr needs workers that speak Node's cluster protocol; other programs
   * get shared or reuseport, and the environment's default (which may say
   * rr, for Node) then falls back to reuseport. */
  if (o.policy == HERD_SCHED_RR && o.policy_set && !o.node) {
    r = usage_error(
        "--policy rr needs a program that speaks Node's cluster "
        "protocol (node)");
    goto done;
  }
  if (!o.policy_set)
    o.policy = cli_default_policy();
  if (o.policy == HERD_SCHED_RR && !o.node)
    o.policy = HERD_SCHED_REUSEPORT;
  if (o.ready == READY_LISTENING && !o.node) {
    r = usage_error("--ready listening needs a Node program");
    goto done;
  }
  if (o.ready == READY_NOTIFY && o.node) {
    r = usage_error(
        "--ready notify is for programs that get a NOTIFY_SOCKET; Node "
        "workers say they listen");
    goto done;
  }
  /* Inherited sockets replace --listen: fds 3 and up are theirs. */
  r = adopt_inherited(&o);
  if (r == 0)
    r = bind_all(&o);
  if (r != 0)
    goto done;
  if (o.name == NULL)
    default_name(&o);
  if (o.workers == 0)
    o.workers = (int)uv_available_parallelism();
  if (o.workers > MAX_WORKERS)
    o.workers = MAX_WORKERS;
  /* The pool is set up before the privilege drop: under reuseport it
   * binds the initial slots' sockets, which must be bound by the same
   * user as the first. */
  if (!o.check) {
    r = run_pool_prepare(&o);
    if (r != 0)
      goto done;
  }
  if (o.user != NULL)
    r = drop_privileges(&o);
  if (r == 0 && o.user != NULL && eaccess(o.path, X_OK) != 0) {
    /* Found as root; the workers run as --user. */
    fprintf(stderr, "herd: %s: %s (as %s)\n", o.program, strerror(errno),
            o.user);
    r = 126;
  }
  if (r != 0) {
    if (!o.check)
      run_pool_abandon();
    goto done;
  }
  if (o.check) {
    print_plan(&o);
    r = 0;
    goto done;
  }
  r = run_pool_run(&o);

done:
  if (!o.inherited)
    cleanup_listen(&o);
  options_free(&o);
  return r;
}
