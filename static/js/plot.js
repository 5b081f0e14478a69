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

export function config(filename) {
  return {
    displaylogo: false, responsive: true,
    // one WebGL pixel per CSS pixel: the 3D scene redraws four times faster than at 2
    plotGlPixelRatio: 1,
    toImageButtonOptions: { filename, format: 'png' },
    modeBarButtonsToRemove: ['sendDataToCloud'],
  };
}

// ---------- timings ----------

// Runs draw() and records how long until the browser has painted the result:
// performance measures named `name` (read by the browser test and the bench).
export async function timed(name, draw) {
  const t0 = performance.now();
  await draw();
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
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

// ---------- downloads ----------

export function downloadFigure(gd, format, filename, size = {}) {
  if (!gd || !gd.data) return Promise.resolve();
  return Plotly.downloadImage(gd, {
    format, filename,
    width: size.width || Math.max(gd.clientWidth, 800),
    height: size.height || Math.max(gd.clientHeight, 500),
  });
}
