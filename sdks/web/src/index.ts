// @cairn-analytics/web: capture events from web pages into Cairn.
//
//   import { cairn } from '@cairn-analytics/web';
//   cairn.init('phc_…', { host: 'https://cairn.example.com' });
//   cairn.capture('signed_up', { plan: 'pro' });

import { Cairn } from './client';

export { Cairn } from './client';
export type { CaptureOptions } from './client';
export type { CairnOptions } from './config';
export type { CaptureEvent, DeliveryError, Properties } from './types';
export { uuidv7 } from './uuid';

/** The page's default instance. */
export const cairn = new Cairn();
export default cairn;
