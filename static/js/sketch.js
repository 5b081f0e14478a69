// The trajectory figure's first frame on a 2D canvas: the phrases' points,
// paths and labels projected with the camera, axis ranges, proportions and
// scene box that plotly's 3D scene is given for the same figure, drawn while
// that scene (a WebGL context, its shaders, its first frame: over half a
// second with software WebGL) is set up behind it, and taken away in the
// frame the 3D scene shows the same points (docs/ARCHITECTURE.md, The page's
// first draw; the projection: docs/MATH.md §17).
//
// Needs no plotly.js: the page draws the sketch as soon as twd's answer is
// in, while the library may still be parsed.

// plotly's 3D scene (gl-plot3d): a perspective camera of vertical field of
// view pi/4 looking from `eye` at `center`, and the scene's box (each axis's
// range scaled to its aspect ratio) centred at the origin.
const FOVY = Math.PI / 4;

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
function unit(a) {
  const n = Math.hypot(a[0], a[1], a[2]) || 1;
  return [a[0] / n, a[1] / n, a[2] / n];
}
const vec = (o, d) => (o ? [o.x, o.y, o.z] : d);

// Widths and diameters in CSS pixels, as plotly's scene draws the traces of
// trajectory.js (its markers' sizes scale with their depth; these are
// typical): the other tokens' paths and their dots, the followed path and its
// dots, the input tokens, the tokens at the shown state (the followed one).
const SIZE = { paths: 1.4, pathDot: 4, path: 5, followedDot: 12, input: 10, now: 9, nowFollowed: 15 };

// The projection of a scene: figure size (CSS pixels), plotly's layout of
// it (margin, scene.domain, scene.camera, the scene's axis ranges and
// aspectratio). project([x, y, z]) gives [px, py] in CSS pixels from the
// figure's top left corner, or null behind the camera.
export function sceneProjection(width, height, layout) {
  const m = layout.margin, sc = layout.scene;
  // plotly's plot area (the figure's size rounded, less the margins), its
  // scene's box in it, and the WebGL canvas over that box, as large as the
  // box's edges snapped to whole pixels
  const w = Math.round(width) - m.l - m.r, h = Math.round(height) - m.t - m.b;
  const dx = sc.domain.x, dy = sc.domain.y;
  const left = m.l + dx[0] * w, top = m.t + (1 - dy[1]) * h;
  const cw = Math.round(left + w * (dx[1] - dx[0])) - Math.round(left);
  const ch = Math.round(top + h * (dy[1] - dy[0])) - Math.round(top);
  const axes = [sc.xaxis, sc.yaxis, sc.zaxis];
  const ratio = [sc.aspectratio.x, sc.aspectratio.y, sc.aspectratio.z];
  const mid = axes.map(a => (a.range[0] + a.range[1]) / 2);
  const len = axes.map(a => a.range[1] - a.range[0]);
  const cam = sc.camera || {};
  const eye = vec(cam.eye, [1.25, 1.25, 1.25]), center = vec(cam.center, [0, 0, 0]), up = vec(cam.up, [0, 0, 1]);
  // the camera's frame: back (from the centre to the eye), right, up
  const back = unit(sub(eye, center));
  const right = unit(cross(up, back));
  const upv = cross(back, right);
  const f = 1 / Math.tan(FOVY / 2), aspect = cw / ch;
  return {
    box: { left, top, width: cw, height: ch },
    project(q) {
      const n = [0, 1, 2].map(a => ratio[a] * (q[a] - mid[a]) / len[a]);
      const v = sub(n, eye);
      const depth = -dot(v, back);
      if (!(depth > 0)) return null;
      const x = (f / aspect) * dot(v, right) / depth, y = f * dot(v, upv) / depth;
      return [left + (x + 1) / 2 * cw, top + (1 - y) / 2 * ch];
    },
  };
}

// A marker of diameter d at p: a circle, or a diamond for `diamond`.
function marker(g, p, d, symbol) {
  const r = d / 2;
  g.beginPath();
  if (symbol === 'diamond') {
    g.moveTo(p[0], p[1] - r); g.lineTo(p[0] + r, p[1]); g.lineTo(p[0], p[1] + r); g.lineTo(p[0] - r, p[1]); g.closePath();
  } else {
    g.arc(p[0], p[1], r, 0, 2 * Math.PI);
  }
}

