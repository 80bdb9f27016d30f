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

/* alloc_sweep() for an operation that can run only once per process (the
 * worker side of cluster keeps per-process state): each run is a fork()ed
 * copy of the caller, which checks in itself that herd holds no memory and
 * no fd was leaked, while the caller checks that no child is left. `run`
 * must end with its loop closed. Returns as alloc_sweep(). */
long alloc_sweep_forked(const char* name, void (*run)(void* arg), void* arg);

/* During a run: whether the injected failure has happened yet. */
int alloc_failed(void);

/* Frees memory herd handed over (a buffer of herd_value_to_json(), ...):
 * it came from the counting allocator and goes back to it. */
void alloc_free(void* p);

/* herd allocations currently live (made and not yet freed) since the
 * counting allocator was installed. */
long alloc_live(void);

#endif /* HERD_TEST_ALLOC_H */
