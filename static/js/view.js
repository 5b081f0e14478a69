// What the analysis views do alike (a view P has the elements P-tools,
// P-plot, P-msg inside view-P): the download buttons, the figure's empty
// and stale states, a redraw when the window is resized, asking twd with the
// loading and error states, and numbered pickers.
import { showMessage, hideMessage, errorText, downloadTools, busy } from './ui.js';
import { el } from './text.js';
import { config, timed } from './plot.js';

const $ = id => document.getElementById(id);

// Sets up view p: its downloads (files: stem, json, csv and optionally image,
// as ui.js downloadTools takes them; name: what the buttons' labels say) and,
// while the view is shown with a figure (drawn() true), draw() again after a
// resize. Returns the download tools.
export function viewFrame(p, { name, drawn, draw, ...files }) {
  const tools = downloadTools($(`${p}-tools`), { prefix: p, name, figure: () => $(`${p}-plot`), ...files });
  $(`${p}-plot`).classList.add('empty');
  let t = 0;
  window.addEventListener('resize', () => {
    clearTimeout(t);
    t = setTimeout(() => { if (drawn() && !$(`view-${p}`).hidden) draw(); }, 200);
  });
  return tools;
}

// Asks twd for view p's answer: job() the request, show(answer) draws it
// (returning false when there is nothing to download). v is the view's state:
// v.seq (a newer ask drops this one's answer), v.tools, and v[key] cleared on
// failure so that the next sync asks again. Says "title" when the answer takes
// more than 250 ms; on failure shows twd's message, and when the view has an
// earlier answer (has()) greys its figure, which then shows the previous `what`.
export async function ask(v, p, { title, failed, job, show, what = 'answer', has = () => !!v.ans, key = 'key' }) {
  const seq = ++v.seq;
  const box = $(`${p}-msg`);
  // a superseded request's pending message must never show later: the newer
  // ask cancels the older one's timer, which may otherwise fire after the
  // newer answer has hidden the box
  if (v.stopBusy) v.stopBusy();
  const stop = v.stopBusy = busy(box, title);
  try {
    const ans = await job();
    stop();
    if (seq !== v.seq) return;
    hideMessage(box);
    if ((await show(ans)) !== false) v.tools.enable(true);
  } catch (e) {
    stop();
    if (seq !== v.seq) return;
    v[key] = '';
    showMessage(box, { kind: 'error', title: failed, text: errorText(e), note: has() ? `The figure still shows the previous ${what}.` : '' });
    $(`${p}-plot`).classList.toggle('stale', has());
  }
}

// Draws figure {data, layout} in view p's plot (timed as twd:P-draw), with
// plotly's image downloads named `filename`. Returns the plot's element.
export async function drawFigure(p, { data, layout }, filename) {
  const gd = $(`${p}-plot`);
  gd.classList.remove('empty', 'stale');
  await timed(`twd:${p}-draw`, () => Plotly.react(gd, data, layout, config(filename)));
  return gd;
}

// Calls fn(the form's elements) when view p's form is sent (not reloading the page).
export function onSubmit(p, fn) {
  $(`${p}-form`).addEventListener('submit', ev => {
    ev.preventDefault();
    fn(ev.target.elements);
  });
}

// n options "word 0" ... "word n-1" with values 0 ... n-1.
export function numbered(n, word) {
  return Array.from({ length: n }, (_, i) => el('option', { value: i }, `${word} ${i}`));
}

// A whole number from a form field when it lies in lo..hi, else undefined.
export function whole(value, lo, hi = Infinity) {
  const v = Number(value);
  return Number.isInteger(v) && v >= lo && v <= hi ? v : undefined;
}
