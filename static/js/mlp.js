// The MLP view: the MLP half of a block read as key-value memories (Geva et
// al.), three questions on one view (state.mlp):
//  - values: every neuron's value vector v_i of a block (/mlp/values), its
//    norm as a point, its top and bottom tokens against the embeddings;
//  - search: the neurons of every block whose value vectors score a token
//    highest (/mlp/search); a click opens that neuron in its block;
//  - updates: for a phrase, per block and position the size of the MLP's
//    update and its heaviest sub-updates m_i v_i (/mlp/updates), as a grid.
import { getCached, postCached, paramSchema } from './api.js';
import { state, setState } from './state.js';
import { visibleToken, plotlyText, el, tokenChip, fmt, slug } from './text.js';
import { CIVIDIS_SCALE } from './plot.js';
import { viewFrame, ask, numbered, whole, drawFigure } from './view.js';

const $ = id => document.getElementById(id);
const TABLE_MAX = 200;   // neurons in the table view (largest norms first)

const mv = { ctx: null, key: '', ans: null, mode: 'values', seq: 0, tools: null, bound: false, focus: null, search: null };

const short = (t, n = 10) => { const v = visibleToken(t.text); return v.length > n ? `${v.slice(0, n - 1)}…` : v; };
const list = (l, n = 3) => l.slice(0, n).map(t => plotlyText(short(t))).join(' ');

function maxOf(path, name, d) {
  const s = paramSchema(path, name);
  return s && Number.isFinite(s.maximum) ? s.maximum : d;
}

// ---------- the request the state asks for ----------

async function request() {
  const m = mv.ctx.current;
  const k = Math.min(state.k, maxOf('/mlp/values', 'k', 20), 20);
  if (state.mlp === 'values') {
    const p = { block: Math.min(state.block, m.n_layer - 1), k };
    if (state.neurons) p.neurons = state.neurons;
    return { method: 'GET', path: '/mlp/values', params: p };
  }
  if (state.mlp === 'search') {
    let token = state.find;
    if (!token) {
      // the second-to-last token of the phrase, as the trajectory view follows it
      const tok = await getCached('/tokenize', { text: mv.ctx.phrase() });
      token = String(tok.tokens[Math.max(0, tok.n_tokens - 2)].id);
    }
    return { method: 'GET', path: '/mlp/search', params: { token, k: Math.min(state.top, maxOf('/mlp/search', 'k', 100), 100) } };
  }
  return { method: 'POST', path: '/mlp/updates', params: { text: mv.ctx.phrase(), top: Math.min(state.top, 20), k, gelu: state.gelu } };
}

// ---------- figures ----------

function valuesFigure(a) {
  const ns = a.neurons;
  const chosen = ns.find(n => n.neuron === state.neuron);
  const hover = ns.map(n => `<b>neuron ${n.neuron}</b> · ‖v‖ ${fmt(n.norm, 4)}<br>promotes ${list(n.top)}<br>demotes ${list(n.bottom)}`);
  const data = [{
    type: ns.length > 2000 ? 'scattergl' : 'scatter', mode: 'markers', uid: 'neurons', x: ns.map(n => n.neuron), y: ns.map(n => n.norm),
    hovertext: hover, hovertemplate: '%{hovertext}<extra></extra>', customdata: ns.map(n => n.neuron),
    marker: { size: ns.length > 500 ? 4 : 7, color: ns.map(n => n.norm), colorscale: 'Viridis', showscale: false },
    name: 'neurons', meta: { role: 'neurons', block: a.block, n: ns.length },
  }];
  if (chosen) data.push({
    type: 'scatter', mode: 'markers+text', uid: 'chosen', x: [chosen.neuron], y: [chosen.norm], text: [`neuron ${chosen.neuron}`],
    textposition: 'top center', hoverinfo: 'skip', marker: { size: 14, symbol: 'circle-open', color: '#e8175d', line: { width: 3 } },
    meta: { role: 'chosen', neuron: chosen.neuron },
  });
  return { data, layout: {
    title: { text: `${plotlyText(mv.ctx.current.name)} · block ${a.block}: the value vectors of ${ns.length} neurons`, x: 0.01, xanchor: 'left', font: { size: 13 } },
    xaxis: { title: { text: 'neuron i' }, zeroline: false }, yaxis: { title: { text: '‖v<sub>i</sub>‖' }, zeroline: false },
    margin: { l: 60, r: 20, t: 40, b: 50 }, height: 440, showlegend: false, hovermode: 'closest',
    paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe',
  } };
}

