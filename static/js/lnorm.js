// The layer-norm view: the paper's 2D sketch of a LayerNorm on the real
// weights (/layernorm/sketch, docs/MATH.md §12.4) — the unit circle of two
// coordinates, its image under γ, then + β, then the 2 x 2 block of a head's
// W_QK — and beside it the statistics of every LayerNorm of the model
// (/layernorm, §12.1-§12.3): centring, radius, the γ ellipsoid's axes with
// their tokens, β, how far γ and β move a state, and per head of the chosen
// block the share of keys that no query can make the most attended.
import { getCached, paramSchema } from './api.js';
import { state, setState } from './state.js';
import { errorText } from './ui.js';
import { plotlyText, el, tokenChip, fmt } from './text.js';
import { viewFrame, ask, numbered, whole, drawFigure, onSubmit } from './view.js';

const $ = id => document.getElementById(id);

// Okabe-Ito: told apart with colour-blindness
const STAGES = [
  { name: 'circle', label: 'unit circle (cos θ, sin θ)', color: '#8a93a3', dash: 'dot' },
  { name: 'gamma', label: 'after γ', color: '#0072b2', dash: 'solid' },
  { name: 'gamma+beta', label: 'after γ, then + β', color: '#d55e00', dash: 'solid' },
  { name: 'w_qk', label: 'times W_QK (key-space direction)', color: '#009e73', dash: 'solid' },
];

const nv = { ctx: null, skey: '', sketch: null, lkey: '', ln: null, seq: 0, lseq: 0, tools: null };

function clampBlock() { return Math.min(state.block, nv.ctx.current.n_layer - 1); }
function clampHead() { return Math.min(state.head === null ? 0 : state.head, nv.ctx.current.n_head - 1); }

function sketchParams() {
  const p = { block: clampBlock(), head: clampHead(), points: state.points };
  if (state.dims) p.dims = state.dims;
  return p;
}

function lnParams() {
  const max = paramSchema('/layernorm', 'k');
  const kmax = max && Number.isFinite(max.maximum) ? max.maximum : 20;
  return { k: Math.min(state.k, kmax, 20), keys_block: clampBlock() };
}

// ---------- the sketch ----------

function closed(points) {
  const xs = points.map(q => q[0]), ys = points.map(q => q[1]);
  return { x: [...xs, xs[0]], y: [...ys, ys[0]] };
}

