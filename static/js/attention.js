// The attention view: for a phrase and a block, the softmax attention
// pattern of every head as small multiples (or one head large): row a query
// position, column a key position, shaded by the weight (viridis); hovering a
// cell names the query and key tokens and the weight. Data: /attention for
// the block (all its heads, asked once per phrase and block).
import { postCached } from './api.js';
import { state, setState } from './state.js';
import { visibleToken, plotlyText, el, slug, fmt } from './text.js';
import { grid } from './plot.js';
import { viewFrame, ask, numbered, drawFigure, onSubmit } from './view.js';

const $ = id => document.getElementById(id);

const av = { ctx: null, key: '', ans: null, seq: 0, bound: false, tools: null, head: null, block: 0 };

// The pattern as a full T x T matrix: the daemon's rows hold keys 0..t (or
// the full row, zeros above the diagonal); keys after the query are null
// (drawn blank).
export function fullMatrix(pattern, n) {
  return pattern.map((row, t) => Array.from({ length: n }, (_, u) => (u <= t && u < row.length ? row[u] : null)));
}

function figure() {
  const a = av.ans;
  const gd = $('attn-plot');
  const width = gd.clientWidth || 800;
  const narrow = width < 560;
  const blk = a.blocks.find(b => b.block === av.block) || a.blocks[0];
  const heads = av.head === null ? blk.heads : blk.heads.filter(h => h.head === av.head);
  const n = heads.length, N = a.n_tokens;
  const [rows, cols] = n === 1 ? [1, 1] : grid(n, narrow);
  const labels = a.tokens.map(t => plotlyText(visibleToken(t.text)));
  const showTicks = n === 1 || N <= 12;
  const data = [];
  const layout = {
    grid: { rows, columns: cols, pattern: 'independent', xgap: 0.08, ygap: 0.14 },
    margin: { l: showTicks ? 80 : 30, r: 20, t: 50, b: showTicks ? 70 : 20 },
    paper_bgcolor: '#ffffff', plot_bgcolor: '#ffffff',
    coloraxis: { colorscale: 'Viridis', cmin: 0, cmax: 1, colorbar: { title: { text: 'weight' }, thickness: 12, len: 0.8 } },
    title: { text: `${plotlyText(av.ctx.current.name)} · block ${blk.block}${av.head !== null ? `, head ${av.head}` : ': every head'}`,
      x: 0.01, xanchor: 'left', font: { size: 13 } },
    annotations: [],
    hovermode: 'closest',
  };
  const side = n === 1 ? Math.min(width - 140, 640) : Math.max(140, Math.min(300, (width - 80) / cols - 20));
  layout.height = Math.max(320, rows * (side + 40) + 110);
  heads.forEach((hd, i) => {
    const ax = i === 0 ? '' : String(i + 1);
    const z = fullMatrix(hd.pattern, N);
    const hover = z.map((row, t) => row.map((w, u) => (w === null ? '' :
      `head ${hd.head} · query ${t + 1} ${labels[t]} → key ${u + 1} ${labels[u]}<br>weight ${fmt(w, 4)}`)));
    data.push({
      type: 'heatmap', uid: `h${hd.head}`, z, coloraxis: 'coloraxis', xaxis: `x${ax}`, yaxis: `y${ax}`,
      hovertext: hover, hovertemplate: '%{hovertext}<extra></extra>', hoverongaps: false, xgap: N <= 24 ? 1 : 0, ygap: N <= 24 ? 1 : 0,
      meta: { role: 'attention', block: blk.block, head: hd.head, tokens: N },
    });
    const tick = { tickvals: [...Array(N).keys()], ticktext: labels, tickfont: { size: n === 1 ? 11 : 9 } };
    layout[`xaxis${ax}`] = { ...(showTicks ? tick : { showticklabels: false }), tickangle: -45, showgrid: false, zeroline: false,
      range: [-0.5, N - 0.5], constrain: 'domain', title: n === 1 ? { text: 'key', font: { size: 11 } } : undefined };
    layout[`yaxis${ax}`] = { ...(showTicks ? tick : { showticklabels: false }), showgrid: false, zeroline: false,
      range: [N - 0.5, -0.5], scaleanchor: `x${ax}`, constrain: 'domain',
      title: n === 1 ? { text: 'query', font: { size: 11 } } : undefined };
    if (n > 1) {
      layout.annotations.push({ xref: `x${ax} domain`, yref: `y${ax} domain`, x: 0, y: 1.01, xanchor: 'left', yanchor: 'bottom',
        showarrow: false, text: `<b>head ${hd.head}</b>`, font: { size: 11 } });
    }
  });
  return { data, layout };
}

