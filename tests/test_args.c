/* Command-line number parsing and list building shared by ppxd and ppxctl. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "args.h"

Test(args, whole_non_negative_numbers_only)
{
    uint64_t v = 7;
    cr_assert_eq(args_u64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(args_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    static const char *bad[] = {"", "-1", " 5", "+5", "5 ", "5x", "1e3", "0x10", "18446744073709551616", NULL};
    for (int i = 0; bad[i]; i++) {
        v = 42;
        cr_assert_eq(args_u64(bad[i], &v), -1, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 42, "'%s' changed the output", bad[i]);
    }
    cr_assert_eq(args_u64(NULL, &v), -1);
}

Test(args, range_is_inclusive)
{
    uint64_t v = 0;
    cr_assert_eq(args_u64_range("1", 1, 10, &v), 0);
    cr_assert_eq(args_u64_range("10", 1, 10, &v), 0);
    cr_assert_eq(v, 10);
    cr_assert_eq(args_u64_range("0", 1, 10, &v), -1);
    cr_assert_eq(args_u64_range("11", 1, 10, &v), -1);
    cr_assert_eq(v, 10);
}

Test(args, push_appends_borrowed_strings_in_order)
{
    const char **list = NULL;
    size_t n = 0;
    static const char *items[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) cr_assert_eq(args_push(&list, &n, items[i]), 0);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) cr_assert_eq(list[i], items[i]);
    free(list);
}
