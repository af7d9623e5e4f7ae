/*  cd_cron: five-field cron expressions in UTC (see cd_cron.h).

    Parsing turns each field into a bit set of the values it allows, so
    matching a time is five bit tests. The next matching minute is found
    by walking calendar fields from the largest down, as cron daemons do:
    a month that does not match skips to the first of the next month, a
    day to the next midnight, an hour to the next full hour, and only then
    minutes advance one by one. timegm() normalises the overflowing
    fields (day 32, hour 24) back into a date, so the walk needs no
    calendar arithmetic of its own; leap years come from the C library.

    Interface: cd_cron_parse, cd_cron_next. */
#include "cd_cron.h"

#include "cd_error.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S_YEARS_MAX 30 //  cd_cron_next gives up after this many years

//  What can be wrong with a field, as static texts that name it.
typedef struct {
    const char *empty;    //  an empty item ("1,,2", "")
    const char *syntax;   //  not a number, name, `*`, range or step
    const char *range;    //  a value outside the field's bounds
    const char *backward; //  a-b with a > b
    const char *step;     //  a step of 0, or larger than the field
} s_msgs_t;

#define S_MSGS(field, bounds, span)                                                                \
    {                                                                                              \
        field ": empty list item", field ": expected a number, *, a range a-b or a step /n",       \
            field ": value out of range " bounds, field ": range start is after its end",          \
            field ": step must be between 1 and " span                                             \
    }

//  One field's rules.
typedef struct {
    int min, max;             //  bounds of a value
    int step_max;             //  largest step
    const char *const *names; //  three-letter names, names[i] meaning value i + name_base
    int name_base;            //  value of names[0]
    int n_names;              //  entries in names
    s_msgs_t msgs;            //  its error texts
} s_field_t;

static const char *const s_months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const s_weekdays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const s_field_t s_fields[5] = {
    {0, 59, 60, NULL, 0, 0, S_MSGS("minute", "0-59", "60")},
    {0, 23, 24, NULL, 0, 0, S_MSGS("hour", "0-23", "24")},
    {1, 31, 31, NULL, 0, 0, S_MSGS("day of month", "1-31", "31")},
    {1, 12, 12, s_months, 1, 12, S_MSGS("month", "1-12", "12")},
    {0, 7, 7, s_weekdays, 0, 7, S_MSGS("day of week", "0-7", "7")},
};

//  Reads a value (digits, or a name where the field has names) at *p,
//  before end. Returns false if there is none; *out may then be out of
//  range for a number that is too long, which the caller reports as such.
static bool
s_value(const s_field_t *field, const char **p, const char *end, int *out)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        int v = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            //  Saturate: "0000000000061" must not wrap around into range.
            v = v > 1000 ? v : v * 10 + (*s - '0');
            s++;
        }
        *p = s;
        *out = v;
        return true;
    }
    if (field->names && end - s >= 3) {
        for (int i = 0; i < field->n_names; i++) {
            if (strncasecmp(s, field->names[i], 3) == 0 &&
                (end - s == 3 || !isalpha((unsigned char)s[3]))) {
                *p = s + 3;
                *out = field->name_base + i;
                return true;
            }
        }
    }
    return false;
}

//  Parses one comma item [s, end) of field into *bits.
static const char *
s_item(const s_field_t *field, const char *s, const char *end, uint64_t *bits)
{
    if (s == end) {
        return field->msgs.empty;
    }
    const char *p = s;
    int lo = field->min, hi = field->max, step = 1;
    bool star = false, range = false;
    if (*p == '*') {
        star = true;
        p++;
    } else {
        if (!s_value(field, &p, end, &lo)) {
            return field->msgs.syntax;
        }
        hi = lo;
        if (p < end && *p == '-') {
            p++;
            if (!s_value(field, &p, end, &hi)) {
                return field->msgs.syntax;
            }
            range = true;
        }
    }
    if (p < end && *p == '/') {
        p++;
        if (p == end || !isdigit((unsigned char)*p)) {
            return field->msgs.syntax;
        }
        step = 0;
        while (p < end && isdigit((unsigned char)*p)) {
            step = step > 1000 ? step : step * 10 + (*p - '0');
            p++;
        }
        if (step < 1 || step > field->step_max) {
            return field->msgs.step;
        }
        if (!star && !range) {
            hi = field->max; //  "a/s": from a to the end of the field
        }
    }
    if (p != end) {
        return field->msgs.syntax;
    }
    if (lo < field->min || lo > field->max || hi < field->min || hi > field->max) {
        return field->msgs.range;
    }
    if (lo > hi) {
        return field->msgs.backward;
    }
    for (int v = lo; v <= hi; v += step) {
        *bits |= (uint64_t)1 << v;
    }
    return NULL;
}

