/*
 * mini_libc.c - memcpy, memmove, memset, memcmp and strlen for the virtual board.
 * Compilers emit calls to memcpy/memset/memmove for struct copies and large array
 * initialisations even in freestanding code, so every program links these.
 * Word-at-a-time when both pointers are 4-byte aligned, byte-at-a-time otherwise.
 */
#define TINYML_LIBC_IMPL
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if ((((uintptr_t)d | (uintptr_t)s) & 3u) == 0) {
        uint32_t *dw = (uint32_t *)d;
        const uint32_t *sw = (const uint32_t *)s;
        for (; n >= 4; n -= 4) {
            *dw++ = *sw++;
        }
        d = (uint8_t *)dw;
        s = (const uint8_t *)sw;
    }
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if (d == s || n == 0) {
        return dst;
    }
    if (d < s || d >= s + n) {
        return memcpy(dst, src, n);
    }
    while (n--) { /* overlapping, destination after source: copy backwards */
        d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int value, size_t n) {
    uint8_t *d = (uint8_t *)dst;
    uint8_t v = (uint8_t)value;
    if (((uintptr_t)d & 3u) == 0) {
        uint32_t word = 0x01010101u * v;
        uint32_t *dw = (uint32_t *)d;
        for (; n >= 4; n -= 4) {
            *dw++ = word;
        }
        d = (uint8_t *)dw;
    }
    while (n--) {
        *d++ = v;
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = (const uint8_t *)a;
    const uint8_t *y = (const uint8_t *)b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return (int)x[i] - (int)y[i];
        }
    }
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}
