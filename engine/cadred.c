/*  cadred: the node's main(). Reads the configuration, then lets cd_node
    (engine/cd_node.c, where every layer is wired together) start and stop
    the node.

    SIGINT and SIGTERM are blocked in every thread and read from a signalfd
    by the main thread, so no ZeroMQ call anywhere is interrupted and the
    shutdown happens in one place. Exit codes: 0 after a clean stop, 1 when
    the tree gave up (restart intensity exceeded at the root) or start-up
    failed, 2 for bad configuration.

    One subcommand: `cadred keygen [PATH]` writes a CurveZMQ key pair
    (engine/cd_curve.c) and exits. */
#include "cd_config.h"
#include "cd_curve.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_node.h"

#include <czmq.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

extern char **environ;

//  Waits for a signal or for the tree to give up. Returns the exit code.
static int
s_run(cd_node_t *node, int signal_fd)
{
    zactor_t *root = cd_node_root(node);
    zmq_pollitem_t items[2] = {
        {NULL, signal_fd, ZMQ_POLLIN, 0},
        {zsock_resolve(root), 0, ZMQ_POLLIN, 0},
    };
    while (true) {
        if (zmq_poll(items, 2, -1) < 0) {
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo info;
            if (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
                cd_log_info("node", "stopping", "{s:s}", "signal", strsignal((int)info.ssi_signo));
                return 0;
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(root);
            bool crashed = command && streq(command, "$CRASH");
            zstr_free(&command);
            if (crashed) {
                cd_log_error("node", "supervisor tree gave up; shutting down", NULL);
                return 1;
            }
        }
    }
}

int
main(int argc, char **argv)
{
    //  Before any thread exists: every thread inherits this mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);

    int64_t started_us = zclock_usecs();
    cd_config_t *config = NULL;
    char *errmsg = NULL;
    if (cd_config_load(argc, argv, environ, &config, &errmsg) != 0) {
        fprintf(stderr, "cadred: %s\nTry 'cadred --help'.\n",
                errmsg ? errmsg : "bad configuration");
        free(errmsg);
        return 2;
    }
    if (config->help) {
        cd_config_print_help(stdout, argv[0]);
        cd_config_destroy(&config);
        return 0;
    }
    if (config->version) {
        printf("cadred %s\n", CADRE_VERSION);
        cd_config_destroy(&config);
        return 0;
    }
    //  Subcommands are positional arguments; a node takes none.
    if (config->n_args > 0) {
        int code = 2;
        if (streq(config->args[0], "keygen")) {
            code = cd_curve_keygen_command(config->args + 1, config->n_args - 1, stdout, stderr);
        } else {
            fprintf(stderr, "cadred: unknown command '%s'\nTry 'cadred --help'.\n",
                    config->args[0]);
        }
        cd_config_destroy(&config);
        return code;
    }
    cd_log_level_t level = CD_LOG_INFO;
    cd_log_level_parse(config->log_level, &level);
    cd_log_set_level(level);
    if (sodium_init() < 0) {
        fprintf(stderr, "cadred: libsodium failed to initialise\n");
        return 1;
    }

    //  One socket pair per actor pipe, one inbox each, one PUSH per route:
    //  a node with thousands of agents needs far more than czmq's 1024.
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    zsys_handler_set(NULL);
    zsys_set_max_sockets(0); //  0: as many as the process may open
    zsys_set_linger(0);

    cd_node_t *node = NULL;
    int rc = cd_node_start(&config, started_us, &node, &errmsg);
    if (rc != 0) {
        cd_log_error("node", "start-up failed", "{s:s}", "error", errmsg ? errmsg : "unknown");
        fprintf(stderr, "cadred: %s\n", errmsg ? errmsg : "start-up failed");
        free(errmsg);
        close(signal_fd);
        return rc == CD_ECONFIG ? 2 : 1;
    }
    const cd_config_t *conf = cd_node_config(node);
    cd_log_info("node", "node up", "{s:s, s:s, s:i, s:s, s:s}", "node_id", cd_node_id(node),
                "data_dir", conf->data_dir, "agents", (int)conf->n_agents, "supervisor", "running",
                "http", cd_node_http_addr(node));
    printf("cadred %s: node %s up (data dir %s); supervisor running with %zu agent(s): ",
           CADRE_VERSION, cd_node_id(node), conf->data_dir, conf->n_agents);
    for (size_t i = 0; i < conf->n_agents; i++) {
        printf("%s%s", i ? ", " : "", conf->agents[i].name);
    }
    printf(". HTTP on %s. Ctrl-C stops it.\n", cd_node_http_addr(node));
    fflush(stdout);

    int code = s_run(node, signal_fd);
    bool hung = cd_node_stop(&node);
    cd_log_info("node", "stopped", "{s:i}", "exit_code", code);
    close(signal_fd);
    if (hung) {
        //  A thread stuck in agent code holds ZeroMQ sockets, and the
        //  context would wait for it forever at exit.
        _exit(code);
    }
    return code;
}
