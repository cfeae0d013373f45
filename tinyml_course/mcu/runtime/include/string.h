/*
 * string.h - the few C library functions the virtual board provides (mini_libc.c).
 * There is no full C library on the board: no printf, no malloc.
 */
#ifndef TINYML_STRING_H
#define TINYML_STRING_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int value, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#ifndef TINYML_LIBC_IMPL
/* Let the compiler inline small fixed-size copies (a call otherwise). */
#define memcpy(d, s, n) __builtin_memcpy((d), (s), (n))
#define memmove(d, s, n) __builtin_memmove((d), (s), (n))
#define memset(d, v, n) __builtin_memset((d), (v), (n))
#endif

#ifdef __cplusplus
}
#endif

#endif /* TINYML_STRING_H */
