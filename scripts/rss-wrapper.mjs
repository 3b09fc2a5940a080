// Runs the backy binary in-process (exactly as bin/backy.js does) and appends its peak RSS in bytes to
// $BACKY_RSS_FILE at exit.
import { appendFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.BACKY_RSS_FILE)
    appendFileSync(process.env.BACKY_RSS_FILE, `${process.resourceUsage().maxRSS * 1024}\n`);
});
await import('../packages/cli/bin/backy.js');
