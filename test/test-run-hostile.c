/* `herd run` against an operator or a program that does the unexpected:
 * a scale-up the system cannot satisfy, signals passed on while workers
 * start, Node workers that never become ready, program names that are no
 * valid names, addresses that do not resolve, and the messages of each. */
#include "run-util.h"
#include "test-cluster.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static char script[256];

/* A worker script of the test's own: `body` after the "#!" line `interp`
 * (NULL: /bin/sh). Returns its path. */
static const char* write_script(const char* name, const char* interp,
                                const char* body) {
  FILE* f;
  snprintf(script, sizeof(script), "/tmp/herd-hostile-%d-%s", (int)getpid(),
           name);
  f = fopen(script, "we");
  ASSERT(f != NULL);
  fprintf(f, "#!%s\n%s", interp != NULL ? interp : "/bin/sh", body);
  fclose(f);
  ASSERT_EQ(chmod(script, 0755), 0);
  return script;
}

static int count(const char* text, const char* what) {
  int n = 0;
  for (const char* p = text; p != NULL && (p = strstr(p, what)) != NULL; p++)
    n++;
  return n;
}

typedef struct {
  const char* what;
  int n;
} count_arg_t;

static int err_count_cond(hr_t* h, void* arg) {
  count_arg_t* c = arg;
  return count(h->err, c->what) >= c->n || h->exited;
}

static int out_count_cond(hr_t* h, void* arg) {
  count_arg_t* c = arg;
  return count(h->out, c->what) >= c->n || h->exited;
}

/* Slots added by SIGTTIN whose worker cannot start (the program now has an
 * interpreter that does not exist) or exits before it is ready are removed
 * again: the pool goes on, with --max-restarts 0 (give up at the first
 * crash) at that. A reload whose new workers cannot start fails and
 * counts no crash either. */
TEST_IMPL(run_hostile_scale_up_fails) {
  char fd3[1100];
  const char* path;
  const char* args[] = {"run", "-w", "2",           "--max-restarts",
                        "0",   "-l", "127.0.0.1:0", "--",
                        NULL,  NULL};
  count_arg_t c;
  hr_t h;

  snprintf(fd3, sizeof(fd3),
           "[ \"$HERD_WORKER_ID\" -ge 2 ] && exit 3\nexec %s\n", hr_fd3_http());
  path = write_script("scale", NULL, fd3);
  args[8] = path;
  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  hr_port(&h, 1000);

  /* Exits before ready. */
  hr_kill(&h, SIGTTIN);
  if (!hr_wait_err(&h, "the pool keeps 2 workers", 10000))
    FATAL("no scale-back:\n%s", h.err);
  ASSERT(strstr(h.err, "cannot add a worker: herd-hostile-") != NULL);
  ASSERT(strstr(h.err, ".2[") != NULL);
  ASSERT(strstr(h.err, "exited with status 3") != NULL);
  ASSERT(hr_wait_err(&h, "scaled to 2 workers", 5000));
  ASSERT(strstr(h.err, "giving up") == NULL);
  ASSERT(!h.exited);

  /* Cannot start at all: no pid to show, the interpreter named. */
  write_script("scale", "/nonexistent/bin/sh", "exit 0\n");
  hr_kill(&h, SIGTTIN);
  c.what = "the pool keeps 2 workers";
  c.n = 2;
  if (!hr_wait(&h, err_count_cond, &c, 10000) || h.exited)
    FATAL("no second scale-back:\n%s", h.err);
  if (strstr(h.err,
             "could not start: /nonexistent/bin/sh: bad interpreter: "
             "no such file or directory") == NULL)
    FATAL("interpreter not named:\n%s", h.err);
  ASSERT(strstr(h.err, "[0]") == NULL);

  /* A reload whose workers cannot start: failed, no crash counted. */
  hr_kill(&h, SIGHUP);
  if (!hr_wait_err(&h, "reload failed", 10000))
    FATAL("no reload failure:\n%s", h.err);
  ASSERT(!h.exited);
  ASSERT(strstr(h.err, "giving up") == NULL);

  /* And a scale-up that can hold still does. */
  snprintf(fd3, sizeof(fd3), "exec %s\n", hr_fd3_http());
  write_script("scale", NULL, fd3);
  hr_kill(&h, SIGTTIN);
  if (!hr_wait_err(&h, "scaled to 3 workers", 10000))
    FATAL("no scale-up:\n%s", h.err);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  unlink(path);
  return 0;
}

