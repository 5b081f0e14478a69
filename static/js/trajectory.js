// The trajectory view: one 3D figure with the faint vocabulary cloud
// (/umap/layout?format=npy and /umap/layout/tokens), each token's path through the states of /trajectory
// (coloured by layer on viridis), the tokens at the chosen state (each token
// labelled once, there), and an optional second phrase drawn alongside.
//
// Drawing is split by what changes: a new phrase or projection draws the
// figure (the cloud's buffers are built once per layout and kept, plot.js
// keepTrace); a slider step updates only the traces of the shown state
// (Plotly.update); the camera is kept in the URL.
import { ApiError, apiGet, postCached, getCached, getArrayCached } from './api.js';
import { state, setState } from './state.js';
import { showMessage, hideMessage, errorText, downloadTools } from './ui.js';
import {
  visibleToken, plotlyText, sceneText, el, tokenChip, fmt, shortPhrase, slug,
} from './text.js';
import { LAYER_SCALE, layerColor, config, timed, painted, mark, keepTrace, moveTraces, setTitle, loadPlotly } from './plot.js';
import { drawSketch } from './sketch.js';

const LETTERS = ['A', 'B'];
const SYMBOLS = ['circle', 'diamond'];
const DASHES = ['solid', 'dash'];
const PLAY_MS = 700;
const TEXT_FONT = { size: 12, color: '#1d2330' };  // the labels of the tokens at the shown state
// the labels' font in the sketch: plotly's default family (the sketch is drawn before plotly.js runs)
const SKETCH_FONT = '12px "Open Sans", verdana, arial, sans-serif';
// how long, once plotly.js is ready, the empty 3D scene waits for twd's
// answer before being set up without it (a cached answer comes within this)
const WARM_WAIT_MS = 60;

const $ = id => document.getElementById(id);

const st = {
  ctx: null,
  key: '',            // the request the figure shows (reqKey)
  request: null,
  results: [],        // /trajectory answers, phrase A then B
  pre: [],            // per phrase: hover texts and labels, computed once per answer
  cloud: null,        // the background cloud drawn behind (layoutCloud), or null
  cloudKey: '',
  cloudTrace: null,   // the plotly trace of `cloud` (the same object while the layout is)
  layer: 0,           // state index shown
  highlight: [0, 0],  // token index followed in each phrase
  focus: null,        // {p, t, s} of the point the details panel shows (hover), or null
  seq: 0,             // request generation; stale answers are dropped
  pollTimer: 0,
  playTimer: 0,
  bound: false,
  drawn: false,       // a figure of `key` is on screen
  narrow: null,
  dragging: false,    // the pointer holds the slider
  stepping: false,    // a slider step is being drawn
  dragPushed: false,  // the drag (or play) made its history entry
  camera: '',         // the camera string last applied or read
  firstShown: false,  // the first trajectory has been on screen (sketched or in 3D)
  shown3d: false,     // the first 3D figure has been on screen
  sketch: null,       // what the sketch on screen drew where (drawSketch), or null
  tools: null,
  cloudOff: false,    // the cloud hidden from the legend
  seenLabels: new Set(),  // label texts plotly has drawn (and keeps triangulated)
  labelsLater: false, // this draw's labels come a frame after its points
};

// ---------- names ----------

// A state's short name: E, E+P, ln_f(E+P), or `block` and the block's number.
export function shortName(state_, block = 'b') {
  if (state_.block !== null && state_.block !== undefined) return `${block}${state_.block}`;
  if (state_.name === 'embedding') return 'E';
  if (state_.name === 'embedding+position') return 'E+P';
  if (state_.name === 'embedding+position, ln_f') return 'ln_f(E+P)';
  return state_.name;
}

export function longState(state_) {
  if (state_.block !== null && state_.block !== undefined) return `after block ${state_.block} (ln_f of the residual)`;
  if (state_.name === 'embedding') return 'input: token embedding';
  if (state_.name === 'embedding+position') return 'input: embedding + position';
  if (state_.name === 'embedding+position, ln_f') return 'input: ln_f(embedding + position)';
  return state_.name;
}

// ---------- the request the state asks for ----------

function wanted() {
  const texts = [st.ctx.phrase()];
  if (state.compare.trim() !== '') texts.push(state.compare);
  return { texts, projection: state.projection, gelu: state.gelu, k: state.k, limit: state.limit, model: state.model };
}

const reqKey = r => JSON.stringify(r);

function fillForm(req) {
  const f = $('traj-form');
  if (document.activeElement !== f.elements.text) f.elements.text.value = req.texts[0];
  if (document.activeElement !== f.elements.text2) f.elements.text2.value = state.compare;
  for (const r of f.elements.projection) r.checked = r.value === req.projection;
  f.elements.gelu.value = req.gelu;
  f.elements.k.value = String(req.k);
  f.elements.limit.value = String(req.limit);
}

function readForm() {
  const f = $('traj-form');
  const int = (v, d) => (/^\d+$/.test(String(v).trim()) ? Number(v) : d);
  const text = f.elements.text.value;
  return {
    text: text === st.ctx.defaultPhrase() ? '' : text,
    compare: f.elements.text2.value,
    projection: f.elements.projection.value || 'umap',
    gelu: f.elements.gelu.value,
    k: Math.max(1, Math.min(20, int(f.elements.k.value, 5))),
    limit: int(f.elements.limit.value, 0),
  };
}

// ---------- fetching ----------

function sameTokens(a, b) {
  return a && b && a.tokens.length === b.tokens.length && a.tokens.every((t, i) => t.id === b.tokens[i].id);
}

