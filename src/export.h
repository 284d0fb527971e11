/* export.h — named values of traces to NumPy .npy and CSV, and .npy reading.
 *
 * A table is n_rows x n_cols doubles, row-major, owned by the caller.
 * Columns come from the specs of select.h (names, full addresses, address
 * patterns, @result), expanded against the first row's trace: a value of m
 * elements gives m columns (label, or label[0] .. label[m-1] for m > 1); of
 * several entries with one name, the last counts.
 */
#ifndef PPX_EXPORT_H
#define PPX_EXPORT_H

#include <stddef.h>
#include "trace.h"

/* Write a float64 C-order .npy file of shape (rows, cols).  0 or -1 with a
 * reason in err. */
int npy_write(const char *path, const double *data, size_t rows, size_t cols,
              char *err, size_t err_len);
/* Read a .npy file of float64 or float32 (little-endian, C order), 1-D or 2-D;
 * a 1-D array of n reads as n x 1.  *data is malloc'd (caller frees).  0 or -1
 * with a reason (bad magic, unsupported dtype, Fortran order, truncated). */
int npy_read(const char *path, double **data, size_t *rows, size_t *cols,
             char *err, size_t err_len);

/* CSV with a header line of column names; numbers printed with %.17g. */
int csv_write(const char *path, const char *const *col_names, const double *data,
              size_t rows, size_t cols, char *err, size_t err_len);

/* Collects rows of named values from traces. */
typedef struct export_table export_table;

/* names: the specs of the values to extract (select.h), in column order. */
export_table *export_table_new(const char *const *names, size_t n_names);
void export_table_destroy(export_table **x);
/* Append the row of trace t.  The first trace fixes each name's width; a trace
 * lacking a name, or with a different width, gives -1 with a reason (the row
 * is not added). */
int export_table_add(export_table *x, const trace *t, char *err, size_t err_len);
size_t export_table_rows(const export_table *x);
/* 0 until the first row has fixed the widths. */
size_t export_table_cols(const export_table *x);
const double *export_table_data(const export_table *x);
/* Column j's name ("mu", or "theta[1]"); NULL when j >= cols. */
const char *export_table_col_name(const export_table *x, size_t j);
int export_table_write_npy(const export_table *x, const char *path, char *err, size_t err_len);
int export_table_write_csv(const export_table *x, const char *path, char *err, size_t err_len);

#endif
