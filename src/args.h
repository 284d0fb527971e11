/* args.h — the small command-line parsing pieces every ppxd tool needs
 * (ppxd simulate/infer/train/serve, ppxctl).  No allocation except in
 * args_push, which grows the caller's array; strings are borrowed (argv). */
#ifndef PPX_ARGS_H
#define PPX_ARGS_H

#include <stddef.h>
#include <stdint.h>

/* A whole non-negative decimal number (digits only: no sign, no spaces, no
 * trailing text, no overflow).  0, or -1 leaving *out untouched. */
int args_u64(const char *s, uint64_t *out);
/* The same within [lo, hi]. */
int args_u64_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* Append s (borrowed) to the array *list of *n strings.  0, or -1 when out
 * of memory (the array is unchanged). */
int args_push(const char ***list, size_t *n, const char *s);
/* A simulator command template with every "{endpoint}" replaced by
 * endpoint (ppxd --sim-cmd, ppx-bridge --sim-cmd).  malloc'd (the caller
 * frees), NULL when out of memory. */
char *args_expand_endpoint(const char *tmpl, const char *endpoint);

#endif
