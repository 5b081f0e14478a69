// The embedding-norms view: the four scoring schemes of the paper side by
// side (top-k and bottom-k tokens with their scores, /embeddings), a figure of
// the scores over the vocabulary, and the normalisation statistics
// (/embeddings/normalization). The figure is a scatter of every token (norm
// against scaled norm, coloured by the bias term, each point hoverable to its
// token) when the daemon serves every token's scores (/embeddings/scores);
// otherwise both ends of each ranking, as far as /embeddings lists them.
import { getCached, hasRoute, paramSchema } from './api.js';
import { state, setState } from './state.js';
import { visibleToken, plotlyText, el, tokenChip, fmt } from './text.js';
import { viewFrame, ask, drawFigure, onSubmit } from './view.js';

const SCHEMES = [
  ['norm', '‖E<sub>i</sub>‖', 'norm ‖E_i‖'],
  ['scaled', '‖γ∘E<sub>i</sub>‖', 'scaled ‖γ∘E_i‖'],
  ['bias', '‖E<sub>i</sub>‖ + β·E<sub>i</sub>', 'bias ‖E_i‖ + β·E_i'],
  ['scaled_bias', '‖γ∘E<sub>i</sub>‖ + β·E<sub>i</sub>', 'scaled bias ‖γ∘E_i‖ + β·E_i'],
];
const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7'];  // Okabe-Ito: distinct with colour-blindness

const $ = id => document.getElementById(id);

const nv = { ctx: null, key: '', lists: null, stats: null, scores: null, vs: null, seq: 0, tools: null, wide: 0 };

// k of the lists drawn in the figure: as many as the daemon lists (max_k), at most 100
function wideK() {
  const s = paramSchema('/embeddings', 'k');
  const max = s && Number.isFinite(s.maximum) ? s.maximum : 100;
  return Math.max(state.k, Math.min(100, max));
}

function scoresScatter(sc) {
  const tokens = sc.tokens;
  const texts = tokens.map(t => plotlyText(visibleToken(t.text)));
  const s = sc.scores;
  return [{
    type: 'scattergl', mode: 'markers', uid: 'vocab', x: s.norm, y: s.scaled, text: texts,
    customdata: s.bias, name: 'every token',
    hovertemplate: '%{text}<br>‖E‖ %{x:.4g} · ‖γ∘E‖ %{y:.4g}<br>bias score %{customdata:.4g}<extra></extra>',
    marker: { size: 3, color: s.bias, colorscale: 'Viridis', opacity: 0.7,
      colorbar: { title: { text: 'norm + β·E' }, thickness: 10 } },
    meta: { role: 'vocabulary', n: tokens.length },
  }];
}

function rankTraces(lists, model, dash, suffix) {
  const traces = [];
  SCHEMES.forEach(([key, label], i) => {
    const sc = lists.schemes[key];
    if (!sc) return;
    const ax = i === 0 ? '' : String(i + 1);
    for (const [end, list] of [['top', sc.top], ['bottom', sc.bottom]]) {
      traces.push({
        type: 'scatter', mode: 'lines+markers', xaxis: `x${ax}`, yaxis: `y${ax}`,
        x: list.map((_, j) => (end === 'top' ? j + 1 : -(j + 1))), y: list.map(t => t.score),
        text: list.map(t => plotlyText(visibleToken(t.text))),
        name: `${label}${suffix}`, legendgroup: `${key}${suffix}`, showlegend: end === 'top',
        line: { color: COLORS[i], width: 1.5, dash }, marker: { size: 4, color: COLORS[i] },
        hovertemplate: `%{text}<br>${end} %{customdata} · score %{y:.4g}<extra>${plotlyText(model)}</extra>`,
        customdata: list.map((_, j) => j + 1),
        meta: { role: 'ranking', scheme: key, end, model },
      });
    }
  });
  return traces;
}

