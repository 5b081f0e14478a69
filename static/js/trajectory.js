// The trajectory view: one 3D figure with the faint vocabulary cloud
// (/umap/layout), each token's path through the states of /trajectory
// (coloured by layer), the tokens at the input, the states of the chosen layer,
// and an optional second phrase drawn alongside.
import { apiGet, apiPost, ApiError } from './api.js';
import { showMessage, hideMessage, errorText } from './ui.js';
import {
  visibleToken, plotlyText, sceneText, el, tokenChip, fmt, shortPhrase, downloadBlob, slug,
} from './text.js';

// Layer colours: violet (input) -> blue -> green -> amber -> red (last block);
// every stop stays readable on white.
const COLORSCALE = [[0, '#5e3c99'], [0.25, '#3b6fb6'], [0.5, '#1b9e77'], [0.75, '#e69f00'], [1, '#d7301f']];
const LETTERS = ['A', 'B'];
const SYMBOLS = ['circle', 'diamond'];
const DASHES = ['solid', 'dash'];
const PLAY_MS = 800;

const $ = id => document.getElementById(id);

const st = {
  model: null,
  request: null,      // the request the figure shows: {texts, projection, gelu, k, limit}
  results: [],        // /trajectory answers, phrase A then B
  cloud: null,        // /umap/layout answer drawn behind, or null
  cloudKey: '',
  cloudTrace: null,   // {source, trace}: the plotly trace of `cloud`
  layer: 0,           // state index shown by the slider
  highlight: [0, 0],  // token index followed in each phrase
  focus: null,        // {p, t, s} of the point the details panel shows (hover), or null
  seq: 0,             // request generation; stale answers are dropped
  abort: null,
  pollTimer: 0,
  playTimer: 0,
  bound: false,       // plotly event handlers attached
  busyTimer: 0,
  onUmap: () => {},
};

// ---------- colours and names ----------

function hexRgb(h) {
  return [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16));
}

