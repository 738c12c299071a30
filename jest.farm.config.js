// The render-farm tests (test/farm): a real redis-server, BullMQ, `reshoot serve --queue` and `reshoot worker`
// processes. A project of their own, outside `npm test`, because they need a redis-server binary and no npm package
// ships one (README, "Render farm"); `npm run test:farm` runs them, and CI installs Debian's redis-server for it.
const base = require('./jest.config.js');

/** @type {import('jest').Config} */
module.exports = {
  testTimeout: base.testTimeout,
  projects: [{ ...base.projects[0], displayName: 'farm', testMatch: ['<rootDir>/test/farm/**/*.test.ts'] }],
};
