// The views' forms, built from one table (index.html holds an empty
// <form id="P-form">): every control labelled (a <label for>, or its legend
// and its own label for radios), in the order the keyboard reaches them.
// Built with el() only (no HTML strings).
import { el } from './text.js';

// A control's note: muted text after its label; a string, or nodes.
const muted = note => (note ? [' ', el('span', { class: 'muted' }, note)] : []);
const labelled = (id, label, note, control) => [el('label', { for: id }, label, ...muted(note)), control];

const text = (id, name, label, { note, placeholder } = {}) =>
  labelled(id, label, note, el('input', { id, name, type: 'text', value: '', spellcheck: 'false', placeholder }));
const number = (id, name, label, attrs, note) =>
  labelled(id, label, note, el('input', { id, name, type: 'number', ...attrs }));
const select = (id, name, label, note, options = []) =>
  labelled(id, label, note, el('select', { id, name }, options.map(([value, t, on]) => el('option', { value, selected: on }, t))));
const radios = (legend, name, options, note) => el('fieldset', { class: 'inline' }, el('legend', {}, legend, ...muted(note)),
  options.map(([value, t, on, after]) => el('label', {}, el('input', { type: 'radio', name, value, checked: on }), ` ${t}`, after || '')));
const submit = (id, t) => el('button', { type: 'submit', id, class: 'primary' }, t);
const phrase = p => text(`${p}-phrase`, 'text', 'Phrase');
const picker = (p, what, note) => select(`${p}-${what}`, what, what === 'block' ? 'Block' : 'Head', note);
const tokensPer = (p, label, max = 20, value = 5) => number(`${p}-k`, 'k', label, { min: 1, max, value });
const sub = s => el('sub', {}, s);

