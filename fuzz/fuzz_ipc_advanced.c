/* The stateful channel game of fuzz_ipc_handles.c in Node's advanced
 * serialization: the peer writes frames, herd's end sends values too. */
#define FUZZ_ADVANCED 1
#include "fuzz_ipc_handles.c"