// Asks for the trajectories of req and the background cloud; draws the
// phrase as soon as it is there and the cloud when it comes. While the UMAP
// layout is fitted, shows its progress and offers PCA, and draws by itself
// once the fit is done.
async function run(req) {
  stopPlay();
  clearTimeout(st.pollTimer);
  const seq = ++st.seq;
  const key = reqKey(req);
  const busyTimer = setTimeout(() => {
    if (seq === st.seq) showMessage($('traj-msg'), { kind: 'info', title: 'Computing the trajectories…' });
  }, 250);
  $('traj-plot').setAttribute('aria-busy', 'true');
  const cloudKey = `${req.model}:${req.projection}:${req.limit}`;
  const cloudJob = st.cloud && st.cloudKey === cloudKey ? Promise.resolve(st.cloud) : layoutCloud(req);
  let cloudNow = null;
  cloudJob.then(c => { cloudNow = c; }, () => {});
  const answers = Promise.all(req.texts.map((text, p) =>
    postCached('/trajectory', { text, projection: req.projection, gelu: req.gelu, k: req.k })
      .catch(e => { e.phrase = p; throw e; })));
  let answered = false;
  answers.then(() => { answered = true; }, () => { answered = true; });
  // the empty scene is set up while twd computes; with the answer in (a
  // cached one comes before or just after plotly.js is ready), the figure is
  // set up and drawn in one go instead
  const warm = loadPlotly().then(ok => ok && Promise.race([answers.then(() => true, () => true), sleep(WARM_WAIT_MS).then(() => true)]))
    .then(ok => ok && seq === st.seq && !answered && warmUp());
  try {
    const results = await answers;
    if (seq !== st.seq) return;
    if (!st.firstShown) mark('twd:traj-answer');
    clearTimeout(busyTimer);
    hideMessage($('traj-msg'));
    const prev = st.results;
    st.request = req;
    st.key = key;
    st.results = results;
    st.pre = results.map((r, p) => prepare(r, p));
    if (st.cloudKey !== cloudKey) { st.cloud = null; st.cloudTrace = null; }
    // the followed tokens and the layer: from the state, else the paper's choice
    results.forEach((r, p) => {
      const want = p === 0 ? state.token : state.token2;
      const keep = sameTokens(prev[p], r) ? st.highlight[p] : null;
      st.highlight[p] = Math.min(r.n_tokens - 1, want !== null ? want : keep !== null ? keep : Math.max(0, r.n_tokens - 2));
    });
    const S = results[0].n_states;
    st.layer = state.layer === null ? S - 1 : Math.min(state.layer, S - 1);
    st.focus = null;
    fillControls();
    // the cloud with the phrase when it is here already, else when it comes
    if (cloudNow) { st.cloud = cloudNow; st.cloudKey = cloudKey; }
    if (!st.drawn && showSketch()) {
      // no 3D figure yet: the phrases sketched in 2D until plotly's scene shows them
      await painted();
      if (seq !== st.seq) return;
      if (!st.firstShown) {
        st.firstShown = true;
        mark('twd:traj-first-on-screen');
      }
    }
    if (!(await loadPlotly())) return;
    await warm;
    if (seq !== st.seq) return;
    await drawTimed(seq);
    if (seq !== st.seq) return;
    try {
      const cloud = await cloudJob;
      if (seq !== st.seq) return;
      if (st.cloud !== cloud) {
        st.cloud = cloud;
        st.cloudKey = cloudKey;
        await drawTimed(seq);
      }
    } catch (e) {
      if (seq !== st.seq) return;
      showMessage($('traj-msg'), {
        kind: 'error', title: 'The vocabulary cloud could not be loaded:', text: errorText(e),
        note: 'The trajectories are drawn without it.',
      });
    }
  } catch (e) {
    clearTimeout(busyTimer);
    // an empty scene set up meanwhile does not show under the message
    warm.then(() => { if (seq === st.seq && !st.drawn) markStale(true); });
    if (seq !== st.seq) return;
    if (e instanceof ApiError && e.status === 503 && req.projection === 'umap') await umapUnavailable(req, e, seq);
    else showFailure(e, req);
  } finally {
    if (seq === st.seq) $('traj-plot').removeAttribute('aria-busy');
  }
}

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

function showFailure(e, req) {
  hideSketch();
  const which = req.texts.length > 1 && e.phrase !== undefined ? ` (phrase ${LETTERS[e.phrase]})` : '';
  const status = e instanceof ApiError && e.status ? ` — HTTP ${e.status}` : '';
  showMessage($('traj-msg'), {
    kind: 'error',
    title: `twd could not compute this${which}${status}:`,
    text: errorText(e),
    note: st.results.length ? 'The figure still shows the previous phrase.' : '',
  });
  st.key = '';
  markStale(true);
}

// The UMAP layout is not ready: fitting (poll /umap, show progress, draw when
// done), or switched off / failed (say so and offer PCA).
async function umapUnavailable(req, err, seq) {
  let status = null;
  try { status = await apiGet('/umap'); } catch (e) { status = null; }
  if (seq !== st.seq) return;
  if (status) st.ctx.onUmap(status);
  const usePca = { label: 'Show with PCA instead', id: 'use-pca', onClick: () => setState({ projection: 'pca' }) };
  if (status && status.state === 'ready' && !req.retried) { run({ ...req, retried: true }); return; }
  st.key = '';
  if (!status || status.state !== 'fitting') {
    showMessage($('traj-msg'), {
      kind: 'error',
      title: status && status.state === 'disabled' ? 'UMAP is switched off on this daemon.'
        : 'The UMAP layout of the vocabulary is not available:',
      text: errorText(err),
      note: 'PCA, a linear projection, works without it.',
      actions: [usePca],
    });
    markStale(true);
    return;
  }
  showMessage($('traj-msg'), {
    kind: 'wait',
    title: 'The 3D layout of the vocabulary (UMAP) is still being fitted.',
    note: 'This happens once per model and is then kept on disk. The figure appears by itself when ' +
      'the fit is done; PCA, a quicker linear projection, works now.',
    progress: status.progress,
    actions: [usePca],
  });
  markStale(true);
  st.pollTimer = setTimeout(() => pollUmap(req, seq), 1000);
}

async function pollUmap(req, seq) {
  if (seq !== st.seq) return;
  let status;
  try { status = await apiGet('/umap'); } catch (e) { status = null; }
  if (seq !== st.seq) return;
  if (status) st.ctx.onUmap(status);
  if (status && status.state === 'fitting') {
    const bar = $('traj-msg').querySelector('progress');
    if (bar) {
      const pct = Math.round(status.progress * 100);
      bar.value = pct;
      bar.nextSibling.textContent = ` ${pct} %`;
    }
    st.pollTimer = setTimeout(() => pollUmap(req, seq), 1000);
    return;
  }
  run(req);
}

function markStale(stale) {
  if (stale) hideSketch();
  $('traj-stack').classList.toggle('stale', stale && st.drawn);
  $('traj-stack').classList.toggle('empty', !st.drawn && !st.results.length);
}

// ---------- figure ----------

function hoverText(r, p, t, s) {
  const tok = r.tokens[t];
  const state_ = r.states[s];
  const lines = [
    `<b>${plotlyText(visibleToken(tok.text))}</b>  token ${t + 1} of ${r.n_tokens}` +
      (st.results.length > 1 ? `, phrase ${LETTERS[p]}` : ''),
    plotlyText(longState(state_)),
    'nearest vocabulary tokens:',
  ];
  for (const n of state_.nearest[t])
    lines.push(`  ${plotlyText(visibleToken(n.text))}  ${fmt(n.score)}${typeof n.prob === 'number' ? `  p=${fmt(n.prob)}` : ''}`);
  return lines.join('<br>');
}

// What every draw of an answer needs, computed once.
function prepare(r, p) {
  return {
    labels: r.tokens.map(t => sceneText(visibleToken(t.text))),
    hover: r.states.map((_, s) => r.tokens.map((__, t) => hoverText(r, p, t, s))),
    custom: r.states.map((_, s) => r.tokens.map((__, t) => [p, t, s])),
    xyz: r.states.map(s => [0, 1, 2].map(a => s.points.map(q => q[a]))),
  };
}

// The background cloud of a request's projection and limit, from the
// compact answers: the points as float32 (/umap/layout?format=npy, some
// 0.6 MB for GPT-2's 50,257 rows, read without parsing) and their tokens'
// ids and texts (/umap/layout/tokens), rather than the JSON answer's token
// objects (6 MB to parse on the main thread while the phrase is drawn).
// { projection, rows, n, xyz: Float32Array (n x 3, row-major), ids, texts };
// the same object for the same answers (the cloud's buffers are kept).
const clouds = new WeakMap();  // npy answer -> cloud
async function layoutCloud(req) {
  const q = { projection: req.projection, limit: req.limit };
  const [arr, tok] = await Promise.all([getArrayCached('/umap/layout', q), getCached('/umap/layout/tokens', q)]);
  if (clouds.has(arr)) return clouds.get(arr);
  const n = arr.shape[0];
  if (arr.shape.length !== 2 || arr.shape[1] !== 3 || tok.n !== n || tok.texts.length !== n)
    throw new ApiError(200, 'bad_answer', `the layout's points (${arr.shape.join(' x ')}) and tokens (${tok.n}) do not match`);
  const c = { projection: tok.projection, rows: tok.rows, n, xyz: arr.data, ids: tok.ids, texts: tok.texts };
  clouds.set(arr, c);
  return c;
}

