// The word probes: for a block and a list of words, a grid of words (rows) by
// heads (columns) plus the layer sum (last column, on its own scale). Each
// cell shows the top key token (K: what the word's query looks for, W_QK) and
// the top value token (V: where the head's update points, W_VO), shaded by
// the norm of the update; a click lists the cell in full. Data: /probe.
import { postCached, hasParam } from './api.js';
import { state, setState } from './state.js';
import { showMessage } from './ui.js';
import { visibleToken, plotlyText, el, tokenChip, fmt } from './text.js';
import { config } from './plot.js';
import { viewFrame, ask, numbered, whole, drawFigure, onSubmit } from './view.js';

const $ = id => document.getElementById(id);

// a character-level model probes characters: the commonest letters of English
const CHAR_WORDS = ['e', 't', 'a', 'o', 'i', 'n', 's', 'h', 'r', 'd', 'l', 'u'];

const pv = { ctx: null, key: '', ans: null, seq: 0, bound: false, tools: null, cell: null, sent: null };

// twd's demo model (trained on one corpus, said by its config.json)
export const isDemo = m => m.origin === 'demo' || !!m.corpus;

const headNorm = h => (typeof h.norm === 'number' ? h.norm : h.value_norm);

function charModel() { return pv.ctx.current.tokenizer === 'characters'; }

// Whether words get a leading space: the URL's choice, else the model's
// default (twd's demo model knows its words after a space, as in running
// text; the paper probes GPT-2 without).
export function leadingSpace() {
  if (charModel()) return false;
  if (state.space !== null) return state.space;
  return isDemo(pv.ctx.current);
}

function words() {
  const w = state.words.split(',').map(s => s.trim()).filter(Boolean);
  if (w.length) return w;
  return charModel() ? CHAR_WORDS : null;  // null: the daemon's default list
}

function body() {
  const block = Math.min(state.block, pv.ctx.current.n_layer - 1);
  const w = words();
  const space = leadingSpace();
  const b = { block, k: Math.min(20, state.k) };
  if (hasParam('/probe', 'leading_space')) {
    if (w) b.words = w;
    if (space) b.leading_space = true;
  } else if (w) {
    // an older twd: the page adds the space itself
    b.words = space ? w.map(x => (x.startsWith(' ') ? x : ` ${x}`)) : w;
  } else if (space) {
    b.words = null;  // filled from the default list (see defaultsWithSpace)
  }
  return b;
}

// An older twd without leading_space: the default words, asked once, then
// sent again with a space in front.
async function defaultsWithSpace(b) {
  const plain = await postCached('/probe', { block: b.block, k: 1 });
  const list = [...plain.words.map(w => w.word), ...plain.skipped.map(s => s.word)];
  return { ...b, words: list.map(x => ` ${x}`) };
}

function cellText(list, n) {
  return list.slice(0, n).map(t => plotlyText(visibleToken(t.text).slice(0, 10))).join(' ');
}

function figure() {
  const a = pv.ans;
  const H = a.n_heads;
  const rows = a.words;
  const gd = $('probe-plot');
  const width = gd.clientWidth || 900;
  const colW = (width - 140) / (H + 1.3);
  const n = colW > 150 ? 2 : 1;
  const fontSize = Math.max(8, Math.min(11, Math.floor(colW / 9)));
  const zH = [], tH = [], hH = [], zL = [], tL = [], hL = [];
  rows.forEach(w => {
    const label = plotlyText(visibleToken(w.word));
    zH.push(w.heads.map(headNorm));
    tH.push(w.heads.map(h => `K ${cellText(h.keys, n)}<br>V ${cellText(h.values, n)}`));
    hH.push(w.heads.map(h => `<b>${label}</b> · head ${h.head} · ‖u‖ ${fmt(headNorm(h))}<br>` +
      `keys: ${h.keys.map(t => plotlyText(visibleToken(t.text))).join('  ')}<br>` +
      `values: ${h.values.map(t => plotlyText(visibleToken(t.text))).join('  ')}`));
    zL.push([w.layer.norm]);
    tL.push([`V ${cellText(w.layer.values, n)}`]);
    hL.push([`<b>${label}</b> · the layer (sum of the heads) · ‖U‖ ${fmt(w.layer.norm)}<br>` +
      `values: ${w.layer.values.map(t => plotlyText(visibleToken(t.text))).join('  ')}`]);
  });
  const ylab = rows.map(w => plotlyText(visibleToken(w.word)));
  const yi = [...rows.keys()];
  const common = { texttemplate: '%{text}', textfont: { size: fontSize, family: 'DejaVu Sans Mono, monospace' },
    hovertemplate: '%{hovertext}<extra></extra>', xgap: 2, ygap: 2 };
  const data = [{
    type: 'heatmap', uid: 'heads', x: [...Array(H).keys()], y: yi, z: zH, text: tH, hovertext: hH, ...common,
    colorscale: 'Cividis', reversescale: true, coloraxis: undefined,
    colorbar: { title: { text: '‖u<sub>h</sub>‖', side: 'right' }, thickness: 10, len: 0.45, y: 1, yanchor: 'top', x: 1.0 },
    meta: { role: 'heads', words: rows.length, heads: H },
  }, {
    type: 'heatmap', uid: 'layer', x: [0], y: yi, z: zL, text: tL, hovertext: hL, xaxis: 'x2', ...common,
    colorscale: 'Cividis', reversescale: true,
    colorbar: { title: { text: '‖U‖', side: 'right' }, thickness: 10, len: 0.45, y: 0, yanchor: 'bottom', x: 1.0 },
    meta: { role: 'layer', words: rows.length },
  }];
  const split = H / (H + 1.25);
  const m = pv.ctx.current;
  const layout = {
    title: { text: `${plotlyText(m.name)} · block ${a.block}: word probes${pv.sent && pv.sent.leading_space ? ' (with a leading space)' : ''}`,
      x: 0.01, xanchor: 'left', font: { size: 13 } },
    margin: { l: 100, r: 70, t: 60, b: 20 },
    height: Math.max(260, 90 + rows.length * (n === 2 ? 42 : 34)),
    xaxis: { domain: [0, split - 0.01], tickvals: [...Array(H).keys()], ticktext: [...Array(H).keys()].map(h => `head ${h}`),
      side: 'top', showgrid: false, zeroline: false, fixedrange: true },
    xaxis2: { domain: [split + 0.01, 1], tickvals: [0], ticktext: ['layer Σ'], side: 'top', showgrid: false, zeroline: false, fixedrange: true },
    yaxis: { tickvals: yi, ticktext: ylab, autorange: 'reversed', showgrid: false, zeroline: false, fixedrange: true,
      tickfont: { family: 'DejaVu Sans Mono, monospace', size: 11 } },
    paper_bgcolor: '#ffffff', plot_bgcolor: '#ffffff',
  };
  return { data, layout };
}