function figure() {
  const sk = nv.sketch;
  const gd = $('ln-plot');
  const narrow = gd.clientWidth < 640;
  const P = sk.points;
  const [i, j] = sk.dims;
  const data = [];
  // the points at θ = 0 and θ = π/2 on every stage: how the maps turn the circle
  const marks = [0, Math.round(P / 4) % P];
  for (const stg of STAGES) {
    const s = sk.stages.find(x => x.name === stg.name);
    if (!s) continue;
    const ax = stg.name === 'w_qk' ? '2' : '';
    const c = closed(s.points);
    const theta = [...s.points.map((_, p) => (360 * p) / P), 0];
    data.push({
      type: 'scatter', mode: 'lines', uid: `ln-${stg.name}`, xaxis: `x${ax}`, yaxis: `y${ax}`, x: c.x, y: c.y,
      name: stg.label, line: { color: stg.color, width: stg.name === 'circle' ? 1.5 : 2.5, dash: stg.dash },
      customdata: theta,
      hovertemplate: `${plotlyText(stg.label)}<br>θ = %{customdata:.0f}°<br>(%{x:.4g}, %{y:.4g})<extra></extra>`,
      meta: { role: 'stage', stage: stg.name, points: s.points.length },
    });
    data.push({
      type: 'scatter', mode: 'markers', xaxis: `x${ax}`, yaxis: `y${ax}`, showlegend: false, hoverinfo: 'skip',
      x: marks.map(p => s.points[p][0]), y: marks.map(p => s.points[p][1]),
      marker: { color: stg.color, size: 9, symbol: ['circle', 'triangle-up'] },
      meta: { role: 'marks', stage: stg.name },
    });
  }
  // β as an arrow from the origin
  const annotations = [{
    xref: 'x', yref: 'y', axref: 'x', ayref: 'y', x: sk.beta[0], y: sk.beta[1], ax: 0, ay: 0, showarrow: true,
    arrowhead: 3, arrowwidth: 1.5, arrowcolor: '#d55e00', text: '',
  }, {
    xref: 'x domain', yref: 'y domain', x: 0, y: 1.02, xanchor: 'left', yanchor: 'bottom', showarrow: false,
    text: `<b>ln_1 of block ${sk.block}</b>, coordinates ${i} and ${j}`, font: { size: 11 },
  }, {
    xref: 'x2 domain', yref: 'y2 domain', x: 0, y: 1.02, xanchor: 'left', yanchor: 'bottom', showarrow: false,
    text: `<b>W<sub>QK</sub> of head ${sk.head}</b> on those coordinates`, font: { size: 11 },
  }];
  const m = nv.ctx.current;
  const axis = (t, extra = {}) => ({ title: { text: t, font: { size: 11 } }, zeroline: true, zerolinecolor: '#c5cad3',
    gridcolor: '#e3e7ee', exponentformat: 'power', ...extra });
  const layout = {
    title: { text: `${plotlyText(m.name)} · the layer-norm sketch on the real weights`, x: 0.01, xanchor: 'left', font: { size: 13 } },
    grid: narrow ? { rows: 2, columns: 1, pattern: 'independent', ygap: 0.2 } : { rows: 1, columns: 2, pattern: 'independent', xgap: 0.12 },
    height: narrow ? 820 : 470,
    margin: { l: 60, r: 20, t: 60, b: 50 },
    paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe', hovermode: 'closest',
    legend: { orientation: 'h', x: 0, y: -0.14, yanchor: 'top', font: { size: 11 } },
    xaxis: axis(`coordinate ${i}`), yaxis: axis(`coordinate ${j}`, { scaleanchor: 'x', scaleratio: 1 }),
    xaxis2: axis('key-space coordinate 1'), yaxis2: axis('key-space coordinate 2', { scaleanchor: 'x2', scaleratio: 1 }),
    annotations,
  };
  return { data, layout };
}

function renderSketchNote() {
  const sk = nv.sketch;
  const w = sk.w_qk;
  $('ln-sketch-note').replaceChildren(
    el('p', { class: 'hint' }, `Coordinates ${sk.dims[0]} and ${sk.dims[1]}${sk.default_dims ? ' (the two largest |γ| of this LayerNorm)' : ''}: ` +
      `γ = (${fmt(sk.gamma[0], 4)}, ${fmt(sk.gamma[1], 4)}), β = (${fmt(sk.beta[0], 4)}, ${fmt(sk.beta[1], 4)}); ` +
      `W_QK block [[${fmt(w[0][0], 4)}, ${fmt(w[0][1], 4)}], [${fmt(w[1][0], 4)}, ${fmt(w[1][1], 4)}]]; ${sk.points} points. ` +
      'The marks: θ = 0 (disc) and θ = 90° (triangle) on every stage.'));
}

// ---------- the statistics of every LayerNorm ----------

function tokens(list, n = 3) { return (list || []).slice(0, n).map(t => tokenChip(t)); }

