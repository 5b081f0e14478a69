// The whole-model sweep: every block and head of the model in one figure.
// The sweep runs on twd as a polled job (POST /sweep/job with the swept
// route and its query, GET /sweep/job/status for the blocks answered, GET
// /sweep/job/result for the route's own answer, {first_block, last_block,
// blocks: [one-block answers]}); the page shows its progress and then a
// blocks x heads heatmap:
//  - head spectra (/svd?block=all&matrix=both&top=0): per head of W_QK or
//    W_VO the share of directions holding 99 % of the spectrum (frac99), or
//    the share of the spectrum in the first direction or in the top tenth;
//  - bias probes (/svd/bias?block=all): the score of the probe's top token.
// A hovered cell shows its block, head and number; a click opens that block
// and head in the head-spectra view. The queries are the ones that view asks
// for one block, so the sweep fills twd's cache for it.
import { apiGet, apiPost, ApiError } from './api.js';
import { state, setState } from './state.js';
import { showMessage, hideMessage, errorText } from './ui.js';
import { el, tokenChip, fmt, plotlyText, visibleToken } from './text.js';
import { viewFrame, drawFigure, onSubmit } from './view.js';

const $ = id => document.getElementById(id);

const MATRIX = { qk: 'W<sub>QK</sub>', vo: 'W<sub>VO</sub>' };
const MATRIX_PLAIN = { qk: 'W_QK', vo: 'W_VO' };
const PROBE = { a: 'a', '-a': '−a', c: 'c', '-c': '−c' };
const MEASURE = {
  f99: { axis: '% of directions for 99 %', long: 'of the directions hold 99 % of the spectrum' },
  first: { axis: '% of the spectrum in the first direction', long: 'of the spectrum in the first direction' },
  top10: { axis: '% of the spectrum in the top 10 % of directions', long: 'of the spectrum in the top 10 % of directions' },
};
const POLL_MS = 250;
const MEMO_MAX = 8;

const sw = {
  ctx: null, key: '', ans: null, job: null, seq: 0, bound: false, tools: null, focus: null, shownProgress: '', cancelling: 0,
  memo: new Map(),   // request key -> {ans, job} of finished sweeps (most recent last)
  running: new Map(), // request key -> Promise of {ans, job} of sweeps under way
};

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

// Seconds for a person: 7.0 s, 0.12 s, under 0.01 s.
const secs = t => (!(t >= 0.01) ? 'under 0.01 s' : `${t >= 10 ? fmt(t, 0) : t >= 1 ? fmt(t, 1) : fmt(t, 2)} s`);

// The blocks as the route takes them: "all", or "A-B" (a lone number N is N-N).
function blocksParam() {
  const b = state.blocks;
  if (!b) return 'all';
  return /^\d+$/.test(b) ? `${b}-${b}` : b;
}

// The swept route and its query (the head-spectra view's one-block queries, with block= a range).
function request() {
  const block = blocksParam();
  if (state.sweep === 'bias') return { path: '/svd/bias', query: `block=${encodeURIComponent(block)}&k=${Math.min(20, state.k)}` };
  return { path: '/svd', query: `block=${encodeURIComponent(block)}&matrix=both&top=0` };
}

// ---------- the job ----------

// A sweep the person cancelled (status: the job's last status).
class Cancelled extends Error {
  constructor(status) { super('cancelled'); this.status = status; }
}

// Runs the sweep as a job, telling progress(status) what the status route says.
async function runJob(req, progress) {
  let st = await apiPost('/sweep/job', { path: req.path, query: req.query });
  const started = st;
  progress(st);
  while (st.state === 'running') {
    await sleep(POLL_MS);
    st = await apiGet('/sweep/job/status', { id: started.job });
    progress(st);
  }
  if (st.state === 'cancelled') throw new Cancelled(st);
  // done: the route's answer; failed: its error answer, thrown as an ApiError
  const ans = await apiGet('/sweep/job/result', { id: started.job, wait: 5 });
  return { ans, job: st };
}

// One sweep per request at a time, its answer kept for the next draws.
function sweepOf(key, req, progress) {
  if (sw.memo.has(key)) return Promise.resolve(sw.memo.get(key));
  let job = sw.running.get(key);
  if (!job) {
    job = { listeners: new Set() };
    job.promise = runJob(req, st => { job.last = st; for (const fn of job.listeners) fn(st); })
      .then(r => {
        sw.memo.set(key, r);
        while (sw.memo.size > MEMO_MAX) sw.memo.delete(sw.memo.keys().next().value);
        return r;
      })
      .finally(() => sw.running.delete(key));
    sw.running.set(key, job);
  }
  job.listeners.add(progress);
  if (job.last) progress(job.last);
  return job.promise.finally(() => job.listeners.delete(progress));
}

