import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { builtinsForCommonJs, packageBuild } from '../../tsup.base.js';

export default packageBuild({
  // main: what the binary runs (see src/main.ts); index: the package's API.
  entry: { index: 'src/index.ts', main: 'src/main.ts' },
  dts: { entry: { index: 'src/index.ts' } },
  // cli-table3 and its dependencies are ~20 CommonJS files that status resolves and reads one by one;
  // in status's chunk they are one file among those it loads anyway.
  noExternal: ['cli-table3'],
  esbuildPlugins: [builtinsForCommonJs],
  // The man page and the shell completions, generated from the built CLI's command definitions.
  async onSuccess() {
    const dist = join(import.meta.dirname ?? process.cwd(), 'dist');
    const { shippedFiles } = (await import(`${join(dist, 'index.js')}?t=${Date.now()}`)) as {
      shippedFiles: () => Promise<Record<string, string>>;
    };
    for (const [path, text] of Object.entries(await shippedFiles())) {
      await mkdir(dirname(join(dist, path)), { recursive: true });
      await writeFile(join(dist, path), text);
    }
  },
});
