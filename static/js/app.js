// Start-up: asks twd which models it serves (a picker when there are
// several) and describes the chosen one (waiting while it loads), restores the
// state from the URL, and shows the view it names. Each view draws lazily,
// when shown, from the shared state (state.js).
import { apiGet, ApiError, setKeyPrompt, setModel, loadSpec } from './api.js';
import { state, setState, subscribe, initHistory, VIEWS } from './state.js';
import { fmt, el } from './text.js';
import { loadPlotly } from './plot.js';
import { buildForms } from './forms.js';
import * as trajectory from './trajectory.js';

const $ = id => document.getElementById(id);
// The other views' modules, loaded when first shown (off the first draw's
// path: the page starts on the trajectories), by view.
const LAZY = {
  lens: './lens.js', attn: './attention.js', probe: './probes.js', svd: './spectra.js', norms: './norms.js',
  ln: './lnorm.js', mlp: './mlp.js', sweep: './sweep.js',
};
const MODULES = { traj: trajectory };  // the loaded views' modules, each init'ed once
const loading = {};
const FALLBACK_PHRASE = 'To kill two birds with one stone';

const ctx = {
  models: [],         // /models list
  info: new Map(),    // model name -> /model answer
  current: null,      // /model answer of the chosen model
  // the /model answer of the model shown beside (state.vs), or null
  vsInfo: () => (state.vs && ctx.info.get(state.vs)) || null,
  defaultPhrase: () => (ctx.current && ctx.current.default_phrase) || FALLBACK_PHRASE,
  phrase: () => state.text || ctx.defaultPhrase(),
  onUmap: s => showUmap(s),
  open: patch => setState(patch),
};

function fatal(text) {
  const b = $('fatal');
  b.textContent = text;
  b.hidden = false;
}

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

// /model of one model, retrying while twd answers 503 (model still loading).
async function loadModel(name) {
  for (;;) {
    try {
      return await apiGet('/model', name ? { model: name } : { model: null });
    } catch (e) {
      if (e instanceof ApiError && e.status === 503) {
        $('model-info').textContent = `Waiting for twd to load the model: ${e.message}`;
        await sleep(Math.max(1, Math.min(e.retryAfter || 1, 5)) * 1000);
        continue;
      }
      throw e;
    }
  }
}

function params(n) {
  if (n >= 1e9) return `${fmt(n / 1e9, 2)} B`;
  if (n >= 1e6) return `${fmt(n / 1e6, 1)} M`;
  if (n >= 1e3) return `${fmt(n / 1e3, 1)} k`;
  return String(n);
}

function describe(m) {
  const what = m.synthetic ? 'generated weights' : m.origin === 'demo' || m.corpus ? 'twd\'s demo model' : m.format || 'checkpoint';
  return `${m.name}: ${m.n_layer} layers × ${m.n_head} heads, width ${m.n_embd}, vocabulary ${m.vocab_size}` +
    `${m.tokenizer === 'characters' ? ' characters' : ''}, ${params(m.n_params)} parameters (${what}` +
    `${m.corpus ? `, trained on ${m.corpus}` : ''})`;
}

function showModel(m) {
  $('model-info').textContent = describe(m);
  $('model-info').title = `${m.source || ''}${m.load_seconds ? ` — loaded in ${fmt(m.load_seconds, 2)} s` : ''}`;
  const b = $('synthetic-banner');
  if (m.synthetic) {
    let note = m.note || 'this model was generated from a seed, not trained.';
    if (!/synthetic/i.test(note)) note = `SYNTHETIC WEIGHTS: ${note}`;
    b.textContent = `⚠ ${note} The pictures on this page show the geometry of random weights, not of a trained GPT-2.`;
    b.hidden = false;
  } else if (m.origin === 'demo' || m.corpus) {
    b.textContent = `This is twd's small demo model${m.corpus ? `, trained on ${m.corpus}` : ''}, not GPT-2: ` +
      'start twd with --model to look at your own checkpoint.';
    b.hidden = false;
  } else {
    b.hidden = true;
  }
  if (m.umap) showUmap(m.umap);
}

let umapTimer = 0;

// The header's line on the UMAP layout; keeps polling /umap while it is fitted.
function showUmap(u) {
  const line = $('umap-info');
  clearTimeout(umapTimer);
  if (u.state === 'ready') {
    line.textContent = `3D layout of the vocabulary (UMAP) ready: ${u.rows} rows` +
      (u.from_cache ? ', from the disk cache' : u.fit_seconds ? `, fitted in ${fmt(u.fit_seconds, 1)} s` : '');
  } else if (u.state === 'fitting') {
    line.textContent = `The UMAP layout of ${u.rows} vocabulary rows is being fitted: ` +
      `${Math.round((u.progress || 0) * 100)} %. PCA works now.`;
    umapTimer = setTimeout(async () => {
      try { showUmap(await apiGet('/umap')); } catch (e) { /* the views report errors */ }
    }, 1500);
  } else if (u.state === 'disabled') {
    line.textContent = 'UMAP is switched off on this daemon: the trajectories use PCA.';
  } else {
    line.textContent = `The UMAP layout could not be fitted (${u.error || 'unknown error'}); the trajectories use PCA.`;
  }
}

// ---------- the API key ----------

