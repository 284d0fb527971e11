/* trace_store.c — the .ppxt trace file: header, records, payloads, CRC-32C.
 *
 * File layout: see trace_store.h (32-byte header, then records of
 * [payload length u32][CRC-32C of the payload u32][payload]).
 *
 * Payload format, version 1.  Every integer is little-endian and written byte
 * by byte (never a struct memcpy), so the file is the same on every host; a
 * double is its IEEE-754 binary64 bit pattern as a u64 (NaN payloads and -0
 * survive).  Notation: u8/u32/u64 unsigned, i32 two's complement, f64 double.
 *
 *   trace:
 *     u64    id
 *     f64    log_prior
 *     f64    log_likelihood
 *     f64    log_proposal
 *     f64    log_weight
 *     array  result
 *     u32    n_entries
 *     entry  [n_entries]
 *   entry:
 *     u8     kind             1 Sample, 2 Observe, 3 Tag
 *     u8     dist             dist_kind, 0..11
 *     i32    control
 *     i32    observed      (TRACE_LATENT 0, TRACE_CONDITIONED 1, TRACE_DRAWN 2)
 *     u32    instance         the n of the address suffix
 *     u64    k                Categorical categories
 *     f64    log_prob
 *     string address          with the __Kind__n suffix
 *     string base_address
 *     string name
 *     array  param[0]
 *     array  param[1]
 *     array  value
 *   string: u32 byte length n, then n bytes (no terminating NUL; a NUL
 *           inside is invalid)
 *   array:  u32 ndim, i32 shape[ndim], u32 len, f64 data[len]
 *           (scalar: ndim 0, len 1; absent: len 0)
 *
 * A payload must be consumed exactly: trailing bytes are an error.  The
 * reader rebuilds each entry with trace_append() (so the trace's address
 * counters are right for further appends); normally that recomputes the
 * stored address and instance, and where it does not (an entry edited after
 * appending) the stored ones are kept, as trace_copy() keeps them.
 *
 * Damage.  Anything wrong with a record — a short head or payload, a bad
 * marker (version 2), a length outside [minimum payload, 1 GiB], a checksum
 * mismatch, a payload that does not parse — makes the reader look for the
 * next offset where a record's marker, length and checksum verify (resync:
 * candidates are only where the marker is, in version 2; every offset whose
 * length fits the file, in version 1) and go on from there, counting the
 * stretch skipped.  With nothing valid after it, the rest of the file is the
 * bad tail, looked at again by the next trace_reader_next() (a writer's batch
 * may still be in progress).  Decoded counts are checked against the bytes
 * left in the payload before anything is allocated, and the payload buffer
 * grows only as bytes actually arrive (or, when resynchronising, to at most
 * the file's size), so a corrupt length cannot make the reader allocate much
 * more than the file holds.
 *
 * Version 2 differs from version 1 only in the record marker before each
 * record's length; payloads are the same.
 */
#include "trace_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    HEADER_SIZE = 32,
    RECORD_HEAD_V1 = 8,  /* length, CRC */
    RECORD_HEAD = 12,    /* marker, length, CRC (version 2) */
    READ_BUF = 64 * 1024,
    ERR_LEN = 512,
    /* Smallest encodings, for bounds checks on decoded counts. */
    ARRAY_MIN = 4 + 4,
    STRING_MIN = 4,
    ENTRY_FIXED = 1 + 1 + 4 + 4 + 4 + 8 + 8,
    ENTRY_MIN = ENTRY_FIXED + 3 * STRING_MIN + 3 * ARRAY_MIN,
    TRACE_MIN = 8 + 4 * 8 + ARRAY_MIN + 4
};
/* Largest payload written or read: far above any real trace, small enough
 * that a corrupt length is recognised as such. */
#define RECORD_MAX ((uint64_t)1 << 30)
#define DEFAULT_BATCH ((size_t)1 << 20)
/* Version 2's record marker, bytes 9e 'P' 'X' 'R': what a reader scans for
 * to find the next record after damage.  0x9e is not ASCII, so text in
 * payloads (addresses, names) never contains the marker. */
#define RECORD_MARKER 0x5258509eu
#define SCAN_CHUNK ((size_t)64 * 1024)

