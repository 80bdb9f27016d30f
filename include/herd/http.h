/* A small HTTP/1.1 server on llhttp. Included by <herd.h>. */
#ifndef HERD_HTTP_H
#define HERD_HTTP_H
#endif /* HERD_HTTP_H */