function searchFigure(a) {
  const ns = a.neurons;
  const labels = ns.map(n => `block ${n.block} · ${n.neuron}`);
  return { data: [{
    type: 'bar', orientation: 'h', uid: 'found', x: ns.map(n => n.score), y: labels, customdata: ns.map(n => [n.block, n.neuron]),
    hovertext: ns.map(n => `<b>block ${n.block}, neuron ${n.neuron}</b><br>v·E ${fmt(n.score, 4)} · ‖v‖ ${fmt(n.norm, 4)}<br>` +
      `the token's rank among its tokens: ${n.token_rank}`),
    hovertemplate: '%{hovertext}<extra></extra>',
    marker: { color: ns.map(n => n.token_rank), colorscale: CIVIDIS_SCALE, reversescale: true, cmin: 1,
      colorbar: { title: { text: 'rank of the token' }, thickness: 10 } },
    meta: { role: 'found', token: a.token.id, n: ns.length },
  }], layout: {
    title: { text: `${plotlyText(mv.ctx.current.name)} · the neurons that write ${plotlyText(visibleToken(a.token.text))} most`, x: 0.01, xanchor: 'left', font: { size: 13 } },
    xaxis: { title: { text: 'v<sub>i</sub> · E[token]' } }, yaxis: { autorange: 'reversed', automargin: true },
    margin: { l: 110, r: 20, t: 40, b: 50 }, height: Math.max(320, 90 + 24 * ns.length), hovermode: 'closest',
    paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe',
  } };
}

function updatesFigure(a) {
  const N = a.n_tokens, B = a.blocks.length;
  const z = [], text = [], hover = [], custom = [];
  for (const b of a.blocks) {
    const zr = [], tr = [], hr = [], cr = [];
    for (const pos of b.positions) {
      const u = pos.updates[0];
      zr.push(pos.update_norm);
      tr.push(u && u.top.length ? `${u.coefficient < 0 ? '−' : ''}${plotlyText(short(u.top[0], 8))}` : '');
      hr.push([`<b>block ${b.block}</b>, position ${pos.position + 1} ${plotlyText(visibleToken(pos.token.text))}`,
        `update ‖Σ m v‖ ${fmt(pos.update_norm, 4)} (b_proj ${fmt(b.bias_norm, 3)})`,
        ...pos.updates.slice(0, 3).map(x => `neuron ${x.neuron}: m ${fmt(x.coefficient, 3)} · ‖v‖ ${fmt(x.norm, 3)} → ` +
          `${x.coefficient < 0 ? 'demotes' : 'promotes'} ${list(x.top)}`)].join('<br>'));
      cr.push([b.block, pos.position]);
    }
    z.push(zr); text.push(tr); hover.push(hr); custom.push(cr);
  }
  const width = $('mlp-plot').clientWidth || 800;
  const fontSize = Math.max(8, Math.min(12, Math.floor((width - 150) / N / 6)));
  const shapes = [];
  const m = /^(\d+),(\d+)$/.exec(state.mcell);
  if (m) {
    const bi = a.blocks.findIndex(b => b.block === Number(m[1]));
    if (bi >= 0) shapes.push({ type: 'rect', xref: 'x', yref: 'y', x0: Number(m[2]) - 0.48, x1: Number(m[2]) + 0.48, y0: bi - 0.46, y1: bi + 0.46,
      line: { color: '#e8175d', width: 3 }, fillcolor: 'rgba(0,0,0,0)' });
  }
  return { data: [{
    type: 'heatmap', uid: 'updates', z, text, hovertext: hover, customdata: custom, texttemplate: '%{text}',
    textfont: { size: fontSize, family: 'DejaVu Sans Mono, monospace' }, hovertemplate: '%{hovertext}<extra></extra>',
    colorscale: 'Viridis', colorbar: { title: { text: '‖update‖' }, thickness: 12 }, xgap: 1, ygap: 1,
    meta: { role: 'updates', blocks: B, tokens: N },
  }], layout: {
    title: { text: `${plotlyText(mv.ctx.current.name)} · the MLP updates of “${plotlyText(a.text.length > 60 ? `${a.text.slice(0, 59)}…` : a.text)}”`,
      x: 0.01, xanchor: 'left', font: { size: 13 } },
    xaxis: { tickvals: [...Array(N).keys()], ticktext: a.tokens.map(t => plotlyText(visibleToken(t.text))), tickangle: N > 10 ? -45 : 0,
      title: { text: 'position (the input token there)', font: { size: 11 } }, showgrid: false, zeroline: false },
    yaxis: { tickvals: [...Array(B).keys()], ticktext: a.blocks.map(b => `block ${b.block}`), showgrid: false, zeroline: false },
    margin: { l: 80, r: 20, t: 40, b: 70 }, height: 150 + B * 44, shapes,
    paper_bgcolor: '#ffffff', plot_bgcolor: '#ffffff', hovermode: 'closest',
  } };
}

