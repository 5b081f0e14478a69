// What the figures share: plotly's configuration, the colour scales (viridis
// and cividis: perceptually uniform and readable with colour-blindness),
// timings of draws (performance marks the browser test and the bench read),
// and downloads of the figure as PNG and SVG.

// viridis, sampled at 11 stops (matplotlib's values)
const VIRIDIS = ['#440154', '#482475', '#414487', '#355f8d', '#2a788e', '#21918c', '#22a884', '#44bf70',
  '#7ad151', '#bddf26', '#fde725'];
// the layers' scale: viridis without its last, light stops (labels stay readable on white)
export const LAYER_SCALE = VIRIDIS.slice(0, 10).map((c, i) => [i / 9, c]);
export const VIRIDIS_SCALE = 'Viridis';
export const CIVIDIS_SCALE = 'Cividis';
// light to dark, for shading cells behind dark text: cividis reversed starts pale
export const SHADE_SCALE = [[0, '#fdfdf6'], [0.15, '#f5e9a6'], [0.35, '#d2c36b'], [0.55, '#a59c74'],
  [0.75, '#6b6c71'], [1, '#00204d']];

function hexRgb(h) { return [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)); }

// Colour of value t in 0..1 on a scale given as [[pos, '#rrggbb'], ...].
export function scaleColor(scale, t) {
  const u0 = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0));
  let i = 0;
  while (i < scale.length - 2 && u0 > scale[i + 1][0]) i++;
  const [t0, c0] = scale[i], [t1, c1] = scale[i + 1];
  const u = Math.max(0, Math.min(1, (u0 - t0) / (t1 - t0 || 1)));
  const a = hexRgb(c0), b = hexRgb(c1);
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * u)).join(',')})`;
}

// Colour of state s of n on the layers' scale.
export function layerColor(s, n) { return scaleColor(LAYER_SCALE, n > 1 ? s / (n - 1) : 0); }

// Black or white text, whichever reads on the background rgb(...) or #hex.
export function textOn(color) {
  const m = /rgb\((\d+),(\d+),(\d+)\)/.exec(color);
  const [r, g, b] = m ? m.slice(1).map(Number) : hexRgb(color);
  const lum = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  return lum > 0.55 ? '#1d2330' : '#ffffff';
}

// ---------- loading plotly.js ----------

// built by scripts/deps.sh (scripts/plotly-bundle.js); index.html preloads the same URL
const PLOTLY_SRC = '/vendor/plotly-2.35.3-twd1.min.js';
let plotlyJob = null;

// Runs plotly.js (once; index.html preloads it): resolves true when window.Plotly is there,
// false when it could not be loaded. The page asks twd for its first answers
// before this, so that twd computes while the browser parses the library.
export function loadPlotly() {
  if (!plotlyJob) {
    plotlyJob = new Promise(resolve => {
      if (typeof window.Plotly !== 'undefined') { resolve(true); return; }
      const s = document.createElement('script');
      s.src = PLOTLY_SRC;
      mark('twd:plotly-run');
      s.onload = () => {
        mark('twd:plotly-ready');
        resolve(typeof window.Plotly !== 'undefined');
      };
      s.onerror = () => resolve(false);
      document.head.append(s);
    });
  }
  return plotlyJob;
}

export function config(filename) {
  return {
    displaylogo: false, responsive: true,
    // one WebGL pixel per CSS pixel: the 3D scene redraws four times faster than at 2
    plotGlPixelRatio: 1,
    toImageButtonOptions: { filename, format: 'png' },
    modeBarButtonsToRemove: ['sendDataToCloud'],
  };
}

// Rows and columns of a grid of n small multiples (two columns when narrow).
export function grid(n, narrow) {
  if (narrow) return [Math.ceil(n / 2), Math.min(n, 2)];
  let cols = Math.ceil(Math.sqrt(n));
  while (n % cols !== 0 && cols < n) cols++;
  if (cols > 6) cols = Math.ceil(Math.sqrt(n));
  return [Math.ceil(n / cols), cols];
}

// ---------- timings ----------

// A performance mark (the bench lists them), where the browser has them.
export function mark(name) {
  try { performance.mark(name); } catch (e) { /* old browsers */ }
}

// Resolves when the browser has painted what was drawn before (two frames).
export function painted() {
  return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
}

// Runs draw() and records how long until the browser has painted the result:
// performance measures named `name` (read by the browser test and the bench).
export async function timed(name, draw) {
  const t0 = performance.now();
  await draw();
  await painted();
  const t1 = performance.now();
  try { performance.measure(name, { start: t0, end: t1 }); } catch (e) { /* old browsers */ }
  return t1 - t0;
}

// ---------- keeping a large 3D trace as it is ----------

// plotly's 3D scene rebuilds every trace's buffers on any change (a restyle of
// one small trace included). For a trace that does not change (the vocabulary
// cloud), keep its buffers while its data and the scene's scale stay the same:
// the slider then redraws only what moves.
export function keepTrace(gd, uid) {
  const scene = gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene;
  const obj = scene && scene.traces && scene.traces[uid];
  if (!obj || obj.__twdKept) return false;
  const update = obj.update.bind(obj);
  let last = null;
  obj.update = data => {
    const key = { input: data._input, x: data._input && data._input.x, scale: scene.dataScale.join(','),
      color: data.marker && data.marker.color, opacity: data.marker && data.marker.opacity, visible: data.visible };
    if (last && Object.keys(key).every(k => key[k] === last[k])) {
      obj.data = data;  // the hover reads the current trace
      return;
    }
    last = key;
    update(data);
  };
  obj.__twdKept = true;
  return true;
}

// ---------- moving a few points of a 3D figure ----------

function setPath(obj, key, v) {
  const parts = key.split('.');
  let o = obj;
  for (const k of parts.slice(0, -1)) {
    if (!o[k] || typeof o[k] !== 'object') o[k] = {};
    o = o[k];
  }
  o[parts[parts.length - 1]] = v;
}

// Changes the data of scatter3d traces of gd in place, without plotly's
// whole pipeline (defaults, calc, every trace's buffers, legend, colour bars):
// patches is [{uid, set: {key: value}}] with keys as restyle takes them
// ('x', 'marker.color', ...). Only for changes that keep the scene's scale
// (points that stay inside the data every trace spans) and the legend's
// text. gd.data and plotly's full data are patched alike, so that hover,
// exports and a later Plotly.react see what is drawn. Returns false, having
// changed nothing, when plotly's scene is not as expected (the caller then
// restyles).
export function moveTraces(gd, patches) {
  const scene = gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene;
  if (!scene || !scene.glplot || !Array.isArray(gd._fullData)) return false;
  const jobs = [];
  for (const { uid, set } of patches) {
    const input = gd.data.find(t => t.uid === uid);
    const full = gd._fullData.find(t => t.uid === uid);
    const obj = scene.traces[uid];
    if (!input || !full || !obj || typeof obj.update !== 'function' || full.type !== 'scatter3d') return false;
    jobs.push({ input, full, obj, set });
  }
  for (const { input, full, obj, set } of jobs) {
    for (const [k, v] of Object.entries(set)) { setPath(input, k, v); setPath(full, k, v); }
    obj.update(full);
  }
  scene.glplot.redraw();
  return true;
}

// Sets the figure's title without a relayout (which redraws the whole 2D
// layer): the title is one line of plain text (plotlyText-escaped, no tags).
export function setTitle(gd, text) {
  const node = gd.querySelector('.gtitle');
  if (!node || !gd.layout.title || !gd._fullLayout.title) return Plotly.relayout(gd, { 'title.text': text });
  gd.layout.title.text = text;
  gd._fullLayout.title.text = text;
  node.textContent = text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  return Promise.resolve();
}

// ---------- downloads ----------

export function downloadFigure(gd, format, filename, size = {}) {
  if (!gd || !gd.data) return Promise.resolve();
  return Plotly.downloadImage(gd, {
    format, filename,
    width: size.width || Math.max(gd.clientWidth, 800),
    height: size.height || Math.max(gd.clientHeight, 500),
  });
}
