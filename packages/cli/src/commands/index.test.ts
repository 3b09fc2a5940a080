import { describe, expect, it } from 'vitest';
import { loadAllCommands, loadCommand } from './index.js';

describe('the command registry', () => {
  it('loads each command under its own name, and no command for an unknown name', async () => {
    const commands = await loadAllCommands();
    expect(commands.length).toBeGreaterThan(15);
    for (const command of commands) expect((await loadCommand(command.name))?.name).toBe(command.name);
    expect(new Set(commands.map((c) => c.name)).size).toBe(commands.length);
    expect(loadCommand('bogus')).toBeNull();
    expect(loadCommand('toString')).toBeNull();
  });
});
