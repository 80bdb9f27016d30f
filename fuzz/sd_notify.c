/* Feeds arbitrary bytes to the sd_notify parser, as a worker (or anything
 * that can reach its abstract notify socket) may send them, and checks
 * what it reports: every pointer inside the message, every field flagged
 * only when its assignment was well-formed. */
#include "herd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  herd_sd_notify_msg_t m;
  const char* text = (const char*)data;
  /* One trailing NUL does not count. */
  size_t len = (size > 0 && text[size - 1] == '\0') ? size - 1 : size;
  int refuse =
      len == 0 || len > HERD_SD_MESSAGE_MAX || memchr(text, '\0', len) != NULL;
  if (herd_sd_notify_parse(text, size, &m) != 0) {
    /* Refused whole: empty, too long, or a NUL inside. */
    if (!refuse)
      abort();
    return 0;
  }
  if (refuse)
    abort();
  if (m.text != text || m.len != len)
    abort();
  if (m.fields & HERD_SD_STATUS) {
    if (m.status < text || m.status + m.status_len > text + m.len)
      abort();
  } else if (m.status != NULL) {
    abort();
  }
  if ((m.fields & HERD_SD_MAINPID) ? m.main_pid <= 0 : m.main_pid != 0)
    abort();
  if (m.pid != 0 || m.errno_value < 0)
    abort();
  return 0;
}
