'use strict';
// Hard strings for the GPT-2 tokenizer reference test (compare.js).
// Each entry is {name, text} (a JS string, encoded as UTF-8) or {name, hex}
// (raw bytes, possibly invalid UTF-8). Entries with `expect` name the known,
// explained difference they are meant to show (see compare.js); all others
// must give exactly the ids of the npm package gpt-3-encoder.

const rep = (s, n) => s.repeat(n);

const contractions = [
  "it's", "don't", "they're", "we've", "I'm", "you'll", "she'd",
  "IT'S", "DON'T", "THEY'RE", "WE'VE", "I'M", "YOU'LL", "SHE'D",
  "It'S", "don'T", "They'Re", "we'Ve", "i'M", "you'Ll", "she'D",
  "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE",
  "rock 'n' roll", "'tis the season", "the '90s", "o'clock", "y'all'd've",
  "''s", "'''", "' s", "'ss", "'lll", "'dd'd", "'re're", "isn't it's",
  "James's car", "the dogs' bones", "‘curly’ quotes aren't apostrophes: it’s",
  " 's", "  's", "\n's", "x's's's", "'s'", "'\u00e9", "'1", "'🙂",
];

const accents = [
  "café", "naïve résumé", "Ångström", "über straße", "Ærøskøbing", "piñata jalapeño",
  "e\u0301 (e + combining acute)", "\u0301\u0301\u0301 lone combining marks",
  "Zalgo: Z\u0351\u036b\u0343a\u0310l\u0313g\u0312o", "Łódź", "İstanbul ıi", "ǅungla",
  "Ελληνικά γράμματα", "Русский текст, ёж", "Հայերեն", "עברית ושלום", "العربية والأرقام ١٢٣",
  "हिन्दी भाषा", "ภาษาไทย", "ქართული", "Tiếng Việt có dấu", "ﬁ ligature ﬀ", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
];

const cjk = [
  "日本語のテキスト", "中文文本，标点。", "한국어 텍스트", "漢字かなカナ混じり文", "ｶﾀｶﾅ半角",
  "我爱北京天安门", "𠀀𠀁 CJK extension B", "東京 2020", "「引用」と『二重引用』", "中 文 间 隔",
];

const emoji = [
  "🙂", "hello 🙂 world", "🙂🙂🙂", " 🙂", "👍🏽", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "🇩🇪🇫🇷",
  "❤️", "1️⃣", "👩🏾‍💻 coding", "🧑‍🤝‍🧑", "emoji😀between😀words", "🙂.🙂,🙂!", "🫠 🫡 🥹",
];

const numbers = [
  "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "-42", "+7",
  "1e10", "0x1F", "2024-01-01", "10:30", "$9.99", "50%", "½ ¾ ²³", "Ⅻ Ⅳ", "٣٤٥", "१२३",
  "   123", " 1 2 3", "a1b2c3", "99 bottles", "007", "1st 2nd 3rd", "π≈3.14", "10⁹",
];

const spaces = [
  " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n",
  "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \n b", "a \t\n b",
  "trailing ", "trailing  ", "trailing   ", "trailing\t", "trailing\n", "trailing \n",
  " leading", "  leading", "   leading", "\tleading", "\nleading", " \n leading",
  "line1\nline2\n\nline4\n", "  indented code\n    more\n\tlast", "a \u00a0b (no-break space)",
  "ideographic\u3000space", "em\u2003space", "line\u2028separator", "para\u2029separator",
  "x \u00a0 \u00a0y", " \t \t ", "\n \n \n", "word \n\n\n\n\n word",
  "\u000b vertical tab \u000c form feed", "\u0000nul\u0000", "\u001f\u001e controls",
];

const punctuation = [
  "Hello, world!", "Wait... what?!", "(parenthesized) [bracketed] {braced}", "a--b---c",
  "\"quoted\" 'single'", "end.", "...", "!!!", "?!?!", "#hashtag @mention", "a/b\\c|d",
  "<html><body>x</body></html>", "x = y + z * 2;", "foo(bar, baz)", "{\"key\": [1, 2, 3]}",
  "C++ and C#", "e-mail@example.com", "https://example.com/path?q=1&r=2", "~`^_",
  "« guillemets »", "„German quotes“", "—em dash— and –en dash–", "• bullet · dot",
  "©®™", "$€£¥", "→ ← ↑ ↓", "∀x∈ℝ: x²≥0",
];