// One axis of the cloud's points.
function cloudAxis(c, a) {
  const v = new Float32Array(c.n);
  for (let i = 0; i < c.n; i++) v[i] = c.xyz[i * 3 + a];
  return v;
}

// The cloud as the JSON download holds it: /umap/layout/tokens with the points.
function cloudDoc(c) {
  if (!c) return null;
  const points = [];
  for (let i = 0; i < c.n; i++) points.push([c.xyz[i * 3], c.xyz[i * 3 + 1], c.xyz[i * 3 + 2]]);
  return { projection: c.projection, rows: c.rows, n: c.n, ids: c.ids, texts: c.texts, points };
}

function cloudTrace(c) {
  return {
    type: 'scatter3d', mode: 'markers', uid: 'cloud', name: `vocabulary (${c.n} of ${c.rows} rows)`,
    x: cloudAxis(c, 0), y: cloudAxis(c, 1), z: cloudAxis(c, 2),
    hovertext: c.texts.map(s => plotlyText(visibleToken(s))), hoverinfo: 'text',
    // squares: two triangles a point where a circle takes dozens, for the same 2-pixel dot
    marker: { size: 2, symbol: 'square', color: '#8a93a3', opacity: 0.3 },
    meta: { role: 'cloud' },
  };
}

function colorbar(r) {
  const S = r.n_states;
  const every = Math.max(1, Math.ceil(S / (st.narrow ? 7 : 14)));
  const tickvals = [], ticktext = [];
  r.states.forEach((s, i) => {
    if (i % every === 0 || i === S - 1) { tickvals.push(i); ticktext.push(plotlyText(shortName(s))); }
  });
  return { title: { text: st.narrow ? '' : 'state', side: 'top' }, tickvals, ticktext, thickness: 10, outlinewidth: 0,
    x: 1, xanchor: 'right', y: 0.55, len: st.narrow ? 0.5 : 0.62, tickfont: { size: 10 } };
}

// The traces of the shown state: what a slider step changes.
function nowTrace(r, p) {
  const S = r.n_states, L = st.layer, h = st.highlight[p];
  const pre = st.pre[p];
  return {
    x: pre.xyz[L][0], y: pre.xyz[L][1], z: pre.xyz[L][2],
    hovertext: pre.hover[L], customdata: pre.custom[L],
    'marker.color': layerColor(L, S),
    'marker.size': r.tokens.map((_, t) => (t === h ? 10 : 6)),
  };
}

function phraseTraces(r, p) {
  const S = r.n_states, N = r.n_tokens, h = st.highlight[p];
  const letter = LETTERS[p];
  const pre2 = st.results.length > 1 ? `${letter}: ` : '';
  const minor = st.narrow ? { showlegend: false } : {};
  const pre = st.pre[p];
  const cmap = { colorscale: LAYER_SCALE, cmin: 0, cmax: Math.max(1, S - 1) };
  const pt = (t, s) => r.states[s].points[t];

  // every other token's path, as one trace broken by gaps
  const o = { x: [], y: [], z: [], c: [], h: [], d: [] };
  for (let t = 0; t < N; t++) {
    if (t === h) continue;
    for (let s = 0; s < S; s++) {
      const q = pt(t, s);
      o.x.push(q[0]); o.y.push(q[1]); o.z.push(q[2]); o.c.push(s); o.h.push(pre.hover[s][t]); o.d.push([p, t, s]);
    }
    o.x.push(null); o.y.push(null); o.z.push(null); o.c.push(0); o.h.push(''); o.d.push(null);
  }
  const traces = [];
  traces.push({
    type: 'scatter3d', mode: 'lines+markers', uid: `p${p}-paths`, name: `${pre2}paths of the other tokens`, ...minor,
    x: o.x, y: o.y, z: o.z, hovertext: o.h, hoverinfo: 'text', customdata: o.d, connectgaps: false,
    line: { color: o.c, ...cmap, width: 2, dash: DASHES[p] },
    marker: { color: o.c, ...cmap, size: 2, symbol: SYMBOLS[p] },
    opacity: 0.5, visible: N > 1,
    meta: { role: 'paths', phrase: p, tokens: N - 1, states: S },
  });
  const idx = [...Array(S).keys()];
  traces.push({
    type: 'scatter3d', mode: 'lines+markers', uid: `p${p}-path`,
    name: `${pre2}path of ${plotlyText(visibleToken(r.tokens[h].text))}`,
    x: idx.map(s => pt(h, s)[0]), y: idx.map(s => pt(h, s)[1]), z: idx.map(s => pt(h, s)[2]),
    hovertext: idx.map(s => pre.hover[s][h]), hoverinfo: 'text', customdata: idx.map(s => [p, h, s]),
    line: { color: idx, ...cmap, width: 7, dash: DASHES[p] },
    marker: { color: idx, ...cmap, size: 4, symbol: SYMBOLS[p], showscale: p === 0, colorbar: colorbar(r) },
    meta: { role: 'highlight', phrase: p, token: h, states: S },
  });
  // the input: markers only (the tokens are labelled once, at the shown state)
  traces.push({
    type: 'scatter3d', mode: 'markers', uid: `p${p}-in`, name: `${pre2}input tokens`, ...minor,
    x: pre.xyz[0][0], y: pre.xyz[0][1], z: pre.xyz[0][2],
    hovertext: pre.hover[0], hoverinfo: 'text', customdata: pre.custom[0],
    marker: { size: 3.5, color: layerColor(0, S), symbol: SYMBOLS[p] },
    meta: { role: 'inputs', phrase: p, tokens: N },
  });
  const now = nowTrace(r, p);
  traces.push({
    type: 'scatter3d', mode: st.labelsLater ? 'markers' : 'markers+text', uid: `p${p}-now`, name: `${pre2}tokens at the shown state`, showlegend: false,
    x: now.x, y: now.y, z: now.z, text: pre.labels, textposition: 'top center',
    textfont: { ...TEXT_FONT },
    hovertext: now.hovertext, hoverinfo: 'text', customdata: now.customdata,
    marker: { size: now['marker.size'], color: now['marker.color'], symbol: SYMBOLS[p], line: { color: '#1d2330', width: 1 } },
    meta: { role: 'current', phrase: p, tokens: N, state: st.layer, state_name: r.states[st.layer].name },
  });
  // its legend entry, which a step leaves as it is (the title names the state):
  // the outlined marker, in no layer's colour
  traces.push({
    type: 'scatter3d', mode: 'markers', uid: `p${p}-now-key`, name: `${pre2}tokens at the shown state`,
    x: [null], y: [null], z: [null], hoverinfo: 'skip',
    marker: { size: 7, color: '#ffffff', symbol: SYMBOLS[p], line: { color: '#1d2330', width: 1 } },
    meta: { role: 'current-key', phrase: p },
  });
  return traces;
}

