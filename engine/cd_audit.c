/*  cd_audit: canonical audit rows, their hash chain and its verification
    (see cd_audit.h for the canonical form).

    Verification, row by row. A row whose recomputed hash differs from its
    stored one was EDITED. A row whose prev_hash is the hash of the row
    before is fine. Otherwise its link is broken, and the row after it
    (or, at the end, the expected head) says why:
      - the next link goes around the row (to the row before it): the row
        was INSERTED;
      - the row links back to an earlier good row (one of the last
        CD_AUDIT_RECENT) and the chain goes on through it: the rows between
        were INSERTED, each with a valid link of its own; if the chain does
        not go on through it, the row itself is the stranger (INSERTED,
        e.g. a copy of an earlier row);
      - the row links to nothing we saw: rows before it were DELETED (or
        the row before it was rewritten with a fresh hash, which looks the
        same).
    At the end, an expected head that is an earlier good row means rows
    were appended after it (INSERTED); any other mismatch means the chain
    was cut short (TRUNCATED).

    Interface: cd_audit_ts, cd_audit_canonical, cd_audit_hash,
    cd_audit_seal, cd_audit_row_parse, cd_audit_rows_parse, cd_audit_rows_free,
    cd_audit_row_fini,
    cd_audit_verifier_init, cd_audit_verifier_feed, cd_audit_verifier_end,
    cd_audit_verify. */
#include "cd_audit.h"
#include "cd_error.h"

#include <arpa/inet.h>
#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *
s_need(void *ptr)
{
    if (!ptr) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return ptr;
}

//  --- a growing string --------------------------------------------------------------

typedef struct {
    char *data;  //  NUL-terminated
    size_t len;  //  bytes used
    size_t size; //  bytes allocated
} s_buf_t;

static void
s_put(s_buf_t *buf, const char *bytes, size_t n)
{
    if (buf->len + n + 1 > buf->size) {
        size_t size = buf->size ? buf->size : 256;
        while (buf->len + n + 1 > size) {
            size *= 2;
        }
        buf->data = s_need(realloc(buf->data, size));
        buf->size = size;
    }
    memcpy(buf->data + buf->len, bytes, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
}

static void
s_puts(s_buf_t *buf, const char *text)
{
    s_put(buf, text, strlen(text));
}

//  A JSON string with the minimal, fixed escaping of the canonical form.
static void
s_put_string(s_buf_t *buf, const char *text, size_t len)
{
    s_puts(buf, "\"");
    size_t run = 0; //  start of the bytes not yet written
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\' || c < 0x20) {
            s_put(buf, text + run, i - run);
            char escaped[8];
            if (c == '"' || c == '\\') {
                snprintf(escaped, sizeof escaped, "\\%c", c);
            } else {
                snprintf(escaped, sizeof escaped, "\\u%04x", c);
            }
            s_puts(buf, escaped);
            run = i + 1;
        }
    }
    s_put(buf, text + run, len - run);
    s_puts(buf, "\"");
}

static void
s_put_number(s_buf_t *buf, double value)
{
    char text[40];
    value += 0.0; //  -0 + +0 is +0 (and nothing else changes): jsonb has no -0
    if (value == floor(value) && fabs(value) < 9007199254740992.0) {
        snprintf(text, sizeof text, "%.0f", value);
    } else {
        snprintf(text, sizeof text, "%.17g", value);
    }
    s_puts(buf, text);
}

static int
s_cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

//  Canonical JSON of a value decoded with JSON_DECODE_INT_AS_REAL (so
//  every number is a real). jansson bounds the depth when decoding.
static void
s_put_json(s_buf_t *buf, json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(value);
        const char **keys = s_need(calloc(n ? n : 1, sizeof *keys));
        size_t k = 0;
        const char *key;
        json_t *member;
        json_object_foreach(value, key, member)
        {
            keys[k++] = key;
        }
        qsort(keys, n, sizeof *keys, s_cmp_keys);
        s_puts(buf, "{");
        for (k = 0; k < n; k++) {
            if (k) {
                s_puts(buf, ",");
            }
            s_put_string(buf, keys[k], strlen(keys[k]));
            s_puts(buf, ":");
            s_put_json(buf, json_object_get(value, keys[k]));
        }
        s_puts(buf, "}");
        free(keys);
        break;
    }
    case JSON_ARRAY:
        s_puts(buf, "[");
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (i) {
                s_puts(buf, ",");
            }
            s_put_json(buf, json_array_get(value, i));
        }
        s_puts(buf, "]");
        break;
    case JSON_STRING:
        s_put_string(buf, json_string_value(value), json_string_length(value));
        break;
    case JSON_REAL:
        s_put_number(buf, json_real_value(value));
        break;
    case JSON_INTEGER:
        //  Not produced with JSON_DECODE_INT_AS_REAL; kept for safety.
        s_put_number(buf, (double)json_integer_value(value));
        break;
    case JSON_TRUE:
        s_puts(buf, "true");
        break;
    case JSON_FALSE:
        s_puts(buf, "false");
        break;
    default:
        s_puts(buf, "null");
        break;
    }
}