async function draw() {
  const gd = await drawFigure('probe', figure(), stem());
  gd.dataset.block = String(pv.ans.block);
  gd.dataset.words = String(pv.ans.words.length);
  if (!pv.bound) {
    pv.bound = true;
    gd.on('plotly_click', ev => {
      const pt = ev.points && ev.points[0];
      if (!pt) return;
      const w = Number(pt.y), head = pt.data.uid === 'layer' ? pv.ans.n_heads : Number(pt.x);
      setState({ cell: `${w},${head}` });
    });
  }
  renderCell();
  renderTable();
  renderSkipped();
}

function tokenList(title, list, cls) {
  return [el('h3', { class: cls }, title), el('ol', { class: 'nearest' },
    list.map(t => el('li', {}, tokenChip(t), el('span', { class: 'score' }, fmt(t.score)))))];
}

function renderCell() {
  const box = $('probe-cell');
  const a = pv.ans;
  const m = /^(\d+),(\d+)$/.exec(state.cell);
  if (!a || !m || Number(m[1]) >= a.words.length || Number(m[2]) > a.n_heads) {
    box.replaceChildren(el('h2', {}, 'A cell'), el('p', { class: 'muted' }, 'Click a cell of the grid for its full lists.'));
    return;
  }
  const w = a.words[Number(m[1])], h = Number(m[2]);
  box.dataset.cell = state.cell;
  if (h === a.n_heads) {
    box.replaceChildren(el('h2', {}, tokenChip(w.token), ' · the layer (sum of the heads)'),
      el('p', { class: 'hint' }, `‖U‖ = ${fmt(w.layer.norm)}`), ...tokenList('values', w.layer.values, 'vo'));
  } else {
    const hd = w.heads[h];
    box.replaceChildren(el('h2', {}, tokenChip(w.token), ` · head ${hd.head}`),
      el('p', { class: 'hint' }, `‖u‖ = ${fmt(headNorm(hd))}`),
      ...tokenList('keys (W_QK)', hd.keys, 'qk'), ...tokenList('values (W_VO)', hd.values, 'vo'));
  }
}

function renderSkipped() {
  const box = $('probe-skipped');
  const sk = pv.ans.skipped || [];
  box.hidden = sk.length === 0;
  if (!sk.length) return;
  const why = s => {
    if (Array.isArray(s.tokens)) return el('span', {}, ` splits into ${s.tokens.length}: `, s.tokens.map(t => tokenChip(t)));
    if (s.reason) return ` ${s.reason}`;
    return ` is ${s.n_tokens} tokens`;
  };
  box.replaceChildren(el('h2', {}, `${sk.length} word${sk.length > 1 ? 's' : ''} left out`),
    el('p', { class: 'hint' }, 'A word is probed only when it is one token.'),
    el('ul', { class: 'nearest' }, sk.slice(0, 40).map(s => el('li', {}, el('span', { class: 'tok' }, visibleToken(s.word)), why(s)))),
    sk.length > 40 ? el('p', { class: 'hint' }, `and ${sk.length - 40} more`) : '');
}

