/**
 * vitest, for the conformance suites (`testSource`, `testChunkStore`): an optional peer dependency, so it
 * is imported here, once, and may be absent. Without it `@backy/core/testing` still loads and its helpers
 * (temporary archives, log capture, VM-like data, store fixtures) work outside a test run; a suite called
 * without it says what to install. Inside a test run this is the runner's own vitest, loaded before the
 * test file calls a suite, so `describe` and `it` register synchronously as a static import would.
 */
type Vitest = typeof import('vitest');

let absence = '';
const vitest: Vitest | null = await import('vitest').catch((error: NodeJS.ErrnoException) => {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
  absence = String(error.message).split('\n')[0]!;
  return null;
});

/** Stands in for a vitest function (and its modifiers: `describe.skip`) and says what is missing. */
function missing(name: string): never {
  const fail = () => {
    throw new Error(
      `@backy/core/testing: ${name} needs vitest >= 3.2 (an optional peer dependency of @backy/core), which cannot be loaded: ${absence}`,
    );
  };
  return new Proxy(fail, { get: (_target, property) => missing(`${name}.${String(property)}`) }) as never;
}

export const afterAll: Vitest['afterAll'] = vitest?.afterAll ?? missing('afterAll');
export const afterEach: Vitest['afterEach'] = vitest?.afterEach ?? missing('afterEach');
export const beforeAll: Vitest['beforeAll'] = vitest?.beforeAll ?? missing('beforeAll');
export const describe: Vitest['describe'] = vitest?.describe ?? missing('describe');
export const expect: Vitest['expect'] = vitest?.expect ?? missing('expect');
export const it: Vitest['it'] = vitest?.it ?? missing('it');