// Axis ranges framing the phrases (every state of every token), padded.
function phraseBox() {
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  for (const r of st.results)
    for (const s of r.states)
      for (const q of s.points)
        for (let a = 0; a < 3; a++) { lo[a] = Math.min(lo[a], q[a]); hi[a] = Math.max(hi[a], q[a]); }
  const span = lo.map((v, a) => Math.max(hi[a] - v, 1e-6));
  const big = Math.max(...span);
  // each axis at least a third of the largest, so that a flat phrase keeps some depth
  const range = lo.map((v, a) => {
    const s = Math.max(span[a], big / 3), c = (v + hi[a]) / 2;
    return [c - 0.6 * s, c + 0.6 * s];
  });
  const len = range.map(r => r[1] - r[0]);
  const m = Math.max(...len);
  return { range, ratio: len.map(l => l / m) };
}

function parseCamera(s) {
  const v = String(s || '').split(',').map(Number);
  if (v.length !== 9 || v.some(x => !Number.isFinite(x))) return null;
  return { eye: { x: v[0], y: v[1], z: v[2] }, center: { x: v[3], y: v[4], z: v[5] }, up: { x: v[6], y: v[7], z: v[8] } };
}

function cameraString(c) {
  if (!c || !c.eye) return '';
  const r = x => String(Math.round(x * 1000) / 1000);
  const e = c.eye, ce = c.center || { x: 0, y: 0, z: 0 }, u = c.up || { x: 0, y: 0, z: 1 };
  return [e.x, e.y, e.z, ce.x, ce.y, ce.z, u.x, u.y, u.z].map(r).join(',');
}

function title() {
  const m = st.ctx.current;
  const model = m ? `${m.name}${m.synthetic ? ' (synthetic)' : ''}` : '';
  return `${plotlyText(model)} · ${st.request.projection.toUpperCase()} · ${plotlyText(longState(st.results[0].states[st.layer]))}`;
}

// The axis ranges and proportions both layers share: PCA framed on the
// phrases; UMAP on the phrases and the bulk of the cloud (its 0.5 % at
// either end of each axis, the outliers, left out).
function sceneBox() {
  if (st.request.projection === 'pca') return phraseBox();
  const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  const add = q => { for (let a = 0; a < 3; a++) { lo[a] = Math.min(lo[a], q[a]); hi[a] = Math.max(hi[a], q[a]); } };
  if (st.cloud && st.cloud.n) {
    const c = st.cloud, n = c.n;
    if (!c.bulk) {  // once per cloud
      c.bulk = [0, 1, 2].map(a => {
        const v = cloudAxis(c, a).sort();
        return [v[Math.floor(0.005 * (n - 1))], v[Math.ceil(0.995 * (n - 1))]];
      });
    }
    for (let a = 0; a < 3; a++) {
      lo[a] = Math.min(lo[a], c.bulk[a][0]);
      hi[a] = Math.max(hi[a], c.bulk[a][1]);
    }
  }
  for (const r of st.results) for (const x of r.states) x.points.forEach(add);
  const range = lo.map((v, a) => {
    const d = Math.max(hi[a] - v, 1e-6);
    return [v - d / 20, hi[a] + d / 20];
  });
  const len = range.map(r => r[1] - r[0]);
  const m = Math.max(...len);
  return { range, ratio: len.map(l => l / m) };
}

// Grid lines of an axis: about six, at 1, 2 or 5 times a power of ten.
function gridTicks([lo, hi]) {
  const raw = (hi - lo) / 6;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map(m => m * p).find(x => x >= raw);
  const vals = [];
  for (let i = Math.ceil(lo / step); i * step <= hi; i++) vals.push(i * step);
  return vals;
}

// plotly's 3D axes turn every tick text into triangles (a canvas read back
// and an exact triangulation, some 75 ms a text on a software renderer under
// load) even when no tick label is shown, and hidden axes still get ticks: the
// phrases' layer has axes that draw nothing and have no ticks, the cloud's
// its grid at given values with empty texts.
const BARE_AXIS = {
  title: { text: '' }, showgrid: false, zeroline: false, showline: false, showticklabels: false, ticks: '',
  showbackground: false, showspikes: false, tickmode: 'array', tickvals: [],
};

function sceneLayout(box, cam, top) {
  const proj = st.request.projection.toUpperCase();
  const axis = (t, a) => (top ? { ...BARE_AXIS, range: box.range[a], autorange: false } : {
    title: { text: `${proj} ${t}`, font: { size: 11, color: '#5b6475' } }, showticklabels: false, showspikes: false,
    gridcolor: '#e3e7ee', zeroline: false, showbackground: true, backgroundcolor: '#fbfcfe',
    tickmode: 'array', tickvals: gridTicks(box.range[a]), ticktext: gridTicks(box.range[a]).map(() => ''),
    range: box.range[a], autorange: false,
  });
  return {
    xaxis: axis('1', 0), yaxis: axis('2', 1), zaxis: axis('3', 2),
    aspectmode: 'manual', aspectratio: { x: box.ratio[0], y: box.ratio[1], z: box.ratio[2] },
    camera: cam, domain: { x: [0, 1], y: [st.narrow ? 0.16 : 0.08, 1] },
    ...(top ? { bgcolor: 'rgba(0,0,0,0)', hovermode: 'closest' } : { hovermode: false, dragmode: false }),
  };
}

// The two layers' figures: `cloud` (the vocabulary, drawn once per layout)
// and `top` (the phrases, the title, the legend).
function figure() {
  const gd = $('traj-plot');
  st.narrow = gd.clientWidth < 620;
  const data = [];
  if (st.cloud) {
    // the cloud's entry in the legend: a click shows or hides the layer below
    data.push({
      type: 'scatter3d', mode: 'markers', uid: 'cloud-key', x: [null], y: [null], z: [null], hoverinfo: 'skip',
      name: `vocabulary (${st.cloud.n} of ${st.cloud.rows} rows)`, visible: st.cloudOff ? 'legendonly' : true,
      marker: { size: 6, symbol: 'square', color: '#8a93a3' }, meta: { role: 'cloud-key' },
    });
  }
  st.results.forEach((r, p) => data.push(...phraseTraces(r, p)));
  const box = sceneBox();
  const cam = parseCamera(state.camera) || { eye: st.narrow ? { x: 1.35, y: 1.35, z: 0.9 } : { x: 1.15, y: 1.15, z: 0.75 } };
  const common = {
    margin: { l: 0, r: 0, t: 28, b: 0 },
    // the user's camera survives redraws of the same projection and phrases
    uirevision: `${st.request.projection}:${st.request.texts.join('\u0000')}:${state.camera}`,
  };
  const layout = {
    ...common,
    title: { text: title(), x: 0.01, xanchor: 'left', y: 0.985, yanchor: 'top', font: { size: 13 } },
    paper_bgcolor: 'rgba(0,0,0,0)',
    showlegend: true,
    // below the scene, in one or two short rows: never over it
    legend: { orientation: 'h', x: 0, xanchor: 'left', y: 0, yanchor: 'bottom', bgcolor: 'rgba(255,255,255,0.9)',
      font: { size: st.narrow ? 10 : 11 }, itemsizing: 'constant' },
    scene: sceneLayout(box, cam, true),
    hoverlabel: { bgcolor: '#ffffff', bordercolor: '#8a93a3', font: { family: 'DejaVu Sans Mono, monospace', size: 12, color: '#1d2330' }, align: 'left' },
  };
  const below = { ...common, paper_bgcolor: '#ffffff', showlegend: false, scene: sceneLayout(box, cam, false) };
  st.camera = state.camera;
  return { data, layout, below };
}

