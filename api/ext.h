/* State the api layer keeps beside the model once it is READY. */
#ifndef TW_API_EXT_H
#define TW_API_EXT_H

#include "api/answer_cache.h"

struct api_ext {
    answer_cache *answers;
};

#endif
