// Every suite of every jest project (jest.config.js, setupFilesAfterEnv): the child processes it tracked through
// test/support/children.ts are stopped when it ends, whether or not it registered its own cleanup.
import { stopChildren } from './children';

afterAll(() => stopChildren());
