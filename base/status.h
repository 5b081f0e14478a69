/* The one set of status codes of the computing layers (base/ and core/).
 *
 * Every core function that can fail returns TW_OK (0) or one of these
 * negative codes; the api layer turns a code into an HTTP answer in one
 * place (api_status_error, api/api.h), following the table in
 * docs/ARCHITECTURE.md ("Errors"). Codes say what went wrong, never which
 * module noticed it. */
#ifndef TW_BASE_STATUS_H
#define TW_BASE_STATUS_H

enum {
    TW_OK = 0,
    /* a caller's mistake that the api layer should have caught: a bug */
    TW_EINVAL = -1, /* NULL pointer, unusable model config, bad option */
    /* resources */
    TW_ENOMEM = -2,    /* allocation failed, or sizes overflow */
    TW_ECANCELED = -3, /* the caller's cancel flag was set (client gone) */
    TW_ETIMEDOUT = -4, /* the computation passed its deadline */
    TW_EBUDGET = -5,   /* more memory than a configured budget allows, however long one waits */
    /* arguments out of range (the client's parameter) */
    TW_EBLOCK = -10,  /* block outside [0, n_layer) */
    TW_EHEAD = -11,   /* head outside [0, n_head) */
    TW_EK = -12,      /* k outside [1, vocab_size] */
    TW_ETOP = -13,    /* number of directions outside [0, dh] */
    TW_ETOKEN = -14,  /* a token id outside [0, vocab_size) */
    TW_ELENGTH = -15, /* phrase length outside [1, n_ctx] */
    TW_ERANGE = -16,  /* another argument out of range */
    /* files and numerics */
    TW_EIO = -20,       /* a file could not be read or written */
    TW_ENOENT = -21,    /* a file does not exist */
    TW_EFORMAT = -22,   /* a file is corrupt or truncated */
    TW_EMISMATCH = -23, /* a valid file made for other data or settings */
    TW_ENUMERIC = -24,  /* a solver did not converge, or values not finite */
    TW_ENOTREADY = -25, /* a background result (e.g. a layout) is not ready */
};

/* A short English description ("block out of range"); never NULL. */
const char *tw_strerror(int code);

/* True for the codes that name a client's out-of-range argument. */
int tw_status_is_range(int code);

#endif
