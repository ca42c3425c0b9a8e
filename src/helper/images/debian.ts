/**
 * The Debian images built here, under the names other modules import. Each part has its
 * own module: recipe.ts (what a recipe is, its hash), recipes.ts (the recipes as data),
 * hooks.ts and desktop.ts (the shell text the build runs), sources.ts (mirrors),
 * progress.ts (mmdebstrap's output as progress), cachedir.ts (the cache's directories and
 * locks) and build.ts (the build itself).
 */
import type { BuiltImage } from './cachedir';
import { buildImage, type BuildOptions } from './build';
import { DEBIAN_12_RECIPE } from './recipes';

export type { BuiltImage } from './cachedir';
export { buildImage, type BuildOptions } from './build';
export { MmdebstrapProgress } from './progress';
export { canonicalJson, type DebianRecipe, recipeHash } from './recipe';
export { DEBIAN_12_DESKTOP_RECIPE, DEBIAN_12_RECIPE, recipeByName, RECIPE_NAMES, RECIPES } from './recipes';
export { type AptFile, type AptSource, DEFAULT_DEBIAN_MIRROR, DEFAULT_DEBIAN_SECURITY, debianSources, type DebianSources, parseAptSources } from './sources';

/** Builds the plain Debian 12 image (or returns the cached one at once). */
export function buildDebian12(opts: BuildOptions): Promise<BuiltImage> {
  return buildImage(DEBIAN_12_RECIPE, opts);
}