//  --- canonical form -----------------------------------------------------------------

void
cd_audit_ts(int64_t unix_us, char out[CD_AUDIT_TS_LEN + 1])
{
    int64_t seconds = unix_us / 1000000;
    int64_t micros = unix_us % 1000000;
    if (micros < 0) {
        micros += 1000000;
        seconds -= 1;
    }
    time_t t = (time_t)seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, CD_AUDIT_TS_LEN + 1, "%.19s.%06dZ", date, (int)micros);
}

//  "YYYY-MM-DDTHH:MM:SS.ffffffZ" exactly.
static bool
s_valid_ts(const char *ts)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (!ts || strnlen(ts, CD_AUDIT_TS_LEN + 1) != CD_AUDIT_TS_LEN) {
        return false;
    }
    for (size_t i = 0; i < CD_AUDIT_TS_LEN; i++) {
        bool ok = pattern[i] == 'd' ? ts[i] >= '0' && ts[i] <= '9' : ts[i] == pattern[i];
        if (!ok) {
            return false;
        }
    }
    return true;
}

static int
s_fail(const char **why, const char *text, int rc)
{
    if (why) {
        *why = text;
    }
    return rc;
}

int
cd_audit_canonical(const cd_audit_row_t *row, char **out, size_t *len, const char **why)
{
    if (!s_valid_ts(row->ts)) {
        return s_fail(why, "ts is not YYYY-MM-DDTHH:MM:SS.ffffffZ", CD_EINVAL);
    }
    if (!row->action || !*row->action) {
        return s_fail(why, "action is missing", CD_EINVAL);
    }
    char ip[INET6_ADDRSTRLEN] = "";
    if (row->ip) {
        uint8_t addr[16];
        int family = inet_pton(AF_INET, row->ip, addr) == 1    ? AF_INET
                     : inet_pton(AF_INET6, row->ip, addr) == 1 ? AF_INET6
                                                               : 0;
        if (!family || !inet_ntop(family, addr, ip, sizeof ip)) {
            return s_fail(why, "ip is not an IPv4 or IPv6 address", CD_EINVAL);
        }
    }
    const char *details_text = row->details ? row->details : "{}";
    size_t details_len = strlen(details_text);
    if (details_len > CD_AUDIT_DETAILS_MAX) {
        return s_fail(why, "details are too large", CD_ETOOBIG);
    }
    json_t *details =
        json_loadb(details_text, details_len,
                   JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, NULL);
    if (!details) {
        return s_fail(why, "details are not JSON (or repeat a key)", CD_EINVAL);
    }
    s_buf_t buf = {NULL, 0, 0};
    s_puts(&buf, "[\"" CD_AUDIT_VERSION "\",");
    s_put_string(&buf, row->ts, CD_AUDIT_TS_LEN);
    s_puts(&buf, ",");
    if (row->user_id == CD_AUDIT_NO_USER) {
        s_puts(&buf, "null");
    } else {
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)row->user_id);
        s_puts(&buf, id);
    }
    s_puts(&buf, ",");
    s_put_string(&buf, row->action, strlen(row->action));
    s_puts(&buf, ",");
    if (row->target) {
        s_put_string(&buf, row->target, strlen(row->target));
    } else {
        s_puts(&buf, "null");
    }
    s_puts(&buf, ",");
    s_put_json(&buf, details);
    json_decref(details);
    s_puts(&buf, ",");
    if (row->ip) {
        s_put_string(&buf, ip, strlen(ip));
    } else {
        s_puts(&buf, "null");
    }
    s_puts(&buf, "]");
    *out = buf.data;
    *len = buf.len;
    return 0;
}

