// The registry of layouts: the one place a revision's `backend_type` (or the config's `layout`) is
// turned into its `Layout`. Nothing else compares layout names.
import { BackyError } from '../errors.js';
import type { RevisionData } from '../revision.js';
import type { ConfigLayout, ConfigLayoutName, Layout, LayoutName } from './layout.js';
import { backy2ChunkedLayout, backy2ImageLayout } from './layout-backy2.js';
import { chunkedLayout } from './layout-chunked.js';
import { imagesLayout } from './layout-images.js';

const CONFIG_LAYOUTS: Record<ConfigLayoutName, ConfigLayout> = {
  chunked: chunkedLayout,
  images: imagesLayout,
};

const LAYOUTS: Record<LayoutName, Layout> = {
  ...CONFIG_LAYOUTS,
  cowfile: backy2ImageLayout,
  'legacy-chunked': backy2ChunkedLayout,
};

/** The layout a config's `layout` names: the one new revisions are written in. */
export function layoutFor(name: ConfigLayoutName): ConfigLayout {
  const layout = Object.hasOwn(CONFIG_LAYOUTS, name) ? CONFIG_LAYOUTS[name] : undefined;
  if (layout == null) throw new BackyError('CONFIG_INVALID', `unknown layout ${JSON.stringify(name)}`);
  return layout;
}

/** The layout revision `rev` is in. */
export function layoutOf(rev: Pick<RevisionData, 'backend_type'>): Layout {
  const layout = layoutNamed(rev.backend_type);
  if (layout == null)
    throw new BackyError('REVISION_INVALID', `unknown backend_type ${JSON.stringify(rev.backend_type)}`);
  return layout;
}

/** The layout of `backend_type` `name` as an unchecked file states it, or null for an unknown one. */
export function layoutNamed(name: string): Layout | null {
  return Object.hasOwn(LAYOUTS, name) ? LAYOUTS[name as LayoutName] : null;
}

/** Whether `name` is a layout an archive's config can name (`--layout` of `init`). */
export function isConfigLayoutName(name: string): name is ConfigLayoutName {
  return Object.hasOwn(CONFIG_LAYOUTS, name);
}
