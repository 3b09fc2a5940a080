/**
 * The config schemas for scripts/gen-schema.mjs, which makes the JSON Schemas of the build: an entry of
 * the build that package.json's exports do not name, so that the zod schemas stay out of the API.
 */

export { centralConfigSchema } from './central-config.js';
export { archiveConfigSchema } from './config.js';