function initKeyPrompt() {
  const dlg = $('key-dialog');
  setKeyPrompt((why, serverText) => new Promise(resolve => {
    $('key-why').textContent = [why, serverText ? `twd says: ${serverText}` : ''].filter(Boolean).join(' ');
    $('key-input').value = '';
    const done = () => {
      dlg.removeEventListener('close', done);
      resolve(dlg.returnValue === 'ok' ? $('key-input').value.trim() : '');
    };
    dlg.addEventListener('close', done);
    dlg.returnValue = '';
    if (typeof dlg.showModal === 'function') dlg.showModal();
    else { resolve(window.prompt('API key of this twd') || ''); return; }
    $('key-input').focus();
  }));
}

// ---------- views and tabs ----------

// The module of a view, loaded and init'ed on first use.
function viewModule(view) {
  if (MODULES[view]) return Promise.resolve(MODULES[view]);
  if (!loading[view]) {
    loading[view] = import(LAZY[view]).then(m => {
      m.init(ctx);
      MODULES[view] = m;
      return m;
    }, e => {
      delete loading[view];  // a later visit tries again
      throw e;
    });
  }
  return loading[view];
}

let shown = null;

function showView(view, focusTab) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const t of tabs) {
    const on = t.dataset.view === view;
    t.setAttribute('aria-selected', on ? 'true' : 'false');
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !on;
    if (on && focusTab) t.focus();
  }
  document.body.dataset.view = view;
  if (shown !== view && shown && MODULES[shown] && MODULES[shown].hide) MODULES[shown].hide();
  shown = view;
  syncView(view, null);
}

// The trajectory view asks for its answers at once (and waits for plotly.js
// only to draw them); the others need the daemon's route table and plotly.js first.
let specJob = null;
function syncView(view, changed) {
  if (view === 'traj') return MODULES.traj.sync(changed);
  return Promise.all([viewModule(view), specJob, loadPlotly()]).then(([m]) => { if (shown === view) m.sync(changed); },
    e => fatal(`The page's ${view} view could not be loaded: ${e.message}`));
}

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((t, i) => {
    t.addEventListener('click', () => setState({ view: t.dataset.view }));
    t.addEventListener('keydown', ev => {
      let j = null;
      if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
      else if (ev.key === 'ArrowLeft') j = (i + tabs.length - 1) % tabs.length;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = tabs.length - 1;
      if (j === null) return;
      ev.preventDefault();
      setState({ view: tabs[j].dataset.view });
      tabs[j].focus();
    });
  });
}

// ---------- models ----------

function fillPickers() {
  const ready = ctx.models.filter(m => m.state !== 'failed');
  if (ready.length < 2) return;
  $('model-pickers').hidden = false;
  $('model-pick').replaceChildren(...ready.map(m => el('option', { value: m.name }, m.name)));
  $('model-vs').replaceChildren(el('option', { value: '' }, 'none'),
    ...ready.map(m => el('option', { value: m.name }, m.name)));
  $('model-pick').addEventListener('change', ev => setState({ model: ev.target.value === ctx.models[0].name ? '' : ev.target.value }));
  $('model-vs').addEventListener('change', ev => setState({ vs: ev.target.value }));
}

function syncPickers() {
  if ($('model-pickers').hidden) return;
  $('model-pick').value = state.model || ctx.models[0].name;
  $('model-vs').value = state.vs || '';
}

// /model of the default model, asked with /models when the URL names none
let defaultModel = null;

async function chooseModel() {
  const names = ctx.models.map(m => m.name);
  const name = state.model && names.includes(state.model) ? state.model : '';
  if (state.model && !name) setState({ model: '' }, { push: false, silent: true });
  // with several models every request names its model
  setModel(ctx.models.length > 1 ? (name || names[0]) : '');
  const key = name || names[0] || '';
  if (!ctx.info.has(key) && !name && defaultModel) {
    const m = await defaultModel;
    if (m && (m.name === key || !names.length)) ctx.info.set(key, m);
  }
  if (!ctx.info.has(key)) ctx.info.set(key, await loadModel(name || (ctx.models.length > 1 ? key : '')));
  ctx.current = ctx.info.get(key);
  if (state.vs && names.includes(state.vs) && !ctx.info.has(state.vs)) ctx.info.set(state.vs, await loadModel(state.vs));
  showModel(ctx.current);
  syncPickers();
}

async function main() {
  buildForms();
  initHistory();
  initKeyPrompt();
  initTabs();
  // every first request at once: the models, the default model, the route table
  specJob = loadSpec();
  if (!state.model) defaultModel = loadModel('').catch(() => null);
  try {
    const list = await apiGet('/models', { model: null }).catch(e => {
      if (e instanceof ApiError && e.status === 404) return { models: [] };  // an older twd
      throw e;
    });
    ctx.models = list.models || [];
    fillPickers();
    await chooseModel();
  } catch (e) {
    $('model-info').textContent = '';
    fatal(`twd did not describe its model: ${e.message}`);
    return;
  }
  trajectory.init(ctx);
  subscribe(async changed => {
    if (changed.has('model') || changed.has('vs')) {
      try { await chooseModel(); } catch (e) { fatal(`twd did not describe the model: ${e.message}`); return; }
      for (const m of Object.values(MODULES)) if (m.modelChanged) m.modelChanged();
    }
    if (changed.has('view') || shown !== state.view) showView(state.view, false);
    else syncView(shown, changed);
  });
  showView(VIEWS.includes(state.view) ? state.view : 'traj', false);
  // the trajectory view's requests are out: now the browser may parse plotly.js
  if (!(await loadPlotly())) {
    fatal('The plotting library (plotly.js) is missing from static/vendor: run scripts/deps.sh, then reload this page.');
    return;
  }
  document.body.dataset.ready = 'true';
}

// Wait for the document in any case.
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