function renderLayers() {
  const a = nv.ln;
  const block = clampBlock();
  const head = el('tr', {}, ['LayerNorm', 'rows', 'mean before', '|mean| after', 'radius', 'largest γ', 'smallest γ', '‖β‖',
    'β points to', 'change'].map((h, c) => el('th', { scope: 'col', class: [1, 2, 3, 4, 7, 9].includes(c) ? 'num' : '' }, h)));
  const rows = a.layers.map(l => el('tr', { class: l.block === block && l.kind === 'ln_1' ? 'now' : '', 'data-name': l.name },
    el('th', { scope: 'row' }, l.name),
    el('td', { class: 'num' }, String(l.rows)),
    el('td', { class: 'num' }, fmt(l.mean.before, 4)),
    el('td', { class: 'num' }, fmt(l.mean.after_abs, 2)),
    el('td', { class: 'num' }, `${fmt(l.radius.mean, 3)} ± ${fmt(l.radius.std, 2)}`),
    el('td', {}, `${l.gamma.max.index}: ${fmt(l.gamma.max.value, 3)} `, tokens(l.gamma.max.top)),
    el('td', {}, `${l.gamma.min.index}: ${fmt(l.gamma.min.value, 3)} `, tokens(l.gamma.min.top)),
    el('td', { class: 'num' }, fmt(l.beta_norm, 4)),
    el('td', {}, tokens(l.beta && l.beta.top)),
    el('td', { class: 'num' }, `${fmt(100 * l.change.mean, 1)} %`)));
  const d = nv.ctx.current.n_embd;
  $('ln-layers').replaceChildren(
    el('h2', { id: 'ln-layers-title' }, 'Every LayerNorm of the model'),
    el('p', { class: 'hint' }, `On ${a.states === 'wte' ? `the ${a.n_states} rows of the embedding matrix` : `the ${a.n_states} states of the phrase`}. ` +
      `Centring leaves |mean| ≈ 0; the normalised state lies on the sphere of radius √d = ${fmt(Math.sqrt(d), 3)}; ` +
      'γ stretches it into an ellipsoid (its longest and shortest axes, with the tokens most aligned with them), β moves ' +
      'it; "change" is how far γ and β move the normalised state, as a share of its norm.'),
    el('table', { class: 'data', 'aria-labelledby': 'ln-layers-title' }, el('thead', {}, head), el('tbody', {}, rows)));
  const keys = a.keys;
  if (!keys || !keys.heads) { $('ln-keys').replaceChildren(); return; }
  const kh = keys.heads.filter(h => h.block === block);
  const hsel = clampHead();
  $('ln-keys').replaceChildren(
    el('h2', { id: 'ln-keys-title' }, `Unselectable keys, block ${block}`),
    el('p', { class: 'hint' }, `Per head, the share of the vocabulary's keys that no query can make the most attended ` +
      `(Brody et al.): ${keys.description}${keys.floor > 0 ? `; never below ${fmt(keys.floor, 3)} with this many queries` : ''}. ` +
      'Click a head to draw its W_QK in the sketch.'),
    el('table', { class: 'data', 'aria-labelledby': 'ln-keys-title' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'head'), el('th', { scope: 'col', class: 'num' }, 'selectable'),
        el('th', { scope: 'col', class: 'num' }, 'unselectable'))),
      el('tbody', {}, kh.map(h => el('tr', { class: h.head === hsel ? 'now' : '', 'data-head': String(h.head) },
        el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', 'aria-pressed': h.head === hsel ? 'true' : 'false',
          onclick: () => setState({ head: h.head }) }, `head ${h.head}`)),
        el('td', { class: 'num' }, `${h.selectable} of ${keys.queries}`),
        el('td', { class: 'num' }, `${fmt(100 * h.unselectable_fraction, 1)} %`))))));
}

// ---------- downloads ----------

function stem() {
  const sk = nv.sketch;
  return sk ? `twd-layernorm-block${sk.block}-head${sk.head}-dims${sk.dims.join('-')}` : 'twd-layernorm';
}

function dataDoc() {
  return { generated_by: 'twd web page', url: location.href, model: nv.ctx.current, sketch: nv.sketch, layernorm: nv.ln };
}

// tidy, long: the sketch's points (kind=sketch), the statistics of every
// LayerNorm (kind=layer, one row per statistic) and the keys (kind=keys)
function dataCsv() {
  const rows = [['kind', 'name', 'block', 'head', 'stage', 'point', 'theta', 'x', 'y', 'statistic', 'value']];
  const sk = nv.sketch;
  if (sk) for (const s of sk.stages) s.points.forEach((q, p) => rows.push(['sketch', `h.${sk.block}.ln_1`, sk.block, sk.head, s.name, p,
    (2 * Math.PI * p) / sk.points, q[0], q[1], null, null]));
  if (nv.ln) {
    for (const l of nv.ln.layers) {
      const stat = (name, v) => rows.push(['layer', l.name, l.block, null, null, null, null, null, null, name, v]);
      stat('rows', l.rows);
      for (const [k, v] of Object.entries(l.mean)) stat(`mean.${k}`, v);
      stat('radius.mean', l.radius.mean); stat('radius.std', l.radius.std);
      for (const e of ['max', 'min']) { stat(`gamma.${e}.index`, l.gamma[e].index); stat(`gamma.${e}.value`, l.gamma[e].value); }
      stat('beta_norm', l.beta_norm);
      stat('change.mean', l.change.mean); stat('change.std', l.change.std);
    }
    if (nv.ln.keys && nv.ln.keys.heads)
      for (const h of nv.ln.keys.heads) {
        rows.push(['keys', null, h.block, h.head, null, null, null, null, null, 'selectable', h.selectable]);
        rows.push(['keys', null, h.block, h.head, null, null, null, null, null, 'unselectable_fraction', h.unselectable_fraction]);
      }
  }
  return rows;
}