/* USR1 reaches only workers that have been ready: a worker that installs
 * its handler late (after 1 s here) is not killed by one that arrives
 * while it starts, whether it is a reload's new worker or a scale-up's. */
TEST_IMPL(run_hostile_signal_starting) {
  const char* path = write_script("late", NULL,
                                  "sleep 1\n"
                                  "trap 'echo got USR1' USR1\n"
                                  "while :; do sleep 0.05; done\n");
  const char* args[] = {"run",          "-w", "1",  "--ready",
                        "delay:1500ms", "--", path, NULL};
  count_arg_t c;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  hr_kill(&h, SIGHUP);
  ASSERT(hr_wait_err(&h, "started (reload)", 10000));
  hr_kill(&h, SIGUSR1);
  c.what = "got USR1";
  c.n = 1;
  ASSERT(hr_wait(&h, out_count_cond, &c, 10000)); /* the old one got it */
  if (!hr_wait_err(&h, "reload done", 10000))
    FATAL("reload did not finish:\n%s", h.err);
  ASSERT(strstr(h.err, "reload failed") == NULL);

  hr_kill(&h, SIGTTIN);
  ASSERT(hr_wait_err(&h, ".1[", 10000));
  hr_kill(&h, SIGUSR1);
  if (!hr_wait_err(&h, "scaled to 2 workers", 10000))
    FATAL("scale-up did not hold:\n%s", h.err);
  ASSERT(strstr(h.err, "killed by signal") == NULL);
  ASSERT(strstr(h.err, "cannot add") == NULL);
  c.n = 2;
  ASSERT(hr_wait(&h, out_count_cond, &c, 10000));
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  unlink(path);
  return 0;
}

/* A Node worker that never becomes ready (a timer keeps it alive; Node's
 * disconnect alone would not end it) gets SIGTERM at once: neither a
 * ready-timeout nor a stop waits for --graceful-timeout (10 s). */
TEST_IMPL(run_hostile_node_unready) {
  const char* give_up[] = {"run",
                           "-w",
                           "2",
                           "-l",
                           "127.0.0.1:0",
                           "--ready-timeout",
                           "1s",
                           "--",
                           "node",
                           "-e",
                           "setInterval(()=>{},1000)",
                           NULL};
  const char* stop[] = {"run",  "-w",          "2",
                        "-l",   "127.0.0.1:0", "--",
                        "node", "-e",          "setInterval(()=>{},1000)",
                        NULL};
  count_arg_t c;
  hr_t h;

  hr_start(&h, give_up, NULL);
  /* 1 s of ready-timeout, Node's start on a busy machine; not 11 s. */
  if (!hr_wait_exit(&h, 6000))
    FATAL("herd still runs:\n%s", h.err);
  ASSERT_EQ(h.status, 1);
  ASSERT(strstr(h.err, "giving up: no worker became ready") != NULL);
  ASSERT(strstr(h.err, "SIGKILL") == NULL);
  hr_finish(&h);

  hr_start(&h, stop, NULL);
  c.what = " started";
  c.n = 2;
  ASSERT(hr_wait(&h, err_count_cond, &c, 10000));
  hr_kill(&h, SIGTERM);
  if (!hr_wait_exit(&h, 5000))
    FATAL("the stop waits:\n%s", h.err);
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  return 0;
}

/* herd's exit, output and stderr, for a run that ends by itself. */
typedef struct {
  int64_t status;
  char out[8192];
  char err[8192];
} res_t;

static void run_herd(const char* const* args, res_t* res) {
  hr_t h;
  hr_start(&h, args, NULL);
  if (!hr_wait_exit(&h, 10000))
    FATAL("herd did not exit:\n%s", h.err);
  res->status = h.status;
  snprintf(res->out, sizeof(res->out), "%s", h.out ? h.out : "");
  snprintf(res->err, sizeof(res->err), "%s", h.err ? h.err : "");
  hr_finish(&h);
}

