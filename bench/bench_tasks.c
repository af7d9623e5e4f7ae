/*  bench_tasks: the task API under h2load: durable creates (POST
    /api/v1/tasks) and reads (GET /api/v1/tasks/{id}) against the real
    cadred binary.

    A private PostgreSQL with default durability (fsync on,
    synchronous_commit on) is started with cd_pgembed in a temp dir under
    /tmp; cadred (the binary beside this program's directory, or --cadred)
    runs as a child process on it (DATABASE_URL) with HTTP on a free
    loopback port, and an agent `bench` is inserted for the tasks to name.
    h2load (Debian's nghttp2-client) drives each scenario over h2c with
    prior knowledge, one h2load thread:
      create        POST /api/v1/tasks, an 80-byte body naming agent bench,
                    at -c 4 -m 16 and at -c 8 -m 32 (64 and 256 in flight);
                    every 201 is a committed task with its event and history
      get           GET /api/v1/tasks/{id} of one existing task, -c 4 -m 16
    Each figure is the median of --runs runs (after one warm-up each).
    Latency percentiles come from h2load's per-request log; the CPU that
    cadred and PostgreSQL spent per request comes from /proc (all
    PostgreSQL processes together).

    Output: a table on stderr and one JSON object on stdout. */
#include "bench_stats.h"
#include "cd_db.h"
#include "cd_log.h"
#include "cd_pgembed.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_RUNS 15
#define S_ADMIN_PASSWORD "bench-admin-password" //  cadred's admin; requests carry its token

typedef struct {
    int runs;           //  measured runs per scenario
    long creates;       //  requests per create run
    long gets;          //  requests per get run
    const char *cadred; //  the binary, or NULL: <this program's dir>/../cadred
} options_t;

typedef struct {
    double rps;         //  requests per second
    double p50_ms;      //  median latency
    double p99_ms;      //  99th percentile latency
    long failed;        //  requests that were not 2xx
    double cadred_us;   //  cadred CPU per request
    double postgres_us; //  PostgreSQL CPU (every process of it) per request
} run_t;

static void
s_die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_tasks: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

//  --- CPU accounting -------------------------------------------------------------------------

//  utime + stime of a process in clock ticks, or 0.
static long long
s_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    long long utime = 0, stime = 0;
    //  After ") ": state, then fields 4.. ; utime and stime are fields 14, 15.
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime,
                     &stime) != 2) {
        return 0;
    }
    return utime + stime;
}

//  Ticks of every process whose parent chain reaches root (PostgreSQL's
//  postmaster and its children), root included.
static long long
s_tree_ticks(pid_t root)
{
    long long total = s_ticks(root);
    DIR *dir = opendir("/proc");
    struct dirent *e;
    while (dir && (e = readdir(dir)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || pid == root) {
            continue;
        }
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f) {
            continue;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        int ppid = 0;
        if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == root) {
            total += s_ticks(pid);
        }
    }
    if (dir) {
        closedir(dir);
    }
    return total;
}

//  --- h2load ---------------------------------------------------------------------------------

