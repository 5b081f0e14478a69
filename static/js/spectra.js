// The head-spectra view: for one block, per head, the coverage curves
// cumsum(S)/sum(S) of the singular values of W_QK and W_VO (x: % of the
// directions, y: % of the spectrum, dashed at 99 %), from /svd?top=0; a head's
// top singular directions with their left and right tokens on request.
import { apiGet } from './api.js';
import { showMessage, hideMessage, errorText } from './ui.js';
import { el, tokenChip, fmt, downloadBlob, plotlyText } from './text.js';

const MATRICES = [
  { key: 'qk', name: 'W<sub>QK</sub>', plain: 'W_QK', color: '#1f6fb4',
    left: 'left: query side (ln_1 of the embeddings)', right: 'right: key side (ln_1 of the embeddings)' },
  { key: 'vo', name: 'W<sub>VO</sub>', plain: 'W_VO', color: '#d9730d',
    left: 'left: what the head reads (ln_1 of the embeddings)', right: 'right: what it writes (the embeddings)' },
];

const $ = id => document.getElementById(id);

const sv = {
  model: null,
  block: 0,
  spectra: null,     // /svd?top=0 answer shown
  head: null,        // head whose directions are listed
  directions: null,  // /svd?head=... answer listed
  seq: 0,
  dseq: 0,
  loaded: false,
  bound: false,
};

// Rows x columns of the small multiples: as square as possible with full rows
// (the reference's layout); two columns on a narrow window.
function grid(n, narrow) {
  if (narrow) return [Math.ceil(n / 2), Math.min(n, 2)];
  let cols = Math.ceil(Math.sqrt(n));
  while (n % cols !== 0 && cols < n) cols++;
  if (cols > 6) cols = Math.ceil(Math.sqrt(n));  // a prime head count: fall back to a ragged grid
  return [Math.ceil(n / cols), cols];
}

// x and y of a coverage curve, in %, starting at (0, 0): after r+1 of dh
// directions the curve holds coverage[r].
function curve(cov) {
  const dh = cov.length;
  return { x: [0, ...cov.map((_, r) => (100 * (r + 1)) / dh)], y: [0, ...cov.map(c => 100 * c)] };
}

// Pixel height of a row of heads: the whole grid in the visible column when
// that leaves each row at least 150 px, never more than 205 px.
function rowHeight(rows, narrow) {
  if (narrow) return 190;
  const stage = $('svd-plot').parentElement.clientHeight - 12;
  return Math.max(150, Math.min(205, Math.floor((stage - 100) / rows)));
}

