/*  test_cron: five-field cron expressions (cd_cron): every field kind,
    Sunday as 0 and 7, Vixie's day-of-month/day-of-week rule, month, year
    and leap-day rollovers, expressions that never match, and invalid
    expressions with the field they name. */
#include "cd_cron.h"

#include "cd_error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

//  "YYYY-MM-DD hh:mm[:ss]" (UTC) to seconds since the epoch.
static int64_t
s_t(const char *text)
{
    struct tm tm = {0};
    int sec = 0;
    int n = sscanf(text, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &sec);
    assert_true(n >= 5);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}

//  The next match of expr after `after`, as "YYYY-MM-DD hh:mm" (static).
static const char *
s_next(const char *expr, const char *after)
{
    static char buf[32];
    cd_cron_t cron;
    const char *why = NULL;
    if (cd_cron_parse(expr, &cron, &why) != 0) {
        fail_msg("'%s' should parse: %s", expr, why);
    }
    int64_t next = 0;
    int rc = cd_cron_next(&cron, s_t(after), &next);
    if (rc != 0) {
        return "never";
    }
    assert_int_equal(next % 60, 0);
    time_t t = (time_t)next;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

//  The reason expr is refused (fails if it parses).
static const char *
s_why(const char *expr)
{
    cd_cron_t cron;
    const char *why = NULL;
    if (cd_cron_parse(expr, &cron, &why) == 0) {
        fail_msg("'%s' should be refused", expr ? expr : "(null)");
    }
    assert_non_null(why);
    return why;
}

static void
test_cron_field_kinds(void **state)
{
    cd_cron_t c;
    const char *why = NULL;
    assert_int_equal(cd_cron_parse("* * * * *", &c, &why), 0);
    assert_true(c.minutes == (((uint64_t)1 << 60) - 1));
    assert_true(c.hours == ((1u << 24) - 1));
    assert_true(c.days == (((1u << 31) - 1) << 1));
    assert_true(c.months == (((1u << 12) - 1) << 1));
    assert_true(c.weekdays == 0x7f);
    assert_true(c.days_star && c.weekdays_star);

    //  number, list, range, step on *, step on a range, a/s, names
    assert_int_equal(cd_cron_parse("5,10-12,*/20,50-59/3 7 1-31/10 jan-MAR,Dec 1/2", &c, &why), 0);
    uint64_t want = (1ull << 5) | (1ull << 10) | (1ull << 11) | (1ull << 12) | (1ull << 0) |
                    (1ull << 20) | (1ull << 40) | (1ull << 50) | (1ull << 53) | (1ull << 56) |
                    (1ull << 59);
    assert_true(c.minutes == want);
    assert_true(c.hours == (1u << 7));
    assert_true(c.days == ((1u << 1) | (1u << 11) | (1u << 21) | (1u << 31)));
    assert_true(c.months == ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 12)));
    //  1/2 is 1-7/2: 1, 3, 5 and 7, which is Sunday (0).
    assert_true(c.weekdays == ((1u << 0) | (1u << 1) | (1u << 3) | (1u << 5)));
    assert_false(c.days_star || c.weekdays_star);

    //  Sunday is 0 and 7; names of weekdays; a range ending at 7.
    assert_int_equal(cd_cron_parse("0 0 * * 7", &c, &why), 0);
    assert_true(c.weekdays == 1);
    assert_int_equal(cd_cron_parse("0 0 * * 0", &c, &why), 0);
    assert_true(c.weekdays == 1);
    assert_int_equal(cd_cron_parse("0 0 * * 5-7", &c, &why), 0);
    assert_true(c.weekdays == ((1u << 5) | (1u << 6) | 1u));
    assert_int_equal(cd_cron_parse("0 0 * * Mon-fri", &c, &why), 0);
    assert_true(c.weekdays == 0x3e);
    assert_int_equal(cd_cron_parse("0 0 * * sun,SAT", &c, &why), 0);
    assert_true(c.weekdays == 0x41);
    assert_int_equal(cd_cron_parse("0 0 * * */7", &c, &why), 0); //  0 and 7: Sunday
    assert_true(c.weekdays == 1);
    //  Several spaces between fields are one separator.
    assert_int_equal(cd_cron_parse("0   0 *  * *", &c, &why), 0);
    //  A leading star decides the day rule even with a step.
    assert_int_equal(cd_cron_parse("0 0 */2 * 1", &c, &why), 0);
    assert_true(c.days_star && !c.weekdays_star);
}

