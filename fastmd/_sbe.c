/*
 * fastmd._sbe: the compiled decoder of Binance spot SBE market-data frames.
 *
 * The same rules, checks (in the same order) and results as the pure-Python implementation in
 * fastmd/core/sbe.py, which documents them; tests run both over the same frames. Policy stays in
 * Python: the decoder is given a `route(template, symbol_bytes) -> (symbol, message_cls,
 * event_cls)` callable (symbol validation, the stream's classes, bounded route tables) and an
 * `error(category, detail, stream) -> DecodeError` callable (counting, wording of the category).
 * This file only reads bytes and builds the events.
 *
 * Layout (little-endian; binance-protocol.md section 8): header u16 blockLength, u16 templateId,
 * u16 schemaId, u16 version; the root block; groups (trades: u16 blockLength, u32 count; depth
 * sides: u16 blockLength, u16 count); the symbol as u8 length + UTF-8 bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SCHEMA_ID 1
#define SCHEMA_VERSION 0
#define HEADER_SIZE 8
#define TEMPLATE_TRADES 10000
#define TEMPLATE_BEST_BID_ASK 10001
#define TEMPLATE_DEPTH_SNAPSHOT 10002
#define TEMPLATE_DEPTH_DIFF 10003
#define TRADE_ENTRY_SIZE 25
#define LEVEL_ENTRY_SIZE 16
#define CACHE_SLOTS 64 /* per template; a power of two */

enum { MODE_FLOAT = 0, MODE_STR = 1, MODE_DECIMAL = 2 };

static const Py_ssize_t ROOT_SIZES[4] = {18, 50, 18, 26};

/* 10**k is an exact double up to k = 22; a mantissa below 2**53 is exact too, so one IEEE
 * division or multiplication of the two is correctly rounded. */
static const double EXACT_POWERS[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};
#define INT53 ((int64_t)1 << 53)

typedef struct {
    PyObject *raw;         /* bytes: the symbol as sent, the cache key */
    PyObject *symbol;      /* str */
    PyObject *message_cls; /* the stream's Message subclass */
    PyObject *event_cls;   /* the event class to call */
} Route;

typedef struct {
    PyObject_HEAD
    PyObject *route;
    PyObject *error;
    PyObject *decimal;
    int price_mode;
    Route cache[4][CACHE_SLOTS];
} Decoder;

/* Little-endian reads: one unaligned load on little-endian machines, bytes assembled elsewhere. */
#if PY_LITTLE_ENDIAN
static inline uint16_t read_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t read_u32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline int64_t read_i64(const unsigned char *p) {
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
#else
static inline uint16_t read_u16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t read_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline int64_t read_i64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return (int64_t)v;
}
#endif

/* Raise the error the Python side builds for `category`; always returns NULL. */
static PyObject *fail(Decoder *self, const char *category, PyObject *stream, const char *format,
                      ...) {
    va_list args;
    va_start(args, format);
    PyObject *detail = PyUnicode_FromFormatV(format, args);
    va_end(args);
    if (detail == NULL) {
        return NULL;
    }
    PyObject *exc = PyObject_CallFunction(self->error, "sOO", category, detail,
                                          stream != NULL ? stream : Py_None);
    Py_DECREF(detail);
    if (exc == NULL) {
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *stream_of(const Route *route) {
    return PyObject_GetAttrString(route->message_cls, "stream");
}

/* An id or time must be non-negative; returns -1 (error set) when not. */
static int check_id(Decoder *self, const Route *route, const char *name, int64_t value) {
    if (value >= 0) {
        return 0;
    }
    PyObject *stream = stream_of(route);
    if (stream == NULL) {
        return -1;
    }
    fail(self, "out_of_range", stream, "%s is negative (%lld)", name, (long long)value);
    Py_DECREF(stream);
    return -1;
}

/* The exact decimal mantissa x 10**exponent, written with -exponent fraction digits. */
static PyObject *decimal_text(int64_t mantissa, int exponent) {
    char digits[32];
    char out[200];
    uint64_t magnitude = mantissa < 0 ? (uint64_t)0 - (uint64_t)mantissa : (uint64_t)mantissa;
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)magnitude);
    int at = 0;
    if (mantissa < 0) {
        out[at++] = '-';
    }
    if (exponent >= 0) {
        memcpy(out + at, digits, (size_t)n);
        at += n;
        if (magnitude != 0) {
            memset(out + at, '0', (size_t)exponent);
            at += exponent;
        }
    } else {
        int fraction = -exponent;
        int whole = n - fraction;
        if (whole <= 0) {
            out[at++] = '0';
            out[at++] = '.';
            memset(out + at, '0', (size_t)(-whole));
            at += -whole;
            memcpy(out + at, digits, (size_t)n);
            at += n;
        } else {
            memcpy(out + at, digits, (size_t)whole);
            at += whole;
            out[at++] = '.';
            memcpy(out + at, digits + whole, (size_t)fraction);
            at += fraction;
        }
    }
    return PyUnicode_FromStringAndSize(out, at);
}

