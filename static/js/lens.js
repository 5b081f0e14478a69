// The logit lens: for a phrase, a grid of states (rows: the input, then after
// each block) by positions (columns), each cell showing the top token of
// ln_f(state) times the embeddings at that position, shaded by its
// probability (by its logit when the daemon gives no probabilities), the
// phrase's actual next token framed. A click opens that point in the
// trajectory view. Data: /trajectory (its nearest lists are the logit lens).
import { postCached, isCached } from './api.js';
import { state, setState } from './state.js';
import { visibleToken, plotlyText, el, tokenChip, fmt, slug } from './text.js';
import { viewFrame, ask, whole, drawFigure, onSubmit } from './view.js';
import { longState, shortName } from './trajectory.js';

const $ = id => document.getElementById(id);
// the frame of the cells that predict the actual next token: magenta, apart from viridis' hues
const NEXT_COLOR = '#e8175d';

const lv = {
  ctx: null, key: '', ans: null, seq: 0, bound: false, tools: null, focus: null,
};

const shortState = s => shortName(s, 'block ');

function request() {
  const text = lv.ctx.phrase();
  const k = Math.min(20, state.k);
  // the trajectory view's answer serves when it is there (the lens does not
  // depend on the projection); else PCA, which never waits for a fit
  const umap = { text, projection: 'umap', gelu: state.gelu, k };
  const body = isCached('POST', '/trajectory', umap) ? umap : { ...umap, projection: 'pca' };
  return { body, model: state.model };
}

// The probability of a listed token, when the daemon gives it.
const probOf = n => (n && typeof n.prob === 'number' ? n.prob : null);

// The actual next token at position t of state s: {id, rank, prob} (rank
// null when it is not in the top-k and the daemon does not say), or null at
// the last position.
function nextAt(a, s, t) {
  const st = a.states[s];
  if (Array.isArray(st.next)) return st.next[t] || null;
  if (t + 1 >= a.n_tokens) return null;
  const id = a.tokens[t + 1].id;
  const i = st.nearest[t].findIndex(n => n.id === id);
  return { id, rank: i >= 0 ? i + 1 : null, prob: i >= 0 ? probOf(st.nearest[t][i]) : null, inferred: true };
}

function cellHover(a, s, t) {
  const st = a.states[s];
  const tok = a.tokens[t];
  const lines = [`<b>position ${t + 1}</b> ${plotlyText(visibleToken(tok.text))} · ${plotlyText(longState(st))}`];
  if (Array.isArray(st.entropy)) lines.push(`entropy ${fmt(st.entropy[t])} nats`);
  lines.push('top tokens:');
  for (const n of st.nearest[t]) {
    const p = probOf(n);
    lines.push(`  ${plotlyText(visibleToken(n.text))}  ${p !== null ? `p=${fmt(p)}` : `logit ${fmt(n.score)}`}`);
  }
  const nx = nextAt(a, s, t);
  if (nx) {
    const text = a.tokens[t + 1] ? visibleToken(a.tokens[t + 1].text) : String(nx.id);
    lines.push(`actual next: ${plotlyText(text)}  ` + (nx.rank ? `rank ${nx.rank}` : `not in the top ${st.nearest[t].length}`) +
      (typeof nx.prob === 'number' ? `, p=${fmt(nx.prob)}` : ''));
  }
  return lines.join('<br>');
}