// ---------- the detail panel ----------

function scored(l) {
  return el('ol', { class: 'nearest' }, l.map(t => el('li', {}, tokenChip(t), el('span', { class: 'score' }, fmt(t.score, 4)))));
}

async function renderDetail() {
  const box = $('mlp-detail');
  const a = mv.ans;
  if (!a) return;
  if (mv.mode === 'values') {
    const n = a.neurons.find(x => x.neuron === (mv.focus !== null ? mv.focus : state.neuron));
    if (!n) {
      box.replaceChildren(el('h2', {}, 'A neuron'), el('p', { class: 'muted' }, 'Point at or click a neuron in the figure.'));
      box.dataset.neuron = '';
      return;
    }
    box.replaceChildren(el('h2', {}, `Neuron ${n.neuron} of block ${a.block}`),
      el('p', { class: 'hint' }, `‖v‖ = ${fmt(n.norm, 4)}. When it fires (m > 0) it promotes:`), scored(n.top),
      el('p', { class: 'hint' }, 'and demotes (or promotes, when m < 0):'), scored(n.bottom));
    box.dataset.neuron = String(n.neuron);
  } else if (mv.mode === 'search') {
    box.replaceChildren(el('h2', {}, 'The token'), el('p', {}, tokenChip(a.token), ` (id ${a.token.id})`),
      el('p', { class: 'hint' }, `${a.neurons.length} of ${a.n_neurons} neurons listed. Click a bar to open the neuron.`));
  } else {
    const m = /^(\d+),(\d+)$/.exec(state.mcell);
    const b = m && a.blocks.find(x => x.block === Number(m[1]));
    const pos = b && b.positions[Number(m[2])];
    if (!pos) {
      box.replaceChildren(el('h2', {}, 'A cell'), el('p', { class: 'muted' }, 'Click a cell for its sub-updates.'));
      box.dataset.cell = '';
      return;
    }
    box.replaceChildren(el('h2', {}, `Block ${b.block}, position ${pos.position + 1} `, tokenChip(pos.token)),
      el('p', { class: 'hint' }, `‖Σ m v‖ = ${fmt(pos.update_norm, 4)}; the heaviest sub-updates:`),
      el('ol', { class: 'updates' }, pos.updates.map(u => el('li', { 'data-neuron': String(u.neuron) },
        el('button', { type: 'button', class: 'link', onclick: () => setState({ mlp: 'values', block: b.block, neuron: u.neuron, neurons: '' }) },
          `neuron ${u.neuron}`),
        ` m ${fmt(u.coefficient, 3)} · ‖v‖ ${fmt(u.norm, 3)} · ${u.coefficient < 0 ? 'demotes' : 'promotes'} `,
        u.top.map(t => tokenChip(t))))));
    box.dataset.cell = state.mcell;
  }
}

// ---------- the table view ----------

