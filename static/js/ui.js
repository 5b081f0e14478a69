// Messages in place of (or above) a figure: errors from the daemon, waiting
// for the UMAP fit, work in progress. Built with textContent only.
import { el, downloadBlob, csvText } from './text.js';
import { downloadFigure } from './plot.js';

// Shows a message in box `box` (an element with class "message").
//   kind: 'error' | 'wait' | 'info'; title: bold first line; text: the daemon's
//   own message (shown verbatim, monospace); note: a plain explanation;
//   progress: 0..1 or undefined (progressLabel: what it measures); actions: [{label, onClick, id}].
export function showMessage(box, { kind = 'info', title = '', text = '', note = '', progress, progressLabel = 'UMAP fit progress',
  actions = [] }) {
  box.replaceChildren();
  box.className = `message ${kind}`;
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  box.dataset.kind = kind;
  if (title) box.append(el('p', { class: 'title' }, title));
  if (text) box.append(el('p', { class: 'server-text' }, text));
  if (note) box.append(el('p', {}, note));
  if (typeof progress === 'number' && Number.isFinite(progress)) {
    const pct = Math.round(Math.max(0, Math.min(1, progress)) * 100);
    box.append(el('p', {},
      el('progress', { max: 100, value: pct, 'aria-label': progressLabel }), ` ${pct} %`));
  }
  if (actions.length) {
    const row = el('div', { class: 'buttons' });
    for (const a of actions) row.append(el('button', { type: 'button', id: a.id, onclick: a.onClick }, a.label));
    box.append(row);
  }
  box.hidden = false;
}

export function hideMessage(box) {
  box.hidden = true;
  box.replaceChildren();
  box.dataset.kind = '';
}

// The text of an error for the user: the daemon's message, or what went wrong.
export function errorText(e) {
  if (e && typeof e.message === 'string' && e.message) return e.message;
  return String(e);
}

// The download buttons of a view: PNG and SVG of its figure, JSON and CSV of
// its data. opts: {prefix (ids: PREFIX-png, -svg, -json, -csv), figure: () =>
// the plotly div, image (optional): format => picture, stem: () => file name without extension, json: () => object,
// csv: () => [header, ...rows]}. Returns {enable(on)}.
export function downloadTools(box, opts) {
  const buttons = [];
  // a view with its own picture (several layers) gives opts.image(format):
  // a PNG data URL, or SVG text
  const picture = async format => {
    if (!opts.image) return downloadFigure(opts.figure(), format, opts.stem());
    const out = await opts.image(format);
    if (format === 'svg') downloadBlob(new Blob([out], { type: 'image/svg+xml' }), `${opts.stem()}.svg`);
    else downloadBlob(await (await fetch(out)).blob(), `${opts.stem()}.png`);
  };
  const add = (what, label, run) => {
    const b = el('button', { type: 'button', id: `${opts.prefix}-${what}`, disabled: true,
      'aria-label': `${label} (${opts.name || 'this view'})`, onclick: run }, label);
    buttons.push(b);
    return b;
  };
  box.replaceChildren(
    add('png', 'PNG', () => picture('png')),
    add('svg', 'SVG', () => picture('svg')),
    add('json', 'Data (JSON)', () => downloadBlob(
      new Blob([JSON.stringify(opts.json(), null, 1)], { type: 'application/json' }), `${opts.stem()}.json`)),
    add('csv', 'Data (CSV)', () => downloadBlob(
      new Blob([csvText(opts.csv())], { type: 'text/csv' }), `${opts.stem()}.csv`)),
  );
  return { enable(on) { for (const b of buttons) b.disabled = !on; } };
}

// Shows "working" in a message box only when the work takes longer than
// 250 ms (no flash for cached answers); returns a function that cancels it.
export function busy(box, title, note = '') {
  const t = setTimeout(() => showMessage(box, { kind: 'info', title, note }), 250);
  return () => clearTimeout(t);
}
