// Talking to twd: every answer is JSON; every error has the shape
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

async function once(path, init) {
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

async function request(path, init) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(path, init);
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
  const p = { ...params };
  if (!('model' in p) && modelName) p.model = modelName;
  const qs = query(p).toString();
  return request(qs ? `${path}?${qs}` : path, { method: 'GET', signal });
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
