#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H
// hiredis is used only as the RESP codec (reader + command formatter); NIO owns the sockets.
// Debian bookworm ships hiredis 0.14.1: use only API that version has.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
