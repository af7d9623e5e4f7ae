/*  cd_exec: the exec agent: runs a configured command for each step.

    Config (API.md "Agents"; admin-only to create, like every agent):
        {"argv": ["/usr/bin/wc", "-c"],   required: a non-empty array of
                                          strings, argv[0] an absolute path;
                                          no shell is involved
         "timeout_ms": 10000,             per step, 1..86400000
         "env": {"LANG": "C.UTF-8"},      the child's whole environment
                                          (never the node's: it holds
                                          secrets); PATH=/usr/local/bin:
                                          /usr/bin:/bin unless given
         "max_output_bytes": 1048576}     stdout bound, 1..16 MiB

    A step (cd_agent_proto.h; a message without the `step` header is
    handled the same way, its payload being the input) runs argv with the
    step's input on stdin: a string input is written raw, anything else as
    its JSON text (a bin payload raw). Answers, to reply_to with parent_id
    = the step's id:
      exit 0       result {"output": <stdout as JSON if it parses as one
                   JSON value, else as a string>}
      exit != 0    error {"code": "exit_status", "message": "exited with
                   status N: <stderr tail>", "retryable": true} (killed by
                   a signal: "killed by signal N: ...")
      timeout      error {"code": "timeout", "retryable": true}: after
                   timeout_ms or at the step's deadline, whichever is
                   first, the child's process group is killed (SIGKILL)
      too much     error {"code": "output_too_large", "retryable": false}
                   (stdout beyond max_output_bytes; the group is killed)
      bad output   error {"code": "malformed_output", "retryable": false}
                   (stdout that is neither JSON nor UTF-8 text)
      no start     error {"code": "spawn_failed", "retryable": true}
                   (pipes or fork failed); a program that cannot be
                   executed exits 127 with the reason on stderr
    The stderr tail is the last CD_EXEC_STDERR_TAIL bytes. A `control`
    op=cancel kills the step's child (by parent_id = the step's id, or
    task_id) and answers nothing; a queued step is dropped.

    Concurrency: up to `concurrency` children at once (the agent's
    concurrency, from the factory; at most CD_EXEC_MAX_CONCURRENCY), later
    steps wait in a FIFO queue. The orchestrator never sends more than
    the concurrency, so the queue only absorbs direct callers.

    Never blocking: the child is started with fork + execve (posix_spawn
    cannot set PR_SET_PDEATHSIG, below; the child runs only
    async-signal-safe calls before execve); its stdin, stdout and stderr
    are non-blocking pipes watched from the actor's loop
    (cd_actor_watch_fd_events), and it is reaped through a pidfd
    (pidfd_open, Linux >= 5.3; without one, waitpid(WNOHANG) on a 20 ms
    timer). SIGPIPE is blocked in the actor's thread: a child that does not
    read its stdin only ends the writing.

    A child never outlives the node: it leads its own process group, which
    is killed (SIGKILL) on timeout, cancel, a too-large output, when the
    child has exited (stragglers it left in the group; done while it is a
    zombie, so the group id cannot have been reused), and when the actor
    stops: fini kills and reaps every child and answers the steps it
    still owed (running or queued) error {"code": "agent_stopped",
    "retryable": true}. The child also sets
    PR_SET_PDEATHSIG(SIGKILL), checking getppid() afterwards for the race
    with a parent that died first. Linux ties that signal to the thread
    that forked, i.e. this actor's thread: a crashed or restarted exec
    actor takes its children with it, which is what is wanted. Every fd of
    the node is closed in the child (close_range) and signal dispositions
    and the mask are reset.

    Threads: the actor's own thread only. */
#ifndef CD_ACTORS_EXEC_H
#define CD_ACTORS_EXEC_H

#include "cd_actor.h"

#include <jansson.h>
#include <stddef.h>

#define CD_EXEC_TIMEOUT_MS 10000             //  default per step
#define CD_EXEC_MAX_TIMEOUT_MS 86400000      //  one day
#define CD_EXEC_MAX_OUTPUT (1u << 20)        //  default stdout bound
#define CD_EXEC_MAX_OUTPUT_LIMIT (16u << 20) //  largest bound a config may set
#define CD_EXEC_STDERR_TAIL 2048             //  bytes of stderr kept for messages
#define CD_EXEC_MAX_ARGS 256                 //  entries of argv
#define CD_EXEC_MAX_ARG 4096                 //  bytes of one argument or env value
#define CD_EXEC_MAX_ENV 128                  //  entries of env
#define CD_EXEC_MAX_CONCURRENCY 64           //  children at once

typedef struct {
    char **argv;       //  NULL-terminated; argv[0] an absolute path
    char **envp;       //  NULL-terminated "NAME=value": the child's environment
    int timeout_ms;    //  per step
    size_t max_output; //  stdout bound in bytes
    int concurrency;   //  children at once, 1..CD_EXEC_MAX_CONCURRENCY
} cd_exec_args_t;

extern const cd_actor_ops_t cd_exec_ops;

//  Builds args from an agent's JSON config (NULL: none, which lacks argv)
//  and its concurrency (<= 0: 1). Returns 0 and *out (caller owns:
//  cd_exec_args_destroy), or CD_EINVAL with why naming the key
//  ("config.argv: ...").
int cd_exec_args_new(const json_t *config, int concurrency, cd_exec_args_t **out, char *why,
                     size_t why_size);

//  Safe on NULL and twice; nulls *self_p.
void cd_exec_args_destroy(cd_exec_args_t **self_p);

#endif
