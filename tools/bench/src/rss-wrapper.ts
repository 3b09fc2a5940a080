// Runs the backy binary in-process (exactly as bin/backy.js does) and appends its peak RSS in bytes to
// $BACKY_RSS_FILE at exit.
import { appendFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { BACKY_BIN } from './paths.js';

process.on('exit', () => {
  if (process.env.BACKY_RSS_FILE)
    appendFileSync(process.env.BACKY_RSS_FILE, `${process.resourceUsage().maxRSS * 1024}\n`);
});
await import(pathToFileURL(BACKY_BIN).href);