// Shows the job's progress (both places are read out by screen readers: they
// change only when a block is answered).
function showProgress(st, seq) {
  if (seq !== sw.seq) return;
  const total = st.total || 0, done = st.done || 0;
  const what = state.sweep === 'bias' ? 'bias probes' : 'spectra';
  const line = total ? `${done} of ${total} blocks answered` : 'starting';
  const shown = `${seq} ${st.job} ${st.state} ${line}`;
  if (shown === sw.shownProgress) return;
  sw.shownProgress = shown;
  $('sweep-status').textContent = `Job ${st.job} (${st.path}): ${line}.`;
  $('sweep-status').dataset.state = st.state;
  if (st.state === 'running')
    showMessage($('sweep-msg'), { kind: 'info', note: `${line}.`,
      title: `Sweeping the ${what} of ${blocksParam() === 'all' ? 'every block' : `blocks ${blocksParam()}`}…`,
      progress: total ? done / total : 0, progressLabel: 'Blocks of the sweep answered',
      actions: [{ id: 'sweep-cancel', label: 'Cancel the sweep', onClick: ev => cancelJob(ev.target, st.job) }] });
  if (st.state === 'running' && sw.cancelling === st.job) cancelling($('sweep-cancel'));
}

function cancelling(button) {
  button.disabled = true;
  button.textContent = 'Cancelling…';
}

// Asks twd to stop job id at its next block (the poll then sees it cancelled).
async function cancelJob(button, id) {
  sw.cancelling = id;
  cancelling(button);
  try {
    await apiPost('/sweep/job/cancel', { id });
  } catch (e) {
    showMessage($('sweep-msg'), { kind: 'error', title: 'twd could not cancel the sweep:', text: errorText(e) });
  }
}

// ---------- the figure ----------

const heads = () => sw.ans.blocks[0].heads.length;

// The number of cell (block answer b, head h), with its hover lines.
function cell(b, h) {
  const hd = b.heads[h];
  if (state.sweep === 'bias') {
    const list = hd[state.probe] || [];
    const top = list[0];
    return { z: top ? top.score : null, text: top ? visibleToken(top.text) : '',
      lines: [`probe ${PROBE[state.probe]}: top tokens`, ...list.slice(0, 5).map(t => `  ${plotlyText(visibleToken(t.text))}  ${fmt(t.score, 4)}`)] };
  }
  const spec = hd[state.matrix];
  const dh = spec.coverage.length;
  if (state.measure === 'f99') {
    const n = Math.round(spec.frac99 * dh);
    return { z: 100 * spec.frac99, lines: [`${fmt(100 * spec.frac99, 2)} % (${n} of ${dh}) ${MEASURE.f99.long}`] };
  }
  const r = state.measure === 'first' ? 1 : Math.max(1, Math.ceil(dh / 10));
  const v = 100 * spec.coverage[r - 1];
  return { z: v, lines: [`${fmt(v, 2)} % of the spectrum in the first ${r === 1 ? 'direction' : `${r} of ${dh} directions`}`] };
}

function what() {
  return state.sweep === 'bias' ? `bias probe ${PROBE[state.probe]}: score of its top token` :
    `${MATRIX[state.matrix]}: ${MEASURE[state.measure].axis}`;
}

