/*  bench_auth_http: what authentication costs over HTTP, against the real
    cadred binary.

    A private PostgreSQL (fsync on) is started with cd_pgembed in a temp
    dir under /tmp; cadred (beside this program's directory, or --cadred)
    runs on it with CADRE_ADMIN_PASSWORD set, HTTP on a free loopback
    port. This program signs in as admin, creates an API key of admin,
    a user `bench` (role user), and one task of `bench`. h2load (Debian's
    nghttp2-client) then drives, over h2c with prior knowledge, one h2load
    thread, the scenarios below in turn in every run (so that drift hits
    all of them alike); each figure is the median of --runs runs after a
    warm-up:
      health      GET /health (no authentication: the HTTP thread alone)
      get_jwt     GET /api/v1/tasks/{id} with Authorization: Bearer of admin
                  (the JWT verified in the HTTP thread, then a read on an
                  api actor), -c 4 -m 16
      get_key     the same with admin's X-API-Key (hashed, then the cache)
      get_user    the same with the JWT of `bench`, a user: the api actor
                  then also checks the task is the user's (ownership)
      base_*      with --baseline PATH: a cadred built before
                  authentication existed, on its own database of the same
                  PostgreSQL, answering GET /health and GET
                  /api/v1/tasks/{id} anonymously: the cost of verification
                  is get_jwt / get_key against base_get
      login       POST /api/v1/auth/login with the right password, -c 2 -m 4
                  (8 in flight: within the hashing cap), bounded by argon2id
      flood       the same at -c 8 -m 32 (256 in flight): most are refused
                  at once with 503 (the cap), the rest are signed in
    The CPU that cadred spent per request comes from /proc.

    Output: a table on stderr and one JSON object on stdout. */
#include "bench_stats.h"
#include "cd_db.h"
#include "cd_log.h"
#include "cd_password.h"
#include "cd_pgembed.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <jansson.h>
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
#define S_PASSWORD "bench-admin-password"
#define S_USER_PASSWORD "bench-user-password"

typedef struct {
    int runs;             //  measured runs
    long gets;            //  requests per GET run
    long logins;          //  requests per login run
    const char *cadred;   //  the binary, or NULL: <this program's dir>/../cadred
    const char *baseline; //  a pre-authentication cadred, or NULL
} options_t;

typedef struct {
    double rps;       //  requests per second (all answers)
    double p50_ms;    //  median latency
    double p99_ms;    //  99th percentile latency
    long ok;          //  2xx answers
    long refused;     //  503 answers
    double cadred_us; //  cadred CPU per request
} run_t;

static void
s_die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_auth_http: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

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
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime,
                     &stime) != 2) {
        return 0;
    }
    return utime + stime;
}

//  Runs h2load once. Returns 0 and fills *run, or -1.
static int
s_h2load(const char *args, long requests, pid_t cadred, run_t *run)
{
    char log_path[] = "/tmp/bench_auth_http.XXXXXX";
    int log_fd = mkstemp(log_path);
    if (log_fd < 0) {
        return -1;
    }
    close(log_fd);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "h2load -n %ld -t 1 --log-file=%s %s 2>&1", requests, log_path, args);
    long long c0 = s_ticks(cadred);
    FILE *out = popen(cmd, "r");
    if (!out) {
        unlink(log_path);
        return -1;
    }
    char line[512];
    memset(run, 0, sizeof *run);
    while (fgets(line, sizeof line, out)) {
        const char *at = strstr(line, "finished in ");
        if (at) {
            const char *comma = strchr(at, ',');
            run->rps = comma ? atof(comma + 1) : 0;
        }
    }
    int status = pclose(out);
    long long c1 = s_ticks(cadred);
    run->cadred_us = (double)(c1 - c0) * (1e6 / (double)sysconf(_SC_CLK_TCK)) / (double)requests;
    //  Per-request lines: start (µs since epoch) \t status \t duration (µs).
    FILE *log = fopen(log_path, "r");
    double *lat = (double *)malloc((size_t)requests * sizeof(double));
    long n = 0;
    while (log && lat && n < requests && fgets(line, sizeof line, log)) {
        char *tab = strchr(line, '\t');
        if (!tab) {
            continue;
        }
        int code = atoi(tab + 1);
        run->ok += code >= 200 && code < 300;
        run->refused += code == 503;
        tab = strchr(tab + 1, '\t');
        if (tab) {
            lat[n++] = atof(tab + 1) / 1000.0;
        }
    }
    if (log) {
        fclose(log);
    }
    unlink(log_path);
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
        run->p50_ms = bench_percentile(lat, n, 50);
        run->p99_ms = bench_percentile(lat, n, 99);
    }
    free(lat);
    return status == 0 && run->rps > 0 ? 0 : -1;
}

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
        setenv("CADRE_ADMIN_PASSWORD", S_PASSWORD, 1);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl(binary, "cadred", (char *)NULL);
        _exit(127);
    }
    return pid;
}