// The phrases of the answer in, sketched on a 2D canvas over the figure
// (sketch.js) with the layout the 3D figure gets (figure(): its ranges,
// proportions and camera), until plotly's scene shows them. The figure's box
// shows, empty, under it. False when the view is not shown (nothing drawn).
function showSketch() {
  const gd = $('traj-plot'), canvas = $('traj-sketch');
  if ($('view-traj').hidden) return false;
  $('traj-stack').classList.remove('empty');
  const cs = getComputedStyle(gd);
  const width = parseFloat(cs.width), height = parseFloat(cs.height);
  if (!(width > 0 && height > 0)) return false;
  const { layout } = figure();
  const phrases = st.results.map((r, p) => ({
    xyz: st.pre[p].xyz, colors: r.states.map((_, s) => layerColor(s, r.n_states)), shown: st.layer,
    followed: st.highlight[p], symbol: SYMBOLS[p], dash: DASHES[p] === 'dash' ? [6, 4] : [],
    labels: r.tokens.map(t => visibleToken(t.text)),
  }));
  st.sketch = drawSketch(canvas, width, height, layout, phrases, SKETCH_FONT);
  canvas.hidden = false;
  return true;
}

function hideSketch() {
  const canvas = $('traj-sketch');
  if (canvas && !canvas.hidden) canvas.hidden = true;
}

// While twd computes the first answer: the phrases' 3D scene set up empty
// (its WebGL context made, its shaders compiled), so that the first draw
// only fills it. The figure's box shows, empty, under the busy message.
async function warmUp() {
  const gd = $('traj-plot');
  if (gd.data || st.drawn) return;
  $('traj-stack').classList.remove('empty');
  // one transparent point of each marker symbol the figure draws (phrases A
  // and B, the cloud's key): plotly triangulates a symbol's glyph once a page
  // (window.__TEXT_CACHE), here rather than in the first draw
  const clear = 'rgba(0,0,0,0)';
  await Plotly.newPlot(gd, [{ type: 'scatter3d', mode: 'lines+markers+text', x: [0, 0, 0], y: [0, 0, 0], z: [0, 0, 0],
    text: ['', '', ''], marker: { symbol: [...SYMBOLS, 'square'], color: clear }, line: { color: clear },
    hoverinfo: 'skip', showlegend: false }], {
    margin: { l: 0, r: 0, t: 28, b: 0 }, paper_bgcolor: clear, showlegend: false,
    scene: { xaxis: BARE_AXIS, yaxis: BARE_AXIS, zaxis: BARE_AXIS, bgcolor: clear },
  }, { ...config(fileStem()), displayModeBar: false });
  mark('twd:traj-warm');
}

// Plotly measures a plot's box only when the plot is made or resized, not in
// react: a plot made while a message took room (the warm-up scene beside a
// slow answer) is resized to the box it is now laid out in, the box the
// sketch and the other layer are drawn for.
async function fitBox(el) {
  const fl = el._fullLayout;
  if (!fl || !el.data) return;
  const cs = getComputedStyle(el);
  if (Math.abs(fl.width - parseFloat(cs.width)) > 0.5 || Math.abs(fl.height - parseFloat(cs.height)) > 0.5)
    await Plotly.Plots.resize(el);
}

// A draw that builds the cloud's buffers is the figure's full draw: timed.
function drawTimed(seq) {
  const full = st.cloud && (!st.cloudTrace || st.cloudTrace.source !== st.cloud);
  return full ? timed('twd:traj-full-draw', () => drawAll(seq)) : drawAll(seq);
}

// The phrases' layer first (the first trajectory is on screen without
// waiting for the cloud's buffers), then the cloud's.
async function drawAll(seq) {
  const gd = $('traj-plot'), under = $('traj-cloud');
  st.drawn = true;
  markStale(false);  // shows the figure's box first, so that plotly measures its real size
  // labels never drawn before (plotly triangulates each new text, some 40 ms
  // a label) follow the paths and points by a frame
  const labels = st.pre.flatMap(x => x.labels);
  st.labelsLater = labels.some(l => !st.seenLabels.has(l));
  const { data, layout, below } = figure();
  await fitBox(gd);
  await Plotly.react(gd, data, layout, config(fileStem()));
  if (seq !== undefined && seq !== st.seq) return;
  if (!st.bound) bindPlotEvents(gd);
  afterDraw();
  // the sketch goes in the task that drew what it shows in 3D (the WebGL
  // canvas and the page change in the same frame): now, or with the labels
  if (!st.labelsLater) hideSketch();
  const first3d = !st.shown3d;
  if (first3d || st.labelsLater) await painted();
  if (first3d) {
    st.shown3d = true;
    mark('twd:traj-3d-on-screen');
  }
  if (!st.firstShown) {
    st.firstShown = true;
    mark('twd:traj-first-on-screen');
  }
  if (seq !== undefined && seq !== st.seq) return;
  if (st.labelsLater) {
    st.labelsLater = false;
    // with its text font and position as plotly's defaults make them (a trace
    // drawn without text has none): the labels are triangulated once, in the font the next
    // full draw uses (else that draw triangulates them again)
    const lf = gd._fullLayout.font;
    const font = { ...TEXT_FONT, family: lf.family, weight: lf.weight, style: lf.style, variant: lf.variant };
    const now = gd.data.filter(t => t.meta && t.meta.role === 'current')
      .map(t => ({ uid: t.uid, set: { mode: 'markers+text', textposition: t.textposition, textfont: { ...font } } }));
    if (!moveTraces(gd, now)) await Plotly.restyle(gd, { mode: 'markers+text' }, now.map(x => gd.data.findIndex(t => t.uid === x.uid)));
    for (const l of labels) st.seenLabels.add(l);
    hideSketch();
    mark('twd:traj-labels');
  }
  if (st.cloud) {
    // the cloud's trace is built after the phrases are on screen (its 50,257
    // hover texts and axes for GPT-2), once per cloud
    if (!st.cloudTrace || st.cloudTrace.source !== st.cloud) st.cloudTrace = { source: st.cloud, trace: cloudTrace(st.cloud) };
    await fitBox(under);
    await Plotly.react(under, [st.cloudTrace.trace], below,
      { ...config(fileStem()), displayModeBar: false, scrollZoom: false, showTips: false });
    // new ranges for the same cloud keep its buffers
    keepTrace(under, 'cloud');
  } else if (under.data) {
    Plotly.purge(under);
  }
  under.classList.toggle('off', !!st.cloudOff);
  gd.dataset.cloud = st.cloud ? String(st.cloud.n) : '0';
}

