/* Listening sockets from text addresses: parsing, binding (with the stale
 * unix socket check), describing inherited sockets, removing socket files.
 * See include/herd/listen.h. */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The longest unix path or abstract name: sun_path less its NUL (a path)
 * or its leading NUL (a name). */
#define UNIX_NAME_MAX (sizeof(((struct sockaddr_un*)0)->sun_path) - 1)

static int parse_port(const char* s, int* port) {
  long v = 0;
  if (*s == '\0')
    return UV_EINVAL;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return UV_EINVAL;
    v = v * 10 + (*s - '0');
    if (v > 65535)
      return UV_EINVAL;
  }
  *port = (int)v;
  return 0;
}

/* The canonical text of an IP address (port from addr->port). */
static void format_inet(herd_listen_addr_t* addr) {
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  if (addr->flags & HERD_LISTEN_ANY) {
    snprintf(addr->text, sizeof(addr->text), ":%d", addr->port);
    return;
  }
  if (addr->family == AF_INET) {
    struct sockaddr_in* sin = (struct sockaddr_in*)&addr->sa;
    inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
    snprintf(addr->text, sizeof(addr->text), "%s:%d", host, addr->port);
  } else {
    struct sockaddr_in6* sin6 = (struct sockaddr_in6*)&addr->sa;
    char ifname[IF_NAMESIZE];
    inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
    if (sin6->sin6_scope_id != 0 &&
        if_indextoname(sin6->sin6_scope_id, ifname) != NULL) {
      size_t n = strlen(host);
      snprintf(host + n, sizeof(host) - n, "%%%s", ifname);
    }
    snprintf(addr->text, sizeof(addr->text), "[%s]:%d", host, addr->port);
  }
}

static void set_port(herd_listen_addr_t* addr, int port) {
  addr->port = port;
  if (addr->family == AF_INET)
    ((struct sockaddr_in*)&addr->sa)->sin_port = htons((uint16_t)port);
  else if (addr->family == AF_INET6)
    ((struct sockaddr_in6*)&addr->sa)->sin6_port = htons((uint16_t)port);
  format_inet(addr);
}

static void set_any(herd_listen_addr_t* addr, int family) {
  memset(&addr->sa, 0, sizeof(addr->sa));
  addr->family = family;
  if (family == AF_INET6) {
    struct sockaddr_in6* sin6 = (struct sockaddr_in6*)&addr->sa;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_any;
    addr->len = sizeof(*sin6);
  } else {
    struct sockaddr_in* sin = (struct sockaddr_in*)&addr->sa;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    addr->len = sizeof(*sin);
  }
}

static int eai_error(int eai) {
  switch (eai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
      return UV_EAI_NONAME;
    case EAI_AGAIN:
      return UV_EAI_AGAIN;
    case EAI_MEMORY:
      return UV_ENOMEM;
    case EAI_SYSTEM:
      return errno != 0 ? -errno : UV_EAI_FAIL;
    default:
      return UV_EAI_FAIL;
  }
}

/* A host name: the first IPv4 address it resolves to, else the first
 * IPv6 one. */
static int resolve(const char* host, herd_listen_addr_t* addr) {
  struct addrinfo hints, *res, *ai, *pick = NULL;
  int r;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  errno = 0;
  r = getaddrinfo(host, NULL, &hints, &res);
  if (r != 0)
    return eai_error(r);
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
    if (ai->ai_family == AF_INET6 && pick == NULL)
      pick = ai;
  }
  if (pick == NULL || pick->ai_addrlen > sizeof(addr->sa)) {
    freeaddrinfo(res);
    return UV_EAI_NONAME;
  }
  memcpy(&addr->sa, pick->ai_addr, pick->ai_addrlen);
  addr->len = pick->ai_addrlen;
  addr->family = pick->ai_family;
  freeaddrinfo(res);
  return 0;
}

static int parse_unix(const char* name, herd_listen_addr_t* addr) {
  struct sockaddr_un* sun = (struct sockaddr_un*)&addr->sa;
  size_t n;
  int abstract = name[0] == '@';
  if (abstract)
    name++;
  n = strlen(name);
  if (n == 0)
    return UV_EINVAL;
  if (n > UNIX_NAME_MAX)
    return UV_ENAMETOOLONG;
  addr->family = AF_UNIX;
  sun->sun_family = AF_UNIX;
  if (abstract) {
    /* The name is the bytes after the leading NUL, as many as the length
     * says: no terminating NUL (systemd and ss(8) show it as "@name"). */
    memcpy(sun->sun_path + 1, name, n);
    addr->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    addr->flags |= HERD_LISTEN_ABSTRACT;
  } else {
    memcpy(sun->sun_path, name, n + 1);
    addr->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  }
  snprintf(addr->text, sizeof(addr->text), "unix:%s%s", abstract ? "@" : "",
           name);
  return 0;
}