function renderTable() {
  const a = pv.ans;
  $('probe-table-wrap').hidden = false;
  const head = el('tr', {}, el('th', { scope: 'col' }, 'word'),
    Array.from({ length: a.n_heads }, (_, h) => el('th', { scope: 'col' }, `head ${h}`)), el('th', { scope: 'col' }, 'layer'));
  const rows = a.words.map(w => el('tr', {}, el('th', { scope: 'row' }, tokenChip(w.token)),
    w.heads.map(h => el('td', {}, el('div', { class: 'qk' }, 'K ', h.keys.slice(0, 3).map(t => tokenChip(t))),
      el('div', { class: 'vo' }, 'V ', h.values.slice(0, 3).map(t => tokenChip(t))), el('div', { class: 'muted' }, `‖u‖ ${fmt(headNorm(h), 2)}`))),
    el('td', {}, el('div', { class: 'vo' }, 'V ', w.layer.values.slice(0, 3).map(t => tokenChip(t))), el('div', { class: 'muted' }, `‖U‖ ${fmt(w.layer.norm, 2)}`))));
  $('probe-table').replaceChildren(el('table', { class: 'data' },
    el('caption', {}, `Block ${a.block}: top keys (K) and values (V) per head`), el('thead', {}, head), el('tbody', {}, rows)));
}

function stem() { return pv.ans ? `twd-probe-block${pv.ans.block}` : 'twd-probe'; }

function dataDoc() { return { generated_by: 'twd web page', url: location.href, model: pv.ctx.current, request: pv.sent, probe: pv.ans }; }

// the daemon's tidy columns: word,token_id,kind,head,list,rank,id,text,score,norm
function dataCsv() {
  const rows = [['word', 'token_id', 'kind', 'head', 'list', 'rank', 'id', 'text', 'score', 'norm']];
  for (const w of pv.ans.words) {
    for (const h of w.heads)
      for (const list of ['keys', 'values'])
        h[list].forEach((t, j) => rows.push([w.word, w.token.id, 'head', h.head, list, j + 1, t.id, t.text, t.score, headNorm(h)]));
    w.layer.values.forEach((t, j) => rows.push([w.word, w.token.id, 'layer', null, 'values', j + 1, t.id, t.text, t.score, w.layer.norm]));
  }
  return rows;
}

function fillPickers() {
  const m = pv.ctx.current;
  $('probe-block').replaceChildren(...numbered(m.n_layer, 'block'));
  const chars = charModel();
  $('probe-space').disabled = chars;
  $('probe-space').parentElement.hidden = chars;
  const note = $('probe-space-note');
  note.hidden = !(isDemo(m) || chars);
  note.textContent = chars ? 'A character-level model: the words are single characters.'
    : 'This model learned its words after a space, as they are in running text: probing " earth" says more than "earth".';
}

export function init(ctx) {
  pv.ctx = ctx;
  fillPickers();
  onSubmit('probe', f => {
    const k = whole(f.k.value, 1, 20);
    const patch = { block: Number(f.block.value), words: f.words.value.split(',').map(s => s.trim()).filter(Boolean).join(','),
      space: f.space.checked === leadingSpace() ? state.space : f.space.checked, ...(k !== undefined && { k }) };
    if (patch.words !== state.words) patch.cell = '';
    if (Object.keys(patch).every(kk => state[kk] === patch[kk])) { pv.key = ''; sync(); return; }
    setState(patch);
  });
  $('probe-block').addEventListener('change', ev => setState({ block: Number(ev.target.value) }));
  $('probe-space').addEventListener('change', ev => setState({ space: ev.target.checked, cell: '' }));
  pv.tools = viewFrame('probe', { name: 'word probes', drawn: () => !!pv.ans, draw, stem, json: dataDoc, csv: dataCsv });
}

export function modelChanged() { fillPickers(); pv.key = ''; }

export async function sync() {
  const f = $('probe-form').elements;
  const b0 = body();
  f.block.value = String(b0.block);
  if (document.activeElement !== f.words) f.words.value = state.words.split(',').join(', ');
  f.space.checked = leadingSpace();
  f.k.value = String(b0.k);
  const key = JSON.stringify({ ...b0, space: leadingSpace(), model: state.model });
  if (key === pv.key && pv.ans) { renderCell(); return; }
  let b = b0;
  await ask(pv, 'probe', {
    title: 'Probing the words…', failed: 'twd could not probe these words:',
    job: async () => {
      if (b0.words === null) b = await defaultsWithSpace(b0);
      return postCached('/probe', b);
    },
    show: async ans => {
      Object.assign(pv, { ans, sent: { ...b, leading_space: leadingSpace() }, key });
      if (!state.words && ans.default_words !== false && ans.words.length)
        f.words.placeholder = `${ans.words.slice(0, 4).map(w => w.word.trim()).join(', ')}, …`;
      if (!ans.words.length) {
        showMessage($('probe-msg'), { kind: 'error', title: 'None of these words is one token of this model.',
          note: 'Try other words, or the other leading-space choice.' });
        $('probe-plot').classList.add('empty');
        renderSkipped();
        return false;
      }
      return draw();
    },
  });
}
