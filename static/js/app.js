// Start-up: asks /model (waiting while the model loads), shows the model
// banner, wires the two views and their tabs.
import { apiGet, ApiError } from './api.js';
import { initTrajectory } from './trajectory.js';
import { initSpectra, showSpectra } from './spectra.js';
import { fmt } from './text.js';

const $ = id => document.getElementById(id);

function fatal(text) {
  const b = $('fatal');
  b.textContent = text;
  b.hidden = false;
}

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

// /model, retrying while twd answers 503 (model still loading).
async function loadModel() {
  for (;;) {
    try {
      return await apiGet('/model');
    } catch (e) {
      if (e instanceof ApiError && e.status === 503) {
        $('model-info').textContent = `Waiting for twd: ${e.message}`;
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

function showModel(m) {
  $('model-info').textContent =
    `${m.name}: ${m.n_layer} layers × ${m.n_head} heads, width ${m.n_embd}, vocabulary ${m.vocab_size}, ` +
    `${params(m.n_params)} parameters (${m.origin || 'loaded'} from ${m.source}, ${fmt(m.load_seconds, 2)} s)`;
  if (m.synthetic) {
    const b = $('synthetic-banner');
    let note = m.note || 'this model was generated from a seed, not trained.';
    if (!/synthetic/i.test(note)) note = `SYNTHETIC WEIGHTS: ${note}`;
    b.textContent = `⚠ ${note} The pictures on this page show the geometry of random weights, not of a trained GPT-2.`;
    b.hidden = false;
  }
  if (m.umap) showUmap(m.umap);
}

let umapTimer = 0;

// The banner's line on the UMAP layout; keeps polling /umap while it is fitted.
function showUmap(u) {
  const line = $('umap-info');
  if (u.state === 'ready') {
    line.textContent = `UMAP layout ready: ${u.rows} rows` +
      (u.from_cache ? ', from the disk cache' : u.fit_seconds ? `, fitted in ${fmt(u.fit_seconds, 1)} s` : '');
  } else if (u.state === 'fitting') {
    line.textContent = `UMAP layout of ${u.rows} rows being fitted: ${Math.round((u.progress || 0) * 100)} % ` +
      `(${u.stage || '?'}); PCA is available now.`;
    clearTimeout(umapTimer);
    umapTimer = setTimeout(async () => {
      try { showUmap(await apiGet('/umap')); } catch (e) { /* the views report errors */ }
    }, 1500);
  } else if (u.state === 'disabled') {
    line.textContent = 'UMAP is off on this daemon (umap = false): the page uses PCA.';
  } else {
    line.textContent = `UMAP layout failed: ${u.error || 'unknown error'}; the page uses PCA.`;
  }
}

// Tabs: click, or arrow keys / Home / End on the tab list.
function initTabs() {
  const tabs = [$('tab-traj'), $('tab-svd')];
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', on ? 'true' : 'false');
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    if (tab.id === 'tab-svd') showSpectra();
    else window.dispatchEvent(new Event('resize'));  // the figure may need the new size
  };
  tabs.forEach((t, i) => {
    t.addEventListener('click', () => select(t, false));
    t.addEventListener('keydown', ev => {
      let j = null;
      if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
      else if (ev.key === 'ArrowLeft') j = (i + tabs.length - 1) % tabs.length;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = tabs.length - 1;
      if (j === null) return;
      ev.preventDefault();
      select(tabs[j], true);
    });
  });
}

async function main() {
  if (typeof window.Plotly === 'undefined') {
    fatal('The plotting library (plotly.js) is missing from static/vendor: run scripts/deps.sh, then reload this page.');
    return;
  }
  let m;
  try {
    m = await loadModel();
  } catch (e) {
    $('model-info').textContent = '';
    fatal(`twd did not describe its model: ${e.message}`);
    return;
  }
  showModel(m);
  initTabs();
  initSpectra(m);
  initTrajectory(m, showUmap);
  document.body.dataset.ready = 'true';
}

// Plotly is loaded with "defer", which runs before module scripts; wait for the
// document in any case.
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