static const unsigned char store_magic[8] = {'P', 'P', 'X', 'T', 'R', 'A', 'C', 'E'};

/* CRC-32C, reflected polynomial 0x82F63B78: table[i] is the CRC register after
 * shifting the byte i through it. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t trace_crc32c(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    crc = ~crc;
    while (len--)
        crc = crc32c_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- little-endian bytes ------------------------------------------------------ */

static void le32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void le64_put(unsigned char *p, uint64_t v)
{
    le32_put(p, (uint32_t)v);
    le32_put(p + 4, (uint32_t)(v >> 32));
}

static uint32_t le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64_get(const unsigned char *p)
{
    return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

/* ---- encoding ------------------------------------------------------------------- */

typedef struct encoder {
    unsigned char *p;
} encoder;

static void put_u8(encoder *e, unsigned v)
{
    *e->p++ = (unsigned char)v;
}

static void put_u32(encoder *e, uint32_t v)
{
    le32_put(e->p, v);
    e->p += 4;
}

static void put_u64(encoder *e, uint64_t v)
{
    le64_put(e->p, v);
    e->p += 8;
}

static void put_i32(encoder *e, int32_t v)
{
    put_u32(e, (uint32_t)v);
}

static void put_f64(encoder *e, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits); /* the bit pattern, not a struct copy */
    put_u64(e, bits);
}

static void put_string(encoder *e, const char *s)
{
    size_t n = strlen(s);
    put_u32(e, (uint32_t)n);
    memcpy(e->p, s, n);
    e->p += n;
}

static void put_array(encoder *e, const trace_array *a)
{
    put_u32(e, (uint32_t)a->ndim);
    for (size_t i = 0; i < a->ndim; i++)
        put_i32(e, a->shape[i]);
    put_u32(e, (uint32_t)a->len);
    for (size_t i = 0; i < a->len; i++)
        put_f64(e, a->data[i]);
}

/* Encoded sizes; -1 when a count does not fit its u32 field. */
static int array_size(const trace_array *a, uint64_t *size)
{
    if (a->ndim > UINT32_MAX || a->len > UINT32_MAX)
        return -1;
    *size += ARRAY_MIN + 4 * (uint64_t)a->ndim + 8 * (uint64_t)a->len;
    return 0;
}

static int string_size(const char *s, uint64_t *size)
{
    size_t n = strlen(s);
    if (n > UINT32_MAX)
        return -1;
    *size += STRING_MIN + (uint64_t)n;
    return 0;
}

static int payload_size(const trace *t, uint64_t *size)
{
    *size = TRACE_MIN - ARRAY_MIN;
    if (array_size(&t->result, size) < 0 || t->n_entries > UINT32_MAX)
        return -1;
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        *size += ENTRY_FIXED;
        if (string_size(e->address, size) < 0 || string_size(e->base_address, size) < 0 ||
            string_size(e->name, size) < 0 || array_size(&e->param[0], size) < 0 ||
            array_size(&e->param[1], size) < 0 || array_size(&e->value, size) < 0)
            return -1;
        /* Stop early: sizes of a huge trace could otherwise be summed long
         * after the answer is known. */
        if (*size > RECORD_MAX)
            return -1;
    }
    return *size > RECORD_MAX ? -1 : 0;
}

static void encode_trace(encoder *e, const trace *t)
{
    put_u64(e, t->id);
    put_f64(e, t->log_prior);
    put_f64(e, t->log_likelihood);
    put_f64(e, t->log_proposal);
    put_f64(e, t->log_weight);
    put_array(e, &t->result);
    put_u32(e, (uint32_t)t->n_entries);
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *en = &t->entries[i];
        put_u8(e, (unsigned)en->kind);
        put_u8(e, (unsigned)en->dist);
        put_i32(e, en->control);
        put_i32(e, en->observed);
        put_u32(e, en->instance);
        put_u64(e, (uint64_t)en->k);
        put_f64(e, en->log_prob);
        put_string(e, en->address);
        put_string(e, en->base_address);
        put_string(e, en->name);
        put_array(e, &en->param[0]);
        put_array(e, &en->param[1]);
        put_array(e, &en->value);
    }
}