//  Runs h2load once. Returns 0 and fills *run, or -1.
static int
s_h2load(const char *args, long requests, pid_t cadred, pid_t postmaster, run_t *run)
{
    char log_path[] = "/tmp/bench_tasks.XXXXXX";
    int log_fd = mkstemp(log_path);
    if (log_fd < 0) {
        return -1;
    }
    close(log_fd);
    char cmd[3072];
    snprintf(cmd, sizeof cmd, "h2load -n %ld -t 1 --log-file=%s %s 2>&1", requests, log_path, args);
    long long c0 = s_ticks(cadred), p0 = s_tree_ticks(postmaster);
    FILE *out = popen(cmd, "r");
    if (!out) {
        unlink(log_path);
        return -1;
    }
    char line[512];
    long ok = -1;
    run->rps = 0;
    while (fgets(line, sizeof line, out)) {
        const char *at = strstr(line, "finished in ");
        if (at) {
            const char *comma = strchr(at, ',');
            run->rps = comma ? atof(comma + 1) : 0;
        }
        if (strncmp(line, "status codes: ", 14) == 0) {
            ok = atol(line + 14);
        }
    }
    int status = pclose(out);
    long long c1 = s_ticks(cadred), p1 = s_tree_ticks(postmaster);
    double us_per_tick = 1e6 / (double)sysconf(_SC_CLK_TCK);
    run->cadred_us = (double)(c1 - c0) * us_per_tick / (double)requests;
    run->postgres_us = (double)(p1 - p0) * us_per_tick / (double)requests;
    run->failed = ok < 0 ? requests : requests - ok;
    //  Per-request latencies: start (µs since epoch) \t status \t duration (µs).
    FILE *log = fopen(log_path, "r");
    double *lat = (double *)malloc((size_t)requests * sizeof(double));
    long n = 0;
    while (log && lat && n < requests && fgets(line, sizeof line, log)) {
        char *tab = strchr(line, '\t');
        tab = tab ? strchr(tab + 1, '\t') : NULL;
        if (tab) {
            lat[n++] = atof(tab + 1) / 1000.0;
        }
    }
    if (log) {
        fclose(log);
    }
    unlink(log_path);
    run->p50_ms = run->p99_ms = 0;
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
        run->p50_ms = bench_percentile(lat, n, 50);
        run->p99_ms = bench_percentile(lat, n, 99);
    }
    free(lat);
    return status == 0 && run->rps > 0 ? 0 : -1;
}

//  --- cadred -----------------------------------------------------------------------------------

//  A loopback port nobody listens on now.
static int
s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        s_die("socket", "no free port");
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static pid_t
s_start_cadred(const char *binary, const char *conninfo, const char *data_dir, int port)
{
    pid_t pid = fork();
    if (pid < 0) {
        s_die("fork", NULL);
    }
    if (pid == 0) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        setenv("DATABASE_URL", conninfo, 1);
        setenv("CADRE_DATA_DIR", data_dir, 1);
        setenv("CADRE_HTTP_ADDR", addr, 1);
        setenv("CADRE_LOG_LEVEL", "error", 1);
        setenv("CADRE_ADMIN_PASSWORD", S_ADMIN_PASSWORD, 1);
        dup2(STDERR_FILENO, STDOUT_FILENO); //  its banner must not mix with our JSON
        execl(binary, "cadred", (char *)NULL);
        _exit(127);
    }
    return pid;
}

//  True once /health/ready answers 200.
static bool
s_wait_ready(int port, pid_t cadred)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "curl -s -o /dev/null -w '%%{http_code}' --http2-prior-knowledge "
             "http://127.0.0.1:%d/health/ready 2>/dev/null",
             port);
    for (int i = 0; i < 300; i++) {
        if (waitpid(cadred, NULL, WNOHANG) == cadred) {
            return false;
        }
        FILE *out = popen(cmd, "r");
        char code[8] = "";
        if (out) {
            if (!fgets(code, sizeof code, out)) {
                code[0] = '\0';
            }
            pclose(out);
        }
        if (strcmp(code, "200") == 0) {
            return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

//  Signs in as admin: "authorization: Bearer <token>" into header. The
//  token lives 15 minutes, longer than a run of this program.
static void
s_sign_in(int port, char *header, size_t size)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "curl -s --http2-prior-knowledge -H 'content-type: application/json' -d "
             "'{\"username\":\"admin\",\"password\":\"" S_ADMIN_PASSWORD "\"}' "
             "http://127.0.0.1:%d/api/v1/auth/login",
             port);
    FILE *out = popen(cmd, "r");
    char buf[4096] = "";
    size_t n = out ? fread(buf, 1, sizeof buf - 1, out) : 0;
    buf[n] = '\0';
    if (out) {
        pclose(out);
    }
    const char *token = strstr(buf, "\"access_token\":\"");
    const char *end = token ? strchr(token + 16, '"') : NULL;
    if (!end) {
        s_die("cannot sign in", buf);
    }
    snprintf(header, size, "authorization: Bearer %.*s", (int)(end - token - 16), token + 16);
}