int
cd_audit_hash(const uint8_t prev[CD_AUDIT_HASH_BYTES], const cd_audit_row_t *row,
              uint8_t out[CD_AUDIT_HASH_BYTES], const char **why)
{
    char *text = NULL;
    size_t len = 0;
    int rc = cd_audit_canonical(row, &text, &len, why);
    if (rc != 0) {
        return rc;
    }
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, CD_AUDIT_HASH_BYTES);
    crypto_generichash_update(&state, prev, CD_AUDIT_HASH_BYTES);
    crypto_generichash_update(&state, (const unsigned char *)text, len);
    crypto_generichash_final(&state, out, CD_AUDIT_HASH_BYTES);
    free(text);
    return 0;
}

int
cd_audit_seal(cd_audit_row_t *row, const uint8_t *prev, const char **why)
{
    uint8_t link[CD_AUDIT_HASH_BYTES] = {0};
    if (prev) {
        memcpy(link, prev, sizeof link);
    }
    uint8_t hash[CD_AUDIT_HASH_BYTES];
    int rc = cd_audit_hash(link, row, hash, why);
    if (rc == 0) {
        memcpy(row->prev_hash, link, sizeof link);
        memcpy(row->hash, hash, sizeof hash);
    }
    return rc;
}

//  --- rows from JSON -------------------------------------------------------------------

//  An integer member (read as a real) that is whole and exact.
static bool
s_json_int(json_t *value, int64_t *out)
{
    if (!json_is_number(value)) {
        return false;
    }
    double v = json_number_value(value);
    if (v != floor(v) || fabs(v) >= 9007199254740992.0) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

//  A hash member: 64 hex characters, or null (zeros).
static bool
s_json_hash(json_t *value, uint8_t out[CD_AUDIT_HASH_BYTES])
{
    memset(out, 0, CD_AUDIT_HASH_BYTES);
    if (json_is_null(value)) {
        return true;
    }
    size_t n = 0;
    const char *hex = json_string_value(value);
    return hex && json_string_length(value) == 2 * CD_AUDIT_HASH_BYTES &&
           sodium_hex2bin(out, CD_AUDIT_HASH_BYTES, hex, 2 * CD_AUDIT_HASH_BYTES, NULL, &n, NULL) ==
               0 &&
           n == CD_AUDIT_HASH_BYTES;
}

//  A string member or null; false for anything else or an embedded NUL.
static bool
s_json_opt_string(json_t *value, const char **out)
{
    if (!value || json_is_null(value)) {
        *out = NULL;
        return true;
    }
    *out = json_string_value(value);
    return *out && strlen(*out) == json_string_length(value);
}

//  Fills row from one decoded entry (see cd_audit_row_parse).
static int
s_row_from_json(json_t *root, cd_audit_row_t *row, const char **why)
{
    memset(row, 0, sizeof *row);
    if (!json_is_object(root)) {
        return s_fail(why, "not a JSON object", CD_EPROTO);
    }
    int rc = CD_EPROTO;
    const char *ts = NULL, *action = NULL, *target = NULL, *ip = NULL;
    char *details = NULL;
    json_t *user = json_object_get(root, "user_id");
    json_t *details_value = json_object_get(root, "details");
    if (!s_json_int(json_object_get(root, "id"), &row->id)) {
        s_fail(why, "id is not an integer", 0);
        goto done;
    }
    if (json_is_null(user) || !user) {
        row->user_id = CD_AUDIT_NO_USER;
    } else if (!s_json_int(user, &row->user_id)) {
        s_fail(why, "user_id is not an integer", 0);
        goto done;
    }
    if (!s_json_opt_string(json_object_get(root, "ts"), &ts) || !ts ||
        !s_json_opt_string(json_object_get(root, "action"), &action) || !action ||
        !s_json_opt_string(json_object_get(root, "target"), &target) ||
        !s_json_opt_string(json_object_get(root, "ip"), &ip)) {
        s_fail(why, "ts, action, target or ip is not a string", 0);
        goto done;
    }
    if (!s_json_hash(json_object_get(root, "prev_hash"), row->prev_hash) ||
        !s_json_hash(json_object_get(root, "hash"), row->hash)) {
        s_fail(why, "prev_hash or hash is not 64 hex characters", 0);
        goto done;
    }
    //  details as text: given as such, or the value written canonically
    //  (which reads back to the same canonical form).
    if (json_is_string(details_value)) {
        details = s_need(strdup(json_string_value(details_value)));
    } else if (details_value) {
        s_buf_t buf = {NULL, 0, 0};
        s_put_json(&buf, details_value);
        details = buf.data;
    }
    size_t sizes[5] = {strlen(ts) + 1, strlen(action) + 1, target ? strlen(target) + 1 : 0,
                       details ? strlen(details) + 1 : 0, ip ? strlen(ip) + 1 : 0};
    const char *sources[5] = {ts, action, target, details, ip};
    const char **fields[5] = {&row->ts, &row->action, &row->target, &row->details, &row->ip};
    row->owned = s_need(malloc(sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4]));
    char *at = row->owned;
    for (int f = 0; f < 5; f++) {
        if (sources[f]) {
            memcpy(at, sources[f], sizes[f]);
            *fields[f] = at;
            at += sizes[f];
        }
    }
    rc = 0;
done:
    free(details);
    if (rc != 0) {
        memset(row, 0, sizeof *row);
    }
    return rc;
}