//  Runs curl over h2c and parses the JSON answer (caller owns it), or NULL.
static json_t *
s_curl(int port, const char *method, const char *path, const char *header, const char *body)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "curl -s --http2-prior-knowledge -X %s %s%s%s %s%s%s -H 'content-type: "
             "application/json' http://127.0.0.1:%d%s",
             method, header ? "-H '" : "", header ? header : "", header ? "'" : "",
             body ? "-d '" : "", body ? body : "", body ? "'" : "", port, path);
    FILE *out = popen(cmd, "r");
    if (!out) {
        return NULL;
    }
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, out);
    pclose(out);
    buf[n] = '\0';
    return json_loads(buf, 0, NULL);
}

static bool
s_wait_ready(int port, pid_t cadred)
{
    for (int i = 0; i < 300; i++) {
        if (waitpid(cadred, NULL, WNOHANG) == cadred) {
            return false;
        }
        json_t *r = s_curl(port, "GET", "/health/ready", NULL, NULL);
        bool ready = r && json_is_string(json_object_get(r, "status")) &&
                     strcmp(json_string_value(json_object_get(r, "status")), "ready") == 0;
        json_decref(r);
        if (ready) {
            return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

static char *
s_login(int port, const char *user, const char *password)
{
    char body[256];
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", user, password);
    json_t *r = s_curl(port, "POST", "/api/v1/auth/login", NULL, body);
    const char *token = json_string_value(json_object_get(r, "access_token"));
    char *copy = token ? strdup(token) : NULL;
    json_decref(r);
    if (!copy) {
        s_die("cannot sign in as", user);
    }
    return copy;
}

//  An agent that no actor runs: tasks assigned to it stay todo.
static void
s_parked_agent(const char *conninfo)
{
    cd_db_t *db = NULL;
    char *err = NULL;
    if (cd_db_connect(conninfo, &db, &err) != 0 ||
        cd_db_exec(db, "INSERT INTO agents (name, kind) VALUES ('parked', 'echo')", &err) != 0) {
        s_die("seeding", err);
    }
    cd_db_close(&db);
}

static void
s_usage(void)
{
    fprintf(stderr, "usage: bench_auth_http [--runs N] [--gets N] [--logins N] [--cadred PATH]"
                    " [--baseline PATH]\n");
}

enum {
    S_HEALTH,
    S_GET_JWT,
    S_GET_KEY,
    S_GET_USER,
    S_BASE_HEALTH,
    S_BASE_GET,
    S_LOGIN,
    S_FLOOD,
    S_N
};

static const char *const s_names[S_N] = {"health",      "get_jwt",  "get_key", "get_user",
                                         "base_health", "base_get", "login",   "flood"};

//  The binary beside this program, or the one given.
static void
s_binary(const char *given, char *out, size_t size)
{
    if (given) {
        snprintf(out, size, "%s", given);
    } else {
        char self[900];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
        }
        snprintf(out, size, "%s/../cadred", self);
    }
    if (access(out, X_OK) != 0) {
        s_die("no cadred binary at", out);
    }
}

int
main(int argc, char **argv)
{
    options_t opt = {5, 60000, 100, NULL, NULL};
    static const struct option longopts[] = {{"runs", required_argument, NULL, 'r'},
                                             {"gets", required_argument, NULL, 'g'},
                                             {"logins", required_argument, NULL, 'l'},
                                             {"cadred", required_argument, NULL, 'b'},
                                             {"baseline", required_argument, NULL, 'B'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            opt.runs = atoi(optarg);
            break;
        case 'g':
            opt.gets = atol(optarg);
            break;
        case 'l':
            opt.logins = atol(optarg);
            break;
        case 'b':
            opt.cadred = optarg;
            break;
        case 'B':
            opt.baseline = optarg;
            break;
        default:
            s_usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS || opt.gets < 100 || opt.logins < 10) {
        s_usage();
        return 2;
    }
    if (system("h2load --version >/dev/null 2>&1") != 0 ||
        system("curl --version >/dev/null 2>&1") != 0) {
        s_die("h2load or curl not found", "Debian packages nghttp2-client, curl");
    }
    char binary[1024], baseline[1024] = "";
    s_binary(opt.cadred, binary, sizeof binary);
    if (opt.baseline) {
        s_binary(opt.baseline, baseline, sizeof baseline);
    }
    cd_log_set_level(CD_LOG_ERROR);

    char tmpl[] = "/tmp/cadre-bench-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    if (!dir || chmod(dir, 0711) != 0) {
        s_die("mkdtemp", "/tmp");
    }
    char pgdir[512], data_dir[512], base_dir[512];
    snprintf(pgdir, sizeof pgdir, "%s/pg", dir);
    snprintf(data_dir, sizeof data_dir, "%s/node", dir);
    snprintf(base_dir, sizeof base_dir, "%s/base", dir);
    cd_pgembed_t *pg = NULL;
    char *err = NULL;
    fprintf(stderr, "starting PostgreSQL (fsync on) in %s ...\n", pgdir);
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
    //  A user, its key and its task.
    s_parked_agent(conninfo);
    char *admin = s_login(port, "admin", S_PASSWORD);
    char header[1200];
    snprintf(header, sizeof header, "authorization: Bearer %s", admin);
    json_decref(s_curl(port, "POST", "/api/v1/users", header,
                       "{\"username\":\"bench\",\"password\":\"" S_USER_PASSWORD "\"}"));
    json_t *r = s_curl(port, "POST", "/api/v1/api-keys", header, "{\"name\":\"bench\"}");
    char *key = json_string_value(json_object_get(r, "key"))
                    ? strdup(json_string_value(json_object_get(r, "key")))
                    : NULL;
    json_decref(r);
    char *token = s_login(port, "bench", S_USER_PASSWORD);
    snprintf(header, sizeof header, "authorization: Bearer %s", token);
    const char *task_body = "{\"title\":\"bench task\",\"assignee\":{\"agent\":\"parked\"}}";
    r = s_curl(port, "POST", "/api/v1/tasks", header, task_body);
    int64_t task = json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    if (!key || task <= 0) {
        s_die("seeding", "no API key or task");
    }

    //  The baseline: its own database, a task of its own.
    pid_t base = 0;
    int base_port = 0;
    int64_t base_task = 0;
    if (opt.baseline) {
        cd_db_t *db = NULL;
        char *admin_conninfo = cd_pgembed_conninfo_for(pg, "postgres");
        if (cd_db_connect(admin_conninfo, &db, &err) != 0 ||
            cd_db_exec(db, "CREATE DATABASE base", &err) != 0) {
            s_die("baseline database", err);
        }
        cd_db_close(&db);
        free(admin_conninfo);
        char *base_conninfo = cd_pgembed_conninfo_for(pg, "base");
        base_port = s_free_port();
        base = s_start_cadred(baseline, base_conninfo, base_dir, base_port);
        if (!s_wait_ready(base_port, base)) {
            kill(base, SIGKILL);
            s_die("the baseline cadred did not become ready", baseline);
        }
        s_parked_agent(base_conninfo);
        free(base_conninfo);
        r = s_curl(base_port, "POST", "/api/v1/tasks", NULL, task_body);
        base_task = json_integer_value(json_object_get(r, "id"));
        json_decref(r);
        if (base_task <= 0) {
            s_die("baseline seeding", "no task");
        }
    }

    char body_path[600];
    snprintf(body_path, sizeof body_path, "%s/login.json", dir);
    FILE *body = fopen(body_path, "w");
    if (!body) {
        s_die("body file", body_path);
    }
    fputs("{\"username\":\"bench\",\"password\":\"" S_USER_PASSWORD "\"}", body);
    fclose(body);

    char args[S_N][2048];
    snprintf(args[S_HEALTH], sizeof args[0], "-c 4 -m 16 http://127.0.0.1:%d/health", port);
    snprintf(args[S_GET_JWT], sizeof args[0],
             "-c 4 -m 16 -H 'authorization: Bearer %s' http://127.0.0.1:%d/api/v1/tasks/%lld",
             admin, port, (long long)task);
    snprintf(args[S_GET_USER], sizeof args[0],
             "-c 4 -m 16 -H 'authorization: Bearer %s' http://127.0.0.1:%d/api/v1/tasks/%lld",
             token, port, (long long)task);
    snprintf(args[S_GET_KEY], sizeof args[0],
             "-c 4 -m 16 -H 'x-api-key: %s' http://127.0.0.1:%d/api/v1/tasks/%lld", key, port,
             (long long)task);
    snprintf(args[S_BASE_HEALTH], sizeof args[0], "-c 4 -m 16 http://127.0.0.1:%d/health",
             base_port);
    snprintf(args[S_BASE_GET], sizeof args[0], "-c 4 -m 16 http://127.0.0.1:%d/api/v1/tasks/%lld",
             base_port, (long long)base_task);
    snprintf(args[S_LOGIN], sizeof args[0],
             "-c 2 -m 4 -d %s -H 'content-type: application/json' "
             "http://127.0.0.1:%d/api/v1/auth/login",
             body_path, port);
    snprintf(args[S_FLOOD], sizeof args[0],
             "-c 8 -m 32 -d %s -H 'content-type: application/json' "
             "http://127.0.0.1:%d/api/v1/auth/login",
             body_path, port);

    run_t runs[S_N][MAX_RUNS];
    memset(runs, 0, sizeof runs);
    bench_cpu_t cpu0 = bench_cpu_read();
    for (int r_i = -1; r_i < opt.runs; r_i++) {
        for (int s = 0; s < S_N; s++) {
            bool base_scenario = s == S_BASE_HEALTH || s == S_BASE_GET;
            if (base_scenario && !opt.baseline) {
                continue;
            }
            long requests = s == S_LOGIN ? opt.logins : s == S_FLOOD ? opt.logins * 10 : opt.gets;
            pid_t who = base_scenario ? base : cadred;
            run_t warm = {0};
            run_t *run = r_i < 0 ? &warm : &runs[s][r_i];
            fprintf(stderr, "\r%s: %s ...              ", s_names[s],
                    r_i < 0 ? "warm-up" : "measuring");
            if (s_h2load(args[s], r_i < 0 ? requests / 5 : requests, who, run) != 0) {
                s_die("h2load failed", args[s]);
            }
        }
    }
    fprintf(stderr, "\r%-50s\r", "");
    char machine[128];
    bench_cpu_report(cpu0, machine, sizeof machine);
    kill(cadred, SIGTERM);
    waitpid(cadred, NULL, 0);
    if (base) {
        kill(base, SIGTERM);
        waitpid(base, NULL, 0);
    }
    cd_pgembed_stop(&pg);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) {
        fprintf(stderr, "bench_auth_http: could not remove %s\n", dir);
    }

    fprintf(stderr,
            "cadred on PostgreSQL (fsync on); h2load -t 1 over h2c; medians of %d runs;\n"
            "argon2id t=%u m=%u KiB p=1 (libsodium INTERACTIVE)\n"
            "%-12s | %10s | %8s %8s | %9s %9s | %13s\n",
            opt.runs, CD_PASSWORD_OPSLIMIT, CD_PASSWORD_MEMLIMIT / 1024, "scenario", "req/s",
            "p50 ms", "p99 ms", "2xx", "503", "cadred us/req");
    printf("{\"bench\":\"auth_http\",\"runs\":%d,\"gets\":%ld,\"logins\":%ld,"
           "\"argon2id\":{\"opslimit\":%u,\"memlimit_bytes\":%u,\"lanes\":1}",
           opt.runs, opt.gets, opt.logins, CD_PASSWORD_OPSLIMIT, CD_PASSWORD_MEMLIMIT);
    double med[S_N] = {0};
    for (int s = 0; s < S_N; s++) {
        if ((s == S_BASE_HEALTH || s == S_BASE_GET) && !opt.baseline) {
            continue;
        }
        double rps[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], cad[MAX_RUNS];
        long ok = 0, refused = 0;
        for (int i = 0; i < opt.runs; i++) {
            rps[i] = runs[s][i].rps;
            p50[i] = runs[s][i].p50_ms;
            p99[i] = runs[s][i].p99_ms;
            cad[i] = runs[s][i].cadred_us;
            ok += runs[s][i].ok;
            refused += runs[s][i].refused;
        }
        med[s] = bench_median(rps, opt.runs);
        double m50 = bench_median(p50, opt.runs), m99 = bench_median(p99, opt.runs);
        double mcad = bench_median(cad, opt.runs);
        //  For logins, the rate that counts is of the 2xx answers.
        double ok_rps = med[s] * (double)ok / (double)(ok + refused > 0 ? ok + refused : 1);
        fprintf(stderr, "%-12s | %10.0f | %8.2f %8.2f | %9ld %9ld | %13.1f\n", s_names[s], med[s],
                m50, m99, ok, refused, mcad);
        printf(",\"%s\":{\"rps\":%.1f,\"ok_rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"ok\":%ld,"
               "\"refused_503\":%ld,\"cadred_us\":%.1f}",
               s_names[s], med[s], ok_rps, m50, m99, ok, refused, mcad);
    }
    if (opt.baseline && med[S_BASE_GET] > 0) {
        fprintf(stderr,
                "authenticated GET vs the baseline's anonymous GET: JWT %+.1f%%, key %+.1f%%\n",
                100.0 * (med[S_GET_JWT] / med[S_BASE_GET] - 1),
                100.0 * (med[S_GET_KEY] / med[S_BASE_GET] - 1));
        printf(",\"jwt_vs_base\":%.4f,\"key_vs_base\":%.4f", med[S_GET_JWT] / med[S_BASE_GET],
               med[S_GET_KEY] / med[S_BASE_GET]);
    }
    printf(",%s}\n", machine);
    free(admin);
    free(token);
    free(key);
    return 0;
}
