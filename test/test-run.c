/* `herd run`: its command line, checked before anything starts: usage
 * errors (exit 2), a program not found or not executable (127, 126, as a
 * shell), addresses bound once up front (exit 1, the address named), the
 * privilege drop, sockets inherited through LISTEN_FDS. `--check` prints
 * the plan and exits, which is what these tests read. */
#include "task.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char herd_path[1024];

static const char* herd_exe(void) {
  snprintf(herd_path, sizeof(herd_path), "%s/herd", test_binary_dir());
  ASSERT(access(herd_path, X_OK) == 0);
  return herd_path;
}

/* Runs `file` with `args` (10 s at most), stdin closed, env added. */
static void run_with(const char* file, const char* const* args,
                     const char* const* env, const herd_stdio_t* extra_fd,
                     herd_sync_result_t* r) {
  herd_spawn_sync_options_t o;
  herd_stdio_t stdio[4];
  memset(&o, 0, sizeof(o));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_PIPE;
  stdio[2].kind = HERD_STDIO_PIPE;
  o.stdio = stdio;
  o.stdio_count = 3;
  if (extra_fd != NULL) {
    stdio[3] = *extra_fd;
    o.stdio_count = 4;
  }
  o.timeout = 10000;
  o.kill_signal = SIGKILL;
  if (env != NULL) {
    o.env = env;
    o.flags = HERD_SPAWN_ENV_EXTEND;
  }
  herd_spawn_sync(file, args, &o, r);
  ASSERT(r->error == 0);
  ASSERT_EQ(r->signal, 0);
}

static void run_herd(const char* const* args, herd_sync_result_t* r) {
  run_with(herd_exe(), args, NULL, NULL, r);
}