static void
test_cron_next_basic(void **state)
{
    //  Strictly after: a matching minute gives the following one.
    assert_string_equal(s_next("* * * * *", "2026-05-04 10:00"), "2026-05-04 10:01");
    assert_string_equal(s_next("* * * * *", "2026-05-04 10:00:59"), "2026-05-04 10:01");
    assert_string_equal(s_next("*/15 * * * *", "2026-05-04 10:00"), "2026-05-04 10:15");
    assert_string_equal(s_next("*/15 * * * *", "2026-05-04 10:50"), "2026-05-04 11:00");
    assert_string_equal(s_next("30 9 * * *", "2026-05-04 09:30"), "2026-05-05 09:30");
    assert_string_equal(s_next("30 9 * * *", "2026-05-04 09:29:59"), "2026-05-04 09:30");
    assert_string_equal(s_next("0 9-17/4 * * *", "2026-05-04 13:00"), "2026-05-04 17:00");
    assert_string_equal(s_next("0 9-17/4 * * *", "2026-05-04 17:00"), "2026-05-05 09:00");
    assert_string_equal(s_next("5/20 * * * *", "2026-05-04 10:46"), "2026-05-04 11:05");
    //  2026-05-04 is a Monday.
    assert_string_equal(s_next("0 8 * * mon-fri", "2026-05-08 09:00"), "2026-05-11 08:00");
    assert_string_equal(s_next("0 8 * * 7", "2026-05-04 00:00"), "2026-05-10 08:00");
    assert_string_equal(s_next("0 8 * * 0", "2026-05-04 00:00"), "2026-05-10 08:00");
    assert_string_equal(s_next("0 8 * * 6", "2026-05-04 00:00"), "2026-05-09 08:00");
}

static void
test_cron_next_rollovers(void **state)
{
    //  Minute into hour into day into month into year.
    assert_string_equal(s_next("* * * * *", "2025-12-31 23:59:30"), "2026-01-01 00:00");
    assert_string_equal(s_next("0 0 1 * *", "2026-01-31 23:59"), "2026-02-01 00:00");
    assert_string_equal(s_next("59 23 31 12 *", "2026-12-31 23:59"), "2027-12-31 23:59");
    assert_string_equal(s_next("0 0 31 * *", "2026-04-01 00:00"), "2026-05-31 00:00");
    assert_string_equal(s_next("0 0 1 jan *", "2026-01-01 00:00"), "2027-01-01 00:00");
    assert_string_equal(s_next("0 0 * 2 *", "2026-02-28 00:00"), "2027-02-01 00:00");
    assert_string_equal(s_next("0 0 * 2 *", "2028-02-28 00:00"), "2028-02-29 00:00");
    //  29 February: the next leap year; 2100 is not one, so 2096 -> 2104.
    assert_string_equal(s_next("0 12 29 2 *", "2025-03-01 00:00"), "2028-02-29 12:00");
    assert_string_equal(s_next("0 12 29 2 *", "2028-02-29 12:00"), "2032-02-29 12:00");
    assert_string_equal(s_next("0 12 29 2 *", "2096-03-01 00:00"), "2104-02-29 12:00");
    assert_string_equal(s_next("0 0 29 2 *", "2000-01-01 00:00"), "2000-02-29 00:00");
    //  Never: 30 February, 31 April/June/September/November.
    assert_string_equal(s_next("0 0 30 2 *", "2026-01-01 00:00"), "never");
    assert_string_equal(s_next("0 0 31 4,6,9,11 *", "2026-01-01 00:00"), "never");
}

static void
test_cron_day_rule(void **state)
{
    //  Both restricted: the 13th OR a Friday. 2026-03-13 is a Friday;
    //  after it comes Friday the 20th, then the 27th, then 3 April, then
    //  the 13th of April (a Monday).
    assert_string_equal(s_next("0 0 13 * 5", "2026-03-13 00:00"), "2026-03-20 00:00");
    assert_string_equal(s_next("0 0 13 * 5", "2026-04-04 00:00"), "2026-04-10 00:00");
    assert_string_equal(s_next("0 0 13 * 5", "2026-04-10 00:00"), "2026-04-13 00:00");
    //  A starred field does not widen the match: */2 (odd days) AND Monday.
    //  Mondays of May 2026: 4, 11, 18, 25; the odd one is the 11th.
    assert_string_equal(s_next("0 0 */2 * 1", "2026-05-01 00:00"), "2026-05-11 00:00");
    //  Day of week * : only the day of month counts.
    assert_string_equal(s_next("0 0 15 * *", "2026-05-01 00:00"), "2026-05-15 00:00");
    //  30 February with a weekday restricted matches that weekday (OR).
    assert_string_equal(s_next("0 0 30 2 mon", "2026-01-01 00:00"), "2026-02-02 00:00");
}