function figure() {
  const a = sw.ans, H = heads(), B = a.blocks.length;
  const z = [], text = [], hover = [], custom = [];
  for (const b of a.blocks) {
    const zr = [], tr = [], hr = [], cr = [];
    for (let h = 0; h < H; h++) {
      const c = cell(b, h);
      zr.push(c.z);
      tr.push(c.text !== undefined ? plotlyText(c.text.length > 7 ? `${c.text.slice(0, 6)}…` : c.text) :
        c.z === null ? '' : fmt(c.z, 1));
      hr.push([`<b>block ${b.block} · head ${b.heads[h].head}</b>`, ...c.lines].join('<br>'));
      cr.push([b.block, b.heads[h].head]);
    }
    z.push(zr); text.push(tr); hover.push(hr); custom.push(cr);
  }
  const gd = $('sweep-plot');
  const width = gd.clientWidth || 800;
  const cellW = (width - 140) / H;
  // rows of 18 to 90 px: the whole model in the column when it fits (48 blocks of gpt2-xl scroll)
  const avail = (gd.parentElement.clientHeight || 700) - 170;
  const height = Math.max(320, 130 + B * Math.max(18, Math.min(90, cellW * 0.6, avail / B)));
  const cellH = (height - 130) / B;
  const showText = cellW >= 34 && cellH >= 16;
  const shapes = [];
  const m = /^(\d+),(\d+)$/.exec(state.scell);
  if (m && Number(m[1]) >= a.first_block && Number(m[1]) <= a.last_block && Number(m[2]) < H) {
    shapes.push({ type: 'rect', xref: 'x', yref: 'y', x0: Number(m[2]) - 0.48, x1: Number(m[2]) + 0.48,
      y0: Number(m[1]) - 0.46, y1: Number(m[1]) + 0.46, line: { color: '#e8175d', width: 3 }, fillcolor: 'rgba(0,0,0,0)' });
  }
  const model = sw.ctx.current;
  const data = [{
    type: 'heatmap', uid: 'sweep', z, text, hovertext: hover, customdata: custom,
    x: [...Array(H).keys()], y: a.blocks.map(b => b.block),
    texttemplate: showText ? '%{text}' : '', textfont: { size: Math.max(8, Math.min(12, Math.floor(cellW / 6))) },
    hovertemplate: '%{hovertext}<extra></extra>', colorscale: 'Viridis', xgap: 1, ygap: 1,
    // the share of directions on its whole range, so that sweeps compare (random weights fill every direction)
    ...(state.sweep === 'spectra' && state.measure === 'f99' && { zmin: 0, zmax: 100 }),
    colorbar: { title: { text: state.sweep === 'bias' ? 'score' : '%', side: 'right' }, thickness: 12, len: 0.9 },
    meta: { role: 'sweep', analysis: state.sweep, matrix: state.matrix, measure: state.measure, probe: state.probe,
      blocks: B, heads: H, first: a.first_block, last: a.last_block },
  }];
  const narrow = width < 700;   // the title on two lines
  const layout = {
    title: { text: `${plotlyText(model.name)}${model.synthetic ? ' (synthetic)' : ''} · blocks ${a.first_block}–${a.last_block} × ` +
      `${H} heads${narrow ? '<br>' : ' · '}${what()}`, x: 0.01, xanchor: 'left', font: { size: 13 } },
    margin: { l: 70, r: 20, t: narrow ? 60 : 40, b: 50 }, height,
    xaxis: { title: { text: 'head', font: { size: 11 } }, tickvals: [...Array(H).keys()], showgrid: false, zeroline: false,
      range: [-0.5, H - 0.5] },
    yaxis: { title: { text: 'block', font: { size: 11 } }, tickvals: a.blocks.map(b => b.block), showgrid: false, zeroline: false,
      range: [a.last_block + 0.5, a.first_block - 0.5] },
    paper_bgcolor: '#ffffff', plot_bgcolor: '#ffffff', shapes,
  };
  return { data, layout };
}

async function draw() {
  $('sweep-plot').classList.remove('empty');   // shown first, so that the figure is laid out at its width
  const gd = await drawFigure('sweep', figure(), stem());
  Object.assign(gd.dataset, { analysis: state.sweep, shown: shownKey(), blocks: String(sw.ans.blocks.length), heads: String(heads()),
    first: String(sw.ans.first_block), job: String(sw.job ? sw.job.job : '') });
  if (!sw.bound) {
    sw.bound = true;
    const at = ev => {
      const pt = ev.points && ev.points[0];
      return pt && Array.isArray(pt.customdata) ? pt.customdata : null;
    };
    gd.on('plotly_click', ev => { const c = at(ev); if (c) openCell(c[0], c[1]); });
    gd.on('plotly_hover', ev => { const c = at(ev); if (c) { sw.focus = c; renderDetail(); } });
  }
  renderDetail();
  renderTable();
}

// What is drawn: the request and the number shown.
function shownKey() {
  return [state.sweep, state.sweep === 'bias' ? state.probe : `${state.matrix}:${state.measure}`, blocksParam()].join(' ');
}

// Opens block b, head h in the head-spectra view. The sweep's own entry of the
// history keeps the cell, so that Back returns to it framed.
function openCell(b, h) {
  setState({ scell: `${b},${h}` }, { push: false, silent: true });
  setState({ view: 'svd', block: b, head: h });
}