static PyObject *number(Decoder *self, int64_t mantissa, int exponent) {
    if (self->price_mode == MODE_FLOAT) {
        double value;
        if (mantissa > -INT53 && mantissa < INT53 && exponent >= -22 && exponent <= 22) {
            value = exponent < 0 ? (double)mantissa / EXACT_POWERS[-exponent]
                                 : (double)mantissa * EXACT_POWERS[exponent];
        } else {
            /* Python's own correctly rounded string-to-double (David Gay's algorithm) */
            char text[48];
            snprintf(text, sizeof text, "%lldE%d", (long long)mantissa, exponent);
            value = PyOS_string_to_double(text, NULL, NULL);
            if (value == -1.0 && PyErr_Occurred()) {
                return NULL;
            }
        }
        return PyFloat_FromDouble(value);
    }
    PyObject *text = decimal_text(mantissa, exponent);
    if (text == NULL || self->price_mode == MODE_STR) {
        return text;
    }
    PyObject *result = PyObject_CallOneArg(self->decimal, text);
    Py_DECREF(text);
    return result;
}

/* A cache slot from the symbol's length and its first and last (up to) 8 bytes: symbols are
 * short, and a collision only costs a call to route(). */
static uint32_t symbol_hash(const unsigned char *p, Py_ssize_t n) {
    uint64_t head = 0, tail = 0;
    Py_ssize_t k = n < 8 ? n : 8;
    memcpy(&head, p, (size_t)k);
    memcpy(&tail, p + n - k, (size_t)k);
    uint64_t h = (head * 0x9E3779B97F4A7C15ull) ^ (tail * 0xC2B2AE3D27D4EB4Full) ^ (uint64_t)n;
    return (uint32_t)(h >> 40) ^ (uint32_t)h;
}

/* The route of `template`'s stream for the symbol bytes: from the cache, else from Python. */
static const Route *find_route(Decoder *self, int index, int template_id,
                               const unsigned char *raw, Py_ssize_t length) {
    Route *slot = &self->cache[index][symbol_hash(raw, length) & (CACHE_SLOTS - 1)];
    if (slot->raw != NULL && PyBytes_GET_SIZE(slot->raw) == length &&
        memcmp(PyBytes_AS_STRING(slot->raw), raw, (size_t)length) == 0) {
        return slot;
    }
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, length);
    if (key == NULL) {
        return NULL;
    }
    PyObject *found = PyObject_CallFunction(self->route, "iO", template_id, key);
    if (found == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 3) {
        Py_DECREF(key);
        Py_DECREF(found);
        PyErr_SetString(PyExc_TypeError, "route() must return (symbol, message_cls, event_cls)");
        return NULL;
    }
    Py_XDECREF(slot->raw);
    Py_XDECREF(slot->symbol);
    Py_XDECREF(slot->message_cls);
    Py_XDECREF(slot->event_cls);
    slot->raw = key;
    slot->symbol = Py_NewRef(PyTuple_GET_ITEM(found, 0));
    slot->message_cls = Py_NewRef(PyTuple_GET_ITEM(found, 1));
    slot->event_cls = Py_NewRef(PyTuple_GET_ITEM(found, 2));
    Py_DECREF(found);
    return slot;
}

