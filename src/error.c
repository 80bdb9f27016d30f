#include "herd.h"

const char* herd_strerror(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case HERD_##name:          \
    return msg;
    HERD_ERRNO_MAP(XX)
#undef XX
    default:
      return uv_strerror(err);
  }
}

const char* herd_err_name(int err) {
  switch (err) {
#define XX(name, value, msg) \
  case HERD_##name:          \
    return "HERD_" #name;
    HERD_ERRNO_MAP(XX)
#undef XX
    default:
      return uv_err_name(err);
  }
}
