/* A small, allocation-free JSON scanner for IPC messages: it validates a
 * text (JSON grammar and UTF-8 in one pass), finds members of the top-level
 * object, and quotes strings. It never builds a tree, because the channel
 * only needs to know that a line is valid and what its `cmd` is. */
#include "internal.h"

#include <string.h>

/* Nesting deeper than this is refused; 64 words of one bit each. */
#define JSON_MAX_DEPTH 4096

/* Character classes for the string fast path: 0 = ordinary ASCII that may
 * appear raw in a string, 1 = needs a closer look ('"', '\\', control
 * characters and every byte >= 0x80). */
static const unsigned char str_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50 '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x90 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xa0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xb0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xc0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xd0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xe0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xf0 */
};

static int is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static int hex_val(unsigned char c) {
  return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Validates one UTF-8 sequence starting at *pp (a byte >= 0x80), following
 * RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_seq(const unsigned char** pp, const unsigned char* end) {
  const unsigned char* p = *pp;
  unsigned c = p[0];
  size_t n;
  unsigned lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
  } else {
    return HERD_EBADUTF8;
  }
  if ((size_t)(end - p) <= n)
    return HERD_EBADUTF8;
  if (p[1] < lo || p[1] > hi)
    return HERD_EBADUTF8;
  for (size_t i = 2; i <= n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return HERD_EBADUTF8;
  *pp = p + n + 1;
  return 0;
}

/* Marks (high bit set) the bytes of `x` that need a closer look inside a
 * string: below 0x20, '"', '\\' or >= 0x80. A borrow can only carry upwards
 * from a byte that is itself marked, so bytes above the first mark may be
 * marked wrongly but the first mark is always exact. */
static inline uint64_t word_special(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ull;
  const uint64_t high = 0x8080808080808080ull;
  uint64_t q = x ^ (ones * '"');
  uint64_t b = x ^ (ones * '\\');
  uint64_t t = (x - ones * 0x20) & ~x;
  t |= (q - ones) & ~q;
  t |= (b - ones) & ~b;
  return (t | x) & high;
}

/* Scans a string whose opening quote is at *pp; leaves *pp after the closing
 * quote. */
static inline __attribute__((always_inline)) int scan_string(
    const unsigned char** pp, const unsigned char* end) {
  const unsigned char* p = *pp + 1;
  for (;;) {
    for (;;) {
      uint64_t w, m;
      if (end - p < 8)
        break;
      memcpy(&w, p, 8);
      m = word_special(w);
      if (m != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* The first byte in memory is the lowest: jump straight to it. */
        p += __builtin_ctzll(m) >> 3;
#endif
        break;
      }
      p += 8;
    }
    while (p < end && !str_special[*p])
      p++;
    if (p >= end)
      return HERD_EBADJSON;
    if (*p == '"') {
      *pp = p + 1;
      return 0;
    }
    if (*p == '\\') {
      if (end - p < 2)
        return HERD_EBADJSON;
      switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          p += 2;
          break;
        case 'u':
          if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) ||
              !is_hex(p[5]))
            return HERD_EBADJSON;
          p += 6;
          break;
        default:
          return HERD_EBADJSON;
      }
    } else if (*p < 0x20) {
      return HERD_EBADJSON;
    } else {
      int r = utf8_seq(&p, end);
      if (r != 0)
        return r;
    }
  }
}

static inline int scan_number(const unsigned char** pp,
                              const unsigned char* end) {
  const unsigned char* p = *pp;
  if (p < end && *p == '-')
    p++;
  if (p >= end)
    return HERD_EBADJSON;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  } else {
    return HERD_EBADJSON;
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || *p < '0' || *p > '9')
      return HERD_EBADJSON;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p >= end || *p < '0' || *p > '9')
      return HERD_EBADJSON;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  *pp = p;
  return 0;
}

static inline const unsigned char* skip_ws(const unsigned char* p,
                                           const unsigned char* end,
                                           int* newline) {
  while (p < end) {
    if (*p == ' ' || *p == '\t' || *p == '\r') {
      p++;
    } else if (*p == '\n') {
      *newline = 1;
      p++;
    } else {
      break;
    }
  }
  return p;
}

