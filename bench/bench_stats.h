/*  bench_stats.h: what every benchmark program needs to time runs and
    summarise them (medians of runs, percentiles of samples), and how busy
    the machine was while they ran. Header-only: bench programs are single
    files and share nothing else. */
#ifndef CD_BENCH_STATS_H
#define CD_BENCH_STATS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

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

//  The machine's CPU time counters (/proc/stat, all CPUs, in ticks): a
//  reading at the start of a run and one at the end tell how much of the
//  machine the run had. On a virtual machine `steal` is time the
//  hypervisor gave to other guests: figures measured under a high steal
//  are low for reasons outside the program, and comparable only with runs
//  under a similar one.
typedef struct {
    unsigned long long total; //  every state
    unsigned long long idle;  //  idle and iowait
    unsigned long long steal; //  stolen by the hypervisor
} bench_cpu_t;

static inline bench_cpu_t
bench_cpu_read(void)
{
    bench_cpu_t out = {0, 0, 0};
    FILE *file = fopen("/proc/stat", "r");
    if (!file) {
        return out;
    }
    unsigned long long v[8] = {0};
    if (fscanf(file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) >= 4) {
        for (int i = 0; i < 8; i++) {
            out.total += v[i];
        }
        out.idle = v[3] + v[4];
        out.steal = v[7];
    }
    fclose(file);
    return out;
}

//  Prints how busy the machine was since `start` on stderr ("machine: 2
//  CPUs; during the run 31% stolen by the hypervisor, 25% idle") and
//  writes the same as a JSON member into json: "machine":{"cpus":2,
//  "steal_pct":31.0,"idle_pct":25.0}.
static inline void
bench_cpu_report(bench_cpu_t start, char *json, size_t size)
{
    bench_cpu_t end = bench_cpu_read();
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    double total = end.total > start.total ? (double)(end.total - start.total) : 0;
    double steal = total > 0 ? 100.0 * (double)(end.steal - start.steal) / total : 0;
    double idle = total > 0 ? 100.0 * (double)(end.idle - start.idle) / total : 0;
    fprintf(stderr,
            "machine: %ld CPUs; during the run %.0f%% of CPU time was stolen by the hypervisor "
            "and %.0f%% idle\n",
            cpus, steal, idle);
    snprintf(json, size, "\"machine\":{\"cpus\":%ld,\"steal_pct\":%.1f,\"idle_pct\":%.1f}", cpus,
             steal, idle);
}

#endif