function figure() {
  const gd = $('norms-plot');
  const narrow = gd.clientWidth < 640;
  const m = nv.ctx.current;
  if (nv.scores) {
    return { data: scoresScatter(nv.scores), layout: {
      title: { text: `${plotlyText(m.name)} · every token's embedding: norm against scaled norm`, x: 0.01, xanchor: 'left', font: { size: 13 } },
      margin: { l: 60, r: 20, t: 40, b: 50 }, height: 460,
      xaxis: { title: { text: '‖E<sub>i</sub>‖' } }, yaxis: { title: { text: '‖γ∘E<sub>i</sub>‖' } },
      paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe', hovermode: 'closest',
    } };
  }
  const cols = narrow ? 1 : 2, rows = narrow ? 4 : 2;
  const data = rankTraces(nv.lists, m.name, 'solid', '');
  if (nv.vs) data.push(...rankTraces(nv.vs.lists, nv.vs.model.name, 'dot', ` (${plotlyText(nv.vs.model.name)})`));
  const k = nv.lists.k;
  const layout = {
    title: { text: `${plotlyText(m.name)} · both ends of each ranking (${k} tokens each)`, x: 0.01, xanchor: 'left', font: { size: 13 } },
    grid: { rows, columns: cols, pattern: 'independent', xgap: 0.1, ygap: 0.3 },
    margin: { l: 55, r: 15, t: 70, b: 40 }, height: narrow ? 900 : 520,
    paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe', hovermode: 'closest',
    legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 11 } },
    annotations: [],
  };
  SCHEMES.forEach(([, label], i) => {
    const ax = i === 0 ? '' : String(i + 1);
    layout[`xaxis${ax}`] = { title: { text: 'rank: bottom ← → top', font: { size: 10 } }, zeroline: true, tickfont: { size: 9 } };
    layout[`yaxis${ax}`] = { title: { text: 'score', font: { size: 10 } }, tickfont: { size: 9 } };
    layout.annotations.push({ xref: `x${ax} domain`, yref: `y${ax} domain`, x: 0, y: 1.02, xanchor: 'left', yanchor: 'bottom',
      showarrow: false, text: `<b>${label}</b>`, font: { size: 11 } });
  });
  return { data, layout };
}

function listTable(title, list, k) {
  return el('table', { class: 'data' }, el('caption', {}, title),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', class: 'num' }, 'rank'), el('th', { scope: 'col' }, 'token'),
      el('th', { scope: 'col', class: 'num' }, 'score'))),
    el('tbody', {}, list.slice(0, k).map((t, j) => el('tr', {}, el('td', { class: 'num' }, String(j + 1)),
      el('td', {}, tokenChip(t)), el('td', { class: 'num' }, fmt(t.score, 4))))));
}

function renderTables() {
  const k = state.k;
  const sets = [{ name: nv.ctx.current.name, lists: nv.lists }];
  if (nv.vs) sets.push({ name: nv.vs.model.name, lists: nv.vs.lists });
  $('norms-tables').replaceChildren(...SCHEMES.map(([key, , plain]) => el('section', { 'data-scheme': key },
    el('h2', {}, plain),
    el('div', { class: sets.length > 1 ? 'side-by-side' : '' }, sets.map(s => {
      const sc = s.lists.schemes[key];
      if (!sc) return '';
      return el('div', {}, sets.length > 1 ? el('p', { class: 'hint' }, s.name) : '',
        listTable(`top ${k}`, sc.top, k), listTable(`bottom ${k}`, sc.bottom, k));
    })))));
}

function statsTable(stats, name) {
  return el('div', {}, name ? el('h3', {}, name) : '',
    el('p', { class: 'hint' }, `Average row norm ${fmt(stats.avg_norm, 4)}; scale s = √d / average norm = ${fmt(stats.scale, 4)}.`),
    el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, ['matrix', 'L2 mean', 'L2 std', 'cosine mean', 'cosine std'].map((h, i) =>
        el('th', { scope: 'col', class: i ? 'num' : '' }, h)))),
      el('tbody', {}, stats.rows.map(r => el('tr', {}, el('td', {}, r.matrix),
        ...['l2_mean', 'l2_std', 'cos_mean', 'cos_std'].map(c => el('td', { class: 'num' }, fmt(r[c], 4))))))));
}

