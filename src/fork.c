/* fork(): spawn() with an IPC channel, as Node's child_process.fork(). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int herd_fork(uv_loop_t* loop, herd_child_t* child, const char* program,
              const char* const* args, const herd_fork_options_t* options) {
  herd_fork_options_t defaults;
  herd_spawn_options_t spawn;
  herd_stdio_t stdio[4];
  const char** argv = NULL;
  const char* file;
  size_t nargs = 0, nexec = 0, n = 0;
  int r, has_ipc = 0;

  if (loop == NULL || child == NULL || program == NULL)
    return UV_EINVAL;
  if (options == NULL) {
    memset(&defaults, 0, sizeof(defaults));
    options = &defaults;
  }
  spawn = options->spawn;
  if (spawn.stdio_count == 0) {
    herd_stdio_kind_t k =
        options->silent ? HERD_STDIO_PIPE : HERD_STDIO_INHERIT;
    for (int i = 0; i < 3; i++) {
      stdio[i].kind = k;
      stdio[i].fd = i;
    }
    stdio[3].kind = HERD_STDIO_IPC;
    stdio[3].fd = 3;
    spawn.stdio = stdio;
    spawn.stdio_count = 4;
  }
  /* Node refuses a fork() without a channel (ERR_CHILD_PROCESS_IPC_REQUIRED).
   */
  for (int i = 0; i < spawn.stdio_count; i++)
    if (spawn.stdio[i].kind == HERD_STDIO_IPC)
      has_ipc = 1;
  if (!has_ipc)
    return UV_EINVAL;

  if (options->exec_path == NULL) {
    file = program;
    return herd_spawn(loop, child, file, args, &spawn);
  }
  /* exec_path exec_argv... program args... */
  file = options->exec_path;
  while (args != NULL && args[nargs] != NULL)
    nargs++;
  while (options->exec_argv != NULL && options->exec_argv[nexec] != NULL)
    nexec++;
  argv = herd__calloc(nexec + nargs + 2, sizeof(*argv));
  if (argv == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < nexec; i++)
    argv[n++] = options->exec_argv[i];
  argv[n++] = program;
  for (size_t i = 0; i < nargs; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  r = herd_spawn(loop, child, file, argv, &spawn);
  herd__free(argv);
  return r;
}
