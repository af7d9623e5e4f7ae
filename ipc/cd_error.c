/*  cd_error: text for the error table in cd_error.h. */
#include "cd_error.h"

const char *
cd_strerror(int code)
{
    switch (code) {
    case CD_OK:
        return "ok";
#define CD_ERROR_TEXT(name, num, text)                                                             \
    case CD_##name:                                                                                \
        return text;
        CD_ERROR_TABLE(CD_ERROR_TEXT)
#undef CD_ERROR_TEXT
    default:
        return "unknown error";
    }
}

const char *
cd_errname(int code)
{
    switch (code) {
    case CD_OK:
        return "OK";
#define CD_ERROR_NAME(name, num, text)                                                             \
    case CD_##name:                                                                                \
        return #name;
        CD_ERROR_TABLE(CD_ERROR_NAME)
#undef CD_ERROR_NAME
    default:
        return "EUNKNOWN";
    }
}
