import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testSource } from '@backy/core/testing';
import source from './index.js';

// The suite changes the image through these callbacks; the fixture keeps it in memory and writes
// the whole file after each change (the test images are a few MiB).
testSource({
  definition: source,
  async makeFixture(initial) {
    const path = join(tmpdir(), `backy-source-example-${process.pid}.img`);
    let image = Buffer.from(initial);
    const save = () => writeFile(path, image);
    await save();
    return {
      options: { path },
      write: async (offset, data) => {
        data.copy(image, offset);
        await save();
      },
      resize: async (size) => {
        const next = Buffer.alloc(size);
        image.copy(next, 0, 0, Math.min(size, image.length));
        image = next;
        await save();
      },
      content: async () => Buffer.from(image),
      cleanup: () => rm(path, { force: true }),
    };
  },
});
