/* Every test and helper, gathered from one list file per module. */
#ifndef HERD_TEST_LIST_H
#define HERD_TEST_LIST_H

#include "list-core.h"
#include "list-process.h"
#include "list-ipc.h"
#include "list-cluster.h"
#include "list-http.h"
#include "list-cli.h"
#include "list-value.h"
#include "list-alloc.h"
#include "list-advanced.h"
#include "list-listen.h"
#include "list-systemd.h"
#include "list-log.h"
#include "list-run.h"
#include "list-supervisor.h"

/* Tests of optional companions, built when their library is found. */
#ifdef HERD_TEST_JANSSON
#include "list-jansson.h"
#else
#define HERD_TESTS_JANSSON(TEST, HELPER)
#endif
#ifdef HERD_TEST_ZLIB
#include "list-threadpool.h"
#else
#define HERD_TESTS_THREADPOOL(TEST, HELPER)
#endif

#define HERD_ALL_TESTS(TEST, HELPER)  \
  HERD_TESTS_CORE(TEST, HELPER)       \
  HERD_TESTS_PROCESS(TEST, HELPER)    \
  HERD_TESTS_IPC(TEST, HELPER)        \
  HERD_TESTS_CLUSTER(TEST, HELPER)    \
  HERD_TESTS_HTTP(TEST, HELPER)       \
  HERD_TESTS_CLI(TEST, HELPER)        \
  HERD_TESTS_JANSSON(TEST, HELPER)    \
  HERD_TESTS_THREADPOOL(TEST, HELPER) \
  HERD_TESTS_VALUE(TEST, HELPER)      \
  HERD_TESTS_ALLOC(TEST, HELPER)      \
  HERD_TESTS_ADVANCED(TEST, HELPER)   \
  HERD_TESTS_LISTEN(TEST, HELPER)     \
  HERD_TESTS_SYSTEMD(TEST, HELPER)    \
  HERD_TESTS_LOG(TEST, HELPER)        \
  HERD_TESTS_RUN(TEST, HELPER)        \
  HERD_TESTS_SUPERVISOR(TEST, HELPER)

#endif