/* message_cls(event_cls(*args)); steals nothing. */
static PyObject *message(const Route *route, PyObject *const *args, size_t nargs) {
    PyObject *event = PyObject_Vectorcall(route->event_cls, args, nargs, NULL);
    if (event == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(route->message_cls, &event, 1, NULL);
    Py_DECREF(event);
    return result;
}

typedef struct {
    Py_ssize_t offset; /* of the first entry */
    Py_ssize_t step;
    Py_ssize_t count;
} Group;

/* Check the group at *position fits the frame; returns -1 (error set) when it does not. */
static int read_group(Decoder *self, const unsigned char *data, Py_ssize_t size,
                      Py_ssize_t *position, int wide, Py_ssize_t entry_size, Group *group) {
    Py_ssize_t header = wide ? 6 : 4;
    if (*position + header > size) {
        fail(self, "truncated", NULL, "group header at byte %zd runs past the frame's %zd",
             *position, size);
        return -1;
    }
    uint16_t step = read_u16(data + *position);
    uint32_t count = wide ? read_u32(data + *position + 2) : read_u16(data + *position + 2);
    *position += header;
    if (step < entry_size) {
        fail(self, "block_too_short", NULL, "group entries of %u bytes; the schema's are %zd",
             (unsigned)step, entry_size);
        return -1;
    }
    if ((uint64_t)step * count > (uint64_t)(size - *position)) {
        fail(self, "truncated", NULL,
             "group of %lu entries of %u bytes runs past the frame's %zd bytes",
             (unsigned long)count, (unsigned)step, size);
        return -1;
    }
    group->offset = *position;
    group->step = step;
    group->count = (Py_ssize_t)count;
    *position += (Py_ssize_t)step * (Py_ssize_t)count;
    return 0;
}

static PyObject *levels(Decoder *self, const unsigned char *data, const Group *group,
                        int price_exp, int qty_exp) {
    PyObject *list = PyList_New(group->count);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < group->count; i++) {
        const unsigned char *entry = data + group->offset + i * group->step;
        PyObject *price = number(self, read_i64(entry), price_exp);
        if (price == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyObject *qty = number(self, read_i64(entry + 8), qty_exp);
        if (qty == NULL) {
            Py_DECREF(price);
            Py_DECREF(list);
            return NULL;
        }
        PyObject *level = PyTuple_New(2);
        if (level == NULL) {
            Py_DECREF(price);
            Py_DECREF(qty);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(level, 0, price);
        PyTuple_SET_ITEM(level, 1, qty);
        PyList_SET_ITEM(list, i, level);
    }
    return list;
}

static PyObject *decode_trades(Decoder *self, const unsigned char *data, const Route *route,
                               const Group *group) {
    int64_t event_time = read_i64(data + 8);
    int64_t transact_time = read_i64(data + 16);
    int price_exp = (int8_t)data[24];
    int qty_exp = (int8_t)data[25];
    if (check_id(self, route, "eventTime", event_time) < 0 ||
        check_id(self, route, "transactTime", transact_time) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *event_obj = NULL, *transact_obj = NULL;
    PyObject *messages = PyList_New(group->count);
    if (messages == NULL) {
        return NULL;
    }
    event_obj = PyLong_FromLongLong(event_time);
    transact_obj = PyLong_FromLongLong(transact_time);
    if (event_obj == NULL || transact_obj == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < group->count; i++) {
        const unsigned char *entry = data + group->offset + i * group->step;
        int64_t trade_id = read_i64(entry);
        unsigned maker = entry[24];
        if (check_id(self, route, "trade id", trade_id) < 0) {
            goto done;
        }
        if (maker > 1) {
            PyObject *stream = stream_of(route);
            if (stream != NULL) {
                fail(self, "wrong_type", stream, "isBuyerMaker is %u, not 0 or 1", maker);
                Py_DECREF(stream);
            }
            goto done;
        }
        PyObject *id_obj = PyLong_FromLongLong(trade_id);
        PyObject *price = id_obj ? number(self, read_i64(entry + 8), price_exp) : NULL;
        PyObject *qty = price ? number(self, read_i64(entry + 16), qty_exp) : NULL;
        PyObject *item = NULL;
        if (qty != NULL) {
            PyObject *args[7] = {event_obj, route->symbol, id_obj,       price,
                                 qty,       transact_obj,  maker ? Py_True : Py_False};
            item = message(route, args, 7);
        }
        Py_XDECREF(id_obj);
        Py_XDECREF(price);
        Py_XDECREF(qty);
        if (item == NULL) {
            goto done;
        }
        PyList_SET_ITEM(messages, i, item);
    }
    result = Py_NewRef(messages);
done:
    Py_XDECREF(event_obj);
    Py_XDECREF(transact_obj);
    Py_DECREF(messages);
    return result;
}

static PyObject *single(PyObject *item) {
    if (item == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(item);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, item);
    return list;
}

static PyObject *decode_best_bid_ask(Decoder *self, const unsigned char *data,
                                     const Route *route) {
    const unsigned char *root = data + HEADER_SIZE;
    int64_t event_time = read_i64(root);
    int64_t update_id = read_i64(root + 8);
    int price_exp = (int8_t)root[16];
    int qty_exp = (int8_t)root[17];
    if (check_id(self, route, "eventTime", event_time) < 0 ||
        check_id(self, route, "bookUpdateId", update_id) < 0) {
        return NULL;
    }
    PyObject *values[6] = {NULL};
    values[0] = PyLong_FromLongLong(update_id);
    values[1] = values[0] ? number(self, read_i64(root + 18), price_exp) : NULL;
    values[2] = values[1] ? number(self, read_i64(root + 26), qty_exp) : NULL;
    values[3] = values[2] ? number(self, read_i64(root + 34), price_exp) : NULL;
    values[4] = values[3] ? number(self, read_i64(root + 42), qty_exp) : NULL;
    values[5] = values[4] ? PyLong_FromLongLong(event_time) : NULL;
    PyObject *item = NULL;
    if (values[5] != NULL) {
        PyObject *args[7] = {values[0], route->symbol, values[1], values[2],
                             values[3], values[4],     values[5]};
        item = message(route, args, 7);
    }
    for (int i = 0; i < 6; i++) {
        Py_XDECREF(values[i]);
    }
    return single(item);
}

static PyObject *decode_depth(Decoder *self, const unsigned char *data, int template_id,
                              const Route *route, const Group *bids_group,
                              const Group *asks_group) {
    const unsigned char *root = data + HEADER_SIZE;
    int diff = template_id == TEMPLATE_DEPTH_DIFF;
    int64_t event_time = read_i64(root);
    int64_t first_id = read_i64(root + 8);
    int64_t last_id = diff ? read_i64(root + 16) : first_id;
    int exponents = diff ? 24 : 16;
    int price_exp = (int8_t)root[exponents];
    int qty_exp = (int8_t)root[exponents + 1];
    if (check_id(self, route, "eventTime", event_time) < 0) {
        return NULL;
    }
    if (diff) {
        if (check_id(self, route, "firstBookUpdateId", first_id) < 0 ||
            check_id(self, route, "lastBookUpdateId", last_id) < 0) {
            return NULL;
        }
    } else if (check_id(self, route, "bookUpdateId", first_id) < 0) {
        return NULL;
    }
    PyObject *item = NULL;
    PyObject *time_obj = PyLong_FromLongLong(event_time);
    PyObject *first_obj = time_obj ? PyLong_FromLongLong(first_id) : NULL;
    PyObject *last_obj = first_obj && diff ? PyLong_FromLongLong(last_id) : NULL;
    PyObject *bids = (first_obj && (last_obj || !diff))
                         ? levels(self, data, bids_group, price_exp, qty_exp)
                         : NULL;
    PyObject *asks = bids ? levels(self, data, asks_group, price_exp, qty_exp) : NULL;
    if (asks != NULL) {
        if (diff) {
            PyObject *args[6] = {time_obj, route->symbol, first_obj, last_obj, bids, asks};
            item = message(route, args, 6);
        } else {
            PyObject *args[4] = {first_obj, bids, asks, time_obj};
            item = message(route, args, 4);
        }
    }
    Py_XDECREF(time_obj);
    Py_XDECREF(first_obj);
    Py_XDECREF(last_obj);
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    return single(item);
}

static PyObject *decode_frame(Decoder *self, const unsigned char *data, Py_ssize_t size) {
    if (size < HEADER_SIZE) {
        return fail(self, "truncated", NULL,
                    "frame of %zd bytes is shorter than the 8-byte message header", size);
    }
    Py_ssize_t block_length = read_u16(data);
    int template_id = read_u16(data + 2);
    unsigned schema_id = read_u16(data + 4);
    unsigned version = read_u16(data + 6);
    if (schema_id != SCHEMA_ID) {
        return fail(self, "schema_mismatch", NULL,
                    "schemaId %u is not Binance's spot stream schema 1", schema_id);
    }
    if (version != SCHEMA_VERSION) {
        return fail(self, "unknown_version", NULL,
                    "schema 1 version %u is not known (this fastmd reads version 0)", version);
    }
    if (template_id < TEMPLATE_TRADES || template_id > TEMPLATE_DEPTH_DIFF) {
        return fail(self, "unknown_template", NULL, "templateId %d is not a stream event",
                    template_id);
    }
    int index = template_id - TEMPLATE_TRADES;
    if (block_length < ROOT_SIZES[index]) {
        return fail(self, "block_too_short", NULL,
                    "root block of %zd bytes; template %d needs %zd", block_length, template_id,
                    ROOT_SIZES[index]);
    }
    Py_ssize_t position = HEADER_SIZE + block_length;
    if (position > size) {
        return fail(self, "truncated", NULL, "root block of %zd bytes runs past the frame's %zd",
                    block_length, size);
    }
    Group groups[2];
    if (template_id == TEMPLATE_TRADES) {
        if (read_group(self, data, size, &position, 1, TRADE_ENTRY_SIZE, &groups[0]) < 0) {
            return NULL;
        }
    } else if (template_id != TEMPLATE_BEST_BID_ASK) {
        if (read_group(self, data, size, &position, 0, LEVEL_ENTRY_SIZE, &groups[0]) < 0 ||
            read_group(self, data, size, &position, 0, LEVEL_ENTRY_SIZE, &groups[1]) < 0) {
            return NULL;
        }
    }
    if (position >= size) {
        return fail(self, "truncated", NULL, "the symbol's length byte is past the frame's %zd",
                    size);
    }
    Py_ssize_t length = data[position];
    position += 1;
    if (position + length > size) {
        return fail(self, "truncated", NULL,
                    "symbol of %zd bytes runs past the frame's %zd bytes", length, size);
    }
    const Route *slot = find_route(self, index, template_id, data + position, length);
    if (slot == NULL) {
        return NULL;
    }
    /* Own references for the rest of the decode: an allocation below may run a finalizer that
     * lets another thread decode with this decoder and replace the cache slot. */
    Route route = {NULL, Py_NewRef(slot->symbol), Py_NewRef(slot->message_cls),
                   Py_NewRef(slot->event_cls)};
    PyObject *result;
    switch (template_id) {
    case TEMPLATE_TRADES:
        result = decode_trades(self, data, &route, &groups[0]);
        break;
    case TEMPLATE_BEST_BID_ASK:
        result = decode_best_bid_ask(self, data, &route);
        break;
    default:
        result = decode_depth(self, data, template_id, &route, &groups[0], &groups[1]);
        break;
    }
    Py_DECREF(route.symbol);
    Py_DECREF(route.message_cls);
    Py_DECREF(route.event_cls);
    return result;
}

static PyObject *Decoder_decode(Decoder *self, PyObject *frame) {
    if (PyBytes_CheckExact(frame)) { /* immutable and contiguous: no buffer to export */
        return decode_frame(self, (const unsigned char *)PyBytes_AS_STRING(frame),
                            PyBytes_GET_SIZE(frame));
    }
    Py_buffer view;
    if (PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = decode_frame(self, (const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return result;
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"route", "error", "price_mode", "decimal", NULL};
    PyObject *route, *error, *decimal;
    int price_mode;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOiO", names, &route, &error, &price_mode,
                                     &decimal)) {
        return -1;
    }
    if (!PyCallable_Check(route) || !PyCallable_Check(error) || !PyCallable_Check(decimal)) {
        PyErr_SetString(PyExc_TypeError, "route, error and decimal must be callable");
        return -1;
    }
    if (price_mode < MODE_FLOAT || price_mode > MODE_DECIMAL) {
        PyErr_SetString(PyExc_ValueError, "price_mode must be 0 (float), 1 (str) or 2 (Decimal)");
        return -1;
    }
    Py_XSETREF(self->route, Py_NewRef(route));
    Py_XSETREF(self->error, Py_NewRef(error));
    Py_XSETREF(self->decimal, Py_NewRef(decimal));
    self->price_mode = price_mode;
    return 0;
}

static int Decoder_traverse(Decoder *self, visitproc visit, void *arg) {
    Py_VISIT(self->route);
    Py_VISIT(self->error);
    Py_VISIT(self->decimal);
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < CACHE_SLOTS; i++) {
            Py_VISIT(self->cache[t][i].symbol);
            Py_VISIT(self->cache[t][i].message_cls);
            Py_VISIT(self->cache[t][i].event_cls);
        }
    }
    return 0;
}

static int Decoder_clear(Decoder *self) {
    Py_CLEAR(self->route);
    Py_CLEAR(self->error);
    Py_CLEAR(self->decimal);
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < CACHE_SLOTS; i++) {
            Py_CLEAR(self->cache[t][i].raw);
            Py_CLEAR(self->cache[t][i].symbol);
            Py_CLEAR(self->cache[t][i].message_cls);
            Py_CLEAR(self->cache[t][i].event_cls);
        }
    }
    return 0;
}

static void Decoder_dealloc(Decoder *self) {
    PyObject_GC_UnTrack(self);
    Decoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_O,
     "decode(frame) -> list of messages: one binary SBE frame (see fastmd.core.sbe)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastmd._sbe.Decoder",
    .tp_doc = PyDoc_STR("Decoder(route, error, price_mode, decimal): the compiled SBE decoder "
                        "behind fastmd.core.sbe.SbeDecoder."),
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_traverse = (traverseproc)Decoder_traverse,
    .tp_clear = (inquiry)Decoder_clear,
    .tp_methods = Decoder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastmd._sbe",
    .m_doc = "The compiled decoder of Binance spot SBE market-data frames (fastmd.core.sbe).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__sbe(void) {
    if (PyType_Ready(&DecoderType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