//  Entries are decoded with every number as a double, as the canonical
//  form reads details (ids are exact below 2^53).
static const size_t s_decode_flags = JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES;

int
cd_audit_row_parse(const char *json, size_t len, cd_audit_row_t *row, const char **why)
{
    json_t *root = json_loadb(json, len, s_decode_flags, NULL);
    int rc = s_row_from_json(root, row, why);
    json_decref(root);
    return rc;
}

int
cd_audit_rows_parse(const char *json, size_t len, cd_audit_row_t **rows, size_t *n,
                    const char **why)
{
    *rows = NULL;
    *n = 0;
    json_t *root = json_loadb(json, len, s_decode_flags, NULL);
    if (!json_is_array(root)) {
        json_decref(root);
        return s_fail(why, "not a JSON array", CD_EPROTO);
    }
    size_t count = json_array_size(root);
    cd_audit_row_t *out = s_need(calloc(count ? count : 1, sizeof *out));
    for (size_t i = 0; i < count; i++) {
        int rc = s_row_from_json(json_array_get(root, i), &out[i], why);
        if (rc != 0) {
            cd_audit_rows_free(&out, i);
            json_decref(root);
            return rc;
        }
    }
    json_decref(root);
    *rows = out;
    *n = count;
    return 0;
}

void
cd_audit_rows_free(cd_audit_row_t **rows_p, size_t n)
{
    if (!rows_p || !*rows_p) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        cd_audit_row_fini(&(*rows_p)[i]);
    }
    free(*rows_p);
    *rows_p = NULL;
}

void
cd_audit_row_fini(cd_audit_row_t *row)
{
    if (!row) {
        return;
    }
    free(row->owned);
    memset(row, 0, sizeof *row);
}

//  --- verification ---------------------------------------------------------------------

void
cd_audit_verifier_init(cd_audit_verifier_t *self, const uint8_t *start)
{
    memset(self, 0, sizeof *self);
    if (start) {
        memcpy(self->last, start, CD_AUDIT_HASH_BYTES);
    }
}

static bool
s_found(cd_audit_verifier_t *self, cd_audit_verdict_t verdict, size_t index, int64_t id,
        const char *why)
{
    self->finding = (cd_audit_finding_t){verdict, index, id, why};
    return false;
}

//  The ring entry holding hash, or -1.
static int
s_recent(const cd_audit_verifier_t *self, const uint8_t hash[CD_AUDIT_HASH_BYTES])
{
    for (size_t k = 0; k < CD_AUDIT_RECENT && k < self->n_good; k++) {
        if (memcmp(self->recent[k].hash, hash, CD_AUDIT_HASH_BYTES) == 0) {
            return (int)k;
        }
    }
    return -1;
}

//  The ring slot of the good row after the one in slot k. It exists and
//  was not overwritten: k is not the newest (or the link would not be
//  broken), and slots are reused in the order they were filled.
static size_t
s_after(int k)
{
    return ((size_t)k + 1) % CD_AUDIT_RECENT;
}

static void
s_good(cd_audit_verifier_t *self, const cd_audit_row_t *row, size_t index)
{
    size_t slot = self->n_good % CD_AUDIT_RECENT;
    memcpy(self->recent[slot].hash, row->hash, CD_AUDIT_HASH_BYTES);
    self->recent[slot].index = index;
    self->recent[slot].id = row->id;
    self->n_good++;
    memcpy(self->last, row->hash, CD_AUDIT_HASH_BYTES);
}