/* ---- decoding ------------------------------------------------------------------- */

typedef struct decoder {
    const unsigned char *p, *end;
    int bad; /* set by the first read past the end; later reads return 0 */
} decoder;

static size_t dec_left(const decoder *d)
{
    return (size_t)(d->end - d->p);
}

static const unsigned char *dec_take(decoder *d, size_t n)
{
    if (d->bad || dec_left(d) < n) {
        d->bad = 1;
        return NULL;
    }
    const unsigned char *p = d->p;
    d->p += n;
    return p;
}

static unsigned get_u8(decoder *d)
{
    const unsigned char *p = dec_take(d, 1);
    return p ? p[0] : 0;
}

static uint32_t get_u32(decoder *d)
{
    const unsigned char *p = dec_take(d, 4);
    return p ? le32_get(p) : 0;
}

static uint64_t get_u64(decoder *d)
{
    const unsigned char *p = dec_take(d, 8);
    return p ? le64_get(p) : 0;
}

static double get_f64(decoder *d)
{
    uint64_t bits = get_u64(d);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Scratch space for one entry's strings, shapes and data, sized per payload
 * (their total never exceeds the payload's length). */
typedef struct scratch {
    char *chars;
    size_t chars_used;
    int32_t *ints;
    size_t ints_used;
    double *doubles;
    size_t doubles_used;
} scratch;

static const char *get_string(decoder *d, scratch *s)
{
    uint32_t n = get_u32(d);
    const unsigned char *p = dec_take(d, n);
    if (!p || memchr(p, '\0', n)) {
        d->bad = 1;
        return NULL;
    }
    char *out = s->chars + s->chars_used;
    memcpy(out, p, n);
    out[n] = '\0';
    s->chars_used += (size_t)n + 1;
    return out;
}

static void get_array(decoder *d, scratch *s, trace_array *a)
{
    memset(a, 0, sizeof *a);
    uint32_t ndim = get_u32(d);
    if (d->bad || ndim > dec_left(d) / 4) {
        d->bad = 1;
        return;
    }
    int32_t *shape = s->ints + s->ints_used;
    for (uint32_t i = 0; i < ndim; i++)
        shape[i] = (int32_t)get_u32(d);
    s->ints_used += ndim;
    uint32_t len = get_u32(d);
    if (d->bad || len > dec_left(d) / 8) {
        d->bad = 1;
        return;
    }
    double *data = s->doubles + s->doubles_used;
    for (uint32_t i = 0; i < len; i++)
        data[i] = get_f64(d);
    s->doubles_used += len;
    a->data = data;
    a->len = len;
    a->shape = shape;
    a->ndim = ndim;
}

enum { PARSE_OK = 0, PARSE_BAD = -1, PARSE_NOMEM = -2 };

/* The entry was written with an address other than the one trace_append
 * computes (its producer edited it after appending): keep what was written,
 * as trace_copy does.  The trace's arena is reachable only through
 * trace_array_copy, so the string goes in as the bytes of a double array
 * (reading an object's bytes through a char pointer is always allowed). */
static int keep_address(trace *t, trace_entry *e, const char *address, uint32_t instance)
{
    size_t n = strlen(address) + 1, nd = (n + sizeof(double) - 1) / sizeof(double);
    double *tmp = calloc(nd, sizeof *tmp);
    if (!tmp)
        return -1;
    memcpy(tmp, address, n);
    trace_array copy;
    int rc = trace_array_copy(t, &copy, tmp, nd, NULL, 0);
    free(tmp);
    if (rc < 0)
        return -1;
    e->address = (const char *)copy.data;
    e->instance = instance;
    return 0;
}

static int parse_payload(const unsigned char *p, size_t n, scratch *s, trace *t)
{
    decoder d = {p, p + n, 0};
    t->id = get_u64(&d);
    t->log_prior = get_f64(&d);
    t->log_likelihood = get_f64(&d);
    t->log_proposal = get_f64(&d);
    t->log_weight = get_f64(&d);
    trace_array result;
    s->chars_used = s->ints_used = s->doubles_used = 0;
    get_array(&d, s, &result);
    if (d.bad)
        return PARSE_BAD;
    if (trace_array_copy(t, &t->result, result.data, result.len, result.shape, result.ndim) < 0)
        return PARSE_NOMEM;
    uint32_t n_entries = get_u32(&d);
    if (d.bad || n_entries > dec_left(&d) / ENTRY_MIN)
        return PARSE_BAD;
    for (uint32_t i = 0; i < n_entries; i++) {
        trace_entry e;
        memset(&e, 0, sizeof e);
        s->chars_used = s->ints_used = s->doubles_used = 0;
        unsigned kind = get_u8(&d);
        unsigned dist = get_u8(&d);
        e.control = (int32_t)get_u32(&d);
        e.observed = (int32_t)get_u32(&d);
        uint32_t instance = get_u32(&d);
        uint64_t k = get_u64(&d);
        e.log_prob = get_f64(&d);
        const char *address = get_string(&d, s);
        e.base_address = get_string(&d, s);
        e.name = get_string(&d, s);
        get_array(&d, s, &e.param[0]);
        get_array(&d, s, &e.param[1]);
        get_array(&d, s, &e.value);
        if (d.bad || kind < TRACE_SAMPLE || kind > TRACE_TAG || dist >= DIST_KIND_COUNT ||
            k > SIZE_MAX)
            return PARSE_BAD;
        e.kind = (trace_kind)kind;
        e.dist = (dist_kind)dist;
        e.k = (size_t)k;
        trace_entry *stored = trace_append(t, &e);
        if (!stored)
            return PARSE_NOMEM;
        if ((stored->instance != instance || strcmp(stored->address, address) != 0) &&
            keep_address(t, stored, address, instance) < 0)
            return PARSE_NOMEM;
    }
    return dec_left(&d) == 0 ? PARSE_OK : PARSE_BAD;
}

/* ---- I/O helpers ------------------------------------------------------------------ */

/* write(2) until done: retries EINTR and continues after short writes. */
static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Make a new file's directory entry durable too (best effort: some file
 * systems refuse fsync on directories, which loses nothing we can fix). */
static void fsync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > SIZE_MAX / elem)
        return -1;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* ---- reader ----------------------------------------------------------------------- */

