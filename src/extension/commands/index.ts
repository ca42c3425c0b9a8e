/** Every command of the extension, by family; registered in one loop (command.ts). */
import type { CommandEntry } from './command';
import { CONNECT } from './connect';
import { CREATE } from './create';
import { DEVICES } from './devices';
import { DISPLAY } from './display';
import { HELP } from './help';
import { IMAGES } from './images';
import { LIFECYCLE } from './lifecycle';
import { OPEN_IN_DEV_VM } from './openInVm';
import { PORTS } from './ports';
import { SHARES } from './shares';
import { SIZE } from './size';
import { SNAPSHOTS } from './snapshots';

export const COMMANDS: readonly CommandEntry[] = [...CREATE, ...LIFECYCLE, ...CONNECT, ...OPEN_IN_DEV_VM, ...DISPLAY, ...SNAPSHOTS, ...DEVICES, ...SHARES, ...PORTS, ...SIZE, ...IMAGES, ...HELP];
