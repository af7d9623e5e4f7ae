/*  cd_h2guard: budgets on what an HTTP/2 client sends (see cd_h2guard.h).

    The byte stream is cut into frames by reading only frame headers: a
    header may arrive split across reads, so up to 9 bytes are assembled in
    `head`; a payload is skipped by counting (`payload_left`). Each frame is
    judged as soon as its header is complete, from its length, type, flags
    and stream id alone, so a flood is caught before its payload has even
    arrived and before h2o sees the frame.

    Why these frames. Rapid reset is HEADERS + RST_STREAM pairs: h2o runs a
    handler for each HEADERS at once, and the reset frees the stream, so
    h2o's concurrent-stream limit never bites; only a budget on resets stops
    it. The CONTINUATION flood is a header block that never ends: h2o 2.2.5
    caps its bytes (H2O_MAX_REQLEN, ~400 KiB) but not its frame count, so
    zero-length CONTINUATIONs are free for the client and cost a parse each;
    a cap on frames per block, a lower cap on bytes, and a deadline on the
    block close it. PING and SETTINGS each make h2o queue an answer, and
    empty DATA or PRIORITY frames cost a lookup each (the 2019 flood family,
    CVE-2019-9512/9515/9518): they share one control budget. WINDOW_UPDATE
    is not counted: a fast download legitimately sends many, and h2o's
    handling of one is a counter update.

    A frame whose header is malformed for HTTP/2 (a DATA on stream 0, an
    oversized frame) is not our business: h2o rejects it with a GOAWAY. */
#include "cd_h2guard.h"

#include <string.h>

enum {
    S_DATA = 0x0,
    S_HEADERS = 0x1,
    S_PRIORITY = 0x2,
    S_RST_STREAM = 0x3,
    S_SETTINGS = 0x4,
    S_PUSH_PROMISE = 0x5,
    S_PING = 0x6,
    S_GOAWAY = 0x7,
    S_WINDOW_UPDATE = 0x8,
    S_CONTINUATION = 0x9
};

enum { S_END_STREAM = 0x1, S_END_HEADERS = 0x4 };

static const char s_preface[CD_H2GUARD_PREFACE_SIZE + 1] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static const char *const s_names[CD_H2GUARD_VERDICT_COUNT_] = {
    "ok",           "rapid_reset", "frame_flood", "header_flood", "header_timeout",
    "stream_flood", "bad_preface"};

const char *
cd_h2guard_verdict_name(cd_h2guard_verdict_t verdict)
{
    return verdict >= 0 && verdict < CD_H2GUARD_VERDICT_COUNT_ ? s_names[verdict] : "unknown";
}

//  Bucket size in thousandths: the burst, or one second's worth if unset.
static int64_t
s_bucket_cap(uint32_t rate, uint32_t burst)
{
    return (int64_t)(burst ? burst : rate) * 1000;
}

void
cd_h2guard_bucket_init(cd_h2guard_bucket_t *bucket, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
    bucket->milli = s_bucket_cap(rate, burst);
    bucket->at_ms = now_ms;
}

bool
cd_h2guard_bucket_take(cd_h2guard_bucket_t *bucket, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
    if (rate == 0) {
        return true;
    }
    if (now_ms > bucket->at_ms) {
        //  rate tokens per second = rate thousandths per millisecond. An hour
        //  refills any sane bucket and keeps the product far from overflow.
        uint64_t elapsed = now_ms - bucket->at_ms;
        elapsed = elapsed > 3600000 ? 3600000 : elapsed;
        int64_t cap = s_bucket_cap(rate, burst);
        int64_t milli = bucket->milli + (int64_t)elapsed * rate;
        bucket->milli = milli > cap ? cap : milli;
        bucket->at_ms = now_ms;
    }
    if (bucket->milli < 1000) {
        return false;
    }
    bucket->milli -= 1000;
    return true;
}

void
cd_h2guard_init(cd_h2guard_t *self, const cd_h2guard_limits_t *limits, bool expect_preface,
                uint64_t now_ms)
{
    memset(self, 0, sizeof *self);
    self->limits = limits;
    self->preface_left = expect_preface ? CD_H2GUARD_PREFACE_SIZE : 0;
    cd_h2guard_bucket_init(&self->resets, limits->resets_per_s, limits->resets_burst, now_ms);
    cd_h2guard_bucket_init(&self->control, limits->control_per_s, limits->control_burst, now_ms);
    cd_h2guard_bucket_init(&self->streams, limits->streams_per_s, limits->streams_burst, now_ms);
}