/* Scans one complete value at *pp, iteratively, with a bit stack for the
 * containers (1 = object, 0 = array). */
static int scan_value(const unsigned char** pp, const unsigned char* end,
                      int* newline) {
  uint64_t stack[JSON_MAX_DEPTH / 64];
  int depth = 0;
  const unsigned char* p = *pp;
  int r;

value:
  p = skip_ws(p, end, newline);
  if (p >= end)
    return HERD_EBADJSON;
  switch (*p) {
    case '{':
    case '[':
      if (depth == JSON_MAX_DEPTH)
        return HERD_EBADJSON;
      if (*p == '{')
        stack[depth / 64] |= (uint64_t)1 << (depth % 64);
      else
        stack[depth / 64] &= ~((uint64_t)1 << (depth % 64));
      depth++;
      p = skip_ws(p + 1, end, newline);
      if (p < end && (*p == '}' || *p == ']')) {
        int obj = (stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
        if ((*p == '}') != obj)
          return HERD_EBADJSON;
        p++;
        depth--;
        goto after;
      }
      if (stack[(depth - 1) / 64] >> ((depth - 1) % 64) & 1)
        goto key;
      goto value;
    case '"':
      if ((r = scan_string(&p, end)) != 0)
        return r;
      break;
    case 't':
      if (end - p < 4 || memcmp(p, "true", 4) != 0)
        return HERD_EBADJSON;
      p += 4;
      break;
    case 'f':
      if (end - p < 5 || memcmp(p, "false", 5) != 0)
        return HERD_EBADJSON;
      p += 5;
      break;
    case 'n':
      if (end - p < 4 || memcmp(p, "null", 4) != 0)
        return HERD_EBADJSON;
      p += 4;
      break;
    default:
      if ((r = scan_number(&p, end)) != 0)
        return r;
      break;
  }

after:
  if (depth == 0) {
    *pp = p;
    return 0;
  }
  p = skip_ws(p, end, newline);
  if (p >= end)
    return HERD_EBADJSON;
  {
    int obj = (stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
    if (*p == ',') {
      p++;
      if (obj)
        goto key;
      goto value;
    }
    if (*p != (obj ? '}' : ']'))
      return HERD_EBADJSON;
    p++;
    depth--;
    goto after;
  }

key:
  p = skip_ws(p, end, newline);
  if (p >= end || *p != '"')
    return HERD_EBADJSON;
  if ((r = scan_string(&p, end)) != 0)
    return r;
  p = skip_ws(p, end, newline);
  if (p >= end || *p != ':')
    return HERD_EBADJSON;
  p++;
  goto value;
}

/* Walks the members of a top-level object, calling `member` for each one
 * with the raw key (without quotes) and the raw value. Returns what scanning
 * returns, or 1 when `member` asked to stop, or 2 when the text is valid but
 * not an object. */
typedef int (*member_fn)(void* arg, const char* key, size_t key_len,
                         const char* value, size_t value_len);

static int walk(const char* json, size_t len, int* newline, member_fn member,
                void* arg) {
  const unsigned char* p = (const unsigned char*)json;
  const unsigned char* end = p + len;
  int r;

  p = skip_ws(p, end, newline);
  if (p < end && *p == '{') {
    p = skip_ws(p + 1, end, newline);
    if (p < end && *p == '}') {
      p++;
    } else {
      for (;;) {
        const unsigned char *k, *v;
        if (p >= end || *p != '"')
          return HERD_EBADJSON;
        k = p;
        if ((r = scan_string(&p, end)) != 0)
          return r;
        const unsigned char* kend = p;
        p = skip_ws(p, end, newline);
        if (p >= end || *p != ':')
          return HERD_EBADJSON;
        p = skip_ws(p + 1, end, newline);
        v = p;
        if ((r = scan_value(&p, end, newline)) != 0)
          return r;
        if (member != NULL &&
            member(arg, (const char*)k + 1, (size_t)(kend - k - 2),
                   (const char*)v, (size_t)(p - v)) != 0)
          return 1;
        p = skip_ws(p, end, newline);
        if (p < end && *p == ',') {
          p = skip_ws(p + 1, end, newline);
          continue;
        }
        if (p < end && *p == '}') {
          p++;
          break;
        }
        return HERD_EBADJSON;
      }
    }
    r = 0;
  } else {
    if ((r = scan_value(&p, end, newline)) != 0)
      return r;
    r = 2;
  }
  p = skip_ws(p, end, newline);
  if (p != end)
    return HERD_EBADJSON;
  return r;
}

/* The channel's hot path: one pass over a message, validating it and noting
 * its top-level "cmd". Members whose value is a string, number or literal
 * (most of them) are handled here without entering scan_value(). */
int herd__json_scan(const char* json, size_t len, herd__json_info_t* info) {
  const unsigned char* p = (const unsigned char*)json;
  const unsigned char* end = p + len;
  int r;

  info->cmd = NULL;
  info->cmd_len = 0;
  info->newline = 0;
  p = skip_ws(p, end, &info->newline);
  if (p >= end || *p != '{') {
    int nl = 0;
    r = walk(json, len, &nl, NULL, NULL);
    info->newline = nl;
    return r < 0 ? r : 0;
  }
  p = skip_ws(p + 1, end, &info->newline);
  if (p < end && *p == '}') {
    p++;
  } else {
    for (;;) {
      const unsigned char *k, *v;
      size_t klen;
      if (p >= end || *p != '"')
        return HERD_EBADJSON;
      k = p;
      if ((r = scan_string(&p, end)) != 0)
        return r;
      klen = (size_t)(p - k) - 2;
      if (p < end && *p == ':') {
        p++;
      } else {
        p = skip_ws(p, end, &info->newline);
        if (p >= end || *p != ':')
          return HERD_EBADJSON;
        p++;
      }
      if (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p = skip_ws(p, end, &info->newline);
      v = p;
      if (p >= end)
        return HERD_EBADJSON;
      if (*p == '"')
        r = scan_string(&p, end);
      else if (*p == '-' || (*p >= '0' && *p <= '9'))
        r = scan_number(&p, end);
      else
        r = scan_value(&p, end, &info->newline);
      if (r != 0)
        return r;
      if (klen == 3 && k[1] == 'c' && k[2] == 'm' && k[3] == 'd') {
        if (*v == '"') {
          info->cmd = (const char*)v + 1;
          info->cmd_len = (size_t)(p - v) - 2;
        } else {
          info->cmd = NULL;
          info->cmd_len = 0;
        }
      }
      if (p < end && *p == ',') {
        p++;
        if (p < end && *p != '"')
          p = skip_ws(p, end, &info->newline);
        continue;
      }
      p = skip_ws(p, end, &info->newline);
      if (p < end && *p == ',') {
        p = skip_ws(p + 1, end, &info->newline);
        continue;
      }
      if (p < end && *p == '}') {
        p++;
        break;
      }
      return HERD_EBADJSON;
    }
  }
  p = skip_ws(p, end, &info->newline);
  return p == end ? 0 : HERD_EBADJSON;
}

int herd__json_is_internal(const herd__json_info_t* info) {
  return info->cmd != NULL && info->cmd_len > 5 &&
         memcmp(info->cmd, "NODE_", 5) == 0;
}

int herd_json_validate(const char* json, size_t len) {
  int newline = 0;
  int r = walk(json, len, &newline, NULL, NULL);
  return r < 0 ? r : 0;
}

typedef struct {
  const char* key;
  size_t key_len;
  const char* value;
  size_t value_len;
} get_arg_t;

static int get_member(void* arg, const char* key, size_t key_len,
                      const char* value, size_t value_len) {
  get_arg_t* g = arg;
  /* JSON.parse keeps the last of duplicate keys, so keep looking. */
  if (key_len == g->key_len && memcmp(key, g->key, key_len) == 0) {
    g->value = value;
    g->value_len = value_len;
  }
  return 0;
}

int herd_json_get(const char* json, size_t len, const char* key,
                  const char** value, size_t* value_len) {
  get_arg_t g = {key, strlen(key), NULL, 0};
  int newline = 0;
  int r = walk(json, len, &newline, get_member, &g);
  if (r < 0)
    return r;
  if (g.value == NULL)
    return UV_ENOENT;
  *value = g.value;
  *value_len = g.value_len;
  return 0;
}

static unsigned hex4(const char* p) {
  return (unsigned)(hex_val((unsigned char)p[0]) << 12 |
                    hex_val((unsigned char)p[1]) << 8 |
                    hex_val((unsigned char)p[2]) << 4 |
                    hex_val((unsigned char)p[3]));
}

int herd_json_get_string(const char* json, size_t len, const char* key,
                         char* out, size_t cap) {
  const char* v;
  size_t vlen, n = 0;
  int r = herd_json_get(json, len, key, &v, &vlen);
  if (r != 0)
    return r;
  if (v[0] != '"')
    return UV_EINVAL;
  /* The value was validated, so escapes are well-formed here. */
  for (size_t i = 1; i + 1 < vlen;) {
    char tmp[4];
    size_t tn;
    if (v[i] != '\\') {
      tmp[0] = v[i++];
      tn = 1;
    } else {
      char e = v[i + 1];
      i += 2;
      switch (e) {
        case 'b':
          tmp[0] = '\b';
          tn = 1;
          break;
        case 'f':
          tmp[0] = '\f';
          tn = 1;
          break;
        case 'n':
          tmp[0] = '\n';
          tn = 1;
          break;
        case 'r':
          tmp[0] = '\r';
          tn = 1;
          break;
        case 't':
          tmp[0] = '\t';
          tn = 1;
          break;
        case 'u': {
          unsigned cp = hex4(v + i);
          i += 4;
          if (cp >= 0xd800 && cp <= 0xdbff && i + 6 < vlen && v[i] == '\\' &&
              v[i + 1] == 'u') {
            unsigned lo = hex4(v + i + 2);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
              i += 6;
            }
          }
          /* A lone surrogate has no UTF-8 form; JSON.parse keeps it, C
           * strings get U+FFFD instead. */
          if (cp >= 0xd800 && cp <= 0xdfff)
            cp = 0xfffd;
          tn = herd__utf8_put(tmp, cp);
          break;
        }
        default:
          tmp[0] = e;
          tn = 1;
          break;
      }
    }
    if (n + tn >= cap)
      return UV_ENOBUFS;
    memcpy(out + n, tmp, tn);
    n += tn;
  }
  if (n >= cap)
    return UV_ENOBUFS;
  out[n] = '\0';
  return (int)n;
}

int herd_json_get_int(const char* json, size_t len, const char* key,
                      int64_t* out) {
  const char* v;
  size_t vlen, i = 0;
  int neg = 0;
  uint64_t acc = 0;
  int r = herd_json_get(json, len, key, &v, &vlen);
  if (r != 0)
    return r;
  if (v[0] == '-') {
    neg = 1;
    i = 1;
  }
  if (i >= vlen)
    return UV_EINVAL;
  for (; i < vlen; i++) {
    if (v[i] < '0' || v[i] > '9')
      return UV_EINVAL;
    if (acc > (UINT64_MAX - 9) / 10)
      return UV_EINVAL;
    acc = acc * 10 + (uint64_t)(v[i] - '0');
  }
  if (neg ? acc > (uint64_t)INT64_MAX + 1 : acc > (uint64_t)INT64_MAX)
    return UV_EINVAL;
  *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
  return 0;
}

size_t herd_json_quote(char* out, size_t cap, const char* s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
#define PUT(c)          \
  do {                  \
    if (n + 1 < cap)    \
      out[n] = (char)c; \
    n++;                \
  } while (0)
  PUT('"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      PUT('\\');
      PUT(c);
    } else if (c < 0x20) {
      PUT('\\');
      switch (c) {
        case '\b':
          PUT('b');
          break;
        case '\f':
          PUT('f');
          break;
        case '\n':
          PUT('n');
          break;
        case '\r':
          PUT('r');
          break;
        case '\t':
          PUT('t');
          break;
        default:
          PUT('u');
          PUT('0');
          PUT('0');
          PUT(hex[c >> 4]);
          PUT(hex[c & 15]);
          break;
      }
    } else {
      PUT(c);
    }
  }
  PUT('"');
#undef PUT
  if (cap > 0)
    out[n < cap ? n : cap - 1] = '\0';
  return n;
}
