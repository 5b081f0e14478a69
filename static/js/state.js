// The page's whole state, kept in the URL's fragment, so that a link
// reproduces what was on screen and Back/Forward move between states.
//
// One flat set of names, shared by the views where they mean the same thing
// (the phrase, the block, the head, k). Only values that differ from the
// defaults are written. Views read `state` and subscribe to changes;
// a change made by the user is a new history entry (push), a change that only
// refines what is shown (the camera, a default filled in) replaces the entry.

export const VIEWS = ['traj', 'lens', 'attn', 'probe', 'svd', 'sweep', 'norms', 'ln', 'mlp'];

// name -> {def, parse(string) -> value or undefined (invalid: ignored)}
const int = (lo = 0, hi = Number.MAX_SAFE_INTEGER) => s =>
  (/^\d+$/.test(s) && Number(s) >= lo && Number(s) <= hi ? Number(s) : undefined);
const str = s => s;
const oneOf = list => s => (list.includes(s) ? s : undefined);
const bool = s => (s === '1' || s === 'true' ? true : s === '0' || s === 'false' ? false : undefined);

const FIELDS = {
  view: { def: 'traj', parse: oneOf(VIEWS) },
  model: { def: '', parse: str },          // '' : the daemon's default model
  vs: { def: '', parse: str },             // a second model shown side by side ('' : none)
  text: { def: '', parse: str },           // '' : the model's default phrase
  compare: { def: '', parse: str },
  projection: { def: 'umap', parse: oneOf(['umap', 'pca']) },
  gelu: { def: 'tanh', parse: oneOf(['tanh', 'erf']) },
  k: { def: 5, parse: int(1, 100) },
  limit: { def: 0, parse: int(0) },
  layer: { def: null, parse: int(0) },     // state index; null: the last
  token: { def: null, parse: int(0) },     // followed token of phrase A; null: the second to last
  token2: { def: null, parse: int(0) },    // of phrase B
  camera: { def: '', parse: s => (/^-?[\d.]+(,-?[\d.e-]+){8}$/.test(s) ? s : undefined) },
  block: { def: 0, parse: int(0) },
  head: { def: null, parse: int(0) },      // null: every head (attention), the first (spectra)
  top: { def: 10, parse: int(1, 1024) },
  words: { def: '', parse: str },          // comma-separated; '' : the model's default words
  space: { def: null, parse: bool },       // leading space of probe words; null: the model's default
  cell: { def: '', parse: s => (/^\d+,\d+$/.test(s) ? s : undefined) },  // probe cell word,head
  dims: { def: '', parse: s => (/^\d+,\d+$/.test(s) ? s : undefined) },  // layer-norm sketch coordinates i,j ('' : the largest |gamma|)
  points: { def: 64, parse: int(3, 4096) },  // points on the sketch's circle
  mlp: { def: 'values', parse: oneOf(['values', 'search', 'updates']) },  // the MLP view's question
  neurons: { def: '', parse: s => (/^\d+(,\d+)*$/.test(s) ? s : undefined) },  // MLP neurons listed ('' : all)
  find: { def: '', parse: str },           // the token whose neurons are searched
  neuron: { def: null, parse: int(0) },    // the MLP neuron of the block detailed
  mcell: { def: '', parse: s => (/^\d+,\d+$/.test(s) ? s : undefined) },  // MLP updates cell block,position
  // the whole-model sweep: what is swept, which number a cell shows, the blocks ('' : all; any short
  // word is kept so that twd's own 400 names what is wrong), the cell opened (block,head)
  sweep: { def: 'spectra', parse: oneOf(['spectra', 'bias']) },
  matrix: { def: 'qk', parse: oneOf(['qk', 'vo']) },
  measure: { def: 'f99', parse: oneOf(['f99', 'first', 'top10']) },
  probe: { def: 'c', parse: oneOf(['a', '-a', 'c', '-c']) },
  blocks: { def: '', parse: s => (s === 'all' ? '' : /^[0-9A-Za-z-]{1,16}$/.test(s) ? s : undefined) },
  scell: { def: '', parse: s => (/^\d+,\d+$/.test(s) ? s : undefined) },
};

export const state = {};
for (const [k, f] of Object.entries(FIELDS)) state[k] = f.def;

const listeners = new Set();

// fn(changedKeys: Set, how: {source: 'user'|'url'}) is called after each change.
export function subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn); }

function same(a, b) { return a === b || (a === null && b === null); }

function toHash(s) {
  const q = new URLSearchParams();
  for (const [k, f] of Object.entries(FIELDS)) {
    const v = s[k];
    if (same(v, f.def)) continue;
    if (v === null || v === undefined) continue;
    q.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  }
  return `#${q.toString()}`;
}

export function fromHash(hash) {
  const q = new URLSearchParams(String(hash || '').replace(/^#/, ''));
  const out = {};
  for (const [k, f] of Object.entries(FIELDS)) {
    if (!q.has(k)) { out[k] = f.def; continue; }
    const v = f.parse(q.get(k));
    out[k] = v === undefined ? f.def : v;
  }
  return out;
}

export function hashOf(patch = {}) { return toHash({ ...state, ...patch }); }

let notifying = false;
const pending = [];

function notify(changed, how) {
  if (!changed.size) return;
  if (notifying) { pending.push([changed, how]); return; }
  notifying = true;
  try {
    for (const fn of [...listeners]) fn(changed, how);
    while (pending.length) {
      const [c, h] = pending.shift();
      for (const fn of [...listeners]) fn(c, h);
    }
  } finally {
    notifying = false;
  }
}

// Changes the state. opts.push: a new history entry (default true);
// opts.silent: no listeners called (the caller has drawn already).
export function setState(patch, opts = {}) {
  const changed = new Set();
  for (const [k, v] of Object.entries(patch)) {
    if (!(k in FIELDS)) throw new Error(`unknown state field ${k}`);
    if (!same(state[k], v)) { state[k] = v; changed.add(k); }
  }
  const hash = toHash(state);
  if (hash !== location.hash && !(hash === '#' && location.hash === '')) {
    const url = `${location.pathname}${location.search}${hash === '#' ? '' : hash}`;
    if (opts.push === false) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
  }
  if (!opts.silent) notify(changed, { source: 'user' });
  return changed;
}

// Reads the URL (at start-up and on Back/Forward) and tells the listeners.
export function loadFromUrl() {
  const next = fromHash(location.hash);
  const changed = new Set();
  for (const [k, v] of Object.entries(next)) if (!same(state[k], v)) { state[k] = v; changed.add(k); }
  notify(changed, { source: 'url' });
  return changed;
}

export function initHistory() {
  window.addEventListener('popstate', () => loadFromUrl());
  // a hand-edited fragment
  window.addEventListener('hashchange', () => loadFromUrl());
  const s = fromHash(location.hash);
  Object.assign(state, s);
}

export function defaults() {
  const d = {};
  for (const [k, f] of Object.entries(FIELDS)) d[k] = f.def;
  return d;
}
