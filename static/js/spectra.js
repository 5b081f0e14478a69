// The head-spectra view: for one block, per head, the coverage curves
// cumsum(S)/sum(S) of the singular values of W_QK and W_VO (x: % of the
// directions, y: % of the spectrum, dashed at 99 %), from /svd?top=0; beside
// them the chosen head's top singular directions with their left and right
// tokens (/svd?head=); below, the bias probes of the block (/svd/bias).
// With a second model chosen, its spectra are drawn beside.
import { getCached } from './api.js';
import { state, setState } from './state.js';
import { showMessage, hideMessage, errorText } from './ui.js';
import { el, tokenChip, fmt, plotlyText } from './text.js';
import { config, grid } from './plot.js';
import { viewFrame, numbered, whole, drawFigure, onSubmit } from './view.js';

const MATRICES = [
  { key: 'qk', name: 'W<sub>QK</sub>', plain: 'W_QK', color: '#1f5f9e', dash: 'solid',
    left: 'left: query side (ln_1 of the embeddings)', right: 'right: key side (ln_1 of the embeddings)' },
  { key: 'vo', name: 'W<sub>VO</sub>', plain: 'W_VO', color: '#d9730d', dash: 'dash',
    left: 'left: what the head reads (ln_1 of the embeddings)', right: 'right: what it writes (the embeddings)' },
];
const BIAS = [
  ['a', 'a = W<sub>q</sub> b<sub>k</sub>', 'query directions the key bias rewards'],
  ['-a', '−a', 'query directions the key bias penalises'],
  ['c', 'c = W<sub>k</sub> b<sub>q</sub>', 'key directions the query bias rewards'],
  ['-c', '−c', 'key directions the query bias penalises'],
];

const $ = id => document.getElementById(id);

const sv = {
  ctx: null, key: '', spectra: null, head: null, directions: null, dkey: '', bias: null, bkey: '',
  vs: null, vsKey: '', seq: 0, dseq: 0, bseq: 0, bound: false, tools: null, userHead: false,
};

function curve(cov) {
  const dh = cov.length;
  return { x: [0, ...cov.map((_, r) => (100 * (r + 1)) / dh)], y: [0, ...cov.map(c => 100 * c)] };
}

