/*  bench_stats.h: what every benchmark program needs to time runs and
    summarise them (medians of runs, percentiles of samples). Header-only:
    bench programs are single files and share nothing else. */
#ifndef CD_BENCH_STATS_H
#define CD_BENCH_STATS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

//  Monotonic nanoseconds.
static inline int64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int
bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

//  Median of n values (n >= 1); the values keep their order.
static inline double
bench_median(const double *values, int n)
{
    double *sorted = (double *)malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        abort();
    }
    for (int i = 0; i < n; i++) {
        sorted[i] = values[i];
    }
    qsort(sorted, (size_t)n, sizeof *sorted, bench_cmp_double);
    double median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    free(sorted);
    return median;
}

//  The p-th percentile (nearest rank) of n sorted samples.
static inline double
bench_percentile(const double *sorted, long n, double p)
{
    long index = (long)ceil(p / 100.0 * (double)n) - 1;
    return sorted[index < 0 ? 0 : index >= n ? n - 1 : index];
}

#endif
