// Runs the backy CLI in-process and appends its peak RSS (bytes) to $BACKY_RSS_FILE at exit.
import { appendFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.BACKY_RSS_FILE)
    appendFileSync(process.env.BACKY_RSS_FILE, `${process.resourceUsage().maxRSS * 1024}\n`);
});
const { main } = await import('../packages/cli/dist/index.js');
process.exitCode = await main(process.argv.slice(2));
