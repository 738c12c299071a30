// Imported first by an entry point, before anything that builds a zod schema: zod decides at schema construction
// whether to compile parsers with new Function(), and probing for that is a reported violation under the web UI's
// Content-Security-Policy (and UXP forbids code generation from strings unless the manifest allows it).
import { z } from 'zod';

z.config({ jitless: true });
