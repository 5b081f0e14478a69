"""GPT-2 byte-level BPE encoder over encoder.json and vocab.bpe.

Written for tools/demo-model: it turns the training corpus into GPT-2 token
ids. The algorithm is GPT-2's: split the text with GPT-2's pre-tokenizer
pattern, map every byte of a piece to a printable character, then repeatedly
merge the adjacent pair with the lowest merge rank until none is left.
"""
import json

import regex

# GPT-2's pre-tokenizer: contractions, letters, numbers, other symbols (each
# optionally after one space), and runs of white space.
PIECES = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
EOT = "<|endoftext|>"


def byte_chars():
    """The byte -> character table of GPT-2's vocabulary files: printable
    Latin-1 bytes stand for themselves, the other 68 are moved to U+0100 on."""
    keep = [b for b in range(256)
            if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Encoder:
    def __init__(self, encoder_json, vocab_bpe):
        with open(encoder_json, encoding="utf-8") as f:
            self.ids = json.load(f)
        self.tokens = {i: s for s, i in self.ids.items()}
        with open(vocab_bpe, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        self.rank = {}
        for line in lines:
            if line.strip():
                a, b = line.split(" ")
                self.rank[(a, b)] = len(self.rank)
        self.to_char = byte_chars()
        self.to_byte = {c: b for b, c in self.to_char.items()}
        self.cache = {}

    @property
    def vocab_size(self):
        return max(self.ids.values()) + 1

    def _merge(self, piece):
        parts = list(piece)
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.rank.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            a, b = parts[at], parts[at + 1]
            # merge every occurrence of the pair (a, b), left to right
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        return [self.ids[p] for p in parts]

    def encode(self, text):
        out = []
        chunks = text.split(EOT)
        for k, chunk in enumerate(chunks):
            if k:
                out.append(self.ids[EOT])
            for piece in PIECES.findall(chunk):
                ids = self.cache.get(piece)
                if ids is None:
                    mapped = "".join(self.to_char[b] for b in piece.encode("utf-8"))
                    ids = self._merge(mapped)
                    self.cache[piece] = ids
                out.extend(ids)
        return out

    def decode(self, ids):
        data = bytes(self.to_byte[c] for i in ids for c in self.tokens[i])
        return data.decode("utf-8", errors="replace")