function figure() {
  const a = lv.ans;
  const S = a.n_states, N = a.n_tokens;
  const hasProb = a.states.every(s => s.nearest.every(l => l.length && probOf(l[0]) !== null));
  const z = [], text = [], hover = [], custom = [];
  const mx = [], my = [];
  for (let s = 0; s < S; s++) {
    const zr = [], tr = [], hr = [], cr = [];
    for (let t = 0; t < N; t++) {
      const top = a.states[s].nearest[t][0];
      zr.push(hasProb ? probOf(top) : top.score);
      const v = visibleToken(top.text);
      tr.push(plotlyText(v.length > 9 ? `${v.slice(0, 8)}…` : v));
      hr.push(cellHover(a, s, t));
      cr.push([s, t]);
      const nx = nextAt(a, s, t);
      if (nx && top.id === nx.id) { mx.push(t); my.push(s); }
    }
    z.push(zr); text.push(tr); hover.push(hr); custom.push(cr);
  }
  const width = $('lens-plot').clientWidth || 800;
  const cellW = (width - 150) / N;
  const fontSize = Math.max(8, Math.min(13, Math.floor(cellW / 6)));
  const data = [{
    type: 'heatmap', uid: 'lens', z, text, hovertext: hover, customdata: custom,
    texttemplate: '%{text}', textfont: { size: fontSize, family: 'DejaVu Sans Mono, monospace' },
    hovertemplate: '%{hovertext}<extra></extra>',
    colorscale: 'Viridis', zmin: hasProb ? 0 : undefined, zmax: hasProb ? 1 : undefined,
    colorbar: { title: { text: hasProb ? 'probability' : 'logit', side: 'right' }, thickness: 12, len: 0.9 },
    xgap: 1, ygap: 1,
    meta: { role: 'lens', states: S, tokens: N, shade: hasProb ? 'prob' : 'logit' },
  }, {
    // the legend's entry for the frames (drawn as shapes, exactly on the cells)
    type: 'scatter', mode: 'markers', uid: 'lens-next', x: [null], y: [null], hoverinfo: 'skip',
    name: 'predicts the actual next token', showlegend: true,
    marker: { symbol: 'square-open', size: 12, color: NEXT_COLOR, line: { width: 2.5 } },
    meta: { role: 'next', cells: mx.map((t, i) => [my[i], t]) },
  }];
  const shapes = mx.map((t, i) => ({ type: 'rect', xref: 'x', yref: 'y', x0: t - 0.47, x1: t + 0.47, y0: my[i] - 0.44, y1: my[i] + 0.44,
    line: { color: NEXT_COLOR, width: 3 }, fillcolor: 'rgba(0,0,0,0)' }));
  const m = lv.ctx.current;
  const layout = {
    title: { text: `${plotlyText(m.name)} · logit lens of “${plotlyText(a.text.length > 60 ? `${a.text.slice(0, 59)}…` : a.text)}”`,
      x: 0.01, xanchor: 'left', font: { size: 13 } },
    margin: { l: 90, r: 20, t: 40, b: 70 },
    // rows of 34 to 80 px: the whole grid in the column when it fits
    height: 150 + S * Math.max(34, Math.min(80, Math.floor((($('lens-plot').parentElement.clientHeight || 600) - 170) / S))),
    xaxis: { tickvals: [...Array(N).keys()], ticktext: a.tokens.map(t => plotlyText(visibleToken(t.text))),
      tickangle: N > 10 ? -45 : 0, title: { text: 'position (the input token there)', font: { size: 11 } },
      showgrid: false, zeroline: false, range: [-0.5, N - 0.5] },
    yaxis: { tickvals: [...Array(S).keys()], ticktext: a.states.map(s => plotlyText(shortState(s))),
      showgrid: false, zeroline: false, range: [-0.5, S - 0.5] },
    legend: { orientation: 'h', x: 1, xanchor: 'right', y: 1.01, yanchor: 'bottom', font: { size: 11 } },
    paper_bgcolor: '#ffffff', plot_bgcolor: '#ffffff',
    shapes,
  };
  return { data, layout };
}

async function draw() {
  const gd = await drawFigure('lens', figure(), stem());
  gd.dataset.text = lv.ans.text;
  gd.dataset.states = String(lv.ans.n_states);
  if (!lv.bound) {
    lv.bound = true;
    gd.on('plotly_click', ev => {
      const pt = ev.points && ev.points[0];
      if (!pt) return;
      const d = Array.isArray(pt.customdata) ? pt.customdata : [pt.y, pt.x];
      openTrajectory(d[0], d[1]);
    });
    gd.on('plotly_hover', ev => {
      const pt = ev.points && ev.points[0];
      if (!pt) return;
      const d = Array.isArray(pt.customdata) ? pt.customdata : [pt.y, pt.x];
      lv.focus = { s: d[0], t: d[1] };
      renderDetail();
    });
  }
  renderDetail();
  renderTable();
}

export function openTrajectory(s, t) {
  const S = lv.ans.n_states;
  setState({ view: 'traj', layer: s === S - 1 ? null : s, token: t });
}

