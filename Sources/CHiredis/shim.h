#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H
// hiredis is used only as the RESP codec (reader + command formatter); NIO owns the sockets.
// Debian bookworm ships hiredis 0.14.1: use only API that version has.
#include <stdlib.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>

// hiredis' default reply builder turns both a nil bulk string (`$-1`) and a nil array (`*-1`) into
// REDIS_REPLY_NIL. The reader made by chiredis_reader_create keeps them apart: a nil array comes out with this
// type instead. Every other reply is built by hiredis' own functions, so freeReplyObject still frees them all
// (it frees only `str` and `element`, which a nil reply does not have).
#define CHIREDIS_REPLY_NIL_ARRAY 100

typedef struct chiredis_reader_functions {
    redisReplyObjectFunctions functions; // what the reader calls: hiredis' defaults, createNil replaced
    void *(*default_create_nil)(const redisReadTask *task);
} chiredis_reader_functions;

static inline void *chiredis_create_nil(const redisReadTask *task) {
    const chiredis_reader_functions *table = (const chiredis_reader_functions *)task->privdata;
    redisReply *reply = (redisReply *)table->default_create_nil(task);
    if (reply != NULL && task->type == REDIS_REPLY_ARRAY) {
        reply->type = CHIREDIS_REPLY_NIL_ARRAY;
    }
    return reply;
}

/// A reader like redisReaderCreate()'s, whose nil arrays have the type CHIREDIS_REPLY_NIL_ARRAY.
/// Free it with chiredis_reader_free, never with redisReaderFree alone. Returns NULL when out of memory.
static inline redisReader *chiredis_reader_create(void) {
    redisReader *reader = redisReaderCreate();
    if (reader == NULL) {
        return NULL;
    }
    chiredis_reader_functions *table = (chiredis_reader_functions *)malloc(sizeof(chiredis_reader_functions));
    if (table == NULL) {
        redisReaderFree(reader);
        return NULL;
    }
    table->functions = *reader->fn;
    table->default_create_nil = reader->fn->createNil;
    table->functions.createNil = chiredis_create_nil;
    reader->fn = &table->functions;
    reader->privdata = table; // hiredis hands it to every read task
    return reader;
}

static inline void chiredis_reader_free(redisReader *reader) {
    if (reader == NULL) {
        return;
    }
    void *table = reader->privdata;
    redisReaderFree(reader); // may free a half-built reply through reader->fn: the table must outlive it
    free(table);
}

/// The reader's error text, or NULL when the reader is not in an error state.
static inline const char *chiredis_reader_error(const redisReader *reader) {
    return reader->err != 0 ? reader->errstr : NULL;
}

#endif