int herd_listen_parse(const char* text, herd_listen_addr_t* out) {
  herd_listen_addr_t addr;
  char host[256];
  const char* colon;
  size_t hlen;
  int r;

  if (text == NULL || out == NULL)
    return UV_EINVAL;
  memset(&addr, 0, sizeof(addr));
  if (strncmp(text, "unix:", 5) == 0) {
    r = parse_unix(text + 5, &addr);
    if (r == 0)
      *out = addr;
    return r;
  }

  if (text[0] == '[') {
    const char* close = strchr(text, ']');
    if (close == NULL || close[1] != ':')
      return UV_EINVAL;
    hlen = (size_t)(close - text - 1);
    colon = close + 1;
    if (hlen == 0 || hlen >= sizeof(host))
      return UV_EINVAL;
    memcpy(host, text + 1, hlen);
    host[hlen] = '\0';
    r = parse_port(colon + 1, &addr.port);
    if (r != 0)
      return r;
    if (uv_ip6_addr(host, addr.port, (struct sockaddr_in6*)&addr.sa) != 0)
      return UV_EINVAL;
    addr.family = AF_INET6;
    addr.len = sizeof(struct sockaddr_in6);
  } else {
    colon = strrchr(text, ':');
    if (colon == NULL)
      return UV_EINVAL;
    hlen = (size_t)(colon - text);
    if (hlen >= sizeof(host) || memchr(text, ':', hlen) != NULL)
      return UV_EINVAL; /* IPv6 needs brackets */
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    r = parse_port(colon + 1, &addr.port);
    if (r != 0)
      return r;
    if (hlen == 0) {
      addr.flags |= HERD_LISTEN_ANY;
      set_any(&addr, AF_INET6);
    } else if (uv_ip4_addr(host, addr.port, (struct sockaddr_in*)&addr.sa) ==
               0) {
      addr.family = AF_INET;
      addr.len = sizeof(struct sockaddr_in);
    } else {
      r = resolve(host, &addr);
      if (r != 0)
        return r;
    }
  }
  set_port(&addr, addr.port);
  *out = addr;
  return 0;
}

/* Whether a process accepts connections on the unix socket at `sa`: 0 if
 * nobody does (the file is stale), UV_EADDRINUSE otherwise. A full backlog
 * (EAGAIN) or a refusal to even try (EACCES) count as in use: only a
 * definite ECONNREFUSED makes a file stale. */
static int unix_probe(const herd_listen_addr_t* addr) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int r;
  if (fd < 0)
    return -errno;
  r = connect(fd, (const struct sockaddr*)&addr->sa, addr->len);
  r = (r != 0 && errno == ECONNREFUSED) ? 0 : UV_EADDRINUSE;
  close(fd);
  return r;
}

static int bind_unix(int fd, herd_listen_addr_t* addr, unsigned mode) {
  const char* path = ((struct sockaddr_un*)&addr->sa)->sun_path;
  struct stat st;
  mode_t old;
  int r;

  /* The umask makes bind() create the file with `mode` at once; a chmod()
   * afterwards (nginx) leaves a moment with the umask's permissions.
   * Nothing else in herd creates files meanwhile. */
  old = umask((mode_t)(~mode & 0777));
  r = bind(fd, (const struct sockaddr*)&addr->sa, addr->len);
  if (r != 0 && errno == EADDRINUSE && !(addr->flags & HERD_LISTEN_ABSTRACT)) {
    if (lstat(path, &st) != 0) {
      r = -errno;
    } else if (!S_ISSOCK(st.st_mode)) {
      r = UV_EEXIST;
    } else if ((r = unix_probe(addr)) == 0) {
      /* Stale. Another process may have replaced it since the probe: that
       * race costs it the file only if it also died, as with systemd. */
      if (unlink(path) != 0 && errno != ENOENT)
        r = -errno;
      else if (bind(fd, (const struct sockaddr*)&addr->sa, addr->len) != 0)
        r = -errno;
    }
  } else if (r != 0) {
    r = -errno;
  }
  umask(old);
  if (r != 0)
    return r;
  if (!(addr->flags & HERD_LISTEN_ABSTRACT) && lstat(path, &st) == 0) {
    addr->flags |= HERD_LISTEN_OWNED;
    addr->dev = st.st_dev;
    addr->ino = st.st_ino;
  }
  return 0;
}

