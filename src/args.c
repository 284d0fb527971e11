/* args.c — see args.h. */
#include "args.h"

#include <errno.h>
#include <stdlib.h>

int args_u64(const char *s, uint64_t *out)
{
    /* strtoull alone accepts leading spaces and a minus sign (wrapping
     * around): insist on a digit first. */
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int args_u64_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v;
    if (args_u64(s, &v) < 0 || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int args_push(const char ***list, size_t *n, const char *s)
{
    const char **p = realloc(*list, (*n + 1) * sizeof *p);
    if (!p) return -1;
    p[(*n)++] = s;
    *list = p;
    return 0;
}
