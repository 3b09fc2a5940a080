import { testSource } from '@backy/core/testing';
import rbdSource from '../src/index.js';
import {
  conf,
  createImage,
  exportImage,
  importDiffRaw,
  POOL,
  rbd,
  removeImage,
  skipReason,
  uniqueImage,
  writeImage,
} from './helpers.js';

testSource({
  definition: rbdSource,
  // RBD images hold any size; 512 bytes keeps qemu-img's sector-based reads in play.
  sizeUnit: 512,
  skip: skipReason,
  async makeFixture(initial) {
    const image = uniqueImage('conformance');
    await createImage(image, initial.length);
    await importDiffRaw(image, [
      { type: 'size', size: initial.length },
      { type: 'data', offset: 0, data: initial },
    ]);
    return {
      options: { pool: POOL, image, conf, 'full-always': false },
      write: (offset, data) => writeImage(image, offset, data),
      resize: async (size) => {
        await rbd('resize', '--no-progress', '--allow-shrink', '--size', `${size}B`, `${POOL}/${image}`);
      },
      content: () => exportImage(image),
      cleanup: () => removeImage(image),
    };
  },
});