// ---------- the view ----------

function fillPickers() {
  const m = nv.ctx.current;
  $('ln-block').replaceChildren(...numbered(m.n_layer, 'block'));
  $('ln-head').replaceChildren(...numbered(m.n_head, 'head'));
  for (const id of ['ln-dim-i', 'ln-dim-j']) $(id).max = String(m.n_embd - 1);
}

export function init(ctx) {
  nv.ctx = ctx;
  fillPickers();
  onSubmit('ln', f => {
    const di = f.dim_i.value.trim(), dj = f.dim_j.value.trim();
    const d = nv.ctx.current.n_embd;
    const ok = v => /^\d+$/.test(v) && Number(v) < d;
    const patch = { block: Number(f.block.value), head: Number(f.head.value) };
    patch.dims = ok(di) && ok(dj) && di !== dj ? `${Number(di)},${Number(dj)}` : '';
    const pts = whole(f.points.value, 3, 4096);
    if (pts !== undefined) patch.points = pts;
    const before = JSON.stringify(sketchParams());
    const changed = setState(patch);
    if (!changed.size && before) { nv.skey = ''; nv.lkey = ''; sync(); }
  });
  $('ln-block').addEventListener('change', ev => setState({ block: Number(ev.target.value), dims: '' }));
  $('ln-head').addEventListener('change', ev => setState({ head: Number(ev.target.value) }));
  nv.tools = viewFrame('ln', { name: 'layer norm', drawn: () => !!nv.sketch, draw, stem, json: dataDoc, csv: dataCsv });
}

export function modelChanged() { fillPickers(); nv.skey = ''; nv.lkey = ''; }

async function draw() {
  const gd = await drawFigure('ln', figure(), stem());
  gd.dataset.block = String(nv.sketch.block);
  gd.dataset.head = String(nv.sketch.head);
  gd.dataset.dims = nv.sketch.dims.join(',');
}

async function loadLayers() {
  const params = lnParams();
  const key = JSON.stringify({ ...params, model: state.model });
  if (key === nv.lkey && nv.ln) { renderLayers(); return; }
  const seq = ++nv.lseq;
  $('ln-layers').replaceChildren(el('p', { class: 'hint' }, 'Measuring every LayerNorm of the model…'));
  try {
    const ans = await getCached('/layernorm', params);
    if (seq !== nv.lseq) return;
    nv.ln = ans;
    nv.lkey = key;
    renderLayers();
    $('ln-layers').dataset.block = String(params.keys_block);
  } catch (e) {
    if (seq !== nv.lseq) return;
    nv.lkey = '';
    $('ln-layers').replaceChildren(el('p', { class: 'hint', role: 'alert' }, `twd could not measure the LayerNorms: ${errorText(e)}`));
    $('ln-keys').replaceChildren();
  }
}

export async function sync() {
  const f = $('ln-form').elements;
  const p = sketchParams();
  f.block.value = String(p.block);
  f.head.value = String(p.head);
  f.points.value = String(state.points);
  const dims = state.dims ? state.dims.split(',') : null;
  f.dim_i.value = dims ? dims[0] : '';
  f.dim_j.value = dims ? dims[1] : '';
  const key = JSON.stringify({ ...p, model: state.model });
  const layers = loadLayers();
  if (key !== nv.skey || !nv.sketch) {
    await ask(nv, 'ln', {
      title: 'Drawing the sketch…', failed: 'twd could not draw the layer-norm sketch:', what: 'sketch',
      has: () => !!nv.sketch, key: 'skey',
      job: () => getCached('/layernorm/sketch', p),
      show: async ans => {
        Object.assign(nv, { sketch: ans, skey: key });
        if (!dims) { f.dim_i.placeholder = String(ans.dims[0]); f.dim_j.placeholder = String(ans.dims[1]); }
        await draw();
        renderSketchNote();
      },
    });
  }
  await layers;
}