// A path through projected points, each segment shaded from its start's
// colour to its end's (colors[i] of points[i]); points may be null (a gap).
function path(g, points, colors, width, dash) {
  g.lineWidth = width;
  g.lineCap = 'round';
  g.setLineDash(dash);
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i], b = points[i + 1];
    if (!a || !b) continue;
    const grad = g.createLinearGradient(a[0], a[1], b[0], b[1]);
    grad.addColorStop(0, colors[i]);
    grad.addColorStop(1, colors[i + 1]);
    g.strokeStyle = grad;
    g.beginPath();
    g.moveTo(a[0], a[1]);
    g.lineTo(b[0], b[1]);
    g.stroke();
  }
  g.setLineDash([]);
}

// Draws the sketch on `canvas` (sized here to width x height CSS pixels):
// `phrases` is one entry per phrase, in the figure's order:
//   { xyz: per state [xs, ys, zs], colors: per state, shown: state index,
//     followed: token index, symbol, dash: [] or a dash pattern,
//     labels: per token, shownColor }
// `font` is the labels' CSS font. Returns what was drawn where, for tests:
// { box, ranges (the axes' ranges it was drawn with), points: [{ p, t, s, x, y }] }
// (every point of every path, in CSS pixels from the figure's top left corner).
export function drawSketch(canvas, width, height, layout, phrases, font) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, width, height);
  const proj = sceneProjection(width, height, layout);
  g.save();
  g.beginPath();
  g.rect(proj.box.left, proj.box.top, proj.box.width, proj.box.height);
  g.clip();
  const drawn = [];
  phrases.forEach((ph, p) => {
    const S = ph.xyz.length, N = ph.xyz[0][0].length;
    const at = (t, s) => proj.project([ph.xyz[s][0][t], ph.xyz[s][1][t], ph.xyz[s][2][t]]);
    const pts = [];
    for (let t = 0; t < N; t++) {
      pts.push([]);
      for (let s = 0; s < S; s++) {
        const q = at(t, s);
        pts[t].push(q);
        if (q) drawn.push({ p, t, s, x: q[0], y: q[1] });
      }
    }
    // the other tokens' paths (faint), then the followed one
    g.globalAlpha = 0.5;
    for (let t = 0; t < N; t++) {
      if (t === ph.followed) continue;
      path(g, pts[t], ph.colors, SIZE.paths, ph.dash);
      for (let s = 0; s < S; s++) if (pts[t][s]) { g.fillStyle = ph.colors[s]; marker(g, pts[t][s], SIZE.pathDot, ph.symbol); g.fill(); }
    }
    g.globalAlpha = 1;
    const hp = pts[ph.followed];
    path(g, hp, ph.colors, SIZE.path, ph.dash.map(x => x * 2));
    for (let s = 0; s < S; s++) if (hp[s]) { g.fillStyle = ph.colors[s]; marker(g, hp[s], SIZE.followedDot, ph.symbol); g.fill(); }
    // the input tokens, then the tokens at the shown state with their labels
    g.fillStyle = ph.colors[0];
    for (let t = 0; t < N; t++) if (pts[t][0]) { marker(g, pts[t][0], SIZE.input, ph.symbol); g.fill(); }
    g.lineWidth = 1;
    g.strokeStyle = '#1d2330';
    g.fillStyle = ph.colors[ph.shown];
    for (let t = 0; t < N; t++) {
      const q = pts[t][ph.shown];
      if (!q) continue;
      marker(g, q, t === ph.followed ? SIZE.nowFollowed : SIZE.now, ph.symbol);
      g.fill();
      g.stroke();
    }
    g.font = font;
    g.fillStyle = '#1d2330';
    g.textAlign = 'center';
    g.textBaseline = 'bottom';
    for (let t = 0; t < N; t++) {
      const q = pts[t][ph.shown];
      if (q) g.fillText(ph.labels[t], q[0], q[1] - (t === ph.followed ? SIZE.nowFollowed : SIZE.now));
    }
  });
  g.restore();
  const sc = layout.scene;
  return { box: proj.box, ranges: [sc.xaxis, sc.yaxis, sc.zaxis].map(a => a.range.slice()), points: drawn };
}
