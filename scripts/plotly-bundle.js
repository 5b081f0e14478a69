'use strict';
// Builds the page's plotly.js: plotly's core (which holds the scatter trace and
// the components: legend, colour bars, shapes, hover, mode bar, image export)
// with only the trace types the page draws, registered as plotly's custom
// bundles do (Plotly.register), one minified classic script that sets
// window.Plotly. scripts/deps.sh runs it with the npm packages it installed:
//
//   node scripts/plotly-bundle.js OUT PLOTLY_PREFIX ESBUILD_PREFIX BUFFER_PREFIX
//
// PLOTLY_PREFIX/node_modules holds plotly.js (its source package, with its
// dependencies), ESBUILD_PREFIX/node_modules esbuild, BUFFER_PREFIX/node_modules
// the browser's `buffer` (one dependency, typedarray-pool, requires node's
// buffer module; plotly's own build polyfills it with the same package).
// Nothing is written when OUT's first line already names the same versions
// and traces; otherwise OUT is written whole (a temporary file renamed, so
// two builds at once leave one complete file).
//
// A view that draws another trace type adds it to TRACES, and changes the
// bundle's name in scripts/deps.sh, static/index.html and static/js/plot.js
// (browsers keep /vendor/ files a week): tests/test_plotly_traces.sh checks
// that every trace type in static/js is here.
const fs = require('node:fs');
const path = require('node:path');

const TRACES = ['bar', 'heatmap', 'scatter3d', 'scattergl'];

function main(argv) {
  if (argv.length !== 4) {
    process.stderr.write('usage: node plotly-bundle.js OUT PLOTLY_PREFIX ESBUILD_PREFIX BUFFER_PREFIX\n');
    return 2;
  }
  const [out, plotlyPrefix, esbuildPrefix, bufferPrefix] = argv.map(p => path.resolve(p));
  const modules = p => path.join(p, 'node_modules');
  const version = name => JSON.parse(fs.readFileSync(path.join(modules(name === 'plotly.js' ? plotlyPrefix : name === 'esbuild'
    ? esbuildPrefix : bufferPrefix), name, 'package.json'), 'utf8')).version;
  const banner = `/* plotly.js ${version('plotly.js')} (core, scatter, ${TRACES.join(', ')}) for twd,` +
    ` built with esbuild ${version('esbuild')} and buffer ${version('buffer')} by scripts/plotly-bundle.js */`;
  try {
    const fd = fs.openSync(out, 'r');
    const head = Buffer.alloc(banner.length + 1);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    if (n === head.length && head.toString('utf8') === `${banner}\n`) return 0;
  } catch (e) { /* not there yet */ }

  const esbuild = require(path.join(modules(esbuildPrefix), 'esbuild'));
  const entry = [
    "var Plotly = require('plotly.js/lib/core');",
    `Plotly.register([${TRACES.map(t => `require('plotly.js/lib/${t}')`).join(', ')}]);`,
    'module.exports = Plotly;',
  ].join('\n');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const t0 = Date.now();
  try {
    esbuild.buildSync({
      stdin: { contents: entry, resolveDir: plotlyPrefix, sourcefile: 'twd-plotly.js' },
      bundle: true, minify: true, format: 'iife', globalName: 'Plotly', platform: 'browser',
      // a browser's globals, as plotly's own bundle has them
      define: { global: 'window' },
      // the one CSS file plotly requires is maplibre's, for the map subplot
      // (not in this bundle): nothing of it in the bundle, no .css beside it
      loader: { '.css': 'empty' },
      nodePaths: [modules(plotlyPrefix), modules(bufferPrefix)],
      banner: { js: banner },
      legalComments: 'eof',
      logLevel: 'warning',
      outfile: tmp,
    });
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    process.stderr.write(`plotly-bundle: ${e.message}\n`);
    return 1;
  }
  process.stderr.write(`built ${out} (${(fs.statSync(out).size / 1e6).toFixed(2)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
