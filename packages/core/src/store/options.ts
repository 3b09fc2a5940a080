import { validateOptions } from '../plugin-options.js';
import type { StoreDriver } from './contract.js';

/**
 * Validates the options of a store (the config's `store:` without `type`, `codec` and `encryption`) with
 * its driver's `optionsSchema`. A failure is one CONFIG_INVALID error that names the key under `store.`
 * and the store type whose driver refused it, e.g. `/srv/backy/vm1/config: store.bucket: required (store
 * type s3)`: a third-party driver's rules are told apart from backy's own.
 */
export function validateStoreOptions<T>(
  driver: StoreDriver<T>,
  options: Record<string, unknown>,
  where: string,
): Promise<T> {
  return validateOptions(driver.optionsSchema, options, where, ['store'], `store type ${driver.type}`);
}
