/* The one-line error messages of core/ (file loaders, writers). */
#ifndef TW_ERRMSG_H
#define TW_ERRMSG_H

#include <stddef.h>

/* printf into err[errlen] (nothing if err is NULL or errlen 0), with line
 * breaks replaced by spaces so that the message stays one line. */
void tw_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
