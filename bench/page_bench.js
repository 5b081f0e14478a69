'use strict';
// Page timings on a 124M-shaped checkpoint (bench/page.sh runs this): a twd
// on MODEL with a persistent cache folder (the UMAP layout fitted once, then
// read from the disk cache), Debian's headless Chromium opening the page.
// Prints where the first navigation's time goes (each request, the page's
// marks), then for ROUNDS navigations: the first trajectory on screen after
// navigation (ms; its paths, points and labels, sketched in 2D with the 3D
// scene's projection until that scene shows them: static/js/sketch.js), how
// far the sketch's points were from the 3D scene's (pixels), the 3D figure
// on screen (its paths and points, with the labels plotly has not drawn before
// a frame later, and the cloud after), the full draws (the cloud's buffers
// built) and the slider steps (the shown state's traces moved in place), and
// the ratio step / full draw.
// Numbers, no assertions (the browser test asserts the ratio).
//
// Environment: TWD (binary), MODEL (checkpoint folder), CACHE (cache folder),
// PROJECTION (umap | pca, default umap), ROUNDS (default 3), CHROMIUM,
// STATIC (a page folder to serve instead of the source tree's, e.g. another
// worktree's static/: the same daemon serving two pages, for a before/after).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require(path.join(__dirname, '..', 'tests', 'browser', 'lib.js'));

const MODEL = process.env.MODEL;
const CACHE = process.env.CACHE || path.join(os.tmpdir(), 'twd-page-bench-cache');
const PROJECTION = process.env.PROJECTION || 'umap';
const ROUNDS = Number(process.env.ROUNDS || 3);
const STATIC = process.env.STATIC || '';

// One navigation's marks (ms after navigation start): when plotly.js was run
// and ready, the empty scene, twd's answer, the first trajectory on screen.
async function roundLine(page, r) {
  const m = await page.evaluate(() => {
    const out = {};
    for (const e of performance.getEntriesByType('mark')) if (!(e.name in out)) out[e.name] = e.startTime;
    const js = performance.getEntriesByType('resource').filter(e => /\/js\/[^/]+\.js$/.test(new URL(e.name).pathname));
    out.modules = js.length;
    out.modulesEnd = Math.max(0, ...js.map(e => e.responseEnd));
    const req = p => performance.getEntriesByType('resource').find(e => new URL(e.name).pathname === p);
    for (const [k, p] of [['traj', '/trajectory'], ['layout', '/umap/layout']]) {
      const e = req(p);
      if (e) { out[`${k}Sent`] = e.startTime; out[`${k}End`] = e.responseEnd; }
    }
    return out;
  });
  const f = k => (m[k] === undefined ? '-' : m[k].toFixed(0));
  console.log(`  navigation ${r + 1}: ${m.modules} modules loaded by ${f('modulesEnd')}, plotly.js run ${f('twd:plotly-run')}` +
    ` ready ${f('twd:plotly-ready')}, empty scene ${f('twd:traj-warm')}, /trajectory sent ${f('trajSent')} answered` +
    ` ${f('trajEnd')} handled ${f('twd:traj-answer')}, /umap/layout answered ${f('layoutEnd')},` +
    ` first on screen ${f('twd:traj-first-on-screen')}, 3D figure ${f('twd:traj-3d-on-screen')}, its labels ${f('twd:traj-labels')}`);
  const o = await lib.sketchOffsets(page);
  console.log(o.sketched ? `    sketch against the 3D scene: ${o.n} points, worst ${o.worst.toFixed(2)} px` +
    `${o.ranges ? '' : ' (the scene was framed anew after the sketch: the cloud came after the phrase)'}` : '    no sketch drawn');
  return o;
}

