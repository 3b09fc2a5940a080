import { testSource } from '@backy/core/testing';
import rbdSource from '../src/index.js';
import { ceph, conf, POOL, skipReason, uniqueImage } from './helpers.js';

testSource({
  definition: rbdSource,
  // RBD images hold any size; 512 bytes keeps qemu-img's sector-based reads in play.
  sizeUnit: 512,
  skip: skipReason,
  async makeFixture(initial) {
    const image = uniqueImage('conformance');
    await ceph.createImage(image, initial.length, [{ offset: 0, data: initial }]);
    return {
      options: { pool: POOL, image, conf, 'full-always': false },
      write: (offset, data) => ceph.writeImage(image, offset, data),
      resize: (size) => ceph.resizeImage(image, size),
      content: () => ceph.exportImage(image),
      cleanup: () => ceph.removeImage(image),
    };
  },
});