function figure() {
  const gd = $('svd-plot');
  const narrow = gd.clientWidth < 600;
  const heads = sv.spectra.heads;
  const n = heads.length;
  const [rows, cols] = grid(n, narrow);
  const data = [], shapes = [], annotations = [];
  const layout = {
    grid: { rows, columns: cols, pattern: 'independent', xgap: 0.12, ygap: narrow ? 0.32 : 0.28 },
    margin: { l: 48, r: 12, t: 84, b: 44 },
    height: Math.max(320, rows * rowHeight(rows, narrow) + 100),
    paper_bgcolor: '#ffffff', plot_bgcolor: '#fbfcfe',
    title: {
      text: narrow ? `block ${sv.spectra.block}: coverage of the spectrum per head`
        : `${plotlyText(sv.model.name)}${sv.model.synthetic ? ' (synthetic)' : ''} · block ${sv.spectra.block}: ` +
          'singular value coverage per head',
      x: 0.01, xanchor: 'left', y: 0.99, yanchor: 'top', yref: 'container', font: { size: 14 },
    },
    // between the title and the first row of heads
    legend: { orientation: 'h', x: narrow ? 0 : 1, xanchor: narrow ? 'left' : 'right', y: 0, yanchor: 'top',
      yref: 'container', font: { size: 12 } },
    hovermode: 'closest',
    showlegend: true,
  };
  heads.forEach((hd, i) => {
    const ax = i === 0 ? '' : String(i + 1);
    const row = Math.floor(i / cols), col = i % cols;
    const bottom = row === rows - 1 || i + cols >= n;
    layout[`xaxis${ax}`] = {
      range: [0, 100], dtick: 25, gridcolor: '#e3e7ee', zeroline: false, showticklabels: bottom,
      title: bottom ? { text: '% of directions', font: { size: 11 } } : undefined, tickfont: { size: 10 },
    };
    layout[`yaxis${ax}`] = {
      range: [0, 102], dtick: 25, gridcolor: '#e3e7ee', zeroline: false, showticklabels: col === 0,
      title: col === 0 ? { text: '% of spectrum', font: { size: 11 } } : undefined, tickfont: { size: 10 },
    };
    const xr = `x${ax}`, yr = `y${ax}`;
    shapes.push({ type: 'line', xref: `${xr} domain`, yref: yr, x0: 0, x1: 1, y0: 99, y1: 99,
      line: { color: '#8a93a3', width: 1, dash: 'dash' } });
    const f99 = [];
    for (const m of MATRICES) {
      const spec = hd[m.key];
      if (!spec) continue;
      const c = curve(spec.coverage);
      data.push({
        type: 'scatter', mode: 'lines', xaxis: xr, yaxis: yr, x: c.x, y: c.y,
        name: m.name, legendgroup: m.key, showlegend: i === 0,
        line: { color: m.color, width: 2 },
        hovertemplate: `head ${hd.head} · ${m.name}<br>%{x:.1f} % of directions: %{y:.1f} % of the spectrum<extra></extra>`,
        meta: { role: 'coverage', matrix: m.key, head: hd.head },
      });
      shapes.push({ type: 'line', xref: xr, yref: `${yr} domain`, x0: 100 * spec.frac99, x1: 100 * spec.frac99,
        y0: 0, y1: 1, line: { color: m.color, width: 1, dash: 'dot' } });
      f99.push(`${m.key.toUpperCase()} ${Math.round(100 * spec.frac99)}%`);
    }
    const label = narrow ? `<b>head ${hd.head}</b> ${f99.join(' ')}` : `<b>head ${hd.head}</b>  99 %: ${f99.join(' · ')}`;
    annotations.push({
      xref: `${xr} domain`, yref: `${yr} domain`, x: 0, y: 1.02, xanchor: 'left', yanchor: 'bottom',
      showarrow: false, align: 'left', font: { size: 11, color: hd.head === sv.head ? '#2855c5' : '#1d2330' },
      text: label,
    });
  });
  layout.legend.y = 1 - 30 / layout.height;  // just under the title
  layout.shapes = shapes;
  layout.annotations = annotations;
  return { data, layout };
}

function draw() {
  const gd = $('svd-plot');
  gd.classList.remove('empty');
  const { data, layout } = figure();
  Plotly.react(gd, data, layout, {
    displaylogo: false, responsive: true,
    toImageButtonOptions: { filename: `twd-svd-block${sv.spectra.block}`, format: 'png' },
  });
  gd.dataset.block = String(sv.spectra.block);
  if (!sv.bound) {  // clicking a head's curve lists its directions
    sv.bound = true;
    gd.on('plotly_click', ev => {
      const meta = ev.points && ev.points[0] && ev.points[0].data.meta;
      if (meta && typeof meta.head === 'number') selectHead(meta.head);
    });
  }
}

function renderHeadButtons() {
  const box = $('svd-heads');
  box.replaceChildren(...sv.spectra.heads.map(hd => el('button', {
    type: 'button', 'aria-pressed': hd.head === sv.head ? 'true' : 'false', 'data-head': hd.head,
    onclick: () => selectHead(hd.head),
  }, String(hd.head))));
}

// Loads the spectra of block b (cheap: top=0) and draws them.
export async function loadBlock(b) {
  const seq = ++sv.seq;
  sv.block = b;
  $('svd-block').value = String(b);
  showMessage($('svd-msg'), { kind: 'info', title: `Computing the spectra of block ${b}…` });
  try {
    const ans = await apiGet('/svd', { block: b, matrix: 'both', top: 0 });
    if (seq !== sv.seq) return;
    sv.spectra = ans;
    if (sv.head !== null && sv.head >= ans.heads.length) sv.head = null;
    hideMessage($('svd-msg'));
    draw();
    renderHeadButtons();
    $('svd-png').disabled = false;
    $('svd-json').disabled = false;
    if (sv.head !== null) selectHead(sv.head);
    else $('svd-directions').replaceChildren();
  } catch (e) {
    if (seq !== sv.seq) return;
    showMessage($('svd-msg'), { kind: 'error', title: 'twd could not compute the spectra:', text: errorText(e) });
  }
}