function figure(gd, spectra, model, chosen) {
  const narrow = gd.clientWidth < 600;
  const heads = spectra.heads;
  const n = heads.length;
  const [rows, cols] = grid(n, narrow);
  const rowH = narrow ? 170 : Math.max(130, Math.min(190, Math.floor(((gd.parentElement.clientHeight || 700) - 120) / rows)));
  const data = [], shapes = [], annotations = [];
  const layout = {
    grid: { rows, columns: cols, pattern: 'independent', xgap: 0.1, ygap: narrow ? 0.34 : 0.3 },
    margin: { l: 46, r: 10, t: 70, b: 40 },
    height: Math.max(300, rows * rowH + 100),
    paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe',
    title: {
      text: `${plotlyText(model.name)}${model.synthetic ? ' (synthetic)' : ''} · block ${spectra.block}` +
        (narrow ? '' : ': singular value coverage per head'),
      x: 0.01, xanchor: 'left', y: 0.99, yanchor: 'top', yref: 'container', font: { size: 13 },
    },
    legend: { orientation: 'h', x: 1, xanchor: 'right', y: 1, yanchor: 'bottom', font: { size: 12 } },
    hovermode: 'closest', showlegend: true,
  };
  heads.forEach((hd, i) => {
    const ax = i === 0 ? '' : String(i + 1);
    const row = Math.floor(i / cols), col = i % cols;
    const bottom = row === rows - 1 || i + cols >= n;
    layout[`xaxis${ax}`] = { range: [0, 100], dtick: 25, gridcolor: '#e3e7ee', zeroline: false, showticklabels: bottom,
      title: bottom ? { text: '% of directions', font: { size: 11 } } : undefined, tickfont: { size: 10 } };
    layout[`yaxis${ax}`] = { range: [0, 102], dtick: 25, gridcolor: '#e3e7ee', zeroline: false, showticklabels: col === 0,
      title: col === 0 ? { text: '% of spectrum', font: { size: 11 } } : undefined, tickfont: { size: 10 } };
    const xr = `x${ax}`, yr = `y${ax}`;
    shapes.push({ type: 'line', xref: `${xr} domain`, yref: yr, x0: 0, x1: 1, y0: 99, y1: 99, line: { color: '#8a93a3', width: 1, dash: 'dash' } });
    if (hd.head === chosen)
      shapes.push({ type: 'rect', xref: `${xr} domain`, yref: `${yr} domain`, x0: 0, x1: 1, y0: 0, y1: 1,
        line: { color: '#2855c5', width: 2 }, fillcolor: 'rgba(0,0,0,0)' });
    const f99 = [];
    for (const m of MATRICES) {
      const spec = hd[m.key];
      if (!spec) continue;
      const c = curve(spec.coverage);
      data.push({
        type: 'scatter', mode: 'lines', xaxis: xr, yaxis: yr, x: c.x, y: c.y,
        name: m.name, legendgroup: m.key, showlegend: i === 0, line: { color: m.color, width: 2, dash: m.dash },
        hovertemplate: `head ${hd.head} · ${m.name}<br>%{x:.1f} % of directions: %{y:.1f} % of the spectrum<extra></extra>`,
        meta: { role: 'coverage', matrix: m.key, head: hd.head },
      });
      shapes.push({ type: 'line', xref: xr, yref: `${yr} domain`, x0: 100 * spec.frac99, x1: 100 * spec.frac99,
        y0: 0, y1: 1, line: { color: m.color, width: 1, dash: 'dot' } });
      f99.push(`${m.key.toUpperCase()} ${Math.round(100 * spec.frac99)}%`);
    }
    annotations.push({
      xref: `${xr} domain`, yref: `${yr} domain`, x: 0, y: 1.02, xanchor: 'left', yanchor: 'bottom', showarrow: false,
      align: 'left', font: { size: 11, color: hd.head === chosen ? '#2855c5' : '#1d2330' },
      text: narrow ? `<b>head ${hd.head}</b> ${f99.join(' ')}` : `<b>head ${hd.head}</b>  99 %: ${f99.join(' · ')}`,
    });
  });
  layout.shapes = shapes;
  layout.annotations = annotations;
  return { data, layout };
}

async function draw() {
  const gd = await drawFigure('svd', figure($('svd-plot'), sv.spectra, sv.ctx.current, sv.head), stem());
  gd.dataset.block = String(sv.spectra.block);
  if (!sv.bound) {
    sv.bound = true;
    gd.on('plotly_click', ev => {
      const meta = ev.points && ev.points[0] && ev.points[0].data.meta;
      if (meta && typeof meta.head === 'number') { sv.userHead = true; setState({ head: meta.head }); }
    });
  }
}

function renderHeadButtons() {
  $('svd-heads').replaceChildren(...sv.spectra.heads.map(hd => el('button', {
    type: 'button', 'aria-pressed': hd.head === sv.head ? 'true' : 'false', 'data-head': hd.head,
    onclick: () => { sv.userHead = true; setState({ head: hd.head }); },
  }, String(hd.head))));
}

function directionsTable(m, spec, d) {
  const head = el('tr', {}, el('th', { scope: 'col' }, 'rank'), el('th', { scope: 'col' }, 'σ'),
    el('th', { scope: 'col' }, 'left tokens'), el('th', { scope: 'col' }, 'right tokens'));
  const rows = spec.directions.map(x => el('tr', {},
    el('td', { class: 'num' }, String(x.rank)), el('td', { class: 'num' }, fmt(x.s, 4)),
    el('td', {}, x.left.map(t => tokenChip(t))), el('td', {}, x.right.map(t => tokenChip(t)))));
  return el('section', { 'data-matrix': m.key },
    el('h2', { class: m.key }, `${m.plain} of head ${d.heads[0].head}, block ${d.block}`),
    el('p', { class: 'hint' }, `${m.left}; ${m.right}. 99 % of the spectrum in ${Math.round(100 * spec.frac99)} % of the ${d.dh} directions.`),
    el('table', { class: 'data' }, el('thead', {}, head), el('tbody', {}, rows)));
}