// The picture of both layers, as a data URL (png) or SVG text (svg).
async function figureImage(format) {
  const gd = $('traj-plot'), under = $('traj-cloud');
  const size = { width: Math.max(gd.clientWidth, 800), height: Math.max(gd.clientHeight, 500) };
  const layers = [];
  if (under.data && !st.cloudOff) layers.push(await Plotly.toImage(under, { format, ...size }));
  layers.push(await Plotly.toImage(gd, { format, ...size }));
  if (format === 'svg') {
    const inner = layers.map(u => decodeURIComponent(u.replace(/^data:image\/svg\+xml,/, '')).replace(/^<\?xml[^>]*>/, ''));
    return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${size.width}" ` +
      `height="${size.height}" viewBox="0 0 ${size.width} ${size.height}">${inner.join('')}</svg>`;
  }
  const canvas = document.createElement('canvas');
  canvas.width = size.width;
  canvas.height = size.height;
  const c2 = canvas.getContext('2d');
  c2.fillStyle = '#ffffff';
  c2.fillRect(0, 0, size.width, size.height);
  for (const u of layers) {
    const img = new Image();
    await new Promise((res, rej) => { img.onload = res; img.onerror = rej; img.src = u; });
    c2.drawImage(img, 0, 0, size.width, size.height);
  }
  return canvas.toDataURL('image/png');
}

function afterDraw() {
  const gd = $('traj-plot');
  gd.dataset.state = String(st.layer);
  gd.dataset.projection = st.request.projection;
  updateLayerLabel();
  renderDetails();
  renderTable();
  renderFaithfulness();
}

// A slider step: only the traces of the shown state and the title change,
// moved in place (plot.js moveTraces: no plotly pipeline, no legend or
// colour bar redrawn, the other traces' buffers kept); a plain restyle when
// that cannot be done.
async function stepTo(s) {
  const gd = $('traj-plot');
  st.layer = s;
  st.focus = null;
  const patches = [];
  if (!gd.data) return;
  st.results.forEach((r, p) => {
    const t = gd.data.find(x => x.uid === `p${p}-now`);
    if (t) patches.push({ uid: t.uid, set: { ...nowTrace(r, p), meta: { ...t.meta, state: s, state_name: r.states[s].name } } });
  });
  $('layer').value = String(s);
  updateLayerLabel();
  st.stepping = true;
  try {
    await timed('twd:traj-step', async () => {
      if (moveTraces(gd, patches)) { await setTitle(gd, title()); return; }
      const upd = {};
      for (const k of Object.keys(patches[0].set)) upd[k] = patches.map(x => x.set[k]);
      await Plotly.update(gd, upd, { 'title.text': title() }, patches.map(x => gd.data.findIndex(t => t.uid === x.uid)));
    });
  } finally {
    st.stepping = false;
  }
  afterDraw();
}

function fileStem() {
  const r = st.results[0];
  return r ? `twd-${slug(r.text)}-${st.request.projection}-${slug(r.states[st.layer].name)}` : 'twd-trajectory';
}

// ---------- controls ----------

function fillControls() {
  st.results.forEach((r, p) => {
    const sel = $(`highlight-${p}`);
    sel.replaceChildren(...r.tokens.map((t, i) => el('option', { value: i }, `${i + 1}: ${visibleToken(t.text)}`)));
    sel.value = String(st.highlight[p]);
    sel.disabled = false;
  });
  $('highlight-1-wrap').hidden = st.results.length < 2;
  const slider = $('layer');
  slider.max = String(st.results[0].n_states - 1);
  slider.value = String(st.layer);
  slider.disabled = false;
  for (const id of ['layer-prev', 'layer-play', 'layer-next']) $(id).disabled = false;
  st.tools.enable(true);
  updateLayerLabel();
}

function updateLayerLabel() {
  const r = st.results[0];
  if (!r) return;
  const s = r.states[st.layer];
  const text = `${longState(s)} — state ${st.layer + 1} of ${r.n_states}`;
  $('layer-name').textContent = text;
  $('layer').setAttribute('aria-valuetext', text);
  $('layer-prev').disabled = st.layer === 0;
  $('layer-next').disabled = st.layer === r.n_states - 1;
}

// The user moves the layer: a history entry per deliberate step (a key, a
// button, a click); a drag of the slider or the player replaces the entry it
// made first.
function userLayer(s, coalesce) {
  if (!st.results.length) return;
  const S = st.results[0].n_states;
  const v = Math.max(0, Math.min(S - 1, s));
  const push = !coalesce || !st.dragPushed;
  if (coalesce) st.dragPushed = true;
  setState({ layer: v === S - 1 ? null : v }, { push });
}

function userToken(p, t) {
  setState(p === 0 ? { token: t } : { token2: t });
}

function stopPlay() {
  if (!st.playTimer) return;
  clearInterval(st.playTimer);
  st.playTimer = 0;
  $('layer-play').textContent = 'Play';
  $('layer-play').setAttribute('aria-pressed', 'false');
}

function togglePlay() {
  if (st.playTimer) { stopPlay(); return; }
  if (!st.results.length) return;
  const S = st.results[0].n_states;
  st.dragPushed = false;
  if (st.layer >= S - 1) userLayer(0, true);
  $('layer-play').textContent = 'Pause';
  $('layer-play').setAttribute('aria-pressed', 'true');
  st.playTimer = setInterval(() => {
    if (st.stepping) return;  // a step still drawing: wait for it
    if (st.layer >= S - 1) { stopPlay(); return; }
    userLayer(st.layer + 1, true);
    if (st.layer >= S - 1) stopPlay();
  }, PLAY_MS);
}

// Arrow keys on the figure or its table: left/right the state, up/down the
// followed token of phrase A, Home/End the first and last state.
function onKeys(ev) {
  if (!st.results.length) return;
  const r = st.results[0];
  let handled = true;
  if (ev.key === 'ArrowLeft') userLayer(st.layer - 1, false);
  else if (ev.key === 'ArrowRight') userLayer(st.layer + 1, false);
  else if (ev.key === 'Home') userLayer(0, false);
  else if (ev.key === 'End') userLayer(r.n_states - 1, false);
  else if (ev.key === 'ArrowUp') userToken(0, Math.max(0, st.highlight[0] - 1));
  else if (ev.key === 'ArrowDown') userToken(0, Math.min(r.n_tokens - 1, st.highlight[0] + 1));
  else handled = false;
  if (handled) ev.preventDefault();
}

// ---------- details and table ----------

function nearestList(list) {
  return el('ol', { class: 'nearest' }, list.map(n =>
    el('li', {}, tokenChip(n), el('span', { class: 'score' },
      typeof n.prob === 'number' ? `${fmt(n.score)} · p ${fmt(n.prob)}` : fmt(n.score)))));
}

function renderDetails() {
  const box = $('details');
  const parts = [el('h2', {}, 'Nearest vocabulary tokens')];
  const points = st.focus ? [st.focus] : st.results.map((_, p) => ({ p, t: st.highlight[p], s: st.layer }));
  for (const { p, t, s } of points) {
    const r = st.results[p];
    if (!r) continue;
    parts.push(el('h3', {},
      st.results.length > 1 ? `${LETTERS[p]} · ` : '', tokenChip(r.tokens[t]),
      ` (token ${t + 1} of ${r.n_tokens}) at ${r.states[s].name}`));
    parts.push(nearestList(r.states[s].nearest[t]));
  }
  if (st.focus) parts.push(el('p', { class: 'hint' }, 'The point under the pointer. Change the layer or the token to go back.'));
  st.results.forEach((r, p) => {
    if (!r.next_tokens || !r.next_tokens.length) return;
    parts.push(el('h3', {}, st.results.length > 1 ? `${LETTERS[p]} · ` : '', 'next token after the phrase (logit, probability)'));
    parts.push(el('ol', { class: 'nearest' }, r.next_tokens.slice(0, 5).map(n =>
      el('li', {}, tokenChip(n), el('span', { class: 'score' },
        typeof n.prob === 'number' ? `${fmt(n.score)} · p ${fmt(n.prob)}` : fmt(n.score))))));
  });
  box.replaceChildren(...parts);
}

