import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { BIN } from './helpers.js';

const version = (extra: string[]) =>
  spawnSync(process.execPath, [...extra, BIN, '--version'], { encoding: 'utf8', timeout: 30_000 });

describe('compile cache in the binary', () => {
  it(`starts on this Node (${process.version}) whether or not it has module.enableCompileCache`, () => {
    const plain = version([]);
    expect(plain.stderr).toBe('');
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/\d+\.\d+\.\d+/);
  });

  it('enables the cache where Node offers it (as Node ≥ 22 does)', () => {
    // Stands in for Node 22's function on the module object the binary imports.
    const stub =
      "data:text/javascript,import m from 'node:module'; m.enableCompileCache = () => process.stderr.write('compile cache on\\n');";
    const withCache = version(['--import', stub]);
    expect(withCache.stderr).toBe('compile cache on\n');
    expect(withCache.status).toBe(0);
    expect(withCache.stdout).toMatch(/\d+\.\d+\.\d+/);
  });
});
