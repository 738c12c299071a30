// ESLint flat config: typescript-eslint's type-checked rules for the engine, the panel, the scripts and the tests.
// Formatting is Prettier's job (see .prettierrc.json); no stylistic rules here.
//
// Type information comes from the same tsconfigs that `npm run typecheck` uses, so lint sees what tsc sees:
//   tsconfig.json        engine/src, scripts, test (Node, CommonJS)
//   panel/tsconfig.json  panel/src and the e2e Premiere harness (DOM + UXP types, bundler resolution)
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const tsconfigRootDir = import.meta.dirname;

// The calls whose callbacks run inside Premiere's lock, and inside a transaction (see the panel rules below).
const LOCKED = ['lockedAccess', 'executeTransaction', 'transact'];
const TRANSACTION = ['executeTransaction', 'transact'];
const callOf = (names) =>
  `:matches(${names.map((n) => `CallExpression[callee.property.name="${n}"], CallExpression[callee.name="${n}"]`).join(', ')})`;
const inside = (names) => `${callOf(names)} :function *`;
const INSTALLER_PACKAGES = ['^@ffmpeg-installer/ffmpeg$', '^@ffprobe-installer/ffprobe$'];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'models/**',
      'test-output/**',
      '.tmp/**',
      'coverage/**',
      'test/fixtures/**',
    ],
  },
  {
    // An eslint-disable comment that no longer suppresses anything is an error, so the few that exist stay honest.
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },

  js.configs.recommended,

  // ---- TypeScript, type-checked ----
  {
    files: ['**/*.ts', '**/*.mts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: ['./tsconfig.json'], tsconfigRootDir },
    },
    rules: {
      // A leading underscore marks a name that is unused on purpose: a parameter kept for an interface's shape, or a
      // field dropped by destructuring (`const { $schema: _s, ...rest } = schema`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          caughtErrors: 'none',
          ignoreRestSiblings: true,
        },
      ],
      // `async` without `await` is this codebase's way of implementing a Promise-returning interface synchronously
      // (the panel's Host for the browser, the fakes of Premiere's async API in test/support, stub job services):
      // it keeps the signature honest and turns a synchronous throw into a rejection. The rule would force
      // `return Promise.resolve(x)` rewrites that change that behaviour. Promises that nobody awaits are still
      // caught by no-floating-promises and no-misused-promises.
      '@typescript-eslint/require-await': 'off',
      // A `let` that closures declared above its one assignment read (a timer that an earlier cleanup clears, as in
      // server/sse.ts) cannot become a const: the closure could run first and hit the temporal dead zone.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Character classes such as /[\x00-\x1f]/ are how paths, tokens, header values and names are checked for
      // control characters (cli/serve, models/hub-pull, the panel's premiere-paths); matching them is the point.
      'no-control-regex': 'off',
      // The ffmpeg/ffprobe installer packages throw at load time when their platform binary is missing, so
      // media/binaries.ts (and the tests that check it) require them lazily inside a try. Any other require() in
      // TypeScript is still an error.
      '@typescript-eslint/no-require-imports': ['error', { allow: INSTALLER_PACKAGES }],
    },
  },
  {
    // The engine loads ONNX Runtime through models/ort.ts only: it removes Node 24's Float16Array first (see
    // models/float16-guard.ts), which fp16 models need in every thread; so do the tests and scripts, which run on
    // Node 24 in CI. Type-only imports are harmless.
    files: ['engine/src/**/*.ts', 'test/**/*.ts', 'scripts/**/*.ts'],
    ignores: ['engine/src/models/ort.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: 'onnxruntime-node',
              message: 'Import ONNX Runtime from engine/src/models/ort.ts (it applies the Node 24 float16 guard).',
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  {
    files: ['panel/**/*.ts', 'test/e2e/fixtures/**/*.mts'],
    languageOptions: {
      parserOptions: { project: ['./panel/tsconfig.json'], tsconfigRootDir },
      globals: { ...globals.browser },
    },
    rules: {
      // The UXP host modules exist only at run time inside Premiere: esbuild leaves them external and the panel
      // requires them lazily (host/premiere.ts), so that the panel loads and can show an error without them.
      '@typescript-eslint/no-require-imports': [
        'error',
        { allow: [...INSTALLER_PACKAGES, '^uxp$', '^premierepro$', '^fs$', '^os$'] },
      ],
    },
  },
  {
    // Premiere's lock and transaction rules (26.3), which @adobe/eslint-plugin-premierepro would check; that package
    // is not on the npm registry (`npm view` answers 404), so the rules that matter here are written as selectors.
    // `transact` is host/premiere-edit.ts, which runs its callback inside lockedAccess and executeTransaction.
    // Not covered: an Action kept in a variable outside its callback (the plugin's no-escape rule needs types).
    files: ['panel/src/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: `CallExpression[callee.property.name=/^create\\w*Action$/]:not(${inside(LOCKED)})`,
          message:
            'Premiere 26.3 accepts create*Action() only inside project.lockedAccess() (here: inside a transact() callback).',
        },
        {
          // add() is premiere-edit.ts's checked addAction.
          selector: `:matches(CallExpression[callee.property.name="addAction"], CallExpression[callee.name="add"]):not(${inside(TRANSACTION)})`,
          message: 'addAction() belongs inside the executeTransaction() callback (here: a transact() callback).',
        },
        {
          selector: `${callOf(LOCKED)} > :function[async=true]`,
          message: 'lockedAccess/executeTransaction callbacks must be synchronous: await everything before the lock.',
        },
        {
          selector: `${callOf(LOCKED)} AwaitExpression`,
          message:
            'No await inside lockedAccess/executeTransaction: Premiere rejects a callback that returns a Promise.',
        },
      ],
    },
  },
  {
    files: ['engine/**/*.ts', 'scripts/**/*.ts', 'test/**/*.ts'],
    languageOptions: { globals: { ...globals.node } },
  },
  {
    files: ['test/**/*.ts'],
    languageOptions: { globals: { ...globals.jest } },
  },
  {
    // The UXP entry registers the panel first and only then loads the UI and host modules, in order (zod-jitless
    // before any schema is built), so that a module that throws while loading still leaves a registered panel that
    // shows the error. Those requires are the point of the file; imports would be hoisted above the setup call.
    files: ['panel/src/main-uxp.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },

  // ---- Plain JavaScript (config files, the jest environment, the postinstall script, the load client) ----
  {
    files: ['**/*.js', '**/*.cjs'],
    ignores: ['**/*.mjs'],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: { ...globals.node } },
  },
);
