// Talking to twd: every answer is JSON; every error has the shape
// {"error": {"code", "type", "message"}}. Callers get the data, or an ApiError
// that carries the daemon's own message (shown to the user as it is).

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

async function request(path, init) {
  let res;
  try {
    res = await fetch(path, { cache: 'no-store', ...init });
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

// GET path?params (params: object of strings/numbers; undefined values skipped).
export function apiGet(path, params = {}, signal = undefined) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  const qs = q.toString();
  return request(qs ? `${path}?${qs}` : path, { method: 'GET', signal });
}

// POST a JSON body (used for phrases, so that long texts never hit the URL cap).
export function apiPost(path, body, signal = undefined) {
  return request(path, {
    method: 'POST', signal,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}
