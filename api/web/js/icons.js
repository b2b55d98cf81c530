// Line icons (24x24, stroked), built with DOM calls: no markup strings, no extra requests.

const SVG = 'http://www.w3.org/2000/svg';

const PHONE = ['path', {
  d: 'M22 16.92v3a2 2 0 0 1-2.18 2 19.79 19.79 0 0 1-8.63-3.07 19.5 19.5 0 0 1-6-6 '
    + '19.79 19.79 0 0 1-3.07-8.67A2 2 0 0 1 4.11 2h3a2 2 0 0 1 2 1.72 12.84 12.84 0 0 0 '
    + '.7 2.81 2 2 0 0 1-.45 2.11L8.09 9.91a16 16 0 0 0 6 6l1.27-1.27a2 2 0 0 1 2.11-.45 '
    + '12.84 12.84 0 0 0 2.81.7A2 2 0 0 1 22 16.92z',
}];

const SHAPES = {
  phone: [PHONE],
  hangup: [['g', { transform: 'rotate(135 12 12)' }, [PHONE]]],
  mic: [
    ['path', { d: 'M12 1a3 3 0 0 0-3 3v8a3 3 0 0 0 6 0V4a3 3 0 0 0-3-3z' }],
    ['path', { d: 'M19 10v2a7 7 0 0 1-14 0v-2' }],
    ['path', { d: 'M12 19v4M8 23h8' }],
  ],
  micOff: [
    ['path', { d: 'M1 1l22 22' }],
    ['path', { d: 'M9 9v3a3 3 0 0 0 5.12 2.12M15 9.34V4a3 3 0 0 0-5.94-.6' }],
    ['path', { d: 'M17 16.95A7 7 0 0 1 5 12v-2m14 0v2a7 7 0 0 1-.11 1.23' }],
    ['path', { d: 'M12 19v4M8 23h8' }],
  ],
  keypad: [5, 12, 19].flatMap((y) => [5, 12, 19].map(
    (x) => ['circle', { cx: x, cy: y, r: 1.6, fill: 'currentColor' }],
  )),
  close: [['path', { d: 'M18 6 6 18M6 6l12 12' }]],
  userPlus: [
    ['path', { d: 'M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2' }],
    ['circle', { cx: 8.5, cy: 7, r: 4 }],
    ['path', { d: 'M20 8v6M23 11h-6' }],
  ],
  trash: [
    ['path', { d: 'M3 6h18' }],
    ['path', { d: 'M19 6v14a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V6m3 0V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2' }],
  ],
  clock: [['circle', { cx: 12, cy: 12, r: 10 }], ['path', { d: 'M12 6v6l4 2' }]],
  users: [
    ['path', { d: 'M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2' }],
    ['circle', { cx: 9, cy: 7, r: 4 }],
    ['path', { d: 'M23 21v-2a4 4 0 0 0-3-3.87M16 3.13a4 4 0 0 1 0 7.75' }],
  ],
  incoming: [['path', { d: 'M17 7 7 17M17 17H7V7' }]],
  outgoing: [['path', { d: 'M7 17 17 7M7 7h10v10' }]],
  missed: [['path', { d: 'M17 7 7 17M17 17H7V7' }], ['path', { d: 'M14 4l6 6M20 4l-6 6' }]],
  signOut: [
    ['path', { d: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4' }],
    ['path', { d: 'M16 17l5-5-5-5M21 12H9' }],
  ],
  search: [['circle', { cx: 11, cy: 11, r: 8 }], ['path', { d: 'M21 21l-4.35-4.35' }]],
  wifiOff: [
    ['path', { d: 'M1 1l22 22' }],
    ['path', { d: 'M16.72 11.06A10.94 10.94 0 0 1 19 12.55M5 12.55a10.94 10.94 0 0 1 5.17-2.39' }],
    ['path', { d: 'M10.71 5.05A16 16 0 0 1 22.58 9M1.42 9a15.91 15.91 0 0 1 4.7-2.88' }],
    ['path', { d: 'M8.53 16.11a6 6 0 0 1 6.95 0M12 20h.01' }],
  ],
  play: [['path', { d: 'M7 4.5v15l12.5-7.5z', fill: 'currentColor' }]],
  stop: [['rect', { x: 6, y: 6, width: 12, height: 12, rx: 1.5, fill: 'currentColor' }]],
  music: [['path', { d: 'M9 18V5l12-2v13' }], ['circle', { cx: 6, cy: 18, r: 3 }],
    ['circle', { cx: 18, cy: 16, r: 3 }]],
  hash: [['path', { d: 'M4 9h16M4 15h16M10 3 8 21M16 3l-2 18' }]],
  rooms: [
    ['circle', { cx: 12, cy: 7, r: 3 }],
    ['circle', { cx: 4.5, cy: 10, r: 2.2 }],
    ['circle', { cx: 19.5, cy: 10, r: 2.2 }],
    ['path', { d: 'M6.5 20v-1.5a5.5 5.5 0 0 1 11 0V20' }],
    ['path', { d: 'M1 19v-.8A3.5 3.5 0 0 1 4.5 14.7M23 19v-.8a3.5 3.5 0 0 0-3.5-3.5' }],
  ],
  link: [
    ['path', { d: 'M10 13a5 5 0 0 0 7.54.54l3-3a5 5 0 0 0-7.07-7.07l-1.72 1.71' }],
    ['path', { d: 'M14 11a5 5 0 0 0-7.54-.54l-3 3a5 5 0 0 0 7.07 7.07l1.71-1.71' }],
  ],
  lock: [
    ['rect', { x: 4, y: 11, width: 16, height: 10, rx: 2 }],
    ['path', { d: 'M8 11V7a4 4 0 0 1 8 0v4' }],
  ],
  unlock: [
    ['rect', { x: 4, y: 11, width: 16, height: 10, rx: 2 }],
    ['path', { d: 'M8 11V7a4 4 0 0 1 7.9-.9' }],
  ],
  download: [
    ['path', { d: 'M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4' }],
    ['path', { d: 'M7 10l5 5 5-5M12 15V3' }],
  ],
  headset: [
    ['path', { d: 'M3 18v-6a9 9 0 0 1 18 0v6' }],
    ['path', { d: 'M21 19a2 2 0 0 1-2 2h-1a2 2 0 0 1-2-2v-3a2 2 0 0 1 2-2h3zM3 19a2 2 0 0 0 2 2h1a2 2 0 0 0 2-2v-3a2 2 0 0 0-2-2H3z' }],
  ],
  userX: [
    ['path', { d: 'M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2' }],
    ['circle', { cx: 8.5, cy: 7, r: 4 }],
    ['path', { d: 'M18 8l5 5M23 8l-5 5' }],
  ],
  power: [['path', { d: 'M18.36 6.64a9 9 0 1 1-12.73 0M12 2v10' }]],
};

function build(spec) {
  const [tag, attrs, children = []] = spec;
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const child of children) el.append(build(child));
  return el;
}

/** An inline SVG icon; decorative (aria-hidden), so label the button that holds it. */
export function icon(name, cls = '') {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon ${cls}`.trim());
  for (const spec of SHAPES[name] || []) svg.append(build(spec));
  return svg;
}
