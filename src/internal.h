/* Private declarations shared by src/ files. Not installed. */
#ifndef HERD_INTERNAL_H
#define HERD_INTERNAL_H

#include "herd.h"

#include <errno.h>
#include <stddef.h>

#define HERD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HERD_CONTAINER_OF(ptr, type, field) \
  ((type*)((char*)(ptr)-offsetof(type, field)))

/* util.c */
int herd__cloexec(int fd, int set);
int herd__nonblock(int fd, int set);
void* herd__malloc(size_t size);
void* herd__realloc(void* p, size_t size);

/* The contract between the process module (spawn.c) and the IPC module
 * (ipc.c) for a parent-side channel.
 *
 * spawn.c, for a HERD_STDIO_IPC entry: creates a socketpair (CLOEXEC), gives
 * one end to the child as that fd, adds NODE_CHANNEL_FD=<n> and
 * NODE_CHANNEL_SERIALIZATION_MODE=json to the child's environment, and after
 * a successful spawn calls herd__ipc_attach() with its own end. On a failed
 * spawn it closes its end itself.
 *
 * ipc.c: herd__ipc_attach() sets child->channel to a herd-allocated channel
 * that starts reading at once (buffering until herd_ipc_start()). When that
 * channel has fully closed (after the disconnect callback), ipc.c calls
 * herd__child_channel_closed(child) and frees the channel; close_cb of the
 * child waits for that. herd_child_close() calls herd__ipc_detach(). */
int herd__ipc_attach(herd_child_t* child, int fd);
void herd__ipc_detach(herd_ipc_t* ipc);
void herd__child_channel_closed(herd_child_t* child);

/* The hook for the cluster module: internal messages (cmd NODE_*) other than
 * the NODE_HANDLE* family, and NODE_HANDLE messages whose inner message is
 * internal, go to this callback instead of being dropped. */
typedef void (*herd__ipc_internal_cb)(herd_ipc_t* ipc, const char* json,
                                      size_t len, herd_handle_t* handle);
void herd__ipc_set_internal_cb(herd_ipc_t* ipc, herd__ipc_internal_cb cb);

/* ipc module (json.c, ipc.c, fork.c)
 *
 * Notes for users of the hooks above: a channel parses nothing, internal
 * messages included, until herd_ipc_start() (NULL callbacks are fine), so
 * the cluster module must start every channel it uses. The internal callback
 * gets the whole line for a plain internal message and the inner `msg` for
 * a NODE_HANDLE (with the handle, after herd has sent the ACK); an fd not
 * taken with herd_handle_take()/herd_handle_open() is closed afterwards.
 * herd__ipc_attach() closes the fd itself when it fails. */

/* What herd__json_scan() learns about a message in the same pass that
 * validates it: the raw text of a top-level string member "cmd" (without
 * quotes, escapes not decoded), and whether a raw newline appeared between
 * tokens (a sender must turn it into a space). */
typedef struct {
  const char* cmd;
  size_t cmd_len;
  int newline;
} herd__json_info_t;

/* Validates `json` (grammar and UTF-8): 0, HERD_EBADJSON or HERD_EBADUTF8. */
int herd__json_scan(const char* json, size_t len, herd__json_info_t* info);
/* Node's isInternal(): cmd is a string longer than 5 starting with NODE_. */
int herd__json_is_internal(const herd__json_info_t* info);

#endif /* HERD_INTERNAL_H */