// Colour of state s of n on COLORSCALE, as 'rgb(r,g,b)'.
function layerColor(s, n) {
  const t = n > 1 ? s / (n - 1) : 0;
  let i = 0;
  while (i < COLORSCALE.length - 2 && t > COLORSCALE[i + 1][0]) i++;
  const [t0, c0] = COLORSCALE[i], [t1, c1] = COLORSCALE[i + 1];
  const u = Math.max(0, Math.min(1, (t - t0) / (t1 - t0)));
  const a = hexRgb(c0), b = hexRgb(c1);
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * u)).join(',')})`;
}

// Short state names for the colour bar: E, E+P, ln_f(E+P), b0, b1, ...
function shortState(state) {
  if (state.block !== null && state.block !== undefined) return `b${state.block}`;
  if (state.name === 'embedding') return 'E';
  if (state.name === 'embedding+position') return 'E+P';
  if (state.name === 'embedding+position, ln_f') return 'ln_f(E+P)';
  return state.name;
}

// Long state names for the slider and hover: "input embedding", "block 3 (ln_f)".
function longState(state) {
  if (state.block !== null && state.block !== undefined) return `block ${state.block} (ln_f of the residual)`;
  if (state.name === 'embedding') return 'input: token embedding';
  if (state.name === 'embedding+position') return 'input: embedding + position';
  if (state.name === 'embedding+position, ln_f') return 'input: ln_f(embedding + position)';
  return state.name;
}

// ---------- requests ----------

function readForm() {
  const f = $('traj-form');
  const texts = [f.elements.text.value];
  const second = f.elements.text2.value;
  if (second.trim() !== '') texts.push(second);
  const int = (v, d) => (/^\d+$/.test(String(v).trim()) ? Number(v) : d);
  return {
    texts,
    projection: f.elements.projection.value || 'umap',
    gelu: f.elements.gelu.value,
    k: int(f.elements.k.value, 5),
    limit: int(f.elements.limit.value, 0),
  };
}

function setProjection(p) {
  for (const r of $('traj-form').elements.projection) r.checked = r.value === p;
}

function sameTokens(a, b) {
  return a && b && a.tokens.length === b.tokens.length && a.tokens.every((t, i) => t.id === b.tokens[i].id);
}

// Asks for the trajectories of req (and the background cloud) and draws them;
// on failure shows the daemon's message, and while the UMAP layout is fitted,
// its progress with an offer to use PCA, retrying when the fit is done.
export async function run(req) {
  stopPlay();
  clearTimeout(st.pollTimer);
  if (st.abort) st.abort.abort();
  const ac = new AbortController();
  st.abort = ac;
  const seq = ++st.seq;
  clearTimeout(st.busyTimer);
  st.busyTimer = setTimeout(() => {
    if (seq === st.seq) showMessage($('traj-msg'), { kind: 'info', title: 'Computing the trajectories…' });
  }, 300);
  $('traj-plot').setAttribute('aria-busy', 'true');
  try {
    const cloudKey = `${req.projection}:${req.limit}`;
    const cloudJob = st.cloud && st.cloudKey === cloudKey
      ? Promise.resolve(st.cloud)
      : apiGet('/umap/layout', { projection: req.projection, limit: req.limit }, ac.signal);
    const jobs = req.texts.map((text, p) => apiPost('/trajectory',
      { text, projection: req.projection, gelu: req.gelu, k: req.k }, ac.signal)
      .catch(e => { e.phrase = p; throw e; }));
    const [cloud, ...results] = await Promise.all([cloudJob, ...jobs]);
    if (seq !== st.seq) return;
    const prev = st.results;
    st.request = { texts: req.texts, projection: req.projection, gelu: req.gelu, k: req.k, limit: req.limit };
    st.results = results;
    st.cloud = cloud;
    st.cloudKey = cloudKey;
    results.forEach((r, p) => {
      if (!sameTokens(prev[p], r)) st.highlight[p] = Math.max(0, r.n_tokens - 2);  // the paper's choice
      st.highlight[p] = Math.min(st.highlight[p], r.n_tokens - 1);
    });
    const S = results[0].n_states;
    if (!prev.length || prev[0].n_states !== S) st.layer = S - 1;
    st.layer = Math.min(st.layer, S - 1);
    st.focus = null;
    clearTimeout(st.busyTimer);
    hideMessage($('traj-msg'));
    fillControls();
    draw();
    showFaithfulness(results);
    saveHash(req);
  } catch (e) {
    if (e.name === 'AbortError' || seq !== st.seq) return;
    clearTimeout(st.busyTimer);
    ac.abort();
    if (e instanceof ApiError && e.status === 503 && req.projection === 'umap') await umapUnavailable(req, e, seq);
    else showFailure(e, req);
  } finally {
    if (seq === st.seq) $('traj-plot').removeAttribute('aria-busy');
  }
}

function showFailure(e, req) {
  const which = req.texts.length > 1 && e.phrase !== undefined ? ` (phrase ${LETTERS[e.phrase]})` : '';
  const status = e instanceof ApiError && e.status ? ` — HTTP ${e.status}` : '';
  showMessage($('traj-msg'), {
    kind: 'error',
    title: `twd could not compute this${which}${status}:`,
    text: errorText(e),
    note: st.results.length ? 'The figure below still shows the previous answer.' : '',
  });
  markStale(true);
}

// The UMAP layout is not ready: fitting (poll /umap, show progress, retry), or
// disabled / failed (say so and offer PCA).
async function umapUnavailable(req, err, seq) {
  let status = null;
  try { status = await apiGet('/umap'); } catch (e) { status = null; }
  if (seq !== st.seq) return;
  if (status) st.onUmap(status);
  const usePca = {
    label: 'Show with PCA instead', id: 'use-pca',
    onClick: () => { setProjection('pca'); run({ ...req, projection: 'pca' }); },
  };
  // the fit may have finished since the request: ask once more
  if (status && status.state === 'ready' && !req.retried) { run({ ...req, retried: true }); return; }
  if (!status || status.state !== 'fitting') {  // disabled, failed, or another 503
    showMessage($('traj-msg'), {
      kind: 'error', title: 'The UMAP projection is not available on this daemon:', text: errorText(err),
      actions: [usePca],
    });
    markStale(true);
    return;
  }
  showMessage($('traj-msg'), {
    kind: 'wait',
    title: 'The UMAP layout of the vocabulary is still being fitted.',
    text: errorText(err),
    note: `Stage: ${status.stage || '?'}. The figure appears by itself when the fit is done; PCA works now.`,
    progress: status.progress,
    actions: [usePca],
  });
  markStale(true);
  // /umap is cheap: poll it every second (rather than the Retry-After of
  // /trajectory) so that the progress bar moves
  st.pollTimer = setTimeout(() => pollUmap(req, seq), 1000);
}

async function pollUmap(req, seq) {
  if (seq !== st.seq) return;
  let status;
  try { status = await apiGet('/umap'); } catch (e) { status = null; }
  if (seq !== st.seq) return;
  if (status) st.onUmap(status);
  if (status && status.state === 'fitting') {
    const box = $('traj-msg');
    const bar = box.querySelector('progress');
    if (bar) {
      const pct = Math.round(status.progress * 100);
      bar.value = pct;
      bar.nextSibling.textContent = ` ${pct} %`;
    }
    st.pollTimer = setTimeout(() => pollUmap(req, seq), 1000);
    return;
  }
  run(req);  // ready, failed or disabled: ask again and show what comes back
}

function markStale(stale) {
  $('traj-plot').classList.toggle('stale', stale && st.results.length > 0);
  $('traj-plot').classList.toggle('empty', st.results.length === 0);
}

// ---------- figure ----------

function hoverText(r, p, t, s) {
  const tok = r.tokens[t];
  const state = r.states[s];
  const lines = [
    `<b>${plotlyText(visibleToken(tok.text))}</b>  token ${t + 1} of ${r.n_tokens}` +
      (st.results.length > 1 ? `, phrase ${LETTERS[p]}` : ''),
    plotlyText(longState(state)),
    'nearest vocabulary tokens:',
  ];
  for (const n of r.states[s].nearest[t]) lines.push(`  ${plotlyText(visibleToken(n.text))}  ${fmt(n.score)}`);
  return lines.join('<br>');
}

function cloudTrace(c) {
  const pts = c.points;
  return {
    type: 'scatter3d', mode: 'markers', name: `vocabulary (${c.n} of ${c.rows} fitted rows)`,
    x: pts.map(q => q[0]), y: pts.map(q => q[1]), z: pts.map(q => q[2]),
    hovertext: c.tokens.map(t => plotlyText(visibleToken(t.text))), hoverinfo: 'text',
    marker: { size: 2, color: '#8a93a3', opacity: 0.28 },
    meta: { role: 'cloud' },
  };
}

function colorbar(r, narrow) {
  const S = r.n_states;
  const every = Math.max(1, Math.ceil(S / (narrow ? 8 : 16)));
  const tickvals = [], ticktext = [];
  r.states.forEach((s, i) => {
    if (i % every === 0 || i === S - 1) { tickvals.push(i); ticktext.push(plotlyText(shortState(s))); }
  });
  const common = { title: { text: 'state' }, tickvals, ticktext, thickness: 12, outlinewidth: 0 };
  return narrow
    ? { ...common, orientation: 'h', x: 0.5, xanchor: 'center', y: 0.01, yanchor: 'bottom', len: 0.94, thickness: 10,
        title: { text: '' }, tickfont: { size: 10 } }
    : { ...common, x: 1, xanchor: 'right', len: 0.7 };
}

function phraseTraces(r, p, narrow) {
  const S = r.n_states, N = r.n_tokens, h = st.highlight[p], L = st.layer;
  const letter = LETTERS[p];
  // wide: a legend group per phrase with the phrase as its title; narrow: a short
  // one-line legend (A:/B: prefixes, no group, only the followed path and the layer)
  const group = narrow
    ? { showlegend: true }
    : { legendgroup: letter, legendgrouptitle: { text: `${letter}: “${plotlyText(shortPhrase(r.text))}”` } };
  const pre = narrow && st.results.length > 1 ? `${letter}: ` : '';
  const minor = narrow ? { showlegend: false } : {};
  const labels = r.tokens.map(t => sceneText(visibleToken(t.text)));
  const pt = (t, s) => r.states[s].points[t];
  const cmap = { colorscale: COLORSCALE, cmin: 0, cmax: Math.max(1, S - 1) };

  // every other token's path, as one trace broken by gaps
  const o = { x: [], y: [], z: [], c: [], h: [], d: [] };
  for (let t = 0; t < N; t++) {
    if (t === h) continue;
    for (let s = 0; s < S; s++) {
      const q = pt(t, s);
      o.x.push(q[0]); o.y.push(q[1]); o.z.push(q[2]); o.c.push(s); o.h.push(hoverText(r, p, t, s)); o.d.push([p, t, s]);
    }
    o.x.push(null); o.y.push(null); o.z.push(null); o.c.push(0); o.h.push(''); o.d.push(null);
  }
  const traces = [];
  if (N > 1) {
    traces.push({
      type: 'scatter3d', mode: 'lines+markers', name: 'paths of the other tokens', ...group, ...minor,
      x: o.x, y: o.y, z: o.z, hovertext: o.h, hoverinfo: 'text', customdata: o.d, connectgaps: false,
      line: { color: o.c, ...cmap, width: 2, dash: DASHES[p] },
      marker: { color: o.c, ...cmap, size: 2, symbol: SYMBOLS[p] },
      opacity: 0.45,
      meta: { role: 'paths', phrase: p, tokens: N - 1, states: S },
    });
  }
  // the followed token's path
  const idx = [...Array(S).keys()];
  traces.push({
    type: 'scatter3d', mode: 'lines+markers', name: `${pre}path of ${plotlyText(visibleToken(r.tokens[h].text))}`, ...group,
    x: idx.map(s => pt(h, s)[0]), y: idx.map(s => pt(h, s)[1]), z: idx.map(s => pt(h, s)[2]),
    hovertext: idx.map(s => hoverText(r, p, h, s)), hoverinfo: 'text', customdata: idx.map(s => [p, h, s]),
    line: { color: idx, ...cmap, width: 7, dash: DASHES[p] },
    marker: { color: idx, ...cmap, size: 4, symbol: SYMBOLS[p], showscale: p === 0, colorbar: colorbar(r, narrow) },
    meta: { role: 'highlight', phrase: p, token: h, states: S },
  });
  // the tokens at the input
  traces.push({
    type: 'scatter3d', mode: 'markers+text', name: 'tokens at the input', ...group, ...minor,
    x: r.tokens.map((_, t) => pt(t, 0)[0]), y: r.tokens.map((_, t) => pt(t, 0)[1]), z: r.tokens.map((_, t) => pt(t, 0)[2]),
    text: labels, textposition: 'top center', textfont: { size: 11, color: layerColor(0, S) },
    hovertext: r.tokens.map((_, t) => hoverText(r, p, t, 0)), hoverinfo: 'text', customdata: r.tokens.map((_, t) => [p, t, 0]),
    marker: { size: 3.5, color: layerColor(0, S), symbol: SYMBOLS[p] },
    meta: { role: 'inputs', phrase: p, tokens: N },
  });
  // the chosen layer's states
  const cur = r.states[L];
  traces.push({
    type: 'scatter3d', mode: 'markers+text', name: `${pre}at ${plotlyText(cur.name)}`, ...group,
    x: cur.points.map(q => q[0]), y: cur.points.map(q => q[1]), z: cur.points.map(q => q[2]),
    text: labels, textposition: 'top center', textfont: { size: 12, color: '#1d2330' },
    hovertext: r.tokens.map((_, t) => hoverText(r, p, t, L)), hoverinfo: 'text', customdata: r.tokens.map((_, t) => [p, t, L]),
    marker: {
      size: r.tokens.map((_, t) => (t === h ? 10 : 6.5)), color: layerColor(L, S), symbol: SYMBOLS[p],
      line: { color: '#1d2330', width: 1 },
    },
    meta: { role: 'current', phrase: p, tokens: N, state: L, state_name: cur.name },
  });
  return traces;
}

function isNarrow() {
  return $('traj-plot').clientWidth < 700;
}

function figure() {
  const narrow = isNarrow();
  st.narrow = narrow;
  const data = [];
  if (st.cloud) {
    // built once per layout: the same arrays let plotly skip them when redrawing
    if (!st.cloudTrace || st.cloudTrace.source !== st.cloud) st.cloudTrace = { source: st.cloud, trace: cloudTrace(st.cloud) };
    data.push(st.cloudTrace.trace);
  }
  st.results.forEach((r, p) => data.push(...phraseTraces(r, p, narrow)));
  const r0 = st.results[0];
  const proj = st.request.projection.toUpperCase();
  const axis = t => ({
    title: { text: `${proj} ${t}`, font: { size: 11, color: '#5b6475' } }, showticklabels: false, showspikes: false,
    gridcolor: '#e3e7ee', zeroline: false, showbackground: true, backgroundcolor: '#fbfcfe',
  });
  const model = st.model ? `${st.model.name}${st.model.synthetic ? ' (synthetic)' : ''}` : '';
  const layout = {
    title: {
      text: `${plotlyText(model)} · ${proj} · ${plotlyText(r0.states[st.layer].name)}`,
      x: 0.01, xanchor: 'left', font: { size: 14 },
    },
    margin: { l: 0, r: 0, t: 34, b: 0 },
    paper_bgcolor: '#ffffff',
    showlegend: true,
    // narrow: the legend above the scene and the colour bar below it, both inside the figure
    legend: narrow
      ? { orientation: 'h', x: 0, y: 1, yanchor: 'top', bgcolor: 'rgba(255,255,255,0.85)', font: { size: 10 } }
      : { x: 0.01, y: 0.97, bgcolor: 'rgba(255,255,255,0.85)', bordercolor: '#d9dde4', borderwidth: 1, font: { size: 11 } },
    scene: {
      aspectmode: 'data', xaxis: axis('1'), yaxis: axis('2'), zaxis: axis('3'), hovermode: 'closest',
      camera: { eye: narrow ? { x: 1.3, y: 1.3, z: 0.9 } : { x: 1.05, y: 1.05, z: 0.7 } },
      domain: narrow ? { x: [0, 1], y: [0.1, 0.86] } : { x: [0, 1], y: [0, 1] },
    },
    hoverlabel: { bgcolor: '#ffffff', bordercolor: '#8a93a3', font: { family: 'DejaVu Sans Mono, monospace', size: 12, color: '#1d2330' }, align: 'left' },
    uirevision: `${st.request.projection}`,
  };
  return { data, layout };
}

function draw() {
  const gd = $('traj-plot');
  markStale(false);  // shows the figure's box first, so that plotly measures its real size
  const { data, layout } = figure();
  Plotly.react(gd, data, layout, {
    displaylogo: false, responsive: true,
    toImageButtonOptions: { filename: fileStem(), format: 'png' },
  });
  if (!st.bound) bindPlotEvents(gd);
  gd.dataset.state = String(st.layer);
  gd.dataset.projection = st.request.projection;
  renderDetails();
  renderTable();
}

function fileStem() {
  const r = st.results[0];
  return r ? `twd-${slug(r.text)}-${st.request.projection}-${slug(r.states[st.layer].name)}` : 'twd-trajectory';
}

// ---------- controls ----------

function fillControls() {
  st.results.forEach((r, p) => {
    const sel = $(`highlight-${p}`);
    sel.replaceChildren(...r.tokens.map((t, i) =>
      el('option', { value: i }, `${i + 1}: ${visibleToken(t.text)}`)));
    sel.value = String(st.highlight[p]);
    sel.disabled = false;
  });
  $('highlight-1-wrap').hidden = st.results.length < 2;
  const slider = $('layer');
  slider.max = String(st.results[0].n_states - 1);
  slider.value = String(st.layer);
  slider.disabled = false;
  for (const id of ['layer-prev', 'layer-play', 'layer-next', 'traj-png', 'traj-json']) $(id).disabled = false;
  updateLayerLabel();
}

function updateLayerLabel() {
  const r = st.results[0];
  const s = r.states[st.layer];
  const text = `${longState(s)} — ${st.layer + 1} of ${r.n_states}`;
  $('layer-name').textContent = text;
  $('layer').setAttribute('aria-valuetext', text);
  $('layer-prev').disabled = st.layer === 0;
  $('layer-next').disabled = st.layer === r.n_states - 1;
}

export function setLayer(s) {
  if (!st.results.length) return;
  const S = st.results[0].n_states;
  st.layer = Math.max(0, Math.min(S - 1, s));
  $('layer').value = String(st.layer);
  st.focus = null;
  updateLayerLabel();
  draw();
}

function stopPlay() {
  if (!st.playTimer) return;
  clearInterval(st.playTimer);
  st.playTimer = 0;
  $('layer-play').textContent = '▶ Play';
  $('layer-play').setAttribute('aria-pressed', 'false');
}

function togglePlay() {
  if (st.playTimer) { stopPlay(); return; }
  if (!st.results.length) return;
  const S = st.results[0].n_states;
  if (st.layer >= S - 1) setLayer(0);
  $('layer-play').textContent = '⏸ Pause';
  $('layer-play').setAttribute('aria-pressed', 'true');
  st.playTimer = setInterval(() => {
    if (st.layer >= S - 1) { stopPlay(); return; }
    setLayer(st.layer + 1);
    if (st.layer >= S - 1) stopPlay();
  }, PLAY_MS);
}

// ---------- how far to trust the picture (docs/MATH.md §15) ----------

function pct(x) { return x === null || x === undefined ? 'n/a' : `${Math.round(100 * x)} %`; }

function showFaithfulness(results) {
  const box = $('traj-faith');
  const f = results[0] && results[0].faithfulness;
  if (!f) { box.hidden = true; return; }
  const name = f.projection === 'pca' ? 'PCA' : 'UMAP';
  const parts = [`How faithful this 3D ${name} picture is, at ${f.k} neighbours on ${f.sample_rows} fitted rows: ` +
    `trustworthiness ${fmt(f.trustworthiness, 3)}, continuity ${fmt(f.continuity, 3)} (1 is perfect).`];
  if (f.explained_variance_ratio) {
    parts.push(`The 3 components explain ${f.explained_variance_ratio.map(pct).join(', ')} of the variance.`);
  }
  results.forEach((r, p) => {
    const o = r.faithfulness && r.faithfulness.knn_overlap;
    if (!o) return;
    parts.push(`${results.length > 1 ? `Phrase ${LETTERS[p]}: its` : 'The phrase\'s'} states keep ${pct(o.overall)} ` +
      `of their ${o.k} nearest fitted rows among their ${o.k} nearest in 3D.`);
  });
  box.textContent = parts.join(' ');
  box.hidden = false;
}

// ---------- details and table ----------

function nearestList(list) {
  return el('ol', { class: 'nearest' }, list.map(n =>
    el('li', {}, tokenChip(n), el('span', { class: 'score' }, fmt(n.score)))));
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
      el('li', {}, tokenChip(n), el('span', { class: 'score' }, `${fmt(n.score)} · p ${fmt(n.prob)}`)))));
  });
  box.replaceChildren(...parts);
}

function renderTable() {
  const wrap = $('traj-table-wrap');
  wrap.hidden = false;
  const tables = st.results.map((r, p) => {
    const s = st.layer;
    const head = el('tr', {}, el('th', { scope: 'col' }, '#'), el('th', { scope: 'col' }, 'token'),
      el('th', { scope: 'col' }, `nearest at ${r.states[s].name}`), el('th', { scope: 'col' }, 'x, y, z'));
    const rows = r.tokens.map((tok, t) => el('tr', {},
      el('td', { class: 'num' }, String(t + 1)), el('td', {}, tokenChip(tok)),
      el('td', {}, r.states[s].nearest[t].map(n => tokenChip(n))),
      el('td', { class: 'num' }, r.states[s].points[t].map(v => fmt(v, 2)).join(', '))));
    return el('table', { class: 'data' },
      el('caption', {}, `${st.results.length > 1 ? `Phrase ${LETTERS[p]}: ` : ''}“${r.text}”`),
      el('thead', {}, head), el('tbody', {}, rows));
  });
  $('traj-table').replaceChildren(...tables);
}

// ---------- downloads ----------

function downloadPng() {
  const gd = $('traj-plot');
  Plotly.downloadImage(gd, {
    format: 'png', filename: fileStem(), width: Math.max(gd.clientWidth, 800), height: Math.max(gd.clientHeight, 600),
  });
}

function downloadJson() {
  const doc = {
    generated_by: 'twd web page',
    url: location.href,
    model: st.model,
    request: st.request,
    shown: {
      state_index: st.layer, state_name: st.results[0].states[st.layer].name,
      followed_tokens: st.highlight.slice(0, st.results.length),
    },
    trajectories: st.results,
    background: st.cloud,
  };
  downloadBlob(new Blob([JSON.stringify(doc, null, 1)], { type: 'application/json' }), `${fileStem()}.json`);
}

// ---------- URL ----------

function saveHash(req) {
  const q = new URLSearchParams();
  q.set('text', req.texts[0]);
  if (req.texts[1]) q.set('compare', req.texts[1]);
  q.set('projection', req.projection);
  if (req.gelu !== 'tanh') q.set('gelu', req.gelu);
  history.replaceState(null, '', `#${q.toString()}`);
}

function loadHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  const f = $('traj-form');
  if (q.has('text')) f.elements.text.value = q.get('text');
  if (q.has('compare')) f.elements.text2.value = q.get('compare');
  if (['umap', 'pca'].includes(q.get('projection'))) setProjection(q.get('projection'));
  if (['tanh', 'erf'].includes(q.get('gelu'))) f.elements.gelu.value = q.get('gelu');
  return q.has('projection');
}

// ---------- set-up ----------

// Wires the view to model m (the /model answer); onUmap(status) is told each
// /umap status seen. Draws the default phrase at once.
export function initTrajectory(m, onUmap) {
  st.model = m;
  st.onUmap = onUmap || (() => {});
  const f = $('traj-form');
  $('nearest-k').max = '20';
  const explicit = loadHash();
  const umapState = m.umap && m.umap.state;
  if (umapState === 'disabled' || umapState === 'failed') {
    $('umap-note').textContent = umapState === 'disabled' ? ' (off on this daemon)' : ' (failed on this daemon)';
    if (!explicit) setProjection('pca');
  }
  f.addEventListener('submit', ev => { ev.preventDefault(); run(readForm()); });
  for (const r of f.elements.projection) r.addEventListener('change', () => { if (st.results.length) run(readForm()); });
  for (const p of [0, 1]) {
    $(`highlight-${p}`).addEventListener('change', ev => {
      st.highlight[p] = Number(ev.target.value);
      st.focus = null;
      draw();
    });
  }
  $('layer').addEventListener('input', ev => { stopPlay(); setLayer(Number(ev.target.value)); });
  $('layer-prev').addEventListener('click', () => { stopPlay(); setLayer(st.layer - 1); });
  $('layer-next').addEventListener('click', () => { stopPlay(); setLayer(st.layer + 1); });
  $('layer-play').addEventListener('click', togglePlay);
  $('traj-png').addEventListener('click', downloadPng);
  $('traj-json').addEventListener('click', downloadJson);

  $('traj-plot').classList.add('empty');
  // legend and colour bar move below the figure on a narrow window
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (st.results.length && !$('view-traj').hidden && isNarrow() !== st.narrow) draw();
    }, 150);
  });
  run(readForm());
}

// Hover: the details panel shows the point; click: follow that token from that state.
function bindPlotEvents(gd) {
  st.bound = true;
  gd.on('plotly_hover', ev => {
    const d = ev.points && ev.points[0] && ev.points[0].customdata;
    if (!Array.isArray(d)) return;
    st.focus = { p: d[0], t: d[1], s: d[2] };
    renderDetails();
  });
  gd.on('plotly_click', ev => {
    const d = ev.points && ev.points[0] && ev.points[0].customdata;
    if (!Array.isArray(d)) return;
    const [p, t, s] = d;
    st.highlight[p] = t;
    $(`highlight-${p}`).value = String(t);
    stopPlay();
    setLayer(s);
  });
}

// For the test and the console: what the figure shows.
export function trajectoryState() {
  return {
    request: st.request, layer: st.layer, highlight: st.highlight.slice(0, st.results.length),
    n_tokens: st.results.map(r => r.n_tokens), n_states: st.results.map(r => r.n_states),
  };
}