async function draw() {
  const gd = await drawFigure('attn', figure(), stem());
  gd.dataset.block = String(av.block);
  gd.dataset.head = av.head === null ? 'all' : String(av.head);
  if (!av.bound) {
    av.bound = true;
    gd.on('plotly_click', ev => {
      const pt = ev.points && ev.points[0];
      const meta = pt && pt.data && pt.data.meta;
      if (meta && typeof meta.head === 'number' && av.head === null) setState({ head: meta.head });
    });
  }
}

function stem() { return av.ans ? `twd-attention-${slug(av.ans.text)}-block${av.block}${av.head !== null ? `-head${av.head}` : ''}` : 'twd-attention'; }

function dataDoc() {
  const blk = av.ans.blocks.find(b => b.block === av.block);
  return { generated_by: 'twd web page', url: location.href, model: av.ctx.current, text: av.ans.text, gelu: av.ans.gelu,
    tokens: av.ans.tokens, block: av.block, head: av.head,
    heads: blk.heads.filter(h => av.head === null || h.head === av.head)
      .map(h => ({ head: h.head, pattern: fullMatrix(h.pattern, av.ans.n_tokens).map(r => r.map(v => (v === null ? 0 : v))) })) };
}

function dataCsv() {
  const rows = [['block', 'head', 'query_pos', 'key_pos', 'query_id', 'query_text', 'key_id', 'key_text', 'weight']];
  const a = av.ans, blk = a.blocks.find(b => b.block === av.block);
  for (const h of blk.heads) {
    if (av.head !== null && h.head !== av.head) continue;
    h.pattern.forEach((row, t) => row.forEach((w, u) => {
      if (u > t) return;
      rows.push([blk.block, h.head, t, u, a.tokens[t].id, a.tokens[t].text, a.tokens[u].id, a.tokens[u].text, w]);
    }));
  }
  return rows;
}

function fillPickers() {
  const m = av.ctx.current;
  $('attn-block').replaceChildren(...numbered(m.n_layer, 'block'));
  $('attn-head').replaceChildren(el('option', { value: 'all' }, 'every head (small multiples)'), ...numbered(m.n_head, 'head'));
}

export function init(ctx) {
  av.ctx = ctx;
  fillPickers();
  onSubmit('attn', f => {
    const text = f.text.value;
    const patch = { text: text === ctx.defaultPhrase() ? '' : text };
    if (patch.text !== state.text) patch.token = null;
    if (state.text === patch.text) { av.key = ''; sync(); return; }
    setState(patch);
  });
  $('attn-block').addEventListener('change', ev => setState({ block: Number(ev.target.value) }));
  $('attn-head').addEventListener('change', ev => setState({ head: ev.target.value === 'all' ? null : Number(ev.target.value) }));
  av.tools = viewFrame('attn', { name: 'attention', drawn: () => !!av.ans, draw, stem, json: dataDoc, csv: dataCsv });
}

export function modelChanged() { fillPickers(); av.key = ''; }

export async function sync() {
  const m = av.ctx.current;
  const f = $('attn-form');
  if (document.activeElement !== f.elements.text) f.elements.text.value = av.ctx.phrase();
  const block = Math.min(state.block, m.n_layer - 1);
  const head = state.head === null ? null : Math.min(state.head, m.n_head - 1);
  $('attn-block').value = String(block);
  $('attn-head').value = head === null ? 'all' : String(head);
  const body = { text: av.ctx.phrase(), block, gelu: state.gelu };
  const key = JSON.stringify({ ...body, model: state.model });
  if (key === av.key && av.ans) {
    if (head !== av.head) { av.head = head; await draw(); }
    return;
  }
  await ask(av, 'attn', {
    title: 'Computing the attention patterns…', failed: 'twd could not compute the attention patterns:',
    job: () => postCached('/attention', body),
    show: ans => {
      Object.assign(av, { ans, key, block, head });
      return draw();
    },
  });
}
