/* The values of test/fixtures/value-cases.js, built in C (test-value.c), for
 * the tests that send them over channels. */
#ifndef HERD_TEST_VALUE_CASES_H
#define HERD_TEST_VALUE_CASES_H

#include "herd.h"

/* How many cases there are, the name of case i, and case i made in `heap`
 * (NULL when a constructor failed: allocation-failure runs). */
int test_value_case_count(void);
const char* test_value_case_name(int i);
herd_value_t* test_value_case_build(herd_value_heap_t* heap, int i);

#endif