function renderDetail() {
  const box = $('sweep-cell');
  const c = sw.focus || (/^(\d+),(\d+)$/.test(state.scell) ? state.scell.split(',').map(Number) : null);
  const b = c && sw.ans && sw.ans.blocks.find(x => x.block === c[0]);
  if (!b || !b.heads[c[1]]) {
    box.replaceChildren(el('h2', {}, 'A cell'),
      el('p', { class: 'muted' }, 'Point at a cell for its numbers; click it to open that block and head in the head spectra.'));
    delete box.dataset.cell;
    return;
  }
  const [blk, h] = c;
  const parts = [el('h2', {}, `Block ${blk}, head ${h}`)];
  if (state.sweep === 'bias') {
    const hd = b.heads[h];
    for (const p of ['c', '-c', 'a', '-a'])
      parts.push(el('h3', {}, `${PROBE[p]}${p === state.probe ? ' (shown)' : ''}`),
        el('ol', { class: 'nearest' }, (hd[p] || []).map(t => el('li', {}, tokenChip(t), el('span', { class: 'score' }, fmt(t.score, 4))))));
  } else {
    for (const mat of ['qk', 'vo']) {
      const spec = b.heads[h][mat];
      const dh = spec.coverage.length, r10 = Math.max(1, Math.ceil(dh / 10));
      parts.push(el('p', { 'data-matrix': mat }, el('b', { class: mat }, MATRIX_PLAIN[mat]),
        `: 99 % of the spectrum in ${Math.round(spec.frac99 * dh)} of ${dh} directions (${fmt(100 * spec.frac99, 2)} %); ` +
        `the first holds ${fmt(100 * spec.coverage[0], 2)} %, the top ${r10} ${fmt(100 * spec.coverage[r10 - 1], 2)} %.`));
    }
  }
  parts.push(el('button', { type: 'button', id: 'sweep-open', onclick: () => openCell(blk, h) },
    `Open block ${blk}, head ${h} in the head spectra`));
  box.replaceChildren(...parts);
  box.dataset.cell = `${blk},${h}`;
}

// The figure as a table: a row per block, a button per head (opens it).
function renderTable() {
  const a = sw.ans, H = heads();
  $('sweep-table-wrap').hidden = false;
  const head = el('tr', {}, el('th', { scope: 'col' }, 'block'), [...Array(H).keys()].map(h => el('th', { scope: 'col' }, `head ${h}`)));
  const rows = a.blocks.map(b => el('tr', {}, el('th', { scope: 'row' }, String(b.block)),
    b.heads.map((hd, h) => {
      const c = cell(b, h);
      const label = c.z === null ? '—' : state.sweep === 'bias' ? `${visibleToken(c.text)} ${fmt(c.z, 3)}` : fmt(c.z, 2);
      return el('td', { class: 'num' }, el('button', { type: 'button', class: 'link', 'data-cell': `${b.block},${hd.head}`,
        'aria-label': `block ${b.block}, head ${hd.head}: ${label}; open in the head spectra`, onclick: () => openCell(b.block, hd.head) }, label));
    })));
  $('sweep-table').replaceChildren(el('table', { class: 'data' },
    el('caption', {}, `${state.sweep === 'bias' ? `Bias probe ${PROBE[state.probe]}: top token and its score` :
      `${MATRIX_PLAIN[state.matrix]}: ${MEASURE[state.measure].axis}`} per block and head`),
    el('thead', {}, head), el('tbody', {}, rows)));
}

// ---------- downloads ----------

function stem() {
  const b = blocksParam().replace(/[^0-9a-z-]/gi, '');
  return state.sweep === 'bias' ? `twd-sweep-bias-${state.probe.replace('-', 'minus-')}-blocks-${b}` :
    `twd-sweep-svd-${state.matrix}-${state.measure}-blocks-${b}`;
}

function dataDoc() {
  const req = request();
  return { generated_by: 'twd web page', url: location.href, model: sw.ctx.current, request: req,
    shown: { analysis: state.sweep, matrix: state.matrix, measure: state.measure, probe: state.probe },
    job: sw.job, answer: sw.ans };
}

// tidy: spectra, a row per block, head and matrix; bias, a row per block, head, probe and rank
function dataCsv() {
  if (state.sweep === 'bias') {
    const rows = [['block', 'head', 'probe', 'rank', 'id', 'text', 'score']];
    for (const b of sw.ans.blocks)
      for (const hd of b.heads)
        for (const p of ['a', '-a', 'c', '-c']) (hd[p] || []).forEach((t, j) => rows.push([b.block, hd.head, p, j + 1, t.id, t.text, t.score]));
    return rows;
  }
  const rows = [['block', 'head', 'matrix', 'd_head', 'frac99', 'coverage_first', 'top10_directions', 'coverage_top10', 's_first', 's_sum']];
  for (const b of sw.ans.blocks)
    for (const hd of b.heads)
      for (const mat of ['qk', 'vo']) {
        const spec = hd[mat];
        const dh = spec.coverage.length, r10 = Math.max(1, Math.ceil(dh / 10));
        rows.push([b.block, hd.head, mat, dh, spec.frac99, spec.coverage[0], r10, spec.coverage[r10 - 1], spec.singular_values[0],
          spec.singular_values.reduce((x, y) => x + y, 0)]);
      }
  return rows;
}

