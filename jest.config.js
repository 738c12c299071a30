// One jest run, four projects. `npm test` builds first and runs them all; `npm run test:unit` runs only the unit
// project, which needs no build (nothing in test/unit reads dist/ or starts the CLI or a worker thread).
//
//   unit         pure functions and in-process modules; under a minute on a 2-core machine
//   integration  the engine end to end in-process and as a child process (dist/), real models generated on the fly
//   e2e          the web UI and the panel in real Chromium against `reshoot serve` from dist/
//   reliability  faults, kills, load, fuzzing and hostile input against a running engine

const os = require('node:os');

/** Settings every project shares: jest does not inherit top-level options into projects. */
const shared = {
  rootDir: __dirname,
  testEnvironment: '<rootDir>/test/support/ort-environment.js',
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  // Children a suite started through test/support/children.ts end with the suite, even when it fails half-way.
  setupFilesAfterEnv: ['<rootDir>/test/support/stop-children-after-all.ts'],
  testTimeout: 120000,
};

/** @param {string} name */
const project = (name) => ({
  ...shared,
  displayName: name,
  testMatch: [`<rootDir>/test/${name}/**/*.test.ts`],
});

/** @type {import('jest').Config} */
module.exports = {
  // jest-circus takes the timeout from the global config, not the project's: without this line every project would
  // fall back to 5 s.
  testTimeout: shared.testTimeout,
  // jest's default is one worker less than the cores: one on a 2-core machine, where the suite then ran one file at a
  // time with the second core idle (most tests run single-threaded ONNX Runtime sessions or wait on ffmpeg and child
  // processes). Two there: 19.2 → 11.4 min on the 2-core CI machine (docs/BENCHMARKS.md, "The test suite").
  maxWorkers: cores() >= 2 ? Math.max(2, cores() - 1) : 1,
  projects: ['unit', 'integration', 'e2e', 'reliability'].map(project),
};

function cores() {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}
