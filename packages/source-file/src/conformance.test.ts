import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testSource } from '@backy/core/testing';
import fileSource from './index.js';

testSource({
  definition: fileSource,
  async makeFixture(initial) {
    const dir = await mkdtemp(join(tmpdir(), 'backy-file-source-'));
    const filename = join(dir, 'disk.img');
    await writeFile(filename, initial);
    return {
      options: { filename },
      async write(offset, data) {
        const handle = await open(filename, 'r+');
        await handle.write(data, 0, data.length, offset);
        await handle.close();
      },
      resize: (size) => truncate(filename, size),
      content: () => readFile(filename),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
});
