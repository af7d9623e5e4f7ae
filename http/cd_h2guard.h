/*  cd_h2guard: a frame-level watchman in front of h2o's HTTP/2 parser.

    h2o 2.2.5 (Debian's) predates the fixes for HTTP/2 rapid reset
    (CVE-2023-44487) and the CONTINUATION flood (2024): it runs the request
    handler for every HEADERS frame however fast streams are reset, answers
    every PING and SETTINGS, and accepts CONTINUATION frames without a count
    limit (zero-length ones cost it nothing but CPU, forever). The guard sees
    every byte a client sends on an HTTP/2 connection before h2o does,
    splits it into frames (only the 9-byte frame headers are read; payloads
    are skipped, never copied) and keeps per-connection budgets:

      new streams     HEADERS on a new stream id, when a rate is configured
      resets          RST_STREAM frames from the client
      control frames  SETTINGS, PING, PRIORITY, empty DATA without
                      END_STREAM, frames of unknown type
      header blocks   bytes and CONTINUATION frames of one header block,
                      and how long the block stays open

    Budgets are token buckets (a rate per second and a burst). When one is
    exceeded the verdict turns from CD_H2GUARD_OK to the reason, and stays
    there: the caller closes the connection (GOAWAY ENHANCE_YOUR_CALM, then
    the socket), before h2o parses the offending bytes.

    It is a pure state machine over bytes, like a codec: no I/O, no clock of
    its own (times are passed in), no allocation. One guard per connection;
    not thread-safe (each connection belongs to the HTTP thread). */
#ifndef CD_HTTP_H2GUARD_H
#define CD_HTTP_H2GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_H2GUARD_PREFACE_SIZE 24 //  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define CD_H2GUARD_FRAME_HEADER 9  //  length(24) type(8) flags(8) stream(32)

//  Why a connection must be closed. Stable names for logs and metrics.
typedef enum {
    CD_H2GUARD_OK = 0,         //  nothing wrong
    CD_H2GUARD_RAPID_RESET,    //  RST_STREAM faster than the reset budget
    CD_H2GUARD_FRAME_FLOOD,    //  control or empty frames faster than their budget
    CD_H2GUARD_HEADER_FLOOD,   //  a header block too big or in too many CONTINUATIONs
    CD_H2GUARD_HEADER_TIMEOUT, //  a header block left unfinished too long
    CD_H2GUARD_STREAM_FLOOD,   //  new streams faster than the stream budget
    CD_H2GUARD_BAD_PREFACE,    //  not HTTP/2 (the preface did not match)
    CD_H2GUARD_VERDICT_COUNT_  //  number of verdicts, not a verdict
} cd_h2guard_verdict_t;

//  Limits of one connection. A rate of 0 disables that budget.
typedef struct {
    uint32_t max_header_block;  //  bytes in one header block (HEADERS + CONTINUATION payloads)
    uint32_t max_continuations; //  CONTINUATION frames in one header block
    uint32_t header_timeout_ms; //  a started header block must end within this (0: no limit)
    uint32_t resets_per_s;      //  client RST_STREAM: refill per second
    uint32_t resets_burst;      //  ... and bucket size
    uint32_t control_per_s;     //  control and empty frames: refill per second
    uint32_t control_burst;     //  ... and bucket size
    uint32_t streams_per_s;     //  new streams: refill per second (0: unlimited)
    uint32_t streams_burst;     //  ... and bucket size
} cd_h2guard_limits_t;

//  A token bucket in thousandths of a token, so refills need no division.
typedef struct {
    int64_t milli;  //  tokens x 1000
    uint64_t at_ms; //  last refill
} cd_h2guard_bucket_t;

//  Per-connection state. Fields are private to cd_h2guard.c except the
//  counters, which tests and metrics read.
typedef struct {
    const cd_h2guard_limits_t *limits;     //  borrowed; outlives the guard
    uint32_t preface_left;                 //  preface bytes still to check
    uint8_t head[CD_H2GUARD_FRAME_HEADER]; //  frame header being assembled
    uint32_t head_have;                    //  bytes of it so far
    uint32_t payload_left;                 //  payload bytes of the current frame to skip
    bool in_block;                         //  a header block is open (no END_HEADERS yet)
    uint32_t block_bytes;                  //  its payload bytes so far
    uint32_t block_frames;                 //  CONTINUATION frames in it so far
    uint64_t block_started_ms;             //  when its HEADERS arrived
    uint32_t max_stream_id;                //  highest client stream id seen in HEADERS
    cd_h2guard_bucket_t resets;            //  RST_STREAM budget
    cd_h2guard_bucket_t control;           //  control frame budget
    cd_h2guard_bucket_t streams;           //  new stream budget
    cd_h2guard_verdict_t verdict;          //  sticky once not OK
    uint64_t frames;                       //  frames seen
    uint64_t streams_opened;               //  new streams seen
    uint64_t resets_seen;                  //  RST_STREAM frames seen
} cd_h2guard_t;

//  Starts a guard for a connection whose first bytes are the client
//  preface (expect_preface true) or that starts at a frame boundary.
//  Buckets start full. limits is borrowed.
void cd_h2guard_init(cd_h2guard_t *self, const cd_h2guard_limits_t *limits, bool expect_preface,
                     uint64_t now_ms);

//  Feeds bytes the client sent, in order, in chunks of any size. Returns the
//  verdict after them (CD_H2GUARD_OK or the first reason found; once not OK
//  later calls return it at once without reading).
cd_h2guard_verdict_t cd_h2guard_feed(cd_h2guard_t *self, const uint8_t *data, size_t size,
                                     uint64_t now_ms);

//  Time-based checks only (a header block left open): for a periodic sweep.
cd_h2guard_verdict_t cd_h2guard_tick(cd_h2guard_t *self, uint64_t now_ms);

//  A token bucket of burst tokens (rate when burst is 0), refilled at rate
//  per second; starts full. The guard's budgets, also used for the
//  per-connection request rate.
void cd_h2guard_bucket_init(cd_h2guard_bucket_t *bucket, uint32_t rate, uint32_t burst,
                            uint64_t now_ms);

//  Takes one token: false when the bucket is empty. A rate of 0 always
//  gives one.
bool cd_h2guard_bucket_take(cd_h2guard_bucket_t *bucket, uint32_t rate, uint32_t burst,
                            uint64_t now_ms);

//  "ok", "rapid_reset", ... Static string.
const char *cd_h2guard_verdict_name(cd_h2guard_verdict_t verdict);

#endif