// ---------- the view ----------

function syncForm() {
  const f = $('sweep-form').elements;
  for (const r of f.sweep) r.checked = r.value === state.sweep;
  f.matrix.value = state.matrix;
  f.measure.value = state.measure;
  f.probe.value = state.probe;
  if (document.activeElement !== f.blocks) f.blocks.value = state.blocks;
  for (const e of document.querySelectorAll('#view-sweep .mode-only, #view-sweep .reading [data-mode]')) e.hidden = e.dataset.mode !== state.sweep;
}

export function init(ctx) {
  sw.ctx = ctx;
  onSubmit('sweep', f => {
    const blocks = f.blocks.value.trim().replace(/\s+/g, '');
    const patch = { blocks: blocks === 'all' ? '' : blocks, scell: '' };
    const again = patch.blocks === state.blocks;   // the same sweep again: a new job (twd answers it from its cache)
    if (again) { sw.memo.delete(sw.key); sw.key = ''; }
    if (again && !state.scell) sync();
    else setState(patch);
  });
  $('sweep-form').addEventListener('change', ev => {
    const t = ev.target;
    if (t.name === 'sweep' && t.checked) setState({ sweep: t.value });
    else if (['matrix', 'measure', 'probe'].includes(t.name)) setState({ [t.name]: t.value });
  });
  sw.tools = viewFrame('sweep', { name: 'whole-model sweep', drawn: () => !!sw.ans, draw, stem, json: dataDoc, csv: dataCsv });
}

export function modelChanged() { sw.key = ''; sw.memo.clear(); }

export async function sync() {
  syncForm();
  const req = request();
  const key = JSON.stringify({ ...req, model: state.model });
  if (key === sw.key && sw.ans) {
    // the same answer: only the number shown, or the cell, changed
    sw.focus = null;
    await draw();
    return;
  }
  const seq = ++sw.seq;
  const box = $('sweep-msg');
  sw.tools.enable(false);
  try {
    const { ans, job } = await sweepOf(key, req, st => showProgress(st, seq));
    if (seq !== sw.seq) return;
    Object.assign(sw, { ans, job, key, focus: null });
    hideMessage(box);
    $('sweep-status').textContent = `Job ${job.job} (${job.path}?${req.query}): ${job.done} of ${job.total} blocks answered ` +
      `in ${secs(job.seconds)}.`;
    $('sweep-status').dataset.state = job.state;
    await draw();
    sw.tools.enable(true);
  } catch (e) {
    if (seq !== sw.seq) return;
    sw.key = '';
    if (e instanceof Cancelled) {
      $('sweep-status').textContent = `Job ${e.status.job} cancelled after ${e.status.done} of ${e.status.total} blocks.`;
      $('sweep-status').dataset.state = 'cancelled';
      showMessage(box, { kind: 'info', title: 'The sweep was cancelled.',
        note: `twd answered ${e.status.done} of ${e.status.total} blocks before it stopped; they stay in its cache, so the head ` +
          'spectra of those blocks open at once, and running the sweep again starts from them.' +
          (sw.ans ? ' The figure still shows the previous sweep.' : '') });
      $('sweep-plot').classList.toggle('stale', !!sw.ans);
      return;
    }
    const n = sw.ctx.current.n_layer;
    const bad = e instanceof ApiError && e.status === 400;
    $('sweep-status').textContent = bad ? 'Not started: twd refused the request.' : 'The sweep failed.';
    $('sweep-status').dataset.state = 'failed';
    showMessage(box, { kind: 'error', title: bad ? 'twd cannot sweep these blocks:' : 'twd could not finish the sweep:', text: errorText(e),
      note: bad ? `This model has ${n} blocks, numbered 0 to ${n - 1}: write “all”, or a range from one block to a later one such as 0-${Math.min(n - 1, 11)}.` :
        sw.ans ? 'The figure still shows the previous sweep.' : '' });
    $('sweep-plot').classList.toggle('stale', !!sw.ans);
  }
}
