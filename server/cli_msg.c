/* cli_msg.c — complaints about a command line, on stderr or captured for
 * `ppxd daemon` (see cli.h).  Apart from main.c so that every command's
 * parser (mine.c, gold_cmd.c, ...) can use them and still link into the
 * tests without main.o. */
#include "cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Where complaints go while a job's command is parsed (cli_capture). */
static _Thread_local char *capture_buf;
static _Thread_local size_t capture_len;

void cli_capture(char *buf, size_t len)
{
    capture_buf = len ? buf : NULL;
    capture_len = len;
    if (capture_buf) capture_buf[0] = 0;
}

int cli_capturing(void) { return capture_buf != NULL; }

void cli_complain(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (capture_buf) {
        /* The first complaint is the one that matters; later ones add context. */
        size_t used = strlen(capture_buf);
        if (used && used + 2 < capture_len) {
            memcpy(capture_buf + used, "; ", 3);
            used += 2;
        }
        if (used < capture_len) vsnprintf(capture_buf + used, capture_len - used, fmt, ap);
    } else {
        fputs("ppxd: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

int cli_unknown_option(int argc, char **argv)
{
    const char *w = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    if (optopt && optopt < 256 && (w[0] != '-' || w[1] == '-'))
        cli_complain("option -%c: unknown, or its value is missing", optopt);
    else
        cli_complain("%s: unknown option, or its value is missing", w);
    return 2;
}

void cli_getopt_reset(const char *optstring)
{
    /* optind = 0 makes GNU getopt re-read its optstring (its ordering mode,
     * e.g. a leading '-') instead of keeping the last parser's. */
    char prog[] = "ppxd", *argv[] = {prog, NULL};
    optind = 0;
    opterr = 0;
    getopt(1, argv, optstring);
}

int cli_die(const char *msg, const char *detail)
{
    cli_complain("%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}