struct trace_reader {
    int fd;
    uint32_t version;   /* the file's format version (1 or 2) */
    size_t head;        /* record head bytes: RECORD_HEAD_V1 or RECORD_HEAD */
    unsigned char *buf; /* READ_BUF bytes read ahead */
    size_t buf_pos, buf_len;
    uint64_t valid_end; /* file offset just after the last valid record */
    int reread;         /* the valid records ended in damage: look again from valid_end */
    unsigned char *payload;
    size_t payload_cap;
    scratch sc;
    size_t chars_cap, ints_cap, doubles_cap;
    trace_reader_stats stats;
};

/* Read up to n bytes; *got < n means end of file. */
static int reader_read(trace_reader *r, unsigned char *dst, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t left = n - *got;
        if (r->buf_pos < r->buf_len) {
            size_t k = r->buf_len - r->buf_pos;
            if (k > left)
                k = left;
            memcpy(dst + *got, r->buf + r->buf_pos, k);
            r->buf_pos += k;
            *got += k;
            continue;
        }
        /* Large reads bypass the buffer instead of copying through it. */
        int direct = left >= READ_BUF;
        size_t want = direct ? (left > ((size_t)1 << 30) ? (size_t)1 << 30 : left) : READ_BUF;
        ssize_t k = read(r->fd, direct ? dst + *got : r->buf, want);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0)
            break;
        if (direct) {
            *got += (size_t)k;
        } else {
            r->buf_pos = 0;
            r->buf_len = (size_t)k;
        }
    }
    return 0;
}

/* Whether a whole, checksummed record starts at file offset off (file of
 * fsize bytes): 1 yes, 0 no, -1 I/O error or out of memory.  Reads with
 * pread, so the stream position is untouched; uses r->payload. */