static int out_has(hr_t* h, void* arg) {
  return h->out != NULL && strstr(h->out, arg) != NULL;
}

/* The default name follows --name's rule (a valid name derived from the
 * program's), and the workers' LISTEN_FDNAMES is that name. */
TEST_IMPL(run_hostile_names) {
  char long_name[80], body[1100];
  const char* path;
  const char* check[] = {"run", "--check", "-w", "1", "--", NULL, NULL};
  const char* bad[] = {"run", "--check", "--name", "a:b", "--", "true", NULL};
  const char* run[] = {"run", "-w", "1", "-l", "127.0.0.1:0", "--", NULL, NULL};
  res_t res;
  hr_t h;

  snprintf(body, sizeof(body), "echo \"fdnames=$LISTEN_FDNAMES\"\nexec %s\n",
           hr_fd3_http());
  path = write_script("a:b c", NULL, body);
  check[5] = path;
  run_herd(check, &res);
  ASSERT_EQ(res.status, 0);
  if (strstr(res.out, "\nname: herd-hostile-") == NULL ||
      strstr(res.out, "-a_b_c\n") == NULL)
    FATAL("name:\n%s", res.out);

  run[6] = path;
  hr_start(&h, run, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  ASSERT(hr_wait(&h, out_has, "-a_b_c\n", 5000));
  ASSERT(strstr(h.out, "fdnames=herd-hostile-") != NULL);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  unlink(path);

  /* Not ASCII, and too long: cut at 64. */
  path = write_script("caf\xc3\xa9", NULL, "exit 0\n");
  check[5] = path;
  run_herd(check, &res);
  ASSERT_EQ(res.status, 0);
  if (strstr(res.out, "-caf__\n") == NULL)
    FATAL("name:\n%s", res.out);
  unlink(path);
  memset(long_name, 'x', 70);
  long_name[70] = '\0';
  path = write_script(long_name, NULL, "exit 0\n");
  check[5] = path;
  run_herd(check, &res);
  ASSERT_EQ(res.status, 0);
  {
    const char* n = strstr(res.out, "\nname: ");
    ASSERT(n != NULL);
    ASSERT_EQ(strcspn(n + 7, "\n"), 64);
  }
  unlink(path);

  run_herd(bad, &res);
  ASSERT_EQ(res.status, 2);
  ASSERT(strstr(res.err, "bad name 'a:b'") != NULL);
  return 0;
}

/* Exit statuses and messages: an address whose name does not resolve is
 * one that cannot be used (1); hints that are valid; an ambiguous option
 * said so; the maximum of a TIME; a missing interpreter named; --help's
 * exit statuses; the demo's "1 worker". */
TEST_IMPL(run_hostile_messages) {
  const char* unresolved[] = {"run", "--check", "-l", "nonexistent.invalid:80",
                              "--",  "true",    NULL};
  const char* empty[] = {"run", "-l", "", "--", "true", NULL};
  const char* ambiguous[] = {"run", "--re", "3", "--", "true", NULL};
  const char* ambiguous_demo[] = {"demo", "--p", "3", NULL};
  const char* too_long[] = {"run", "--ready-timeout", "169h", "--", "true",
                            NULL};
  const char* help[] = {"run", "--help", NULL};
  const char* interp[] = {"run", "--check", "--", NULL, NULL};
  const char* demo[] = {"demo", "--workers", "1", "--port", "0", NULL};
  res_t res;
  hr_t h;

  run_herd(unresolved, &res);
  ASSERT_EQ(res.status, 1);
  ASSERT(strstr(res.err, "cannot listen on nonexistent.invalid:80: ") != NULL);

  run_herd(empty, &res);
  ASSERT_EQ(res.status, 2);
  ASSERT(strstr(res.err, "did you mean") == NULL);
  ASSERT(strstr(res.err, "unix:@NAME") != NULL);

  run_herd(ambiguous, &res);
  ASSERT_EQ(res.status, 2);
  ASSERT(strstr(res.err, "ambiguous option '--re'") != NULL);
  run_herd(ambiguous_demo, &res);
  ASSERT_EQ(res.status, 2);
  ASSERT(strstr(res.err, "ambiguous option '--p'") != NULL);

  run_herd(too_long, &res);
  ASSERT_EQ(res.status, 2);
  ASSERT(strstr(res.err, "at most 7 days") != NULL);

  run_herd(help, &res);
  ASSERT_EQ(res.status, 0);
  ASSERT(strstr(res.out, "128+N") != NULL);
  ASSERT(strstr(res.out, "143") != NULL);

  interp[3] = write_script("interp", "/nonexistent/bin/sh", "exit 0\n");
  run_herd(interp, &res);
  ASSERT_EQ(res.status, 127);
  if (strstr(res.err, ": /nonexistent/bin/sh: bad interpreter: ") == NULL)
    FATAL("interpreter not named:\n%s", res.err);
  unlink(script);

  hr_start(&h, demo, NULL);
  ASSERT(hr_wait(&h, out_has, " 1 worker, policy", 10000));
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  hr_finish(&h);
  return 0;
}

/* A free port on 127.0.0.1 now. */
static int hostile_free_port(void) {
  herd_listen_addr_t a;
  int fd, port;
  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  port = a.port;
  close(fd);
  return port;
}

/* Only unix addresses given to a Node program: its listen(PORT) is
 * refused (EADDRNOTAVAIL in the worker, never ready), not bound afresh on
 * every interface. */
TEST_IMPL(run_hostile_node_unix_only) {
  char sock[64], env[32], body[64], js[1024];
  const char* args[] = {"run",   "-w", "1",  "--max-restarts", "0", "-l", sock,
                        "--env", env,  "--", "node",           js,  NULL};
  int port = hostile_free_port();
  hr_t h;

  snprintf(js, sizeof(js), "%s/test/fixtures/plain-http.js", test_source_dir());
  snprintf(sock, sizeof(sock), "unix:/tmp/herd-hostile-%d.sock", (int)getpid());
  snprintf(env, sizeof(env), "PORT=%d", port);
  hr_start(&h, args, NULL);
  if (!hr_wait_exit(&h, 20000))
    FATAL("herd still runs:\n%s", h.err);
  if (strstr(h.err, "refused: herd listens on unix:") == NULL)
    FATAL("listen not refused:\n%s", h.err);
  ASSERT(strstr(h.err, "EADDRNOTAVAIL") != NULL); /* the worker's error */
  ASSERT(strstr(h.err, "giving up: no worker became ready") != NULL);
  ASSERT_EQ(h.status, 1);
  ASSERT(!h.ready);
  ASSERT_EQ(tc_http_get(port, body, sizeof(body), 1000), -1);
  hr_finish(&h);
  return 0;
}

/* --user: the unix socket file herd binds as root is the user's, so that
 * herd, running as the user, removes it from sticky /tmp at exit. */
TEST_IMPL(run_hostile_user_unix) {
  char sock[64];
  struct passwd* pw = getpwnam("nobody");
  struct stat st;
  hr_t h;

  if (geteuid() != 0 || pw == NULL) {
    fprintf(stderr, "not root (or no nobody): skipped\n");
    return 0;
  }
  snprintf(sock, sizeof(sock), "unix:/tmp/herd-hostile-u%d.sock",
           (int)getpid());
  write_script("user", NULL, "exec sleep 100\n");
  {
    const char* run[] = {"run",        "-w",     "1",      "--ready",
                         "delay:10ms", "--user", "nobody", "-l",
                         sock,         "--",     script,   NULL};
    hr_start(&h, run, NULL);
  }
  ASSERT(hr_wait_ready(&h, 1, 15000));
  ASSERT_EQ(lstat(sock + 5, &st), 0);
  ASSERT_EQ(st.st_uid, pw->pw_uid);
  ASSERT_EQ(st.st_gid, pw->pw_gid);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  if (h.status != 0 || strstr(h.err, "cannot remove") != NULL)
    FATAL("exit %lld:\n%s", (long long)h.status, h.err);
  ASSERT(lstat(sock + 5, &st) != 0 && errno == ENOENT);
  hr_finish(&h);
  unlink(script);
  return 0;
}

/* A file execve() refuses (ENOEXEC) that looks binary is refused up front
 * as bash does, not run as a shell script; a fail-fast give-up does not
 * announce a restart as certain; a worker stopped for being late is said
 * to be late. */
TEST_IMPL(run_hostile_binary_file) {
  char path[64];
  const char* check[] = {"run", "--check", "--", path, NULL};
  const char* run[] = {"run", "-w", "1", "--", path, NULL};
  const char* two[] = {"run", "-w", "2", "--", "/bin/sh", "-c", "exit 1", NULL};
  const char* unready[] = {
      "run",   "-w", "1",     "--ready", "notify", "--ready-timeout",
      "300ms", "--", "sleep", "100",     NULL};
  static const char* const heads[] = {"\177ELFgarbage", "ab\0cd\n"};
  static const size_t lens[] = {11, 6};
  res_t res;

  snprintf(path, sizeof(path), "/tmp/herd-hostile-bin-%d", (int)getpid());
  for (int i = 0; i < 2; i++) {
    FILE* f = fopen(path, "we");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(heads[i], 1, lens[i], f), lens[i]);
    fclose(f);
    ASSERT_EQ(chmod(path, 0755), 0);
    run_herd(check, &res);
    ASSERT_EQ(res.status, 126);
    if (strstr(res.err, "cannot execute binary file: exec format error") ==
        NULL)
      FATAL("not refused:\n%s", res.err);
    run_herd(run, &res);
    ASSERT_EQ(res.status, 126);
  }
  unlink(path);

  run_herd(two, &res);
  ASSERT_EQ(res.status, 1);
  ASSERT(strstr(res.err, "giving up") != NULL);
  if (strstr(res.err, " ms\n") != NULL || strstr(res.err, " ms;") != NULL)
    FATAL("a restart announced:\n%s", res.err);

  /* A worker herd stopped for missing --ready-timeout is said so, not as
   * killed by herd's own SIGTERM. */
  run_herd(unready, &res);
  ASSERT_EQ(res.status, 1);
  if (strstr(res.err, "(sleep.0[") == NULL ||
      strstr(res.err, "] not ready within 300 ms)") == NULL ||
      strstr(res.err, "killed by signal") != NULL)
    FATAL("not said:\n%s", res.err);
  return 0;
}

