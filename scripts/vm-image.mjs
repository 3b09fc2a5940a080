// Writes a VM-like disk image for the demo and the benchmarks: per 4 MiB region, in a fixed pattern,
// incompressible data (like compressed/encrypted files), zeros (unused space) or text (logs, configs).
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';

const REGION = 4 * 1024 * 1024;
const WORDS = (
  'the quick brown fox jumps over lazy dogs kernel: eth0 link up systemd[1]: Started Daily apt upgrade and clean ' +
  'activities. GET /index.html HTTP/1.1 200 nginx /var/lib/postgresql/15/main user=www-data session opened for user ' +
  'root by (uid=0) CRON[2211]: pam_unix(cron:session): Accepted publickey for deploy from port ssh2 RSA SHA256 ' +
  'error warning notice info debug upstream timed out while reading response header from client request host'
).split(' ');

function textRegion() {
  // Log-like lines from random words: compresses like real text (~3–5×), unlike a repeated string.
  const picks = randomBytes(REGION / 4);
  const parts = [];
  let length = 0;
  let p = 0;
  while (length < REGION) {
    const words = [];
    const n = 6 + (picks[p++ % picks.length] % 8);
    for (let i = 0; i < n; i++) words.push(WORDS[picks[p++ % picks.length] % WORDS.length]);
    const line = `2026-11-${String(1 + (picks[p++ % picks.length] % 28)).padStart(2, '0')}T${String(picks[p++ % picks.length] % 24).padStart(2, '0')}:${String(picks[p++ % picks.length] % 60).padStart(2, '0')}:${String(picks[p++ % picks.length] % 60).padStart(2, '0')} pid=${picks[p++ % picks.length] * 256 + picks[p++ % picks.length]} ${words.join(' ')}\n`;
    parts.push(line);
    length += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, REGION);
}

/** Kind of each 4 MiB region: 40% random, 30% zero, 30% text. */
export function regionKind(index) {
  const k = (index * 7) % 10;
  return k < 4 ? 'random' : k < 7 ? 'zero' : 'text';
}

export async function makeVmImage(path, size) {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(size);
    for (let offset = 0, index = 0; offset < size; offset += REGION, index++) {
      const kind = regionKind(index);
      if (kind === 'zero') continue;
      const data = kind === 'random' ? randomBytes(REGION) : textRegion();
      await handle.write(data, 0, Math.min(REGION, size - offset), offset);
    }
  } finally {
    await handle.close();
  }
}

/** Overwrites `count` random 4 KiB blocks in distinct 4 MiB regions with random data. */
export async function changeBlocks(path, size, count) {
  const handle = await open(path, 'r+');
  try {
    const regions = Math.floor(size / REGION);
    const chosen = new Set();
    while (chosen.size < Math.min(count, regions)) chosen.add(Math.floor(Math.random() * regions));
    for (const region of chosen) {
      const offset = region * REGION + Math.floor(Math.random() * (REGION / 4096)) * 4096;
      await handle.write(randomBytes(4096), 0, 4096, offset);
    }
  } finally {
    await handle.close();
  }
}