function renderDetail() {
  const box = $('lens-detail');
  const a = lv.ans;
  if (!lv.focus || !a) return;
  const { s, t } = lv.focus;
  const st = a.states[s];
  if (!st) return;
  const nx = nextAt(a, s, t);
  box.replaceChildren(
    el('h2', {}, `Position ${t + 1} at ${shortState(st)}`),
    el('p', {}, 'input ', tokenChip(a.tokens[t]), a.tokens[t + 1] ? [' · actual next ', tokenChip(a.tokens[t + 1])] : ''),
    el('ol', { class: 'nearest' }, st.nearest[t].map(n => el('li', {}, tokenChip(n), el('span', { class: 'score' },
      probOf(n) !== null ? `p ${fmt(probOf(n))} · logit ${fmt(n.score)}` : `logit ${fmt(n.score)}`)))),
    nx ? el('p', { class: 'hint' }, nx.rank ? `The actual next token is ranked ${nx.rank}` : `The actual next token is not in the top ${st.nearest[t].length}`,
      typeof nx.prob === 'number' ? ` (p ${fmt(nx.prob)}).` : '.') : '',
    Array.isArray(st.entropy) ? el('p', { class: 'hint' }, `Entropy of the distribution: ${fmt(st.entropy[t])} nats.`) : '',
    el('button', { type: 'button', id: 'lens-open', onclick: () => openTrajectory(s, t) }, 'Follow this token in the trajectories'),
  );
}

function renderTable() {
  const a = lv.ans;
  $('lens-table-wrap').hidden = false;
  const head = el('tr', {}, el('th', { scope: 'col' }, 'state'),
    a.tokens.map((t, i) => el('th', { scope: 'col' }, `${i + 1} `, tokenChip(t))));
  const rows = a.states.map((s, si) => el('tr', {}, el('th', { scope: 'row' }, shortState(s)),
    a.tokens.map((_, t) => {
      const top = s.nearest[t][0];
      const nx = nextAt(a, si, t);
      return el('td', { 'data-state': si, 'data-pos': t }, tokenChip(top), ' ',
        el('span', { class: 'muted' }, probOf(top) !== null ? fmt(probOf(top), 2) : fmt(top.score, 1)),
        nx && nx.id === top.id ? el('span', { title: 'the actual next token' }, ' ✓') : '');
    })));
  $('lens-table').replaceChildren(el('table', { class: 'data' },
    el('caption', {}, `Top token per state and position of “${a.text}”`), el('thead', {}, head), el('tbody', {}, rows.reverse())));
}

function stem() { return lv.ans ? `twd-lens-${slug(lv.ans.text)}` : 'twd-lens'; }

function dataDoc() {
  return { generated_by: 'twd web page', url: location.href, model: lv.ctx.current, request: request().body, trajectory: lv.ans };
}

function dataCsv() {
  const a = lv.ans;
  const rows = [['index', 'name', 'block', 'position', 'token_id', 'token_text', 'rank', 'id', 'text', 'score', 'prob',
    'next_id', 'next_rank', 'next_prob', 'entropy']];
  a.states.forEach((s, i) => a.tokens.forEach((tok, t) => {
    const nx = nextAt(a, i, t);
    s.nearest[t].forEach((n, j) => rows.push([i, s.name, s.block, t, tok.id, tok.text, j + 1, n.id, n.text, n.score, probOf(n),
      nx ? nx.id : null, nx ? nx.rank : null, nx && typeof nx.prob === 'number' ? nx.prob : null,
      Array.isArray(s.entropy) ? s.entropy[t] : null]));
  }));
  return rows;
}

export function init(ctx) {
  lv.ctx = ctx;
  onSubmit('lens', f => {
    const text = f.text.value;
    const k = whole(f.k.value, 1, 20);
    const patch = { text: text === ctx.defaultPhrase() ? '' : text, ...(k !== undefined && { k }) };
    if (patch.text !== state.text) { patch.token = null; }
    if (Object.keys(patch).every(kk => state[kk] === patch[kk])) { lv.key = ''; sync(); return; }
    setState(patch);
  });
  lv.tools = viewFrame('lens', { name: 'logit lens', drawn: () => !!lv.ans, draw, stem, json: dataDoc, csv: dataCsv });
}

export async function sync() {
  const f = $('lens-form');
  if (document.activeElement !== f.elements.text) f.elements.text.value = lv.ctx.phrase();
  f.elements.k.value = String(Math.min(20, state.k));
  const req = request();
  const key = JSON.stringify({ text: req.body.text, gelu: req.body.gelu, k: req.body.k, model: req.model });
  if (key === lv.key && lv.ans) return;
  await ask(lv, 'lens', {
    title: 'Computing the logit lens…', failed: 'twd could not compute the logit lens:', what: 'phrase',
    job: () => postCached('/trajectory', req.body),
    show: ans => {
      Object.assign(lv, { ans, key, focus: null });
      return draw();
    },
  });
}
