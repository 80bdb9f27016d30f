/* Allocation-failure injection, through herd_replace_allocator().
 *
 * alloc_sweep() runs one operation again and again, making its 1st, then
 * 2nd, 3rd... herd allocation fail, until a run no longer reaches the
 * failing allocation (every allocation succeeded). The operation is one
 * whole use of an API: the call, the loop run to its end, the cleanup.
 * After every run the sweep checks that herd holds no memory, that no fd
 * was leaked and that no child process is left. Inside the run, the case
 * checks the contract: a call that returns an error runs no callback and
 * its handle may be freed at once (cases malloc their handles and free them
 * right after an error, so AddressSanitizer sees any later write); a call
 * that succeeded reports any later failure through its callback.
 *
 * A new case is a function that performs the operation with those checks,
 * plus one line calling alloc_sweep(); see test-alloc.c. Only herd's own
 * allocator is failed: libuv aborts on some allocation failures of its own
 * (growing its watcher array), so failing libuv's would test libuv. */
#ifndef HERD_TEST_ALLOC_H
#define HERD_TEST_ALLOC_H

#include <stddef.h>

/* Runs `run(arg)` with the 1st, 2nd, ... herd allocation failing, then once
 * with none failing. Returns how many allocations the clean run made.
 * `name` is for failure messages. */
long alloc_sweep(const char* name, void (*run)(void* arg), void* arg);

/* During a run: whether the injected failure has happened yet. */
int alloc_failed(void);

/* herd allocations currently live (made and not yet freed) since the
 * counting allocator was installed. */
long alloc_live(void);

#endif /* HERD_TEST_ALLOC_H */
