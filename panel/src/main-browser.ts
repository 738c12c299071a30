// Entry of the web UI that the engine serves at its root URL.
import './ui/zod-jitless';
import { BrowserHost } from './host/browser';
import { mountApp } from './ui/app';
import { applyTheme, themeFromQuery } from './ui/theme';

const root = document.getElementById('app');
if (!root) throw new Error('index.html has no #app element');
applyTheme(document.body, themeFromQuery(window.location.search));
const host = new BrowserHost(window);
mountApp(root, host, { sourcePicker: host });