const FORMS = {
  traj: () => [
    text('phrase', 'text', 'Phrase'),
    text('phrase2', 'text2', 'Compare with', { note: '(optional)', placeholder: 'a second phrase' }),
    radios('Projection to 3D', 'projection', [['umap', 'UMAP', true, el('span', { id: 'umap-note', class: 'muted' })], ['pca', 'PCA']]),
    el('details', { class: 'more' }, el('summary', {}, 'More options'),
      select('gelu', 'gelu', 'GELU of the forward pass', '', [['tanh', 'tanh (GPT-2)', true], ['erf', 'erf (nanoGPT, the paper\'s code)']]),
      number('nearest-k', 'k', 'Nearest vocabulary tokens per point', { min: 1, max: 20, value: 5 }),
      number('cloud-limit', 'limit', 'Background points', { min: 0, step: 500, value: 0 }, '(0: all fitted rows)')),
    submit('traj-submit', 'Show trajectories'),
  ],
  lens: () => [phrase('lens'), tokensPer('lens', 'Tokens listed per cell'), submit('lens-submit', 'Show the logit lens')],
  attn: () => [phrase('attn'), picker('attn', 'block'), picker('attn', 'head'), submit('attn-submit', 'Show attention')],
  probe: () => [
    picker('probe', 'block'),
    text('probe-words', 'words', 'Words', { note: '(comma-separated; empty: the model\'s default)' }),
    el('label', { class: 'check' }, el('input', { id: 'probe-space', type: 'checkbox', name: 'space' }), ' with a leading space',
      ...muted('(" earth", not "earth")')),
    el('p', { id: 'probe-space-note', class: 'hint', hidden: true }),
    tokensPer('probe', 'Tokens per list'),
    submit('probe-submit', 'Probe the words'),
  ],
  svd: () => [
    picker('svd', 'block'),
    number('svd-top', 'top', 'Directions listed per head', { min: 1, max: 64, value: 10 }),
    tokensPer('svd', 'Tokens per direction'),
    submit('svd-submit', 'Show spectra'),
  ],
  sweep: () => [
    radios('Analysis', 'sweep', [['spectra', 'head spectra', true, muted('(/svd, top=0)')], ['bias', 'bias probes', false, muted('(/svd/bias)')]]),
    el('div', { class: 'mode-only', 'data-mode': 'spectra' },
      select('sweep-matrix', 'matrix', 'Matrix', '', [['qk', 'W_QK (query–key)', true], ['vo', 'W_VO (value–output)']]),
      select('sweep-measure', 'measure', 'Each cell shows', '', [['f99', 'directions for 99 %', true],
        ['first', 'share in the first direction'], ['top10', 'share in the top 10 %']])),
    el('div', { class: 'mode-only', 'data-mode': 'bias', hidden: true },
      select('sweep-probe', 'probe', 'Probe', '(its top token\'s score)', [['c', 'c = W_k b_q (keys every query is drawn to)', true],
        ['-c', '−c (keys pushed away)'], ['a', 'a = W_q b_k (a uniform offset per query)'], ['-a', '−a']])),
    text('sweep-blocks', 'blocks', 'Blocks', { note: '(all, or a range such as 0-11)', placeholder: 'all' }),
    submit('sweep-submit', 'Run the sweep'),
  ],
  norms: () => [tokensPer('norms', 'Tokens per list', 100), submit('norms-submit', 'Show the norms')],
  ln: () => [
    picker('ln', 'block', '(its ln_1)'),
    picker('ln', 'head', ['(its W', sub('QK'), ')']),
    el('fieldset', { class: 'inline' }, el('legend', {}, 'Coordinates', ...muted('(empty: the two largest |γ|)')),
      ['i', 'j'].map((c, n) => [el('label', { for: `ln-dim-${c}`, class: 'visually-hidden' }, `${n ? 'second' : 'first'} coordinate`),
        el('input', { id: `ln-dim-${c}`, name: `dim_${c}`, type: 'number', min: 0, step: 1, class: 'short' })])),
    number('ln-points', 'points', 'Points on the circle', { min: 3, max: 4096, value: 64 }),
    submit('ln-submit', 'Draw the sketch'),
  ],
  mlp: () => [
    radios('Question', 'mode', [['values', 'a block\'s neurons', true], ['search', 'neurons for a token'], ['updates', 'a phrase\'s MLP updates']]),
    el('div', { class: 'mode-only', 'data-mode': 'values' }, picker('mlp', 'block'),
      text('mlp-neurons', 'neurons', 'Neurons', { note: '(comma-separated; empty: all)' })),
    el('div', { class: 'mode-only', 'data-mode': 'search', hidden: true },
      text('mlp-token', 'find', 'Token', { note: '(its text or id)' }),
      number('mlp-top', 'top', 'Neurons listed', { min: 1, max: 100, value: 10 })),
    el('div', { class: 'mode-only', 'data-mode': 'updates', hidden: true }, phrase('mlp')),
    tokensPer('mlp', 'Tokens per list'),
    submit('mlp-submit', 'Ask'),
  ],
};

// what each view's download buttons are for
const TOOLS = { traj: 'the trajectory view', lens: 'the logit lens', attn: 'the attention view', probe: 'the word probes',
  svd: 'the head spectra', sweep: 'the whole-model sweep', norms: 'the embedding norms', ln: 'the layer-norm view', mlp: 'the MLP view' };

// Fills every view's form, and adds to each view the download buttons' group
// (P-tools, after its controls), the message box before its figure (P-msg)
// and, when its stage says data-table, the figure as a table after it
// (P-table-wrap, P-table).
export function buildForms() {
  for (const [p, make] of Object.entries(FORMS)) {
    const form = document.getElementById(`${p}-form`);
    form.autocomplete = 'off';
    form.replaceChildren(...make().flat());
    const view = document.getElementById(`view-${p}`);
    view.querySelector('.controls').append(el('div', { class: 'group buttons', id: `${p}-tools`, role: 'group',
      'aria-label': `Downloads of ${TOOLS[p]}` }));
    const stage = view.querySelector('.stage');
    stage.prepend(el('div', { id: `${p}-msg`, class: 'message', hidden: true }));
    // the figure as a table, when the view has one (its summary in data-table)
    if (stage.dataset.table) {
      stage.append(el('details', { class: 'table-wrap', id: `${p}-table-wrap`, hidden: true },
        el('summary', {}, stage.dataset.table), el('div', { id: `${p}-table` })));
    }
  }
}