static int record_at(trace_reader *r, uint64_t off, uint64_t fsize)
{
    unsigned char h[RECORD_HEAD];
    if (off + r->head > fsize)
        return 0;
    ssize_t k = pread(r->fd, h, r->head, (off_t)off);
    if (k < 0)
        return -1;
    if ((size_t)k < r->head)
        return 0;
    const unsigned char *lc = h + (r->head - RECORD_HEAD_V1);
    if (r->version >= 2 && le32_get(h) != RECORD_MARKER)
        return 0;
    uint32_t len = le32_get(lc), crc = le32_get(lc + 4);
    if (len < TRACE_MIN || len > RECORD_MAX || off + r->head + len > fsize)
        return 0;
    if (grow((void **)&r->payload, &r->payload_cap, len, 1) < 0)
        return -1;
    size_t got = 0;
    while (got < len) {
        k = pread(r->fd, r->payload + got, len - got, (off_t)(off + r->head + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            return 0;
        got += (size_t)k;
    }
    return trace_crc32c(0, r->payload, len) == crc;
}

/* The first offset >= from where a valid record starts: 1 with *found, 0
 * when there is none before the end of the file, -1 on an I/O error.
 * Version 2 looks only where the record marker is; version 1 has no marker
 * and tries every offset (length in range, then the checksum). */
static int resync(trace_reader *r, uint64_t from, uint64_t *found)
{
    struct stat st;
    if (fstat(r->fd, &st) < 0)
        return -1;
    uint64_t fsize = (uint64_t)st.st_size;
    unsigned char *chunk = malloc(SCAN_CHUNK);
    if (!chunk)
        return -1;
    int rc = 0;
    for (uint64_t pos = from; rc == 0 && pos + r->head <= fsize;) {
        size_t want = fsize - pos < SCAN_CHUNK ? (size_t)(fsize - pos) : SCAN_CHUNK;
        ssize_t k = pread(r->fd, chunk, want, (off_t)pos);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = k < 0 ? -1 : 0;
            break;
        }
        size_t n = (size_t)k, i = 0;
        /* Candidates whose 4-byte marker lies wholly in this chunk. */
        for (; rc == 0 && i + 4 <= n; i++) {
            if (r->version >= 2) {
                const unsigned char *m = memchr(chunk + i, 0x9e, n - 3 - i);
                if (!m)
                    break;
                i = (size_t)(m - chunk);
                if (le32_get(m) != RECORD_MARKER)
                    continue;
            }
            if (i + r->head <= n) {
                /* Cheap checks on the bytes at hand before any read. */
                uint32_t len = le32_get(chunk + i + (r->head - RECORD_HEAD_V1));
                if (len < TRACE_MIN || len > RECORD_MAX || pos + i + r->head + len > fsize)
                    continue;
            }
            int v = record_at(r, pos + i, fsize);
            if (v < 0)
                rc = -1;
            else if (v) {
                *found = pos + i;
                rc = 1;
            }
        }
        if (rc)
            break;
        /* The last 3 bytes may start a marker that straddles the chunks. */
        pos += n > 3 ? n - 3 : n;
    }
    free(chunk);
    return rc;
}

/* The valid records end in damage at valid_end with nothing valid after it:
 * report the rest of the file as the bad tail and return 0 for
 * trace_reader_next.  The next call looks again (a writer may be appending). */
static int reader_tail(trace_reader *r)
{
    struct stat st;
    r->stats.truncated = 1;
    r->stats.bad_tail_bytes = 0;
    if (fstat(r->fd, &st) == 0 && (uint64_t)st.st_size > r->valid_end)
        r->stats.bad_tail_bytes = (uint64_t)st.st_size - r->valid_end;
    r->reread = 1;
    return 0;
}

trace_reader *trace_reader_open(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    trace_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->buf = malloc(READ_BUF))) {
        set_err(err, err_len, "%s: out of memory", path);
        free(r);
        close(fd);
        return NULL;
    }
    r->fd = fd;
    unsigned char h[HEADER_SIZE];
    size_t got;
    if (reader_read(r, h, sizeof h, &got) < 0) {
        set_err(err, err_len, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (got >= sizeof store_magic && memcmp(h, store_magic, sizeof store_magic) != 0) {
        set_err(err, err_len, "%s: not a ppxd trace file (bad magic)", path);
        goto fail;
    }
    if (got < sizeof h) {
        set_err(err, err_len, "%s: truncated header (%zu of %d bytes)", path, got, HEADER_SIZE);
        goto fail;
    }
    uint32_t version = le32_get(h + 8), header_size = le32_get(h + 12);
    if (version < 1 || version > TRACE_STORE_VERSION) {
        set_err(err, err_len, "%s: format version %" PRIu32 " not supported (this build reads 1 to %d)",
                path, version, TRACE_STORE_VERSION);
        goto fail;
    }
    if (header_size != HEADER_SIZE) {
        set_err(err, err_len, "%s: bad header size %" PRIu32 " (version %" PRIu32 " has %d)", path,
                header_size, version, HEADER_SIZE);
        goto fail;
    }
    r->version = version;
    r->head = version >= 2 ? RECORD_HEAD : RECORD_HEAD_V1;
    r->valid_end = HEADER_SIZE;
    return r;
fail:
    trace_reader_close(&r);
    return NULL;
}

/* One record at the stream position (== valid_end) into t: 1 got one, 0
 * clean end of file, 2 damage (short, bad marker, length, checksum or
 * payload), -1 I/O error or out of memory. */
static int read_record(trace_reader *r, trace *t)
{
    unsigned char head[RECORD_HEAD];
    size_t got;
    if (reader_read(r, head, r->head, &got) < 0)
        return -1;
    if (got == 0)
        return 0;
    if (got < r->head)
        return 2;
    const unsigned char *lc = head + (r->head - RECORD_HEAD_V1);
    if (r->version >= 2 && le32_get(head) != RECORD_MARKER)
        return 2;
    uint32_t len = le32_get(lc), crc = le32_get(lc + 4);
    if (len < TRACE_MIN || len > RECORD_MAX)
        return 2;

    /* Grow the payload buffer only as bytes arrive (doubling), so a corrupt
     * length in a short file costs at most about twice the file's size. */
    size_t have = 0;
    while (have < len) {
        size_t step = have < READ_BUF ? READ_BUF : have;
        size_t target = len - have < step ? len : have + step;
        if (grow((void **)&r->payload, &r->payload_cap, target, 1) < 0)
            return -1;
        size_t n;
        if (reader_read(r, r->payload + have, target - have, &n) < 0)
            return -1;
        have += n;
        if (have < target)
            return 2;
    }
    if (trace_crc32c(0, r->payload, len) != crc)
        return 2;

    /* The strings, shapes and data of one entry together fit in its bytes. */
    if (grow((void **)&r->sc.chars, &r->chars_cap, (size_t)len + 3, 1) < 0 ||
        grow((void **)&r->sc.ints, &r->ints_cap, len / 4 + 1, sizeof(int32_t)) < 0 ||
        grow((void **)&r->sc.doubles, &r->doubles_cap, len / 8 + 1, sizeof(double)) < 0)
        return -1;
    int rc = parse_payload(r->payload, len, &r->sc, t);
    if (rc != PARSE_OK) {
        trace_reset(t);
        return rc == PARSE_NOMEM ? -1 : 2;
    }
    r->valid_end += r->head + (uint64_t)len;
    return 1;
}

static int reader_seek(trace_reader *r, uint64_t off)
{
    if (lseek(r->fd, (off_t)off, SEEK_SET) < 0)
        return -1;
    r->buf_pos = r->buf_len = 0;
    return 0;
}

int trace_reader_next(trace_reader *r, trace *t)
{
    trace_reset(t);
    if (r->reread) {
        if (reader_seek(r, r->valid_end) < 0)
            return -1;
        r->reread = 0;
    }
    for (;;) {
        int rc = read_record(r, t);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            r->stats.records++;
            r->stats.truncated = 0;
            r->stats.bad_tail_bytes = 0;
            return 1;
        }
        if (rc == 0) {
            /* Clean end; a writer may still add records, which a later call
             * reads from the current position. */
            r->stats.truncated = 0;
            r->stats.bad_tail_bytes = 0;
            return 0;
        }
        /* Damage at valid_end: skip to the next record that verifies, if any. */
        uint64_t found = 0;
        int s = resync(r, r->valid_end + 1, &found);
        if (s < 0)
            return -1;
        if (s == 0)
            return reader_tail(r);
        r->stats.damaged_regions++;
        r->stats.skipped_bytes += found - r->valid_end;
        r->valid_end = found;
        if (reader_seek(r, found) < 0)
            return -1;
    }
}

