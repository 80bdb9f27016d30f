/* The environment of a cluster worker: the primary's own, the settings'
 * additions, those of herd_cluster_fork(), and the cluster's variables. */
#include "cluster-int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char** environ;

/* The worker's environment: the primary's (or settings.spawn.env), then
 * the settings' additions, then fork()'s, then NODE_UNIQUE_ID; a later "K="
 * wins.
 * The channel variables of our own parent are dropped: herd_fork sets new
 * ones. */
static int env_put(char*** envp, size_t* n, size_t* cap, const char* kv) {
  const char* eq = strchr(kv, '=');
  size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
  char* copy;
  for (size_t i = 0; i < *n; i++) {
    if (strncmp((*envp)[i], kv, klen) == 0 && (*envp)[i][klen] == '=') {
      copy = herd__strdup(kv);
      if (copy == NULL)
        return UV_ENOMEM;
      herd__free((*envp)[i]);
      (*envp)[i] = copy;
      return 0;
    }
  }
  if (*n + 2 > *cap) {
    size_t ncap = *cap ? *cap * 2 : 64;
    char** ne = herd__realloc(*envp, ncap * sizeof(char*));
    if (ne == NULL)
      return UV_ENOMEM;
    /* Terminated at once: a failure below leaves a list env_free() can
     * walk. */
    ne[*n] = NULL;
    *envp = ne;
    *cap = ncap;
  }
  copy = herd__strdup(kv);
  if (copy == NULL)
    return UV_ENOMEM;
  (*envp)[(*n)++] = copy;
  (*envp)[*n] = NULL;
  return 0;
}

void herd__cluster_env_free(char** envp) {
  if (envp == NULL)
    return;
  for (char** e = envp; *e != NULL; e++)
    herd__free(*e);
  herd__free(envp);
}

char** herd__cluster_env_build(herd_cluster_t* cluster, int id,
                               const char* const* extra) {
  const herd_spawn_options_t* spawn = &cluster->settings.spawn;
  char** envp = NULL;
  size_t n = 0, cap = 0;
  char buf[64];
  const char* const* base;
  const char* const* e;

  /* The base: the primary's environment, or settings.spawn.env in its
   * place (added to it with HERD_SPAWN_ENV_EXTEND), as herd_spawn() takes
   * them. */
  base = (const char* const*)environ;
  if (spawn->env != NULL && !(spawn->flags & HERD_SPAWN_ENV_EXTEND))
    base = spawn->env;
  for (e = base; e != NULL && *e != NULL; e++) {
    if (strncmp(*e, "NODE_CHANNEL_FD=", 16) == 0 ||
        strncmp(*e, "NODE_CHANNEL_SERIALIZATION_MODE=", 32) == 0 ||
        strncmp(*e, "NODE_UNIQUE_ID=", 15) == 0 ||
        strncmp(*e, "HERD_PRIMARY_PID=", 17) == 0)
      continue;
    if (env_put(&envp, &n, &cap, *e) != 0)
      goto fail;
  }
  if (spawn->env != NULL && (spawn->flags & HERD_SPAWN_ENV_EXTEND))
    for (e = spawn->env; *e != NULL; e++)
      if (env_put(&envp, &n, &cap, *e) != 0)
        goto fail;
  for (e = cluster->settings.env; e != NULL && *e != NULL; e++)
    if (env_put(&envp, &n, &cap, *e) != 0)
      goto fail;
  for (e = extra; e != NULL && *e != NULL; e++)
    if (env_put(&envp, &n, &cap, *e) != 0)
      goto fail;
  snprintf(buf, sizeof(buf), "NODE_UNIQUE_ID=%d", id);
  if (env_put(&envp, &n, &cap, buf) != 0)
    goto fail;
  /* Lets the worker tell whether its primary died before it could ask for
   * PR_SET_PDEATHSIG. */
  snprintf(buf, sizeof(buf), "HERD_PRIMARY_PID=%d", (int)getpid());
  if (env_put(&envp, &n, &cap, buf) != 0)
    goto fail;
  return envp;

fail:
  herd__cluster_env_free(envp);
  return NULL;
}

char** herd__cluster_env_copy(const char* const* env) {
  size_t n = 0;
  char** copy;
  while (env != NULL && env[n] != NULL)
    n++;
  copy = herd__calloc(n + 1, sizeof(char*));
  if (copy == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    copy[i] = herd__strdup(env[i]);
    if (copy[i] == NULL) {
      herd__cluster_env_free(copy);
      return NULL;
    }
  }
  return copy;
}