function renderStats() {
  const tables = [statsTable(nv.stats, nv.vs ? nv.ctx.current.name : '')];
  if (nv.vs && nv.vs.stats) tables.push(statsTable(nv.vs.stats, nv.vs.model.name));
  $('norms-stats-body').replaceChildren(
    el('p', { class: 'hint' }, 'How far the embeddings E (as they are, centred by their mean row c, and scaled by s) ' +
      'lie from what the first LayerNorm makes of them, LN_0(E): mean and standard deviation over the rows of the L2 ' +
      'and cosine distances.'),
    el('div', { class: nv.vs ? 'side-by-side' : '' }, tables));
}

async function draw() {
  const gd = await drawFigure('norms', figure(), 'twd-embedding-norms');
  gd.dataset.k = String(nv.lists.k);
  renderTables();
  renderStats();
}

function dataDoc() {
  return { generated_by: 'twd web page', url: location.href, model: nv.ctx.current, embeddings: nv.lists,
    normalization: nv.stats, scores: nv.scores, beside: nv.vs };
}

// tidy: the lists (kind=list, the daemon's columns scheme,list,rank,id,text,score)
// and the statistics (kind=normalization)
function dataCsv() {
  const rows = [['model', 'kind', 'scheme', 'list', 'rank', 'id', 'text', 'score', 'matrix', 'l2_mean', 'l2_std', 'cos_mean', 'cos_std']];
  const sets = [[nv.ctx.current.name, nv.lists, nv.stats]];
  if (nv.vs) sets.push([nv.vs.model.name, nv.vs.lists, nv.vs.stats]);
  for (const [name, lists, stats] of sets) {
    for (const [key] of SCHEMES) {
      const sc = lists.schemes[key];
      if (!sc) continue;
      for (const end of ['top', 'bottom'])
        sc[end].slice(0, state.k).forEach((t, j) => rows.push([name, 'list', key, end, j + 1, t.id, t.text, t.score, null, null, null, null, null]));
    }
    if (stats) for (const r of stats.rows) rows.push([name, 'normalization', null, null, null, null, null, null, r.matrix, r.l2_mean, r.l2_std, r.cos_mean, r.cos_std]);
  }
  return rows;
}

export function init(ctx) {
  nv.ctx = ctx;
  onSubmit('norms', f => {
    const k = Number(f.k.value);
    if (Number.isInteger(k) && k >= 1) setState({ k: Math.min(k, Number($('norms-k').max) || 100) });
  });
  nv.tools = viewFrame('norms', { name: 'embedding norms', drawn: () => !!nv.lists, draw,
    stem: () => 'twd-embedding-norms', json: dataDoc, csv: dataCsv });
}

export function modelChanged() { nv.key = ''; }

export async function sync() {
  const max = paramSchema('/embeddings', 'k');
  if (max && Number.isFinite(max.maximum)) $('norms-k').max = String(max.maximum);
  $('norms-k').value = String(state.k);
  const k = wideK();
  const vs = nv.ctx.vsInfo();
  const vsName = vs && vs.name !== nv.ctx.current.name ? vs.name : '';
  const key = JSON.stringify({ k, model: state.model, vs: vsName });
  if (key === nv.key && nv.lists) { renderTables(); return; }
  const scored = hasRoute('/embeddings/scores');
  await ask(nv, 'norms', {
    title: 'Scoring the embeddings…', failed: 'twd could not score the embeddings:', has: () => false,
    job: () => {
      const jobs = [getCached('/embeddings', { k }), getCached('/embeddings/normalization')];
      if (scored) jobs.push(getCached('/embeddings/scores'));
      if (vsName) jobs.push(getCached('/embeddings', { k, model: vsName }), getCached('/embeddings/normalization', { model: vsName }));
      return Promise.all(jobs);
    },
    show: got => {
      const i = scored ? 3 : 2;
      Object.assign(nv, { lists: got[0], stats: got[1], scores: scored ? got[2] : null, key,
        vs: vsName ? { model: vs, lists: got[i], stats: got[i + 1] } : null });
      return draw();
    },
  });
}