function renderTable() {
  const a = mv.ans;
  $('mlp-table-wrap').hidden = false;
  let table;
  if (mv.mode === 'values') {
    const ns = [...a.neurons].sort((x, y) => y.norm - x.norm).slice(0, TABLE_MAX);
    table = el('table', { class: 'data' },
      el('caption', {}, `Block ${a.block}: ${ns.length < a.neurons.length ? `the ${ns.length} neurons of largest norm of ${a.neurons.length}` : `${ns.length} neurons`}`),
      el('thead', {}, el('tr', {}, ['neuron', '‖v‖', 'top tokens', 'bottom tokens'].map(h => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, ns.map(n => el('tr', { class: n.neuron === state.neuron ? 'now' : '' }, el('td', { class: 'num' }, String(n.neuron)),
        el('td', { class: 'num' }, fmt(n.norm, 4)), el('td', {}, n.top.map(t => tokenChip(t))), el('td', {}, n.bottom.map(t => tokenChip(t)))))));
  } else if (mv.mode === 'search') {
    table = el('table', { class: 'data' }, el('caption', {}, `Neurons that write “${visibleToken(a.token.text)}” most`),
      el('thead', {}, el('tr', {}, ['rank', 'block', 'neuron', 'v·E', '‖v‖', 'rank of the token'].map(h => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, a.neurons.map(n => el('tr', {}, [n.rank, n.block, n.neuron, fmt(n.score, 4), fmt(n.norm, 4), n.token_rank]
        .map(v => el('td', { class: 'num' }, String(v)))))));
  } else {
    table = el('table', { class: 'data' }, el('caption', {}, `‖MLP update‖ and the top token of the heaviest sub-update, per block and position`),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'block'), a.tokens.map((t, i) => el('th', { scope: 'col' }, `${i + 1} `, tokenChip(t))))),
      el('tbody', {}, a.blocks.map(b => el('tr', {}, el('th', { scope: 'row' }, String(b.block)),
        b.positions.map(p => el('td', {}, fmt(p.update_norm, 3), ' ', p.updates[0] && p.updates[0].top[0] ? tokenChip(p.updates[0].top[0]) : ''))))));
  }
  $('mlp-table').replaceChildren(table);
}

// ---------- downloads ----------

function stem() {
  const a = mv.ans;
  if (!a) return 'twd-mlp';
  if (mv.mode === 'values') return `twd-mlp-values-block${a.block}`;
  if (mv.mode === 'search') return `twd-mlp-search-${a.token.id}`;
  return `twd-mlp-updates-${slug(a.text)}`;
}

function dataDoc() { return { generated_by: 'twd web page', url: location.href, model: mv.ctx.current, question: mv.mode, answer: mv.ans }; }

function dataCsv() {
  const a = mv.ans;
  if (mv.mode === 'values') {
    const rows = [['block', 'neuron', 'norm', 'list', 'rank', 'id', 'text', 'score']];
    for (const n of a.neurons) for (const end of ['top', 'bottom'])
      n[end].forEach((t, j) => rows.push([a.block, n.neuron, n.norm, end, j + 1, t.id, t.text, t.score]));
    return rows;
  }
  if (mv.mode === 'search') {
    const rows = [['token_id', 'token_text', 'rank', 'block', 'neuron', 'score', 'norm', 'token_rank']];
    for (const n of a.neurons) rows.push([a.token.id, a.token.text, n.rank, n.block, n.neuron, n.score, n.norm, n.token_rank]);
    return rows;
  }
  const rows = [['block', 'position', 'token_id', 'token_text', 'update_norm', 'rank', 'neuron', 'coefficient', 'norm', 'weight',
    'list_rank', 'id', 'text', 'score']];
  for (const b of a.blocks) for (const p of b.positions) for (const u of p.updates)
    u.top.forEach((t, j) => rows.push([b.block, p.position, p.token.id, p.token.text, p.update_norm, u.rank, u.neuron, u.coefficient,
      u.norm, u.weight, j + 1, t.id, t.text, t.score]));
  return rows;
}

// ---------- the view ----------

function showMode(mode) {
  for (const e of document.querySelectorAll('#view-mlp .mode-only, #view-mlp .reading [data-mode]')) e.hidden = e.dataset.mode !== mode;
  for (const r of $('mlp-form').elements.mode) r.checked = r.value === mode;
}

function fillPickers() {
  const m = mv.ctx.current;
  $('mlp-block').replaceChildren(...numbered(m.n_layer, 'block'));
}

export function init(ctx) {
  mv.ctx = ctx;
  fillPickers();
  const f = $('mlp-form');
  for (const r of f.elements.mode) r.addEventListener('change', () => setState({ mlp: r.value }));
  $('mlp-block').addEventListener('change', ev => setState({ block: Number(ev.target.value), neuron: null }));
  f.addEventListener('submit', ev => {
    ev.preventDefault();
    const e = f.elements;
    const patch = { mlp: e.mode.value || 'values' };
    const k = whole(e.k.value, 1, 20);
    if (k !== undefined) patch.k = k;
    if (patch.mlp === 'values') {
      patch.block = Number(e.block.value);
      const ns = e.neurons.value.split(',').map(x => x.trim()).filter(Boolean);
      patch.neurons = ns.every(x => /^\d+$/.test(x)) ? ns.map(Number).join(',') : state.neurons;
    } else if (patch.mlp === 'search') {
      patch.find = e.find.value.trim();
      const top = whole(e.top.value, 1);
      if (top !== undefined) patch.top = top;
    } else {
      const text = e.text.value;
      patch.text = text === ctx.defaultPhrase() ? '' : text;
      if (patch.text !== state.text) { patch.token = null; patch.mcell = ''; }
    }
    if (!setState(patch).size) { mv.key = ''; sync(); }
  });
  mv.tools = viewFrame('mlp', { name: 'MLP neurons', drawn: () => !!mv.ans, draw, stem, json: dataDoc, csv: dataCsv });
}

export function modelChanged() { fillPickers(); mv.key = ''; }

async function draw() {
  const a = mv.ans;
  const gd = await drawFigure('mlp', mv.mode === 'values' ? valuesFigure(a) : mv.mode === 'search' ? searchFigure(a) : updatesFigure(a), stem());
  gd.dataset.question = mv.mode;
  if (!mv.bound) {
    mv.bound = true;
    gd.on('plotly_click', ev => {
      const pt = ev.points && ev.points[0];
      if (!pt || pt.customdata === undefined) return;
      if (mv.mode === 'values') setState({ neuron: Number(pt.customdata) });
      else if (mv.mode === 'search') setState({ mlp: 'values', block: pt.customdata[0], neuron: pt.customdata[1], neurons: '' });
      else setState({ mcell: `${pt.customdata[0]},${pt.customdata[1]}` });
    });
    gd.on('plotly_hover', ev => {
      const pt = ev.points && ev.points[0];
      if (!pt || mv.mode !== 'values' || typeof pt.customdata !== 'number') return;
      mv.focus = pt.customdata;
      renderDetail();
    });
    gd.on('plotly_unhover', () => { if (mv.focus !== null) { mv.focus = null; renderDetail(); } });
  }
  renderDetail();
  renderTable();
}

export async function sync() {
  const mode = state.mlp;
  showMode(mode);
  const f = $('mlp-form').elements;
  f.block.value = String(Math.min(state.block, mv.ctx.current.n_layer - 1));
  f.neurons.value = state.neurons;
  f.find.value = state.find;
  f.top.value = String(state.top);
  f.k.value = String(Math.min(state.k, 20));
  if (document.activeElement !== f.text) f.text.value = mv.ctx.phrase();
  const seq = ++mv.seq;
  let req;
  try { req = await request(); } catch (e) { req = null; }
  if (seq !== mv.seq) return;
  const key = req ? JSON.stringify({ ...req, model: state.model }) : '';
  if (key && key === mv.key && mv.ans) {
    // the same answer: a neuron or cell chosen
    if (mode === 'values' || mode === 'updates') await draw();
    return;
  }
  await ask(mv, 'mlp', {
    title: mode === 'values' ? 'Reading the value vectors…' : mode === 'search' ? 'Searching every block…'
      : 'Running the phrase through the MLPs…',
    failed: 'twd could not answer:',
    job: async () => {
      if (!req) req = await request();
      return req.method === 'GET' ? getCached(req.path, req.params) : postCached(req.path, req.params);
    },
    show: ans => {
      Object.assign(mv, { ans, mode, key, focus: null });
      return draw();
    },
  });
}