//  Decides a broken link (the pending row) from the row after it, or
//  (row NULL) from the expected head at the end.
static bool
s_decide(cd_audit_verifier_t *self, const cd_audit_row_t *row, bool intact, const uint8_t *head)
{
    const uint8_t *next_link = row ? (intact ? row->prev_hash : NULL) : head;
    if (next_link && memcmp(next_link, self->pending_expected, CD_AUDIT_HASH_BYTES) == 0) {
        return s_found(self, CD_AUDIT_INSERTED, self->pending_index, self->pending_id,
                       "the chain goes around this row: it was inserted");
    }
    if (self->pending_back >= 0) {
        bool through = next_link && memcmp(next_link, self->last, CD_AUDIT_HASH_BYTES) == 0;
        if (through) {
            size_t first = s_after(self->pending_back);
            return s_found(self, CD_AUDIT_INSERTED, self->recent[first].index,
                           self->recent[first].id,
                           "the chain skips this row and the ones up to the next link: they "
                           "were inserted");
        }
        //  Nothing after it links through it: the row that links back is
        //  the stranger (a copy of an earlier row, say).
        return s_found(self, CD_AUDIT_INSERTED, self->pending_index, self->pending_id,
                       "this row repeats an earlier link: it was inserted");
    }
    return s_found(self, CD_AUDIT_DELETED, self->pending_index, self->pending_id,
                   "this row links to a row that is gone: rows before it were deleted "
                   "(or the row before it was rewritten)");
}

bool
cd_audit_verifier_feed(cd_audit_verifier_t *self, const cd_audit_row_t *row)
{
    if (self->finding.verdict != CD_AUDIT_INTACT) {
        return false;
    }
    size_t index = self->fed++;
    uint8_t hash[CD_AUDIT_HASH_BYTES];
    const char *why = NULL;
    bool readable = cd_audit_hash(row->prev_hash, row, hash, &why) == 0;
    bool intact = readable && sodium_memcmp(hash, row->hash, sizeof hash) == 0;
    //  A broken link on the row before comes first: it is the earlier row.
    if (self->pending) {
        return s_decide(self, row, intact, NULL);
    }
    if (!readable) {
        return s_found(self, CD_AUDIT_UNREADABLE, index, row->id, why);
    }
    if (!intact) {
        return s_found(self, CD_AUDIT_EDITED, index, row->id,
                       "the row's content does not match its hash: it was edited");
    }
    if (memcmp(row->prev_hash, self->last, CD_AUDIT_HASH_BYTES) == 0) {
        s_good(self, row, index);
        return true;
    }
    //  A broken link: rows deleted before this one, rows inserted before
    //  it (it links back to an earlier row), or this row itself inserted.
    //  The next row (or the head) decides.
    self->pending = true;
    self->pending_index = index;
    self->pending_id = row->id;
    self->pending_back = s_recent(self, row->prev_hash);
    memcpy(self->pending_expected, self->last, CD_AUDIT_HASH_BYTES);
    memcpy(self->last, row->hash, CD_AUDIT_HASH_BYTES);
    return true;
}

cd_audit_verdict_t
cd_audit_verifier_end(cd_audit_verifier_t *self, const uint8_t *head, cd_audit_finding_t *finding)
{
    if (self->finding.verdict == CD_AUDIT_INTACT && self->pending) {
        s_decide(self, NULL, false, head);
    } else if (self->finding.verdict == CD_AUDIT_INTACT && head &&
               memcmp(head, self->last, CD_AUDIT_HASH_BYTES) != 0) {
        int k = s_recent(self, head);
        if (k >= 0) {
            size_t first = s_after(k);
            s_found(self, CD_AUDIT_INSERTED, self->recent[first].index, self->recent[first].id,
                    "rows after the chain's head were appended");
        } else {
            s_found(self, CD_AUDIT_TRUNCATED, self->fed, 0,
                    "the chain ends before its expected head: rows at the end were deleted");
        }
    }
    if (finding) {
        *finding = self->finding;
        if (self->finding.verdict == CD_AUDIT_INTACT) {
            finding->why = "intact";
        }
    }
    return self->finding.verdict;
}

cd_audit_verdict_t
cd_audit_verify(const cd_audit_row_t *rows, size_t n, const uint8_t *head,
                cd_audit_finding_t *finding)
{
    cd_audit_verifier_t verifier;
    cd_audit_verifier_init(&verifier, NULL);
    for (size_t i = 0; i < n && cd_audit_verifier_feed(&verifier, &rows[i]); i++) {
    }
    return cd_audit_verifier_end(&verifier, head, finding);
}