// ---------- how faithful the 3D picture is (when the daemon says) ----------

// Known figures of a `faithfulness` object, in the order shown, with what
// they mean in plain words. Other numeric fields are listed after them.
const FAITH = [
  ['trustworthiness', 'trustworthiness', 'near in 3D means near in the full space (1: always)'],
  ['continuity', 'continuity', 'near in the full space stays near in 3D (1: always)'],
  ['knn_overlap', 'neighbours kept', 'of the phrase\'s states\' nearest fitted rows in the full space, the share also nearest in 3D'],
  ['explained_variance_ratio', 'variance explained', 'share of the variance each of the 3 components keeps'],
  ['explained_variance', 'variance explained', 'share of the variance the 3 components keep'],
  ['variance_explained', 'variance explained', 'share of the variance the 3 components keep'],
];
const FAITH_QUIET = new Set(['k', 'neighbours', 'neighbors', 'n_neighbors', 'sample', 'n_sample', 'sample_rows', 'rows', 'seed',
  'definition', 'method', 'projection', 'state']);

function faithValue(v) {
  if (typeof v === 'number') return fmt(v);
  if (Array.isArray(v) && v.every(x => typeof x === 'number')) {
    const sum = v.reduce((a, b) => a + b, 0);
    return `${v.map(x => fmt(x)).join(' + ')}${v.length > 1 ? ` = ${fmt(sum)}` : ''}`;
  }
  if (v && typeof v === 'object' && typeof v.overall === 'number') return fmt(v.overall);
  if (v && typeof v === 'object' && typeof v.value === 'number') return fmt(v.value);
  if (v && typeof v === 'object' && typeof v.mean === 'number') return fmt(v.mean);
  return null;
}

// The rows of one answer's faithfulness: [label, value, what it means].
export function faithRows(f) {
  if (!f || typeof f !== 'object') return [];
  const rows = [];
  const seen = new Set();
  for (const [key, label, what] of FAITH) {
    if (!(key in f) || seen.has(label)) continue;
    const v = faithValue(f[key]);
    if (v === null) continue;
    seen.add(label);
    rows.push([label, v, what, key]);
  }
  for (const [key, val] of Object.entries(f)) {
    if (FAITH.some(x => x[0] === key) || FAITH_QUIET.has(key)) continue;
    const v = faithValue(val);
    if (v !== null) rows.push([key.replace(/_/g, ' '), v, '', key]);
  }
  return rows;
}

function renderFaithfulness() {
  const box = $('traj-faith');
  // the phrase's own figures, else the layout's (from /umap, as the page last read it)
  const u = st.ctx.current && st.ctx.current.umap;
  const layoutF = u && u.faithfulness ? u.faithfulness[st.request.projection] : null;
  const sets = st.results.map((r, p) => ({ p, f: r.faithfulness || (p === 0 ? layoutF : null) }))
    .filter(x => x.f && typeof x.f === 'object');
  if (!sets.length) { box.hidden = true; return; }
  const parts = [];
  const f0 = sets[0].f;
  const k = f0.k || f0.neighbours || f0.neighbors || f0.n_neighbors;
  const sample = f0.sample_rows || f0.sample || f0.n_sample || f0.rows;
  parts.push(el('p', { class: 'hint' }, `How well the ${st.request.projection.toUpperCase()} layout keeps the neighbourhoods of the ` +
    `full space${k ? ` (${k} nearest neighbours` : ''}${k && typeof sample === 'number' ? `, on ${sample} fitted rows` : ''}${k ? ')' : ''}.`));
  for (const { p, f } of sets) {
    const rows = faithRows(f);
    if (!rows.length) continue;
    parts.push(el('table', { class: 'data faith', 'data-phrase': String(p) },
      sets.length > 1 ? el('caption', {}, `phrase ${LETTERS[p]}`) : '',
      el('tbody', {}, rows.map(([label, v, what, key]) => el('tr', { 'data-key': key, title: what },
        el('th', { scope: 'row' }, label), el('td', { class: 'num' }, v))))));
  }
  parts.push(el('p', { class: 'hint' }, 'Values near 1 mean the picture can be read as it is; lower values mean that ' +
    'points drawn close together may not be close in the model.'));
  $('traj-faith-body').replaceChildren(...parts);
  box.hidden = false;
}

function renderTable() {
  const wrap = $('traj-table-wrap');
  wrap.hidden = false;
  const tables = st.results.map((r, p) => {
    const s = st.layer;
    const head = el('tr', {}, el('th', { scope: 'col' }, '#'), el('th', { scope: 'col' }, 'token'),
      el('th', { scope: 'col' }, `nearest at ${r.states[s].name}`), el('th', { scope: 'col' }, 'x, y, z'));
    const rows = r.tokens.map((tok, t) => el('tr', { class: t === st.highlight[p] ? 'now' : '' },
      el('td', { class: 'num' }, String(t + 1)), el('td', {}, tokenChip(tok)),
      el('td', {}, r.states[s].nearest[t].map(n => tokenChip(n))),
      el('td', { class: 'num' }, r.states[s].points[t].map(v => fmt(v, 2)).join(', '))));
    return el('table', { class: 'data' },
      el('caption', {}, `${st.results.length > 1 ? `Phrase ${LETTERS[p]}: ` : ''}“${r.text}” — ${longState(r.states[s])} ` +
        `(state ${s + 1} of ${r.n_states}); followed: token ${st.highlight[p] + 1}`),
      el('thead', {}, head), el('tbody', {}, rows));
  });
  $('traj-table').replaceChildren(...tables);
}

// ---------- downloads ----------

function dataDoc() {
  return {
    generated_by: 'twd web page', url: location.href, model: st.ctx.current,
    request: st.request,
    shown: {
      state_index: st.layer, state_name: st.results[0].states[st.layer].name,
      followed_tokens: st.highlight.slice(0, st.results.length), camera: state.camera || null,
    },
    trajectories: st.results,
    background: cloudDoc(st.cloud),
  };
}

// tidy: one row per phrase x state x position x rank of the nearest tokens
function dataCsv() {
  const rows = [['phrase', 'index', 'name', 'block', 'position', 'token_id', 'token_text', 'x', 'y', 'z',
    'rank', 'id', 'text', 'score', 'prob']];
  st.results.forEach((r, p) => r.states.forEach((s, i) => r.tokens.forEach((tok, t) => {
    const q = s.points[t];
    s.nearest[t].forEach((n, j) => rows.push([LETTERS[p], i, s.name, s.block, t, tok.id, tok.text, q[0], q[1], q[2],
      j + 1, n.id, n.text, n.score, typeof n.prob === 'number' ? n.prob : null]));
  })));
  return rows;
}

// ---------- the view ----------

export function init(ctx) {
  st.ctx = ctx;
  const f = $('traj-form');
  const m = ctx.current;
  const umapState = m.umap && m.umap.state;
  if (umapState === 'disabled' || umapState === 'failed') {
    $('umap-note').textContent = umapState === 'disabled' ? ' (off on this daemon)' : ' (failed on this daemon)';
    if (!/(^|[#&])projection=/.test(location.hash)) setState({ projection: 'pca' }, { push: false, silent: true });
  }
  f.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = readForm();
    const patch = { ...v };
    if (v.text !== state.text) patch.token = null;
    if (v.compare !== state.compare) patch.token2 = null;
    // the same request again (after an error, say): ask once more
    if (Object.keys(patch).every(k => state[k] === patch[k])) { st.key = ''; sync(null); return; }
    setState(patch);
  });
  for (const r of f.elements.projection) r.addEventListener('change', () => setState({ projection: r.value }));
  for (const p of [0, 1]) $(`highlight-${p}`).addEventListener('change', ev => userToken(p, Number(ev.target.value)));
  $('layer').addEventListener('pointerdown', () => { st.dragging = true; st.dragPushed = false; });
  window.addEventListener('pointerup', () => { st.dragging = false; });
  $('layer').addEventListener('input', ev => { stopPlay(); userLayer(Number(ev.target.value), st.dragging); });
  $('layer-prev').addEventListener('click', () => { stopPlay(); userLayer(st.layer - 1, false); });
  $('layer-next').addEventListener('click', () => { stopPlay(); userLayer(st.layer + 1, false); });
  $('layer-play').addEventListener('click', togglePlay);
  $('traj-plot').addEventListener('keydown', onKeys);
  $('traj-table').addEventListener('keydown', onKeys);
  st.tools = downloadTools($('traj-tools'), {
    prefix: 'traj', name: 'trajectories', figure: () => $('traj-plot'), image: figureImage, stem: fileStem, json: dataDoc, csv: dataCsv,
  });
  $('traj-stack').classList.add('empty');
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (st.drawn && !$('view-traj').hidden && ($('traj-plot').clientWidth < 620) !== st.narrow) drawAll();
    }, 150);
  });
}

