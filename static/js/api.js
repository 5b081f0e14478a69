// Talking to twd: every answer is JSON (but for the arrays asked as numpy's
// .npy, apiGetArray); every error has the shape
// {"error": {"code", "type", "message"}}. Callers get the data, or an ApiError
// that carries the daemon's own message (shown to the user as it is).
//
// Three things every request shares:
//  - the model: when the daemon serves several, every request names the one
//    chosen (model=<name>; in the JSON body for POST);
//  - the API key: an answer 401 asks the user for the daemon's key (kept in
//    sessionStorage, sent as Authorization: Bearer) and tries once more;
//  - a memo of answers (getCached/postCached): an analysis is asked once per
//    phrase and parameters, whatever the view that needs it.

export class ApiError extends Error {
  // status: HTTP status (0: no answer at all); type: the daemon's error type;
  // retryAfter: seconds from the Retry-After header, or null.
  constructor(status, type, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter;
  }
}

const KEY_STORE = 'twd-api-key';
let askKey = null;        // async (message) => key or null: set by the page
let keyPrompt = null;     // the pending prompt, shared by concurrent 401s
let modelName = '';       // '' : the daemon's default model (sent only when set)

export function setKeyPrompt(fn) { askKey = fn; }
export function setModel(name) { modelName = name || ''; }
export function currentModel() { return modelName; }

function storedKey() {
  try { return sessionStorage.getItem(KEY_STORE) || ''; } catch (e) { return ''; }
}

function storeKey(k) {
  try {
    if (k) sessionStorage.setItem(KEY_STORE, k);
    else sessionStorage.removeItem(KEY_STORE);
  } catch (e) { /* storage off: the key lasts as long as the prompt's answer */ }
}

// numpy's .npy (format 1.0 or 2.0) as { shape, data }: a little-endian
// float32 or float64 array in C order, data a typed array over the bytes
// (no copy when the header leaves it aligned, as twd's does). null for
// anything else.
export function parseNpy(buf) {
  const u8 = new Uint8Array(buf);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (u8.length < 10 || magic.some((b, i) => u8[i] !== b)) return null;
  const v2 = u8[6] >= 2;
  const dv = new DataView(buf);
  const hlen = v2 ? dv.getUint32(8, true) : dv.getUint16(8, true);
  const start = (v2 ? 12 : 10) + hlen;
  const header = new TextDecoder('latin1').decode(u8.subarray(v2 ? 12 : 10, start));
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shape || /'fortran_order':\s*True/.test(header)) return null;
  const dims = shape[1].split(',').map(x => x.trim()).filter(x => x).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const Type = { '<f4': Float32Array, '<f8': Float64Array }[descr[1]];
  if (!Type || dims.some(d => !Number.isInteger(d) || d < 0) || start + count * Type.BYTES_PER_ELEMENT > buf.byteLength) return null;
  const data = start % Type.BYTES_PER_ELEMENT === 0 ? new Type(buf, start, count)
    : new Type(buf.slice(start, start + count * Type.BYTES_PER_ELEMENT));
  return { shape: dims, data };
}

async function once(path, init, binary = false) {
  const key = storedKey();
  const headers = { ...(init.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  let res;
  try {
    res = await fetch(path, { cache: 'no-store', ...init, headers });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `twd is not answering (${e.message}). Is the daemon still running?`);
  }
  if (binary && res.ok && !/json/.test(res.headers.get('Content-Type') || '')) {
    const arr = parseNpy(await res.arrayBuffer());
    if (arr) return arr;
    throw new ApiError(res.status, 'bad_answer', 'twd sent an answer that is not a float .npy array');
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
  if (res.ok && body !== null) return body;
  const retry = res.headers.get('Retry-After');
  const retryAfter = retry !== null && /^\d+$/.test(retry) ? Number(retry) : null;
  if (body && body.error && typeof body.error.message === 'string')
    throw new ApiError(res.status, String(body.error.type || 'error'), body.error.message, retryAfter);
  const snippet = text.slice(0, 200);
  throw new ApiError(res.status, 'bad_answer',
    res.ok ? `twd sent an answer that is not JSON: ${snippet}` : `HTTP ${res.status} ${res.statusText}: ${snippet}`,
    retryAfter);
}

async function request(path, init, binary = false) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(path, init, binary);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !askKey || attempt >= 3) throw e;
      // one prompt for every request that met the 401 at the same time
      if (!keyPrompt) {
        const had = storedKey();
        keyPrompt = Promise.resolve(askKey(had ? 'twd refused the key given before.' : '', e.message))
          .then(k => { storeKey(k || ''); return k; })
          .finally(() => { setTimeout(() => { keyPrompt = null; }, 0); });
      }
      const k = await keyPrompt;
      if (!k) throw e;
    }
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  return q;
}