trace_reader_stats trace_reader_get_stats(const trace_reader *r)
{
    return r->stats;
}

void trace_reader_close(trace_reader **rp)
{
    if (!rp || !*rp)
        return;
    trace_reader *r = *rp;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r->payload);
    free(r->sc.chars);
    free(r->sc.ints);
    free(r->sc.doubles);
    free(r);
    *rp = NULL;
}

/* ---- writer ----------------------------------------------------------------------- */

struct trace_writer {
    int fd;
    char *path;
    uint32_t version;   /* record format written: the file's own (1 for an old file appended to) */
    size_t head;
    trace_fsync_policy policy;
    int new_file;       /* created (or emptied) by this writer: sync its directory */
    unsigned char *buf; /* records not yet written */
    size_t len, cap, batch;
    uint64_t file_end;  /* file offset after the last record written */
    uint64_t count;
    int failed;         /* an I/O error happened: the writer refuses further work */
    char err[ERR_LEN];
};

static int writer_fail(trace_writer *w, const char *what)
{
    w->failed = 1;
    snprintf(w->err, sizeof w->err, "%s %s: %s", what, w->path, strerror(errno));
    return -1;
}

/* Existing file in append mode: keep its valid records, cut off any damaged
 * tail so new records follow the last good one. */
static int writer_recover(trace_writer *w, uint64_t size, char *err, size_t err_len)
{
    trace_reader *r = trace_reader_open(w->path, err, err_len);
    if (!r)
        return -1;
    trace *t = trace_new();
    int rc = 0;
    if (!t) {
        set_err(err, err_len, "%s: out of memory", w->path);
        rc = -1;
    }
    errno = 0;
    while (rc == 0 && (rc = trace_reader_next(r, t)) == 1)
        rc = 0;
    if (rc < 0) {
        set_err(err, err_len, "cannot read %s: %s", w->path,
                errno ? strerror(errno) : "out of memory");
    } else if (r->stats.damaged_regions) {
        /* Cutting the file at its first damage would throw away the valid
         * records after it; appending after them would bury the damage. */
        set_err(err, err_len, "%s is damaged before its end (%" PRIu64 " bytes in %" PRIu64
                " place%s skipped to read its %" PRIu64 " valid records): refusing to append; "
                "write to a new file (ppxd info shows the damage)", w->path,
                r->stats.skipped_bytes, r->stats.damaged_regions,
                r->stats.damaged_regions == 1 ? "" : "s", r->stats.records);
        rc = -1;
    } else {
        w->version = r->version;
        w->head = r->head;
        w->file_end = r->valid_end;
        w->count = r->stats.records;
        if (size > w->file_end && ftruncate(w->fd, (off_t)w->file_end) < 0) {
            set_err(err, err_len, "cannot truncate the damaged tail of %s: %s", w->path,
                    strerror(errno));
            rc = -1;
        }
    }
    trace_destroy(&t);
    trace_reader_close(&r);
    return rc;
}

