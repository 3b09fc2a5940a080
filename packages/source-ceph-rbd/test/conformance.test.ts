import { testSource } from '@backy/core/testing';
import { createRbdSource } from '../src/index.js';
import {
  conf,
  createImage,
  exportImage,
  importDiffRaw,
  logger,
  POOL,
  rbd,
  removeImage,
  skipReason,
  uniqueImage,
  writeImage,
} from './helpers.js';

testSource({
  name: 'ceph-rbd',
  skip: skipReason,
  async makeFixture(initial) {
    const image = uniqueImage('conformance');
    await createImage(image, initial.length);
    await importDiffRaw(image, [
      { type: 'size', size: initial.length },
      { type: 'data', offset: 0, data: initial },
    ]);
    return {
      source: createRbdSource({ pool: POOL, image, conf, 'full-always': false }, { logger }),
      write: (offset, data) => writeImage(image, offset, data),
      resize: async (size) => {
        await rbd('resize', '--no-progress', '--allow-shrink', '--size', `${size}B`, `${POOL}/${image}`);
      },
      content: () => exportImage(image),
      cleanup: () => removeImage(image),
    };
  },
});
