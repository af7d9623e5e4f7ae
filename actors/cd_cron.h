/*  cd_cron: five-field cron expressions, evaluated in UTC (API.md
    "Schedules": cron is evaluated in UTC).

    An expression is five fields separated by spaces (one or more; no
    leading or trailing space, no tabs: the database stores what it was
    given and checks the same shape):

        minute  hour  day-of-month  month  day-of-week
        0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)

    Each field is a comma list of items; an item is `*`, a number `n`, a
    range `a-b` (a <= b), and any of these with a step `/s` (s >= 1):
    `*` then `/15` (every 15), `1-30/2`, and `a/s` meaning `a-<max>/s`. Months and weekdays
    may also be written by their three-letter English names, in any case
    (`jan`-`dec`, `sun`-`sat`), alone or in ranges (`mon-fri`). Macros
    (`@daily`) and the Quartz extensions (`L`, `W`, `#`, `?`) are not
    accepted.

    Day matching follows Vixie cron: when both day-of-month and
    day-of-week are restricted (neither field starts with `*`), a day
    matches if EITHER does ("0 0 13 * 5": every 13th and every Friday);
    when one of them starts with `*`, only the other decides.

    Pure functions; any thread. */
#ifndef CD_ACTORS_CRON_H
#define CD_ACTORS_CRON_H

#include <stdbool.h>
#include <stdint.h>

#define CD_CRON_MAX_LEN 200 //  longest expression (as the database allows)

//  A parsed expression: one bit per allowed value.
typedef struct {
    uint64_t minutes;   //  bit m: minute m (0-59)
    uint32_t hours;     //  bit h: hour h (0-23)
    uint32_t days;      //  bit d: day of month d (1-31)
    uint16_t months;    //  bit m: month m (1-12)
    uint8_t weekdays;   //  bit w: weekday w (0 Sunday - 6 Saturday; 7 is folded into 0)
    bool days_star;     //  the day-of-month field starts with `*`
    bool weekdays_star; //  the day-of-week field starts with `*`
} cd_cron_t;

//  Parses expr into *out. Returns 0, or CD_EINVAL with *why set to a
//  static text naming the field and what was wrong ("hour: 24 is out of
//  range 0-23"). expr may be NULL (invalid).
int cd_cron_parse(const char *expr, cd_cron_t *out, const char **why);

//  The first minute strictly after `after` (seconds since the epoch, UTC)
//  that the expression matches, in *next (seconds since the epoch, a
//  whole minute). Returns 0, or CD_ENOTFOUND when no minute matches
//  within the next 30 years (an expression that can never match, such as
//  "0 0 30 2 *"; the longest real gap, a 29 February after a century
//  that is not a leap year, is 8 years).
int cd_cron_next(const cd_cron_t *cron, int64_t after, int64_t *next);

#endif
