/* args.c — see args.h. */
#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

char *args_expand_endpoint(const char *tmpl, const char *endpoint)
{
    size_t n = strlen(tmpl) + 1, el = strlen(endpoint);
    for (const char *p = strstr(tmpl, "{endpoint}"); p; p = strstr(p + 10, "{endpoint}")) n += el;
    char *out = malloc(n), *o = out;
    if (!out) return NULL;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{endpoint}", 10) == 0) {
            memcpy(o, endpoint, el);
            o += el;
            p += 10;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}
