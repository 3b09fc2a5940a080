import type { Backend } from './contract.js';

/**
 * Removes object `name` of `backend` only while it has `version` (true when it did): the backend's
 * `removeVersion` where it has one, else a stat, a compare and a remove. The fallback leaves a window
 * as long as one stat between the compare and the delete, in which a concurrent rewrite would be lost.
 */
export async function removeVersion(backend: Backend, name: string, version: string): Promise<boolean> {
  if (backend.removeVersion != null) return backend.removeVersion(name, version);
  if ((await backend.stat(name))?.version !== version) return false;
  await backend.remove(name);
  return true;
}
