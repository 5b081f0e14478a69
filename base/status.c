#include "base/status.h"

const char *tw_strerror(int code)
{
    switch (code) {
    case TW_OK: return "ok";
    case TW_EINVAL: return "invalid argument";
    case TW_ENOMEM: return "out of memory";
    case TW_ECANCELED: return "canceled";
    case TW_ETIMEDOUT: return "deadline exceeded";
    case TW_EBUDGET: return "larger than the configured memory budget";
    case TW_EBLOCK: return "block out of range";
    case TW_EHEAD: return "head out of range";
    case TW_EK: return "k out of range";
    case TW_ETOP: return "number of directions out of range";
    case TW_ETOKEN: return "token id out of range";
    case TW_ELENGTH: return "phrase length out of range";
    case TW_ERANGE: return "argument out of range";
    case TW_EIO: return "input/output error";
    case TW_ENOENT: return "no such file";
    case TW_EFORMAT: return "corrupt or truncated file";
    case TW_EMISMATCH: return "file made for other data or settings";
    case TW_ENUMERIC: return "numerical failure";
    case TW_ENOTREADY: return "not ready";
    default: return "unknown error";
    }
}

int tw_status_is_range(int code) { return code <= TW_EBLOCK && code >= TW_ERANGE; }
