import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { plaintextRuns, vmLikeData } from '@backy/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backy, oneLineError, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const NO_PASSPHRASE = { BACKY_KEY_PASSPHRASE: '' };
const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

describe('backy key', () => {
  it('creates a key file with mode 0600, refuses to overwrite it, and exports and imports it', async () => {
    const key = join(dir.path, 'backup.key');
    const created = backy(['key', 'create', key], { env: NO_PASSPHRASE });
    expect(created.code, created.stderr).toBe(0);
    const id = /new key ([0-9a-f]{16})/.exec(created.stdout)?.[1];
    expect(id).toBeDefined();
    expect(await modeOf(key)).toBe(0o600);
    const json = JSON.parse(await readFile(key, 'utf8'));
    expect(json).toMatchObject({ 'backy-key': 1, id });
    expect(Buffer.from(json.key, 'base64')).toHaveLength(32);

    const before = await readFile(key, 'utf8');
    const again = backy(['key', 'create', key], { env: NO_PASSPHRASE });
    expect(again.code).toBe(1);
    expect(oneLineError(again)).toContain('already exists; refusing to overwrite a key file');
    expect(await readFile(key, 'utf8')).toBe(before);

    const exported = backy(['key', 'export', key]);
    expect(exported.code, exported.stderr).toBe(0);
    const paper = exported.stdout;
    expect(paper.split('\n')[0]).toBe(`backy key file 1, key ${id}`);
    expect(paper).toMatch(/^ 1: [A-Z2-7]{4}( [A-Z2-7]{1,4}){7}\s+[A-Z2-7]{4}$/m);
    expect(paper).toMatch(/^end: [A-Z2-7]{8}$/m);
    expect(paper).not.toContain(json.key);

    // Typed back in lower case and with other spacing, from stdin.
    const copy = join(dir.path, 'copy.key');
    const imported = backy(['key', 'import', copy], { input: paper.toLowerCase().replace(/ /g, '  ') });
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toContain(`key ${id} imported`);
    expect(await modeOf(copy)).toBe(0o600);
    expect(JSON.parse(await readFile(copy, 'utf8'))).toEqual(json);
    expect(backy(['key', 'import', copy], { input: paper }).code).toBe(1);

    // A typo names its line; a missing line is found too.
    const lines = paper.split('\n');
    const typo = [...lines];
    typo[2] = typo[2]!.replace(/: (.)/, (_, c: string) => `: ${c === 'A' ? 'B' : 'A'}`);
    const bad = backy(['key', 'import', join(dir.path, 'typo.key')], { input: typo.join('\n') });
    expect(oneLineError(bad)).toContain('line 2 does not match its check digits');
    const short = lines.filter((_, i) => i !== 1).join('\n');
    expect(oneLineError(backy(['key', 'import', join(dir.path, 'x.key')], { input: short }))).toContain(
      'line 1 expected, found line 2',
    );
  });

  it('protects a key with a passphrase (scrypt) from a file or the environment', async () => {
    const key = join(dir.path, 'protected.key');
    const passFile = join(dir.path, 'pass');
    await writeFile(passFile, 'correct horse battery staple\n');
    const created = backy(['key', 'create', key, '--passphrase-file', passFile]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('protected by the passphrase');
    const json = JSON.parse(await readFile(key, 'utf8'));
    expect(json.key).toBeUndefined();
    expect(json.passphrase).toMatchObject({ kdf: 'scrypt', N: 131072, r: 8, p: 1, cipher: 'aes-256-gcm' });
    // The paper form round-trips the protected file as it is.
    const copy = join(dir.path, 'copy.key');
    const paper = backy(['key', 'export', key]).stdout;
    expect(paper.split('\n')[0]).toContain('passphrase-protected');
    expect(backy(['key', 'import', copy], { input: paper }).code).toBe(0);
    expect(JSON.parse(await readFile(copy, 'utf8'))).toEqual(json);

    // An archive with the protected key: the passphrase from the environment opens it.
    const image = join(dir.path, 'disk.img');
    const data = vmLikeData(6 * 1024 * 1024);
    await writeFile(image, data);
    const arch = join(dir.path, 'archive');
    const env = { BACKY_KEY_PASSPHRASE: 'correct horse battery staple' };
    const b = (args: string[], e: NodeJS.ProcessEnv = env) => backy(['-b', arch, ...args], { env: e });
    expect(b(['init', 'file', image, '--store', `encryption.key-file=${key}`]).code).toBe(0);
    const backup = b(['backup', 'daily']);
    expect(backup.code, backup.stderr).toBe(0);
    const out = join(dir.path, 'restored.img');
    expect(b(['restore', '-r', 'last', out]).code).toBe(0);
    expect((await readFile(out)).equals(data)).toBe(true);
    const chunks = join(arch, 'chunks');
    let found = 0;
    for (const name of await readdir(chunks, { recursive: true })) {
      const path = join(chunks, name);
      if ((await stat(path)).isFile()) found += plaintextRuns(data, await readFile(path));
    }
    expect(found).toBe(0);

    const none = b(['status'], NO_PASSPHRASE);
    expect(oneLineError(none)).toBe(
      `backy: error: ${key} is protected by a passphrase: set store.encryption.passphrase-file, BACKY_PASSPHRASE_FILE, BACKY_PASSPHRASE_COMMAND or BACKY_KEY_PASSPHRASE`,
    );
    const wrong = b(['status'], { BACKY_KEY_PASSPHRASE: 'wrong' });
    expect(oneLineError(wrong)).toBe(`backy: error: ${key}: wrong passphrase (or the key file is damaged)`);
  }, 120_000);

  it('takes the passphrase from BACKY_PASSPHRASE_FILE or BACKY_PASSPHRASE_COMMAND (as restic), one of them at a time', async () => {
    const passFile = join(dir.path, 'pass');
    await writeFile(passFile, 'from a file\n');
    const key = join(dir.path, 'protected.key');
    const created = backy(['key', 'create', '--json', key], { env: { BACKY_PASSPHRASE_FILE: passFile } });
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({
      version: 1,
      action: 'create',
      file: key,
      passphrase: true,
    });
    const image = join(dir.path, 'disk.img');
    await writeFile(image, vmLikeData(2 * 1024 * 1024));
    const arch = join(dir.path, 'archive');
    const b = (args: string[], env: NodeJS.ProcessEnv) =>
      backy(['-b', arch, ...args], { env: { ...NO_PASSPHRASE, ...env } });
    expect(
      b(['init', 'file', image, '--store', `encryption.key-file=${key}`], { BACKY_PASSPHRASE_FILE: passFile })
        .code,
    ).toBe(0);
    const byFile = b(['backup', 'daily'], { BACKY_PASSPHRASE_FILE: passFile });
    expect(byFile.code, byFile.stderr).toBe(0);
    const byCommand = b(['status'], { BACKY_PASSPHRASE_COMMAND: `printf 'from a file\\nignored\\n'` });
    expect(byCommand.code, byCommand.stderr).toBe(0);
    expect(byCommand.stdout).toContain('1 revision');
    expect(oneLineError(b(['status'], { BACKY_PASSPHRASE_COMMAND: 'echo wrong' }))).toBe(
      `backy: error: ${key}: wrong passphrase (or the key file is damaged)`,
    );
    expect(oneLineError(b(['status'], { BACKY_PASSPHRASE_COMMAND: 'exit 3' }))).toBe(
      'backy: error: BACKY_PASSPHRASE_COMMAND: the command exited with status 3',
    );
    expect(oneLineError(b(['status'], { BACKY_PASSPHRASE_FILE: join(dir.path, 'missing') }))).toContain(
      join(dir.path, 'missing'),
    );
    const both = b(['status'], { BACKY_PASSPHRASE_FILE: passFile, BACKY_KEY_PASSPHRASE: 'from a file' });
    expect(both.code).toBe(2);
    expect(oneLineError(both)).toBe(
      "backy: error: BACKY_PASSPHRASE_FILE and BACKY_KEY_PASSPHRASE are set; set only one of them for the key's passphrase",
    );
  }, 120_000);
});