// Where the first navigation's time goes: each request the page made (start
// and end after navigation, bytes) and the page's own marks.
async function printLoad(page) {
  const rows = await page.evaluate(() => {
    const out = [];
    const nav = performance.getEntriesByType('navigation')[0];
    if (nav) out.push(['document', 0, nav.responseEnd, nav.transferSize, nav.domContentLoadedEventEnd]);
    for (const e of performance.getEntriesByType('resource')) {
      const u = new URL(e.name);
      out.push([u.pathname + (u.search.length > 40 ? `${u.search.slice(0, 40)}…` : u.search), e.startTime, e.responseEnd,
        e.encodedBodySize || e.transferSize, e.responseStart]);
    }
    for (const e of performance.getEntriesByType('mark')) out.push([`mark ${e.name}`, e.startTime, e.startTime, 0, null]);
    for (const e of performance.getEntriesByType('measure')) out.push([`measure ${e.name}`, e.startTime, e.startTime + e.duration, 0, null]);
    return out.sort((a, b) => a[1] - b[1]);
  });
  console.log('first navigation (ms after navigation start: start, first byte, end; bytes):');
  for (const [what, t0, t1, bytes, ttfb] of rows)
    console.log(`  ${String(t0.toFixed(0)).padStart(6)} ${ttfb === null ? '      ' : String(ttfb.toFixed(0)).padStart(6)} ` +
      `${String(t1.toFixed(0)).padStart(6)}  ${bytes ? `${(bytes / 1024).toFixed(0)} KiB`.padStart(9) : ''.padStart(9)}  ${what}`);
}

async function main() {
  if (!MODEL) throw new Error('MODEL is not set');
  fs.mkdirSync(CACHE, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twd-page-bench-'));
  const args = PROJECTION === 'pca' ? ['--set', 'umap=false'] : [];
  if (STATIC) args.push('--set', `static_dir=${path.resolve(STATIC)}`);
  const d = new lib.Daemon('bench', MODEL, args, { tmp });
  const t0 = Date.now();
  await d.start({ cacheDir: CACHE });
  const info = (await d.get('/model')).body;
  console.log(`model: ${info.name}, ${info.n_layer} layers, width ${info.n_embd}, vocabulary ${info.vocab_size}`);
  if (PROJECTION === 'umap') {
    const u = await d.waitUmap('ready', 3600);
    console.log(`UMAP layout: ${u.rows} rows, ${u.from_cache ? 'from the disk cache' : `fitted in ${((Date.now() - t0) / 1000).toFixed(0)} s (the next run reads it from ${CACHE})`}`);
  }
  const { ctx, page } = await lib.launch(tmp);
  const firsts = [], shown3d = [], labels = [], fulls = [], steps = [], worst = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      await page.goto('about:blank');
      await page.goto(d.url(`/#projection=${PROJECTION}`));
      await page.waitForFunction(() => Number(document.getElementById('traj-plot').dataset.cloud) > 0, null, { timeout: 300000 });
      await page.waitForTimeout(300);
      const S = Number(await page.getAttribute('#layer', 'max')) + 1;
      await page.focus('#layer');
      for (let s = S - 2; s >= Math.max(0, S - 7); s--) {
        await page.keyboard.press('ArrowLeft');
        await page.waitForFunction(v => document.getElementById('traj-plot').dataset.state === String(v), s);
      }
      if (r === 0) await printLoad(page);
      const o = await roundLine(page, r);
      if (o.sketched) worst.push(o.worst);
      const tm = await lib.timings(page);
      firsts.push(...(tm['twd:traj-first-on-screen'] || []));
      shown3d.push(...(tm['twd:traj-3d-on-screen'] || []));
      labels.push(...(tm['twd:traj-labels'] || []).slice(0, 1));
      fulls.push(...(tm['twd:traj-full-draw'] || []));
      steps.push(...(tm['twd:traj-step'] || []));
    }
  } finally {
    await ctx.close().catch(() => {});
    await d.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const ms = a => a.map(x => x.toFixed(0)).join(', ');
  if (STATIC) console.log(`page served from ${path.resolve(STATIC)}`);
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map(x => x.toFixed(1)).join(' ')}`);
  console.log(`first trajectory on screen after navigation (ms): ${ms(firsts)}; median ${lib.median(firsts).toFixed(0)}`);
  console.log(`sketches' worst offset from the 3D scene (px): ${worst.map(x => x.toFixed(2)).join(', ') || 'none drawn'}`);
  console.log(`3D figure on screen (ms): ${ms(shown3d)}; median ${lib.median(shown3d).toFixed(0)}`);
  console.log(`its token labels on screen in 3D (ms): ${ms(labels)}; median ${lib.median(labels).toFixed(0)}`);
  console.log(`full draws (ms): ${ms(fulls)}; median ${lib.median(fulls).toFixed(0)}`);
  console.log(`slider steps (ms): ${ms(steps)}; median ${lib.median(steps).toFixed(0)}`);
  console.log(`step / full draw: ${(lib.median(steps) / lib.median(fulls)).toFixed(3)}`);
}

main().catch(e => { console.error(e.stack || String(e)); process.exitCode = 1; });