//  Judges one frame from its header.
static cd_h2guard_verdict_t
s_frame(cd_h2guard_t *self, uint64_t now_ms)
{
    const cd_h2guard_limits_t *limits = self->limits;
    const uint8_t *h = self->head;
    uint32_t length = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
    uint8_t type = h[3];
    uint8_t flags = h[4];
    uint32_t stream_id =
        ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) & 0x7fffffffu;
    self->payload_left = length;
    self->frames++;
    bool control = false;
    switch (type) {
    case S_HEADERS:
        if ((stream_id & 1) && stream_id > self->max_stream_id) {
            self->max_stream_id = stream_id;
            self->streams_opened++;
            if (!cd_h2guard_bucket_take(&self->streams, limits->streams_per_s,
                                        limits->streams_burst, now_ms)) {
                return CD_H2GUARD_STREAM_FLOOD;
            }
        }
        if (length > limits->max_header_block) {
            return CD_H2GUARD_HEADER_FLOOD;
        }
        if (!(flags & S_END_HEADERS)) {
            self->in_block = true;
            self->block_bytes = length;
            self->block_frames = 0;
            self->block_started_ms = now_ms;
        }
        break;
    case S_CONTINUATION:
        if (self->in_block) {
            self->block_frames++;
            self->block_bytes += length; //  length < 2^24: no overflow before the check
            if (self->block_frames > limits->max_continuations ||
                self->block_bytes > limits->max_header_block) {
                return CD_H2GUARD_HEADER_FLOOD;
            }
            if (flags & S_END_HEADERS) {
                self->in_block = false;
            }
        }
        break;
    case S_RST_STREAM:
        self->resets_seen++;
        if (!cd_h2guard_bucket_take(&self->resets, limits->resets_per_s, limits->resets_burst,
                                    now_ms)) {
            return CD_H2GUARD_RAPID_RESET;
        }
        break;
    case S_DATA:
        control = length == 0 && !(flags & S_END_STREAM);
        break;
    case S_WINDOW_UPDATE:
    case S_GOAWAY:
    case S_PUSH_PROMISE: //  a protocol error h2o answers with GOAWAY
        break;
    default: //  SETTINGS, PING, PRIORITY and unknown types
        control = true;
        break;
    }
    if (control && !cd_h2guard_bucket_take(&self->control, limits->control_per_s,
                                           limits->control_burst, now_ms)) {
        return CD_H2GUARD_FRAME_FLOOD;
    }
    return cd_h2guard_tick(self, now_ms);
}

cd_h2guard_verdict_t
cd_h2guard_feed(cd_h2guard_t *self, const uint8_t *data, size_t size, uint64_t now_ms)
{
    while (size > 0 && self->verdict == CD_H2GUARD_OK) {
        if (self->preface_left > 0) {
            size_t at = CD_H2GUARD_PREFACE_SIZE - self->preface_left;
            size_t n = size < self->preface_left ? size : self->preface_left;
            if (memcmp(data, s_preface + at, n) != 0) {
                self->verdict = CD_H2GUARD_BAD_PREFACE;
                break;
            }
            self->preface_left -= (uint32_t)n;
            data += n;
            size -= n;
        } else if (self->payload_left > 0) {
            size_t n = size < self->payload_left ? size : self->payload_left;
            self->payload_left -= (uint32_t)n;
            data += n;
            size -= n;
        } else {
            size_t n = CD_H2GUARD_FRAME_HEADER - self->head_have;
            n = size < n ? size : n;
            memcpy(self->head + self->head_have, data, n);
            self->head_have += (uint32_t)n;
            data += n;
            size -= n;
            if (self->head_have == CD_H2GUARD_FRAME_HEADER) {
                self->head_have = 0;
                self->verdict = s_frame(self, now_ms);
            }
        }
    }
    return self->verdict == CD_H2GUARD_OK ? cd_h2guard_tick(self, now_ms) : self->verdict;
}

cd_h2guard_verdict_t
cd_h2guard_tick(cd_h2guard_t *self, uint64_t now_ms)
{
    if (self->verdict == CD_H2GUARD_OK && self->in_block && self->limits->header_timeout_ms &&
        now_ms > self->block_started_ms + self->limits->header_timeout_ms) {
        self->verdict = CD_H2GUARD_HEADER_TIMEOUT;
    }
    return self->verdict;
}
