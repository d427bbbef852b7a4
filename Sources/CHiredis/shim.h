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

// Most elements one array reply may announce. hiredis 0.14 callocs the element pointers as soon as it reads an
// array header, so without a limit the 13 bytes `*2147483647\r\n` cost 16 GB (found by fuzzing). 4M elements
// (32 MB of pointers) is far above any reply this server asks for.
#define CHIREDIS_MAX_ARRAY_ELEMENTS 4194304
#define CHIREDIS_MAX_ARRAY_ELEMENTS_TEXT "4194304"

typedef struct chiredis_reader_functions {
    redisReplyObjectFunctions functions; // what the reader calls: hiredis' defaults, createNil and createArray replaced
    void *(*default_create_nil)(const redisReadTask *task);
    void *(*default_create_array)(const redisReadTask *task, int elements);
    int refused_array; // set when an array header beyond CHIREDIS_MAX_ARRAY_ELEMENTS stopped the reader
} chiredis_reader_functions;

/// Refuses an array header beyond the limit: NULL makes hiredis stop with an error (reported as out of memory;
/// chiredis_reader_error says why).
static inline void *chiredis_create_array(const redisReadTask *task, int elements) {
    chiredis_reader_functions *table = (chiredis_reader_functions *)task->privdata;
    if (elements > CHIREDIS_MAX_ARRAY_ELEMENTS) {
        table->refused_array = 1;
        return NULL;
    }
    return table->default_create_array(task, elements);
}

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
    table->default_create_array = reader->fn->createArray;
    table->refused_array = 0;
    table->functions.createArray = chiredis_create_array;
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
    if (reader->err != 0 && ((const chiredis_reader_functions *)reader->privdata)->refused_array) {
        return "array reply announces more elements than the limit (" CHIREDIS_MAX_ARRAY_ELEMENTS_TEXT ")";
    }
    return reader->err != 0 ? reader->errstr : NULL;
}

#endif