// GET path?params (params: object of strings/numbers; undefined values
// skipped). The chosen model is added unless params say otherwise
// (model: null for routes of the service itself).
export function apiGet(path, params = {}, signal = undefined) {
  return getAnswer(path, params, signal, false);
}

// GET path?params of an answer in numpy's .npy (format=npy): { shape, data }
// with data a Float32Array (or Float64Array) over the answer's bytes.
export function apiGetArray(path, params = {}, signal = undefined) {
  return getAnswer(path, { ...params, format: 'npy' }, signal, true);
}

function getAnswer(path, params, signal, binary) {
  const p = { ...params };
  if (!('model' in p) && modelName) p.model = modelName;
  const qs = query(p).toString();
  return request(qs ? `${path}?${qs}` : path, { method: 'GET', signal }, binary);
}

// POST a JSON body (used for phrases, so that long texts never hit the URL cap).
export function apiPost(path, body, signal = undefined) {
  const b = { ...body };
  if (!('model' in b) && modelName) b.model = modelName;
  for (const k of Object.keys(b)) if (b[k] === undefined || b[k] === null) delete b[k];
  return request(path, {
    method: 'POST', signal,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(b),
  });
}

// ---------- the memo of answers ----------

const MEMO_MAX = 48;
const memo = new Map();   // key -> Promise of the answer (most recent last)

function memoKey(method, path, params) {
  const p = { ...params };
  if (!('model' in p)) p.model = modelName;
  const keys = Object.keys(p).filter(k => p[k] !== undefined && p[k] !== null).sort();
  return `${method} ${path} ${JSON.stringify(keys.map(k => [k, p[k]]))}`;
}

function remember(key, make) {
  if (memo.has(key)) {
    const v = memo.get(key);
    memo.delete(key);
    memo.set(key, v);
    return v;
  }
  // not tied to one caller's AbortSignal: the answer serves every view
  const p = make();
  memo.set(key, p);
  p.catch(() => { if (memo.get(key) === p) memo.delete(key); });
  while (memo.size > MEMO_MAX) memo.delete(memo.keys().next().value);
  return p;
}

// The answer of GET path?params, asked once (errors are not kept).
export function getCached(path, params = {}) {
  return remember(memoKey('GET', path, params), () => apiGet(path, params));
}

// The array of GET path?params&format=npy, asked once.
export function getArrayCached(path, params = {}) {
  return remember(memoKey('GET', path, { ...params, format: 'npy' }), () => apiGetArray(path, params));
}

// The answer of POST path {body}, asked once.
export function postCached(path, body = {}) {
  return remember(memoKey('POST', path, body), () => apiPost(path, body));
}

// Whether an answer for these parameters is in the memo already.
export function isCached(method, path, params = {}) {
  return memo.has(memoKey(method, path, params));
}

export function clearMemo() { memo.clear(); }

// ---------- what the daemon's routes take ----------

let spec = null;

// Loads /openapi.json once: which parameters each route takes (fields the
// page uses only when the daemon knows them, e.g. /probe leading_space).
export async function loadSpec() {
  try { spec = await apiGet('/openapi.json', { model: null }); } catch (e) { spec = null; }
  return spec;
}

function specParams(path, method) {
  const op = spec && spec.paths && spec.paths[path] && (spec.paths[path][method] || spec.paths[path].get);
  if (!op) return [];
  const list = [...(op.parameters || [])];
  const body = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'];
  if (body && body.schema && body.schema.properties)
    for (const [name, schema] of Object.entries(body.schema.properties)) list.push({ name, schema });
  return list;
}

export function hasRoute(path) { return !!(spec && spec.paths && spec.paths[path]); }

export function hasParam(path, name) {
  return ['get', 'post'].some(m => specParams(path, m).some(p => p.name === name));
}

// The schema of a route's parameter (e.g. its maximum), or null.
export function paramSchema(path, name) {
  for (const m of ['get', 'post']) {
    const p = specParams(path, m).find(x => x.name === name);
    if (p) return p.schema || null;
  }
  return null;
}