function directionsTable(m, spec) {
  const head = el('tr', {}, el('th', { scope: 'col' }, 'rank'), el('th', { scope: 'col' }, 'σ'),
    el('th', { scope: 'col' }, 'left tokens'), el('th', { scope: 'col' }, 'right tokens'));
  const rows = spec.directions.map(d => el('tr', {},
    el('td', { class: 'num' }, String(d.rank)), el('td', { class: 'num' }, fmt(d.s, 4)),
    el('td', {}, d.left.map(t => tokenChip(t))), el('td', {}, d.right.map(t => tokenChip(t)))));
  return el('section', { 'data-matrix': m.key },
    el('h2', { class: m.key }, `${m.plain} of head ${sv.directions.heads[0].head}, block ${sv.directions.block}`),
    el('p', { class: 'hint' }, `${m.left}; ${m.right}. 99 % of the spectrum in ${Math.round(100 * spec.frac99)} % of the ${sv.directions.dh} directions.`),
    el('table', { class: 'data' }, el('thead', {}, head), el('tbody', {}, rows)));
}

// Lists the top directions of head h of the current block.
export async function selectHead(h) {
  const seq = ++sv.dseq;
  sv.head = h;
  renderHeadButtons();
  if (sv.spectra) draw();
  const top = Math.max(1, Number($('svd-top').value) || 10);
  const k = Math.max(1, Number($('svd-k').value) || 5);
  const box = $('svd-directions');
  box.replaceChildren(el('p', { class: 'hint' }, `Computing the top directions of head ${h}…`));
  try {
    const ans = await apiGet('/svd', { block: sv.block, matrix: 'both', top, k, head: h });
    if (seq !== sv.dseq) return;
    sv.directions = ans;
    const hd = ans.heads[0];
    box.replaceChildren(...MATRICES.filter(m => hd[m.key]).map(m => directionsTable(m, hd[m.key])));
  } catch (e) {
    if (seq !== sv.dseq) return;
    box.replaceChildren();
    showMessage($('svd-msg'), { kind: 'error', title: `twd could not list the directions of head ${h}:`, text: errorText(e) });
  }
}

function downloadJson() {
  const doc = {
    generated_by: 'twd web page', url: location.href, model: sv.model,
    spectra: sv.spectra, directions: sv.head !== null ? sv.directions : null,
  };
  downloadBlob(new Blob([JSON.stringify(doc, null, 1)], { type: 'application/json' }),
    `twd-svd-block${sv.block}${sv.head !== null ? `-head${sv.head}` : ''}.json`);
}

// Wires the view to model m; the spectra are fetched the first time the view is shown.
export function initSpectra(m) {
  sv.model = m;
  const sel = $('svd-block');
  sel.replaceChildren(...Array.from({ length: m.n_layer }, (_, b) => el('option', { value: b }, `block ${b}`)));
  $('svd-form').addEventListener('submit', ev => {
    ev.preventDefault();
    loadBlock(Number(sel.value));
  });
  sel.addEventListener('change', () => loadBlock(Number(sel.value)));
  $('svd-png').addEventListener('click', () => {
    const gd = $('svd-plot');
    Plotly.downloadImage(gd, { format: 'png', filename: `twd-svd-block${sv.block}`,
      width: Math.max(gd.clientWidth, 800), height: gd.clientHeight });
  });
  $('svd-json').addEventListener('click', downloadJson);
  $('svd-plot').classList.add('empty');
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (sv.spectra && !$('view-svd').hidden) draw(); }, 150);
  });
}

// Called when the view becomes visible.
export function showSpectra() {
  const gd = $('svd-plot');
  if (!sv.loaded) {
    sv.loaded = true;
    loadBlock(Number($('svd-block').value) || 0);
  } else if (sv.spectra) {
    draw();  // the window may have changed while the view was hidden
  }
}