async function loadDirections(block) {
  const top = Math.min(state.top, sv.spectra.dh || state.top);
  const params = { block, matrix: 'both', top, k: Math.min(20, state.k), head: sv.head };
  const key = JSON.stringify({ ...params, model: state.model });
  if (key === sv.dkey) return;
  const seq = ++sv.dseq;
  const box = $('svd-directions');
  box.replaceChildren(el('p', { class: 'hint' }, `Computing the top directions of head ${sv.head}…`));
  try {
    const ans = await getCached('/svd', params);
    if (seq !== sv.dseq) return;
    sv.directions = ans;
    sv.dkey = key;
    const hd = ans.heads[0];
    box.replaceChildren(...MATRICES.filter(m => hd[m.key]).map(m => directionsTable(m, hd[m.key], ans)));
    box.dataset.head = String(hd.head);
    // on a window too small to show them beside the figure, bring them into view
    if (sv.userHead) {
      sv.userHead = false;
      const r = box.getBoundingClientRect();
      if (r.top > window.innerHeight - 80 || r.bottom < 0) box.scrollIntoView({ block: 'start', behavior: 'smooth' });
      box.focus({ preventScroll: true });
    }
  } catch (e) {
    if (seq !== sv.dseq) return;
    box.replaceChildren();
    showMessage($('svd-msg'), { kind: 'error', title: `twd could not list the directions of head ${sv.head}:`, text: errorText(e) });
  }
}

async function loadBias(block) {
  const params = { block, k: Math.min(20, state.k) };
  const key = JSON.stringify({ ...params, model: state.model });
  if (key === sv.bkey) return;
  const seq = ++sv.bseq;
  const body = $('svd-bias-body');
  body.replaceChildren(el('p', { class: 'hint' }, `Computing the bias probes of block ${block}…`));
  try {
    const ans = await getCached('/svd/bias', params);
    if (seq !== sv.bseq) return;
    sv.bias = ans;
    sv.bkey = key;
    const head = el('tr', {}, el('th', { scope: 'col' }, 'head'),
      BIAS.map(([, , what], i) => el('th', { scope: 'col', title: what }, ['a', '−a', 'c', '−c'][i])));
    const rows = ans.heads.map(h => el('tr', {}, el('th', { scope: 'row' }, String(h.head)),
      BIAS.map(([name]) => el('td', {}, (h[name] || []).map(t => tokenChip(t))))));
    body.replaceChildren(
      el('p', { class: 'hint' }, 'Per head, the tokens the attention biases favour: a = W_q b_k (queries the key bias ' +
        'rewards), c = W_k b_q (keys the query bias rewards), and their opposites, against ln_1 of the embeddings.'),
      el('table', { class: 'data', 'data-block': String(ans.block) }, el('thead', {}, head), el('tbody', {}, rows)));
  } catch (e) {
    if (seq !== sv.bseq) return;
    body.replaceChildren(el('p', { class: 'hint' }, `twd could not compute the bias probes: ${errorText(e)}`));
  }
}

// The second model's spectra of the same block, beside the first.
async function loadVs(block) {
  const box = $('svd-vs');
  const vs = sv.ctx.vsInfo();
  if (!vs || vs.name === sv.ctx.current.name) { box.hidden = true; sv.vs = null; sv.vsKey = ''; return; }
  box.hidden = false;
  if (block >= vs.n_layer) {
    box.replaceChildren(el('p', { class: 'hint' }, `${vs.name} has ${vs.n_layer} blocks: no block ${block}.`));
    return;
  }
  const key = `${vs.name}:${block}`;
  if (key === sv.vsKey) return;
  let gd = $('svd-vs-plot');
  if (!gd) { gd = el('div', { id: 'svd-vs-plot', class: 'plot plot2d', role: 'img', 'aria-label': `Spectra of ${vs.name}` }); box.replaceChildren(gd); }
  try {
    const ans = await getCached('/svd', { block, matrix: 'both', top: 0, model: vs.name });
    sv.vs = ans;
    sv.vsKey = key;
    const { data, layout } = figure(gd, ans, vs, null);
    await Plotly.react(gd, data, layout, config(`twd-svd-${vs.name}-block${block}`));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'hint' }, `twd could not compute the spectra of ${vs.name}: ${errorText(e)}`));
  }
}

