"""The King James Bible as the demo model's scripts read it: Debian's
bible-kjv (the `bible` program, reading bible-kjv-text),

    bible -f Gen1:1-Rev22:21

one verse per line ("Ge1:1 In the beginning ..."), grouped into its 1189
chapters in canonical order (Genesis 1 is chapter 0). Used by train.py (the
training and held-out split) and corpus_sentences.py (the held-out
sentences), so that both count the chapters the same way.
"""
import re
import subprocess

VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
N_CHAPTERS = 1189


def chapters():
    """[(book, chapter, [verse texts])] in canonical order, Genesis 1 first;
    SystemExit on a line the reader does not know or another chapter count."""
    raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, check=True).stdout
    order, verses = [], {}
    for line in raw.splitlines():
        m = VERSE.match(line)
        if not m:
            raise SystemExit("unexpected line from bible: %r" % line[:80])
        key = (m.group(1), int(m.group(2)))
        if key not in verses:
            order.append(key)
            verses[key] = []
        verses[key].append(m.group(4).strip())
    if len(order) != N_CHAPTERS:
        raise SystemExit("expected the %d chapters of the KJV, got %d" % (N_CHAPTERS, len(order)))
    return [(b, c, verses[(b, c)]) for b, c in order]
