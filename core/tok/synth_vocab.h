/* Synthetic vocabularies for generated checkpoints (core/model/synth.c). */
#ifndef TW_SYNTH_VOCAB_H
#define TW_SYNTH_VOCAB_H

#include <stddef.h>
#include <stdint.h>

/* Writes a deterministic synthetic GPT-2-format tokenizer (vocab.json and
 * merges.txt) into `dir` with exactly `vocab_size` ids: the 256 byte tokens,
 * merges learned by byte-level BPE from a built-in English corpus (so common
 * words, including the paper's common nouns, are single tokens), further
 * deterministic merges of existing tokens when the corpus runs out, and
 * <|endoftext|> as the last id. vocab_size must be >= 257. 0 on success,
 * -1 with a message in err. */
int tokenizer_write_synthetic(const char *dir, int vocab_size, uint64_t seed, char *err, size_t errlen);

#endif