/* `herd demo`: HUP is a rolling reload, USR1 and USR2 are ignored; the
 * demo still serves, and stops with its total. An invalid
 * HERD_SCHED_POLICY is said. */
TEST_IMPL(run_hostile_demo_signals) {
  const char* demo[] = {"demo", "--workers", "1", "--port", "0", NULL};
  const char* env[] = {"HERD_SCHED_POLICY=bogus", NULL};
  char body[64];
  const char* p;
  count_arg_t c;
  int port;
  hr_t h;

  hr_start(&h, demo, env);
  ASSERT(hr_wait(&h, out_has, " 1 worker, policy", 10000));
  if (strstr(h.err, "HERD_SCHED_POLICY='bogus' is not a policy") == NULL)
    FATAL("no warning:\n%s", h.err);
  p = strstr(h.out, "127.0.0.1:");
  ASSERT(p != NULL);
  port = atoi(p + 10);
  ASSERT(port > 0);
  ASSERT_EQ(tc_http_get(port, body, sizeof(body), 5000), 200);
  hr_kill(&h, SIGHUP);
  if (!hr_wait_err(&h, "reload done", 15000) || h.exited)
    FATAL("no reload:\n%s", h.err);
  hr_kill(&h, SIGUSR1);
  hr_kill(&h, SIGUSR2);
  /* Two ticks later it still runs and serves. */
  c.what = "requests = ";
  c.n = count(h.out, c.what) + 2;
  ASSERT(hr_wait(&h, out_count_cond, &c, 5000));
  ASSERT(!h.exited);
  ASSERT_EQ(tc_http_get(port, body, sizeof(body), 5000), 200);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 15000));
  ASSERT_EQ(h.status, 0);
  ASSERT(strstr(h.out, "total requests = ") != NULL);
  hr_finish(&h);
  return 0;
}
