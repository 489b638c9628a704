// What the page knows about where an event happened: added to every event's properties, the
// way PostHog's web SDK names them, so the same insights work for both.

import type { Properties } from './types';

declare const __CAIRN_VERSION__: string;
export const LIB_VERSION: string = typeof __CAIRN_VERSION__ === 'string' ? __CAIRN_VERSION__ : '0.0.0';

export function pageContext(): Properties {
  const g = globalThis as { location?: Location; document?: Document; navigator?: Navigator; screen?: Screen; innerWidth?: number; innerHeight?: number };
  const p: Properties = { $lib: 'cairn-web', $lib_version: LIB_VERSION };
  if (g.location) {
    p.$current_url = g.location.href;
    p.$host = g.location.host;
    p.$pathname = g.location.pathname;
  }
  if (g.document) {
    const referrer = g.document.referrer;
    p.$referrer = referrer || '$direct';
    try {
      p.$referring_domain = referrer ? new URL(referrer).host : '$direct';
    } catch {
      p.$referring_domain = '$direct';
    }
  }
  if (g.navigator) {
    p.$browser_language = g.navigator.language;
    p.$raw_user_agent = g.navigator.userAgent;
  }
  if (g.screen) {
    p.$screen_width = g.screen.width;
    p.$screen_height = g.screen.height;
  }
  if (typeof g.innerWidth === 'number') {
    p.$viewport_width = g.innerWidth;
    p.$viewport_height = g.innerHeight;
  }
  try {
    p.$timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    /* no Intl */
  }
  return p;
}