static int open_socket(herd_listen_addr_t* addr, int* fd) {
  *fd = socket(addr->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (*fd >= 0)
    return 0;
  if ((errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT) &&
      (addr->flags & HERD_LISTEN_ANY) && addr->family == AF_INET6) {
    /* No IPv6 in this kernel: every address is every IPv4 address. */
    set_any(addr, AF_INET);
    set_port(addr, addr->port);
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (*fd >= 0)
      return 0;
  }
  return -errno;
}

int herd_listen_bind(herd_listen_addr_t* addr,
                     const herd_listen_options_t* options, int* fd_out) {
  herd_listen_options_t defaults;
  int fd, on = 1, r;

  if (addr == NULL || fd_out == NULL ||
      (addr->family != AF_INET && addr->family != AF_INET6 &&
       addr->family != AF_UNIX))
    return UV_EINVAL;
  if (options == NULL) {
    memset(&defaults, 0, sizeof(defaults));
    options = &defaults;
  }
  r = open_socket(addr, &fd);
  if (r != 0)
    return r;
  if (addr->family == AF_UNIX) {
    r = bind_unix(fd, addr, options->unix_mode ? options->unix_mode : 0666);
    if (r != 0)
      goto fail;
  } else {
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0)
      goto fail_errno;
    if ((options->flags & HERD_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
      goto fail_errno;
    if (addr->family == AF_INET6) {
      int v6only = (addr->flags & HERD_LISTEN_ANY) ? 0 : 1;
      if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) !=
          0)
        goto fail_errno;
    }
    if (bind(fd, (const struct sockaddr*)&addr->sa, addr->len) != 0)
      goto fail_errno;
  }
  if (listen(fd, options->backlog > 0 ? options->backlog
                                      : HERD_LISTEN_BACKLOG) != 0) {
    r = -errno;
    if (addr->flags & HERD_LISTEN_OWNED) {
      herd_listen_cleanup(addr);
      addr->flags &= ~(unsigned)HERD_LISTEN_OWNED;
    }
    goto fail;
  }
  if (addr->family != AF_UNIX && addr->port == 0) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr*)&ss, &len) != 0)
      goto fail_errno;
    set_port(addr, ss.ss_family == AF_INET
                       ? ntohs(((struct sockaddr_in*)&ss)->sin_port)
                       : ntohs(((struct sockaddr_in6*)&ss)->sin6_port));
  }
  *fd_out = fd;
  return 0;

fail_errno:
  r = -errno;
fail:
  close(fd);
  return r;
}

int herd_listen_addr_from_fd(int fd, herd_listen_addr_t* out) {
  herd_listen_addr_t addr;
  struct stat st;
  int type = 0, accepting = 0;
  socklen_t len = sizeof(type);

  if (out == NULL)
    return UV_EINVAL;
  if (fstat(fd, &st) != 0)
    return -errno;
  if (!S_ISSOCK(st.st_mode))
    return UV_ENOTSOCK;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return -errno;
  len = sizeof(accepting);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0)
    return -errno;
  if (type != SOCK_STREAM || !accepting)
    return UV_EINVAL;
  memset(&addr, 0, sizeof(addr));
  addr.len = sizeof(addr.sa);
  if (getsockname(fd, (struct sockaddr*)&addr.sa, &addr.len) != 0)
    return -errno;
  addr.family = addr.sa.ss_family;
  addr.flags = HERD_LISTEN_INHERITED;
  if (addr.family == AF_INET || addr.family == AF_INET6) {
    int port = addr.family == AF_INET
                   ? ntohs(((struct sockaddr_in*)&addr.sa)->sin_port)
                   : ntohs(((struct sockaddr_in6*)&addr.sa)->sin6_port);
    set_port(&addr, port);
  } else if (addr.family == AF_UNIX) {
    struct sockaddr_un* sun = (struct sockaddr_un*)&addr.sa;
    size_t n = addr.len > offsetof(struct sockaddr_un, sun_path)
                   ? addr.len - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > 0 && sun->sun_path[0] == '\0') {
      addr.flags |= HERD_LISTEN_ABSTRACT;
      snprintf(addr.text, sizeof(addr.text), "unix:@%.*s", (int)(n - 1),
               sun->sun_path + 1);
    } else {
      snprintf(addr.text, sizeof(addr.text), "unix:%.*s", (int)n,
               sun->sun_path);
    }
  } else {
    return UV_EAFNOSUPPORT;
  }
  *out = addr;
  return 0;
}

int herd_listen_cleanup(const herd_listen_addr_t* addr) {
  const char* path;
  struct stat st;
  if (addr == NULL || addr->family != AF_UNIX ||
      !(addr->flags & HERD_LISTEN_OWNED))
    return 0;
  path = ((const struct sockaddr_un*)&addr->sa)->sun_path;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? 0 : -errno;
  if (st.st_dev != addr->dev || st.st_ino != addr->ino)
    return 0;
  if (unlink(path) != 0 && errno != ENOENT)
    return -errno;
  return 0;
}
