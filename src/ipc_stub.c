/* A stand-in for the IPC module's side of the channel contract (see
 * internal.h), so the process module builds and its channel handling can be
 * tested on its own. The channel here only waits for the child to close its
 * end, throwing away whatever arrives. ipc.c replaces this file. */
#include "internal.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct herd_ipc_private_s {
  uv_poll_t poll;
  herd_child_t* child;
  int fd;
};

typedef struct {
  herd_ipc_t ipc;
  struct herd_ipc_private_s priv;
} stub_channel_t;

static void stub_close_cb(uv_handle_t* h) {
  struct herd_ipc_private_s* p =
      HERD_CONTAINER_OF(h, struct herd_ipc_private_s, poll);
  stub_channel_t* ch = HERD_CONTAINER_OF(p, stub_channel_t, priv);
  herd_child_t* child = p->child;
  close(p->fd);
  free(ch);
  herd__child_channel_closed(child);
}

static void stub_close(herd_ipc_t* ipc) {
  if (uv_is_closing((uv_handle_t*)&ipc->priv->poll))
    return;
  ipc->connected = 0;
  uv_close((uv_handle_t*)&ipc->priv->poll, stub_close_cb);
}

static void stub_poll_cb(uv_poll_t* h, int status, int events) {
  struct herd_ipc_private_s* p =
      HERD_CONTAINER_OF(h, struct herd_ipc_private_s, poll);
  stub_channel_t* ch = HERD_CONTAINER_OF(p, stub_channel_t, priv);
  char buf[4096];
  ssize_t n;
  (void)events;
  if (status < 0) {
    stub_close(&ch->ipc);
    return;
  }
  do
    n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT);
  while (n > 0);
  if (n == 0 || (errno != EAGAIN && errno != EINTR))
    stub_close(&ch->ipc);
}

int herd__ipc_attach(herd_child_t* child, int fd) {
  stub_channel_t* ch = calloc(1, sizeof(*ch));
  int r;
  if (ch == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  ch->ipc.loop = child->loop;
  ch->ipc.connected = 1;
  ch->ipc.priv = &ch->priv;
  ch->priv.child = child;
  ch->priv.fd = fd;
  r = uv_poll_init(child->loop, &ch->priv.poll, fd);
  if (r != 0) {
    close(fd);
    free(ch);
    return r;
  }
  child->channel = &ch->ipc;
  if (uv_poll_start(&ch->priv.poll, UV_READABLE | UV_DISCONNECT,
                    stub_poll_cb) != 0)
    stub_close(&ch->ipc);
  return 0;
}

void herd__ipc_detach(herd_ipc_t* ipc) {
  stub_close(ipc);
}

void herd__ipc_set_internal_cb(herd_ipc_t* ipc, herd__ipc_internal_cb cb) {
  (void)ipc;
  (void)cb;
}