function stem() { return `twd-svd-block${sv.spectra ? sv.spectra.block : 0}${sv.head !== null ? `-head${sv.head}` : ''}`; }

function dataDoc() {
  return { generated_by: 'twd web page', url: location.href, model: sv.ctx.current, spectra: sv.spectra,
    directions: sv.directions, bias: sv.bias, beside: sv.vs ? { model: sv.ctx.vsInfo(), spectra: sv.vs } : null };
}

// tidy: the coverage curves (kind=coverage), the chosen head's directions
// (kind=direction) and the bias probes (kind=bias)
function dataCsv() {
  const rows = [['kind', 'block', 'head', 'matrix', 'rank', 's', 'coverage', 'side', 'pos', 'id', 'text', 'score']];
  const b = sv.spectra.block;
  for (const h of sv.spectra.heads)
    for (const m of MATRICES) {
      const spec = h[m.key];
      if (!spec) continue;
      spec.coverage.forEach((c, r) => rows.push(['coverage', b, h.head, m.key, r + 1, spec.singular_values[r], c, null, null, null, null, null]));
    }
  if (sv.directions)
    for (const h of sv.directions.heads)
      for (const m of MATRICES) {
        const spec = h[m.key];
        if (!spec) continue;
        for (const d of spec.directions)
          for (const side of ['left', 'right'])
            d[side].forEach((t, j) => rows.push(['direction', b, h.head, m.key, d.rank, d.s, null, side, j + 1, t.id, t.text, t.score]));
      }
  if (sv.bias)
    for (const h of sv.bias.heads)
      for (const [name] of BIAS)
        (h[name] || []).forEach((t, j) => rows.push(['bias', sv.bias.block, h.head, name, j + 1, null, null, null, j + 1, t.id, t.text, t.score]));
  return rows;
}

const fillPickers = () => $('svd-block').replaceChildren(...numbered(sv.ctx.current.n_layer, 'block'));

export function init(ctx) {
  sv.ctx = ctx;
  fillPickers();
  onSubmit('svd', f => {
    const top = whole(f.top.value, 1), k = whole(f.k.value, 1, 20);
    setState({ block: Number(f.block.value), ...(top !== undefined && { top }), ...(k !== undefined && { k }) });
  });
  $('svd-block').addEventListener('change', ev => setState({ block: Number(ev.target.value) }));
  sv.tools = viewFrame('svd', { name: 'head spectra', drawn: () => !!sv.spectra, stem, json: dataDoc, csv: dataCsv,
    draw: () => { draw(); sv.vsKey = ''; loadVs(sv.spectra.block); } });
}

export function modelChanged() { fillPickers(); sv.key = ''; sv.dkey = ''; sv.bkey = ''; sv.vsKey = ''; }

export async function sync() {
  const m = sv.ctx.current;
  const block = Math.min(state.block, m.n_layer - 1);
  const head = Math.min(state.head === null ? 0 : state.head, m.n_head - 1);
  const f = $('svd-form').elements;
  f.block.value = String(block);
  f.top.value = String(state.top);
  f.k.value = String(Math.min(20, state.k));
  const key = JSON.stringify({ block, model: state.model });
  if (key !== sv.key || !sv.spectra) {
    const seq = ++sv.seq;
    showMessage($('svd-msg'), { kind: 'info', title: `Computing the spectra of block ${block}…` });
    try {
      const ans = await getCached('/svd', { block, matrix: 'both', top: 0 });
      if (seq !== sv.seq) return;
      sv.spectra = ans;
      sv.key = key;
      sv.head = head;
      hideMessage($('svd-msg'));
      await draw();
      sv.tools.enable(true);
    } catch (e) {
      if (seq !== sv.seq) return;
      sv.key = '';
      showMessage($('svd-msg'), { kind: 'error', title: 'twd could not compute the spectra:', text: errorText(e) });
      return;
    }
  } else if (head !== sv.head) {
    sv.head = head;
    await draw();
  }
  renderHeadButtons();
  await Promise.all([loadDirections(block), loadBias(block), loadVs(block)]);
  for (const tr of document.querySelectorAll('#svd-bias-body tbody tr'))
    tr.classList.toggle('now', tr.firstChild.textContent === String(sv.head));
}