//  Parses field [s, end) into *bits.
static const char *
s_field(const s_field_t *field, const char *s, const char *end, uint64_t *bits)
{
    *bits = 0;
    while (true) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        const char *why = s_item(field, s, item_end, bits);
        if (why) {
            return why;
        }
        if (!comma) {
            return NULL;
        }
        s = comma + 1;
    }
}

int
cd_cron_parse(const char *expr, cd_cron_t *out, const char **why)
{
    *out = (cd_cron_t){0};
    if (!expr || !*expr) {
        *why = "empty expression";
        return CD_EINVAL;
    }
    size_t len = strlen(expr);
    if (len > CD_CRON_MAX_LEN) {
        *why = "longer than 200 characters";
        return CD_EINVAL;
    }
    const char *start[5], *stop[5];
    int n = 0;
    const char *p = expr, *end = expr + len;
    if (*p == '@') {
        *why = "macros such as @daily are not supported: give 5 fields";
        return CD_EINVAL;
    }
    if (*p == ' ') {
        *why = "expected 5 fields separated by spaces (leading space)";
        return CD_EINVAL;
    }
    while (p < end) {
        if (n == 5) {
            *why = "expected 5 fields separated by spaces (more given)";
            return CD_EINVAL;
        }
        start[n] = p;
        while (p < end && *p != ' ') {
            if (!isgraph((unsigned char)*p)) {
                *why = "expected 5 fields separated by spaces (tab or control character)";
                return CD_EINVAL;
            }
            p++;
        }
        stop[n++] = p;
        while (p < end && *p == ' ') {
            p++;
        }
        if (p == end && end[-1] == ' ') {
            *why = "expected 5 fields separated by spaces (trailing space)";
            return CD_EINVAL;
        }
    }
    if (n != 5) {
        *why = "expected 5 fields separated by spaces (fewer given)";
        return CD_EINVAL;
    }
    uint64_t bits[5];
    for (int i = 0; i < 5; i++) {
        const char *wrong = s_field(&s_fields[i], start[i], stop[i], &bits[i]);
        if (wrong) {
            *why = wrong;
            return CD_EINVAL;
        }
    }
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->days = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    //  Sunday is both 0 and 7.
    out->weekdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
    out->days_star = *start[2] == '*';
    out->weekdays_star = *start[4] == '*';
    return 0;
}

//  Vixie cron's rule for the two day fields (see cd_cron.h).
static bool
s_day_matches(const cd_cron_t *cron, const struct tm *tm)
{
    bool dom = (cron->days >> tm->tm_mday) & 1;
    bool dow = (cron->weekdays >> tm->tm_wday) & 1;
    if (cron->days_star || cron->weekdays_star) {
        return dom && dow;
    }
    return dom || dow;
}

int
cd_cron_next(const cd_cron_t *cron, int64_t after, int64_t *next)
{
    //  The next whole minute (floor division, for times before 1970 too).
    int64_t minute = after >= 0 ? after / 60 : -((-after + 59) / 60);
    time_t t = (time_t)((minute + 1) * 60);
    struct tm tm;
    gmtime_r(&t, &tm);
    int last_year = tm.tm_year + S_YEARS_MAX;
    while (tm.tm_year <= last_year) {
        if (!((cron->months >> (tm.tm_mon + 1)) & 1)) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = 0;
            tm.tm_min = 0;
        } else if (!s_day_matches(cron, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = 0;
            tm.tm_min = 0;
        } else if (!((cron->hours >> tm.tm_hour) & 1)) {
            tm.tm_hour++;
            tm.tm_min = 0;
        } else if (!((cron->minutes >> tm.tm_min) & 1)) {
            tm.tm_min++;
        } else {
            *next = (int64_t)timegm(&tm);
            return 0;
        }
        tm.tm_sec = 0;
        t = timegm(&tm); //  normalises day 32, hour 24 ... and sets tm_wday
        gmtime_r(&t, &tm);
    }
    return CD_ENOTFOUND;
}
