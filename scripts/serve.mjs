#!/usr/bin/env node
// `npm run serve`: builds what is missing or stale (TypeScript core, dashboard), then runs the
// headless core in this process. Flags after `--` go to the core (see `npm run serve -- --help`).
import { pathToFileURL } from 'node:url';
import { ensureBuilt } from './lib/buildIfStale.mjs';

const entry = ensureBuilt();
await import(pathToFileURL(entry).href);