static int writer_start_file(trace_writer *w, char *err, size_t err_len)
{
    unsigned char h[HEADER_SIZE] = {0};
    memcpy(h, store_magic, sizeof store_magic);
    le32_put(h + 8, TRACE_STORE_VERSION);
    le32_put(h + 12, HEADER_SIZE);
    le64_put(h + 16, (uint64_t)time(NULL));
    /* h + 24: reserved, 0 */
    if (ftruncate(w->fd, 0) < 0 || write_all(w->fd, h, sizeof h) < 0) {
        set_err(err, err_len, "cannot write the header of %s: %s", w->path, strerror(errno));
        return -1;
    }
    w->file_end = HEADER_SIZE;
    w->new_file = 1;
    w->version = TRACE_STORE_VERSION;
    w->head = RECORD_HEAD;
    return 0;
}

trace_writer *trace_writer_open(const char *path, int append, size_t batch_bytes,
                                trace_fsync_policy policy, char *err, size_t err_len)
{
    trace_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        set_err(err, err_len, "%s: out of memory", path);
        free(w);
        return NULL;
    }
    w->policy = policy;
    w->batch = batch_bytes ? batch_bytes : DEFAULT_BATCH;
    /* No O_TRUNC: the file is emptied only once we hold the lock, so a second
     * writer cannot destroy the file of one already running. */
    w->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        set_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(w->fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            set_err(err, err_len, "%s is open in another trace writer", path);
        else
            set_err(err, err_len, "cannot lock %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(w->fd, &st) < 0) {
        set_err(err, err_len, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    int rc = append && st.st_size > 0 ? writer_recover(w, (uint64_t)st.st_size, err, err_len)
                                      : writer_start_file(w, err, err_len);
    if (rc < 0)
        goto fail;
    if (lseek(w->fd, (off_t)w->file_end, SEEK_SET) < 0) {
        set_err(err, err_len, "cannot seek in %s: %s", path, strerror(errno));
        goto fail;
    }
    if (policy == TRACE_FSYNC_FLUSH) {
        if (fsync(w->fd) < 0) {
            set_err(err, err_len, "cannot fsync %s: %s", path, strerror(errno));
            goto fail;
        }
        if (w->new_file)
            fsync_parent_dir(path);
    }
    return w;
fail:
    if (w->fd >= 0)
        close(w->fd);
    free(w->path);
    free(w);
    return NULL;
}

int trace_writer_append(trace_writer *w, const trace *t)
{
    if (w->failed)
        return -1;
    uint64_t psize;
    if (payload_size(t, &psize) < 0) {
        /* Not an I/O failure: the writer stays usable. */
        snprintf(w->err, sizeof w->err, "trace %" PRIu64 " is too large for a record (limit %" PRIu64
                 " bytes)", t->id, (uint64_t)RECORD_MAX);
        return -1;
    }
    size_t rec = w->head + (size_t)psize;
    if (w->len && w->len + rec > w->batch && trace_writer_flush(w) < 0)
        return -1;
    if (grow((void **)&w->buf, &w->cap, w->len + rec, 1) < 0) {
        snprintf(w->err, sizeof w->err, "out of memory buffering trace %" PRIu64, t->id);
        return -1;
    }
    unsigned char *p = w->buf + w->len;
    encoder e = {p + w->head};
    encode_trace(&e, t);
    if (w->version >= 2)
        le32_put(p, RECORD_MARKER);
    unsigned char *lc = p + (w->head - RECORD_HEAD_V1);
    le32_put(lc, (uint32_t)psize);
    le32_put(lc + 4, trace_crc32c(0, p + w->head, (size_t)psize));
    w->len += rec;
    w->count++;
    return w->len >= w->batch ? trace_writer_flush(w) : 0;
}

int trace_writer_flush(trace_writer *w)
{
    if (w->failed)
        return -1;
    if (w->len == 0)
        return 0;
    if (write_all(w->fd, w->buf, w->len) < 0) {
        int e = errno;
        /* Cut a partly written batch off, so the file still ends with a whole
         * record (best effort: if this fails too, readers stop at the
         * damage and append mode cuts it). */
        if (ftruncate(w->fd, (off_t)w->file_end) == 0)
            (void)lseek(w->fd, (off_t)w->file_end, SEEK_SET);
        errno = e;
        return writer_fail(w, "cannot write to");
    }
    w->file_end += w->len;
    w->len = 0;
    if (w->policy == TRACE_FSYNC_FLUSH && fsync(w->fd) < 0)
        return writer_fail(w, "cannot fsync");
    return 0;
}

uint64_t trace_writer_count(const trace_writer *w)
{
    return w->count;
}

int trace_writer_close(trace_writer **wp)
{
    if (!wp || !*wp)
        return 0;
    trace_writer *w = *wp;
    int rc = trace_writer_flush(w);
    if (rc == 0 && w->policy == TRACE_FSYNC_CLOSE) {
        if (fsync(w->fd) < 0)
            rc = writer_fail(w, "cannot fsync");
        else if (w->new_file)
            fsync_parent_dir(w->path);
    }
    if (close(w->fd) < 0 && rc == 0)
        rc = -1;
    free(w->buf);
    free(w->path);
    free(w);
    *wp = NULL;
    return rc;
}

const char *trace_writer_error(const trace_writer *w)
{
    return w->err;
}
