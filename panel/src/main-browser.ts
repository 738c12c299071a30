// Entry of the web UI that the engine serves at its root URL.
import './ui/zod-jitless';
import { BrowserHost } from './host/browser';
import { mountApp } from './ui/app';

const root = document.getElementById('app');
if (!root) throw new Error('index.html has no #app element');
const host = new BrowserHost(window);
mountApp(root, host, { sourcePicker: host });