static void
test_cron_invalid_expressions(void **state)
{
    assert_string_equal(s_why(NULL), "empty expression");
    assert_string_equal(s_why(""), "empty expression");
    assert_non_null(strstr(s_why("* * * *"), "5 fields"));
    assert_non_null(strstr(s_why("* * * * * *"), "5 fields"));
    assert_non_null(strstr(s_why(" * * * * *"), "leading"));
    assert_non_null(strstr(s_why("* * * * * "), "trailing"));
    assert_non_null(strstr(s_why("*\t* * * *"), "5 fields"));
    assert_non_null(strstr(s_why("@daily"), "5 fields"));
    assert_string_equal(s_why("60 * * * *"), "minute: value out of range 0-59");
    assert_string_equal(s_why("* 24 * * *"), "hour: value out of range 0-23");
    assert_string_equal(s_why("* * 0 * *"), "day of month: value out of range 1-31");
    assert_string_equal(s_why("* * 32 * *"), "day of month: value out of range 1-31");
    assert_string_equal(s_why("* * * 0 *"), "month: value out of range 1-12");
    assert_string_equal(s_why("* * * 13 *"), "month: value out of range 1-12");
    assert_string_equal(s_why("* * * * 8"), "day of week: value out of range 0-7");
    assert_string_equal(s_why("99999999999 * * * *"), "minute: value out of range 0-59");
    assert_string_equal(s_why("0-60 * * * *"), "minute: value out of range 0-59");
    assert_string_equal(s_why("5-1 * * * *"), "minute: range start is after its end");
    assert_string_equal(s_why("* * * * fri-mon"), "day of week: range start is after its end");
    assert_string_equal(s_why("*/0 * * * *"), "minute: step must be between 1 and 60");
    assert_string_equal(s_why("*/61 * * * *"), "minute: step must be between 1 and 60");
    assert_string_equal(s_why("* */25 * * *"), "hour: step must be between 1 and 24");
    assert_string_equal(s_why("1,,2 * * * *"), "minute: empty list item");
    assert_string_equal(s_why(",1 * * * *"), "minute: empty list item");
    assert_string_equal(s_why("* * * 1, *"), "month: empty list item");
    const char *syntax = "minute: expected a number, *, a range a-b or a step /n";
    assert_string_equal(s_why("a * * * *"), syntax);
    assert_string_equal(s_why("jan * * * *"), syntax); //  names only where they mean something
    assert_string_equal(s_why("1- * * * *"), syntax);
    assert_string_equal(s_why("-1 * * * *"), syntax);
    assert_string_equal(s_why("*/ * * * *"), syntax);
    assert_string_equal(s_why("1/2/3 * * * *"), syntax);
    assert_string_equal(s_why("** * * * *"), syntax);
    assert_string_equal(s_why("L * * * *"), syntax);
    assert_string_equal(s_why("? * * * *"), syntax);
    assert_string_equal(s_why("*/x * * * *"), syntax);
    assert_string_equal(s_why("* * * foo *"),
                        "month: expected a number, *, a range a-b or a step /n");
    assert_string_equal(s_why("* * * * monday"),
                        "day of week: expected a number, *, a range a-b or a step /n");
    assert_string_equal(s_why("* * * * 5#2"),
                        "day of week: expected a number, *, a range a-b or a step /n");
    char longer[260];
    memset(longer, '1', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_non_null(strstr(s_why(longer), "200"));
    //  A refused expression leaves a zeroed result.
    cd_cron_t c;
    const char *why = NULL;
    assert_int_equal(cd_cron_parse("* * * * 9", &c, &why), CD_EINVAL);
    assert_true(c.minutes == 0 && c.weekdays == 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cron_field_kinds),         cmocka_unit_test(test_cron_next_basic),
        cmocka_unit_test(test_cron_next_rollovers),      cmocka_unit_test(test_cron_day_rule),
        cmocka_unit_test(test_cron_invalid_expressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
