import { readFile } from 'node:fs/promises';

/** Size in bytes of a block device, from sysfs (fstat reports 0 for devices). */
export async function blockDeviceSize(rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 2 ** 12) & 0xfff00) >>> 0);
  const text = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(text.trim()) * 512;
}