/* The value of "key: value" in the plan, or NULL. Static buffer. */
static const char* plan(const char* out, const char* key) {
  static char value[256];
  char want[64];
  const char* p;
  snprintf(want, sizeof(want), "%s: ", key);
  for (p = out; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (strncmp(p, want, strlen(want)) == 0) {
      size_t n = strcspn(p + strlen(want), "\n");
      snprintf(value, sizeof(value), "%.*s", (int)n, p + strlen(want));
      return value;
    }
  return NULL;
}

TEST_IMPL(run_help) {
  herd_sync_result_t r;
  const char* run_help[] = {"run", "--help", NULL};
  const char* run_h[] = {"run", "-h", NULL};
  const char* help[] = {"--help", NULL};

  run_herd(run_help, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "usage: herd run [OPTIONS] [--] PROGRAM") != NULL);
  ASSERT(strstr(r.out, "--listen ADDR") != NULL);
  ASSERT(strstr(r.out, "--graceful-timeout") != NULL);
  ASSERT_EQ(r.err_len, 0);
  herd_sync_result_free(&r);
  run_herd(run_h, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "usage: herd run") != NULL);
  herd_sync_result_free(&r);
  run_herd(help, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "herd run [OPTIONS]") != NULL);
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(run_bad_usage) {
  static const struct {
    const char* args[8];
    const char* message;
  } cases[] = {
      {{"run", NULL}, "no PROGRAM to run"},
      {{"run", "-w", "0", "true", NULL}, "bad worker count '0'"},
      {{"run", "-w", "1025", "true", NULL}, "bad worker count"},
      {{"run", "--workers=x", "true", NULL}, "bad worker count 'x'"},
      {{"run", "-w", NULL}, "option '-w' needs a value"},
      {{"run", "--listen", NULL}, "option '--listen' needs a value"},
      {{"run", "-l", "8000", "true", NULL}, "did you mean ':8000'?"},
      {{"run", "-l", "127.0.0.1", "true", NULL}, "bad address '127.0.0.1'"},
      {{"run", "-l", "::1:80", "true", NULL}, "bad address '::1:80'"},
      {{"run", "-l", "127.0.0.1:70000", "true", NULL}, "bad address"},
      {{"run", "-l", "unix:", "true", NULL}, "bad address 'unix:'"},
      {{"run", "-l", ":8000", "-l", ":8000", "true", NULL}, "given twice"},
      {{"run", "--policy", "fair", "true", NULL}, "bad policy 'fair'"},
      {{"run", "--policy", "none", "true", NULL}, "bad policy 'none'"},
      {{"run", "--policy", "rr", "true", NULL}, "Node's cluster protocol"},
      {{"run", "--name", "a b", "true", NULL}, "bad name 'a b'"},
      {{"run", "--ready", "soon", "true", NULL}, "bad ready mode 'soon'"},
      {{"run", "--ready", "delay:1x", "true", NULL}, "bad ready mode"},
      {{"run", "--ready", "listening", "true", NULL}, "needs a Node program"},
      {{"run", "--ready", "notify", "node", "-e", "1", NULL},
       "Node workers say they listen"},
      {{"run", "--ready-timeout", "0", "true", NULL}, "bad --ready-timeout"},
      {{"run", "--graceful-timeout", "-1", "true", NULL},
       "bad --graceful-timeout"},
      {{"run", "--graceful-timeout", "9999999h", "true", NULL},
       "bad --graceful-timeout"},
      {{"run", "--stop-signal", "BOGUS", "true", NULL}, "bad signal 'BOGUS'"},
      {{"run", "--stop-signal", "STOP", "true", NULL}, "bad signal 'STOP'"},
      {{"run", "--max-restarts", "-1", "true", NULL}, "bad --max-restarts"},
      {{"run", "--restart-window", "0", "true", NULL}, "bad --restart-window"},
      {{"run", "--env", "NOEQUALS", "true", NULL}, "bad --env 'NOEQUALS'"},
      {{"run", "--env", "=x", "true", NULL}, "bad --env '=x'"},
      {{"run", "--env", "LISTEN_FDS=3", "true", NULL}, "herd sets"},
      {{"run", "--user", "", "true", NULL}, "bad --user ''"},
      {{"run", "--user", "no-such-user-herd", "true", NULL}, "no such user"},
      {{"run", "--user", "root:no-such-group-herd", "true", NULL},
       "no such group"},
      {{"run", "--bogus", "true", NULL}, "unknown option '--bogus'"},
      {{"run", "-x", "true", NULL}, "unknown option '-x'"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    herd_sync_result_t r;
    run_herd(cases[i].args, &r);
    if (r.status != 2 || strstr(r.err, cases[i].message) == NULL ||
        strstr(r.err, "usage: herd run") == NULL || r.out_len != 0)
      FATAL("case %zu (%s %s): status %lld\nstdout: %s\nstderr: %s", i,
            cases[i].args[1], cases[i].args[2] ? cases[i].args[2] : "",
            (long long)r.status, r.out, r.err);
    ASSERT(strncmp(r.err, "herd: ", 6) == 0);
    herd_sync_result_free(&r);
  }
  return 0;
}

/* Writes a file with `mode`; returns its path (static buffer per slot). */
static const char* make_file(int slot, const char* text, mode_t mode) {
  static char paths[4][64];
  int fd;
  snprintf(paths[slot], sizeof(paths[slot]), "/tmp/herd-run-%d-%d",
           (int)getpid(), slot);
  unlink(paths[slot]);
  fd = open(paths[slot], O_CREAT | O_WRONLY | O_CLOEXEC, mode);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  ASSERT_EQ(chmod(paths[slot], mode), 0);
  return paths[slot];
}

/* As a shell: 127 for a program not found, 126 for one that cannot be
 * run; the message says which. */
TEST_IMPL(run_program_errors) {
  const char* noexec = make_file(0, "#!/bin/sh\n", 0644);
  const char* script = make_file(1, "#!/bin/sh\nexit 0\n", 0755);
  char dir[64], envpath[96], base[64];
  const char* slash = strrchr(script, '/');
  struct {
    const char* prog;
    const char* env;
    int status;
    const char* message;
  } cases[] = {
      {"no-such-program-herd", NULL, 127,
       "herd: no-such-program-herd: command not found"},
      {"./no-such-program-herd", NULL, 127,
       "herd: ./no-such-program-herd: No such file or directory"},
      {"/etc/passwd/x", NULL, 127, "Not a directory"},
      {noexec, NULL, 126, "Permission denied"},
      {"/tmp", NULL, 126, "herd: /tmp: Is a directory"},
      {"true", "PATH=/no-such-dir-herd", 127, "herd: true: command not found"},
      {base, envpath, 0, NULL},
      {base, NULL, 127, "command not found"},
  };
  snprintf(dir, sizeof(dir), "%.*s", (int)(slash - script), script);
  snprintf(envpath, sizeof(envpath), "PATH=/no-such-dir-herd:%s", dir);
  snprintf(base, sizeof(base), "%s", slash + 1);

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char* args[6] = {"run", "--check"};
    herd_sync_result_t r;
    int k = 2;
    if (cases[i].env != NULL) {
      args[k++] = "--env";
      args[k++] = cases[i].env;
    }
    args[k++] = cases[i].prog;
    args[k] = NULL;
    run_herd(args, &r);
    if (r.status != cases[i].status ||
        (cases[i].message != NULL && strstr(r.err, cases[i].message) == NULL))
      FATAL("case %zu (%s): status %lld, stderr: %s", i, cases[i].prog,
            (long long)r.status, r.err);
    if (cases[i].status == 0)
      ASSERT_STR_EQ(plan(r.out, "program"), script);
    herd_sync_result_free(&r);
  }
  /* A non-executable match earlier in PATH does not hide an executable
   * one later; alone, it is 126 (bash does the same). */
  {
    char p2[160];
    const char* args[] = {"run", "--check", "--env", p2, "herd-run-x", NULL};
    char d1[64], d2[64], f1[96], f2[96];
    herd_sync_result_t r;
    snprintf(d1, sizeof(d1), "/tmp/herd-run-d1-%d", (int)getpid());
    snprintf(d2, sizeof(d2), "/tmp/herd-run-d2-%d", (int)getpid());
    snprintf(f1, sizeof(f1), "%s/herd-run-x", d1);
    snprintf(f2, sizeof(f2), "%s/herd-run-x", d2);
    mkdir(d1, 0755);
    mkdir(d2, 0755);
    ASSERT_EQ(rename(make_file(2, "#!/bin/sh\n", 0644), f1), 0);
    ASSERT_EQ(rename(make_file(3, "#!/bin/sh\n", 0755), f2), 0);
    snprintf(p2, sizeof(p2), "PATH=%s:%s", d1, d2);
    run_herd(args, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_EQ(plan(r.out, "program"), f2);
    herd_sync_result_free(&r);
    unlink(f2);
    run_herd(args, &r);
    ASSERT_EQ(r.status, 126);
    ASSERT(strstr(r.err, "herd: herd-run-x: Permission denied") != NULL);
    herd_sync_result_free(&r);
    unlink(f1);
    rmdir(d1);
    rmdir(d2);
  }
  unlink(noexec);
  unlink(script);
  return 0;
}

TEST_IMPL(run_check_plan) {
  char sock[64], lsock[80], want[128];
  const char* args[] = {"run",         "--check",
                        "-w",          "3",
                        "-l",          "127.0.0.1:0",
                        "--listen=:0", "-l",
                        lsock,         "--name",
                        "web",         "--ready",
                        "delay:250ms", "--ready-timeout",
                        "5s",          "--graceful-timeout",
                        "0",           "--stop-signal",
                        "int",         "--max-restarts",
                        "3",           "--restart-window",
                        "2m",          "--env",
                        "A=1",         "--env",
                        "B=x=y",       "--policy",
                        "shared",      "--",
                        "true",        "-w",
                        "9",           "--flag",
                        NULL};
  herd_sync_result_t r;
  const char* v;
  int port;
  struct stat st;

  snprintf(sock, sizeof(sock), "/tmp/herd-run-%d.sock", (int)getpid());
  snprintf(lsock, sizeof(lsock), "unix:%s", sock);
  run_herd(args, &r);
  if (r.status != 0)
    FATAL("status %lld: %s", (long long)r.status, r.err);
  ASSERT_EQ(r.err_len, 0);
  ASSERT_STR_EQ(plan(r.out, "protocol"), "systemd");
  ASSERT_STR_EQ(plan(r.out, "name"), "web");
  ASSERT_STR_EQ(plan(r.out, "workers"), "3");
  ASSERT_STR_EQ(plan(r.out, "policy"), "shared");
  v = plan(r.out, "listen");
  ASSERT(v != NULL && sscanf(v, "127.0.0.1:%d", &port) == 1 && port > 0);
  ASSERT(strstr(r.out, "\nlisten: :") != NULL);
  snprintf(want, sizeof(want), "\nlisten: unix:%s\n", sock);
  ASSERT(strstr(r.out, want) != NULL);
  ASSERT_STR_EQ(plan(r.out, "ready"), "delay 250 ms");
  ASSERT_STR_EQ(plan(r.out, "ready-timeout"), "5000 ms");
  ASSERT_STR_EQ(plan(r.out, "graceful-timeout"), "0 ms");
  ASSERT_STR_EQ(plan(r.out, "stop-signal"), "SIGINT");
  ASSERT_STR_EQ(plan(r.out, "max-restarts"), "3 in 120000 ms");
  ASSERT(strstr(r.out, "\nenv: A=1\nenv: B=x=y\n") != NULL);
  /* Everything after the program is the program's, options included. */
  ASSERT(strstr(r.out, "\narg: -w\narg: 9\narg: --flag\n") != NULL);
  herd_sync_result_free(&r);
  /* The socket file herd created is gone after a clean exit. */
  ASSERT_EQ(lstat(sock, &st), -1);

  /* Defaults; a program's name without its directory; -w auto. */
  {
    const char* d[] = {"run", "--check", "/bin/true", NULL};
    char n[16];
    run_herd(d, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_EQ(plan(r.out, "name"), "true");
    snprintf(n, sizeof(n), "%u", uv_available_parallelism());
    ASSERT_STR_EQ(plan(r.out, "workers"), n);
    ASSERT_STR_EQ(plan(r.out, "ready"), "auto");
    ASSERT_STR_EQ(plan(r.out, "ready-timeout"), "30000 ms");
    ASSERT_STR_EQ(plan(r.out, "graceful-timeout"), "10000 ms");
    ASSERT_STR_EQ(plan(r.out, "stop-signal"), "SIGTERM");
    ASSERT_STR_EQ(plan(r.out, "max-restarts"), "10 in 60000 ms");
    ASSERT(plan(r.out, "listen") == NULL);
    herd_sync_result_free(&r);
  }
  /* The policy: rr from the environment is for Node programs; others fall
   * back to reuseport. */
  {
    const char* env[] = {"HERD_SCHED_POLICY=rr", NULL};
    const char* plain[] = {"run", "--check", "true", NULL};
    const char* node[] = {"run", "--check", "node", "-e", "1", NULL};
    run_with(herd_exe(), plain, env, NULL, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_EQ(plan(r.out, "policy"), "reuseport");
    herd_sync_result_free(&r);
    run_with(herd_exe(), node, env, NULL, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT_STR_EQ(plan(r.out, "policy"), "rr");
    ASSERT_STR_EQ(plan(r.out, "protocol"), "node-cluster");
    herd_sync_result_free(&r);
  }
  return 0;
}

static int listen_tcp(int* port) {
  herd_listen_addr_t a;
  int fd;
  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  *port = a.port;
  return fd;
}

/* A bad or busy address fails at once, with exit 1 and the address named
 * as given; the addresses bound before it are released, files removed. */
TEST_IMPL(run_listen_errors) {
  char busy[32], sock[64], lsock[80], file[80], nodir[80], live[80];
  char want[160];
  herd_listen_addr_t la;
  int port, fd = listen_tcp(&port), lfd;
  struct stat st;
  const char* policies[] = {"shared", "reuseport"};
  const char* f;

  snprintf(busy, sizeof(busy), "127.0.0.1:%d", port);
  snprintf(sock, sizeof(sock), "/tmp/herd-run-%d.sock", (int)getpid());
  snprintf(lsock, sizeof(lsock), "unix:%s", sock);
  f = make_file(0, "not a socket", 0644);
  snprintf(file, sizeof(file), "unix:%s", f);
  snprintf(nodir, sizeof(nodir), "unix:/tmp/herd-no-such-dir-%d/s",
           (int)getpid());
  snprintf(live, sizeof(live), "unix:/tmp/herd-run-live-%d.sock",
           (int)getpid());
  ASSERT_OK(herd_listen_parse(live, &la));
  ASSERT_OK(herd_listen_bind(&la, NULL, &lfd));
  {
    struct {
      const char* addr;
      const char* why;
    } cases[] = {
        {busy, "address already in use"},
        {"192.0.2.1:80", "address not available"},
        {live, "address already in use"},
        {file, "file already exists"},
        {nodir, "no such file or directory"},
    };
    for (size_t p = 0; p < 2; p++) {
      for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char* args[] = {"run", "--check",     "--policy", policies[p],
                              "-l",  "127.0.0.1:0", "-l",       lsock,
                              "-l",  cases[i].addr, "true",     NULL};
        herd_sync_result_t r;
        run_herd(args, &r);
        snprintf(want, sizeof(want), "herd: cannot listen on %s: %s\n",
                 cases[i].addr, cases[i].why);
        if (r.status != 1 || strcmp(r.err, want) != 0)
          FATAL("%s %s: status %lld, stderr: %s", policies[p], cases[i].addr,
                (long long)r.status, r.err);
        ASSERT_EQ(r.out_len, 0);
        ASSERT_EQ(lstat(sock, &st), -1); /* bound first, then removed */
        herd_sync_result_free(&r);
      }
    }
  }
  /* The regular file is untouched. */
  ASSERT_EQ(lstat(f, &st), 0);
  ASSERT(S_ISREG(st.st_mode));
  unlink(f);
  ASSERT_OK(herd_listen_cleanup(&la));
  close(lfd);
  close(fd);
  return 0;
}

/* A socket file left by a process that died is taken over (and removed
 * at the end). */
TEST_IMPL(run_unix_stale) {
  char lsock[80];
  herd_listen_addr_t a;
  herd_sync_result_t r;
  struct stat st;
  int fd;
  const char* args[] = {"run", "--check", "-l", lsock, "true", NULL};

  snprintf(lsock, sizeof(lsock), "unix:/tmp/herd-run-stale-%d.sock",
           (int)getpid());
  ASSERT_OK(herd_listen_parse(lsock, &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  close(fd); /* the file stays: stale */
  ASSERT_EQ(lstat(lsock + 5, &st), 0);
  run_herd(args, &r);
  if (r.status != 0)
    FATAL("status %lld: %s", (long long)r.status, r.err);
  herd_sync_result_free(&r);
  ASSERT_EQ(lstat(lsock + 5, &st), -1);
  return 0;
}

/* Bind as root, then run as --user: the drop is real, and a program only
 * root may execute is refused (126) for the user. */
TEST_IMPL(run_user) {
  herd_sync_result_t r;
  const char* rootonly;
  const char* args[] = {"run", "--check",     "--user", "nobody",
                        "-l",  "127.0.0.1:0", "true",   NULL};
  const char* args2[] = {"run", "--check", "--user", "nobody", NULL, NULL};

  if (geteuid() != 0) {
    const char* a3[] = {"run", "--check", "--user", "root", "true", NULL};
    fprintf(stderr, "not root: only the refusal is tested\n");
    run_herd(a3, &r);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "needs root") != NULL);
    herd_sync_result_free(&r);
    return 0;
  }
  run_herd(args, &r);
  if (r.status != 0)
    FATAL("status %lld: %s", (long long)r.status, r.err);
  ASSERT(strstr(plan(r.out, "user"), "nobody (uid ") != NULL);
  ASSERT(strstr(plan(r.out, "user"), "(uid 0,") == NULL);
  herd_sync_result_free(&r);

  rootonly = make_file(0, "#!/bin/sh\n", 0700);
  args2[4] = rootonly;
  run_herd(args2, &r);
  ASSERT_EQ(r.status, 126);
  ASSERT(strstr(r.err, "Permission denied (as nobody)") != NULL);
  herd_sync_result_free(&r);
  unlink(rootonly);
  return 0;
}

/* Socket activation: with LISTEN_FDS for herd's own pid, herd adopts the
 * sockets instead of --listen. The pid is made right by exec'ing herd
 * from a shell that sets LISTEN_PID=$$. */
TEST_IMPL(run_inherited_sockets) {
  char want[64];
  const char* env[] = {"LISTEN_FDS=1", "LISTEN_FDNAMES=web", NULL};
  const char* args[] = {"-c",          "LISTEN_PID=$$ exec \"$0\" \"$@\"",
                        NULL,          "run",
                        "--check",     "-l",
                        "127.0.0.1:0", "true",
                        NULL};
  herd_stdio_t fd3;
  herd_sync_result_t r;
  int port, fd = listen_tcp(&port), p[2];

  args[2] = herd_exe();
  memset(&fd3, 0, sizeof(fd3));
  fd3.kind = HERD_STDIO_FD;
  fd3.fd = fd;
  run_with("/bin/sh", args, env, &fd3, &r);
  if (r.status != 0)
    FATAL("status %lld: %s", (long long)r.status, r.err);
  snprintf(want, sizeof(want), "127.0.0.1:%d (inherited)", port);
  ASSERT_STR_EQ(plan(r.out, "listen"), want);
  ASSERT(strstr(r.err, "1 socket inherited (LISTEN_FDS): --listen ignored") !=
         NULL);
  herd_sync_result_free(&r);
  close(fd);

  /* fd 3 is not a listening socket. */
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  fd3.fd = p[0];
  run_with("/bin/sh", args, env, &fd3, &r);
  ASSERT_EQ(r.status, 1);
  ASSERT(strstr(r.err, "herd: inherited fd 3 (web): ") != NULL);
  herd_sync_result_free(&r);
  close(p[0]);
  close(p[1]);
  return 0;
}
