import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { testBackend } from '../testing/backend-suite.js';
import { tempDir } from '../testing/helpers.js';
import { DirectoryBackend } from './directory.js';

testBackend({
  name: 'directory',
  async makeBackend() {
    const dir = await tempDir('backy-backend-');
    const root = join(dir.path, 'store');
    return {
      backend: new DirectoryBackend(root),
      reopen: async () => new DirectoryBackend(root),
      cleanup: dir.cleanup,
    };
  },
});

it('writes read-only files at the path of their name and leaves no temp file behind', async () => {
  const dir = await tempDir('backy-backend-');
  try {
    const backend = new DirectoryBackend(dir.path);
    await backend.saveOnce('ab/abcd', Buffer.from('x'));
    await backend.saveOnce('ab/abcd', Buffer.from('y'));
    await backend.save('ab/abcd', Buffer.from('z'));
    await backend.flush();
    expect(await readdir(join(dir.path, 'ab'))).toEqual(['abcd']);
    expect((await stat(join(dir.path, 'ab', 'abcd'))).mode & 0o777).toBe(0o440);
  } finally {
    await dir.cleanup();
  }
});
