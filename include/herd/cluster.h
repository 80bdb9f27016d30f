/* cluster for C. Included by <herd.h>; do not include directly. */
#ifndef HERD_CLUSTER_H
#define HERD_CLUSTER_H
#endif /* HERD_CLUSTER_H */
