import { existsSync } from 'node:fs';
import { layoutOf } from '@backy/core';
import { type Command, JSON_OPTION, revisionOption } from '../command.js';

export const findCommand: Command = {
  name: 'find',
  summary:
    'print the image path of a revision where it has one (images layout, backy 2.x), else its ID; --id: always the ID',
  usage: 'find [-r SPEC] [--id] [--json]   (default: last)',
  options: {
    revision: revisionOption('the revision to find', 'last'),
    id: { type: 'boolean', description: 'print the revision ID even where it has an image file' },
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  async run(ctx) {
    const archive = await ctx.openArchive();
    const rev = await archive.resolveOne(String(ctx.values.revision));
    const image = archive.imagePath(rev.uuid);
    // backy 2.2–2.5's `<id>` is a JSON chunk mapping at the image's path: only a layout with image files has one.
    const hasImage = layoutOf(rev).imageFile && existsSync(image);
    if (ctx.values.json) {
      ctx.printJson({ revision: rev.uuid, image: hasImage ? image : null });
      return 0;
    }
    if (ctx.values.id !== true && hasImage) {
      ctx.print(image);
      return 0;
    }
    // Every command that takes -r SPEC also takes this path, so both forms work in scripts.
    if (ctx.values.id !== true)
      ctx.warn(`revision ${rev.uuid} has no image file (its data is in chunks); printing its ID`);
    ctx.print(rev.uuid);
    return 0;
  },
};
