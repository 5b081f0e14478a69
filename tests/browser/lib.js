'use strict';
// What the browser test (test_page.js) and the page benchmark
// (bench/page_bench.js) share: a real twd started on a checkpoint, Debian's
// headless Chromium driven by playwright-core, and small helpers.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const TWD = process.env.TWD || 'build/server/twd';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/;

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

// Largest absolute difference between two nested arrays of numbers (Infinity
// when the shapes differ; null matches only null).
function maxDiff(a, b) {
  if (a === null || b === null) return a === b ? 0 : Infinity;
  if (Array.isArray(a) !== Array.isArray(b)) return Infinity;
  if (!Array.isArray(a)) return typeof a === 'number' && typeof b === 'number' ? Math.abs(a - b) : Infinity;
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, maxDiff(a[i], b[i]));
  return m;
}

// A twd on a checkpoint (models: one path or several), on a free port, with
// its own cache folder. log() is its standard error.
class Daemon {
  constructor(name, models, args, { tmp, artifacts, onStop } = {}) {
    this.name = name;
    this.models = Array.isArray(models) ? models : models ? [models] : [];
    this.args = args;
    this.tmp = tmp || os.tmpdir();
    this.artifacts = artifacts;
    this.onStop = onStop;
    this.lines = [];
    this.port = null;
    this.headers = {};
  }

  start({ cacheDir } = {}) {
    const cache = cacheDir || fs.mkdtempSync(path.join(this.tmp, `cache-${this.name}-`));
    const argv = ['--port', '0', '--no-fetch', '--cache-dir', cache,
      ...this.models.flatMap(m => ['--model', m]), '--set', 'blas_threads=1', ...this.args];
    this.proc = spawn(TWD, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.exited = new Promise(res => this.proc.on('exit', (code, sig) => res({ code, sig })));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`twd ${this.name} printed no listening line:\n${this.log()}`)), 60000);
      readline.createInterface({ input: this.proc.stderr }).on('line', line => {
        this.lines.push(line);
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(line);
        if (m && this.port === null) {
          this.port = Number(m[1]);
          clearTimeout(timer);
          resolve(this);
        }
      });
      this.proc.on('exit', code => { clearTimeout(timer); reject(new Error(`twd ${this.name} exited (${code}):\n${this.log()}`)); });
    }).then(() => this.waitHealthy());
  }

  async waitHealthy() {
    for (let i = 0; i < 1200; i++) {
      try { if ((await fetch(this.url('/health'))).status === 200) return this; } catch (e) { /* not yet */ }
      await sleep(100);
    }
    throw new Error(`twd ${this.name} never became healthy:\n${this.log()}`);
  }

  url(p) { return `http://127.0.0.1:${this.port}${p}`; }

  async get(p, params = {}) {
    const q = new URLSearchParams(params).toString();
    const r = await fetch(this.url(q ? `${p}?${q}` : p), { headers: this.headers });
    return { status: r.status, body: await r.json() };
  }

  async post(p, body) {
    const r = await fetch(this.url(p), { method: 'POST', headers: { 'Content-Type': 'application/json', ...this.headers },
      body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  }

  async waitUmap(state, seconds, params = {}) {
    for (let i = 0; i < seconds * 10; i++) {
      const u = (await this.get('/umap', params)).body;
      if (u.state === state) return u;
      await sleep(100);
    }
    throw new Error(`twd ${this.name}: UMAP never became ${state}`);
  }

  log() { return this.lines.join('\n'); }

  // Stops the daemon; returns the sanitizer reports of its log (empty: none).
  async stop() {
    if (!this.proc) return [];
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 30000);
      await this.exited;
      clearTimeout(t);
    }
    this.proc = null;
    if (this.artifacts) fs.writeFileSync(path.join(this.artifacts, `twd-${this.name}.log`), this.log());
    return this.lines.filter(l => SANITIZER.test(l));
  }
}

// Debian's headless Chromium with a fresh profile; software WebGL for the 3D figure.
async function launch(tmp, viewport = { width: 1280, height: 800 }) {
  const profile = fs.mkdtempSync(path.join(tmp, 'chromium-profile-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, acceptDownloads: true, viewport,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--enable-unsafe-swiftshader'],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  return { ctx, page };
}

// The performance measures and marks the page recorded, by name: [durations]
// for measures, [start times] for marks (ms).
function timings(page) {
  return page.evaluate(() => {
    const out = {};
    for (const e of performance.getEntriesByType('measure')) (out[e.name] = out[e.name] || []).push(e.duration);
    for (const e of performance.getEntriesByType('mark')) (out[e.name] = out[e.name] || []).push(e.startTime);
    return out;
  });
}

// Where the trajectory view's first-frame sketch (static/js/sketch.js) drew
// the phrases' points against where plotly's 3D scene shows them now: each
// point of every token's path in the figure's data, projected with the
// scene's own matrices (model, view, projection) onto its WebGL canvas, and
// its distance to the sketch's point. { sketched: false } when no sketch was
// drawn; else { n, worst (CSS pixels), ranges: whether the scene's axis
// ranges are still those the sketch drew with }.
function sketchOffsets(page) {
  return page.evaluate(async () => {
    const sk = (await import('/js/trajectory.js')).trajectoryState().sketch;
    if (!sk) return { sketched: false };
    const gd = document.getElementById('traj-plot');
    const scene = gd._fullLayout.scene._scene, cp = scene.glplot.cameraParams, ds = scene.dataScale;
    const canvas = scene.glplot.canvas, cr = canvas.getBoundingClientRect(), gr = gd.getBoundingClientRect();
    const mul = (M, v) => [0, 1, 2, 3].map(j => M[j] * v[0] + M[4 + j] * v[1] + M[8 + j] * v[2] + M[12 + j] * v[3]);
    const trace = (role, p) => gd.data.find(t => t.meta && t.meta.role === role && t.meta.phrase === p);
    let worst = 0, n = 0;
    for (const q of sk.points) {
      const hl = trace('highlight', q.p), paths = trace('paths', q.p);
      const S = hl.meta.states, h = hl.meta.token;
      // the followed token's path, else its place in the other tokens' (each path and a gap)
      const [tr, i] = q.t === h ? [hl, q.s] : [paths, (q.t < h ? q.t : q.t - 1) * (S + 1) + q.s];
      const c = mul(cp.projection, mul(cp.view, mul(cp.model, [tr.x[i] * ds[0], tr.y[i] * ds[1], tr.z[i] * ds[2], 1])));
      const x = cr.left - gr.left + (c[0] / c[3] + 1) / 2 * canvas.clientWidth;
      const y = cr.top - gr.top + (1 - c[1] / c[3]) / 2 * canvas.clientHeight;
      worst = Math.max(worst, Math.hypot(x - q.x, y - q.y));
      n++;
    }
    const fl = gd._fullLayout.scene;
    // plotly keeps the ranges through its data scale: equal to rounding
    const ranges = ['xaxis', 'yaxis', 'zaxis'].every((a, k) => fl[a].range.every((v, j) =>
      Math.abs(v - sk.ranges[k][j]) <= 1e-9 * Math.abs(sk.ranges[k][1] - sk.ranges[k][0])));
    return { sketched: true, n, worst, ranges };
  });
}

function median(a) {
  if (!a || !a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

module.exports = { Daemon, launch, timings, sketchOffsets, median, maxDiff, sleep, SANITIZER, TWD, CHROMIUM };
