import { open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testSource } from '@backy/core/testing';
import source from './index.js';

testSource({
  definition: source,
  async makeFixture(initial) {
    const path = join(tmpdir(), `backy-source-example-${process.pid}.img`);
    await writeFile(path, initial);
    return {
      options: { path },
      async write(offset, data) {
        const handle = await open(path, 'r+');
        await handle.write(data, 0, data.length, offset);
        await handle.close();
      },
      resize: (size) => truncate(path, size),
      content: () => readFile(path),
      cleanup: () => rm(path, { force: true }),
    };
  },
});