const endoftext = [
  "<|endoftext|>", "<|endoftext|><|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ",
  "text<|endoftext|>\n\nnext document", "<|endoftext", "endoftext|>", "<|endoftext |>",
  "<|ENDOFTEXT|>", "<<|endoftext|>>", "<|endoftext|>'s", "\n<|endoftext|>\n",
  "   <|endoftext|>   ", "🙂<|endoftext|>🙂",
];

const mixed = [
  "English 日本語 Русский العربية 🙂 123",
  "The quick brown fox jumps over the lazy dog.",
  "Mixing scripts: abcабвαβγאבג",
  "Code: for (int i = 0; i < n; i++) { sum += a[i]; }",
  "def f(x):\n    return x ** 2  # square\n",
  "She said, \"I'll be there at 5pm—don't wait!\"",
  "Ünïcödé ŵïţĥ ďïäçŕïţïçş and numbers 42",
  "Math: ∑_{i=1}^{n} i = n(n+1)/2",
  "tab\tseparated\tvalues\n1\t2\t3",
  "Kanji漢字mixed2with3numbers",
  "العربية with English and 123",
];

const long = [
  { name: "2000 x 'a'", text: rep('a', 2000) },
  { name: "1000 spaces then word", text: rep(' ', 1000) + 'word' },
  { name: "500 newlines", text: rep('\n', 500) },
  { name: "300 x 'ab '", text: rep('ab ', 300) },
  { name: "200 x emoji", text: rep('🙂', 200) },
  { name: "400 digits", text: rep('0123456789', 40) },
  { name: "300 x '!?'", text: rep('!?', 300) },
  { name: "long word", text: 'antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis' },
];

const invalid = [
  { name: 'lone continuation byte', hex: '61806162' },
  { name: 'truncated 2-byte', hex: '68c3' },
  { name: 'truncated 3-byte then ascii', hex: 'e282' + '41' },
  { name: 'truncated 4-byte in word', hex: '776ff09f9861' },
  { name: 'overlong slash', hex: 'c0af' },
  { name: 'overlong 3-byte', hex: 'e080af20' },
  { name: 'surrogate half', hex: 'eda080' + '20746578' },
  { name: 'above U+10FFFF', hex: 'f4908080' },
  { name: 'bytes ff fe', hex: 'fffe6869' },
  { name: 'invalid between spaces', hex: '2020ff2020' },
  { name: "invalid inside contraction", hex: '6974ff2773' },
  { name: 'mixed valid and invalid', hex: 'e697a5ff' + 'e69cac' + 'c328' + '20f09f9982' },
  { name: 'all high bytes', hex: '8081828384858687' },
  { name: 'invalid next to endoftext', hex: 'ff' + Buffer.from('<|endoftext|>').toString('hex') + 'fe' },
  { name: 'NUL and invalid', hex: '00ff00' },
];

// Characters where the pattern engines legitimately disagree. The reason
// is given in compare.js; `expect` names it.
const differences = [
  { name: 'NEL U+0085 is White_Space', text: "a \u0085b it\u0085's \u0085\u0085 c\u0085", expect: 'whitespace' },
  { name: 'BOM U+FEFF is not White_Space', text: "\ufeffstart x \ufeffy \ufeff's", expect: 'whitespace' },
  { name: 'Kawi letter (Unicode 15.0)', text: "kawi \u{11F04}\u{11F05}'s abc\u{11F04}", expect: 'unicode-version' },
  { name: 'CJK Ext H (Unicode 15.0)', text: "漢\u{31350}字 \u{31351}'s", expect: 'unicode-version' },
  { name: 'Nag Mundari digits (Unicode 15.0)', text: "n \u{1E4F0}\u{1E4F1}'s x", expect: 'unicode-version' },
  { name: 'CJK Ext I (Unicode 15.1)', text: "ext \u{2EBF0}'ll", expect: 'unicode-version' },
  { name: 'Gurung Khema (Unicode 16.0)', text: "g\u{16100}\u{16101}'d k", expect: 'unicode-version' },
];

function named(list, prefix) {
  return list.map((x, i) => (typeof x === 'string' ? { name: `${prefix} #${i}`, text: x } : x));
}

module.exports = [].concat(
  named(contractions, 'contraction'), named(accents, 'accents'), named(cjk, 'CJK'),
  named(emoji, 'emoji'), named(numbers, 'numbers'), named(spaces, 'whitespace'),
  named(punctuation, 'punctuation'), named(endoftext, 'endoftext'), named(mixed, 'mixed'),
  long, invalid, differences);