static void
s_usage(void)
{
    fprintf(stderr, "usage: bench_tasks [--runs N] [--creates N] [--gets N] [--cadred PATH]\n");
}

//  --- main -------------------------------------------------------------------------------------

enum { S_CREATE_64, S_CREATE_256, S_GET_64, S_N_SCENARIOS };

static const char *const s_names[S_N_SCENARIOS] = {"create c4 m16", "create c8 m32", "get c4 m16"};
static const char *const s_keys[S_N_SCENARIOS] = {"create_64", "create_256", "get_64"};

int
main(int argc, char **argv)
{
    options_t opt = {3, 100000, 200000, NULL};
    static const struct option longopts[] = {
        {"runs", required_argument, NULL, 'r'}, {"creates", required_argument, NULL, 'n'},
        {"gets", required_argument, NULL, 'g'}, {"cadred", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            opt.runs = atoi(optarg);
            break;
        case 'n':
            opt.creates = atol(optarg);
            break;
        case 'g':
            opt.gets = atol(optarg);
            break;
        case 'b':
            opt.cadred = optarg;
            break;
        default:
            s_usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS || opt.creates < 100 || opt.gets < 100) {
        s_usage();
        return 2;
    }
    if (system("h2load --version >/dev/null 2>&1") != 0) {
        s_die("h2load not found", "Debian package nghttp2-client");
    }
    char binary[1024];
    if (opt.cadred) {
        snprintf(binary, sizeof binary, "%s", opt.cadred);
    } else {
        char self[900];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
        }
        snprintf(binary, sizeof binary, "%s/../cadred", self);
    }
    if (access(binary, X_OK) != 0) {
        s_die("no cadred binary at", binary);
    }
    cd_log_set_level(CD_LOG_ERROR);

    char tmpl[] = "/tmp/cadre-bench-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    //  The postgres account (when we run as root) must get through it.
    if (!dir || chmod(dir, 0711) != 0) {
        s_die("mkdtemp", "/tmp");
    }
    char pgdir[512], data_dir[512];
    snprintf(pgdir, sizeof pgdir, "%s/pg", dir);
    snprintf(data_dir, sizeof data_dir, "%s/node", dir);
    cd_pgembed_t *pg = NULL;
    char *err = NULL;
    fprintf(stderr, "starting PostgreSQL (fsync on, synchronous_commit on) in %s ...\n", pgdir);
    if (cd_pgembed_start(&(cd_pgembed_opts_t){.dir = pgdir, .fast = false, .dbname = "bench"}, &pg,
                         &err) != 0) {
        s_die("PostgreSQL", err);
    }
    const char *conninfo = cd_pgembed_conninfo(pg);
    int port = s_free_port();
    pid_t cadred = s_start_cadred(binary, conninfo, data_dir, port);
    if (!s_wait_ready(port, cadred)) {
        kill(cadred, SIGKILL);
        s_die("cadred did not become ready", binary);
    }
    char auth[1200];
    s_sign_in(port, auth, sizeof auth);
    //  The node has migrated the database: the agent the tasks name.
    cd_db_t *db = NULL;
    if (cd_db_connect(conninfo, &db, &err) != 0 ||
        cd_db_exec(db, "INSERT INTO agents (name, kind) VALUES ('bench', 'echo')", &err) != 0) {
        kill(cadred, SIGKILL);
        s_die("seeding", err);
    }
    char body_path[600];
    snprintf(body_path, sizeof body_path, "%s/body.json", dir);
    FILE *body = fopen(body_path, "w");
    if (!body) {
        s_die("body file", body_path);
    }
    fputs("{\"title\":\"bench task\",\"priority\":5,\"assignee\":{\"agent\":\"bench\"},"
          "\"input\":{\"n\":1}}",
          body);
    fclose(body);

    pid_t postmaster = cd_pgembed_pid(pg);
    char args[S_N_SCENARIOS][2400];
    snprintf(args[S_CREATE_64], sizeof args[0],
             "-c 4 -m 16 -d %s -H 'content-type: application/json' -H '%s' "
             "http://127.0.0.1:%d/api/v1/tasks",
             body_path, auth, port);
    snprintf(args[S_CREATE_256], sizeof args[0],
             "-c 8 -m 32 -d %s -H 'content-type: application/json' -H '%s' "
             "http://127.0.0.1:%d/api/v1/tasks",
             body_path, auth, port);
    run_t runs[S_N_SCENARIOS][MAX_RUNS];
    memset(runs, 0, sizeof runs);
    for (int s = 0; s < S_N_SCENARIOS; s++) {
        long requests = s == S_GET_64 ? opt.gets : opt.creates;
        if (s == S_GET_64) {
            char *id = NULL;
            if (cd_db_query_text(db, "SELECT (max(id) + min(id)) / 2 FROM tasks", 0, NULL, &id) !=
                0) {
                s_die("no task to read", NULL);
            }
            snprintf(args[s], sizeof args[s],
                     "-c 4 -m 16 -H '%s' http://127.0.0.1:%d/api/v1/tasks/%s", auth, port, id);
            free(id);
        }
        run_t warm;
        fprintf(stderr, "\r%s: warm-up ...            ", s_names[s]);
        if (s_h2load(args[s], requests / 5, cadred, postmaster, &warm) != 0) {
            s_die("h2load failed", args[s]);
        }
        for (int r = 0; r < opt.runs; r++) {
            fprintf(stderr, "\r%s: run %d/%d ...          ", s_names[s], r + 1, opt.runs);
            if (s_h2load(args[s], requests, cadred, postmaster, &runs[s][r]) != 0) {
                s_die("h2load failed", args[s]);
            }
        }
    }
    fprintf(stderr, "\r%-50s\r", "");
    cd_db_close(&db);
    kill(cadred, SIGTERM);
    waitpid(cadred, NULL, 0);
    cd_pgembed_stop(&pg);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) {
        fprintf(stderr, "bench_tasks: could not remove %s\n", dir);
    }

    fprintf(stderr,
            "cadred on PostgreSQL with fsync on; h2load -t 1 over h2c; medians of %d runs\n"
            "%-14s | %10s | %8s %8s | %7s | %14s %14s\n",
            opt.runs, "scenario", "req/s", "p50 ms", "p99 ms", "failed", "cadred us/req",
            "postgres us/req");
    printf("{\"bench\":\"tasks\",\"runs\":%d,\"creates\":%ld,\"gets\":%ld", opt.runs, opt.creates,
           opt.gets);
    for (int s = 0; s < S_N_SCENARIOS; s++) {
        double rps[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], cad[MAX_RUNS], pgc[MAX_RUNS];
        long failed = 0;
        for (int r = 0; r < opt.runs; r++) {
            rps[r] = runs[s][r].rps;
            p50[r] = runs[s][r].p50_ms;
            p99[r] = runs[s][r].p99_ms;
            cad[r] = runs[s][r].cadred_us;
            pgc[r] = runs[s][r].postgres_us;
            failed += runs[s][r].failed;
        }
        double m_rps = bench_median(rps, opt.runs), m_p50 = bench_median(p50, opt.runs);
        double m_p99 = bench_median(p99, opt.runs), m_cad = bench_median(cad, opt.runs);
        double m_pg = bench_median(pgc, opt.runs);
        fprintf(stderr, "%-14s | %10.0f | %8.2f %8.2f | %7ld | %14.1f %14.1f\n", s_names[s], m_rps,
                m_p50, m_p99, failed, m_cad, m_pg);
        printf(",\"%s\":{\"rps\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"failed\":%ld,"
               "\"cadred_us\":%.1f,\"postgres_us\":%.1f}",
               s_keys[s], m_rps, m_p50, m_p99, failed, m_cad, m_pg);
    }
    printf("}\n");
    return 0;
}
