// dependency-cruiser: the engine's one-way layering, and the borders between the engine, the panel, the scripts and
// the tests. `npm run lint:deps` checks it.
//
// Layers, lowest first. A module may import its own folder and any folder of a LOWER layer; never a folder of its own
// layer (the folders of one layer are independent of each other) or of a higher one:
//
//   0  api, diffusion, config, version.ts   the job contract, the numeric core, where the engine keeps its files.
//                                            config sits here because media, models, store and jobs all need the
//                                            data folder and it imports nothing of the engine itself.
//   1  onnx, media, flow, service           graph rewriting, ffmpeg, optical flow, the login service files
//   2  models                               sessions, tokenizer, model folders; models/generate (the oracle and
//                                            tiny-SD generators) belongs here: default-model.ts builds the oracle
//                                            model on first use, and it needs nothing above models.
//   3  editing                              the edit pipelines
//   4  store                                what survives a job (the inversion cache)
//   5  worker                               the compute thread
//   6  jobs                                 queue, planning, running
//   7  server, eval, bench, farm            the HTTP API, the quality and speed harnesses, the render queue
//   8  cli                                  the `reshoot` command: may import everything
//
// Outside engine/src: scripts/ and test/ may import anything; the panel only the API contract (engine/src/api), which
// esbuild bundles into it. Nothing in engine/src or panel/src imports scripts/ or test/.

const LAYERS = [
  ['api', 'diffusion', 'config', 'version.ts'],
  ['onnx', 'media', 'flow', 'service'],
  ['models'],
  ['editing'],
  ['store'],
  ['worker'],
  ['jobs'],
  ['server', 'eval', 'bench', 'farm'],
  ['cli'],
];

const ENGINE = '^engine/src/';
/** Path pattern of one engine folder (or top-level file). */
const part = (name) => `${ENGINE}${name.replace('.', '\\.')}${name.endsWith('.ts') ? '$' : '/'}`;
const anyOf = (names) => `(${names.map(part).join('|')})`;

// One rule per folder: it may not import another folder of its own layer, nor any folder of a higher layer.
const layering = LAYERS.flatMap((layer, rank) =>
  layer
    .map((name) => ({ name, forbidden: [...layer.filter((n) => n !== name), ...LAYERS.slice(rank + 1).flat()] }))
    // cli, alone at the top, may import everything.
    .filter(({ forbidden }) => forbidden.length > 0)
    .map(({ name, forbidden }) => ({
      name: `layer-${name.replace('.ts', '')}`,
      comment:
        `engine/src/${name} is in layer ${rank} of the engine's layering (see the top of .dependency-cruiser.cjs): ` +
        'it may import only lower layers.',
      severity: 'error',
      from: { path: part(name) },
      to: { path: anyOf(forbidden) },
    })),
);

module.exports = {
  forbidden: [
    ...layering,
    {
      name: 'no-eval-or-bench',
      comment:
        'eval/ and bench/ are harnesses that only the CLI runs (and scripts/ and the tests): the engine that ships ' +
        'behaves the same whether or not they exist.',
      severity: 'error',
      from: { path: ENGINE, pathNot: `${ENGINE}(cli|eval|bench)/` },
      to: { path: `${ENGINE}(eval|bench)/` },
    },
    {
      name: 'editing-without-onnxruntime',
      comment:
        'The edit pipelines run models through models/ (sessions, tensors); they never touch onnxruntime-node ' +
        'themselves, so that the pipelines can be tested with stand-in models and the runtime can change in one place.',
      severity: 'error',
      from: { path: `${ENGINE}editing/` },
      to: { path: 'node_modules/onnxruntime-(node|common)/' },
    },
    {
      name: 'no-circular',
      comment: 'A cycle ties modules together so that neither can be loaded, tested or moved without the other.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'production-not-to-tests-or-scripts',
      comment: 'The engine and the panel ship without test/ and scripts/.',
      severity: 'error',
      from: { path: '^(engine|panel)/src/' },
      to: { path: '^(test|scripts)/' },
    },
    {
      name: 'panel-only-to-api',
      comment:
        "The panel talks to the engine over HTTP; of the engine's code it bundles only the API contract " +
        '(engine/src/api: the zod schemas and their types).',
      severity: 'error',
      from: { path: '^panel/' },
      to: { path: '^engine/', pathNot: '^engine/src/api/' },
    },
    {
      name: 'engine-not-to-panel',
      comment: 'The panel depends on the engine, never the other way round.',
      severity: 'error',
      from: { path: '^engine/' },
      to: { path: '^panel/' },
    },
    {
      name: 'engine-not-to-dev-dependencies',
      comment:
        'The engine runs from an install without devDependencies; type-only imports are erased and may use them.',
      severity: 'error',
      from: { path: ENGINE },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve fails at run time (or in the bundle).',
      severity: 'error',
      from: {},
      // uxp and premierepro are the host's own modules inside Premiere: esbuild leaves them external (build-panel.ts).
      to: { couldNotResolve: true, pathNot: '^(uxp|premierepro)$' },
    },
    {
      name: 'no-non-package-json',
      comment: 'A package that package.json does not list works only by accident of hoisting.',
      severity: 'error',
      from: {},
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|models|test-output|test/fixtures)/' },
    // Type-only imports count: a type from a higher layer ties the layers together as much as a value does.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['main', 'types', 'typings'],
      extensions: ['.ts', '.mts', '.d.ts', '.js', '.cjs', '.mjs', '.json'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
