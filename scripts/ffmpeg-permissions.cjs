#!/usr/bin/env node
// npm "postinstall": make the bundled ffmpeg and ffprobe runnable by every user of the machine. The
// @ffprobe-installer/linux-x64 package installs its binary with mode 0744, so only the user who ran `npm ci` could
// run it. Plain JavaScript (not compiled), because it runs before `npm run build`. It never fails the install: when a
// binary is missing (another platform) or cannot be changed (owned by someone else), it says so and what to run.
'use strict';
const fs = require('node:fs');

function main() {
  if (process.platform === 'win32') return; // no execute bits to fix
  for (const pkg of ['@ffmpeg-installer/ffmpeg', '@ffprobe-installer/ffprobe']) {
    let file;
    try {
      file = require(pkg).path;
    } catch (e) {
      console.log(
        `reshoot postinstall: ${pkg} has no binary here (${(e instanceof Error ? e.message : String(e)).split('\n')[0]}); skipped`,
      );
      continue;
    }
    if (typeof file !== 'string') continue;
    let mode;
    try {
      mode = fs.statSync(file).mode & 0o7777;
    } catch (e) {
      console.log(`reshoot postinstall: ${file} is missing (${e.code}); skipped`);
      continue;
    }
    if ((mode & 0o555) === 0o555) continue;
    const wanted = mode | 0o555;
    try {
      fs.chmodSync(file, wanted);
      console.log(
        `reshoot postinstall: ${file} mode 0${mode.toString(8)} -> 0${wanted.toString(8)} (runnable by every user)`,
      );
    } catch (e) {
      console.warn(
        `reshoot postinstall: could not make ${file} runnable by every user (${e.code}); run: chmod a+rx ${file}`,
      );
    }
  }
}

try {
  main();
} catch (e) {
  console.warn(`reshoot postinstall: ${e instanceof Error ? e.message : String(e)} (ignored)`);
}
