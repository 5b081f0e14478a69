// Showing token texts safely. GPT-2 tokens hold spaces, newlines, control
// bytes, invisible format characters and U+FFFD (partial UTF-8 sequences):
// they are drawn with visible stand-ins, put into the DOM with textContent only,
// and escaped for plotly's pseudo-HTML labels.

const INVISIBLE = /[\p{Cc}\p{Cf}\p{Z}\p{Cs}\p{Co}\p{Cn}]/u;

const ESCAPES = { '\n': '\\n', '\t': '\\t', '\r': '\\r', '\\': '\\\\' };

// A one-line, visible form of a token's text, unambiguous and drawable with
// common fonts: ' ' -> '␣'; newline, tab, carriage return and backslash as in
// a Python repr (\n \t \r \\); other control characters -> \xHH; other
// invisible or spacing characters -> \uHHHH; the empty text -> '∅'. U+FFFD
// (an incomplete UTF-8 sequence) stays '�'.
export function visibleToken(text) {
  let out = '';
  for (const ch of String(text)) {
    const cp = ch.codePointAt(0);
    if (cp === 0x20) out += '\u2423';
    else if (ESCAPES[ch]) out += ESCAPES[ch];
    else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) out += `\\x${cp.toString(16).toUpperCase().padStart(2, '0')}`;
    else if (INVISIBLE.test(ch)) out += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    else out += ch;
  }
  return out || '\u2205';
}

// Escapes text for plotly's hover, title and legend labels, which read a subset of
// HTML tags and the entities &lt; &gt; &amp;.
export function plotlyText(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// Text for plotly's 3D scene labels, which read <b>, <i>, <sub>, <sup> and <br>
// but no entities: a word joiner after every '<' keeps them from being tags.
export function sceneText(s) {
  return String(s).replace(/</g, '<\u2060');
}

// Creates an element: el('li', {class: 'x', title: t}, child, 'text', ...).
// Strings become text nodes (never HTML); arrays of children, at any depth, are spread.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// A token as a monospace chip; the title gives its id and exact bytes.
export function tokenChip(tok) {
  const bytes = Array.isArray(tok.bytes) ? tok.bytes.map(b => b.toString(16).padStart(2, '0')).join(' ') : '';
  return el('span', { class: 'tok', title: `token ${tok.id}${bytes ? `, bytes ${bytes}` : ''}` },
    visibleToken(tok.text));
}

// Number formatting for scores and percentages.
export function fmt(x, digits = 3) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return x.toFixed(digits);
}

// Short text for a phrase in titles and legends.
export function shortPhrase(s, max = 40) {
  const t = String(s);
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

// Starts a download of a Blob under a file name.
export function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// A file-name-safe slug of a phrase.
export function slug(s, max = 32) {
  const t = String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return t.slice(0, max) || 'phrase';
}

// CSV (RFC 4180, CRLF) of rows of cells; numbers as they are, null as empty.
export function csvText(rows) {
  const cell = v => {
    if (v === null || v === undefined) return '';
    const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v);
    return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map(r => r.map(cell).join(',')).join('\r\n') + '\r\n';
}