// Brings the figure to the state: a new request draws anew; a layer, token
// or camera change updates only what it changes.
export async function sync() {
  const req = wanted();
  fillForm(req);
  const key = reqKey(req);
  if (key !== st.key) { await run(req); return; }
  if (!st.results.length) return;
  const S = st.results[0].n_states;
  const layer = state.layer === null ? S - 1 : Math.min(state.layer, S - 1);
  const hl = [state.token, state.token2].map((t, p) => {
    const r = st.results[p];
    if (!r) return 0;
    return Math.min(r.n_tokens - 1, t !== null ? t : Math.max(0, r.n_tokens - 2));
  });
  const hlChanged = st.results.some((_, p) => hl[p] !== st.highlight[p]);
  if (!st.drawn) {
    // the answer is in but plotly's scene is not drawn yet: the sketch (if
    // any) follows the layer and the tokens, and the scene is drawn with them
    if (!hlChanged && layer === st.layer && state.camera === st.camera) return;
    st.highlight = hl;
    st.layer = layer;
    st.focus = null;
    st.results.forEach((_, p) => { $(`highlight-${p}`).value = String(st.highlight[p]); });
    $('layer').value = String(layer);
    updateLayerLabel();
    if (!$('traj-sketch').hidden) showSketch();
    return;
  }
  if (hlChanged || state.camera !== st.camera) {
    st.highlight = hl;
    st.layer = layer;
    st.focus = null;
    st.results.forEach((_, p) => { $(`highlight-${p}`).value = String(st.highlight[p]); });
    $('layer').value = String(layer);
    await drawAll();
  } else if (layer !== st.layer) {
    await stepTo(layer);
  }
}

export function hide() { stopPlay(); }

// Hover: the details panel shows the point; click: follow that token from that
// state; turning the scene: the camera goes into the URL.
function bindPlotEvents(gd) {
  st.bound = true;
  gd.on('plotly_hover', ev => {
    const d = ev.points && ev.points[0] && ev.points[0].customdata;
    if (!Array.isArray(d)) return;
    st.focus = { p: d[0], t: d[1], s: d[2] };
    renderDetails();
  });
  // plotly's 3D scene reports a click while the button is still down, and
  // again after each redraw under the held pointer (a redraw that moves the
  // point under it made the page flip between two points for ever): the click
  // is applied once, when the button comes up without the pointer having moved
  // (a drag turns the scene instead)
  let downAt = null, clicked = null, armed = false;
  const apply = d => {
    const [p, t, s] = d;
    stopPlay();
    const S = st.results[0].n_states;
    setState({ ...(p === 0 ? { token: t } : { token2: t }), layer: s === S - 1 ? null : s });
  };
  gd.addEventListener('pointerdown', ev => { downAt = [ev.clientX, ev.clientY]; clicked = null; armed = false; }, true);
  window.addEventListener('pointerup', ev => {
    if (!downAt) return;
    const moved = Math.hypot(ev.clientX - downAt[0], ev.clientY - downAt[1]) >= 5;
    const d = clicked;
    downAt = null;
    clicked = null;
    if (moved) return;
    if (d) apply(d);
    else armed = true;  // plotly may report the click just after the release
  }, true);
  gd.on('plotly_click', ev => {
    const d = ev.points && ev.points[0] && ev.points[0].customdata;
    if (!Array.isArray(d)) return;
    if (downAt) { clicked = clicked || d; return; }  // the first point under the pressed button
    if (armed) { armed = false; apply(d); }        // once per press; never again on the redraws it causes
  });
  // the layer below follows the camera of the one above, a frame at a time while it turns
  let pending = null;
  const follow = () => {
    const cam = pending;
    pending = null;
    const under = $('traj-cloud');
    if (cam && under.data) Plotly.relayout(under, { 'scene.camera': cam });
  };
  gd.on('plotly_relayouting', ev => {
    const cam = ev && ev['scene.camera'];
    if (!cam) return;
    if (!pending) requestAnimationFrame(follow);
    pending = cam;
  });
  gd.on('plotly_relayout', ev => {
    const cam = ev && (ev['scene.camera'] || (ev.scene && ev.scene.camera));
    if (!cam) return;
    pending = cam;
    follow();
    const s = cameraString(cam);
    if (s && s !== state.camera) {
      st.camera = s;  // already on screen
      setState({ camera: s }, { push: false, silent: true });
    }
  });
  gd.on('plotly_legendclick', ev => {
    const t = ev && ev.data && ev.data[ev.curveNumber];
    if (!t || t.uid !== 'cloud-key') return true;
    st.cloudOff = !st.cloudOff;
    $('traj-cloud').classList.toggle('off', st.cloudOff);
    Plotly.restyle(gd, { visible: st.cloudOff ? 'legendonly' : true }, [ev.curveNumber]);
    return false;
  });
}

// For the test and the console: what the figure shows.
export function trajectoryState() {
  return {
    request: st.request, layer: st.layer, highlight: st.highlight.slice(0, st.results.length),
    n_tokens: st.results.map(r => r.n_tokens), n_states: st.results.map(r => r.n_states),
    // the first frame's sketch: its scene box and every point of the phrases' paths where it drew them
    sketch: st.sketch,
  };
}
